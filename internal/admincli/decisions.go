package admincli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/neofast/neoauthz/internal/decisionlog"
)

// decisionsQuery prints a tenant's recorded decisions, newest first.
func (a *app) decisionsQuery(ctx context.Context, args []string) error {
	fs := newFlags("decisions query")
	var tenant, allowed, from, to, output string
	var f decisionlog.Filter
	fs.StringVar(&tenant, "tenant", "", "")
	fs.StringVar(&f.User, "user", "", "")
	fs.StringVar(&f.Permission, "permission", "", "")
	fs.StringVar(&allowed, "allowed", "", "")
	fs.StringVar(&from, "from", "", "")
	fs.StringVar(&to, "to", "", "")
	fs.IntVar(&f.Page, "page", 1, "")
	fs.IntVar(&f.PageSize, "page-size", 20, "")
	fs.StringVar(&output, "output", "text", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	if tenant == "" {
		return fmt.Errorf("decisions query: --tenant SLUG is required: %w", ErrUsage)
	}
	if f.Page < 1 || f.PageSize < 1 || f.PageSize > 1000 {
		return fmt.Errorf("decisions query: --page >= 1 and 1 <= --page-size <= 1000: %w", ErrUsage)
	}
	if allowed != "" {
		b, err := strconv.ParseBool(allowed)
		if err != nil {
			return fmt.Errorf("decisions query: --allowed true|false: %w", ErrUsage)
		}
		f.Allowed = &b
	}
	for _, p := range []struct {
		v string
		t *time.Time
	}{{from, &f.From}, {to, &f.To}} {
		if p.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, p.v)
		if err != nil {
			return fmt.Errorf("decisions query: --from/--to take RFC 3339 times (2026-01-02T15:04:05Z): %w", ErrUsage)
		}
		*p.t = t
	}
	var region string
	err := a.pool.QueryRow(ctx, `SELECT id::text, region_code FROM admin.tenants WHERE slug = $1 OR id::text = $1`, tenant).
		Scan(&f.TenantID, &region)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("tenant %q not found", tenant)
	}
	if err != nil {
		return err
	}
	conn, err := decisionlog.Database(ctx, a.reg, region)
	if err != nil {
		return err
	}
	dsn, err := a.reg.ConnString(conn, "")
	if err != nil {
		return err
	}
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return fmt.Errorf("analytics database %s: connection settings do not parse", conn.Name)
	}
	defer db.Close()
	out, total, err := decisionlog.Query(ctx, db, f)
	if err != nil {
		return err
	}
	if output == "json" {
		return a.printJSON(map[string]any{"decisions": out, "total": total, "page": f.Page, "page_size": f.PageSize})
	}
	rows := make([][]string, 0, len(out))
	for _, e := range out {
		rows = append(rows, []string{e.Time.Format(time.RFC3339Nano), e.DecisionID, e.User, e.Permission,
			strconv.FormatBool(e.Allowed), e.Reason, e.Transport, e.Path})
	}
	a.table("TIME\tDECISION\tUSER\tPERMISSION\tALLOWED\tREASON\tTRANSPORT\tPATH", rows)
	fmt.Fprintf(a.env.Stdout, "%d of %d (page %d)\n", len(out), total, f.Page)
	return nil
}

// decisionsPrune creates partitions ahead and applies retention on every analytics database.
func (a *app) decisionsPrune(ctx context.Context, args []string) error {
	fs := newFlags("decisions prune")
	var output string
	retention, err := envRetention(a.env.Getenv)
	if err != nil {
		return err
	}
	fs.DurationVar(&retention, "retention", retention, "")
	fs.StringVar(&output, "output", "text", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	if retention <= 0 {
		return fmt.Errorf("decisions prune: --retention must be positive: %w", ErrUsage)
	}
	res, err := decisionlog.Maintain(ctx, a.pool, a.reg, retention, time.Now())
	if err != nil {
		return err
	}
	if output == "json" {
		return a.printJSON(res)
	}
	rows := make([][]string, 0, len(res))
	failed := 0
	for _, r := range res {
		status := "ok"
		if r.Error != "" {
			status, failed = "failed: "+r.Error, failed+1
		}
		rows = append(rows, []string{r.Database, r.Region, strconv.Itoa(len(r.DroppedPartitions)), strconv.FormatInt(r.DeletedRows, 10), status})
	}
	a.table("DATABASE\tREGION\tDROPPED PARTITIONS\tDELETED ROWS\tSTATUS", rows)
	if failed > 0 {
		return fmt.Errorf("decision log maintenance failed on %d database(s)", failed)
	}
	return nil
}

// envRetention is NEOAUTHZ_DECISION_RETENTION, or the default.
func envRetention(getenv func(string) string) (time.Duration, error) {
	v := getenv("NEOAUTHZ_DECISION_RETENTION")
	if v == "" {
		return decisionlog.DefaultRetention, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("NEOAUTHZ_DECISION_RETENTION: %q is not a positive duration (e.g. 720h): %w", v, ErrUsage)
	}
	return d, nil
}
