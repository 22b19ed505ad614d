package routes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// MaxParams is the most path parameters a route template may have. It lets Match keep the
// values in a fixed array instead of allocating.
const MaxParams = 8

// maxMethodLen bounds method names; real ones are short, and the bound keeps hostile input cheap.
const maxMethodLen = 32

// maxParamNameLen bounds parameter names, which end up in log lines and error messages.
const maxParamNameLen = 64

// ErrInvalidRoute reports a route file that does not load; the concrete error is a *RouteError
// for a problem with one route.
var ErrInvalidRoute = errors.New("routes: invalid route table")

// RouteError is a load-time error about one route, naming its index in the file and the field.
type RouteError struct {
	Index  int    // position in "routes", from 0
	Field  string // JSON field name ("method", "path", "permission", "owner", ...)
	Reason string
}

func (e *RouteError) Error() string {
	return "routes: route " + strconv.Itoa(e.Index) + ": " + e.Field + ": " + e.Reason
}

// Is makes every RouteError match ErrInvalidRoute.
func (e *RouteError) Is(target error) bool { return target == ErrInvalidRoute }

// Route is one entry of the route table. It is immutable once loaded.
type Route struct {
	Index       int    // position in the file, from 0; earlier routes win
	Method      string // uppercase method, or "*" for any method
	Path        string // the template as written, e.g. "/api/teams/{team_id}/projects/{id}"
	Permission  string // "resource.action.scope" or "resource.action"; "" when Public
	Public      bool   // no permission needed: the caller allows without a token
	OwnerParam  string // parameter carrying the resource's owner id, or ""
	TeamParam   string // parameter carrying the resource's team id, or ""
	TenantParam string // parameter carrying the tenant the route serves or targets, or ""

	segs       []segment
	params     []string // parameter names in template order
	ownerAt    int      // index into params, or -1
	teamAt     int
	tenantAt   int
	resourceCk bool
}

// ResourceCheck reports whether Permission is a resource check ("resource.action"), whose
// resource is named by the owner, team or tenant parameter, rather than a code check.
func (r *Route) ResourceCheck() bool { return r.resourceCk }

type segKind uint8

const (
	segLiteral segKind = iota
	segParam
	segRest
)

// segment is one pre-split template segment. A literal is stored in canonical form (see
// NormalizePath) so that matching is a plain string comparison.
type segment struct {
	kind segKind
	lit  string // canonical literal, or the parameter name
}

// fileFormat is the route file's top level.
type fileFormat struct {
	Routes []json.RawMessage `json:"routes"`
}

// routeJSON is one route as written in the file.
type routeJSON struct {
	Method     string `json:"method"`
	Path       string `json:"path"`
	Permission string `json:"permission"`
	Public     bool   `json:"public"`
	Owner      string `json:"owner"`
	Team       string `json:"team"`
	Tenant     string `json:"tenant"`
}

// LoadFile reads and validates the route file at path.
func LoadFile(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	defer f.Close()
	t, err := Load(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Load reads and validates a route file (see the package documentation for the format). Every
// problem is found here, never at match time; a problem with one route is a *RouteError.
func Load(r io.Reader) (*Table, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var f fileFormat
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRoute, err)
	}
	// A second document after the first is most likely a bad merge; refuse it rather than
	// silently dropping routes.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the route table", ErrInvalidRoute)
	}
	if len(f.Routes) == 0 {
		return nil, fmt.Errorf("%w: no routes", ErrInvalidRoute)
	}
	routes := make([]*Route, 0, len(f.Routes))
	seen := make(map[string]int, len(f.Routes))
	for i, raw := range f.Routes {
		rt, err := parseRoute(i, raw)
		if err != nil {
			return nil, err
		}
		key := rt.Method + " " + shape(rt.segs)
		if j, dup := seen[key]; dup {
			return nil, &RouteError{Index: i, Field: "path", Reason: "same method and template as route " + strconv.Itoa(j) + " (parameter names do not count)"}
		}
		seen[key] = i
		routes = append(routes, rt)
	}
	return newTable(routes), nil
}

// shape is a template with its parameter names erased: "/api/{x}" and "/api/{y}" are the same
// template, and the second could never match.
func shape(segs []segment) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		switch s.kind {
		case segLiteral:
			b.WriteString(s.lit) // canonical: '{' would be "%7B", so no clash with the markers
		case segParam:
			b.WriteString("{}")
		case segRest:
			b.WriteString("{...}")
		}
	}
	return b.String()
}

func parseRoute(i int, raw json.RawMessage) (*Route, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var rj routeJSON
	if err := dec.Decode(&rj); err != nil {
		return nil, jsonRouteError(i, err)
	}
	rt := &Route{
		Index:       i,
		Method:      rj.Method,
		Path:        rj.Path,
		Permission:  rj.Permission,
		Public:      rj.Public,
		OwnerParam:  rj.Owner,
		TeamParam:   rj.Team,
		TenantParam: rj.Tenant,
	}
	fail := func(field, reason string) (*Route, error) {
		return nil, &RouteError{Index: i, Field: field, Reason: reason}
	}
	if reason := checkMethod(rj.Method); reason != "" {
		return fail("method", reason)
	}
	segs, params, reason := parseTemplate(rj.Path)
	if reason != "" {
		return fail("path", reason)
	}
	rt.segs, rt.params = segs, params
	var ok bool
	if rt.ownerAt, ok = paramIndex(params, rj.Owner); !ok {
		return fail("owner", "no parameter "+strconv.Quote(rj.Owner)+" in the path")
	}
	if rt.teamAt, ok = paramIndex(params, rj.Team); !ok {
		return fail("team", "no parameter "+strconv.Quote(rj.Team)+" in the path")
	}
	if rt.tenantAt, ok = paramIndex(params, rj.Tenant); !ok {
		return fail("tenant", "no parameter "+strconv.Quote(rj.Tenant)+" in the path")
	}

	if rj.Public {
		// A permission or resource binding on a public route would be ignored; refusing it
		// keeps a typo ("public": true meant for another route) from opening a route silently.
		switch {
		case rj.Permission != "":
			return fail("permission", "a public route has no permission")
		case rj.Owner != "":
			return fail("owner", "a public route has no owner")
		case rj.Team != "":
			return fail("team", "a public route has no team")
		case rj.Tenant != "":
			return fail("tenant", "a public route has no tenant binding (no token is checked)")
		}
		return rt, nil
	}
	if rj.Permission == "" {
		return fail("permission", "required unless the route is public")
	}
	n, reason := checkPermission(rj.Permission)
	if reason != "" {
		return fail("permission", reason)
	}
	switch {
	case n == 3 && (rj.Owner != "" || rj.Team != ""):
		// The pdp refuses a code check that carries a resource; catch it here, not per request.
		return fail("permission", "a code check (resource.action.scope) takes no owner or team; use resource.action")
	case n == 2 && rj.Owner == "" && rj.Team == "" && rj.Tenant == "":
		return fail("permission", "a resource check (resource.action) needs an owner, team or tenant parameter")
	}
	rt.resourceCk = n == 2
	return rt, nil
}

// jsonRouteError turns a decoding error for route i into a RouteError naming the field.
func jsonRouteError(i int, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return &RouteError{Index: i, Field: te.Field, Reason: "want a JSON " + te.Type.String() + ", got " + te.Value}
	}
	// encoding/json has no typed error for an unknown field; its message is stable.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return &RouteError{Index: i, Field: strings.Trim(name, `"`), Reason: "unknown field"}
	}
	return &RouteError{Index: i, Field: "(route)", Reason: err.Error()}
}

// checkMethod returns why m is not a valid route method, or "".
func checkMethod(m string) string {
	if m == "*" {
		return ""
	}
	if m == "" {
		return "required (use \"*\" for any method)"
	}
	if len(m) > maxMethodLen {
		return "too long"
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c < 'A' || c > 'Z' {
			return "must be an uppercase method name such as GET, or \"*\""
		}
	}
	return ""
}

// parseTemplate splits a path template into segments. It returns a reason when the template is
// invalid. Literal segments must already be in normalised form (no empty, "." or ".." segments,
// no trailing slash), since a request is normalised before matching and such a template could
// never match.
func parseTemplate(p string) (segs []segment, params []string, reason string) {
	switch {
	case p == "":
		return nil, nil, "required"
	case p[0] != '/':
		return nil, nil, "must start with '/'"
	case len(p) > MaxPathLen:
		return nil, nil, "longer than 8 KiB"
	case strings.ContainsAny(p, "?#"):
		return nil, nil, "must not contain '?' or '#' (queries never affect matching)"
	case p == "/":
		return nil, nil, ""
	case strings.HasSuffix(p, "/"):
		return nil, nil, "must not end with '/' (a trailing slash is removed from requests)"
	}
	parts := strings.Split(p[1:], "/")
	for k, part := range parts {
		if name, ok := strings.CutPrefix(part, "{"); ok {
			name, ok = strings.CutSuffix(name, "}")
			if !ok {
				return nil, nil, "segment " + strconv.Quote(part) + ": a parameter must be a whole segment {name}"
			}
			kind := segParam
			if n, rest := strings.CutSuffix(name, "..."); rest {
				if k != len(parts)-1 {
					return nil, nil, "segment " + strconv.Quote(part) + ": a {name...} parameter must be the last segment"
				}
				name, kind = n, segRest
			}
			if !validParamName(name) {
				return nil, nil, "segment " + strconv.Quote(part) + ": a parameter name is [A-Za-z_][A-Za-z0-9_]*, at most 64 bytes"
			}
			for _, q := range params {
				if q == name {
					return nil, nil, "duplicate parameter " + strconv.Quote(name)
				}
			}
			if len(params) == MaxParams {
				return nil, nil, "more than " + strconv.Itoa(MaxParams) + " parameters"
			}
			params = append(params, name)
			segs = append(segs, segment{kind: kind, lit: name})
			continue
		}
		if strings.ContainsAny(part, "{}") {
			return nil, nil, "segment " + strconv.Quote(part) + ": a parameter must be a whole segment {name}"
		}
		switch part {
		case "":
			return nil, nil, "empty segment ('//')"
		case ".", "..":
			return nil, nil, "dot segment " + strconv.Quote(part)
		}
		// A literal is normalised like a request segment, so "%7E", "~" and "%7e" are the same
		// and a literal that a request could never spell is refused.
		canon, err := NormalizePath("/" + part)
		if err != nil {
			return nil, nil, "segment " + strconv.Quote(part) + ": " + strings.TrimPrefix(err.Error(), "routes: bad request path: ")
		}
		if canon == "/" {
			return nil, nil, "segment " + strconv.Quote(part) + ": is a dot segment once decoded"
		}
		segs = append(segs, segment{kind: segLiteral, lit: canon[1:]})
	}
	return segs, params, ""
}

func validParamName(s string) bool {
	if s == "" || len(s) > maxParamNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// paramIndex returns the index of name in params, -1 for an empty name, and false when a
// non-empty name is not a parameter.
func paramIndex(params []string, name string) (int, bool) {
	if name == "" {
		return -1, true
	}
	for i, p := range params {
		if p == name {
			return i, true
		}
	}
	return -1, false
}

// checkPermission returns the number of segments of a permission code and "" when it is a valid
// "resource.action" or "resource.action.scope", or a reason. Whether the scope exists at the
// caller's level is the pdp's question (it depends on the level); this checks the syntax.
func checkPermission(s string) (int, string) {
	if strings.IndexByte(s, '*') >= 0 {
		return 0, "a wildcard '*' is for grants, never for a required permission"
	}
	parts := strings.Split(s, ".")
	if len(parts) != 2 && len(parts) != 3 {
		return 0, "want resource.action.scope or resource.action, got " + strconv.Quote(s)
	}
	for _, part := range parts {
		if !validCodeSegment(part) {
			return 0, "segments are lowercase [a-z0-9_-]+, got " + strconv.Quote(s)
		}
	}
	return len(parts), ""
}

func validCodeSegment(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}
