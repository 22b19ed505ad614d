package routes

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mustLoad loads a table from JSON text or fails the test.
func mustLoad(t testing.TB, src string) *Table {
	t.Helper()
	tb, err := Load(strings.NewReader(src))
	require.NoError(t, err, "Load")
	return tb
}

// matchTable exercises the normalisation cases against routes a path trick would want to reach.
const matchTable = `{ "routes": [
  { "method": "GET",  "path": "/api/reports",                         "permission": "reports.read.tenant" },
  { "method": "GET",  "path": "/api/public/{page}",                   "public": true },
  { "method": "*",    "path": "/api/admin/{rest...}",                 "permission": "admin.manage.tenant" },
  { "method": "GET",  "path": "/api/users/{id}",                      "permission": "users.read", "owner": "id" },
  { "method": "GET",  "path": "/etc",                                 "public": true },
  { "method": "GET",  "path": "/api/cafés/{id}",                      "permission": "cafes.read.tenant" },
  { "method": "GET",  "path": "/",                                    "public": true }
]}`

func TestMatchTrickyPaths(t *testing.T) {
	tb := mustLoad(t, matchTable)
	tests := []struct {
		name      string
		raw       string
		wantIndex int    // route index; -1 for ErrNoRoute, -2 for ErrBadPath
		wantPath  string // normalised path when matched
		wantParam string // value of the route's first parameter, if any
	}{
		{"double slashes", "//api//reports", 0, "/api/reports", ""},
		{"trailing slash", "/api/reports/", 0, "/api/reports", ""},
		{"query", "/api/reports?x=1", 0, "/api/reports", ""},
		{"query looks like a path", "/api/reports?/api/public/x", 0, "/api/reports", ""},
		{"fragment", "/api/reports#frag", 0, "/api/reports", ""},
		{"dot", "/api/./reports", 0, "/api/reports", ""},
		{"dot dot", "/api/x/../reports", 0, "/api/reports", ""},
		{"encoded dot dot", "/api/%2e%2e/api/reports", 0, "/api/reports", ""},
		{"public escape goes to admin", "/api/public/%2e%2e/admin/x", 2, "/api/admin/x", "x"},
		{"public escape raw", "/api/public/../admin/x", 2, "/api/admin/x", "x"},
		{"public escape to unlisted", "/api/public/%2e%2e/secret", -1, "", ""},
		{"public page", "/api/public/intro", 1, "/api/public/intro", "intro"},
		{"public page dot dot stays public", "/api/public/a/../b", 1, "/api/public/b", "b"},
		{"public needs a page", "/api/public", -1, "", ""},
		{"public needs a page not empty", "/api/public/", -1, "", ""},
		{"climb to etc", "/%2e%2e/%2e%2e/etc", -2, "", ""},
		{"climb then etc", "/api/../etc", 4, "/etc", ""},
		{"encoded slash", "/api/reports%2Fsecret", -2, "", ""},
		{"encoded slash in param", "/api/users/a%2Fb", -2, "", ""},
		{"unreserved decoded", "/api/users/%41", 3, "/api/users/A", "A"},
		{"literal spelled encoded", "/api/%72eports", 0, "/api/reports", ""},
		{"percent-encoded param decoded", "/api/users/a%20b%3Fc", 3, "/api/users/a%20b%3Fc", "a b?c"},
		{"unicode param", "/api/users/日本", 3, "/api/users/%E6%97%A5%E6%9C%AC", "日本"},
		{"unicode literal raw", "/api/cafés/1", 5, "/api/caf%C3%A9s/1", "1"},
		{"unicode literal encoded", "/api/caf%c3%a9s/1", 5, "/api/caf%C3%A9s/1", "1"},
		{"unicode literal decomposed is another name", "/api/cafe\u0301s/1", -1, "", ""},
		{"invalid percent", "/api/users/%zz", -2, "", ""},
		{"nul", "/api/users/a\x00", -2, "", ""},
		{"too long", "/api/users/" + strings.Repeat("x", MaxPathLen), -2, "", ""},
		{"long but fine", "/api/users/" + strings.Repeat("x", 4000), 3, "/api/users/" + strings.Repeat("x", 4000), strings.Repeat("x", 4000)},
		{"case sensitive", "/API/reports", -1, "", ""},
		{"root", "/", 6, "/", ""},
		{"root query", "/?x", 6, "/", ""},
		{"admin rest keeps segments", "/api/admin//a/./b/", 2, "/api/admin/a/b", "a/b"},
		{"admin rest decoded", "/api/admin/a%20b/c", 2, "/api/admin/a%20b/c", "a b/c"},
		{"admin without rest", "/api/admin", -1, "", ""},
		{"param not a pattern", "/api/users/{id}", 3, "/api/users/%7Bid%7D", "{id}"},
		{"param star", "/api/users/*", 3, "/api/users/*", "*"},
		{"too many segments", "/api/users/1/x", -1, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tb.Match("GET", tc.raw)
			switch tc.wantIndex {
			case -2:
				require.ErrorIs(t, err, ErrBadPath, "Match(%q): got route %v, want ErrBadPath", tc.raw, m.Route)
				return
			case -1:
				require.ErrorIs(t, err, ErrNoRoute, "Match(%q): got route %v, want ErrNoRoute", tc.raw, m.Route)
				return
			}
			require.NoError(t, err, "Match(%q)", tc.raw)
			assert.Equal(t, tc.wantIndex, m.Route.Index, "Match(%q): got route %d, want %d", tc.raw, m.Route.Index, tc.wantIndex)
			assert.Equal(t, tc.wantPath, m.Path, "Match(%q): got path %q, want %q", tc.raw, m.Path, tc.wantPath)
			if ps := m.Params(); len(ps) > 0 {
				assert.Equal(t, tc.wantParam, ps[0].Value, "Match(%q): got param %q, want %q", tc.raw, ps[0].Value, tc.wantParam)
			} else {
				assert.Empty(t, tc.wantParam, "Match(%q): got no param, want %q", tc.raw, tc.wantParam)
			}
		})
	}
}

func TestMatchNoRouteKeepsPath(t *testing.T) {
	tb := mustLoad(t, matchTable)
	m, err := tb.Match("GET", "//nowhere/./x?y")
	require.ErrorIs(t, err, ErrNoRoute)
	assert.Equal(t, "/nowhere/x", m.Path, "got path %q, want %q", m.Path, "/nowhere/x")
	assert.Nil(t, m.Route, "got route %v, want nil", m.Route)
}

func TestMatchFirstWins(t *testing.T) {
	tb := mustLoad(t, `{ "routes": [
	  { "method": "GET", "path": "/a/{x}/c",      "permission": "first.read.tenant" },
	  { "method": "*",   "path": "/a/b/c",        "permission": "second.read.tenant" },
	  { "method": "GET", "path": "/a/b/{y}",      "permission": "third.read.tenant" },
	  { "method": "GET", "path": "/a/{rest...}",  "permission": "fourth.read.tenant" },
	  { "method": "GET", "path": "/a/b/d",        "permission": "fifth.read.tenant" },
	  { "method": "*",   "path": "/z/{rest...}",  "permission": "sixth.read.tenant" },
	  { "method": "GET", "path": "/z/y",          "permission": "seventh.read.tenant" }
	]}`)
	tests := []struct {
		method, path, want string
	}{
		{"GET", "/a/b/c", "first.read.tenant"},    // param route before the literal one
		{"POST", "/a/b/c", "second.read.tenant"},  // "*" when no POST route
		{"GET", "/a/b/e", "third.read.tenant"},    // /a/{x}/c does not fit, /a/b/{y} does
		{"GET", "/a/b/d", "third.read.tenant"},    // earlier {y} shadows the later literal
		{"GET", "/a/x/y/z", "fourth.read.tenant"}, // rest takes several segments
		{"GET", "/a/b", "fourth.read.tenant"},     // rest takes one segment
		{"GET", "/z/y", "sixth.read.tenant"},      // an earlier "*" route beats a later GET one
		{"DELETE", "/z/q/r", "sixth.read.tenant"}, // "*" matches any method
		{"PROPFIND", "/z/q", "sixth.read.tenant"}, // even unusual ones
		{"get", "/a/b/c", "first.read.tenant"},    // method is upper-cased
		{"Post", "/a/b/c", "second.read.tenant"},  // mixed case too
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			m, err := tb.Match(tc.method, tc.path)
			require.NoError(t, err)
			assert.Equal(t, tc.want, m.Route.Permission, "got %q, want %q", m.Route.Permission, tc.want)
		})
	}
}

func TestMatchMethods(t *testing.T) {
	tb := mustLoad(t, `{ "routes": [
	  { "method": "GET",    "path": "/r",          "permission": "r.read.tenant" },
	  { "method": "POST",   "path": "/r",          "permission": "r.create.tenant" },
	  { "method": "GET",    "path": "/h/{id}",     "permission": "h.read.tenant" },
	  { "method": "HEAD",   "path": "/h/{id}",     "permission": "h.stat.tenant" },
	  { "method": "GET",    "path": "/g/{id}",     "permission": "g.read.tenant" },
	  { "method": "HEAD",   "path": "/g/special",  "permission": "g.stat.tenant" },
	  { "method": "*",      "path": "/s/{x}",      "permission": "s.any.tenant" },
	  { "method": "GET",    "path": "/s/{x}",      "permission": "s.read.tenant" }
	]}`)
	tests := []struct {
		name, method, path string
		want               string // "" for ErrNoRoute
	}{
		{"get", "GET", "/r", "r.read.tenant"},
		{"post", "POST", "/r", "r.create.tenant"},
		{"put has no route", "PUT", "/r", ""},
		{"head falls back to get", "HEAD", "/r", "r.read.tenant"},
		{"head route wins over get", "HEAD", "/h/1", "h.stat.tenant"},
		{"get unaffected by head route", "GET", "/h/1", "h.read.tenant"},
		{"head route for another path", "HEAD", "/g/1", "g.read.tenant"},
		{"head route for its path", "HEAD", "/g/special", "g.stat.tenant"},
		{"star before get", "GET", "/s/1", "s.any.tenant"},
		{"star for head", "HEAD", "/s/1", "s.any.tenant"},
		{"lowercase head", "head", "/r", "r.read.tenant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tb.Match(tc.method, tc.path)
			if tc.want == "" {
				require.ErrorIs(t, err, ErrNoRoute, "got route %v, want ErrNoRoute", m.Route)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, m.Route.Permission, "got %q, want %q", m.Route.Permission, tc.want)
		})
	}
}

func TestMatchBadMethod(t *testing.T) {
	tb := mustLoad(t, matchTable)
	for _, method := range []string{"", "GE T", "GET\n", "G\x00", strings.Repeat("A", 33), "GÉT"} {
		_, err := tb.Match(method, "/api/reports")
		assert.ErrorIs(t, err, ErrBadMethod, "method %q: got %v, want ErrBadMethod", method, err)
	}
}

func TestMatchBindings(t *testing.T) {
	tb, err := LoadFile("testdata/routes.json")
	require.NoError(t, err, "LoadFile")
	tests := []struct {
		name, method, path string
		wantPerm           string
		wantPublic         bool
		wantResource       bool
		wantOwner          string
		wantTeam           string
		wantTenant         string
		wantParams         []Param
	}{
		{
			name: "owner and tenant", method: "GET", path: "/api/tenants/acme/users/u%2D42",
			wantPerm: "users.read", wantResource: true, wantOwner: "u-42", wantTenant: "acme",
			wantParams: []Param{{"tenant", "acme"}, {"user_id", "u-42"}},
		},
		{
			name: "team", method: "PUT", path: "/api/teams/t1/projects/p9",
			wantPerm: "projects.update", wantResource: true, wantTeam: "t1",
			wantParams: []Param{{"team_id", "t1"}, {"id", "p9"}},
		},
		{name: "code check", method: "GET", path: "/api/reports", wantPerm: "reports.read.tenant"},
		{name: "head override", method: "HEAD", path: "/api/reports", wantPerm: "reports.list.tenant"},
		{
			name: "tenant as resource", method: "GET", path: "/api/tenants/globex",
			wantPerm: "tenants.read", wantResource: true, wantTenant: "globex",
			wantParams: []Param{{"tenant", "globex"}},
		},
		{
			name: "tenant binding on a code check", method: "POST", path: "/api/tenants/acme/reports",
			wantPerm: "reports.create.tenant", wantTenant: "acme",
			wantParams: []Param{{"tenant", "acme"}},
		},
		{
			name: "public", method: "GET", path: "/api/public/welcome", wantPublic: true,
			wantParams: []Param{{"page", "welcome"}},
		},
		{
			name: "rest", method: "GET", path: "/api/files/a/b%20c/d.txt", wantPerm: "files.read.tenant",
			wantParams: []Param{{"path", "a/b c/d.txt"}},
		},
		{
			name: "admin any method", method: "DELETE", path: "/api/admin/tenants/acme",
			wantPerm: "admin.manage.tenant", wantParams: []Param{{"rest", "tenants/acme"}},
		},
		{name: "healthz", method: "GET", path: "/healthz?probe=1", wantPublic: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tb.Match(tc.method, tc.path)
			require.NoError(t, err)
			r := m.Route
			assert.Equal(t, tc.wantPerm, r.Permission, "permission: got %q, want %q", r.Permission, tc.wantPerm)
			assert.Equal(t, tc.wantPublic, r.Public, "public: got %v, want %v", r.Public, tc.wantPublic)
			assert.Equal(t, tc.wantResource, r.ResourceCheck(), "resource check: got %v, want %v", r.ResourceCheck(), tc.wantResource)
			assert.Equal(t, tc.wantOwner, m.Owner, "owner: got %q, want %q", m.Owner, tc.wantOwner)
			assert.Equal(t, tc.wantTeam, m.Team, "team: got %q, want %q", m.Team, tc.wantTeam)
			assert.Equal(t, tc.wantTenant, m.Tenant, "tenant: got %q, want %q", m.Tenant, tc.wantTenant)
			got := m.Params()
			if len(tc.wantParams) == 0 {
				assert.Empty(t, got, "params: got %v, want none", got)
			} else {
				assert.Equal(t, tc.wantParams, got, "params: got %v, want %v", got, tc.wantParams)
			}
			for _, p := range tc.wantParams {
				v, ok := m.Param(p.Name)
				assert.True(t, ok, "Param(%q): got missing, want %q", p.Name, p.Value)
				assert.Equal(t, p.Value, v, "Param(%q): got %q, want %q", p.Name, v, p.Value)
			}
			_, ok := m.Param("nope")
			assert.False(t, ok, "Param(nope): got present, want missing")
		})
	}
}

// TestMatchCopyIsIndependent guards the fixed-array parameter storage: a copied Match must keep
// its own values.
func TestMatchCopyIsIndependent(t *testing.T) {
	tb := mustLoad(t, matchTable)
	a, err := tb.Match("GET", "/api/users/alice")
	require.NoError(t, err)
	b, err := tb.Match("GET", "/api/users/bob")
	require.NoError(t, err)
	c := a
	assert.Equal(t, "alice", c.Params()[0].Value, "got %q, want alice", c.Params()[0].Value)
	assert.Equal(t, "bob", b.Params()[0].Value, "got %q, want bob", b.Params()[0].Value)
	assert.Equal(t, "alice", a.Owner, "got %q, want alice", a.Owner)
}

func TestMatchManyParams(t *testing.T) {
	tb := mustLoad(t, `{ "routes": [
	  { "method": "GET", "path": "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h...}", "permission": "x.read", "owner": "h", "team": "a", "tenant": "g" }
	]}`)
	m, err := tb.Match("GET", "/1/2/3/4/5/6/7/8/9")
	require.NoError(t, err)
	require.Len(t, m.Params(), MaxParams)
	assert.Equal(t, "8/9", m.Owner, "owner: got %q, want 8/9", m.Owner)
	assert.Equal(t, "1", m.Team, "team: got %q, want 1", m.Team)
	assert.Equal(t, "7", m.Tenant, "tenant: got %q, want 7", m.Tenant)
}

func TestMatchAllocations(t *testing.T) {
	tb, err := LoadFile("testdata/routes.json")
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = tb.Match("GET", "/api/tenants/acme/users/u-1?x=1")
	})
	assert.Zero(t, allocs, "canonical path: got %v allocs, want 0", allocs)
	allocs = testing.AllocsPerRun(100, func() {
		_, _ = tb.Match("GET", "/api/nowhere/at/all")
	})
	assert.Zero(t, allocs, "no route: got %v allocs, want 0", allocs)
}

// TestMatchConcurrent lets the race detector check that matching never writes to the table.
func TestMatchConcurrent(t *testing.T) {
	tb, err := LoadFile("testdata/routes.json")
	require.NoError(t, err)
	done := make(chan string, 8)
	for i := range 8 {
		go func() {
			got := ""
			for range 200 {
				m, err := tb.Match("GET", "/api/tenants/acme/users/u"+string(rune('0'+i)))
				if err != nil {
					got = err.Error()
					break
				}
				got = m.Owner
			}
			done <- got
		}()
	}
	for range 8 {
		got := <-done
		assert.Regexp(t, `^u[0-7]$`, got, "got %q, want an owner u0..u7", got)
	}
}
