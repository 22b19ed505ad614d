package adminapi

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/neofast/neoauthz/internal/decisionlog"
)

// Decisions are security audit data: reading them takes audit.read on the tenant, so a
// platform administrator restricted to some tenants sees only theirs.
func (s *Server) decisionRoutes() []route {
	return []route{
		{Method: "GET", Path: v1Tenants + "/decisions", Permission: "audit.read", Tenant: "tenant",
			Summary: "The tenant's recorded decisions, newest first (denies all, allows sampled)", Tag: "decisions",
			Response: "[]Decision", Query: []string{"user", "permission", "allowed", "from", "to", "page", "page_size"}, Status: 200, handle: s.listDecisions},
		{Method: "GET", Path: v1Tenants + "/decisions/{decision_id}", Permission: "audit.read", Tenant: "tenant",
			Summary: "One recorded decision by its id (the x-neoauthz-decision-id of the answer)", Tag: "decisions",
			Response: "Decision", Status: 200, handle: s.getDecision},
	}
}

// Bounds of decision query parameters (they reach a query as parameters only, but an
// over-long value is a client error, not a search).
const maxDecisionParam = 255

var decisionIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// decisionsDB returns the analytics database of the call's tenant's region.
func (s *Server) decisionsDB(c *call) (*pgxpool.Pool, error) {
	region, err := s.tenantRegion(c.ctx(), c.tenant.ID)
	if err != nil {
		return nil, err
	}
	conn, err := decisionlog.Database(c.ctx(), s.Registry, region)
	if errors.Is(err, decisionlog.ErrNotFound) {
		return nil, errNotFound(err.Error())
	}
	if err != nil {
		return nil, err
	}
	return s.writePool(c.ctx(), conn.ID, "")
}

func (s *Server) tenantRegion(ctx context.Context, tenantID string) (string, error) {
	var region string
	err := s.Admin.QueryRow(ctx, `SELECT region_code FROM admin.tenants WHERE id = $1::uuid`, tenantID).Scan(&region)
	return region, err
}

func (s *Server) listDecisions(c *call) error {
	page, size, err := c.page()
	if err != nil {
		return err
	}
	q := c.r.URL.Query()
	f := decisionlog.Filter{TenantID: c.tenant.ID, User: q.Get("user"), Permission: q.Get("permission"), Page: page, PageSize: size}
	fe := fieldErrors{}
	if len(f.User) > maxDecisionParam {
		fe.add("user", "at most 255 characters")
	}
	if len(f.Permission) > maxDecisionParam {
		fe.add("permission", "at most 255 characters")
	}
	if v := q.Get("allowed"); v != "" {
		b, perr := strconv.ParseBool(v)
		if perr != nil {
			fe.add("allowed", "must be true or false")
		}
		f.Allowed = &b
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(p.name); v != "" {
			t, perr := time.Parse(time.RFC3339, v)
			if perr != nil {
				fe.add(p.name, "must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
			}
			*p.t = t
		}
	}
	if err := fe.err(); err != nil {
		return err
	}
	db, err := s.decisionsDB(c)
	if err != nil {
		return err
	}
	out, total, err := decisionlog.Query(c.ctx(), db, f)
	if err != nil {
		return err
	}
	return c.ok(http.StatusOK, out, pageMeta(page, size, total))
}

func (s *Server) getDecision(c *call) error {
	id := c.r.PathValue("decision_id")
	if !decisionIDRe.MatchString(id) {
		return errNotFound("no decision " + strconv.Quote(id))
	}
	db, err := s.decisionsDB(c)
	if err != nil {
		return err
	}
	e, err := decisionlog.Get(c.ctx(), db, c.tenant.ID, id)
	if errors.Is(err, decisionlog.ErrNotFound) {
		return errNotFound("decision " + id + " is not in the log (allows are sampled; old decisions are pruned)")
	}
	if err != nil {
		return err
	}
	return c.ok(http.StatusOK, e, nil)
}

// MaintainDecisionLogs creates decision-log partitions ahead and applies retention on every
// analytics database, now and then every interval, until ctx ends.
func (s *Server) MaintainDecisionLogs(ctx context.Context, interval, retention time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		res, err := decisionlog.Maintain(ctx, s.Admin, s.Registry, retention, s.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			s.Log.Warn("decision log maintenance failed", "err", err)
		case err == nil:
			for _, r := range res {
				if r.Error != "" {
					s.Log.Warn("decision log maintenance failed", "database", r.Database, "err", r.Error)
				} else if len(r.DroppedPartitions) > 0 || r.DeletedRows > 0 {
					s.Log.Info("decision log pruned", "database", r.Database, "dropped_partitions", r.DroppedPartitions, "deleted_rows", r.DeletedRows)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
