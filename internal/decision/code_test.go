package decision

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCode(t *testing.T) {
	cases := []struct {
		name  string
		level Level
		in    string
		want  Code
		ok    bool
	}{
		{"concrete tenant", LevelTenant, "docs.read.team", Code{Level: LevelTenant, Resource: "docs", Action: "read", Scope: ScopeTeam}, true},
		{"all wildcards", LevelTenant, "*.*.*", Code{Level: LevelTenant, Resource: "*", Action: "*", Scope: ScopeAny, AnyResource: true, AnyAction: true}, true},
		{"platform tenant is middle", LevelPlatform, "tenants.read.tenant", Code{Level: LevelPlatform, Resource: "tenants", Action: "read", Scope: ScopePlatformTenant}, true},
		{"tenant tenant is top", LevelTenant, "x.y.tenant", Code{Level: LevelTenant, Resource: "x", Action: "y", Scope: ScopeTenant}, true},
		{"digits dash underscore", LevelTenant, "a_1.b-2.own", Code{Level: LevelTenant, Resource: "a_1", Action: "b-2", Scope: ScopeOwn}, true},
		{"partial wildcard", LevelTenant, "do*.read.own", Code{}, false},
		{"other level scope", LevelTenant, "x.y.platform", Code{}, false},
		{"other level scope at platform", LevelPlatform, "x.y.team", Code{}, false},
		{"two segments", LevelTenant, "x.y", Code{}, false},
		{"four segments", LevelTenant, "x.y.own.z", Code{}, false},
		{"uppercase", LevelTenant, "X.y.own", Code{}, false},
		{"space", LevelTenant, "x .y.own", Code{}, false},
		{"empty", LevelTenant, "", Code{}, false},
		{"invalid level", Level(0), "x.y.own", Code{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCode(tc.level, tc.in)
			if !tc.ok {
				require.ErrorIs(t, err, ErrInvalidCode, "got %+v, want ErrInvalidCode", got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got, "got %+v, want %+v", got, tc.want)
			assert.Equal(t, tc.in, got.String(), "got %q, want %q", got.String(), tc.in)
		})
	}
}

func TestParseRequest(t *testing.T) {
	cases := []struct {
		name     string
		level    Level
		in       string
		r, a     string
		scope    Scope
		hasScope bool
		ok       bool
	}{
		{"code check", LevelTenant, "docs.read.own", "docs", "read", ScopeOwn, true, true},
		{"resource check", LevelTenant, "docs.read", "docs", "read", ScopeNone, false, true},
		{"platform scope", LevelPlatform, "t.r.platform", "t", "r", ScopePlatform, true, true},
		{"wildcard", LevelTenant, "docs.*.own", "", "", ScopeNone, false, false},
		{"wildcard scope", LevelTenant, "docs.read.*", "", "", ScopeNone, false, false},
		{"other level", LevelPlatform, "docs.read.own", "", "", ScopeNone, false, false},
		{"unknown scope", LevelTenant, "docs.read.all", "", "", ScopeNone, false, false},
		{"one segment", LevelTenant, "docs", "", "", ScopeNone, false, false},
		{"trailing dot", LevelTenant, "docs.read.", "", "", ScopeNone, false, false},
		{"four segments", LevelTenant, "a.b.own.d", "", "", ScopeNone, false, false},
		{"invalid level", Level(7), "a.b", "", "", ScopeNone, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, a, sc, has, err := ParseRequest(tc.level, tc.in)
			if !tc.ok {
				require.ErrorIs(t, err, ErrInvalidRequest, "got %q %q, want ErrInvalidRequest", r, a)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, []any{tc.r, tc.a, tc.scope, tc.hasScope}, []any{r, a, sc, has}, "got %q %q %v %v", r, a, sc, has)
		})
	}
}

func TestParseRequestDoesNotAllocate(t *testing.T) {
	for _, s := range []string{"docs.read.own", "docs.read", "docs.*.own", "Docs"} {
		allocs := testing.AllocsPerRun(100, func() { _, _, _, _, _ = ParseRequest(LevelTenant, s) })
		assert.Zero(t, allocs, "%q: got %v allocs, want 0", s, allocs)
	}
}

func TestReasonAndScopeNames(t *testing.T) {
	assert.Equal(t, "explicit deny", ReasonExplicitDeny.String())
	assert.Equal(t, "invalid reason", Reason(200).String())
	assert.Equal(t, "team", ScopeTeam.Name(LevelTenant))
	assert.Equal(t, "tenant", ScopePlatformTenant.Name(LevelPlatform))
	assert.Empty(t, Scope(9).Name(LevelTenant))
	assert.Equal(t, "invalid", Level(0).String())
}
