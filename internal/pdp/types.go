package pdp

import (
	"errors"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/decision"
)

// Errors of the decision service. Anything else returned by Check means "could not decide":
// transports turn it into an error (never an allow).
var (
	// ErrInvalidRequest wraps a request the engine refuses to evaluate (a '*', a scope of
	// the other level, resource fields that do not fit): an API error, not a deny.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrUnauthenticated wraps an authn error: the subject could not be established (401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrUntrustedPrincipal is returned when a principal subject comes from a caller that
	// may only present tokens.
	ErrUntrustedPrincipal = errors.New("principal subjects are accepted from trusted callers only")
	// ErrUnavailable wraps a dependency failure (a database down beyond the allowed
	// staleness): the transport answers with an error so Envoy's failure_mode_allow decides.
	ErrUnavailable = errors.New("cannot decide now")
)

// Reason is why a decision came out the way it did: the engine's reasons plus the ones
// decided before the engine runs.
type Reason uint8

// Reasons. The zero value is a deny reason so a forgotten assignment never allows.
const (
	ReasonNoPermission Reason = iota
	ReasonGranted
	ReasonExplicitDeny
	ReasonUserInactive
	ReasonTenantSuspended
	ReasonUnknownTenant
	ReasonUnknownUser
	ReasonInvalidData
	ReasonUnauthenticated
	ReasonCrossTenant
)

var reasonNames = [...]string{
	ReasonNoPermission:    "no_permission",
	ReasonGranted:         "granted",
	ReasonExplicitDeny:    "explicit_deny",
	ReasonUserInactive:    "user_inactive",
	ReasonTenantSuspended: "tenant_suspended",
	ReasonUnknownTenant:   "unknown_tenant",
	ReasonUnknownUser:     "unknown_user",
	ReasonInvalidData:     "invalid_data",
	ReasonUnauthenticated: "unauthenticated",
	ReasonCrossTenant:     "cross_tenant",
}

// String returns the reason's snake_case name, used in logs, metrics and error envelopes.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

func fromEngine(r decision.Reason) Reason {
	switch r {
	case decision.ReasonGranted:
		return ReasonGranted
	case decision.ReasonExplicitDeny:
		return ReasonExplicitDeny
	case decision.ReasonUserInactive:
		return ReasonUserInactive
	case decision.ReasonTenantSuspended:
		return ReasonTenantSuspended
	case decision.ReasonUnknownTenant:
		return ReasonUnknownTenant
	case decision.ReasonUnknownUser:
		return ReasonUnknownUser
	case decision.ReasonInvalidData:
		return ReasonInvalidData
	default:
		return ReasonNoPermission
	}
}

// Subject is who is asking: established from a verified token or, for trusted callers, a
// principal.
type Subject struct {
	Level      authn.Level
	TenantID   string // "" at platform level
	TenantSlug string
	UserID     string // external id (token sub)
	// Identity is the verified token's claims; nil for a principal subject.
	Identity *authn.Identity
}

// Resource is what a resource check is about. At tenant level OwnerID and TeamID apply; at
// platform level OwnerID and Tenant (the target tenant, id or slug).
type Resource struct {
	OwnerID string
	TeamID  string
	Tenant  string
}

// Request is one check.
type Request struct {
	// Permission is a full code ("users.read.tenant": a code check) or "resource.action"
	// with Resource set (a resource check).
	Permission string
	Resource   *Resource
	// AtLeastVersion asks for read-your-writes: the decision uses data at least this new.
	AtLeastVersion uint64
	// BoundTenant is the tenant the route serves (id or slug), from a trusted source (route
	// configuration, host pattern, path parameter); a subject of another tenant is denied
	// with ReasonCrossTenant.
	BoundTenant string
}

// Result is a decision.
type Result struct {
	Allowed    bool
	Reason     Reason
	Grant      decision.Grant
	Version    uint64
	DecisionID string
}
