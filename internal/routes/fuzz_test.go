package routes

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

// fuzzTable has the shapes a path trick targets: a public catch-one next to protected siblings,
// a rest parameter, literals and parameters at the same depth, and the root.
const fuzzTable = `{ "routes": [
  { "method": "GET",  "path": "/api/public/{page}",                   "public": true },
  { "method": "*",    "path": "/api/admin/{rest...}",                 "permission": "admin.manage.tenant" },
  { "method": "GET",  "path": "/api/reports",                         "permission": "reports.read.tenant" },
  { "method": "HEAD", "path": "/api/reports",                         "permission": "reports.list.tenant" },
  { "method": "GET",  "path": "/api/tenants/{tenant}/users/{user_id}", "permission": "users.read", "owner": "user_id", "tenant": "tenant" },
  { "method": "GET",  "path": "/api/tenants/{tenant}/users/me",       "permission": "users.read.own", "tenant": "tenant" },
  { "method": "PUT",  "path": "/api/teams/{team_id}/projects/{id}",   "permission": "projects.update", "team": "team_id" },
  { "method": "GET",  "path": "/api/files/{path...}",                 "permission": "files.read.tenant" },
  { "method": "GET",  "path": "/",                                    "public": true }
]}`

func FuzzMatch(f *testing.F) {
	for _, s := range []string{
		"/", "/api/reports", "//api//reports", "/api/reports/", "/api/reports?x=1", "/api/reports#frag",
		"/api/./reports", "/api/x/../reports", "/api/%2e%2e/api/reports", "/api/public/%2e%2e/admin/x",
		"/%2e%2e/%2e%2e/etc", "/api/reports%2Fsecret", "/api/users/%41", "/api/%zz", "/api/a\x00",
		"/api/tenants/acme/users/%C3%A9", "/api/files/a/b/../c", "/api/public/..;/admin/x",
		"/api/public/%252e%252e/admin", "/api/public/a%3F/x", "/api/admin/%2e", "/api/tenants/a/users/me",
		"/api/public/.%2E/admin", "/api/\\admin", "/api/%C0%AE%C0%AE/admin", "*", "",
	} {
		f.Add("GET", s)
	}
	f.Add("HEAD", "/api/reports/")
	f.Add("PUT", "/api/teams/t1/projects/p1")
	f.Add("delete", "/api/admin/x")

	tb := mustLoad(f, fuzzTable)
	f.Fuzz(func(t *testing.T, method, raw string) {
		m, err := tb.Match(method, raw)

		norm, nerr := NormalizePath(raw)
		if nerr == nil {
			checkCanonical(t, raw, norm)
		}
		if err != nil {
			return
		}
		if m.Path != norm {
			t.Fatalf("Match(%q).Path = %q, NormalizePath = %q", raw, m.Path, norm)
		}
		for _, p := range m.Params() {
			if p.Value == "" {
				t.Fatalf("Match(%q): parameter %q is empty", raw, p.Name)
			}
		}
		again, err := tb.Match(method, m.Path)
		if err != nil {
			t.Fatalf("Match(%q) = route %d, but its path %q: %v", raw, m.Route.Index, m.Path, err)
		}
		if again.Route != m.Route {
			t.Fatalf("Match(%q) = route %d, its path %q = route %d", raw, m.Route.Index, m.Path, again.Route.Index)
		}
		if again.Owner != m.Owner || again.Team != m.Team || again.Tenant != m.Tenant {
			t.Fatalf("Match(%q): bindings %q/%q/%q, again %q/%q/%q", raw, m.Owner, m.Team, m.Tenant, again.Owner, again.Team, again.Tenant)
		}
		for i, p := range m.Params() {
			if q := again.Params()[i]; q != p {
				t.Fatalf("Match(%q): param %v, again %v", raw, p, q)
			}
		}
	})
}

// checkCanonical asserts the normalised-path invariants, and that the path means what a server
// that fully decodes and then cleans the path would serve: the pdp and the upstream agree.
func checkCanonical(t *testing.T, raw, norm string) {
	t.Helper()
	if norm == "" || norm[0] != '/' {
		t.Fatalf("NormalizePath(%q) = %q: does not start with '/'", raw, norm)
	}
	if strings.Contains(norm, "//") || strings.ContainsAny(norm, "?#\\") {
		t.Fatalf("NormalizePath(%q) = %q: has '//', '?', '#' or '\\'", raw, norm)
	}
	if norm != "/" && strings.HasSuffix(norm, "/") {
		t.Fatalf("NormalizePath(%q) = %q: trailing slash", raw, norm)
	}
	for _, seg := range strings.Split(norm[1:], "/") {
		if seg == "." || seg == ".." {
			t.Fatalf("NormalizePath(%q) = %q: dot segment", raw, norm)
		}
	}
	for i := 0; i < len(norm); i++ {
		if c := norm[i]; c < 0x20 || c >= 0x7f {
			t.Fatalf("NormalizePath(%q) = %q: byte %#x", raw, norm, c)
		}
	}
	if again, err := NormalizePath(norm); err != nil || again != norm {
		t.Fatalf("NormalizePath(%q) = %q, again = %q, %v", raw, norm, again, err)
	}

	p := raw
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	dec, err := url.PathUnescape(p)
	if err != nil {
		t.Fatalf("NormalizePath(%q) = %q, but url.PathUnescape fails: %v", raw, norm, err)
	}
	if want := path.Clean(dec); decode(norm) != want {
		t.Fatalf("NormalizePath(%q) = %q decoding to %q, want %q (decode, then path.Clean)", raw, norm, decode(norm), want)
	}
}
