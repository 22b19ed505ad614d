package adminapi

import (
	"crypto/rand"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
)

// TestTenantRegions: GET /tenants/{id}/regions names every region and registered database
// holding a tenant's data — its schema's database (the tenant's own for a database
// deployment), that database's replicas and its region's decision-log database — and is guarded like GET /tenants/{id}.
func TestTenantRegions(t *testing.T) {
	e := newEnv(t)
	eu := e.createTenant("eucorp") // eu-west-1, schema deployment, no analytics database there
	usPrimary := e.w.AddRegion(t, "us-east-1")
	usAnalytics := e.w.AddDatabase(t, "us-east-1", "us-east-1-analytics", registry.TypeAnalytics)
	usSlug := "usown-" + strings.ToLower(rand.Text()[:10]) // its database name is server-wide
	t.Cleanup(func() { pgtest.Drop(t, e.w.Server(), tenancy.DatabaseName(usSlug)) })
	r := e.do("POST", "/api/v1/admin/tenants", e.admin, map[string]any{"slug": usSlug, "region": "us-east-1",
		"deployment_type": "database", "external_auth_realm": usSlug})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var us tenancy.Tenant
	r.into(&us)

	get := func(id, token string) (*resp, tenancy.Residency) {
		r := e.do("GET", "/api/v1/admin/tenants/"+id+"/regions", token, nil)
		var out tenancy.Residency
		if r.Status == 200 {
			r.into(&out)
		}
		return r, out
	}

	r, got := get(eu.Slug, e.admin)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	euConn, err := e.w.Registry.GetConnection(t.Context(), *eu.ConnectionID)
	require.NoError(t, err)
	assert.Equal(t, tenancy.Residency{TenantID: eu.ID, Slug: "eucorp", Region: "eu-west-1", Regions: []string{"eu-west-1"},
		Databases: []tenancy.StoredIn{{Region: "eu-west-1", ConnectionID: euConn.ID, Connection: euConn.Name, Type: "primary",
			Database: euConn.Database, Schema: "t_eucorp", Holds: "rbac"}}}, got)

	// A replica of the tenant's database holds a copy of its data: it is listed too.
	r = e.do("POST", "/api/v1/admin/database-connections", e.admin, map[string]any{"name": "eu-replica", "type": "replica",
		"region": "eu-west-1", "primary": euConn.Name, "host": "replica.internal", "database": euConn.Database,
		"username": "postgres", "tls_mode": "disable"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var replica registry.Connection
	r.into(&replica)
	r, got = get(eu.Slug, e.admin)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	assert.Equal(t, []tenancy.StoredIn{
		{Region: "eu-west-1", ConnectionID: euConn.ID, Connection: euConn.Name, Type: "primary",
			Database: euConn.Database, Schema: "t_eucorp", Holds: "rbac"},
		{Region: "eu-west-1", ConnectionID: replica.ID, Connection: "eu-replica", Type: "replica",
			Database: euConn.Database, Schema: "t_eucorp", Holds: "rbac_replica"},
	}, got.Databases)

	r, got = get(us.ID, e.admin)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	assert.Equal(t, []string{"us-east-1"}, got.Regions)
	assert.Equal(t, []tenancy.StoredIn{
		{Region: "us-east-1", ConnectionID: usPrimary.ID, Connection: usPrimary.Name, Type: "primary",
			Database: tenancy.DatabaseName(usSlug), Schema: us.SchemaName, Holds: "rbac"},
		{Region: "us-east-1", ConnectionID: usAnalytics.ID, Connection: usAnalytics.Name, Type: "analytics",
			Database: usAnalytics.Database, Holds: "decision_log"},
	}, got.Databases)

	// Guarded as reading the tenant: a viewer restricted to eucorp reads its regions only.
	tok := e.platformUser("tina", "tenant_admin@"+eu.ID)
	r, _ = get(eu.ID, tok)
	assert.Equal(t, 200, r.Status, "%s", r.Body)
	r, _ = get(us.ID, tok)
	assert.Equal(t, 403, r.Status, "%s", r.Body)
	r, _ = get(eu.ID, "")
	assert.Equal(t, 401, r.Status, "%s", r.Body)
	r, _ = get("does-not-exist", e.admin)
	assert.Equal(t, 404, r.Status, "%s", r.Body)
	r, _ = get("Not_A_Slug", e.admin)
	assert.Contains(t, []int{400, 404}, r.Status, "%s", r.Body)
}
