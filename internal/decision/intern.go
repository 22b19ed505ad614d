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

// Interner shares compiled parts between the sets of users whose inputs resolve to the same
// grants, restrictions, denies and expiries — in practice, users of a tenant who hold the same
// roles and no direct permissions. A part is found by the SHA-256 of its canonical encoding,
// which includes the tenant id, so tenants never share. Parts are held weakly: one leaves memory
// with the last Set that uses it. An Interner is safe for concurrent use; a nil *Interner
// shares nothing (every set gets its own part).
//
// Sharing never changes a decision: a part is a pure function of the facts it is hashed from,
// and everything per user (version, status, external id, membership) stays in each Set, so a
// change to one user's grants gives that user a different part and leaves the others' alone.
type Interner struct {
	mu    sync.Mutex
	parts map[[sha256.Size]byte]weak.Pointer[compiled]
	bytes atomic.Int64 // estimated size of the recorded parts
}

// partRecord is what a part's cleanup needs to forget it.
type partRecord struct {
	hash [sha256.Size]byte
	size int64
}

// NewInterner returns an empty Interner.
func NewInterner() *Interner {
	return &Interner{parts: make(map[[sha256.Size]byte]weak.Pointer[compiled])}
}

// Compile is Compile with sharing. built reports whether this call built the compiled part
// (rather than finding it alive): the caller that counts memory counts the part's size then.
func (it *Interner) Compile(in Input, now time.Time) (s *Set, built bool, err error) {
	f, err := resolve(in, now)
	if err != nil {
		return nil, false, err
	}
	c, built := it.intern(f.shared, sha256.Sum256(appendShared(nil, f.shared)))
	return newSet(f.user, c), built, nil
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
	runtime.AddCleanup(c, it.forget, partRecord{h, c.size})
	return c, true
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

// forget drops the record of a collected part, unless a new part took its place.
func (it *Interner) forget(r partRecord) {
	it.bytes.Add(-r.size)
	it.mu.Lock()
	if wp, ok := it.parts[r.hash]; ok && wp.Value() == nil {
		delete(it.parts, r.hash)
	}
	it.mu.Unlock()
}

// Bytes returns the estimated size of the parts alive (Set.Size's shared figure, summed): a
// cache counts them once with it, against the same budget as its entries. A collected part
// stops counting when its cleanup has run, shortly after the collection.
func (it *Interner) Bytes() int64 {
	if it == nil {
		return 0
	}
	return it.bytes.Load()
}

// Len returns how many compiled parts are recorded (some may be collected but not yet forgotten).
func (it *Interner) Len() int {
	if it == nil {
		return 0
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	return len(it.parts)
}

// ErrSharedMissing is returned (wrapped) by UnmarshalUser when the shared part is neither alive
// in the Interner nor available from the caller: the cached entry is a miss.
var ErrSharedMissing = errors.New("decision: shared part not found")

// UnmarshalUser decodes a MarshalUser encoding and joins it with its shared part: the live one
// in the Interner, or else the bytes shared returns for the part's id (a MarshalShared
// encoding), which are checked against the id before they are built and recorded. shared is
// not called when the part is alive. Bad bytes give an error wrapping ErrInvalidEncoding; a
// shared part that cannot be had gives the error of shared (which should wrap ErrSharedMissing
// for "not there").
func (it *Interner) UnmarshalUser(data []byte, shared func(id string) ([]byte, error)) (*Set, error) {
	d := decoder{b: data}
	if v := d.byte(); d.err == nil && v != formatUser {
		return nil, fmt.Errorf("%w: unknown format %d", ErrInvalidEncoding, v)
	}
	u := d.user()
	if d.err == nil && len(d.b) != sha256.Size {
		d.fail("bad shared part id")
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, d.err)
	}
	var h [sha256.Size]byte
	copy(h[:], d.b)
	c := it.lookup(h)
	if c == nil {
		b, err := shared(hex.EncodeToString(h[:]))
		if err != nil {
			return nil, err
		}
		if sha256.Sum256(b) != h {
			return nil, fmt.Errorf("%w: shared part does not match its id", ErrInvalidEncoding)
		}
		f, err := decodeShared(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, err)
		}
		c, _ = it.intern(f, h)
	}
	if err := validatePair(&u, c.f, len(c.grants)+len(c.denies)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, err)
	}
	return newSet(u, c), nil
}

// SharedID returns the id of the set's compiled part: the hex SHA-256 of MarshalShared. Sets
// with equal ids decide alike for users with equal per-user facts.
func (s *Set) SharedID() string { return hex.EncodeToString(s.c.hash[:]) }

// Shares reports whether s and o use one compiled part in memory.
func (s *Set) Shares(o *Set) bool { return s != nil && o != nil && s.c == o.c }

// Size estimates the bytes the set retains: user is what this set alone holds, shared what
// its compiled part holds (counted once however many sets use it). The estimate counts Go's
// struct, slice, string and map sizes, with a map entry's share of buckets and overhead.
func (s *Set) Size() (user, shared int64) {
	user = int64(unsafe.Sizeof(*s)) + int64(len(s.userID)+len(s.problem))
	// Team ids are canonical strings, held by the part's closures or other users too: only
	// the slice is this set's.
	user += int64(cap(s.members)) * stringHeader
	return user, s.c.size
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
	n += int64(cap(s.groups))*stringHeader + int64(cap(s.closures))*8
	for _, m := range s.closures[1:] {
		n += mapHeader + int64(len(m))*mapEntry(stringHeader, 0)
	}
	n += int64(cap(s.grants))*int64(unsafe.Sizeof(grantEntry{})) + int64(cap(s.denies))*int64(unsafe.Sizeof(denyEntry{}))
	n += 4 * int64(cap(s.idx))
	// The index's keys are interned process-wide, like the texts.
	n += 4*int64(cap(s.index.slots)) + 8*int64(cap(s.index.keys)) + int64(unsafe.Sizeof(span{}))*int64(cap(s.index.spans))
	return n
}
