package pdp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/metrictest"
	"github.com/neofast/neoauthz/internal/pdp"
)

const (
	giveBobAdmin = `INSERT INTO t_acme.user_roles (user_id, role_id)
		SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r WHERE u.external_id = 'bob' AND r.code = 'admin'`
	grantBobDirect = `INSERT INTO t_acme.user_permissions (user_id, permission_id, is_granted)
		SELECT u.id, p.id, true FROM t_acme.users u, t_acme.permissions p WHERE u.external_id = 'bob' AND p.code = 'users.delete.tenant'`
)

// sets returns alice's and bob's cached sets after a check each.
func (in *instance) sets(t *testing.T, f *fixture, perm string) (alice, bob pdp.Result, sa, sb *decision.Set) {
	t.Helper()
	alice, bob = in.check(t, "acme", "alice", perm), in.check(t, "acme", "bob", perm)
	in.svc.WaitIdle()
	sa, sb = pdp.CachedSet(in.svc, f.tenant.ID, "alice"), pdp.CachedSet(in.svc, f.tenant.ID, "bob")
	require.NotNil(t, sa, "alice's set is not in L1")
	require.NotNil(t, sb, "bob's set is not in L1")
	return alice, bob, sa, sb
}

func TestUsersWithSameRolesShareCompiledSet(t *testing.T) {
	f := newFixture(t)
	f.exec(t, giveBobAdmin)
	in := f.start(t, pdp.Config{}, nil)
	const perm = "users.delete.tenant"

	a, b, sa, sb := in.sets(t, f, perm)
	require.True(t, a.Allowed)
	require.True(t, b.Allowed)
	assert.True(t, sa.Shares(sb), "got two compiled sets for two admins, want one shared")

	// Redis holds the compiled parts once, in the tenant's slot, and another instance reading
	// both users from Redis shares them too.
	prefix, err := cache.TenantPrefix(f.tenant.ID)
	require.NoError(t, err)
	require.NotEmpty(t, sa.PartIDs())
	for _, id := range sa.PartIDs() {
		n, err := f.rdb.Exists(context.Background(), f.prefix+prefix+"s:"+id).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "got no shared part %s in Redis under the tenant's prefix", id)
	}
	other := f.start(t, pdp.Config{}, nil)
	_, _, oa, ob := other.sets(t, f, perm)
	assert.True(t, oa.Shares(ob), "got two compiled sets from Redis for two admins, want one shared")
	// Each part is fetched from Redis at most once for both users: the second finds them in
	// memory, whether the first came from Redis (one fetch each) or, when a Redis read timed
	// out on a loaded machine, from PostgreSQL (none).
	_, l2, _ := other.tierCounts(t)
	fetched := metrictest.Sum(t, other.reg, "cache_operations_total", map[string]string{"tier": "l2", "operation": "get_shared"})
	nparts := float64(len(sa.PartIDs()))
	assert.LessOrEqual(t, fetched, nparts, "got the shared parts fetched %v times for two users, want at most %v", fetched, nparts)
	if l2 == 2 {
		assert.InDelta(t, nparts, fetched, 0, "got %v fetches with both users read from Redis, want %v", fetched, nparts)
	}

	// A direct grant gives bob a set of his own; alice's is untouched.
	f.exec(t, grantBobDirect)
	in.waitFloor(t, f.tenant.ID, f.version(t))
	a, b, sa, sb = in.sets(t, f, perm)
	assert.False(t, sa.Shares(sb), "got bob sharing alice's set after his direct grant, want his own")
	assert.True(t, sa.SharesRoles(sb), "got bob's role parts rebuilt for his direct grant, want them shared with alice")
	assert.Len(t, sb.PartIDs(), len(sa.PartIDs())+1, "got bob's parts %v, want alice's %v and his direct part", sb.PartIDs(), sa.PartIDs())
	assert.True(t, b.Allowed)
	assert.True(t, b.Grant.Direct, "got bob's grant %+v, want his direct one", b.Grant)
	assert.True(t, a.Allowed)
	assert.False(t, a.Grant.Direct, "got alice's grant %+v, want her role's", a.Grant)

	// Sharing again once it is gone.
	f.exec(t, `DELETE FROM t_acme.user_permissions`)
	in.waitFloor(t, f.tenant.ID, f.version(t))
	_, _, sa, sb = in.sets(t, f, perm)
	assert.True(t, sa.Shares(sb), "got two compiled sets after the direct grant went, want one again")
}

// TestSharedSetNeverHidesARevocation: one user's revocation is seen at once although another
// user's cached entry still uses the compiled set the revoked user had.
func TestSharedSetNeverHidesARevocation(t *testing.T) {
	f := newFixture(t)
	f.exec(t, giveBobAdmin)
	in := f.start(t, pdp.Config{}, nil)
	const perm = "users.delete.tenant"
	for _, user := range []string{"alice", "bob"} {
		other := map[string]string{"alice": "bob", "bob": "alice"}[user]
		_, _, sa, sb := in.sets(t, f, perm)
		require.True(t, sa.Shares(sb))

		f.exec(t, `DELETE FROM t_acme.user_roles WHERE user_id = (SELECT id FROM t_acme.users WHERE external_id = $1)`, user)
		in.waitFloor(t, f.tenant.ID, f.version(t))
		assert.False(t, in.check(t, "acme", user, perm).Allowed, "got %s allowed after the revocation", user)
		assert.True(t, in.check(t, "acme", other, perm).Allowed, "got %s denied by %s's revocation", other, user)

		f.exec(t, `INSERT INTO t_acme.user_roles (user_id, role_id)
			SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r WHERE u.external_id = $1 AND r.code = 'admin'`, user)
		in.waitFloor(t, f.tenant.ID, f.version(t))
	}
}

// TestByteBudgetEvictsInPDP: L1 is bounded by bytes, each entry costing its real size: a small
// budget keeps only what fits. (Entries used to cost 1 each, so 16 KiB held 16,384 of them.)
func TestByteBudgetEvictsInPDP(t *testing.T) {
	f := newFixture(t)
	const budget, users = 16 << 10, 200
	in := f.start(t, pdp.Config{UnknownUserTTL: time.Hour, Cache: cache.Options{L1MaxCost: budget}}, nil)
	for i := range users {
		res := in.check(t, "acme", fmt.Sprintf("ghost-%03d", i), "users.read.tenant")
		require.Equal(t, pdp.ReasonUnknownUser, res.Reason)
	}
	in.svc.WaitIdle()
	held := 0
	for i := range users {
		if pdp.CachedSet(in.svc, f.tenant.ID, fmt.Sprintf("ghost-%03d", i)) != nil {
			held++
		}
	}
	// An entry costs well over 300 bytes: the entry, the set, the key and the cache's overhead.
	assert.LessOrEqual(t, held, budget/300, "got %d entries held in a %d-byte budget, want at most %d", held, budget, budget/300)
	assert.Positive(t, held, "got nothing held in L1")
}
