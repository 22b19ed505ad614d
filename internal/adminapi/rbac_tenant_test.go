package adminapi

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/consistency"
)

func TestTenantRBAC(t *testing.T) {
	e := newEnv(t)
	a := e.createTenant("acme")
	b := e.createTenant("beta")
	base := "/api/v1/tenants/acme"

	r := e.do("POST", base+"/users", e.admin, map[string]any{"external_id": "alice", "email": "alice@example.com"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	v1 := versionOf(t, r)

	r = e.do("POST", base+"/roles", e.admin, map[string]any{"code": "editor", "permissions": []string{"documents.update.tenant"}, "inherits": []string{"viewer"}})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var role Role
	r.into(&role)
	assert.Equal(t, []string{"viewer"}, role.Inherits)
	r = e.do("POST", base+"/roles", e.admin, map[string]any{"code": "chief", "inherits": []string{"editor"}})
	require.Equal(t, 201, r.Status, "%s", r.Body)

	r = e.do("POST", base+"/roles", e.admin, map[string]any{"code": "bad", "permissions": []string{"rockets.launch.tenant"}})
	assert.Equal(t, 422, r.Status, "a code outside the catalog: %s", r.Body)
	assert.Contains(t, r.Error.Details["fields"], "permissions")

	r = e.do("POST", base+"/users/alice/roles", e.admin, map[string]any{"role": "editor"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	assert.Greater(t, versionOf(t, r), v1, "tenant RBAC writes return the tenant schema's version")
	written, err := consistency.Parse(r.Header.Get(HeaderConsistency))
	require.NoError(t, err)
	require.Len(t, written.Tenants, 1, "got %+v, want the tenant's part only", written)
	assert.Equal(t, a.ID, written.Tenants[0].ID)
	assert.Zero(t, written.Admin, "a tenant RBAC write changes no admin data")

	r = e.do("GET", base+"/users/alice/effective-permissions", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var eff []EffectivePermission
	r.into(&eff)
	byCode := map[string]EffectivePermission{}
	for _, p := range eff {
		byCode[p.Permission] = p
	}
	require.Contains(t, byCode, "documents.update.tenant")
	assert.Equal(t, "editor", byCode["documents.update.tenant"].Role)
	assert.Equal(t, "granted", byCode["documents.update.tenant"].Reason)

	r = e.do("DELETE", base+"/roles/editor", e.admin, nil)
	assert.Equal(t, 409, r.Status, "an assigned role cannot be deleted: %s", r.Body)
	r = e.do("DELETE", base+"/roles/chief", e.admin, nil)
	assert.Equal(t, 200, r.Status, "%s", r.Body)

	r = e.do("GET", base+"/roles", e.admin, nil)
	require.Equal(t, 200, r.Status)
	r = e.do("GET", base+"/permissions", e.admin, nil)
	require.Equal(t, 200, r.Status)
	r = e.do("GET", base+"/users?page_size=10", e.admin, nil)
	require.Equal(t, 200, r.Status)
	assert.InDelta(t, float64(1), r.Meta["total"], 0)

	// A tenant administrator of acme manages acme's RBAC, not beta's.
	tok := e.platformUser("tina", "tenant_admin@"+a.ID)
	r = e.do("POST", base+"/users", tok, map[string]any{"external_id": "bob"})
	assert.Equal(t, 201, r.Status, "%s", r.Body)
	r = e.do("POST", "/api/v1/tenants/"+b.Slug+"/users", tok, map[string]any{"external_id": "bob"})
	assert.Equal(t, 403, r.Status, "%s", r.Body)

	r = e.do("GET", "/api/v1/admin/audit?tenant_id="+a.ID+"&page_size=100", e.admin, nil)
	var entries []AuditEntry
	r.into(&entries)
	actions := map[string]bool{}
	for _, x := range entries {
		actions[x.Action] = true
	}
	for _, want := range []string{"tenant_user.create", "tenant_role.create", "tenant_user_role.assign", "tenant_role.delete"} {
		assert.True(t, actions[want], "audit has %s: %v", want, actions)
	}
}
