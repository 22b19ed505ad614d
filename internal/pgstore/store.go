package pgstore

import (
	"context"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/neofast/neoauthz/internal/registry"
)

// ErrNotFound is returned when a tenant does not exist; match it with errors.Is.
var ErrNotFound = errors.New("not found")

// ErrConnectionInactive is returned by Pool (and so by every tenant query) when the registry
// has deactivated the tenant's database connection.
var ErrConnectionInactive = errors.New("database connection is not active")

// ErrInvalidSchemaName is returned, before anything is sent to PostgreSQL, for a schema name
// that is not ^[a-z_][a-z0-9_]{0,62}$ (or starts with pg_).
var ErrInvalidSchemaName = errors.New("invalid schema name")

// ErrRegionNotServed is returned by Pool (and so by every tenant query), before any
// connection is opened, for a database in a region outside Options.Regions.
var ErrRegionNotServed = errors.New("database is in a region this process does not serve")

// ErrClosed is returned by a Store after Close.
var ErrClosed = errors.New("pgstore: store closed")

// Defaults of Options.
const (
	DefaultMaxConnsPerDatabase int32 = 4
	DefaultQueryTimeout              = 2 * time.Second
	DefaultRecheckInterval           = 30 * time.Second
)

// Options tunes a Store; zero fields take the defaults above.
type Options struct {
	// MaxConnsPerDatabase caps each pool the Store opens on a tenant database. The
	// connection's registered pool_max caps it too, so the registry stays the operator's limit.
	// Loads are single statements of a few milliseconds, and L1, Redis and coalescing keep
	// most of them off PostgreSQL, so a few connections serve a pdp (docs/scale.md).
	MaxConnsPerDatabase int32
	// Poolers sends the loads from a registered connection's databases through a PgBouncer
	// in transaction pooling mode (see UsePooler) instead of to the registered address.
	Poolers Poolers
	// QueryTimeout bounds each query, including the wait for a pooled connection.
	QueryTimeout time.Duration
	// RecheckInterval is how often a cached pool's registry row is re-read, in the background,
	// so that a connection deactivated (or re-pointed) in the registry stops being used
	// without a restart.
	RecheckInterval time.Duration
	// Registerer, when set, receives db_query_duration_seconds{query} and the replica metrics.
	Registerer prometheus.Registerer
	// ReplicaFills lets FillTenantUser read the active replicas the registry links to a
	// tenant's primary (see replicas.go); off, every fill reads the primary.
	ReplicaFills bool
	// ReplicaProbeInterval is how often a replica in use is probed (still a standby, lag) and
	// how long one that could not be reached is left alone before it is tried again.
	ReplicaProbeInterval time.Duration
	// Regions limits the databases the Store connects to (the zero value: every region). A
	// registered connection of another region is refused (ErrRegionNotServed) before any
	// connection string is built, so a tenant of another region never causes a connection.
	Regions registry.Regions
}

func (o Options) withDefaults() Options {
	if o.MaxConnsPerDatabase <= 0 {
		o.MaxConnsPerDatabase = DefaultMaxConnsPerDatabase
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = DefaultQueryTimeout
	}
	if o.RecheckInterval <= 0 {
		o.RecheckInterval = DefaultRecheckInterval
	}
	if o.ReplicaProbeInterval <= 0 {
		o.ReplicaProbeInterval = DefaultReplicaProbeInterval
	}
	return o
}

// Store reads tenants from the admin database and RBAC facts from the tenants' databases. It
// never writes RBAC data, except through a tenant's sync_user function (SyncTenantUser). It is
// safe for concurrent use.
type Store struct {
	admin *pgxpool.Pool
	reg   *registry.Store
	opts  Options

	mu     sync.Mutex
	closed bool
	pools  map[poolKey]*poolEntry
	// bg counts the goroutines that open and recheck pools, so Close can wait for them.
	bg sync.WaitGroup

	schemas  sync.Map // schema name -> *schemaQueries
	platform string   // the platform loader statement

	durations *prometheus.HistogramVec
	replicas  *replicas
}

type poolKey struct{ conn, database string }

// poolEntry is one lazily opened pool. ready is closed once pool or err is set; callers that
// arrive while it opens wait on it instead of opening a second pool.
type poolEntry struct {
	ready chan struct{}
	pool  *pgxpool.Pool
	err   error
	// dsn is what the pool was opened with, compared on recheck to notice a changed
	// registry row. It holds the password: never log or return it.
	dsn      string
	checked  atomic.Int64 // unix nanoseconds of the last registry read
	checking atomic.Bool
}

// New returns a Store over the admin database pool and the registry that locates tenant
// databases. The admin pool stays the caller's; Close closes only the pools the Store opened.
func New(admin *pgxpool.Pool, reg *registry.Store, opts Options) *Store {
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "db_query_duration_seconds",
		Help:    "Duration of the pdp's PostgreSQL reads, by query.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"query"})
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(durations)
	}
	return &Store{
		admin:     admin,
		reg:       reg,
		opts:      opts.withDefaults(),
		pools:     make(map[poolKey]*poolEntry),
		platform:  platformLoaderSQL(),
		durations: durations,
		replicas:  newReplicas(opts.Registerer),
	}
}

// Close closes the pools the Store opened, after waiting for pools being opened or rechecked.
// Queries in flight on those pools finish first (pgxpool.Close waits for them).
func (s *Store) Close() {
	s.mu.Lock()
	s.closed = true
	entries := s.pools
	s.pools = nil
	s.mu.Unlock()
	s.bg.Wait()
	for _, e := range entries {
		if e.pool != nil {
			e.pool.Close()
		}
	}
}

// Pool returns the pool on database of the registered connection connectionID (id or name;
// database "" means the connection's own database), opening it on first use. A connection that
// is not registered or not active is an error. Concurrent first calls share one open.
func (s *Store) Pool(ctx context.Context, connectionID, database string) (*pgxpool.Pool, error) {
	if connectionID == "" {
		return nil, errors.New("pgstore: no database connection (the tenant is not placed)")
	}
	key := poolKey{connectionID, database}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	e, ok := s.pools[key]
	if !ok {
		e = &poolEntry{ready: make(chan struct{})}
		s.pools[key] = e
		s.bg.Add(1)
		// Detached from ctx: other callers may be waiting on this open.
		go s.open(key, e)
	}
	s.mu.Unlock()
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		return nil, e.err
	}
	s.maybeRecheck(key, e)
	return e.pool, nil
}

func (s *Store) open(key poolKey, e *poolEntry) {
	defer s.bg.Done()
	defer close(e.ready)
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.QueryTimeout)
	defer cancel()
	c, dsn, err := s.lookup(ctx, key)
	var pool *pgxpool.Pool
	if err == nil {
		pool, err = s.newPool(c, dsn)
	}
	s.mu.Lock()
	if err == nil && s.closed {
		err = ErrClosed
	}
	if err != nil && s.pools[key] == e {
		delete(s.pools, key) // a failed open is not cached: the next call tries again
	}
	s.mu.Unlock()
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		e.err = err
		return
	}
	e.pool, e.dsn = pool, dsn
	e.checked.Store(time.Now().UnixNano())
}

// lookup reads the connection from the registry and builds its connection string.
func (s *Store) lookup(ctx context.Context, key poolKey) (registry.Connection, string, error) {
	if key.database != "" && !registry.ValidIdentifier(key.database) {
		return registry.Connection{}, "", fmt.Errorf("pgstore: database name %q: %w", key.database, ErrInvalidSchemaName)
	}
	c, err := s.reg.GetConnection(ctx, key.conn)
	if err != nil {
		return registry.Connection{}, "", fmt.Errorf("pgstore: %w", err)
	}
	if !c.IsActive {
		return registry.Connection{}, "", fmt.Errorf("pgstore: database connection %s: %w", c.Name, ErrConnectionInactive)
	}
	if !s.opts.Regions.Serves(c.RegionCode) {
		return registry.Connection{}, "", fmt.Errorf("pgstore: database connection %s (region %s): %w", c.Name, c.RegionCode, ErrRegionNotServed)
	}
	dsn, err := s.reg.ConnString(c, key.database)
	if err != nil {
		return registry.Connection{}, "", fmt.Errorf("pgstore: %w", err)
	}
	if addr := s.opts.Poolers[c.Name]; addr != "" {
		if dsn, err = throughPooler(dsn, addr); err != nil {
			return registry.Connection{}, "", fmt.Errorf("pgstore: database connection %s: %w", c.Name, err)
		}
	}
	return c, dsn, nil
}

func (s *Store) newPool(c registry.Connection, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error may quote the connection string, password included.
		return nil, fmt.Errorf("pgstore: database connection %s: connection settings do not parse", c.Name)
	}
	cfg.MaxConns = s.opts.MaxConnsPerDatabase
	if c.PoolMax > 0 && int32(c.PoolMax) < cfg.MaxConns {
		cfg.MaxConns = int32(c.PoolMax)
	}
	cfg.MinConns = 0
	// The pdp never writes RBAC data; the server enforces that for every session we open.
	// SyncTenantUser opens its transaction READ WRITE explicitly, to call sync_user only.
	cfg.ConnConfig.RuntimeParams[readOnlyParam] = "on"
	if s.opts.Poolers[c.Name] != "" {
		UsePooler(cfg)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: database connection %s: open pool: %w", c.Name, err)
	}
	return pool, nil
}

// maybeRecheck re-reads the registry row of a cached pool once RecheckInterval has passed,
// in the background so that no load waits on the admin database. A deactivated, removed or
// changed connection drops the pool; the next Pool call then reopens it or refuses.
func (s *Store) maybeRecheck(key poolKey, e *poolEntry) {
	if time.Since(time.Unix(0, e.checked.Load())) < s.opts.RecheckInterval || !e.checking.CompareAndSwap(false, true) {
		return
	}
	s.mu.Lock()
	if s.closed || s.pools[key] != e {
		s.mu.Unlock()
		e.checking.Store(false)
		return
	}
	s.bg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.bg.Done()
		defer e.checking.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.QueryTimeout)
		defer cancel()
		_, dsn, err := s.lookup(ctx, key)
		e.checked.Store(time.Now().UnixNano())
		switch {
		case err == nil && dsn == e.dsn:
			return
		case err != nil && !errors.Is(err, ErrConnectionInactive) && !errors.Is(err, registry.ErrNotFound) &&
			!errors.Is(err, ErrRegionNotServed):
			// The admin database could not answer: keep serving, try again after the interval.
			return
		}
		s.mu.Lock()
		mine := s.pools[key] == e
		if mine {
			delete(s.pools, key)
		}
		s.mu.Unlock()
		if mine {
			e.pool.Close()
		}
	}()
}

// timeout bounds one query by Options.QueryTimeout; the returned cancel also records the
// query's duration in db_query_duration_seconds{query}.
func (s *Store) timeout(ctx context.Context, query string) (context.Context, context.CancelFunc) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	return ctx, func() {
		cancel()
		s.durations.WithLabelValues(query).Observe(time.Since(start).Seconds())
	}
}
