package decision

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckDoesNotAllocate(t *testing.T) {
	set := benchSet(t)
	for _, req := range benchRequests() {
		d, err := set.Check(t0, req)
		require.NoError(t, err)
		allocs := testing.AllocsPerRun(200, func() { _, _ = set.Check(t0, req) })
		assert.Zero(t, allocs, "%s (%v): got %v allocs, want 0", req.Permission, d.Reason, allocs)
	}
	allocs := testing.AllocsPerRun(200, func() { _, _ = set.Check(t0, Request{Permission: "docs.*.own"}) })
	assert.Zero(t, allocs, "invalid request: got %v allocs, want 0", allocs)
}

func TestSetAccessors(t *testing.T) {
	in := tenantFx().role("ed", "docs.read.own").assignUntil("ed", "", t0.Add(2*time.Hour)).
		direct("docs.write.own", false, "", t0.Add(time.Hour)).grant("docs.read.team", "").in
	set, err := Compile(in, t0)
	require.NoError(t, err)
	assert.Equal(t, uint64(7), set.Version())
	assert.Equal(t, LevelTenant, set.Level())
	assert.True(t, set.Expiry().Equal(t0.Add(time.Hour)), "got %v, want %v", set.Expiry(), t0.Add(time.Hour))
	assert.Empty(t, set.Problem())

	none, err := Compile(tenantFx().grant("docs.read.team", "").in, t0)
	require.NoError(t, err)
	assert.True(t, none.Expiry().IsZero(), "got %v, want zero", none.Expiry())

	bad, err := Compile(tenantFx().direct("Nope", true, "", t0.Add(time.Minute)).in, t0)
	require.NoError(t, err)
	assert.Contains(t, bad.Problem(), "Nope")
	// The broken item goes away at its expiry, so the fail-closed set must be rebuilt then.
	assert.True(t, bad.Expiry().Equal(t0.Add(time.Minute)), "got %v, want %v", bad.Expiry(), t0.Add(time.Minute))
}

func TestCompileRejectsUnknownLevel(t *testing.T) {
	_, err := Compile(Input{}, t0)
	require.ErrorIs(t, err, ErrInvalidInput)
}

func TestCheckNilSet(t *testing.T) {
	var s *Set
	_, err := s.Check(t0, Request{Permission: "a.b.own"})
	require.ErrorIs(t, err, ErrNilSet)
}

func TestListPermissions(t *testing.T) {
	catalog := []string{"docs.read.own", "docs.read.team", "docs.read.tenant", "docs.write.own", "docs.write.team",
		"docs.write.tenant", "reports.read.tenant", "bad code", "docs.read", "docs.*.own", "docs.read.platform"}
	cases := []struct {
		name string
		fx   *fx
		want []string
	}{
		{"nothing", tenantFx(), []string{}},
		{"wildcard expanded by catalog, capped by deny", tenantFx().grant("docs.*.*", "").deny("docs.write.team", ""),
			[]string{"docs.read.own", "docs.read.team", "docs.read.tenant", "docs.write.own"}},
		{"restricted grant lists middle and below", tenantFx().grant("reports.read.tenant", "t1"),
			[]string{"reports.read.own", "reports.read.team"}},
		{"concrete grant outside catalog is listed", tenantFx().grant("audit.view.team", ""),
			[]string{"audit.view.own", "audit.view.team"}},
		{"inactive user lists nothing", tenantFx().grant("*.*.*", "").with(func(in *Input) { in.UserStatus = "x" }), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Compile(tc.fx.in, t0)
			require.NoError(t, err)
			got := set.ListPermissions(t0, catalog)
			if tc.want == nil {
				assert.Nil(t, got, "got %v, want nil", got)
				return
			}
			assert.ElementsMatch(t, tc.want, got, "got %v, want %v", got, tc.want)
			assert.IsIncreasing(t, got, "got %v, want sorted", got)
		})
	}
}

func TestListPermissionsHonoursExpiry(t *testing.T) {
	set, err := Compile(tenantFx().direct("docs.read.own", true, "", t0.Add(time.Hour)).in, t0)
	require.NoError(t, err)
	assert.Equal(t, []string{"docs.read.own"}, set.ListPermissions(t0, nil))
	assert.Empty(t, set.ListPermissions(t0.Add(time.Hour), nil))
}

func TestUnmarshalSetRejectsGarbage(t *testing.T) {
	set, err := Compile(tenantFx().role("ed", "docs.*.team").assign("ed", "t1").deny("docs.write.own", "").member("t1").in, t0)
	require.NoError(t, err)
	good, err := set.MarshalBinary()
	require.NoError(t, err)
	_, err = UnmarshalSet(good)
	require.NoError(t, err)

	cases := map[string][]byte{
		"empty":          nil,
		"unknown format": append([]byte{99}, good[1:]...),
		"bad level":      append([]byte{formatSet, 0}, good[2:]...),
		"bad status":     append([]byte{formatSet, good[1], 200}, good[3:]...),
		"trailing byte":  append(append([]byte{}, good...), 0),
		"huge count":     {formatSet, 1, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
	}
	for i := 1; i < len(good); i++ {
		cases[fmt.Sprintf("truncated at %d", i)] = good[:i]
	}
	// A stored code rewritten into something that does not parse.
	if j := indexOf(good, "docs.*.team"); j >= 0 {
		bad := append([]byte{}, good...)
		bad[j] = 'D'
		cases["bad code"] = bad
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := UnmarshalSet(b)
			require.ErrorIs(t, err, ErrInvalidEncoding, "got set %v, want ErrInvalidEncoding", got)
		})
	}
}

func indexOf(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}
