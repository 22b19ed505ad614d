package server

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestForwardAuth(t *testing.T) {
	ts := startServer(t, newFake(), func(c *Config) { c.TenantHostPattern = "{tenant}.app.example.com" })

	tests := []struct {
		name       string
		header     map[string]string
		wantStatus int
		wantCode   string // envelope error code
		wantReason string
		wantPerm   string // permission the pdp was asked, when it was asked
	}{
		{"traefik allow", map[string]string{
			"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/reports?page=2", "X-Forwarded-Host": "acme.app.example.com",
			"Authorization": "Bearer alice-token",
		}, http.StatusOK, "", "", "reports.read.tenant"},
		{"nginx X-Original-URI allow", map[string]string{
			"X-Original-Method": "PUT", "X-Original-URI": "/api/teams/t1/projects/p1", "Authorization": "Bearer alice-token",
		}, http.StatusOK, "", "", "projects.update"},
		{"method defaults to the auth request's", map[string]string{
			"X-Original-URI": "/api/reports", "Authorization": "Bearer alice-token",
		}, http.StatusOK, "", "", "reports.read.tenant"},
		{"public route", map[string]string{"X-Forwarded-Uri": "/healthz"}, http.StatusOK, "", "", ""},
		{"forbidden", map[string]string{
			"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/reports", "Authorization": "Bearer bob-token",
		}, http.StatusForbidden, "forbidden", "no_permission", "reports.read.tenant"},
		{"cross tenant by host", map[string]string{
			"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/reports", "X-Forwarded-Host": "globex.app.example.com",
			"Authorization": "Bearer alice-token",
		}, http.StatusForbidden, "forbidden", "cross_tenant", "reports.read.tenant"},
		{"no route", map[string]string{
			"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/nope", "Authorization": "Bearer alice-token",
		}, http.StatusForbidden, "forbidden", "no_permission", ""},
		{"unauthenticated", map[string]string{
			"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/reports", "Authorization": "Bearer expired",
		}, http.StatusUnauthorized, "unauthenticated", "unauthenticated", ""},
		{"bad path", map[string]string{
			"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/a/%2e%2e/%2e%2e/x", "Authorization": "Bearer alice-token",
		}, http.StatusBadRequest, "bad_request", "bad_path", ""},
		{"missing uri", map[string]string{"Authorization": "Bearer alice-token"}, http.StatusBadRequest, "bad_request", "missing_uri", ""},
		{"bad min version", map[string]string{
			"X-Forwarded-Uri": "/api/reports", "Authorization": "Bearer alice-token", "X-Neoauthz-Min-Version": "abc",
		}, http.StatusBadRequest, "bad_request", "bad_min_version", ""},
		{"could not decide", map[string]string{
			"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/broken", "Authorization": "Bearer alice-token",
		}, http.StatusServiceUnavailable, "unavailable", "unavailable", ""},
		{"untrusted permission header is ignored", map[string]string{
			"X-Forwarded-Uri": "/api/reports", "Authorization": "Bearer alice-token", "X-Neoauthz-Permission": "billing.manage.tenant",
		}, http.StatusOK, "", "", "reports.read.tenant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, before := ts.fake.lastRequest()
			resp, body := ts.get(t, "/auth", tc.header)
			require.Equal(t, tc.wantStatus, resp.StatusCode, "got %d, want %d; body %s", resp.StatusCode, tc.wantStatus, body)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			var env envelope
			require.NoError(t, json.Unmarshal([]byte(body), &env), "body %s", body)
			if tc.wantStatus == http.StatusOK {
				assert.True(t, env.Success)
			} else {
				require.NotNil(t, env.Error)
				assert.Equal(t, tc.wantCode, env.Error.Code)
				assert.Equal(t, tc.wantReason, env.Error.Details.Reason)
				assert.NotEmpty(t, env.Error.Details.DecisionID)
				assert.Empty(t, resp.Header.Get("X-Neoauthz-User"), "no identity on a deny")
			}
			if tc.wantPerm != "" {
				last, _, after := ts.fake.lastRequest()
				require.Greater(t, after, before, "the pdp was not asked")
				assert.Equal(t, tc.wantPerm, last.Permission)
			}
		})
	}

	t.Run("identity headers on allow", func(t *testing.T) {
		resp, _ := ts.get(t, "/auth", map[string]string{
			"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/reports", "X-Forwarded-Host": "acme.app.example.com",
			"Authorization": "Bearer alice-token", "X-Neoauthz-User": "root",
		})
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "acme", resp.Header.Get("X-Neoauthz-Tenant"))
		assert.Equal(t, []string{"alice"}, resp.Header.Values("X-Neoauthz-User"), "exactly our value")
		assert.NotEmpty(t, resp.Header.Get("X-Neoauthz-Decision-Id"))
		last, _, _ := ts.fake.lastRequest()
		assert.Equal(t, "acme", last.BoundTenant)
	})

	t.Run("401 challenge", func(t *testing.T) {
		resp, body := ts.get(t, "/auth", map[string]string{"X-Forwarded-Uri": "/api/reports", "Authorization": "Bearer expired"})
		assert.Equal(t, `Bearer realm="neoauthz", error="invalid_token", error_description="expired"`, resp.Header.Get("WWW-Authenticate"))
		assert.NotContains(t, body, "Bearer expired")

		resp, _ = ts.get(t, "/auth", map[string]string{"X-Forwarded-Uri": "/api/reports"})
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		assert.Equal(t, `Bearer realm="neoauthz"`, resp.Header.Get("WWW-Authenticate"))
	})
}

func TestForwardAuthTrustedPermission(t *testing.T) {
	ts := startServer(t, newFake(), func(c *Config) { c.TrustForwardedPermission = true })
	resp, body := ts.get(t, "/auth", map[string]string{
		"X-Forwarded-Uri": "/anything/not/in/the/table", "Authorization": "Bearer alice-token", "X-Neoauthz-Permission": "users.read.tenant",
	})
	require.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
	last, _, _ := ts.fake.lastRequest()
	assert.Equal(t, "users.read.tenant", last.Permission)
}
