package decision

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
)

// Every encoding starts with a format byte; a reader rejects formats it does not know, so a
// cache written by an older or newer binary is a miss, not a misread. The three kinds have
// different bytes so that one is never read as another.
const (
	formatSet    byte = 2 // a whole set: the per-user part followed by the shared part
	formatUser   byte = 3 // the per-user part and the id of its shared part
	formatShared byte = 4 // the shared part, whose SHA-256 is its id
)

// MarshalBinary encodes the whole set, self-contained. It encodes the resolved facts, and
// UnmarshalSet rebuilds the index with the same code Compile uses.
func (s *Set) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 64+32*(len(s.c.grants)+len(s.c.denies)))
	b = append(b, formatSet)
	b = s.appendUser(b)
	return appendShared(b, s.c.facts()), nil
}

// MarshalUser encodes what is per user and the id of the shared part (see SharedID). A cache
// stores the shared part once (MarshalShared) and this for every user; UnmarshalUser joins them.
func (s *Set) MarshalUser() []byte {
	b := make([]byte, 0, 48+len(s.userID)+len(s.problem)+16*len(s.members)+sha256.Size)
	b = append(b, formatUser)
	b = s.appendUser(b)
	return append(b, s.c.hash[:]...)
}

// MarshalShared encodes the set's shared part; its SHA-256 is SharedID.
func (s *Set) MarshalShared() []byte { return appendShared(nil, s.c.facts()) }

func (s *Set) appendUser(b []byte) []byte {
	b = append(b, byte(s.c.f.level), byte(s.status))
	b = binary.AppendUvarint(b, s.version)
	b = appendString(b, s.userID)
	b = appendString(b, s.problem)
	return appendStrings(b, s.members)
}

// appendShared appends the canonical encoding of f: identical facts give identical bytes,
// which is what lets users share a compiled part by the hash of these bytes.
func appendShared(b []byte, f *sharedFacts) []byte {
	b = append(b, formatShared, byte(f.level))
	b = appendString(b, f.scope)
	b = binary.AppendVarint(b, f.expiry)
	groups := make([]string, 0, len(f.closures))
	for g := range f.closures {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	b = binary.AppendUvarint(b, uint64(len(groups)))
	for _, g := range groups {
		b = appendString(b, g)
		b = appendStrings(b, f.closures[g])
	}
	b = binary.AppendUvarint(b, uint64(len(f.grants)))
	for _, g := range f.grants {
		var flags byte
		if g.direct {
			flags = 1
		}
		b = append(b, flags)
		b = appendString(b, g.code)
		b = appendString(b, g.group)
		b = appendString(b, g.role)
		b = binary.AppendVarint(b, g.exp)
	}
	b = binary.AppendUvarint(b, uint64(len(f.denies)))
	for _, d := range f.denies {
		b = appendString(b, d.code)
		b = appendString(b, d.group)
		b = binary.AppendVarint(b, d.exp)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, xs []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(xs)))
	for _, x := range xs {
		b = appendString(b, x)
	}
	return b
}

// UnmarshalSet decodes a MarshalBinary encoding. It validates everything it reads (format,
// level, reason, every code, counts against the bytes left, no trailing bytes) and returns an
// error wrapping ErrInvalidEncoding for anything else; it never panics.
func UnmarshalSet(data []byte) (*Set, error) {
	d := decoder{b: data}
	if v := d.byte(); d.err == nil && v != formatSet {
		return nil, fmt.Errorf("%w: unknown format %d", ErrInvalidEncoding, v)
	}
	u := d.user()
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, d.err)
	}
	f, err := decodeShared(d.b)
	if err == nil {
		err = validatePair(&u, f, len(f.grants)+len(f.denies))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, err)
	}
	return newSet(u, newCompiled(f)), nil
}

// decodeShared decodes and validates an appendShared encoding.
func decodeShared(data []byte) (*sharedFacts, error) {
	d := decoder{b: data}
	if v := d.byte(); d.err == nil && v != formatShared {
		return nil, fmt.Errorf("unknown shared format %d", v)
	}
	f := &sharedFacts{level: Level(d.byte())}
	f.scope = d.string()
	f.expiry = d.varint()
	if n := d.count(2); d.err == nil {
		f.closures = make(map[string][]string, n)
		for i := 0; i < n && d.err == nil; i++ {
			g := d.string()
			f.closures[g] = d.strings()
		}
		if len(f.closures) != n && d.err == nil {
			d.fail("duplicate closure")
		}
	}
	for n, i := d.count(5), 0; i < n && d.err == nil; i++ {
		flags := d.byte()
		g := factGrant{direct: flags == 1, code: d.string(), group: d.string(), role: d.string(), exp: d.varint()}
		if flags > 1 {
			d.fail("bad grant flags")
		}
		f.grants = append(f.grants, g)
	}
	for n, i := d.count(4), 0; i < n && d.err == nil; i++ {
		f.denies = append(f.denies, factDeny{code: d.string(), group: d.string(), exp: d.varint()})
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return f, validateShared(f)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s", msg)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length and bounds it by the bytes left (every element takes at least min bytes),
// so garbage cannot make the decoder allocate without bound.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail("count exceeds data")
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.count(1)
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) strings() []string {
	n := d.count(1)
	var xs []string
	for i := 0; i < n && d.err == nil; i++ {
		xs = append(xs, d.string())
	}
	return xs
}

// user decodes the per-user fields appendUser wrote.
func (d *decoder) user() userFacts {
	u := userFacts{level: Level(d.byte()), status: Reason(d.byte())}
	u.version = d.uvarint()
	u.userID = d.string()
	u.problem = d.string()
	u.members = d.strings()
	return u
}

// validateShared checks the invariants building an index relies on, so decoded garbage is
// rejected, never built.
func validateShared(f *sharedFacts) error {
	if !f.level.valid() {
		return fmt.Errorf("bad level %d", f.level)
	}
	if f.level == LevelPlatform && f.scope != "" {
		return fmt.Errorf("platform set with a tenant scope")
	}
	exp := int64(never)
	for _, g := range f.grants {
		if _, err := ParseCode(f.level, g.code); err != nil {
			return err
		}
		if g.direct && g.role != "" {
			return fmt.Errorf("direct grant with a role")
		}
		exp = min(exp, g.exp)
	}
	for _, d := range f.denies {
		if _, err := ParseCode(f.level, d.code); err != nil {
			return err
		}
		exp = min(exp, d.exp)
	}
	if (len(f.grants) > 0 || len(f.denies) > 0) && exp != f.expiry {
		return fmt.Errorf("expiry does not match items")
	}
	return nil
}

// validatePair checks a per-user part against the shared part it is joined with, which holds
// items grants and denies.
func validatePair(u *userFacts, f *sharedFacts, items int) error {
	if u.level != f.level {
		return fmt.Errorf("user part of level %d, shared part of level %d", u.level, f.level)
	}
	if u.status >= reasonCount || u.status == ReasonNoPermission || u.status == ReasonExplicitDeny {
		return fmt.Errorf("bad status %d", u.status)
	}
	if (u.status == ReasonInvalidData) != (u.problem != "") {
		return fmt.Errorf("problem text does not match status")
	}
	if u.status != ReasonGranted && items > 0 {
		return fmt.Errorf("items in a set that denies everything")
	}
	if u.status == ReasonGranted && items == 0 && f.expiry != never {
		return fmt.Errorf("expiry without items")
	}
	return nil
}
