package pgstore

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/registry"
)

// DefaultReplicaProbeInterval is the default of Options.ReplicaProbeInterval.
const DefaultReplicaProbeInterval = 5 * time.Second

// Fill sources and fallback reasons, the values of the replica metrics' labels.
const (
	sourceReplica  = "replica"
	sourcePrimary  = "primary"
	fallbackStale  = "stale"
	fallbackError  = "error"
	replicaQuery   = "load_tenant_user_replica"
	primaryQuery   = "load_tenant_user"
	probeQueryName = "replica_probe"
)

// replicas is what the Store knows of the registry's read replicas: per primary connection,
// the active replicas linked to it, and per replica whether it may serve fills.
type replicas struct {
	mu   gosync.Mutex
	sets map[string]*replicaSet // by primary connection id

	fills     *prometheus.CounterVec // db_fills_total{source}
	fallbacks *prometheus.CounterVec // db_replica_fallbacks_total{replica,reason}
	up        *prometheus.GaugeVec   // db_replica_up{replica}
	lagSec    *prometheus.GaugeVec   // db_replica_lag_seconds{replica}
	lagBytes  *prometheus.GaugeVec   // db_replica_lag_bytes{replica}
}

// replicaSet is one primary's replicas, re-read from the registry in the background every
// RecheckInterval.
type replicaSet struct {
	list     atomic.Pointer[[]*replica]
	checked  atomic.Int64 // unix nanoseconds of the last registry read (0: never)
	checking atomic.Bool
	next     atomic.Uint32 // round robin among usable replicas
}

// replica is one registered replica. It serves fills only while up: after a probe found it
// answering as a hot standby, and until a fill or a probe fails to reach it.
type replica struct {
	id, name, primaryID string
	up                  atomic.Bool
	probed              atomic.Int64 // unix nanoseconds of the last probe
	probing             atomic.Bool
}

func newReplicas(reg prometheus.Registerer) *replicas {
	r := &replicas{
		sets: map[string]*replicaSet{},
		fills: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "db_fills_total",
			Help: "Permission-set cache fills read from PostgreSQL, by the server that answered (replica or primary)."},
			[]string{"source"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "db_replica_fallbacks_total",
			Help: "Cache fills a replica was asked for and the primary answered: stale (the replica's version was below the floor the fill must honour) or error."},
			[]string{"replica", "reason"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "db_replica_up",
			Help: "1 while a replica serves cache fills: it answered the last probe as a hot standby and no fill has failed to reach it since."},
			[]string{"replica"}),
		lagSec: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "db_replica_lag_seconds",
			Help: "Replication lag of a replica at its last probe: time since the last transaction it replayed, 0 when it has replayed all it received."},
			[]string{"replica"}),
		lagBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "db_replica_lag_bytes",
			Help: "Replication lag of a replica at its last probe: WAL bytes its primary has written that it has not replayed."},
			[]string{"replica"}),
	}
	if reg != nil {
		reg.MustRegister(r.fills, r.fallbacks, r.up, r.lagSec, r.lagBytes)
	}
	// Present from the start, so a dashboard shows 0 rather than nothing.
	r.fills.WithLabelValues(sourceReplica)
	r.fills.WithLabelValues(sourcePrimary)
	return r
}

// FillTenantUser loads like LoadTenantUser, for a cache fill: when Options.ReplicaFills is
// set and a replica of the tenant's primary is up, it reads the replica, and keeps what it read
// only if its authz_state version (read in the same snapshot as the facts) is at least floor()
// — the newest version the caller must honour, asked after the read so that a notification
// that arrived meanwhile counts. Otherwise, or when the replica fails, it reads the primary:
// a replica never turns into an error or older data for the caller.
func (s *Store) FillTenantUser(ctx context.Context, t Tenant, externalID string, floor func() uint64) (decision.Input, error) {
	q, err := s.queries(t.SchemaName)
	if err != nil {
		return decision.Input{}, err
	}
	// The primary's pool first: a deactivated primary serves nothing, not even from its replicas.
	primary, err := s.Pool(ctx, t.ConnectionID, t.Database)
	if err != nil {
		return decision.Input{}, err
	}
	if s.opts.ReplicaFills {
		if r := s.pickReplica(t.ConnectionID); r != nil {
			if in, ok := s.fillFromReplica(ctx, r, q, t, externalID, floor); ok {
				return in, nil
			}
		}
	}
	in, err := s.loadFrom(ctx, primary, q, t, externalID, primaryQuery)
	if err == nil {
		s.replicas.fills.WithLabelValues(sourcePrimary).Inc()
	}
	return in, err
}

// fillFromReplica reads from r and reports whether the result may be used.
func (s *Store) fillFromReplica(ctx context.Context, r *replica, q *schemaQueries, t Tenant, externalID string, floor func() uint64) (decision.Input, bool) {
	pool, err := s.Pool(ctx, r.id, t.Database)
	var in decision.Input
	if err == nil {
		in, err = s.loadFrom(ctx, pool, q, t, externalID, replicaQuery)
	}
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up; that says nothing about the replica.
			return decision.Input{}, false
		}
		if unreachable(err) {
			s.markDown(r)
		}
		s.replicas.fallbacks.WithLabelValues(r.name, fallbackError).Inc()
		return decision.Input{}, false
	}
	if in.Version < floor() {
		s.replicas.fallbacks.WithLabelValues(r.name, fallbackStale).Inc()
		return decision.Input{}, false
	}
	s.replicas.fills.WithLabelValues(sourceReplica).Inc()
	return in, true
}

// pickReplica returns a replica of the primary that is up, taking turns among them, or nil.
// It never waits: the replica list and the probes are read in the background, so the first
// fills of a primary go to the primary while its replicas are looked up.
func (s *Store) pickReplica(primaryID string) *replica {
	set := s.replicaSet(primaryID)
	if set == nil {
		return nil
	}
	list := set.list.Load()
	if list == nil || len(*list) == 0 {
		return nil
	}
	n := len(*list)
	start := int(set.next.Add(1))
	for i := range n {
		r := (*list)[(start+i)%n]
		s.maybeProbe(r)
		if r.up.Load() {
			return r
		}
	}
	return nil
}

// replicaSet returns the primary's replica set, starting a registry read when it is due.
func (s *Store) replicaSet(primaryID string) *replicaSet {
	rs := s.replicas
	rs.mu.Lock()
	set, ok := rs.sets[primaryID]
	if !ok {
		set = &replicaSet{}
		rs.sets[primaryID] = set
	}
	rs.mu.Unlock()
	if time.Since(time.Unix(0, set.checked.Load())) < s.opts.RecheckInterval || !set.checking.CompareAndSwap(false, true) {
		return set
	}
	if !s.goBackground(func() {
		defer set.checking.Store(false)
		s.readReplicas(primaryID, set)
	}) {
		set.checking.Store(false)
		return nil
	}
	return set
}

// readReplicas re-reads a primary's replicas from the registry, keeping the state of those
// already known. When the admin database cannot answer, the list in use is kept until the
// next read.
func (s *Store) readReplicas(primaryID string, set *replicaSet) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.QueryTimeout)
	defer cancel()
	conns, err := s.reg.Replicas(ctx, primaryID)
	set.checked.Store(time.Now().UnixNano()) // after a failure too: try again after the interval
	if err != nil {
		return
	}
	known := map[string]*replica{}
	if old := set.list.Load(); old != nil {
		for _, r := range *old {
			known[r.id] = r
		}
	}
	list := make([]*replica, 0, len(conns))
	for _, c := range conns {
		r := known[c.ID]
		if r == nil || r.name != c.Name {
			r = &replica{id: c.ID, name: c.Name, primaryID: primaryID}
		}
		delete(known, c.ID)
		list = append(list, r)
	}
	for _, gone := range known {
		gone.up.Store(false)
		s.replicas.up.DeleteLabelValues(gone.name)
		s.replicas.lagSec.DeleteLabelValues(gone.name)
		s.replicas.lagBytes.DeleteLabelValues(gone.name)
	}
	set.list.Store(&list)
}

// unreachable reports whether err says the server cannot serve now, so the replica is left
// alone until a probe finds it back: no answer at all, or one that ends the session (shutting
// down, starting up, out of connections). A server that answered a query with an error (e.g. a
// schema it has not replayed yet, or a query cancelled by a recovery conflict) stays in use.
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return true
	}
	switch pgErr.Code[:min(2, len(pgErr.Code))] {
	case "08", "53", "57": // connection exception, insufficient resources, operator intervention
		return true
	}
	return pgErr.Severity == "FATAL" || pgErr.Severity == "PANIC"
}

func (s *Store) markDown(r *replica) {
	r.up.Store(false)
	r.probed.Store(time.Now().UnixNano()) // the next probe waits a whole interval
	s.replicas.up.WithLabelValues(r.name).Set(0)
}

// maybeProbe probes r in the background once ReplicaProbeInterval has passed since the last
// probe: a replica that is up is measured (lag, still a standby), one that is down is tried
// again.
func (s *Store) maybeProbe(r *replica) {
	if time.Since(time.Unix(0, r.probed.Load())) < s.opts.ReplicaProbeInterval || !r.probing.CompareAndSwap(false, true) {
		return
	}
	if !s.goBackground(func() {
		defer r.probing.Store(false)
		s.probe(r)
	}) {
		r.probing.Store(false)
	}
}

// probe asks the replica whether it is a hot standby and how far behind its primary it is. A
// replica that was promoted (no longer in recovery) is not used: it no longer follows the
// primary the registry names, and which of the two holds the newest data is unknown.
func (s *Store) probe(r *replica) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.QueryTimeout)
	defer cancel()
	defer r.probed.Store(time.Now().UnixNano())
	qctx, done := s.timeout(ctx, probeQueryName)
	defer done()
	// The primary's WAL position first: the replica's position, read after it, can only be
	// further along, so the difference never overstates the lag. Without the primary the lag
	// in bytes is unknown; the replica may still serve (its data is checked at every fill).
	var primaryLSN *string
	if p, err := s.Pool(qctx, r.primaryID, ""); err == nil {
		var lsn string
		if err := p.QueryRow(qctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err == nil {
			primaryLSN = &lsn
		}
	}
	standby, lagSec, lagBytes, err := s.probeReplica(qctx, r, primaryLSN)
	if err != nil || !standby {
		r.up.Store(false)
		s.replicas.up.WithLabelValues(r.name).Set(0)
		return
	}
	s.replicas.lagSec.WithLabelValues(r.name).Set(lagSec)
	if lagBytes != nil {
		s.replicas.lagBytes.WithLabelValues(r.name).Set(max(*lagBytes, 0))
	}
	r.up.Store(true)
	s.replicas.up.WithLabelValues(r.name).Set(1)
}

func (s *Store) probeReplica(ctx context.Context, r *replica, primaryLSN *string) (standby bool, lagSec float64, lagBytes *float64, err error) {
	var pool *pgxpool.Pool
	if pool, err = s.Pool(ctx, r.id, ""); err != nil {
		return false, 0, nil, err
	}
	err = pool.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
		     ELSE coalesce(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 0) END::float8,
		pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::float8`, primaryLSN).Scan(&standby, &lagSec, &lagBytes)
	if err != nil {
		return false, 0, nil, fmt.Errorf("pgstore: probe replica %s: %w", r.name, registry.Redact(err))
	}
	return standby, lagSec, lagBytes, nil
}

// goBackground runs fn in a goroutine Close waits for; false when the Store is closed.
func (s *Store) goBackground(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		fn()
	}()
	return true
}
