package pgstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
)

func TestParsePoolers(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     pgstore.Poolers
		wantErr  string
	}{
		{name: "empty", in: "", want: pgstore.Poolers{}},
		{name: "two", in: " eu-1=pgb-eu:6432 , us-1=10.0.0.7:6432", want: pgstore.Poolers{"eu-1": "pgb-eu:6432", "us-1": "10.0.0.7:6432"}},
		{name: "ipv6", in: "eu-1=[::1]:6432", want: pgstore.Poolers{"eu-1": "[::1]:6432"}},
		{name: "no address", in: "eu-1", wantErr: "<connection name>=<host>:<port>"},
		{name: "bad name", in: "EU_1=pgb:6432", wantErr: "<connection name>=<host>:<port>"},
		{name: "no port", in: "eu-1=pgb", wantErr: "is not <host>:<port>"},
		{name: "bad host", in: "eu-1=pg/b@x:6432", wantErr: "is not <host>:<port>"},
		{name: "port range", in: "eu-1=pgb:70000", wantErr: "between 1 and 65535"},
		{name: "twice", in: "eu-1=a:1,eu-1=b:2", wantErr: "given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pgstore.ParsePoolers(tc.in)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			again, err := pgstore.ParsePoolers(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, again, "String reads back")
		})
	}
}

// readOnly is the pgbouncer database setting docs/scale.md gives for the pdp's PgBouncer.
const readOnly = "connect_query='SET default_transaction_read_only = on'"

// pooledStore returns a Store whose loads, admin database included, go through b.
func pooledStore(t *testing.T, e *env, b *pgtest.PgBouncer, maxConns int32) *pgstore.Store {
	t.Helper()
	admin, err := pgstore.NewAdminPool(context.Background(), b.URL(e.w.Admin.Config().ConnConfig.Database), maxConns, true)
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	st := pgstore.New(admin, registry.New(admin, nil), pgstore.Options{
		MaxConnsPerDatabase: maxConns,
		Poolers:             pgstore.Poolers{e.primary.Name: b.Addr()},
		// The default 2s counts the wait for a pooled connection: 48 clients queueing for a
		// pool of 3 on a busy machine wait longer, and these tests are about bounds, not time.
		QueryTimeout: 30 * time.Second,
	})
	t.Cleanup(st.Close)
	return st
}

// TestLoadsThroughPgBouncer runs every read the pdp makes through a PgBouncer in transaction
// pooling mode (no server-side prepared statements survive there) and compares it with the
// same read made directly: the same facts, the same decisions, the same versions.
func TestLoadsThroughPgBouncer(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	b := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{PoolSize: 2, DatabaseParams: readOnly})
	pooled := pooledStore(t, e, b, 2)

	tn, db := e.createTenant(t, tenancy.CreateRequest{Slug: "pgb", Realm: "pgb"})
	now := time.Now()
	w := generate(tn.SchemaName, 7, 30, now)
	w.insert(t, db)
	version := stateVersion(t, db, tn.SchemaName)

	viaPooler, err := pooled.Tenant(ctx, tn.ID)
	require.NoError(t, err)
	require.Equal(t, tn, viaPooler, "tenant read through the pooler")
	// Each read twice: a statement pgx had prepared on one server connection would fail on
	// the next, which PgBouncer may hand out for the second.
	for range 2 {
		for _, u := range w.users {
			direct, err := e.store.LoadTenantUser(ctx, tn, u.ext)
			require.NoError(t, err)
			got, err := pooled.LoadTenantUser(ctx, tn, u.ext)
			require.NoError(t, err)
			require.Equal(t, version, got.Version, "%s: version: got %d, want %d", u.ext, got.Version, version)
			assert.Equal(t, normalize(direct), normalize(got), "%s: loaded input", u.ext)
			sameDecisions(t, u.ext, got, direct, now, requests(u.ext, w.teams))
		}
		v, err := pooled.TenantVersion(ctx, tn)
		require.NoError(t, err)
		assert.Equal(t, version, v)
		versions, err := pooled.DatabaseVersions(ctx, e.primary.ID, "")
		require.NoError(t, err)
		assert.Equal(t, map[string]uint64{tn.ID: version}, versions)
		wantCatalog, err := e.store.Catalog(ctx, tn)
		require.NoError(t, err)
		catalog, err := pooled.Catalog(ctx, tn)
		require.NoError(t, err)
		assert.Equal(t, wantCatalog, catalog)
		wantAdmin, err := e.store.AdminVersion(ctx)
		require.NoError(t, err)
		adminVersion, err := pooled.AdminVersion(ctx)
		require.NoError(t, err)
		assert.Equal(t, wantAdmin, adminVersion)
		wantPlatform, err := e.store.LoadPlatformUser(ctx, "nobody")
		require.NoError(t, err)
		platform, err := pooled.LoadPlatformUser(ctx, "nobody")
		require.NoError(t, err)
		assert.Equal(t, normalize(wantPlatform), normalize(platform))
		realm, err := pooled.ResolveRealm(ctx, "pgb")
		require.NoError(t, err)
		assert.Equal(t, tn.ID, realm.TenantID)
	}

	// The pooler's read-only setting holds for the pdp's pooled sessions as the startup
	// parameter does for direct ones.
	pool, err := pooled.Pool(ctx, tn.ConnectionID, tn.Database)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DELETE FROM `+table(tn.SchemaName, "user_roles"))
	require.Error(t, err, "a write through the pdp's pooled connection")
	assert.Contains(t, err.Error(), "read-only transaction")
}

// TestRevocationThroughPgBouncer: a revocation committed on the database is what the next
// load through the pooler sees, at the version the commit produced.
func TestRevocationThroughPgBouncer(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	b := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{PoolSize: 1, DatabaseParams: readOnly})
	pooled := pooledStore(t, e, b, 2)
	tn, db := e.createTenant(t, tenancy.CreateRequest{Slug: "pgb-rev", Realm: "pgb-rev"})
	_, err := db.Exec(ctx, `WITH u AS (INSERT INTO `+table(tn.SchemaName, "users")+` (external_id) VALUES ('rita') RETURNING id)
		INSERT INTO `+table(tn.SchemaName, "user_permissions")+` (user_id, permission_id)
		SELECT u.id, p.id FROM u, `+table(tn.SchemaName, "permissions")+` p WHERE p.code = 'documents.read.own'`)
	require.NoError(t, err)

	check := func() (decision.Decision, uint64) {
		t.Helper()
		in, err := pooled.LoadTenantUser(ctx, tn, "rita")
		require.NoError(t, err)
		set, err := decision.Compile(in, time.Now())
		require.NoError(t, err)
		d, err := set.Check(time.Now(), decision.Request{Permission: "documents.read.own"})
		require.NoError(t, err)
		return d, in.Version
	}
	d, before := check()
	require.True(t, d.Allowed, "got %v, want granted before the revocation", d.Reason)
	for i := range 5 {
		// Revoke and grant again, five times: every load after a commit reflects it.
		_, err = db.Exec(ctx, `DELETE FROM `+table(tn.SchemaName, "user_permissions"))
		require.NoError(t, err)
		revoked := stateVersion(t, db, tn.SchemaName)
		require.Greater(t, revoked, before)
		d, v := check()
		assert.False(t, d.Allowed, "round %d: got allowed after the revocation committed", i)
		assert.Equal(t, revoked, v, "round %d: version", i)
		_, err = db.Exec(ctx, `INSERT INTO `+table(tn.SchemaName, "user_permissions")+` (user_id, permission_id)
			SELECT u.id, p.id FROM `+table(tn.SchemaName, "users")+` u, `+table(tn.SchemaName, "permissions")+` p
			 WHERE u.external_id = 'rita' AND p.code = 'documents.read.own'`)
		require.NoError(t, err)
		d, before = check()
		assert.True(t, d.Allowed, "round %d: got %v, want granted again", i, d.Reason)
	}
}

// TestPgBouncerBoundsServerConnections: many Stores (each a pdp) load concurrently through one
// PgBouncer; PostgreSQL never sees more connections to the database than the pooler's pool,
// however many the Stores hold open to the pooler.
func TestPgBouncerBoundsServerConnections(t *testing.T) {
	const stores, workers, loads, poolSize = 12, 4, 25, 3
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	b := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{PoolSize: poolSize, DatabaseParams: readOnly})
	tn, db := e.createTenant(t, tenancy.CreateRequest{Slug: "pgb-many", Realm: "pgb-many"})
	_, err := db.Exec(ctx, `INSERT INTO `+table(tn.SchemaName, "users")+` (external_id) SELECT 'u' || g FROM generate_series(1, 50) g`)
	require.NoError(t, err)
	version := stateVersion(t, db, tn.SchemaName)
	db.Close() // from here on, every session on the tenant's database is the pooler's
	var pooled []*pgstore.Store
	for range stores {
		pooled = append(pooled, pooledStore(t, e, b, workers))
	}

	server := pgtest.Pool(t, pgtest.ServerURL(t))
	database := tn.Database
	if database == "" {
		database = e.primary.Database
	}
	sessions := func() int {
		var n int
		require.NoError(t, server.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = $1 AND backend_type = 'client backend'`, database).Scan(&n))
		return n
	}
	require.Zero(t, sessions(), "sessions on the tenant's database before the loads")

	stop := make(chan struct{})
	var most, samples int
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			most = max(most, sessions())
			samples++
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, stores*workers*loads)
	for _, st := range pooled {
		for g := range workers {
			wg.Go(func() {
				for i := range loads {
					ext := fmt.Sprintf("u%d", 1+(g*loads+i)%50)
					in, err := st.LoadTenantUser(ctx, tn, ext)
					if err == nil && in.Version != version {
						err = fmt.Errorf("%s: version: got %d, want %d", ext, in.Version, version)
					}
					if err != nil {
						errs <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	var clients int32
	for _, st := range pooled {
		pool, err := st.Pool(ctx, tn.ConnectionID, tn.Database)
		require.NoError(t, err)
		clients += pool.Stat().TotalConns()
	}
	servers, err := b.ServerConnections(ctx)
	require.NoError(t, err)
	t.Logf("%d Stores held %d connections to PgBouncer; PostgreSQL saw at most %d sessions on the database (%d samples); PgBouncer holds %d server connections",
		stores, clients, most, samples, servers)
	assert.Greater(t, clients, int32(poolSize), "the Stores opened more client connections than the pool: the bound is PgBouncer's")
	assert.Positive(t, most, "the sampler saw the pooler's sessions")
	assert.LessOrEqual(t, most, poolSize, "sessions PostgreSQL saw on the database: got %d, want at most PgBouncer's pool size %d", most, poolSize)
	// Three databases went through it: the tenant's, the admin database and postgres (its
	// readiness probe); PgBouncer pools each on its own.
	assert.LessOrEqual(t, servers, 3*poolSize, "PgBouncer's server connections: got %d, want at most %d", servers, 3*poolSize)
}
