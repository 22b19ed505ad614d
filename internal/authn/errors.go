package authn

import "errors"

// Kind classifies why a token was not accepted. Its String form is a stable
// label suitable for metrics.
type Kind uint8

// The kinds of validation failure. KindInternal is the zero value and is
// reported for errors that did not come from this package.
const (
	KindInternal Kind = iota
	KindMalformed
	KindTooLarge
	KindBadSignature
	KindExpired
	KindNotYetValid
	KindUnknownIssuer
	KindUnknownRealm
	KindTenantNotActive
	KindWrongAudience
	KindWrongTokenType
	KindUnknownKey
	KindAlgorithmNotAllowed
	KindMissingClaim
	// KindUnavailable means a dependency (Keycloak, the realm resolver) could
	// not be reached, so no decision about the token could be made. Transports
	// should treat it as an internal failure, not as a 401.
	KindUnavailable
	// KindWrongClient means azp is not an accepted client.
	KindWrongClient
	// KindDuplicateMember means the header or the claims hold one JSON member twice.
	KindDuplicateMember
)

var kindNames = [...]string{
	KindInternal:            "internal",
	KindMalformed:           "malformed",
	KindTooLarge:            "too_large",
	KindBadSignature:        "bad_signature",
	KindExpired:             "expired",
	KindNotYetValid:         "not_yet_valid",
	KindUnknownIssuer:       "unknown_issuer",
	KindUnknownRealm:        "unknown_realm",
	KindTenantNotActive:     "tenant_not_active",
	KindWrongAudience:       "wrong_audience",
	KindWrongTokenType:      "wrong_token_type",
	KindUnknownKey:          "unknown_key",
	KindAlgorithmNotAllowed: "algorithm_not_allowed",
	KindMissingClaim:        "missing_claim",
	KindUnavailable:         "unavailable",
	KindWrongClient:         "wrong_client",
	KindDuplicateMember:     "duplicate_member",
}

// String returns the kind's metrics label, e.g. "bad_signature".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "internal"
}

// Unauthenticated reports whether the kind means the caller presented no
// acceptable credential (HTTP 401), as opposed to a failure on our side.
func (k Kind) Unauthenticated() bool {
	return k != KindInternal && k != KindUnavailable
}

// Error is the error type returned by Validator.Validate. Its message never
// contains the token or any part of it.
type Error struct {
	// Kind classifies the failure.
	Kind   Kind
	detail string
	cause  error
}

// Error implements error.
func (e *Error) Error() string {
	s := "authn: " + e.Kind.String()
	if e.detail != "" {
		s += ": " + e.detail
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Is makes errors.Is(err, ErrExpired) and friends match any *Error of the
// same kind, whatever its detail.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.detail == "" && t.cause == nil && t.Kind == e.Kind
}

// Sentinel errors, one per Kind; match them with errors.Is.
var (
	ErrMalformed           = &Error{Kind: KindMalformed}
	ErrTooLarge            = &Error{Kind: KindTooLarge}
	ErrBadSignature        = &Error{Kind: KindBadSignature}
	ErrExpired             = &Error{Kind: KindExpired}
	ErrNotYetValid         = &Error{Kind: KindNotYetValid}
	ErrUnknownIssuer       = &Error{Kind: KindUnknownIssuer}
	ErrUnknownRealm        = &Error{Kind: KindUnknownRealm}
	ErrTenantNotActive     = &Error{Kind: KindTenantNotActive}
	ErrWrongAudience       = &Error{Kind: KindWrongAudience}
	ErrWrongTokenType      = &Error{Kind: KindWrongTokenType}
	ErrUnknownKey          = &Error{Kind: KindUnknownKey}
	ErrAlgorithmNotAllowed = &Error{Kind: KindAlgorithmNotAllowed}
	ErrMissingClaim        = &Error{Kind: KindMissingClaim}
	ErrUnavailable         = &Error{Kind: KindUnavailable}
	ErrWrongClient         = &Error{Kind: KindWrongClient}
	ErrDuplicateMember     = &Error{Kind: KindDuplicateMember}
)

// ErrRealmNotFound is returned by a RealmResolver when no tenant has the
// realm as its external_auth_realm.
var ErrRealmNotFound = errors.New("authn: no tenant for realm")

func newError(k Kind, detail string) error { return &Error{Kind: k, detail: detail} }

func wrapError(k Kind, detail string, cause error) error {
	return &Error{Kind: k, detail: detail, cause: cause}
}

// KindOf returns the Kind of an error returned by Validate, or KindInternal
// for any other error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// Reason returns a short, stable label for err suitable as a metrics label:
// "ok" for nil, the Kind's String otherwise.
func Reason(err error) string {
	if err == nil {
		return "ok"
	}
	return KindOf(err).String()
}
