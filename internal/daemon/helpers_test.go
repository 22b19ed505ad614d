package daemon_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/redistest"
	"github.com/neofast/neoauthz/internal/testenv"
)

// pdpProc is a whole pdp served on loopback listeners for one test.
type pdpProc struct {
	conn *grpc.ClientConn // gRPC client on its gRPC port
	base string           // its HTTP port's base URL
}

// startPDP serves a pdp on w's admin database, Redis and idp (audience "neoauthz"), with the
// route table routes and forward auth reading Traefik's headers; mod adjusts the configuration. It returns once gRPC health is SERVING
// and stops the pdp when the test ends.
func startPDP(t *testing.T, w *testenv.World, idp *authntest.Issuer, routes string, mod func(*daemon.Config)) *pdpProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	routesFile := filepath.Join(t.TempDir(), "routes.json")
	require.NoError(t, os.WriteFile(routesFile, []byte(routes), 0o600))
	cfg := daemon.DefaultConfig()
	cfg.AdminURL = w.AdminURL
	cfg.RedisURL = redistest.URL(t)
	cfg.TrustedIssuers = []string{idp.URL()}
	cfg.Audiences = []string{"neoauthz"}
	cfg.Server.RouteTablePath = routesFile
	cfg.Server.ForwardAuthHeaders = "traefik"
	if mod != nil {
		mod(&cfg)
	}
	require.NoError(t, cfg.Validate())
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- daemon.Serve(ctx, cfg, slog.New(slog.DiscardHandler), grpcLis, httpLis) }()
	conn, err := grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Error("the pdp did not shut down")
		}
	})
	require.Eventually(t, func() bool {
		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING
	}, 15*time.Second, 20*time.Millisecond, "gRPC health never reached SERVING")
	return &pdpProc{conn: conn, base: "http://" + httpLis.Addr().String()}
}
