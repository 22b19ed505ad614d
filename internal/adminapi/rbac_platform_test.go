package adminapi

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPlatformRBACFlow manages a platform administrator through the API and proves each change
// takes effect on that administrator's very next request.
func TestPlatformRBACFlow(t *testing.T) {
	e := newEnv(t)
	a := e.createTenant("acme")
	b := e.createTenant("beta")
	users := "/api/v1/admin/platform-users"

	r := e.must(201, "POST", users, map[string]any{"external_id": "pat", "email": "pat@example.com"})
	v := versionOf(t, r)
	next := func(r *resp) {
		t.Helper()
		nv := versionOf(t, r)
		assert.Greater(t, nv, v, "every platform RBAC write returns a newer admin version")
		v = nv
	}
	var pat PlatformUser
	r.into(&pat)
	assert.Equal(t, "active", pat.Status)
	r = e.must(200, "GET", users+"?page_size=1", nil)
	assert.InDelta(t, float64(2), r.Meta["total"], 0, "root and pat")
	r = e.must(200, "GET", users+"/pat", nil)
	var got PlatformUser
	r.into(&got)
	assert.Equal(t, pat.ID, got.ID)

	tok := e.token("pat")
	readA := func() int { return e.do("GET", "/api/v1/admin/tenants/"+a.ID, tok, nil).Status }
	readB := func() int { return e.do("GET", "/api/v1/admin/tenants/"+b.ID, tok, nil).Status }
	assert.Equal(t, 403, readA(), "no role yet")

	// tenant_admin restricted to acme (by slug): acme yes, beta no.
	r = e.must(201, "POST", users+"/pat/roles", map[string]any{"role": "tenant_admin", "tenant_id": "acme"})
	next(r)
	var asg PlatformRoleAssignment
	r.into(&asg)
	require.NotNil(t, asg.TenantID)
	assert.Equal(t, a.ID, *asg.TenantID)
	assert.Equal(t, "tenant_admin", asg.Role)
	assert.Equal(t, 200, readA())
	assert.Equal(t, 403, readB())
	assert.Equal(t, 200, e.do("GET", "/api/v1/tenants/acme/users", tok, nil).Status, "tenant_admin manages acme's RBAC")
	assert.Equal(t, 403, e.do("GET", users, tok, nil).Status, "but not platform users")

	r = e.must(200, "GET", users+"/pat/roles", nil)
	var asgs []PlatformRoleAssignment
	r.into(&asgs)
	require.Len(t, asgs, 1)
	assert.Equal(t, asg.ID, asgs[0].ID)

	// Revoke: acme is closed again at once.
	next(e.must(200, "DELETE", users+"/pat/roles/"+asg.ID, nil))
	assert.Equal(t, 403, readA(), "revoked")
	e.must(404, "DELETE", users+"/pat/roles/"+asg.ID, nil)

	// A direct grant restricted to acme, then its removal.
	r = e.must(201, "POST", users+"/pat/permissions", map[string]any{"code": "tenants.read.tenant", "granted": true, "tenant_id": a.ID})
	next(r)
	var perm PlatformUserPermission
	r.into(&perm)
	assert.True(t, perm.Granted)
	assert.Equal(t, 200, readA())
	assert.Equal(t, 403, readB())
	// A deny restricted to acme takes it away again while it exists.
	r = e.must(201, "POST", users+"/pat/permissions", map[string]any{"code": "tenants.read.tenant", "granted": false})
	next(r)
	var deny PlatformUserPermission
	r.into(&deny)
	assert.Equal(t, 403, readA(), "an unrestricted deny wins")
	r = e.must(200, "GET", users+"/pat/permissions", nil)
	var perms []PlatformUserPermission
	r.into(&perms)
	assert.Len(t, perms, 2)
	next(e.must(200, "DELETE", users+"/pat/permissions/"+deny.ID, nil))
	assert.Equal(t, 200, readA())
	next(e.must(200, "DELETE", users+"/pat/permissions/"+perm.ID, nil))
	assert.Equal(t, 403, readA())

	// Status: a suspended administrator is refused even with a role.
	e.must(201, "POST", users+"/pat/roles", map[string]any{"role": "tenant_admin", "tenant_id": "acme"})
	r = e.must(200, "PATCH", users+"/pat", map[string]any{"status": "suspended"})
	next(r)
	assert.Equal(t, 403, readA(), "suspended")
	e.must(200, "PATCH", users+"/pat", map[string]any{"status": "active", "email": nil})
	assert.Equal(t, 200, readA())
	next(e.must(200, "DELETE", users+"/pat", nil))
	e.must(404, "GET", users+"/pat", nil)
	assert.Equal(t, 403, readA(), "a deleted administrator is refused")

	// Audit: platform RBAC rows are written in the change's transaction; the chain verifies.
	r = e.must(200, "GET", "/api/v1/admin/audit?target_type=platform_user&page_size=100", nil)
	var entries []AuditEntry
	r.into(&entries)
	actions := map[string]bool{}
	for _, x := range entries {
		actions[x.Action] = true
	}
	for _, want := range []string{"platform_user.create", "platform_user.update", "platform_user.delete", "platform_user_role.assign",
		"platform_user_role.revoke", "platform_user_permission.add", "platform_user_permission.delete"} {
		assert.True(t, actions[want], "audit has %s: %v", want, actions)
	}
	r = e.must(200, "POST", "/api/v1/admin/audit/verify", nil)
	var ver AuditVerification
	r.into(&ver)
	assert.True(t, ver.OK, "%+v", ver)
}

// TestPlatformRBACRefusals covers platform roles and the catalog, with each 409 and 422.
func TestPlatformRBACRefusals(t *testing.T) {
	e := newEnv(t)
	users, roles, catalog := "/api/v1/admin/platform-users", "/api/v1/admin/platform-roles", "/api/v1/admin/platform-permissions"
	conflict := func(r *resp, what string) {
		t.Helper()
		assert.Equal(t, 409, r.Status, "%s: %s", what, r.Body)
	}
	invalid := func(r *resp, field, what string) {
		t.Helper()
		assert.Equal(t, 422, r.Status, "%s: %s", what, r.Body)
		if assert.NotNil(t, r.Error, what) {
			assert.Contains(t, r.Error.Details["fields"], field, what)
		}
	}

	// Users.
	e.must(201, "POST", users, map[string]any{"external_id": "pat"})
	conflict(e.do("POST", users, e.admin, map[string]any{"external_id": "pat"}), "duplicate platform user")
	invalid(e.do("POST", users, e.admin, map[string]any{"external_id": ""}), "external_id", "empty external id")
	invalid(e.do("PATCH", users+"/pat", e.admin, map[string]any{"status": "gone"}), "status", "bad status")
	conflict(e.do("DELETE", users+"/root", e.admin, nil), "deleting yourself")
	conflict(e.do("PATCH", users+"/root", e.admin, map[string]any{"status": "suspended"}), "suspending yourself")
	e.must(404, "GET", users+"/nobody", nil)

	// Catalog: platform grammar, duplicates.
	r := e.must(200, "GET", catalog, nil)
	var cat []Permission
	r.into(&cat)
	codes := map[string]bool{}
	for _, p := range cat {
		codes[p.Code] = true
	}
	assert.True(t, codes["tenants.read.platform"])
	r = e.must(201, "POST", catalog, map[string]any{"code": "reports.export.platform", "description": "Export reports"})
	versionOf(t, r)
	conflict(e.do("POST", catalog, e.admin, map[string]any{"code": "reports.export.platform"}), "duplicate code")
	invalid(e.do("POST", catalog, e.admin, map[string]any{"code": "reports.export.team"}), "code", "a tenant-level scope")
	invalid(e.do("POST", catalog, e.admin, map[string]any{"code": "Reports.export.platform"}), "code", "upper case")
	invalid(e.do("POST", catalog, e.admin, map[string]any{"code": "reports.export"}), "code", "two segments")

	// Roles: create with inherits and permissions, cycles, unknown codes, system roles.
	r = e.must(201, "POST", roles, map[string]any{"code": "auditor", "permissions": []string{"audit.read.platform", "reports.export.platform"}, "inherits": []string{"viewer"}})
	var auditor PlatformRole
	r.into(&auditor)
	assert.Equal(t, []string{"viewer"}, auditor.Inherits)
	assert.Equal(t, []string{"audit.read.platform", "reports.export.platform"}, auditor.Permissions)
	conflict(e.do("POST", roles, e.admin, map[string]any{"code": "auditor"}), "duplicate role")
	invalid(e.do("POST", roles, e.admin, map[string]any{"code": "x", "permissions": []string{"rockets.launch.platform"}}), "permissions", "unknown code")
	r = e.do("PATCH", roles+"/viewer", e.admin, map[string]any{"inherits": []string{"auditor"}})
	conflict(r, "viewer inherits auditor inherits viewer")
	assert.Contains(t, r.Error.Message, "cycle")
	conflict(e.do("PATCH", roles+"/auditor", e.admin, map[string]any{"inherits": []string{"auditor"}}), "self inheritance")
	r = e.must(200, "PATCH", roles+"/auditor", map[string]any{"name": "Auditor", "permissions": []string{"audit.read.platform"}})
	versionOf(t, r)
	r = e.must(200, "GET", roles+"/auditor", nil)
	auditor = PlatformRole{}
	r.into(&auditor)
	assert.Equal(t, "Auditor", auditor.Name)
	assert.Equal(t, []string{"audit.read.platform"}, auditor.Permissions)
	assert.Equal(t, []string{"viewer"}, auditor.Inherits, "absent inherits stay")
	r = e.must(200, "GET", roles, nil)
	var all []PlatformRole
	r.into(&all)
	assert.GreaterOrEqual(t, len(all), 5)

	conflict(e.do("DELETE", roles+"/system_admin", e.admin, nil), "system role")
	r = e.must(201, "POST", users+"/pat/roles", map[string]any{"role": "auditor"})
	var asg PlatformRoleAssignment
	r.into(&asg)
	conflict(e.do("POST", users+"/pat/roles", e.admin, map[string]any{"role": "auditor"}), "duplicate assignment")
	invalid(e.do("POST", users+"/pat/roles", e.admin, map[string]any{"role": "nope"}), "role", "unknown role")
	invalid(e.do("POST", users+"/pat/roles", e.admin, map[string]any{"role": "viewer", "tenant_id": "nope"}), "tenant_id", "unknown tenant")
	conflict(e.do("DELETE", roles+"/auditor", e.admin, nil), "assigned role")
	assert.Equal(t, 200, e.do("GET", "/api/v1/admin/audit", e.token("pat"), nil).Status, "auditor reads the audit log")
	e.must(200, "DELETE", users+"/pat/roles/"+asg.ID, nil)
	e.must(200, "DELETE", roles+"/auditor", nil)
	e.must(404, "GET", roles+"/auditor", nil)

	// Direct permissions.
	invalid(e.do("POST", users+"/pat/permissions", e.admin, map[string]any{"code": "rockets.launch.platform", "granted": true}), "code", "unknown code")
	invalid(e.do("POST", users+"/pat/permissions", e.admin, map[string]any{"code": "audit.read.platform"}), "granted", "granted is required")
	e.must(201, "POST", users+"/pat/permissions", map[string]any{"code": "audit.read.platform", "granted": true})
	conflict(e.do("POST", users+"/pat/permissions", e.admin, map[string]any{"code": "audit.read.platform", "granted": false}), "duplicate direct permission")
}

// TestRoutePermissionsExist proves every permission the route table checks is in the platform
// catalog, so no route is reachable only through a wildcard by accident of a typo.
func TestRoutePermissionsExist(t *testing.T) {
	e := newEnv(t)
	for _, rt := range e.srv.table {
		if rt.public() {
			continue
		}
		code := rt.Permission
		if rt.resourceCheck() {
			code += ".tenant" // a resource check on a tenant is met by the tenant-scope code
		}
		var n int
		require.NoError(t, e.w.Admin.QueryRow(context.Background(), `SELECT count(*) FROM admin.platform_permissions WHERE code = $1`, code).Scan(&n))
		assert.Equal(t, 1, n, "%s checks %s, which is not in the platform catalog", rt.pattern(), code)
		assert.NotContains(t, code, "*", "%s checks a wildcard", rt.pattern())
	}
}
