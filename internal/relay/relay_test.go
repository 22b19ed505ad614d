package relay_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/redistest"
	"github.com/neofast/neoauthz/internal/relay"
	authzsync "github.com/neofast/neoauthz/internal/sync"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// wait is the generous deadline of every condition awaited here (a busy 2-core machine).
const wait = 30 * time.Second

// heartbeat is the relays' heartbeat in these tests; followers trust for twice it.
const heartbeat = 200 * time.Millisecond

type logBuffer struct {
	mu gosync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), sub)
}

// env is a control plane with one tenant, and a Redis stream of the test's own.
type env struct {
	w      *testenv.World
	tenant tenancy.Tenant
	region *pgxpool.Pool
	url    string // Redis
	stream string
}

func newEnv(t *testing.T, redisURL string) *env {
	t.Helper()
	w := testenv.New(t, "relay")
	primary := w.AddRegion(t, "us-east-1")
	tn, err := w.Tenants.Create(context.Background(), tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"})
	require.NoError(t, err)
	if redisURL == "" {
		redisURL = redistest.URL(t)
	}
	_, prefix := redistest.Client(t, "relay") // its cleanup deletes the stream on the shared Redis
	return &env{w: w, tenant: tn, region: w.Connect(t, primary, ""), url: redisURL, stream: prefix + "{relay}:events"}
}

func (e *env) tenantDB() string { return authzsync.DatabaseKey(*e.tenant.ConnectionID, "") }

func (e *env) client(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(e.url)
	require.NoError(t, err)
	opts.ContextTimeoutEnabled = true
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// runner is a Manager running until stopped (or the test ends).
type runner struct {
	floors *authzsync.Floors
	reg    *prometheus.Registry
	logs   *logBuffer
	rdb    *redis.Client
	stop   func()
}

func (e *env) run(t *testing.T, cfg authzsync.Config, rdb *redis.Client) *runner {
	t.Helper()
	cfg.AdminURL = e.w.AdminURL
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = heartbeat
	}
	if cfg.RegistryInterval == 0 {
		cfg.RegistryInterval = 100 * time.Millisecond
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Hour // only what the test does raises floors
	}
	store := pgstore.New(e.w.Admin, e.w.Registry, pgstore.Options{})
	r := &runner{floors: &authzsync.Floors{}, reg: prometheus.NewRegistry(), logs: &logBuffer{}, rdb: rdb}
	mgr := authzsync.New(cfg, r.floors, e.w.Admin, e.w.Registry, store, nil, slog.New(slog.NewJSONHandler(r.logs, nil)), r.reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mgr.Run(ctx)
	}()
	var once gosync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			store.Close()
		})
	}
	t.Cleanup(r.stop)
	return r
}

// relay starts a relay publishing to the test's stream over a client of its own.
func (e *env) relay(t *testing.T) *runner {
	t.Helper()
	rdb := e.client(t)
	return e.run(t, authzsync.Config{Publish: relay.NewPublisher(rdb, e.stream, 1000, heartbeat)}, rdb)
}

// crash stops a relay the way a killed process stops: nothing more reaches Redis, not even
// that its listeners are gone.
func (r *runner) crash() {
	_ = r.rdb.Close()
	r.stop()
}

// follower starts a relay-mode Manager reading the test's stream.
func (e *env) follower(t *testing.T) *runner {
	t.Helper()
	rdb := e.client(t)
	return e.run(t, authzsync.Config{Feed: relay.NewReader(rdb, e.stream)}, rdb)
}

func (r *runner) up(db string) bool {
	_, down := r.floors.DownSince(db)
	return !down
}

func (r *runner) waitUp(t *testing.T, dbs ...string) {
	t.Helper()
	for _, db := range dbs {
		require.Eventually(t, func() bool { return r.up(db) }, wait, 5*time.Millisecond, "database %s never trusted", db)
	}
}

func (r *runner) waitDown(t *testing.T, dbs ...string) {
	t.Helper()
	for _, db := range dbs {
		require.Eventually(t, func() bool { return !r.up(db) }, wait, 5*time.Millisecond, "database %s still trusted", db)
	}
}

func (r *runner) counter(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

// bumpSilently advances a version as a change would, without a notification (a lost one).
func bumpSilently(t *testing.T, q *pgxpool.Pool, table string) uint64 {
	t.Helper()
	var v int64
	require.NoError(t, q.QueryRow(context.Background(), `UPDATE `+table+` SET version = version + 1 RETURNING version`).Scan(&v))
	return uint64(v)
}

func (e *env) tenantState() string {
	return pgx.Identifier{e.tenant.SchemaName, "authz_state"}.Sanitize()
}

// addUser commits a tenant change whose notification names the user; it returns the
// version it produced.
func (e *env) addUser(t *testing.T, user string) uint64 {
	t.Helper()
	ctx := context.Background()
	_, err := e.region.Exec(ctx, `INSERT INTO `+pgx.Identifier{e.tenant.SchemaName, "users"}.Sanitize()+` (external_id) VALUES ($1)`, user)
	require.NoError(t, err)
	var v int64
	require.NoError(t, e.region.QueryRow(ctx, `SELECT version FROM `+e.tenantState()).Scan(&v))
	return uint64(v)
}

func TestNotificationsReachAFollowerThroughARelay(t *testing.T) {
	e := newEnv(t, "")
	rl := e.relay(t)
	f := e.follower(t)
	rl.waitUp(t, authzsync.AdminDatabase, e.tenantDB())
	f.waitUp(t, authzsync.AdminDatabase, e.tenantDB())

	v := e.addUser(t, "alice")
	require.Eventually(t, func() bool { return f.floors.Floor(e.tenant.ID, "alice") >= v }, wait, 5*time.Millisecond,
		"the follower never raised alice's floor to %d", v)
	assert.Less(t, f.floors.Floor(e.tenant.ID, "bob"), v, "a user's notification raised another user's floor")

	_, err := e.w.Tenants.Suspend(context.Background(), "acme")
	require.NoError(t, err)
	var admin int64
	require.NoError(t, e.w.Admin.QueryRow(context.Background(), `SELECT version FROM admin.authz_state`).Scan(&admin))
	require.Eventually(t, func() bool { return f.floors.DirFloor(e.tenant.ID) >= uint64(admin) }, wait, 5*time.Millisecond,
		"the tenant's suspension never reached the follower")
}

func TestCrashedRelayFailsClosedUntilARelayIsBack(t *testing.T) {
	e := newEnv(t, "")
	rl := e.relay(t)
	f := e.follower(t)
	f.waitUp(t, authzsync.AdminDatabase, e.tenantDB())

	rl.crash()
	crashed := time.Now()
	f.waitDown(t, authzsync.AdminDatabase, e.tenantDB())
	since, _ := f.floors.DownSince(e.tenantDB())
	assert.False(t, since.After(crashed.Add(2*heartbeat)),
		"got trust until %v, want it to end no later than the staleness bound after the crash (%v)", since, crashed.Add(2*heartbeat))

	// A change whose notification nobody relays: the follower must re-read versions before
	// it trusts the database again.
	v := bumpSilently(t, e.region, e.tenantState())
	e.relay(t)
	f.waitUp(t, authzsync.AdminDatabase, e.tenantDB())
	assert.GreaterOrEqual(t, f.floors.Floor(e.tenant.ID, "anyone"), v, "trusted again without the versions of the outage")
}

func TestStoppedRelaySaysSoAndTwoRelaysDoNoHarm(t *testing.T) {
	e := newEnv(t, "")
	a := e.relay(t)
	b := e.relay(t)
	// Trust outlasting the test: only the relays' events can end it.
	rdb := e.client(t)
	f := e.run(t, authzsync.Config{Feed: relay.NewReader(rdb, e.stream), Staleness: time.Hour}, rdb)
	a.waitUp(t, e.tenantDB())
	b.waitUp(t, e.tenantDB())
	f.waitUp(t, authzsync.AdminDatabase, e.tenantDB())

	// Both relay every notification: applied twice, raised once.
	v := e.addUser(t, "alice")
	require.Eventually(t, func() bool { return f.counter(t, "sync_notifications_received_total") >= 2 }, wait, 5*time.Millisecond)
	assert.GreaterOrEqual(t, f.floors.Floor(e.tenant.ID, "alice"), v)
	assert.Less(t, f.floors.Floor(e.tenant.ID, "bob"), v, "a duplicate raised more than its user")

	// One relay stops (and says so): the other keeps the databases fresh.
	a.stop()
	w := e.addUser(t, "bob")
	require.Eventually(t, func() bool { return f.floors.Floor(e.tenant.ID, "bob") >= w }, wait, 5*time.Millisecond)
	assert.True(t, f.up(e.tenantDB()))
	assert.Zero(t, f.logs.count("stale"), "the follower distrusted a database while a relay was up")

	// The last one stops: its "down" events end the trust an hour early.
	b.stop()
	f.waitDown(t, authzsync.AdminDatabase, e.tenantDB())
}

func TestRedisDownFailsClosedUntilItIsBack(t *testing.T) {
	srv := redistest.StartServer(t)
	e := newEnv(t, srv.URL())
	rl := e.relay(t)
	f := e.follower(t)
	f.waitUp(t, authzsync.AdminDatabase, e.tenantDB())

	srv.Kill()
	f.waitDown(t, authzsync.AdminDatabase, e.tenantDB())
	v := bumpSilently(t, e.region, e.tenantState())
	// Redis comes back empty (no persistence): the stream starts again, which the follower
	// must detect rather than wait below its old id.
	srv.Start()
	f.waitUp(t, authzsync.AdminDatabase, e.tenantDB())
	assert.GreaterOrEqual(t, f.floors.Floor(e.tenant.ID, "anyone"), v)
	assert.Positive(t, rl.counter(t, "sync_relay_publish_errors_total"), "the relay never noticed Redis was down")
}

func TestTrimmedStreamMakesTheFollowerReReadVersions(t *testing.T) {
	e := newEnv(t, "")
	e.relay(t)
	f := e.follower(t)
	f.waitUp(t, authzsync.AdminDatabase, e.tenantDB())

	// A lost change, and the stream trimmed past events the follower has not read (as when
	// it falls MAXLEN events behind): without detecting the gap nothing would raise the floor
	// (the poll is off).
	v := bumpSilently(t, e.region, e.tenantState())
	rdb := e.client(t)
	ctx := context.Background()
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{Stream: e.stream, Values: []any{"k", "a", "db", "unknown", "r", "test", "at", "0"}})
		p.XTrimMaxLen(ctx, e.stream, 0)
		return nil
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return f.floors.Floor(e.tenant.ID, "anyone") >= v }, wait, 5*time.Millisecond,
		"the follower never re-read the versions after the stream was trimmed past it")
	assert.Positive(t, f.counter(t, "sync_relay_gaps_total"))
	f.waitUp(t, authzsync.AdminDatabase, e.tenantDB())
}

func TestFollowerPicksUpDatabasesAddedLater(t *testing.T) {
	e := newEnv(t, "")
	e.relay(t)
	f := e.follower(t)
	f.waitUp(t, authzsync.AdminDatabase, e.tenantDB())

	c := e.w.AddRegion(t, "eu-west-1")
	tn, err := e.w.Tenants.Create(context.Background(), tenancy.CreateRequest{Slug: "later", Region: "eu-west-1", Realm: "later"})
	require.NoError(t, err)
	require.Equal(t, c.ID, *tn.ConnectionID)
	f.waitUp(t, authzsync.DatabaseKey(c.ID, ""))
}

func TestUnreadableEntryCountsAsAGap(t *testing.T) {
	e := newEnv(t, "")
	e.relay(t)
	f := e.follower(t)
	f.waitUp(t, authzsync.AdminDatabase, e.tenantDB())
	v := bumpSilently(t, e.region, e.tenantState())
	require.NoError(t, e.client(t).XAdd(context.Background(), &redis.XAddArgs{Stream: e.stream,
		Values: []any{"k", "n", "db", e.tenantDB(), "r", "test", "at", "not a time"}}).Err())
	require.Eventually(t, func() bool { return f.floors.Floor(e.tenant.ID, "anyone") >= v }, wait, 5*time.Millisecond,
		"an entry the follower could not read did not make it re-read the versions")
}
