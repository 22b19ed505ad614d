package server

import (
	"errors"
	"net"
	"strings"
)

// hostPattern binds a tenant from the request host: "{tenant}.app.example.com" has prefix ""
// and suffix ".app.example.com". The zero value binds nothing.
type hostPattern struct {
	prefix, suffix string
	set            bool
}

const tenantPlaceholder = "{tenant}"

func parseHostPattern(p string) (hostPattern, error) {
	if p == "" {
		return hostPattern{}, nil
	}
	p = strings.ToLower(p)
	i := strings.Index(p, tenantPlaceholder)
	if i < 0 {
		return hostPattern{}, errors.New(`must contain "{tenant}"`)
	}
	prefix, suffix := p[:i], p[i+len(tenantPlaceholder):]
	if strings.Contains(suffix, tenantPlaceholder) {
		return hostPattern{}, errors.New(`must contain "{tenant}" once`)
	}
	if strings.ContainsAny(p, ":/ *") {
		return hostPattern{}, errors.New("must be a host name without port, scheme, path or wildcard")
	}
	if prefix == "" && suffix == "" {
		// A bare "{tenant}" would turn every host, "localhost" and IP addresses included, into
		// a tenant binding.
		return hostPattern{}, errors.New(`needs a fixed part beside "{tenant}"`)
	}
	return hostPattern{prefix: prefix, suffix: suffix, set: true}, nil
}

// tenant returns the tenant the host binds, or "" when the host does not fit the pattern. The
// tenant must be one DNS label: "a.b.app.example.com" does not bind "a.b", so a deeper
// subdomain cannot pose as a tenant.
func (h hostPattern) tenant(host string) string {
	if !h.set || host == "" {
		return ""
	}
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	host = strings.TrimSuffix(host, ".") // the absolute form names the same host
	if len(host) <= len(h.prefix)+len(h.suffix) ||
		!hasPrefixFold(host, h.prefix) || !hasSuffixFold(host, h.suffix) {
		return ""
	}
	label := host[len(h.prefix) : len(host)-len(h.suffix)]
	for i := 0; i < len(label); i++ {
		c := label[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return ""
		}
	}
	return strings.ToLower(label)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// bindTenant merges the tenant bindings of a request (route configuration, route table path
// parameter, host pattern). All are trusted sources; when two disagree the request is refused
// (conflict = true) rather than one silently winning, since either could be the one the
// upstream acts on.
func bindTenant(bindings ...string) (tenant string, conflict bool) {
	for _, b := range bindings {
		switch {
		case b == "":
		case tenant == "":
			tenant = b
		case !strings.EqualFold(tenant, b):
			return "", true
		}
	}
	return tenant, false
}
