package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/consistency"
)

// origRequest is the request a proxy asks /auth about.
type origRequest struct {
	method, uri, host string
}

// conventionCase sends an origRequest to /auth the way one convention's proxy does.
type conventionCase struct {
	name  string
	build func(o origRequest) (method, target string, h http.Header)
}

func headersOf(method, uri, host string) func(o origRequest) (string, string, http.Header) {
	return func(o origRequest) (string, string, http.Header) {
		h := http.Header{}
		h.Set(method, o.method)
		h.Set(uri, o.uri)
		if o.host != "" {
			h.Set(host, o.host)
		}
		return http.MethodGet, "/auth", h
	}
}

var conventionCases = []conventionCase{
	{ConventionNginx, headersOf(hdrOriginalMethod, hdrOriginalURI, DefaultNginxHostHeader)},
	{ConventionTraefik, headersOf(hdrForwardedMethod, hdrForwardedURI, hdrForwardedHost)},
	{ConventionCaddy, headersOf(hdrForwardedMethod, hdrForwardedURI, hdrForwardedHost)},
	{ConventionEnvoyHTTP, func(o origRequest) (string, string, http.Header) {
		h := http.Header{}
		h.Set("Host", o.host)
		return o.method, "/auth" + o.uri, h
	}},
}

// send sends one request to the HTTP listener: target is sent as is (no cleaning), a "Host"
// entry in h becomes the request's Host.
func (ts *testServer) send(t *testing.T, method, target string, h http.Header) (httpResult, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.http+"/", nil)
	require.NoError(t, err)
	req.URL.Opaque = target
	for k, vs := range h {
		if k == "Host" {
			req.Host = vs[0]
			continue
		}
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return httpResult{StatusCode: resp.StatusCode, Header: resp.Header}, string(b)
}

func withConvention(name string) serverOption {
	return func(c *Config) {
		c.ForwardAuthHeaders = name
		c.TenantHostPattern = "{tenant}.app.example.com"
	}
}

// TestForwardAuthConventions drives the same decisions through every convention.
func TestForwardAuthConventions(t *testing.T) {
	const acmeHost = "acme.app.example.com"
	tests := []struct {
		name       string
		orig       origRequest
		auth       string
		wantStatus int
		wantCode   string // envelope error code
		wantReason string
		wantPerm   string // permission the pdp was asked; "" = it must not be asked
	}{
		{"allow", origRequest{"GET", "/api/reports?page=2", acmeHost}, "Bearer alice-token", http.StatusOK, "", "", "reports.read.tenant"},
		{"allow PUT with a team", origRequest{"PUT", "/api/teams/t1/projects/p1", acmeHost}, "Bearer alice-token", http.StatusOK, "", "", "projects.update"},
		{"public route without a token", origRequest{"GET", "/healthz", acmeHost}, "", http.StatusOK, "", "", ""},
		{"forbidden", origRequest{"GET", "/api/reports", "globex.app.example.com"}, "Bearer bob-token", http.StatusForbidden, "forbidden", "no_permission", "reports.read.tenant"},
		{"cross tenant by host", origRequest{"GET", "/api/reports", "globex.app.example.com"}, "Bearer alice-token", http.StatusForbidden, "forbidden", "cross_tenant", "reports.read.tenant"},
		{"cross tenant by path", origRequest{"GET", "/api/tenants/globex/reports", "app.example.com"}, "Bearer alice-token", http.StatusForbidden, "forbidden", "cross_tenant", "reports.read.tenant"},
		{"no route", origRequest{"GET", "/nope", acmeHost}, "Bearer alice-token", http.StatusForbidden, "forbidden", "no_permission", ""},
		{"no token", origRequest{"GET", "/api/reports", acmeHost}, "", http.StatusUnauthorized, "unauthenticated", "unauthenticated", ""},
		{"bad token", origRequest{"GET", "/api/reports", acmeHost}, "Bearer expired", http.StatusUnauthorized, "unauthenticated", "unauthenticated", ""},
		{"bad path", origRequest{"GET", "/a/%2e%2e/%2e%2e/x", acmeHost}, "Bearer alice-token", http.StatusBadRequest, "bad_request", "bad_path", ""},
		{"could not decide", origRequest{"GET", "/api/broken", acmeHost}, "Bearer alice-token", http.StatusServiceUnavailable, "unavailable", "unavailable", "fail.unavailable.tenant"},
	}
	for _, conv := range conventionCases {
		t.Run(conv.name, func(t *testing.T) {
			ts := startServer(t, newFake(), withConvention(conv.name))
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					method, target, h := conv.build(tc.orig)
					if tc.auth != "" {
						h.Set("Authorization", tc.auth)
					}
					_, _, before := ts.fake.lastRequest()
					resp, body := ts.send(t, method, target, h)
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
					if tc.wantStatus == http.StatusUnauthorized {
						assert.True(t, strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="neoauthz"`),
							"got WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
					}
					last, _, after := ts.fake.lastRequest()
					if tc.wantPerm != "" {
						require.Equal(t, before+1, after, "the pdp is asked once")
						assert.Equal(t, tc.wantPerm, last.Permission)
					} else {
						assert.Equal(t, before, after, "the pdp must not be asked")
					}
				})
			}

			t.Run("identity headers on allow", func(t *testing.T) {
				method, target, h := conv.build(origRequest{"GET", "/api/reports", acmeHost})
				h.Set("Authorization", "Bearer alice-token")
				h.Set("X-Neoauthz-User", "root")
				resp, _ := ts.send(t, method, target, h)
				require.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, []string{"acme"}, resp.Header.Values("X-Neoauthz-Tenant"))
				assert.Equal(t, []string{"alice"}, resp.Header.Values("X-Neoauthz-User"), "exactly our value")
				assert.Len(t, resp.Header.Values("X-Neoauthz-Decision-Id"), 1)
				last, _, _ := ts.fake.lastRequest()
				assert.Equal(t, "acme", last.BoundTenant, "the convention's host binds the tenant")
			})
		})
	}
}

// TestForwardAuthReadsOnlyItsConvention is the spoofing the conventions exist for: behind a
// proxy that sets one convention's headers and passes the client's others through, a client
// adding another convention's headers must not change what is decided. It is refused (400),
// and the pdp is not asked.
func TestForwardAuthReadsOnlyItsConvention(t *testing.T) {
	spoofs := []struct {
		header string
		value  string
	}{
		{hdrForwardedURI, "/healthz"},
		{hdrOriginalURI, "/healthz"},
		{hdrForwardedMethod, "HEAD"},
		{hdrOriginalMethod, "HEAD"},
		{hdrForwardedHost, "globex.app.example.com"},
		{DefaultNginxHostHeader, "globex.app.example.com"},
	}
	for _, conv := range conventionCases {
		t.Run(conv.name, func(t *testing.T) {
			ts := startServer(t, newFake(), withConvention(conv.name))
			orig := origRequest{"GET", "/api/reports", "acme.app.example.com"}
			for _, sp := range spoofs {
				method, target, h := conv.build(orig)
				h.Set("Authorization", "Bearer bob-token")
				h.Add(sp.header, sp.value)
				_, _, before := ts.fake.lastRequest()
				resp, body := ts.send(t, method, target, h)
				_, _, after := ts.fake.lastRequest()
				assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s: got %d, want 400; body %s", sp.header, sp.value, resp.StatusCode, body)
				assert.Equal(t, before, after, "%s: the pdp was asked", sp.header)
				assert.Contains(t, body, `"reason":"header_conflict"`)
			}
			_, metrics := ts.get(t, "/metrics", nil)
			for _, sp := range spoofs {
				assert.Contains(t, metrics, `forward_auth_header_conflicts_total{header="`+http.CanonicalHeaderKey(sp.header)+`"} 1`)
			}

			// Another convention's header that agrees is no conflict (a proxy may set both).
			method, target, h := conv.build(orig)
			h.Set("Authorization", "Bearer alice-token")
			h.Set(hdrForwardedURI, "/api/reports")
			h.Set(hdrOriginalURI, "/api/reports")
			h.Set(hdrForwardedMethod, "get")
			resp, body := ts.send(t, method, target, h)
			assert.Equal(t, http.StatusOK, resp.StatusCode, "agreeing headers: body %s", body)
		})
	}
}

func TestForwardAuthMissingHeaders(t *testing.T) {
	t.Run("nginx without the host header behind a host pattern", func(t *testing.T) {
		ts := startServer(t, newFake(), withConvention(ConventionNginx))
		resp, body := ts.send(t, http.MethodGet, "/auth", http.Header{
			"X-Original-Method": {"GET"}, "X-Original-Uri": {"/api/reports"}, "Authorization": {"Bearer alice-token"},
		})
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "a host pattern must not silently bind nothing; body %s", body)
		assert.Contains(t, body, `"reason":"missing_host"`)
	})
	t.Run("no host pattern: no host needed", func(t *testing.T) {
		ts := startServer(t, newFake(), func(c *Config) { c.ForwardAuthHeaders = ConventionNginx })
		resp, body := ts.send(t, http.MethodGet, "/auth", http.Header{
			"X-Original-Method": {"GET"}, "X-Original-Uri": {"/api/reports"}, "Authorization": {"Bearer alice-token"},
		})
		assert.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
	})
	t.Run("missing method", func(t *testing.T) {
		ts := startServer(t, newFake(), withConvention(ConventionTraefik))
		resp, body := ts.send(t, http.MethodGet, "/auth", http.Header{
			"X-Forwarded-Uri": {"/api/reports"}, "X-Forwarded-Host": {"acme.app.example.com"}, "Authorization": {"Bearer alice-token"},
		})
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Contains(t, body, `"reason":"missing_method"`)
	})
	t.Run("missing uri", func(t *testing.T) {
		ts := startServer(t, newFake(), withConvention(ConventionCaddy))
		resp, body := ts.send(t, http.MethodGet, "/auth", http.Header{"X-Forwarded-Method": {"GET"}, "Authorization": {"Bearer alice-token"}})
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Contains(t, body, `"reason":"missing_uri"`)
	})
	t.Run("repeated own header", func(t *testing.T) {
		ts := startServer(t, newFake(), withConvention(ConventionTraefik))
		resp, body := ts.send(t, http.MethodGet, "/auth", http.Header{
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/reports", "/healthz"},
			"X-Forwarded-Host": {"acme.app.example.com"}, "Authorization": {"Bearer alice-token"},
		})
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Contains(t, body, `"reason":"header_conflict"`)
	})
	t.Run("envoy-http: /auth alone has no target", func(t *testing.T) {
		ts := startServer(t, newFake(), withConvention(ConventionEnvoyHTTP))
		resp, body := ts.send(t, http.MethodGet, "/auth", http.Header{"Host": {"acme.app.example.com"}, "Authorization": {"Bearer alice-token"}})
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Contains(t, body, `"reason":"missing_uri"`)
	})
	t.Run("envoy-http: /health below /auth is a request, not the pdp's health", func(t *testing.T) {
		ts := startServer(t, newFake(), withConvention(ConventionEnvoyHTTP))
		resp, body := ts.send(t, http.MethodGet, "/auth/health", http.Header{"Host": {"acme.app.example.com"}, "Authorization": {"Bearer alice-token"}})
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "body %s", body)
	})
}

func TestForwardAuthNginxHostHeader(t *testing.T) {
	ts := startServer(t, newFake(), withConvention(ConventionNginx), func(c *Config) { c.ForwardAuthHostHeader = "X-Real-Host" })
	h := http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/api/reports"}, "Authorization": {"Bearer alice-token"}}
	h.Set("X-Real-Host", "globex.app.example.com")
	resp, body := ts.send(t, http.MethodGet, "/auth", h)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "the named header binds the tenant; body %s", body)
	assert.Contains(t, body, "cross_tenant")

	h.Set("X-Real-Host", "acme.app.example.com")
	h.Set(DefaultNginxHostHeader, "globex.app.example.com")
	resp, body = ts.send(t, http.MethodGet, "/auth", h)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "the default header is now another convention's; body %s", body)
}

func TestForwardAuthTrustedPermission(t *testing.T) {
	ts := startServer(t, newFake(), func(c *Config) {
		c.TrustForwardedPermission = true
		c.ForwardAuthHeaders = ConventionTraefik
	})
	resp, body := ts.get(t, "/auth", map[string]string{
		"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/anything/not/in/the/table", "Authorization": "Bearer alice-token",
		"X-Neoauthz-Permission": "users.read.tenant",
	})
	require.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
	last, _, _ := ts.fake.lastRequest()
	assert.Equal(t, "users.read.tenant", last.Permission)

	ts = startServer(t, newFake(), withConvention(ConventionTraefik))
	resp, body = ts.get(t, "/auth", map[string]string{
		"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/reports", "X-Forwarded-Host": "acme.app.example.com",
		"Authorization": "Bearer alice-token", "X-Neoauthz-Permission": "billing.manage.tenant",
	})
	require.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
	last, _, _ = ts.fake.lastRequest()
	assert.Equal(t, "reports.read.tenant", last.Permission, "an untrusted permission header is ignored")
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestForwardAuthOff: without a convention /auth is not served, and the pdp says at start
// which setting serves it.
func TestForwardAuthOff(t *testing.T) {
	ts := startServer(t, newFake())
	resp, body := ts.get(t, "/auth", map[string]string{
		"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/healthz", "X-Original-URI": "/healthz",
	})
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Contains(t, body, EnvForwardAuthHeaders)
	_, _, calls := ts.fake.lastRequest()
	assert.Zero(t, calls)

	var logs syncBuffer
	cfg := DefaultConfig()
	srv, err := New(cfg, newFake(), nil, slog.New(slog.NewJSONHandler(&logs, nil)), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(ctx, Listeners{}) }()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "forward auth (/auth) is off") }, 10*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	assert.Contains(t, logs.String(), "-forward-auth-headers")
	assert.Contains(t, logs.String(), EnvForwardAuthHeaders)
}

// TestMetricsAddr: with a metrics listener, /health and /metrics move there and the HTTP
// listener serves /auth alone.
func TestMetricsAddr(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.ForwardAuthHeaders = ConventionTraefik
	cfg.ReadinessPollInterval = 20 * time.Millisecond
	srv, err := New(cfg, newFake(), loadTestRoutes(t), nil, nil)
	require.NoError(t, err)
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(ctx, Listeners{HTTP: hl, Metrics: ml}) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	status := func(base, path string, h map[string]string) int {
		req, err := http.NewRequest(http.MethodGet, "http://"+base+path, nil)
		require.NoError(t, err)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	fwd := map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/healthz"}
	assert.Equal(t, http.StatusOK, status(ml.Addr().String(), "/metrics", nil))
	require.Eventually(t, func() bool { return status(ml.Addr().String(), "/health", nil) == http.StatusOK }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, http.StatusNotFound, status(hl.Addr().String(), "/metrics", nil))
	assert.Equal(t, http.StatusNotFound, status(hl.Addr().String(), "/health", nil))
	assert.Equal(t, http.StatusOK, status(hl.Addr().String(), "/auth", fwd))
	assert.Equal(t, http.StatusNotFound, status(ml.Addr().String(), "/auth", fwd))
}

// TestForwardAuthConsistencyToken: the token is read from x-neoauthz-consistency whatever the
// convention, comes back with the answer, and a bad one is a 400 without asking the pdp.
func TestForwardAuthConsistencyToken(t *testing.T) {
	orig := origRequest{"GET", "/api/reports", "acme.app.example.com"}
	for _, conv := range conventionCases {
		t.Run(conv.name, func(t *testing.T) {
			ts := startServer(t, newFake(), withConvention(conv.name))
			sent := consistency.ForAdmin(77).String()
			method, target, h := conv.build(orig)
			h.Set("Authorization", "Bearer alice-token")
			h.Set("X-Neoauthz-Consistency", sent)
			resp, body := ts.send(t, method, target, h)
			require.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
			last, _, _ := ts.fake.lastRequest()
			assert.Equal(t, uint64(77), last.Consistency.Admin)
			assert.Equal(t, sent, resp.Header.Get("X-Neoauthz-Consistency"), "the token of the data used")
			assert.Contains(t, body, `"consistency_token":"`+sent+`"`)

			h.Set("Authorization", "Bearer bob-token")
			resp, _ = ts.send(t, method, target, h)
			require.Equal(t, http.StatusForbidden, resp.StatusCode)
			assert.Equal(t, sent, resp.Header.Get("X-Neoauthz-Consistency"), "a deny names its data too")

			for name, tc := range map[string]struct {
				header, value string
				want          int
				reason        string
			}{
				"malformed":          {"X-Neoauthz-Consistency", "nz1.????", http.StatusBadRequest, "bad_consistency_token"},
				"impossible":         {"X-Neoauthz-Consistency", consistency.ForAdmin(fakeCurrentVersion + 5).String(), http.StatusBadRequest, "bad_consistency_token"},
				"replaced header":    {"X-Neoauthz-Min-Version", "12", http.StatusBadRequest, "bad_min_version"},
				"version unreadable": {"X-Neoauthz-Consistency", consistency.ForAdmin(fakeVersionDown).String(), http.StatusServiceUnavailable, "unavailable"},
			} {
				method, target, h := conv.build(orig)
				h.Set("Authorization", "Bearer alice-token")
				h.Set(tc.header, tc.value)
				_, _, before := ts.fake.lastRequest()
				resp, body := ts.send(t, method, target, h)
				assert.Equal(t, tc.want, resp.StatusCode, "%s: body %s", name, body)
				assert.Contains(t, body, `"reason":"`+tc.reason+`"`, name)
				_, _, after := ts.fake.lastRequest()
				assert.Equal(t, before, after, "%s: the pdp was asked to decide", name)
			}
		})
	}
}
