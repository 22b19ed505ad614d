package decision

import (
	"crypto/sha256"
	"slices"
	"time"
	"unique"
)

// Reason says why a decision came out the way it did.
type Reason uint8

// Reasons. The zero value is a denial, so a forgotten Decision never reads as an allow.
const (
	ReasonNoPermission Reason = iota
	ReasonGranted
	ReasonExplicitDeny
	ReasonUserInactive
	ReasonTenantSuspended
	ReasonUnknownTenant
	ReasonUnknownUser
	// ReasonInvalidData denies everything for a set whose stored data did not parse (fail closed).
	ReasonInvalidData
	reasonCount
)

var reasonNames = [reasonCount]string{
	ReasonNoPermission:    "no permission",
	ReasonGranted:         "granted",
	ReasonExplicitDeny:    "explicit deny",
	ReasonUserInactive:    "user inactive",
	ReasonTenantSuspended: "tenant suspended",
	ReasonUnknownTenant:   "unknown tenant",
	ReasonUnknownUser:     "unknown user",
	ReasonInvalidData:     "invalid data",
}

// String returns the reason as words, e.g. "explicit deny".
func (r Reason) String() string {
	if r < reasonCount {
		return reasonNames[r]
	}
	return "invalid reason"
}

// Request is one check: a code check "r.a.s" without a resource, or a resource check "r.a" with one.
type Request struct {
	Permission  string
	Resource    Resource
	HasResource bool
}

// Resource is what a resource check is about.
type Resource struct {
	OwnerID string // compared with the user's external id
	Group   string // team id at tenant level, target tenant id at platform level; "" = no group
}

// Decision is the answer to a check, always with the version of the data it was computed from.
type Decision struct {
	Allowed bool
	Reason  Reason
	Grant   Grant // the matched grant when Allowed
	Version uint64
}

// Grant explains an allow: the stored code that matched and where it came from.
type Grant struct {
	Code   string // the stored code as written, wildcards included
	Direct bool
	Role   string // the assigned role's code (not the inherited role holding the code); "" if Direct
	Group  string // the restriction, "" if none
	Scope  Scope  // the effective rank of the matched instance
}

// grantEntry is a compiled grant. lo..hi are the written instance scopes (1..3 for '*').
type grantEntry struct {
	lo, hi     uint8
	restricted bool
	direct     bool
	order      uint32 // position in the static matched-grant order
	exp        int64
	groups     map[string]struct{} // restriction closure; nil when unrestricted
	code       string
	role       string
	group      string
}

// denyEntry is a compiled deny; it removes instances whose written scope ranks >= rank.
type denyEntry struct {
	rank   uint8
	exp    int64
	groups map[string]struct{} // restriction closure; nil when unrestricted
}

// bucket lists, by index, the grants and denies one lookup yields.
type bucket struct {
	grants []uint32
	denies []uint32
}

type raKey struct{ r, a string }

// Set is a user's compiled, immutable permission set. It is safe for concurrent use.
//
// A Set is small: what is truly per user (version, status, external id, team membership) and a
// reference to a compiled part that every user of the tenant whose inputs resolve to the same
// grants, restrictions, denies and expiries may share (see Interner).
type Set struct {
	c       *compiled
	version uint64
	status  Reason
	problem string
	userID  string
	members map[string]struct{} // nil when the user is in no team
}

// compiled is the immutable index of a set's grants and denies, shared between Sets.
//
// Index: every concrete (resource, action) pair written in some code has one merged bucket holding
// the exact entries plus those of "r.*", "*.a" and "*.*", so the common check is one map lookup.
// A pair no code names falls back to the disjoint buckets "r.*", "*.a" and "*.*" (two lookups).
type compiled struct {
	f      *sharedFacts
	hash   [sha256.Size]byte // of the shared encoding, which includes the tenant
	size   int64             // estimated retained bytes, facts included
	grants []grantEntry
	denies []denyEntry
	pairs  map[raKey]*bucket
	rOnly  map[string]*bucket
	aOnly  map[string]*bucket
	star   bucket
}

// newSet joins a user's facts and a compiled part.
func newSet(u userFacts, c *compiled) *Set {
	s := &Set{c: c, version: u.version, status: u.status, problem: u.problem, userID: u.userID}
	if len(u.members) > 0 {
		s.members = make(map[string]struct{}, len(u.members))
		for _, g := range u.members {
			s.members[unique.Make(g).Value()] = struct{}{}
		}
	}
	return s
}

// canonical makes f's strings the process-wide canonical copies (package unique) and its
// slices exactly as long as they need be, so that the codes, role codes and group ids every
// part of a tenant repeats are stored once, not once per part or per database read.
func canonical(f *sharedFacts) {
	c := func(s string) string { return unique.Make(s).Value() }
	f.grants = slices.Clone(f.grants)
	for i := range f.grants {
		g := &f.grants[i]
		g.code, g.group, g.role = c(g.code), c(g.group), c(g.role)
	}
	f.denies = slices.Clone(f.denies)
	for i := range f.denies {
		d := &f.denies[i]
		d.code, d.group = c(d.code), c(d.group)
	}
	if len(f.closures) > 0 {
		closures := make(map[string][]string, len(f.closures))
		for g, cl := range f.closures {
			out := make([]string, len(cl))
			for i, x := range cl {
				out[i] = c(x)
			}
			closures[c(g)] = out
		}
		f.closures = closures
	}
	f.scope = c(f.scope)
}

// newCompiled indexes resolved shared facts. The facts have been validated (every code parses
// at f.level).
func newCompiled(f *sharedFacts) *compiled {
	return buildCompiled(f, sha256.Sum256(appendShared(nil, f)))
}

func buildCompiled(f *sharedFacts, hash [sha256.Size]byte) *compiled {
	canonical(f)
	s := &compiled{
		f:     f,
		hash:  hash,
		pairs: make(map[raKey]*bucket),
		rOnly: make(map[string]*bucket),
		aOnly: make(map[string]*bucket),
	}
	closures := make(map[string]map[string]struct{}, len(f.closures))
	groupsOf := func(g string) map[string]struct{} {
		if g == "" {
			return nil
		}
		if m, ok := closures[g]; ok {
			return m
		}
		m := toSet(f.closures[g])
		m[g] = struct{}{}
		closures[g] = m
		return m
	}
	exact := make(map[raKey]*bucket)
	pick := func(c Code) *bucket {
		switch {
		case !c.AnyResource && !c.AnyAction:
			return getBucket(exact, raKey{c.Resource, c.Action})
		case !c.AnyResource:
			return getBucket(s.rOnly, c.Resource)
		case !c.AnyAction:
			return getBucket(s.aOnly, c.Action)
		}
		return &s.star
	}
	s.grants = make([]grantEntry, len(f.grants))
	for i, g := range f.grants {
		c, _ := ParseCode(f.level, g.code)
		lo, hi := uint8(c.Scope), uint8(c.Scope)
		if c.Scope == ScopeAny {
			lo, hi = uint8(ScopeLow), uint8(ScopeTop)
		}
		s.grants[i] = grantEntry{
			lo: lo, hi: hi, restricted: g.group != "", direct: g.direct, order: uint32(i), exp: g.exp,
			groups: groupsOf(g.group), code: g.code, role: g.role, group: g.group,
		}
		b := pick(c)
		b.grants = append(b.grants, uint32(i))
	}
	s.denies = make([]denyEntry, len(f.denies))
	for i, d := range f.denies {
		c, _ := ParseCode(f.level, d.code)
		rank := uint8(c.Scope)
		if c.Scope == ScopeAny {
			rank = uint8(ScopeLow)
		}
		s.denies[i] = denyEntry{rank: rank, exp: d.exp, groups: groupsOf(d.group)}
		b := pick(c)
		b.denies = append(b.denies, uint32(i))
	}
	for k, b := range exact {
		m := &bucket{}
		for _, src := range []*bucket{b, s.rOnly[k.r], s.aOnly[k.a], &s.star} {
			if src != nil {
				m.grants = append(m.grants, src.grants...)
				m.denies = append(m.denies, src.denies...)
			}
		}
		slices.Sort(m.grants)
		slices.Sort(m.denies)
		m.grants, m.denies = slices.Clip(m.grants), slices.Clip(m.denies)
		s.pairs[k] = m
	}
	s.size = s.estimateSize(closures)
	return s
}

func getBucket[K comparable](m map[K]*bucket, k K) *bucket {
	b := m[k]
	if b == nil {
		b = &bucket{}
		m[k] = b
	}
	return b
}

func toSet(xs []string) map[string]struct{} {
	m := make(map[string]struct{}, len(xs))
	for _, x := range xs {
		m[x] = struct{}{}
	}
	return m
}

// inSet reports whether g, a real group, is in m; "" (no group) is in no set.
func inSet(m map[string]struct{}, g string) bool {
	if g == "" {
		return false
	}
	_, ok := m[g]
	return ok
}

// Version returns the authz_state version the set was computed from.
func (s *Set) Version() uint64 { return s.version }

// Level returns the level the set was compiled for.
func (s *Set) Level() Level { return s.c.f.level }

// Expiry returns the earliest expiry among the items the set contains (zero = none). Decisions
// change at that instant without a notification, so caches must not keep the set past it.
func (s *Set) Expiry() time.Time {
	if s.c.f.expiry == never {
		return time.Time{}
	}
	return time.UnixMicro(s.c.f.expiry).UTC()
}

// Status returns ReasonGranted for a set that decides by its grants, or the reason it denies
// everything with (unknown user, user inactive, ...).
func (s *Set) Status() Reason { return s.status }

// Problem returns why the set denies everything with ReasonInvalidData, or "" when it does not;
// it is meant for logs, since a decision carries only the reason.
func (s *Set) Problem() string { return s.problem }

// Check decides req at now. A malformed request is an error (ErrInvalidRequest), not a decision.
// Check never allocates.
func (s *Set) Check(now time.Time, req Request) (Decision, error) {
	if s == nil {
		return Decision{}, ErrNilSet
	}
	r, a, want, codeCheck, err := parseChecked(s.c.f.level, req)
	if err != nil {
		return Decision{}, err
	}
	if s.status != ReasonGranted {
		return Decision{Reason: s.status, Version: s.version}, nil
	}
	return s.eval(now.UnixMicro(), r, a, uint8(want), codeCheck, req.Resource), nil
}

// ValidateRequest applies the rules Check applies to a request before it looks at any data
// (DESIGN §2, step 1), so callers can refuse an invalid request before their own gates. It
// never allocates; errors match ErrInvalidRequest.
func ValidateRequest(level Level, req Request) error {
	_, _, _, _, err := parseChecked(level, req)
	return err
}

func parseChecked(level Level, req Request) (r, a string, want Scope, codeCheck bool, err error) {
	r, a, want, codeCheck, err = ParseRequest(level, req.Permission)
	if err != nil {
		return "", "", ScopeNone, false, err
	}
	if codeCheck {
		if req.HasResource || req.Resource != (Resource{}) {
			return "", "", ScopeNone, false, errReqResourceArg
		}
	} else if !req.HasResource {
		return "", "", ScopeNone, false, errReqNoResource
	}
	return r, a, want, codeCheck, nil
}

// query carries one evaluation's request facts to the per-instance tests.
type query struct {
	codeCheck bool
	want      uint8
	group     string
	owned     bool
}

func (s *Set) eval(nowUS int64, r, a string, want uint8, codeCheck bool, res Resource) Decision {
	c := s.c
	var bs [3]*bucket
	n := 0
	if b, ok := c.pairs[raKey{r, a}]; ok {
		bs[0], n = b, 1
	} else {
		if b := c.rOnly[r]; b != nil {
			bs[n], n = b, n+1
		}
		if b := c.aOnly[a]; b != nil {
			bs[n], n = b, n+1
		}
		bs[n], n = &c.star, n+1
	}
	q := query{codeCheck: codeCheck, want: want, group: res.Group, owned: res.OwnerID != "" && res.OwnerID == s.userID}

	// capAll is the lowest scope removed from every instance; denies restricted to a group the
	// resource lies outside of are handled per restricted instance (outside).
	capAll, outside := uint8(ScopeAny), false
	for _, b := range bs[:n] {
		for _, di := range b.denies {
			d := &c.denies[di]
			if nowUS >= d.exp {
				continue
			}
			if codeCheck || d.groups == nil || inSet(d.groups, q.group) {
				capAll = min(capAll, d.rank)
			} else {
				outside = true
			}
		}
	}

	var best *grantEntry
	var bestEff uint8
	wouldAllow := false
	for _, b := range bs[:n] {
		for _, gi := range b.grants {
			e := &c.grants[gi]
			if nowUS >= e.exp {
				continue
			}
			if !wouldAllow && s.allows(e, effective(e, e.hi), &q) {
				wouldAllow = true
			}
			limit := capAll
			if outside && e.restricted {
				limit = min(limit, c.outsideCap(bs[:n], nowUS, q.group, e.group))
			}
			top := min(e.hi, limit-1)
			if top < e.lo {
				continue // every instance removed
			}
			eff := effective(e, top)
			if !s.allows(e, eff, &q) {
				continue
			}
			if best == nil || better(e, eff, best, bestEff) {
				best, bestEff = e, eff
			}
		}
	}
	d := Decision{Version: s.version}
	switch {
	case best != nil:
		d.Allowed, d.Reason = true, ReasonGranted
		d.Grant = Grant{Code: best.code, Direct: best.direct, Role: best.role, Group: best.group, Scope: Scope(bestEff)}
	case wouldAllow:
		d.Reason = ReasonExplicitDeny
	default:
		d.Reason = ReasonNoPermission
	}
	return d
}

// outsideCap applies the denies restricted to a group the resource lies outside of: they remove
// only instances restricted to their group or one of its descendants.
func (s *compiled) outsideCap(bs []*bucket, nowUS int64, resGroup, instGroup string) uint8 {
	c := uint8(ScopeAny)
	for _, b := range bs {
		for _, di := range b.denies {
			d := &s.denies[di]
			if nowUS >= d.exp || d.groups == nil || inSet(d.groups, resGroup) {
				continue
			}
			if inSet(d.groups, instGroup) {
				c = min(c, d.rank)
			}
		}
	}
	return c
}

// effective caps a restricted instance at the middle rank: a restriction never reaches the top.
func effective(e *grantEntry, scope uint8) uint8 {
	if e.restricted && scope > uint8(ScopeMiddle) {
		return uint8(ScopeMiddle)
	}
	return scope
}

// allows reports whether one instance of e with effective rank eff allows the query by itself.
func (s *Set) allows(e *grantEntry, eff uint8, q *query) bool {
	if q.codeCheck {
		return eff >= q.want
	}
	if !e.restricted && eff == uint8(ScopeTop) {
		return true
	}
	var reach bool
	if e.restricted {
		reach = inSet(e.groups, q.group)
	} else {
		reach = inSet(s.members, q.group)
	}
	if eff >= uint8(ScopeMiddle) && reach {
		return true
	}
	return q.owned && (!e.restricted || reach)
}

// better is the matched-grant order: direct, then higher effective rank, then the static order.
func better(e *grantEntry, eff uint8, best *grantEntry, bestEff uint8) bool {
	if e.direct != best.direct {
		return e.direct
	}
	if eff != bestEff {
		return eff > bestEff
	}
	return e.order < best.order
}
