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

// facts is one user's resolved set: the per-user part and the part many users may share.
type facts struct {
	user   userFacts
	shared *sharedFacts
}

// userFacts is what is truly per user: it is what a cached entry holds besides a reference to
// the shared part.
type userFacts struct {
	level   Level
	version uint64
	status  Reason   // ReasonGranted means "evaluate the grants"; anything else is the answer
	problem string   // why status is ReasonInvalidData
	userID  string   // compared with a resource's owner
	members []string // sorted: teams of the user and their descendants (tenant level)
}

// sharedFacts is everything a compiled index is built from. Users whose inputs resolve to the
// same sharedFacts (same grants, restrictions, denies and expiries) share one compiled part.
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
// The set owns its compiled part; Interner.Compile shares that part between users.
func Compile(in Input, now time.Time) (*Set, error) {
	f, err := resolve(in, now)
	if err != nil {
		return nil, err
	}
	return newSet(f.user, newCompiled(f.shared)), nil
}

func resolve(in Input, now time.Time) (*facts, error) {
	if !in.Level.valid() {
		return nil, fmt.Errorf("%w: level %d", ErrInvalidInput, in.Level)
	}
	scope := ""
	if in.Level == LevelTenant {
		scope = in.TenantID
	}
	u := &userFacts{level: in.Level, version: in.Version, userID: in.UserID, status: ReasonGranted}
	f := &sharedFacts{level: in.Level, scope: scope, expiry: never}
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
		return &facts{user: *u, shared: f}, nil
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
				f.grants = append(f.grants, factGrant{code: code, group: a.Group, role: assigned.Code, exp: exp})
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
			f.grants = append(f.grants, factGrant{code: d.Code, group: d.Group, direct: true, exp: exp})
		} else {
			f.denies = append(f.denies, factDeny{code: d.Code, group: d.Group, exp: exp})
		}
	}
	for _, g := range f.grants {
		f.expiry = min(f.expiry, g.exp)
		if _, err := ParseCode(in.Level, g.code); err != nil && problem == "" {
			problem = err.Error()
		}
	}
	for _, d := range f.denies {
		f.expiry = min(f.expiry, d.exp)
		if _, err := ParseCode(in.Level, d.code); err != nil && problem == "" {
			problem = err.Error()
		}
	}
	if problem != "" {
		u.status, u.problem = ReasonInvalidData, problem
		f.grants, f.denies = nil, nil
		return &facts{user: *u, shared: f}, nil
	}

	f.grants, f.denies = dedupGrants(f.grants), dedupDenies(f.denies)
	f.expiry = never
	for _, g := range f.grants {
		f.expiry = min(f.expiry, g.exp)
	}
	for _, d := range f.denies {
		f.expiry = min(f.expiry, d.exp)
	}

	// Platform groups are tenants, which have no hierarchy and no membership.
	desc := in.Descendants
	if in.Level == LevelPlatform {
		desc = nil
	}
	f.closures = make(map[string][]string)
	addClosure := func(g string) {
		if _, ok := f.closures[g]; g != "" && !ok {
			f.closures[g] = closure(desc, g)
		}
	}
	for _, g := range f.grants {
		addClosure(g.group)
	}
	for _, d := range f.denies {
		addClosure(d.group)
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
			u.members = append(u.members, g)
		}
		slices.Sort(u.members)
	}
	return &facts{user: *u, shared: f}, nil
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
