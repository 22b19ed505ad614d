package adminapi

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/tenancy"
)

// versionOf returns a write's meta.version after checking that its consistency token (meta
// and header alike) names that version, in the admin part or in one tenant's part.
func versionOf(t *testing.T, r *resp) int64 {
	t.Helper()
	v, ok := r.Meta["version"].(float64)
	require.True(t, ok, "meta.version missing: %s", r.Body)
	h := r.Header.Get(HeaderConsistency)
	assert.Equal(t, r.Meta["consistency_token"], h, "meta.consistency_token and %s differ", HeaderConsistency)
	tok, err := consistency.Parse(h)
	require.NoError(t, err, "header %s", HeaderConsistency)
	require.False(t, tok.IsZero(), "a write without a consistency token: %s", r.Body)
	named := tok.Admin == uint64(v)
	for _, p := range tok.Tenants {
		named = named || p.Version == uint64(v)
	}
	assert.True(t, named, "got token %+v, want one naming version %d", tok, int64(v))
	return int64(v)
}

func TestTenantLifecycle(t *testing.T) {
	e := newEnv(t)
	const base = "/api/v1/admin/tenants"

	r := e.do("POST", base, e.admin, map[string]any{"slug": "acme", "name": "Acme", "region": "eu-west-1",
		"deployment_type": "schema", "external_auth_realm": "acme-kc"}, "X-Request-Id", "req-create-1")
	require.Equal(t, 201, r.Status, "%s", r.Body)
	assert.Equal(t, "req-create-1", r.Header.Get(HeaderRequestID))
	assert.Equal(t, "req-create-1", r.Meta["request_id"])
	v1 := versionOf(t, r)
	var created tenancy.Tenant
	r.into(&created)
	assert.Equal(t, "active", created.Status)
	assert.Equal(t, "t_acme", created.SchemaName)
	assert.Equal(t, "schema", created.Deployment)

	// The schema exists on the regional database.
	conn, err := e.w.Registry.GetConnection(context.Background(), *created.ConnectionID)
	require.NoError(t, err)
	var exists bool
	require.NoError(t, e.w.Connect(t, conn, "").QueryRow(context.Background(),
		`SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 't_acme')`).Scan(&exists))
	assert.True(t, exists, "schema t_acme was not created")

	r = e.do("GET", base+"/acme", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var got tenancy.Tenant
	r.into(&got)
	assert.Equal(t, created.ID, got.ID)
	r = e.do("GET", base+"/"+created.ID, e.admin, nil)
	require.Equal(t, 200, r.Status, "get by id: %s", r.Body)
	assert.NotEmpty(t, r.Header.Get(HeaderRequestID), "a request id is generated when none is sent")

	e.createTenant("beta")
	r = e.do("GET", base+"?status=active&page_size=1", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var list []tenancy.Tenant
	r.into(&list)
	assert.Len(t, list, 1)
	assert.InDelta(t, float64(2), r.Meta["total"], 0)
	assert.InDelta(t, float64(2), r.Meta["total_pages"], 0)
	assert.InDelta(t, float64(1), r.Meta["page_size"], 0)
	r = e.do("GET", base+"?page=2&page_size=1&region=eu-west-1", e.admin, nil)
	r.into(&list)
	require.Len(t, list, 1)
	assert.Equal(t, "beta", list[0].Slug)

	r = e.do("PATCH", base+"/acme", e.admin, map[string]any{"name": "Acme Corp", "settings": map[string]any{"audiences": []string{"app"}}})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r.into(&got)
	assert.Equal(t, "Acme Corp", got.Name)
	assert.Equal(t, []any{"app"}, got.Settings["audiences"])
	versionOf(t, r)

	r = e.do("POST", base+"/acme/suspend", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r.into(&got)
	assert.Equal(t, "suspended", got.Status)
	v2 := versionOf(t, r)
	assert.Greater(t, v2, v1, "a status change bumps admin.authz_state.version")

	r = e.do("POST", base+"/acme/activate", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r.into(&got)
	assert.Equal(t, "active", got.Status)

	r = e.do("DELETE", base+"/acme", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r.into(&got)
	assert.Equal(t, "deleted", got.Status)
	assert.Equal(t, false, r.Meta["purged"])
	r = e.do("GET", base+"?status=deleted", e.admin, nil)
	r.into(&list)
	require.Len(t, list, 1)

	r = e.do("DELETE", base+"/acme?purge=true", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	assert.Equal(t, true, r.Meta["purged"])
	require.NoError(t, e.w.Connect(t, conn, "").QueryRow(context.Background(),
		`SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 't_acme')`).Scan(&exists))
	assert.False(t, exists, "purge drops the schema")
	r = e.do("GET", base+"/acme", e.admin, nil)
	assert.Equal(t, 404, r.Status)

	// Every write is in the audit log, with the actor and request id.
	r = e.do("GET", "/api/v1/admin/audit?target_type=tenant&page_size=100", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var entries []AuditEntry
	r.into(&entries)
	actions := map[string]int{}
	for _, a := range entries {
		actions[a.Action]++
		assert.Equal(t, "root", a.Actor)
	}
	for _, want := range []string{"tenant.create", "tenant.provisioned", "tenant.update", "tenant.suspend", "tenant.activate", "tenant.delete", "tenant.purge"} {
		assert.NotZero(t, actions[want], "audit has no %s; got %v", want, actions)
	}
	r = e.do("GET", "/api/v1/admin/audit?action=tenant.create&target_id="+created.ID, e.admin, nil)
	r.into(&entries)
	require.Len(t, entries, 1)
	require.NotNil(t, entries[0].RequestID)
	assert.Equal(t, "req-create-1", *entries[0].RequestID)
	assert.Contains(t, string(entries[0].After), `"outcome":"provisioning"`, "the row is audited when it is inserted")
	r = e.do("GET", "/api/v1/admin/audit?action=tenant.provisioned&target_id="+created.ID, e.admin, nil)
	r.into(&entries)
	require.Len(t, entries, 1, "provisioning audits the tenant's activation when it commits it")
	require.NotNil(t, entries[0].RequestID)
	assert.Equal(t, "req-create-1", *entries[0].RequestID)
}

func TestErrorClasses(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("gone")
	require.Equal(t, 200, e.do("DELETE", "/api/v1/admin/tenants/gone", e.admin, nil).Status)
	_, err := e.iss.AddRealm("acme-realm", "RS256")
	require.NoError(t, err)
	tenantTok, err := e.iss.Mint("acme-realm", map[string]any{"sub": "alice"})
	require.NoError(t, err)
	viewer := e.platformUser("vera", "viewer")
	stranger := e.token("nobody") // a valid platform token of no platform user

	create := "/api/v1/admin/tenants"
	cases := []struct {
		name         string
		method, path string
		token        string
		body         any
		status       int
		code         string
		field        string
	}{
		{"malformed JSON", "POST", create, e.admin, `{"slug": `, 400, CodeBadRequest, ""},
		{"unknown field", "POST", create, e.admin, `{"slug": "x", "colour": "red"}`, 400, CodeBadRequest, ""},
		{"empty body", "POST", create, e.admin, nil, 400, CodeBadRequest, ""},
		{"trailing data", "PATCH", create + "/acme", e.admin, `{"name": "a"} {"name": "b"}`, 400, CodeBadRequest, ""},
		{"no token", "GET", create, "", nil, 401, CodeUnauthenticated, ""},
		{"garbage token", "GET", create, "not.a.token", nil, 401, CodeUnauthenticated, ""},
		{"tenant token", "GET", create, tenantTok, nil, 403, CodeForbidden, ""},
		{"unknown platform user", "GET", create, stranger, nil, 403, CodeForbidden, ""},
		{"viewer cannot create", "POST", create, viewer, map[string]any{"slug": "x"}, 403, CodeForbidden, ""},
		{"unknown tenant", "GET", create + "/nope", e.admin, nil, 404, CodeNotFound, ""},
		{"unknown route", "GET", "/api/v1/admin/nothing", e.admin, nil, 404, CodeNotFound, ""},
		{"activate a deleted tenant", "POST", create + "/gone/activate", e.admin, nil, 409, CodeConflict, ""},
		{"patch a deleted tenant", "PATCH", create + "/gone", e.admin, map[string]any{"name": "x"}, 409, CodeConflict, ""},
		{"duplicate slug", "POST", create, e.admin, map[string]any{"slug": "acme", "region": "eu-west-1", "external_auth_realm": "other"}, 409, CodeConflict, ""},
		{"duplicate realm", "POST", create, e.admin, map[string]any{"slug": "acme2", "region": "eu-west-1", "external_auth_realm": "acme-realm"}, 409, CodeConflict, ""},
		{"invalid slug", "POST", create, e.admin, map[string]any{"slug": "Bad;Slug", "region": "eu-west-1", "external_auth_realm": "r"}, 422, CodeValidation, "slug"},
		{"unknown region", "POST", create, e.admin, map[string]any{"slug": "x", "region": "mars-1", "external_auth_realm": "r"}, 422, CodeValidation, "region"},
		{"page_size above max", "GET", create + "?page_size=101", e.admin, nil, 422, CodeValidation, "page_size"},
		{"page zero", "GET", create + "?page=0", e.admin, nil, 422, CodeValidation, "page"},
		{"bad status filter", "GET", create + "?status=gone", e.admin, nil, 422, CodeValidation, "status"},
		{"empty patch", "PATCH", create + "/acme", e.admin, map[string]any{}, 422, CodeValidation, "name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.token, tc.body)
			require.Equal(t, tc.status, r.Status, "got %d, want %d: %s", r.Status, tc.status, r.Body)
			assert.False(t, r.Success)
			require.NotNil(t, r.Error, "error envelope: %s", r.Body)
			assert.Equal(t, tc.code, r.Error.Code)
			assert.NotEmpty(t, r.Error.Message)
			assert.NotContains(t, string(r.Body), "goroutine", "no stack traces")
			if tc.status == 401 {
				assert.Contains(t, r.Header.Get("WWW-Authenticate"), "Bearer")
			}
			if tc.field != "" {
				fields, _ := r.Error.Details["fields"].(map[string]any)
				assert.Contains(t, fields, tc.field, "details name the field: %s", r.Body)
			}
		})
	}
	// A denial says why.
	r := e.do("POST", create, viewer, map[string]any{})
	assert.Equal(t, "no permission", r.Error.Details["reason"])
	assert.Equal(t, "tenants.create.platform", r.Error.Details["permission"])
	r = e.do("GET", create, stranger, nil)
	assert.Equal(t, "unknown user", r.Error.Details["reason"])
}

func TestErrorMapping(t *testing.T) {
	fk := fmt.Errorf("delete role: %w", &pgconnError23503)
	ae, known := toAPIError(fk)
	assert.True(t, known)
	assert.Equal(t, 409, ae.Status, "FK restrict on delete is a conflict")
	ae, known = toAPIError(fmt.Errorf("boom"))
	assert.False(t, known)
	assert.Equal(t, 500, ae.Status)
	assert.Equal(t, "internal error", ae.Message, "a 500 discloses nothing")
	ae, _ = toAPIError(fmt.Errorf("x: %w", tenancy.ErrWrongStatus))
	assert.Equal(t, 409, ae.Status)
}

func TestTenantRestrictedAdmin(t *testing.T) {
	e := newEnv(t)
	a := e.createTenant("tenant-a")
	b := e.createTenant("tenant-b")
	tok := e.platformUser("tina", "tenant_admin@"+a.ID)
	base := "/api/v1/admin/tenants/"

	for _, id := range []string{a.ID, a.Slug} {
		r := e.do("GET", base+id, tok, nil)
		assert.Equal(t, 200, r.Status, "read own tenant by %s: %s", id, r.Body)
	}
	r := e.do("PATCH", base+a.Slug, tok, map[string]any{"name": "A renamed"})
	assert.Equal(t, 200, r.Status, "%s", r.Body)
	r = e.do("POST", base+a.Slug+"/suspend", tok, nil)
	assert.Equal(t, 200, r.Status, "%s", r.Body)

	for _, c := range []struct{ method, path string }{
		{"GET", base + b.Slug}, {"GET", base + b.ID}, {"PATCH", base + b.Slug}, {"POST", base + b.Slug + "/suspend"},
		{"DELETE", base + a.Slug}, // tenant_admin may not delete, even its own tenant
		{"GET", "/api/v1/admin/tenants"}, {"POST", "/api/v1/admin/tenants"},
		{"GET", base + "does-not-exist"}, // no existence oracle for restricted admins
	} {
		r := e.do(c.method, c.path, tok, map[string]any{"name": "x"})
		assert.Equal(t, 403, r.Status, "%s %s: %s", c.method, c.path, r.Body)
	}
}

var pgconnError23503 = pgconn.PgError{Code: "23503", ConstraintName: "user_roles_role_id_fkey"}
