package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/decisionlog"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// keepAll is a decision log that keeps every decision in memory.
type keepAll struct {
	mu      sync.Mutex
	entries []decisionlog.Entry
}

func (k *keepAll) Keep(string, bool) bool { return true }

func (k *keepAll) Record(e decisionlog.Entry) {
	k.mu.Lock()
	k.entries = append(k.entries, e)
	k.mu.Unlock()
}

func (k *keepAll) take() []decisionlog.Entry {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := k.entries
	k.entries = nil
	return out
}

func TestDecisionsAreRecordedWithWhatTheyWereMadeOn(t *testing.T) {
	ts := startServer(t, newFake(), withConvention(ConventionTraefik))
	log := &keepAll{}
	ts.srv.SetDecisionLog(log)
	ctx := context.Background()

	req := envoyRequest("GET", "/api/reports?secret=x", "app.example.com", bearer("alice-token"), nil)
	req.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: "10.1.2.3"}}}}
	resp, err := ts.srv.Check(ctx, req)
	require.NoError(t, err)
	got := log.take()
	require.Len(t, got, 1)
	e := got[0]
	assert.Equal(t, okHeaders(t, resp)["x-neoauthz-decision-id"].GetHeader().GetValue(), e.DecisionID, "the decision id of the answer leads to the entry")
	assert.Equal(t, "t-acme", e.TenantID)
	assert.Equal(t, decisionlog.LevelTenant, e.Level)
	assert.Equal(t, "alice", e.User)
	assert.Equal(t, "reports.read.tenant", e.Permission)
	assert.True(t, e.Allowed)
	assert.Equal(t, "granted", e.Reason)
	assert.Equal(t, "reports.read.tenant", e.GrantCode)
	assert.Equal(t, "member", e.GrantRole)
	assert.EqualValues(t, 7, e.Version)
	assert.Equal(t, decisionlog.TransportExtAuthz, e.Transport)
	assert.Equal(t, "GET", e.Method)
	assert.Equal(t, "/api/reports", e.Path, "normalised, without the query")
	assert.Equal(t, "10.1.2.3", e.Client)
	assert.Positive(t, e.Latency)

	// An unauthenticated request is a deny: recorded, without a subject.
	_, err = ts.srv.Check(ctx, envoyRequest("GET", "/api/reports", "", bearer("expired"), nil))
	require.NoError(t, err)
	got = log.take()
	require.Len(t, got, 1)
	assert.False(t, got[0].Allowed)
	assert.Equal(t, "unauthenticated", got[0].Reason)
	assert.Empty(t, got[0].TenantID)
	assert.Empty(t, got[0].Level)

	// A request that cannot be evaluated is not a decision: nothing is recorded.
	_, err = ts.srv.Check(ctx, envoyRequest("GET", "/api/reports", "", bearer("alice-token"), map[string]string{"permission": "reports.*.tenant"}))
	require.NoError(t, err)
	assert.Empty(t, log.take())

	// neoauthz.v1 Check: the resource and the transport.
	client := authzv1.NewAuthorizationServiceClient(ts.conn)
	_, err = client.Check(ctx, &authzv1.CheckRequest{
		Subject:    &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: "alice-token"}},
		Permission: "projects.update", Resource: &authzv1.Resource{OwnerId: "u-7", TeamId: "team-1"},
	})
	require.NoError(t, err)
	got = log.take()
	require.Len(t, got, 1)
	assert.Equal(t, decisionlog.TransportGRPC, got[0].Transport)
	assert.Equal(t, "u-7", got[0].ResourceOwner)
	assert.Equal(t, "team-1", got[0].ResourceTeam)
	assert.NotEmpty(t, got[0].Client, "the gRPC peer")

	// Forward auth (Traefik's headers).
	method, target, h := conventionCases[1].build(origRequest{"GET", "/api/reports", "app.example.com"})
	h.Set("Authorization", "Bearer bob-token")
	r, _ := ts.send(t, method, target, h)
	assert.Equal(t, http.StatusForbidden, r.StatusCode)
	got = log.take()
	require.Len(t, got, 1)
	assert.Equal(t, decisionlog.TransportForwardAuth, got[0].Transport)
	assert.Equal(t, "no_permission", got[0].Reason)
	assert.Equal(t, "t-globex", got[0].TenantID)

	for _, tok := range []string{"alice-token", "bob-token", "expired"} {
		assert.NotContains(t, fmt.Sprintf("%+v", got), tok, "a token never reaches the decision log")
	}
}

func TestLoggableMethod(t *testing.T) {
	for m, want := range map[string]string{"GET": "GET", "M-SEARCH": "M-SEARCH", "get": "", "G\x00T": "", "": "",
		"AVERYLONGMETHODNAMEX": ""} {
		assert.Equal(t, want, loggableMethod(m), "method %q", m)
	}
}

func TestTransportsAreTheDecisionLogs(t *testing.T) {
	// The decision log stores the metric's api label as the transport.
	assert.Equal(t, []string{decisionlog.TransportExtAuthz, decisionlog.TransportForwardAuth, decisionlog.TransportGRPC, decisionlog.TransportAuthZEN},
		[]string{apiExtAuthz, apiForwardAuth, apiGRPC, apiAuthZEN})
}

func TestPprofIsOffByDefault(t *testing.T) {
	ts := startServer(t, newFake())
	r, _ := ts.get(t, "/debug/pprof/", nil)
	assert.Equal(t, http.StatusNotFound, r.StatusCode)

	on := startServer(t, newFake(), func(c *Config) { c.Pprof = true })
	r, _ = on.get(t, "/debug/pprof/", nil)
	assert.Equal(t, http.StatusOK, r.StatusCode)
	r, _ = on.get(t, "/debug/pprof/goroutine?debug=1", nil)
	assert.Equal(t, http.StatusOK, r.StatusCode)

	// With a metrics address, the profiles move there with /health and /metrics.
	cfg := DefaultConfig()
	cfg.Pprof, cfg.MetricsAddr = true, "127.0.0.1:0"
	srv, err := New(cfg, newFake(), nil, nil, nil)
	require.NoError(t, err)
	for _, tc := range []struct {
		h    http.Handler
		want int
	}{{srv.OpsHandler(), http.StatusOK}, {srv.HTTPHandler(), http.StatusNotFound}} {
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		assert.Equal(t, tc.want, rec.Code)
	}
}
