package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/pdp"
	"github.com/neofast/neoauthz/internal/routes"
	"github.com/neofast/neoauthz/internal/strictjson"
)

// AuthZEN Authorization API 1.0, HTTPS JSON binding: Access Evaluation, Access Evaluations,
// the Search APIs and PDP metadata, decided by the same Decider (engine, caches, freshness,
// metrics) as ext_authz, forward auth and neoauthz.v1.

// Limits of AuthZEN requests. They keep hostile input cheap; real requests are far below.
const (
	maxAuthZENBody       = 1 << 20
	maxAuthZENItems      = MaxBulkItems
	maxAuthZENTypeLen    = 128
	maxAuthZENIDLen      = 255 // users.external_id
	maxAuthZENResIDLen   = 1024
	maxAuthZENPropLen    = 320 // users.email
	maxRequestIDLen      = 256
	authzenTenantsPrefix = "/tenants/{tenant}"
	authzenWellKnown     = "/.well-known/authzen-configuration"
	headerRequestID      = "X-Request-ID"
)

// The AuthZEN endpoints, relative to the pdp's base (or a tenant's).
const (
	pathEvaluation     = "/access/v1/evaluation"
	pathEvaluations    = "/access/v1/evaluations"
	pathSearchSubject  = "/access/v1/search/subject"
	pathSearchAction   = "/access/v1/search/action"
	pathSearchResource = "/access/v1/search/resource"
)

// Reasons of AuthZEN denies decided before the pdp's engine (the engine's reasons are the
// pdp.Reason names).
const (
	reasonUnknownAction       = "unknown_action"
	reasonUnsupportedSubject  = "unsupported_subject_type"
	reasonSubjectMismatch     = "subject_token_mismatch"
	reasonUnknownUserEmail    = "unknown_user"
	reasonNoRoute             = "no_route"
	reasonPublicRoute         = "public"
	semanticExecuteAll        = "execute_all"
	semanticDenyOnFirstDeny   = "deny_on_first_deny"
	semanticPermitOnFirstPerm = "permit_on_first_permit"
)

// AuthZENDirectory is what AuthZEN needs beyond Decider for users named by email, subject
// search and team resource search (*pdp.Service provides it). Without it, users named by
// email are a 501 and those searches are not served.
type AuthZENDirectory interface {
	// UserByEmail returns the external id of the one user of tenant whose email is email.
	UserByEmail(ctx context.Context, tenant, email string) (externalID string, found bool, err error)
	// SubjectCandidates returns, in byte order after after, at most limit active users of
	// tenant who hold (directly or through a role) a grant that may match resource.action.
	// It is a superset: every candidate is then decided by the engine.
	SubjectCandidates(ctx context.Context, tenant, resource, action, after string, limit int) ([]string, error)
	// Teams returns, in byte order after after, at most limit team ids of tenant.
	Teams(ctx context.Context, tenant, after string, limit int) ([]string, error)
}

var _ AuthZENDirectory = (*pdp.Service)(nil)

// authzenState is the AuthZEN transport's configuration, ready for requests.
type authzenState struct {
	cfg  *AuthZENConfig
	mtls map[string]*PEPConfig
	dir  AuthZENDirectory // nil: no users named by email, no subject or resource search
}

func newAuthZEN(cfg *AuthZENConfig, dec Decider) *authzenState {
	a := &authzenState{cfg: cfg, mtls: map[string]*PEPConfig{}}
	for i := range cfg.PEPs {
		for _, id := range cfg.PEPs[i].MTLSIdentities {
			a.mtls[id] = &cfg.PEPs[i]
		}
	}
	a.dir, _ = dec.(AuthZENDirectory)
	return a
}

// registerAuthZEN adds the AuthZEN endpoints to mux, at the root and under /tenants/{tenant}.
func (s *Server) registerAuthZEN(mux *http.ServeMux) {
	for _, prefix := range []string{"", authzenTenantsPrefix} {
		mux.Handle("POST "+prefix+pathEvaluation, authzenHandler(s, s.authzenEvaluation))
		mux.Handle("POST "+prefix+pathEvaluations, authzenHandler(s, s.authzenEvaluations))
		mux.Handle("POST "+prefix+pathSearchAction, authzenHandler(s, s.authzenSearchAction))
		if s.authzen.dir != nil {
			mux.Handle("POST "+prefix+pathSearchSubject, authzenHandler(s, s.authzenSearchSubject))
		}
		if s.authzenSearchesResources() {
			mux.Handle("POST "+prefix+pathSearchResource, authzenHandler(s, s.authzenSearchResource))
		}
	}
	mux.HandleFunc("GET "+authzenWellKnown, s.authzenMetadata)
	mux.HandleFunc("GET "+authzenWellKnown+authzenTenantsPrefix, s.authzenMetadata)
}

// azEntity is an AuthZEN subject.
type azEntity struct {
	Type       string                     `json:"type"`
	ID         string                     `json:"id"`
	Properties map[string]json.RawMessage `json:"properties"`
}

type azAction struct {
	Name       string                     `json:"name"`
	Properties map[string]json.RawMessage `json:"properties"`
}

// azResource is an AuthZEN resource. Members beside type, id and properties are kept in
// legacy: PEPs written to drafts before properties existed (the interop Todo scenario's
// decisions.json) put attributes there, and a mapped property is looked up there last.
type azResource struct {
	Type       string
	ID         string
	HasID      bool
	Properties map[string]json.RawMessage
	legacy     map[string]json.RawMessage
}

func (r *azResource) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for name, dst := range map[string]*string{"type": &r.Type, "id": &r.ID} {
		raw, ok := m[name]
		if !ok || isJSONNull(raw) {
			continue
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return fmt.Errorf("resource.%s must be a string", name)
		}
		r.HasID = r.HasID || name == "id"
		delete(m, name)
	}
	if raw, ok := m["properties"]; ok {
		if !isJSONNull(raw) {
			if err := json.Unmarshal(raw, &r.Properties); err != nil {
				return errors.New("resource.properties must be an object")
			}
		}
		delete(m, "properties")
	}
	r.legacy = m
	return nil
}

// property returns the string property name of the resource ("" when absent or null).
func (r *azResource) property(name string) (string, error) {
	if name == "" {
		return "", nil
	}
	raw, ok := r.Properties[name]
	if !ok {
		raw, ok = r.legacy[name]
	}
	return stringProperty("resource.properties."+name, raw, ok)
}

func stringProperty(what string, raw json.RawMessage, ok bool) (string, error) {
	if !ok || isJSONNull(raw) {
		return "", nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", fmt.Errorf("%s must be a string", what)
	}
	if len(v) > maxAuthZENPropLen {
		return "", fmt.Errorf("%s is too long", what)
	}
	return v, nil
}

func isJSONNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// azEvaluation is one access evaluation request, or the defaults and items of an
// evaluations request.
type azEvaluation struct {
	Subject  *azEntity       `json:"subject"`
	Action   *azAction       `json:"action"`
	Resource *azResource     `json:"resource"`
	Context  json.RawMessage `json:"context"` // not used for decisions; must be an object
}

type azEvaluationsRequest struct {
	azEvaluation
	Evaluations []azEvaluation `json:"evaluations"`
	Options     struct {
		Semantic string `json:"evaluations_semantic"`
	} `json:"options"`
}

// azDecision is an AuthZEN Decision.
type azDecision struct {
	Decision bool      `json:"decision"`
	Context  azContext `json:"context"`
}

// azContext is the decision context neoauthz returns: why, which decision (for the logs),
// at which authorization version, or the error that kept an item from being decided.
type azContext struct {
	Reason     string `json:"reason,omitempty"`
	DecisionID string `json:"decision_id,omitempty"`
	Version    uint64 `json:"version,omitempty"`
	// ConsistencyToken names the data the decision used.
	ConsistencyToken string   `json:"consistency_token,omitempty"`
	Error            *azError `json:"error,omitempty"`
}

// azError is an error that is not a decision: an HTTP status and a message for the caller.
type azError struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
	err     error  // for the log only
}

func (e *azError) Error() string { return e.Message }

func azBad(format string, args ...any) *azError {
	return &azError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// azCaller is who sent the request: a configured PEP, or nil for a caller that may only ask
// about the bearers of subject tokens.
type azCaller struct {
	pep *PEPConfig
}

// azRequest is what every AuthZEN endpoint establishes before deciding anything.
type azRequest struct {
	caller azCaller
	tenant string // bound by the path, "" at the root
	// consistency is the request's consistency token (x-neoauthz-consistency).
	consistency consistency.Token
}

// authzenBegin authenticates the caller and reads the parts of the request every endpoint
// shares. body receives the decoded JSON.
func (s *Server) authzenBegin(w http.ResponseWriter, r *http.Request, body any) (azRequest, *azError) {
	if id := r.Header.Get(headerRequestID); id != "" && validRequestID(id) {
		w.Header().Set(headerRequestID, id)
	}
	var in azRequest
	if t := r.PathValue("tenant"); t != "" {
		if !pdp.ValidTenantName(t) {
			return in, &azError{Status: http.StatusNotFound, Message: "not a tenant"}
		}
		in.tenant = t
	}
	if r.Header.Get(headerMinVersion) != "" {
		// Ignoring it would silently drop the caller's read-your-writes.
		return in, azBad("%s", msgMinVersion)
	}
	caller, aerr := s.authzenCaller(r)
	if aerr != nil {
		return in, aerr
	}
	in.caller = caller
	// Only a known caller may make the pdp read a version.
	tok, bad, err := s.awaitToken(r.Context(), joinedHeader(r.Header, headerConsistency))
	switch {
	case bad != "":
		return in, azBad("%s", bad)
	case err != nil:
		return in, &azError{Status: http.StatusServiceUnavailable, Message: unavailableOutcome.message, err: err}
	}
	in.consistency = tok
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return in, azBad("Content-Type must be application/json")
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAuthZENBody))
	if err != nil {
		return in, azBad("request body too large or unreadable")
	}
	if !utf8.Valid(b) {
		// I-JSON (RFC 7493 §2.1); json.Unmarshal would silently replace the bad bytes.
		return in, azBad("malformed JSON request: not UTF-8")
	}
	// Unmarshal refuses anything after the top-level value.
	if err := json.Unmarshal(b, body); err != nil {
		return in, azBad("malformed JSON request: %s", jsonProblem(err))
	}
	// I-JSON (RFC 7493 §2.3): a reader that keeps the first and one that keeps the last member
	// of a name would act on two different requests.
	if err := strictjson.CheckMembers(b); err != nil {
		var dup *strictjson.DuplicateMemberError
		if errors.As(err, &dup) {
			return in, azBad("malformed JSON request: member %q appears twice in one object", dup.Name)
		}
		return in, azBad("malformed JSON request: nested more than %d deep", strictjson.MaxDepth)
	}
	return in, nil
}

// jsonProblem describes a decoding error without echoing the request.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field != "" {
			return te.Field + " has the wrong type"
		}
		return "the top level must be an object"
	case errors.As(err, &se):
		return "syntax error at offset " + strconv.FormatInt(se.Offset, 10)
	default:
		msg := err.Error()
		if len(msg) > 120 {
			msg = msg[:120]
		}
		return msg
	}
}

// authzenCaller identifies the caller: an mTLS client certificate naming a PEP, else a bearer
// token of a PEP's client. Without either, the caller may only use subject tokens.
func (s *Server) authzenCaller(r *http.Request) (azCaller, *azError) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		var pep *PEPConfig
		forEachIdentity(r.TLS.VerifiedChains[0][0], func(id string) bool {
			pep = s.authzen.mtls[id]
			return pep != nil
		})
		if pep != nil {
			return azCaller{pep: pep}, nil
		}
	}
	tok, isBearer := bearerToken(joinedHeader(r.Header, "Authorization"))
	if tok == "" {
		if isBearer {
			return azCaller{}, &azError{Status: http.StatusUnauthorized, Message: msgInvalidToken}
		}
		if !s.authzen.cfg.SubjectTokens {
			return azCaller{}, &azError{Status: http.StatusUnauthorized, Message: "a PEP credential is required (mTLS or a bearer token)"}
		}
		return azCaller{}, nil
	}
	sub, err := s.dec.SubjectFromToken(r.Context(), tok)
	if err != nil {
		if label, ok := authnFailure(err); ok {
			return azCaller{}, &azError{Status: http.StatusUnauthorized, Message: msgInvalidToken + ": " + label, err: err}
		}
		return azCaller{}, &azError{Status: http.StatusServiceUnavailable, Message: unavailableOutcome.message, err: err}
	}
	if sub.FromToken() {
		for i := range s.authzen.cfg.PEPs {
			p := &s.authzen.cfg.PEPs[i]
			c := p.Client
			if c != nil && c.Realm == sub.Identity.Realm && c.ClientID == sub.Identity.AuthorizedParty &&
				(c.Subject == "" || c.Subject == sub.UserID) {
				return azCaller{pep: p}, nil
			}
		}
	}
	return azCaller{}, &azError{Status: http.StatusForbidden, Message: "the credential is not a configured PEP's"}
}

func validRequestID(id string) bool {
	if len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// authzenHandler is the frame of every AuthZEN POST endpoint: timing, the caller and the
// body (authzenBegin), then fn, whose answer is written as 200 JSON and whose error is
// answered by authzenFail.
func authzenHandler[T any](s *Server, fn func(r *http.Request, in *azRequest, body *T) (any, *azError)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		defer s.metrics.observe(apiAuthZEN, start)
		var body T
		in, aerr := s.authzenBegin(w, r, &body)
		var out any
		if aerr == nil {
			out, aerr = fn(r, &in, &body)
		}
		if aerr != nil {
			s.authzenFail(w, r, aerr)
			return
		}
		writeAuthZEN(w, http.StatusOK, out)
	}
}

// authzenEvaluation is POST /access/v1/evaluation.
func (s *Server) authzenEvaluation(r *http.Request, in *azRequest, body *azEvaluation) (any, *azError) {
	if aerr := body.complete(""); aerr != nil {
		return nil, aerr
	}
	return s.authzenDecide(r.Context(), in, body)
}

// authzenEvaluations is POST /access/v1/evaluations: the top-level subject, action, resource
// and context are defaults for each item; without items it is one evaluation.
func (s *Server) authzenEvaluations(r *http.Request, in *azRequest, body *azEvaluationsRequest) (any, *azError) {
	semantic := body.Options.Semantic
	switch semantic {
	case "", semanticExecuteAll, semanticDenyOnFirstDeny, semanticPermitOnFirstPerm:
	default:
		return nil, azBad("options.evaluations_semantic must be %s, %s or %s", semanticExecuteAll, semanticDenyOnFirstDeny, semanticPermitOnFirstPerm)
	}
	if len(body.Evaluations) == 0 {
		// Backwards compatible with the single evaluation (and answered like it).
		return s.authzenEvaluation(r, in, &body.azEvaluation)
	}
	if len(body.Evaluations) > maxAuthZENItems {
		return nil, azBad("too many evaluations: %d, at most %d", len(body.Evaluations), maxAuthZENItems)
	}
	items := body.Evaluations
	for i := range items {
		items[i].withDefaults(&body.azEvaluation)
		if aerr := items[i].complete(fmt.Sprintf("evaluations[%d].", i)); aerr != nil {
			return nil, aerr
		}
	}
	out := make([]azDecision, 0, len(items))
	for i := range items {
		d, aerr := s.authzenDecide(r.Context(), in, &items[i])
		if aerr != nil {
			if aerr.Status == http.StatusUnauthorized || aerr.Status == http.StatusBadRequest {
				// About the whole request (the caller, the tenant): not one item's failure.
				return nil, aerr
			}
			d = azDecision{Context: azContext{Error: aerr, DecisionID: newDecisionID()}}
		}
		out = append(out, d)
		if semantic == semanticDenyOnFirstDeny && !d.Decision || semantic == semanticPermitOnFirstPerm && d.Decision {
			break
		}
	}
	return struct {
		Evaluations []azDecision `json:"evaluations"`
	}{out}, nil
}

// withDefaults fills the members e does not set from the request's top level.
func (e *azEvaluation) withDefaults(d *azEvaluation) {
	if e.Subject == nil {
		e.Subject = d.Subject
	}
	if e.Action == nil {
		e.Action = d.Action
	}
	if e.Resource == nil {
		e.Resource = d.Resource
	}
	if e.Context == nil {
		e.Context = d.Context
	}
}

// complete checks that e has every required member, within bounds.
func (e *azEvaluation) complete(at string) *azError {
	switch {
	case len(e.Context) > 0 && e.Context[0] != '{' && !isJSONNull(e.Context):
		return azBad("%scontext must be an object", at)
	case e.Subject == nil || e.Subject.Type == "" || e.Subject.ID == "":
		return azBad("%ssubject with type and id is required", at)
	case e.Action == nil || e.Action.Name == "":
		return azBad("%saction with name is required", at)
	case e.Resource == nil || e.Resource.Type == "" || !e.Resource.HasID:
		return azBad("%sresource with type and id is required", at)
	case len(e.Subject.Type) > maxAuthZENTypeLen || len(e.Resource.Type) > maxAuthZENTypeLen || len(e.Action.Name) > maxAuthZENTypeLen:
		return azBad("%ssubject.type, resource.type and action.name are at most %d bytes", at, maxAuthZENTypeLen)
	case len(e.Subject.ID) > maxAuthZENIDLen:
		return azBad("%ssubject.id is at most %d bytes", at, maxAuthZENIDLen)
	case len(e.Resource.ID) > maxAuthZENResIDLen:
		return azBad("%sresource.id is at most %d bytes", at, maxAuthZENResIDLen)
	}
	return nil
}

// authzenDecide decides one complete evaluation. A deny is a decision; an *azError is not.
func (s *Server) authzenDecide(ctx context.Context, in *azRequest, e *azEvaluation) (azDecision, *azError) {
	rec := record{api: apiAuthZEN}
	d, aerr := s.authzenCheck(ctx, in, e, &rec)
	s.authzenRecord(ctx, &rec, d, aerr)
	return d, aerr
}

// authzenRecord counts and logs one AuthZEN check.
func (s *Server) authzenRecord(ctx context.Context, rec *record, d azDecision, aerr *azError) {
	switch {
	case aerr != nil:
		rec.result, rec.reason = resultError, http.StatusText(aerr.Status)
		rec.undecided = aerr.Status >= 500
		if rec.err == nil {
			rec.err = aerr.err
		}
		if rec.err == nil {
			rec.err = aerr
		}
		rec.decisionID = newDecisionID()
	case d.Decision:
		rec.result = resultAllowed
	default:
		rec.result = resultDenied
		if d.Context.Reason == pdp.ReasonUnauthenticated.String() {
			rec.result = resultUnauthenticated
		}
	}
	if aerr == nil {
		rec.reason, rec.decisionID = d.Context.Reason, d.Context.DecisionID
	}
	s.finish(ctx, rec)
}

// azDeny is a deny decided before the engine.
func azDeny(reason string) azDecision {
	return azDecision{Context: azContext{Reason: reason, DecisionID: newDecisionID()}}
}

func (s *Server) authzenCheck(ctx context.Context, in *azRequest, e *azEvaluation, rec *record) (azDecision, *azError) {
	sub, deny, aerr := s.authzenSubject(ctx, in, e.Subject, rec)
	if aerr != nil || deny != "" {
		return azDeny(deny), aerr
	}
	return s.authzenCheckAs(ctx, in, sub, e, rec)
}

// authzenCheckAs decides e for an established subject.
func (s *Server) authzenCheckAs(ctx context.Context, in *azRequest, asub azSubject, e *azEvaluation, rec *record) (azDecision, *azError) {
	cfg := s.authzen.cfg
	sub := asub.Subject
	rec.tenant, rec.user = tenantLabel(sub), sub.UserID
	rec.logged.subject(sub)

	req := pdp.Request{Consistency: in.consistency, BoundTenant: asub.bound}
	if cfg.RouteResourceType != "" && e.Resource.Type == cfg.RouteResourceType {
		d, done, aerr := s.authzenRoute(e, sub, &req, rec)
		if done || aerr != nil {
			return d, aerr
		}
	} else {
		perm, ok := cfg.permission(e.Action.Name, e.Resource.Type)
		if !ok {
			return azDeny(reasonUnknownAction), nil
		}
		req.Permission = perm
		rec.permission = perm
		if strings.Count(perm, ".") == 1 {
			res, deny, aerr := s.authzenResource(ctx, sub, e.Resource)
			if aerr != nil || deny != "" {
				return azDeny(deny), aerr
			}
			req.Resource = res
		}
	}
	res, err := s.dec.Check(ctx, sub, req)
	if err == nil {
		err = consistent(res)
	}
	if err != nil {
		rec.err = err
		if errors.Is(err, pdp.ErrInvalidRequest) {
			return azDecision{}, &azError{Status: http.StatusBadRequest, Message: "invalid permission request", err: err}
		}
		return azDecision{}, &azError{Status: http.StatusServiceUnavailable, Message: unavailableOutcome.message, err: err}
	}
	rec.logged.result(req.Resource, res)
	return azDecision{Decision: res.Allowed, Context: azContext{Reason: res.Reason.String(), DecisionID: res.DecisionID, Version: res.Version,
		ConsistencyToken: res.TokenString()}}, nil
}

// azSubject is the subject of an evaluation and the tenant the request binds it to (the
// path's, for a subject established from its token; the pdp denies a subject of another
// tenant as cross_tenant).
type azSubject struct {
	pdp.Subject
	bound string
}

// authzenSubject establishes the subject of one evaluation: from its subject token when it
// carries one (and the subject must then be the token's), else from the PEP's word, in the
// tenant the path binds or the PEP's only tenant. deny is a reason for a deny decision.
func (s *Server) authzenSubject(ctx context.Context, in *azRequest, subj *azEntity, rec *record) (sub azSubject, deny string, aerr *azError) {
	m, ok := s.authzen.cfg.subjectMapping(subj.Type)
	if !ok {
		return sub, reasonUnsupportedSubject, nil
	}
	platform := m.Level == "platform"
	var token string
	if raw, ok := subj.Properties["token"]; ok && !isJSONNull(raw) {
		// The validator bounds its length.
		if err := json.Unmarshal(raw, &token); err != nil {
			return sub, "", azBad("subject.properties.token must be a string")
		}
	}
	pep := in.caller.pep
	if platform && pep != nil && !pep.Platform {
		return sub, "", &azError{Status: http.StatusForbidden, Message: "this PEP may not ask about platform subjects"}
	}

	if token != "" {
		// The token names the subject and its tenant; the path, when it names a tenant, binds
		// the request to it (a token of another tenant is denied cross_tenant).
		sub.bound = in.tenant
		tsub, err := s.dec.SubjectFromToken(ctx, token)
		if err != nil {
			if label, ok := authnFailure(err); ok {
				rec.authn = label
				return sub, pdp.ReasonUnauthenticated.String(), nil
			}
			return sub, "", &azError{Status: http.StatusServiceUnavailable, Message: unavailableOutcome.message, err: err}
		}
		want := subj.ID
		if m.ID == byEmail {
			if want, deny, aerr = s.authzenUserByEmail(ctx, tsub.TenantID, subj.ID); aerr != nil || deny != "" {
				if deny == reasonUnknownUserEmail {
					deny = reasonSubjectMismatch
				}
				return sub, deny, aerr
			}
		}
		if tsub.UserID != want || (tsub.Level == authn.LevelPlatform) != platform {
			return sub, reasonSubjectMismatch, nil
		}
		if pep != nil && !platform && !pep.allows(tsub.TenantID, tsub.TenantSlug) {
			return sub, "", errPEPTenant
		}
		sub.Subject = tsub
		return sub, "", nil
	}
	if pep == nil {
		return sub, "", &azError{Status: http.StatusUnauthorized, Message: "a PEP credential or subject.properties.token is required"}
	}
	tenant := in.tenant
	if !platform {
		if tenant, aerr = pepTenant(in, pathEvaluation); aerr != nil {
			return sub, "", aerr
		}
	}
	var err error
	if platform {
		sub.Subject, err = s.dec.SubjectFromPrincipal(ctx, "", subj.ID)
	} else {
		if !pep.allows(tenant) {
			return sub, "", errPEPTenant
		}
		user := subj.ID
		if m.ID == byEmail {
			if user, deny, aerr = s.authzenUserByEmail(ctx, tenant, subj.ID); aerr != nil || deny != "" {
				return sub, deny, aerr
			}
		}
		sub.Subject, err = s.dec.SubjectFromPrincipal(ctx, tenant, user)
	}
	if err != nil {
		rec.err = err
		if errors.Is(err, pdp.ErrInvalidRequest) {
			return sub, "", azBad("invalid subject")
		}
		return sub, "", &azError{Status: http.StatusServiceUnavailable, Message: unavailableOutcome.message, err: err}
	}
	return sub, "", nil
}

// errPEPTenant refuses a PEP asking about a tenant it is not bound to.
var errPEPTenant = &azError{Status: http.StatusForbidden, Message: "this PEP may not ask about this tenant"}

// pepTenant is the tenant a PEP's request is about: the path's, else the PEP's only tenant.
func pepTenant(in *azRequest, endpoint string) (string, *azError) {
	if in.tenant != "" {
		return in.tenant, nil
	}
	pep := in.caller.pep
	if len(pep.Tenants) != 1 || pep.Tenants[0] == anyTenant {
		return "", azBad("this PEP asks about several tenants: use /tenants/{tenant}%s", endpoint)
	}
	return pep.Tenants[0], nil
}

func (s *Server) authzenUserByEmail(ctx context.Context, tenant, email string) (id, deny string, aerr *azError) {
	if s.authzen.dir == nil {
		return "", "", &azError{Status: http.StatusNotImplemented, Message: "users named by email are not supported by this pdp"}
	}
	id, found, err := s.authzen.dir.UserByEmail(ctx, tenant, email)
	switch {
	case errors.Is(err, pdp.ErrNotServedInRegion):
		return "", pdp.ReasonNotServedInRegion.String(), nil
	case err != nil:
		return "", "", &azError{Status: http.StatusServiceUnavailable, Message: unavailableOutcome.message, err: err}
	case !found:
		return "", reasonUnknownUserEmail, nil
	}
	return id, "", nil
}

// authzenResource reads the resource of a resource check from the mapped properties.
func (s *Server) authzenResource(ctx context.Context, sub pdp.Subject, r *azResource) (*pdp.Resource, string, *azError) {
	m := s.authzen.cfg.resourceMapping(r.Type)
	owner, err := r.property(m.Owner)
	if err != nil {
		return nil, "", azBad("%s", err.Error())
	}
	team, err := r.property(m.Team)
	if err != nil {
		return nil, "", azBad("%s", err.Error())
	}
	res := &pdp.Resource{OwnerID: owner}
	if sub.Level == authn.LevelPlatform {
		if res.Tenant, err = r.property(m.Tenant); err != nil {
			return nil, "", azBad("%s", err.Error())
		}
	} else {
		res.TeamID = team
	}
	if owner != "" && m.OwnerBy == byEmail {
		// Nobody owns it by that email (or the tenant is not served here, and the check
		// denies): the resource is nobody's.
		id, _, aerr := s.authzenUserByEmail(ctx, sub.TenantID, owner)
		if aerr != nil {
			return nil, "", aerr
		}
		res.OwnerID = id
	}
	return res, "", nil
}

// authzenRoute decides a route resource through the route table: action.name is the method,
// resource.id the path. done reports a decision made without the engine.
func (s *Server) authzenRoute(e *azEvaluation, sub pdp.Subject, req *pdp.Request, rec *record) (azDecision, bool, *azError) {
	if s.routes == nil {
		return azDeny(reasonNoRoute), true, nil
	}
	m, err := s.routes.Match(e.Action.Name, e.Resource.ID)
	rec.path = m.Path
	switch {
	case errors.Is(err, routes.ErrNoRoute):
		return azDeny(reasonNoRoute), true, nil
	case errors.Is(err, routes.ErrBadMethod):
		return azDecision{}, true, azBad("action.name is not an HTTP method")
	case err != nil:
		return azDecision{}, true, azBad("resource.id is not a request path")
	}
	if m.Route.Public {
		return azDecision{Decision: true, Context: azContext{Reason: reasonPublicRoute, DecisionID: newDecisionID()}}, true, nil
	}
	req.Permission = m.Route.Permission
	rec.permission = req.Permission
	// An invalid request before any tenant gate: a name that is no tenant's is refused as such,
	// not as a conflict with the tenant the PEP asks about.
	if m.Tenant != "" && !pdp.ValidTenantName(m.Tenant) {
		return azDecision{}, true, azBad("resource.id names no valid tenant")
	}
	if bound, conflict := bindTenant(req.BoundTenant, m.Tenant); conflict {
		return azDeny(pdp.ReasonCrossTenant.String()), true, nil
	} else if sub.Level == authn.LevelTenant {
		req.BoundTenant = bound
	}
	if m.Route.ResourceCheck() {
		req.Resource = &pdp.Resource{OwnerID: m.Owner, TeamID: m.Team}
		if sub.Level == authn.LevelPlatform {
			req.Resource.Tenant = m.Tenant
		}
	}
	return azDecision{}, false, nil
}

// authzenFail answers a request that could not be evaluated: the status and a JSON body
// {"error": {"status", "message"}}; 401 carries WWW-Authenticate. Never a decision.
func (s *Server) authzenFail(w http.ResponseWriter, r *http.Request, e *azError) {
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="neoauthz"`)
	}
	rec := record{api: apiAuthZEN, reason: http.StatusText(e.Status), err: e.err, undecided: e.Status >= 500,
		decisionID: newDecisionID(), path: r.URL.Path}
	if rec.err == nil {
		rec.err = e
	}
	s.finish(r.Context(), &rec)
	writeAuthZEN(w, e.Status, struct {
		Error *azError `json:"error"`
	}{e})
}

func writeAuthZEN(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"status":500,"message":"cannot encode the answer"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// authzenMetadata is GET /.well-known/authzen-configuration[/tenants/{tenant}]: the PDP
// metadata, naming exactly the endpoints served.
func (s *Server) authzenMetadata(w http.ResponseWriter, r *http.Request) {
	base := s.authzen.cfg.PolicyDecisionPoint
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	base = strings.TrimSuffix(base, "/")
	if t := r.PathValue("tenant"); t != "" {
		if !pdp.ValidTenantName(t) {
			writeAuthZEN(w, http.StatusNotFound, struct {
				Error *azError `json:"error"`
			}{&azError{Status: http.StatusNotFound, Message: "not a tenant"}})
			return
		}
		base += "/tenants/" + t
	}
	md := struct {
		PDP            string `json:"policy_decision_point"`
		Evaluation     string `json:"access_evaluation_endpoint"`
		Evaluations    string `json:"access_evaluations_endpoint"`
		SearchSubject  string `json:"search_subject_endpoint,omitempty"`
		SearchResource string `json:"search_resource_endpoint,omitempty"`
		SearchAction   string `json:"search_action_endpoint"`
	}{
		PDP: base, Evaluation: base + pathEvaluation, Evaluations: base + pathEvaluations, SearchAction: base + pathSearchAction,
	}
	if s.authzen.dir != nil {
		md.SearchSubject = base + pathSearchSubject
	}
	if s.authzenSearchesResources() {
		md.SearchResource = base + pathSearchResource
	}
	b, _ := json.Marshal(md)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write(b)
}
