package decision

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The reference evaluator follows the decision rules (docs/semantics.md) sentence by sentence, with no index, no caps
// arithmetic and no shortcuts: instances are materialised one per scope and denies delete them.
// It is deliberately slow and independent of the package's code (it shares only the types).

var refSegment = regexp.MustCompile(`^[a-z0-9_-]+$`)

var refScopes = map[Level][]string{LevelTenant: {"own", "team", "tenant"}, LevelPlatform: {"user", "tenant", "platform"}}

var errRef = errors.New("reference: invalid request")

// refRank returns the 1-based rank of a scope word at level, 0 if it is not one.
func refRank(level Level, w string) int { return slices.Index(refScopes[level], w) + 1 }

type refCode struct {
	r, a   string
	scopes []int // the scopes the scope segment stands for
}

func refParseStored(level Level, s string) (refCode, bool) {
	p := strings.Split(s, ".")
	if len(p) != 3 {
		return refCode{}, false
	}
	for _, seg := range p[:2] {
		if seg != "*" && !refSegment.MatchString(seg) {
			return refCode{}, false
		}
	}
	c := refCode{r: p[0], a: p[1]}
	if p[2] == "*" {
		c.scopes = []int{1, 2, 3}
	} else if k := refRank(level, p[2]); k > 0 {
		c.scopes = []int{k}
	} else {
		return refCode{}, false
	}
	return c, true
}

func (c refCode) matches(r, a string) bool {
	return (c.r == "*" || c.r == r) && (c.a == "*" || c.a == a)
}

type refItem struct {
	code   string
	group  string
	direct bool
	role   string
	exp    time.Time
}

func refValid(exp, at time.Time) bool { return exp.IsZero() || at.Before(exp) }

// refReach is the group itself and every descendant, at tenant level; a tenant has neither.
func refReach(in Input, g string) map[string]bool {
	out := map[string]bool{g: true}
	if in.Level != LevelTenant {
		return out
	}
	for changed := true; changed; {
		changed = false
		for k := range out {
			for _, d := range in.Descendants[k] {
				if d != "" && !out[d] {
					out[d], changed = true, true
				}
			}
		}
	}
	return out
}

type refInstance struct {
	item  refItem
	scope int // written
}

func (x refInstance) eff() int {
	if x.item.group != "" && x.scope > 2 {
		return 2
	}
	return x.scope
}

// refDecide decides req at `at` for a set compiled at compileAt (compileAt <= at).
func refDecide(in Input, compileAt, at time.Time, req Request) (Decision, error) {
	// 1) The request.
	p := strings.Split(req.Permission, ".")
	if len(p) < 2 || len(p) > 3 {
		return Decision{}, errRef
	}
	for _, seg := range p {
		if !refSegment.MatchString(seg) {
			return Decision{}, errRef
		}
	}
	codeCheck := len(p) == 3
	want := 0
	if codeCheck {
		if want = refRank(in.Level, p[2]); want == 0 || req.HasResource || req.Resource != (Resource{}) {
			return Decision{}, errRef
		}
	} else if !req.HasResource {
		return Decision{}, errRef
	}
	d := Decision{Version: in.Version}
	// 2) to 4) Tenant and user.
	switch {
	case in.Level == LevelTenant && !in.TenantKnown:
		d.Reason = ReasonUnknownTenant
	case in.Level == LevelTenant && in.TenantStatus != "active":
		d.Reason = ReasonTenantSuspended
	case !in.UserKnown:
		d.Reason = ReasonUnknownUser
	case in.UserStatus != "active":
		d.Reason = ReasonUserInactive
	}
	if d.Reason != ReasonNoPermission {
		return d, nil
	}
	// Where grants come from: each valid assignment walks its own closure.
	byID := map[string][]Role{}
	for _, r := range in.Roles {
		byID[r.ID] = append(byID[r.ID], r)
	}
	role := func(id string) (Role, bool) {
		rs := byID[id]
		if len(rs) == 0 || !rs[0].Active {
			return Role{}, false
		}
		return rs[0], true
	}
	var items []refItem  // valid at compile time
	var denies []refItem // valid at compile time
	for _, asg := range in.Assignments {
		if !refValid(asg.ExpiresAt, compileAt) {
			continue
		}
		start, ok := role(asg.RoleID)
		if !ok {
			continue
		}
		seen := map[string]bool{}
		var walk func(r Role)
		walk = func(r Role) {
			if seen[r.ID] {
				return
			}
			seen[r.ID] = true
			for _, c := range r.Permissions {
				items = append(items, refItem{code: c, group: asg.Group, role: start.Code, exp: asg.ExpiresAt})
			}
			for _, id := range r.Inherits {
				if next, ok := role(id); ok {
					walk(next)
				}
			}
		}
		walk(start)
	}
	for _, dp := range in.Direct {
		if !refValid(dp.ExpiresAt, compileAt) {
			continue
		}
		it := refItem{code: dp.Code, group: dp.Group, direct: true, exp: dp.ExpiresAt}
		if dp.Granted {
			items = append(items, it)
		} else {
			denies = append(denies, it)
		}
	}
	// Fail closed on data that does not parse, or on two different rows for one role id.
	for _, rs := range byID {
		for _, r := range rs[1:] {
			if r.Code != rs[0].Code || r.Active != rs[0].Active || !slices.Equal(r.Permissions, rs[0].Permissions) || !slices.Equal(r.Inherits, rs[0].Inherits) {
				d.Reason = ReasonInvalidData
				return d, nil
			}
		}
	}
	for _, it := range append(slices.Clone(items), denies...) {
		if _, ok := refParseStored(in.Level, it.code); !ok {
			d.Reason = ReasonInvalidData
			return d, nil
		}
	}
	r, a := p[0], p[1]
	// Instantiate every matching grant once per scope it stands for.
	var insts []refInstance
	for _, it := range items {
		c, _ := refParseStored(in.Level, it.code)
		if !refValid(it.exp, at) || !c.matches(r, a) {
			continue
		}
		for _, s := range c.scopes {
			insts = append(insts, refInstance{item: it, scope: s})
		}
	}
	members := map[string]bool{}
	if in.Level == LevelTenant {
		for _, t := range in.MemberOf {
			if t == "" {
				continue
			}
			for g := range refReach(in, t) {
				members[g] = true
			}
		}
	}
	owned := req.Resource.OwnerID != "" && req.Resource.OwnerID == in.UserID
	g := req.Resource.Group
	allows := func(x refInstance) bool {
		if codeCheck {
			return x.eff() >= want
		}
		var groups map[string]bool
		if x.item.group != "" {
			groups = refReach(in, x.item.group)
		} else {
			groups = members
		}
		in := g != "" && groups[g]
		switch {
		case x.eff() == 3 && x.item.group == "":
			return true
		case x.eff() >= 2 && in:
			return true
		case x.eff() >= 1 && owned && (x.item.group == "" || in):
			return true
		}
		return false
	}
	wouldAllow := slices.ContainsFunc(insts, allows)
	// Denies remove instances.
	var remaining []refInstance
	for _, x := range insts {
		removed := false
		for _, dn := range denies {
			c, _ := refParseStored(in.Level, dn.code)
			if !refValid(dn.exp, at) || !c.matches(r, a) {
				continue
			}
			s := slices.Min(c.scopes) // '*' stands for all three: it removes from the lowest up
			if x.scope < s {
				continue
			}
			switch {
			case dn.group == "" || codeCheck:
				removed = true
			case g != "" && refReach(in, dn.group)[g]:
				removed = true
			case x.item.group != "" && refReach(in, dn.group)[x.item.group]:
				removed = true
			}
		}
		if !removed {
			remaining = append(remaining, x)
		}
	}
	var ok []refInstance
	for _, x := range remaining {
		if allows(x) {
			ok = append(ok, x)
		}
	}
	if len(ok) == 0 {
		if wouldAllow {
			d.Reason = ReasonExplicitDeny
		}
		return d, nil
	}
	slices.SortStableFunc(ok, func(x, y refInstance) int {
		switch {
		case x.item.direct != y.item.direct:
			if x.item.direct {
				return -1
			}
			return 1
		case x.eff() != y.eff():
			return y.eff() - x.eff()
		case x.item.role != y.item.role:
			return strings.Compare(x.item.role, y.item.role)
		case (x.item.group == "") != (y.item.group == ""):
			if x.item.group == "" {
				return -1
			}
			return 1
		case x.item.group != y.item.group:
			return strings.Compare(x.item.group, y.item.group)
		}
		return strings.Compare(x.item.code, y.item.code)
	})
	m := ok[0]
	d.Allowed, d.Reason = true, ReasonGranted
	d.Grant = Grant{Code: m.item.code, Direct: m.item.direct, Role: m.item.role, Group: m.item.group, Scope: Scope(m.eff())}
	return d, nil
}
