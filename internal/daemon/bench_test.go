package daemon_test

import (
	"context"
	"net"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/metrictest"
	"github.com/neofast/neoauthz/internal/server"
)

// BenchmarkExtAuthzHandlerWarm sends warm ext_authz requests over gRPC the way Envoy does —
// token from the verified-token cache, permission set from L1, real engine — through the pdp's
// gRPC server (its codec and registered handler) on an in-memory listener, so only the
// network is missing. served counts what the process does for one request, the client's
// included: it sends the request's bytes, encoded once, and takes the answer's bytes without
// decoding them, so that a richer answer costs the client nothing. ceiling is the same client
// against a do-nothing ext_authz server (gRPC's proto codec decoding the whole request, an
// empty OK), so served − ceiling is what the pdp adds.
func BenchmarkExtAuthzHandlerWarm(b *testing.B) {
	st := newStack(b, server.DefaultConfig(), "")
	tok := st.token(b, "acme", "alice")
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/users", Headers: map[string]string{"authorization": "Bearer " + tok}}},
		ContextExtensions: map[string]string{"permission": "users.read.tenant"},
	}}

	wire, err := proto.Marshal(req)
	require.NoError(b, err)
	served := serveBufconn(b, st.srv.GRPCServer())
	allows := func(tb testing.TB, conn *grpc.ClientConn) {
		var res authv3.CheckResponse
		require.NoError(tb, proto.Unmarshal(check(tb, conn, wire), &res))
		require.NotNil(tb, res.GetOkResponse(), "got %v, want an OK", &res)
	}
	allows(b, served)
	st.svc.WaitIdle()
	// The pdp's PostgreSQL reads (directory and permission sets): a warm check makes none.
	reads := func() float64 { return metrictest.Sum(b, st.reg, "db_query_duration_seconds", nil) }
	before := reads()
	b.Run("served", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			check(b, served, wire)
		}
	})
	allows(b, served)
	if n := reads() - before; n != 0 {
		b.Fatalf("the warm path read PostgreSQL %.0f times", n)
	}

	ceilingServer := grpc.NewServer()
	authv3.RegisterAuthorizationServer(ceilingServer, doNothing{})
	ceiling := serveBufconn(b, ceilingServer)
	b.Run("ceiling", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			check(b, ceiling, wire)
		}
	})
	allows(b, ceiling)
}

// serveBufconn serves s on an in-memory listener and returns a connection to it.
func serveBufconn(tb testing.TB, s *grpc.Server) *grpc.ClientConn {
	tb.Helper()
	lis := bufconn.Listen(1 << 20)
	go func() { _ = s.Serve(lis) }()
	tb.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// check sends one encoded CheckRequest on conn and returns the encoded answer.
func check(tb testing.TB, conn *grpc.ClientConn, req []byte) []byte {
	var res []byte
	if err := conn.Invoke(context.Background(), "/envoy.service.auth.v3.Authorization/Check", &req, &res,
		grpc.ForceCodecV2(rawCodec{})); err != nil {
		tb.Fatal(err)
	}
	return res
}

// rawCodec sends and takes messages already encoded: *[]byte both ways. Its name is proto's,
// so that a server picks its protobuf codec for the request.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// doNothing is an ext_authz server that allows everything.
type doNothing struct {
	authv3.UnimplementedAuthorizationServer
}

func (doNothing) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, nil
}

func cacheOpts(prefix string) cache.Options { return cache.Options{Prefix: prefix} }
