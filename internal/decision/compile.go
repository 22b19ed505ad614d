package decision

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// never is the stored expiry of an item without one; it sorts after every real instant.
const never = math.MaxInt64

// micros converts an expiry to microseconds, the database's precision. Flooring an expiry with
// sub-microsecond digits ends the item early, never late; floor(now) < E equals now < E for whole E.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return never
	}
	return t.UnixMicro()
}

// factGrant and factDeny are the resolved, level-checked items a Set is built from. They are what
// MarshalBinary stores, so a decoded set is built by the same code as a compiled one.
type factGrant struct {
	code   string
	group  string // restriction, "" = unrestricted
	role   string // assigned role's code, "" for a direct grant
	direct bool
	exp    int64 // unix microseconds, never = no expiry
}

type factDeny struct {
	code  string
	group string
	exp   int64
}

// facts is one user's resolved set: the per-user part and the compiled parts many users may
// share — one per role assignment (role code and restriction group, in that order) and one for
// the user's direct grants and denies.
type facts struct {
	user   userFacts
	direct *sharedFacts   // nil when the user has no direct grant or deny
	roles  []*sharedFacts // sorted by (role code, group); never empty parts
}

// userFacts is what is truly per user: it is what a cached entry holds besides references to
// the shared parts.
type userFacts struct {
	level   Level
	version uint64
	status  Reason   // ReasonGranted means "evaluate the grants"; anything else is the answer
	problem string   // why status is ReasonInvalidData
	until   int64    // with a problem: the earliest expiry of the items, broken ones included
	userID  string   // compared with a resource's owner
	members []string // sorted: teams of the user and their descendants (tenant level)
}

// sharedFacts is everything one compiled part is built from. Users whose inputs resolve to the
// same sharedFacts share the part: a role part (the grants one assignment of a role gives: the
// codes of the role and every active role it reaches, labelled with the assigned role's code,
// restriction group and expiry) is shared by every user of the tenant holding that assignment;
// a direct part (direct grants and denies) by the users with the same direct items.
type sharedFacts struct {
	level    Level
	scope    string              // the tenant id ("" at platform level): parts are shared within a tenant only
	expiry   int64               // earliest item expiry, never = none
	closures map[string][]string // restriction group -> sorted group and its descendants
	grants   []factGrant
	denies   []factDeny
}

// Compile resolves in at now into an immutable Set that is safe to share between goroutines.
//
// Items expired at now are dropped; Check still compares every remaining item's expiry with the
// decision's time. A stored code that does not parse makes a set that denies every check with
// ReasonInvalidData (see Set.Problem): a compile error would reach Envoy as an internal failure,
// which failure_mode_allow may turn into an allow. Compile returns an error only for Input that no
// loader should produce at all (an unknown level).
//
// The set owns its compiled parts; Interner.Compile shares them between users.
func Compile(in Input, now time.Time) (*Set, error) {
	var unshared *Interner // a nil Interner builds every part afresh
	s, _, err := unshared.Compile(in, now)
	return s, err
}

// roleKey names a role part: the assigned role's code and the assignment's restriction group.
type roleKey struct{ role, group string }

func resolve(in Input, now time.Time) (*facts, error) {
	if !in.Level.valid() {
		return nil, fmt.Errorf("%w: level %d", ErrInvalidInput, in.Level)
	}
	scope := ""
	if in.Level == LevelTenant {
		scope = in.TenantID
	}
	u := &userFacts{level: in.Level, version: in.Version, userID: in.UserID, status: ReasonGranted}
	switch {
	case in.Level == LevelTenant && !in.TenantKnown:
		u.status = ReasonUnknownTenant
	case in.Level == LevelTenant && in.TenantStatus != statusActive:
		u.status = ReasonTenantSuspended
	case !in.UserKnown:
		u.status = ReasonUnknownUser
	case in.UserStatus != statusActive:
		u.status = ReasonUserInactive
	}
	if u.status != ReasonGranted {
		return &facts{user: *u}, nil
	}
	nowUS := now.UnixMicro()

	roles := make(map[string]*Role, len(in.Roles))
	var problem string
	for i := range in.Roles {
		r := &in.Roles[i]
		if prev, dup := roles[r.ID]; dup && !sameRole(prev, r) {
			// Two different rows for one id: no reading of them is safe, so deny everything.
			problem = "role " + quote(r.ID) + " passed twice with different content"
			continue
		}
		roles[r.ID] = r
	}

	var grants []factGrant
	var denies []factDeny
	visited := make(map[string]struct{})
	var queue []*Role
	for _, a := range in.Assignments {
		exp := micros(a.ExpiresAt)
		if nowUS >= exp {
			continue
		}
		assigned, ok := roles[a.RoleID]
		if !ok || !assigned.Active {
			continue
		}
		// Each assignment walks its own closure so that its restriction and expiry travel with
		// everything it reaches; visited is per walk, which ends cycles.
		clear(visited)
		visited[assigned.ID] = struct{}{}
		queue = append(queue[:0], assigned)
		for len(queue) > 0 {
			r := queue[0]
			queue = queue[1:]
			for _, code := range r.Permissions {
				grants = append(grants, factGrant{code: code, group: a.Group, role: assigned.Code, exp: exp})
			}
			for _, id := range r.Inherits {
				next, ok := roles[id]
				if !ok || !next.Active {
					continue // unknown or inactive: cut, with everything reachable only through it
				}
				if _, seen := visited[id]; seen {
					continue
				}
				visited[id] = struct{}{}
				queue = append(queue, next)
			}
		}
	}
	for _, d := range in.Direct {
		exp := micros(d.ExpiresAt)
		if nowUS >= exp {
			continue
		}
		if d.Granted {
			grants = append(grants, factGrant{code: d.Code, group: d.Group, direct: true, exp: exp})
		} else {
			denies = append(denies, factDeny{code: d.Code, group: d.Group, exp: exp})
		}
	}
	until := int64(never)
	for _, g := range grants {
		until = min(until, g.exp)
		if _, err := ParseCode(in.Level, g.code); err != nil && problem == "" {
			problem = err.Error()
		}
	}
	for _, d := range denies {
		until = min(until, d.exp)
		if _, err := ParseCode(in.Level, d.code); err != nil && problem == "" {
			problem = err.Error()
		}
	}
	if problem != "" {
		// The broken item may go away at its expiry, so the set must be rebuilt then.
		u.status, u.problem, u.until = ReasonInvalidData, problem, until
		return &facts{user: *u}, nil
	}

	// Platform groups are tenants, which have no hierarchy and no membership.
	desc := in.Descendants
	if in.Level == LevelPlatform {
		desc = nil
	}
	part := func(gs []factGrant, ds []factDeny) *sharedFacts {
		f := &sharedFacts{level: in.Level, scope: scope, expiry: never, grants: dedupGrants(gs), denies: dedupDenies(ds)}
		add := func(g string, exp int64) {
			f.expiry = min(f.expiry, exp)
			if _, ok := f.closures[g]; g != "" && !ok {
				if f.closures == nil {
					f.closures = make(map[string][]string)
				}
				f.closures[g] = closure(desc, g)
			}
		}
		for _, g := range f.grants {
			add(g.group, g.exp)
		}
		for _, d := range f.denies {
			add(d.group, d.exp)
		}
		return f
	}

	// dedupGrants puts the grants in the matched-grant order: direct ones first, then by
	// assigned role and group, which is the order of the parts. Assignments of one role and
	// group fall into one part, where items that differ only in expiry merge, keeping the
	// latest; denies come only from direct items.
	grants = dedupGrants(grants)
	f := &facts{user: *u}
	n := 0
	for n < len(grants) && grants[n].direct {
		n++
	}
	if n > 0 || len(denies) > 0 {
		f.direct = part(grants[:n:n], denies)
	}
	for i := n; i < len(grants); {
		k := roleKey{grants[i].role, grants[i].group}
		j := i + 1
		for j < len(grants) && grants[j].role == k.role && grants[j].group == k.group {
			j++
		}
		f.roles = append(f.roles, part(grants[i:j:j], nil))
		i = j
	}

	if in.Level == LevelTenant {
		seen := make(map[string]struct{})
		for _, t := range in.MemberOf {
			if t == "" {
				continue
			}
			for _, g := range closure(desc, t) {
				seen[g] = struct{}{}
			}
		}
		for g := range seen {
			f.user.members = append(f.user.members, g)
		}
		slices.Sort(f.user.members)
	}
	return f, nil
}

func sameRole(a, b *Role) bool {
	return a.ID == b.ID && a.Code == b.Code && a.Active == b.Active &&
		slices.Equal(a.Permissions, b.Permissions) && slices.Equal(a.Inherits, b.Inherits)
}

// closure returns g and every group reachable from it through desc, sorted. Walking the map
// (rather than trusting it to be transitive) makes storage order irrelevant; visited ends cycles.
func closure(desc map[string][]string, g string) []string {
	seen := map[string]struct{}{g: {}}
	out := []string{g}
	for i := 0; i < len(out); i++ {
		for _, d := range desc[out[i]] {
			if _, ok := seen[d]; ok || d == "" {
				continue
			}
			seen[d] = struct{}{}
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// grantOrder is the static part of the matched-grant order: direct first, then assigned-role
// code, then unrestricted ("" sorts first) before restricted and lowest group, then lowest code.
// Effective rank sits between "direct" and "role" and is applied at check time.
func grantOrder(a, b factGrant) int {
	if a.direct != b.direct {
		if a.direct {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(a.role, b.role); c != 0 {
		return c
	}
	if c := cmp.Compare(a.group, b.group); c != 0 {
		return c
	}
	return cmp.Compare(a.code, b.code)
}

// dedupGrants sorts grants into grantOrder and merges items that differ only in expiry, keeping
// the latest: it is valid whenever the others are, so no decision changes.
func dedupGrants(gs []factGrant) []factGrant {
	slices.SortFunc(gs, func(a, b factGrant) int {
		if c := grantOrder(a, b); c != 0 {
			return c
		}
		return cmp.Compare(b.exp, a.exp)
	})
	return slices.CompactFunc(gs, func(a, b factGrant) bool { return grantOrder(a, b) == 0 })
}

func dedupDenies(ds []factDeny) []factDeny {
	slices.SortFunc(ds, func(a, b factDeny) int {
		if c := cmp.Compare(a.code, b.code); c != 0 {
			return c
		}
		if c := cmp.Compare(a.group, b.group); c != 0 {
			return c
		}
		return cmp.Compare(b.exp, a.exp)
	})
	return slices.CompactFunc(ds, func(a, b factDeny) bool { return a.code == b.code && a.group == b.group })
}
