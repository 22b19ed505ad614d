package adminapi

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
)

// The control plane's state on /metrics. Tenants, database health and migration runs are read
// from the admin database at scrape time (a few grouped queries); the audit outbox lives in
// every tenant schema, so its backlog is measured by the background shipper after each pass
// rather than by every scrape. Labels take only values the database constrains: statuses,
// region codes and connection names (slugs), deployment types.

// stateScrapeTimeout bounds the queries of one scrape.
const stateScrapeTimeout = 5 * time.Second

var (
	descTenants = prometheus.NewDesc("neoauthz_admin_tenants", "Tenants by status, region and deployment type.",
		[]string{"status", "region", "deployment"}, nil)
	descDBUp = prometheus.NewDesc("neoauthz_admin_database_up", "1 if the registered database passed its last health check.",
		[]string{"connection"}, nil)
	descDBActive = prometheus.NewDesc("neoauthz_admin_database_active", "1 if the registered database is in service.",
		[]string{"connection"}, nil)
	descDBLatency = prometheus.NewDesc("neoauthz_admin_database_latency_seconds", "Latency of the registered database's last health check.",
		[]string{"connection"}, nil)
	descDBFailures = prometheus.NewDesc("neoauthz_admin_database_consecutive_failures", "Consecutive failed health checks of the registered database.",
		[]string{"connection"}, nil)
	descRuns = prometheus.NewDesc("neoauthz_admin_migration_runs", "Recorded migration runs by status (running, succeeded, failed).",
		[]string{"status"}, nil)
	descScrapeErr = prometheus.NewDesc("neoauthz_admin_state_scrape_error", "1 if reading the control plane's state for this scrape failed.",
		nil, nil)
)

// stateCollector reads the control plane's state when Prometheus scrapes.
type stateCollector struct{ s *Server }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTenants, descDBUp, descDBActive, descDBLatency, descDBFailures, descRuns, descScrapeErr} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), stateScrapeTimeout)
	defer cancel()
	err := errors.Join(
		c.each(ctx, `SELECT status, region_code, deployment_type, count(*)::float8 FROM admin.tenants GROUP BY 1, 2, 3`,
			func(row pgx.Row) error {
				var status, region, deployment string
				var n float64
				if err := row.Scan(&status, &region, &deployment, &n); err != nil {
					return err
				}
				ch <- prometheus.MustNewConstMetric(descTenants, prometheus.GaugeValue, n, status, region, deployment)
				return nil
			}),
		c.each(ctx, `SELECT name, is_healthy, is_active, coalesce(last_latency_ms, 0) / 1000, consecutive_failures::float8 FROM admin.database_connections`,
			func(row pgx.Row) error {
				var name string
				var healthy, active bool
				var latency, failures float64
				if err := row.Scan(&name, &healthy, &active, &latency, &failures); err != nil {
					return err
				}
				ch <- prometheus.MustNewConstMetric(descDBUp, prometheus.GaugeValue, boolValue(healthy), name)
				ch <- prometheus.MustNewConstMetric(descDBActive, prometheus.GaugeValue, boolValue(active), name)
				ch <- prometheus.MustNewConstMetric(descDBLatency, prometheus.GaugeValue, latency, name)
				ch <- prometheus.MustNewConstMetric(descDBFailures, prometheus.GaugeValue, failures, name)
				return nil
			}),
		c.each(ctx, `SELECT status, count(*)::float8 FROM admin.migration_runs GROUP BY 1`,
			func(row pgx.Row) error {
				var status string
				var n float64
				if err := row.Scan(&status, &n); err != nil {
					return err
				}
				ch <- prometheus.MustNewConstMetric(descRuns, prometheus.GaugeValue, n, status)
				return nil
			}),
	)
	if err != nil {
		c.s.Log.Error("metrics: read the control plane's state", "err", err)
	}
	ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, boolValue(err != nil))
}

func (c stateCollector) each(ctx context.Context, sql string, fn func(pgx.Row) error) error {
	rows, err := c.s.Admin.Query(ctx, sql)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// outboxMetrics are set by measureOutboxes.
type outboxMetrics struct {
	backlog, oldest prometheus.Gauge
}

func newOutboxMetrics(reg prometheus.Registerer) (outboxMetrics, error) {
	m := outboxMetrics{
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{Name: "neoauthz_admin_audit_outbox_backlog",
			Help: "Audit outbox rows waiting in tenant schemas at the last measurement."}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "neoauthz_admin_audit_outbox_oldest_age_seconds",
			Help: "Age of the oldest waiting audit outbox row (by its claimed time) at the last measurement; 0 when none waits."}),
	}
	for _, c := range []prometheus.Collector{m.backlog, m.oldest} {
		if err := reg.Register(c); err != nil {
			return m, err
		}
	}
	return m, nil
}

// measureOutboxes counts the rows waiting in every shippable tenant's audit outbox and the age
// of the oldest, for /metrics.
func (s *Server) measureOutboxes(ctx context.Context) {
	tenants, err := s.outboxTenants(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.Log.Error("audit outbox: list tenants", "err", err)
		}
		return
	}
	var total int64
	var oldest time.Time
	for _, t := range tenants {
		db, err := s.tenantDBOf(ctx, t)
		if err != nil {
			continue
		}
		var n int64
		var first *time.Time
		err = db.pool.QueryRow(ctx, `SELECT count(*), min(occurred_at) FROM `+db.table("audit_outbox")).Scan(&n, &first)
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42P01" { // no outbox yet
			continue
		}
		if err != nil {
			s.Log.Error("audit outbox: measure", "tenant", t.Slug, "err", err)
			continue
		}
		total += n
		if first != nil && (oldest.IsZero() || first.Before(oldest)) {
			oldest = *first
		}
	}
	s.outbox.backlog.Set(float64(total))
	age := 0.0
	if !oldest.IsZero() {
		age = max(0, s.Now().Sub(oldest).Seconds())
	}
	s.outbox.oldest.Set(age)
}
