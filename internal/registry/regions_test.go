package registry_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/testenv"
)

func TestParseRegions(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		all      bool
	}{
		{"", "", true},
		{"   ", "", true},
		{"eu-west-1", "eu-west-1", false},
		{" eu-west-1 , eu-central-1,eu-west-1", "eu-central-1,eu-west-1", false},
	} {
		r, err := registry.ParseRegions(tc.in)
		require.NoError(t, err, "%q", tc.in)
		assert.Equal(t, tc.want, r.String(), "%q: got %q, want %q", tc.in, r.String(), tc.want)
		assert.Equal(t, tc.all, r.All(), "%q", tc.in)
	}
	long := strings.Repeat("a", 64)
	for _, bad := range []string{"EU-WEST-1", "eu_west_1", "eu-west-1,", ",eu-west-1", "eu-west-1,,us-east-1", "-eu",
		"eu-", long, "eu west", "eu-west-1;drop", strings.Repeat("a,", registry.MaxServedRegions) + "a"} {
		_, err := registry.ParseRegions(bad)
		require.Error(t, err, "%q must be refused", bad)
		assert.NotContains(t, err.Error(), long, "the error must not echo a long value")
	}

	eu, err := registry.ParseRegions("eu-west-1,eu-central-1")
	require.NoError(t, err)
	assert.True(t, eu.Serves("eu-west-1"))
	assert.True(t, eu.Serves("eu-central-1"))
	assert.False(t, eu.Serves("us-east-1"))
	assert.False(t, eu.Serves(""), "an unknown region is never served by a limited pdp")
	assert.True(t, registry.Regions{}.Serves("us-east-1"), "the zero value serves every region")
	assert.Equal(t, []string{"eu-central-1", "eu-west-1"}, eu.Codes())
}

func TestCheckServedRegions(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "registry")
	for _, code := range []string{"eu-west-1", "us-east-1"} {
		_, err := w.Registry.CreateRegion(ctx, registry.Region{Code: code})
		require.NoError(t, err)
	}
	_, err := w.Admin.Exec(ctx, `UPDATE admin.regions SET is_active = false WHERE code = 'us-east-1'`)
	require.NoError(t, err)

	check := func(list string) ([]string, error) {
		r, err := registry.ParseRegions(list)
		require.NoError(t, err)
		return w.Registry.CheckServedRegions(ctx, r)
	}
	inactive, err := check("")
	require.NoError(t, err)
	assert.Empty(t, inactive)

	inactive, err = check("eu-west-1")
	require.NoError(t, err)
	assert.Empty(t, inactive)

	inactive, err = check("eu-west-1,us-east-1")
	require.NoError(t, err)
	assert.Equal(t, []string{"us-east-1"}, inactive, "an inactive region is reported, not refused")

	_, err = check("eu-west-1,eu-west-2,ap-south-1")
	require.ErrorIs(t, err, registry.ErrUnknownRegion)
	assert.Contains(t, err.Error(), "ap-south-1, eu-west-2", "the error names every unknown code")
}
