package adminapi

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A client that stops waiting leaves no committed change without its audit row: migration
// runs and provisioning audit themselves when they commit, not the handler after them.
func TestClientsThatDisconnectEarlyLeaveNothingUnaudited(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	send := func(path, body string, after time.Duration) {
		rctx, cancel := context.WithTimeout(ctx, after)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, "POST", e.ts.URL+path, bytes.NewBufferString(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+e.admin)
		req.Header.Set("Content-Type", "application/json")
		if res, err := e.client.Do(req); err == nil {
			res.Body.Close()
		}
	}
	// newEnv has a region eu-west-1 with a healthy primary.
	for i, after := range []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond} {
		send("/api/v1/admin/migrations/apply", `{"scope": "admin"}`, after)
		send("/api/v1/admin/tenants", `{"slug": "t`+string(rune('a'+i))+`", "region": "eu-west-1", "external_auth_realm": "r`+string(rune('a'+i))+`"}`, after)
	}
	count := func(sql string) int {
		var n int
		require.NoError(t, e.w.Admin.QueryRow(ctx, sql).Scan(&n))
		return n
	}
	require.Eventually(t, func() bool {
		return count(`SELECT count(*) FROM admin.migration_runs WHERE status = 'running'`) == 0 &&
			count(`SELECT count(*) FROM admin.tenants WHERE status = 'provisioning'`) == 0
	}, 60*time.Second, 50*time.Millisecond, "the jobs finish")
	assert.Equal(t, count(`SELECT count(*) FROM admin.migration_runs`),
		count(`SELECT count(*) FROM admin.audit_log WHERE action = 'migrations.apply'`), "every run is audited")
	assert.Equal(t, count(`SELECT count(*) FROM admin.migration_runs WHERE finished_at IS NOT NULL`),
		count(`SELECT count(*) FROM admin.audit_log WHERE action = 'migrations.apply.finished'`), "every finished run is audited")
	assert.Equal(t, count(`SELECT count(*) FROM admin.tenants`),
		count(`SELECT count(*) FROM admin.audit_log WHERE action = 'tenant.create'`), "every tenant row is audited")
	assert.Equal(t, count(`SELECT count(*) FROM admin.tenants WHERE status = 'active'`),
		count(`SELECT count(*) FROM admin.audit_log WHERE action = 'tenant.provisioned'`), "every activation is audited")
	assert.True(t, e.verify().OK)
}
