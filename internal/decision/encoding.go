package decision

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
)

// Every encoding starts with a format byte; a reader rejects formats it does not know, so a
// cache written by an older or newer binary is a miss, not a misread. The three kinds have
// different bytes so that one is never read as another. (Formats 2 and 3 were the set and user
// encodings of sets with one compiled part.)
const (
	formatSet    byte = 5 // a whole set: the per-user part followed by its compiled parts
	formatUser   byte = 6 // the per-user part and the ids of its compiled parts
	formatShared byte = 4 // one compiled part, whose SHA-256 is its id
)

// MarshalBinary encodes the whole set, self-contained. It encodes the resolved facts, and
// UnmarshalSet rebuilds the index with the same code Compile uses.
func (s *Set) MarshalBinary() ([]byte, error) {
	parts := s.parts()
	b := make([]byte, 0, 64+256*len(parts))
	b = append(b, formatSet)
	b = s.appendUser(b)
	b = binary.AppendUvarint(b, uint64(len(parts)))
	for _, p := range parts {
		b = appendBytes(b, appendShared(nil, p.facts()))
	}
	return b, nil
}

// MarshalUser encodes what is per user and the ids of the compiled parts (see Parts). A cache
// stores each part once (Parts) and this for every user; UnmarshalUser joins them.
func (s *Set) MarshalUser() []byte {
	parts := s.parts()
	b := make([]byte, 0, 48+len(s.userID)+len(s.Problem())+16*len(s.teamIDs())+1+sha256.Size*len(parts))
	b = append(b, formatUser)
	b = s.appendUser(b)
	b = binary.AppendUvarint(b, uint64(len(parts)))
	for _, p := range parts {
		b = append(b, p.hash[:]...)
	}
	return b
}

// Part is one of a set's compiled parts: its id, the lowercase hex SHA-256 of Data, and Data,
// its canonical encoding.
type Part struct {
	ID   string
	Data []byte
}

// Parts returns the set's compiled parts in the order MarshalUser names them. Sets holding a
// part with the same id decide alike on what that part holds.
func (s *Set) Parts() []Part {
	parts := s.parts()
	out := make([]Part, len(parts))
	for i, p := range parts {
		out[i] = Part{ID: hex.EncodeToString(p.hash[:]), Data: appendShared(nil, p.facts())}
	}
	return out
}

// PartIDs returns the ids of the set's compiled parts, as Parts does, without encoding them.
func (s *Set) PartIDs() []string {
	parts := s.parts()
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = hex.EncodeToString(p.hash[:])
	}
	return out
}

func (s *Set) appendUser(b []byte) []byte {
	b = append(b, byte(s.level), byte(s.status))
	b = binary.AppendUvarint(b, s.version)
	b = appendString(b, s.userID)
	b = appendString(b, s.Problem())
	if s.problem != nil {
		b = binary.AppendVarint(b, s.problem.until)
	}
	return appendStrings(b, s.teamIDs())
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

func appendBytes(b, x []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(x)))
	return append(b, x...)
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
// level, reason, every code, counts against the bytes left, the kinds and order of the parts,
// no trailing bytes) and returns an error wrapping ErrInvalidEncoding for anything else; it
// never panics.
func UnmarshalSet(data []byte) (*Set, error) {
	d := decoder{b: data}
	if v := d.byte(); d.err == nil && v != formatSet {
		return nil, fmt.Errorf("%w: unknown format %d", ErrInvalidEncoding, v)
	}
	u := d.user()
	var parts []*compiled
	for n, i := d.count(1), 0; i < n && d.err == nil; i++ {
		b := d.bytes()
		if d.err != nil {
			break
		}
		f, err := decodeShared(b)
		if err != nil {
			d.fail(err.Error())
			break
		}
		parts = append(parts, newCompiled(f))
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, d.err)
	}
	direct, roles, err := assemble(&u, parts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, err)
	}
	var list *roleParts
	if len(roles) > 0 {
		list = newRoleParts(roles)
	}
	return newSet(u, newTeams(u.members), direct, list), nil
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
	if n := d.count(2); d.err == nil && n > 0 {
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

func (d *decoder) bytes() []byte {
	n := d.count(1)
	if d.err != nil {
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
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
	if u.problem != "" {
		u.until = d.varint()
	}
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

// assemble checks a per-user part against the compiled parts it is joined with, listed in the
// order a set lists them, and splits them: at most one direct part, first, then role parts in
// strictly increasing (role code, group) order — so the matched-grant order is the order of
// the parts — all of the user's level and of one tenant.
func assemble(u *userFacts, parts []*compiled) (direct *compiled, roles []*compiled, err error) {
	if u.status >= reasonCount || u.status == ReasonNoPermission || u.status == ReasonExplicitDeny {
		return nil, nil, fmt.Errorf("bad status %d", u.status)
	}
	if !u.level.valid() {
		return nil, nil, fmt.Errorf("bad level %d", u.level)
	}
	if (u.status == ReasonInvalidData) != (u.problem != "") {
		return nil, nil, fmt.Errorf("problem text does not match status")
	}
	if u.status != ReasonGranted && len(parts) > 0 {
		return nil, nil, fmt.Errorf("items in a set that denies everything")
	}
	if len(parts) > 0 && parts[0].isDirect() {
		direct, parts = parts[0], parts[1:]
	}
	var prev roleKey
	for i, p := range parts {
		k, ok := p.roleKey()
		if !ok {
			return nil, nil, fmt.Errorf("part %d is neither the direct part nor a role part", i)
		}
		if i > 0 && (k.role < prev.role || k.role == prev.role && k.group <= prev.group) {
			return nil, nil, fmt.Errorf("role parts out of order")
		}
		prev = k
	}
	for _, p := range append([]*compiled{direct}, parts...) {
		if p == nil {
			continue
		}
		if p.f.level != u.level {
			return nil, nil, fmt.Errorf("user part of level %d, compiled part of level %d", u.level, p.f.level)
		}
		if first := firstPart(direct, parts); p.f.scope != first.f.scope {
			return nil, nil, fmt.Errorf("compiled parts of different tenants")
		}
	}
	return direct, parts, nil
}

func firstPart(direct *compiled, roles []*compiled) *compiled {
	if direct != nil {
		return direct
	}
	return roles[0]
}
