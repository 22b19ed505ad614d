package server

import (
	"context"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// prunedField is one field decodeCheckRequest reads: its message, name, number and kind,
// and, for a message, map or oneof field, what it holds.
type prunedField struct {
	msg, name string
	num       protowire.Number
	kind      descriptorpb.FieldDescriptorProto_Type
	typeName  string // message fields: the pruned message
	mapEntry  bool   // a map<string, string>
	oneof     string
	repeated  bool
	real      string // the real message's full name, for the field of the pruned message
}

const (
	tMsg    = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	tString = descriptorpb.FieldDescriptorProto_TYPE_STRING
	tBytes  = descriptorpb.FieldDescriptorProto_TYPE_BYTES
)

// prunedFields is CheckRequest with only the fields decodeCheckRequest reads: every other
// field of the real messages is, to this schema, an unknown field. The address oneof keeps
// its other members, as empty messages, since they clear socket_address.
var prunedFields = []prunedField{
	{msg: "CheckRequest", name: "attributes", num: fCheckRequestAttributes, kind: tMsg, typeName: "AttributeContext", real: "envoy.service.auth.v3.CheckRequest"},
	{msg: "AttributeContext", name: "source", num: fAttrSource, kind: tMsg, typeName: "Peer", real: "envoy.service.auth.v3.AttributeContext"},
	{msg: "AttributeContext", name: "request", num: fAttrRequest, kind: tMsg, typeName: "Request", real: "envoy.service.auth.v3.AttributeContext"},
	{msg: "AttributeContext", name: "context_extensions", num: fAttrContextExtensions, mapEntry: true, real: "envoy.service.auth.v3.AttributeContext"},
	{msg: "Peer", name: "address", num: fPeerAddress, kind: tMsg, typeName: "Address", real: "envoy.service.auth.v3.AttributeContext.Peer"},
	{msg: "Address", name: "socket_address", num: fAddressSocket, kind: tMsg, typeName: "SocketAddress", oneof: "address", real: "envoy.config.core.v3.Address"},
	{msg: "Address", name: "pipe", num: fAddressPipe, kind: tMsg, typeName: "Empty", oneof: "address", real: "envoy.config.core.v3.Address"},
	{msg: "Address", name: "envoy_internal_address", num: fAddressInternal, kind: tMsg, typeName: "Empty", oneof: "address", real: "envoy.config.core.v3.Address"},
	{msg: "SocketAddress", name: "address", num: fSocketAddressAddress, kind: tString, real: "envoy.config.core.v3.SocketAddress"},
	{msg: "Request", name: "http", num: fRequestHTTP, kind: tMsg, typeName: "HttpRequest", real: "envoy.service.auth.v3.AttributeContext.Request"},
	{msg: "HttpRequest", name: "method", num: fHTTPMethod, kind: tString, real: "envoy.service.auth.v3.AttributeContext.HttpRequest"},
	{msg: "HttpRequest", name: "headers", num: fHTTPHeaders, mapEntry: true, real: "envoy.service.auth.v3.AttributeContext.HttpRequest"},
	{msg: "HttpRequest", name: "path", num: fHTTPPath, kind: tString, real: "envoy.service.auth.v3.AttributeContext.HttpRequest"},
	{msg: "HttpRequest", name: "host", num: fHTTPHost, kind: tString, real: "envoy.service.auth.v3.AttributeContext.HttpRequest"},
	{msg: "HttpRequest", name: "header_map", num: fHTTPHeaderMap, kind: tMsg, typeName: "HeaderMap", real: "envoy.service.auth.v3.AttributeContext.HttpRequest"},
	{msg: "HeaderMap", name: "headers", num: fHeaderMapHeaders, kind: tMsg, typeName: "HeaderValue", repeated: true, real: "envoy.config.core.v3.HeaderMap"},
	{msg: "HeaderValue", name: "key", num: fHeaderValueKey, kind: tString, real: "envoy.config.core.v3.HeaderValue"},
	{msg: "HeaderValue", name: "value", num: fHeaderValueValue, kind: tString, real: "envoy.config.core.v3.HeaderValue"},
	{msg: "HeaderValue", name: "raw_value", num: fHeaderValueRaw, kind: tBytes, real: "envoy.config.core.v3.HeaderValue"},
}

// prunedCheckRequest builds the pruned schema (proto3, as Envoy's files are).
func prunedCheckRequest(tb testing.TB) protoreflect.MessageDescriptor {
	tb.Helper()
	msgs := map[string]*descriptorpb.DescriptorProto{}
	order := []string{"CheckRequest", "AttributeContext", "Peer", "Address", "SocketAddress", "Empty", "Request", "HttpRequest", "HeaderMap", "HeaderValue"}
	for _, name := range order {
		msgs[name] = &descriptorpb.DescriptorProto{Name: proto.String(name)}
	}
	for _, f := range prunedFields {
		m := msgs[f.msg]
		fd := &descriptorpb.FieldDescriptorProto{
			Name: proto.String(f.name), JsonName: proto.String(f.name), Number: proto.Int32(int32(f.num)),
			Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: f.kind.Enum(),
		}
		if f.typeName != "" {
			fd.TypeName = proto.String(".pruned." + f.typeName)
		}
		if f.repeated {
			fd.Label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
		}
		if f.mapEntry {
			entry := "" // protoc's name: the field's in CamelCase, then "Entry"
			for _, w := range strings.Split(f.name, "_") {
				entry += strings.ToUpper(w[:1]) + w[1:]
			}
			entry += "Entry"
			m.NestedType = append(m.NestedType, &descriptorpb.DescriptorProto{
				Name:    proto.String(entry),
				Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
				Field: []*descriptorpb.FieldDescriptorProto{
					{Name: proto.String("key"), JsonName: proto.String("key"), Number: proto.Int32(fMapKey), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: tString.Enum()},
					{Name: proto.String("value"), JsonName: proto.String("value"), Number: proto.Int32(fMapValue), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: tString.Enum()},
				},
			})
			fd.Type, fd.TypeName = tMsg.Enum(), proto.String(".pruned."+f.msg+"."+entry)
			fd.Label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
		}
		if f.oneof != "" {
			if len(m.OneofDecl) == 0 {
				m.OneofDecl = append(m.OneofDecl, &descriptorpb.OneofDescriptorProto{Name: proto.String(f.oneof)})
			}
			fd.OneofIndex = proto.Int32(0)
		}
		m.Field = append(m.Field, fd)
	}
	file := &descriptorpb.FileDescriptorProto{Name: proto.String("pruned.proto"), Package: proto.String("pruned"), Syntax: proto.String("proto3")}
	for _, name := range order {
		file.MessageType = append(file.MessageType, msgs[name])
	}
	fd, err := protodesc.NewFile(file, nil)
	require.NoError(tb, err)
	return fd.Messages().ByName("CheckRequest")
}

// TestCheckRequestFieldNumbers: the pruned schema, and so the decoder's field numbers, is
// the real one's: same numbers, kinds, cardinality, oneofs and message types.
func TestCheckRequestFieldNumbers(t *testing.T) {
	real := map[string]protoreflect.MessageDescriptor{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if _, ok := real[string(md.FullName())]; ok {
			return
		}
		real[string(md.FullName())] = md
		for i := 0; i < md.Fields().Len(); i++ {
			if m := md.Fields().Get(i).Message(); m != nil {
				walk(m)
			}
		}
	}
	walk((&authv3.CheckRequest{}).ProtoReflect().Descriptor())
	pruned := prunedCheckRequest(t).ParentFile().Messages()
	for _, f := range prunedFields {
		md := real[f.real]
		require.NotNil(t, md, "%s is not reached from CheckRequest", f.real)
		rf := md.Fields().ByName(protoreflect.Name(f.name))
		require.NotNil(t, rf, "%s.%s", f.real, f.name)
		pf := pruned.ByName(protoreflect.Name(f.msg)).Fields().ByName(protoreflect.Name(f.name))
		assert.Equal(t, rf.Number(), pf.Number(), "%s.%s number", f.real, f.name)
		assert.Equal(t, rf.Kind(), pf.Kind(), "%s.%s kind", f.real, f.name)
		assert.Equal(t, rf.Cardinality(), pf.Cardinality(), "%s.%s cardinality", f.real, f.name)
		assert.Equal(t, rf.IsMap(), pf.IsMap(), "%s.%s map", f.real, f.name)
		if rf.IsMap() {
			assert.Equal(t, protoreflect.StringKind, rf.MapKey().Kind())
			assert.Equal(t, protoreflect.StringKind, rf.MapValue().Kind())
		}
		assert.Equal(t, rf.ContainingOneof() != nil, pf.ContainingOneof() != nil, "%s.%s oneof", f.real, f.name)
		if rf.ContainingOneof() != nil {
			assert.Equal(t, 3, rf.ContainingOneof().Fields().Len(), "the address oneof has members the pruned schema does not clear it with")
		}
		if f.kind == tMsg && f.typeName != "Empty" {
			assert.Equal(t, f.real, string(rf.ContainingMessage().FullName()))
			next := false
			for _, g := range prunedFields {
				next = next || (g.msg == f.typeName && g.real == string(rf.Message().FullName()))
			}
			assert.True(t, next, "%s.%s: the pruned %s stands for %s", f.real, f.name, f.typeName, rf.Message().FullName())
		}
		assert.Equal(t, protoreflect.Proto3, rf.ParentFile().Syntax(), "%s: strings are checked as proto3's", f.real)
	}
}

// decodeOracle is what the handler reads of wire according to protobuf-go: the request
// decoded with the pruned schema (everything else unknown and dropped), re-encoded and
// decoded as a CheckRequest, then read as Check reads it.
func decodeOracle(t *testing.T, pruned protoreflect.MessageDescriptor, wire []byte) (extAuthzRequest, error) {
	t.Helper()
	m := dynamicpb.NewMessage(pruned)
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(wire, m); err != nil {
		return extAuthzRequest{}, err
	}
	kept, err := proto.Marshal(m)
	require.NoError(t, err)
	var req authv3.CheckRequest
	require.NoError(t, proto.Unmarshal(kept, &req), "the pruned schema is a part of the real one")
	return extAuthzFields(&req), nil
}

// checkDecode holds decodeCheckRequest to the oracle on wire; and when the whole request is a
// valid CheckRequest, to what Check reads of it.
func checkDecode(t *testing.T, pruned protoreflect.MessageDescriptor, wire []byte) {
	t.Helper()
	var got extAuthzRequest
	err := decodeCheckRequest(wire, &got)
	want, wantErr := decodeOracle(t, pruned, wire)
	if wantErr != nil {
		require.Error(t, err, "protobuf refuses %x (%v)", wire, wantErr)
	} else {
		require.NoError(t, err, "protobuf decodes %x", wire)
		require.Equal(t, want, got, "%x", wire)
	}
	var full authv3.CheckRequest
	if proto.Unmarshal(wire, &full) == nil {
		require.NoError(t, err, "a valid CheckRequest %x", wire)
		require.Equal(t, extAuthzFields(&full), got, "%x", wire)
	}
}

// checkRequestSeeds are Envoy-shaped requests (headers map, header_map with raw values,
// source addresses, context extensions) and the protobuf corners the decoder must follow.
func checkRequestSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	marshal := func(m *authv3.CheckRequest) []byte {
		b, err := proto.Marshal(m)
		require.NoError(tb, err)
		return b
	}
	envoy := envoyWireRequest(tb, longToken, map[string]string{"permission": "users.read.tenant", "tenant": "acme"})
	raw := marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api/reports", Host: "acme.app.example.com",
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: ":authority", RawValue: []byte("acme.app.example.com")},
				{Key: "Authorization", RawValue: []byte("Bearer alice-token")},
				{Key: "authorization", Value: "Bearer bob-token"},
				{Key: "X-Neoauthz-Consistency", Value: "v", RawValue: []byte("raw")},
				{Key: "x-neoauthz-consiſtency", Value: "folded"},
				{Key: "x-neoauthz-min-version", Value: "7"},
			}}}}}})
	pipe := marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{
		Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/x"}}}}}})
	sock := marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1"}}}}}})
	port := marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9}}}}}}})
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	field := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(tag(num, protowire.BytesType), v)
	}
	attrs := func(v []byte) []byte { return field(fCheckRequestAttributes, v) }
	http := func(v []byte) []byte { return attrs(field(fAttrRequest, field(fRequestHTTP, v))) }
	entry := func(num protowire.Number, k, v string) []byte {
		return field(num, cat(field(fMapKey, []byte(k)), field(fMapValue, []byte(v))))
	}
	return [][]byte{
		envoy, raw, pipe, sock, port,
		cat(envoy, raw),                          // messages merge: headers map and header_map both
		cat(raw, raw),                            // header_map entries add up
		cat(sock, pipe),                          // the oneof switches to pipe: no client
		cat(pipe, sock),                          // and back
		cat(sock, port),                          // socket addresses merge
		cat(envoy, sock, sock),                   // last address wins
		http(field(fHTTPMethod, []byte("\xff"))), // invalid UTF-8 in a read string
		attrs(field(2, []byte("\xff\xff"))),      // a skipped message that does not parse
		http(cat(field(fHTTPPath, []byte("/a")), field(fHTTPPath, []byte("/b")))), // last wins
		http(cat(tag(fHTTPPath, protowire.VarintType), []byte{1})),                // wrong wire type: unknown
		http(cat(entry(fHTTPHeaders, "authorization", "a"), entry(fHTTPHeaders, "authorization", ""))),
		http(field(fHTTPHeaders, cat(field(fMapValue, []byte("v")), field(fMapKey, []byte("authorization")), field(fMapKey, []byte("x"))))),
		http(field(fHTTPHeaders, field(fMapKey, []byte("authorization")))), // present, empty
		http(field(fHTTPHeaderMap, field(fHeaderMapHeaders, cat(field(fHeaderValueKey, []byte("authorization")),
			field(fHeaderValueRaw, []byte("x")), field(fHeaderValueRaw, nil), field(fHeaderValueValue, []byte("v")))))),
		attrs(entry(fAttrContextExtensions, "permission", "\xff")),
		cat(tag(5, protowire.StartGroupType), tag(1, protowire.VarintType), []byte{1}, tag(5, protowire.EndGroupType)),
		cat(tag(5, protowire.StartGroupType), tag(6, protowire.EndGroupType)),
		tag(5, protowire.EndGroupType),
		{0x00}, {0x08}, {0x0a, 0x05}, {0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00}, {0x0f},
		protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3),
	}
}

// TestCheckRequestDecode runs the seeds: decodeCheckRequest reads what protobuf-go does.
func TestCheckRequestDecode(t *testing.T) {
	pruned := prunedCheckRequest(t)
	for _, wire := range checkRequestSeeds(t) {
		checkDecode(t, pruned, wire)
	}
	// Spelled out for the cases that matter most.
	var got extAuthzRequest
	require.NoError(t, decodeCheckRequest(checkRequestSeeds(t)[1], &got))
	assert.Equal(t, "Bearer alice-token,Bearer bob-token", got.authorization, "two Authorization entries never read as one token")
	assert.Equal(t, "raw,folded", got.consistency, "raw_value before value; names fold as strings.EqualFold does")
	assert.Equal(t, "7", got.minVersion)
	require.NoError(t, decodeCheckRequest(checkRequestSeeds(t)[0], &got))
	assert.Equal(t, extAuthzRequest{method: "GET", path: "/api/projects/u-9/p-1?x=1", host: "app.example.com",
		authorization: "Bearer " + longToken, permission: "users.read.tenant", tenant: "acme", client: "10.1.2.3"}, got)
}

// FuzzCheckRequestDecode: for any bytes, decodeCheckRequest fails exactly when protobuf-go
// fails to decode the fields it reads, reads what protobuf-go reads otherwise, and reads what
// Check reads of every valid CheckRequest.
func FuzzCheckRequestDecode(f *testing.F) {
	for _, s := range checkRequestSeeds(f) {
		f.Add(s)
	}
	pruned := prunedCheckRequest(f)
	f.Fuzz(func(t *testing.T, wire []byte) {
		checkDecode(t, pruned, wire)
	})
}

// TestExtAuthzOverGRPC: the registered service decodes Envoy's requests (the headers map and
// header_map) and encodes its answers (minimal and full metadata) into the same responses as
// Check in process, but for the decision ids; a request that does not parse is an INTERNAL
// error, as the proto codec's.
func TestExtAuthzOverGRPC(t *testing.T) {
	for _, md := range []string{MetadataMinimal, MetadataFull} {
		ts := startServer(t, newFake(), func(c *Config) { c.ExtAuthzMetadata = md })
		client := authv3.NewAuthorizationClient(ts.conn)
		ctx := context.Background()
		for _, req := range []*authv3.CheckRequest{
			envoyRequest("GET", "/api/projects/u-9/p-1?x=1", "app.example.com", bearer("alice-token"), nil),
			envoyRequest("GET", "/api/users", "app", bearer("alice-token"), map[string]string{"permission": "users.read.tenant"}),
			envoyRequest("GET", "/api/tenants/acme", "app", bearer("root-token"), nil),
			envoyRequest("GET", "/api/reports", "app", bearer("bob-token"), nil),
			envoyRequest("GET", "/api/reports", "app", nil, nil),
			envoyRequest("GET", "/healthz", "app", nil, nil),
			{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/api/reports", HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					{Key: "authorization", RawValue: []byte("Bearer alice-token")}}}}}}},
		} {
			got, err := client.Check(ctx, req)
			require.NoError(t, err)
			want, err := ts.srv.Check(ctx, req)
			require.NoError(t, err)
			gotText, wantText := prototext.Format(got), prototext.Format(want)
			if id := got.GetDynamicMetadata().GetFields()["decision_id"].GetStringValue(); id != "" {
				gotText = strings.ReplaceAll(gotText, id, want.GetDynamicMetadata().GetFields()["decision_id"].GetStringValue())
			}
			assert.Equal(t, wantText, gotText, "%s %s", md, req.GetAttributes().GetRequest().GetHttp().GetPath())
		}
		// Bytes that are not a CheckRequest, sent as they are.
		err := ts.conn.Invoke(ctx, authv3.Authorization_Check_FullMethodName, rawMessage{0x0a, 0x05}, &authv3.CheckResponse{},
			grpc.ForceCodecV2(rawCodec{}))
		assert.Equal(t, codes.Internal, status.Code(err), "%v", err)
	}
}

// rawMessage and rawCodec send bytes as a message, unchanged.
type rawMessage []byte

type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(rawMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	}
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

func (rawCodec) Name() string { return "proto" }

// TestExtAuthzCheckHandlerInterceptor: with an interceptor (the server installs none), the
// handler passes the decoded request through it under Check's full method name; an answer
// the pdp cannot give is a nil answer and the error.
func TestExtAuthzCheckHandlerInterceptor(t *testing.T) {
	srv, err := New(DefaultConfig(), newFake(), loadTestRoutes(t), nil, nil)
	require.NoError(t, err)
	ctx := context.Background()
	decodeFrom := func(req *authv3.CheckRequest) func(any) error {
		wire, err := proto.Marshal(req)
		require.NoError(t, err)
		return func(v any) error { return newExtAuthzCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, v) }
	}
	var seen string
	intercept := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		seen = info.FullMethod
		return h(ctx, req)
	}
	got, err := extAuthzCheckHandler(srv, ctx, decodeFrom(envoyRequest("GET", "/api/reports", "app", bearer("alice-token"), nil)), intercept)
	require.NoError(t, err)
	assert.Equal(t, authv3.Authorization_Check_FullMethodName, seen)
	require.IsType(t, &extAuthzAnswer{}, got)
	assert.NotNil(t, got.(*extAuthzAnswer).response().GetOkResponse())

	for _, icpt := range []grpc.UnaryServerInterceptor{nil, intercept} {
		got, err = extAuthzCheckHandler(srv, ctx, decodeFrom(envoyRequest("GET", "/api/broken", "app", bearer("alice-token"), nil)), icpt)
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Nil(t, got, "no answer, not a nil *extAuthzAnswer")
	}
}

// TestCheckRequestDecodeManyHeaderEntries: a request of many header_map entries of one name
// is joined in amortised linear time (a handful of allocations, not one per entry), to what
// Check reads.
func TestCheckRequestDecodeManyHeaderEntries(t *testing.T) {
	hm := &corev3.HeaderMap{}
	for range 2000 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "Authorization", Value: "Bearer x"})
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{HeaderMap: hm}}}}
	wire, err := proto.Marshal(req)
	require.NoError(t, err)
	var got extAuthzRequest
	allocs := testing.AllocsPerRun(3, func() { require.NoError(t, decodeCheckRequest(wire, &got)) })
	assert.Equal(t, extAuthzFields(req), got)
	assert.Less(t, allocs, 50.0, "allocations to join 2,000 entries")
}
