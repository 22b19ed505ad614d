package pdp

import (
	"encoding/binary"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/decision"
)

// TestEntryCodecRoundTrip checks that what one instance writes to Redis decodes, on another,
// into an entry that decides every request the same way and keeps its versions, load time and
// expiry — the entry codec is what makes an L2 hit equal to a load.
func TestEntryCodecRoundTrip(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	in := decision.Input{
		Level: decision.LevelTenant, TenantID: "t1", TenantKnown: true, TenantStatus: "active",
		UserKnown: true, UserID: "alice", UserStatus: "active", Version: 42,
		Roles: []decision.Role{
			{ID: "r1", Code: "admin", Active: true, Permissions: []string{"users.*.tenant", "projects.read.team"}, Inherits: []string{"r2"}},
			{ID: "r2", Code: "viewer", Active: true, Permissions: []string{"reports.read.own"}},
		},
		Assignments: []decision.Assignment{
			{RoleID: "r1"},
			{RoleID: "r2", Group: "team-a", ExpiresAt: now.Add(time.Hour)},
		},
		Direct: []decision.DirectPermission{
			{Code: "users.delete.tenant", Granted: false},
			{Code: "billing.read.team", Granted: true, Group: "team-b"},
		},
		MemberOf:    []string{"team-a"},
		Descendants: map[string][]string{"team-a": {"team-c"}},
	}
	set, err := decision.Compile(in, now)
	require.NoError(t, err)
	orig := &Entry{Set: *set, AdminVersion: 7, LoadedAt: now.UnixNano()}

	b, err := entryCodec{}.Marshal(orig)
	require.NoError(t, err)
	// Format 3's header: the format, the admin version, the load time in Unix nanoseconds.
	require.GreaterOrEqual(t, len(b), entryHeader)
	assert.Equal(t, []byte{entryFormat}, b[:1], "format")
	assert.Equal(t, orig.AdminVersion, binary.BigEndian.Uint64(b[1:9]), "admin version in the header")
	assert.Equal(t, uint64(now.UnixNano()), binary.BigEndian.Uint64(b[9:17]), "load time in the header")
	shared := entryCodec{}.Shared(orig)
	// The direct part and one per role assignment.
	require.Len(t, shared, 3, "got %d shared parts, want 3", len(shared))
	// Another instance: its own interner, so the compiled parts must come from "Redis".
	other := entryCodec{parts: decision.NewInterner()}
	_, err = other.Unmarshal(b)
	require.ErrorIs(t, err, cache.ErrSharedMissing, "an entry whose shared parts are not at hand is a miss")
	fetched := 0
	got, _, err := other.UnmarshalShared(b, func(ids []string) ([][]byte, error) {
		fetched++
		return partsFor(t, shared, ids)
	})
	require.NoError(t, err)
	assert.Equal(t, 1, fetched, "the shared parts are fetched in one call")

	assert.Equal(t, orig.AdminVersion, got.AdminVersion, "admin version")
	assert.Equal(t, orig.LoadedAt, got.LoadedAt, "load time")
	assert.True(t, now.Equal(got.loaded()), "load time: got %s, want %s", got.loaded(), now)
	assert.Equal(t, entryCost(orig), entryCost(got), "entry cost")
	assert.Equal(t, set.Version(), got.Set.Version(), "set version")
	assert.True(t, set.Expiry().Equal(got.Set.Expiry()), "expiry: got %s, want %s", got.Set.Expiry(), set.Expiry())
	assert.Equal(t, set.Status(), got.Set.Status())

	reqs := []decision.Request{
		{Permission: "users.read.tenant"},
		{Permission: "users.delete.tenant"},
		{Permission: "projects.read.team"},
		{Permission: "projects.read", HasResource: true, Resource: decision.Resource{Group: "team-c"}},
		{Permission: "reports.read", HasResource: true, Resource: decision.Resource{OwnerID: "alice", Group: "team-a"}},
		{Permission: "billing.read", HasResource: true, Resource: decision.Resource{Group: "team-b"}},
		{Permission: "billing.read.tenant"},
	}
	var allowed, denied int
	for _, at := range []time.Time{now, now.Add(2 * time.Hour)} {
		for _, r := range reqs {
			want, err := set.Check(at, r)
			require.NoError(t, err, "%+v", r)
			have, err := got.Set.Check(at, r)
			require.NoError(t, err, "%+v", r)
			assert.Equal(t, want, have, "%s at %s", r.Permission, at)
			if want.Allowed {
				allowed++
			} else {
				denied++
			}
		}
	}
	assert.Positive(t, allowed, "the requests exercise allows")
	assert.Positive(t, denied, "and denies")

	// Anything else in Redis is a miss, never a wrong entry.
	for name, bad := range map[string][]byte{
		"empty":        nil,
		"short header": b[:16],
		"other format": append([]byte{entryFormat + 1}, b[1:]...),
		"cut set":      b[:len(b)-1],
	} {
		_, _, err := other.UnmarshalShared(bad, func(ids []string) ([][]byte, error) { return partsFor(t, shared, ids) })
		assert.Error(t, err, name)
	}
	// A shared part that does not match the hash the entry names is refused too.
	for i := range shared {
		tampered := append([]cache.SharedPart(nil), shared...)
		tampered[i].Data = append([]byte(nil), tampered[i].Data...)
		tampered[i].Data[len(tampered[i].Data)-1] ^= 0xff
		_, _, err = entryCodec{parts: decision.NewInterner()}.UnmarshalShared(b, func(ids []string) ([][]byte, error) { return partsFor(t, tampered, ids) })
		var corrupt cache.CorruptShared
		if assert.ErrorAs(t, err, &corrupt, "tampered shared part %d: refused, and named for the cache to drop", i) {
			assert.Equal(t, []string{tampered[i].ID}, corrupt.CorruptSharedIDs())
		}
	}
	// So is an entry one of whose parts is missing: a miss.
	_, _, err = entryCodec{parts: decision.NewInterner()}.UnmarshalShared(b, func(ids []string) ([][]byte, error) { return partsFor(t, shared[1:], ids) })
	assert.ErrorIs(t, err, cache.ErrSharedMissing, "got an entry with a part missing")
}

// partsFor serves the parts ids from parts, as Redis would.
func partsFor(t *testing.T, parts []cache.SharedPart, ids []string) ([][]byte, error) {
	t.Helper()
	stored := make(map[string][]byte, len(parts))
	for _, p := range parts {
		stored[p.ID] = p.Data
	}
	out := make([][]byte, len(ids))
	for i, id := range ids {
		var ok bool
		if out[i], ok = stored[id]; !ok {
			return nil, cache.ErrSharedMissing
		}
	}
	return out, nil
}

// TestEntryIsOneObject: a warm user's entry, set included, is one heap object of the 80-byte
// size class (the set's user id aside), and entryCost counts it once: the entry's own fields
// and Set.Size's per-user figure, which includes the inline set.
func TestEntryIsOneObject(t *testing.T) {
	assert.LessOrEqual(t, unsafe.Sizeof(Entry{}), uintptr(80), "got an entry of %d bytes, past the 80-byte size class", unsafe.Sizeof(Entry{}))
	in := decision.Input{
		Level: decision.LevelTenant, TenantID: "t1", TenantKnown: true, TenantStatus: "active",
		UserKnown: true, UserID: "alice", UserStatus: "active", Version: 1,
		Roles:       []decision.Role{{ID: "r1", Code: "viewer", Active: true, Permissions: []string{"reports.read.own"}}},
		Assignments: []decision.Assignment{{RoleID: "r1"}},
	}
	e := &Entry{}
	_, err := decision.NewInterner().CompileInto(&e.Set, in, time.Now())
	require.NoError(t, err)
	assert.Equal(t, int64(unsafe.Sizeof(Entry{}))+int64(len("alice")), entryCost(e), "entry cost")
}
