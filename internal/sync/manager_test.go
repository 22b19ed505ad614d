package sync_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/pgstore"
	authzsync "github.com/neofast/neoauthz/internal/sync"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// syncBuffer is a log sink tests read while the manager writes to it.
type syncBuffer struct {
	mu gosync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// env is a control plane with one tenant and a manager over it.
type env struct {
	w      *testenv.World
	tenant tenancy.Tenant
	region *pgxpool.Pool
	floors *authzsync.Floors
	reg    *prometheus.Registry
	logs   *syncBuffer
}

func newEnv(t *testing.T) *env { return newEnvTB(t) }

func newEnvTB(t testing.TB) *env {
	t.Helper()
	w := testenv.New(t, "sync")
	primary := w.AddRegion(t, "us-east-1")
	tn, err := w.Tenants.Create(context.Background(), tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"})
	require.NoError(t, err)
	return &env{w: w, tenant: tn, region: w.Connect(t, primary, ""), floors: &authzsync.Floors{},
		reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
}

func (e *env) tenantDB() string { return authzsync.DatabaseKey(*e.tenant.ConnectionID, "") }

// run starts a manager with cfg (AdminURL defaults to the test's admin database) until the
// test ends.
func (e *env) run(t *testing.T, cfg authzsync.Config) { e.runTB(t, cfg) }

func (e *env) runTB(t testing.TB, cfg authzsync.Config) {
	t.Helper()
	if cfg.AdminURL == "" {
		cfg.AdminURL = e.w.AdminURL
	}
	store := pgstore.New(e.w.Admin, e.w.Registry, pgstore.Options{})
	log := slog.New(slog.NewJSONHandler(e.logs, nil))
	mgr := authzsync.New(cfg, e.floors, e.w.Admin, e.w.Registry, store, nil, log, e.reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mgr.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		store.Close()
	})
}

func (e *env) up(db string) bool {
	_, down := e.floors.DownSince(db)
	return !down
}

func (e *env) waitUp(t *testing.T, db string) { waitUpTB(t, e, db) }

func waitUpTB(t testing.TB, e *env, db string) {
	t.Helper()
	require.Eventually(t, func() bool { return e.up(db) }, 15*time.Second, 2*time.Millisecond, "listener of %s never came up", db)
}

// reconnects reads sync_listener_reconnects_total for db.
func (e *env) reconnects(t *testing.T, db string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "sync_listener_reconnects_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, "database", db) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelIs(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// killListeners terminates the listener connections to the database pool q is connected to
// (and only to it: other packages' tests run on the same server at the same time).
func killListeners(t *testing.T, q *pgxpool.Pool) {
	t.Helper()
	_, err := q.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, authzsync.ListenerApplicationName)
	require.NoError(t, err)
}

// bumpSilently advances a version the way a change would, without a notification (a lost
// one).
func bumpSilently(t *testing.T, q *pgxpool.Pool, table string) uint64 {
	t.Helper()
	var v int64
	require.NoError(t, q.QueryRow(context.Background(), `UPDATE `+table+` SET version = version + 1 RETURNING version`).Scan(&v))
	return uint64(v)
}

func TestBackoffResetsAfterAHealthySession(t *testing.T) {
	e := newEnv(t)
	// Without the reset the waits would double on every drop: 50ms, 100ms, ... 6.4s on the
	// eighth drop, far beyond the deadline below.
	e.run(t, authzsync.Config{MaxBackoff: time.Minute, Heartbeat: time.Second, PollInterval: time.Hour, RegistryInterval: time.Hour})
	e.waitUp(t, authzsync.AdminDatabase)
	for i := 1; i <= 9; i++ {
		killListeners(t, e.w.Admin)
		require.Eventually(t, func() bool { return e.reconnects(t, authzsync.AdminDatabase) >= float64(i) },
			5*time.Second, 2*time.Millisecond, "drop %d: got no reconnection within 5s, want the shortest backoff after a healthy session", i)
		require.Eventually(t, func() bool { return e.up(authzsync.AdminDatabase) }, 5*time.Second, 2*time.Millisecond,
			"drop %d: listener not back within 5s", i)
	}
}

func TestPollCatchesALostNotification(t *testing.T) {
	e := newEnv(t)
	e.run(t, authzsync.Config{PollInterval: 50 * time.Millisecond, RegistryInterval: 50 * time.Millisecond})
	e.waitUp(t, authzsync.AdminDatabase)
	e.waitUp(t, e.tenantDB())

	admin := bumpSilently(t, e.w.Admin, "admin.authz_state")
	tenant := bumpSilently(t, e.region, pgx.Identifier{e.tenant.SchemaName, "authz_state"}.Sanitize())
	require.Eventually(t, func() bool {
		return e.floors.Floor(authzsync.PlatformScope, "anyone") >= admin && e.floors.DirFloor(e.tenant.ID) >= admin &&
			e.floors.Floor(e.tenant.ID, "anyone") >= tenant
	}, 15*time.Second, 5*time.Millisecond, "got floors platform %d, tenant %d; want %d and %d",
		e.floors.Floor(authzsync.PlatformScope, "anyone"), e.floors.Floor(e.tenant.ID, "anyone"), admin, tenant)
}

func TestUnreadablePayloadForcesAResync(t *testing.T) {
	e := newEnv(t)
	// No poll: only the resync the unreadable payload forces can raise the floors.
	e.run(t, authzsync.Config{PollInterval: time.Hour, RegistryInterval: time.Hour})
	e.waitUp(t, authzsync.AdminDatabase)

	v := bumpSilently(t, e.w.Admin, "admin.authz_state")
	require.Less(t, e.floors.Floor(authzsync.PlatformScope, "anyone"), v)
	_, err := e.w.Admin.Exec(context.Background(), `SELECT pg_notify($1, 'not json')`, authzsync.Channel)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return e.floors.Floor(authzsync.PlatformScope, "anyone") >= v },
		15*time.Second, 5*time.Millisecond, "the unreadable payload did not make the manager re-read the versions")
	assert.True(t, e.up(authzsync.AdminDatabase))
}

// blackhole is a loopback TCP proxy to PostgreSQL that can stop forwarding without closing
// anything: a link that died silently (a dropped route, a frozen peer).
type blackhole struct {
	ln    net.Listener
	to    string
	black atomic.Bool
}

func newBlackhole(t *testing.T, to string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &blackhole{ln: ln, to: to}
	var wg gosync.WaitGroup
	var mu gosync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				_ = in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); b.pipe(out, in) }()
			go func() { defer wg.Done(); b.pipe(in, out) }()
		}
	}()
	return b
}

// pipe copies src to dst; while the hole is black, bytes read are dropped.
func (b *blackhole) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !b.black.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func TestHeartbeatDetectsASilentlyDeadLink(t *testing.T) {
	e := newEnv(t)
	cfg, err := pgx.ParseConfig(e.w.AdminURL)
	require.NoError(t, err)
	hole := newBlackhole(t, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	proxied := strings.Replace(e.w.AdminURL, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), hole.ln.Addr().String(), 1)
	require.NotEqual(t, e.w.AdminURL, proxied, "the admin URL names its host and port")
	e.run(t, authzsync.Config{AdminURL: proxied, Heartbeat: 100 * time.Millisecond, PollInterval: time.Hour, RegistryInterval: time.Hour})
	e.waitUp(t, authzsync.AdminDatabase)

	hole.black.Store(true)
	require.Eventually(t, func() bool { return !e.up(authzsync.AdminDatabase) }, 15*time.Second, 2*time.Millisecond,
		"a link that stopped answering was still trusted")
	hole.black.Store(false)
	e.waitUp(t, authzsync.AdminDatabase)
}

func TestRegistryReadFailureKeepsTheListeners(t *testing.T) {
	e := newEnv(t)
	e.run(t, authzsync.Config{RegistryInterval: 20 * time.Millisecond, PollInterval: time.Hour})
	e.waitUp(t, authzsync.AdminDatabase)
	e.waitUp(t, e.tenantDB())
	before := e.reconnects(t, e.tenantDB())

	ctx := context.Background()
	_, err := e.w.Admin.Exec(ctx, `ALTER TABLE admin.database_connections RENAME TO database_connections_away`)
	require.NoError(t, err)
	const warning = "cannot read the database registry"
	require.Eventually(t, func() bool { return e.logs.count(warning) >= 3 }, 15*time.Second, 5*time.Millisecond,
		"the registry read never failed")
	assert.True(t, e.up(e.tenantDB()), "a failed registry read stopped a listener")
	assert.InDelta(t, before, e.reconnects(t, e.tenantDB()), 0, "a failed registry read restarted a listener")
	assert.Zero(t, e.logs.count("no longer listening"))

	_, err = e.w.Admin.Exec(ctx, `ALTER TABLE admin.database_connections_away RENAME TO database_connections`)
	require.NoError(t, err)
	assert.True(t, e.up(e.tenantDB()))
}
