package pgstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/tenancy"
)

const benchUsers = 100_000

// benchDataSQL builds, set-based, a tenant of 100,000 users ({{s}} is the quoted schema):
// 50 teams nested three levels (5 roots, 15 teams below them, 30 below those), 200 roles in
// chains of five (inheritance depth 4, a few chains closed into cycles, every 37th role
// inactive) with 3–8 permissions each, 1–3 assignments per user (a quarter team-restricted, a
// tenth expiring in the future, a tenth already expired), one or two team memberships per user,
// and for 5% of users a direct grant and a direct deny (half of the denies team-restricted).
// Triggers are off for the load (session_replication_role = replica): the per-row version
// bump and NOTIFY would dominate the build time and are not what is measured.
const benchDataSQL = `
SET LOCAL session_replication_role = replica;
CREATE TEMP TABLE bt (n int PRIMARY KEY, id uuid NOT NULL, parent int) ON COMMIT DROP;
INSERT INTO bt SELECT g, gen_random_uuid(), CASE WHEN g < 5 THEN NULL WHEN g < 20 THEN g % 5 ELSE 5 + g % 15 END
  FROM generate_series(0, 49) g;
INSERT INTO {{s}}.teams (id, slug, name, parent_team_id)
SELECT c.id, 'bt-' || c.n, 'bench team ' || c.n, p.id FROM bt c LEFT JOIN bt p ON p.n = c.parent;

CREATE TEMP TABLE br (n int PRIMARY KEY, id uuid NOT NULL) ON COMMIT DROP;
INSERT INTO br SELECT g, gen_random_uuid() FROM generate_series(0, 199) g;
INSERT INTO {{s}}.roles (id, code, name, is_active)
SELECT id, 'br-' || lpad(n::text, 3, '0'), 'bench role ' || n, n % 37 <> 36 FROM br;

CREATE TEMP TABLE bp ON COMMIT DROP AS
SELECT (row_number() OVER (ORDER BY code) - 1)::int AS n, id FROM {{s}}.permissions;
INSERT INTO {{s}}.role_permissions (role_id, permission_id)
SELECT r.id, p.id FROM br r JOIN bp p ON (p.n + r.n * 31) % (SELECT count(*) FROM bp) < 3 + r.n % 6;

INSERT INTO {{s}}.role_inherits (role_id, inherited_role_id)
SELECT a.id, b.id FROM br a JOIN br b ON b.n = a.n + 1 WHERE a.n % 5 <> 4
UNION ALL
SELECT a.id, b.id FROM br a JOIN br b ON b.n = a.n - 4 WHERE a.n % 50 = 4;

CREATE TEMP TABLE bu (n int PRIMARY KEY, id uuid NOT NULL) ON COMMIT DROP;
INSERT INTO bu SELECT g, ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid FROM generate_series(0, {{users}} - 1) g;
INSERT INTO {{s}}.users (id, external_id, email, status)
SELECT id, 'bu-' || lpad(n::text, 6, '0'), 'bu-' || n || '@example.com', CASE WHEN n % 97 = 0 THEN 'inactive' ELSE 'active' END FROM bu;

INSERT INTO {{s}}.team_members (team_id, user_id)
SELECT DISTINCT t.id, u.id
  FROM bu u, LATERAL (VALUES (u.n % 50), (CASE WHEN u.n % 3 = 0 THEN (u.n * 7 + 1) % 50 END)) AS m (team)
  JOIN bt t ON t.n = m.team;

INSERT INTO {{s}}.user_roles (id, user_id, role_id, team_id, expires_at)
SELECT ('00000000-0000-4000-9000-' || lpad(to_hex(u.n * 3 + k), 12, '0'))::uuid, u.id, r.id, t.id,
       CASE (u.n + k) % 10 WHEN 0 THEN now() + interval '30 days' WHEN 5 THEN now() - interval '1 day' END
  FROM bu u
  CROSS JOIN LATERAL generate_series(0, u.n % 3) k
  JOIN br r ON r.n = (u.n * 7 + k * 61) % 200
  LEFT JOIN bt t ON (u.n + k) % 4 = 0 AND t.n = (u.n + k) % 50;

INSERT INTO {{s}}.user_permissions (user_id, permission_id, team_id, is_granted)
SELECT u.id, p.id, t.id, d.granted
  FROM bu u
  CROSS JOIN LATERAL (VALUES (true, (u.n * 3) % (SELECT count(*) FROM bp), false),
                             (false, (u.n * 5 + 1) % (SELECT count(*) FROM bp), u.n % 40 = 0)) AS d (granted, perm, restricted)
  JOIN bp p ON p.n = d.perm
  LEFT JOIN bt t ON d.restricted AND t.n = u.n % 50
 WHERE u.n % 20 = 0
ON CONFLICT DO NOTHING;

UPDATE {{s}}.authz_state SET version = version + 1, updated_at = now();
`

func buildBenchData(b *testing.B, db *pgxpool.Pool, schema string) {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	sql := strings.NewReplacer("{{s}}", pgx.Identifier{schema}.Sanitize(), "{{users}}", strconv.Itoa(benchUsers)).Replace(benchDataSQL)
	tx, err := db.Begin(ctx)
	require.NoError(b, err)
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	_, err = tx.Exec(ctx, sql)
	require.NoError(b, err)
	require.NoError(b, tx.Commit(ctx))
	_, err = db.Exec(ctx, `VACUUM ANALYZE`)
	require.NoError(b, err)
	var users, assignments, direct int
	require.NoError(b, db.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+table(schema, "users")+`),
		(SELECT count(*) FROM `+table(schema, "user_roles")+`), (SELECT count(*) FROM `+table(schema, "user_permissions")+`)`).
		Scan(&users, &assignments, &direct))
	b.Logf("bench data: %d users, %d assignments, %d direct permissions, built in %v", users, assignments, direct, time.Since(start).Round(time.Millisecond))
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return float64(sorted[i].Nanoseconds()) / 1e3
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(percentile(lat, 0.50), "p50-µs")
	b.ReportMetric(percentile(lat, 0.99), "p99-µs")
}

// BenchmarkLoadTenantUser measures one user load (one statement, one round trip) against a
// tenant of 100,000 users, over random users. The data set is built before the timer starts,
// and only when benchmarks run: no test builds it.
func BenchmarkLoadTenantUser(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, pgstore.Options{MaxConnsPerDatabase: 16})
	tn, db := e.createTenant(b, tenancy.CreateRequest{Slug: "bench", Realm: "bench"})
	buildBenchData(b, db, tn.SchemaName)
	ids := make([]string, benchUsers)
	for i := range ids {
		ids[i] = fmt.Sprintf("bu-%06d", i)
	}
	// Open the pool and prepare the statement on a few connections outside the measurement.
	for i := range 64 {
		_, err := e.store.LoadTenantUser(ctx, tn, ids[i])
		require.NoError(b, err)
	}

	b.Run("serial", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		lat := make([]time.Duration, 0, 1<<16)
		b.ReportAllocs()
		for b.Loop() {
			start := time.Now()
			in, err := e.store.LoadTenantUser(ctx, tn, ids[rng.IntN(len(ids))])
			lat = append(lat, time.Since(start))
			if err != nil || !in.UserKnown {
				b.Fatalf("load: got %v (known %v), want a known user", err, in.UserKnown)
			}
		}
		reportLatency(b, lat)
	})

	b.Run("parallel", func(b *testing.B) {
		var mu sync.Mutex
		var lat []time.Duration
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 3))
			local := make([]time.Duration, 0, 1<<14)
			for pb.Next() {
				start := time.Now()
				in, err := e.store.LoadTenantUser(ctx, tn, ids[rng.IntN(len(ids))])
				local = append(local, time.Since(start))
				if err != nil || !in.UserKnown {
					b.Errorf("load: got %v (known %v), want a known user", err, in.UserKnown)
					return
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		})
		reportLatency(b, lat)
	})
}
