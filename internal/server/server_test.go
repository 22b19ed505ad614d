package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

func healthStatus(t *testing.T, conn *grpc.ClientConn, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
	require.NoError(t, err)
	return resp.GetStatus()
}

func TestHealth(t *testing.T) {
	fake := newFake()
	fake.ready.Store(false)
	ts := startServer(t, fake)

	for _, svc := range []string{"", "neoauthz.v1.AuthorizationService", "envoy.service.auth.v3.Authorization"} {
		assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, healthStatus(t, ts.conn, svc), "service %q before ready", svc)
	}
	resp, body := ts.get(t, "/health", nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	var h healthBody
	require.NoError(t, json.Unmarshal([]byte(body), &h))
	assert.Equal(t, "unavailable", h.Status)
	assert.Equal(t, "down", h.Dependencies["postgres"].Status)

	fake.ready.Store(true)
	require.Eventually(t, func() bool {
		return healthStatus(t, ts.conn, "") == healthpb.HealthCheckResponse_SERVING
	}, 5*time.Second, 10*time.Millisecond, "gRPC health never became SERVING")
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, healthStatus(t, ts.conn, "envoy.service.auth.v3.Authorization"))

	resp, body = ts.get(t, "/health", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
	h = healthBody{}
	require.NoError(t, json.Unmarshal([]byte(body), &h))
	assert.Equal(t, "degraded", h.Status, "redis is degraded in the fake")
	assert.True(t, h.Serving)
	assert.Equal(t, "ok", h.Dependencies["postgres"].Status)
	assert.InDelta(t, 1.5, h.Dependencies["postgres"].LatencyMS, 0.001)
	assert.Equal(t, "timeout", h.Dependencies["redis"].Error)

	ts.srv.SetServing(false)
	assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, healthStatus(t, ts.conn, ""))
	resp, _ = ts.get(t, "/health", nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	ts.srv.SetServing(true)

	// Readiness is followed after the first success too: lost, then back.
	fake.ready.Store(false)
	require.Eventually(t, func() bool {
		return healthStatus(t, ts.conn, "") == healthpb.HealthCheckResponse_NOT_SERVING
	}, 5*time.Second, 10*time.Millisecond, "gRPC health stayed SERVING after the pdp could no longer decide")
	fake.ready.Store(true)
	require.Eventually(t, func() bool {
		return healthStatus(t, ts.conn, "") == healthpb.HealthCheckResponse_SERVING
	}, 5*time.Second, 10*time.Millisecond, "gRPC health did not come back")
}

func TestReflection(t *testing.T) {
	ts := startServer(t, newFake())
	stream, err := reflectionpb.NewServerReflectionClient(ts.conn).ServerReflectionInfo(context.Background())
	require.NoError(t, err)
	require.NoError(t, stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}))
	resp, err := stream.Recv()
	require.NoError(t, err)
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	assert.Contains(t, names, "neoauthz.v1.AuthorizationService")
	assert.Contains(t, names, "envoy.service.auth.v3.Authorization")
	assert.Contains(t, names, "grpc.health.v1.Health")
	require.NoError(t, stream.CloseSend())
}

func TestMetrics(t *testing.T) {
	ts := startServer(t, newFake(), func(c *Config) { c.ForwardAuthHeaders = ConventionTraefik })
	client := authzv1.NewAuthorizationServiceClient(ts.conn)
	_, err := client.Check(context.Background(), &authzv1.CheckRequest{Subject: tokenSubject("alice-token"), Permission: "users.read.tenant"})
	require.NoError(t, err)
	_, err = client.Check(context.Background(), &authzv1.CheckRequest{Subject: tokenSubject("expired"), Permission: "users.read.tenant"})
	require.NoError(t, err)
	ts.get(t, "/auth", map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/reports", "Authorization": "Bearer bob-token"})

	resp, body := ts.get(t, "/metrics", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, want := range []string{
		`permission_checks_total{permission="users.read.tenant",result="allowed",tenant="acme"} 1`,
		`permission_checks_total{permission="users.read.tenant",result="unauthenticated",tenant=""} 1`,
		`permission_checks_total{permission="reports.read.tenant",result="denied",tenant="globex"} 1`,
		`authn_failures_total{reason="expired"} 1`,
		`permission_check_duration_seconds_count{api="grpc"} 2`,
		`permission_check_duration_seconds_count{api="forwardauth"} 1`,
	} {
		assert.Contains(t, body, want)
	}
}

func TestLabelLimiter(t *testing.T) {
	l := labelLimiter{max: 2}
	assert.Equal(t, "a", l.value("a"))
	assert.Equal(t, "b", l.value("b"))
	assert.Equal(t, "a", l.value("a"), "known values stay")
	assert.Equal(t, otherLabel, l.value("c"), "got a third value, want other")
	assert.Equal(t, "b", l.value("b"))
}

func TestNewSharesRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := New(DefaultConfig(), newFake(), nil, nil, reg)
	require.NoError(t, err)
	_, err = New(DefaultConfig(), newFake(), nil, nil, reg)
	require.NoError(t, err, "a second server on the same registry reuses the collectors")
}

func TestNoRouteTable(t *testing.T) {
	srv, err := New(DefaultConfig(), newFake(), nil, nil, nil)
	require.NoError(t, err)
	resp, err := srv.Check(context.Background(), envoyRequest("GET", "/api/reports", "app", bearer("alice-token"), nil))
	require.NoError(t, err)
	assert.Equal(t, "no_permission", deniedBody(t, resp).Error.Details.Reason)

	resp, err = srv.Check(context.Background(), envoyRequest("GET", "/api/reports", "app", bearer("alice-token"), map[string]string{"permission": "reports.read.tenant"}))
	require.NoError(t, err)
	okHeaders(t, resp)
}

func TestGracefulShutdown(t *testing.T) {
	fake := newFake()
	cfg := DefaultConfig()
	cfg.ReadinessPollInterval = 10 * time.Millisecond
	srv, err := New(cfg, fake, loadTestRoutes(t), slog.New(slog.NewJSONHandler(io.Discard, nil)), nil)
	require.NoError(t, err)
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, glis, hlis) }()

	conn, err := grpc.NewClient(glis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	require.Eventually(t, func() bool { return healthStatus(t, conn, "") == healthpb.HealthCheckResponse_SERVING }, 5*time.Second, 10*time.Millisecond)

	// An in-flight check must complete during graceful shutdown.
	type result struct {
		allowed bool
		err     error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := authzv1.NewAuthorizationServiceClient(conn).Check(context.Background(),
			&authzv1.CheckRequest{Subject: tokenSubject("alice-token"), Permission: "slow.op.tenant"})
		inflight <- result{resp.GetAllowed(), err}
	}()
	select {
	case <-fake.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow check never started")
	}

	cancel()
	// Health goes NOT_SERVING as soon as shutdown begins, before the drain finishes.
	require.Eventually(t, func() bool { return srv.shuttingDown.Load() }, 5*time.Second, time.Millisecond)
	resp, err := srv.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, resp.GetStatus())
	srv.SetServing(true) // ignored once shutdown began
	resp, err = srv.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, resp.GetStatus())

	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) before the in-flight check finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(fake.release)
	r := <-inflight
	require.NoError(t, r.err, "the in-flight check was cut off")
	assert.True(t, r.allowed)

	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
	_, err = net.DialTimeout("tcp", hlis.Addr().String(), time.Second)
	assert.Error(t, err, "the HTTP listener is closed")
}

func TestShutdownTimeoutFallsBackToStop(t *testing.T) {
	fake := newFake()
	cfg := DefaultConfig()
	cfg.ShutdownTimeout = 100 * time.Millisecond
	srv, err := New(cfg, fake, nil, nil, nil)
	require.NoError(t, err)
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, glis, nil) }()

	conn, err := grpc.NewClient(glis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	callErr := make(chan error, 1)
	go func() {
		_, err := authzv1.NewAuthorizationServiceClient(conn).Check(context.Background(),
			&authzv1.CheckRequest{Subject: tokenSubject("alice-token"), Permission: "slow.op.tenant"})
		callErr <- err
	}()
	<-fake.started
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
		assert.Less(t, time.Since(start), 5*time.Second)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return: Stop fallback missing")
	}
	assert.Error(t, <-callErr, "the stuck call was cut off by Stop")
	close(fake.release)
}

func TestServeUnixSocketStale(t *testing.T) {
	opt := withUnixSocket(t)
	var cfg Config
	opt(&cfg)
	// A stale socket file from a crashed run is replaced.
	l, err := net.Listen("unix", cfg.UnixSocket)
	require.NoError(t, err)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, l.Close())

	ts := startServer(t, newFake(), func(c *Config) { c.UnixSocket = cfg.UnixSocket })
	resp, err := authzv1.NewAuthorizationServiceClient(ts.unixConn(t)).Check(context.Background(),
		&authzv1.CheckRequest{Subject: principalSubject("acme", "alice"), Permission: "users.read.tenant"})
	require.NoError(t, err)
	assert.True(t, resp.GetAllowed())

	// A socket another server is serving is not stolen.
	srv, err := New(Config{UnixSocket: cfg.UnixSocket, GRPCAddr: ":0", HTTPAddr: ":0", TenantHeader: "a", UserHeader: "b", DecisionIDHeader: "c",
		ShutdownTimeout: time.Second, ReadinessPollInterval: time.Second}, newFake(), nil, nil, nil)
	require.NoError(t, err)
	err = srv.Serve(context.Background(), nil, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "in use", "got %v, want in use", err)
}

func TestServeWithEndedContext(t *testing.T) {
	srv, err := New(DefaultConfig(), newFake(), nil, nil, nil)
	require.NoError(t, err)
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.NoError(t, srv.Serve(ctx, glis, hlis), "a shutdown that wins the race with startup is not an error")
}

func TestLogs(t *testing.T) {
	var buf strings.Builder
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(DefaultConfig(), newFake(), loadTestRoutes(t), logger, nil)
	require.NoError(t, err)
	ctx := context.Background()
	const secret = "eyJzZWNyZXQiOiJ0b2tlbiJ9"
	for _, req := range []*authv3.CheckRequest{
		envoyRequest("GET", "/api/reports?sig=querysecret", "app", bearer("alice-token"), nil),
		envoyRequest("GET", "/api/reports?sig=querysecret", "app", bearer("bob-token"), nil),
		envoyRequest("GET", "/api/reports", "app", bearer(secret), nil),
		envoyRequest("GET", "/api/reports", "app", bearer("expired"), nil),
	} {
		_, err := srv.Check(ctx, req)
		require.NoError(t, err)
	}
	_, err = srv.Check(ctx, envoyRequest("GET", "/api/broken", "app", bearer("alice-token"), nil))
	require.Error(t, err)

	out := buf.String()
	for _, forbidden := range []string{secret, "alice-token", "bob-token", "querysecret", "Bearer"} {
		assert.NotContains(t, out, forbidden)
	}
	var levels []string
	for line := range strings.Lines(out) {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "line %q", line)
		if m["msg"] != "decision" {
			continue
		}
		levels = append(levels, m["level"].(string)+":"+m["result"].(string)+":"+m["reason"].(string))
		assert.NotContains(t, m["path"], "?", "the query is never logged")
		assert.NotEmpty(t, m["decision_id"])
	}
	assert.Equal(t, []string{
		"DEBUG:allowed:granted",
		"INFO:denied:no_permission",
		"INFO:unauthenticated:unauthenticated",
		"INFO:unauthenticated:unauthenticated",
		"ERROR:error:unavailable",
	}, levels)
}
