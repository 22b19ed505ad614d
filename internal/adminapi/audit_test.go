package adminapi

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func (e *env) verify() AuditVerification {
	e.t.Helper()
	r := e.do("POST", "/api/v1/admin/audit/verify", e.admin, nil)
	require.Equal(e.t, 200, r.Status, "%s", r.Body)
	var v AuditVerification
	r.into(&v)
	return v
}

// superExec runs SQL with the append-only trigger disabled, as a superuser tampering would.
func (e *env) tamper(sql string, args ...any) {
	e.t.Helper()
	ctx := context.Background()
	_, err := e.w.Admin.Exec(ctx, `ALTER TABLE admin.audit_log DISABLE TRIGGER audit_log_append_only`)
	require.NoError(e.t, err)
	_, err = e.w.Admin.Exec(ctx, sql, args...)
	require.NoError(e.t, err)
	_, err = e.w.Admin.Exec(ctx, `ALTER TABLE admin.audit_log ENABLE TRIGGER audit_log_append_only`)
	require.NoError(e.t, err)
}

func seedAudit(t *testing.T, e *env) {
	e.createTenant("acme")
	for _, p := range []string{"suspend", "activate", "suspend"} {
		require.Equal(t, 200, e.do("POST", "/api/v1/admin/tenants/acme/"+p, e.admin, nil).Status)
	}
	v := e.verify()
	require.True(t, v.OK, "fresh chain verifies: %+v", v)
	require.GreaterOrEqual(t, v.Rows, int64(5))
}

func TestAuditChainDetectsAlteredRow(t *testing.T) {
	e := newEnv(t)
	seedAudit(t, e)
	// The table refuses changes while the trigger is on.
	_, err := e.w.Admin.Exec(context.Background(), `UPDATE admin.audit_log SET actor = 'mallory' WHERE id = 3`)
	require.Error(t, err, "audit_log is append-only")

	e.tamper(`UPDATE admin.audit_log SET after = '{"status": "active"}' WHERE id = 3`)
	v := e.verify()
	assert.False(t, v.OK)
	require.NotNil(t, v.FirstBadID)
	assert.Equal(t, int64(3), *v.FirstBadID)
	assert.Contains(t, v.Problem, "row 3 altered")

	// Rewriting the hash too is caught by the next row's prev_hash.
	e.tamper(`UPDATE admin.audit_log SET hash = sha256(hash) WHERE id = 3`)
	v = e.verify()
	assert.False(t, v.OK)
	assert.Equal(t, int64(3), *v.FirstBadID, "%+v", v)
	res, err := VerifyAudit(context.Background(), e.w.Admin, nil)
	require.NoError(t, err)
	assert.Equal(t, v, res)
}

func TestAuditChainDetectsRemovedRow(t *testing.T) {
	e := newEnv(t)
	seedAudit(t, e)
	e.tamper(`DELETE FROM admin.audit_log WHERE id = 2`)
	v := e.verify()
	assert.False(t, v.OK)
	require.NotNil(t, v.FirstBadID)
	assert.Equal(t, int64(2), *v.FirstBadID)
	assert.Contains(t, v.Problem, "row 2 removed")
}

// Concurrent appends stay one linear chain (the advisory lock), with no id gaps even when a
// transaction that appended rolls back.
func TestAuditConcurrentAppends(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := "suspend"
			if i%2 == 1 {
				p = "activate"
			}
			e.do("POST", "/api/v1/admin/tenants/acme/"+p, e.admin, nil)
			e.do("PATCH", "/api/v1/admin/tenants/acme", e.admin, map[string]any{"name": "n"})
		}()
	}
	wg.Wait()
	// A failed write (deleted tenant cannot be patched after the audit lock was taken) rolls
	// back its audit row too.
	v := e.verify()
	assert.True(t, v.OK, "%+v", v)
	assert.GreaterOrEqual(t, v.Rows, int64(12))
}
