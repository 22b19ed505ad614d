package adminapi

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// userPermissionID returns the id of sub's direct permission code.
func (e *env) userPermissionID(sub, code string) string {
	e.t.Helper()
	var id string
	require.NoError(e.t, e.w.Admin.QueryRow(context.Background(), `SELECT up.id::text FROM admin.platform_user_permissions up
		JOIN admin.platform_users u ON u.id = up.user_id JOIN admin.platform_permissions p ON p.id = up.permission_id
		WHERE u.external_id = $1 AND p.code = $2`, sub, code).Scan(&id))
	return id
}

// Removing a deny confers what it blocked: it passes the guard of granting that code, and
// nobody removes a deny placed on themselves.
func TestNoEscalationRemovingADeny(t *testing.T) {
	e := newEnv(t)
	users, roles := "/api/v1/admin/platform-users", "/api/v1/admin/platform-roles"
	e.must(201, "POST", roles, map[string]any{"code": "tenant_ops", "permissions": []string{
		"tenants.read.platform", "tenants.create.platform", "tenants.update.platform", "tenants.delete.platform", "tenants.write.platform",
		"platform_users.write.platform", "platform_users.read.platform"}})
	ops := e.platformUser("ops", "tenant_ops")
	e.must(201, "POST", users, map[string]any{"external_id": "other"})
	e.must(201, "POST", users+"/ops/permissions", map[string]any{"code": "tenants.delete.platform", "granted": false})
	e.must(201, "POST", users+"/other/permissions", map[string]any{"code": "regions.read.platform", "granted": false})
	e.must(201, "POST", users+"/other/permissions", map[string]any{"code": "tenants.read.platform", "granted": false})

	r := e.do("DELETE", users+"/ops/permissions/"+e.userPermissionID("ops", "tenants.delete.platform"), ops, nil)
	require.Equal(t, 403, r.Status, "removed a deny on itself: %s", r.Body)
	refusedEscalation(t, e.do("DELETE", users+"/other/permissions/"+e.userPermissionID("other", "regions.read.platform"), ops, nil),
		"removing a deny of a code ops does not hold")
	r = e.do("DELETE", users+"/other/permissions/"+e.userPermissionID("other", "tenants.read.platform"), ops, nil)
	assert.Equal(t, 200, r.Status, "removing a deny of a code ops holds: %s", r.Body)
	assert.Equal(t, 403, e.do("DELETE", "/api/v1/admin/tenants/"+e.createTenant("acme").ID, ops, nil).Status, "the deny still holds")
}

// Re-activating a user confers everything the user holds.
func TestNoEscalationReactivatingAUser(t *testing.T) {
	e := newEnv(t)
	users, roles := "/api/v1/admin/platform-users", "/api/v1/admin/platform-roles"
	e.must(201, "POST", roles, map[string]any{"code": "user_admin", "permissions": []string{"platform_users.*.platform"}})
	ua := e.platformUser("ua", "user_admin")
	e.platformUser("boss", "system_admin")
	e.must(200, "PATCH", users+"/boss", map[string]any{"status": "suspended"})
	refusedEscalation(t, e.do("PATCH", users+"/boss", ua, map[string]any{"status": "active"}), "re-activating a system_admin")
	var u PlatformUser
	e.must(200, "GET", users+"/boss", nil).into(&u)
	assert.Equal(t, "suspended", u.Status)
}

// Suspending, deleting or revoking the roles of a more powerful user is refused.
func TestNoEscalationActingOnAMorePowerfulUser(t *testing.T) {
	e := newEnv(t)
	users, roles := "/api/v1/admin/platform-users", "/api/v1/admin/platform-roles"
	e.must(201, "POST", roles, map[string]any{"code": "user_admin", "permissions": []string{"platform_users.*.platform"}})
	ua := e.platformUser("ua", "user_admin")
	e.platformUser("boss", "system_admin")
	e.platformUser("peer", "user_admin")
	var asgs []PlatformRoleAssignment
	e.must(200, "GET", users+"/boss/roles", nil).into(&asgs)
	require.Len(t, asgs, 1)
	for _, tc := range []struct {
		name, method, path string
		body               any
	}{
		{"suspend", "PATCH", users + "/boss", map[string]any{"status": "suspended"}},
		{"delete", "DELETE", users + "/boss", nil},
		{"revoke", "DELETE", users + "/boss/roles/" + asgs[0].ID, nil},
	} {
		r := e.do(tc.method, tc.path, ua, tc.body)
		require.Equal(t, 403, r.Status, "%s a system_admin: %s", tc.name, r.Body)
		require.NotNil(t, r.Error)
		assert.NotEmpty(t, r.Error.Details["missing"], "%s: the reason lists what ua lacks", tc.name)
	}
	assert.Equal(t, 200, e.do("PATCH", users+"/peer", ua, map[string]any{"status": "suspended"}).Status, "a peer holds nothing more")
}

// Granting a pattern requires holding a pattern that contains it; holding every concrete code
// it matches today is not enough, since codes added later would match it too.
func TestNoEscalationWildcards(t *testing.T) {
	e := newEnv(t)
	users, roles := "/api/v1/admin/platform-users", "/api/v1/admin/platform-roles"
	e.must(201, "POST", roles, map[string]any{"code": "tenant_ops", "permissions": []string{
		"tenants.read.platform", "tenants.create.platform", "tenants.update.platform", "tenants.delete.platform", "tenants.write.platform",
		"platform_roles.create.platform", "platform_users.write.platform", "platform_users.read.platform", "rbac.write.platform"}})
	ops := e.platformUser("ops", "tenant_ops")
	refusedEscalation(t, e.do("POST", roles, ops, map[string]any{"code": "wide", "permissions": []string{"tenants.*.platform"}}), "tenants.*.platform in a role")
	refusedEscalation(t, e.do("POST", users+"/ops/permissions", ops, map[string]any{"code": "tenants.*.platform", "granted": true}), "tenants.*.platform directly")
	// A code added to the catalog widens every wildcard grant matching it (*.*.* of
	// system_admin at least): only someone holding the code may add it.
	refusedEscalation(t, e.do("POST", "/api/v1/admin/platform-permissions", ops, map[string]any{"code": "regions.export.platform"}), "a code ops does not hold")
	r := e.do("POST", "/api/v1/admin/platform-permissions", ops, map[string]any{"code": "tenants.export.platform"})
	refusedEscalation(t, r, "a code ops does not hold, matching tenants.*.platform")
	e.platformUser("wide", "system_admin")
	wide := e.token("wide")
	r = e.do("POST", roles, wide, map[string]any{"code": "wide", "permissions": []string{"tenants.*.platform"}})
	assert.Equal(t, 201, r.Status, "a holder of *.*.* may grant tenants.*.platform: %s", r.Body)
}

// Tenant RBAC writes follow the same rule against the actor's permissions at that tenant
// (those of the tenant user with the actor's external id), unless the actor manages every
// tenant's RBAC (rbac.write.platform, unrestricted).
func TestNoEscalationAtTenantLevel(t *testing.T) {
	e := newEnv(t)
	tenant := e.createTenant("acme")
	base := "/api/v1/tenants/" + tenant.Slug
	ta := e.platformUser("ta", "tenant_admin@"+tenant.ID)
	for _, u := range []string{"ta", "bob", "boss"} {
		e.must(201, "POST", base+"/users", map[string]any{"external_id": u})
	}
	e.must(201, "POST", base+"/users/ta/roles", map[string]any{"role": "viewer"})
	e.must(201, "POST", base+"/users/boss/roles", map[string]any{"role": "owner"})

	r := e.do("POST", base+"/roles", ta, map[string]any{"code": "readers", "permissions": []string{"projects.read.team"}})
	assert.Equal(t, 201, r.Status, "a code ta holds at the tenant: %s", r.Body)
	refusedEscalation(t, e.do("POST", base+"/roles", ta, map[string]any{"code": "wide", "permissions": []string{"projects.delete.tenant"}}), "a code ta lacks")
	refusedEscalation(t, e.do("POST", base+"/roles", ta, map[string]any{"code": "wider", "inherits": []string{"admin"}}), "inheriting admin")
	refusedEscalation(t, e.do("POST", base+"/users/bob/roles", ta, map[string]any{"role": "owner"}), "owner to bob")
	refusedEscalation(t, e.do("POST", base+"/users/ta/roles", ta, map[string]any{"role": "owner"}), "owner to itself")
	refusedEscalation(t, e.do("POST", base+"/users/bob/permissions", ta, map[string]any{"code": "billing.read.tenant", "granted": true}), "a direct grant ta lacks")
	refusedEscalation(t, e.do("PATCH", base+"/roles/readers", ta, map[string]any{"permissions": []string{"projects.read.team", "*.*.*"}}), "*.*.* added to a role")
	refusedEscalation(t, e.do("POST", base+"/permissions", ta, map[string]any{"code": "invoices.read.tenant"}), "a catalog code widening owner's *.*.*")
	assert.Equal(t, 201, e.do("POST", base+"/users/bob/permissions", ta, map[string]any{"code": "billing.read.tenant", "granted": false}).Status, "a deny confers nothing")
	r = e.do("PATCH", base+"/users/boss", ta, map[string]any{"status": "suspended"})
	require.Equal(t, 403, r.Status, "suspending the tenant's owner: %s", r.Body)
	assert.Equal(t, 403, e.do("DELETE", base+"/users/boss", ta, nil).Status, "deleting the tenant's owner")

	// A platform-wide RBAC administrator holds everything at every tenant.
	assert.Equal(t, 201, e.do("POST", base+"/users/bob/roles", e.admin, map[string]any{"role": "owner"}).Status)
}

// Moving a team under another makes the grants restricted to its new ancestors reach it: the
// actor must be able to confer them.
func TestNoEscalationMovingATeam(t *testing.T) {
	e := newEnv(t)
	tenant := e.createTenant("acme")
	base := "/api/v1/tenants/" + tenant.Slug
	ta := e.platformUser("ta", "tenant_admin@"+tenant.ID)
	for _, u := range []string{"ta", "bob"} {
		e.must(201, "POST", base+"/users", map[string]any{"external_id": u})
	}
	e.must(201, "POST", base+"/users/ta/roles", map[string]any{"role": "viewer"})
	for _, team := range []string{"ops", "eng", "qa"} {
		e.must(201, "POST", base+"/teams", map[string]any{"slug": team})
	}
	e.must(201, "POST", base+"/users/bob/roles", map[string]any{"role": "owner", "team_id": "ops"})

	refusedEscalation(t, e.do("PATCH", base+"/teams/eng", ta, map[string]any{"parent_team_id": "ops"}), "eng under ops, where bob is owner")
	assert.Equal(t, 200, e.do("PATCH", base+"/teams/eng", ta, map[string]any{"parent_team_id": "qa"}).Status, "under qa nobody gains anything")
	assert.Equal(t, 200, e.do("PATCH", base+"/teams/eng", e.admin, map[string]any{"parent_team_id": "ops"}).Status, "a platform-wide RBAC administrator may")
}
