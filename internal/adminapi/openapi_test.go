package adminapi

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The OpenAPI document states the version header of writes, the grammar of identifiers (with
// examples that satisfy it), and one name per concept across similar bodies.
func TestOpenAPIHeadersPatternsExamples(t *testing.T) {
	e := newEnv(t)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(e.do("GET", "/openapi.json", "", nil).Body, &doc))
	get := func(v any, path ...string) any {
		for _, p := range path {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		}
		return v
	}
	for _, op := range [][]string{{"/api/v1/admin/tenants", "post", "201"}, {"/api/v1/tenants/{tenant}/roles", "post", "201"}, {"/api/v1/admin/platform-users/{user}", "patch", "200"}} {
		assert.NotNil(t, get(doc, "paths", op[0], op[1], "responses", op[2], "headers", HeaderConsistency), "%v: the write's consistency token header", op)
	}
	schemas := get(doc, "components", "schemas")
	for _, f := range [][]string{
		{"CreateTenant", "slug"}, {"CreateTenant", "external_auth_realm"}, {"CreateOrganization", "slug"}, {"CreateRegion", "code"},
		{"CreateRole", "code"}, {"CreatePlatformRole", "code"}, {"CreatePermission", "code"}, {"CreatePlatformPermission", "code"},
		{"AddUserPermission", "code"}, {"AddPlatformUserPermission", "code"}, {"CreateTeam", "slug"},
	} {
		pattern, _ := get(schemas, f[0], "properties", f[1], "pattern").(string)
		example, _ := get(schemas, f[0], "properties", f[1], "example").(string)
		if assert.NotEmpty(t, pattern, "%v: pattern", f) && assert.NotEmpty(t, example, "%v: example", f) {
			assert.Regexp(t, pattern, example, "%v: the example follows the pattern", f)
		}
	}
	for _, f := range [][]string{{"AssignRole", "team_id"}, {"AddUserPermission", "team_id"}, {"AssignPlatformRole", "tenant_id"}, {"AddPlatformUserPermission", "tenant_id"}} {
		assert.NotNil(t, get(schemas, f[0], "properties", f[1]), "%v", f)
	}
}
