package adminapi

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The admin API's /metrics reports the control plane's state, read at scrape time: tenants by
// status, region and deployment, each database's health, migration runs by result, and the
// audit outbox's backlog and age.
func TestAdminStateMetrics(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a := e.createTenant("acme")
	e.createTenant("beta")
	e.must(200, "POST", "/api/v1/admin/tenants/beta/suspend", nil)
	e.must(202, "POST", "/api/v1/admin/migrations/apply", map[string]any{"scope": "admin"})
	db, _ := e.outboxDB(a)
	_, err := db.pool.Exec(ctx, `INSERT INTO `+db.table("audit_outbox")+` (occurred_at, actor, action, target_type)
		VALUES (now() - interval '90 seconds', 'x', 'tenant_user.create', 'tenant_user')`)
	require.NoError(t, err)
	e.srv.measureOutboxes(ctx)

	var body string
	require.Eventually(t, func() bool {
		body = string(e.do("GET", "/metrics", "", nil).Body)
		return regexp.MustCompile(`neoauthz_admin_migration_runs\{status="succeeded"\} [1-9]`).MatchString(body)
	}, 30e9, 50e6, "migration runs by result")
	region := a.Region
	assert.Contains(t, body, fmt.Sprintf(`neoauthz_admin_tenants{deployment="schema",region=%q,status="active"} 1`, region))
	assert.Contains(t, body, fmt.Sprintf(`neoauthz_admin_tenants{deployment="schema",region=%q,status="suspended"} 1`, region))
	assert.Regexp(t, `neoauthz_admin_database_up\{connection="[a-z0-9-]+"\} 1`, body)
	assert.Regexp(t, `neoauthz_admin_database_latency_seconds\{connection="[a-z0-9-]+"\} `, body)
	assert.Regexp(t, `neoauthz_admin_database_consecutive_failures\{connection="[a-z0-9-]+"\} 0`, body)
	assert.Contains(t, body, `neoauthz_admin_audit_outbox_backlog 1`)
	m := regexp.MustCompile(`(?m)^neoauthz_admin_audit_outbox_oldest_age_seconds (\S+)`).FindStringSubmatch(body)
	require.NotNil(t, m, "outbox age")
	var age float64
	_, err = fmt.Sscan(m[1], &age)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, age, 60.0)
}
