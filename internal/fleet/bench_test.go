package fleet_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/testenv"
)

// BenchmarkMigrateTenantSchemas creates 1,000 tenants on one regional database and applies
// the tenant set to all of them with concurrency 4, reporting schemas per second. Each
// iteration starts from a database holding no earlier iteration's schemas.
func BenchmarkMigrateTenantSchemas(b *testing.B) {
	const tenants = 1000
	ctx := context.Background()
	w := testenv.New(b, "fleetbench")
	primary := w.AddRegion(b, "us-east-1")
	regional := w.Connect(b, primary, "")
	// Dropping the database with a thousand schemas in it can outlast the test's drop timeout.
	b.Cleanup(func() { dropBenchSchemas(ctx, b, regional) })
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dropBenchSchemas(ctx, b, regional)
		_, err := w.Admin.Exec(ctx, `DELETE FROM admin.tenants`)
		require.NoError(b, err)
		_, err = w.Admin.Exec(ctx, `INSERT INTO admin.tenants (slug, name, status, deployment_type, region_code, database_connection_id, schema_name, external_auth_realm)
			SELECT 'bench-' || n || '-' || $2, 'Bench ' || n, 'active', 'schema', 'us-east-1', $1, 't_bench_' || n || '_' || $2, 'bench-' || n || '-' || $2
			FROM generate_series(1, $3) AS n`, primary.ID, fmt.Sprint(i), tenants)
		require.NoError(b, err)
		b.StartTimer()
		start := time.Now()
		run, err := w.Fleet.Apply(ctx, fleet.Plan{Scope: fleet.ScopeTenants, Concurrency: 4, BatchSize: 250})
		elapsed := time.Since(start)
		require.NoError(b, err)
		require.Equal(b, tenants, run.Succeeded)
		total += elapsed
		fmt.Printf("migrated %d tenant schemas in %s (%.0f schemas/s)\n", tenants, elapsed.Round(time.Millisecond), float64(tenants)/elapsed.Seconds())
	}
	b.ReportMetric(float64(tenants*b.N)/total.Seconds(), "schemas/s")
	b.ReportMetric(total.Seconds()/float64(b.N), "s/1000-schemas")
}

// dropBenchSchemas drops the schemas an earlier iteration created, a few at a time (one
// transaction dropping a thousand schemas would run out of lock slots).
func dropBenchSchemas(ctx context.Context, b *testing.B, db *pgxpool.Pool) {
	b.Helper()
	rows, err := db.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\_bench\_%' ORDER BY nspname`)
	require.NoError(b, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(b, err)
	for len(names) > 0 {
		n := min(len(names), 20)
		idents := make([]string, n)
		for i, name := range names[:n] {
			idents[i] = pgx.Identifier{name}.Sanitize()
		}
		_, err := db.Exec(ctx, "DROP SCHEMA "+strings.Join(idents, ", ")+" CASCADE")
		require.NoError(b, err)
		names = names[n:]
	}
}
