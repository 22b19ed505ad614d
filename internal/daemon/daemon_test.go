package daemon_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// TestEndToEnd runs the whole pdp — identity against a Keycloak-shaped issuer, PostgreSQL,
// Redis, listeners, all three APIs — and drives it with real clients.
func TestEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := testenv.New(t, "daemon")
	primary := w.AddRegion(t, "us-east-1")
	_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme-realm"})
	require.NoError(t, err)
	db := w.Connect(t, primary, "")
	_, err = db.Exec(ctx, `INSERT INTO t_acme.users (external_id) VALUES ('alice'), ('bob');
		INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r
		WHERE u.external_id = 'alice' AND r.code = 'admin'`)
	require.NoError(t, err)

	idp := newIssuer(t, "acme-realm", "platform")
	token := func(sub string) string {
		tok, err := idp.Mint("acme-realm", map[string]any{"sub": sub, "typ": "Bearer", "aud": "neoauthz"})
		require.NoError(t, err)
		return tok
	}
	alice, bob := token("alice"), token("bob")

	p := startPDP(t, w, idp, `{"routes": [
		{"method": "GET", "path": "/api/users", "permission": "users.read.tenant"},
		{"method": "GET", "path": "/healthz", "public": true}]}`, nil)
	conn := p.conn
	base := p.base
	forward := func(tok, uri string) (int, http.Header) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/auth", nil)
		require.NoError(t, err)
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", uri)
		req.Header.Set("X-Neoauthz-User", "forged")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header
	}
	code, h := forward(alice, "/api/users?page=2")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "alice", h.Get("X-Neoauthz-User"))
	assert.Equal(t, "acme", h.Get("X-Neoauthz-Tenant"))
	code, _ = forward(bob, "/api/users")
	assert.Equal(t, http.StatusForbidden, code)
	code, h = forward("", "/api/users")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, h.Get("WWW-Authenticate"), "Bearer")
	code, _ = forward(alice, "/api/x/%2e%2e/%2e%2e/%2e%2e/users")
	assert.Equal(t, http.StatusBadRequest, code)

	ext := authv3.NewAuthorizationClient(conn)
	extCheck := func(tok, path string) *authv3.CheckResponse {
		headers := map[string]string{}
		if tok != "" {
			headers["authorization"] = "Bearer " + tok
		}
		res, err := ext.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: path, Headers: headers}},
			ContextExtensions: map[string]string{},
		}})
		require.NoError(t, err)
		return res
	}
	res := extCheck(alice, "/api/users")
	assert.Equal(t, int32(codes.OK), res.GetStatus().GetCode())
	var user string
	for _, hv := range res.GetOkResponse().GetHeaders() {
		if hv.GetHeader().GetKey() == "x-neoauthz-user" {
			user = hv.GetHeader().GetValue()
			assert.Equal(t, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, hv.GetAppendAction())
		}
	}
	assert.Equal(t, "alice", user)
	assert.Equal(t, int32(codes.PermissionDenied), extCheck(bob, "/api/users").GetStatus().GetCode())
	assert.EqualValues(t, 403, extCheck(bob, "/api/users").GetDeniedResponse().GetStatus().GetCode())
	assert.EqualValues(t, 401, extCheck("", "/api/users").GetDeniedResponse().GetStatus().GetCode())
	assert.Equal(t, int32(codes.OK), extCheck("", "/healthz").GetStatus().GetCode())

	api := authzv1.NewAuthorizationServiceClient(conn)
	check := func(tok string) *authzv1.CheckResponse {
		res, err := api.Check(ctx, &authzv1.CheckRequest{Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: tok}},
			Permission: "users.delete.tenant"})
		require.NoError(t, err)
		return res
	}
	assert.True(t, check(alice).GetAllowed())
	assert.Equal(t, authzv1.Reason_REASON_NO_PERMISSION, check(bob).GetReason())
	_, err = api.Check(ctx, &authzv1.CheckRequest{Subject: &authzv1.Subject{Kind: &authzv1.Subject_Principal{
		Principal: &authzv1.Principal{Tenant: "acme", User: "alice"}}}, Permission: "users.delete.tenant"})
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "principals only from trusted callers")

	// A revocation reaches every API once notified.
	_, err = db.Exec(ctx, `DELETE FROM t_acme.user_roles`)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !check(alice).GetAllowed() }, 10*time.Second, 5*time.Millisecond)
	code, _ = forward(alice, "/api/users")
	assert.Equal(t, http.StatusForbidden, code)

	// Suspending the tenant reaches identity through the notification: its tokens stop
	// authenticating, and work again once it is active.
	_, err = w.Tenants.Suspend(ctx, "acme")
	require.NoError(t, err)
	require.Eventually(t, func() bool { c, _ := forward(bob, "/api/users"); return c == http.StatusUnauthorized },
		10*time.Second, 5*time.Millisecond, "a suspended tenant's token still authenticates")
	_, err = w.Tenants.Activate(ctx, "acme")
	require.NoError(t, err)
	require.Eventually(t, func() bool { c, _ := forward(bob, "/api/users"); return c == http.StatusForbidden },
		10*time.Second, 5*time.Millisecond, "the tenant's tokens never authenticated again")

	resp, err := http.Get(base + "/health")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	metrics, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer metrics.Body.Close()
	body, err := io.ReadAll(metrics.Body)
	require.NoError(t, err)
	for _, name := range []string{"permission_checks_total", "permission_check_duration_seconds", "cache_operations_total",
		`db_query_duration_seconds_count{query="load_tenant_user"}`, "sync_notifications_received_total"} {
		assert.Contains(t, string(body), name)
	}
}
