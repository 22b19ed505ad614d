package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/neofast/neoauthz/internal/registry"
)

// Channel is the NOTIFY channel of the RBAC triggers.
const Channel = "neoauthz"

// ListenerApplicationName is the application_name of listener connections.
const ListenerApplicationName = "neoauthz-listener"

// AdminDatabase is the database key of the admin database.
const AdminDatabase = "admin"

// DatabaseKey names a database for floors and metrics: a registered connection's own
// database, or another database on its server (database-per-tenant).
func DatabaseKey(connectionID, database string) string {
	if database == "" {
		return connectionID
	}
	return connectionID + "/" + database
}

// VersionReader reads current versions.
type VersionReader interface {
	// DatabaseVersions returns tenant id → authz_state.version for every tenant placed on
	// the database.
	DatabaseVersions(ctx context.Context, connectionID, database string) (map[string]uint64, error)
	// AdminVersion returns admin.authz_state.version.
	AdminVersion(ctx context.Context) (uint64, error)
}

// Config tunes the Manager.
type Config struct {
	// AdminURL is the admin database, listened to over a connection of its own.
	AdminURL string
	// Heartbeat is how long a listener waits in silence before proving its connection is
	// alive; a dead connection is noticed within about twice this. Default 2s.
	Heartbeat time.Duration
	// PollInterval is how often versions are re-read to catch notifications lost without a
	// trace. Default 5s.
	PollInterval time.Duration
	// RegistryInterval is how often the registry is re-read for databases added, disabled
	// or removed. Default 5s.
	RegistryInterval time.Duration
	// MaxBackoff caps the wait between reconnection attempts. Default 5s.
	MaxBackoff time.Duration

	// Publish, when set, makes the Manager a relay: besides raising its own floors it
	// publishes what every listener hears (notifications, liveness, versions read, loss) for
	// pdps in relay mode. A failed publication ends the listener's session, so that the next
	// session's versions cover whatever the failure may have hidden.
	Publish Publisher
	// Feed, when set, replaces the listeners and the poll: the Manager reads what relays
	// publish and trusts a database only while a relay's heartbeat for it is fresh.
	Feed Feed
	// Staleness is how long after a relay's last proof that a database's listener is alive
	// the database is still trusted (relay mode). Default 2 × Heartbeat.
	Staleness time.Duration
	// Regions limits the databases listened to (besides the admin database) to those of
	// these regions; the zero value listens to every region.
	Regions registry.Regions
}

func (c *Config) defaults() {
	if c.Heartbeat <= 0 {
		c.Heartbeat = 2 * time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 5 * time.Second
	}
	if c.RegistryInterval <= 0 {
		c.RegistryInterval = 5 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.Staleness <= 0 {
		c.Staleness = 2 * c.Heartbeat
	}
}

// Database is one database to listen to.
type Database struct {
	Key          string
	ConnectionID string
	Database     string
	dsn          string
}

// Manager runs the listeners and the poll.
type Manager struct {
	cfg      Config
	floors   *Floors
	admin    *pgxpool.Pool
	registry *registry.Store
	versions VersionReader
	log      *slog.Logger
	// onTenant is called when a tenant's status, realm or placement changed ("" = any
	// tenant may have changed).
	onTenant func(tenantID string)
	metrics  *metrics

	mu        gosync.Mutex
	listeners map[string]context.CancelFunc
	known     map[string]Database // the databases of the last registry read, and the admin database
	// pubFailed holds the databases a publication failed for outside their listener's
	// goroutine (the poll's): the listener's next publication ends its session.
	pubFailed gosync.Map
}

// New returns a Manager raising floors on notifications. onTenant may be nil.
func New(cfg Config, floors *Floors, admin *pgxpool.Pool, reg *registry.Store, versions VersionReader,
	onTenant func(tenantID string), log *slog.Logger, promReg prometheus.Registerer) *Manager {
	cfg.defaults()
	if onTenant == nil {
		onTenant = func(string) {}
	}
	return &Manager{cfg: cfg, floors: floors, admin: admin, registry: reg, versions: versions, log: log,
		onTenant: onTenant, metrics: newMetrics(promReg), listeners: map[string]context.CancelFunc{},
		known: map[string]Database{}}
}

// Run listens until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	var wg gosync.WaitGroup
	defer wg.Wait()
	start := func(db Database) {
		m.known[db.Key] = db
		if m.cfg.Feed != nil {
			m.listeners[db.Key] = func() {}
			return
		}
		lctx, cancel := context.WithCancel(ctx)
		m.listeners[db.Key] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.listen(lctx, db)
		}()
	}
	m.mu.Lock()
	start(Database{Key: AdminDatabase, dsn: m.cfg.AdminURL})
	m.mu.Unlock()
	if m.cfg.Feed != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.follow(ctx)
		}()
	}

	refresh := func() {
		dbs, err := m.databases(ctx)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("cannot read the database registry; keeping the listeners as they are", "error", err)
			}
			return
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		want := map[string]bool{AdminDatabase: true}
		for _, db := range dbs {
			want[db.Key] = true
			if _, ok := m.listeners[db.Key]; !ok {
				m.log.Info("listening to a database", "database", db.Key)
				start(db)
			}
		}
		for key, cancel := range m.listeners {
			if !want[key] {
				m.log.Info("database left the registry; no longer listening", "database", key)
				cancel()
				delete(m.listeners, key)
				delete(m.known, key)
				m.floors.Forget(key)
			}
		}
	}
	refresh()
	registryTick := time.NewTicker(m.cfg.RegistryInterval)
	defer registryTick.Stop()
	pollTick := time.NewTicker(m.cfg.PollInterval)
	defer pollTick.Stop()
	if m.cfg.Feed != nil {
		// The relays poll, once for every pdp.
		pollTick.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-registryTick.C:
			refresh()
		case <-pollTick.C:
			m.poll(ctx)
		}
	}
}

// databases lists what to listen to besides the admin database: active primary databases
// of the served regions and the own databases of database-per-tenant tenants on them.
func (m *Manager) databases(ctx context.Context) ([]Database, error) {
	conns, err := m.registry.ListConnections(ctx, registry.ConnectionFilter{Type: registry.TypePrimary, ActiveOnly: true})
	if err != nil {
		return nil, err
	}
	byID := map[string]registry.Connection{}
	var out []Database
	for _, c := range conns {
		if !m.cfg.Regions.Serves(c.RegionCode) {
			continue
		}
		byID[c.ID] = c
		dsn, err := m.registry.ConnString(c, "")
		if err != nil {
			return nil, err
		}
		out = append(out, Database{Key: DatabaseKey(c.ID, ""), ConnectionID: c.ID, dsn: dsn})
	}
	rows, err := m.admin.Query(ctx, `SELECT database_connection_id::text, database_name FROM admin.tenants
		WHERE database_name IS NOT NULL AND status <> 'deleted' AND database_connection_id IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	type own struct{ conn, db string }
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (own, error) {
		var o own
		err := row.Scan(&o.conn, &o.db)
		return o, err
	})
	if err != nil {
		return nil, err
	}
	for _, o := range list {
		c, ok := byID[o.conn]
		if !ok {
			continue
		}
		dsn, err := m.registry.ConnString(c, o.db)
		if err != nil {
			return nil, err
		}
		out = append(out, Database{Key: DatabaseKey(o.conn, o.db), ConnectionID: o.conn, Database: o.db, dsn: dsn})
	}
	return out, nil
}

// listen keeps one LISTEN connection to db alive until ctx ends. While it is not connected,
// or has not yet re-read the database's versions after connecting, the database is marked
// down so nothing cached from it is trusted.
func (m *Manager) listen(ctx context.Context, db Database) {
	backoff := minBackoff
	first := true
	for ctx.Err() == nil {
		if !first {
			m.metrics.reconnects.WithLabelValues(db.Key).Inc()
		}
		first = false
		healthy, err := m.session(ctx, db)
		m.floors.MarkDown(db.Key, time.Now())
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("listener lost; cached data from this database is stale until it is back", "database", db.Key, "error", err)
		backoff = nextBackoff(backoff, healthy, m.cfg.MaxBackoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// minBackoff is the first wait before reconnecting.
const minBackoff = 50 * time.Millisecond

// nextBackoff is the wait before the next connection attempt. After a healthy session (one
// that was up: connected, listening, versions re-read) an outage starts again from the
// shortest wait: the doubling is for a database that keeps refusing, and without the reset
// every outage late in a process's life would cost MaxBackoff of reading every check from
// PostgreSQL.
func nextBackoff(prev time.Duration, healthy bool, maxBackoff time.Duration) time.Duration {
	if healthy {
		return minBackoff
	}
	return min(prev*2, maxBackoff)
}

// session is one connection's life: connect, LISTEN, re-read versions, mark up, then wait
// for notifications with a heartbeat until something fails. healthy reports that the
// session was up.
func (m *Manager) session(ctx context.Context, db Database) (healthy bool, err error) {
	cfg, err := pgx.ParseConfig(db.dsn)
	if err != nil {
		return false, fmt.Errorf("connection string: %w", registry.Redact(err))
	}
	// Named so operators (and tests) can find listeners in pg_stat_activity.
	cfg.RuntimeParams["application_name"] = ListenerApplicationName
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect: %w", registry.Redact(err))
	}
	defer func() {
		// A dead peer must not hold the reconnect up: closing only tries to say goodbye.
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	// Listening first, then reading versions: a change committed in between is both seen
	// in the versions and notified, never neither.
	versions, err := m.resync(ctx, db)
	if err != nil {
		return false, fmt.Errorf("re-read versions: %w", err)
	}
	// A relay publishes the versions before the session counts as healthy: while Redis
	// refuses, reconnections back off instead of starting over every 50ms.
	if err := m.publish(ctx, Event{Kind: EventResynced, Database: db.Key, Versions: versions}); err != nil {
		return false, err
	}
	m.floors.MarkUp(db.Key)
	m.metrics.up.WithLabelValues(db.Key).Set(1)
	// From the moment the connection fails, notifications may be lost: the database is
	// distrusted right there, before anything is closed or logged.
	lost := func(err error) (bool, error) {
		m.floors.MarkDown(db.Key, time.Now())
		m.metrics.up.WithLabelValues(db.Key).Set(0)
		m.publishDown(db.Key)
		return true, err
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, m.cfg.Heartbeat)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if err := m.handle(db, n.Payload); err != nil {
				// A change may be hidden and the versions cannot be read: start over.
				return lost(err)
			}
			if err := m.publish(ctx, Event{Kind: EventNotified, Database: db.Key, Payload: n.Payload}); err != nil {
				return lost(err)
			}
			continue
		case ctx.Err() != nil:
			return lost(ctx.Err())
		case !pgconn.Timeout(err) && !errors.Is(err, context.DeadlineExceeded):
			return lost(err)
		}
		// Silence: prove the connection still answers.
		hctx, cancel := context.WithTimeout(ctx, m.cfg.Heartbeat)
		_, err = conn.Exec(hctx, "SELECT 1")
		cancel()
		if err != nil {
			return lost(fmt.Errorf("heartbeat: %w", err))
		}
		if err := m.publish(ctx, Event{Kind: EventAlive, Database: db.Key}); err != nil {
			return lost(err)
		}
	}
}

// resync reads the database's current versions and raises every floor to them: whatever was
// cached before may have missed notifications. It returns the versions read.
func (m *Manager) resync(ctx context.Context, db Database) (map[string]uint64, error) {
	versions, err := m.readVersions(ctx, db)
	if err != nil {
		return nil, err
	}
	m.applyVersions(db.Key, versions)
	return versions, nil
}

// readVersions reads a database's versions: tenant id → version, or the admin version under
// PlatformScope for the admin database.
func (m *Manager) readVersions(ctx context.Context, db Database) (map[string]uint64, error) {
	if db.Key == AdminDatabase {
		v, err := m.versions.AdminVersion(ctx)
		if err != nil {
			return nil, err
		}
		return map[string]uint64{PlatformScope: v}, nil
	}
	return m.versions.DatabaseVersions(ctx, db.ConnectionID, db.Database)
}

// applyVersions raises every floor of a database's scopes to the versions given.
func (m *Manager) applyVersions(dbKey string, versions map[string]uint64) {
	if dbKey == AdminDatabase {
		v, ok := versions[PlatformScope]
		if !ok {
			return
		}
		m.floors.RaiseAll(PlatformScope, v)
		m.floors.RaiseAllDirs(v)
		m.onTenant("")
		m.metrics.version.WithLabelValues(dbKey).Set(float64(v))
		return
	}
	var top uint64
	for tenant, v := range versions {
		if tenant == PlatformScope {
			continue // a tenant database holds no platform data
		}
		m.floors.RaiseAll(tenant, v)
		top = max(top, v)
	}
	m.metrics.version.WithLabelValues(dbKey).Set(float64(top))
}

// poll re-reads the versions of every database whose listener is up; a version beyond what
// notifications said means some were lost, and the whole scope is invalidated. A relay
// publishes those raises too.
func (m *Manager) poll(ctx context.Context) {
	m.mu.Lock()
	dbs := make([]Database, 0, len(m.known))
	for _, db := range m.known {
		dbs = append(dbs, db)
	}
	m.mu.Unlock()
	for _, db := range dbs {
		if _, down := m.floors.DownSince(db.Key); down {
			continue
		}
		versions, err := m.readVersions(ctx, db)
		if err != nil {
			continue
		}
		raised := map[string]uint64{}
		for scope, v := range versions {
			if v > m.floors.Seen(scope) {
				m.metrics.pollRaises.Inc()
				raised[scope] = v
			}
		}
		if len(raised) == 0 {
			continue
		}
		m.applyVersions(db.Key, raised)
		if m.cfg.Publish != nil {
			if err := m.cfg.Publish.Publish(ctx, Event{Kind: EventRaised, Database: db.Key, At: time.Now(), Versions: raised}); err != nil {
				// Its listener's next publication fails and starts a session whose versions
				// pdps apply in full.
				m.pubFailed.Store(db.Key, struct{}{})
			}
		}
	}
}

// Notification is the payload of the RBAC triggers.
type Notification struct {
	Level    string  `json:"level"`
	TenantID *string `json:"tenant_id"`
	Kind     string  `json:"kind"`
	UserID   *string `json:"user_id"`
	RoleID   *string `json:"role_id"`
	Version  uint64  `json:"version"`
	// At is when the trigger ran (microseconds since the epoch), for the staleness metric.
	At int64 `json:"at"`
}

// handle turns one notification into floor raises. It is O(1) so a burst of thousands costs
// little; nothing is deleted from the caches here.
func (m *Manager) handle(db Database, payload string) error {
	var n Notification
	if err := json.Unmarshal([]byte(payload), &n); err != nil || n.Version == 0 {
		// A payload we cannot read may hide a change: treat the database as resynced.
		m.log.Warn("unreadable notification; invalidating the database's scopes", "database", db.Key)
		m.metrics.invalidations.WithLabelValues("unreadable").Inc()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := m.resync(ctx, db); err != nil {
			return fmt.Errorf("resync after an unreadable notification: %w", err)
		}
		return nil
	}
	m.metrics.received.WithLabelValues(db.Key).Inc()
	m.Apply(n)
	if n.At > 0 {
		m.metrics.staleness.Observe(time.Since(time.UnixMicro(n.At)).Seconds())
	}
	return nil
}

// Apply raises the floors a notification calls for.
func (m *Manager) Apply(n Notification) {
	user := ""
	if n.UserID != nil {
		user = *n.UserID
	}
	tenant := ""
	if n.TenantID != nil {
		tenant = *n.TenantID
	}
	switch {
	case n.Level == "platform" && n.Kind == "user" && user != "":
		m.floors.RaiseUser(PlatformScope, user, n.Version)
	case n.Level == "platform":
		m.floors.RaiseAll(PlatformScope, n.Version)
	case n.Kind == "tenant" && tenant != "":
		// From the admin database: the tenant's status, realm or placement changed. Heard
		// comes last: once the version counts as heard of, what depends on it is invalidated
		// (a consistency token naming it is then not treated as news).
		m.floors.RaiseDir(tenant, n.Version)
		m.onTenant(tenant)
		m.floors.Heard(PlatformScope, n.Version)
	case tenant == "":
		// tenant_template or a schema not yet bound to a tenant: nothing is cached from it.
		return
	case n.Kind == "user" && user != "":
		m.floors.RaiseUser(tenant, user, n.Version)
	default:
		m.floors.RaiseAll(tenant, n.Version)
	}
	m.metrics.invalidations.WithLabelValues(n.Kind).Inc()
}

type metrics struct {
	received      *prometheus.CounterVec
	invalidations *prometheus.CounterVec
	reconnects    *prometheus.CounterVec
	up            *prometheus.GaugeVec
	version       *prometheus.GaugeVec
	staleness     prometheus.Histogram
	pollRaises    prometheus.Counter
	publishErrors prometheus.Counter
	feedGaps      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_notifications_received_total",
			Help: "Notifications received, by database."}, []string{"database"}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_invalidations_total",
			Help: "Floors raised by notifications, by kind of change."}, []string{"kind"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_listener_reconnects_total",
			Help: "Listener reconnections, by database."}, []string{"database"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sync_listener_up",
			Help: "1 while the database's listener runs and its versions are current."}, []string{"database"}),
		version: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sync_database_version",
			Help: "Highest authz_state version read from the database at its last resync."}, []string{"database"}),
		staleness: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sync_staleness_seconds",
			Help:    "Time from a change's trigger to the pdp raising its floor.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}}),
		pollRaises: prometheus.NewCounter(prometheus.CounterOpts{Name: "sync_poll_invalidations_total",
			Help: "Scopes invalidated by the version poll (notifications lost or not yet delivered)."}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "sync_relay_publish_errors_total",
			Help: "Relay: publications to Redis that failed (each ends its listener's session)."}),
		feedGaps: prometheus.NewCounter(prometheus.CounterOpts{Name: "sync_relay_gaps_total",
			Help: "Relay mode: times the relay stream lost events this pdp had not read (every database re-read)."}),
	}
	if reg != nil {
		reg.MustRegister(m.received, m.invalidations, m.reconnects, m.up, m.version, m.staleness, m.pollRaises,
			m.publishErrors, m.feedGaps)
	}
	return m
}
