package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// BenchmarkExtAuthzCheck runs the ext_authz handler the gRPC service calls, in process (no
// network), as opa-envoy-plugin's BenchmarkCheck does: route table match, token, fake
// decision, OK answer with identity headers and dynamic metadata, metrics and a (disabled)
// debug log line.
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
		in := extAuthzFields(envoyRequest("GET", tc.path, "app.example.com", bearer(tc.tok), tc.ext))
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a, err := srv.checkExtAuthz(ctx, &in)
				if err != nil || answerCode(a) != tc.want {
					b.Fatalf("got %v, %v; want %v", a.response().GetStatus(), err, tc.want)
				}
			}
		})
	}
	// The answer's encoding, by the server's codec and, as a CheckResponse, by gRPC's proto
	// codec.
	in := extAuthzFields(envoyRequest("GET", "/api/projects/u-9/p-1?x=1", "app.example.com", bearer("alice-token"), nil))
	a, err := srv.checkExtAuthz(ctx, &in)
	if err != nil {
		b.Fatal(err)
	}
	asResponse, err := srv.checkExtAuthz(ctx, &in)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
		msg   any
	}{{"encode/server-codec", newExtAuthzCodec(), a}, {"encode/proto-codec", encoding.GetCodecV2("proto"), asResponse.response()}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out, err := c.codec.Marshal(c.msg)
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

// envoyWireRequest is a CheckRequest as Envoy sends one for a browser's API call, marshalled:
// request attributes (id, method, path, host, scheme, protocol, size), a dozen headers in the
// headers map with a bearer token of a real access token's length, the source and destination
// addresses, the request time and the route's context extensions.
func envoyWireRequest(tb testing.TB, tok string, ext map[string]string) []byte {
	tb.Helper()
	sock := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: sock("10.1.2.3", 53412)},
		Destination: &authv3.AttributeContext_Peer{Address: sock("10.1.0.9", 8080)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Date(2026, 12, 3, 12, 0, 0, 123456789, time.UTC)),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "8a2f41c6-0c3d-4a9e-9d7f-3b1e5c2a7f10", Method: "GET", Path: "/api/projects/u-9/p-1?x=1",
				Host: "app.example.com", Scheme: "https", Protocol: "HTTP/1.1", Size: -1,
				Headers: map[string]string{
					":authority":                     "app.example.com",
					":method":                        "GET",
					":path":                          "/api/projects/u-9/p-1?x=1",
					":scheme":                        "https",
					"accept":                         "application/json, text/plain, */*",
					"accept-encoding":                "gzip, deflate, br",
					"accept-language":                "en-US,en;q=0.9",
					"authorization":                  "Bearer " + tok,
					"user-agent":                     "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
					"x-forwarded-proto":              "https",
					"x-request-id":                   "8a2f41c6-0c3d-4a9e-9d7f-3b1e5c2a7f10",
					"x-envoy-expected-rq-timeout-ms": "250",
				},
			},
		},
		ContextExtensions: ext,
	}}
	wire, err := proto.Marshal(req)
	if err != nil {
		tb.Fatal(err)
	}
	return wire
}

// BenchmarkExtAuthzWire is one ext_authz request the way the gRPC server runs it, minus the
// network: the registered codec decodes the request into what the registered handler asks
// for, the handler decides (fake decision) and the codec encodes the answer. decode (the
// handler's new request included) and encode are two of the steps alone; the handler's share
// is total minus both. ceiling-decode is what a do-nothing ext_authz server pays for the same
// bytes (gRPC's proto codec into a CheckRequest).
func BenchmarkExtAuthzWire(b *testing.B) {
	srv, err := New(DefaultConfig(), newFake(), loadTestRoutes(b), nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	wire := envoyWireRequest(b, longToken, nil)
	codec := newExtAuthzCodec()
	handler := extAuthzMethod(b, srv)
	call := func(b *testing.B, dec func(any) error) any {
		resp, err := handler(srv, ctx, dec, nil)
		if err != nil {
			b.Fatal(err)
		}
		if a, ok := resp.(*extAuthzAnswer); !ok || a.allow == nil {
			b.Fatalf("got %v, want an OK", resp)
		}
		return resp
	}
	// Built once, so that the loops count only the server's allocations.
	data := mem.BufferSlice{mem.SliceBuffer(wire)}
	decode := func(v any) error { return codec.Unmarshal(data, v) }
	b.Run("total", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out, err := codec.Marshal(call(b, decode))
			if err != nil {
				b.Fatal(err)
			}
			out.Free()
		}
	})
	decodeOnly := func(v any) error {
		if err := decode(v); err != nil {
			b.Fatal(err)
		}
		return errStop
	}
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := handler(srv, ctx, decodeOnly, nil); !errors.Is(err, errStop) {
				b.Fatal(err)
			}
		}
	})
	resp := call(b, decode)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out, err := codec.Marshal(resp)
			if err != nil {
				b.Fatal(err)
			}
			out.Free()
		}
	})
	b.Run("ceiling-decode", func(b *testing.B) {
		proto := encoding.GetCodecV2("proto")
		b.ReportAllocs()
		for b.Loop() {
			var in authv3.CheckRequest
			if err := proto.Unmarshal(data, &in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var errStop = errors.New("stop after decoding")

// extAuthzMethod is the Check handler the server registers.
func extAuthzMethod(tb testing.TB, srv *Server) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	tb.Helper()
	info, ok := srv.GRPCServer().GetServiceInfo()[extAuthzService.ServiceName]
	if !ok || len(info.Methods) != 1 || info.Methods[0].Name != "Check" {
		tb.Fatalf("the ext_authz service is not registered as extAuthzService: %+v", info)
	}
	return extAuthzService.Methods[0].Handler
}

// answerCode is an answer's gRPC status code, read without building its messages (which
// would add their allocations to the benchmarks).
func answerCode(a *extAuthzAnswer) codes.Code {
	if a.allow != nil {
		return codes.OK
	}
	return codes.Code(a.resp.GetStatus().GetCode())
}
