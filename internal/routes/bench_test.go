package routes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// benchTable builds a realistic table of 204 routes: 40 resources with list, create, read,
// update and delete routes (half of them tenant-scoped by path, half owned by a user), plus a
// few public routes and an admin catch-all at the end.
func benchSource(tb testing.TB) []byte {
	type rj struct {
		Method     string `json:"method"`
		Path       string `json:"path"`
		Permission string `json:"permission,omitempty"`
		Public     bool   `json:"public,omitempty"`
		Owner      string `json:"owner,omitempty"`
		Tenant     string `json:"tenant,omitempty"`
	}
	var rs []rj
	for i := range 40 {
		res := fmt.Sprintf("res%d", i)
		base := "/api/v1/" + res
		if i%2 == 0 {
			base = "/api/v1/tenants/{tenant}/" + res
		}
		tenant := ""
		if i%2 == 0 {
			tenant = "tenant"
		}
		rs = append(rs,
			rj{Method: "GET", Path: base, Permission: res + ".list.tenant", Tenant: tenant},
			rj{Method: "POST", Path: base, Permission: res + ".create.tenant", Tenant: tenant},
			rj{Method: "GET", Path: base + "/{id}", Permission: res + ".read", Owner: "id", Tenant: tenant},
			rj{Method: "PUT", Path: base + "/{id}", Permission: res + ".update", Owner: "id", Tenant: tenant},
			rj{Method: "DELETE", Path: base + "/{id}", Permission: res + ".delete", Owner: "id", Tenant: tenant},
		)
	}
	rs = append(rs,
		rj{Method: "GET", Path: "/healthz", Public: true},
		rj{Method: "GET", Path: "/metrics", Public: true},
		rj{Method: "GET", Path: "/api/public/{page}", Public: true},
		rj{Method: "*", Path: "/api/admin/{rest...}", Permission: "admin.manage.platform"},
	)
	src, err := json.Marshal(map[string]any{"routes": rs})
	if err != nil {
		tb.Fatal(err)
	}
	return src
}

func benchTable(tb testing.TB) *Table {
	t, err := Load(bytes.NewReader(benchSource(tb)))
	if err != nil {
		tb.Fatal(err)
	}
	if n := len(t.Routes()); n != 204 {
		tb.Fatalf("got %d routes, want 204", n)
	}
	return t
}

func BenchmarkMatch(b *testing.B) {
	tb := benchTable(b)
	cases := []struct{ name, method, path string }{
		{"static_first", "GET", "/api/v1/tenants/acme/res0"},
		{"owner_last_resource", "DELETE", "/api/v1/res39/u-42"},
		{"tenant_owner_query", "GET", "/api/v1/tenants/acme/res38/u-42?fields=name&page=2"},
		{"rest_catch_all", "PATCH", "/api/admin/tenants/acme/settings/flags"},
		{"head_to_get", "HEAD", "/api/v1/res21/u-1"},
		{"no_route", "GET", "/api/v2/unknown/path"},
		{"normalise_dots_slashes", "GET", "/api//v1/./res9/x/../u-42/"},
		{"normalise_encoded", "GET", "/api/v1/tenants/acme/res20/alice%40example.com"},
	}
	for _, c := range cases {
		if _, err := tb.Match(c.method, c.path); err != nil && c.name != "no_route" {
			b.Fatalf("%s: %v", c.name, err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = tb.Match(c.method, c.path)
			}
		})
	}
}

func BenchmarkLoad(b *testing.B) {
	src := benchSource(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(bytes.NewReader(src)); err != nil {
			b.Fatal(err)
		}
	}
}
