package adminapi

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// auditCount counts the audit rows of one action.
func (e *env) auditCount(action string) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.w.Admin.QueryRow(context.Background(), `SELECT count(*) FROM admin.audit_log WHERE action = $1`, action).Scan(&n))
	return n
}

// refusedEscalation asserts the no-escalation 403.
func refusedEscalation(t *testing.T, r *resp, what string) {
	t.Helper()
	require.Equal(t, 403, r.Status, "%s: %s", what, r.Body)
	require.NotNil(t, r.Error, what)
	assert.Equal(t, CodeForbidden, r.Error.Code, what)
	assert.Equal(t, "cannot grant permissions you do not hold", r.Error.Message, what)
	missing, ok := r.Error.Details["missing"].([]any)
	if assert.True(t, ok, "%s: details.missing: %s", what, r.Body) {
		assert.NotEmpty(t, missing, what)
		assert.LessOrEqual(t, len(missing), maxMissingListed, what)
	}
}

// TestNoEscalation: a platform RBAC write may only confer permissions the actor holds.
func TestNoEscalation(t *testing.T) {
	e := newEnv(t)
	users, roles := "/api/v1/admin/platform-users", "/api/v1/admin/platform-roles"

	// mgr holds exactly what the routes need: manage users' roles and grants, update roles.
	e.must(201, "POST", roles, map[string]any{"code": "user_manager", "permissions": []string{
		"platform_users.write.platform", "platform_users.read.platform", "platform_roles.update.platform"}})
	e.must(201, "POST", roles, map[string]any{"code": "extra", "permissions": []string{"regions.read.platform"}})
	mgr := e.platformUser("mgr", "user_manager")
	e.must(201, "POST", users, map[string]any{"external_id": "other"})

	assigns, adds, updates := e.auditCount("platform_user_role.assign"), e.auditCount("platform_user_permission.add"), e.auditCount("platform_role.update")
	refusedEscalation(t, e.do("POST", users+"/mgr/roles", mgr, map[string]any{"role": "system_admin"}), "system_admin to itself")
	refusedEscalation(t, e.do("POST", users+"/other/roles", mgr, map[string]any{"role": "system_admin"}), "system_admin to another")
	refusedEscalation(t, e.do("POST", users+"/other/roles", mgr, map[string]any{"role": "tenant_admin", "tenant_id": e.createTenant("acme").ID}),
		"tenant_admin restricted to a tenant mgr cannot manage")
	refusedEscalation(t, e.do("POST", users+"/mgr/permissions", mgr, map[string]any{"code": "*.*.*", "granted": true}), "*.*.* directly")
	refusedEscalation(t, e.do("POST", users+"/mgr/permissions", mgr, map[string]any{"code": "regions.read.platform", "granted": true}), "a code mgr lacks")
	r := e.do("PATCH", roles+"/user_manager", mgr, map[string]any{"permissions": []string{
		"platform_users.write.platform", "platform_users.read.platform", "platform_roles.update.platform", "*.*.*"}})
	refusedEscalation(t, r, "*.*.* added to its own role")
	refusedEscalation(t, e.do("PATCH", roles+"/user_manager", mgr, map[string]any{"inherits": []string{"system_admin"}}), "inheriting system_admin")

	// Nothing was written, nor audited.
	var asgs []PlatformRoleAssignment
	e.must(200, "GET", users+"/mgr/roles", nil).into(&asgs)
	require.Len(t, asgs, 1)
	assert.Equal(t, "user_manager", asgs[0].Role)
	e.must(200, "GET", users+"/other/roles", nil).into(&asgs)
	assert.Empty(t, asgs)
	var perms []PlatformUserPermission
	e.must(200, "GET", users+"/mgr/permissions", nil).into(&perms)
	assert.Empty(t, perms)
	var role PlatformRole
	e.must(200, "GET", roles+"/user_manager", nil).into(&role)
	assert.Equal(t, []string{"platform_roles.update.platform", "platform_users.read.platform", "platform_users.write.platform"}, role.Permissions)
	assert.Empty(t, role.Inherits)
	assert.Equal(t, assigns, e.auditCount("platform_user_role.assign"))
	assert.Equal(t, adds, e.auditCount("platform_user_permission.add"))
	assert.Equal(t, updates, e.auditCount("platform_role.update"))
	assert.Equal(t, 403, e.do("GET", "/api/v1/admin/regions", mgr, nil).Status, "still no more than before")

	// What mgr holds it may confer; denies, removals and renames confer nothing.
	e.must(201, "POST", users+"/other/permissions", map[string]any{"code": "regions.read.platform", "granted": false}) // by the admin
	r = e.do("POST", users+"/other/roles", mgr, map[string]any{"role": "user_manager"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	r = e.do("POST", users+"/other/permissions", mgr, map[string]any{"code": "*.*.*", "granted": false})
	require.Equal(t, 201, r.Status, "a deny is always allowed: %s", r.Body)
	r = e.do("POST", users+"/other/permissions", mgr, map[string]any{"code": "platform_users.read.platform", "granted": true})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	r = e.do("PATCH", roles+"/user_manager", mgr, map[string]any{"name": "User manager", "permissions": []string{"platform_users.write.platform", "platform_users.read.platform", "platform_roles.update.platform"}})
	require.Equal(t, 200, r.Status, "%s", r.Body)

	// Inheritance: walked recursively, over active roles only, and a cycle (written behind the
	// API's back) terminates.
	e.must(201, "POST", roles, map[string]any{"code": "dormant", "permissions": []string{"*.*.*"}})
	e.must(200, "PATCH", roles+"/dormant", map[string]any{"is_active": false})
	e.must(201, "POST", roles, map[string]any{"code": "wrap", "inherits": []string{"dormant"}, "permissions": []string{"platform_users.read.platform"}})
	r = e.do("POST", users+"/other/roles", mgr, map[string]any{"role": "wrap"})
	require.Equal(t, 201, r.Status, "an inactive inherited role confers nothing: %s", r.Body)
	// ...until it is active again: re-activating it confers *.*.* on its holders.
	refusedEscalation(t, e.do("PATCH", roles+"/dormant", mgr, map[string]any{"is_active": true}), "re-activating a *.*.* role")
	e.must(200, "GET", roles+"/dormant", nil).into(&role)
	assert.False(t, role.IsActive, "a refused activation changes nothing")
	r = e.do("PATCH", roles+"/dormant", mgr, map[string]any{"name": "Dormant"})
	require.Equal(t, 200, r.Status, "renaming it, inactive, confers nothing: %s", r.Body)
	e.must(201, "POST", roles, map[string]any{"code": "c1", "permissions": []string{"platform_users.read.platform"}})
	e.must(201, "POST", roles, map[string]any{"code": "c2", "inherits": []string{"c1"}, "permissions": []string{"platform_users.read.platform"}})
	e.must(201, "POST", roles, map[string]any{"code": "c3", "inherits": []string{"c2"}, "permissions": []string{"regions.read.platform"}})
	_, err := e.w.Admin.Exec(context.Background(), `INSERT INTO admin.platform_role_inherits (role_id, inherited_role_id)
		SELECT (SELECT id FROM admin.platform_roles WHERE code = 'c1'), (SELECT id FROM admin.platform_roles WHERE code = 'c3')`)
	require.NoError(t, err)
	r = e.do("POST", users+"/other/roles", mgr, map[string]any{"role": "c1"})
	refusedEscalation(t, r, "c1 -> c3 (cycle) holds regions.read.platform")
	assert.Equal(t, []any{"regions.read.platform"}, r.Error.Details["missing"])

	// A system_admin can do all three.
	e.must(201, "POST", users+"/other/roles", map[string]any{"role": "system_admin"})
	e.must(201, "POST", users+"/mgr/permissions", map[string]any{"code": "*.*.*", "granted": true})
	e.must(200, "PATCH", roles+"/extra", map[string]any{"permissions": []string{"*.*.*"}})
	e.must(201, "POST", roles, map[string]any{"code": "super", "inherits": []string{"system_admin"}})
}

// TestNoEscalationRestricted: a tenant-restricted holder confers only on its tenant.
func TestNoEscalationRestricted(t *testing.T) {
	e := newEnv(t)
	users := "/api/v1/admin/platform-users"
	a, b := e.createTenant("acme"), e.createTenant("beta")
	e.must(201, "POST", users, map[string]any{"external_id": "ta"})
	e.must(201, "POST", users, map[string]any{"external_id": "tgt"})
	e.must(201, "POST", users+"/ta/permissions", map[string]any{"code": "platform_users.write.platform", "granted": true})
	e.must(201, "POST", users+"/ta/permissions", map[string]any{"code": "tenants.*.tenant", "granted": true, "tenant_id": a.ID})
	ta := e.token("ta")

	grant := func(body map[string]any) *resp { return e.do("POST", users+"/tgt/permissions", ta, body) }
	r := grant(map[string]any{"code": "tenants.read.tenant", "granted": true, "tenant_id": a.ID})
	require.Equal(t, 201, r.Status, "restricted to acme: %s", r.Body)
	r = grant(map[string]any{"code": "tenants.read.tenant", "granted": true, "tenant_id": "beta"})
	refusedEscalation(t, r, "restricted to beta")
	assert.Equal(t, b.ID, r.Error.Details["tenant_id"])
	assert.Equal(t, []any{"tenants.read.tenant"}, r.Error.Details["missing"])
	refusedEscalation(t, grant(map[string]any{"code": "tenants.read.platform", "granted": true}), "unrestricted")
	refusedEscalation(t, grant(map[string]any{"code": "tenants.update.tenant", "granted": true}), "unrestricted, at the scope ta holds restricted")
	refusedEscalation(t, e.do("POST", users+"/tgt/roles", ta, map[string]any{"role": "tenant_admin", "tenant_id": "acme"}),
		"tenant_admin on acme needs rbac, audit and migrations too")
	r = grant(map[string]any{"code": "tenants.read.platform", "granted": false})
	require.Equal(t, 201, r.Status, "a deny is always allowed: %s", r.Body)

	var perms []PlatformUserPermission
	e.must(200, "GET", users+"/tgt/permissions", nil).into(&perms)
	assert.Len(t, perms, 2, "the acme grant and the deny")
}

func TestExpandCodes(t *testing.T) {
	catalog := []string{"a.read.platform", "a.read.tenant", "a.write.platform", "b.read.platform"}
	assert.Equal(t, catalog, expandCodes([]string{"*.*.*"}, catalog))
	assert.Equal(t, []string{"a.read.platform", "b.read.platform"}, expandCodes([]string{"*.read.platform", "b.read.platform"}, catalog))
	assert.Equal(t, []string{"a.read.platform", "a.read.tenant"}, expandCodes([]string{"a.read.*"}, catalog))
	assert.Empty(t, expandCodes([]string{"c.*.*", "a.read"}, catalog))
	assert.Equal(t, []string{"b"}, added([]string{"a"}, []string{"a", "b"}))
}
