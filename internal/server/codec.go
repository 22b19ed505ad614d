package server

import (
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// extAuthzCodec is gRPC's proto codec, except for ext_authz requests and the dynamic metadata
// of ext_authz answers.
//
// A request the ext_authz service takes as an extAuthzRequest (extAuthzService) is decoded by
// decodeCheckRequest, which reads the few fields the handler uses and skips the rest without
// allocating.
//
// Answers: protobuf-go encodes a map field through reflection, twice (size, then bytes), with
// allocations for every member, and every answer carries a metadata Struct. When all its
// members are strings, as the pdp's are, the Struct is encoded here, directly, into the same
// bytes a protobuf encoder writes (field 4 of CheckResponse: a map<string, Value> of
// string_value members). Anything else goes to the proto codec unchanged.
type extAuthzCodec struct {
	encoding.CodecV2
}

func newExtAuthzCodec() extAuthzCodec {
	return extAuthzCodec{CodecV2: encoding.GetCodecV2("proto")}
}

// CheckResponse's dynamic_metadata, and the fields of Struct and Value the encoding uses.
const (
	fieldDynamicMetadata = 4 // CheckResponse.dynamic_metadata
	fieldStructFields    = 1 // Struct.fields
	fieldEntryKey        = 1 // map entry key
	fieldEntryValue      = 2 // map entry value
	fieldStringValue     = 3 // Value.string_value
)

func (c extAuthzCodec) Unmarshal(data mem.BufferSlice, v any) error {
	in, ok := v.(*extAuthzRequest)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return decodeCheckRequest(buf.ReadOnlyData(), in)
}

func (c extAuthzCodec) Marshal(v any) (mem.BufferSlice, error) {
	resp, ok := v.(*authv3.CheckResponse)
	if !ok {
		return c.CodecV2.Marshal(v)
	}
	md := resp.GetDynamicMetadata()
	mdLen, ok := stringStructSize(md)
	if !ok {
		return c.CodecV2.Marshal(v)
	}
	// The answer was built for this call alone (Check returns a new one every time) and
	// nothing else reads it while it is encoded; the metadata is put back right after.
	resp.DynamicMetadata = nil
	size := proto.Size(resp)
	buf := make([]byte, 0, size+protowire.SizeTag(fieldDynamicMetadata)+protowire.SizeBytes(mdLen))
	buf, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, resp)
	resp.DynamicMetadata = md
	if err != nil {
		return nil, err
	}
	buf = protowire.AppendTag(buf, fieldDynamicMetadata, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(mdLen))
	for k, val := range md.GetFields() {
		s := val.GetStringValue()
		buf = protowire.AppendTag(buf, fieldStructFields, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(entrySize(k, s)))
		buf = protowire.AppendTag(buf, fieldEntryKey, protowire.BytesType)
		buf = protowire.AppendString(buf, k)
		buf = protowire.AppendTag(buf, fieldEntryValue, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(valueSize(s)))
		buf = protowire.AppendTag(buf, fieldStringValue, protowire.BytesType)
		buf = protowire.AppendString(buf, s)
	}
	return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
}

// stringStructSize is the encoded size of md when it is a non-empty Struct of valid UTF-8
// string members only (and nothing the encoding here would leave out); ok is false
// otherwise.
func stringStructSize(md *structpb.Struct) (n int, ok bool) {
	if md == nil || len(md.GetFields()) == 0 || len(md.ProtoReflect().GetUnknown()) > 0 {
		return 0, false
	}
	for k, val := range md.GetFields() {
		sv, isString := val.GetKind().(*structpb.Value_StringValue)
		if !isString || len(val.ProtoReflect().GetUnknown()) > 0 || !utf8.ValidString(k) || !utf8.ValidString(sv.StringValue) {
			return 0, false
		}
		n += protowire.SizeTag(fieldStructFields) + protowire.SizeBytes(entrySize(k, sv.StringValue))
	}
	return n, true
}

// entrySize is the size of a map entry of key k and a string Value s.
func entrySize(k, s string) int {
	return protowire.SizeTag(fieldEntryKey) + protowire.SizeBytes(len(k)) +
		protowire.SizeTag(fieldEntryValue) + protowire.SizeBytes(valueSize(s))
}

// valueSize is the size of a Value holding string s.
func valueSize(s string) int {
	return protowire.SizeTag(fieldStringValue) + protowire.SizeBytes(len(s))
}
