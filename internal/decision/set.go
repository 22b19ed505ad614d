package decision

import (
	"crypto/sha256"
	"hash/maphash"
	"slices"
	"time"
	"unique"
	"unsafe"
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
// A Set is small: what is truly per user (version, status, external id, team membership) and
// references to compiled parts many users share (see Interner): the list of its role parts —
// one per role assignment, shared by every user of the tenant holding that assignment, the list
// itself shared by the users holding the same assignments — and the part of its direct grants
// and denies, if any. Together the parts hold exactly the grants and denies of one compiled
// whole: denies apply across all parts, and the matched-grant order runs over the direct part,
// then the role parts in (role code, group) order, then the position within a part.
//
// A Set holds no lock and no pointer into itself, and nothing in it changes once it is built:
// a copy is the same set, sharing the same parts, so a caller may hold a Set by value inside a
// record of its own (Interner.CompileInto, Interner.UnmarshalUserInto) and save its allocation.
// The zero Set is no user's set; use only Sets the package built.
type Set struct {
	direct  *compiled  // direct grants and denies; nil when there are none
	roles   *roleParts // nil when there are no role grants
	version uint64
	userID  string
	problem *problem // why status is ReasonInvalidData; nil otherwise (rare, so not inline)
	members *teams   // nil when the user is in no team
	status  Reason
	level   Level
}

// teams is a user's team membership: the sorted canonical ids of the user's teams and their
// descendants. Users with the same membership share one (see Interner).
type teams struct {
	hash [sha256.Size]byte // of the ids' encoding
	ids  []string
}

// newTeams returns the membership of the team ids members (any order, duplicates allowed), or
// nil for none.
func newTeams(members []string) *teams {
	if len(members) == 0 {
		return nil
	}
	ids := make([]string, len(members))
	for i, g := range members {
		ids[i] = unique.Make(g).Value()
	}
	slices.Sort(ids)
	t := &teams{ids: slices.Clip(slices.Compact(ids))}
	t.hash = sha256.Sum256(appendStrings(nil, t.ids))
	return t
}

// size is the membership's estimated retained size. The ids are canonical strings, held by
// the parts' closures or other memberships too: only the slice is counted.
func (t *teams) size() int64 {
	return int64(unsafe.Sizeof(*t)) + int64(cap(t.ids))*stringHeader
}

// problem is why a set denies everything with ReasonInvalidData, and until when.
type problem struct {
	why   string
	until int64 // the earliest expiry of the items, broken ones included; never = none
}

// roleParts is an ordered list of role parts, sorted by (role code, group) with no two of the
// same role and group; the users who hold the same role assignments share one.
type roleParts struct {
	hash   [sha256.Size]byte // of the parts' hashes in order
	parts  []*compiled       // inline[:n] when there are at most len(inline): one object
	expiry int64             // earliest item expiry of the parts, never = none
	size   int64             // estimated bytes of the list itself (the parts count on their own)
	inline [3]*compiled
}

// newRoleParts lists parts, which are role parts in order.
func newRoleParts(parts []*compiled) *roleParts { return buildRoleParts(parts, listHash(parts)) }

// listHash is the id of a list of parts: the SHA-256 of their hashes in order.
func listHash(parts []*compiled) (sum [sha256.Size]byte) {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p.hash[:])
	}
	h.Sum(sum[:0])
	return sum
}

// buildRoleParts lists parts, whose listHash is hash. It copies parts, which may be a window
// of a longer slice: the list must hold nothing else alive.
func buildRoleParts(parts []*compiled, hash [sha256.Size]byte) *roleParts {
	l := &roleParts{hash: hash, expiry: never}
	if len(parts) <= len(l.inline) {
		l.parts = l.inline[:copy(l.inline[:], parts):len(parts)]
	} else {
		l.parts = slices.Clone(parts)
	}
	for _, p := range l.parts {
		l.expiry = min(l.expiry, p.f.expiry)
	}
	l.size = int64(unsafe.Sizeof(*l))
	if len(parts) > len(l.inline) {
		l.size += 8 * int64(cap(l.parts))
	}
	return l
}

// roleKey returns the role code and restriction group of a role part (all its grants share
// them); ok is false for a part that is not a role part.
func (c *compiled) roleKey() (k roleKey, ok bool) {
	if len(c.grants) == 0 || len(c.denies) > 0 {
		return roleKey{}, false
	}
	for i := range c.grants {
		e := &c.grants[i]
		rk := roleKey{e.text.Value().role, c.groups[e.group]}
		if e.direct || (i > 0 && rk != k) {
			return roleKey{}, false
		}
		k = rk
	}
	return k, true
}

// isDirect reports whether c is a direct part: some items, every grant a direct one.
func (c *compiled) isDirect() bool {
	if len(c.grants) == 0 && len(c.denies) == 0 {
		return false
	}
	for i := range c.grants {
		if !c.grants[i].direct {
			return false
		}
	}
	return true
}

// compiled is one immutable compiled part — the index of one role assignment's grants, or of a
// user's direct grants and denies — shared between Sets.
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
	// Filters of the index's keys, one bit per hashed segment (segmentBit): exact has the
	// resource of every (r, a) key, rAny the resource of every (r, "*") key, aAny the action
	// of every ("*", a) key. A check looks up only the keys whose bit is set, so a part that
	// names neither the request's resource nor its action costs no lookup.
	exact, rAny, aAny uint64
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

// makeSet joins a user's facts, membership and compiled parts.
func makeSet(u userFacts, members *teams, direct *compiled, roles *roleParts) Set {
	s := Set{direct: direct, roles: roles, members: members, version: u.version, status: u.status, userID: u.userID, level: u.level}
	if u.problem != "" {
		s.problem = &problem{why: u.problem, until: u.until}
	}
	return s
}

// newSet is makeSet on the heap.
func newSet(u userFacts, members *teams, direct *compiled, roles *roleParts) *Set {
	s := makeSet(u, members, direct, roles)
	return &s
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
	// Most parts name no group: they share the one-element lists of "no group", which an
	// append copies before it adds to them (their capacity is 1).
	s := &compiled{f: f, hash: hash, groups: noGroups[:1:1], closures: noClosures[:1:1]}
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
	for _, k := range keys {
		switch {
		case k.a == "*":
			s.rAny |= segmentBit(maphash.String(pairSeed, k.r))
		case k.r == "*":
			s.aAny |= segmentBit(maphash.String(pairSeed, k.a))
		default:
			s.exact |= segmentBit(maphash.String(pairSeed, k.r))
		}
	}
	s.star = add(&star)
	s.groups, s.closures = slices.Clip(s.groups), slices.Clip(s.closures)
	s.size = s.estimateSize()
	return s
}

var (
	noGroups   = []string{""}
	noClosures = []map[string]struct{}{nil}
)

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
func (s *Set) Level() Level { return s.level }

// Expiry returns the earliest expiry among the items the set contains (zero = none). Decisions
// change at that instant without a notification, so caches must not keep the set past it.
func (s *Set) Expiry() time.Time {
	exp := s.expiry()
	if exp == never {
		return time.Time{}
	}
	return time.UnixMicro(exp).UTC()
}

func (s *Set) expiry() int64 {
	exp := int64(never)
	if s.direct != nil {
		exp = s.direct.f.expiry
	}
	if s.roles != nil {
		exp = min(exp, s.roles.expiry)
	}
	if s.problem != nil {
		exp = min(exp, s.problem.until)
	}
	return exp
}

// Status returns ReasonGranted for a set that decides by its grants, or the reason it denies
// everything with (unknown user, user inactive, ...).
func (s *Set) Status() Reason { return s.status }

// Problem returns why the set denies everything with ReasonInvalidData, or "" when it does not;
// it is meant for logs, since a decision carries only the reason.
func (s *Set) Problem() string {
	if s.problem == nil {
		return ""
	}
	return s.problem.why
}

// Check decides req at now. A malformed request is an error (ErrInvalidRequest), not a decision.
// Check never allocates.
func (s *Set) Check(now time.Time, req Request) (Decision, error) {
	if s == nil {
		return Decision{}, ErrNilSet
	}
	r, a, want, codeCheck, err := parseChecked(s.level, req)
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
	h := newPairHashes(r, a)
	q := query{codeCheck: codeCheck, want: want, group: res.Group, owned: res.OwnerID != "" && res.OwnerID == s.userID}

	// capAll is the lowest scope removed from every instance; denies restricted to a group the
	// resource lies outside of are handled per restricted instance (outside). Denies are direct
	// items, so only the direct part has any; they apply to the grants of every part.
	capAll, outside := uint8(ScopeAny), false
	var ds [3]span
	var dn int
	if d := s.direct; d != nil && len(d.denies) > 0 {
		dn = d.lookup(&h, r, a, &ds)
		for _, b := range ds[:dn] {
			for _, di := range d.deniesIn(b) {
				dd := &d.denies[di]
				if nowUS >= dd.exp {
					continue
				}
				if codeCheck || dd.group == 0 || inSet(d.closures[dd.group], q.group) {
					capAll = min(capAll, dd.rank)
				} else {
					outside = true
				}
			}
		}
	}

	m := match{nowUS: nowUS, capAll: capAll, outside: outside, q: &q, denies: ds[:dn]}
	if d := s.direct; d != nil {
		if len(d.denies) == 0 {
			dn = d.lookup(&h, r, a, &ds)
		}
		s.scan(&m, d, 0, ds[:dn])
	}
	if s.roles != nil {
		var bs [3]span
		for i, p := range s.roles.parts {
			n := p.lookup(&h, r, a, &bs)
			s.scan(&m, p, uint32(i+1), bs[:n])
		}
	}
	d := Decision{Version: s.version}
	switch {
	case m.best != nil:
		d.Allowed, d.Reason = true, ReasonGranted
		t := m.best.text.Value()
		d.Grant = Grant{Code: t.code, Direct: m.best.direct, Role: t.role, Group: m.bestPart.groups[m.best.group], Scope: Scope(m.bestEff)}
	case m.wouldAllow:
		d.Reason = ReasonExplicitDeny
	default:
		d.Reason = ReasonNoPermission
	}
	return d
}

// match is one evaluation's state while it scans the parts' grants.
type match struct {
	nowUS      int64
	capAll     uint8
	outside    bool
	q          *query
	denies     []span // the direct part's buckets holding the request's denies
	best       *grantEntry
	bestPart   *compiled
	bestEff    uint8
	bestAt     position
	wouldAllow bool
}

// position is a grant's place in the static matched-grant order: its part's place in the set
// (the direct part first, then the role parts in order) and its index in that part.
type position struct{ part, at uint32 }

func (p position) before(o position) bool {
	return p.part < o.part || p.part == o.part && p.at < o.at
}

// segmentBit is a segment's bit in compiled's key filters, from its hash.
func segmentBit(h uint64) uint64 { return 1 << (h >> 58) }

// lookup puts into bs the buckets of c that hold the entries for (r, a) and returns how many.
func (c *compiled) lookup(h *pairHashes, r, a string, bs *[3]span) int {
	if c.exact&h.rbit != 0 {
		if b, ok := c.index.find(h.ra, r, a); ok {
			bs[0] = b
			return 1
		}
	}
	n := 0
	if c.rAny&h.rbit != 0 {
		if b, ok := c.index.find(h.rs, r, "*"); ok {
			bs[n], n = b, n+1
		}
	}
	if c.aAny&h.abit != 0 {
		if b, ok := c.index.find(h.sa, "*", a); ok {
			bs[n], n = b, n+1
		}
	}
	if c.star.ng+c.star.nd > 0 {
		bs[n], n = c.star, n+1
	}
	return n
}

// scan matches the grants of part c, the set's part number part, in the buckets bs against
// the request.
func (s *Set) scan(m *match, c *compiled, part uint32, bs []span) {
	for _, b := range bs {
		for _, gi := range c.grantsIn(b) {
			e := &c.grants[gi]
			if m.nowUS >= e.exp {
				continue
			}
			if !m.wouldAllow && s.allows(c, e, effective(e, e.hi), m.q) {
				m.wouldAllow = true
			}
			limit := m.capAll
			if m.outside && e.restricted {
				limit = min(limit, s.direct.outsideCap(m.denies, m.nowUS, m.q.group, c.groups[e.group]))
			}
			top := min(e.hi, limit-1)
			if top < e.lo {
				continue // every instance removed
			}
			eff := effective(e, top)
			if !s.allows(c, e, eff, m.q) {
				continue
			}
			at := position{part, gi}
			if m.best == nil || better(e, eff, at, m.best, m.bestEff, m.bestAt) {
				m.best, m.bestPart, m.bestEff, m.bestAt = e, c, eff, at
			}
		}
	}
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
	if s.members == nil {
		return false
	}
	_, ok := slices.BinarySearch(s.members.ids, g)
	return ok
}

// effective caps a restricted instance at the middle rank: a restriction never reaches the top.
func effective(e *grantEntry, scope uint8) uint8 {
	if e.restricted && scope > uint8(ScopeMiddle) {
		return uint8(ScopeMiddle)
	}
	return scope
}

// allows reports whether one instance of e, a grant of part c, with effective rank eff allows
// the query by itself.
func (s *Set) allows(c *compiled, e *grantEntry, eff uint8, q *query) bool {
	if q.codeCheck {
		return eff >= q.want
	}
	if !e.restricted && eff == uint8(ScopeTop) {
		return true
	}
	var reach bool
	if e.restricted {
		reach = inSet(c.closures[e.group], q.group)
	} else {
		reach = s.member(q.group)
	}
	if eff >= uint8(ScopeMiddle) && reach {
		return true
	}
	return q.owned && (!e.restricted || reach)
}

// better is the matched-grant order: direct, then higher effective rank, then the static order.
// at and bestAt are the entries' positions, which are in the static order.
func better(e *grantEntry, eff uint8, at position, best *grantEntry, bestEff uint8, bestAt position) bool {
	if e.direct != best.direct {
		return e.direct
	}
	if eff != bestEff {
		return eff > bestEff
	}
	return at.before(bestAt)
}

// parts returns the set's compiled parts in the matched-grant order: the direct part first.
func (s *Set) parts() []*compiled {
	var out []*compiled
	if s.direct != nil {
		out = append(out, s.direct)
	}
	if s.roles != nil {
		out = append(out, s.roles.parts...)
	}
	return out
}

// teamIDs returns the user's sorted team ids (nil for none).
func (s *Set) teamIDs() []string {
	if s.members == nil {
		return nil
	}
	return s.members.ids
}
