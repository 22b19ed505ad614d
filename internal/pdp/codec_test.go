package pdp

import (
	"testing"
	"time"

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
	orig := &Entry{Set: set, AdminVersion: 7, LoadedAt: now}

	b, err := entryCodec{}.Marshal(orig)
	require.NoError(t, err)
	id, shared := entryCodec{}.Shared(orig)
	// Another instance: its own interner, so the compiled part must come from "Redis".
	other := entryCodec{parts: decision.NewInterner()}
	_, err = other.Unmarshal(b)
	require.ErrorIs(t, err, cache.ErrSharedMissing, "an entry whose shared part is not at hand is a miss")
	fetched := 0
	got, _, err := other.UnmarshalShared(b, func(asked string) ([]byte, error) {
		fetched++
		assert.Equal(t, id, asked, "the entry names its shared part")
		return shared, nil
	})
	require.NoError(t, err)
	assert.Equal(t, 1, fetched, "the shared part is fetched once")

	assert.Equal(t, orig.AdminVersion, got.AdminVersion, "admin version")
	assert.True(t, orig.LoadedAt.Equal(got.LoadedAt), "load time: got %s, want %s", got.LoadedAt, orig.LoadedAt)
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
		_, _, err := other.UnmarshalShared(bad, func(string) ([]byte, error) { return shared, nil })
		assert.Error(t, err, name)
	}
	// A shared part that does not match the hash the entry names is refused too.
	tampered := append([]byte(nil), shared...)
	tampered[len(tampered)-1] ^= 0xff
	_, _, err = entryCodec{parts: decision.NewInterner()}.UnmarshalShared(b, func(string) ([]byte, error) { return tampered, nil })
	assert.Error(t, err, "tampered shared part")
}
