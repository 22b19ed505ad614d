package server

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// BenchmarkExtAuthzCheck runs the ext_authz handler in process (no network), as
// opa-envoy-plugin's BenchmarkCheck does: route table match, token, fake decision, OK response
// with identity headers and dynamic metadata, metrics and a (disabled) debug log line.
func BenchmarkExtAuthzCheck(b *testing.B) {
	srv, err := New(DefaultConfig(), newFake(), loadTestRoutes(b), nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	cases := []struct {
		name string
		ext  map[string]string
		path string
		tok  string
		want codes.Code
	}{
		{"allow/route-table", nil, "/api/projects/u-9/p-1?x=1", "alice-token", codes.OK},
		{"allow/context-extension", map[string]string{"permission": "users.read.tenant"}, "/api/users", "alice-token", codes.OK},
		{"deny", nil, "/api/reports", "bob-token", codes.PermissionDenied},
	}
	for _, tc := range cases {
		req := envoyRequest("GET", tc.path, "app.example.com", bearer(tc.tok), tc.ext)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := srv.Check(ctx, req)
				if err != nil || codes.Code(resp.GetStatus().GetCode()) != tc.want {
					b.Fatalf("got %v, %v; want %v", resp.GetStatus(), err, tc.want)
				}
			}
		})
	}
}
