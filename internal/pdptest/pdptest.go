// Package pdptest runs a whole pdp in process for tests (daemon.Serve on loopback listeners).
package pdptest

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/neofast/neoauthz/internal/daemon"
)

// PDP is a pdp served in process on loopback listeners.
type PDP struct {
	Conn     *grpc.ClientConn // to its gRPC listener
	HTTPAddr string           // host:port of its HTTP listener
}

// Start runs daemon.Serve with cfg (its addresses are replaced by loopback listeners) until
// the test ends, and returns once gRPC health says SERVING.
func Start(tb testing.TB, cfg daemon.Config) *PDP {
	tb.Helper()
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("pdp configuration: %v", err)
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.Serve(ctx, cfg, slog.New(slog.DiscardHandler), grpcLis, httpLis) }()
	conn, err := grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = conn.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("the pdp stopped with an error: %v", err)
			}
		case <-time.After(20 * time.Second):
			tb.Error("the pdp did not shut down")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return &PDP{Conn: conn, HTTPAddr: httpLis.Addr().String()}
		}
		select {
		case err := <-done:
			tb.Fatalf("the pdp stopped while starting: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("gRPC health never reached SERVING (last: %v)", err)
		}
	}
}
