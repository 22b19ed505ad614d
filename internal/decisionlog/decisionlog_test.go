package decisionlog

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/memtest"
	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// world is a control plane with analytics databases, migrated.
type world struct {
	*testenv.World
	analytics map[string]registry.Connection // by region
}

func newWorld(t *testing.T, regions ...string) *world {
	t.Helper()
	w := &world{World: testenv.New(t, "decisionlog"), analytics: map[string]registry.Connection{}}
	for _, r := range regions {
		w.AddRegion(t, r)
		w.analytics[r] = w.AddDatabase(t, r, r+"-analytics", registry.TypeAnalytics)
	}
	run, err := w.Fleet.Apply(context.Background(), fleet.Plan{Scope: fleet.ScopeAnalytics})
	require.NoError(t, err)
	require.Equal(t, "succeeded", run.Status)
	return w
}

func (w *world) tenant(t *testing.T, region, slug, settings string) string {
	t.Helper()
	ctx := context.Background()
	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: slug, Region: region, Realm: slug + "-realm"})
	require.NoError(t, err)
	if settings != "" {
		_, err = w.Admin.Exec(ctx, `UPDATE admin.tenants SET settings = $2::jsonb WHERE id = $1`, tn.ID, settings)
		require.NoError(t, err)
	}
	return tn.ID
}

func (w *world) db(t *testing.T, region string) *pgxpool.Pool {
	return w.Connect(t, w.analytics[region], "")
}

func count(t *testing.T, db *pgxpool.Pool, where string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(context.Background(), `SELECT count(*) FROM analytics.decision_log WHERE `+where, args...).Scan(&n))
	return n
}

func start(t *testing.T, w *world, cfg Config) *Recorder {
	t.Helper()
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 20 * time.Millisecond
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 2 * time.Second
	}
	r, err := New(cfg, w.Admin, w.Registry, nil, prometheus.NewRegistry())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// Run reads tenants first; wait until it has.
	require.Eventually(t, func() bool { return len(r.snap.Load().dbs) > 0 }, 30*time.Second, 10*time.Millisecond)
	return r
}

func record(r *Recorder, e Entry) bool {
	if !r.Keep(e.TenantID, e.Allowed) {
		return false
	}
	r.Record(e)
	return true
}

const wait = 30 * time.Second

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

func TestDecisionsLandInTheirTenantsRegion(t *testing.T) {
	w := newWorld(t, "eu-west-1", "us-east-1")
	eu := w.tenant(t, "eu-west-1", "acme", "")
	us := w.tenant(t, "us-east-1", "globex", `{"decision_log": {"allow_sample_rate": 1}}`)
	r := start(t, w, Config{AllowSampleRate: 0, PlatformRegion: "us-east-1"})

	euDeny := Entry{DecisionID: "d-eu-deny", TenantID: eu, Level: LevelTenant, User: "alice", Permission: "reports.read",
		ResourceOwner: "bob", ResourceTeam: "t1", Reason: "no_permission", Version: 7, Transport: TransportExtAuthz,
		Method: "GET", Path: "/reports/{id}", Client: "10.0.0.1", Latency: 1500 * time.Microsecond}
	assert.True(t, record(r, euDeny), "a deny is always kept")
	assert.False(t, record(r, Entry{DecisionID: "d-eu-allow", TenantID: eu, Allowed: true, Permission: "x.y.own", Reason: "granted", Transport: TransportGRPC}),
		"the global allow sample rate is 0")
	assert.True(t, record(r, Entry{DecisionID: "d-us-allow", TenantID: us, Level: LevelTenant, User: "carol", Allowed: true,
		Permission: "x.y.own", Reason: "granted", GrantCode: "x.*.*", GrantRole: "admin", Transport: TransportForwardAuth}),
		"the tenant's own sample rate (1) overrides the global one")
	assert.True(t, record(r, Entry{DecisionID: "d-platform", Level: LevelPlatform, User: "root", Permission: "tenants.read.platform",
		Reason: "no_permission", Transport: TransportGRPC}))
	assert.True(t, record(r, Entry{DecisionID: "d-anon", Permission: "x.y.own", Reason: "unauthenticated", Transport: TransportExtAuthz}))

	euDB, usDB := w.db(t, "eu-west-1"), w.db(t, "us-east-1")
	require.Eventually(t, func() bool {
		return count(t, euDB, "true") == 1 && count(t, usDB, "true") == 3
	}, wait, 20*time.Millisecond, "eu gets its tenant's deny; us gets its tenant's allow, the platform and the unattributed deny")
	assert.Equal(t, 1, count(t, usDB, "tenant_id IS NULL AND level = 'platform'"))
	assert.Equal(t, 1, count(t, usDB, "tenant_id IS NULL AND level IS NULL AND reason = 'unauthenticated'"))

	got, err := Get(context.Background(), euDB, eu, "d-eu-deny")
	require.NoError(t, err)
	want := euDeny
	want.Time, want.Latency, want.LatencyMicros = got.Time, 1500*time.Microsecond, 1500
	assert.Equal(t, want, got, "every field survives the round trip")
	_, err = Get(context.Background(), euDB, us, "d-eu-deny")
	assert.ErrorIs(t, err, ErrNotFound, "another tenant's decision is not found")

	allowed := true
	page, total, err := Query(context.Background(), usDB, Filter{TenantID: us, Allowed: &allowed})
	require.NoError(t, err)
	require.Equal(t, 1, total)
	assert.Equal(t, "x.*.*", page[0].GrantCode)
	assert.Equal(t, "admin", page[0].GrantRole)
	_, total, err = Query(context.Background(), usDB, Filter{TenantID: us, User: "nobody"})
	require.NoError(t, err)
	assert.Zero(t, total)
}

func TestTenantRateLimitDropsAndCounts(t *testing.T) {
	w := newWorld(t, "us-east-1")
	noisy := w.tenant(t, "us-east-1", "noisy", `{"decision_log": {"max_per_second": 1}}`)
	quiet := w.tenant(t, "us-east-1", "quiet", "")
	r := start(t, w, Config{})
	for i := range 50 {
		record(r, Entry{DecisionID: "n" + strconv.Itoa(i), TenantID: noisy, Permission: "x.y.own", Reason: "no_permission", Transport: TransportGRPC})
	}
	for i := range 5 {
		record(r, Entry{DecisionID: "q" + strconv.Itoa(i), TenantID: quiet, Permission: "x.y.own", Reason: "no_permission", Transport: TransportGRPC})
	}
	db := w.db(t, "us-east-1")
	require.Eventually(t, func() bool { return count(t, db, "tenant_id = $1", quiet) == 5 }, wait, 20*time.Millisecond,
		"the noisy tenant does not crowd out the quiet one")
	kept := count(t, db, "tenant_id = $1", noisy)
	assert.LessOrEqual(t, kept, 3, "burst of 2 plus what refilled while recording")
	assert.GreaterOrEqual(t, value(r.drops[DropRateLimited]), float64(50-kept))
}

func TestAnalyticsDatabaseDownUnderTraffic(t *testing.T) {
	w := newWorld(t, "us-east-1")
	tenant := w.tenant(t, "us-east-1", "acme", "")
	conn := w.analytics["us-east-1"]
	px := pgtest.NewProxy(t, net.JoinHostPort(conn.Host, strconv.Itoa(conn.Port)))
	_, err := w.Admin.Exec(context.Background(), `UPDATE admin.database_connections SET host = '127.0.0.1', port = $2 WHERE id = $1`, conn.ID, px.Port())
	require.NoError(t, err)
	r := start(t, w, Config{QueueSize: 64, BatchSize: 16, TenantRate: 1e9, WriteTimeout: 500 * time.Millisecond})
	db := w.db(t, "us-east-1") // direct, not through the proxy

	n := 0
	deny := func() {
		n++
		record(r, Entry{DecisionID: "d" + strconv.Itoa(n), TenantID: tenant, Permission: "x.y.own", Reason: "no_permission", Transport: TransportExtAuthz})
	}
	// Up: entries arrive.
	deny()
	require.Eventually(t, func() bool { return count(t, db, "true") == 1 }, wait, 10*time.Millisecond)

	// Down under traffic: Record keeps returning (a blocked Record would hang this loop and
	// the test's deadline), writes fail and entries are dropped and counted.
	px.Stop()
	failed := func() float64 {
		return value(r.drops[DropWriteFailed]) + value(r.drops[DropQueueFull])
	}
	deadline := time.Now().Add(wait)
	// Wait for both: the bounded queue may overflow before the writer's first failed write
	// has come back and been counted.
	for (failed() < 100 || value(r.drops[DropWriteFailed]) == 0) && time.Now().Before(deadline) {
		for range 50 {
			deny()
		}
		time.Sleep(time.Millisecond)
	}
	require.GreaterOrEqual(t, failed(), float64(100), "drops are counted while the database is down")
	assert.Positive(t, value(r.drops[DropWriteFailed]))

	// Slow (connections hang): the writer waits up to WriteTimeout, the bounded queue fills
	// and overflows instead of growing, and Record still returns at once.
	px.Hang()
	for value(r.drops[DropQueueFull]) < 100 && time.Now().Before(deadline) {
		for range 50 {
			deny()
		}
		time.Sleep(time.Millisecond)
	}
	assert.GreaterOrEqual(t, value(r.drops[DropQueueFull]), float64(100), "the bounded queue overflowed")
	assert.LessOrEqual(t, len(r.queue), 64)
	px.Stop()
	written := count(t, db, "true")

	// Back up: recording resumes without a restart.
	px.Start()
	require.Eventually(t, func() bool {
		deny()
		return count(t, db, "true") > written
	}, wait, 50*time.Millisecond, "recording resumes once the database is back")
	assert.Less(t, count(t, db, "true"), n, "what was dropped is not replayed from memory")
}

func TestMaintainCreatesPartitionsAndAppliesRetention(t *testing.T) {
	w := newWorld(t, "us-east-1")
	short := w.tenant(t, "us-east-1", "short", `{"decision_log": {"retention_days": 2}}`)
	long := w.tenant(t, "us-east-1", "long", "")
	db := w.db(t, "us-east-1")
	ctx := context.Background()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

	// Partitions for an old day and "today"; rows in them and in the default partition.
	conn, err := db.Acquire(ctx)
	require.NoError(t, err)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('search_path', 'analytics', true)`); err != nil {
			return err
		}
		for _, d := range []string{"2026-01-01", "2026-03-07", "2026-03-10"} {
			if _, err := tx.Exec(ctx, `SELECT ensure_decision_log_partition($1::date)`, d); err != nil {
				return err
			}
		}
		return nil
	})
	conn.Release()
	require.NoError(t, err)
	insert := func(id, tenant string, at time.Time) {
		_, err := db.Exec(ctx, `INSERT INTO analytics.decision_log (decided_at, decision_id, tenant_id, permission, allowed, reason)
			VALUES ($1, $2, $3, 'x.y.own', false, 'no_permission')`, at, id, tenant)
		require.NoError(t, err)
	}
	insert("old", long, time.Date(2026, 1, 1, 5, 0, 0, 0, time.UTC))           // partition older than 30 days
	insert("old-default", long, time.Date(2025, 12, 1, 5, 0, 0, 0, time.UTC))  // default partition, older
	insert("short-3d", short, time.Date(2026, 3, 7, 5, 0, 0, 0, time.UTC))     // past the tenant's 2 days
	insert("long-3d", long, time.Date(2026, 3, 7, 5, 0, 0, 0, time.UTC))       // within the global 30 days
	insert("short-today", short, time.Date(2026, 3, 10, 5, 0, 0, 0, time.UTC)) // kept
	insert("ahead", long, time.Date(2026, 3, 12, 23, 0, 0, 0, time.UTC))       // no partition yet: in the default one

	res, err := Maintain(ctx, w.Admin, w.Registry, 30*24*time.Hour, now)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Empty(t, res[0].Error)
	assert.Equal(t, []string{"decision_log_20260101"}, res[0].DroppedPartitions)
	assert.EqualValues(t, 2, res[0].DeletedRows, "the old default-partition row and the short-retention tenant's row")

	var ids []string
	rows, err := db.Query(ctx, `SELECT decision_id FROM analytics.decision_log ORDER BY decision_id`)
	require.NoError(t, err)
	ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.Equal(t, []string{"ahead", "long-3d", "short-today"}, ids)
	var part string
	require.NoError(t, db.QueryRow(ctx, `SELECT c.relname FROM analytics.decision_log d JOIN pg_class c ON c.oid = d.tableoid WHERE d.decision_id = 'ahead'`).Scan(&part))
	assert.Equal(t, "decision_log_20260312", part, "rows written before their day's partition existed move into it")

	var ahead int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname = 'decision_log_' || to_char($1::date, 'YYYYMMDD')`,
		now.AddDate(0, 0, PartitionsAhead)).Scan(&ahead))
	assert.Equal(t, 1, ahead, "partitions are created a week ahead")
}

func TestSettingsParseLeniently(t *testing.T) {
	for _, tc := range []struct {
		raw          string
		sample, rate float64
		retention    int
	}{
		{``, -1, -1, 0},
		{`{"allow_sample_rate": 0.5, "max_per_second": 10, "retention_days": 7}`, 0.5, 10, 7},
		{`{"allow_sample_rate": 2, "max_per_second": -1, "retention_days": 0}`, -1, -1, 0},
		{`{"allow_sample_rate": "all"}`, -1, -1, 0},
	} {
		s, r, d := parseSettings([]byte(tc.raw))
		assert.Equal(t, []any{tc.sample, tc.rate, tc.retention}, []any{s, r, d}, "settings %s", tc.raw)
	}
}

func TestRecordNeverBlocksWithoutALoop(t *testing.T) {
	r, err := New(Config{QueueSize: 4}, nil, nil, nil, nil)
	require.NoError(t, err)
	for i := range 100 {
		r.Record(Entry{DecisionID: strconv.Itoa(i), Reason: "no_permission"})
	}
	assert.Len(t, r.queue, 4)
	assert.InDelta(t, 100-4-value(r.drops[DropRateLimited]), value(r.drops[DropQueueFull]), 0)
	var nilRecorder *Recorder
	assert.False(t, nilRecorder.Keep("", false))
	nilRecorder.Record(Entry{}) // no panic
}

// An idle recorder's fixed memory is its queue's ring of pointers, not QueueSize entries: a
// channel's sends walk its whole buffer, which stays resident however short the queue.
func TestQueueHoldsPointers(t *testing.T) {
	bytes, _ := memtest.Retained(func() any {
		r, err := New(Config{QueueSize: DefaultQueueSize}, nil, nil, nil, nil)
		require.NoError(t, err)
		return r
	})
	t.Logf("a recorder with a queue of %d: %d bytes", DefaultQueueSize, bytes)
	assert.Less(t, bytes, int64(DefaultQueueSize*16), "got %d bytes for an empty queue of %d", bytes, DefaultQueueSize)

	r, err := New(Config{QueueSize: 4}, nil, nil, nil, nil)
	require.NoError(t, err)
	r.Record(Entry{DecisionID: "d1", Reason: "no_permission", Permission: "wiki.read.tenant"})
	got := <-r.queue
	assert.Equal(t, "wiki.read.tenant", got.Permission, "the queued entry is the recorded one")
}
