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
	// One statement, so one snapshot: a request the client gave up on may still be running on
	// the server and commit between two separate counts. The invariants must hold once
	// nothing is running or provisioning.
	var got [8]int
	snapshot := func() [8]int {
		var n [8]int
		require.NoError(t, e.w.Admin.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM admin.migration_runs WHERE status = 'running'),
			(SELECT count(*) FROM admin.tenants WHERE status = 'provisioning'),
			(SELECT count(*) FROM admin.migration_runs),
			(SELECT count(*) FROM admin.audit_log WHERE action = 'migrations.apply'),
			(SELECT count(*) FROM admin.migration_runs WHERE finished_at IS NOT NULL),
			(SELECT count(*) FROM admin.audit_log WHERE action = 'migrations.apply.finished'),
			(SELECT count(*) FROM admin.tenants),
			(SELECT count(*) FROM admin.audit_log WHERE action = 'tenant.create')`).
			Scan(&n[0], &n[1], &n[2], &n[3], &n[4], &n[5], &n[6], &n[7]))
		return n
	}
	activations := func() (active, audited int) {
		require.NoError(t, e.w.Admin.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM admin.tenants WHERE status = 'active'),
			(SELECT count(*) FROM admin.audit_log WHERE action = 'tenant.provisioned')`).Scan(&active, &audited))
		return active, audited
	}
	require.Eventually(t, func() bool {
		got = snapshot()
		active, audited := activations()
		return got[0] == 0 && got[1] == 0 && got[2] == got[3] && got[4] == got[5] && got[6] == got[7] && active == audited
	}, 60*time.Second, 50*time.Millisecond,
		"the jobs finish, and every run, finished run, tenant row and activation is audited (running, provisioning, runs/audited, finished/audited, tenants/audited: %v)", &got)
	assert.True(t, e.verify().OK)
}
