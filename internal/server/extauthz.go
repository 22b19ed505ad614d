package server

import (
	"context"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// Context extension keys read from the route's ExtAuthzPerRoute check_settings. Route
// configuration is Envoy's, so these are trusted; request headers never are.
const (
	extPermission = "permission"
	extTenant     = "tenant"
)

// Check implements Envoy's ext_authz v3 Authorization service.
//
// A deny is data: a CheckResponse with a DeniedHttpResponse (403 forbidden, 401 with
// WWW-Authenticate, 400 for a request that cannot be evaluated) and the JSON error envelope.
// Only when the pdp cannot decide does Check return a gRPC error (UNAVAILABLE), so that Envoy's
// failure_mode_allow / status_on_error decide, never an OK.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	in := extAuthzFields(req)
	a, err := s.checkExtAuthz(ctx, &in)
	if err != nil {
		return nil, err
	}
	return a.response(), nil
}

// extAuthzAnswer is an ext_authz answer before its dynamic metadata is a Struct: the gRPC
// service hands it to extAuthzCodec, which writes the members straight from md, without
// building (and then walking) a map; Check, in process, turns it into the CheckResponse.
type extAuthzAnswer struct {
	resp  *authv3.CheckResponse // without dynamic metadata; nil for an allow until response()
	allow *allowAnswer          // an OK with identity headers, written by the codec itself
	md    *metadataArena        // nil: none
}

// response is the answer as a CheckResponse, its dynamic metadata a Struct.
func (a *extAuthzAnswer) response() *authv3.CheckResponse {
	if a.resp == nil && a.allow != nil {
		a.resp = a.allow.response()
	}
	if a.md != nil && a.resp.DynamicMetadata == nil {
		a.resp.DynamicMetadata = a.md.toStruct()
	}
	return a.resp
}

// allowAnswer is an OK answer as the few strings it is made of: the identity headers to set
// (OVERWRITE_IF_EXISTS_OR_ADD), the headers to remove and the consistency token to send back.
// The server's codec writes it directly (appendAllow); response builds its messages for
// in-process callers. It is the hot path's answer, so it is one small allocation, not a tree
// of messages.
type allowAnswer struct {
	headers [3]headerPair
	n       int
	remove  []string // headers_to_remove, shared (never written to)
	token   string   // the consistency token for the client ("": none)
}

type headerPair struct{ name, value string }

func (a *allowAnswer) set(name, value string) {
	a.headers[a.n] = headerPair{name, value}
	a.n++
}

func (a *allowAnswer) response() *authv3.CheckResponse {
	ok := &authv3.OkHttpResponse{HeadersToRemove: a.remove}
	for _, h := range a.headers[:a.n] {
		ok.Headers = append(ok.Headers, setHeader(h.name, h.value))
	}
	if a.token != "" {
		ok.ResponseHeadersToAdd = []*corev3.HeaderValueOption{setHeader(headerConsistency, a.token)}
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}
}

// checkExtAuthz is Check on what it reads of the request; the gRPC service calls it with
// requests decoded by decodeCheckRequest.
func (s *Server) checkExtAuthz(ctx context.Context, r *extAuthzRequest) (*extAuthzAnswer, error) {
	start := time.Now()
	defer s.metrics.observe(apiExtAuthz, start)

	in := gateRequest{
		method:        r.method,
		path:          r.path,
		host:          r.host,
		authorization: r.authorization,
		minVersion:    r.minVersion,
		consistency:   r.consistency,
		permission:    r.permission,
		tenant:        r.tenant,
		client:        r.client,
		start:         start,
	}
	g := s.decideGate(ctx, apiExtAuthz, &in)
	s.finish(ctx, &g.rec)

	switch g.kind {
	case gateAllow:
		return s.extAllow(&g), nil
	case gatePublic:
		return &extAuthzAnswer{resp: &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				// Nothing is asserted about a caller on a public route; make sure no identity
				// header reaches the upstream even where Envoy does not strip client copies.
				HeadersToRemove: s.ext.publicRemove,
			}},
		}}, nil
	case gateUnavailable:
		return nil, status.Error(codes.Unavailable, unavailableOutcome.message)
	default: // gateDeny, gateBadRequest
		return s.extDeny(&g), nil
	}
}

// extResponses is what ext_authz answers share from one request to the next, built once by
// New. Responses only point at these; nothing writes to them after New.
type extResponses struct {
	publicRemove []string // identity headers removed on a public route
	tenantRemove []string // the tenant header, removed for a platform subject
	fullMetadata bool     // Config.ExtAuthzMetadata == MetadataFull
}

func newExtResponses(cfg *Config) extResponses {
	return extResponses{
		publicRemove: []string{cfg.TenantHeader, cfg.UserHeader, cfg.DecisionIDHeader},
		tenantRemove: []string{cfg.TenantHeader},
		fullMetadata: cfg.ExtAuthzMetadata == MetadataFull,
	}
}

// contentTypeJSON is the content-type of every denied answer's body.
var contentTypeJSON = setHeader("content-type", "application/json")

// extAllow is an OK carrying the identity headers. They are SET (overwrite or add), never
// appended: a client-sent copy that got past Envoy's header_mutation must not survive next to
// ours, and the upstream must read exactly one value.
//
// The answer, its headers and its metadata are one allocation: this is the hot path.
func (s *Server) extAllow(g *gateResult) *extAuthzAnswer {
	var a struct {
		answer extAuthzAnswer
		allow  allowAnswer
		md     metadataArena
	}
	if g.sub.TenantSlug != "" {
		a.allow.set(s.cfg.TenantHeader, g.sub.TenantSlug)
	} else {
		// A platform subject has no tenant; an empty value cannot be set (Envoy drops it), so
		// remove the header instead.
		a.allow.remove = s.ext.tenantRemove
	}
	a.allow.set(s.cfg.UserHeader, g.sub.UserID)
	a.allow.set(s.cfg.DecisionIDHeader, g.res.DecisionID)

	// CheckResponse.dynamic_metadata rather than OkHttpResponse's, which is deprecated. It lands
	// in the envoy.filters.http.ext_authz namespace, for access logs and later filters. Every
	// member costs a map entry to encode, so tenant and user, which the headers carry, are
	// there only when asked for (ExtAuthzMetadata).
	tok := g.res.TokenString()
	// To the client, which may send it back to read at least this data again.
	a.allow.token = tok
	a.md.set("decision_id", g.res.DecisionID)
	a.md.set("reason", g.rec.reason)
	// A string, because a JSON number (float64) loses integers above 2^53.
	a.md.setUint("version", g.res.Version)
	if tok != "" {
		a.md.set("consistency_token", tok)
	}
	if s.ext.fullMetadata {
		a.md.set("tenant", g.sub.TenantSlug)
		a.md.set("user", g.sub.UserID)
	}
	a.answer.allow, a.answer.md = &a.allow, &a.md
	return &a.answer
}

// metadataArena is the dynamic metadata of an answer: up to six members, each a string or an
// unsigned integer written as one, kept in order in the allocation of the answer that holds
// them.
type metadataArena struct {
	members [6]metadataMember
	n       int
}

// metadataMember is a member of the dynamic metadata; an integer is written in decimal when
// the answer is encoded, not before.
type metadataMember struct {
	name  string
	str   string
	num   uint64
	isNum bool
}

func (m *metadataArena) set(name, value string) {
	m.members[m.n] = metadataMember{name: name, str: value}
	m.n++
}

func (m *metadataArena) setUint(name string, value uint64) {
	m.members[m.n] = metadataMember{name: name, num: value, isNum: true}
	m.n++
}

// value is a member's string.
func (mm *metadataMember) value() string {
	if mm.isNum {
		return strconv.FormatUint(mm.num, 10)
	}
	return mm.str
}

// toStruct is the metadata as a Struct of string values, its messages carved out of one
// allocation.
func (m *metadataArena) toStruct() *structpb.Struct {
	var a struct {
		s    structpb.Struct
		vals [len(m.members)]structpb.Value
		strs [len(m.members)]structpb.Value_StringValue
	}
	a.s.Fields = make(map[string]*structpb.Value, m.n)
	for i := range m.members[:m.n] {
		a.strs[i].StringValue = m.members[i].value()
		a.vals[i].Kind = &a.strs[i]
		a.s.Fields[m.members[i].name] = &a.vals[i]
	}
	return &a.s
}

// extDeny is a denied answer with the JSON error envelope; the HTTP status and the gRPC code
// come from the outcome table.
func (s *Server) extDeny(g *gateResult) *extAuthzAnswer {
	var a struct {
		answer  extAuthzAnswer
		resp    authv3.CheckResponse
		status  rpcstatus.Status
		oneof   authv3.CheckResponse_DeniedResponse
		denied  authv3.DeniedHttpResponse
		http    typev3.HttpStatus
		headers [3]*corev3.HeaderValueOption
		md      metadataArena
	}
	a.headers[0] = contentTypeJSON
	headers := a.headers[:1]
	if g.out.http == 401 {
		headers = append(headers, setHeader("www-authenticate", wwwAuthenticate(g.rec.authn)))
	}
	if tok := g.res.TokenString(); tok != "" {
		headers = append(headers, setHeader(headerConsistency, tok))
	}
	a.md.set("decision_id", g.rec.decisionID)
	a.md.set("reason", g.rec.reason)
	a.status.Code, a.status.Message = int32(g.out.grpc), g.message
	a.http.Code = typev3.StatusCode(g.out.http)
	a.denied.Status, a.denied.Headers, a.denied.Body = &a.http, headers, string(errorBody(g))
	a.oneof.DeniedResponse = &a.denied
	a.resp.Status, a.resp.HttpResponse = &a.status, &a.oneof
	a.answer.resp, a.answer.md = &a.resp, &a.md
	return &a.answer
}

func setHeader(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// requestHeader returns a request header of a CheckRequest. Envoy sends headers either in the
// headers map (lowercased names, repeated headers joined with ",") or, with
// encode_raw_headers (as in envoy/envoy.yaml), in header_map with one entry per occurrence;
// repeated occurrences are joined with "," here too, so that two Authorization headers never
// read as one token.
func requestHeader(hr *authv3.AttributeContext_HttpRequest, name string) string {
	if v, ok := hr.GetHeaders()[name]; ok {
		return v
	}
	var out strings.Builder // linear in the entries, however many
	n := 0
	for _, h := range hr.GetHeaderMap().GetHeaders() {
		if !strings.EqualFold(h.GetKey(), name) {
			continue
		}
		if n > 0 {
			out.WriteByte(',')
		}
		if raw := h.GetRawValue(); raw != nil {
			out.Write(raw)
		} else {
			out.WriteString(h.GetValue())
		}
		n++
	}
	return out.String()
}
