package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/neofast/neoauthz/internal/audit"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
)

// tenantColumns and scanTenant read tenants as tenancy does, for the writes done here in the
// API's own transactions (so the audit row commits with the change).
const tenantColumns = tenancy.Columns

func scanTenant(row pgx.Row) (tenancy.Tenant, error) { return tenancy.Scan(row) }

type querier interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

// adminVersion reads admin.authz_state.version; inside the writing transaction it is the
// version the change produced.
func adminVersion(ctx context.Context, q querier) (int64, error) {
	var v int64
	err := q.QueryRow(ctx, `SELECT version FROM admin.authz_state`).Scan(&v)
	return v, err
}

// adminWrite runs fn and the audit append in one admin-database transaction and returns the
// authorization version after the change.
func (s *Server) adminWrite(c *call, fn func(tx pgx.Tx) (auditRecord, error)) (int64, error) {
	var version int64
	err := pgx.BeginFunc(c.ctx(), s.Admin, func(tx pgx.Tx) error {
		rec, err := fn(tx)
		if err != nil {
			return err
		}
		rec.Actor, rec.RequestID = c.actor(), c.requestID
		if _, err := appendAudit(c.ctx(), tx, rec); err != nil {
			return err
		}
		version, err = adminVersion(c.ctx(), tx)
		return err
	})
	if err == nil {
		c.wroteAdmin(version)
	}
	return version, err
}

func (s *Server) createTenant(c *call) error {
	var req tenancy.CreateRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	// organization_id may be the organization's id or slug; tenancy is given the id.
	if err := resolveTenantOrganization(c.ctx(), s.Admin, &req); err != nil {
		return err
	}
	// Provisioning audits each step in the transaction that commits it (the tenant row, then its
	// activation). It is not cut short by a client that stops waiting: what it started, it
	// finishes or records as failed.
	t, err := s.Tenants.Create(audit.WithActor(context.WithoutCancel(c.ctx()), c.actor(), c.requestID), req)
	if err != nil {
		return err
	}
	v, err := adminVersion(c.ctx(), s.Admin)
	if err != nil {
		return err
	}
	c.w.Header().Set("Location", v1Admin+"/tenants/"+t.ID)
	return c.ok(201, t, map[string]any{"version": v})
}

var tenantStatuses = map[string]bool{tenancy.StatusProvisioning: true, tenancy.StatusActive: true, tenancy.StatusSuspended: true, tenancy.StatusDeleted: true}

func (s *Server) listTenants(c *call) error {
	page, size, err := c.page()
	if err != nil {
		return err
	}
	f := tenancy.Filter{Status: c.r.URL.Query().Get("status"), Region: c.r.URL.Query().Get("region"), Page: page, PageSize: size}
	fe := fieldErrors{}
	if f.Status != "" && !tenantStatuses[f.Status] {
		fe.add("status", "must be provisioning, active, suspended or deleted")
	}
	if f.Region != "" && !registry.ValidSlug(f.Region) {
		fe.add("region", "not a valid region code")
	}
	if err := fe.err(); err != nil {
		return err
	}
	list, total, err := s.Tenants.List(c.ctx(), f)
	if err != nil {
		return err
	}
	if list == nil {
		list = []tenancy.Tenant{}
	}
	return c.ok(200, list, pageMeta(page, size, total))
}

func (s *Server) getTenant(c *call) error {
	t, err := s.Tenants.Get(c.ctx(), c.tenant.ID)
	if err != nil {
		return err
	}
	return c.ok(200, t, nil)
}

// PatchTenant is the body of PATCH /tenants/{id}; absent fields are left alone and settings,
// when given, replace the whole settings object.
type PatchTenant struct {
	Name     *string         `json:"name"`
	Settings *map[string]any `json:"settings"`
}

func (s *Server) patchTenant(c *call) error {
	var p PatchTenant
	if err := c.decode(&p); err != nil {
		return err
	}
	fe := fieldErrors{}
	if p.Name != nil && (len(*p.Name) < 1 || len(*p.Name) > 200) {
		fe.add("name", "must be 1 to 200 characters")
	}
	if p.Settings != nil && *p.Settings == nil {
		fe.add("settings", "must be an object")
	}
	if p.Name == nil && p.Settings == nil {
		fe.add("name", "give name and/or settings")
	}
	if err := fe.err(); err != nil {
		return err
	}
	if p.Settings != nil {
		if err := s.patchUserSync(c, *p.Settings); err != nil {
			return err
		}
	}
	var settings []byte
	if p.Settings != nil {
		settings, _ = json.Marshal(*p.Settings)
	}
	var after tenancy.Tenant
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		before, err := lockTenant(c.ctx(), tx, c.tenant.ID)
		if err != nil {
			return auditRecord{}, err
		}
		if before.Status == tenancy.StatusDeleted {
			return auditRecord{}, fmt.Errorf("tenant %s is deleted: %w", before.Slug, tenancy.ErrWrongStatus)
		}
		after, err = scanTenant(tx.QueryRow(c.ctx(), `UPDATE admin.tenants SET name = coalesce($2, name),
			settings = coalesce($3::jsonb, settings), updated_at = now() WHERE id = $1 RETURNING `+tenantColumns,
			before.ID, p.Name, settings))
		return auditRecord{Action: "tenant.update", TargetType: "tenant", TargetID: before.ID, TenantID: before.ID,
			Before: before, After: after}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, after, map[string]any{"version": v})
}

func lockTenant(ctx context.Context, tx pgx.Tx, id string) (tenancy.Tenant, error) {
	t, err := scanTenant(tx.QueryRow(ctx, `SELECT `+tenantColumns+` FROM admin.tenants WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("tenant %s: %w", id, registry.ErrNotFound)
	}
	return t, err
}

func (s *Server) suspendTenant(c *call) error {
	return s.transitionTenant(c, "tenant.suspend", tenancy.StatusActive, tenancy.StatusSuspended)
}

func (s *Server) activateTenant(c *call) error {
	return s.transitionTenant(c, "tenant.activate", tenancy.StatusSuspended, tenancy.StatusActive)
}

// transitionTenant changes the status in the API's transaction (rather than through tenancy)
// so that the audit row commits or rolls back with it. Repeating a transition is idempotent.
func (s *Server) transitionTenant(c *call, action, from, to string) error {
	var after tenancy.Tenant
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		before, err := lockTenant(c.ctx(), tx, c.tenant.ID)
		if err != nil {
			return auditRecord{}, err
		}
		if before.Status != from && before.Status != to {
			return auditRecord{}, fmt.Errorf("tenant %q is %s, only a %s tenant can become %s: %w", before.Slug, before.Status, from, to, tenancy.ErrWrongStatus)
		}
		after, err = scanTenant(tx.QueryRow(c.ctx(), `UPDATE admin.tenants SET status = $2, updated_at = now()
			WHERE id = $1 RETURNING `+tenantColumns, before.ID, to))
		return auditRecord{Action: action, TargetType: "tenant", TargetID: before.ID, TenantID: before.ID,
			Before: map[string]any{"status": before.Status}, After: map[string]any{"status": after.Status}}, err
	})
	if err != nil {
		return err
	}
	// The realm follows the committed status (when so configured); repeating retries it.
	if err := s.Tenants.SyncRealmStatus(audit.WithActor(context.WithoutCancel(c.ctx()), c.actor(), c.requestID), after); err != nil {
		return err
	}
	return c.ok(200, after, map[string]any{"version": v})
}

// deleteTenant marks the tenant deleted in the API's transaction with its audit row; with
// ?purge=true tenancy then drops its schema or database and its row.
func (s *Server) deleteTenant(c *call) error {
	purge := false
	if v := c.r.URL.Query().Get("purge"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errValidation("purge", "must be true or false")
		}
		purge = b
	}
	opts := tenancy.DeleteOptions{Purge: purge}
	if v := c.r.URL.Query().Get("delete_realm"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errValidation("delete_realm", "must be true or false")
		}
		opts.DeleteRealm = b
	}
	var after tenancy.Tenant
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		before, err := lockTenant(c.ctx(), tx, c.tenant.ID)
		if err != nil {
			return auditRecord{}, err
		}
		if err := s.Tenants.CheckDelete(before, opts); err != nil {
			return auditRecord{}, err
		}
		after, err = scanTenant(tx.QueryRow(c.ctx(), `UPDATE admin.tenants SET status = 'deleted',
			deleted_at = coalesce(deleted_at, now()), updated_at = now() WHERE id = $1 RETURNING `+tenantColumns, before.ID))
		return auditRecord{Action: "tenant.delete", TargetType: "tenant", TargetID: before.ID, TenantID: before.ID,
			Before: map[string]any{"status": before.Status}, After: map[string]any{"status": after.Status}}, err
	})
	if err != nil {
		return err
	}
	if !purge {
		return c.ok(200, after, map[string]any{"version": v, "purged": false})
	}
	// Purge drops the data, then removes the row with its audit row in one transaction.
	t, err := s.Tenants.Delete(audit.WithActor(context.WithoutCancel(c.ctx()), c.actor(), c.requestID), after.ID, opts)
	if err != nil {
		return err
	}
	if v, err = adminVersion(c.ctx(), s.Admin); err != nil {
		return err
	}
	return c.ok(200, t, map[string]any{"version": v, "purged": true})
}
