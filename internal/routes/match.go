package routes

import (
	"errors"
	"math"
	"strings"
)

// ErrNoRoute reports a request that matches no route. The caller denies it: an unlisted route is
// never allowed by default.
var ErrNoRoute = errors.New("routes: no route matches")

// ErrBadMethod reports a request method that is not an HTTP token.
var ErrBadMethod = errors.New("routes: bad request method")

// Table is a loaded, validated route table. It is immutable and safe for concurrent use.
type Table struct {
	routes []*Route
	// tries holds one segment trie per route method ("GET", "*", ...). A request is matched
	// against its method's trie and the "*" trie; the lowest route index wins.
	tries map[string]*node
	any   *node // tries["*"], looked up once
}

// Param is one path parameter of a match.
type Param struct {
	Name  string // as in the template
	Value string // decoded segment text; for {name...} the decoded rest of the path
}

// Match is the result of matching a request. Values are views into the normalised path when it
// needs no decoding, so a match usually costs no allocation beyond the normalised path.
type Match struct {
	Route  *Route
	Path   string // the normalised path the route was matched on; log this one
	Owner  string // value of Route.OwnerParam, or ""
	Team   string // value of Route.TeamParam, or ""
	Tenant string // value of Route.TenantParam, or ""

	params [MaxParams]Param
	n      uint8
}

// Params returns the path parameters in template order. The slice aliases m.
func (m *Match) Params() []Param { return m.params[:m.n] }

// Param returns the value of the named parameter.
func (m *Match) Param(name string) (string, bool) {
	for _, p := range m.params[:m.n] {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// Routes returns the table's routes in file order. The slice must not be modified.
func (t *Table) Routes() []*Route { return t.routes }

// Match finds the first route, in file order, whose method and template match the request.
// rawPath is the request target as received (":path", X-Forwarded-Uri, X-Original-URI), query
// included; it is normalised first (see NormalizePath) and Match.Path holds the result, also on
// ErrNoRoute. method is upper-cased; HEAD uses GET routes unless a HEAD route matches the path.
func (t *Table) Match(method, rawPath string) (Match, error) {
	method, err := normalizeMethod(method)
	if err != nil {
		return Match{}, err
	}
	p, err := NormalizePath(rawPath)
	if err != nil {
		return Match{}, err
	}
	m := Match{Path: p}
	var s search
	s.best = math.MaxInt
	s.path = p
	if method == "HEAD" {
		// HEAD is GET without a body, so GET routes protect it; a HEAD route is only an
		// override, and it must match this path to take over.
		s.run(t.tries["HEAD"])
		if s.best == math.MaxInt {
			s.run(t.tries["GET"])
		}
	} else {
		s.run(t.tries[method])
	}
	s.run(t.any)
	if s.best == math.MaxInt {
		return m, ErrNoRoute
	}
	rt := t.routes[s.best]
	m.Route = rt
	m.n = uint8(len(rt.params))
	for i, name := range rt.params {
		m.params[i] = Param{Name: name, Value: decode(s.out[i])}
	}
	if rt.ownerAt >= 0 {
		m.Owner = m.params[rt.ownerAt].Value
	}
	if rt.teamAt >= 0 {
		m.Team = m.params[rt.teamAt].Value
	}
	if rt.tenantAt >= 0 {
		m.Tenant = m.params[rt.tenantAt].Value
	}
	return m, nil
}

// normalizeMethod upper-cases method and checks it is an RFC 9110 token.
func normalizeMethod(method string) (string, error) {
	if method == "" || len(method) > maxMethodLen {
		return "", ErrBadMethod
	}
	for i := 0; i < len(method); i++ {
		if !tchar[method[i]] {
			return "", ErrBadMethod
		}
	}
	return strings.ToUpper(method), nil // no allocation when already upper case
}

var tchar = func() (t [256]bool) {
	for _, c := range "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" {
		t[c] = true
	}
	return t
}()

// node is a segment-trie node. Children are tried in any order; min lets the search skip every
// subtree that cannot beat the best route found so far, which keeps "first match wins" exact
// while usually following a single path.
type node struct {
	lit   map[string]*node // canonical literal segment → child
	param *node            // {name}: any non-empty segment
	end   int              // route whose template ends here, or -1
	rest  int              // route whose {name...} starts here, or -1
	min   int              // lowest route index in this subtree
}

func newNode() *node { return &node{end: -1, rest: -1, min: math.MaxInt} }

func newTable(routes []*Route) *Table {
	t := &Table{routes: routes, tries: make(map[string]*node)}
	for _, rt := range routes {
		root := t.tries[rt.Method]
		if root == nil {
			root = newNode()
			t.tries[rt.Method] = root
		}
		root.insert(rt)
	}
	t.any = t.tries["*"]
	return t
}

// insert adds rt under n. Load has rejected duplicate method+template pairs, so end and rest
// are set at most once per node.
func (n *node) insert(rt *Route) {
	for _, s := range rt.segs {
		n.min = min(n.min, rt.Index)
		switch s.kind {
		case segLiteral:
			if n.lit == nil {
				n.lit = make(map[string]*node)
			}
			c := n.lit[s.lit]
			if c == nil {
				c = newNode()
				n.lit[s.lit] = c
			}
			n = c
		case segParam:
			if n.param == nil {
				n.param = newNode()
			}
			n = n.param
		case segRest:
			n.rest = rt.Index
			return
		}
	}
	n.min = min(n.min, rt.Index)
	n.end = rt.Index
}

// search is the state of one match: the path, the captures along the current trie path, and the
// best (lowest-index) route found with its captures.
type search struct {
	path string
	best int
	caps [MaxParams]string
	out  [MaxParams]string
}

func (s *search) run(root *node) {
	if root != nil {
		// pos 1 skips the leading '/'; the root path "/" has no segments (pos == len).
		s.walk(root, 1, 0)
	}
}

// walk matches the segments of s.path from pos against n; nc captures are on the current path.
// Recursion depth is bounded by the template depth, not by the request.
func (s *search) walk(n *node, pos, nc int) {
	if n.min >= s.best {
		return
	}
	if pos >= len(s.path) {
		if n.end >= 0 && n.end < s.best {
			s.best = n.end
			copy(s.out[:], s.caps[:nc])
		}
		return
	}
	// A {name...} at this node takes the whole non-empty rest of the path.
	if n.rest >= 0 && n.rest < s.best {
		s.best = n.rest
		copy(s.out[:], s.caps[:nc])
		s.out[nc] = s.path[pos:]
	}
	seg, next := s.path[pos:], len(s.path)
	if i := strings.IndexByte(seg, '/'); i >= 0 {
		seg, next = seg[:i], pos+i+1
	}
	if c := n.lit[seg]; c != nil {
		s.walk(c, next, nc)
	}
	if n.param != nil {
		// seg is never empty: the normalised path has no empty segments.
		s.caps[nc] = seg
		s.walk(n.param, next, nc+1)
	}
}
