package server

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/pdp"
	"github.com/neofast/neoauthz/internal/routes"
)

// gateRequest is an HTTP request to guard, as ext_authz and forward auth both see it. Every
// field but permission and tenant comes from the client's request; those two come from
// trusted proxy configuration (context_extensions, or a forward-auth header the operator
// declared trusted).
type gateRequest struct {
	method        string
	path          string // request target as received, query included
	host          string
	authorization string
	consistency   string // x-neoauthz-consistency
	minVersion    string // x-neoauthz-min-version, replaced by the consistency token
	permission    string // pinned permission; "" = ask the route table
	tenant        string // tenant bound by the route configuration
	client        string // the client's address, when the proxy tells it
	start         time.Time
}

// gateKind is what the transport does with a gate decision.
type gateKind uint8

const (
	gateDeny        gateKind = iota // the zero value: a forgotten assignment never allows
	gateAllow                       // allowed: forward with identity headers
	gatePublic                      // public route: forward without identity
	gateBadRequest                  // 400: the request cannot be evaluated
	gateUnavailable                 // could not decide
)

// gateResult is the decision on a gateRequest.
type gateResult struct {
	kind    gateKind
	out     outcome    // status row (reasonOutcomes, badRequestOutcome, unavailableOutcome)
	res     pdp.Result // the pdp's decision, when it made one
	sub     pdp.Subject
	message string // for the client; out.message unless something more specific is known
	rec     record
}

// Gate messages that name a cause more precisely than the outcome table.
const (
	msgNoRoute          = "no route"
	msgNoRouteTable     = "no route (no route table configured)"
	msgBadPath          = "bad request path"
	msgBadMethod        = "bad request method"
	msgMinVersion       = "x-neoauthz-min-version is replaced by x-neoauthz-consistency (the token an admin write returns)"
	msgBadPermission    = "invalid permission request"
	msgBadHost          = "bad request host"
	msgBadTenant        = "bad tenant name"
	msgTenantConflict   = "conflicting tenant bindings"
	msgMissingToken     = "missing bearer token"
	msgInvalidToken     = "invalid bearer token"
	headerMinVersion    = "x-neoauthz-min-version"
	headerConsistency   = "x-neoauthz-consistency"
	headerAuthorization = "authorization"
)

// Bounds on request headers the gate reads (DESIGN §8); tokens are bounded by authn.
const (
	// maxHostBytes bounds the host the tenant host pattern reads: a DNS name (253) with a port.
	maxHostBytes = 253 + len(":65535")
)

// Refusals that name their cause without echoing the client's value.
var (
	errPinnedPermission = errors.New("the pinned permission is not a valid permission code")
	errHostTooLong      = errors.New("the request host is too long")
	errTenantName       = errors.New("a tenant name from the route, path or host is not a tenant slug or id")
)

// decideGate makes the decision for a guarded HTTP request. Everything wrong with the request
// itself is refused (400) before the subject or any tenant is looked at (DESIGN §2):
//
//  1. the permission: pinned by configuration, else the route table's match on method and
//     path (a public route is allowed without a token; no route is a deny; a path that cannot
//     be normalised is a bad request);
//  2. the tenant binding: route configuration, route path parameter and host pattern, which
//     must agree;
//  3. the subject, from the bearer token;
//  4. the pdp's decision.
func (s *Server) decideGate(ctx context.Context, api string, in *gateRequest) gateResult {
	g := gateResult{rec: record{api: api, permission: in.permission,
		logged: decisionFacts{start: in.start, method: in.method, client: in.client}}}

	var req pdp.Request
	var routeTenant string
	var m routes.Match
	if in.permission != "" {
		g.rec.path = loggedPath(in.path)
		if !pdp.ValidPermission(in.permission) {
			g.rec.permission = labelInvalid
			return g.badRequest(msgBadPermission, "invalid_request", errPinnedPermission)
		}
		req.Permission = in.permission
	} else {
		if s.routes == nil {
			return g.deny(pdp.ReasonNoPermission, msgNoRouteTable, nil)
		}
		var err error
		m, err = s.routes.Match(in.method, in.path)
		g.rec.path = clipPath(m.Path) // normalised: no query
		switch {
		case errors.Is(err, routes.ErrNoRoute):
			if g.rec.path == "" {
				g.rec.path = loggedPath(in.path)
			}
			return g.deny(pdp.ReasonNoPermission, msgNoRoute, nil)
		case errors.Is(err, routes.ErrBadMethod):
			return g.badRequest(msgBadMethod, "bad_method", err)
		case err != nil:
			// ErrBadPath and anything the table may add later: the path cannot be decided on.
			g.rec.path = ""
			return g.badRequest(msgBadPath, "bad_path", err)
		}
		if m.Route.Public {
			g.kind, g.out, g.message = gatePublic, reasonOutcomes[pdp.ReasonGranted], "public route"
			g.rec.reason, g.rec.permission = "public", ""
			g.rec.decisionID = newDecisionID()
			return g
		}
		req.Permission = m.Route.Permission
		g.rec.permission = req.Permission
		routeTenant = m.Tenant
	}

	if in.minVersion != "" {
		// Ignoring it would silently drop the caller's read-your-writes.
		return g.badRequest(msgMinVersion, "bad_min_version", nil)
	}
	if s.host.set && len(in.host) > maxHostBytes {
		return g.badRequest(msgBadHost, "bad_host", errHostTooLong)
	}
	ctok, bad, err := s.awaitToken(ctx, in.consistency)
	switch {
	case bad != "":
		return g.badRequest(bad, "bad_consistency_token", err)
	case err != nil:
		return g.unavailable(err)
	}
	req.Consistency = ctok

	// A tenant name that cannot be one is an invalid request, before bindings are compared.
	hostTenant := s.host.tenant(in.host)
	for _, name := range [...]string{in.tenant, routeTenant, hostTenant} {
		if name != "" && !pdp.ValidTenantName(name) {
			return g.badRequest(msgBadTenant, "bad_tenant", errTenantName)
		}
	}
	bound, conflict := bindTenant(in.tenant, routeTenant, hostTenant)
	if conflict {
		return g.deny(pdp.ReasonCrossTenant, msgTenantConflict, nil)
	}
	req.BoundTenant = bound

	tok, bearer := bearerToken(in.authorization)
	if tok == "" {
		if bearer {
			// A Bearer credential that cannot be a single token: unusable rather than absent.
			g.rec.authn = authn.KindMalformed.String()
			return g.deny(pdp.ReasonUnauthenticated, msgInvalidToken, nil)
		}
		// No header or another scheme (Basic, ...): no bearer credential at all.
		g.rec.authn = reasonMissingToken
		return g.deny(pdp.ReasonUnauthenticated, msgMissingToken, nil)
	}
	sub, err := s.dec.SubjectFromToken(ctx, tok)
	if err != nil {
		if label, ok := authnFailure(err); ok {
			g.rec.authn = label
			return g.deny(pdp.ReasonUnauthenticated, msgInvalidToken, nil)
		}
		return g.unavailable(err)
	}
	g.sub = sub
	g.rec.tenant, g.rec.user = tenantLabel(sub), sub.UserID
	g.rec.logged.subject(sub)

	if m.Route != nil && m.Route.ResourceCheck() {
		req.Resource = &pdp.Resource{OwnerID: m.Owner, TeamID: m.Team}
		if sub.Level == authn.LevelPlatform {
			// The tenant parameter is the target tenant of a platform operation. For a tenant
			// subject it is only the binding (BoundTenant, above): its own tenant is implied.
			req.Resource.Tenant = m.Tenant
		}
	}

	res, err := s.dec.Check(ctx, sub, req)
	if err == nil {
		err = consistent(res)
	}
	if err != nil {
		if errors.Is(err, pdp.ErrInvalidRequest) {
			return g.badRequest(msgBadPermission, "invalid_request", err)
		}
		return g.unavailable(err)
	}
	g.res = res
	g.rec.logged.result(req.Resource, res)
	g.rec.decisionID = res.DecisionID
	g.rec.reason = res.Reason.String()
	g.rec.result = resultLabel(res)
	g.out = outcomeOf(res.Reason)
	g.message = g.out.message
	if res.Allowed {
		g.kind = gateAllow
	} else {
		g.kind = gateDeny
	}
	return g
}

// awaitToken parses a client's consistency token and has the pdp prepare for it. bad is
// the client's message when the request is bad (a malformed token, or one naming data that
// does not exist; err then says more, for the log); an error without bad means the pdp
// could not decide.
func (s *Server) awaitToken(ctx context.Context, raw string) (tok consistency.Token, bad string, err error) {
	if tok, err = consistency.Parse(raw); err != nil {
		return consistency.Token{}, msgBadConsistency, err
	}
	if err := s.dec.Await(ctx, tok); err != nil {
		if errors.Is(err, pdp.ErrInvalidRequest) {
			return consistency.Token{}, msgImpossibleConsistency, err
		}
		return consistency.Token{}, "", err
	}
	return tok, "", nil
}

// Consistency token messages.
const (
	msgBadConsistency        = "malformed consistency token"
	msgImpossibleConsistency = "consistency token names data that does not exist"
)

// deny is a deny decided before (or instead of) the pdp's engine.
func (g gateResult) deny(r pdp.Reason, msg string, err error) gateResult {
	g.kind, g.out, g.message = gateDeny, outcomeOf(r), msg
	g.res = pdp.Result{Reason: r}
	g.rec.reason, g.rec.err = r.String(), err
	g.rec.result = resultDenied
	if r == pdp.ReasonUnauthenticated {
		g.rec.result = resultUnauthenticated
	}
	g.rec.decisionID = newDecisionID()
	return g
}

func (g gateResult) badRequest(msg, reason string, err error) gateResult {
	g.kind, g.out, g.message = gateBadRequest, badRequestOutcome, msg
	g.rec.reason, g.rec.result, g.rec.err = reason, resultError, err
	g.rec.decisionID = newDecisionID()
	return g
}

func (g gateResult) unavailable(err error) gateResult {
	g.kind, g.out, g.message = gateUnavailable, unavailableOutcome, unavailableOutcome.message
	g.rec.reason, g.rec.result, g.rec.err, g.rec.undecided = "unavailable", resultError, err, true
	g.rec.decisionID = newDecisionID()
	return g
}

// pathOnly cuts the query and fragment off a request target for logging: a query may carry
// secrets (signed URLs, tokens some clients put there).
func pathOnly(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		return target[:i]
	}
	return target
}
