package adminapi

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// must sends a request and requires the status, returning the response.
func (e *env) must(status int, method, path string, body any) *resp {
	e.t.Helper()
	r := e.do(method, path, e.admin, body)
	require.Equal(e.t, status, r.Status, "%s %s: %s", method, path, r.Body)
	return r
}

func effective(t *testing.T, e *env, path string) map[string]EffectivePermission {
	t.Helper()
	r := e.must(200, "GET", path, nil)
	var eff []EffectivePermission
	r.into(&eff)
	out := map[string]EffectivePermission{}
	for _, p := range eff {
		out[p.Permission] = p
	}
	return out
}

// TestTenantRBACFlow walks a whole tenant RBAC setup through the API: team hierarchy, members,
// a team-restricted role assignment, a direct deny, the effective permissions with their
// reasons, revocation, and the version each write returns.
func TestTenantRBACFlow(t *testing.T) {
	e := newEnv(t)
	tenant := e.createTenant("acme")
	base := "/api/v1/tenants/" + tenant.Slug

	v := versionOf(t, e.must(201, "POST", base+"/users", map[string]any{"external_id": "alice"}))
	next := func(r *resp) {
		t.Helper()
		nv := versionOf(t, r)
		assert.Greater(t, nv, v, "every tenant RBAC write returns a newer version")
		v = nv
	}

	// Team hierarchy eng > backend > api.
	var eng, backend, api Team
	r := e.must(201, "POST", base+"/teams", map[string]any{"slug": "eng", "name": "Engineering"})
	next(r)
	r.into(&eng)
	r = e.must(201, "POST", base+"/teams", map[string]any{"slug": "backend", "parent_team_id": "eng"})
	next(r)
	r.into(&backend)
	require.NotNil(t, backend.ParentTeamID)
	assert.Equal(t, eng.ID, *backend.ParentTeamID, "a parent given by slug is stored by id")
	r = e.must(201, "POST", base+"/teams", map[string]any{"slug": "api", "parent_team_id": backend.ID})
	next(r)
	r.into(&api)
	r = e.must(200, "GET", base+"/teams?page_size=2", nil)
	assert.InDelta(t, float64(3), r.Meta["total"], 0)
	assert.InDelta(t, float64(2), r.Meta["total_pages"], 0)
	r = e.must(200, "GET", base+"/teams/backend", nil)
	var got Team
	r.into(&got)
	assert.Equal(t, backend.ID, got.ID)

	// Members.
	r = e.must(201, "POST", base+"/teams/eng/members", map[string]any{"user_id": "alice"})
	next(r)
	var m TeamMember
	r.into(&m)
	assert.Equal(t, "alice", m.ExternalID)
	assert.Equal(t, eng.ID, m.TeamID)
	r = e.must(200, "GET", base+"/teams/eng/members", nil)
	var members []TeamMember
	r.into(&members)
	require.Len(t, members, 1)
	assert.Equal(t, "alice", members[0].ExternalID)

	// A role assigned to alice restricted to team backend, and a direct deny.
	e.must(201, "POST", base+"/roles", map[string]any{"code": "editor", "permissions": []string{"documents.update.tenant", "reports.read.tenant"}})
	r = e.must(201, "POST", base+"/users/alice/roles", map[string]any{"role": "editor", "team_id": "backend"})
	next(r)
	var assignment RoleAssignment
	r.into(&assignment)
	r = e.must(201, "POST", base+"/users/alice/permissions", map[string]any{"code": "reports.read.tenant", "granted": false})
	next(r)
	var deny UserPermission
	r.into(&deny)
	assert.False(t, deny.Granted)
	assert.Equal(t, "reports.read.tenant", deny.Code)
	assert.Equal(t, "root", *deny.GrantedBy)

	eff := effective(t, e, base+"/users/alice/effective-permissions")
	require.Contains(t, eff, "documents.update.team", "a team-restricted tenant-scope grant reaches team scope: %v", eff)
	p := eff["documents.update.team"]
	assert.True(t, p.Allowed)
	assert.Equal(t, "granted", p.Reason)
	assert.Equal(t, "editor", p.Role)
	assert.Equal(t, backend.ID, p.TeamID, "the restriction is shown")
	assert.Equal(t, "documents.update.tenant", p.GrantCode)
	assert.NotContains(t, eff, "documents.update.tenant", "a restricted grant is capped at the middle scope")
	require.Contains(t, eff, "reports.read.team", "the deny is shown: %v", eff)
	assert.False(t, eff["reports.read.team"].Allowed)
	assert.Equal(t, "explicit deny", eff["reports.read.team"].Reason)

	r = e.must(200, "GET", base+"/users/alice/permissions", nil)
	var direct []UserPermission
	r.into(&direct)
	require.Len(t, direct, 1)
	assert.Equal(t, deny.ID, direct[0].ID)

	r = e.must(200, "GET", base+"/users/alice/roles", nil)
	var assignments []UserRoleAssignment
	r.into(&assignments)
	require.Len(t, assignments, 1)
	assert.Equal(t, "editor", assignments[0].Role)
	require.NotNil(t, assignments[0].TeamID)
	assert.Equal(t, backend.ID, *assignments[0].TeamID)

	// Revoke: the grant and the deny's effect disappear.
	next(e.must(200, "DELETE", base+"/users/alice/roles/"+assignment.ID, nil))
	e.must(404, "DELETE", base+"/users/alice/roles/"+assignment.ID, nil)
	eff = effective(t, e, base+"/users/alice/effective-permissions")
	assert.NotContains(t, eff, "documents.update.team")
	assert.NotContains(t, eff, "reports.read.team", "with nothing to deny, the deny changes no code")
	next(e.must(200, "DELETE", base+"/users/alice/permissions/"+deny.ID, nil))
	e.must(404, "DELETE", base+"/users/alice/permissions/"+deny.ID, nil)

	// Users: get, patch, delete.
	r = e.must(200, "PATCH", base+"/users/alice", map[string]any{"status": "suspended", "email": "a@example.com"})
	next(r)
	var u TenantUser
	r.into(&u)
	assert.Equal(t, "suspended", u.Status)
	assert.Equal(t, "a@example.com", *u.Email)
	r = e.must(200, "PATCH", base+"/users/alice", map[string]any{"email": nil})
	u = TenantUser{}
	r.into(&u)
	assert.Nil(t, u.Email, "null clears the email")
	assert.Equal(t, "suspended", u.Status, "absent fields stay")
	r = e.must(200, "GET", base+"/users/alice", nil)
	r.into(&u)
	assert.Equal(t, "suspended", u.Status)

	// Members and teams go away.
	next(e.must(200, "DELETE", base+"/teams/eng/members/alice", nil))
	e.must(404, "DELETE", base+"/teams/eng/members/alice", nil)
	next(e.must(200, "DELETE", base+"/teams/api", nil))
	r = e.must(200, "PATCH", base+"/teams/backend", map[string]any{"parent_team_id": nil, "name": "Backend"})
	next(r)
	got = Team{}
	r.into(&got)
	assert.Nil(t, got.ParentTeamID, "null moves the team to the root")
	assert.Equal(t, "Backend", got.Name)
	next(e.must(200, "DELETE", base+"/users/alice", nil))
	e.must(404, "GET", base+"/users/alice", nil)

	r = e.do("GET", "/api/v1/admin/audit?tenant_id="+tenant.ID+"&page_size=100", e.admin, nil)
	var entries []AuditEntry
	r.into(&entries)
	actions := map[string]bool{}
	for _, x := range entries {
		actions[x.Action] = true
	}
	for _, want := range []string{"tenant_team.create", "tenant_team.update", "tenant_team.delete", "tenant_team_member.add",
		"tenant_team_member.remove", "tenant_user_permission.add", "tenant_user_permission.delete", "tenant_user_role.revoke",
		"tenant_user.update", "tenant_user.delete"} {
		assert.True(t, actions[want], "audit has %s: %v", want, actions)
	}
}

// TestTenantRBACRefusals covers each 409 and 422 of the tenant RBAC endpoints.
func TestTenantRBACRefusals(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/v1/tenants/acme"
	e.must(201, "POST", base+"/users", map[string]any{"external_id": "alice"})
	e.must(201, "POST", base+"/teams", map[string]any{"slug": "eng"})
	e.must(201, "POST", base+"/teams", map[string]any{"slug": "backend", "parent_team_id": "eng"})
	e.must(201, "POST", base+"/teams", map[string]any{"slug": "api", "parent_team_id": "backend"})

	conflict := func(r *resp, what string) {
		t.Helper()
		assert.Equal(t, 409, r.Status, "%s: %s", what, r.Body)
		if assert.NotNil(t, r.Error, what) {
			assert.Equal(t, CodeConflict, r.Error.Code)
		}
	}
	invalid := func(r *resp, field, what string) {
		t.Helper()
		assert.Equal(t, 422, r.Status, "%s: %s", what, r.Body)
		if assert.NotNil(t, r.Error, what) {
			assert.Contains(t, r.Error.Details["fields"], field, what)
		}
	}

	// Team cycles: under a descendant, under itself.
	r := e.do("PATCH", base+"/teams/eng", e.admin, map[string]any{"parent_team_id": "api"})
	conflict(r, "team under its own descendant")
	assert.Contains(t, r.Error.Message, "cycle")
	conflict(e.do("PATCH", base+"/teams/eng", e.admin, map[string]any{"parent_team_id": "eng"}), "team under itself")
	r = e.must(200, "GET", base+"/teams/eng", nil)
	var eng Team
	r.into(&eng)
	assert.Nil(t, eng.ParentTeamID, "a refused move changes nothing")

	r = e.do("DELETE", base+"/teams/backend", e.admin, nil)
	conflict(r, "team with children")
	assert.Contains(t, r.Error.Message, "child teams")
	conflict(e.do("POST", base+"/teams", e.admin, map[string]any{"slug": "eng"}), "duplicate team slug")
	invalid(e.do("POST", base+"/teams", e.admin, map[string]any{"slug": "Not A Slug"}), "slug", "bad slug")
	invalid(e.do("POST", base+"/teams", e.admin, map[string]any{"slug": "ops", "parent_team_id": "nope"}), "parent_team_id", "unknown parent")
	e.must(404, "GET", base+"/teams/nope", nil)
	e.must(404, "PATCH", base+"/teams/nope", map[string]any{"name": "x"})

	// Members.
	e.must(201, "POST", base+"/teams/eng/members", map[string]any{"user_id": "alice"})
	conflict(e.do("POST", base+"/teams/eng/members", e.admin, map[string]any{"user_id": "alice"}), "duplicate member")
	invalid(e.do("POST", base+"/teams/eng/members", e.admin, map[string]any{"user_id": "nobody"}), "user_id", "unknown member")

	// Users.
	conflict(e.do("POST", base+"/users", e.admin, map[string]any{"external_id": "alice"}), "duplicate user")
	invalid(e.do("PATCH", base+"/users/alice", e.admin, map[string]any{"status": "gone"}), "status", "bad status")
	e.must(404, "GET", base+"/users/nobody", nil)

	// Roles: duplicate code, unknown codes, inheritance cycles (direct, transitive, self).
	e.must(201, "POST", base+"/roles", map[string]any{"code": "a", "permissions": []string{"documents.read.team"}})
	e.must(201, "POST", base+"/roles", map[string]any{"code": "b", "inherits": []string{"a"}})
	e.must(201, "POST", base+"/roles", map[string]any{"code": "c", "inherits": []string{"b"}})
	conflict(e.do("POST", base+"/roles", e.admin, map[string]any{"code": "a"}), "duplicate role code")
	invalid(e.do("PATCH", base+"/roles/a", e.admin, map[string]any{"permissions": []string{"rockets.launch.tenant", "documents.read.own"}}), "permissions", "unknown code")
	r = e.do("PATCH", base+"/roles/a", e.admin, map[string]any{"inherits": []string{"b"}})
	conflict(r, "a inherits b inherits a")
	assert.Contains(t, r.Error.Message, "cycle")
	conflict(e.do("PATCH", base+"/roles/a", e.admin, map[string]any{"inherits": []string{"c"}}), "transitive cycle")
	conflict(e.do("PATCH", base+"/roles/a", e.admin, map[string]any{"inherits": []string{"a"}}), "self inheritance")
	invalid(e.do("PATCH", base+"/roles/a", e.admin, map[string]any{"inherits": []string{"nope"}}), "inherits", "unknown role")
	r = e.must(200, "GET", base+"/roles/a", nil)
	var a Role
	r.into(&a)
	assert.Empty(t, a.Inherits, "refused patches change nothing")
	assert.Equal(t, []string{"documents.read.team"}, a.Permissions)

	// A valid patch replaces the sets; the role GET shows them.
	r = e.must(200, "PATCH", base+"/roles/c", map[string]any{"inherits": []string{"a"}, "permissions": []string{"reports.read.own"},
		"name": "Cee", "description": "third", "is_active": false})
	versionOf(t, r)
	var c Role
	r.into(&c)
	assert.Equal(t, []string{"a"}, c.Inherits)
	assert.Equal(t, []string{"reports.read.own"}, c.Permissions)
	assert.Equal(t, "Cee", c.Name)
	assert.Equal(t, "third", *c.Description)
	assert.False(t, c.IsActive)
	e.must(404, "GET", base+"/roles/nope", nil)

	// Direct permissions.
	invalid(e.do("POST", base+"/users/alice/permissions", e.admin, map[string]any{"code": "rockets.launch.tenant", "granted": true}), "code", "unknown code")
	invalid(e.do("POST", base+"/users/alice/permissions", e.admin, map[string]any{"code": "documents.read.own"}), "granted", "granted is required")
	invalid(e.do("POST", base+"/users/alice/permissions", e.admin, map[string]any{"code": "documents.read.own", "granted": true, "team_id": "nope"}), "team_id", "unknown team")
	invalid(e.do("POST", base+"/users/alice/permissions", e.admin, map[string]any{"code": "documents.read.own", "granted": true,
		"expires_at": time.Now().Add(-time.Hour)}), "expires_at", "expiry in the past")
	e.must(201, "POST", base+"/users/alice/permissions", map[string]any{"code": "documents.read.own", "granted": true, "team_id": "eng"})
	conflict(e.do("POST", base+"/users/alice/permissions", e.admin, map[string]any{"code": "documents.read.own", "granted": false, "team_id": "eng"}), "duplicate direct permission")
	e.must(201, "POST", base+"/users/alice/permissions", map[string]any{"code": "documents.read.own", "granted": false})

	// Assignments: the same role, restriction twice.
	e.must(201, "POST", base+"/users/alice/roles", map[string]any{"role": "a", "team_id": "eng"})
	conflict(e.do("POST", base+"/users/alice/roles", e.admin, map[string]any{"role": "a", "team_id": "eng"}), "duplicate assignment")
	e.must(404, "DELETE", base+"/users/alice/roles/not-a-uuid", nil)
}
