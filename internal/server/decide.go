package server

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/pdp"
)

// reasonMissingToken labels a request that carried no bearer token (authn_failures_total,
// logs); every other authentication failure is labelled with its authn.Kind.
const reasonMissingToken = "missing_token"

// Label values that stand for client input not fit to be a label (DESIGN §8): metric labels
// and log fields take only validated values.
const (
	labelInvalid = "invalid" // a permission that does not parse
	labelUnknown = "unknown" // a tenant-level subject of no known tenant
)

// permissionLabel is the permission_checks_total label (and log field) of a requested
// permission: the permission itself when it parses, labelInvalid otherwise.
func permissionLabel(p string) string {
	if p == "" || pdp.ValidPermission(p) {
		return p
	}
	return labelInvalid
}

// tenantLabel is the tenant label of a subject: the slug of its tenant, which the pdp sets only
// for a tenant it knows; labelUnknown for a tenant-level subject without one; "" at platform
// level.
func tenantLabel(sub pdp.Subject) string {
	if sub.TenantSlug == "" && sub.Level == authn.LevelTenant {
		return labelUnknown
	}
	return sub.TenantSlug
}

// maxLoggedPath bounds the path a log line carries (paths are up to routes.MaxPathLen).
const maxLoggedPath = 256

// loggedPath cuts the query and fragment off a request target (a query may carry secrets:
// signed URLs, tokens some clients put there) and bounds what is left.
func loggedPath(target string) string { return clipPath(pathOnly(target)) }

// clipPath bounds a path for a log line, cutting at a UTF-8 boundary.
func clipPath(p string) string {
	if len(p) <= maxLoggedPath {
		return p
	}
	cut := maxLoggedPath
	for cut > 0 && !utf8.RuneStart(p[cut]) {
		cut--
	}
	return p[:cut] + "..."
}

// errInconsistent is a pdp result whose Allowed disagrees with its Reason. It is treated as
// "could not decide" so that a bug there can never turn into an allow.
var errInconsistent = errors.New("server: decision service returned an allow without reason granted (or the reverse)")

// bearerToken extracts the token of an "Authorization: Bearer <token>" header. The scheme is
// case-insensitive (RFC 9110 §11.1). bearer reports whether the scheme is Bearer at all; tok is
// "" when it is not, or when the value cannot be one token (empty, or a space or comma inside:
// several values joined into one).
func bearerToken(authorization string) (tok string, bearer bool) {
	const scheme = "bearer"
	if len(authorization) < len(scheme) || !strings.EqualFold(authorization[:len(scheme)], scheme) {
		return "", false
	}
	rest := authorization[len(scheme):]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return "", false // "Bearerx ...": another scheme
	}
	tok = strings.Trim(rest, " \t")
	// IndexByte is vectorised; a set-based scan of a whole token on every request is not.
	if strings.IndexByte(tok, ' ') >= 0 || strings.IndexByte(tok, '\t') >= 0 || strings.IndexByte(tok, ',') >= 0 {
		return "", true
	}
	return tok, true
}

// authnFailure reports whether err, from SubjectFromToken or SubjectFromPrincipal, means the
// caller is not authenticated (a 401 / REASON_UNAUTHENTICATED decision), and its label. An
// authn error of kind unavailable or internal is not: the token could not be checked, so the
// pdp could not decide.
func authnFailure(err error) (label string, ok bool) {
	if !errors.Is(err, pdp.ErrUnauthenticated) {
		return "", false
	}
	var ae *authn.Error
	if errors.As(err, &ae) {
		if !ae.Kind.Unauthenticated() {
			return "", false
		}
		return ae.Kind.String(), true
	}
	return "unauthenticated", true
}

// cannotDecide reports whether err means the pdp could not decide (a dependency failure or a
// bug), as opposed to a caller error (invalid request, untrusted principal).
func cannotDecide(err error) bool {
	return !errors.Is(err, pdp.ErrInvalidRequest) && !errors.Is(err, pdp.ErrUntrustedPrincipal)
}

// grpcError turns a decision-service error into a gRPC status with a generic message: the
// detail goes to the log, not to the caller, except for invalid requests, whose message is
// about the caller's own input.
func grpcError(err error) error {
	switch {
	case errors.Is(err, pdp.ErrInvalidRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, pdp.ErrUntrustedPrincipal):
		return status.Error(codes.PermissionDenied, pdp.ErrUntrustedPrincipal.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, pdp.ErrUnavailable), errors.Is(err, authn.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.Unavailable, "cannot decide now")
	default:
		return status.Error(codes.Internal, "cannot decide")
	}
}

// consistent checks the one invariant transports rely on: allowed exactly when granted.
func consistent(r pdp.Result) error {
	if r.Allowed != (r.Reason == pdp.ReasonGranted) {
		return errInconsistent
	}
	return nil
}

// newDecisionID names a decision the pdp did not make itself (unauthenticated, no route, a
// conflicting tenant binding), so that every answer can be found in the logs.
func newDecisionID() string { return rand.Text() }

// record is what one check leaves behind: a metric sample and a log line.
type record struct {
	api        string
	result     string // resultAllowed, ...
	reason     string // pdp reason, "public", or why the request was refused
	authn      string // authentication failure label, when unauthenticated
	permission string
	path       string // normalised path, never the query (it may carry secrets)
	tenant     string // the subject's tenant slug
	user       string
	decisionID string
	err        error
	undecided  bool // the pdp could not decide (err is a dependency failure or a bug)
	logged     decisionFacts
}

// finish counts and logs one check. Allows log at Debug (they are the bulk of the traffic),
// denies at Info, refusals at Warn and failures to decide at Error. Tokens and headers are
// never logged.
func (s *Server) finish(ctx context.Context, rec *record) {
	if rec.result != "" {
		s.metrics.check(rec.tenant, rec.permission, rec.result)
	}
	if rec.result == resultUnauthenticated && rec.authn != "" {
		s.metrics.authnFailure.WithLabelValues(rec.authn).Inc()
	}
	s.logDecision(ctx, rec)
	level := slog.LevelInfo
	switch {
	case rec.result == resultAllowed || rec.reason == "public":
		level = slog.LevelDebug
	case rec.undecided:
		level = slog.LevelError
	case rec.result == resultError, rec.err != nil:
		level = slog.LevelWarn
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs,
		slog.String("api", rec.api),
		slog.String("decision_id", rec.decisionID),
		slog.String("result", rec.result),
		slog.String("reason", rec.reason),
		slog.String("tenant", rec.tenant),
		slog.String("user", rec.user),
		slog.String("permission", rec.permission))
	if rec.path != "" {
		attrs = append(attrs, slog.String("path", rec.path))
	}
	if rec.authn != "" {
		attrs = append(attrs, slog.String("authn", rec.authn))
	}
	if rec.err != nil {
		attrs = append(attrs, slog.String("error", rec.err.Error()))
	}
	s.log.LogAttrs(ctx, level, "decision", attrs...)
}

// resultLabel is the permission_checks_total result of a decision.
func resultLabel(r pdp.Result) string {
	switch {
	case r.Allowed:
		return resultAllowed
	case r.Reason == pdp.ReasonUnauthenticated:
		return resultUnauthenticated
	default:
		return resultDenied
	}
}
