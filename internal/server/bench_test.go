package server

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
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
	// The answer's encoding, by the server's codec and by gRPC's proto codec.
	resp, err := srv.Check(ctx, envoyRequest("GET", "/api/projects/u-9/p-1?x=1", "app.example.com", bearer("alice-token"), nil))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"encode/server-codec", newCheckResponseCodec()}, {"encode/proto-codec", encoding.GetCodecV2("proto")}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out, err := c.codec.Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				out.Free()
			}
		})
	}
}

// BenchmarkAuthZENEvaluation runs POST /access/v1/evaluation in process (no network): JSON
// decoding, the caller, the mapping, a fake decision, the JSON answer, metrics and a
// (disabled) debug log line. The caller asks with a subject token.
func BenchmarkAuthZENEvaluation(b *testing.B) {
	p := filepath.Join(b.TempDir(), "authzen.json")
	if err := os.WriteFile(p, []byte(`{"subject_tokens": true,
		"actions": [{"name": "can_read_users", "permission": "users.read.tenant"}]}`), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.AuthZENConfigPath = p
	srv, err := New(cfg, newFake(), nil, nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"subject":{"type":"user","id":"alice","properties":{"token":"alice-token"}},
		"action":{"name":"can_read_users"},"resource":{"type":"app","id":"x"}}`)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, pathEvaluation, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rr := httptest.NewRecorder()
		srv.HTTPHandler().ServeHTTP(rr, req)
		if rr.Code != http.StatusOK || !bytes.Contains(rr.Body.Bytes(), []byte(`"decision":true`)) {
			b.Fatalf("got %d %s", rr.Code, rr.Body.String())
		}
	}
}

// BenchmarkForwardAuth runs the forward-auth handler in process for each header convention:
// reading the convention's headers, checking the other conventions' for conflicts, the
// decision and the identity headers.
func BenchmarkForwardAuth(b *testing.B) {
	for _, conv := range conventionCases {
		cfg := DefaultConfig()
		cfg.ForwardAuthHeaders = conv.name
		srv, err := New(cfg, newFake(), loadTestRoutes(b), nil, prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		method, target, h := conv.build(origRequest{"GET", "/api/projects/u-9/p-1?x=1", "app.example.com"})
		req := httptest.NewRequest(method, target, nil)
		for k, vs := range h {
			if k == "Host" {
				req.Host = vs[0]
				continue
			}
			req.Header[k] = vs
		}
		req.Header.Set("Authorization", "Bearer alice-token")
		b.Run(conv.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				srv.HTTPHandler().ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("got %d, want 200: %s", w.Code, w.Body)
				}
			}
		})
	}
}
