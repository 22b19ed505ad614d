package decisionlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/migrations"
)

// ErrNotFound is a decision that is not in the log (never recorded, sampled out, dropped or
// pruned), or a region without an analytics database.
var ErrNotFound = errors.New("not found")

// Database returns the active analytics database of a region: the first by name, the same
// rule the recorder follows.
func Database(ctx context.Context, reg *registry.Store, region string) (registry.Connection, error) {
	c, err := reg.AnalyticsDatabase(ctx, region)
	if errors.Is(err, registry.ErrNotFound) {
		return registry.Connection{}, fmt.Errorf("region %q has no active analytics database: %w", region, ErrNotFound)
	}
	return c, err
}

// Filter selects a tenant's decisions. Zero fields match everything.
type Filter struct {
	TenantID   string // required
	User       string
	Permission string
	Allowed    *bool
	From, To   time.Time // From inclusive, To exclusive
	Page       int       // from 1
	PageSize   int
}

const selectColumns = `decision_id, decided_at, coalesce(tenant_id::text, ''), coalesce(level, ''), coalesce(user_id, ''),
	permission, coalesce(resource_owner, ''), coalesce(resource_team, ''), coalesce(resource_tenant, ''), allowed,
	reason, coalesce(grant_code, ''), coalesce(grant_role, ''), coalesce(grant_group, ''), coalesce(version, 0),
	transport, coalesce(method, ''), coalesce(path, ''), coalesce(client_addr, ''), coalesce(latency_us, 0)`

func table() string { return pgx.Identifier{migrations.AnalyticsSchema, "decision_log"}.Sanitize() }

func scanEntry(row pgx.Row) (Entry, error) {
	var e Entry
	var version int64
	var lat int32
	err := row.Scan(&e.DecisionID, &e.Time, &e.TenantID, &e.Level, &e.User, &e.Permission, &e.ResourceOwner,
		&e.ResourceTeam, &e.ResourceTenant, &e.Allowed, &e.Reason, &e.GrantCode, &e.GrantRole, &e.GrantGroup,
		&version, &e.Transport, &e.Method, &e.Path, &e.Client, &lat)
	e.Version, e.LatencyMicros = uint64(version), int64(lat)
	e.Latency = time.Duration(lat) * time.Microsecond
	e.Time = e.Time.UTC()
	return e, err
}

// Query returns one page of a tenant's decisions, newest first, and how many match in all.
func Query(ctx context.Context, db *pgxpool.Pool, f Filter) ([]Entry, int, error) {
	if f.TenantID == "" {
		return nil, 0, errors.New("decisionlog: query without a tenant")
	}
	if f.Page < 1 {
		f.Page = 1
	}
	if f.PageSize < 1 {
		f.PageSize = 20
	}
	var from, to *time.Time
	if !f.From.IsZero() {
		from = &f.From
	}
	if !f.To.IsZero() {
		to = &f.To
	}
	where := `tenant_id = $1::uuid AND ($2 = '' OR user_id = $2) AND ($3 = '' OR permission = $3)
		AND ($4::boolean IS NULL OR allowed = $4) AND ($5::timestamptz IS NULL OR decided_at >= $5)
		AND ($6::timestamptz IS NULL OR decided_at < $6)`
	args := []any{f.TenantID, f.User, f.Permission, f.Allowed, from, to}
	var total int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM `+table()+` WHERE `+where, args...).Scan(&total); err != nil {
		return nil, 0, err
	}
	rows, err := db.Query(ctx, `SELECT `+selectColumns+` FROM `+table()+` WHERE `+where+`
		ORDER BY decided_at DESC, decision_id LIMIT $7 OFFSET $8`,
		append(args, f.PageSize, (f.Page-1)*f.PageSize)...)
	if err != nil {
		return nil, 0, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Entry, error) { return scanEntry(row) })
	return out, total, err
}

// Get returns one decision of a tenant by its id, or ErrNotFound.
func Get(ctx context.Context, db *pgxpool.Pool, tenantID, decisionID string) (Entry, error) {
	e, err := scanEntry(db.QueryRow(ctx, `SELECT `+selectColumns+` FROM `+table()+`
		WHERE decision_id = $1 AND tenant_id = $2::uuid LIMIT 1`, decisionID, tenantID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Entry{}, fmt.Errorf("decision %q: %w", decisionID, ErrNotFound)
	}
	return e, err
}

// DefaultRetention is how long decisions are kept when nothing else is configured.
const DefaultRetention = 30 * 24 * time.Hour

// PartitionsAhead is how many days of partitions Maintain creates ahead of today.
const PartitionsAhead = 7

// Pruned is what Maintain did on one analytics database.
type Pruned struct {
	Database          string   `json:"database"`
	Region            string   `json:"region"`
	DroppedPartitions []string `json:"dropped_partitions"`
	DeletedRows       int64    `json:"deleted_rows"`
	Error             string   `json:"error,omitempty"`
}

// Maintain creates the next days' partitions and applies retention on every active analytics
// database: partitions entirely older than retention are dropped, older rows of the default
// partition deleted, and a tenant whose settings.decision_log.retention_days is shorter has
// its older rows deleted. A tenant's retention cannot extend the global one (its partitions
// are gone). One database failing does not stop the others; its error is in its result.
func Maintain(ctx context.Context, admin *pgxpool.Pool, reg *registry.Store, retention time.Duration, now time.Time) ([]Pruned, error) {
	if retention <= 0 {
		retention = DefaultRetention
	}
	conns, err := reg.ListConnections(ctx, registry.ConnectionFilter{Type: registry.TypeAnalytics, ActiveOnly: true})
	if err != nil {
		return nil, err
	}
	shorter, err := tenantRetentions(ctx, admin, retention)
	if err != nil {
		return nil, err
	}
	out := make([]Pruned, 0, len(conns))
	for _, c := range conns {
		p := Pruned{Database: c.Name, Region: c.RegionCode, DroppedPartitions: []string{}}
		if err := maintainOne(ctx, reg, c, retention, shorter[c.RegionCode], now, &p); err != nil {
			p.Error = registry.Redact(err).Error()
		}
		out = append(out, p)
	}
	return out, nil
}

// tenantRetentions returns, by region, the tenants whose retention is shorter than the global.
func tenantRetentions(ctx context.Context, admin *pgxpool.Pool, global time.Duration) (map[string]map[string]time.Duration, error) {
	rows, err := readTenants(ctx, admin)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]time.Duration{}
	for _, t := range rows {
		if d := time.Duration(t.retentionDays) * 24 * time.Hour; t.retentionDays > 0 && d < global {
			if out[t.region] == nil {
				out[t.region] = map[string]time.Duration{}
			}
			out[t.region][t.id] = d
		}
	}
	return out, nil
}

const partitionPrefix = "decision_log_"

// ensurePartition creates the partition of day when it is missing. Rows of that day already in
// the default partition (written before the partition existed) would make the creation fail,
// so they are moved into it in the same transaction.
func ensurePartition(ctx context.Context, conn *pgx.Conn, day time.Time) error {
	name := partitionPrefix + day.Format("20060102")
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`,
		pgx.Identifier{migrations.AnalyticsSchema, name}.Sanitize()).Scan(&exists); err != nil || exists {
		return err
	}
	def := pgx.Identifier{migrations.AnalyticsSchema, "decision_log_default"}.Sanitize()
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// ensure_decision_log_partition creates the partition in current_schema(), with bounds
		// in the session's time zone: days are UTC days.
		if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true), set_config('TimeZone', 'UTC', true)`,
			migrations.AnalyticsSchema); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE decision_log_moving (LIKE `+table()+`) ON COMMIT DROP`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `WITH moved AS (DELETE FROM `+def+` WHERE decided_at >= $1 AND decided_at < $2 RETURNING *)
			INSERT INTO decision_log_moving SELECT * FROM moved`, day, day.AddDate(0, 0, 1)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT ensure_decision_log_partition($1::date)`, day.Format(time.DateOnly)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO `+table()+` SELECT * FROM decision_log_moving`)
		return err
	})
}

func maintainOne(ctx context.Context, reg *registry.Store, c registry.Connection, retention time.Duration,
	tenants map[string]time.Duration, now time.Time, p *Pruned) error {
	dsn, err := reg.ConnString(c, "")
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	today := now.UTC().Truncate(24 * time.Hour)
	for d := 0; d <= PartitionsAhead; d++ {
		if err := ensurePartition(ctx, conn, today.AddDate(0, 0, d)); err != nil {
			return fmt.Errorf("create partition: %w", err)
		}
	}

	cutoff := now.Add(-retention)
	rows, err := conn.Query(ctx, `SELECT c.relname FROM pg_inherits i
		  JOIN pg_class c ON c.oid = i.inhrelid
		 WHERE i.inhparent = to_regclass($1) ORDER BY c.relname`, table())
	if err != nil {
		return err
	}
	parts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, name := range parts {
		day, err := time.Parse("20060102", strings.TrimPrefix(name, partitionPrefix))
		if err != nil || !strings.HasPrefix(name, partitionPrefix) || !registry.ValidIdentifier(name) {
			continue // the default partition, or nothing of ours
		}
		if day.AddDate(0, 0, 1).After(cutoff) {
			continue
		}
		if _, err := conn.Exec(ctx, `DROP TABLE `+pgx.Identifier{migrations.AnalyticsSchema, name}.Sanitize()); err != nil {
			return err
		}
		p.DroppedPartitions = append(p.DroppedPartitions, name)
	}
	tag, err := conn.Exec(ctx, `DELETE FROM `+pgx.Identifier{migrations.AnalyticsSchema, "decision_log_default"}.Sanitize()+
		` WHERE decided_at < $1`, cutoff)
	if err != nil {
		return err
	}
	p.DeletedRows += tag.RowsAffected()
	for id, d := range tenants {
		tag, err := conn.Exec(ctx, `DELETE FROM `+table()+` WHERE tenant_id = $1::uuid AND decided_at < $2`, id, now.Add(-d))
		if err != nil {
			return err
		}
		p.DeletedRows += tag.RowsAffected()
	}
	return nil
}
