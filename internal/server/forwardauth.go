package server

import (
	"net/http"
	"strings"
	"time"
)

// Forward-auth request headers. The X-Forwarded-* and X-Original-* headers describe the
// original request and are taken as the proxy set them: /auth must only be reachable from the
// proxy, and the proxy must overwrite (not pass through) these headers — Traefik's forwardAuth
// and nginx's auth_request with proxy_set_header both do.
const (
	hdrForwardedMethod = "X-Forwarded-Method"
	hdrForwardedURI    = "X-Forwarded-Uri"
	hdrForwardedHost   = "X-Forwarded-Host"
	hdrOriginalMethod  = "X-Original-Method"
	hdrOriginalURI     = "X-Original-URI"
	// hdrPermission pins the permission, like Envoy's context_extensions["permission"]. It is
	// read only with Config.TrustForwardedPermission, because a proxy that passes client
	// headers through would let the client choose what is checked.
	hdrPermission = "X-Neoauthz-Permission"
)

// forwardAuth is the HTTP forward-auth endpoint (Traefik forwardAuth, nginx auth_request,
// Caddy forward_auth): the same decision as ext_authz, answered with 200 and the identity
// headers, 401 with WWW-Authenticate, 403, 400 for a request that cannot be evaluated, or 503
// when the pdp cannot decide. Every body is the JSON envelope.
//
// The original method is X-Forwarded-Method, else X-Original-Method, else the method of the
// auth request itself (Traefik and Caddy forward it); the original target is X-Forwarded-Uri,
// else X-Original-URI (nginx: proxy_set_header X-Original-URI $request_uri); the host for
// the tenant host pattern is X-Forwarded-Host only (nginx: proxy_set_header X-Forwarded-Host
// $host), since the auth request's own Host names the pdp.
func (s *Server) forwardAuth(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer s.metrics.observe(apiForwardAuth, start)

	in := gateRequest{
		method:        firstNonEmpty(r.Header.Get(hdrForwardedMethod), r.Header.Get(hdrOriginalMethod), r.Method),
		path:          firstNonEmpty(r.Header.Get(hdrForwardedURI), r.Header.Get(hdrOriginalURI)),
		host:          r.Header.Get(hdrForwardedHost),
		authorization: joinedHeader(r.Header, "Authorization"),
		minVersion:    r.Header.Get(headerMinVersion),
	}
	if s.cfg.TrustForwardedPermission {
		in.permission = strings.TrimSpace(r.Header.Get(hdrPermission))
	}
	var g gateResult
	if in.path == "" {
		g = gateResult{rec: record{api: apiForwardAuth}}.badRequest("missing "+hdrForwardedURI+" or "+hdrOriginalURI+" header", "missing_uri", nil)
	} else {
		g = s.decideGate(r.Context(), apiForwardAuth, &in)
	}
	s.finish(r.Context(), &g.rec)

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store") // a decision is per request; no proxy may cache it
	var body []byte
	switch g.kind {
	case gateAllow:
		if g.sub.TenantSlug != "" {
			h.Set(s.cfg.TenantHeader, g.sub.TenantSlug)
		}
		h.Set(s.cfg.UserHeader, g.sub.UserID)
		h.Set(s.cfg.DecisionIDHeader, g.res.DecisionID)
		body = allowBody(&g)
	case gatePublic:
		body = allowBody(&g)
	default:
		if g.out.http == http.StatusUnauthorized {
			h.Set("WWW-Authenticate", wwwAuthenticate(g.rec.authn))
		}
		body = errorBody(&g)
	}
	w.WriteHeader(g.out.http)
	_, _ = w.Write(body)
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// joinedHeader joins repeated header lines with ",", so that two Authorization headers never
// read as one token (bearerToken refuses the joined value).
func joinedHeader(h http.Header, name string) string {
	vs := h.Values(name)
	if len(vs) <= 1 {
		return h.Get(name)
	}
	return strings.Join(vs, ",")
}
