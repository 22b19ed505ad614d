package server

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
)

// extAuthzRequest is everything the ext_authz handler reads of an Envoy CheckRequest. The gRPC
// service decodes requests straight into it (decodeCheckRequest) rather than into an
// authv3.CheckRequest: the do-nothing server's proto.Unmarshal allocates every header name and
// value, the peers, the timestamp and a map per map field, and the handler reads a handful of
// them. Since the handler only ever sees this type, it cannot read a field that is not decoded;
// one more read means one more field here, in decodeCheckRequest and in extAuthzFields, and
// FuzzCheckRequestDecode compares the two.
type extAuthzRequest struct {
	method, path, host string // attributes.request.http
	// Request headers, as requestHeader reads them: the headers map, else every header_map
	// entry of that name joined with ",".
	authorization, minVersion, consistency string
	// attributes.context_extensions: configuration of the route, trusted.
	permission, tenant string
	client             string // attributes.source.address.socket_address.address
}

// extAuthzFields is what the handler reads of a decoded CheckRequest (Check, in process).
func extAuthzFields(req *authv3.CheckRequest) extAuthzRequest {
	attrs := req.GetAttributes()
	hr := attrs.GetRequest().GetHttp()
	ext := attrs.GetContextExtensions()
	return extAuthzRequest{
		method:        hr.GetMethod(),
		path:          hr.GetPath(),
		host:          hr.GetHost(),
		authorization: requestHeader(hr, headerAuthorization),
		minVersion:    requestHeader(hr, headerMinVersion),
		consistency:   requestHeader(hr, headerConsistency),
		permission:    ext[extPermission],
		tenant:        ext[extTenant],
		client:        attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
	}
}

// The fields decodeCheckRequest reads, by message (envoy.service.auth.v3 and
// envoy.config.core.v3; TestCheckRequestFieldNumbers checks them against the descriptors).
const (
	fCheckRequestAttributes = 1 // CheckRequest.attributes: AttributeContext

	fAttrSource            = 1  // AttributeContext.source: Peer
	fAttrRequest           = 4  // AttributeContext.request: Request
	fAttrContextExtensions = 10 // AttributeContext.context_extensions: map<string, string>

	fPeerAddress = 1 // AttributeContext.Peer.address: Address

	fAddressSocket   = 1 // Address.socket_address: SocketAddress, in oneof address
	fAddressPipe     = 2 // Address.pipe: Pipe, in oneof address
	fAddressInternal = 3 // Address.envoy_internal_address, in oneof address

	fSocketAddressAddress = 2 // SocketAddress.address: string

	fRequestHTTP = 2 // AttributeContext.Request.http: HttpRequest

	fHTTPMethod    = 2  // HttpRequest.method
	fHTTPHeaders   = 3  // HttpRequest.headers: map<string, string>
	fHTTPPath      = 4  // HttpRequest.path
	fHTTPHost      = 5  // HttpRequest.host
	fHTTPHeaderMap = 13 // HttpRequest.header_map: HeaderMap

	fHeaderMapHeaders = 1 // HeaderMap.headers: repeated HeaderValue

	fHeaderValueKey   = 1 // HeaderValue.key: string
	fHeaderValueValue = 2 // HeaderValue.value: string
	fHeaderValueRaw   = 3 // HeaderValue.raw_value: bytes

	fMapKey   = 1 // a map entry's key
	fMapValue = 2 // a map entry's value
)

// Decoding errors, as protobuf-go's: gRPC answers INTERNAL for either, as for any request the
// proto codec cannot decode.
var (
	errWireFormat = errors.New("proto: cannot parse invalid wire-format data")
	errStringUTF8 = errors.New("proto: string field contains invalid UTF-8")
)

// The request headers the handler reads, in the order of checkRequestDecoder.headers.
var decodedHeaders = [...][]byte{[]byte(headerAuthorization), []byte(headerMinVersion), []byte(headerConsistency)}

// checkRequestDecoder holds what decodeCheckRequest has read so far; every slice points into
// the wire bytes, except a header_map value joined from several entries.
type checkRequestDecoder struct {
	method, path, host []byte
	headers            [len(decodedHeaders)]struct {
		inMap  bool   // the headers map has the name
		mapped []byte // its value there (the last entry of that key)
		listed []byte // header_map's entries of that name, joined with ","
		n      int    // how many header_map entries had the name
	}
	permission, tenant []byte
	socket             bool // the address oneof holds socket_address
	client             []byte
}

// decodeCheckRequest decodes the wire bytes of a CheckRequest into what the handler reads.
// It is proto.Unmarshal of the request with every field the handler does not read taken for
// unknown, field by field with protobuf's rules:
//
//   - of a singular field the last occurrence wins, and the occurrences of a message field
//     merge (Envoy never repeats them; a client of the pdp could);
//   - a map entry's key and value default to "", the last key or value inside an entry wins,
//     and the last entry of a key wins;
//   - header_map keeps every entry in order, and an entry's raw_value, when it is not empty,
//     is its value;
//   - the address is a oneof: a pipe or an internal address after a socket address clears
//     it, and a socket address after those starts afresh;
//   - a field of the wrong wire type is an unknown field, and an unknown field is skipped
//     whatever its number, as long as it is well formed (a valid tag of a field number from 1
//     to 2^29-1, a complete value, groups closed);
//   - strings the handler reads, and every key and value of the two maps it reads, must be
//     valid UTF-8 (the protos are proto3);
//   - anything else malformed is an error.
//
// Skipping the rest is safe because the handler reads nothing else (extAuthzRequest is all it
// sees): a request whose skipped fields are not well-formed protobuf beyond their framing
// (invalid UTF-8 in a skipped string, a skipped message that does not parse) is decoded here
// where proto.Unmarshal would refuse it, and what is decoded from it is what proto.Unmarshal
// decodes from the same request without those fields. FuzzCheckRequestDecode holds the
// decoder to exactly that.
//
// The strings it returns are copies, in two allocations: the bearer token alone (what lives on
// in a decision log entry or a metric must not keep the token's bytes reachable), and the rest
// together.
func decodeCheckRequest(b []byte, out *extAuthzRequest) error {
	var d checkRequestDecoder
	if err := d.checkRequest(b); err != nil {
		return err
	}
	d.finish(out)
	return nil
}

func (d *checkRequestDecoder) checkRequest(b []byte) error {
	return oneField(b, fCheckRequestAttributes, d.attributes)
}

func (d *checkRequestDecoder) attributes(b []byte) error {
	return eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case fAttrSource:
			return oneField(v, fPeerAddress, d.address)
		case fAttrRequest:
			return oneField(v, fRequestHTTP, d.http)
		case fAttrContextExtensions:
			k, val, err := stringMapEntry(v)
			if err != nil {
				return err
			}
			switch string(k) {
			case extPermission:
				d.permission = val
			case extTenant:
				d.tenant = val
			}
			return nil
		}
		return errUnknownField
	})
}

func (d *checkRequestDecoder) address(b []byte) error {
	return eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case fAddressSocket:
			if !d.socket {
				d.socket, d.client = true, nil
			}
			return oneField(v, fSocketAddressAddress, func(v []byte) error { return setString(&d.client, v) })
		case fAddressPipe, fAddressInternal:
			d.socket, d.client = false, nil
			// Still a message: one that does not parse is an error.
			return eachField(v, func(protowire.Number, []byte) error { return errUnknownField })
		}
		return errUnknownField
	})
}

func (d *checkRequestDecoder) http(b []byte) error {
	return eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case fHTTPMethod:
			return setString(&d.method, v)
		case fHTTPPath:
			return setString(&d.path, v)
		case fHTTPHost:
			return setString(&d.host, v)
		case fHTTPHeaders:
			k, val, err := stringMapEntry(v)
			if err != nil {
				return err
			}
			for i, name := range decodedHeaders {
				if bytes.Equal(k, name) {
					d.headers[i].inMap, d.headers[i].mapped = true, val
				}
			}
			return nil
		case fHTTPHeaderMap:
			return oneField(v, fHeaderMapHeaders, d.headerValue)
		}
		return errUnknownField
	})
}

// headerValue reads one header_map entry.
func (d *checkRequestDecoder) headerValue(b []byte) error {
	var key, value, raw []byte
	err := eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case fHeaderValueKey:
			return setString(&key, v)
		case fHeaderValueValue:
			return setString(&value, v)
		case fHeaderValueRaw:
			raw = v // bytes: no UTF-8 to check; empty reads as absent (GetRawValue is nil)
			return nil
		}
		return errUnknownField
	})
	if err != nil {
		return err
	}
	if len(raw) > 0 {
		value = raw
	}
	for i, name := range decodedHeaders {
		if !bytes.EqualFold(key, name) {
			continue
		}
		h := &d.headers[i]
		switch h.n {
		case 0:
			h.listed = value
		case 1:
			// Joined in a slice of the decoder's own, grown by append: a request of many
			// entries of the name costs linear time, not quadratic.
			h.listed = append(append(append([]byte(nil), h.listed...), ','), value...)
		default:
			h.listed = append(append(h.listed, ','), value...)
		}
		h.n++
	}
	return nil
}

// finish copies what was decoded into out.
func (d *checkRequestDecoder) finish(out *extAuthzRequest) {
	var hv [len(decodedHeaders)][]byte
	for i := range d.headers {
		if h := &d.headers[i]; h.inMap {
			hv[i] = h.mapped
		} else {
			hv[i] = h.listed
		}
	}
	out.authorization = string(hv[0])
	parts := [...][]byte{d.method, d.path, d.host, hv[1], hv[2], d.permission, d.tenant, d.client}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	var all strings.Builder
	all.Grow(n)
	for _, p := range parts {
		all.Write(p)
	}
	s := all.String()
	var strs [len(parts)]string
	for i, p := range parts {
		strs[i], s = s[:len(p)], s[len(p):]
	}
	out.method, out.path, out.host = strs[0], strs[1], strs[2]
	out.minVersion, out.consistency = strs[3], strs[4]
	out.permission, out.tenant, out.client = strs[5], strs[6], strs[7]
}

// errUnknownField is what a field callback of eachField returns for a field it does not read.
var errUnknownField = errors.New("unknown field")

// eachField walks the fields of a message, as protobuf-go's decoder does: field calls back
// for every length-delimited field with its bytes; a field it returns errUnknownField for, and
// every field of another wire type (no field decoded here has one), is skipped as an unknown
// field.
func eachField(b []byte, field func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber || typ == protowire.EndGroupType {
			return errWireFormat
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errWireFormat
			}
			err := field(num, v)
			if err == nil {
				b = b[n:]
				continue
			}
			if !errors.Is(err, errUnknownField) {
				return err
			}
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return errWireFormat
		}
		b = b[n:]
	}
	return nil
}

// oneField walks the fields of a message of which one length-delimited field is read.
func oneField(b []byte, want protowire.Number, read func(v []byte) error) error {
	return eachField(b, func(num protowire.Number, v []byte) error {
		if num == want {
			return read(v)
		}
		return errUnknownField
	})
}

// stringMapEntry reads a map<string, string> entry.
func stringMapEntry(b []byte) (key, value []byte, err error) {
	err = eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case fMapKey:
			return setString(&key, v)
		case fMapValue:
			return setString(&value, v)
		}
		return errUnknownField
	})
	return key, value, err
}

// setString sets a proto3 string field.
func setString(dst *[]byte, v []byte) error {
	if !utf8.Valid(v) {
		return errStringUTF8
	}
	*dst = v
	return nil
}

// extAuthzChecker is the handler extAuthzService registers.
type extAuthzChecker interface {
	checkExtAuthz(ctx context.Context, in *extAuthzRequest) (*extAuthzAnswer, error)
}

// extAuthzService is Envoy's ext_authz v3 service as the gRPC server registers it: the
// generated authv3.Authorization_ServiceDesc, except that Check's request is decoded into an
// extAuthzRequest and its answer is an extAuthzAnswer, both by the server's codec
// (extAuthzCodec). Same service, method and proto file
// (reflection serves the real descriptors); the wire is the same.
var extAuthzService = grpc.ServiceDesc{
	ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
	HandlerType: (*extAuthzChecker)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Check",
		Handler:    extAuthzCheckHandler,
	}},
	Streams:  []grpc.StreamDesc{},
	Metadata: authv3.Authorization_ServiceDesc.Metadata,
}

func extAuthzCheckHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(extAuthzRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return checkExtAuthz(ctx, srv, in)
	}
	// The server installs none; one would see the server's own types, not protobuf messages.
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	check := func(ctx context.Context, req any) (any, error) {
		return checkExtAuthz(ctx, srv, req.(*extAuthzRequest))
	}
	return interceptor(ctx, in, info, check)
}

// checkExtAuthz calls the handler; an error is returned without an answer (a nil pointer in
// an interface is not nil).
func checkExtAuthz(ctx context.Context, srv any, in *extAuthzRequest) (any, error) {
	a, err := srv.(extAuthzChecker).checkExtAuthz(ctx, in)
	if err != nil {
		return nil, err
	}
	return a, nil
}
