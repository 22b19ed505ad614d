package adminapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fillPath substitutes every {param} of a route path, using tenant for tenant parameters.
func fillPath(rt *route, tenant string) string {
	p := rt.Path
	for _, name := range rt.pathParams() {
		v := "00000000-0000-0000-0000-000000000001"
		if name == rt.Tenant || name == "tenant" {
			v = tenant
		}
		p = strings.Replace(p, "{"+name+"}", v, 1)
	}
	return p
}

// TestEveryRouteRefuses walks the route table: every protected route answers 401 without a
// token and 403 to a valid platform token that lacks its permission; a route added without a
// permission check fails here.
func TestEveryRouteRefuses(t *testing.T) {
	e := newEnv(t)
	tenant := e.createTenant("acme")
	// Holds tenant-level rights on another tenant only, and read rights platform-wide on
	// nothing: a real platform user with roles, just not the ones any route needs.
	other := e.createTenant("other")
	weak := e.platformUser("weak", "tenant_admin@"+other.ID)
	none := e.platformUser("none")
	protected := 0
	for _, rt := range e.srv.table {
		if rt.public() {
			continue
		}
		protected++
		path := fillPath(&rt, tenant.ID)
		t.Run(rt.pattern(), func(t *testing.T) {
			r := e.do(rt.Method, path, "", "{}")
			assert.Equal(t, 401, r.Status, "no token: %s", r.Body)
			for _, tok := range []string{none, weak} {
				r = e.do(rt.Method, path, tok, "{}")
				assert.Equal(t, 403, r.Status, "token without %s: %s", rt.Permission, r.Body)
				if r.Error != nil {
					assert.Equal(t, CodeForbidden, r.Error.Code)
				}
			}
		})
	}
	assert.Greater(t, protected, 20)
}

// TestRouteTableMatchesMux proves each table row is served by its own handler.
func TestRouteTableMatchesMux(t *testing.T) {
	e := newEnv(t)
	for _, rt := range e.srv.table {
		req := httptest.NewRequest(rt.Method, fillPath(&rt, "acme"), nil)
		_, pattern := e.srv.mux.Handler(req)
		assert.Equal(t, rt.pattern(), pattern)
		assert.NotEmpty(t, rt.Summary, "%s has no summary", rt.pattern())
		assert.NotZero(t, rt.Status, "%s has no success status", rt.pattern())
		if rt.resourceCheck() {
			assert.Equal(t, 1, strings.Count(rt.Permission, "."), "%s: a resource check names resource.action", rt.pattern())
			assert.Contains(t, rt.pathParams(), rt.Tenant)
		} else if !rt.public() {
			assert.True(t, strings.HasSuffix(rt.Permission, ".platform"), "%s: platform-wide routes check at platform scope", rt.pattern())
		}
	}
}

// TestOpenAPIListsExactlyTheRoutes compares the document with what the mux serves.
func TestOpenAPIListsExactlyTheRoutes(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/openapi.json", "", nil)
	require.Equal(t, 200, r.Status)
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &doc))
	assert.Equal(t, "3.1.0", doc.OpenAPI)

	var documented []string
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
			var op struct {
				Summary   string                     `json:"summary"`
				Responses map[string]json.RawMessage `json:"responses"`
				Security  []any                      `json:"security"`
			}
			require.NoError(t, json.Unmarshal(raw, &op))
			assert.NotEmpty(t, op.Summary, "%s %s", method, path)
			assert.Contains(t, op.Responses, "500", "%s %s", method, path)
			if len(op.Security) > 0 {
				assert.Contains(t, op.Responses, "401", "%s %s", method, path)
				assert.Contains(t, op.Responses, "403", "%s %s", method, path)
			}
		}
	}
	var served []string
	for _, p := range e.srv.registered {
		if p != fallbackPattern {
			served = append(served, p)
		}
	}
	slices.Sort(documented)
	slices.Sort(served)
	assert.Equal(t, served, documented, "every served route is documented and nothing else")

	// Every $ref resolves.
	for _, ref := range refs(r.Body) {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		assert.Contains(t, doc.Components.Schemas, name, "dangling $ref %s", ref)
	}
}

func refs(doc []byte) []string {
	var out []string
	s := string(doc)
	for {
		i := strings.Index(s, `"$ref": "`)
		if i < 0 {
			return out
		}
		s = s[i+len(`"$ref": "`):]
		out = append(out, s[:strings.IndexByte(s, '"')])
	}
}

func TestOpsEndpoints(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/health", "", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var h Health
	r.into(&h)
	assert.Equal(t, "ok", h.Status)
	assert.Equal(t, "ok", h.Dependencies["admin_database"].Status)

	e.do("GET", "/api/v1/admin/tenants", "", nil)
	r = e.do("GET", "/metrics", "", nil)
	require.Equal(t, 200, r.Status)
	body := string(r.Body)
	assert.Contains(t, body, `http_requests_total{code="401",method="GET",route="GET /api/v1/admin/tenants"} 1`)
	assert.Contains(t, body, `http_request_duration_seconds_bucket{route="GET /health"`)

	r = e.do("GET", "/docs", "", nil)
	require.Equal(t, 200, r.Status)
	html := string(r.Body)
	assert.NotContains(t, html, "<script")
	assert.NotContains(t, html, "https://", "no CDN assets")
	for _, rt := range e.srv.table {
		assert.Contains(t, html, rt.Path)
	}
	assert.Contains(t, html, "tenants.update on tenant {id}")
	assert.Equal(t, http.StatusOK, r.Status)
}

func TestBootstrapIsIdempotent(t *testing.T) {
	e := newEnv(t) // bootstraps "root"
	ctx := context.Background()
	res, err := Bootstrap(ctx, e.w.Admin, "root", "", "test")
	require.NoError(t, err)
	assert.False(t, res.CreatedUser)
	assert.False(t, res.AssignedRole)
	res, err = Bootstrap(ctx, e.w.Admin, "second", "s@example.com", "test")
	require.NoError(t, err)
	assert.True(t, res.CreatedUser)
	assert.True(t, res.AssignedRole)
	r := e.do("POST", "/api/v1/admin/tenants", e.token("second"), map[string]any{"slug": "x1", "region": "eu-west-1", "external_auth_realm": "x1"})
	assert.Equal(t, 201, r.Status, "a bootstrapped user is a system admin: %s", r.Body)
	_, err = Bootstrap(ctx, e.w.Admin, "", "", "test")
	assert.Error(t, err)
}
