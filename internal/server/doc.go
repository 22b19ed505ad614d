// Package server is the pdp's transports — its neoauthz.v1 gRPC API, Envoy ext_authz v3 on the
// same gRPC server, HTTP forward auth, the AuthZEN Authorization API, health and metrics — over
// one decision service.
//
// # Decisions, errors and status codes
//
// A deny is data, an error means "could not decide":
//
//   - neoauthz.v1: a denied or unauthenticated check is a CheckResponse with allowed = false
//     and its Reason. Errors: INVALID_ARGUMENT for a malformed request (no subject, no
//     permission, more than MaxBulkItems items, a request the engine refuses),
//     PERMISSION_DENIED for a principal subject from an untrusted caller (a caller
//     misconfiguration, not a decision about the user), UNAVAILABLE / INTERNAL when the pdp
//     cannot decide. ListPermissions is not a decision: a bad token is UNAUTHENTICATED there.
//   - ext_authz: allow is OK with the identity headers SET (overwrite, never append); deny is a
//     DeniedHttpResponse (403, or 401 with WWW-Authenticate, or 400 for a request that cannot
//     be evaluated) with the JSON error envelope; could-not-decide is a gRPC UNAVAILABLE error,
//     so that Envoy's failure_mode_allow decides — never an OK.
//   - forward auth (/auth): 200 with the identity headers, 401, 403, 400, or 503.
//   - AuthZEN (authzen*.go, Config.AuthZENConfigPath): a deny is 200 with "decision": false
//     and the reason in the context; a request that cannot be evaluated is 400, 401, 403, 404
//     or 503 with {"error": {"status", "message"}}, never a decision. In evaluations, an item
//     that cannot be decided is a deny carrying context.error.
//
// The reason → (neoauthz.v1 Reason, HTTP status, envelope code, ext_authz gRPC code) mapping
// is the single table reasonOutcomes in reasons.go.
//
// # Which permission, which tenant
//
// ext_authz takes the permission from the route's context_extensions["permission"], otherwise
// from the route table (method + path; the path's query never matters). Forward auth uses the
// route table, or the X-Neoauthz-Permission header when Config.TrustForwardedPermission is set.
// A public route is allowed without a token; a request no route matches is denied (403,
// no_permission, "no route"); a path that cannot be normalised is 400. The tenant a request
// serves may be bound by context_extensions["tenant"], the route's tenant path parameter and
// Config.TenantHostPattern; bindings must agree (otherwise 403 cross_tenant), and a subject of
// another tenant is denied by the pdp as cross_tenant. No tenant is ever taken from a request
// header the client controls.
//
// # Trust
//
// A principal subject ({tenant, user} without a token) is accepted only over the Unix socket
// (Config.UnixSocket; every connection on it is trusted, so its file mode is 0660) or from an
// mTLS client whose verified certificate's subject CN, DNS SAN or URI SAN is listed in
// Config.TrustedClientIdentities. AuthZEN names the subject in the body, so its callers are
// PEPs listed in the AuthZEN file (an mTLS identity on the TLS HTTP port, or a bearer token of a
// configured client), each bound to its tenants; other callers may only ask about the bearer of
// a subject token.
//
// # Observability
//
// Metrics: permission_checks_total{tenant, permission, result}, with both labels and their pairs capped (see
// maxTenantLabels), permission_check_duration_seconds{api} and authn_failures_total{reason}.
// Logs: one JSON line per decision — Debug for allows, Info for denies, Warn for refused
// requests, Error when the pdp could not decide — with decision_id, reason, tenant, user,
// permission and the normalised path; never tokens, headers or the query string.
package server
