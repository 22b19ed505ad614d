package daemon_test

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

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
	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := srv.Check(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	// wire adds what gRPC's codec does around the handler: decode the request, encode the
	// answer (dynamic metadata and header options included).
	wire, err := proto.Marshal(req)
	require.NoError(b, err)
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in authv3.CheckRequest
			if err := proto.Unmarshal(wire, &in); err != nil {
				b.Fatal(err)
			}
			res, err := srv.Check(ctx, &in)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := proto.Marshal(res); err != nil {
				b.Fatal(err)
			}
		}
	})
	if n := reads() - before; n != 0 {
		b.Fatalf("the warm path read PostgreSQL %.0f times", n)
	}
}

func cacheOpts(prefix string) cache.Options { return cache.Options{Prefix: prefix} }
