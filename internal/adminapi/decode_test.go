package adminapi

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBodiesAreReadStrictly: every handler's body goes through one decoder that refuses a
// member given twice (at any depth) and field names that match only when case is ignored, so
// no two readers of a request (the API, a proxy, an audit tool) can see different requests.
func TestBodiesAreReadStrictly(t *testing.T) {
	e := newEnv(t)
	e.must(201, "POST", orgsBase, map[string]any{"slug": "acme", "name": "Acme"})
	tn := e.createTenant("globex")
	tenantPath := "/api/v1/admin/tenants/" + tn.Slug
	for _, tc := range []struct {
		name, method, path, body string
	}{
		{"duplicate member", "POST", orgsBase, `{"slug": "dup-a", "name": "A", "slug": "dup-b"}`},
		{"duplicate member spelt with an escape", "POST", orgsBase, `{"slug": "dup-a", "\u0073lug": "dup-b"}`},
		{"field name in another case", "POST", orgsBase, `{"Slug": "case", "name": "Case"}`},
		{"field name in upper case", "PATCH", orgsBase + "/acme", `{"NAME": "Shouting"}`},
		{"duplicate member nested in settings", "PATCH", tenantPath, `{"settings": {"audiences": ["a"], "audiences": ["b"]}}`},
		{"duplicate member deep in settings", "PATCH", tenantPath, `{"settings": {"x": [{"k": 1, "k": 2}]}}`},
		{"nesting too deep", "PATCH", tenantPath, `{"settings": {"x": ` + deep(100) + `}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, e.admin, tc.body)
			require.Equal(t, 400, r.Status, "got %d, want 400: %s", r.Status, r.Body)
			require.NotNil(t, r.Error, "error envelope: %s", r.Body)
			assert.Equal(t, CodeBadRequest, r.Error.Code)
		})
	}
	// Nothing refused changed anything.
	r := e.must(200, "GET", orgsBase+"/acme", nil)
	assert.Contains(t, string(r.Body), `"name":"Acme"`)
	r = e.must(200, "GET", orgsBase+"?page_size=100", nil)
	assert.InDelta(t, float64(1), r.Meta["total"], 0)
	r = e.must(200, "GET", tenantPath, nil)
	assert.NotContains(t, string(r.Body), "audiences")

	// Exact names still work, and settings keep whatever case their keys have.
	e.must(200, "PATCH", tenantPath, `{"settings": {"audiences": ["a"], "Audiences": ["b"]}}`)
}

func deep(n int) string {
	b := make([]byte, 0, 2*n)
	for range n {
		b = append(b, '[')
	}
	for range n {
		b = append(b, ']')
	}
	return string(b)
}
