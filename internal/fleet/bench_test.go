package fleet_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/testenv"
)

// BenchmarkMigrateTenantSchemas creates 1,000 tenants on one regional database and applies
// the tenant set to all of them with concurrency 4, reporting schemas per second.
func BenchmarkMigrateTenantSchemas(b *testing.B) {
	const tenants = 1000
	ctx := context.Background()
	w := testenv.New(b, "fleetbench")
	primary := w.AddRegion(b, "us-east-1")
	for i := 0; i < b.N; i++ {
		b.StopTimer()
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
		b.ReportMetric(float64(tenants)/elapsed.Seconds(), "schemas/s")
		b.ReportMetric(elapsed.Seconds(), "s/1000-schemas")
		fmt.Printf("migrated %d tenant schemas in %s (%.0f schemas/s)\n", tenants, elapsed.Round(time.Millisecond), float64(tenants)/elapsed.Seconds())
	}
}
