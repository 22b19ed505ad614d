package server

import (
	"strconv"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
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
// building the map costs two more. An allow (allowAnswer, the hot path's answer) is written
// here whole — status, identity headers, headers to remove, the consistency token — in field
// number order, as protobuf-go writes it, so it never becomes a tree of messages. Everything
// else goes to the proto codec unchanged.
type extAuthzCodec struct {
	encoding.CodecV2
}

func newExtAuthzCodec() extAuthzCodec {
	return extAuthzCodec{CodecV2: encoding.GetCodecV2("proto")}
}

// The fields of CheckResponse, OkHttpResponse, HeaderValueOption, HeaderValue, Struct and
// Value the encoding uses.
const (
	fieldStatus          = 1 // CheckResponse.status
	fieldOkResponse      = 3 // CheckResponse.ok_response
	fieldOkHeaders       = 2 // OkHttpResponse.headers
	fieldOkRemove        = 5 // OkHttpResponse.headers_to_remove
	fieldOkResponseAdd   = 6 // OkHttpResponse.response_headers_to_add
	fieldOptionHeader    = 1 // HeaderValueOption.header
	fieldOptionAction    = 3 // HeaderValueOption.append_action
	fieldHeaderKey       = 1 // HeaderValue.key
	fieldHeaderValue     = 2 // HeaderValue.value
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
	if a.resp != nil && (a.md == nil || a.resp.DynamicMetadata != nil) { // none, or already a Struct
		return c.CodecV2.Marshal(a.resp)
	}
	mdLen, ok := 0, true
	if a.md != nil {
		mdLen, ok = a.md.size()
	}
	var allowLen, okLen int
	if ok && a.allow != nil && a.resp == nil {
		allowLen, okLen, ok = a.allow.size()
	}
	if !ok {
		// The proto codec refuses invalid UTF-8, with its own error.
		return c.CodecV2.Marshal(a.response())
	}
	var buf []byte
	if a.resp == nil { // an allow: written here, fields in number order as protobuf-go writes them
		buf = make([]byte, 0, allowLen+protowire.SizeTag(fieldDynamicMetadata)+protowire.SizeBytes(mdLen))
		buf = a.allow.append(buf, okLen)
	} else {
		size := proto.Size(a.resp)
		buf = make([]byte, 0, size+protowire.SizeTag(fieldDynamicMetadata)+protowire.SizeBytes(mdLen))
		var err error
		if buf, err = (proto.MarshalOptions{UseCachedSize: true}).MarshalAppend(buf, a.resp); err != nil {
			return nil, err
		}
	}
	if a.md == nil {
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
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

// overwriteOrAdd is the append action of every header an allow sets.
const overwriteOrAdd = uint64(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)

// size is the encoded size of the allow's CheckResponse without dynamic metadata, an OK
// status (code 0, an empty message) and the OkHttpResponse, and okLen the OkHttpResponse's.
// ok is false when a string is not valid UTF-8 (which protobuf refuses to encode).
func (a *allowAnswer) size() (n, okLen int, ok bool) {
	if okLen, ok = a.okSize(); !ok {
		return 0, 0, false
	}
	return protowire.SizeTag(fieldStatus) + protowire.SizeBytes(0) +
		protowire.SizeTag(fieldOkResponse) + protowire.SizeBytes(okLen), okLen, true
}

func (a *allowAnswer) okSize() (n int, ok bool) {
	for _, h := range a.headers[:a.n] {
		if !utf8.ValidString(h.name) || !utf8.ValidString(h.value) {
			return 0, false
		}
		n += protowire.SizeTag(fieldOkHeaders) + protowire.SizeBytes(optionSize(h.name, h.value))
	}
	for _, r := range a.remove {
		if !utf8.ValidString(r) {
			return 0, false
		}
		n += protowire.SizeTag(fieldOkRemove) + protowire.SizeBytes(len(r))
	}
	if a.token != "" {
		if !utf8.ValidString(a.token) {
			return 0, false
		}
		n += protowire.SizeTag(fieldOkResponseAdd) + protowire.SizeBytes(optionSize(headerConsistency, a.token))
	}
	return n, true
}

// append writes the allow's CheckResponse without dynamic metadata; okLen is size's.
func (a *allowAnswer) append(b []byte, okLen int) []byte {
	b = protowire.AppendTag(b, fieldStatus, protowire.BytesType)
	b = protowire.AppendVarint(b, 0)
	b = protowire.AppendTag(b, fieldOkResponse, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(okLen))
	for _, h := range a.headers[:a.n] {
		b = appendOption(b, fieldOkHeaders, h.name, h.value)
	}
	for _, r := range a.remove {
		b = protowire.AppendTag(b, fieldOkRemove, protowire.BytesType)
		b = protowire.AppendString(b, r)
	}
	if a.token != "" {
		b = appendOption(b, fieldOkResponseAdd, headerConsistency, a.token)
	}
	return b
}

// headerValueSize is the size of a HeaderValue; proto3 leaves empty strings out.
func headerValueSize(k, v string) int {
	n := 0
	if k != "" {
		n += protowire.SizeTag(fieldHeaderKey) + protowire.SizeBytes(len(k))
	}
	if v != "" {
		n += protowire.SizeTag(fieldHeaderValue) + protowire.SizeBytes(len(v))
	}
	return n
}

// optionSize is the size of a HeaderValueOption setting k to v with overwriteOrAdd.
func optionSize(k, v string) int {
	return protowire.SizeTag(fieldOptionHeader) + protowire.SizeBytes(headerValueSize(k, v)) +
		protowire.SizeTag(fieldOptionAction) + protowire.SizeVarint(overwriteOrAdd)
}

func appendOption(b []byte, field protowire.Number, k, v string) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(optionSize(k, v)))
	b = protowire.AppendTag(b, fieldOptionHeader, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(headerValueSize(k, v)))
	if k != "" {
		b = protowire.AppendTag(b, fieldHeaderKey, protowire.BytesType)
		b = protowire.AppendString(b, k)
	}
	if v != "" {
		b = protowire.AppendTag(b, fieldHeaderValue, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	b = protowire.AppendTag(b, fieldOptionAction, protowire.VarintType)
	return protowire.AppendVarint(b, overwriteOrAdd)
}
