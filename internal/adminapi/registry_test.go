package adminapi

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/registry"
)

func TestRegistryEndpoints(t *testing.T) {
	e := newEnv(t)
	const base = "/api/v1/admin"
	r := e.do("POST", base+"/regions", e.admin, map[string]any{"code": "us-east-1", "name": "US East", "data_residency": true})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	versionOf(t, r)
	r = e.do("POST", base+"/regions", e.admin, map[string]any{"code": "us-east-1"})
	assert.Equal(t, 409, r.Status)
	r = e.do("POST", base+"/regions", e.admin, map[string]any{"code": "US East"})
	assert.Equal(t, 422, r.Status)
	r = e.do("GET", base+"/regions", e.admin, nil)
	var regions []registry.Region
	r.into(&regions)
	assert.Len(t, regions, 2)

	dead := map[string]any{"name": "dead", "region": "us-east-1",
		"host": "127.0.0.1", "port": 1, "database": "nothing", "username": "postgres", "password": "s3cret-pw",
		"tls_mode": "disable", "max_consecutive_failures": 2}
	r = e.do("POST", base+"/database-connections", e.admin, dead)
	require.Equal(t, 422, r.Status, "no secret key: passwords are refused: %s", r.Body)
	assert.Contains(t, r.Error.Details["fields"], "password")
	assert.NotContains(t, string(r.Body), "s3cret-pw")
	delete(dead, "password")
	r = e.do("POST", base+"/database-connections", e.admin, dead)
	require.Equal(t, 201, r.Status, "%s", r.Body)
	assert.NotContains(t, string(r.Body), "s3cret-pw", "the password is never returned")
	var conn registry.Connection
	r.into(&conn)
	r = e.do("POST", base+"/database-connections", e.admin, map[string]any{"name": "x", "region": "us-east-1", "host": "h", "database": "Bad-Name", "username": "u"})
	assert.Equal(t, 422, r.Status)
	assert.Contains(t, r.Error.Details["fields"], "database")

	r = e.do("GET", base+"/database-connections?page_size=1", e.admin, nil)
	require.Equal(t, 200, r.Status)
	assert.InDelta(t, float64(2), r.Meta["total"], 0)
	r = e.do("GET", base+"/database-connections/dead", e.admin, nil)
	require.Equal(t, 200, r.Status)
	r = e.do("GET", base+"/database-connections/missing", e.admin, nil)
	assert.Equal(t, 404, r.Status)

	r = e.do("PATCH", base+"/database-connections/dead", e.admin, map[string]any{"max_consecutive_failures": 5})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r.into(&conn)
	assert.Equal(t, 5, conn.MaxConsecutiveFailures)
	r = e.do("PATCH", base+"/database-connections/dead", e.admin, map[string]any{"max_consecutive_failures": 0})
	assert.Equal(t, 422, r.Status)

	r = e.do("POST", base+"/database-connections/dead/health-check", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r.into(&conn)
	assert.False(t, conn.IsHealthy)
	assert.Equal(t, 1, conn.ConsecutiveFailures)
	assert.NotContains(t, string(r.Body), "s3cret-pw")

	r = e.do("POST", base+"/database-connections/dead/deactivate", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r.into(&conn)
	assert.False(t, conn.IsActive)
	r = e.do("PATCH", base+"/database-connections/dead", e.admin, map[string]any{"is_active": true})
	r.into(&conn)
	assert.True(t, conn.IsActive)
	assert.Equal(t, 0, conn.ConsecutiveFailures, "reactivation resets the failure count")

	r = e.do("GET", base+"/audit?target_type=database_connection", e.admin, nil)
	var entries []AuditEntry
	r.into(&entries)
	assert.Len(t, entries, 5) // register, update, health_check, deactivate, update
	for _, a := range entries {
		assert.NotContains(t, string(a.After), "s3cret")
	}
}

// TestHealthMonitorDeactivatesDeadConnection: a connection to port 1 with two failures allowed
// is deactivated by the second round of the monitor, which says so in the audit log.
func TestHealthMonitorDeactivatesDeadConnection(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/api/v1/admin/database-connections", e.admin, map[string]any{"name": "dead", "region": "eu-west-1",
		"host": "127.0.0.1", "port": 1, "database": "nothing", "username": "postgres", "tls_mode": "disable",
		"max_consecutive_failures": 2})
	require.Equal(t, 201, r.Status, "%s", r.Body)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.srv.MonitorHealth(ctx, time.Second, 2*time.Second) }()
	require.Eventually(t, func() bool {
		c, err := e.w.Registry.GetConnection(context.Background(), "dead")
		return err == nil && !c.IsActive
	}, 15*time.Second, 50*time.Millisecond, "the monitor deactivates the dead connection")
	cancel()
	<-done

	healthy, err := e.w.Registry.GetConnection(context.Background(), "eu-west-1-primary")
	require.NoError(t, err)
	assert.True(t, healthy.IsActive, "a healthy connection stays active")

	r = e.do("GET", "/api/v1/admin/audit?action=database_connection.deactivate", e.admin, nil)
	var entries []AuditEntry
	r.into(&entries)
	require.Len(t, entries, 1)
	assert.Equal(t, MonitorActor, entries[0].Actor)
	assert.Contains(t, string(entries[0].After), "health check failed")
	assert.True(t, e.verify().OK)
}

func TestMigrationEndpoints(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	r := e.do("POST", "/api/v1/admin/migrations/apply", e.admin, map[string]any{"scope": "tenants"})
	require.Equal(t, 202, r.Status, "%s", r.Body)
	var job MigrationJob
	r.into(&job)
	require.NotEmpty(t, job.RunID)

	var run MigrationRun
	require.Eventually(t, func() bool {
		r := e.do("GET", "/api/v1/admin/migrations/runs/"+job.RunID, e.admin, nil)
		r.into(&run)
		return run.Status != "running"
	}, 30*time.Second, 50*time.Millisecond)
	assert.Equal(t, "succeeded", run.Status)
	require.NotEmpty(t, run.Results)
	assert.Equal(t, "tenant:acme", run.Results[0].Target)

	r = e.do("POST", "/api/v1/admin/tenants/acme/migrate", e.admin, map[string]any{"dry_run": true})
	require.Equal(t, 202, r.Status, "%s", r.Body)

	r = e.do("GET", "/api/v1/admin/migrations/status?scope=tenants", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	assert.Contains(t, string(r.Body), "t_acme")

	r = e.do("POST", "/api/v1/admin/migrations/apply", e.admin, map[string]any{"scope": "everything"})
	assert.Equal(t, 422, r.Status, "%s", r.Body)
	r = e.do("GET", "/api/v1/admin/migrations/runs/00000000-0000-0000-0000-000000000000", e.admin, nil)
	assert.Equal(t, 404, r.Status)
	e.srv.Close() // waits for the dry run
}

func TestRegistryReplicaEndpoint(t *testing.T) {
	e := newEnv(t)
	const base = "/api/v1/admin"
	primary, err := e.w.Registry.GetConnection(context.Background(), "eu-west-1-primary")
	require.NoError(t, err)
	replica := map[string]any{"name": "eu-replica", "type": "replica", "region": "eu-west-1", "host": "replica.internal",
		"database": primary.Database, "username": "postgres", "tls_mode": "disable"}
	r := e.do("POST", base+"/database-connections", e.admin, replica)
	require.Equal(t, 422, r.Status, "a replica names its primary: %s", r.Body)
	assert.Contains(t, r.Error.Details["fields"], "primary")
	replica["primary"] = "nope"
	r = e.do("POST", base+"/database-connections", e.admin, replica)
	require.Equal(t, 422, r.Status, "%s", r.Body)
	assert.Contains(t, r.Error.Details["fields"], "primary")

	replica["primary"] = primary.Name
	r = e.do("POST", base+"/database-connections", e.admin, replica)
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var conn registry.Connection
	r.into(&conn)
	assert.Equal(t, primary.ID, conn.PrimaryID)
	r = e.do("GET", base+"/database-connections/eu-replica", e.admin, nil)
	require.Equal(t, 200, r.Status)
	r.into(&conn)
	assert.Equal(t, primary.ID, conn.PrimaryID)
}
