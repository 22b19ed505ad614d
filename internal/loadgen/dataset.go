package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/secretbox"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/migrations"
)

// The data set's fixed shape and names. Only these three databases are ever created or dropped.
const (
	AdminDB       = "neoauthz_bench_admin"
	RegionalDB    = "neoauthz_bench_us"
	AnalyticsDB   = "neoauthz_bench_analytics" // the region's decision log
	regionCode    = "bench-us"
	connName      = "bench-us-primary"
	analyticsConn = "bench-us-analytics"
	catalogCodes  = 150 // concrete permission codes per tenant
	customRoles   = 14  // beside the 6 system roles: 20 roles
	// datasetVersion changes whenever the generator below changes, so that an old data set is
	// rebuilt instead of silently measured.
	datasetVersion = 2 // 2: an analytics database for the decision log
	// Set-up work at once: provisioning and seeding are mostly PostgreSQL time, and the machine
	// this runs on has few cores.
	setupConcurrency = 4
)

// Dataset is the data set as the load needs it: every user of every tenant, with the catalog
// codes their unrestricted roles grant (most requests ask for one of those).
type Dataset struct {
	AdminURL  string
	SecretKey string
	Catalog   []string // concrete codes, sorted; identical in every tenant
	Tenants   []string // slugs, also the Keycloak realms
	Users     []User   // tenant by tenant
	Reused    bool
	BuildTime time.Duration // building (0 when reused)
	LoadTime  time.Duration // reading it back
}

// User is one user of the data set.
type User struct {
	Tenant  int    // index into Dataset.Tenants
	Subject string // external id, the token's sub
	Likely  []uint16
	Bearer  string // "Bearer <token>", minted before measuring
}

func spec(c Config) string {
	return fmt.Sprintf("v%d tenants=%d users=%d roles=%d codes=%d", datasetVersion, c.Tenants, c.Users, 6+customRoles, catalogCodes)
}

// TenantSlug names tenant i; it is its realm too.
func TenantSlug(i int) string { return fmt.Sprintf("bench-%02d", i) }

// dbURL returns base (a postgres:// URL) pointing at another database of the same server.
func dbURL(base, database string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", errors.New("DATABASE_URL must be a postgres:// URL")
	}
	u.Path = "/" + database
	u.RawPath = ""
	return u.String(), nil
}

// PrepareDataset reuses the data set its marker describes, or (re)builds it.
func PrepareDataset(ctx context.Context, c Config, log *slog.Logger) (*Dataset, error) {
	adminURL, err := dbURL(c.DatabaseURL, AdminDB)
	if err != nil {
		return nil, err
	}
	ds := &Dataset{AdminURL: adminURL}
	want := spec(c)
	if !c.Rebuild {
		have, key, err := readMarker(ctx, adminURL)
		switch {
		case err == nil && have == want:
			ds.SecretKey, ds.Reused = key, true
		case err == nil:
			log.Info("the data set has another shape; rebuilding it", "have", have, "want", want)
		default:
			log.Info("no data set yet; building it", "why", err)
		}
	}
	if !ds.Reused {
		start := time.Now()
		if ds.SecretKey, err = build(ctx, c, adminURL, log); err != nil {
			return nil, fmt.Errorf("build the data set: %w", err)
		}
		ds.BuildTime = time.Since(start)
	}
	start := time.Now()
	if err := ds.load(ctx, c); err != nil {
		return nil, fmt.Errorf("read the data set back (rerun with -rebuild if it was damaged): %w", err)
	}
	ds.LoadTime = time.Since(start)
	return ds, nil
}

func readMarker(ctx context.Context, adminURL string) (spec, key string, err error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = conn.QueryRow(ctx, `SELECT spec, secret_key FROM public.loadgen_dataset`).Scan(&spec, &key)
	return spec, key, err
}

// build drops and recreates the two bench databases and fills them: migrations, one region,
// the regional database registered, the tenants provisioned through tenancy.Service (as `admin
// tenant create` does), then each tenant's RBAC data. The marker is written last, so a build
// that fails half way is rebuilt next time.
func build(ctx context.Context, c Config, adminURL string, log *slog.Logger) (string, error) {
	regionalURL, err := dbURL(c.DatabaseURL, RegionalDB)
	if err != nil {
		return "", err
	}
	server, err := pgx.ParseConfig(c.DatabaseURL)
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL: %w", err)
	}
	if err := recreateDatabases(ctx, c.DatabaseURL); err != nil {
		return "", err
	}

	// Registered passwords are sealed; a key of the data set's own opens them (kept in the
	// marker: these are local throwaway databases).
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	key := base64.StdEncoding.EncodeToString(raw)
	box, err := secretbox.New(key)
	if err != nil {
		return "", err
	}
	admin, err := pgxpool.New(ctx, adminURL)
	if err != nil {
		return "", err
	}
	defer admin.Close()
	sets, err := fleet.LoadSets(migrations.FS)
	if err != nil {
		return "", err
	}
	reg := registry.New(admin, box)
	runner := &fleet.Runner{Admin: admin, AdminURL: adminURL, Registry: reg, Sets: sets, Log: slog.New(slog.DiscardHandler)}

	step := time.Now()
	if _, err := runner.Apply(ctx, fleet.Plan{Scope: fleet.ScopeAdmin, RequestedBy: "loadgen"}); err != nil {
		return "", fmt.Errorf("migrate the admin database: %w", err)
	}
	if _, err := reg.CreateRegion(ctx, registry.Region{Code: regionCode, Name: "Bench US"}); err != nil {
		return "", err
	}
	host := server.Host
	if strings.HasPrefix(host, "/") { // a Unix socket directory: the registry wants a TCP host
		host = "127.0.0.1"
	}
	conn, err := reg.RegisterConnection(ctx, registry.Connection{Name: connName, Type: registry.TypePrimary,
		RegionCode: regionCode, Host: host, Port: int(server.Port), Database: RegionalDB, Username: server.User,
		Password: server.Password, TLSMode: "disable"})
	if err != nil {
		return "", fmt.Errorf("register the regional database: %w", err)
	}
	if conn, _, err = reg.Check(ctx, conn, 0); err != nil {
		return "", fmt.Errorf("check the regional database: %w", err)
	}
	if !conn.IsHealthy {
		last := ""
		if conn.LastError != nil {
			last = *conn.LastError
		}
		return "", fmt.Errorf("the regional database is not healthy: %s", last)
	}
	if _, err := runner.Apply(ctx, fleet.Plan{Scope: fleet.ScopeRegional, RequestedBy: "loadgen"}); err != nil {
		return "", fmt.Errorf("migrate the regional database: %w", err)
	}
	if _, err := reg.RegisterConnection(ctx, registry.Connection{Name: analyticsConn, Type: registry.TypeAnalytics,
		RegionCode: regionCode, Host: host, Port: int(server.Port), Database: AnalyticsDB, Username: server.User,
		Password: server.Password, TLSMode: "disable"}); err != nil {
		return "", fmt.Errorf("register the analytics database: %w", err)
	}
	if _, err := runner.Apply(ctx, fleet.Plan{Scope: fleet.ScopeAnalytics, RequestedBy: "loadgen"}); err != nil {
		return "", fmt.Errorf("migrate the analytics database: %w", err)
	}
	log.Info("databases migrated", "took", time.Since(step).Round(time.Millisecond))

	step = time.Now()
	svc := &tenancy.Service{Admin: admin, Registry: reg, Fleet: runner}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(setupConcurrency)
	for i := range c.Tenants {
		g.Go(func() error {
			slug := TenantSlug(i)
			_, err := svc.Create(gctx, tenancy.CreateRequest{Slug: slug, Name: "Bench " + slug, Region: regionCode,
				Deployment: tenancy.DeploySchema, Realm: slug})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return "", fmt.Errorf("provision tenants: %w", err)
	}
	log.Info("tenants provisioned", "tenants", c.Tenants, "took", time.Since(step).Round(time.Millisecond))

	step = time.Now()
	regional, err := pgxpool.New(ctx, regionalURL)
	if err != nil {
		return "", err
	}
	defer regional.Close()
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(setupConcurrency)
	for i := range c.Tenants {
		g.Go(func() error { return seedTenant(gctx, regional, tenancy.SchemaName(TenantSlug(i)), c.Users) })
	}
	if err := g.Wait(); err != nil {
		return "", fmt.Errorf("seed tenants: %w", err)
	}
	// Fresh statistics, so the pdp's loader gets the plans it would get in production.
	if _, err := regional.Exec(ctx, `ANALYZE`); err != nil {
		return "", err
	}
	log.Info("tenants seeded", "users", c.Tenants*c.Users, "took", time.Since(step).Round(time.Millisecond))

	_, err = admin.Exec(ctx, `CREATE TABLE public.loadgen_dataset (
			id boolean PRIMARY KEY DEFAULT true CHECK (id), spec text NOT NULL, secret_key text NOT NULL,
			built_at timestamptz NOT NULL DEFAULT now());
		`)
	if err == nil {
		_, err = admin.Exec(ctx, `INSERT INTO public.loadgen_dataset (spec, secret_key) VALUES ($1, $2)`, spec(c), key)
	}
	return key, err
}

// recreateDatabases drops and creates the two bench databases — and nothing else.
func recreateDatabases(ctx context.Context, serverURL string) error {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return fmt.Errorf("connect to DATABASE_URL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, db := range []string{AdminDB, RegionalDB, AnalyticsDB} {
		id := pgx.Identifier{db}.Sanitize()
		if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+id+` WITH (FORCE)`); err != nil {
			return fmt.Errorf("drop %s: %w", db, err)
		}
		if _, err := conn.Exec(ctx, `CREATE DATABASE `+id); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42P04" {
				continue
			}
			return fmt.Errorf("create %s: %w", db, err)
		}
	}
	return nil
}

// seedSQL fills one freshly provisioned tenant schema (search_path points at it). Everything
// is derived from row numbers, so every tenant gets the same shape and a rebuild the same data:
//   - catalog: the default 132 concrete codes + patterns, plus bench_r<i>.read.tenant up to 150;
//   - roles: the 6 system roles + 14 custom ones of 5–20 codes each, 4 of them with a
//     wildcard, in inheritance chains of three, some inheriting viewer;
//   - teams: five, one with a child team; three users in four are in a team;
//   - users: 1–3 role assignments each (the third restricted to a team), 1% owners, 10% a
//     direct grant (some team-restricted), 10% a deny of one of their first role's codes.
//
// The inserts fire the RBAC triggers like any write would; being one transaction, the tenant's
// version moves once.
const seedSQL = `
INSERT INTO permissions (code, description)
SELECT format('bench_r%s.read.tenant', i), 'loadgen'
  FROM generate_series(0, {{codes}} - 1 - (SELECT count(*) FROM permissions WHERE NOT is_wildcard)) AS i;

CREATE TEMP TABLE cat ON COMMIT DROP AS
SELECT (row_number() OVER (ORDER BY code) - 1)::int AS idx, id FROM permissions WHERE NOT is_wildcard;

INSERT INTO roles (code, name, level, description)
SELECT format('bench_role_%s', lpad(k::text, 2, '0')), format('Bench role %s', k), 'member', 'loadgen'
  FROM generate_series(0, {{roles}} - 1) AS k;

CREATE TEMP TABLE br ON COMMIT DROP AS
SELECT substr(code, 12)::int AS k, id FROM roles WHERE code LIKE 'bench\_role\_%';

INSERT INTO role_permissions (role_id, permission_id)
SELECT br.id, cat.id
  FROM br CROSS JOIN LATERAL generate_series(0, 4 + (br.k * 7) % 16) AS j
  JOIN cat ON cat.idx = (br.k * 37 + j * 11) % {{codes}};

INSERT INTO role_permissions (role_id, permission_id)
SELECT br.id, p.id
  FROM (VALUES (0, 'projects.*.team'), (4, 'documents.*.own'), (8, '*.read.team'), (12, 'reports.*.tenant')) AS w (k, code)
  JOIN br ON br.k = w.k JOIN permissions p ON p.code = w.code;

INSERT INTO role_inherits (role_id, inherited_role_id)
SELECT r.id, i.id FROM br r JOIN br i ON i.k = r.k - 1 WHERE r.k % 3 <> 0;
INSERT INTO role_inherits (role_id, inherited_role_id)
SELECT br.id, v.id FROM br, roles v WHERE v.code = 'viewer' AND br.k % 5 = 0;

CREATE TEMP TABLE rp ON COMMIT DROP AS
SELECT (row_number() OVER (ORDER BY code) - 1)::int AS idx, id FROM roles WHERE code <> 'owner';

INSERT INTO teams (slug, name) SELECT t, initcap(t) FROM unnest(ARRAY['eng', 'sales', 'ops', 'support', 'research']) AS t;
INSERT INTO teams (slug, name, parent_team_id) SELECT 'eng-platform', 'Platform', id FROM teams WHERE slug = 'eng';
CREATE TEMP TABLE tm ON COMMIT DROP AS
SELECT (row_number() OVER (ORDER BY slug) - 1)::int AS idx, id FROM teams;

INSERT INTO users (external_id, email, display_name)
SELECT 'user-' || i, 'user-' || i || '@bench.test', 'Bench user ' || i FROM generate_series(0, {{users}} - 1) AS i;
CREATE TEMP TABLE ux ON COMMIT DROP AS SELECT substr(external_id, 6)::int AS i, id FROM users;

INSERT INTO team_members (team_id, user_id)
SELECT tm.id, ux.id FROM ux JOIN tm ON tm.idx = ux.i % 6 WHERE ux.i % 4 <> 3;

INSERT INTO user_roles (user_id, role_id, team_id, granted_by)
SELECT ux.id, rp.id, CASE WHEN j = 2 THEN tm.id END, 'loadgen'
  FROM ux CROSS JOIN LATERAL generate_series(0, ux.i % 3) AS j
  JOIN rp ON rp.idx = (ux.i * 7 + j * 13) % (SELECT count(*) FROM rp)
  JOIN tm ON tm.idx = ux.i % 6;
INSERT INTO user_roles (user_id, role_id, granted_by)
SELECT ux.id, r.id, 'loadgen' FROM ux, roles r WHERE r.code = 'owner' AND ux.i % 100 = 0;

INSERT INTO user_permissions (user_id, permission_id, team_id, is_granted, granted_by)
SELECT ux.id, cat.id, CASE WHEN ux.i % 40 = 1 THEN tm.id END, true, 'loadgen'
  FROM ux JOIN cat ON cat.idx = (ux.i * 3) % {{codes}} JOIN tm ON tm.idx = ux.i % 6
 WHERE ux.i % 10 = 1;
INSERT INTO user_permissions (user_id, permission_id, is_granted, granted_by)
SELECT DISTINCT ON (ux.id) ux.id, rpm.permission_id, false, 'loadgen'
  FROM ux JOIN rp ON rp.idx = (ux.i * 7) % (SELECT count(*) FROM rp)
  JOIN role_permissions rpm ON rpm.role_id = rp.id
 WHERE ux.i % 10 = 2
 ORDER BY ux.id, rpm.permission_id;
`

func seedTenant(ctx context.Context, pool *pgxpool.Pool, schema string, users int) error {
	sql := strings.NewReplacer("{{codes}}", fmt.Sprint(catalogCodes), "{{roles}}", fmt.Sprint(customRoles),
		"{{users}}", fmt.Sprint(users)).Replace(seedSQL)
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL search_path = `+pgx.Identifier{schema}.Sanitize()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", schema, err)
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM permissions WHERE NOT is_wildcard`).Scan(&n); err != nil {
			return err
		}
		if n != catalogCodes {
			return fmt.Errorf("%s: %d concrete codes, want %d", schema, n, catalogCodes)
		}
		return nil
	})
}

// likelySQL lists, per user, the concrete codes the user's unrestricted role assignments reach
// through inheritance (wildcards expanded against the catalog), less the codes denied to the
// user directly. It is an approximation of the engine (scope ranks are ignored), good enough to
// make most requests allowed; the load counts what the pdp actually answers.
const likelySQL = `
WITH RECURSIVE closure (root, role_id) AS (
    SELECT id, id FROM roles WHERE is_active
    UNION
    SELECT c.root, ri.inherited_role_id FROM closure c JOIN role_inherits ri ON ri.role_id = c.role_id
), concrete AS (
    SELECT id, code FROM permissions WHERE NOT is_wildcard
), role_codes AS ( -- per role: the concrete codes it grants, itself or inherited, wildcards expanded
    SELECT DISTINCT c.root AS role_id, cat.code
      FROM closure c
      JOIN role_permissions rp ON rp.role_id = c.role_id
      JOIN permissions p ON p.id = rp.permission_id
      JOIN concrete cat ON cat.id = p.id
           OR (p.is_wildcard AND cat.code LIKE replace(replace(p.code, '_', '\_'), '*', '%'))
), granted AS (
    SELECT DISTINCT ur.user_id, rc.code
      FROM user_roles ur JOIN role_codes rc ON rc.role_id = ur.role_id
     WHERE ur.team_id IS NULL
    EXCEPT
    SELECT d.user_id, dp.code
      FROM user_permissions d JOIN permissions dp ON dp.id = d.permission_id
     WHERE NOT d.is_granted
)
SELECT u.external_id, coalesce(array_agg(g.code ORDER BY g.code) FILTER (WHERE g.code IS NOT NULL), '{}')
  FROM users u LEFT JOIN granted g ON g.user_id = u.id
 WHERE u.status = 'active'
 GROUP BY u.external_id
 ORDER BY u.external_id`

// load reads the tenants, the catalog and every user back from the databases.
func (ds *Dataset) load(ctx context.Context, c Config) error {
	regionalURL, err := dbURL(c.DatabaseURL, RegionalDB)
	if err != nil {
		return err
	}
	admin, err := pgx.Connect(ctx, ds.AdminURL)
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	rows, err := admin.Query(ctx, `SELECT slug, schema_name FROM admin.tenants
		WHERE status = 'active' AND slug LIKE 'bench-%' ORDER BY slug`)
	if err != nil {
		return err
	}
	type tenant struct{ slug, schema string }
	tenants, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenant, error) {
		var t tenant
		return t, r.Scan(&t.slug, &t.schema)
	})
	if err != nil {
		return err
	}
	if len(tenants) != c.Tenants {
		return fmt.Errorf("%d active bench tenants, want %d", len(tenants), c.Tenants)
	}

	regional, err := pgxpool.New(ctx, regionalURL)
	if err != nil {
		return err
	}
	defer regional.Close()
	// Tenant by tenant, a few at once: the per-user query takes tens of milliseconds.
	type result struct {
		catalog []string
		users   []User
		likely  [][]string
	}
	results := make([]result, len(tenants))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(setupConcurrency)
	for ti, t := range tenants {
		g.Go(func() error {
			r := &results[ti]
			s := pgx.Identifier{t.schema}.Sanitize()
			return pgx.BeginFunc(gctx, regional, func(tx pgx.Tx) error {
				rows, err := tx.Query(gctx, `SELECT code FROM `+s+`.permissions WHERE NOT is_wildcard ORDER BY code`)
				if err != nil {
					return err
				}
				if r.catalog, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
					return err
				}
				if _, err := tx.Exec(gctx, `SET LOCAL search_path = `+s); err != nil {
					return err
				}
				rows, err = tx.Query(gctx, likelySQL, pgx.QueryExecModeSimpleProtocol)
				if err != nil {
					return fmt.Errorf("%s: %w", t.slug, err)
				}
				var subject string
				var likely []string
				_, err = pgx.ForEachRow(rows, []any{&subject, &likely}, func() error {
					r.users = append(r.users, User{Tenant: ti, Subject: subject})
					r.likely = append(r.likely, slices.Clone(likely))
					return nil
				})
				if err != nil {
					return err
				}
				return rows.Err()
			})
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	ds.Catalog = results[0].catalog
	index := map[string]uint16{}
	for i, code := range ds.Catalog {
		index[code] = uint16(i)
	}
	ds.Users = make([]User, 0, len(tenants)*c.Users)
	for ti, r := range results {
		ds.Tenants = append(ds.Tenants, tenants[ti].slug)
		if !slices.Equal(r.catalog, ds.Catalog) {
			return fmt.Errorf("tenant %s has another catalog than %s", tenants[ti].slug, tenants[0].slug)
		}
		if len(r.users) != c.Users {
			return fmt.Errorf("tenant %s has %d active users, want %d", tenants[ti].slug, len(r.users), c.Users)
		}
		for i, u := range r.users {
			u.Likely = make([]uint16, len(r.likely[i]))
			for j, code := range r.likely[i] {
				u.Likely[j] = index[code]
			}
			ds.Users = append(ds.Users, u)
		}
	}
	if len(ds.Catalog) != catalogCodes {
		return fmt.Errorf("catalog has %d concrete codes, want %d", len(ds.Catalog), catalogCodes)
	}
	return nil
}
