package decision

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gen draws small random worlds in which every rule has a fair chance to fire.
type gen struct {
	rnd      *rand.Rand
	badCodes bool // sometimes emit stored codes that do not parse
}

var (
	genResources = []string{"docs", "reports", "*"}
	genActions   = []string{"read", "write", "*"}
	genGroups    = []string{"", "t1", "t2", "t3", "t4"}
	genTimes     = []time.Duration{0, -time.Hour, time.Hour, 2 * time.Hour} // 0 = no expiry
	checkTimes   = []time.Duration{0, 30 * time.Minute, 90 * time.Minute, 3 * time.Hour}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func (g gen) exp() time.Time {
	d := pick(g.rnd, genTimes)
	if d == 0 {
		return time.Time{}
	}
	return t0.Add(d)
}

func (g gen) code(level Level) string {
	if g.badCodes && g.rnd.IntN(60) == 0 {
		return pick(g.rnd, []string{"Docs.read.own", "docs.read", "docs.read.platform", "docs.read.own.x", ""})
	}
	sc := append(slices.Clone(refScopes[level]), "*")
	return pick(g.rnd, genResources) + "." + pick(g.rnd, genActions) + "." + pick(g.rnd, sc)
}

func (g gen) input() Input {
	r := g.rnd
	level := pick(r, []Level{LevelTenant, LevelPlatform})
	in := Input{
		Level: level, TenantKnown: true, TenantStatus: "active", UserKnown: true, UserID: "u1",
		UserStatus: "active", Version: r.Uint64N(1000), Descendants: map[string][]string{},
	}
	if level == LevelTenant {
		in.TenantID = "acme"
	}
	switch r.IntN(40) {
	case 0:
		in.TenantKnown = false
	case 1:
		in.TenantStatus = "suspended"
	case 2:
		in.UserKnown = false
	case 3:
		in.UserStatus = "disabled"
	}
	codes := []string{"alpha", "Beta", "gamma", "alpha2", "delta"}
	for i := range 5 {
		role := Role{ID: fmt.Sprintf("r%d", i), Code: codes[i], Active: r.IntN(5) != 0}
		for range r.IntN(4) {
			role.Permissions = append(role.Permissions, g.code(level))
		}
		for range r.IntN(3) {
			role.Inherits = append(role.Inherits, fmt.Sprintf("r%d", r.IntN(6))) // r5 is unknown
		}
		in.Roles = append(in.Roles, role)
	}
	r.Shuffle(len(in.Roles), func(i, j int) { in.Roles[i], in.Roles[j] = in.Roles[j], in.Roles[i] })
	for range r.IntN(5) {
		in.Assignments = append(in.Assignments, Assignment{RoleID: fmt.Sprintf("r%d", r.IntN(6)), Group: pick(r, genGroups), ExpiresAt: g.exp()})
	}
	for range r.IntN(5) {
		in.Direct = append(in.Direct, DirectPermission{Code: g.code(level), Granted: r.IntN(3) != 0, Group: pick(r, genGroups), ExpiresAt: g.exp()})
	}
	for _, t := range genGroups[1:] {
		if r.IntN(3) == 0 {
			in.MemberOf = append(in.MemberOf, t)
		}
	}
	for range r.IntN(5) { // random edges: any order, duplicates and cycles included
		from, to := pick(r, genGroups[1:]), pick(r, genGroups[1:])
		in.Descendants[from] = append(in.Descendants[from], to)
	}
	return in
}

func (g gen) request(level Level) Request {
	r := g.rnd
	res, act := pick(r, genResources[:2]), pick(r, genActions[:2])
	if r.IntN(50) == 0 {
		return Request{Permission: res + ".*." + refScopes[level][0]} // invalid
	}
	if r.IntN(2) == 0 {
		return Request{Permission: res + "." + act + "." + pick(r, refScopes[level])}
	}
	return Request{
		Permission:  res + "." + act,
		HasResource: true,
		Resource:    Resource{OwnerID: pick(r, []string{"u1", "u2", ""}), Group: pick(r, []string{"", "t1", "t2", "t3", "t4", "t9"})},
	}
}

func (g gen) at() time.Time { return t0.Add(pick(g.rnd, checkTimes)) }

// TestCompileMatchesReference compares the indexed engine with the literal reading of the decision rules.
func TestCompileMatchesReference(t *testing.T) {
	g := gen{rnd: rand.New(rand.NewPCG(1, 2)), badCodes: true}
	allowed, denied := 0, 0
	for i := range 4000 {
		in := g.input()
		set, err := Compile(in, t0)
		require.NoError(t, err)
		for range 25 {
			req, at := g.request(in.Level), g.at()
			got, gotErr := set.Check(at, req)
			want, wantErr := refDecide(in, t0, at, req)
			require.Equal(t, wantErr != nil, gotErr != nil, "world %d %+v: error: got %v, want %v", i, req, gotErr, wantErr)
			if !assert.Equal(t, want, got, "world %d, request %+v at %v: got %+v, want %+v\ninput %+v", i, req, at.Sub(t0), got, want, in) {
				return
			}
			if got.Allowed {
				allowed++
			} else {
				denied++
			}
		}
	}
	// Guard the generator itself: a world that never allows would prove nothing.
	assert.Greater(t, allowed, 5000, "allowed decisions: got %d, want many", allowed)
	assert.Greater(t, denied, 5000, "denied decisions: got %d, want many", denied)
}

// TestAddingDenyNeverAllows: a new deny can only take allows away.
func TestAddingDenyNeverAllows(t *testing.T) {
	g := gen{rnd: rand.New(rand.NewPCG(3, 4))}
	var c comparisons
	for i := range 3000 {
		in := g.input()
		more := in
		more.Direct = append(slices.Clone(in.Direct), DirectPermission{Code: g.code(in.Level), Group: pick(g.rnd, genGroups), ExpiresAt: g.exp()})
		c.mutated++
		c.add(assertNoNewAllow(t, g, i, in, more))
	}
	c.require(t)
}

// TestRemovingGrantNeverAllows: taking away a direct grant, a role permission or an assignment
// can only take allows away.
func TestRemovingGrantNeverAllows(t *testing.T) {
	g := gen{rnd: rand.New(rand.NewPCG(5, 6))}
	var c comparisons
	for i := range 3000 {
		in := g.input()
		less := in
		switch g.rnd.IntN(3) {
		case 0:
			if j := slices.IndexFunc(in.Direct, func(d DirectPermission) bool { return d.Granted }); j >= 0 {
				less.Direct = slices.Delete(slices.Clone(in.Direct), j, j+1)
				c.mutated++
			}
		case 1:
			less.Roles = slices.Clone(in.Roles)
			j := g.rnd.IntN(len(less.Roles))
			if n := len(less.Roles[j].Permissions); n > 0 {
				less.Roles[j].Permissions = slices.Delete(slices.Clone(less.Roles[j].Permissions), n-1, n)
				c.mutated++
			}
		case 2:
			if n := len(in.Assignments); n > 0 {
				less.Assignments = slices.Delete(slices.Clone(in.Assignments), 0, 1)
				c.mutated++
			}
		}
		c.add(assertNoNewAllow(t, g, i, in, less))
	}
	c.require(t)
}

// comparisons counts what a monotonicity property really checked, so that a generator drifting
// into errors, no-op changes or worlds without denies cannot leave the property proved by
// nothing.
type comparisons struct {
	mutated int // worlds whose input the change really altered
	checked int // decisions that were denies before the change (the ones the property is about)
	taken   int // allows the change took away (the change mattered)
}

func (c *comparisons) add(checked, taken int) { c.checked += checked; c.taken += taken }

func (c *comparisons) require(t *testing.T) {
	t.Helper()
	t.Logf("%d worlds changed, %d denies compared, %d allows taken away", c.mutated, c.checked, c.taken)
	assert.Greater(t, c.mutated, 1500, "worlds changed: got %d, want most of them", c.mutated)
	assert.Greater(t, c.checked, 20000, "denies compared: got %d, want many", c.checked)
	assert.Greater(t, c.taken, 200, "allows taken away: got %d, want some (else the changes did nothing)", c.taken)
}

// assertNoNewAllow checks that no request denied before the change is allowed after it; it
// returns how many denies it compared and how many allows the change took away.
func assertNoNewAllow(t *testing.T, g gen, i int, before, after Input) (checked, taken int) {
	t.Helper()
	s1, err := Compile(before, t0)
	require.NoError(t, err)
	s2, err := Compile(after, t0)
	require.NoError(t, err)
	for range 20 {
		req, at := g.request(before.Level), g.at()
		d1, err1 := s1.Check(at, req)
		d2, err2 := s2.Check(at, req)
		if err1 != nil || err2 != nil {
			require.Equal(t, err1 != nil, err2 != nil, "world %d, %+v: the change made the request invalid: %v / %v", i, req, err1, err2)
			continue
		}
		if !d1.Allowed {
			require.False(t, d2.Allowed, "world %d, %+v: got allow %+v after the change, want deny as before (%v)", i, req, d2.Grant, d1.Reason)
			checked++
		} else if !d2.Allowed {
			taken++
		}
	}
	return checked, taken
}

// TestRoundTripSameDecisions: a set read back from the cache encoding decides identically.
func TestRoundTripSameDecisions(t *testing.T) {
	g := gen{rnd: rand.New(rand.NewPCG(7, 8)), badCodes: true}
	for i := range 2000 {
		in := g.input()
		set, err := Compile(in, t0)
		require.NoError(t, err)
		b, err := set.MarshalBinary()
		require.NoError(t, err)
		back, err := UnmarshalSet(b)
		require.NoError(t, err, "world %d", i)
		b2, err := back.MarshalBinary()
		require.NoError(t, err)
		require.Equal(t, b, b2, "world %d: re-encoding differs", i)
		require.Equal(t, set.Version(), back.Version())
		require.Equal(t, set.Expiry(), back.Expiry())
		require.Equal(t, set.Problem(), back.Problem())
		requireSameDecisions(t, g, i, in.Level, set, back, "after round trip")
		require.Equal(t, set.ListPermissions(t0, nil), back.ListPermissions(t0, nil))
	}
}

// requireSameDecisions checks that got decides 20 random requests of world i as want does.
func requireSameDecisions(t *testing.T, g gen, i int, level Level, want, got *Set, how string) {
	t.Helper()
	for range 20 {
		req, at := g.request(level), g.at()
		d1, err1 := want.Check(at, req)
		d2, err2 := got.Check(at, req)
		require.Equal(t, err1, err2)
		require.Equal(t, d1, d2, "world %d, %+v: got %+v %s, want %+v", i, req, d2, how, d1)
	}
}

// TestExpiryIsEarliestItem: after Expiry() a decision may change, and before it none does.
func TestExpiryIsEarliestItem(t *testing.T) {
	g := gen{rnd: rand.New(rand.NewPCG(9, 10))}
	compared, expiring := 0, 0
	for i := range 2000 {
		in := g.input()
		set, err := Compile(in, t0)
		require.NoError(t, err)
		exp := set.Expiry()
		if exp.IsZero() {
			exp = t0.Add(100 * time.Hour)
		} else {
			expiring++
		}
		for range 10 {
			req := g.request(in.Level)
			d1, err := set.Check(t0, req)
			if err != nil {
				continue
			}
			d2, _ := set.Check(exp.Add(-time.Microsecond), req)
			require.Equal(t, d1, d2, "world %d: decision changed before Expiry %v", i, exp)
			compared++
		}
	}
	assert.Greater(t, expiring, 500, "sets with an expiry: got %d, want many", expiring)
	assert.Greater(t, compared, 15000, "decisions compared: got %d, want most", compared)
}
