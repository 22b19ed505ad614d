package migrate

import (
	"cmp"
	"fmt"
	"strings"
)

// Version is a migration version as Flyway orders them: parts separated by '.' (or '_' in file
// names), compared numerically part by part, missing parts counting as zero ("1.10" > "1.9",
// "2" > "1.9.9", "1.0" == "1"). The zero Version means "none" and sorts before every other.
//
// Compare versions with [Version.Compare], not ==: "1.0" and "1" are equal versions.
type Version struct {
	// s is the version as Flyway displays and stores it: underscores replaced by dots.
	s string
}

// ParseVersion parses a version such as "1", "1.2" or "1_2" (the file-name form).
func ParseVersion(s string) (Version, error) {
	norm := strings.ReplaceAll(s, "_", ".")
	if norm == "" {
		return Version{}, fmt.Errorf("invalid version %q: empty", s)
	}
	for _, p := range strings.Split(norm, ".") {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return Version{}, fmt.Errorf("invalid version %q: want numbers separated by '.' or '_'", s)
		}
	}
	// The history table's version column is varchar(50).
	if len(norm) > 50 {
		return Version{}, fmt.Errorf("invalid version %q: longer than 50 characters", s)
	}
	return Version{s: norm}, nil
}

// MustParseVersion is like [ParseVersion] but panics on error; for constants and tests.
func MustParseVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

// String returns the version with '.' separators, as stored in the history table ("" for the
// zero Version).
func (v Version) String() string { return v.s }

// IsZero reports whether v is the zero Version ("no version").
func (v Version) IsZero() bool { return v.s == "" }

// Compare returns -1, 0 or +1 as a is lower than, equal to or higher than b.
func (a Version) Compare(b Version) int {
	switch {
	case a.s == "" && b.s == "":
		return 0
	case a.s == "":
		return -1
	case b.s == "":
		return 1
	}
	ap, bp := strings.Split(a.s, "."), strings.Split(b.s, ".")
	for i := range max(len(ap), len(bp)) {
		x, y := numPart(ap, i), numPart(bp, i)
		// Parts are arbitrarily long digit strings (Flyway uses BigInteger): without leading
		// zeros, the longer one is larger, and equal lengths compare lexically.
		if c := cmp.Compare(len(x), len(y)); c != 0 {
			return c
		}
		if c := strings.Compare(x, y); c != 0 {
			return c
		}
	}
	return 0
}

// key is a canonical form: equal versions have equal keys.
func (v Version) key() string {
	if v.s == "" {
		return ""
	}
	parts := strings.Split(v.s, ".")
	for i := range parts {
		parts[i] = numPart(parts, i)
		if parts[i] == "" {
			parts[i] = "0"
		}
	}
	for len(parts) > 1 && parts[len(parts)-1] == "0" {
		parts = parts[:len(parts)-1]
	}
	return strings.Join(parts, ".")
}

// numPart returns part i without leading zeros ("" for zero or a missing part).
func numPart(parts []string, i int) string {
	if i >= len(parts) {
		return ""
	}
	return strings.TrimLeft(parts[i], "0")
}
