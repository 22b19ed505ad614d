// Package routes maps an HTTP request (method and path) to the permission the pdp must check.
//
// # Route file
//
// The table is a JSON document (testdata/routes.json is a complete example):
//
//	{ "routes": [
//	  { "method": "GET", "path": "/api/tenants/{tenant}/users/{user_id}", "permission": "users.read", "owner": "user_id", "tenant": "tenant" },
//	  { "method": "PUT", "path": "/api/teams/{team_id}/projects/{id}",    "permission": "projects.update", "team": "team_id" },
//	  { "method": "GET", "path": "/api/reports",                          "permission": "reports.read.tenant" },
//	  { "method": "*",   "path": "/api/admin/{rest...}",                  "permission": "admin.manage.tenant" },
//	  { "method": "GET", "path": "/healthz",                              "public": true }
//	]}
//
// Fields of a route (any other field is an error):
//
//   - method: an uppercase method name, or "*" for any method. A HEAD request uses the GET
//     routes unless a HEAD route matches its path.
//   - path: a template starting with '/'. A segment is a literal or a whole-segment parameter
//     {name}; the last segment may be {name...}, which takes the rest of the path (one or more
//     segments). Parameter names are [A-Za-z_][A-Za-z0-9_]* and unique within a template, at
//     most MaxParams per template. No empty, "." or ".." segments, no trailing slash (except "/"
//     itself), no '?' or '#'. Literals are normalised like requests, so "~" and "%7E" are equal.
//   - permission: "resource.action.scope" (a code check) or "resource.action" (a resource
//     check, which needs owner, team or tenant). Segments are lowercase [a-z0-9_-]+; '*' is
//     refused. A code check takes no owner or team (the pdp refuses a code check with a
//     resource) but may have a tenant binding.
//   - owner, team: the parameter carrying the resource's owner id or team id.
//   - tenant: the parameter carrying the tenant the route serves or targets (the tenant binding
//     of the tenant binding: the caller denies a token of another tenant as cross-tenant). With a
//     resource check and no owner or team, the tenant is the resource.
//   - public: true for a route that needs no permission; the caller allows it without a token.
//     A public route has no permission, owner, team or tenant.
//
// A route that is neither public nor has a permission is an error, and so is a second route with
// the same method and template as an earlier one (parameter names do not count: it could never
// match). Load reports the first problem as a *RouteError naming the route index and the field.
//
// # Matching
//
// The first route in file order that matches wins, whatever its method ("*" included). No
// route matching is ErrNoRoute, which the caller denies. Parameter values are compared and
// returned as plain text and never interpreted as patterns; a parameter never matches an empty
// segment, and {name...} never matches an empty rest.
//
// # Path normalisation
//
// Every request path is normalised before matching (NormalizePath), so that the path the pdp
// decides on is the path the upstream serves. Anything that cannot be normalised without guessing
// how some proxy or upstream reads it is ErrBadPath, which the caller denies:
//
//   - The query ('?') and fragment ('#') are cut off and never affect matching.
//   - The path must start with '/' and be at most MaxPathLen (8 KiB) bytes, before and after
//     normalisation (re-encoding can make it longer).
//   - Control characters (0x00-0x1F, 0x7F), raw or percent-encoded, anywhere in the target
//     (query included) are refused; so are decoded C1 controls (U+0080-U+009F) and text that is
//     not valid UTF-8 once decoded (overlong forms such as %C0%AE used to smuggle '.').
//   - Invalid percent-encoding ("%zz", a truncated "%4") is refused.
//   - An encoded slash (%2F, %2f) or backslash (%5C, %5c) in a segment is refused, and so is a
//     raw backslash: proxies disagree on whether it separates segments (Envoy keeps %2F by
//     default, others decode it or treat '\' as '/'), so any reading we picked would be wrong
//     for some upstream.
//   - A double-encoded slash, backslash or dot (%252F, %255C, %252E) is refused: an upstream
//     that decodes twice would read it as path structure.
//   - Percent-encodings are decoded when the byte may stand unencoded in a segment (RFC 3986
//     unreserved, sub-delims, ':' and '@'), so "%41" is "A" and "%2e" is "."; every other byte
//     (space, '?', '#', '%', non-ASCII UTF-8, ...) is written as %XX with uppercase hex, raw or
//     not. Each decoded text therefore has exactly one normalised spelling, and two requests
//     match the same routes exactly when their decoded paths are equal.
//   - Empty segments ("//") and "." segments are removed; ".." removes the previous segment,
//     after decoding (so "/api/public/%2e%2e/admin" is matched as "/api/admin"). A ".." above
//     the root is refused, not clamped. A segment starting ".;" or "..;" is refused (Tomcat and
//     Spring read "..;" as "..").
//   - A trailing slash is removed ("/api/reports/" matches "/api/reports"); "/" stays "/".
//   - Paths are case-sensitive. The method is upper-cased and must be an HTTP token.
//
// Unicode is not normalised (no NFC/NFKC): an upstream that folds full-width characters into
// ASCII is out of scope. The normalised path is Match.Path; log that one.
package routes
