package admincli

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// TestTenantRegionsCommand: `admin tenant regions SLUG` prints the regions and databases holding
// the tenant's data, as a table or as JSON.
func TestTenantRegionsCommand(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "admincli")
	primary := w.AddRegion(t, "eu-west-1")
	analytics := w.AddDatabase(t, "eu-west-1", "eu-west-1-analytics", registry.TypeAnalytics)
	_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "eu-west-1", Realm: "acme"})
	require.NoError(t, err)

	env, out := cliEnv(w, nil)
	require.NoError(t, Run(ctx, []string{"tenant", "regions", "acme"}, env))
	assert.Contains(t, out.String(), "tenant acme (region eu-west-1): data in eu-west-1")
	assert.Regexp(t, `eu-west-1\s+eu-west-1-primary\s+primary\s+`+primary.Database+`\s+t_acme\s+rbac`, out.String())
	assert.Regexp(t, `eu-west-1\s+eu-west-1-analytics\s+analytics\s+`+analytics.Database+`\s+decision_log`, out.String())

	env, out = cliEnv(w, nil)
	require.NoError(t, Run(ctx, []string{"tenant", "regions", "acme", "--output", "json"}, env))
	var r tenancy.Residency
	require.NoError(t, json.Unmarshal([]byte(out.String()), &r))
	assert.Equal(t, []string{"eu-west-1"}, r.Regions)
	require.Len(t, r.Databases, 2)
	assert.Equal(t, tenancy.HoldsRBAC, r.Databases[0].Holds)

	env, _ = cliEnv(w, nil)
	require.ErrorIs(t, Run(ctx, []string{"tenant", "regions"}, env), ErrUsage)
	require.ErrorIs(t, Run(ctx, []string{"tenant", "regions", "nope"}, env), registry.ErrNotFound)
}
