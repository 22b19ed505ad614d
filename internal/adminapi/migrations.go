package adminapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/neofast/neoauthz/internal/audit"
	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/registry"
)

// ApplyMigrations is the body of POST /migrations/apply.
type ApplyMigrations struct {
	Scope       string `json:"scope"`
	Tenant      string `json:"tenant"`
	DryRun      bool   `json:"dry_run"`
	Repair      bool   `json:"repair"`
	BatchSize   int    `json:"batch_size"`
	Concurrency int    `json:"concurrency"`
}

// MigrateTenant is the body of POST /tenants/{id}/migrate.
type MigrateTenant struct {
	DryRun bool `json:"dry_run"`
	Repair bool `json:"repair"`
}

// MigrationJob is the answer to a migration request: the run to follow.
type MigrationJob struct {
	RunID  string `json:"run_id"`
	Status string `json:"status"`
}

// runIDWait bounds how long a request waits for its background run to be recorded.
const runIDWait = 30 * time.Second

func (s *Server) applyMigrations(c *call) error {
	var req ApplyMigrations
	if err := c.decode(&req); err != nil {
		return err
	}
	fe := fieldErrors{}
	if req.BatchSize < 0 {
		fe.add("batch_size", "must not be negative")
	}
	if req.Concurrency < 0 || req.Concurrency > 64 {
		fe.add("concurrency", "must be between 0 (default) and 64")
	}
	if err := fe.err(); err != nil {
		return err
	}
	if req.Scope == "" {
		req.Scope = fleet.ScopeAll
	}
	if req.Tenant != "" && req.Scope == fleet.ScopeAll {
		req.Scope = fleet.ScopeTenants
	}
	return s.startMigration(c, fleet.Plan{Scope: req.Scope, Tenant: req.Tenant, DryRun: req.DryRun, Repair: req.Repair,
		BatchSize: req.BatchSize, Concurrency: req.Concurrency})
}

func (s *Server) migrateTenant(c *call) error {
	var req MigrateTenant
	if err := c.decode(&req); err != nil {
		return err
	}
	return s.startMigration(c, fleet.Plan{Scope: fleet.ScopeTenants, Tenant: c.tenant.Slug, DryRun: req.DryRun, Repair: req.Repair})
}

// startMigration runs fleet.Apply in a background job and answers 202 with the run id once
// the runner has recorded the run. fleet makes the id inside Apply, so the job is tagged with
// a unique requested_by and the request waits until that row appears (or the job fails
// before recording anything, e.g. an invalid plan: that error is the answer).
func (s *Server) startMigration(c *call, plan fleet.Plan) error {
	if _, err := s.Fleet.Targets(c.ctx(), plan); err != nil {
		return err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	plan.RequestedBy = "api:" + c.actor() + ":" + hex.EncodeToString(b[:])
	done := make(chan error, 1)
	s.jobs.Add(1)
	go func() {
		defer s.jobs.Done()
		run, err := s.Fleet.Apply(audit.WithActor(s.jobContext(), c.actor(), c.requestID), plan)
		if err != nil && !errors.Is(err, fleet.ErrTargetsFailed) {
			s.Log.Error("migration job failed", "run_id", run.ID, "requested_by", plan.RequestedBy, "err", err)
		}
		done <- err
	}()
	var runID string
	deadline := time.Now().Add(runIDWait)
	for runID == "" {
		err := s.Admin.QueryRow(c.ctx(), `SELECT id::text FROM admin.migration_runs WHERE requested_by = $1`, plan.RequestedBy).Scan(&runID)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if runID != "" {
			break
		}
		select {
		case err := <-done:
			// Finished without a recorded run: only an error explains that.
			if err == nil {
				err = errors.New("migration run was not recorded")
			}
			if err2 := s.Admin.QueryRow(c.ctx(), `SELECT id::text FROM admin.migration_runs WHERE requested_by = $1`, plan.RequestedBy).Scan(&runID); err2 != nil {
				return err
			}
		case <-time.After(25 * time.Millisecond):
		case <-c.ctx().Done():
			return c.ctx().Err()
		}
		if time.Now().After(deadline) && runID == "" {
			return errors.New("migration run was not recorded in time; see admin.migration_runs for requested_by " + plan.RequestedBy)
		}
	}
	// The job recorded the run with its audit row in one transaction (fleet.Runner.Apply).
	v, err := adminVersion(c.ctx(), s.Admin)
	if err != nil {
		return err
	}
	c.w.Header().Set("Location", v1Admin+"/migrations/runs/"+runID)
	return c.ok(202, MigrationJob{RunID: runID, Status: "running"}, map[string]any{"version": v})
}

// jobContext is the context background jobs run under: the serving context, so shutdown
// stops them, not the request's.
func (s *Server) jobContext() context.Context {
	if s.baseCtx != nil {
		return s.baseCtx
	}
	return context.Background()
}

// MigrationRun is a recorded run with its per-target results.
type MigrationRun struct {
	ID          string            `json:"id"`
	Scope       string            `json:"scope"`
	TenantSlug  *string           `json:"tenant_slug,omitempty"`
	Action      string            `json:"action"`
	DryRun      bool              `json:"dry_run"`
	Status      string            `json:"status"`
	RequestedBy string            `json:"requested_by"`
	Total       int               `json:"total"`
	Succeeded   int               `json:"succeeded"`
	Failed      int               `json:"failed"`
	StartedAt   time.Time         `json:"started_at"`
	FinishedAt  *time.Time        `json:"finished_at,omitempty"`
	Results     []MigrationResult `json:"results"`
}

// MigrationResult is one target's step of a run.
type MigrationResult struct {
	Target     string    `json:"target"`
	Set        string    `json:"set"`
	Schema     string    `json:"schema"`
	Status     string    `json:"status"`
	From       *string   `json:"from_version,omitempty"`
	To         *string   `json:"to_version,omitempty"`
	Applied    int       `json:"applied"`
	Error      *string   `json:"error,omitempty"`
	DurationMS float64   `json:"duration_ms"`
	FinishedAt time.Time `json:"finished_at"`
}

func (s *Server) getMigrationRun(c *call) error {
	id := c.r.PathValue("id")
	if !uuidLike(id) {
		return errNotFound("migration run " + id + " does not exist")
	}
	var r MigrationRun
	err := s.Admin.QueryRow(c.ctx(), `SELECT id::text, scope, tenant_slug, action, dry_run, status, requested_by,
		total, succeeded, failed, started_at, finished_at FROM admin.migration_runs WHERE id = $1::uuid`, id).
		Scan(&r.ID, &r.Scope, &r.TenantSlug, &r.Action, &r.DryRun, &r.Status, &r.RequestedBy, &r.Total, &r.Succeeded, &r.Failed, &r.StartedAt, &r.FinishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNotFound("migration run " + id + " does not exist")
	}
	if err != nil {
		return err
	}
	rows, err := s.Admin.Query(c.ctx(), `SELECT target, set_name, schema_name, status, from_version, to_version, applied,
		error, duration_ms, finished_at FROM admin.migration_results WHERE run_id = $1::uuid ORDER BY target, set_name`, id)
	if err != nil {
		return err
	}
	r.Results, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (MigrationResult, error) {
		var m MigrationResult
		err := row.Scan(&m.Target, &m.Set, &m.Schema, &m.Status, &m.From, &m.To, &m.Applied, &m.Error, &m.DurationMS, &m.FinishedAt)
		return m, err
	})
	if err != nil {
		return err
	}
	if r.Results == nil {
		r.Results = []MigrationResult{}
	}
	return c.ok(200, r, nil)
}

func (s *Server) migrationStatus(c *call) error {
	q := c.r.URL.Query()
	plan := fleet.Plan{Scope: q.Get("scope"), Tenant: q.Get("tenant")}
	if plan.Tenant != "" && (plan.Scope == "" || plan.Scope == fleet.ScopeAll) {
		plan.Scope = fleet.ScopeTenants
	}
	if plan.Tenant != "" && !registry.ValidSlug(plan.Tenant) {
		return errValidation("tenant", "not a valid tenant slug")
	}
	st, err := s.Fleet.Status(c.ctx(), plan)
	if err != nil {
		return err
	}
	if st == nil {
		st = []fleet.TargetStatus{}
	}
	return c.ok(200, st, map[string]any{"total": len(st)})
}

func uuidLike(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if s[i] != '-' {
				return false
			}
		case (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F'):
		default:
			return false
		}
	}
	return true
}
