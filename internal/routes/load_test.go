package routes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadExample(t *testing.T) {
	tb, err := LoadFile("testdata/routes.json")
	require.NoError(t, err)
	rs := tb.Routes()
	require.Len(t, rs, 11)
	r := rs[0]
	assert.Equal(t, 0, r.Index, "index: got %d, want 0", r.Index)
	assert.Equal(t, "GET", r.Method, "method: got %q, want GET", r.Method)
	assert.Equal(t, "/api/tenants/{tenant}/users/{user_id}", r.Path, "path: got %q", r.Path)
	assert.Equal(t, "users.read", r.Permission, "permission: got %q", r.Permission)
	assert.Equal(t, "user_id", r.OwnerParam, "owner: got %q, want user_id", r.OwnerParam)
	assert.Equal(t, "tenant", r.TenantParam, "tenant: got %q, want tenant", r.TenantParam)
	assert.Empty(t, r.TeamParam, "team: got %q, want empty", r.TeamParam)
	assert.True(t, r.ResourceCheck(), "resource check: got false, want true")
}

func TestLoadFileMissing(t *testing.T) {
	_, err := LoadFile(filepath.Join(t.TempDir(), "nope.json"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestLoadFileNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "routes.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"routes":[{"method":"GET","path":"x","public":true}]}`), 0o600))
	_, err := LoadFile(p)
	require.ErrorIs(t, err, ErrInvalidRoute)
	assert.Contains(t, err.Error(), p, "got %q, want the file name in it", err)
}

// route builds a one-route file around the JSON object body.
func route(body string) string { return `{"routes":[` + body + `]}` }

func TestLoadErrors(t *testing.T) {
	ok := `{"method":"GET","path":"/ok","public":true}`
	tests := []struct {
		name      string
		src       string
		wantIndex int    // -1: a file-level error, not a *RouteError
		wantField string // for a *RouteError
		wantText  string // substring of the message
	}{
		{"not json", `{"routes":`, -1, "", "unexpected EOF"},
		{"unknown top-level field", `{"routes":[` + ok + `],"extra":1}`, -1, "", "unknown field"},
		{"no routes", `{"routes":[]}`, -1, "", "no routes"},
		{"missing routes", `{}`, -1, "", "no routes"},
		{"trailing document", route(ok) + route(ok), -1, "", "trailing data"},
		{"unknown field", `{"routes":[` + ok + `,{"method":"GET","path":"/x","public":true,"scope":"own"}]}`, 1, "scope", "unknown field"},
		{"wrong type", route(`{"method":"GET","path":"/x","public":"yes"}`), 0, "public", "want a JSON bool"},
		{"route not an object", route(`"GET /x"`), 0, "(route)", "cannot unmarshal"},

		{"missing method", route(`{"path":"/x","public":true}`), 0, "method", "required"},
		{"lowercase method", route(`{"method":"get","path":"/x","public":true}`), 0, "method", "uppercase"},
		{"method with space", route(`{"method":"G T","path":"/x","public":true}`), 0, "method", "uppercase"},
		{"method list", route(`{"method":"GET,POST","path":"/x","public":true}`), 0, "method", "uppercase"},
		{"long method", route(`{"method":"` + strings.Repeat("A", 33) + `","path":"/x","public":true}`), 0, "method", "too long"},

		{"missing path", route(`{"method":"GET","public":true}`), 0, "path", "required"},
		{"relative path", route(`{"method":"GET","path":"api/x","public":true}`), 0, "path", "start with '/'"},
		{"trailing slash", route(`{"method":"GET","path":"/api/","public":true}`), 0, "path", "end with '/'"},
		{"empty segment", route(`{"method":"GET","path":"/api//x","public":true}`), 0, "path", "empty segment"},
		{"dot segment", route(`{"method":"GET","path":"/api/./x","public":true}`), 0, "path", "dot segment"},
		{"dot dot segment", route(`{"method":"GET","path":"/api/../x","public":true}`), 0, "path", "dot segment"},
		{"encoded dot dot segment", route(`{"method":"GET","path":"/api/%2e%2e/x","public":true}`), 0, "path", "above the root"},
		{"encoded dot segment", route(`{"method":"GET","path":"/api/%2e/x","public":true}`), 0, "path", "dot segment once decoded"},
		{"query in path", route(`{"method":"GET","path":"/api?x=1","public":true}`), 0, "path", "'?' or '#'"},
		{"encoded slash literal", route(`{"method":"GET","path":"/api/a%2Fb","public":true}`), 0, "path", "encoded '/'"},
		{"bad percent literal", route(`{"method":"GET","path":"/api/%zz","public":true}`), 0, "path", "percent-encoding"},
		{"partial parameter", route(`{"method":"GET","path":"/api/x{id}","public":true}`), 0, "path", "whole segment"},
		{"unclosed parameter", route(`{"method":"GET","path":"/api/{id","public":true}`), 0, "path", "whole segment"},
		{"brace in literal", route(`{"method":"GET","path":"/api/a}b","public":true}`), 0, "path", "whole segment"},
		{"empty parameter", route(`{"method":"GET","path":"/api/{}","public":true}`), 0, "path", "parameter name"},
		{"bad parameter name", route(`{"method":"GET","path":"/api/{user-id}","public":true}`), 0, "path", "parameter name"},
		{"parameter name digit first", route(`{"method":"GET","path":"/api/{1d}","public":true}`), 0, "path", "parameter name"},
		{"nested braces", route(`{"method":"GET","path":"/api/{{id}}","public":true}`), 0, "path", "parameter name"},
		{"rest not last", route(`{"method":"GET","path":"/api/{rest...}/x","public":true}`), 0, "path", "last segment"},
		{"rest without name", route(`{"method":"GET","path":"/api/{...}","public":true}`), 0, "path", "parameter name"},
		{"duplicate parameter", route(`{"method":"GET","path":"/t/{id}/u/{id}","public":true}`), 0, "path", `duplicate parameter "id"`},
		{"duplicate parameter rest", route(`{"method":"GET","path":"/t/{id}/{id...}","public":true}`), 0, "path", `duplicate parameter "id"`},
		{"too many parameters", route(`{"method":"GET","path":"/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}","public":true}`), 0, "path", "more than 8"},

		{"owner not in path", route(`{"method":"GET","path":"/u/{id}","permission":"users.read","owner":"user_id"}`), 0, "owner", `"user_id"`},
		{"team not in path", route(`{"method":"GET","path":"/t/{id}","permission":"teams.read","team":"team_id"}`), 0, "team", `"team_id"`},
		{"tenant not in path", route(`{"method":"GET","path":"/t/{id}","permission":"teams.read.tenant","tenant":"tenant"}`), 0, "tenant", `"tenant"`},

		{"neither public nor permission", route(`{"method":"GET","path":"/x"}`), 0, "permission", "required unless the route is public"},
		{"public false without permission", route(`{"method":"GET","path":"/x","public":false}`), 0, "permission", "required"},
		{"public with permission", route(`{"method":"GET","path":"/x","public":true,"permission":"x.read.tenant"}`), 0, "permission", "public route"},
		{"public with owner", route(`{"method":"GET","path":"/x/{id}","public":true,"owner":"id"}`), 0, "owner", "public route"},
		{"public with team", route(`{"method":"GET","path":"/x/{id}","public":true,"team":"id"}`), 0, "team", "public route"},
		{"public with tenant", route(`{"method":"GET","path":"/x/{id}","public":true,"tenant":"id"}`), 0, "tenant", "public route"},

		{"one segment permission", route(`{"method":"GET","path":"/x","permission":"reports"}`), 0, "permission", "want resource.action"},
		{"four segment permission", route(`{"method":"GET","path":"/x","permission":"a.b.c.d"}`), 0, "permission", "want resource.action"},
		{"empty segment permission", route(`{"method":"GET","path":"/x","permission":"reports..tenant"}`), 0, "permission", "lowercase"},
		{"uppercase permission", route(`{"method":"GET","path":"/x","permission":"Reports.read.tenant"}`), 0, "permission", "lowercase"},
		{"space in permission", route(`{"method":"GET","path":"/x","permission":"reports.read.tenant "}`), 0, "permission", "lowercase"},
		{"wildcard action", route(`{"method":"GET","path":"/x","permission":"reports.*.tenant"}`), 0, "permission", "wildcard"},
		{"wildcard scope", route(`{"method":"GET","path":"/x","permission":"reports.read.*"}`), 0, "permission", "wildcard"},
		{"resource check without resource", route(`{"method":"GET","path":"/x","permission":"reports.read"}`), 0, "permission", "needs an owner, team or tenant"},
		{"code check with owner", route(`{"method":"GET","path":"/u/{id}","permission":"users.read.own","owner":"id"}`), 0, "permission", "takes no owner or team"},
		{"code check with team", route(`{"method":"GET","path":"/t/{id}","permission":"projects.read.team","team":"id"}`), 0, "permission", "takes no owner or team"},

		{"duplicate route", `{"routes":[` + ok + `,` + ok + `]}`, 1, "path", "as route 0"},
		{"duplicate template other names", `{"routes":[
			{"method":"GET","path":"/u/{id}","permission":"users.read","owner":"id"},
			{"method":"GET","path":"/u/{user}","permission":"users.read","owner":"user"}]}`, 1, "path", "as route 0"},
		{"duplicate rest", `{"routes":[
			{"method":"*","path":"/a/{x...}","public":true},
			{"method":"*","path":"/a/{y...}","public":true}]}`, 1, "path", "as route 0"},
		{"duplicate encoded literal", `{"routes":[
			{"method":"GET","path":"/~x","public":true},
			{"method":"GET","path":"/%7ex","public":true}]}`, 1, "path", "as route 0"},
		{"error names the later index", `{"routes":[` + ok + `,` + ok[:len(ok)-1] + `,"permission":"x.read.tenant"}]}`, 1, "permission", "public route"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb, err := Load(strings.NewReader(tc.src))
			require.Error(t, err, "got a table with %d routes, want an error", len(tbRoutes(tb)))
			assert.ErrorIs(t, err, ErrInvalidRoute, "got %v, want ErrInvalidRoute", err)
			assert.Contains(t, err.Error(), tc.wantText, "got %q, want it to contain %q", err, tc.wantText)
			var re *RouteError
			if tc.wantIndex < 0 {
				assert.NotErrorAs(t, err, &re, "got a RouteError, want a file-level error")
				return
			}
			require.ErrorAs(t, err, &re, "got %v, want a *RouteError", err)
			assert.Equal(t, tc.wantIndex, re.Index, "index: got %d, want %d", re.Index, tc.wantIndex)
			assert.Equal(t, tc.wantField, re.Field, "field: got %q, want %q", re.Field, tc.wantField)
		})
	}
}

func tbRoutes(tb *Table) []*Route {
	if tb == nil {
		return nil
	}
	return tb.Routes()
}

func TestLoadAccepts(t *testing.T) {
	tests := []struct{ name, src string }{
		{"tenant binding on a code check", route(`{"method":"GET","path":"/t/{tenant}/r","permission":"reports.read.tenant","tenant":"tenant"}`)},
		{"tenant as resource", route(`{"method":"GET","path":"/t/{tenant}","permission":"tenants.read","tenant":"tenant"}`)},
		{"owner and team", route(`{"method":"GET","path":"/t/{team}/u/{user}","permission":"docs.read","owner":"user","team":"team"}`)},
		{"same template different methods", `{"routes":[
			{"method":"GET","path":"/x","public":true},
			{"method":"HEAD","path":"/x","public":true},
			{"method":"*","path":"/x","permission":"x.write.tenant"}]}`},
		{"param and literal at same place", `{"routes":[
			{"method":"GET","path":"/u/{id}","public":true},
			{"method":"GET","path":"/u/me","public":true}]}`},
		{"rest and param at same place", `{"routes":[
			{"method":"GET","path":"/u/{id}","public":true},
			{"method":"GET","path":"/u/{rest...}","public":true}]}`},
		{"root", route(`{"method":"GET","path":"/","public":true}`)},
		{"root rest", route(`{"method":"*","path":"/{all...}","permission":"all.any.platform"}`)},
		{"custom method", route(`{"method":"PROPFIND","path":"/dav","permission":"dav.read.tenant"}`)},
		{"sub-delims in literal", route(`{"method":"GET","path":"/a/b:c@d!e","public":true}`)},
		{"digits and dashes in code", route(`{"method":"GET","path":"/x","permission":"v2-api.read_all.tenant"}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.src))
			assert.NoError(t, err, "got %v, want no error", err)
		})
	}
}
