package decision

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// oneWhole compiles in as a single part holding every grant and deny in the matched-grant
// order: what a set is when its parts are not split by role assignment.
func oneWhole(t *testing.T, in Input) *Set {
	t.Helper()
	f, err := resolve(in, t0)
	require.NoError(t, err)
	whole := &sharedFacts{level: in.Level, expiry: never, closures: map[string][]string{}}
	add := func(p *sharedFacts) {
		whole.scope = p.scope
		whole.expiry = min(whole.expiry, p.expiry)
		whole.grants = append(whole.grants, p.grants...)
		whole.denies = append(whole.denies, p.denies...)
		for g, cl := range p.closures {
			whole.closures[g] = cl
		}
	}
	if f.direct != nil {
		add(f.direct)
	}
	for _, p := range f.roles {
		add(p)
	}
	return newSet(f.user, newTeams(f.user.members), newCompiled(whole), nil)
}

// TestPartsDecideAsOneWhole: a set split into a direct part and one part per role assignment
// decides every request as the same grants and denies compiled into one part, and expires
// with it, for random worlds (the same role assigned several times, with and without a group,
// with different expiries, denies restricted or not).
func TestPartsDecideAsOneWhole(t *testing.T) {
	g := gen{rnd: rand.New(rand.NewPCG(20, 1)), badCodes: true}
	it := NewInterner()
	var sets []*Set
	split := 0
	for i := range 3000 {
		in := g.input()
		whole := oneWhole(t, in)
		for _, parts := range []*Set{must(Compile(in, t0)), must3(it.Compile(in, t0))} {
			require.Equal(t, whole.Expiry(), parts.Expiry(), "world %d", i)
			require.Equal(t, whole.Problem(), parts.Problem(), "world %d", i)
			requireSameDecisions(t, g, i, in.Level, whole, parts, "from the parts")
			require.Equal(t, whole.ListPermissions(t0, nil), parts.ListPermissions(t0, nil), "world %d", i)
			sets = append(sets, parts)
			if len(parts.parts()) > 1 {
				split++
			}
		}
	}
	assert.Greater(t, split, 2000, "got %d sets of several parts, want most", split)
	runtime.KeepAlive(sets)
}

func must(s *Set, err error) *Set {
	if err != nil {
		panic(err)
	}
	return s
}

func must3(s *Set, _ bool, err error) *Set { return must(s, err) }

// TestRolePartsSharedAcrossDirectItems: users holding a role assignment share its part whatever
// else they hold; a direct grant gives only its user a direct part, and changes no other
// user's decision.
func TestRolePartsSharedAcrossDirectItems(t *testing.T) {
	it := NewInterner()
	a := must3(it.Compile(editors("alice").in, t0))
	b := must3(it.Compile(editors("bob").in, t0))
	require.True(t, a.Shares(b))
	require.Equal(t, 2, it.Len(), "got %d parts for two role assignments, want 2", it.Len())
	reqs := []Request{
		request("files.write.own", nil), request("docs.read.team", nil), request("wiki.read.tenant", nil),
		request("files.read", res("alice", "")), request("docs.write", res("", "t1")),
	}
	before := make([]Decision, len(reqs))
	for i, r := range reqs {
		before[i] = must2(a.Check(t0, r))
	}

	b2 := must3(it.Compile(editors("bob").grant("files.write.own", "").in, t0))
	assert.False(t, a.Shares(b2), "got bob's set with a direct grant shared with alice's")
	assert.True(t, a.SharesRoles(b2), "got bob's role parts rebuilt for his direct grant, want alice's")
	assert.Equal(t, 3, it.Len(), "got %d parts, want the two role parts and bob's direct one", it.Len())
	assert.Equal(t, append([]string{b2.PartIDs()[0]}, a.PartIDs()...), b2.PartIDs())
	d := must2(b2.Check(t0, request("files.write.own", nil)))
	assert.True(t, d.Allowed && d.Grant.Direct, "got %+v for bob's direct grant, want a direct allow", d)
	for i, r := range reqs {
		assert.Equal(t, before[i], must2(a.Check(t0, r)), "alice's decision on %+v changed", r)
	}
	d = must2(a.Check(t0, request("files.write.own", nil)))
	assert.False(t, d.Allowed, "got alice allowed bob's direct grant")

	// A user holding only one of the roles shares that role's part, not the list.
	c := must3(it.Compile(tenantFx().role("viewer", "wiki.read.tenant").assign("viewer", "").in, t0))
	assert.False(t, c.SharesRoles(a))
	assert.Same(t, a.roles.parts[1], c.roles.parts[0], "got the viewer part built twice")
	assert.Equal(t, 3, it.Len())

	// Two assignments of one role and group are one part, with the later expiry.
	twice := must3(it.Compile(tenantFx().role("viewer", "wiki.read.tenant").
		assignUntil("viewer", "", t0.Add(time.Hour)).assignUntil("viewer", "", t0.Add(2*time.Hour)).in, t0))
	require.Len(t, twice.parts(), 1)
	assert.True(t, twice.Expiry().Equal(t0.Add(2*time.Hour)), "got expiry %v, want the later assignment's", twice.Expiry())
	runtime.KeepAlive([]*Set{a, b, b2, c})
}

func must2(d Decision, err error) Decision {
	if err != nil {
		panic(err)
	}
	return d
}

// TestDirectDenyAppliesToRoleParts: denies live in the direct part and apply to the grants of
// every role part: unrestricted and restricted denies, restricted role instances, and denies
// restricted to a group the resource lies outside of.
func TestDirectDenyAppliesToRoleParts(t *testing.T) {
	base := func() *fx {
		return tenantFx().teams().member("t1").
			role("ed", "docs.*.tenant", "files.read.team").
			role("tm", "docs.write.team", "reports.read.*").
			assign("ed", "").assign("tm", "t2")
	}
	for _, tc := range []struct {
		name    string
		fx      *fx
		req     Request
		allowed bool
		reason  Reason
		grant   Grant
	}{
		{"role grant without deny", base(), request("docs.read.tenant", nil), true, ReasonGranted,
			Grant{Code: "docs.*.tenant", Role: "ed", Scope: ScopeTenant}},
		{"unrestricted deny caps a role grant", base().deny("docs.read.tenant", ""), request("docs.read.tenant", nil), false, ReasonExplicitDeny, Grant{}},
		{"deny removes a role grant's only instance", base().deny("docs.read.tenant", ""), request("docs.read.team", nil), false, ReasonExplicitDeny, Grant{}},
		{"deny leaves a role grant's lower instances", base().deny("reports.read.team", ""), request("reports.read", res("u1", "t3")), true, ReasonGranted,
			Grant{Code: "reports.read.*", Role: "tm", Group: "t2", Scope: ScopeOwn}},
		{"wildcard deny over two role parts", base().deny("docs.write.*", ""), request("docs.write", res("", "t2")), false, ReasonExplicitDeny, Grant{}},
		{"restricted instance, deny on its group", base().deny("reports.read.*", "t2"), request("reports.read", res("", "t3")), false, ReasonExplicitDeny, Grant{}},
		{"restricted instance, deny on another group", base().deny("reports.read.*", "t9"), request("reports.read", res("", "t3")), true, ReasonGranted,
			Grant{Code: "reports.read.*", Role: "tm", Group: "t2", Scope: ScopeTeam}},
		{"deny outside the resource, on the instance's group", base().deny("docs.write.team", "t3"), request("docs.write", res("", "t2")), true, ReasonGranted,
			Grant{Code: "docs.*.tenant", Role: "ed", Scope: ScopeTenant}},
		{"deny outside the resource caps only its group's instances", base().deny("docs.*.*", "t3").deny("docs.write.tenant", ""),
			request("docs.write", res("", "t2")), true, ReasonGranted, Grant{Code: "docs.write.team", Role: "tm", Group: "t2", Scope: ScopeTeam}},
		{"direct grant beats role grants", base().grant("docs.read.own", ""), request("docs.read", res("u1", "")), true, ReasonGranted,
			Grant{Code: "docs.read.own", Direct: true, Scope: ScopeOwn}},
		{"deny on a direct grant and role grants", base().grant("docs.read.own", "").deny("docs.read.*", ""), request("docs.read", res("u1", "")), false, ReasonExplicitDeny, Grant{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := NewInterner()
			plain := must3(it.Compile(base().in, t0))
			set := must3(it.Compile(tc.fx.in, t0))
			if len(tc.fx.in.Direct) > 0 {
				require.NotNil(t, set.direct, "got no direct part for a user with direct items")
				assert.True(t, set.SharesRoles(plain), "got the role parts rebuilt for a deny")
			}
			got := must2(set.Check(t0, tc.req))
			assert.Equal(t, Decision{Allowed: tc.allowed, Reason: tc.reason, Grant: tc.grant, Version: 7}, got)
			assert.Equal(t, must2(oneWhole(t, tc.fx.in).Check(t0, tc.req)), got, "got a decision other than one whole part's")
			// The deny is this user's: the plain holder of the same roles is not touched.
			assert.Equal(t, must2(oneWhole(t, base().in).Check(t0, tc.req)), must2(plain.Check(t0, tc.req)))
		})
	}
}

// TestCheckAllocationFreeWithParts: a check over a direct part and several role parts
// allocates nothing.
func TestCheckAllocationFreeWithParts(t *testing.T) {
	set := must3(NewInterner().Compile(benchInput(), t0))
	require.Greater(t, len(set.parts()), 2)
	for name, req := range benchRequests() {
		allocs := testing.AllocsPerRun(100, func() { _, _ = set.Check(t0, req) })
		assert.Zero(t, allocs, "%s: got %v allocs, want 0", name, allocs)
	}
}

// FuzzUnmarshalUser: a user encoding naming any parts, in any order, either decodes into a set
// that checks without panicking and whose encoding decodes to the same set, or is refused.
// (Team ids are sorted and deduplicated on decoding, so the first re-encoding may differ.)
func FuzzUnmarshalUser(f *testing.F) {
	src := NewInterner()
	var parts []Part
	for _, in := range []Input{
		tenantFx().role("ed", "docs.*.team", "x.y.own").assign("ed", "t1").assign("ed", "").deny("docs.write.*", "t2").member("t1").teams().in,
		tenantFx().role("viewer", "docs.read.tenant").assign("viewer", "").grant("x.y.team", "t3").in,
		platformFx().grant("*.*.platform", "acme").in,
		tenantFx().grant("Bad", "").in,
	} {
		set := must3(src.Compile(in, t0))
		f.Add(set.MarshalUser())
		parts = append(parts, set.Parts()...)
	}
	reqs := []Request{request("docs.read.own", nil), request("x.y.team", nil), request("docs.read.platform", nil),
		request("docs.read", res("u1", "t1")), request("docs.write", res("", "t3")), request("x.y", res("u1", ""))}
	f.Fuzz(func(t *testing.T, b []byte) {
		var asked []string
		set, err := NewInterner().UnmarshalUser(b, fetchFrom(parts, &asked))
		if err != nil {
			return
		}
		again := set.MarshalUser()
		back, err := NewInterner().UnmarshalUser(again, fetchFrom(parts, &asked))
		if err != nil {
			t.Fatalf("re-encoding of an accepted set does not decode: %v", err)
		}
		if twice := back.MarshalUser(); string(twice) != string(again) {
			t.Fatalf("re-encoding differs: %x, want %x", twice, again)
		}
		for _, r := range reqs {
			d1, err1 := set.Check(t0, r)
			d2, err2 := back.Check(t0, r)
			if d1 != d2 || (err1 == nil) != (err2 == nil) {
				t.Fatalf("%+v: got %+v %v after re-decoding, want %+v %v", r, d2, err2, d1, err1)
			}
		}
		_ = set.ListPermissions(t0, []string{"docs.read.own"})
	})
}
