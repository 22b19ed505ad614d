package decision

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
	"weak"
)

// Interner shares compiled parts between the sets of users. A set is a list of parts: one per
// role assignment (the assigned role's closure with the assignment's restriction group and
// expiry), shared by every user of the tenant who holds that assignment, and one for the user's
// direct grants and denies, shared by users with the same direct items. The list of a set's
// role parts is shared too, by the users who hold the same assignments, so such users' sets
// hold one reference each; so is a team membership, by the users with the same teams. A part
// is found by the SHA-256 of its canonical encoding, which includes the tenant id, so tenants
// never share; a list by the SHA-256 of its parts' hashes; a membership by that of its team
// ids (canonical strings, the same in every tenant). Parts, lists and memberships are held
// weakly: one leaves memory with the last Set that uses it. An Interner is safe for concurrent
// use; a nil *Interner shares nothing (every set gets its own parts).
//
// Sharing never changes a decision: a part is a pure function of the facts it is hashed from,
// and everything per user (version, status, external id, membership) stays in each Set, so a
// change to one user's grants gives that user different parts and leaves the others' alone,
// and a change to a role gives every holder a part built from the new facts.
type Interner struct {
	mu    sync.Mutex
	parts map[[sha256.Size]byte]weak.Pointer[compiled]
	lists map[[sha256.Size]byte]weak.Pointer[roleParts]
	teams map[[sha256.Size]byte]weak.Pointer[teams]
	bytes atomic.Int64 // estimated size of the recorded parts, lists and memberships
}

// record is what a cleanup needs to forget what it was registered for.
type record struct {
	hash [sha256.Size]byte
	size int64
	kind uint8 // recordPart, recordList or recordTeams
}

const (
	recordPart uint8 = iota
	recordList
	recordTeams
)

// NewInterner returns an empty Interner.
func NewInterner() *Interner {
	return &Interner{
		parts: make(map[[sha256.Size]byte]weak.Pointer[compiled]),
		lists: make(map[[sha256.Size]byte]weak.Pointer[roleParts]),
		teams: make(map[[sha256.Size]byte]weak.Pointer[teams]),
	}
}

// Compile is Compile with sharing. built reports whether this call built a compiled part or a
// list of them (rather than finding all alive); Bytes counts what it built.
func (it *Interner) Compile(in Input, now time.Time) (s *Set, built bool, err error) {
	s = new(Set)
	if built, err = it.CompileInto(s, in, now); err != nil {
		return nil, false, err
	}
	return s, built, nil
}

// CompileInto is Compile into *dst, which it overwrites, and leaves untouched on error: a
// caller that keeps the set inside a record of its own (a cache entry) holds one object, not
// two. dst must not be in use by anyone else meanwhile.
func (it *Interner) CompileInto(dst *Set, in Input, now time.Time) (built bool, err error) {
	f, err := resolve(in, now)
	if err != nil {
		return false, err
	}
	var direct *compiled
	if f.direct != nil {
		direct, built = it.intern(f.direct, sha256.Sum256(appendShared(nil, f.direct)))
	}
	var roles *roleParts
	if len(f.roles) > 0 {
		parts := make([]*compiled, len(f.roles))
		for i, rf := range f.roles {
			var b bool
			parts[i], b = it.intern(rf, sha256.Sum256(appendShared(nil, rf)))
			built = built || b
		}
		var b bool
		roles, b = it.internList(parts)
		built = built || b
	}
	*dst = makeSet(f.user, it.internTeams(f.user.members), direct, roles)
	return built, nil
}

// intern returns the live part with hash h, or builds one from f and records it.
func (it *Interner) intern(f *sharedFacts, h [sha256.Size]byte) (*compiled, bool) {
	if it == nil {
		return buildCompiled(f, h), true
	}
	if c := it.lookup(h); c != nil {
		return c, false
	}
	// Built outside the lock: another goroutine may build the same part meanwhile, and the
	// first one recorded wins.
	c := buildCompiled(f, h)
	it.mu.Lock()
	defer it.mu.Unlock()
	if wp, ok := it.parts[h]; ok {
		if live := wp.Value(); live != nil {
			return live, false
		}
	}
	it.parts[h] = weak.Make(c)
	it.bytes.Add(c.size)
	runtime.AddCleanup(c, it.forget, record{hash: h, size: c.size, kind: recordPart})
	return c, true
}

// internList returns the live list of parts (role parts, in order), or records a new one.
func (it *Interner) internList(parts []*compiled) (*roleParts, bool) {
	h := listHash(parts)
	if it == nil {
		return buildRoleParts(parts, h), true
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	if wp, ok := it.lists[h]; ok {
		if live := wp.Value(); live != nil {
			return live, false
		}
	}
	l := buildRoleParts(parts, h)
	it.lists[h] = weak.Make(l)
	it.bytes.Add(l.size)
	runtime.AddCleanup(l, it.forget, record{hash: l.hash, size: l.size, kind: recordList})
	return l, true
}

// internTeams returns the live membership of the team ids members, or records a new one.
func (it *Interner) internTeams(members []string) *teams {
	t := newTeams(members)
	if it == nil || t == nil {
		return t
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	if wp, ok := it.teams[t.hash]; ok {
		if live := wp.Value(); live != nil {
			return live
		}
	}
	it.teams[t.hash] = weak.Make(t)
	size := t.size()
	it.bytes.Add(size)
	runtime.AddCleanup(t, it.forget, record{hash: t.hash, size: size, kind: recordTeams})
	return t
}

func (it *Interner) lookup(h [sha256.Size]byte) *compiled {
	if it == nil {
		return nil
	}
	it.mu.Lock()
	wp, ok := it.parts[h]
	it.mu.Unlock()
	if !ok {
		return nil
	}
	return wp.Value()
}

// forget drops the record of a collected part or list, unless a new one took its place.
func (it *Interner) forget(r record) {
	it.bytes.Add(-r.size)
	it.mu.Lock()
	switch r.kind {
	case recordPart:
		forget(it.parts, r.hash)
	case recordList:
		forget(it.lists, r.hash)
	case recordTeams:
		forget(it.teams, r.hash)
	}
	it.mu.Unlock()
}

// forget deletes m's record of h unless a live value took its place.
func forget[T any](m map[[sha256.Size]byte]weak.Pointer[T], h [sha256.Size]byte) {
	if wp, ok := m[h]; ok && wp.Value() == nil {
		delete(m, h)
	}
}

// Bytes returns the estimated size of the parts, lists and memberships alive (Set.Size's
// shared figure, summed over distinct ones): a cache counts them once with it, against the same
// budget as its entries. A collected part stops counting when its cleanup has run, shortly
// after the collection.
func (it *Interner) Bytes() int64 {
	if it == nil {
		return 0
	}
	return it.bytes.Load()
}

// Len returns how many compiled parts are recorded (some may be collected but not yet
// forgotten); lists of parts are not counted.
func (it *Interner) Len() int {
	if it == nil {
		return 0
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	return len(it.parts)
}

// CorruptPartsError is UnmarshalUser's error when fetched compiled parts are not what their ids
// name (their bytes do not hash to them): IDs names them, for the cache to drop
// (cache.CorruptShared). It wraps ErrInvalidEncoding.
type CorruptPartsError struct{ IDs []string }

func (e *CorruptPartsError) Error() string {
	return fmt.Sprintf("%v: %d compiled part(s) do not match their ids", ErrInvalidEncoding, len(e.IDs))
}

func (e *CorruptPartsError) Unwrap() error { return ErrInvalidEncoding }

// CorruptSharedIDs returns IDs.
func (e *CorruptPartsError) CorruptSharedIDs() []string { return e.IDs }

// ErrSharedMissing is returned (wrapped) by UnmarshalUser when a compiled part is neither alive
// in the Interner nor available from the caller: the cached entry is a miss.
var ErrSharedMissing = errors.New("decision: shared part not found")

// maxParts bounds the parts one user encoding may name.
const maxParts = 1 << 12

// UnmarshalUser decodes a MarshalUser encoding and joins it with its compiled parts: the live
// ones in the Interner, or else the bytes fetch returns for the ids of the others (Part.Data,
// in the order asked), each checked against its id before it is built and recorded. fetch is
// called at most once, with the ids of the parts not alive, and not at all when every part is.
// Bad bytes give an error wrapping ErrInvalidEncoding; parts that cannot be had give the error
// of fetch (which should wrap ErrSharedMissing for "not there").
func (it *Interner) UnmarshalUser(data []byte, fetch func(ids []string) ([][]byte, error)) (*Set, error) {
	s := new(Set)
	if err := it.UnmarshalUserInto(s, data, fetch); err != nil {
		return nil, err
	}
	return s, nil
}

// UnmarshalUserInto is UnmarshalUser into *dst, as CompileInto is Compile.
func (it *Interner) UnmarshalUserInto(dst *Set, data []byte, fetch func(ids []string) ([][]byte, error)) error {
	d := decoder{b: data}
	if v := d.byte(); d.err == nil && v != formatUser {
		return fmt.Errorf("%w: unknown format %d", ErrInvalidEncoding, v)
	}
	u := d.user()
	n := d.count(sha256.Size)
	if d.err == nil && (len(d.b) != n*sha256.Size || n > maxParts) {
		d.fail("bad part ids")
	}
	if d.err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEncoding, d.err)
	}
	hashes := make([][sha256.Size]byte, n)
	parts := make([]*compiled, n)
	var missing []int
	for i := range hashes {
		copy(hashes[i][:], d.b[i*sha256.Size:])
		if parts[i] = it.lookup(hashes[i]); parts[i] == nil {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		ids := make([]string, len(missing))
		for j, i := range missing {
			ids[j] = hex.EncodeToString(hashes[i][:])
		}
		got, err := fetch(ids)
		if err != nil {
			return err
		}
		if len(got) != len(ids) {
			return fmt.Errorf("%w: asked for %d parts, got %d", ErrSharedMissing, len(ids), len(got))
		}
		var corrupt []string
		for j, i := range missing {
			if sha256.Sum256(got[j]) != hashes[i] {
				corrupt = append(corrupt, ids[j])
			}
		}
		if corrupt != nil {
			return &CorruptPartsError{IDs: corrupt}
		}
		for j, i := range missing {
			f, err := decodeShared(got[j])
			if err != nil {
				return fmt.Errorf("%w: %w", ErrInvalidEncoding, err)
			}
			parts[i], _ = it.intern(f, hashes[i])
		}
	}
	direct, roles, err := assemble(&u, parts)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEncoding, err)
	}
	var list *roleParts
	if len(roles) > 0 {
		list, _ = it.internList(roles)
	}
	*dst = makeSet(u, it.internTeams(u.members), direct, list)
	return nil
}

// Shares reports whether s and o use the same compiled parts in memory, all of them.
func (s *Set) Shares(o *Set) bool {
	return s != nil && o != nil && s.direct == o.direct && s.roles == o.roles
}

// SharesRoles reports whether s and o use one list of role parts in memory (and so hold the
// same role assignments); their direct parts may differ.
func (s *Set) SharesRoles(o *Set) bool {
	return s != nil && o != nil && s.roles != nil && s.roles == o.roles
}

// Size estimates the bytes the set retains: user is what this set alone holds, shared what
// its compiled parts, their list and its team membership hold (counted once however many
// sets use them). The
// estimate counts Go's struct, slice, string and map sizes, with a map entry's share of
// buckets and overhead.
func (s *Set) Size() (user, shared int64) {
	user = int64(unsafe.Sizeof(*s)) + int64(len(s.userID))
	if s.problem != nil {
		user += int64(unsafe.Sizeof(*s.problem)) + int64(len(s.problem.why))
	}
	if s.members != nil {
		shared += s.members.size()
	}
	if s.direct != nil {
		shared += s.direct.size
	}
	if s.roles != nil {
		shared += s.roles.size
		for _, p := range s.roles.parts {
			shared += p.size
		}
	}
	return user, shared
}

// Sizes used by the estimates: Go's string and slice headers, a map's header, and what one map
// entry costs besides its key and value (control byte, load factor, table overhead).
const (
	stringHeader   = int64(unsafe.Sizeof(""))
	sliceHeader    = int64(unsafe.Sizeof([]uint32(nil)))
	mapHeader      = 48
	mapEntryExtras = 8
)

// mapEntry is the estimated cost of one map entry with key and value of the given sizes,
// at a typical load of 7/8.
func mapEntry(key, val int64) int64 { return (key+val)*8/7 + mapEntryExtras }

// estimateSize is the part's retained size. The texts of grants and denies (code, role, group)
// are not counted: they are interned process-wide, once per distinct text, and shared by every
// part that names them.
func (s *compiled) estimateSize() int64 {
	f := s.f
	n := int64(unsafe.Sizeof(*s)) + int64(unsafe.Sizeof(*f)) + int64(len(f.scope))
	n += mapHeader
	for g, cl := range f.closures {
		n += mapEntry(stringHeader, sliceHeader) + int64(len(g))
		for _, x := range cl {
			n += stringHeader + int64(len(x))
		}
	}
	if len(s.groups) > 1 { // else the shared lists of "no group"
		n += int64(cap(s.groups))*stringHeader + int64(cap(s.closures))*8
	}
	for _, m := range s.closures[1:] {
		n += mapHeader + int64(len(m))*mapEntry(stringHeader, 0)
	}
	n += int64(cap(s.grants))*int64(unsafe.Sizeof(grantEntry{})) + int64(cap(s.denies))*int64(unsafe.Sizeof(denyEntry{}))
	n += 4 * int64(cap(s.idx))
	// The index's keys are interned process-wide, like the texts.
	n += 4*int64(cap(s.index.slots)) + 8*int64(cap(s.index.keys)) + int64(unsafe.Sizeof(span{}))*int64(cap(s.index.spans))
	return n
}
