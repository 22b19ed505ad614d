package pgstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// TestStoreServesOnlyItsRegions: two regions, each with a database of its own on the server; a
// Store limited to eu-west-1 reads the US tenant's directory entry (admin database) but
// refuses every read of its data before connecting, and the US databases (the region's
// primary and a database-per-tenant tenant's own) see no connection at all.
func TestStoreServesOnlyItsRegions(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "pgstore")
	eu := w.AddRegion(t, "eu-west-1")
	us := w.AddRegion(t, "us-east-1")
	create := func(slug, region, deployment string) {
		_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: slug, Region: region, Realm: slug, Deployment: deployment})
		require.NoError(t, err)
	}
	create("eucorp", "eu-west-1", tenancy.DeploySchema)
	create("uscorp", "us-east-1", tenancy.DeploySchema)
	usOwn := unique("usown-") // its database's name is server-wide
	t.Cleanup(func() { pgtest.Drop(t, w.Server(), tenancy.DatabaseName(usOwn)) })
	create(usOwn, "us-east-1", tenancy.DeployDatabase)

	regions, err := registry.ParseRegions("eu-west-1")
	require.NoError(t, err)
	st := pgstore.New(w.Admin, w.Registry, pgstore.Options{Regions: regions})
	t.Cleanup(st.Close)

	euT, err := st.Tenant(ctx, "eucorp")
	require.NoError(t, err)
	usT, err := st.Tenant(ctx, "uscorp")
	require.NoError(t, err)
	ownT, err := st.Tenant(ctx, usOwn)
	require.NoError(t, err)
	assert.Equal(t, "eu-west-1", euT.Region)
	assert.Equal(t, "eu-west-1", euT.DatabaseRegion)
	assert.Equal(t, "us-east-1", usT.Region)
	assert.Equal(t, "us-east-1", usT.DatabaseRegion)
	assert.True(t, euT.ServedBy(regions))
	assert.False(t, usT.ServedBy(regions))
	assert.False(t, ownT.ServedBy(regions))
	assert.True(t, usT.ServedBy(registry.Regions{}), "an unlimited store serves every region")
	require.NotEmpty(t, ownT.Database)

	usDatabases := []string{us.Database, ownT.Database}
	for _, db := range usDatabases {
		w.WaitNoBackends(t, db) // provisioning's connections are gone
	}

	_, err = st.LoadTenantUser(ctx, euT, "nobody")
	require.NoError(t, err, "the served region loads")

	for _, tn := range []pgstore.Tenant{usT, ownT} {
		_, err = st.LoadTenantUser(ctx, tn, "nobody")
		require.ErrorIs(t, err, pgstore.ErrRegionNotServed, "load of %s", tn.Slug)
		_, err = st.TenantVersion(ctx, tn)
		require.ErrorIs(t, err, pgstore.ErrRegionNotServed, "version of %s", tn.Slug)
		_, err = st.Catalog(ctx, tn)
		require.ErrorIs(t, err, pgstore.ErrRegionNotServed, "catalog of %s", tn.Slug)
		_, _, err = st.TenantUserByEmail(ctx, tn, "a@example.com")
		require.ErrorIs(t, err, pgstore.ErrRegionNotServed, "directory of %s", tn.Slug)
		_, err = st.DatabaseVersions(ctx, us.ID, tn.Database)
		require.ErrorIs(t, err, pgstore.ErrRegionNotServed, "versions of %s", tn.Slug)
		_, err = st.Pool(ctx, us.ID, tn.Database)
		require.ErrorIs(t, err, pgstore.ErrRegionNotServed, "pool of %s", tn.Slug)
	}
	// Every refusal came before a connection: the US databases never saw this Store.
	for _, db := range usDatabases {
		assert.Zero(t, w.Backends(t, db), "connections to %s", db)
	}
	assert.Positive(t, w.Backends(t, eu.Database), "the EU load did connect (the count sees the Store's connections)")
}
