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
)

// codecRoundTrip encodes an answer with the server's codec and decodes the bytes with
// protobuf-go: the result must equal the answer as Check returns it (the codec writes what a
// protobuf encoder writes), and the codec must fail exactly when the proto codec does.
func codecRoundTrip(t *testing.T, a *extAuthzAnswer) {
	t.Helper()
	got, err := newExtAuthzCodec().Marshal(a)
	m := a.response()
	want, wantErr := encoding.GetCodecV2("proto").Marshal(m)
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
// and full metadata, deny, unauthenticated, public), metadata of any strings and numbers, and
// metadata protobuf refuses (invalid UTF-8).
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
			in := extAuthzFields(req)
			a, err := srv.checkExtAuthz(ctx, &in)
			require.NoError(t, err)
			if a.resp.GetOkResponse() == nil || a.resp.GetOkResponse().GetHeaders() != nil {
				require.NotZero(t, a.md.n, "the codec's own path is the one tested")
			}
			codecRoundTrip(t, a)
		}
	}
	ok := func(members ...metadataMember) *extAuthzAnswer {
		a := &extAuthzAnswer{resp: &authv3.CheckResponse{Status: &rpcstatus.Status{},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}}
		if members != nil {
			a.md = &metadataArena{}
			a.md.n = copy(a.md.members[:], members)
		}
		return a
	}
	for _, a := range []*extAuthzAnswer{
		ok(), ok([]metadataMember{}...),
		ok(metadataMember{name: "", str: ""}, metadataMember{name: "ü", str: "€"}),
		ok(metadataMember{name: "v", isNum: true}, metadataMember{name: "w", num: 9, isNum: true},
			metadataMember{name: "x", num: 10, isNum: true}, metadataMember{name: "y", num: 1<<64 - 1, isNum: true}),
		ok(metadataMember{name: "bad", str: "\xff"}),
		ok(metadataMember{name: "\xff", str: "v"}),
	} {
		codecRoundTrip(t, a)
	}
	// Other messages (neoauthz.v1, health) go to the proto codec as they are.
	st := &rpcstatus.Status{Code: 7, Message: "m"}
	got, err := newExtAuthzCodec().Marshal(st)
	require.NoError(t, err)
	want, err := proto.Marshal(st)
	require.NoError(t, err)
	assert.Equal(t, want, got.Materialize())
}

// FuzzCheckResponseCodec: any string and number members encode as protobuf-go would decode
// them back.
func FuzzCheckResponseCodec(f *testing.F) {
	f.Add("decision_id", "0123", "reason", "granted", uint64(0))
	f.Add("", "", "k", "\xff", uint64(1<<63))
	f.Add("long", string(make([]byte, 300)), "x", "y", uint64(99))
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string, n uint64) {
		if k1 == k2 || k1 == "n" || k2 == "n" {
			t.Skip("names are unique")
		}
		a := &extAuthzAnswer{resp: &authv3.CheckResponse{Status: &rpcstatus.Status{}}, md: &metadataArena{}}
		a.md.set(k1, v1)
		a.md.setUint("n", n)
		a.md.set(k2, v2)
		codecRoundTrip(t, a)
	})
}

// allowBytesMatch: an allow written by the codec, without metadata, is byte for byte what
// protobuf-go writes for the same CheckResponse (no map, so protobuf-go is deterministic), and
// the codec fails exactly when the proto codec does.
func allowBytesMatch(t *testing.T, a *allowAnswer) {
	t.Helper()
	codecRoundTrip(t, &extAuthzAnswer{allow: a})
	want, wantErr := proto.Marshal(a.response())
	n, okLen, ok := a.size()
	if wantErr != nil {
		assert.False(t, ok, "the proto codec refuses %+v", a)
		return
	}
	require.True(t, ok)
	got := a.append(nil, okLen)
	assert.Equal(t, want, got)
	assert.Len(t, got, n)
}

// TestAllowAnswerWritesWhatProtobufWrites: tenant and platform subjects, with and without a
// consistency token, empty values (which proto3 leaves out) and invalid UTF-8.
func TestAllowAnswerWritesWhatProtobufWrites(t *testing.T) {
	mk := func(tenant, user, id, token string) *allowAnswer {
		a := &allowAnswer{token: token}
		if tenant != "" {
			a.set("x-tenant", tenant)
		} else {
			a.remove = []string{"x-tenant"}
		}
		a.set("x-user", user)
		a.set("x-decision-id", id)
		return a
	}
	for _, a := range []*allowAnswer{
		mk("acme", "alice", "0123456789abcdef0123456789abcdef", "v1.acme.3.9"),
		mk("", "root", "0123", ""),
		mk("acme", "", "", ""),
		mk("acme", string(make([]byte, 300)), "id", string(make([]byte, 200))),
		mk("acme", "\xff", "id", ""),
		mk("acme", "bob", "id", "\xfe"),
		{remove: []string{"\xff"}},
		{},
	} {
		allowBytesMatch(t, a)
	}
}

// FuzzAllowAnswerCodec: any identity strings encode as protobuf-go encodes them.
func FuzzAllowAnswerCodec(f *testing.F) {
	f.Add("x-tenant", "acme", "alice", "0123", "tok", false)
	f.Add("", "", "", "", "", true)
	f.Add("h", "\xff", "ü", "€", "\x00", false)
	f.Fuzz(func(t *testing.T, header, tenant, user, id, token string, platform bool) {
		a := &allowAnswer{token: token}
		if platform {
			a.remove = []string{header}
		} else {
			a.set(header, tenant)
		}
		a.set("x-user", user)
		a.set("x-decision-id", id)
		allowBytesMatch(t, a)
		md := &metadataArena{}
		md.set("decision_id", id)
		md.setUint("version", uint64(len(user)))
		codecRoundTrip(t, &extAuthzAnswer{allow: a, md: md})
	})
}
