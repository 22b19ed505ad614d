package pdp_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/pdp"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/redistest"
	"github.com/neofast/neoauthz/internal/registry"
	authzsync "github.com/neofast/neoauthz/internal/sync"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// fixture is a tenant with users and a running pdp (or several sharing one Redis).
type fixture struct {
	w      *testenv.World
	tenant tenancy.Tenant
	db     *pgxpool.Pool // the tenant's regional database
	rdb    redis.UniversalClient
	prefix string
	// storeOpts are the options of each instance's store (its Registerer is the instance's).
	storeOpts pgstore.Options
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	w := testenv.New(t, "pdp")
	return newFixtureOn(t, w, w.AddRegion(t, "us-east-1"))
}

// newFixtureOn provisions the fixture's tenant on primary, a registered database of region
// us-east-1, and adds its users.
func newFixtureOn(t testing.TB, w *testenv.World, primary registry.Connection) *fixture {
	t.Helper()
	ctx := context.Background()
	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"})
	require.NoError(t, err)
	f := &fixture{w: w, tenant: tn, db: w.Connect(t, primary, "")}
	f.rdb, f.prefix = redistest.Client(t, "pdp")
	f.exec(t, `INSERT INTO t_acme.users (external_id) VALUES ('alice'), ('bob')`)
	f.exec(t, `INSERT INTO t_acme.teams (slug, name) VALUES ('eng', 'Engineering')`)
	f.exec(t, `INSERT INTO t_acme.user_roles (user_id, role_id)
		SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r WHERE u.external_id = 'alice' AND r.code = 'admin'`)
	return f
}

func (f *fixture) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	_, err := f.db.Exec(context.Background(), sql, args...)
	require.NoError(t, err, sql)
}

func (f *fixture) version(t testing.TB) uint64 {
	t.Helper()
	var v int64
	require.NoError(t, f.db.QueryRow(context.Background(), `SELECT version FROM t_acme.authz_state`).Scan(&v))
	return uint64(v)
}

// instance is one pdp: its own floors, listeners and L1, sharing Redis with the others.
type instance struct {
	svc     *pdp.Service
	floors  *authzsync.Floors
	down    *atomic.Bool
	lookups *atomic.Int64      // tenant directory reads
	mgr     *authzsync.Manager // nil when notifications are held back
	store   *pgstore.Store
	reg     *prometheus.Registry // the service's and the manager's metrics (which cache tier answered)
	loads   *atomic.Int64        // tenant permission-set loads from PostgreSQL
	// noResync makes the listeners' version reads of regional databases fail, so a killed
	// listener stays down until it is cleared.
	noResync *atomic.Bool
}

// storeHook wraps the real store to hold a load after its read, or to make loads fail as
// they would with the database unreachable.
type storeHook struct {
	*pgstore.Store
	afterLoad func()
	down      *atomic.Bool
	lookups   *atomic.Int64 // tenant directory reads
	loads     *atomic.Int64 // tenant permission-set loads
}

func (h storeHook) Tenant(ctx context.Context, idOrSlug string) (pgstore.Tenant, error) {
	h.lookups.Add(1)
	return h.Store.Tenant(ctx, idOrSlug)
}

func (h storeHook) FillTenantUser(ctx context.Context, t pgstore.Tenant, user string, floor func() uint64) (decision.Input, error) {
	if h.down.Load() {
		return decision.Input{}, errors.New("dial tcp: connection refused")
	}
	h.loads.Add(1)
	in, err := h.Store.FillTenantUser(ctx, t, user, floor)
	if h.afterLoad != nil {
		h.afterLoad()
	}
	return in, err
}

// versionsHook wraps the store the sync manager reads versions from.
type versionsHook struct {
	*pgstore.Store
	blocked *atomic.Bool
}

func (h versionsHook) DatabaseVersions(ctx context.Context, connectionID, database string) (map[string]uint64, error) {
	if h.blocked.Load() {
		return nil, errors.New("versions cannot be read")
	}
	return h.Store.DatabaseVersions(ctx, connectionID, database)
}

func (f *fixture) start(t testing.TB, cfg pdp.Config, afterLoad func()) *instance {
	t.Helper()
	in := f.newInstance(t, cfg, afterLoad)
	ctx, cancel := context.WithCancel(context.Background())
	in.mgr = authzsync.New(authzsync.Config{AdminURL: f.w.AdminURL, Heartbeat: 500 * time.Millisecond,
		PollInterval: time.Second, RegistryInterval: 200 * time.Millisecond},
		in.floors, f.w.Admin, f.w.Registry, versionsHook{Store: in.store, blocked: in.noResync}, in.svc.TenantChanged, slog.New(slog.DiscardHandler), in.reg)
	mgr := in.mgr
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mgr.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	in.waitUp(t, authzsync.AdminDatabase)
	in.waitUp(t, authzsync.DatabaseKey(*f.tenant.ConnectionID, ""))
	return in
}

// startHeld starts a pdp that never hears a notification: its databases count as listened
// to (cached data is trusted) but no floor ever rises, as if every notification were lost.
// Only what a request asks for (a consistency token) can make it read newer data.
func (f *fixture) startHeld(t testing.TB, cfg pdp.Config) *instance {
	t.Helper()
	in := f.newInstance(t, cfg, nil)
	in.floors.MarkUp(authzsync.AdminDatabase)
	in.floors.MarkUp(authzsync.DatabaseKey(*f.tenant.ConnectionID, ""))
	return in
}

func (f *fixture) newInstance(t testing.TB, cfg pdp.Config, afterLoad func()) *instance {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts := f.storeOpts
	opts.Registerer = reg
	store := pgstore.New(f.w.Admin, f.w.Registry, opts)
	floors := &authzsync.Floors{}
	cfg.Cache.Prefix = f.prefix
	down, lookups, loads := &atomic.Bool{}, &atomic.Int64{}, &atomic.Int64{}
	svc, err := pdp.New(cfg, nil, storeHook{Store: store, afterLoad: afterLoad, down: down, lookups: lookups, loads: loads}, f.w.Admin, floors, f.rdb,
		slog.New(slog.DiscardHandler), reg)
	require.NoError(t, err)
	t.Cleanup(func() {
		svc.Close()
		store.Close()
	})
	return &instance{svc: svc, floors: floors, store: store, down: down, lookups: lookups, loads: loads, reg: reg,
		noResync: &atomic.Bool{}}
}

// reconnects reads sync_listener_reconnects_total for db from the instance's manager.
func (in *instance) reconnects(t testing.TB, db string) float64 {
	t.Helper()
	mfs, err := in.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "sync_listener_reconnects_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "database" && l.GetValue() == db {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// killListeners terminates the listener connections of the database pool is connected to,
// and only those: other packages' tests run on the same server at the same time.
func killListeners(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, authzsync.ListenerApplicationName)
	require.NoError(t, err)
}

// tenantWrite runs sql on the tenant's schema and returns the consistency token the admin
// API returns for it: the schema's version read in the writing transaction.
func (f *fixture) tenantWrite(t testing.TB, sql string) consistency.Token {
	t.Helper()
	v := writeAt(t, f.db, sql, `SELECT version FROM t_acme.authz_state`)
	tok, err := consistency.ForTenant(f.tenant.ID, v)
	require.NoError(t, err)
	return tok
}

// adminWrite runs sql on the admin database and returns its consistency token.
func (f *fixture) adminWrite(t testing.TB, sql string) consistency.Token {
	t.Helper()
	return consistency.ForAdmin(writeAt(t, f.w.Admin, sql, `SELECT version FROM admin.authz_state`))
}

// writeAt runs sql and then version in one transaction and returns the version.
func writeAt(t testing.TB, pool *pgxpool.Pool, sql, version string) uint64 {
	t.Helper()
	ctx := context.Background()
	var v int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sql); err != nil {
			return err
		}
		return tx.QueryRow(ctx, version).Scan(&v)
	})
	require.NoError(t, err, sql)
	return uint64(v)
}

func (in *instance) waitUp(t testing.TB, db string) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, down := in.floors.DownSince(db)
		return !down
	}, 10*time.Second, 5*time.Millisecond, "listener of %s never came up", db)
}

// waitFloor waits until the instance has received notifications up to version v.
func (in *instance) waitFloor(t testing.TB, tenantID string, v uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return in.floors.Seen(tenantID) >= v }, 10*time.Second, time.Millisecond,
		"notification for version %d never arrived", v)
}

func (in *instance) check(t testing.TB, tenant, user, perm string) pdp.Result {
	t.Helper()
	sub, err := in.svc.SubjectFromPrincipal(context.Background(), tenant, user)
	require.NoError(t, err)
	res, err := in.svc.Check(context.Background(), sub, pdp.Request{Permission: perm})
	require.NoError(t, err)
	return res
}

func TestRevocationsDenyOnceNotified(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	const perm = "users.delete.tenant"

	// Concurrent checks run all along; they must never error, except in one way: a load
	// overtaken by a newer notification is loaded once more, and when that one is overtaken too
	// (the writes below come as fast as notifications arrive; on a busy machine a load can
	// outlast two of them) the cache reports ErrStaleLoad rather than answer from data it knows
	// is old. That is a "cannot decide", never a wrong decision; it is counted, and most checks
	// must still succeed.
	stop := make(chan struct{})
	var wg gosync.WaitGroup
	var background, staleLoads atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub, _ := in.svc.SubjectFromPrincipal(context.Background(), "acme", "alice")
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := in.svc.Check(context.Background(), sub, pdp.Request{Permission: perm})
				if errors.Is(err, cache.ErrStaleLoad) {
					assert.True(t, pdp.IsUnavailable(err), "a stale load is reported as unavailable: %v", err)
					staleLoads.Add(1)
					continue
				}
				assert.NoError(t, err)
				background.Add(1)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	revocations := []struct {
		name   string
		revoke string
		reason pdp.Reason
		grant  string
	}{
		{"assignment", `DELETE FROM t_acme.user_roles WHERE user_id = (SELECT id FROM t_acme.users WHERE external_id = 'alice')`, pdp.ReasonNoPermission,
			`INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r WHERE u.external_id = 'alice' AND r.code = 'admin'`},
		{"role permission", `DELETE FROM t_acme.role_permissions WHERE role_id = (SELECT id FROM t_acme.roles WHERE code = 'admin') AND permission_id = (SELECT id FROM t_acme.permissions WHERE code = 'users.*.tenant')`, pdp.ReasonNoPermission,
			`INSERT INTO t_acme.role_permissions (role_id, permission_id) SELECT r.id, p.id FROM t_acme.roles r, t_acme.permissions p WHERE r.code = 'admin' AND p.code = 'users.*.tenant'`},
		{"role deactivated", `UPDATE t_acme.roles SET is_active = false WHERE code = 'admin'`, pdp.ReasonNoPermission,
			`UPDATE t_acme.roles SET is_active = true WHERE code = 'admin'`},
		{"explicit deny", `INSERT INTO t_acme.user_permissions (user_id, permission_id, is_granted) SELECT u.id, p.id, false FROM t_acme.users u, t_acme.permissions p WHERE u.external_id = 'alice' AND p.code = 'users.delete.tenant'`, pdp.ReasonExplicitDeny,
			`DELETE FROM t_acme.user_permissions`},
		{"user deactivated", `UPDATE t_acme.users SET status = 'inactive' WHERE external_id = 'alice'`, pdp.ReasonUserInactive,
			`UPDATE t_acme.users SET status = 'active' WHERE external_id = 'alice'`},
	}
	for round := range 5 {
		for _, r := range revocations {
			res := in.check(t, "acme", "alice", perm)
			require.True(t, res.Allowed, "round %d %s: allowed before the revocation", round, r.name)
			f.exec(t, r.revoke)
			in.waitFloor(t, f.tenant.ID, f.version(t))
			res = in.check(t, "acme", "alice", perm)
			assert.False(t, res.Allowed, "round %d %s: the next check after the notification must deny", round, r.name)
			assert.Equal(t, r.reason, res.Reason, "round %d %s", round, r.name)
			f.exec(t, r.grant)
			in.waitFloor(t, f.tenant.ID, f.version(t))
		}
	}
	assert.Positive(t, background.Load())
	assert.Less(t, staleLoads.Load(), background.Load(), "most concurrent checks are answered")
}

func TestStaleFillIsNeverCachedAsCurrent(t *testing.T) {
	f := newFixture(t)
	var hold atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	in := f.start(t, pdp.Config{}, func() {
		if hold.CompareAndSwap(true, false) {
			close(held)
			<-release
		}
	})
	hold.Store(true)
	type outcome struct {
		res pdp.Result
		err error
	}
	result := make(chan outcome, 1)
	go func() {
		// No assertions here: the result goes back to the test goroutine, which checks it.
		sub, err := in.svc.SubjectFromPrincipal(context.Background(), "acme", "alice")
		if err != nil {
			result <- outcome{err: err}
			return
		}
		res, err := in.svc.Check(context.Background(), sub, pdp.Request{Permission: "users.delete.tenant"})
		result <- outcome{res: res, err: err}
	}()
	select {
	case <-held: // the loader has read alice's admin role
	case out := <-result:
		t.Fatalf("the check returned before its loader ran: %+v", out)
	}

	f.exec(t, `DELETE FROM t_acme.user_roles`)
	in.waitFloor(t, f.tenant.ID, f.version(t))
	close(release)

	out := <-result
	require.NoError(t, out.err)
	assert.False(t, out.res.Allowed, "a fill that read before the revoke must not be used after its notification")
	res := in.check(t, "acme", "alice", "users.delete.tenant")
	assert.False(t, res.Allowed, "nor cached as current")
	assert.GreaterOrEqual(t, res.Version, f.version(t))
}

func TestListenerKilledNoStaleAllow(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	require.True(t, in.check(t, "acme", "alice", "users.delete.tenant").Allowed)

	// Kill the listeners and keep them from coming back (their version re-read fails), so the
	// revoke below is committed while the listener is known to be down: its notification is
	// lost, and the guarantee is that nothing cached is trusted meanwhile.
	db := authzsync.DatabaseKey(*f.tenant.ConnectionID, "")
	before := in.reconnects(t, db)
	in.noResync.Store(true)
	killListeners(t, f.db)
	// Wait until the listener has seen its death: a revoke committed before that is notified
	// on a connection still counted as up (the window BenchmarkListenerDeathWindow measures),
	// which is not what this test is about.
	require.Eventually(t, func() bool { return in.reconnects(t, db) > before }, 10*time.Second, time.Millisecond,
		"the listener never noticed it was killed")
	_, down := in.floors.DownSince(db)
	require.True(t, down, "the listener is held down")
	f.exec(t, `DELETE FROM t_acme.user_roles`)

	// Down: nothing cached is trusted, PostgreSQL is read.
	assert.False(t, in.check(t, "acme", "alice", "users.delete.tenant").Allowed, "listener down")
	// Back: the versions were re-read after the revoke committed, so the old set is not used.
	in.noResync.Store(false)
	in.waitUp(t, db)
	assert.False(t, in.check(t, "acme", "alice", "users.delete.tenant").Allowed, "listener back")
}

func TestTwoInstancesSharingRedis(t *testing.T) {
	f := newFixture(t)
	a := f.start(t, pdp.Config{}, nil)
	b := f.start(t, pdp.Config{}, nil)
	res, got := a.checkTier(t, "acme", "alice", "users.delete.tenant")
	require.True(t, res.Allowed)
	require.Equal(t, tierLoad, got)
	a.svc.WaitIdle()
	res, got = b.checkTier(t, "acme", "alice", "users.delete.tenant")
	require.True(t, res.Allowed)
	require.Equal(t, tierL2, got, "b is served from a's Redis entry")

	key, err := cache.TenantUserKey(f.tenant.ID, "alice")
	require.NoError(t, err)
	old, err := f.rdb.Get(context.Background(), f.prefix+key).Bytes()
	require.NoError(t, err, "a's fill reached Redis")

	f.exec(t, `DELETE FROM t_acme.user_roles`)
	v := f.version(t)
	a.waitFloor(t, f.tenant.ID, v)
	b.waitFloor(t, f.tenant.ID, v)
	for name, in := range map[string]*instance{"a": a, "b": b} {
		res, got := in.checkTier(t, "acme", "alice", "users.delete.tenant")
		assert.False(t, res.Allowed, name)
		assert.NotEqual(t, tierL1, got, "%s: the old L1 entry is not used after the notification", name)
	}

	// An instance that missed the change writes its old entry back into Redis: nobody uses it.
	a.svc.WaitIdle()
	b.svc.WaitIdle()
	require.NoError(t, f.rdb.Set(context.Background(), f.prefix+key, old, time.Minute).Err())
	c := f.start(t, pdp.Config{}, nil)
	c.waitFloor(t, f.tenant.ID, v)
	res, got = c.checkTier(t, "acme", "alice", "users.delete.tenant")
	assert.False(t, res.Allowed)
	assert.Equal(t, tierLoad, got, "the old Redis entry is a miss: c loads")
	for _, in := range []*instance{a, b, c} {
		assert.False(t, in.check(t, "acme", "alice", "users.delete.tenant").Allowed)
	}
}

func TestTenantSuspendedDeniesEverywhere(t *testing.T) {
	f := newFixture(t)
	a := f.start(t, pdp.Config{}, nil)
	b := f.start(t, pdp.Config{}, nil)
	for _, in := range []*instance{a, b} {
		require.True(t, in.check(t, "acme", "alice", "users.delete.tenant").Allowed)
	}
	_, err := f.w.Tenants.Suspend(context.Background(), "acme")
	require.NoError(t, err)
	var admin int64
	require.NoError(t, f.w.Admin.QueryRow(context.Background(), `SELECT version FROM admin.authz_state`).Scan(&admin))
	for _, in := range []*instance{a, b} {
		require.Eventually(t, func() bool { return in.floors.DirFloor(f.tenant.ID) >= uint64(admin) }, 10*time.Second, time.Millisecond)
		res := in.check(t, "acme", "alice", "users.delete.tenant")
		assert.False(t, res.Allowed)
		assert.Equal(t, pdp.ReasonTenantSuspended, res.Reason)
	}
}

func TestNewRegionalDatabaseIsListenedTo(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	ctx := context.Background()
	eu := f.w.AddRegion(t, "eu-west-1")
	tn, err := f.w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "globex", Region: "eu-west-1", Realm: "globex"})
	require.NoError(t, err)
	in.waitUp(t, authzsync.DatabaseKey(eu.ID, ""))

	db := f.w.Connect(t, eu, "")
	_, err = db.Exec(ctx, `INSERT INTO t_globex.users (external_id) VALUES ('carol');
		INSERT INTO t_globex.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_globex.users u, t_globex.roles r WHERE r.code = 'owner'`)
	require.NoError(t, err)
	require.True(t, in.check(t, "globex", "carol", "billing.delete.tenant").Allowed)
	_, err = db.Exec(ctx, `DELETE FROM t_globex.user_roles`)
	require.NoError(t, err)
	var v int64
	require.NoError(t, db.QueryRow(ctx, `SELECT version FROM t_globex.authz_state`).Scan(&v))
	in.waitFloor(t, tn.ID, uint64(v))
	assert.False(t, in.check(t, "globex", "carol", "billing.delete.tenant").Allowed)

	// A database deactivated in the registry is dropped without a restart.
	_, err = f.w.Registry.Deactivate(ctx, eu.Name)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, down := in.floors.DownSince(authzsync.DatabaseKey(eu.ID, ""))
		return down
	}, 10*time.Second, 10*time.Millisecond)
}

func TestDatabasePerTenantIsListenedTo(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	ctx := context.Background()
	slug := "own-" + f.tenant.ID[:8]
	t.Cleanup(func() { pgtest.Drop(t, f.w.Server(), tenancy.DatabaseName(slug)) })
	tn, err := f.w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: slug, Region: "us-east-1", Realm: slug, Deployment: tenancy.DeployDatabase})
	require.NoError(t, err)
	in.waitUp(t, authzsync.DatabaseKey(*tn.ConnectionID, *tn.DatabaseName))

	primary, err := f.w.Registry.GetConnection(ctx, *tn.ConnectionID)
	require.NoError(t, err)
	db := f.w.Connect(t, primary, *tn.DatabaseName)
	schema := tn.SchemaName
	_, err = db.Exec(ctx, `INSERT INTO `+schema+`.users (external_id) VALUES ('erin');
		INSERT INTO `+schema+`.user_roles (user_id, role_id) SELECT u.id, r.id FROM `+schema+`.users u, `+schema+`.roles r WHERE r.code = 'owner'`)
	require.NoError(t, err)
	require.True(t, in.check(t, slug, "erin", "billing.delete.tenant").Allowed)
	_, err = db.Exec(ctx, `DELETE FROM `+schema+`.user_roles`)
	require.NoError(t, err)
	var v int64
	require.NoError(t, db.QueryRow(ctx, `SELECT version FROM `+schema+`.authz_state`).Scan(&v))
	in.waitFloor(t, tn.ID, uint64(v))
	assert.False(t, in.check(t, slug, "erin", "billing.delete.tenant").Allowed)
}

// TestReadYourWrites runs a pdp that never hears a notification: only the consistency
// token a write returned can make a check see the write.
func TestReadYourWrites(t *testing.T) {
	f := newFixture(t)
	in := f.startHeld(t, pdp.Config{})
	ctx := context.Background()
	check := func(t *testing.T, tenant, user, perm string, tok consistency.Token) (pdp.Result, error) {
		t.Helper()
		if err := in.svc.Await(ctx, tok); err != nil {
			return pdp.Result{}, err
		}
		sub, err := in.svc.SubjectFromPrincipal(ctx, tenant, user)
		require.NoError(t, err)
		return in.svc.Check(ctx, sub, pdp.Request{Permission: perm, Consistency: tok})
	}
	res, err := check(t, "acme", "bob", "projects.read.team", consistency.Token{})
	require.NoError(t, err)
	require.False(t, res.Allowed)
	in.svc.WaitIdle()

	t.Run("tenant part: a grant", func(t *testing.T) {
		tok := f.tenantWrite(t, `INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id
			FROM t_acme.users u, t_acme.roles r WHERE u.external_id = 'bob' AND r.code = 'viewer'`)
		res, err := check(t, "acme", "bob", "projects.read.team", consistency.Token{})
		require.NoError(t, err)
		require.False(t, res.Allowed, "without the token the cached set is used: notifications are really held back")
		res, err = check(t, "acme", "bob", "projects.read.team", tok)
		require.NoError(t, err)
		assert.True(t, res.Allowed, "got a deny, want the write the token names")
		assert.GreaterOrEqual(t, res.Token.TenantVersion(f.tenant.ID), tok.TenantVersion(f.tenant.ID))
		assert.Positive(t, res.Token.Admin, "the answer names the directory entry used")
	})
	t.Run("tenant part: a revocation", func(t *testing.T) {
		require.True(t, in.check(t, "acme", "alice", "users.delete.tenant").Allowed)
		in.svc.WaitIdle()
		tok := f.tenantWrite(t, `DELETE FROM t_acme.user_roles WHERE user_id = (SELECT id FROM t_acme.users WHERE external_id = 'alice')`)
		require.True(t, in.check(t, "acme", "alice", "users.delete.tenant").Allowed, "without the token the cached set is used")
		res, err := check(t, "acme", "alice", "users.delete.tenant", tok)
		require.NoError(t, err)
		assert.False(t, res.Allowed, "got an allow from before the revocation the token names")
	})
	t.Run("admin part: the tenant directory", func(t *testing.T) {
		tok := f.adminWrite(t, `UPDATE admin.tenants SET status = 'suspended' WHERE slug = 'acme'`)
		res, err := check(t, "acme", "bob", "projects.read.team", consistency.Token{})
		require.NoError(t, err)
		require.True(t, res.Allowed, "without the token the cached directory entry is used")
		res, err = check(t, "acme", "bob", "projects.read.team", tok)
		require.NoError(t, err)
		assert.Equal(t, pdp.ReasonTenantSuspended, res.Reason)
		assert.GreaterOrEqual(t, res.Token.Admin, tok.Admin)
		tok = f.adminWrite(t, `UPDATE admin.tenants SET status = 'active' WHERE slug = 'acme'`)
		res, err = check(t, "acme", "bob", "projects.read.team", tok)
		require.NoError(t, err)
		assert.True(t, res.Allowed)
	})
	t.Run("impossible versions are invalid requests without a load", func(t *testing.T) {
		tenantTok, err := consistency.ForTenant(f.tenant.ID, f.version(t)+1000)
		require.NoError(t, err)
		unknown, err := consistency.ForTenant("00000000-0000-4000-8000-000000000000", 1)
		require.NoError(t, err)
		loads := in.loads.Load()
		for name, tok := range map[string]consistency.Token{
			"tenant part":    tenantTok,
			"admin part":     consistency.ForAdmin(1 << 40),
			"unknown tenant": unknown,
		} {
			_, err := check(t, "acme", "bob", "projects.read.team", tok)
			require.ErrorIs(t, err, pdp.ErrInvalidRequest, name)
			assert.False(t, pdp.IsUnavailable(err), "%s: got could-not-decide, want an invalid request", name)
		}
		assert.Equal(t, loads, in.loads.Load(), "an impossible token made the pdp load permission sets")
	})
}

func TestReasonsAndErrors(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	ctx := context.Background()
	assert.Equal(t, pdp.ReasonUnknownUser, in.check(t, "acme", "nobody", "users.read.tenant").Reason)
	assert.Equal(t, pdp.ReasonUnknownTenant, in.check(t, "no-such-tenant", "alice", "users.read.tenant").Reason)
	res := in.check(t, "acme", "alice", "users.read.tenant")
	assert.Equal(t, pdp.ReasonGranted, res.Reason)
	assert.Equal(t, "admin", res.Grant.Role)
	assert.NotEmpty(t, res.DecisionID)

	sub, err := in.svc.SubjectFromPrincipal(ctx, "acme", "alice")
	require.NoError(t, err)
	for _, bad := range []pdp.Request{
		{Permission: "users.*.tenant"},
		{Permission: "users.read.platform"},
		{Permission: "users.read", Resource: &pdp.Resource{Tenant: "acme"}},
	} {
		_, err := in.svc.Check(ctx, sub, bad)
		require.ErrorIs(t, err, pdp.ErrInvalidRequest, "%+v", bad)
	}
	res, err = in.svc.Check(ctx, sub, pdp.Request{Permission: "users.read.tenant", BoundTenant: "other"})
	require.NoError(t, err)
	assert.Equal(t, pdp.ReasonCrossTenant, res.Reason)
	res, err = in.svc.Check(ctx, sub, pdp.Request{Permission: "users.read.tenant", BoundTenant: "acme"})
	require.NoError(t, err)
	assert.True(t, res.Allowed)

	perms, used, err := in.svc.ListPermissions(ctx, sub, consistency.Token{})
	require.NoError(t, err)
	assert.Contains(t, perms, "users.delete.tenant")
	assert.NotContains(t, perms, "billing.read.tenant")
	assert.Equal(t, f.version(t), used.TenantVersion(f.tenant.ID))
	assert.Positive(t, used.Admin)
}

func TestDatabaseDownFailsClosed(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	require.True(t, in.check(t, "acme", "alice", "users.delete.tenant").Allowed)
	// The registry now points the tenant's database at a dead address: the listener goes
	// down, loads fail, and nothing cached is trusted (the default maximum staleness is 0).
	ctx := context.Background()
	_, err := f.w.Admin.Exec(ctx, `UPDATE admin.database_connections SET port = 1 WHERE id = $1`, *f.tenant.ConnectionID)
	require.NoError(t, err)
	killListeners(t, f.db)
	in.down.Store(true) // and reads of it fail
	require.Eventually(t, func() bool {
		_, down := in.floors.DownSince(authzsync.DatabaseKey(*f.tenant.ConnectionID, ""))
		return down
	}, 10*time.Second, 10*time.Millisecond)
	sub, err := in.svc.SubjectFromPrincipal(ctx, "acme", "alice")
	require.NoError(t, err)
	_, err = in.svc.Check(ctx, sub, pdp.Request{Permission: "users.delete.tenant"})
	require.Error(t, err, "never an allow from data that may be stale")
	assert.True(t, pdp.IsUnavailable(err))
}

func TestMaxStalenessServesCachedWhileDown(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{MaxStaleness: time.Hour}, nil)
	require.True(t, in.check(t, "acme", "alice", "users.delete.tenant").Allowed)
	ctx := context.Background()
	_, err := f.w.Admin.Exec(ctx, `UPDATE admin.database_connections SET port = 1 WHERE id = $1`, *f.tenant.ConnectionID)
	require.NoError(t, err)
	killListeners(t, f.db)
	in.down.Store(true)
	require.Eventually(t, func() bool {
		_, down := in.floors.DownSince(authzsync.DatabaseKey(*f.tenant.ConnectionID, ""))
		return down
	}, 10*time.Second, 10*time.Millisecond)
	assert.True(t, in.check(t, "acme", "alice", "users.delete.tenant").Allowed,
		"an operator who allows an hour of staleness gets the cached decision")
	sub, err := in.svc.SubjectFromPrincipal(ctx, "acme", "bob")
	require.NoError(t, err)
	_, err = in.svc.Check(ctx, sub, pdp.Request{Permission: "users.delete.tenant"})
	require.Error(t, err, "nothing cached for bob: cannot decide")
}

func TestRedisDiesMidTrafficAndReturns(t *testing.T) {
	f := newFixture(t)
	srv := redistest.StartServer(t)
	rdb, err := cache.ParseRedisURL(srv.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	f.rdb = rdb
	// A generous Redis timeout: a killed Redis refuses at once, and a live one must not look
	// dead because a busy machine delayed its answer past the 50ms default.
	in := f.start(t, pdp.Config{Cache: cache.Options{Timeout: 10 * time.Second}}, nil)
	ctx := context.Background()

	stop := make(chan struct{})
	var wg gosync.WaitGroup
	var checks, failures atomic.Int64
	for _, user := range []string{"alice", "bob", "nobody"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub, _ := in.svc.SubjectFromPrincipal(ctx, "acme", user)
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := in.svc.Check(ctx, sub, pdp.Request{Permission: "users.delete.tenant"})
				if err != nil || res.Allowed != (user == "alice") {
					failures.Add(1)
				}
				checks.Add(1)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	// Traffic flows (and Redis holds entries) before it dies.
	require.Eventually(t, func() bool { return checks.Load() > 30 }, 30*time.Second, 5*time.Millisecond, "no traffic")
	srv.Kill()
	// Revoke while Redis is down: L1 + PostgreSQL still follow the notification.
	f.exec(t, `UPDATE t_acme.users SET status = status WHERE external_id = 'bob'`)
	in.waitFloor(t, f.tenant.ID, f.version(t))
	require.Eventually(t, func() bool { return in.svc.Health(ctx)["redis"].Status == "degraded" }, 10*time.Second, 10*time.Millisecond)
	before := checks.Load()
	assert.Eventually(t, func() bool { return checks.Load() > before+10 }, 30*time.Second, 5*time.Millisecond,
		"checks keep flowing without Redis")

	srv.Start()
	// A new fill after Redis returns lands in Redis again.
	f.exec(t, `INSERT INTO t_acme.users (external_id) VALUES ('carol')`)
	in.waitFloor(t, f.tenant.ID, f.version(t))
	key, err := cache.TenantUserKey(f.tenant.ID, "carol")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		in.check(t, "acme", "carol", "users.read.tenant")
		in.svc.WaitIdle()
		n, err := rdb.Exists(ctx, f.prefix+key).Result()
		return err == nil && n == 1
	}, 60*time.Second, 100*time.Millisecond, "Redis is used again after it returns")
	assert.Equal(t, "ok", in.svc.Health(ctx)["redis"].Status)
	close(stop)
	wg.Wait()
	assert.Zero(t, failures.Load(), "no check failed or changed its answer while Redis was away")
}

func TestSameDecisionFromEveryTier(t *testing.T) {
	f := newFixture(t)
	a := f.start(t, pdp.Config{}, nil)
	perms := []string{"users.delete.tenant", "billing.read.tenant", "projects.read.team", "documents.update.own"}
	// collect checks every permission and asserts the tier that answered each: the first
	// from `first`, the rest from L1, which then holds what the first one found (for b, the set
	// decoded from Redis).
	collect := func(in *instance, first tier) []pdp.Result {
		t.Helper()
		var out []pdp.Result
		for i, p := range perms {
			res, got := in.checkTier(t, "acme", "alice", p)
			want := first
			if i > 0 {
				want = tierL1
			}
			require.Equal(t, want, got, "%s: got tier %s, want %s", p, got, want)
			in.svc.WaitIdle() // L1's buffered set applied, the Redis write done
			res.DecisionID = ""
			out = append(out, res)
		}
		return out
	}
	fromLoad := collect(a, tierLoad)
	fromL1 := collect(a, tierL1)
	b := f.start(t, pdp.Config{}, nil) // empty L1, same Redis
	fromL2 := collect(b, tierL2)
	assert.Equal(t, fromLoad, fromL1)
	assert.Equal(t, fromLoad, fromL2)
	assert.True(t, fromLoad[0].Allowed)
	assert.False(t, fromLoad[1].Allowed)
}

func TestBoundTenantForPlatformSubjects(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	ctx := context.Background()
	_, err := f.w.Admin.Exec(ctx, `INSERT INTO admin.platform_users (external_id) VALUES ('ops');
		INSERT INTO admin.platform_user_roles (user_id, role_id, tenant_id)
		SELECT u.id, r.id, t.id FROM admin.platform_users u, admin.platform_roles r, admin.tenants t
		WHERE u.external_id = 'ops' AND r.code = 'tenant_admin' AND t.slug = 'acme'`)
	require.NoError(t, err)
	sub, err := in.svc.SubjectFromPrincipal(ctx, "", "ops")
	require.NoError(t, err)
	check := func(req pdp.Request) pdp.Result {
		t.Helper()
		res, err := in.svc.Check(ctx, sub, req)
		require.NoError(t, err)
		return res
	}
	// /tenants/{tenant}/... on a platform route: the bound tenant is the target.
	res := check(pdp.Request{Permission: "tenants.read", Resource: &pdp.Resource{Tenant: "acme"}, BoundTenant: "acme"})
	assert.True(t, res.Allowed, "reason %s", res.Reason)
	res = check(pdp.Request{Permission: "tenants.read", Resource: &pdp.Resource{Tenant: f.tenant.ID}, BoundTenant: "acme"})
	assert.True(t, res.Allowed, "the same tenant by id")
	for name, req := range map[string]pdp.Request{
		"code check":       {Permission: "tenants.read.tenant", BoundTenant: "acme"},
		"another target":   {Permission: "tenants.read", Resource: &pdp.Resource{Tenant: "globex"}, BoundTenant: "acme"},
		"unknown bound":    {Permission: "tenants.read", Resource: &pdp.Resource{Tenant: "nope"}, BoundTenant: "nope"},
		"no target tenant": {Permission: "tenants.read", Resource: &pdp.Resource{OwnerID: "x"}, BoundTenant: "acme"},
	} {
		assert.Equal(t, pdp.ReasonCrossTenant, check(req).Reason, name)
	}
}

// invalidRequests break DESIGN §2's first rule in the ways a caller can.
var invalidRequests = map[string]pdp.Request{
	"wildcard":                      {Permission: "users.*.tenant"},
	"scope of the other level":      {Permission: "users.read.platform"},
	"no scope, no resource":         {Permission: "users.read"},
	"resource on a code check":      {Permission: "users.read.tenant", Resource: &pdp.Resource{OwnerID: "alice"}},
	"target tenant at tenant level": {Permission: "users.read", Resource: &pdp.Resource{Tenant: "acme"}},
	"permission of 1 MiB":           {Permission: "users.read." + strings.Repeat("x", 1<<20)},
	"owner id of 1 MiB":             {Permission: "users.read", Resource: &pdp.Resource{OwnerID: strings.Repeat("x", 1<<20)}},
	"team id with a control byte":   {Permission: "users.read", Resource: &pdp.Resource{TeamID: "t\x00"}},
	"bound tenant of 4 KiB":         {Permission: "users.read.tenant", BoundTenant: strings.Repeat("a", 4096)},
	"bound tenant not a slug":       {Permission: "users.read.tenant", BoundTenant: "Acme Corp"},
}

// TestInvalidRequestComesFirst: an invalid request is an API error whatever the tenant and
// user gates would say (DESIGN §2, order of evaluation), through every way a subject is named.
func TestInvalidRequestComesFirst(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	ctx := context.Background()
	f.exec(t, `INSERT INTO t_acme.users (external_id, status) VALUES ('sleepy', 'inactive')`)
	subject := func(tenant, user string) pdp.Subject {
		t.Helper()
		sub, err := in.svc.SubjectFromPrincipal(ctx, tenant, user)
		require.NoError(t, err)
		return sub
	}
	gates := map[string]pdp.Subject{
		"unknown tenant": subject("no-such-tenant", "alice"),
		"unknown user":   subject("acme", "nobody"),
		"inactive user":  subject("acme", "sleepy"),
		"granted user":   subject("acme", "alice"),
	}
	check := func(gate string, sub pdp.Subject) {
		t.Helper()
		for name, req := range invalidRequests {
			res, err := in.svc.Check(ctx, sub, req)
			require.ErrorIs(t, err, pdp.ErrInvalidRequest, "%s, %s: got %v (reason %s), want an invalid request", gate, name, err, res.Reason)
			assert.False(t, res.Allowed)
		}
		// Cross-tenant is a tenant gate too.
		req := pdp.Request{Permission: "users.*.tenant", BoundTenant: "other"}
		_, err := in.svc.Check(ctx, sub, req)
		require.ErrorIs(t, err, pdp.ErrInvalidRequest, "%s, bound to another tenant: got %v", gate, err)
	}
	for gate, sub := range gates {
		check(gate, sub)
	}

	_, err := f.w.Tenants.Suspend(ctx, "acme")
	require.NoError(t, err)
	var admin int64
	require.NoError(t, f.w.Admin.QueryRow(ctx, `SELECT version FROM admin.authz_state`).Scan(&admin))
	require.Eventually(t, func() bool { return in.floors.DirFloor(f.tenant.ID) >= uint64(admin) }, 10*time.Second, time.Millisecond)
	sub := subject("acme", "alice")
	res, err := in.svc.Check(ctx, sub, pdp.Request{Permission: "users.read.tenant"})
	require.NoError(t, err)
	require.Equal(t, pdp.ReasonTenantSuspended, res.Reason, "the suspension is seen")
	check("suspended tenant", sub)
}

// TestTenantNamesAreCheckedAndUnknownOnesBounded: a tenant name that is not a slug (or a
// tenant id) never reaches the database, and unknown names are remembered in a bounded cache
// whose entries expire.
func TestTenantNamesAreCheckedAndUnknownOnesBounded(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{UnknownTenants: 100, DirectoryTTL: time.Hour}, nil)
	ctx := context.Background()
	sub, err := in.svc.SubjectFromPrincipal(ctx, "acme", "alice")
	require.NoError(t, err)
	base := in.lookups.Load()

	for i := range 10_000 {
		name := fmt.Sprintf("%s-%d", strings.Repeat("x", 4096), i)
		_, err := in.svc.Check(ctx, sub, pdp.Request{Permission: "users.read.tenant", BoundTenant: name})
		require.ErrorIs(t, err, pdp.ErrInvalidRequest)
		_, err = in.svc.SubjectFromPrincipal(ctx, name, "alice")
		require.ErrorIs(t, err, pdp.ErrInvalidRequest)
		// Other readers of the tenant directory neither look such a name up nor keep it.
		_, found, err := in.svc.UserByEmail(ctx, name, "alice@example.com")
		require.NoError(t, err)
		require.False(t, found)
	}
	assert.Equal(t, base, in.lookups.Load(), "got %d tenant lookups for invalid names, want none", in.lookups.Load()-base)
	for _, user := range []string{strings.Repeat("u", pdp.MaxIDBytes+1), "al\x00ice", "\xff"} {
		_, err = in.svc.SubjectFromPrincipal(ctx, "acme", user)
		require.ErrorIs(t, err, pdp.ErrInvalidRequest, "principal user %.10q", user)
	}

	// Unknown but well-formed names: one lookup each, remembered, at most 100 of them.
	unknown := func(i int) {
		t.Helper()
		res, err := in.svc.Check(ctx, sub, pdp.Request{Permission: "users.read.tenant", BoundTenant: fmt.Sprintf("ghost-%d", i)})
		require.NoError(t, err)
		require.Equal(t, pdp.ReasonCrossTenant, res.Reason)
	}
	unknown(0)
	unknown(0)
	assert.Equal(t, base+1, in.lookups.Load(), "an unknown name is remembered")
	for i := 1; i <= 1000; i++ {
		unknown(i)
	}
	base = in.lookups.Load()
	unknown(1000)
	assert.Equal(t, base, in.lookups.Load(), "the newest unknown name is remembered")
	unknown(0)
	assert.Equal(t, base+1, in.lookups.Load(), "the oldest unknown name was evicted: the cache is bounded")
}

// TestUnknownTenantsExpire: an unknown name is asked again after DirectoryTTL, and at once
// after any tenant change.
func TestUnknownTenantsExpire(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{DirectoryTTL: 50 * time.Millisecond}, nil)
	ctx := context.Background()
	sub, err := in.svc.SubjectFromPrincipal(ctx, "ghost", "alice")
	require.NoError(t, err)
	res, err := in.svc.Check(ctx, sub, pdp.Request{Permission: "users.read.tenant"})
	require.NoError(t, err)
	require.Equal(t, pdp.ReasonUnknownTenant, res.Reason)
	base := in.lookups.Load()
	require.Eventually(t, func() bool {
		_, err := in.svc.Check(ctx, sub, pdp.Request{Permission: "users.read.tenant"})
		require.NoError(t, err)
		return in.lookups.Load() > base
	}, 10*time.Second, 10*time.Millisecond, "the unknown name never expired")

	base = in.lookups.Load()
	in.svc.TenantChanged("")
	_, err = in.svc.Check(ctx, sub, pdp.Request{Permission: "users.read.tenant"})
	require.NoError(t, err)
	assert.Equal(t, base+1, in.lookups.Load(), "a tenant change forgets unknown names")
}
