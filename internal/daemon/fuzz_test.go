package daemon_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/routes"
	"github.com/neofast/neoauthz/internal/server"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

const fuzzRoutes = `{ "routes": [
  { "method": "GET", "path": "/api/reports",                   "permission": "users.read.tenant" },
  { "method": "GET", "path": "/api/tenants/{tenant}/users",    "permission": "users.read.tenant", "tenant": "tenant" },
  { "method": "GET", "path": "/api/users/{owner}/files/{id}",  "permission": "users.read", "owner": "owner" },
  { "method": "PUT", "path": "/api/teams/{team}/users/{id}",   "permission": "users.update", "team": "team" },
  { "method": "GET", "path": "/healthz",                       "public": true }
]}`

// FuzzCheckRealStack drives neoauthz.v1 Check and Envoy ext_authz Check of the real pdp —
// token validation, PostgreSQL, Redis, the engine — with random tokens (minted, tampered or
// made up), headers, paths, hosts, permissions, resources, bindings and versions. Whatever the
// input it never panics, never allows without a valid token whose user holds the permission
// (or a public route), never allows across a tenant binding, and never answers OK with a deny
// reason or the reverse. The seeds run with go test (they need PostgreSQL and Redis).
func FuzzCheckRealStack(f *testing.F) {
	cfg := server.DefaultConfig()
	cfg.TenantHostPattern = "{tenant}.app.example.com"
	st := newStack(f, cfg, fuzzRoutes)
	table, err := routes.Load(strings.NewReader(fuzzRoutes))
	require.NoError(f, err)
	ctx := context.Background()

	type user struct{ realm, sub, tenant string }
	users := []user{{"acme", "alice", "acme"}, {"acme", "bob", "acme"}, {"globex", "carol", "globex"}, {"platform", "root", ""}}
	tokens := make([]string, len(users))
	byToken := map[string]int{}
	held := make([][]string, len(users))
	for i, u := range users {
		tokens[i] = st.token(f, u.realm, u.sub)
		byToken[tokens[i]] = i
		sub, err := st.svc.SubjectFromToken(ctx, tokens[i])
		require.NoError(f, err)
		held[i], _, err = st.svc.ListPermissions(ctx, sub, consistency.Token{})
		require.NoError(f, err)
	}
	require.Contains(f, held[0], "users.read.tenant", "alice is an admin")
	require.Empty(f, held[1], "bob holds nothing")

	// holds is a necessary condition for an allow: a code check needs the code among the
	// user's effective permissions, a resource check "resource.action" some scope of it.
	holds := func(tok, perm string) bool {
		i, ok := byToken[tok]
		if !ok {
			return false
		}
		if strings.Count(perm, ".") == 2 {
			return slices.Contains(held[i], perm)
		}
		return slices.ContainsFunc(held[i], func(code string) bool { return strings.HasPrefix(code, perm+".") })
	}

	for _, s := range []struct {
		which                                                                          uint8
		token, method, path, host, extPerm, extTenant, perm, owner, team, tenant, minV string
		version                                                                        uint64
	}{
		{0, "", "GET", "/api/reports", "", "", "", "users.read.tenant", "", "", "", "", 0},
		{1, "", "GET", "/api/reports", "acme.app.example.com", "", "", "users.read.tenant", "", "", "", "", 0},
		{2, "", "GET", "/api/tenants/acme/users", "", "", "", "users.read", "carol", "", "", "", 0},
		{0, "", "GET", "/api/tenants/globex/users", "globex.app.example.com", "", "", "users.*.tenant", "", "", "globex", "", 0},
		{3, "", "GET", "/api/users/alice/files/1", "", "", "acme", "tenants.read", "", "", "acme", "1", 0},
		{0, "", "PUT", "/api/teams/x/users/1", "", "users.delete.tenant", "globex", "users.update", "alice", "t", "", "", 1 << 40},
		{4, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.", "GET", "/healthz", "", "", "", "users.read.tenant", "", "", "", "", 0},
		{5, "x", "GET", "/api/reports", "Acme.App.Example.Com", "", "", "users.read.platform", "", "", "", "99999999999999999999", 0},
		{6, "A", "DELETE", "/api/%2e%2e/healthz", "", "", "", "", "", "", "", "", 0},
	} {
		f.Add(s.which, s.token, s.method, s.path, s.host, s.extPerm, s.extTenant, s.perm, s.owner, s.team, s.tenant, s.minV, s.version)
	}

	f.Fuzz(func(t *testing.T, which uint8, token, method, path, host, extPerm, extTenant, perm, owner, team, tenant, minV string, version uint64) {
		// which picks a minted token (0-3), a token the issuer did not mint, or a minted token
		// with one byte changed.
		switch n := int(which) % 6; {
		case n < len(tokens):
			token = tokens[n]
		case n == 5 && token != "":
			b := []byte(tokens[int(which)%len(tokens)])
			b[int(which)%len(b)] ^= token[0] | 1
			token = string(b)
		}

		req := &authzv1.CheckRequest{Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: token}}, Permission: perm,
			ConsistencyToken: consistency.ForAdmin(version % 4).String()}
		if owner != "" || team != "" || tenant != "" {
			req.Resource = &authzv1.Resource{OwnerId: owner, TeamId: team, Tenant: tenant}
		}
		if resp, err := st.srv.AuthorizationService().Check(ctx, req); err == nil {
			if resp.GetAllowed() != (resp.GetReason() == authzv1.Reason_REASON_GRANTED) {
				t.Fatalf("Check: allowed=%v with reason %v", resp.GetAllowed(), resp.GetReason())
			}
			if resp.GetAllowed() && !holds(token, perm) {
				t.Fatalf("Check: allowed %q to a token that does not hold it", perm)
			}
		}

		headers := map[string]string{"authorization": "Bearer " + token}
		if minV != "" {
			headers["x-neoauthz-consistency"] = minV
		}
		ext := map[string]string{}
		if extPerm != "" {
			ext["permission"] = extPerm
		}
		if extTenant != "" {
			ext["tenant"] = extTenant
		}
		eresp, err := st.srv.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: method, Path: path, Host: host, Headers: headers}},
			ContextExtensions: ext,
		}})
		if err != nil {
			return // could not decide: an error, never an OK
		}
		ok := eresp.GetOkResponse() != nil
		if ok != (codes.Code(eresp.GetStatus().GetCode()) == codes.OK) {
			t.Fatalf("ext_authz: OK response=%v with status %v", ok, eresp.GetStatus())
		}
		if !ok {
			return
		}
		var m routes.Match
		var matchErr error
		if extPerm == "" {
			m, matchErr = table.Match(method, path)
		}
		switch reason := eresp.GetDynamicMetadata().GetFields()["reason"].GetStringValue(); reason {
		case "":
			if extPerm != "" || matchErr != nil || !m.Route.Public {
				t.Fatalf("ext_authz: OK without a decision for %s %q, which is no public route", method, path)
			}
		case "granted":
			want := extPerm
			if want == "" {
				require.NoError(t, matchErr, "ext_authz: OK for a request that matches no route")
				want = m.Route.Permission
			}
			if !holds(token, want) {
				t.Fatalf("ext_authz: allowed %q to a token that does not hold it", want)
			}
			u := users[byToken[token]]
			for _, b := range []string{extTenant, m.Tenant} {
				if b != "" && u.tenant != "" && b != u.tenant {
					t.Fatalf("ext_authz: allowed %s of %s on a route bound to %q", u.sub, u.tenant, b)
				}
			}
			name := host
			if h, _, err := net.SplitHostPort(host); err == nil {
				name = h
			}
			if hb, ok := strings.CutSuffix(strings.ToLower(strings.TrimSuffix(name, ".")), ".app.example.com"); ok && u.tenant != "" && hb != u.tenant {
				t.Fatalf("ext_authz: allowed %s of %s on host %q", u.sub, u.tenant, host)
			}
		default:
			t.Fatalf("ext_authz: OK with reason %q", reason)
		}
	})
}
