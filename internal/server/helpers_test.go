package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/neofast/neoauthz/internal/routes"
)

// testRoutes is the route table of the transport tests.
const testRoutes = `{ "routes": [
  { "method": "GET", "path": "/api/projects/{owner}/{id}",            "permission": "projects.read", "owner": "owner" },
  { "method": "PUT", "path": "/api/teams/{team_id}/projects/{id}",    "permission": "projects.update", "team": "team_id" },
  { "method": "GET", "path": "/api/reports",                          "permission": "reports.read.tenant" },
  { "method": "GET", "path": "/api/tenants/{tenant}/reports",         "permission": "reports.read.tenant", "tenant": "tenant" },
  { "method": "GET", "path": "/api/tenants/{tenant}",                 "permission": "tenants.read", "tenant": "tenant" },
  { "method": "GET", "path": "/api/files/{path...}",                  "permission": "files.read.tenant" },
  { "method": "GET", "path": "/api/slow",                             "permission": "slow.op.tenant" },
  { "method": "GET", "path": "/api/broken",                           "permission": "fail.unavailable.tenant" },
  { "method": "GET", "path": "/healthz",                              "public": true }
]}`

func loadTestRoutes(t testing.TB) *routes.Table {
	t.Helper()
	tbl, err := routes.Load(strings.NewReader(testRoutes))
	require.NoError(t, err)
	return tbl
}

type testServer struct {
	srv    *Server
	fake   *fakeDecider
	reg    *prometheus.Registry
	conn   *grpc.ClientConn
	http   string // base URL
	unix   string // Unix socket path, when configured
	cancel context.CancelFunc
	done   chan error
}

type serverOption func(*Config)

// startServer runs a Server with the fake decider on 127.0.0.1:0 listeners and a gRPC client
// connected to it. The server is stopped at the end of the test.
func startServer(t *testing.T, fake *fakeDecider, opts ...serverOption) *testServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ReadinessPollInterval = 20 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	for _, o := range opts {
		o(&cfg)
	}
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg, fake, loadTestRoutes(t), logger, reg)
	require.NoError(t, err)

	glis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{srv: srv, fake: fake, reg: reg, http: "http://" + hlis.Addr().String(), unix: cfg.UnixSocket, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ctx, glis, hlis) }()

	ts.conn, err = grpc.NewClient(glis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = ts.conn.Close()
		cancel()
		select {
		case <-ts.done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	if cfg.UnixSocket != "" {
		require.Eventually(t, func() bool {
			c, err := net.Dial("unix", cfg.UnixSocket)
			if err == nil {
				_ = c.Close()
			}
			return err == nil
		}, 5*time.Second, 10*time.Millisecond, "unix socket never came up")
	}
	return ts
}

func withUnixSocket(t *testing.T) serverOption {
	// A short directory: Unix socket paths are limited to about 100 bytes, and t.TempDir()
	// can be longer than that.
	dir, err := os.MkdirTemp("", "nz")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	p := filepath.Join(dir, "pdp.sock")
	return func(c *Config) { c.UnixSocket = p }
}

// unixConn dials the server's Unix socket with a real gRPC client.
func (ts *testServer) unixConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+ts.unix, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// httpResult is what get keeps of a response: its status and headers. The body is read and
// closed by get and returned as a string.
type httpResult struct {
	StatusCode int
	Header     http.Header
}

// get sends a GET to the HTTP listener, reads and closes the response body, and returns the
// status, headers and body.
func (ts *testServer) get(t *testing.T, path string, header map[string]string) (httpResult, string) {
	t.Helper()
	h := http.Header{}
	for k, v := range header {
		h.Set(k, v)
	}
	return ts.send(t, http.MethodGet, path, h)
}

// longToken is a bearer token of a real Keycloak access token's length (RS256, a realm's
// usual claims); the fake decider takes it for alice's.
var longToken = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImJlbmNoIn0." + strings.Repeat("eyJzdWIiOiJhbGljZSJ9", 40) + "." + strings.Repeat("c2lnbmF0dXJl", 29)
