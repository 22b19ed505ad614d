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

	tn, err = w.Tenants.Delete(ctx, "acme-corp", tenancy.DeleteOptions{})
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusDeleted, tn.Status)
	_, err = w.Tenants.Activate(ctx, "acme-corp")
	require.ErrorIs(t, err, tenancy.ErrWrongStatus)
	var exists bool
	require.NoError(t, db.QueryRow(ctx, `SELECT to_regnamespace('t_acme_corp') IS NOT NULL`).Scan(&exists))
	assert.True(t, exists, "a soft delete keeps the data")

	_, err = w.Tenants.Delete(ctx, "acme-corp", tenancy.DeleteOptions{Purge: true})
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

	_, err = w.Tenants.Delete(ctx, slug, tenancy.DeleteOptions{Purge: true})
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
	// Something that is not the tenant's already sits where its schema goes.
	_, err := db.Exec(ctx, `CREATE SCHEMA t_acme; CREATE TABLE t_acme.users (x int)`)
	require.NoError(t, err)

	req := tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"}
	_, err = w.Tenants.Create(ctx, req)
	require.Error(t, err)
	tn, err := w.Tenants.Get(ctx, "acme")
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusProvisioning, tn.Status)
	require.NotNil(t, tn.ProvisioningError)
	assert.Contains(t, *tn.ProvisioningError, "is not this tenant's")

	_, err = db.Exec(ctx, `DROP SCHEMA t_acme CASCADE`)
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

// Two 63-character slugs that differ only at the end must never share a schema: the second
// tenant must not inherit the first's data, and purging the first must leave the second alone.
func TestLongSlugsNeverShareStorage(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "tenancy")
	primary := w.AddRegion(t, "us-east-1")
	db := w.Connect(t, primary, "")
	long := "a123456789012345678901234567890123456789012345678901234567890"
	first, second := long+"-1", long+"-2"
	require.Len(t, first, 63)

	a, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: first, Region: "us-east-1", Realm: "first"})
	require.NoError(t, err)
	_, err = db.Exec(ctx, `INSERT INTO `+a.SchemaName+`.users (external_id) VALUES ('alice')`)
	require.NoError(t, err)
	_, err = w.Tenants.Delete(ctx, a.ID, tenancy.DeleteOptions{})
	require.NoError(t, err)

	b, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: second, Region: "us-east-1", Realm: "second"})
	require.NoError(t, err)
	assert.NotEqual(t, a.SchemaName, b.SchemaName, "got one schema for two tenants")
	var users int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM `+b.SchemaName+`.users`).Scan(&users))
	assert.Zero(t, users, "the new tenant must not see the old tenant's users")

	_, err = w.Tenants.Delete(ctx, a.ID, tenancy.DeleteOptions{Purge: true})
	require.NoError(t, err)
	var exists bool
	require.NoError(t, db.QueryRow(ctx, `SELECT to_regnamespace($1) IS NOT NULL`, b.SchemaName).Scan(&exists))
	assert.True(t, exists, "purging the old tenant dropped the new tenant's schema")

	assert.NotEqual(t, tenancy.DatabaseName(first), tenancy.DatabaseName(second))
	for _, n := range []string{tenancy.SchemaName(first), tenancy.DatabaseName(first), tenancy.SchemaName("acme")} {
		assert.LessOrEqual(t, len(n), 63, n)
		assert.Regexp(t, `^[a-z_][a-z0-9_]{0,62}$`, n)
	}
	assert.Equal(t, "t_acme_corp", tenancy.SchemaName("acme-corp"), "a slug that fits is kept")
}

// A schema or database name stays with its tenant while the tenant's row exists, deleted or
// not: no other row may record it.
func TestStorageNamesAreUniqueAcrossDeletedTenants(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "tenancy")
	w.AddRegion(t, "us-east-1")
	a, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"})
	require.NoError(t, err)
	_, err = w.Tenants.Delete(ctx, a.ID, tenancy.DeleteOptions{})
	require.NoError(t, err)
	_, err = w.Admin.Exec(ctx, `INSERT INTO admin.tenants (slug, name, deployment_type, region_code, database_connection_id, schema_name, external_auth_realm)
		VALUES ('other', 'other', 'schema', 'us-east-1', $1, $2, 'other')`, *a.ConnectionID, a.SchemaName)
	require.Error(t, err, "a deleted tenant's schema name was given to another tenant")
}

func TestProvisioningRefusesAnExistingSchemaOrDatabase(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "tenancy")
	primary := w.AddRegion(t, "us-east-1")
	db := w.Connect(t, primary, "")
	_, err := db.Exec(ctx, `CREATE SCHEMA `+tenancy.SchemaName("acme")+`; CREATE TABLE `+tenancy.SchemaName("acme")+`.precious (x int)`)
	require.NoError(t, err)
	_, err = w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"})
	require.ErrorIs(t, err, registry.ErrConflict)
	tn, err := w.Tenants.Get(ctx, "acme")
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusProvisioning, tn.Status)
	var users bool
	require.NoError(t, db.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, tn.SchemaName+".users").Scan(&users))
	assert.False(t, users, "nothing may be migrated into a schema the tenant does not own")

	slug := unique("db-")
	dbName := tenancy.DatabaseName(slug)
	t.Cleanup(func() { pgtest.Drop(t, w.Server(), dbName) })
	_, err = w.Admin.Exec(ctx, `CREATE DATABASE `+dbName)
	require.NoError(t, err)
	_, err = w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: slug, Region: "us-east-1", Realm: slug, Deployment: tenancy.DeployDatabase})
	require.ErrorIs(t, err, registry.ErrConflict)
	// The purge of the tenant left provisioning must not drop the database it never owned.
	_, err = w.Tenants.Delete(ctx, slug, tenancy.DeleteOptions{Purge: true})
	require.Error(t, err)
	var n int
	require.NoError(t, w.Admin.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, dbName).Scan(&n))
	assert.Equal(t, 1, n, "purge dropped a database the tenant does not own")
}

func TestPurgeDropsOnlyWhatTheTenantOwns(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "tenancy")
	primary := w.AddRegion(t, "us-east-1")
	db := w.Connect(t, primary, "")
	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"})
	require.NoError(t, err)
	_, err = db.Exec(ctx, `CREATE SCHEMA someone_else`)
	require.NoError(t, err)
	_, err = w.Admin.Exec(ctx, `UPDATE admin.tenants SET schema_name = 'someone_else' WHERE id = $1`, tn.ID)
	require.NoError(t, err)
	_, err = w.Tenants.Delete(ctx, tn.ID, tenancy.DeleteOptions{Purge: true})
	require.Error(t, err)
	var exists bool
	require.NoError(t, db.QueryRow(ctx, `SELECT to_regnamespace('someone_else') IS NOT NULL`).Scan(&exists))
	assert.True(t, exists, "purge dropped a schema the tenant does not own")
}

func TestResumedProvisioningKeepsItsOwnSchema(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "tenancy")
	w.AddRegion(t, "us-east-1")
	req := tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"}
	tn, err := w.Tenants.Create(ctx, req)
	require.NoError(t, err)
	_, err = w.Admin.Exec(ctx, `UPDATE admin.tenants SET status = 'provisioning' WHERE id = $1`, tn.ID)
	require.NoError(t, err)
	tn, err = w.Tenants.Create(ctx, req)
	require.NoError(t, err, "a rerun continues in the schema the tenant created")
	assert.Equal(t, tenancy.StatusActive, tn.Status)
}

func TestSlugAndRealmThatWouldBeAmbiguousAreRefused(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "tenancy")
	w.AddRegion(t, "us-east-1")
	w.Tenants.PlatformRealm = "Platform"
	_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "0b9f5a3e-2c1d-4e8f-9a7b-6c5d4e3f2a1b", Region: "us-east-1", Realm: "r"})
	var verr *registry.ValidationError
	require.ErrorAs(t, err, &verr, "a slug shaped like a uuid")
	assert.Equal(t, "slug", verr.Field)
	_, err = w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "platform"})
	require.ErrorAs(t, err, &verr, "the platform realm")
	assert.Equal(t, "external_auth_realm", verr.Field)

	_, err = w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"})
	require.NoError(t, err)
	// Realms are compared case-insensitively, even for rows written past the API's grammar.
	_, err = w.Admin.Exec(ctx, `ALTER TABLE admin.tenants DROP CONSTRAINT tenants_external_auth_realm_check`)
	require.NoError(t, err)
	_, err = w.Admin.Exec(ctx, `INSERT INTO admin.tenants (slug, name, deployment_type, region_code, schema_name, external_auth_realm)
		VALUES ('other', 'other', 'schema', 'us-east-1', 't_other', 'ACME')`)
	require.Error(t, err, "a realm differing only in case from another tenant's")
}
