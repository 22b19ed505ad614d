package pdp

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/registry"
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
	// ErrNotServedInRegion is returned by the user directory (UserByEmail, SubjectCandidates,
	// Teams) for a tenant of a region this pdp does not serve: nothing of it was read.
	ErrNotServedInRegion = errors.New("tenant is not served in this region")
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
	// ReasonNotServedInRegion: the tenant's data lives in a region this pdp does not serve
	// (Config.Regions); nothing of the tenant's was loaded.
	ReasonNotServedInRegion
)

var reasonNames = [...]string{
	ReasonNoPermission:      "no_permission",
	ReasonGranted:           "granted",
	ReasonExplicitDeny:      "explicit_deny",
	ReasonUserInactive:      "user_inactive",
	ReasonTenantSuspended:   "tenant_suspended",
	ReasonUnknownTenant:     "unknown_tenant",
	ReasonUnknownUser:       "unknown_user",
	ReasonInvalidData:       "invalid_data",
	ReasonUnauthenticated:   "unauthenticated",
	ReasonCrossTenant:       "cross_tenant",
	ReasonNotServedInRegion: "not_served_in_region",
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
	// Identity is the verified token's claims; the zero Identity (Level 0) for a principal
	// subject. It is a value, not a pointer, so that a subject established from a cached token
	// costs no allocation.
	Identity authn.Identity
}

// FromToken reports whether the subject was established from a verified token.
func (s *Subject) FromToken() bool { return s.Identity.Level != 0 }

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
	// Consistency asks for read-your-writes: the decision uses data at least as new as every
	// part of the token that concerns it. Pass the token to Service.Await first.
	Consistency consistency.Token
	// BoundTenant is the tenant the route serves (id or slug), from a trusted source (route
	// configuration, host pattern, path parameter); a subject of another tenant is denied
	// with ReasonCrossTenant.
	BoundTenant string
}

// Result is a decision.
type Result struct {
	Allowed bool
	Reason  Reason
	Grant   decision.Grant
	// Version is the version of the permission set decided on (the tenant schema's, or the
	// admin database's for a platform subject).
	Version uint64
	// Token names the data the decision used; a client may send it back (merged with its
	// writes' tokens) to read at least that data again. Answers naming the same versions
	// share it: do not modify it.
	Token      consistency.Token
	DecisionID string
	// Detail refines a deny's reason where the reason alone would mislead, e.g. an unknown
	// user whose just-in-time sync was rate limited (DetailSyncRateLimited). Usually "".
	Detail    string
	tokenText string // Token's encoding, when the service memoised it
}

// TokenString is Token's encoding (Token.String()); the service remembers the encodings of
// the version tuples it answers with, so a warm check does not encode one.
func (r Result) TokenString() string {
	if r.tokenText != "" || r.Token.IsZero() {
		return r.tokenText
	}
	return r.Token.String()
}

// Bounds on what callers send (DESIGN §8): longer values are invalid requests, refused before
// they reach a log line, a metric label, a cache key or a query.
const (
	// MaxPermissionBytes bounds a requested permission.
	MaxPermissionBytes = 255
	// MaxIDBytes bounds a user id, a resource's owner and team ids (users.external_id holds
	// at most 255 characters).
	MaxIDBytes = 255
)

// ValidPermission reports whether p can be a requested permission at some level: bounded,
// "resource.action" or "resource.action.scope" with lowercase segments and a scope word of
// either level, no '*'. Transports label metrics with p only when it holds.
func ValidPermission(p string) bool {
	if len(p) > MaxPermissionBytes {
		return false
	}
	_, _, _, _, err := decision.ParseRequest(decision.LevelTenant, p)
	if err != nil {
		_, _, _, _, err = decision.ParseRequest(decision.LevelPlatform, p)
	}
	return err == nil
}

// ValidTenantName reports whether s can name a tenant: a slug, which a tenant id (a lowercase
// UUID) also is.
func ValidTenantName(s string) bool { return registry.ValidSlug(s) }

// validID reports whether s may be a user, owner or team id: at most MaxIDBytes of valid
// UTF-8 without control characters.
func validID(s string) bool {
	if len(s) > MaxIDBytes || !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

func decisionLevel(l authn.Level) decision.Level {
	if l == authn.LevelPlatform {
		return decision.LevelPlatform
	}
	return decision.LevelTenant
}

// Invalid-request errors name the field, never echo its value (it may be megabytes).
var (
	errPermissionTooLong  = fmt.Errorf("%w: permission is longer than %d bytes", ErrInvalidRequest, MaxPermissionBytes)
	errBadOwner           = fmt.Errorf("%w: resource.owner_id must be at most %d bytes of text", ErrInvalidRequest, MaxIDBytes)
	errBadTeam            = fmt.Errorf("%w: resource.team_id must be at most %d bytes of text", ErrInvalidRequest, MaxIDBytes)
	errBadTarget          = fmt.Errorf("%w: resource.tenant is not a tenant slug or id", ErrInvalidRequest)
	errBadBound           = fmt.Errorf("%w: the bound tenant is not a tenant slug or id", ErrInvalidRequest)
	errTargetAtTenant     = fmt.Errorf("%w: resource.tenant (a target tenant) is for platform-level subjects", ErrInvalidRequest)
	errTeamAtPlatform     = fmt.Errorf("%w: resource.team_id is for tenant-level subjects", ErrInvalidRequest)
	errBadPrincipalUser   = fmt.Errorf("%w: principal.user must be 1 to %d bytes of text", ErrInvalidRequest, MaxIDBytes)
	errBadPrincipalTenant = fmt.Errorf("%w: principal.tenant is not a tenant slug or id", ErrInvalidRequest)
)

// ValidateRequest is step 1 of DESIGN §2: everything that makes a request invalid for the
// subject's level, whatever the tenant and user gates would say. Check applies it first; it
// allocates nothing when the request is valid. Errors match ErrInvalidRequest.
func ValidateRequest(sub Subject, req Request) error {
	if len(req.Permission) > MaxPermissionBytes {
		return errPermissionTooLong
	}
	dreq := decision.Request{Permission: req.Permission, HasResource: req.Resource != nil}
	if err := decision.ValidateRequest(decisionLevel(sub.Level), dreq); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if r := req.Resource; r != nil {
		switch {
		case sub.Level == authn.LevelTenant && r.Tenant != "":
			return errTargetAtTenant
		case sub.Level == authn.LevelPlatform && r.TeamID != "":
			return errTeamAtPlatform
		case !validID(r.OwnerID):
			return errBadOwner
		case !validID(r.TeamID):
			return errBadTeam
		case r.Tenant != "" && !ValidTenantName(r.Tenant):
			return errBadTarget
		}
	}
	if req.BoundTenant != "" && !ValidTenantName(req.BoundTenant) {
		return errBadBound
	}
	return nil
}
