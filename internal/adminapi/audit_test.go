package adminapi

import (
	"context"
	"fmt"
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
	ctx := context.Background()
	// Tenant renames to "rollback-me" fail at commit, after their audit row was appended.
	// (The database is the test's own.)
	_, err := e.w.Admin.Exec(ctx, `
		CREATE FUNCTION public.refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
		CREATE CONSTRAINT TRIGGER refuse_rollback_me AFTER INSERT ON admin.audit_log
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
		WHEN (NEW.after->>'name' = 'rollback-me') EXECUTE FUNCTION public.refuse_audit()`)
	require.NoError(t, err)
	before := e.verify().Rows

	const workers = 10
	type outcome struct {
		what   string
		status int
	}
	results := make(chan outcome, 3*workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			p := "suspend"
			if i%2 == 1 {
				p = "activate"
			}
			results <- outcome{p, e.do("POST", "/api/v1/admin/tenants/acme/"+p, e.admin, nil).Status}
			results <- outcome{"rename", e.do("PATCH", "/api/v1/admin/tenants/acme", e.admin, map[string]any{"name": fmt.Sprint("n", i)}).Status}
			results <- outcome{"rename rolled back", e.do("PATCH", "/api/v1/admin/tenants/acme", e.admin, map[string]any{"name": "rollback-me"}).Status}
		})
	}
	wg.Wait()
	close(results)
	for r := range results {
		want := 200
		if r.what == "rename rolled back" {
			want = 500
		}
		assert.Equal(t, want, r.status, "%s: got status %d, want %d", r.what, r.status, want)
	}

	var renamed int
	require.NoError(t, e.w.Admin.QueryRow(ctx, `SELECT count(*) FROM admin.audit_log WHERE after->>'name' = 'rollback-me'`).Scan(&renamed))
	assert.Zero(t, renamed, "a rolled-back write leaves no audit row")
	var name string
	require.NoError(t, e.w.Admin.QueryRow(ctx, `SELECT name FROM admin.tenants WHERE slug = 'acme'`).Scan(&name))
	assert.NotEqual(t, "rollback-me", name, "nor its change")
	v := e.verify()
	assert.True(t, v.OK, "no gap where the rolled-back rows were: %+v", v)
	assert.Equal(t, before+2*workers, v.Rows, "one row per successful write")
	var maxID int64
	require.NoError(t, e.w.Admin.QueryRow(ctx, `SELECT max(id) FROM admin.audit_log`).Scan(&maxID))
	assert.Equal(t, v.Rows, maxID, "ids run 1..n without gaps")
}
