package pdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/decision"
)

// Entry is a cached compiled permission set. It holds the set by value, and the load time as
// a number, so that a warm user's entry is one 80-byte heap object (filled by
// Interner.CompileInto or UnmarshalUserInto), not an entry and a set apart.
type Entry struct {
	Set decision.Set
	// AdminVersion is the admin database's version of the tenant directory entry the set was
	// compiled with (tenant status).
	AdminVersion uint64
	// LoadedAt is when the set was loaded, in Unix nanoseconds (see loaded).
	LoadedAt int64
}

// loaded returns LoadedAt as a time. It carries no monotonic reading, as an entry read from
// Redis never did: comparisons with it use the wall clock.
func (e *Entry) loaded() time.Time { return time.Unix(0, e.LoadedAt) }

// entryCost is an entry's retained size for the cache's byte budget: the entry and its set's
// per-user part. Set.Size counts the set's struct, which the entry holds inline, so only the
// entry's other fields are added. Compiled parts, which many users share, are counted once, all
// together: the service reserves the interner's total from the same budget (cache.Reserve).
func entryCost(e *Entry) int64 {
	user, _ := e.Set.Size()
	return int64(unsafe.Sizeof(Entry{})-unsafe.Sizeof(decision.Set{})) + user
}

// entryCodec stores an Entry in Redis as its per-user part — a format byte, the admin version,
// the load time and the set's per-user encoding, which names its compiled parts (one per role
// assignment, one for direct grants and denies) by content hash — and each compiled part once
// per tenant under its hash (cache.SharedCodec).
type entryCodec struct {
	parts *decision.Interner
}

var _ cache.SharedCodec[*Entry] = entryCodec{}

// entryFormat 3 names several compiled parts; entries of formats 1 (whole set) and 2 (one
// compiled part) are misses.
const (
	entryFormat = 3
	entryHeader = 17
)

func (entryCodec) Marshal(e *Entry) ([]byte, error) {
	set := e.Set.MarshalUser()
	b := make([]byte, entryHeader, entryHeader+len(set))
	b[0] = entryFormat
	binary.BigEndian.PutUint64(b[1:], e.AdminVersion)
	binary.BigEndian.PutUint64(b[9:], uint64(e.LoadedAt))
	return append(b, set...), nil
}

func (entryCodec) Shared(e *Entry) []cache.SharedPart {
	parts := e.Set.Parts()
	out := make([]cache.SharedPart, len(parts))
	for i, p := range parts {
		out[i] = cache.SharedPart{ID: p.ID, Data: p.Data}
	}
	return out
}

func (c entryCodec) Unmarshal(b []byte) (*Entry, error) {
	e, _, err := c.UnmarshalShared(b, func([]string) ([][]byte, error) { return nil, cache.ErrSharedMissing })
	return e, err
}

func (c entryCodec) UnmarshalShared(b []byte, fetch func(ids []string) ([][]byte, error)) (*Entry, int64, error) {
	if len(b) < entryHeader || b[0] != entryFormat {
		return nil, 0, errors.New("not a cached permission set")
	}
	e := &Entry{AdminVersion: binary.BigEndian.Uint64(b[1:]), LoadedAt: int64(binary.BigEndian.Uint64(b[9:]))}
	if err := c.parts.UnmarshalUserInto(&e.Set, b[entryHeader:], fetch); err != nil {
		return nil, 0, fmt.Errorf("cached permission set: %w", err)
	}
	return e, entryCost(e), nil
}
