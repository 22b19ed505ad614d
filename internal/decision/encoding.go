package decision

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// formatV1 is the first byte of every encoding; a reader rejects formats it does not know, so a
// cache written by a newer binary is a miss, not a misread.
const formatV1 byte = 1

// MarshalBinary encodes the set compactly for a shared (Redis) cache. It encodes the resolved
// facts, and UnmarshalSet rebuilds the index with the same code Compile uses.
func (s *Set) MarshalBinary() ([]byte, error) {
	f := s.f
	b := make([]byte, 0, 64+32*(len(f.grants)+len(f.denies)))
	b = append(b, formatV1, byte(f.level), byte(f.status))
	b = binary.AppendUvarint(b, f.version)
	b = appendString(b, f.userID)
	b = binary.AppendVarint(b, f.expiry)
	b = appendString(b, f.problem)
	b = appendStrings(b, f.members)
	groups := make([]string, 0, len(f.closures))
	for g := range f.closures {
		groups = append(groups, g)
	}
	slices.Sort(groups) // deterministic bytes for identical sets
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
	return b, nil
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
	f, err := d.facts()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, err)
	}
	return build(f), nil
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

func (d *decoder) facts() (*facts, error) {
	if v := d.byte(); d.err == nil && v != formatV1 {
		return nil, fmt.Errorf("unknown format %d", v)
	}
	f := &facts{level: Level(d.byte()), status: Reason(d.byte())}
	f.version = d.uvarint()
	f.userID = d.string()
	f.expiry = d.varint()
	f.problem = d.string()
	f.members = d.strings()
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
	return f, validate(f)
}

// validate checks the invariants build relies on, so decoded garbage is rejected, never built.
func validate(f *facts) error {
	if !f.level.valid() {
		return fmt.Errorf("bad level %d", f.level)
	}
	if f.status >= reasonCount || f.status == ReasonNoPermission || f.status == ReasonExplicitDeny {
		return fmt.Errorf("bad status %d", f.status)
	}
	if (f.status == ReasonInvalidData) != (f.problem != "") {
		return fmt.Errorf("problem text does not match status")
	}
	if f.status != ReasonGranted && (len(f.grants) > 0 || len(f.denies) > 0) {
		return fmt.Errorf("items in a set that denies everything")
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
	if f.status == ReasonGranted && exp != f.expiry {
		return fmt.Errorf("expiry does not match items")
	}
	return nil
}
