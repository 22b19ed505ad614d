// Package fleet applies neoauthz's migration sets to every database and schema the registry
// knows — the admin database, each regional database, each tenant, each analytics database —
// and records each run and its per-target results in the admin database.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/neofast/neoauthz/internal/audit"
	"github.com/neofast/neoauthz/internal/migrate"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/migrations"
)

// Scopes of a run.
const (
	ScopeAll       = "all"
	ScopeAdmin     = "admin"
	ScopeRegional  = "regional"
	ScopeTenants   = "tenants"
	ScopeAnalytics = "analytics"
)

// ErrInvalidScope is returned for a scope that is none of the above.
var ErrInvalidScope = errors.New("scope must be all, admin, regional, tenants or analytics")

// ErrTargetsFailed is returned (wrapped) when a run finished but some targets failed.
var ErrTargetsFailed = errors.New("some targets failed")

// Sets holds the migration sets by name (migrations.SetAdmin, ...).
type Sets map[string]migrate.Set

// LoadSets reads the four sets from fsys (normally migrations.FS).
func LoadSets(fsys fs.FS) (Sets, error) {
	sets := Sets{}
	for _, name := range []string{migrations.SetAdmin, migrations.SetPlatform, migrations.SetTenant, migrations.SetAnalytics} {
		s, err := migrate.Load(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("migration set %s: %w", name, err)
		}
		s.Name = name
		sets[name] = s
	}
	return sets, nil
}

// Step is one migration set applied to one schema.
type Step struct {
	Set    string
	Schema string
}

// Target is one database (and the schemas in it) that a run migrates.
type Target struct {
	Name         string // "admin", "regional:<conn>", "tenant:<slug>", "analytics:<conn>"
	Kind         string // admin, regional, tenant, analytics
	ConnString   string // never logged: it may hold a password
	ConnectionID string
	TenantID     string
	Steps        []Step
}

// Result is the outcome of one step of one target.
type Result struct {
	Target   string        `json:"target"`
	Set      string        `json:"set"`
	Schema   string        `json:"schema"`
	Status   string        `json:"status"` // succeeded, failed, skipped
	From     string        `json:"from_version"`
	To       string        `json:"to_version"`
	Applied  []string      `json:"applied,omitempty"`
	Pending  []string      `json:"pending,omitempty"` // dry run: what would be applied
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`

	tenantID, connectionID string
}

// Run is the record of one apply or rollback across targets.
type Run struct {
	ID        string   `json:"id"`
	Scope     string   `json:"scope"`
	Status    string   `json:"status"`
	Total     int      `json:"total"`
	Succeeded int      `json:"succeeded"`
	Failed    int      `json:"failed"`
	Results   []Result `json:"results"`
}

// Plan says what to migrate and how.
type Plan struct {
	Scope       string
	Tenant      string // a tenant slug: only that tenant (scope tenants)
	DryRun      bool
	Repair      bool
	BatchSize   int // targets per batch; progress is recorded after each batch (default 100)
	Concurrency int // targets migrated at once (default 4)
	RequestedBy string
	To          string // rollback: the version to return to
	// Progress, when set, is called after each target with the counts so far.
	Progress func(done, total int)
}

// Runner migrates the fleet.
type Runner struct {
	Admin    *pgxpool.Pool
	AdminURL string
	Registry *registry.Store
	Sets     Sets
	Log      *slog.Logger
	// LockTimeout is set for each migration's transaction (default 10s).
	LockTimeout time.Duration
}

// workerConn is a worker's dedicated connection to one database and how many targets it has
// migrated.
type workerConn struct {
	*pgx.Conn
	uses int
}

func (p *Plan) defaults() error {
	if p.Scope == "" {
		p.Scope = ScopeAll
	}
	switch p.Scope {
	case ScopeAll, ScopeAdmin, ScopeRegional, ScopeTenants, ScopeAnalytics:
	default:
		return fmt.Errorf("%q: %w", p.Scope, ErrInvalidScope)
	}
	if p.Tenant != "" && p.Scope != ScopeTenants && p.Scope != ScopeAll {
		return fmt.Errorf("--tenant goes with scope tenants, not %s: %w", p.Scope, ErrInvalidScope)
	}
	if p.Tenant != "" && !registry.ValidSlug(p.Tenant) {
		return &registry.ValidationError{Field: "tenant", Message: "not a valid tenant slug"}
	}
	if p.BatchSize <= 0 {
		p.BatchSize = 100
	}
	if p.Concurrency <= 0 {
		p.Concurrency = 4
	}
	if p.RequestedBy == "" {
		p.RequestedBy = "cli"
	}
	return nil
}

func includes(scope, kind string) bool { return scope == ScopeAll || scope == kind }

// Targets lists what a plan covers, in order: admin, regional databases, tenants, analytics.
func (r *Runner) Targets(ctx context.Context, plan Plan) ([]Target, error) {
	if err := plan.defaults(); err != nil {
		return nil, err
	}
	var out []Target
	if includes(plan.Scope, ScopeAdmin) && plan.Tenant == "" {
		out = append(out, Target{Name: "admin", Kind: ScopeAdmin, ConnString: r.AdminURL, Steps: []Step{
			{migrations.SetPlatform, migrations.PlatformSchema}, {migrations.SetAdmin, migrations.AdminSchema},
		}})
		// A fresh admin database has no registry yet: the admin target creates it, and run
		// reads the registry's targets once it has (nothing can be registered before).
		if !r.registryReady(ctx) {
			return out, nil
		}
	}
	if plan.Tenant == "" && (includes(plan.Scope, ScopeRegional) || includes(plan.Scope, ScopeAnalytics)) {
		conns, err := r.Registry.ListConnections(ctx, registry.ConnectionFilter{ActiveOnly: true})
		if err != nil {
			return nil, err
		}
		for _, c := range conns {
			var t Target
			switch {
			case c.Type == registry.TypePrimary && includes(plan.Scope, ScopeRegional):
				t = Target{Name: "regional:" + c.Name, Kind: ScopeRegional, Steps: []Step{
					{migrations.SetPlatform, migrations.PlatformSchema}, {migrations.SetTenant, migrations.TenantTemplateSchema},
				}}
			case c.Type == registry.TypeAnalytics && includes(plan.Scope, ScopeAnalytics):
				t = Target{Name: "analytics:" + c.Name, Kind: ScopeAnalytics, Steps: []Step{
					{migrations.SetPlatform, migrations.PlatformSchema}, {migrations.SetAnalytics, migrations.AnalyticsSchema},
				}}
			default:
				continue
			}
			if t.ConnString, err = r.Registry.ConnString(c, ""); err != nil {
				return nil, err
			}
			t.ConnectionID = c.ID
			out = append(out, t)
		}
	}
	if includes(plan.Scope, ScopeTenants) {
		tenants, err := r.tenantTargets(ctx, plan.Tenant)
		if err != nil {
			return nil, err
		}
		if plan.Tenant != "" && len(tenants) == 0 {
			return nil, fmt.Errorf("tenant %q: %w", plan.Tenant, registry.ErrNotFound)
		}
		out = append(out, tenants...)
	}
	return out, nil
}

// tenantTargets lists the tenants that hold a schema: active and suspended ones (a tenant
// still provisioning is finished by provisioning, a deleted one is left alone).
func (r *Runner) tenantTargets(ctx context.Context, slug string) ([]Target, error) {
	rows, err := r.Admin.Query(ctx, `SELECT t.id::text, t.slug, t.schema_name, t.database_name, c.id::text
		FROM admin.tenants t JOIN admin.database_connections c ON c.id = t.database_connection_id
		WHERE t.status IN ('active', 'suspended') AND c.is_active AND ($1 = '' OR t.slug = $1)
		ORDER BY t.slug`, slug)
	if err != nil {
		return nil, err
	}
	type row struct {
		id, slug, schema string
		dbName           *string
		connID           string
	}
	list, err := pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
		var x row
		err := cr.Scan(&x.id, &x.slug, &x.schema, &x.dbName, &x.connID)
		return x, err
	})
	if err != nil {
		return nil, err
	}
	conns := map[string]registry.Connection{}
	out := make([]Target, 0, len(list))
	for _, x := range list {
		c, ok := conns[x.connID]
		if !ok {
			if c, err = r.Registry.GetConnection(ctx, x.connID); err != nil {
				return nil, err
			}
			conns[x.connID] = c
		}
		t, err := TenantTarget(r.Registry, c, x.id, x.slug, x.schema, x.dbName)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// TenantTarget describes a tenant's schema (in the regional database) or its own database
// (which then also needs the platform set).
func TenantTarget(reg *registry.Store, c registry.Connection, tenantID, slug, schema string, database *string) (Target, error) {
	t := Target{Name: "tenant:" + slug, Kind: ScopeTenants, ConnectionID: c.ID, TenantID: tenantID}
	db := ""
	if database != nil {
		db = *database
		t.Steps = append(t.Steps, Step{migrations.SetPlatform, migrations.PlatformSchema})
	}
	t.Steps = append(t.Steps, Step{migrations.SetTenant, schema})
	var err error
	t.ConnString, err = reg.ConnString(c, db)
	return t, err
}

// Apply migrates every target of the plan, recording the run. A failing target does not stop
// the others; the returned error wraps ErrTargetsFailed when any failed. Rerunning resumes.
func (r *Runner) Apply(ctx context.Context, plan Plan) (Run, error) {
	return r.run(ctx, plan, "apply")
}

// Rollback runs undo files on every target of the plan down to plan.To.
func (r *Runner) Rollback(ctx context.Context, plan Plan) (Run, error) {
	if plan.To == "" {
		return Run{}, &registry.ValidationError{Field: "to", Message: "name the version to roll back to"}
	}
	return r.run(ctx, plan, "rollback")
}

func (r *Runner) run(ctx context.Context, plan Plan, action string) (Run, error) {
	if err := plan.defaults(); err != nil {
		return Run{}, err
	}
	var to migrate.Version
	if action == "rollback" {
		v, err := migrate.ParseVersion(plan.To)
		if err != nil {
			return Run{}, &registry.ValidationError{Field: "to", Message: err.Error()}
		}
		to = v
	}
	targets, err := r.Targets(ctx, plan)
	if err != nil {
		return Run{}, err
	}
	run := Run{Scope: plan.Scope, Status: "running", Total: len(targets)}
	var results []Result
	done := 0
	// The admin target creates the tables a run is recorded in (and the registry the other
	// targets come from), so it goes first, alone, and the other targets are read after it.
	if len(targets) > 0 && targets[0].Kind == ScopeAdmin {
		results = append(results, r.migrateTarget(ctx, nil, targets[0], plan, action, to)...)
		targets = targets[1:]
		done = 1
		if len(targets) == 0 && plan.Scope != ScopeAdmin && !plan.DryRun && r.registryReady(ctx) {
			rest, err := r.Targets(ctx, plan)
			if err != nil {
				return run, err
			}
			targets = rest[1:]
			run.Total = 1 + len(targets)
		}
		if plan.Progress != nil {
			plan.Progress(1, run.Total)
		}
	}
	recordable := !plan.DryRun || r.adminReady(ctx)
	if recordable {
		// The run and its audit row commit together, whoever started it (an API job, the CLI).
		err := pgx.BeginFunc(ctx, r.Admin, func(tx pgx.Tx) error {
			err := tx.QueryRow(ctx, `INSERT INTO admin.migration_runs (scope, tenant_slug, action, target_version, dry_run, requested_by, total)
				VALUES ($1, nullif($2, ''), $3, nullif($4, ''), $5, $6, $7) RETURNING id::text`,
				plan.Scope, plan.Tenant, action, plan.To, plan.DryRun, plan.RequestedBy, run.Total).Scan(&run.ID)
			if err != nil {
				return err
			}
			_, err = audit.Append(ctx, tx, audit.Attributed(ctx, audit.Record{Action: "migrations." + action, TargetType: "migration_run",
				TargetID: run.ID,
				After:    map[string]any{"scope": plan.Scope, "tenant": plan.Tenant, "to": plan.To, "dry_run": plan.DryRun, "repair": plan.Repair, "total": run.Total}}))
			return err
		})
		if err != nil {
			return run, fmt.Errorf("record migration run: %w", err)
		}
		if err := r.record(ctx, run.ID, results); err != nil {
			return run, err
		}
	}

	var mu sync.Mutex
	for start := 0; start < len(targets); start += plan.BatchSize {
		batch := targets[start:min(start+plan.BatchSize, len(targets))]
		var batchResults []Result
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(plan.Concurrency)
		work := make(chan Target)
		for w := 0; w < min(plan.Concurrency, len(batch)); w++ {
			g.Go(func() error {
				conns := map[string]*workerConn{}
				defer func() {
					for _, c := range conns {
						_ = c.Close(context.Background())
					}
				}()
				for t := range work {
					res := r.migrateTarget(gctx, conns, t, plan, action, to)
					mu.Lock()
					batchResults = append(batchResults, res...)
					done++
					if plan.Progress != nil {
						plan.Progress(done, run.Total)
					}
					mu.Unlock()
				}
				return nil
			})
		}
		for _, t := range batch {
			select {
			case work <- t:
			case <-ctx.Done():
			}
		}
		close(work)
		_ = g.Wait()
		results = append(results, batchResults...)
		if recordable {
			if err := r.record(ctx, run.ID, batchResults); err != nil {
				return run, err
			}
		}
		if ctx.Err() != nil {
			break
		}
	}

	run.Results = results
	failedTargets := map[string]bool{}
	for _, res := range results {
		if res.Status == "failed" {
			failedTargets[res.Target] = true
		}
	}
	run.Failed = len(failedTargets)
	run.Succeeded = run.Total - run.Failed
	run.Status = "succeeded"
	if run.Failed > 0 || ctx.Err() != nil {
		run.Status = "failed"
	}
	if recordable {
		wctx := context.WithoutCancel(ctx)
		err := pgx.BeginFunc(wctx, r.Admin, func(tx pgx.Tx) error {
			_, err := tx.Exec(wctx, `UPDATE admin.migration_runs SET status = $2, succeeded = $3, failed = $4, finished_at = now() WHERE id = $1`,
				run.ID, run.Status, run.Succeeded, run.Failed)
			if err != nil {
				return err
			}
			_, err = audit.Append(wctx, tx, audit.Attributed(ctx, audit.Record{Action: "migrations." + action + ".finished", TargetType: "migration_run",
				TargetID: run.ID,
				After:    map[string]any{"status": run.Status, "succeeded": run.Succeeded, "failed": run.Failed}}))
			return err
		})
		if err != nil {
			return run, fmt.Errorf("record migration run: %w", err)
		}
	}
	if ctx.Err() != nil {
		return run, ctx.Err()
	}
	if run.Failed > 0 {
		return run, fmt.Errorf("%d of %d targets failed (see the run's results; rerunning resumes): %w", run.Failed, run.Total, ErrTargetsFailed)
	}
	return run, nil
}

// migrateTarget applies each step of t on one dedicated connection (reused across targets of
// the same database by a worker); the first failing step fails the target and skips the rest.
func (r *Runner) migrateTarget(ctx context.Context, conns map[string]*workerConn, t Target, plan Plan, action string, to migrate.Version) []Result {
	results := make([]Result, 0, len(t.Steps))
	fail := func(step Step, err error) []Result {
		return append(results, Result{Target: t.Name, Set: step.Set, Schema: step.Schema, Status: "failed",
			Error: err.Error(), tenantID: t.TenantID, connectionID: t.ConnectionID})
	}
	conn, err := r.connect(ctx, conns, t.ConnString)
	if err != nil {
		return fail(t.Steps[0], fmt.Errorf("connect: %w", err))
	}
	if conns == nil {
		defer conn.Close(context.Background())
	}
	opts := migrate.Options{DryRun: plan.DryRun, Repair: plan.Repair, LockTimeout: r.LockTimeout, InstalledBy: plan.RequestedBy}
	steps := t.Steps
	if action == "rollback" {
		// Undo the schema that depends on the others first; shared sets stay.
		steps = steps[len(steps)-1:]
	}
	for i, step := range steps {
		set, ok := r.Sets[step.Set]
		if !ok {
			return fail(step, fmt.Errorf("unknown migration set %q", step.Set))
		}
		start := time.Now()
		var res migrate.Result
		if action == "rollback" {
			res, err = set.Rollback(ctx, conn, step.Schema, to, opts)
		} else {
			res, err = set.Apply(ctx, conn, step.Schema, opts)
		}
		out := Result{Target: t.Name, Set: step.Set, Schema: step.Schema, Status: "succeeded",
			From: res.From.String(), To: res.To.String(), Duration: time.Since(start),
			tenantID: t.TenantID, connectionID: t.ConnectionID}
		for _, a := range res.Applied {
			out.Applied = append(out.Applied, a.Script)
		}
		for _, p := range res.Pending {
			out.Pending = append(out.Pending, p.Script)
		}
		if err != nil {
			out.Status, out.Error = "failed", err.Error()
			results = append(results, out)
			for _, rest := range steps[i+1:] {
				results = append(results, Result{Target: t.Name, Set: rest.Set, Schema: rest.Schema, Status: "skipped",
					tenantID: t.TenantID, connectionID: t.ConnectionID})
			}
			if r.Log != nil {
				r.Log.Warn("migration failed", "target", t.Name, "set", step.Set, "schema", step.Schema, "error", err)
			}
			if conns != nil && conn.IsClosed() {
				delete(conns, t.ConnString)
			}
			return results
		}
		results = append(results, out)
	}
	return results
}

// reuseLimit is how many targets one connection migrates before it is replaced. A session
// that creates many relations keeps them in its relation cache, and PostgreSQL walks that
// whole cache at the end of every transaction creating more than a few relations: reusing
// one connection for every schema made each schema slower than the last (quadratic over a
// thousand tenants).
const reuseLimit = 8

func (r *Runner) connect(ctx context.Context, conns map[string]*workerConn, dsn string) (*pgx.Conn, error) {
	if c, ok := conns[dsn]; ok {
		if !c.IsClosed() && c.uses < reuseLimit {
			c.uses++
			return c.Conn, nil
		}
		_ = c.Close(ctx)
		delete(conns, dsn)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if conns != nil {
		conns[dsn] = &workerConn{Conn: c, uses: 1}
	}
	return c, nil
}

func (r *Runner) registryReady(ctx context.Context) bool {
	var ok bool
	err := r.Admin.QueryRow(ctx, `SELECT to_regclass('admin.database_connections') IS NOT NULL`).Scan(&ok)
	return err == nil && ok
}

func (r *Runner) adminReady(ctx context.Context) bool {
	var ok bool
	err := r.Admin.QueryRow(ctx, `SELECT to_regclass('admin.migration_runs') IS NOT NULL`).Scan(&ok)
	return err == nil && ok
}

func (r *Runner) record(ctx context.Context, runID string, results []Result) error {
	if len(results) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for _, res := range results {
		var tenantID, connID *string
		if res.tenantID != "" {
			tenantID = &res.tenantID
		}
		if res.connectionID != "" {
			connID = &res.connectionID
		}
		batch.Queue(`INSERT INTO admin.migration_results
			(run_id, target, set_name, database_connection_id, tenant_id, schema_name, status, from_version, to_version, applied, error, duration_ms)
			VALUES ($1, $2, $3, $4, $5, $6, $7, nullif($8, ''), nullif($9, ''), $10, nullif($11, ''), $12)`,
			runID, res.Target, res.Set, connID, tenantID, res.Schema, res.Status, res.From, res.To, len(res.Applied), res.Error,
			float64(res.Duration.Microseconds())/1000)
	}
	if err := r.Admin.SendBatch(context.WithoutCancel(ctx), batch).Close(); err != nil {
		return fmt.Errorf("record migration results: %w", err)
	}
	_, err := r.Admin.Exec(context.WithoutCancel(ctx), `UPDATE admin.migration_runs r SET
		succeeded = (SELECT count(DISTINCT target) FROM admin.migration_results WHERE run_id = r.id) -
		            (SELECT count(DISTINCT target) FROM admin.migration_results WHERE run_id = r.id AND status = 'failed'),
		failed = (SELECT count(DISTINCT target) FROM admin.migration_results WHERE run_id = r.id AND status = 'failed')
		WHERE id = $1`, runID)
	return err
}

// TargetStatus is the migration state of one schema of one target.
type TargetStatus struct {
	Target     string   `json:"target"`
	Set        string   `json:"set"`
	Schema     string   `json:"schema"`
	Current    string   `json:"current_version"`
	Latest     string   `json:"latest_version"`
	Pending    []string `json:"pending,omitempty"`
	Failed     []string `json:"failed,omitempty"`
	Mismatched []string `json:"checksum_mismatches,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// Status reads each target's history; it changes nothing.
func (r *Runner) Status(ctx context.Context, plan Plan) ([]TargetStatus, error) {
	targets, err := r.Targets(ctx, plan)
	if err != nil {
		return nil, err
	}
	out := make([]TargetStatus, 0, len(targets))
	conns := map[string]*workerConn{}
	defer func() {
		for _, c := range conns {
			_ = c.Close(context.Background())
		}
	}()
	for _, t := range targets {
		conn, err := r.connect(ctx, conns, t.ConnString)
		for _, step := range t.Steps {
			ts := TargetStatus{Target: t.Name, Set: step.Set, Schema: step.Schema, Latest: r.Sets[step.Set].Latest().String()}
			if err != nil {
				ts.Error = "connect: " + err.Error()
				out = append(out, ts)
				continue
			}
			st, serr := r.Sets[step.Set].Status(ctx, conn, step.Schema)
			if serr != nil {
				ts.Error = serr.Error()
			}
			ts.Current = st.Current.String()
			for _, p := range st.Pending {
				ts.Pending = append(ts.Pending, p.Script)
			}
			for _, f := range st.Failed {
				ts.Failed = append(ts.Failed, f.Script)
			}
			for _, m := range st.Mismatched {
				ts.Mismatched = append(ts.Mismatched, m.Script)
			}
			out = append(out, ts)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return kindOrder(out[i].Target) < kindOrder(out[j].Target) })
	return out, nil
}

func kindOrder(name string) int {
	switch {
	case name == "admin":
		return 0
	case len(name) > 9 && name[:9] == "regional:":
		return 1
	case len(name) > 7 && name[:7] == "tenant:":
		return 2
	}
	return 3
}

// ApplyTarget migrates one target outside of a recorded run (provisioning uses it) and
// returns the first failure.
func (r *Runner) ApplyTarget(ctx context.Context, t Target) error {
	for _, res := range r.migrateTarget(ctx, nil, t, Plan{RequestedBy: "provisioning"}, "apply", migrate.Version{}) {
		if res.Status == "failed" {
			return fmt.Errorf("migrate %s (%s set, schema %s): %s", t.Name, res.Set, res.Schema, res.Error)
		}
	}
	return nil
}
