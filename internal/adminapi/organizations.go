package adminapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
)

// Organizations group tenants (admin.tenants.organization_id). They live in the admin database,
// so every change commits in one transaction with its audit row (adminWrite). An organization
// is deleted softly (status deleted, its slug stays taken) and only once none of its tenants is
// left undeleted; admin.tenants' ON DELETE RESTRICT keeps a hard delete from orphaning any.

// Organization statuses.
const (
	OrgActive    = "active"
	OrgSuspended = "suspended"
	OrgDeleted   = "deleted"
)

var orgStatuses = map[string]bool{OrgActive: true, OrgSuspended: true, OrgDeleted: true}

// Organization is a row of admin.organizations with the number of its tenants not deleted.
type Organization struct {
	ID          string    `json:"id"`
	Slug        string    `json:"slug"`
	Name        string    `json:"name"`
	Status      string    `json:"status"`
	TenantCount int       `json:"tenant_count"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// CreateOrganization is the body of POST /organizations; name defaults to the slug.
type CreateOrganization struct {
	Slug string `json:"slug"`
	Name string `json:"name"`
}

// PatchOrganization is the body of PATCH /organizations/{id}; absent fields are left alone.
// status is active or suspended: deleting is DELETE's job, which checks the tenants.
type PatchOrganization struct {
	Name   *string `json:"name"`
	Status *string `json:"status"`
}

// orgColumns are read from admin.organizations aliased o (in SELECT, INSERT ... AS o and
// UPDATE ... o RETURNING alike).
const orgColumns = `o.id::text, o.slug, o.name, o.status,
	(SELECT count(*) FROM admin.tenants t WHERE t.organization_id = o.id AND t.status <> 'deleted')::int,
	o.created_at, o.updated_at`

func scanOrg(row pgx.Row) (Organization, error) {
	var o Organization
	err := row.Scan(&o.ID, &o.Slug, &o.Name, &o.Status, &o.TenantCount, &o.CreatedAt, &o.UpdatedAt)
	return o, err
}

// orgByRef loads the organization named by ref (id or slug); lock takes a row lock for the
// writing transaction. Comparing id::text keeps a malformed id a 404, not a uuid cast error.
func orgByRef(ctx context.Context, q querier, ref string, lock bool) (Organization, error) {
	sql := `SELECT ` + orgColumns + ` FROM admin.organizations o WHERE o.id::text = $1 OR o.slug = $1`
	if lock {
		sql += ` FOR UPDATE OF o`
	}
	o, err := scanOrg(q.QueryRow(ctx, sql, ref))
	if errors.Is(err, pgx.ErrNoRows) {
		return Organization{}, errNotFound("organization " + ref + " does not exist")
	}
	return o, err
}

// validOrgName checks a name as the table does (1 to 200 characters), refusing blank ones.
func validOrgName(fe fieldErrors, name string) {
	if n := utf8.RuneCountInString(name); n < 1 || n > 200 || strings.TrimSpace(name) == "" {
		fe.add("name", "must be 1 to 200 characters, not blank")
	}
}

func (s *Server) createOrganization(c *call) error {
	var req CreateOrganization
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Name == "" {
		req.Name = req.Slug
	}
	fe := fieldErrors{}
	switch {
	case !registry.ValidSlug(req.Slug):
		fe.add("slug", "use lowercase letters, digits and inner dashes (at most 63), e.g. acme-corp")
	case uuidLike(req.Slug):
		// Organizations are looked up by id or slug: a slug shaped like an id would be ambiguous.
		fe.add("slug", "must not have the shape of an id (uuid)")
	}
	validOrgName(fe, req.Name)
	if err := fe.err(); err != nil {
		return err
	}
	var o Organization
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		var err error
		o, err = scanOrg(tx.QueryRow(c.ctx(), `INSERT INTO admin.organizations AS o (slug, name) VALUES ($1, $2)
			ON CONFLICT (slug) DO NOTHING RETURNING `+orgColumns, req.Slug, req.Name))
		if errors.Is(err, pgx.ErrNoRows) {
			return auditRecord{}, orgSlugTaken(c.ctx(), tx, req.Slug)
		}
		return auditRecord{Action: "organization.create", TargetType: "organization", TargetID: o.ID, After: o}, err
	})
	if err != nil {
		return err
	}
	c.w.Header().Set("Location", v1Admin+"/organizations/"+o.ID)
	return c.ok(201, o, map[string]any{"version": v})
}

// orgSlugTaken is the 409 for a slug already used, saying so when its holder is deleted (a
// deleted organization keeps its slug, so that history in the audit log stays unambiguous).
func orgSlugTaken(ctx context.Context, q querier, slug string) error {
	var status string
	if err := q.QueryRow(ctx, `SELECT status FROM admin.organizations WHERE slug = $1`, slug).Scan(&status); err != nil {
		if errors.Is(err, pgx.ErrNoRows) { // taken and freed again since: a race, report it as such
			return errConflict("organization " + slug + " was created concurrently; retry")
		}
		return err
	}
	if status == OrgDeleted {
		return errConflict("organization slug " + slug + " belongs to a deleted organization; deleted organizations keep their slug")
	}
	return errConflict("organization " + slug + " already exists")
}

func (s *Server) listOrganizations(c *call) error {
	page, size, err := c.page()
	if err != nil {
		return err
	}
	status := c.r.URL.Query().Get("status")
	if status != "" && !orgStatuses[status] {
		return errValidation("status", "must be active, suspended or deleted")
	}
	total := 0
	// Deleted organizations are listed only when asked for, as with tenants.
	rows, err := s.Admin.Query(c.ctx(), `SELECT `+orgColumns+`, count(*) OVER () FROM admin.organizations o
		WHERE ($1 = '' AND o.status <> 'deleted' OR o.status = $1)
		ORDER BY o.slug COLLATE "C" LIMIT $2 OFFSET $3`, status, size, (page-1)*size)
	list, err := collect(rows, err, func(row pgx.Row) (Organization, error) {
		var o Organization
		err := row.Scan(&o.ID, &o.Slug, &o.Name, &o.Status, &o.TenantCount, &o.CreatedAt, &o.UpdatedAt, &total)
		return o, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, list, pageMeta(page, size, total))
}

func (s *Server) getOrganization(c *call) error {
	o, err := orgByRef(c.ctx(), s.Admin, c.r.PathValue("id"), false)
	if err != nil {
		return err
	}
	return c.ok(200, o, nil)
}

func (s *Server) patchOrganization(c *call) error {
	var p PatchOrganization
	if err := c.decode(&p); err != nil {
		return err
	}
	fe := fieldErrors{}
	if p.Name != nil {
		validOrgName(fe, *p.Name)
	}
	if p.Status != nil && *p.Status != OrgActive && *p.Status != OrgSuspended {
		fe.add("status", "must be active or suspended (DELETE the organization to delete it)")
	}
	if p.Name == nil && p.Status == nil {
		fe.add("name", "give name and/or status")
	}
	if err := fe.err(); err != nil {
		return err
	}
	var after Organization
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		before, err := orgByRef(c.ctx(), tx, c.r.PathValue("id"), true)
		if err != nil {
			return auditRecord{}, err
		}
		if before.Status == OrgDeleted {
			return auditRecord{}, errConflict("organization " + before.Slug + " is deleted and cannot be changed")
		}
		after, err = scanOrg(tx.QueryRow(c.ctx(), `UPDATE admin.organizations o SET name = coalesce($2, o.name),
			status = coalesce($3, o.status), updated_at = now() WHERE o.id = $1::uuid RETURNING `+orgColumns,
			before.ID, p.Name, p.Status))
		return auditRecord{Action: "organization.update", TargetType: "organization", TargetID: before.ID,
			Before: before, After: after}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, after, map[string]any{"version": v})
}

// maxListedTenants bounds the slugs a refused delete names.
const maxListedTenants = 10

// deleteOrganization marks the organization deleted, refusing (409) while any of its tenants is
// not deleted. The organization row is locked first: a tenant insert naming it takes a key
// share lock on it (the foreign key check), so an insert in flight finishes before the count
// is taken and is seen by it. (A tenant create that checked the organization just before this
// delete committed can still land in it afterwards: tenancy inserts in its own transaction.)
func (s *Server) deleteOrganization(c *call) error {
	var after Organization
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		before, err := orgByRef(c.ctx(), tx, c.r.PathValue("id"), true)
		if err != nil {
			return auditRecord{}, err
		}
		var live int
		var slugs []string
		if err := tx.QueryRow(c.ctx(), `SELECT count(*)::int,
				coalesce((array_agg(slug ORDER BY slug COLLATE "C"))[1:$2], '{}')
			FROM admin.tenants WHERE organization_id = $1::uuid AND status <> 'deleted'`,
			before.ID, maxListedTenants).Scan(&live, &slugs); err != nil {
			return auditRecord{}, err
		}
		if live > 0 {
			msg := fmt.Sprintf("organization %s still has %d tenant(s) not deleted (%s", before.Slug, live, strings.Join(slugs, ", "))
			if live > len(slugs) {
				msg += ", ..."
			}
			return auditRecord{}, &apiError{Status: 409, Code: CodeConflict,
				Message: msg + "); delete them first",
				Details: map[string]any{"tenant_count": live, "tenants": slugs}}
		}
		after, err = scanOrg(tx.QueryRow(c.ctx(), `UPDATE admin.organizations o SET status = 'deleted', updated_at = now()
			WHERE o.id = $1::uuid RETURNING `+orgColumns, before.ID))
		return auditRecord{Action: "organization.delete", TargetType: "organization", TargetID: before.ID,
			Before: map[string]any{"status": before.Status}, After: map[string]any{"status": after.Status}}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, after, map[string]any{"version": v})
}

// listOrganizationTenants lists the organization's tenants; like GET /tenants, deleted ones
// only when asked for by status.
func (s *Server) listOrganizationTenants(c *call) error {
	page, size, err := c.page()
	if err != nil {
		return err
	}
	status := c.r.URL.Query().Get("status")
	if status != "" && !tenantStatuses[status] {
		return errValidation("status", "must be provisioning, active, suspended or deleted")
	}
	o, err := orgByRef(c.ctx(), s.Admin, c.r.PathValue("id"), false)
	if err != nil {
		return err
	}
	total := 0
	rows, err := s.Admin.Query(c.ctx(), `SELECT `+tenantColumns+`, count(*) OVER () FROM admin.tenants
		WHERE organization_id = $1::uuid AND ($2 = '' AND status <> 'deleted' OR status = $2)
		ORDER BY slug COLLATE "C" LIMIT $3 OFFSET $4`, o.ID, status, size, (page-1)*size)
	list, err := collect(rows, err, func(row pgx.Row) (tenancy.Tenant, error) { return tenancy.Scan(row, &total) })
	if err != nil {
		return err
	}
	meta := pageMeta(page, size, total)
	meta["organization_id"] = o.ID
	return c.ok(200, list, meta)
}

// resolveTenantOrganization turns the organization_id of a tenant create request (an id or a
// slug) into the id, refusing an unknown organization (422) and a deleted one (409).
func resolveTenantOrganization(ctx context.Context, q querier, req *tenancy.CreateRequest) error {
	if req.OrganizationID == "" {
		return nil
	}
	o, err := orgByRef(ctx, q, req.OrganizationID, false)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == 404 {
		return errValidation("organization_id", "no organization "+req.OrganizationID+" (give its id or slug)")
	}
	if err != nil {
		return err
	}
	if o.Status == OrgDeleted {
		return errConflict("organization " + o.Slug + " is deleted; tenants cannot be added to it")
	}
	req.OrganizationID = o.ID
	return nil
}
