package server

import (
	"strconv"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// extAuthzCodec is gRPC's proto codec, except for ext_authz requests and the dynamic metadata
// of ext_authz answers.
//
// A request the ext_authz service takes as an extAuthzRequest (extAuthzService) is decoded by
// decodeCheckRequest, which reads the few fields the handler uses and skips the rest without
// allocating.
//
// An answer (extAuthzAnswer) is encoded with the proto codec's rules, its dynamic metadata
// written here, directly, into the same bytes a protobuf encoder writes (field 4 of
// CheckResponse: a map<string, Value> of string_value members): protobuf-go encodes a map
// field through reflection, twice (size, then bytes), with allocations for every member, and
// building the map costs two more. Everything else goes to the proto codec unchanged.
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
	a, ok := v.(*extAuthzAnswer)
	if !ok {
		return c.CodecV2.Marshal(v)
	}
	if a.md == nil || a.resp.DynamicMetadata != nil { // none, or already a Struct (response)
		return c.CodecV2.Marshal(a.resp)
	}
	mdLen, ok := a.md.size()
	if !ok {
		// The proto codec refuses invalid UTF-8, with its own error.
		return c.CodecV2.Marshal(a.response())
	}
	size := proto.Size(a.resp)
	buf := make([]byte, 0, size+protowire.SizeTag(fieldDynamicMetadata)+protowire.SizeBytes(mdLen))
	buf, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, a.resp)
	if err != nil {
		return nil, err
	}
	buf = protowire.AppendTag(buf, fieldDynamicMetadata, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(mdLen))
	for i := range a.md.members[:a.md.n] {
		m := &a.md.members[i]
		vlen := m.valueLen()
		buf = protowire.AppendTag(buf, fieldStructFields, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(entrySize(m.name, vlen)))
		buf = protowire.AppendTag(buf, fieldEntryKey, protowire.BytesType)
		buf = protowire.AppendString(buf, m.name)
		buf = protowire.AppendTag(buf, fieldEntryValue, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(valueSize(vlen)))
		buf = protowire.AppendTag(buf, fieldStringValue, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(vlen))
		if m.isNum {
			buf = strconv.AppendUint(buf, m.num, 10)
		} else {
			buf = append(buf, m.str...)
		}
	}
	return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
}

// size is the encoded size of the metadata as a Struct of string values; ok is false when a
// name or value is not valid UTF-8 (which protobuf refuses to encode). Names are unique.
func (m *metadataArena) size() (n int, ok bool) {
	for i := range m.members[:m.n] {
		mm := &m.members[i]
		if !utf8.ValidString(mm.name) || (!mm.isNum && !utf8.ValidString(mm.str)) {
			return 0, false
		}
		n += protowire.SizeTag(fieldStructFields) + protowire.SizeBytes(entrySize(mm.name, mm.valueLen()))
	}
	return n, true
}

// valueLen is the length of a member's string.
func (mm *metadataMember) valueLen() int {
	if !mm.isNum {
		return len(mm.str)
	}
	n := 1
	for v := mm.num; v >= 10; v /= 10 {
		n++
	}
	return n
}

// entrySize is the size of a map entry of key k and a string Value of n bytes.
func entrySize(k string, n int) int {
	return protowire.SizeTag(fieldEntryKey) + protowire.SizeBytes(len(k)) +
		protowire.SizeTag(fieldEntryValue) + protowire.SizeBytes(valueSize(n))
}

// valueSize is the size of a Value holding a string of n bytes.
func valueSize(n int) int {
	return protowire.SizeTag(fieldStringValue) + protowire.SizeBytes(n)
}
