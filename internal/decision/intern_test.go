package decision

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func editors(user string) *fx {
	f := tenantFx().role("ed", "docs.*.team", "files.read.own").role("viewer", "wiki.read.tenant").
		assign("ed", "").assign("viewer", "")
	f.in.UserID = user
	return f
}

func TestInternerSharesSameRolesOnly(t *testing.T) {
	it := NewInterner()
	a, built, err := it.Compile(editors("alice").member("t1").in, t0)
	require.NoError(t, err)
	assert.True(t, built, "got built false for the first user, want true")
	b, built, err := it.Compile(editors("bob").in, t0)
	require.NoError(t, err)
	assert.False(t, built, "got built true for a second user with the same roles, want the part shared")
	assert.True(t, a.Shares(b), "got two compiled parts for users with the same roles, want one")
	assert.Equal(t, a.PartIDs(), b.PartIDs())

	// Per-user facts stay per user.
	own := Request{Permission: "files.read", HasResource: true, Resource: Resource{OwnerID: "alice"}}
	da, err := a.Check(t0, own)
	require.NoError(t, err)
	db, err := b.Check(t0, own)
	require.NoError(t, err)
	assert.True(t, da.Allowed, "got deny for alice's own file, want allow")
	assert.False(t, db.Allowed, "got allow for bob on alice's file, want deny")
	team := Request{Permission: "docs.read", HasResource: true, Resource: Resource{Group: "t1"}}
	da, _ = a.Check(t0, team)
	db, _ = b.Check(t0, team)
	assert.True(t, da.Allowed, "got deny for a member of t1, want allow")
	assert.False(t, db.Allowed, "got allow for a non-member of t1, want deny")

	// A direct grant makes a different set: bob stops sharing, alice keeps hers unchanged.
	b2, built, err := it.Compile(editors("bob").grant("files.write.own", "").in, t0)
	require.NoError(t, err)
	assert.True(t, built)
	assert.False(t, a.Shares(b2), "got a shared part after a direct grant, want bob's own")
	d, _ := a.Check(t0, Request{Permission: "files.write.own"})
	assert.False(t, d.Allowed, "got alice allowed bob's direct grant, want deny")
	d, _ = b2.Check(t0, Request{Permission: "files.write.own"})
	assert.True(t, d.Allowed, "got bob denied his direct grant, want allow")

	// Another tenant with the same roles has its own part.
	other := editors("carol")
	other.in.TenantID = "globex"
	c, _, err := it.Compile(other.in, t0)
	require.NoError(t, err)
	assert.False(t, a.Shares(c), "got a part shared across tenants, want one per tenant")
	for _, id := range c.PartIDs() {
		assert.NotContains(t, a.PartIDs(), id, "got a part shared across tenants")
	}

	// A different expiry of the same role is a different set.
	e, _, err := it.Compile(tenantFx().role("ed", "docs.*.team", "files.read.own").role("viewer", "wiki.read.tenant").
		assignUntil("ed", "", t0.Add(time.Hour)).assign("viewer", "").in, t0)
	require.NoError(t, err)
	assert.False(t, a.Shares(e), "got a part shared by sets with different expiries")
}

// TestInternerSameDecisionsAsCompile: sharing changes no decision, for random worlds where
// many users hold the same facts.
func TestInternerSameDecisionsAsCompile(t *testing.T) {
	g := gen{rnd: rand.New(rand.NewPCG(11, 12)), badCodes: true}
	it := NewInterner()
	var sets []*Set
	for i := range 1000 {
		in := g.input()
		own, err := Compile(in, t0)
		require.NoError(t, err)
		shared, _, err := it.Compile(in, t0)
		require.NoError(t, err)
		again, _, err := it.Compile(in, t0)
		require.NoError(t, err)
		require.True(t, shared.Shares(again), "world %d: same input compiled twice, got two parts", i)
		sets = append(sets, shared)
		requireSameDecisions(t, g, i, in.Level, own, shared, "from the interned set")
		require.Equal(t, own.Expiry(), shared.Expiry())
		require.Equal(t, own.ListPermissions(t0, nil), shared.ListPermissions(t0, nil))
	}
	runtime.KeepAlive(sets)
}

func TestInternerReleasesPartWithLastUser(t *testing.T) {
	it := NewInterner()
	a, _, err := it.Compile(editors("alice").in, t0)
	require.NoError(t, err)
	b, _, err := it.Compile(editors("bob").in, t0)
	require.NoError(t, err)
	require.Equal(t, 2, it.Len(), "got %d parts for two role assignments, want 2", it.Len())
	require.True(t, a.Shares(b)) // alice's last use: only bob holds the part from here
	_, part := b.Size()
	assert.Equal(t, part, it.Bytes(), "got %d bytes of parts, want the one part's %d", it.Bytes(), part)
	runtime.GC()
	_, built, err := it.Compile(editors("carol").in, t0)
	require.NoError(t, err)
	assert.False(t, built, "got the part rebuilt while bob still used it, want it shared")
	runtime.KeepAlive(b) // bob's last use
	deadline := time.Now().Add(30 * time.Second)
	for it.Len() > 0 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	assert.Zero(t, it.Len(), "got %d parts recorded after their last user went, want 0", it.Len())
	assert.Zero(t, it.Bytes(), "got %d bytes of parts after their last user went, want 0", it.Bytes())
}

// fetchFrom serves parts like a cache holding them, counting the ids asked for.
func fetchFrom(parts []Part, asked *[]string) func([]string) ([][]byte, error) {
	return func(ids []string) ([][]byte, error) {
		*asked = append(*asked, ids...)
		out := make([][]byte, len(ids))
		for i, id := range ids {
			for _, p := range parts {
				if p.ID == id {
					out[i] = p.Data
				}
			}
			if out[i] == nil {
				return nil, ErrSharedMissing
			}
		}
		return out, nil
	}
}

func TestUnmarshalUser(t *testing.T) {
	src := NewInterner()
	set, _, err := src.Compile(editors("alice").member("t1").deny("docs.write.team", "t1").in, t0)
	require.NoError(t, err)
	user, parts := set.MarshalUser(), set.Parts()
	require.Len(t, parts, 3, "got %d parts, want the direct one and one per role", len(parts))
	for i, p := range parts {
		assert.Equal(t, set.PartIDs()[i], p.ID)
	}

	noFetch := func([]string) ([][]byte, error) { return nil, errors.New("fetched a live part") }
	back, err := src.UnmarshalUser(user, noFetch)
	require.NoError(t, err, "got an error joining with live parts, want no fetch")
	assert.True(t, back.Shares(set))

	dst := NewInterner() // another process: nothing alive
	var asked []string
	back, err = dst.UnmarshalUser(user, fetchFrom(parts, &asked))
	require.NoError(t, err)
	assert.Equal(t, set.PartIDs(), asked, "got the parts asked for in another order or more than once")
	wantBytes, _ := set.MarshalBinary()
	gotBytes, _ := back.MarshalBinary()
	assert.Equal(t, wantBytes, gotBytes, "got a different set after the split round trip")
	again, err := dst.UnmarshalUser(user, noFetch)
	require.NoError(t, err, "got a fetch for parts decoded before, want them shared")
	assert.True(t, again.Shares(back))

	// Another user holding one of the roles fetches only what is not alive: nothing.
	bob, _, err := src.Compile(tenantFx().role("viewer", "wiki.read.tenant").assign("viewer", "").in, t0)
	require.NoError(t, err)
	asked = nil
	_, err = dst.UnmarshalUser(bob.MarshalUser(), fetchFrom(bob.Parts(), &asked))
	require.NoError(t, err)
	assert.Empty(t, asked, "got %v fetched for a role part alive in memory", asked)

	// One part missing is a miss.
	asked = nil
	_, err = NewInterner().UnmarshalUser(user, fetchFrom(parts[:2], &asked))
	require.ErrorIs(t, err, ErrSharedMissing)

	for i := range parts {
		tampered := slices.Clone(parts)
		tampered[i].Data = slices.Clone(tampered[i].Data)
		tampered[i].Data[len(tampered[i].Data)-1] ^= 1
		_, err = NewInterner().UnmarshalUser(user, fetchFrom(tampered, &asked))
		require.ErrorIs(t, err, ErrInvalidEncoding, "got part %d that does not match its id accepted", i)
		var corrupt *CorruptPartsError
		require.ErrorAs(t, err, &corrupt)
		assert.Equal(t, []string{tampered[i].ID}, corrupt.CorruptSharedIDs(), "the corrupt part named, for the cache to drop")
	}

	// Parts named in another order, or twice, are refused: the order is the matched-grant order.
	swapped := slices.Clone(user)
	n := len(swapped)
	copy(swapped[n-64:], user[n-32:])
	copy(swapped[n-32:], user[n-64:n-32])
	_, err = NewInterner().UnmarshalUser(swapped, fetchFrom(parts, &asked))
	require.ErrorIs(t, err, ErrInvalidEncoding, "got role parts out of order accepted")
	twice := slices.Clone(user)
	copy(twice[n-32:], user[n-64:n-32])
	_, err = NewInterner().UnmarshalUser(twice, fetchFrom(parts, &asked))
	require.ErrorIs(t, err, ErrInvalidEncoding, "got a role part named twice accepted")
	direct := slices.Clone(user)
	copy(direct[n-32:], user[n-96:n-64])
	_, err = NewInterner().UnmarshalUser(direct, fetchFrom(parts, &asked))
	require.ErrorIs(t, err, ErrInvalidEncoding, "got a direct part after the role parts accepted")

	for i := range len(user) {
		_, err := NewInterner().UnmarshalUser(user[:i], fetchFrom(parts, &asked))
		require.ErrorIs(t, err, ErrInvalidEncoding, "truncated at %d", i)
	}
	full, _ := set.MarshalBinary()
	_, err = NewInterner().UnmarshalUser(full, fetchFrom(parts, &asked))
	require.ErrorIs(t, err, ErrInvalidEncoding, "got a whole-set encoding read as a user part")
}

func TestSetSize(t *testing.T) {
	it := NewInterner()
	a, _, err := it.Compile(editors("alice").member("t1", "t2").in, t0)
	require.NoError(t, err)
	ua, sa := a.Size()
	b, _, err := it.Compile(editors("bobby").in, t0)
	require.NoError(t, err)
	ub, sb := b.Size()
	c, _, err := it.Compile(editors("carol").member("t2", "t1").in, t0)
	require.NoError(t, err)
	uc, sc := c.Size()
	// A membership is shared like the parts: alice's and carol's are one.
	assert.Equal(t, ua, ub, "got a member's own size other than a non-member's")
	assert.Equal(t, ua, uc)
	assert.Equal(t, sa, sc, "got different shared sizes for one membership and one list of parts")
	assert.Greater(t, sa, sb, "got a member's shared part no larger than a non-member's")
	assert.Greater(t, sb, ub, "got shared parts smaller than a user's part")
	assert.Equal(t, sa, it.Bytes(), "got the interner counting %d bytes, want the parts, list and membership's %d", it.Bytes(), sa)
	runtime.KeepAlive([]*Set{a, b, c})
}

// TestDirectPartLeavesWithItsUser: a user's direct part leaves memory with that user even
// while others keep using the role parts and the list they shared with the user — the list
// holds the role parts only.
func TestDirectPartLeavesWithItsUser(t *testing.T) {
	src := NewInterner()
	alice := must3(src.Compile(editors("alice").grant("files.write.own", "").in, t0))
	bob := must3(src.Compile(editors("bob").in, t0))
	var asked []string
	it := NewInterner() // another process, reading both from the cache
	a, err := it.UnmarshalUser(alice.MarshalUser(), fetchFrom(alice.Parts(), &asked))
	require.NoError(t, err)
	b, err := it.UnmarshalUser(bob.MarshalUser(), fetchFrom(bob.Parts(), &asked))
	require.NoError(t, err)
	require.True(t, a.SharesRoles(b))
	require.Equal(t, 3, it.Len())
	runtime.KeepAlive(a) // alice's last use
	deadline := time.Now().Add(30 * time.Second)
	for it.Len() > 2 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	assert.Equal(t, 2, it.Len(), "got %d parts after alice went, want bob's two role parts", it.Len())
	_, shared := b.Size()
	assert.Equal(t, shared, it.Bytes(), "got %d bytes counted, want bob's %d", it.Bytes(), shared)
	d, err := b.Check(t0, request("wiki.read.tenant", nil))
	require.NoError(t, err)
	assert.True(t, d.Allowed)
}

// TestCompileInto: CompileInto and UnmarshalUserInto fill a caller's Set with the set Compile
// and UnmarshalUser return — the same parts, encoding and decisions — without allocating the
// set itself, and leave it untouched on error. A cache that holds the set inside its entry
// relies on both.
func TestCompileInto(t *testing.T) {
	it := NewInterner()
	in := editors("alice").member("t1").deny("docs.write.team", "t1").in
	want := must3(it.Compile(in, t0))
	var got Set
	built, err := it.CompileInto(&got, in, t0)
	require.NoError(t, err)
	assert.False(t, built, "got parts built again, want the live ones")
	assert.True(t, got.Shares(want), "got other parts than Compile's")
	assert.Equal(t, want.MarshalUser(), got.MarshalUser())
	for _, r := range []Request{
		{Permission: "wiki.read.tenant"},
		{Permission: "docs.write", HasResource: true, Resource: Resource{Group: "t1"}},
		{Permission: "files.read", HasResource: true, Resource: Resource{OwnerID: "alice"}},
	} {
		assert.Equal(t, must2(want.Check(t0, r)), must2(got.Check(t0, r)), "%+v", r)
	}

	noFetch := func([]string) ([][]byte, error) { return nil, errors.New("fetched a live part") }
	var back Set
	require.NoError(t, it.UnmarshalUserInto(&back, want.MarshalUser(), noFetch))
	assert.True(t, back.Shares(want), "got other parts than the live ones")
	assert.Equal(t, want.MarshalUser(), back.MarshalUser())

	// One object fewer than the pointer forms, whose Sets are kept (sink): the Set itself.
	var sink *Set
	compile := testing.AllocsPerRun(20, func() { sink = must3(it.Compile(in, t0)) })
	into := testing.AllocsPerRun(20, func() { _, _ = it.CompileInto(&got, in, t0) })
	assert.InDelta(t, compile-1, into, 0, "got %v allocations filling a Set, want %v (Compile's less the Set)", into, compile-1)
	data := want.MarshalUser()
	unmarshal := testing.AllocsPerRun(20, func() { sink = must(it.UnmarshalUser(data, noFetch)) })
	unmarshalInto := testing.AllocsPerRun(20, func() { _ = it.UnmarshalUserInto(&back, data, noFetch) })
	assert.InDelta(t, unmarshal-1, unmarshalInto, 0, "got %v allocations decoding into a Set, want %v", unmarshalInto, unmarshal-1)

	before := got
	bad := in
	bad.Level = 0
	_, err = it.CompileInto(&got, bad, t0)
	require.ErrorIs(t, err, ErrInvalidInput)
	require.Error(t, it.UnmarshalUserInto(&got, data[:len(data)-1], noFetch))
	assert.Equal(t, before, got, "got the destination changed by a failed fill")
	runtime.KeepAlive([]*Set{want, sink})
}
