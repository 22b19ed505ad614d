package decisionlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"sort"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/neofast/neoauthz/internal/ratelimit"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/migrations"
)

// Defaults of Config.
const (
	DefaultQueueSize       = 8192
	DefaultBatchSize       = 500
	DefaultFlushInterval   = time.Second
	DefaultAllowSampleRate = 0.01
	DefaultTenantRate      = 200
	DefaultRefreshInterval = 30 * time.Second
	DefaultWriteTimeout    = 5 * time.Second
	DefaultDropLogInterval = time.Minute
)

// Drop reasons (decision_log_dropped_total{reason}).
const (
	DropQueueFull   = "queue_full"   // the queue was full: the database is slow or down
	DropRateLimited = "rate_limited" // the tenant's entries per second were exceeded
	DropWriteFailed = "write_failed" // COPY failed; the batch is not retried
	DropNoDatabase  = "no_database"  // the region has no active analytics database
	DropOtherRegion = "other_region" // the tenant's region is not among Config.Regions
)

// Config tunes the recorder. The zero value of each field means its default.
type Config struct {
	// QueueSize bounds the entries waiting to be written.
	QueueSize int
	// BatchSize is the most entries one COPY writes; a full batch is written at once.
	BatchSize int
	// FlushInterval is how long an entry may wait for its batch to fill.
	FlushInterval time.Duration
	// AllowSampleRate is the fraction of allows recorded (0..1; denies are always recorded,
	// within the rate limit). A tenant's settings.decision_log.allow_sample_rate overrides it.
	// Negative means 0 (no allows).
	AllowSampleRate float64
	// TenantRate is the most entries per second kept for one tenant (burst: twice as many);
	// a tenant's settings.decision_log.max_per_second overrides it. Platform decisions and
	// decisions without a known tenant share one more budget of the same size.
	TenantRate float64
	// PlatformRegion is the region whose analytics database receives platform decisions and
	// decisions without a known tenant; "" means the first region (by code) that has one.
	PlatformRegion string
	// Regions limits the analytics databases written to (the zero value: every region).
	// Decisions about a tenant of another region are dropped (DropOtherRegion), never
	// written to that region's database; platform decisions go to a served region.
	Regions registry.Regions
	// RefreshInterval is how often tenant settings and analytics connections are re-read.
	RefreshInterval time.Duration
	// WriteTimeout bounds one COPY (and the connection it may need).
	WriteTimeout time.Duration
	// DropLogInterval is the period of the log line that reports drops.
	DropLogInterval time.Duration
}

func (c *Config) defaults() {
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.AllowSampleRate < 0 {
		c.AllowSampleRate = 0
	}
	if c.TenantRate <= 0 {
		c.TenantRate = DefaultTenantRate
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.DropLogInterval <= 0 {
		c.DropLogInterval = DefaultDropLogInterval
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.AllowSampleRate > 1 {
		errs = append(errs, errors.New("decision-log-allow-sample-rate: at most 1"))
	}
	if c.QueueSize < 0 || c.BatchSize < 0 || c.TenantRate < 0 {
		errs = append(errs, errors.New("decision log queue size, batch size and tenant rate must not be negative"))
	}
	if c.PlatformRegion != "" && !registry.ValidSlug(c.PlatformRegion) {
		errs = append(errs, fmt.Errorf("decision-log-platform-region: %q is not a region code", c.PlatformRegion))
	}
	if c.PlatformRegion != "" && !c.Regions.Serves(c.PlatformRegion) {
		errs = append(errs, fmt.Errorf("decision-log-platform-region: %s is not one of the served regions (%s)", c.PlatformRegion, c.Regions))
	}
	return errors.Join(errs...)
}

// Recorder records decisions. Build it with New, run its loop with Run; Record is safe for
// concurrent use and never blocks.
type Recorder struct {
	cfg   Config
	admin *pgxpool.Pool
	reg   *registry.Store
	log   *slog.Logger
	// queue holds pointers: a channel's buffer is a ring its sends walk all the way round, so
	// a buffer of entries (300 B each) would keep QueueSize of them resident however short
	// the queue, 2.5 MB at the default. An entry is allocated only once it is let through.
	queue chan *Entry
	snap  atomic.Pointer[snapshot]
	// refreshNow asks the loop to re-read tenants (an entry named a tenant not yet known).
	refreshNow chan struct{}
	lastAsk    atomic.Int64 // unix nanos of the last refreshNow request

	written prometheus.Counter
	dropped *prometheus.CounterVec
	drops   map[string]prometheus.Counter
	flushes prometheus.Histogram

	dropMu     gosync.Mutex
	dropCounts map[string]int64 // since the last drop log line
	lastErr    string           // the last write error since the last drop log line

	pools map[string]openPool // by analytics connection id; loop goroutine only
}

// tenantInfo is what the recorder knows of a tenant.
type tenantInfo struct {
	region     string
	sampleRate float64 // < 0: the global rate
	bucket     *ratelimit.Bucket
}

// snapshot is an immutable view of tenants and analytics databases, swapped on refresh.
type snapshot struct {
	tenants  map[string]*tenantInfo
	shared   *ratelimit.Bucket              // platform and unattributed entries
	dbs      map[string]registry.Connection // region → its analytics database
	platform string                         // region of platform entries; "" when none
}

// New returns a recorder that reads tenants and analytics connections from the admin database
// (admin) through reg. reg may be nil only in tests that never run the loop.
func New(cfg Config, admin *pgxpool.Pool, reg *registry.Store, log *slog.Logger, pr prometheus.Registerer) (*Recorder, error) {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{cfg: cfg, admin: admin, reg: reg, log: log, queue: make(chan *Entry, cfg.QueueSize),
		refreshNow: make(chan struct{}, 1), dropCounts: map[string]int64{}, pools: map[string]openPool{}}
	r.snap.Store(&snapshot{tenants: map[string]*tenantInfo{}, shared: newBucket(cfg.TenantRate), dbs: map[string]registry.Connection{}})
	r.written = prometheus.NewCounter(prometheus.CounterOpts{Name: "decision_log_written_total",
		Help: "Decisions written to the analytics databases."})
	r.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "decision_log_dropped_total",
		Help: "Decisions that were to be recorded but were dropped, by reason (queue_full, rate_limited, write_failed, no_database)."},
		[]string{"reason"})
	r.flushes = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "decision_log_flush_duration_seconds",
		Help:    "Time to write one batch of decisions (COPY) to an analytics database.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}})
	queueLen := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "decision_log_queue_length",
		Help: "Decisions waiting to be written."}, func() float64 { return float64(len(r.queue)) })
	r.drops = map[string]prometheus.Counter{}
	for _, reason := range []string{DropQueueFull, DropRateLimited, DropWriteFailed, DropNoDatabase, DropOtherRegion} {
		r.drops[reason] = r.dropped.WithLabelValues(reason)
	}
	if pr != nil {
		for _, c := range []prometheus.Collector{r.written, r.dropped, r.flushes, queueLen} {
			if err := pr.Register(c); err != nil {
				return nil, fmt.Errorf("decisionlog: metrics: %w", err)
			}
		}
	}
	return r, nil
}

var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Keep reports whether a decision of the tenant (id, "" for none) is to be recorded: every
// deny, and allows by the sample rate (the tenant's own, else the global one). Callers build
// the Entry only when it is. A nil Recorder keeps nothing.
func (r *Recorder) Keep(tenantID string, allowed bool) bool {
	if r == nil {
		return false
	}
	if !allowed {
		return true
	}
	rate := r.cfg.AllowSampleRate
	if ti := r.snap.Load().tenants[tenantID]; ti != nil && ti.sampleRate >= 0 {
		rate = ti.sampleRate
	}
	return rate >= 1 || rate > 0 && rand.Float64() < rate
}

// Record queues e (one Keep let through) if the tenant's rate limit allows it and the queue
// has room; otherwise it counts the drop. It never blocks. A nil Recorder records nothing.
func (r *Recorder) Record(e Entry) {
	if r == nil {
		return
	}
	snap := r.snap.Load()
	now := time.Now()
	b := snap.shared
	if ti := snap.tenants[e.TenantID]; ti != nil {
		b = ti.bucket
	} else if e.TenantID != "" && uuidRe.MatchString(e.TenantID) {
		r.askRefresh(now)
	}
	if !b.Take(now) {
		r.drop(DropRateLimited, 1)
		return
	}
	if e.Time.IsZero() {
		e.Time = now
	}
	queued := new(Entry)
	*queued = e
	select {
	case r.queue <- queued:
	default:
		r.drop(DropQueueFull, 1)
	}
}

// askRefresh wakes the loop to re-read tenants, at most once a second.
func (r *Recorder) askRefresh(now time.Time) {
	last := r.lastAsk.Load()
	if now.UnixNano()-last < int64(time.Second) || !r.lastAsk.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	select {
	case r.refreshNow <- struct{}{}:
	default:
	}
}

func (r *Recorder) drop(reason string, n int) {
	r.drops[reason].Add(float64(n))
	r.dropMu.Lock()
	r.dropCounts[reason] += int64(n)
	r.dropMu.Unlock()
}

// Run writes queued entries until ctx ends, then writes what is left (within WriteTimeout)
// and closes its connections.
func (r *Recorder) Run(ctx context.Context) error {
	defer r.closePools()
	if err := r.refresh(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("decision log: reading tenants and analytics databases", "error", err)
	}
	flush := time.NewTicker(r.cfg.FlushInterval)
	defer flush.Stop()
	refresh := time.NewTicker(r.cfg.RefreshInterval)
	defer refresh.Stop()
	report := time.NewTicker(r.cfg.DropLogInterval)
	defer report.Stop()

	batch := make([]Entry, 0, r.cfg.BatchSize)
	for {
		select {
		case <-ctx.Done():
			for len(batch) < cap(batch) {
				select {
				case e := <-r.queue:
					batch = append(batch, *e)
					continue
				default:
				}
				break
			}
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.WriteTimeout)
			r.write(fctx, batch)
			cancel()
			r.reportDrops()
			return nil
		case e := <-r.queue:
			batch = append(batch, *e)
			if len(batch) == cap(batch) {
				r.write(ctx, batch)
				batch = batch[:0]
			}
		case <-flush.C:
			r.write(ctx, batch)
			batch = batch[:0]
		case <-refresh.C:
			if err := r.refresh(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("decision log: reading tenants and analytics databases", "error", err)
			}
		case <-r.refreshNow:
			if err := r.refresh(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("decision log: reading tenants and analytics databases", "error", err)
			}
		case <-report.C:
			r.reportDrops()
		}
	}
}

// reportDrops logs the drops since the last report, if any.
func (r *Recorder) reportDrops() {
	r.dropMu.Lock()
	counts, lastErr := r.dropCounts, r.lastErr
	r.dropCounts, r.lastErr = map[string]int64{}, ""
	r.dropMu.Unlock()
	if len(counts) == 0 {
		return
	}
	attrs := make([]any, 0, 2*len(counts))
	var total int64
	for reason, n := range counts {
		attrs = append(attrs, reason, n)
		total += n
	}
	attrs = append(attrs, "total", total)
	if lastErr != "" {
		attrs = append(attrs, "last_error", lastErr)
	}
	r.log.Warn("decision log: entries dropped", attrs...)
}

// tenantSettings is settings.decision_log of a tenant.
type tenantSettings struct {
	AllowSampleRate *float64 `json:"allow_sample_rate"`
	MaxPerSecond    *float64 `json:"max_per_second"`
	RetentionDays   *int     `json:"retention_days"`
}

// parseSettings reads settings.decision_log leniently: a value of the wrong type or out of
// range is ignored (the global value applies), so a typo cannot stop recording.
func parseSettings(raw []byte) (sample, rate float64, retention int) {
	sample, rate = -1, -1
	var s tenantSettings
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return sample, rate, 0
	}
	if s.AllowSampleRate != nil && *s.AllowSampleRate >= 0 && *s.AllowSampleRate <= 1 {
		sample = *s.AllowSampleRate
	}
	if s.MaxPerSecond != nil && *s.MaxPerSecond > 0 {
		rate = *s.MaxPerSecond
	}
	if s.RetentionDays != nil && *s.RetentionDays > 0 {
		retention = *s.RetentionDays
	}
	return sample, rate, retention
}

// tenantRow is a tenant's region and decision-log settings (-1 / 0: not set).
type tenantRow struct {
	id, region       string
	sampleRate, rate float64
	retentionDays    int
}

// readTenants reads every tenant that is not deleted with its decision-log settings.
func readTenants(ctx context.Context, admin *pgxpool.Pool) ([]tenantRow, error) {
	rows, err := admin.Query(ctx, `SELECT id::text, region_code, settings->'decision_log'
		  FROM admin.tenants WHERE status <> 'deleted'`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (tenantRow, error) {
		var t tenantRow
		var raw []byte
		err := row.Scan(&t.id, &t.region, &raw)
		t.sampleRate, t.rate, t.retentionDays = parseSettings(raw)
		return t, err
	})
}

// refresh re-reads tenants (region, settings) and the active analytics databases.
func (r *Recorder) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.WriteTimeout)
	defer cancel()
	old := r.snap.Load()
	rows, err := readTenants(ctx, r.admin)
	if err != nil {
		return err
	}
	tenants := make(map[string]*tenantInfo, len(rows))
	for _, row := range rows {
		ti := &tenantInfo{region: row.region, sampleRate: row.sampleRate}
		rate := row.rate
		if rate < 0 {
			rate = r.cfg.TenantRate
		}
		// Keep the tenant's bucket across refreshes so a refresh does not refill it.
		if prev := old.tenants[row.id]; prev != nil && prev.bucket.Rate() == rate {
			ti.bucket = prev.bucket
		} else {
			ti.bucket = newBucket(rate)
		}
		tenants[row.id] = ti
	}
	conns, err := r.reg.ListConnections(ctx, registry.ConnectionFilter{Type: registry.TypeAnalytics, ActiveOnly: true})
	if err != nil {
		return err
	}
	dbs := map[string]registry.Connection{}
	for _, c := range conns { // by name: the first of a region wins, the same one every time
		if _, ok := dbs[c.RegionCode]; !ok && r.cfg.Regions.Serves(c.RegionCode) {
			dbs[c.RegionCode] = c
		}
	}
	platform := r.cfg.PlatformRegion
	if platform == "" && len(dbs) > 0 {
		regions := make([]string, 0, len(dbs))
		for code := range dbs {
			regions = append(regions, code)
		}
		sort.Strings(regions)
		platform = regions[0]
	}
	r.snap.Store(&snapshot{tenants: tenants, shared: old.shared, dbs: dbs, platform: platform})
	r.dropPools(dbs)
	return nil
}

// write copies batch into the analytics databases of the entries' regions. Failures drop
// the entries concerned and are counted; nothing is kept for a retry.
func (r *Recorder) write(ctx context.Context, batch []Entry) {
	if len(batch) == 0 {
		return
	}
	snap := r.snap.Load()
	byRegion := map[string][][]any{}
	for i := range batch {
		e := &batch[i]
		region, tenantID := snap.platform, ""
		if ti := snap.tenants[e.TenantID]; ti != nil {
			region, tenantID = ti.region, e.TenantID
			if !r.cfg.Regions.Serves(region) {
				r.drop(DropOtherRegion, 1)
				continue
			}
		}
		byRegion[region] = append(byRegion[region], e.row(tenantID))
	}
	for region, rows := range byRegion {
		c, ok := snap.dbs[region]
		if !ok {
			r.drop(DropNoDatabase, len(rows))
			continue
		}
		start := time.Now()
		if err := r.copy(ctx, c, rows); err != nil {
			r.drop(DropWriteFailed, len(rows))
			msg := c.Name + ": " + registry.Redact(err).Error()
			r.dropMu.Lock()
			r.lastErr = msg
			r.dropMu.Unlock()
			r.log.Debug("decision log: write failed", "entries", len(rows), "error", msg)
			continue
		}
		r.flushes.Observe(time.Since(start).Seconds())
		r.written.Add(float64(len(rows)))
	}
}

func (r *Recorder) copy(ctx context.Context, c registry.Connection, rows [][]any) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.WriteTimeout)
	defer cancel()
	pool, err := r.pool(ctx, c)
	if err != nil {
		return err
	}
	_, err = pool.CopyFrom(ctx, pgx.Identifier{migrations.AnalyticsSchema, "decision_log"}, columns, pgx.CopyFromRows(rows))
	return err
}

// pool returns the loop's pool on an analytics database, opened on first use (lazily: a
// database that is down costs nothing until an entry is to be written to it).
func (r *Recorder) pool(ctx context.Context, c registry.Connection) (*pgxpool.Pool, error) {
	if p, ok := r.pools[c.ID]; ok {
		if p.conn.Host == c.Host && p.conn.Port == c.Port && p.conn.Database == c.Database && p.conn.Username == c.Username {
			return p.pool, nil
		}
		// The registry entry changed: connect to where it points now.
		p.pool.Close()
		delete(r.pools, c.ID)
	}
	dsn, err := r.reg.ConnString(c, "")
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, registry.Redact(err)
	}
	// One writer: the loop copies one batch at a time.
	cfg.MaxConns = 1
	cfg.MinConns = 0
	cfg.ConnConfig.ConnectTimeout = r.cfg.WriteTimeout
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, registry.Redact(err)
	}
	r.pools[c.ID] = openPool{conn: c, pool: p}
	return p, nil
}

// openPool is a pool and the registry entry it was opened from.
type openPool struct {
	conn registry.Connection
	pool *pgxpool.Pool
}

// dropPools closes the pools of databases no longer in use (deactivated, or no longer the
// region's analytics database).
func (r *Recorder) dropPools(inUse map[string]registry.Connection) {
	for id, p := range r.pools {
		if c, ok := inUse[p.conn.RegionCode]; !ok || c.ID != id {
			p.pool.Close()
			delete(r.pools, id)
		}
	}
}

func (r *Recorder) closePools() {
	for id, p := range r.pools {
		p.pool.Close()
		delete(r.pools, id)
	}
}

// newBucket is a tenant's bucket: rate entries per second, at most 2×rate (at least 1) saved up.
func newBucket(rate float64) *ratelimit.Bucket { return ratelimit.NewBucket(rate, 2*rate) }
