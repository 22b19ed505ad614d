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

// itemText is the stored code of a grant or a deny and the assigned role's code ("" for a deny
// and a direct grant). Entries hold it as a unique.Handle: the parts of a tenant, and often of
// many tenants, repeat the same codes and roles, so each distinct pair is stored once per
// process and an entry holds one pointer.
type itemText struct{ code, role string }

// grantEntry is a compiled grant, 24 bytes. lo..hi are the written instance scopes (1..3 for
// '*'). Its position in compiled.grants is its place in the static matched-grant order.
type grantEntry struct {
	text       unique.Handle[itemText]
	exp        int64
	group      uint32 // restriction: index into compiled.groups and .closures; 0 = none
	lo, hi     uint8
	restricted bool
	direct     bool
}

// denyEntry is a compiled deny; it removes instances whose written scope ranks >= rank.
type denyEntry struct {
	text  unique.Handle[itemText]
	exp   int64
	group uint32 // as grantEntry.group
	rank  uint8
}

// span locates one lookup's entries in compiled.idx: ng grant indices from off, then nd deny
// indices. Every bucket of a part lives in that one slice, so a bucket costs no allocation.
type span struct{ off, ng, nd uint32 }

type raKey struct{ r, a string }

// Set is a user's compiled, immutable permission set. It is safe for concurrent use.
//
// A Set is small: what is truly per user (version, status, external id, team membership) and a
// reference to a compiled part that every user of the tenant whose inputs resolve to the same
// grants, restrictions, denies and expiries may share (see Interner).
type Set struct {
	c       *compiled
	version uint64
	userID  string
	problem string
	members []string // sorted canonical team ids; nil when the user is in no team
	status  Reason
}

// compiled is the immutable index of a set's grants and denies, shared between Sets.
//
// Index: every concrete (resource, action) pair written in some code has one merged bucket holding
// the exact entries plus those of "r.*", "*.a" and "*.*", so the common check is one map lookup.
// A pair no code names falls back to the disjoint buckets "r.*", "*.a" and "*.*" (two lookups).
// The facts' grants and denies are not kept beside the entries: facts() rebuilds them.
type compiled struct {
	f      *sharedFacts      // level, scope, expiry and closures; grants and denies are nil
	hash   [sha256.Size]byte // of the shared encoding, which includes the tenant
	size   int64             // estimated retained bytes, facts included
	grants []grantEntry
	denies []denyEntry
	idx    []uint32
	// groups are the restriction groups the entries name, closures their closures (the group
	// and its descendants); index 0 is "no group" (nil closure).
	groups   []string
	closures []map[string]struct{}
	index    pairTable // (r, a), (r, "*") and ("*", a) buckets; star is the ("*", "*") one
	star     span
}

func (c *compiled) grantsIn(b span) []uint32 { return c.idx[b.off : b.off+b.ng] }
func (c *compiled) deniesIn(b span) []uint32 { return c.idx[b.off+b.ng : b.off+b.ng+b.nd] }

// facts returns the shared facts the part was built from, grants and denies included, in
// their original order: encoding them gives the bytes the part's hash was taken of.
func (c *compiled) facts() *sharedFacts {
	f := *c.f
	f.grants = make([]factGrant, len(c.grants))
	for i := range c.grants {
		e := &c.grants[i]
		t := e.text.Value()
		f.grants[i] = factGrant{code: t.code, group: c.groups[e.group], role: t.role, direct: e.direct, exp: e.exp}
	}
	f.denies = make([]factDeny, len(c.denies))
	for i := range c.denies {
		d := &c.denies[i]
		f.denies[i] = factDeny{code: d.text.Value().code, group: c.groups[d.group], exp: d.exp}
	}
	return &f
}

// bucket lists, while a part is built, the grants and denies one lookup yields.
type bucket struct {
	grants []uint32
	denies []uint32
}

// newSet joins a user's facts and a compiled part.
func newSet(u userFacts, c *compiled) *Set {
	s := &Set{c: c, version: u.version, status: u.status, problem: u.problem, userID: u.userID}
	if len(u.members) > 0 {
		s.members = make([]string, len(u.members))
		for i, g := range u.members {
			s.members[i] = unique.Make(g).Value()
		}
		slices.Sort(s.members)
		s.members = slices.Compact(s.members)
	}
	return s
}

// canonical makes f's closure strings the process-wide canonical copies (package unique), so
// that the group ids every part of a tenant repeats are stored once, not once per part or per
// database read. Grant and deny texts are interned as the entries are built.
func canonical(f *sharedFacts) {
	c := func(s string) string { return unique.Make(s).Value() }
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

// buildCompiled indexes f, whose encoding hashes to hash. It takes f over: its grants and
// denies move into the entries.
func buildCompiled(f *sharedFacts, hash [sha256.Size]byte) *compiled {
	canonical(f)
	s := &compiled{f: f, hash: hash, groups: []string{""}, closures: []map[string]struct{}{nil}}
	index := make(map[string]uint32, len(f.closures))
	groupOf := func(g string) uint32 {
		if g == "" {
			return 0
		}
		if i, ok := index[g]; ok {
			return i
		}
		m := toSet(f.closures[g])
		m[g] = struct{}{}
		i := uint32(len(s.groups))
		index[g] = i
		s.groups = append(s.groups, unique.Make(g).Value())
		s.closures = append(s.closures, m)
		return i
	}
	exact := make(map[raKey]*bucket)
	rOnly := make(map[string]*bucket)
	aOnly := make(map[string]*bucket)
	var star bucket
	pick := func(c Code) *bucket {
		switch {
		case !c.AnyResource && !c.AnyAction:
			return getBucket(exact, raKey{c.Resource, c.Action})
		case !c.AnyResource:
			return getBucket(rOnly, c.Resource)
		case !c.AnyAction:
			return getBucket(aOnly, c.Action)
		}
		return &star
	}
	s.grants = make([]grantEntry, len(f.grants))
	for i, g := range f.grants {
		// Parsed from the canonical text, so the index's keys are canonical strings too.
		h := unique.Make(itemText{code: g.code, role: g.role})
		t := h.Value()
		c, _ := ParseCode(f.level, t.code)
		lo, hi := uint8(c.Scope), uint8(c.Scope)
		if c.Scope == ScopeAny {
			lo, hi = uint8(ScopeLow), uint8(ScopeTop)
		}
		s.grants[i] = grantEntry{
			text: h, lo: lo, hi: hi, restricted: g.group != "", direct: g.direct, exp: g.exp, group: groupOf(g.group),
		}
		b := pick(c)
		b.grants = append(b.grants, uint32(i))
	}
	s.denies = make([]denyEntry, len(f.denies))
	for i, d := range f.denies {
		h := unique.Make(itemText{code: d.code})
		c, _ := ParseCode(f.level, h.Value().code)
		rank := uint8(c.Scope)
		if c.Scope == ScopeAny {
			rank = uint8(ScopeLow)
		}
		s.denies[i] = denyEntry{text: h, rank: rank, exp: d.exp, group: groupOf(d.group)}
		b := pick(c)
		b.denies = append(b.denies, uint32(i))
	}
	f.grants, f.denies = nil, nil

	// Flatten every bucket into idx: merged pair buckets first, then the disjoint ones.
	n := len(star.grants) + len(star.denies)
	for k, b := range exact {
		n += len(b.grants) + len(b.denies)
		for _, src := range []*bucket{rOnly[k.r], aOnly[k.a], &star} {
			if src != nil {
				n += len(src.grants) + len(src.denies)
			}
		}
	}
	for _, m := range []map[string]*bucket{rOnly, aOnly} {
		for _, b := range m {
			n += len(b.grants) + len(b.denies)
		}
	}
	s.idx = make([]uint32, 0, n)
	add := func(srcs ...*bucket) span {
		sp := span{off: uint32(len(s.idx))}
		for _, src := range srcs {
			if src != nil {
				s.idx = append(s.idx, src.grants...)
			}
		}
		sp.ng = uint32(len(s.idx)) - sp.off
		slices.Sort(s.idx[sp.off:])
		for _, src := range srcs {
			if src != nil {
				s.idx = append(s.idx, src.denies...)
			}
		}
		sp.nd = uint32(len(s.idx)) - sp.off - sp.ng
		slices.Sort(s.idx[sp.off+sp.ng:])
		return sp
	}
	keys := make([]raKey, 0, len(exact)+len(rOnly)+len(aOnly))
	spans := make([]span, 0, cap(keys))
	for k, b := range exact {
		keys, spans = append(keys, k), append(spans, add(b, rOnly[k.r], aOnly[k.a], &star))
	}
	for r, b := range rOnly {
		keys, spans = append(keys, raKey{r, "*"}), append(spans, add(b))
	}
	for a, b := range aOnly {
		keys, spans = append(keys, raKey{"*", a}), append(spans, add(b))
	}
	s.index = newPairTable(keys, spans)
	s.star = add(&star)
	s.groups, s.closures = slices.Clip(s.groups), slices.Clip(s.closures)
	s.size = s.estimateSize()
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
	var bs [3]span
	n := 0
	if b, ok := c.index.find(r, a); ok {
		bs[0], n = b, 1
	} else {
		if b, ok := c.index.find(r, "*"); ok {
			bs[n], n = b, n+1
		}
		if b, ok := c.index.find("*", a); ok {
			bs[n], n = b, n+1
		}
		bs[n], n = c.star, n+1
	}
	q := query{codeCheck: codeCheck, want: want, group: res.Group, owned: res.OwnerID != "" && res.OwnerID == s.userID}

	// capAll is the lowest scope removed from every instance; denies restricted to a group the
	// resource lies outside of are handled per restricted instance (outside).
	capAll, outside := uint8(ScopeAny), false
	for _, b := range bs[:n] {
		for _, di := range c.deniesIn(b) {
			d := &c.denies[di]
			if nowUS >= d.exp {
				continue
			}
			if codeCheck || d.group == 0 || inSet(c.closures[d.group], q.group) {
				capAll = min(capAll, d.rank)
			} else {
				outside = true
			}
		}
	}

	var best *grantEntry
	var bestEff uint8
	var bestAt uint32
	wouldAllow := false
	for _, b := range bs[:n] {
		for _, gi := range c.grantsIn(b) {
			e := &c.grants[gi]
			if nowUS >= e.exp {
				continue
			}
			if !wouldAllow && s.allows(e, effective(e, e.hi), &q) {
				wouldAllow = true
			}
			limit := capAll
			if outside && e.restricted {
				limit = min(limit, c.outsideCap(bs[:n], nowUS, q.group, c.groups[e.group]))
			}
			top := min(e.hi, limit-1)
			if top < e.lo {
				continue // every instance removed
			}
			eff := effective(e, top)
			if !s.allows(e, eff, &q) {
				continue
			}
			if best == nil || better(e, eff, gi, best, bestEff, bestAt) {
				best, bestEff, bestAt = e, eff, gi
			}
		}
	}
	d := Decision{Version: s.version}
	switch {
	case best != nil:
		d.Allowed, d.Reason = true, ReasonGranted
		t := best.text.Value()
		d.Grant = Grant{Code: t.code, Direct: best.direct, Role: t.role, Group: c.groups[best.group], Scope: Scope(bestEff)}
	case wouldAllow:
		d.Reason = ReasonExplicitDeny
	default:
		d.Reason = ReasonNoPermission
	}
	return d
}

// outsideCap applies the denies restricted to a group the resource lies outside of: they remove
// only instances restricted to their group or one of its descendants.
func (s *compiled) outsideCap(bs []span, nowUS int64, resGroup, instGroup string) uint8 {
	c := uint8(ScopeAny)
	for _, b := range bs {
		for _, di := range s.deniesIn(b) {
			d := &s.denies[di]
			if nowUS >= d.exp || d.group == 0 || inSet(s.closures[d.group], resGroup) {
				continue
			}
			if inSet(s.closures[d.group], instGroup) {
				c = min(c, d.rank)
			}
		}
	}
	return c
}

// member reports whether the user is in team g (or under one of the user's teams).
func (s *Set) member(g string) bool {
	if g == "" {
		return false
	}
	_, ok := slices.BinarySearch(s.members, g)
	return ok
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
		reach = inSet(s.c.closures[e.group], q.group)
	} else {
		reach = s.member(q.group)
	}
	if eff >= uint8(ScopeMiddle) && reach {
		return true
	}
	return q.owned && (!e.restricted || reach)
}

// better is the matched-grant order: direct, then higher effective rank, then the static order.
// at and bestAt are the entries' positions in compiled.grants, which are in the static order.
func better(e *grantEntry, eff uint8, at uint32, best *grantEntry, bestEff uint8, bestAt uint32) bool {
	if e.direct != best.direct {
		return e.direct
	}
	if eff != bestEff {
		return eff > bestEff
	}
	return at < bestAt
}
