package adminapi

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/tenancy"
)

const orgsBase = "/api/v1/admin/organizations"

// createOrgTenant provisions a schema tenant in an organization (id or slug).
func (e *env) createOrgTenant(slug, org string) tenancy.Tenant {
	e.t.Helper()
	r := e.must(201, "POST", "/api/v1/admin/tenants", map[string]any{
		"slug": slug, "region": "eu-west-1", "external_auth_realm": slug + "-realm", "organization_id": org})
	var t tenancy.Tenant
	r.into(&t)
	return t
}

// orgAudit returns the organization audit entries of target id, oldest first.
func (e *env) orgAudit(id string) []AuditEntry {
	e.t.Helper()
	r := e.must(200, "GET", "/api/v1/admin/audit?target_type=organization&page_size=100&target_id="+id, nil)
	var entries []AuditEntry
	r.into(&entries)
	for i, j := 0, len(entries)-1; i < j; i, j = i+1, j-1 {
		entries[i], entries[j] = entries[j], entries[i]
	}
	return entries
}

func TestOrganizationLifecycle(t *testing.T) {
	e := newEnv(t)

	r := e.do("POST", orgsBase, e.admin, map[string]any{"slug": "acme-group", "name": "Acme Group"}, "X-Request-Id", "req-org-1")
	require.Equal(t, 201, r.Status, "%s", r.Body)
	versionOf(t, r)
	var org Organization
	r.into(&org)
	assert.Equal(t, "acme-group", org.Slug)
	assert.Equal(t, "Acme Group", org.Name)
	assert.Equal(t, "active", org.Status)
	assert.Zero(t, org.TenantCount)
	assert.Equal(t, orgsBase+"/"+org.ID, r.Header.Get("Location"))
	r = e.must(201, "POST", orgsBase, map[string]any{"slug": "beta-group"})
	var beta Organization
	r.into(&beta)
	assert.Equal(t, "beta-group", beta.Name, "name defaults to the slug")

	// List: paginated with totals, filtered by status.
	r = e.must(200, "GET", orgsBase+"?page_size=1", nil)
	var list []Organization
	r.into(&list)
	require.Len(t, list, 1)
	assert.Equal(t, "acme-group", list[0].Slug, "ordered by slug")
	assert.InDelta(t, float64(2), r.Meta["total"], 0)
	assert.InDelta(t, float64(2), r.Meta["total_pages"], 0)
	r = e.must(200, "GET", orgsBase+"?page=2&page_size=1", nil)
	r.into(&list)
	require.Len(t, list, 1)
	assert.Equal(t, "beta-group", list[0].Slug)

	// Get by slug and by id.
	var got Organization
	e.must(200, "GET", orgsBase+"/acme-group", nil).into(&got)
	assert.Equal(t, org.ID, got.ID)
	e.must(200, "GET", orgsBase+"/"+org.ID, nil).into(&got)
	assert.Equal(t, "acme-group", got.Slug)

	// Patch name and status.
	r = e.must(200, "PATCH", orgsBase+"/acme-group", map[string]any{"name": "Acme Holdings", "status": "suspended"})
	versionOf(t, r)
	r.into(&got)
	assert.Equal(t, "Acme Holdings", got.Name)
	assert.Equal(t, "suspended", got.Status)
	r = e.must(200, "GET", orgsBase+"?status=suspended", nil)
	r.into(&list)
	require.Len(t, list, 1)
	assert.Equal(t, org.ID, list[0].ID)
	assert.InDelta(t, float64(1), r.Meta["total"], 0)
	e.must(200, "PATCH", orgsBase+"/"+org.ID, map[string]any{"status": "active"}).into(&got)
	assert.Equal(t, "active", got.Status)
	assert.Equal(t, "Acme Holdings", got.Name, "an absent field is left alone")

	// Tenants join it by organization slug or id.
	t1 := e.createOrgTenant("acme-eu", "acme-group")
	require.NotNil(t, t1.OrganizationID)
	assert.Equal(t, org.ID, *t1.OrganizationID, "the slug is resolved to the id")
	t2 := e.createOrgTenant("acme-us", org.ID)
	require.NotNil(t, t2.OrganizationID)
	assert.Equal(t, org.ID, *t2.OrganizationID)
	e.createTenant("loner") // in no organization

	e.must(200, "GET", orgsBase+"/acme-group", nil).into(&got)
	assert.Equal(t, 2, got.TenantCount)
	r = e.must(200, "GET", orgsBase+"/acme-group/tenants", nil)
	var tenants []tenancy.Tenant
	r.into(&tenants)
	require.Len(t, tenants, 2)
	assert.Equal(t, []string{"acme-eu", "acme-us"}, []string{tenants[0].Slug, tenants[1].Slug})
	assert.InDelta(t, float64(2), r.Meta["total"], 0)
	assert.Equal(t, org.ID, r.Meta["organization_id"])
	r = e.must(200, "GET", orgsBase+"/"+org.ID+"/tenants?page=2&page_size=1", nil)
	r.into(&tenants)
	require.Len(t, tenants, 1)
	assert.Equal(t, "acme-us", tenants[0].Slug)
	assert.InDelta(t, float64(2), r.Meta["total_pages"], 0)
	e.must(200, "GET", orgsBase+"/beta-group/tenants", nil).into(&tenants)
	assert.Empty(t, tenants)

	// Delete is refused while tenants remain, naming them; nothing changes, nothing is audited.
	r = e.do("DELETE", orgsBase+"/acme-group", e.admin, nil)
	require.Equal(t, 409, r.Status, "%s", r.Body)
	require.NotNil(t, r.Error)
	assert.Equal(t, CodeConflict, r.Error.Code)
	assert.Contains(t, r.Error.Message, "still has 2 tenant(s)")
	assert.Contains(t, r.Error.Message, "acme-eu, acme-us")
	assert.InDelta(t, float64(2), r.Error.Details["tenant_count"], 0)
	assert.Equal(t, []any{"acme-eu", "acme-us"}, r.Error.Details["tenants"])
	e.must(200, "GET", orgsBase+"/acme-group", nil).into(&got)
	assert.Equal(t, "active", got.Status)

	// One tenant deleted: still refused. Both: allowed.
	e.must(200, "DELETE", "/api/v1/admin/tenants/acme-eu", nil)
	r = e.do("DELETE", orgsBase+"/acme-group", e.admin, nil)
	require.Equal(t, 409, r.Status, "%s", r.Body)
	assert.Contains(t, r.Error.Message, "acme-us")
	assert.NotContains(t, r.Error.Message, "acme-eu")
	e.must(200, "DELETE", "/api/v1/admin/tenants/acme-us", nil)
	r = e.must(200, "DELETE", orgsBase+"/acme-group", nil)
	versionOf(t, r)
	r.into(&got)
	assert.Equal(t, "deleted", got.Status)
	assert.Zero(t, got.TenantCount)

	// Deleted tenants and organizations are listed only when asked for.
	e.must(200, "GET", orgsBase+"/acme-group/tenants", nil).into(&tenants)
	assert.Empty(t, tenants)
	e.must(200, "GET", orgsBase+"/acme-group/tenants?status=deleted", nil).into(&tenants)
	assert.Len(t, tenants, 2)
	r = e.must(200, "GET", orgsBase, nil)
	r.into(&list)
	require.Len(t, list, 1)
	assert.Equal(t, "beta-group", list[0].Slug)
	e.must(200, "GET", orgsBase+"?status=deleted", nil).into(&list)
	require.Len(t, list, 1)
	assert.Equal(t, org.ID, list[0].ID)
	e.must(200, "GET", orgsBase+"/acme-group", nil) // still readable

	// A deleted organization cannot be changed, joined, or have its slug reused.
	r = e.do("PATCH", orgsBase+"/acme-group", e.admin, map[string]any{"name": "Back"})
	assert.Equal(t, 409, r.Status, "%s", r.Body)
	r = e.do("POST", "/api/v1/admin/tenants", e.admin, map[string]any{
		"slug": "acme-late", "region": "eu-west-1", "external_auth_realm": "acme-late", "organization_id": "acme-group"})
	assert.Equal(t, 409, r.Status, "%s", r.Body)
	assert.Equal(t, 404, e.do("GET", "/api/v1/admin/tenants/acme-late", e.admin, nil).Status, "no tenant row was left")
	r = e.do("POST", orgsBase, e.admin, map[string]any{"slug": "acme-group"})
	require.Equal(t, 409, r.Status, "%s", r.Body)
	assert.Contains(t, r.Error.Message, "deleted")

	// Every write that happened is audited, with actor and request id; the refused ones are not.
	entries := e.orgAudit(org.ID)
	var actions []string
	for _, a := range entries {
		actions = append(actions, a.Action)
		assert.Equal(t, "root", a.Actor)
		assert.Equal(t, "organization", a.TargetType)
		assert.Nil(t, a.TenantID)
	}
	assert.Equal(t, []string{"organization.create", "organization.update", "organization.update", "organization.delete"}, actions)
	require.NotEmpty(t, entries)
	require.NotNil(t, entries[0].RequestID)
	assert.Equal(t, "req-org-1", *entries[0].RequestID)
	assert.Contains(t, string(entries[0].After), `"slug":"acme-group"`)
	assert.Contains(t, string(entries[1].Before), `"status":"active"`)
	assert.Contains(t, string(entries[1].After), `"status":"suspended"`)
	assert.Contains(t, string(entries[3].After), `"status":"deleted"`)
	ver := e.must(200, "POST", "/api/v1/admin/audit/verify", nil)
	var verification AuditVerification
	ver.into(&verification)
	assert.True(t, verification.OK, "the chain is intact: %s", ver.Body)
}

func TestOrganizationErrors(t *testing.T) {
	e := newEnv(t)
	e.must(201, "POST", orgsBase, map[string]any{"slug": "acme", "name": "Acme"})
	viewer := e.platformUser("vera", "viewer")

	cases := []struct {
		name         string
		method, path string
		body         any
		status       int
		code         string
		field        string
	}{
		{"invalid slug", "POST", orgsBase, map[string]any{"slug": "Bad;Slug"}, 422, CodeValidation, "slug"},
		{"missing slug", "POST", orgsBase, map[string]any{"name": "No slug"}, 422, CodeValidation, "slug"},
		{"slug shaped like an id", "POST", orgsBase, map[string]any{"slug": "00000000-0000-0000-0000-000000000001"}, 422, CodeValidation, "slug"},
		{"name too long", "POST", orgsBase, map[string]any{"slug": "long", "name": strings.Repeat("n", 201)}, 422, CodeValidation, "name"},
		{"blank name", "POST", orgsBase, map[string]any{"slug": "blank", "name": "   "}, 422, CodeValidation, "name"},
		{"duplicate slug", "POST", orgsBase, map[string]any{"slug": "acme"}, 409, CodeConflict, ""},
		{"unknown field", "POST", orgsBase, `{"slug": "x", "colour": "red"}`, 400, CodeBadRequest, ""},
		{"empty body", "POST", orgsBase, nil, 400, CodeBadRequest, ""},
		{"bad status filter", "GET", orgsBase + "?status=gone", nil, 422, CodeValidation, "status"},
		{"page_size above max", "GET", orgsBase + "?page_size=101", nil, 422, CodeValidation, "page_size"},
		{"get unknown slug", "GET", orgsBase + "/nothing", nil, 404, CodeNotFound, ""},
		{"get unknown id", "GET", orgsBase + "/00000000-0000-0000-0000-000000000009", nil, 404, CodeNotFound, ""},
		{"get malformed ref", "GET", orgsBase + "/Not%20A%20Slug", nil, 404, CodeNotFound, ""},
		{"patch unknown", "PATCH", orgsBase + "/nothing", map[string]any{"name": "x"}, 404, CodeNotFound, ""},
		{"delete unknown", "DELETE", orgsBase + "/nothing", nil, 404, CodeNotFound, ""},
		{"tenants of unknown", "GET", orgsBase + "/nothing/tenants", nil, 404, CodeNotFound, ""},
		{"tenants bad status filter", "GET", orgsBase + "/acme/tenants?status=gone", nil, 422, CodeValidation, "status"},
		{"tenants page zero", "GET", orgsBase + "/acme/tenants?page=0", nil, 422, CodeValidation, "page"},
		{"patch to deleted", "PATCH", orgsBase + "/acme", map[string]any{"status": "deleted"}, 422, CodeValidation, "status"},
		{"patch unknown status", "PATCH", orgsBase + "/acme", map[string]any{"status": "paused"}, 422, CodeValidation, "status"},
		{"patch empty name", "PATCH", orgsBase + "/acme", map[string]any{"name": ""}, 422, CodeValidation, "name"},
		{"empty patch", "PATCH", orgsBase + "/acme", map[string]any{}, 422, CodeValidation, "name"},
		{"tenant in unknown organization", "POST", "/api/v1/admin/tenants", map[string]any{
			"slug": "orphan", "region": "eu-west-1", "external_auth_realm": "orphan", "organization_id": "nothing"}, 422, CodeValidation, "organization_id"},
		{"tenant in malformed organization id", "POST", "/api/v1/admin/tenants", map[string]any{
			"slug": "orphan", "region": "eu-west-1", "external_auth_realm": "orphan", "organization_id": "00000000-0000-0000-0000-00000000000Z"}, 422, CodeValidation, "organization_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, e.admin, tc.body)
			require.Equal(t, tc.status, r.Status, "got %d, want %d: %s", r.Status, tc.status, r.Body)
			assert.False(t, r.Success)
			require.NotNil(t, r.Error, "error envelope: %s", r.Body)
			assert.Equal(t, tc.code, r.Error.Code)
			assert.NotEmpty(t, r.Error.Message)
			if tc.field != "" {
				fields, _ := r.Error.Details["fields"].(map[string]any)
				assert.Contains(t, fields, tc.field, "details name the field: %s", r.Body)
			}
		})
	}

	// Nothing refused left a row or an audit entry.
	r := e.must(200, "GET", orgsBase+"?page_size=100", nil)
	assert.InDelta(t, float64(1), r.Meta["total"], 0)
	r = e.must(200, "GET", "/api/v1/admin/audit?target_type=organization", nil)
	assert.InDelta(t, float64(1), r.Meta["total"], 0, "only the one create is audited: %s", r.Body)
	assert.Equal(t, 404, e.do("GET", "/api/v1/admin/tenants/orphan", e.admin, nil).Status)

	// A viewer reads organizations but changes nothing.
	assert.Equal(t, 200, e.do("GET", orgsBase, viewer, nil).Status)
	assert.Equal(t, 200, e.do("GET", orgsBase+"/acme/tenants", viewer, nil).Status)
	r = e.do("POST", orgsBase, viewer, map[string]any{"slug": "nope"})
	require.Equal(t, 403, r.Status, "%s", r.Body)
	assert.Equal(t, "organizations.create.platform", r.Error.Details["permission"])
	assert.Equal(t, 403, e.do("DELETE", orgsBase+"/acme", viewer, nil).Status)
}
