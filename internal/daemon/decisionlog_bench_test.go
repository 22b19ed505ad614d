package daemon_test

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/decisionlog"
	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/server"
)

// BenchmarkExtAuthzDecisionLog is the warm ext_authz handler with the decision log off, and
// on with its defaults (1% of allows sampled) writing to a real analytics database.
// "on-all" records every allow (sample rate 1, no rate limit to speak of): the worst case,
// where the queue and COPY see every decision.
func BenchmarkExtAuthzDecisionLog(b *testing.B) {
	st := newStack(b, server.DefaultConfig(), "")
	srv, w := st.srv, st.w
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/users", Headers: map[string]string{"authorization": "Bearer " + st.token(b, "acme", "alice")}}},
		ContextExtensions: map[string]string{"permission": "users.read.tenant"},
	}}
	res, err := srv.Check(context.Background(), req)
	require.NoError(b, err)
	require.NotNil(b, res.GetOkResponse(), "warm-up must allow")
	w.AddDatabase(b, "us-east-1", "us-analytics", registry.TypeAnalytics)
	run, err := w.Fleet.Apply(context.Background(), fleet.Plan{Scope: fleet.ScopeAnalytics})
	require.NoError(b, err)
	require.Equal(b, "succeeded", run.Status)

	for _, tc := range []struct {
		name string
		cfg  *decisionlog.Config
	}{
		{"off", nil},
		{"on", &decisionlog.Config{AllowSampleRate: decisionlog.DefaultAllowSampleRate}},
		{"on-all", &decisionlog.Config{AllowSampleRate: 1, TenantRate: 1e9}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			if tc.cfg == nil {
				srv.SetDecisionLog(nil)
				close(done)
			} else {
				rec, err := decisionlog.New(*tc.cfg, w.Admin, w.Registry, nil, prometheus.NewRegistry())
				require.NoError(b, err)
				srv.SetDecisionLog(rec)
				go func() { defer close(done); _ = rec.Run(ctx) }()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := srv.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cancel()
			<-done
		})
	}
}
