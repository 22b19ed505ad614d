package server

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// codecRoundTrip encodes m with the server's codec and decodes the bytes with protobuf-go: the
// result must equal m (the codec writes what a protobuf encoder writes), and the codec must
// fail exactly when the proto codec does.
func codecRoundTrip(t *testing.T, m *authv3.CheckResponse) {
	t.Helper()
	want, wantErr := encoding.GetCodecV2("proto").Marshal(m)
	got, err := newExtAuthzCodec().Marshal(m)
	if wantErr != nil {
		require.Error(t, err, "the proto codec refuses %v", m)
		return
	}
	require.NoError(t, err)
	var back authv3.CheckResponse
	require.NoError(t, proto.Unmarshal(got.Materialize(), &back))
	assert.True(t, proto.Equal(m, &back), "got %v, want %v", &back, m)
	assert.Equal(t, want.Len(), got.Len(), "encoded size")
}

// TestCheckResponseCodecWritesWhatProtobufWrites: the pdp's real answers (allow with minimal
// and full metadata, deny, unauthenticated, public) and Structs the codec leaves to the proto
// codec (other kinds of values, invalid UTF-8, unknown fields, none).
func TestCheckResponseCodecWritesWhatProtobufWrites(t *testing.T) {
	ctx := context.Background()
	for _, md := range []string{MetadataMinimal, MetadataFull} {
		cfg := DefaultConfig()
		cfg.ExtAuthzMetadata = md
		srv, err := New(cfg, newFake(), loadTestRoutes(t), nil, prometheus.NewRegistry())
		require.NoError(t, err)
		for _, req := range []*authv3.CheckRequest{
			envoyRequest("GET", "/api/users", "app", bearer("alice-token"), map[string]string{"permission": "users.read.tenant"}),
			envoyRequest("GET", "/api/reports", "app", bearer("bob-token"), nil),
			envoyRequest("GET", "/api/users", "app", nil, nil),
			envoyRequest("GET", "/healthz", "app", nil, nil), // public: no metadata
		} {
			resp, err := srv.Check(ctx, req)
			require.NoError(t, err)
			if resp.GetOkResponse() == nil || resp.GetOkResponse().GetHeaders() != nil {
				require.NotEmpty(t, resp.GetDynamicMetadata().GetFields(), "the codec's own path is the one tested")
			}
			codecRoundTrip(t, resp)
		}
	}
	ok := func(md *structpb.Struct) *authv3.CheckResponse {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{}, DynamicMetadata: md,
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}
	}
	mixed, err := structpb.NewStruct(map[string]any{"n": 1.5, "s": "x", "b": true})
	require.NoError(t, err)
	unknown := &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStringValue("b")}}
	unknown.ProtoReflect().SetUnknown([]byte{0x10, 0x01})
	for _, md := range []*structpb.Struct{
		nil, {}, mixed, unknown,
		{Fields: map[string]*structpb.Value{"": structpb.NewStringValue(""), "ü": structpb.NewStringValue("€")}},
		{Fields: map[string]*structpb.Value{"bad": structpb.NewStringValue("\xff")}},
		{Fields: map[string]*structpb.Value{"\xff": structpb.NewStringValue("v")}},
	} {
		codecRoundTrip(t, ok(md))
	}
	// Other messages (neoauthz.v1, health) go to the proto codec as they are.
	st := &rpcstatus.Status{Code: 7, Message: "m"}
	got, err := newExtAuthzCodec().Marshal(st)
	require.NoError(t, err)
	want, err := proto.Marshal(st)
	require.NoError(t, err)
	assert.Equal(t, want, got.Materialize())
}

// FuzzCheckResponseCodec: any string members encode as protobuf-go would decode them back.
func FuzzCheckResponseCodec(f *testing.F) {
	f.Add("decision_id", "0123", "reason", "granted")
	f.Add("", "", "k", "\xff")
	f.Add("long", string(make([]byte, 300)), "x", "y")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		codecRoundTrip(t, &authv3.CheckResponse{Status: &rpcstatus.Status{}, DynamicMetadata: &structpb.Struct{
			Fields: map[string]*structpb.Value{k1: structpb.NewStringValue(v1), k2: structpb.NewStringValue(v2)}}})
	})
}
