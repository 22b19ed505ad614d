package adminapi

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// missingOf returns a no-escalation refusal's listed codes and count.
func missingOf(t *testing.T, r *resp) ([]string, int) {
	t.Helper()
	require.NotNil(t, r.Error, "%s", r.Body)
	var listed []string
	for _, m := range r.Error.Details["missing"].([]any) {
		listed = append(listed, m.(string))
	}
	n, ok := r.Error.Details["missing_count"].(float64)
	require.True(t, ok, "details.missing_count: %s", r.Body)
	return listed, int(n)
}

// TestNoEscalationRoleCreate: creating a role confers its codes and those of the roles it
// inherits, so a limited actor may only create roles out of what it holds.
func TestNoEscalationRoleCreate(t *testing.T) {
	e := newEnv(t)
	roles := "/api/v1/admin/platform-roles"
	e.must(201, "POST", roles, map[string]any{"code": "role_creator", "permissions": []string{
		"platform_roles.create.platform", "platform_roles.read.platform", "regions.read.platform"}})
	rc := e.platformUser("rc", "role_creator")
	creates := e.auditCount("platform_role.create")

	r := e.do("POST", roles, rc, map[string]any{"code": "r_ok", "permissions": []string{"regions.read.platform", "regions.read.tenant"}})
	require.Equal(t, 201, r.Status, "codes rc holds (one at a lower scope): %s", r.Body)

	r = e.do("POST", roles, rc, map[string]any{"code": "r_bad", "permissions": []string{"regions.update.platform"}})
	refusedEscalation(t, r, "a code rc lacks")
	listed, n := missingOf(t, r)
	assert.Equal(t, []string{"regions.update.platform"}, listed)
	assert.Equal(t, 1, n)

	r = e.do("POST", roles, rc, map[string]any{"code": "r_wild", "permissions": []string{"regions.*.platform"}})
	refusedEscalation(t, r, "a wildcard covering codes rc lacks")
	listed, n = missingOf(t, r)
	assert.Equal(t, []string{"regions.*.platform", "regions.create.platform", "regions.delete.platform", "regions.update.platform", "regions.write.platform"}, listed,
		"the wildcard itself and the concrete codes it covers")
	assert.Equal(t, 5, n)

	r = e.do("POST", roles, rc, map[string]any{"code": "r_inh", "inherits": []string{"support"}})
	refusedEscalation(t, r, "inheriting support (*.read.platform)")
	listed, n = missingOf(t, r)
	assert.Equal(t, []string{"*.read.platform", "audit.read.platform", "databases.read.platform", "migrations.read.platform", "organizations.read.platform",
		"platform_users.read.platform", "rbac.read.platform", "tenants.read.platform"}, listed)
	assert.Equal(t, 8, n)

	for _, code := range []string{"r_bad", "r_wild", "r_inh"} {
		assert.Equal(t, 404, e.do("GET", roles+"/"+code, e.admin, nil).Status, "%s was not created", code)
	}
	assert.Equal(t, creates+1, e.auditCount("platform_role.create"), "only r_ok is audited")
}

// TestNoEscalationOwnDeniesAndExpiry: what the actor holds is what its engine decision says —
// its own denies cap its grants, and expired grants and assignments hold nothing.
func TestNoEscalationOwnDeniesAndExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	users, roles := "/api/v1/admin/platform-users", "/api/v1/admin/platform-roles"
	e.must(201, "POST", roles, map[string]any{"code": "reg_admin", "permissions": []string{
		"regions.*.platform", "platform_users.write.platform", "platform_users.read.platform"}})
	act := e.platformUser("act", "reg_admin")
	for _, u := range []string{"o1", "o2", "o3"} {
		e.must(201, "POST", users, map[string]any{"external_id": u})
	}
	e.must(201, "POST", users+"/act/permissions", map[string]any{"code": "regions.delete.platform", "granted": false})
	e.must(201, "POST", users+"/act/permissions", map[string]any{"code": "databases.read.platform", "granted": true})
	e.must(201, "POST", users+"/act/roles", map[string]any{"role": "viewer"})
	grant := func(user, code string) *resp {
		return e.do("POST", users+"/"+user+"/permissions", act, map[string]any{"code": code, "granted": true})
	}

	require.Equal(t, 201, grant("o1", "regions.update.platform").Status, "held through the wildcard")
	r := grant("o1", "regions.delete.platform")
	refusedEscalation(t, r, "denied to act itself")
	listed, _ := missingOf(t, r)
	assert.Equal(t, []string{"regions.delete.platform"}, listed)

	// While valid, the direct grant and the viewer assignment can be conferred...
	require.Equal(t, 201, grant("o1", "databases.read.platform").Status)
	require.Equal(t, 201, e.do("POST", users+"/o1/roles", act, map[string]any{"role": "viewer"}).Status)
	// ...once expired, they hold nothing.
	_, err := e.w.Admin.Exec(ctx, `UPDATE admin.platform_user_permissions SET expires_at = now() - interval '1 hour'
		WHERE user_id = (SELECT id FROM admin.platform_users WHERE external_id = 'act') AND is_granted`)
	require.NoError(t, err)
	_, err = e.w.Admin.Exec(ctx, `UPDATE admin.platform_user_roles SET expires_at = now() - interval '1 hour'
		WHERE user_id = (SELECT id FROM admin.platform_users WHERE external_id = 'act')
		AND role_id = (SELECT id FROM admin.platform_roles WHERE code = 'viewer')`)
	require.NoError(t, err)
	r = grant("o2", "databases.read.platform")
	refusedEscalation(t, r, "an expired direct grant")
	listed, _ = missingOf(t, r)
	assert.Equal(t, []string{"databases.read.platform"}, listed)
	r = e.do("POST", users+"/o3/roles", act, map[string]any{"role": "viewer"})
	refusedEscalation(t, r, "an expired role assignment")
	listed, _ = missingOf(t, r)
	assert.Equal(t, []string{"organizations.read.platform", "tenants.read.platform"}, listed, "regions.read.platform is still held")
	require.Equal(t, 201, grant("o2", "regions.read.platform").Status, "the unexpired role still confers")
}

// TestNoEscalationMissingCount: a refusal lists the first 20 missing codes in order and counts
// them all.
func TestNoEscalationMissingCount(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	users, roles := "/api/v1/admin/platform-users", "/api/v1/admin/platform-roles"
	e.must(201, "POST", roles, map[string]any{"code": "assigner", "permissions": []string{"platform_users.write.platform"}})
	few := e.platformUser("few", "assigner")
	e.must(201, "POST", users, map[string]any{"external_id": "other"})

	r := e.do("POST", users+"/other/roles", few, map[string]any{"role": "system_admin"})
	refusedEscalation(t, r, "system_admin")
	listed, n := missingOf(t, r)

	var catalog []string
	require.NoError(t, e.w.Admin.QueryRow(ctx, `SELECT array_agg(code) FROM admin.platform_permissions WHERE NOT is_wildcard`).Scan(&catalog))
	held := []string{"platform_users.write.platform", "platform_users.write.tenant", "platform_users.write.user"}
	// The conferred wildcard itself is missing too, with every concrete code it covers.
	want := append(slices.DeleteFunc(catalog, func(c string) bool { return slices.Contains(held, c) }), "*.*.*")
	slices.Sort(want)
	require.Greater(t, len(want), maxMissingListed)
	assert.Equal(t, len(want), n, "missing_count counts every missing code")
	assert.Equal(t, want[:maxMissingListed], listed, "the first 20, in order")
}
