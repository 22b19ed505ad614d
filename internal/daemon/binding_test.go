package daemon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// TestTenantBindingAndTrustedPermissionEndToEnd drives the real pdp (no fake decider) through
// forward auth and ext_authz: the host pattern binds the tenant a request serves, and, with
// TrustForwardedPermission, X-Neoauthz-Permission names the permission the engine decides.
func TestTenantBindingAndTrustedPermissionEndToEnd(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "daemon")
	primary := w.AddRegion(t, "us-east-1")
	db := w.Connect(t, primary, "")
	idp := authntest.NewIssuer()
	t.Cleanup(idp.Close)
	tokens := map[string]string{}
	for _, tn := range []struct{ slug, user string }{{"acme", "alice"}, {"globex", "gina"}} {
		_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: tn.slug, Region: "us-east-1", Realm: tn.slug + "-realm"})
		require.NoError(t, err)
		schema := "t_" + tn.slug
		_, err = db.Exec(ctx, `INSERT INTO `+schema+`.users (external_id) VALUES ($1), ('nobody-'||$1)`, tn.user)
		require.NoError(t, err)
		_, err = db.Exec(ctx, `INSERT INTO `+schema+`.user_roles (user_id, role_id) SELECT u.id, r.id FROM `+schema+`.users u, `+schema+`.roles r
			WHERE u.external_id = $1 AND r.code = 'admin'`, tn.user)
		require.NoError(t, err)
		_, err = idp.AddRealm(tn.slug+"-realm", "RS256")
		require.NoError(t, err)
		for _, sub := range []string{tn.user, "nobody-" + tn.user} {
			tok, err := idp.Mint(tn.slug+"-realm", map[string]any{"sub": sub, "typ": "Bearer", "aud": "neoauthz"})
			require.NoError(t, err)
			tokens[sub] = tok
		}
	}
	p := startPDP(t, w, idp, `{"routes": [{"method": "GET", "path": "/api/users", "permission": "users.read.tenant"}]}`,
		func(c *daemon.Config) {
			c.Server.TenantHostPattern = "{tenant}.app.example.com"
			c.Server.TrustForwardedPermission = true
		})

	forward := func(user, host, uri, perm string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/auth", nil)
		require.NoError(t, err)
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", uri)
		req.Header.Set("Authorization", "Bearer "+tokens[user])
		if host != "" {
			req.Header.Set("X-Forwarded-Host", host)
		}
		if perm != "" {
			req.Header.Set("X-Neoauthz-Permission", perm)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var env struct {
			Error *struct {
				Details struct {
					Reason string `json:"reason"`
				} `json:"details"`
			} `json:"error"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&env))
		reason := ""
		if env.Error != nil {
			reason = env.Error.Details.Reason
		}
		return resp.StatusCode, reason
	}

	t.Run("host pattern", func(t *testing.T) {
		for _, tc := range []struct {
			name, user, host string
			status           int
			reason           string
		}{
			{"own tenant's host", "alice", "acme.app.example.com", http.StatusOK, ""},
			{"another tenant's host", "alice", "globex.app.example.com", http.StatusForbidden, "cross_tenant"},
			{"the other way round", "gina", "acme.app.example.com", http.StatusForbidden, "cross_tenant"},
			{"its own", "gina", "globex.app.example.com", http.StatusOK, ""},
			{"a host naming no tenant", "alice", "nope.app.example.com", http.StatusForbidden, "cross_tenant"},
			{"bound, but no permission", "nobody-alice", "acme.app.example.com", http.StatusForbidden, "no_permission"},
		} {
			status, reason := forward(tc.user, tc.host, "/api/users", "")
			assert.Equal(t, tc.status, status, "%s: status", tc.name)
			assert.Equal(t, tc.reason, reason, "%s: reason", tc.name)
		}

		ext := authv3.NewAuthorizationClient(p.conn)
		extCheck := func(user, host string) *authv3.CheckResponse {
			res, err := ext.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "GET", Path: "/api/users", Host: host, Headers: map[string]string{"authorization": "Bearer " + tokens[user]}}},
			}})
			require.NoError(t, err)
			return res
		}
		assert.Equal(t, int32(codes.OK), extCheck("alice", "acme.app.example.com").GetStatus().GetCode())
		res := extCheck("alice", "globex.app.example.com")
		assert.Equal(t, int32(codes.PermissionDenied), res.GetStatus().GetCode(), "ext_authz: another tenant's host")
		assert.Contains(t, res.GetDeniedResponse().GetBody(), "cross_tenant")
	})

	t.Run("trusted permission header", func(t *testing.T) {
		const acmeHost = "acme.app.example.com" // with a host pattern, forward auth requires the host
		for _, tc := range []struct {
			name, user, perm string
			status           int
			reason           string
		}{
			{"held", "alice", "users.delete.tenant", http.StatusOK, ""},
			{"not held", "alice", "billing.read.tenant", http.StatusForbidden, "no_permission"},
			{"not held by this user", "nobody-alice", "users.delete.tenant", http.StatusForbidden, "no_permission"},
			{"the header wins over the route table", "nobody-alice", "users.read.tenant", http.StatusForbidden, "no_permission"},
		} {
			status, reason := forward(tc.user, acmeHost, "/not/in/the/table", tc.perm)
			assert.Equal(t, tc.status, status, "%s: status", tc.name)
			assert.Equal(t, tc.reason, reason, "%s: reason", tc.name)
		}
		status, _ := forward("alice", acmeHost, "/not/in/the/table", "users.*.tenant")
		assert.Equal(t, http.StatusBadRequest, status, "a wildcard is an invalid request, not an allow")
		status, reason := forward("alice", "globex.app.example.com", "/not/in/the/table", "users.delete.tenant")
		assert.Equal(t, http.StatusForbidden, status, "the host still binds the tenant")
		assert.Equal(t, "cross_tenant", reason)
		status, _ = forward("alice", acmeHost, "/api/users", "billing.read.tenant")
		assert.Equal(t, http.StatusForbidden, status, "the header names the permission even on a routed path")
	})
}
