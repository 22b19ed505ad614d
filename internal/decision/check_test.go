package decision

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type checkCase struct {
	name    string
	fx      *fx
	perm    string
	res     *Resource // nil: code check
	at      time.Time // check time; zero = t0 (compile time is always t0)
	allowed bool
	reason  Reason
	grant   *Grant // checked when set
	wantErr bool   // an ErrInvalidRequest, not a decision
}

func TestCheckTable(t *testing.T) {
	d := func(code string, scope Scope) *Grant { return &Grant{Code: code, Direct: true, Scope: scope} }
	cases := []checkCase{
		// Code checks: matching, wildcards, ranking.
		{name: "direct exact grant", fx: tenantFx().grant("docs.read.team", ""), perm: "docs.read.team", allowed: true, reason: ReasonGranted, grant: d("docs.read.team", ScopeTeam)},
		{name: "higher scope satisfies lower", fx: tenantFx().grant("docs.read.tenant", ""), perm: "docs.read.own", allowed: true, reason: ReasonGranted, grant: d("docs.read.tenant", ScopeTenant)},
		{name: "lower scope does not satisfy higher", fx: tenantFx().grant("docs.read.own", ""), perm: "docs.read.team", reason: ReasonNoPermission},
		{name: "no grants at all", fx: tenantFx(), perm: "docs.read.own", reason: ReasonNoPermission},
		{name: "wildcard resource", fx: tenantFx().grant("*.read.tenant", ""), perm: "docs.read.team", allowed: true, reason: ReasonGranted, grant: d("*.read.tenant", ScopeTenant)},
		{name: "wildcard action", fx: tenantFx().grant("docs.*.team", ""), perm: "docs.write.team", allowed: true, reason: ReasonGranted, grant: d("docs.*.team", ScopeTeam)},
		{name: "wildcard everything", fx: tenantFx().grant("*.*.*", ""), perm: "billing.refund.tenant", allowed: true, reason: ReasonGranted, grant: d("*.*.*", ScopeTenant)},
		{name: "wildcard scope", fx: tenantFx().grant("docs.read.*", ""), perm: "docs.read.tenant", allowed: true, reason: ReasonGranted, grant: d("docs.read.*", ScopeTenant)},
		{name: "wildcard action does not cross resources", fx: tenantFx().grant("docs.*.tenant", ""), perm: "reports.read.own", reason: ReasonNoPermission},
		{name: "wildcard resource and action from different codes combine per code only", fx: tenantFx().grant("docs.*.own", "").grant("*.read.tenant", ""), perm: "docs.write.team", reason: ReasonNoPermission},
		{name: "segments are whole words", fx: tenantFx().grant("doc.read.tenant", ""), perm: "docs.read.own", reason: ReasonNoPermission},
		{name: "restricted grant never reaches top scope", fx: tenantFx().grant("docs.read.tenant", "t1"), perm: "docs.read.tenant", reason: ReasonNoPermission},
		{name: "restricted top grant satisfies middle", fx: tenantFx().grant("docs.read.tenant", "t1"), perm: "docs.read.team", allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.tenant", Direct: true, Group: "t1", Scope: ScopeTeam}},
		{name: "unrestricted own does not satisfy team", fx: tenantFx().grant("docs.read.own", "").member("t1"), perm: "docs.read.team", reason: ReasonNoPermission},

		// Denies cap.
		{name: "deny tenant keeps team", fx: tenantFx().grant("docs.read.*", "").deny("docs.read.tenant", ""), perm: "docs.read.team", allowed: true, reason: ReasonGranted, grant: d("docs.read.*", ScopeTeam)},
		{name: "deny tenant removes tenant", fx: tenantFx().grant("docs.read.*", "").deny("docs.read.tenant", ""), perm: "docs.read.tenant", reason: ReasonExplicitDeny},
		{name: "deny team keeps own", fx: tenantFx().grant("docs.read.*", "").deny("docs.read.team", ""), perm: "docs.read.own", allowed: true, reason: ReasonGranted, grant: d("docs.read.*", ScopeOwn)},
		{name: "deny team removes team", fx: tenantFx().grant("docs.read.*", "").deny("docs.read.team", ""), perm: "docs.read.team", reason: ReasonExplicitDeny},
		{name: "deny star keeps nothing", fx: tenantFx().grant("*.*.*", "").deny("docs.read.*", ""), perm: "docs.read.own", reason: ReasonExplicitDeny},
		{name: "deny own keeps nothing", fx: tenantFx().grant("docs.read.tenant", "").deny("docs.read.own", ""), perm: "docs.read.own", reason: ReasonExplicitDeny},
		{name: "deny uses written scope not capped", fx: tenantFx().grant("docs.read.tenant", "t1").deny("docs.read.tenant", ""), perm: "docs.read.team", reason: ReasonExplicitDeny},
		{name: "deny of a concrete grant below its scope removes it", fx: tenantFx().grant("docs.read.team", "").deny("docs.read.own", ""), perm: "docs.read.own", reason: ReasonExplicitDeny},
		{name: "deny above a concrete grant leaves it", fx: tenantFx().grant("docs.read.team", "").deny("docs.read.tenant", ""), perm: "docs.read.team", allowed: true, reason: ReasonGranted, grant: d("docs.read.team", ScopeTeam)},
		{name: "wildcard deny matches resource", fx: tenantFx().grant("docs.read.tenant", "").deny("*.*.tenant", ""), perm: "docs.read.tenant", reason: ReasonExplicitDeny},
		{name: "deny of another action is irrelevant", fx: tenantFx().grant("docs.read.team", "").deny("docs.write.*", ""), perm: "docs.read.team", allowed: true, reason: ReasonGranted},
		{name: "deny without any grant is no permission", fx: tenantFx().deny("docs.read.*", ""), perm: "docs.read.own", reason: ReasonNoPermission},
		{name: "restricted deny acts unrestricted in code check", fx: tenantFx().grant("docs.read.tenant", "").deny("docs.read.tenant", "t9"), perm: "docs.read.tenant", reason: ReasonExplicitDeny},
		{name: "deny removes role grants too", fx: tenantFx().role("admin", "*.*.*").assign("admin", "").deny("docs.*.team", ""), perm: "docs.delete.team", reason: ReasonExplicitDeny},

		// Time.
		{name: "expired deny is ignored", fx: tenantFx().grant("docs.read.tenant", "").direct("docs.read.*", false, "", t0.Add(-time.Second)), perm: "docs.read.tenant", allowed: true, reason: ReasonGranted},
		{name: "deny still valid before its expiry", fx: tenantFx().grant("docs.read.tenant", "").direct("docs.read.*", false, "", t0.Add(time.Hour)), perm: "docs.read.tenant", at: t0.Add(30 * time.Minute), reason: ReasonExplicitDeny},
		{name: "deny expiring after compile stops applying at check time", fx: tenantFx().grant("docs.read.tenant", "").direct("docs.read.*", false, "", t0.Add(time.Hour)), perm: "docs.read.tenant", at: t0.Add(2 * time.Hour), allowed: true, reason: ReasonGranted},
		{name: "grant expiring after compile stops at check time", fx: tenantFx().direct("docs.read.tenant", true, "", t0.Add(time.Hour)), perm: "docs.read.tenant", at: t0.Add(time.Hour), reason: ReasonNoPermission},
		{name: "grant valid one microsecond before expiry", fx: tenantFx().direct("docs.read.tenant", true, "", t0.Add(time.Hour)), perm: "docs.read.tenant", at: t0.Add(time.Hour - time.Microsecond), allowed: true, reason: ReasonGranted},
		{name: "expired assignment is dropped", fx: tenantFx().role("editor", "docs.read.tenant").assignUntil("editor", "", t0), perm: "docs.read.tenant", reason: ReasonNoPermission},
		{name: "expired direct grant is dropped", fx: tenantFx().direct("docs.read.tenant", true, "", t0.Add(-time.Microsecond)), perm: "docs.read.own", reason: ReasonNoPermission},

		// Roles and inheritance.
		{name: "role grant", fx: tenantFx().role("editor", "docs.read.team").assign("editor", ""), perm: "docs.read.team", allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.team", Role: "editor", Scope: ScopeTeam}},
		{name: "inherited grant names assigned role", fx: tenantFx().role("editor").role("viewer", "docs.read.own").inherits("editor", "viewer").assign("editor", ""), perm: "docs.read.own", allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.own", Role: "editor", Scope: ScopeOwn}},
		{name: "inheritance is transitive", fx: tenantFx().role("a").role("b").role("c", "docs.read.own").inherits("a", "b").inherits("b", "c").assign("a", ""), perm: "docs.read.own", allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.own", Role: "a", Scope: ScopeOwn}},
		{name: "inheritance does not flow upward", fx: tenantFx().role("a", "docs.read.own").role("b").inherits("a", "b").assign("b", ""), perm: "docs.read.own", reason: ReasonNoPermission},
		{name: "inheritance through inactive role is cut", fx: tenantFx().role("a").inactiveRole("b").role("c", "docs.read.own").inherits("a", "b").inherits("b", "c").assign("a", ""), perm: "docs.read.own", reason: ReasonNoPermission},
		{name: "role reachable another way survives a cut", fx: tenantFx().role("a").inactiveRole("b").role("d").role("c", "docs.read.own").inherits("a", "b", "d").inherits("b", "c").inherits("d", "c").assign("a", ""), perm: "docs.read.own", allowed: true, reason: ReasonGranted},
		{name: "inactive inherited role grants nothing", fx: tenantFx().role("a").inactiveRole("b", "docs.read.own").inherits("a", "b").assign("a", ""), perm: "docs.read.own", reason: ReasonNoPermission},
		{name: "inactive assigned role grants nothing", fx: tenantFx().inactiveRole("a", "docs.read.own").assign("a", ""), perm: "docs.read.own", reason: ReasonNoPermission},
		{name: "unknown assigned role grants nothing", fx: tenantFx().assign("ghost", ""), perm: "docs.read.own", reason: ReasonNoPermission},
		{name: "unknown inherited role is skipped", fx: tenantFx().role("a", "docs.read.own").inherits("a", "ghost").assign("a", ""), perm: "docs.read.own", allowed: true, reason: ReasonGranted},
		{name: "inheritance cycle terminates", fx: tenantFx().role("a", "docs.read.own").role("b", "docs.write.own").inherits("a", "b").inherits("b", "a").assign("a", ""), perm: "docs.write.own", allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.write.own", Role: "a", Scope: ScopeOwn}},
		{name: "self inheritance terminates", fx: tenantFx().role("a", "docs.read.own").inherits("a", "a").assign("a", ""), perm: "docs.read.own", allowed: true, reason: ReasonGranted},
		{name: "assignment restriction travels through inheritance", fx: tenantFx().role("editor").role("viewer", "docs.read.tenant").inherits("editor", "viewer").assign("editor", "t1"), perm: "docs.read.tenant", reason: ReasonNoPermission},
		{name: "restricted inherited grant reaches middle", fx: tenantFx().role("editor").role("viewer", "docs.read.tenant").inherits("editor", "viewer").assign("editor", "t1"), perm: "docs.read.team", allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.tenant", Role: "editor", Group: "t1", Scope: ScopeTeam}},
		{name: "second unrestricted assignment of same role reaches top", fx: tenantFx().role("editor", "docs.read.tenant").assign("editor", "t1").assign("editor", ""), perm: "docs.read.tenant", allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.tenant", Role: "editor", Scope: ScopeTenant}},
		{name: "assignment expiry travels through inheritance", fx: tenantFx().role("editor").role("viewer", "docs.read.own").inherits("editor", "viewer").assignUntil("editor", "", t0.Add(time.Hour)), perm: "docs.read.own", at: t0.Add(2 * time.Hour), reason: ReasonNoPermission},
		{name: "each assignment keeps its own expiry", fx: tenantFx().role("editor").role("viewer", "docs.read.own").inherits("editor", "viewer").assignUntil("editor", "", t0.Add(time.Hour)).role("other").inherits("other", "viewer").assign("other", ""), perm: "docs.read.own", at: t0.Add(2 * time.Hour), allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.own", Role: "other", Scope: ScopeOwn}},
		{name: "role without permissions grants nothing", fx: tenantFx().role("owner").assign("owner", ""), perm: "docs.read.own", reason: ReasonNoPermission},

		// Tenant and user status, in order.
		{name: "unknown tenant first", fx: tenantFx().grant("*.*.*", "").with(func(in *Input) { in.TenantKnown, in.UserKnown = false, false }), perm: "docs.read.own", reason: ReasonUnknownTenant},
		{name: "suspended tenant", fx: tenantFx().grant("*.*.*", "").with(func(in *Input) { in.TenantStatus = "suspended" }), perm: "docs.read.own", reason: ReasonTenantSuspended},
		{name: "provisioning tenant is not active", fx: tenantFx().grant("*.*.*", "").with(func(in *Input) { in.TenantStatus = "provisioning" }), perm: "docs.read.own", reason: ReasonTenantSuspended},
		{name: "deleted tenant before unknown user", fx: tenantFx().with(func(in *Input) { in.TenantStatus, in.UserKnown = "deleted", false }), perm: "docs.read.own", reason: ReasonTenantSuspended},
		{name: "unknown user", fx: tenantFx().grant("*.*.*", "").with(func(in *Input) { in.UserKnown = false }), perm: "docs.read.own", reason: ReasonUnknownUser},
		{name: "unknown user before inactive", fx: tenantFx().with(func(in *Input) { in.UserKnown, in.UserStatus = false, "disabled" }), perm: "docs.read.own", reason: ReasonUnknownUser},
		{name: "inactive user", fx: tenantFx().grant("*.*.*", "").with(func(in *Input) { in.UserStatus = "disabled" }), perm: "docs.read.own", reason: ReasonUserInactive},
		{name: "platform level ignores tenant fields", fx: platformFx().grant("*.*.*", "").with(func(in *Input) { in.TenantStatus = "suspended" }), perm: "tenants.read.platform", allowed: true, reason: ReasonGranted},

		// Resource checks at tenant level.
		{name: "own scope on own resource", fx: tenantFx().grant("docs.read.own", ""), perm: "docs.read", res: res("u1", "t1"), allowed: true, reason: ReasonGranted, grant: d("docs.read.own", ScopeOwn)},
		{name: "own scope on another's resource", fx: tenantFx().grant("docs.read.own", "").member("t1"), perm: "docs.read", res: res("u2", "t1"), reason: ReasonNoPermission},
		{name: "empty owner is nobody's", fx: tenantFx().grant("docs.read.own", "").with(func(in *Input) { in.UserID = "" }), perm: "docs.read", res: res("", ""), reason: ReasonNoPermission},
		{name: "team scope through membership", fx: tenantFx().teams().member("t1").grant("docs.read.team", ""), perm: "docs.read", res: res("u2", "t1"), allowed: true, reason: ReasonGranted, grant: d("docs.read.team", ScopeTeam)},
		{name: "team scope reaches transitive descendants", fx: tenantFx().teams().member("t1").grant("docs.read.team", ""), perm: "docs.read", res: res("u2", "t3"), allowed: true, reason: ReasonGranted},
		{name: "team scope never reaches ancestors", fx: tenantFx().teams().member("t3").grant("docs.read.team", ""), perm: "docs.read", res: res("u2", "t1"), reason: ReasonNoPermission},
		{name: "team scope outside memberships", fx: tenantFx().teams().member("t1").grant("docs.read.team", ""), perm: "docs.read", res: res("u2", "t9"), reason: ReasonNoPermission},
		{name: "tenant scope reaches any team", fx: tenantFx().grant("docs.read.tenant", ""), perm: "docs.read", res: res("u2", "t9"), allowed: true, reason: ReasonGranted, grant: d("docs.read.tenant", ScopeTenant)},
		{name: "tenant scope reaches resource with no group", fx: tenantFx().grant("docs.read.tenant", ""), perm: "docs.read", res: res("u2", ""), allowed: true, reason: ReasonGranted},
		{name: "restricted grant reaches its group without membership", fx: tenantFx().teams().grant("docs.read.team", "t2"), perm: "docs.read", res: res("u2", "t2"), allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.team", Direct: true, Group: "t2", Scope: ScopeTeam}},
		{name: "restricted grant reaches descendants", fx: tenantFx().teams().grant("docs.read.team", "t2"), perm: "docs.read", res: res("u2", "t3"), allowed: true, reason: ReasonGranted},
		{name: "restricted grant never reaches ancestors", fx: tenantFx().teams().member("t1").grant("docs.read.team", "t2"), perm: "docs.read", res: res("u2", "t1"), reason: ReasonNoPermission},
		{name: "restricted tenant-scope grant stays in its group", fx: tenantFx().teams().grant("docs.read.tenant", "t1"), perm: "docs.read", res: res("u2", "t9"), reason: ReasonNoPermission},
		{name: "restricted grant misses resource with no group", fx: tenantFx().grant("docs.read.tenant", "t1"), perm: "docs.read", res: res("u1", ""), reason: ReasonNoPermission},
		{name: "restricted own inside group", fx: tenantFx().teams().grant("docs.read.own", "t1"), perm: "docs.read", res: res("u1", "t3"), allowed: true, reason: ReasonGranted},
		{name: "restricted own outside group", fx: tenantFx().teams().grant("docs.read.own", "t1"), perm: "docs.read", res: res("u1", "t9"), reason: ReasonNoPermission},
		{name: "unrestricted own reaches own resource with no group", fx: tenantFx().grant("docs.read.own", ""), perm: "docs.read", res: res("u1", ""), allowed: true, reason: ReasonGranted},
		{name: "unrestricted team misses resource with no group", fx: tenantFx().member("t1").grant("docs.read.team", ""), perm: "docs.read", res: res("u2", ""), reason: ReasonNoPermission},
		{name: "restricted deny inside its group removes every instance", fx: tenantFx().teams().grant("docs.read.*", "").deny("docs.read.*", "t1"), perm: "docs.read", res: res("u1", "t2"), reason: ReasonExplicitDeny},
		{name: "restricted deny at team inside group keeps own", fx: tenantFx().teams().grant("docs.read.*", "").deny("docs.read.team", "t1"), perm: "docs.read", res: res("u1", "t2"), allowed: true, reason: ReasonGranted, grant: d("docs.read.*", ScopeOwn)},
		{name: "restricted deny at team inside group blocks non-owner", fx: tenantFx().teams().grant("docs.read.*", "").deny("docs.read.team", "t1"), perm: "docs.read", res: res("u2", "t2"), reason: ReasonExplicitDeny},
		{name: "restricted deny outside its group keeps unrestricted", fx: tenantFx().teams().grant("docs.read.tenant", "").deny("docs.read.*", "t1"), perm: "docs.read", res: res("u2", "t9"), allowed: true, reason: ReasonGranted},
		{name: "restricted deny outside group removes instances in its group", fx: tenantFx().teams().grant("docs.read.own", "t2").grant("docs.read.own", "").deny("docs.read.*", "t1"), perm: "docs.read", res: res("u1", "t9"), allowed: true, reason: ReasonGranted, grant: d("docs.read.own", ScopeOwn)},
		{name: "unrestricted deny in a resource check", fx: tenantFx().grant("docs.read.tenant", "").deny("docs.read.tenant", ""), perm: "docs.read", res: res("u2", "t9"), reason: ReasonExplicitDeny},

		// Platform level.
		{name: "platform code check", fx: platformFx().grant("tenants.read.platform", ""), perm: "tenants.read.tenant", allowed: true, reason: ReasonGranted, grant: d("tenants.read.platform", ScopePlatform)},
		{name: "platform tenant-restricted assignment reaches its tenant", fx: platformFx().role("support", "tickets.read.*").assign("support", "acme"), perm: "tickets.read", res: res("u2", "acme"), allowed: true, reason: ReasonGranted, grant: &Grant{Code: "tickets.read.*", Role: "support", Group: "acme", Scope: ScopePlatformTenant}},
		{name: "platform tenant-restricted assignment misses other tenants", fx: platformFx().role("support", "tickets.read.*").assign("support", "acme"), perm: "tickets.read", res: res("u2", "globex"), reason: ReasonNoPermission},
		{name: "platform restricted never reaches platform scope", fx: platformFx().role("support", "tickets.read.*").assign("support", "acme"), perm: "tickets.read.platform", reason: ReasonNoPermission},
		{name: "platform unrestricted middle reaches no tenant", fx: platformFx().grant("tickets.read.tenant", "").member("acme"), perm: "tickets.read", res: res("u2", "acme"), reason: ReasonNoPermission},
		{name: "platform unrestricted middle reaches own resource", fx: platformFx().grant("tickets.read.tenant", ""), perm: "tickets.read", res: res("u1", "acme"), allowed: true, reason: ReasonGranted},
		{name: "platform top reaches any tenant", fx: platformFx().grant("tickets.read.platform", ""), perm: "tickets.read", res: res("u2", "globex"), allowed: true, reason: ReasonGranted},
		{name: "platform ignores descendants", fx: platformFx().grant("tickets.read.tenant", "acme").with(func(in *Input) { in.Descendants["acme"] = []string{"sub"} }), perm: "tickets.read", res: res("u2", "sub"), reason: ReasonNoPermission},
		{name: "platform deny caps", fx: platformFx().grant("tickets.*.*", "").deny("tickets.close.tenant", ""), perm: "tickets.close.user", allowed: true, reason: ReasonGranted, grant: d("tickets.*.*", ScopeUser)},

		// Matched grant choice.
		{name: "direct before role even at lower rank", fx: tenantFx().role("admin", "docs.read.tenant").assign("admin", "").grant("docs.read.own", ""), perm: "docs.read.own", allowed: true, reason: ReasonGranted, grant: d("docs.read.own", ScopeOwn)},
		{name: "higher effective rank before role code", fx: tenantFx().role("a", "docs.read.own").role("b", "docs.read.tenant").assign("a", "").assign("b", ""), perm: "docs.read.own", allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.tenant", Role: "b", Scope: ScopeTenant}},
		{name: "effective rank not written rank", fx: tenantFx().role("a", "docs.read.team").role("b", "docs.read.tenant").assign("a", "").assign("b", "t1"), perm: "docs.read.own", allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.team", Role: "a", Scope: ScopeTeam}},
		{name: "role code in byte order", fx: tenantFx().role("alpha", "docs.read.team").role("Zeta", "docs.read.team").assign("alpha", "").assign("Zeta", ""), perm: "docs.read.team", allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.team", Role: "Zeta", Scope: ScopeTeam}},
		{name: "unrestricted before restricted", fx: tenantFx().role("ed", "docs.read.team").assign("ed", "t1").assign("ed", ""), perm: "docs.read.team", allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.team", Role: "ed", Scope: ScopeTeam}},
		{name: "lowest group", fx: tenantFx().role("ed", "docs.read.team").assign("ed", "t2").assign("ed", "t1"), perm: "docs.read.team", allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.team", Role: "ed", Group: "t1", Scope: ScopeTeam}},
		{name: "lowest code", fx: tenantFx().grant("docs.read.team", "").grant("docs.*.team", "").grant("*.read.team", ""), perm: "docs.read.team", allowed: true, reason: ReasonGranted, grant: d("*.read.team", ScopeTeam)},
		{name: "only instances that allow by themselves compete", fx: tenantFx().teams().grant("docs.read.tenant", "t9").grant("docs.read.team", "t1"), perm: "docs.read", res: res("u2", "t3"), allowed: true, reason: ReasonGranted, grant: &Grant{Code: "docs.read.team", Direct: true, Group: "t1", Scope: ScopeTeam}},

		// Invalid requests are errors.
		{name: "wildcard action in request", fx: tenantFx(), perm: "docs.*.team", wantErr: true},
		{name: "wildcard resource in resource check", fx: tenantFx(), perm: "*.read", res: res("u1", ""), wantErr: true},
		{name: "wildcard scope in request", fx: tenantFx(), perm: "docs.read.*", wantErr: true},
		{name: "platform scope at tenant level", fx: tenantFx(), perm: "docs.read.platform", wantErr: true},
		{name: "tenant scope word own at platform level", fx: platformFx(), perm: "docs.read.own", wantErr: true},
		{name: "team scope at platform level", fx: platformFx(), perm: "docs.read.team", wantErr: true},
		{name: "user scope at tenant level", fx: tenantFx(), perm: "docs.read.user", wantErr: true},
		{name: "resource on a code check", fx: tenantFx(), perm: "docs.read.own", res: res("u1", "t1"), wantErr: true},
		{name: "empty resource flagged on a code check", fx: tenantFx(), perm: "docs.read.own", res: res("", ""), wantErr: true},
		{name: "resource check without resource", fx: tenantFx(), perm: "docs.read", wantErr: true},
		{name: "one segment", fx: tenantFx(), perm: "docs", wantErr: true},
		{name: "four segments", fx: tenantFx(), perm: "docs.read.own.x", wantErr: true},
		{name: "uppercase", fx: tenantFx(), perm: "Docs.read.own", wantErr: true},
		{name: "empty segment", fx: tenantFx(), perm: "docs..own", wantErr: true},
		{name: "empty permission", fx: tenantFx(), perm: "", wantErr: true},
		{name: "invalid request beats unknown user", fx: tenantFx().with(func(in *Input) { in.UserKnown = false }), perm: "docs.*.own", wantErr: true},

		// Stored data that does not parse fails closed.
		{name: "bad code in reached role denies everything", fx: tenantFx().role("a", "docs.read.tenant", "Docs.Read").assign("a", "").grant("*.*.*", ""), perm: "docs.read.own", reason: ReasonInvalidData},
		{name: "bad deny code denies everything", fx: tenantFx().grant("*.*.*", "").deny("docs.read.team.x", ""), perm: "docs.read.own", reason: ReasonInvalidData},
		{name: "other-level scope in stored code denies everything", fx: tenantFx().grant("*.*.*", "").grant("docs.read.platform", ""), perm: "docs.read.own", reason: ReasonInvalidData},
		{name: "bad code in unreached role is harmless", fx: tenantFx().role("a", "docs.read.own").role("b", "bad").assign("a", ""), perm: "docs.read.own", allowed: true, reason: ReasonGranted},
		{name: "bad code in expired direct grant is harmless", fx: tenantFx().grant("docs.read.own", "").direct("bad", true, "", t0), perm: "docs.read.own", allowed: true, reason: ReasonGranted},
		{name: "conflicting duplicate role ids deny everything", fx: tenantFx().role("a", "docs.read.own").assign("a", "").with(func(in *Input) {
			in.Roles = append(in.Roles, Role{ID: "id-a", Code: "a", Active: true, Permissions: []string{"*.*.*"}})
		}), perm: "docs.read.own", reason: ReasonInvalidData},
		{name: "identical duplicate role rows are harmless", fx: tenantFx().role("a", "docs.read.own").role("a", "docs.read.own").assign("a", ""), perm: "docs.read.own", allowed: true, reason: ReasonGranted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Compile(tc.fx.in, t0)
			require.NoError(t, err)
			at := tc.at
			if at.IsZero() {
				at = t0
			}
			got, err := set.Check(at, request(tc.perm, tc.res))
			if tc.wantErr {
				require.ErrorIs(t, err, ErrInvalidRequest, "got decision %+v, want an invalid-request error", got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.allowed, got.Allowed, "allowed: got %v, want %v (reason %v)", got.Allowed, tc.allowed, got.Reason)
			assert.Equal(t, tc.reason, got.Reason, "reason: got %v, want %v", got.Reason, tc.reason)
			assert.Equal(t, tc.fx.in.Version, got.Version, "version: got %d, want %d", got.Version, tc.fx.in.Version)
			if tc.grant != nil {
				assert.Equal(t, *tc.grant, got.Grant, "grant: got %+v, want %+v", got.Grant, *tc.grant)
			}
			if !got.Allowed {
				assert.Equal(t, Grant{}, got.Grant, "grant on a denial: got %+v, want none", got.Grant)
			}
			// Every table case also holds for a set that went through the cache encoding.
			b, err := set.MarshalBinary()
			require.NoError(t, err)
			back, err := UnmarshalSet(b)
			require.NoError(t, err)
			again, err := back.Check(at, request(tc.perm, tc.res))
			require.NoError(t, err)
			assert.Equal(t, got, again, "after round trip: got %+v, want %+v", again, got)
		})
	}
}
