package daemon_test

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/metrictest"
	"github.com/neofast/neoauthz/internal/server"
)

// BenchmarkExtAuthzHandlerWarm calls the ext_authz handler in process — token from the
// verified-token cache, permission set from L1, real engine — the way Envoy's requests reach
// it, minus the network.
func BenchmarkExtAuthzHandlerWarm(b *testing.B) {
	ctx := context.Background()
	st := newStack(b, server.DefaultConfig(), "")
	srv, tok := st.srv, st.token(b, "acme", "alice")

	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/users", Headers: map[string]string{"authorization": "Bearer " + tok}}},
		ContextExtensions: map[string]string{"permission": "users.read.tenant"},
	}}
	res, err := srv.Check(ctx, req)
	require.NoError(b, err)
	require.NotNil(b, res.GetOkResponse(), "warm-up must allow")
	st.svc.WaitIdle()
	// The pdp's PostgreSQL reads (directory and permission sets): a warm check makes none.
	reads := func() float64 { return metrictest.Sum(b, st.reg, "db_query_duration_seconds", nil) }
	before := reads()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := srv.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := reads() - before; n != 0 {
		b.Fatalf("the warm path read PostgreSQL %.0f times in %d checks", n, b.N)
	}
}

func cacheOpts(prefix string) cache.Options { return cache.Options{Prefix: prefix} }
