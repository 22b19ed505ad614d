package decision

import (
	"time"
)

// t0 is the fixed "now" of the table tests; nothing reads the wall clock.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fx builds an Input fluently so that each table case states only what it is about.
type fx struct{ in Input }

func tenantFx() *fx {
	return &fx{Input{
		Level: LevelTenant, TenantID: "acme", TenantKnown: true, TenantStatus: "active",
		UserKnown: true, UserID: "u1", UserStatus: "active", Version: 7,
		Descendants: map[string][]string{},
	}}
}

func platformFx() *fx {
	return &fx{Input{
		Level: LevelPlatform, UserKnown: true, UserID: "u1", UserStatus: "active", Version: 9,
		Descendants: map[string][]string{},
	}}
}

// teams gives the tenant fixture the hierarchy t1 > t2 > t3 (stored child-first, and only as
// direct children, to prove the closure is computed), plus an unrelated t9.
func (f *fx) teams() *fx {
	f.in.Descendants["t2"] = []string{"t3"}
	f.in.Descendants["t1"] = []string{"t2"}
	return f
}

func (f *fx) role(code string, perms ...string) *fx {
	f.in.Roles = append(f.in.Roles, Role{ID: "id-" + code, Code: code, Active: true, Permissions: perms})
	return f
}

func (f *fx) inactiveRole(code string, perms ...string) *fx {
	f.in.Roles = append(f.in.Roles, Role{ID: "id-" + code, Code: code, Permissions: perms})
	return f
}

func (f *fx) inherits(code string, parents ...string) *fx {
	for i := range f.in.Roles {
		if f.in.Roles[i].Code == code {
			for _, p := range parents {
				f.in.Roles[i].Inherits = append(f.in.Roles[i].Inherits, "id-"+p)
			}
		}
	}
	return f
}

func (f *fx) assign(code, group string) *fx { return f.assignUntil(code, group, time.Time{}) }

func (f *fx) assignUntil(code, group string, exp time.Time) *fx {
	f.in.Assignments = append(f.in.Assignments, Assignment{RoleID: "id-" + code, Group: group, ExpiresAt: exp})
	return f
}

func (f *fx) grant(code, group string) *fx { return f.direct(code, true, group, time.Time{}) }

func (f *fx) deny(code, group string) *fx { return f.direct(code, false, group, time.Time{}) }

func (f *fx) direct(code string, granted bool, group string, exp time.Time) *fx {
	f.in.Direct = append(f.in.Direct, DirectPermission{Code: code, Granted: granted, Group: group, ExpiresAt: exp})
	return f
}

func (f *fx) member(teams ...string) *fx {
	f.in.MemberOf = append(f.in.MemberOf, teams...)
	return f
}

func (f *fx) with(mod func(*Input)) *fx {
	mod(&f.in)
	return f
}

func res(owner, group string) *Resource { return &Resource{OwnerID: owner, Group: group} }

func request(perm string, r *Resource) Request {
	if r == nil {
		return Request{Permission: perm}
	}
	return Request{Permission: perm, Resource: *r, HasResource: true}
}
