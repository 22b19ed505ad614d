package pgstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
)

func adminVersion(tb testing.TB, e *env) uint64 {
	tb.Helper()
	var v int64
	require.NoError(tb, e.w.Admin.QueryRow(context.Background(), `SELECT version FROM admin.authz_state`).Scan(&v))
	return uint64(v)
}

func TestTenant(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	tn, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "acme", Realm: "acme-kc"})

	want := pgstore.Tenant{ID: tn.ID, Slug: "acme", Status: "active", Realm: "acme-kc", SchemaName: "t_acme",
		ConnectionID: e.primary.ID, Region: region, DatabaseRegion: region, AdminVersion: adminVersion(t, e)}
	for _, key := range []string{"acme", tn.ID, strings.ToUpper(tn.ID)} {
		got, err := e.store.Tenant(ctx, key)
		require.NoError(t, err, key)
		assert.Equal(t, want, got, "by %q", key)
	}

	for _, key := range []string{"nope", newUUID(), "", "'; DROP TABLE admin.tenants; --"} {
		_, err := e.store.Tenant(ctx, key)
		require.ErrorIs(t, err, pgstore.ErrNotFound, "by %q", key)
	}

	// A slug that reads as a uuid (refused at creation now, but a row written before may hold
	// one) names a tenant; the id of another tenant still wins.
	uuidSlug := newUUID()
	other, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "legacy", Realm: "uuid-slug"})
	_, err := e.w.Admin.Exec(ctx, `UPDATE admin.tenants SET slug = $1 WHERE id = $2`, uuidSlug, other.ID)
	require.NoError(t, err)
	got, err := e.store.Tenant(ctx, uuidSlug)
	require.NoError(t, err)
	assert.Equal(t, other.ID, got.ID)
	_, err = e.w.Admin.Exec(ctx, `UPDATE admin.tenants SET slug = $1 WHERE id = $2`, tn.ID, other.ID)
	require.NoError(t, err)
	got, err = e.store.Tenant(ctx, tn.ID)
	require.NoError(t, err)
	assert.Equal(t, "acme", got.Slug, "got the tenant whose slug is the id, want the one whose id it is")

	before := got.AdminVersion
	_, err = e.w.Tenants.Delete(ctx, "acme", tenancy.DeleteOptions{})
	require.NoError(t, err)
	got, err = e.store.Tenant(ctx, "acme")
	require.NoError(t, err, "a deleted tenant is returned, for the caller to deny")
	assert.Equal(t, tenancy.StatusDeleted, got.Status)
	assert.Greater(t, got.AdminVersion, before, "a status change bumps the admin version")
	assert.Equal(t, adminVersion(t, e), got.AdminVersion)
	v, err := e.store.AdminVersion(ctx)
	require.NoError(t, err)
	assert.Equal(t, got.AdminVersion, v)
}

func TestResolveRealm(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	active, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "alpha", Realm: "alpha-realm"})
	paused, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "beta", Realm: "beta-realm"})
	gone, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "gamma", Realm: "gamma-realm"})
	_, err := e.w.Tenants.Suspend(ctx, paused.ID)
	require.NoError(t, err)
	_, err = e.w.Tenants.Delete(ctx, gone.ID, tenancy.DeleteOptions{})
	require.NoError(t, err)
	_, err = e.w.Admin.Exec(ctx, `UPDATE admin.tenants SET settings = '{"audiences": ["app-a", "app-b", 7, null], "clients": ["web", {"x": 1}, "mobile"]}' WHERE id = $1`, active.ID)
	require.NoError(t, err)
	_, err = e.w.Admin.Exec(ctx, `UPDATE admin.tenants SET settings = '{"audiences": "not-a-list", "clients": "web"}' WHERE id = $1`, paused.ID)
	require.NoError(t, err)

	for _, tc := range []struct {
		name  string
		realm string
		want  authn.TenantRealm
		err   error
	}{
		{"active with audiences and clients", "alpha-realm", authn.TenantRealm{TenantID: active.ID, Slug: "alpha", Status: "active",
			Audiences: []string{"app-a", "app-b"}, Clients: []string{"web", "mobile"}}, nil},
		{"suspended passes its status through", "beta-realm", authn.TenantRealm{TenantID: paused.ID, Slug: "beta", Status: "suspended"}, nil},
		{"deleted is not found", "gamma-realm", authn.TenantRealm{}, authn.ErrRealmNotFound},
		{"unknown", "delta-realm", authn.TenantRealm{}, authn.ErrRealmNotFound},
		{"a slug is not a realm", "alpha", authn.TenantRealm{}, authn.ErrRealmNotFound},
	} {
		for name, resolver := range map[string]authn.RealmResolver{"query": e.store, "index": pgstore.NewRealmIndex(e.store)} {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				got, err := resolver.ResolveRealm(ctx, tc.realm)
				if tc.err != nil {
					require.ErrorIs(t, err, tc.err)
					return
				}
				require.NoError(t, err)
				assert.Equal(t, tc.want, got)
			})
		}
	}
}

func TestRealmIndexFollowsInvalidation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	tn, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "alpha", Realm: "alpha-realm"})
	idx := pgstore.NewRealmIndex(e.store)
	idx.MaxAge = time.Hour
	got, err := idx.ResolveRealm(ctx, "alpha-realm")
	require.NoError(t, err)
	assert.Equal(t, "active", got.Status)

	_, err = e.w.Tenants.Suspend(ctx, tn.ID)
	require.NoError(t, err)
	_, err = e.w.Admin.Exec(ctx, `UPDATE admin.tenants SET external_auth_realm = 'alpha-new' WHERE id = $1`, tn.ID)
	require.NoError(t, err)
	got, err = idx.ResolveRealm(ctx, "alpha-realm")
	require.NoError(t, err)
	assert.Equal(t, "active", got.Status, "the copy is kept until invalidated")

	idx.Invalidate()
	_, err = idx.ResolveRealm(ctx, "alpha-realm")
	require.ErrorIs(t, err, authn.ErrRealmNotFound, "the realm moved")
	got, err = idx.ResolveRealm(ctx, "alpha-new")
	require.NoError(t, err)
	assert.Equal(t, "suspended", got.Status)

	// Without invalidations, MaxAge bounds the copy.
	idx.MaxAge = time.Nanosecond
	_, err = e.w.Tenants.Activate(ctx, tn.ID)
	require.NoError(t, err)
	got, err = idx.ResolveRealm(ctx, "alpha-new")
	require.NoError(t, err)
	assert.Equal(t, "active", got.Status)
}

func TestDatabaseVersions(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	var tenants []pgstore.Tenant
	var db = e.w.Connect(t, e.primary, "")
	for i := range 3 {
		tn, _ := e.createTenant(t, tenancy.CreateRequest{Slug: fmt.Sprintf("dv-%d", i), Realm: fmt.Sprintf("dv-%d", i)})
		tenants = append(tenants, tn)
	}
	// Different versions per tenant.
	for i, tn := range tenants {
		for range i {
			_, err := db.Exec(ctx, `INSERT INTO `+table(tn.SchemaName, "users")+` (external_id) VALUES ($1)`, unique("u"))
			require.NoError(t, err)
		}
	}
	deleted, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "dv-deleted", Realm: "dv-deleted"})
	_, err := e.w.Tenants.Delete(ctx, deleted.ID, tenancy.DeleteOptions{})
	require.NoError(t, err)
	// A tenant still provisioning whose schema does not exist yet is skipped, not an error.
	_, err = e.w.Admin.Exec(ctx, `INSERT INTO admin.tenants (slug, name, status, deployment_type, region_code,
		database_connection_id, schema_name, external_auth_realm) VALUES ('dv-ghost', 'ghost', 'provisioning', 'schema', $1, $2, 't_dv_ghost', 'dv-ghost')`,
		region, e.primary.ID)
	require.NoError(t, err)

	want := map[string]uint64{}
	for _, tn := range tenants {
		want[tn.ID] = stateVersion(t, db, tn.SchemaName)
	}
	for _, database := range []string{"", e.primary.Database} {
		for _, conn := range []string{e.primary.ID, e.primary.Name} {
			got, err := e.store.DatabaseVersions(ctx, conn, database)
			require.NoError(t, err)
			assert.Equal(t, want, got, "connection %q database %q", conn, database)
		}
	}
	assert.NotEqual(t, want[tenants[0].ID], want[tenants[2].ID], "the tenants' versions differ")

	_, err = db.Exec(ctx, `INSERT INTO `+table(tenants[1].SchemaName, "users")+` (external_id) VALUES ('late')`)
	require.NoError(t, err)
	got, err := e.store.DatabaseVersions(ctx, e.primary.ID, "")
	require.NoError(t, err)
	assert.Greater(t, got[tenants[1].ID], want[tenants[1].ID])
	v, err := e.store.TenantVersion(ctx, tenants[1])
	require.NoError(t, err)
	assert.Equal(t, v, got[tenants[1].ID])

	got, err = e.store.DatabaseVersions(ctx, newUUID(), "")
	require.NoError(t, err)
	assert.Empty(t, got, "an unknown connection holds no tenant")
}

func TestCatalog(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	tn, db := e.createTenant(t, tenancy.CreateRequest{Slug: "cat", Realm: "cat"})
	got, err := e.store.Catalog(ctx, tn)
	require.NoError(t, err)
	rows, err := db.Query(ctx, `SELECT code FROM `+table(tn.SchemaName, "permissions"))
	require.NoError(t, err)
	var all []string
	for rows.Next() {
		var c string
		require.NoError(t, rows.Scan(&c))
		all = append(all, c)
	}
	require.NoError(t, rows.Err())
	var want []string
	for _, c := range all {
		if !strings.Contains(c, "*") {
			want = append(want, c)
		}
	}
	slices.Sort(want)
	assert.Equal(t, want, got)
	assert.Contains(t, got, "documents.read.own")
	assert.Less(t, len(got), len(all), "the default catalog has wildcards to leave out")

	plat, err := e.store.PlatformCatalog(ctx)
	require.NoError(t, err)
	assert.True(t, slices.IsSorted(plat), "platform catalog sorted")
	assert.Contains(t, plat, "tenants.read.platform")
	for _, c := range plat {
		assert.NotContains(t, c, "*")
	}
}

func TestPool(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{RecheckInterval: time.Millisecond})
	spare := e.w.AddDatabase(t, region, "spare", registry.TypeBackup)
	idle := e.w.AddDatabase(t, region, "idle", registry.TypeBackup)

	p1, err := e.store.Pool(ctx, spare.ID, "")
	require.NoError(t, err)
	_, err = e.store.Pool(ctx, spare.Name, "")
	require.NoError(t, err, "by name")
	p3, err := e.store.Pool(ctx, spare.ID, "")
	require.NoError(t, err)
	assert.Same(t, p1, p3, "cached per (connection, database)")

	var readOnly string
	require.NoError(t, p1.QueryRow(ctx, `SHOW default_transaction_read_only`).Scan(&readOnly))
	assert.Equal(t, "on", readOnly, "the pdp's sessions are read-only")
	_, err = p1.Exec(ctx, `CREATE TABLE nope (id int)`)
	require.Error(t, err, "a write on a Store pool")

	_, err = e.store.Pool(ctx, newUUID(), "")
	require.ErrorIs(t, err, registry.ErrNotFound)
	_, err = e.store.Pool(ctx, spare.ID, `x"; DROP DATABASE postgres; --`)
	require.ErrorIs(t, err, pgstore.ErrInvalidSchemaName)

	_, err = e.w.Registry.Deactivate(ctx, idle.ID)
	require.NoError(t, err)
	_, err = e.store.Pool(ctx, idle.ID, "")
	require.ErrorIs(t, err, pgstore.ErrConnectionInactive, "never opened")

	// Deactivated after it was opened: the background recheck drops the pool.
	_, err = e.w.Registry.Deactivate(ctx, spare.ID)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := e.store.Pool(ctx, spare.ID, "")
		return err != nil
	}, 5*time.Second, 5*time.Millisecond, "got a pool, want ErrConnectionInactive after the recheck")
	_, err = e.store.Pool(ctx, spare.ID, "")
	require.ErrorIs(t, err, pgstore.ErrConnectionInactive)

	e.store.Close()
	_, err = e.store.Pool(ctx, e.primary.ID, "")
	require.ErrorIs(t, err, pgstore.ErrClosed)
}

func TestConcurrentLoads(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{MaxConnsPerDatabase: 4})
	tn, db := e.createTenant(t, tenancy.CreateRequest{Slug: "busy", Realm: "busy"})
	_, err := db.Exec(ctx, `INSERT INTO `+table(tn.SchemaName, "users")+` (external_id) SELECT 'u' || g FROM generate_series(1, 20) g`)
	require.NoError(t, err)
	version := stateVersion(t, db, tn.SchemaName)

	var wg sync.WaitGroup
	errs := make(chan error, 32*20)
	for g := range 32 {
		wg.Go(func() {
			for i := range 20 {
				ext := fmt.Sprintf("u%d", 1+(g+i)%25) // some unknown
				in, err := e.store.LoadTenantUser(ctx, tn, ext)
				if err != nil {
					errs <- err
					continue
				}
				if in.Version != version {
					errs <- fmt.Errorf("%s: version: got %d, want %d", ext, in.Version, version)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	pool, err := e.store.Pool(ctx, tn.ConnectionID, tn.Database)
	require.NoError(t, err)
	assert.LessOrEqual(t, pool.Stat().TotalConns(), int32(4), "MaxConnsPerDatabase")
}
