package server

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Forward-auth header conventions (Config.ForwardAuthHeaders). Each names the request
// headers that describe the original request; the pdp reads those and nothing else.
const (
	// ConventionNginx: nginx auth_request with proxy_set_header X-Original-Method,
	// X-Original-URI and a host header (Config.ForwardAuthHostHeader, X-Original-Host by default).
	ConventionNginx = "nginx"
	// ConventionTraefik: Traefik ForwardAuth (X-Forwarded-Method, -Uri, -Host).
	ConventionTraefik = "traefik"
	// ConventionCaddy: Caddy forward_auth (X-Forwarded-Method, -Uri, -Host).
	ConventionCaddy = "caddy"
	// ConventionEnvoyHTTP: Envoy's HTTP ext_authz service with path_prefix "/auth": the auth
	// request's own method, target (after "/auth") and Host are the original request's.
	ConventionEnvoyHTTP = "envoy-http"
)

// Conventions lists the values Config.ForwardAuthHeaders accepts.
var Conventions = []string{ConventionNginx, ConventionTraefik, ConventionCaddy, ConventionEnvoyHTTP}

// Header names of the conventions.
const (
	hdrForwardedMethod = "X-Forwarded-Method"
	hdrForwardedURI    = "X-Forwarded-Uri"
	hdrForwardedHost   = "X-Forwarded-Host"
	hdrOriginalMethod  = "X-Original-Method"
	hdrOriginalURI     = "X-Original-URI"
	// DefaultNginxHostHeader is the host header of the nginx convention unless
	// Config.ForwardAuthHostHeader names another.
	DefaultNginxHostHeader = "X-Original-Host"
	// hdrPermission pins the permission, like Envoy's context_extensions["permission"]. It is
	// read only with Config.TrustForwardedPermission, because a proxy that passes client
	// headers through would let the client choose what is checked.
	hdrPermission = "X-Neoauthz-Permission"
)

// forwardAuthPath is the forward-auth endpoint; under envoy-http the original target follows
// it (Envoy's path_prefix).
const forwardAuthPath = "/auth"

// part is what a convention header describes.
type part uint8

const (
	partMethod part = iota
	partURI
	partHost
)

// conventionHeader is a header one of the conventions reads.
type conventionHeader struct {
	name string // canonical form; also the metric label
	part part
}

// convention is the header convention forward auth reads. The zero value serves nothing.
type convention struct {
	name string
	// own are the headers the convention reads, by part; empty (envoy-http) means the auth
	// request's own method, target and Host.
	own [3]string
	// foreign are every other convention's headers: when present they must agree with what
	// the convention read, or the request is refused (a proxy that passes some client headers
	// through must not leave two descriptions of one request for different readers).
	foreign []conventionHeader
}

func newConvention(name, nginxHost string) (convention, error) {
	if nginxHost == "" {
		nginxHost = DefaultNginxHostHeader
	}
	nginxHost = http.CanonicalHeaderKey(nginxHost)
	c := convention{name: name}
	switch name {
	case "":
		return convention{}, nil
	case ConventionNginx:
		c.own = [3]string{hdrOriginalMethod, hdrOriginalURI, nginxHost}
	case ConventionTraefik, ConventionCaddy:
		c.own = [3]string{hdrForwardedMethod, hdrForwardedURI, hdrForwardedHost}
	case ConventionEnvoyHTTP:
	default:
		return convention{}, fmt.Errorf("unknown convention %q (want one of %s)", name, strings.Join(Conventions, ", "))
	}
	all := []conventionHeader{
		{hdrForwardedMethod, partMethod}, {hdrForwardedURI, partURI}, {hdrForwardedHost, partHost},
		{http.CanonicalHeaderKey(hdrOriginalMethod), partMethod}, {http.CanonicalHeaderKey(hdrOriginalURI), partURI},
		{DefaultNginxHostHeader, partHost},
	}
	if nginxHost != DefaultNginxHostHeader {
		all = append(all, conventionHeader{nginxHost, partHost})
	}
	for _, h := range all {
		if !strings.EqualFold(h.name, c.own[h.part]) {
			c.foreign = append(c.foreign, h)
		}
	}
	return c, nil
}

func (c convention) enabled() bool { return c.name != "" }

// describe names the headers the convention reads, for the start-up log.
func (c convention) describe() string {
	if c.name == ConventionEnvoyHTTP {
		return "the request line below " + forwardAuthPath + " and Host"
	}
	return strings.Join(c.own[:], ", ")
}

// read returns the original request's method, target and host as the convention describes
// them. A refusal (bad != "") names the problem; header is then the header at fault, for
// the conflict metric.
func (c convention) read(r *http.Request) (got [3]string, bad, reason, header string) {
	if c.name == ConventionEnvoyHTTP {
		got = [3]string{r.Method, strings.TrimPrefix(r.RequestURI, forwardAuthPath), r.Host}
		if !strings.HasPrefix(got[partURI], "/") {
			return got, "the request target must follow " + forwardAuthPath + " (Envoy path_prefix)", "missing_uri", ""
		}
	} else {
		for p, name := range c.own {
			vs := r.Header.Values(name)
			if len(vs) > 1 {
				return got, "repeated " + name + " header", "header_conflict", http.CanonicalHeaderKey(name)
			}
			if len(vs) == 1 {
				got[p] = vs[0]
			}
		}
		switch {
		case got[partMethod] == "":
			return got, "missing " + c.own[partMethod] + " header", "missing_method", ""
		case got[partURI] == "":
			return got, "missing " + c.own[partURI] + " header", "missing_uri", ""
		}
	}
	for _, h := range c.foreign {
		vs := r.Header.Values(h.name)
		if len(vs) == 0 {
			continue
		}
		if len(vs) > 1 || !sameValue(h.part, vs[0], got[h.part]) {
			return got, h.name + " disagrees with the " + c.name + " convention's headers", "header_conflict", h.name
		}
	}
	return got, "", "", ""
}

// sameValue compares a foreign header with what the convention read: methods and hosts
// case-insensitively, targets exactly.
func sameValue(p part, a, b string) bool {
	if p == partURI {
		return a == b
	}
	return strings.EqualFold(a, b)
}

// isForwardAuth reports whether r is addressed to the forward-auth endpoint: "/auth", and
// under envoy-http anything below it. It looks at the raw target, before ServeMux would
// clean (and redirect) a path holding "." or "..", which under envoy-http is the client's.
func (c convention) isForwardAuth(r *http.Request) bool {
	t := r.RequestURI
	if q := strings.IndexByte(t, '?'); q >= 0 && c.name != ConventionEnvoyHTTP {
		t = t[:q]
	}
	if t == forwardAuthPath {
		return true
	}
	return c.name == ConventionEnvoyHTTP && strings.HasPrefix(t, forwardAuthPath+"/")
}

// forwardAuth is the HTTP forward-auth endpoint (nginx auth_request, Traefik ForwardAuth,
// Caddy forward_auth, Envoy's HTTP ext_authz): the same decision as ext_authz, answered with
// 200 and the identity headers, 401 with WWW-Authenticate, 403, 400 for a request that cannot
// be evaluated (including one whose headers describe the original request ambiguously), or
// 503 when the pdp cannot decide. Every body is the JSON envelope.
//
// The original request is read from the configured convention's headers only. /auth must be
// reachable only from the proxy, and the proxy must overwrite those headers (never pass the
// client's through): the files under deploy/ do.
func (s *Server) forwardAuth(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer s.metrics.observe(apiForwardAuth, start)

	orig, bad, reason, header := s.fwd.read(r)
	in := gateRequest{
		method:        orig[partMethod],
		path:          orig[partURI],
		host:          orig[partHost],
		authorization: joinedHeader(r.Header, "Authorization"),
		minVersion:    r.Header.Get(headerMinVersion),
		consistency:   joinedHeader(r.Header, headerConsistency),
		start:         start,
	}
	if bad == "" && s.host.set && in.host == "" {
		// A host pattern that silently binds nothing would let any tenant's token through.
		bad, reason = "missing "+s.fwd.own[partHost]+" header (the tenant host pattern needs it)", "missing_host"
	}
	if s.cfg.TrustForwardedPermission {
		in.permission = strings.TrimSpace(r.Header.Get(hdrPermission))
	}
	var g gateResult
	if bad != "" {
		if header != "" {
			s.metrics.forwardAuthConflict(header)
		}
		g = gateResult{rec: record{api: apiForwardAuth}}.badRequest(bad, reason, nil)
	} else {
		g = s.decideGate(r.Context(), apiForwardAuth, &in)
	}
	s.finish(r.Context(), &g.rec)

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store") // a decision is per request; no proxy may cache it
	if tok := g.res.TokenString(); tok != "" {
		h.Set(headerConsistency, tok)
	}
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

// forwardAuthOff answers /auth when no convention is configured: the pdp does not guess which
// headers a proxy it does not know sets.
func forwardAuthOff(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(`{"success":false,"error":{"code":"not_found","message":"forward auth is off: set -forward-auth-headers (` +
		EnvForwardAuthHeaders + `) to the proxy's header convention"}}` + "\n"))
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
