package pdp_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/pdp"
	"github.com/neofast/neoauthz/internal/redistest"
	authzsync "github.com/neofast/neoauthz/internal/sync"
	"github.com/neofast/neoauthz/internal/tenancy"
)

// testClock is the pdp's decision clock in these tests: real time moved forward on demand (the
// sync layer stamps listener failures with real time, which the pdp compares with its own).
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// scenario is one consistency scenario's world: a tenant "acme" (alice holds admin, bob
// nothing) and one pdp instance on a clock of the test's.
type scenario struct {
	t     *testing.T
	f     *fixture
	in    *instance
	clock *testClock
}

const deletePerm = "users.delete.tenant"

// expect checks user's perm once and asserts the decision and the tier that answered it.
func (s *scenario) expect(tenant, user, perm string, allowed bool, reason pdp.Reason, want tier, step string) {
	s.t.Helper()
	res, got := s.in.checkTier(s.t, tenant, user, perm)
	assert.Equal(s.t, allowed, res.Allowed, "%s: allowed: got %v, want %v (reason %s)", step, res.Allowed, allowed, res.Reason)
	assert.Equal(s.t, reason, res.Reason, "%s: reason: got %s, want %s", step, res.Reason, reason)
	assert.Equal(s.t, want, got, "%s: tier: got %s, want %s", step, got, want)
	s.in.svc.WaitIdle() // what this check stored is in L1 (and Redis) before the next one
}

// commit runs SQL on the tenant's database and waits until the instance was notified of it.
func (s *scenario) commit(sql string) {
	s.t.Helper()
	s.f.exec(s.t, sql)
	s.in.waitFloor(s.t, s.f.tenant.ID, s.f.version(s.t))
}

// killListener terminates the instance's listener on the tenant's database (only there) and
// waits until the instance has seen it die.
func (s *scenario) killListener() {
	s.t.Helper()
	_, err := s.f.db.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, authzsync.ListenerApplicationName)
	require.NoError(s.t, err)
	db := authzsync.DatabaseKey(*s.f.tenant.ConnectionID, "")
	require.Eventually(s.t, func() bool {
		_, down := s.in.floors.DownSince(db)
		return down
	}, 20*time.Second, 5*time.Millisecond, "the listener never noticed its death")
}

const grantAdmin = `INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r
	WHERE u.external_id = $1 AND r.code = 'admin'`

// TestConsistencyScenarios: for each change a user relies on, the decision after it and the
// cache tier that answered (a change the pdp was told about never answers from a tier holding
// older data; an unchanged answer comes from the fastest tier that holds it).
func TestConsistencyScenarios(t *testing.T) {
	scenarios := []struct {
		name string
		cfg  pdp.Config
		// redis: the instance's Redis is a server of the test's own, which run may kill.
		redis bool
		run   func(s *scenario, srv *redistest.Server)
	}{
		{name: "revoke", run: func(s *scenario, _ *redistest.Server) {
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierLoad, "first check")
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierL1, "warm")
			s.commit(`DELETE FROM t_acme.user_roles`)
			s.expect("acme", "alice", deletePerm, false, pdp.ReasonNoPermission, tierLoad, "after the revoke")
			s.expect("acme", "alice", deletePerm, false, pdp.ReasonNoPermission, tierL1, "warm again")
		}},
		{name: "grant", run: func(s *scenario, _ *redistest.Server) {
			s.expect("acme", "bob", deletePerm, false, pdp.ReasonNoPermission, tierLoad, "first check")
			s.expect("acme", "bob", deletePerm, false, pdp.ReasonNoPermission, tierL1, "warm")
			s.f.exec(s.t, grantAdmin, "bob")
			s.in.waitFloor(s.t, s.f.tenant.ID, s.f.version(s.t))
			s.expect("acme", "bob", deletePerm, true, pdp.ReasonGranted, tierLoad, "after the grant")
			s.expect("acme", "bob", deletePerm, true, pdp.ReasonGranted, tierL1, "warm again")
		}},
		{name: "tenant suspended", run: func(s *scenario, _ *redistest.Server) {
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierLoad, "first check")
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierL1, "warm")
			ctx := context.Background()
			waitDir := func() {
				var v int64
				require.NoError(s.t, s.f.w.Admin.QueryRow(ctx, `SELECT version FROM admin.authz_state`).Scan(&v))
				require.Eventually(s.t, func() bool { return s.in.floors.DirFloor(s.f.tenant.ID) >= uint64(v) },
					20*time.Second, time.Millisecond, "the tenant notification never arrived")
			}
			_, err := s.f.w.Tenants.Suspend(ctx, "acme")
			require.NoError(s.t, err)
			waitDir()
			s.expect("acme", "alice", deletePerm, false, pdp.ReasonTenantSuspended, tierNone, "suspended: decided by the directory")
			_, err = s.f.w.Tenants.Activate(ctx, "acme")
			require.NoError(s.t, err)
			waitDir()
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierLoad, "re-activated: the set is read again")
		}},
		{name: "user inactive", run: func(s *scenario, _ *redistest.Server) {
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierLoad, "first check")
			s.commit(`UPDATE t_acme.users SET status = 'inactive' WHERE external_id = 'alice'`)
			s.expect("acme", "alice", deletePerm, false, pdp.ReasonUserInactive, tierLoad, "after deactivation")
			s.expect("acme", "alice", deletePerm, false, pdp.ReasonUserInactive, tierL1, "warm")
		}},
		{name: "listener killed", run: func(s *scenario, _ *redistest.Server) {
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierLoad, "first check")
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierL1, "warm")
			s.in.noResync.Store(true) // the listener cannot come back
			s.killListener()
			// The revoke's notification is lost.
			s.f.exec(s.t, `DELETE FROM t_acme.user_roles`)
			s.expect("acme", "alice", deletePerm, false, pdp.ReasonNoPermission, tierLoad, "listener down: PostgreSQL is read")
			s.expect("acme", "alice", deletePerm, false, pdp.ReasonNoPermission, tierLoad, "still down: nothing cached is trusted")
			// Another lost notification: the set read while down is now old.
			s.f.exec(s.t, grantAdmin, "alice")
			s.in.noResync.Store(false)
			s.in.waitUp(s.t, authzsync.DatabaseKey(*s.f.tenant.ConnectionID, ""))
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierLoad, "back: versions re-read, so the set is too")
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierL1, "warm again")
		}},
		{name: "Redis killed", redis: true, run: func(s *scenario, srv *redistest.Server) {
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierLoad, "first check")
			other := s.f.start(s.t, pdp.Config{}, nil)
			res, got := other.checkTier(s.t, "acme", "alice", deletePerm)
			require.True(s.t, res.Allowed)
			require.Equal(s.t, tierL2, got, "a second instance finds the set in Redis")
			srv.Kill()
			third := s.f.start(s.t, pdp.Config{}, nil)
			res, got = third.checkTier(s.t, "acme", "alice", deletePerm)
			assert.True(s.t, res.Allowed, "Redis down: the same decision")
			assert.Equal(s.t, tierLoad, got, "Redis down: read from PostgreSQL")
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierL1, "L1 keeps serving")
			s.commit(`DELETE FROM t_acme.user_roles`)
			s.expect("acme", "alice", deletePerm, false, pdp.ReasonNoPermission, tierLoad, "a revoke while Redis is down")
			s.expect("acme", "alice", deletePerm, false, pdp.ReasonNoPermission, tierL1, "warm")
		}},
		{name: "unknown tenant created later", run: func(s *scenario, _ *redistest.Server) {
			s.expect("globex", "carol", deletePerm, false, pdp.ReasonUnknownTenant, tierNone, "no such tenant")
			s.expect("globex", "carol", deletePerm, false, pdp.ReasonUnknownTenant, tierNone, "still none")
			ctx := context.Background()
			tn, err := s.f.w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "globex", Region: "us-east-1", Realm: "globex"})
			require.NoError(s.t, err)
			_, err = s.f.db.Exec(ctx, `INSERT INTO t_globex.users (external_id) VALUES ('carol');
				INSERT INTO t_globex.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_globex.users u, t_globex.roles r WHERE r.code = 'owner'`)
			require.NoError(s.t, err)
			var v int64
			require.NoError(s.t, s.f.db.QueryRow(ctx, `SELECT version FROM t_globex.authz_state`).Scan(&v))
			s.in.waitFloor(s.t, tn.ID, uint64(v))
			s.expect("globex", "carol", deletePerm, true, pdp.ReasonGranted, tierLoad, "created: found and read")
			s.expect("globex", "carol", deletePerm, true, pdp.ReasonGranted, tierL1, "warm")
		}},
		{name: "MaxStaleness runs out", cfg: pdp.Config{MaxStaleness: time.Minute}, run: func(s *scenario, _ *redistest.Server) {
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierLoad, "first check")
			s.in.noResync.Store(true)
			s.in.down.Store(true) // and the database cannot be read
			s.killListener()
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierL1, "within MaxStaleness: the cached decision")
			_, _, err := s.in.checkErr(s.t, "acme", "bob", deletePerm)
			require.Error(s.t, err, "nothing cached for bob: cannot decide")
			// (Real time passes too: the steps leave it half the allowance.)
			s.clock.Advance(30 * time.Second)
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierL1, "still within MaxStaleness")
			s.clock.Advance(31 * time.Second)
			res, got, err := s.in.checkErr(s.t, "acme", "alice", deletePerm)
			require.Error(s.t, err, "past MaxStaleness nothing cached is used, and PostgreSQL cannot be read")
			assert.True(s.t, pdp.IsUnavailable(err))
			assert.False(s.t, res.Allowed)
			assert.Equal(s.t, tierNone, got)
			s.in.down.Store(false)
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierLoad, "readable again: read, not cached")
		}},
		{name: "unknown user TTL", cfg: pdp.Config{UnknownUserTTL: time.Minute}, run: func(s *scenario, _ *redistest.Server) {
			s.expect("acme", "nobody", deletePerm, false, pdp.ReasonUnknownUser, tierLoad, "first check")
			s.expect("acme", "nobody", deletePerm, false, pdp.ReasonUnknownUser, tierL1, "cached")
			s.clock.Advance(30 * time.Second)
			s.expect("acme", "nobody", deletePerm, false, pdp.ReasonUnknownUser, tierL1, "within the TTL")
			s.clock.Advance(31 * time.Second)
			s.expect("acme", "nobody", deletePerm, false, pdp.ReasonUnknownUser, tierLoad, "past the TTL: read again")
			// A known user's set is not bound by it.
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierLoad, "alice first check")
			s.clock.Advance(2 * time.Minute)
			s.expect("acme", "alice", deletePerm, true, pdp.ReasonGranted, tierL1, "alice later")
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			f := newFixture(t)
			var srv *redistest.Server
			if sc.redis {
				srv = redistest.StartServer(t)
				rdb, err := cache.ParseRedisURL(srv.URL())
				require.NoError(t, err)
				t.Cleanup(func() { _ = rdb.Close() })
				f.rdb = rdb
			}
			clock := &testClock{}
			cfg := sc.cfg
			cfg.Clock = clock.Now
			sc.run(&scenario{t: t, f: f, in: f.start(t, cfg, nil), clock: clock}, srv)
		})
	}
}
