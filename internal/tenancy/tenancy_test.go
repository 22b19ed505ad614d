package tenancy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

func unique(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func TestSchemaTenantLifecycle(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "tenancy")
	primary := w.AddRegion(t, "us-east-1")

	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme-corp", Name: "Acme", Region: "us-east-1", Realm: "acme-kc"})
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusActive, tn.Status)
	assert.Equal(t, "t_acme_corp", tn.SchemaName)
	assert.Equal(t, primary.ID, *tn.ConnectionID)
	assert.Nil(t, tn.ProvisioningError)

	db := w.Connect(t, primary, "")
	var roles, perms int
	var stateTenant string
	require.NoError(t, db.QueryRow(ctx, `SELECT (SELECT count(*) FROM t_acme_corp.roles WHERE is_system),
		(SELECT count(*) FROM t_acme_corp.permissions), (SELECT tenant_id::text FROM t_acme_corp.authz_state)`).Scan(&roles, &perms, &stateTenant))
	assert.Equal(t, 6, roles, "owner, admin, manager, member, viewer, guest")
	assert.Greater(t, perms, 100)
	assert.Equal(t, tn.ID, stateTenant, "notifications carry the tenant id")

	_, err = w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme-corp", Region: "us-east-1", Realm: "other"})
	require.ErrorIs(t, err, registry.ErrConflict)
	_, err = w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "other", Region: "us-east-1", Realm: "acme-kc"})
	require.ErrorIs(t, err, registry.ErrConflict, "a realm belongs to one tenant")

	tn, err = w.Tenants.Suspend(ctx, "acme-corp")
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusSuspended, tn.Status)
	_, err = w.Tenants.Suspend(ctx, "acme-corp")
	require.NoError(t, err, "suspending twice is harmless")
	tn, err = w.Tenants.Activate(ctx, tn.ID)
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusActive, tn.Status)

	list, total, err := w.Tenants.List(ctx, tenancy.Filter{Region: "us-east-1"})
	require.NoError(t, err)
	assert.Equal(t, 1, total)
	require.Len(t, list, 1)

	tn, err = w.Tenants.Delete(ctx, "acme-corp", false)
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusDeleted, tn.Status)
	_, err = w.Tenants.Activate(ctx, "acme-corp")
	require.ErrorIs(t, err, tenancy.ErrWrongStatus)
	var exists bool
	require.NoError(t, db.QueryRow(ctx, `SELECT to_regnamespace('t_acme_corp') IS NOT NULL`).Scan(&exists))
	assert.True(t, exists, "a soft delete keeps the data")

	_, err = w.Tenants.Delete(ctx, "acme-corp", true)
	require.NoError(t, err)
	require.NoError(t, db.QueryRow(ctx, `SELECT to_regnamespace('t_acme_corp') IS NOT NULL`).Scan(&exists))
	assert.False(t, exists, "purge drops the schema")
	_, err = w.Tenants.Get(ctx, "acme-corp")
	require.ErrorIs(t, err, registry.ErrNotFound)
}

func TestDatabaseTenant(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "tenancy")
	primary := w.AddRegion(t, "eu-west-1")
	slug := unique("db-")
	t.Cleanup(func() { pgtest.Drop(t, w.Server(), tenancy.DatabaseName(slug)) })

	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: slug, Region: "eu-west-1", Realm: slug, Deployment: tenancy.DeployDatabase})
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusActive, tn.Status)
	require.NotNil(t, tn.DatabaseName)

	own := w.Connect(t, primary, *tn.DatabaseName)
	var roles int
	require.NoError(t, own.QueryRow(ctx, `SELECT count(*) FROM `+tn.SchemaName+`.roles`).Scan(&roles))
	assert.Equal(t, 6, roles)
	var platformFn bool
	require.NoError(t, own.QueryRow(ctx, `SELECT to_regproc('platform.rbac_changed') IS NOT NULL`).Scan(&platformFn))
	assert.True(t, platformFn, "a tenant database gets the platform set too")

	_, err = w.Tenants.Delete(ctx, slug, true)
	require.NoError(t, err)
	var n int
	require.NoError(t, w.Admin.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, *tn.DatabaseName).Scan(&n))
	assert.Zero(t, n, "purge drops the tenant's database")
}

func TestFailedProvisioningStaysProvisioningAndRerunFinishes(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "tenancy")
	primary := w.AddRegion(t, "us-east-1")
	db := w.Connect(t, primary, "")
	// Something already sits where the tenant's users table goes.
	_, err := db.Exec(ctx, `CREATE SCHEMA t_acme; CREATE TABLE t_acme.users (x int)`)
	require.NoError(t, err)

	req := tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"}
	_, err = w.Tenants.Create(ctx, req)
	require.Error(t, err)
	tn, err := w.Tenants.Get(ctx, "acme")
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusProvisioning, tn.Status)
	require.NotNil(t, tn.ProvisioningError)
	assert.Contains(t, *tn.ProvisioningError, "V1__rbac.sql")

	_, err = db.Exec(ctx, `DROP TABLE t_acme.users`)
	require.NoError(t, err)
	tn, err = w.Tenants.Create(ctx, req)
	require.NoError(t, err, "rerunning finishes the provisioning")
	assert.Equal(t, tenancy.StatusActive, tn.Status)
	assert.Nil(t, tn.ProvisioningError)
}

func TestProvisioningNeverPicksAnUnhealthyDatabase(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "tenancy")
	primary := w.AddRegion(t, "us-east-1")
	_, err := w.Admin.Exec(ctx, `UPDATE admin.database_connections SET is_healthy = false WHERE id = $1`, primary.ID)
	require.NoError(t, err)
	_, err = w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"})
	require.ErrorIs(t, err, registry.ErrNotFound)
	_, err = w.Tenants.Get(ctx, "acme")
	require.ErrorIs(t, err, registry.ErrNotFound, "no tenant row is left behind")

	// A second, healthy database in the region is picked instead.
	second := w.AddDatabase(t, "us-east-1", "us-east-1-second", registry.TypePrimary)
	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"})
	require.NoError(t, err)
	assert.Equal(t, second.ID, *tn.ConnectionID)
}

func TestHostileInputIsRefused(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "tenancy")
	w.AddRegion(t, "us-east-1")
	cases := []struct {
		name  string
		req   tenancy.CreateRequest
		field string
	}{
		{"quote in slug", tenancy.CreateRequest{Slug: `acme"; DROP SCHEMA admin; --`, Region: "us-east-1", Realm: "r"}, "slug"},
		{"semicolon", tenancy.CreateRequest{Slug: "a;b", Region: "us-east-1", Realm: "r"}, "slug"},
		{"dot", tenancy.CreateRequest{Slug: "a.b", Region: "us-east-1", Realm: "r"}, "slug"},
		{"upper case", tenancy.CreateRequest{Slug: "Acme", Region: "us-east-1", Realm: "r"}, "slug"},
		{"leading dash", tenancy.CreateRequest{Slug: "-acme", Region: "us-east-1", Realm: "r"}, "slug"},
		{"too long", tenancy.CreateRequest{Slug: "a123456789012345678901234567890123456789012345678901234567890123", Region: "us-east-1", Realm: "r"}, "slug"},
		{"realm with dot", tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme.realm"}, "external_auth_realm"},
		{"realm with slash", tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "a/../b"}, "external_auth_realm"},
		{"realm upper case", tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "Acme"}, "external_auth_realm"},
		{"empty realm", tenancy.CreateRequest{Slug: "acme", Region: "us-east-1"}, "external_auth_realm"},
		{"bad deployment", tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "r", Deployment: "cluster"}, "deployment_type"},
		{"unknown region", tenancy.CreateRequest{Slug: "acme", Region: "mars-1", Realm: "r"}, "region"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.Tenants.Create(ctx, tc.req)
			var verr *registry.ValidationError
			require.ErrorAs(t, err, &verr)
			assert.Equal(t, tc.field, verr.Field)
		})
	}
	var n int
	require.NoError(t, w.Admin.QueryRow(ctx, `SELECT count(*) FROM admin.tenants`).Scan(&n))
	assert.Zero(t, n)
}
