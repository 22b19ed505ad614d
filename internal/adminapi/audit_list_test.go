package adminapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// listAudit lists the audit log through the API with the given query.
func (e *env) listAudit(q url.Values) ([]AuditEntry, map[string]any) {
	e.t.Helper()
	r := e.do("GET", "/api/v1/admin/audit?"+q.Encode(), e.admin, nil)
	require.Equal(e.t, 200, r.Status, "%s", r.Body)
	var list []AuditEntry
	r.into(&list)
	return list, r.Meta
}

func TestAuditListFilters(t *testing.T) {
	e := newEnv(t)
	acme := e.createTenant("acme")
	beta := e.createTenant("beta")
	ops := e.platformUser("ops", "system_admin")
	for _, p := range []string{"suspend", "activate"} {
		require.Equal(t, 200, e.do("POST", "/api/v1/admin/tenants/acme/"+p, ops, nil).Status)
		require.Equal(t, 200, e.do("POST", "/api/v1/admin/tenants/beta/"+p, e.admin, nil).Status)
	}
	all, meta := e.listAudit(url.Values{"page_size": {"100"}})
	require.GreaterOrEqual(t, len(all), 7)
	assert.InDelta(t, len(all), meta["total"], 0)

	t.Run("actor", func(t *testing.T) {
		got, meta := e.listAudit(url.Values{"actor": {"ops"}})
		require.Len(t, got, 2)
		assert.InDelta(t, 2, meta["total"], 0)
		for _, a := range got {
			assert.Equal(t, "ops", a.Actor)
			assert.Equal(t, acme.ID, deref(a.TenantID))
		}
	})
	t.Run("tenant_id", func(t *testing.T) {
		got, _ := e.listAudit(url.Values{"tenant_id": {beta.ID}})
		want := 0
		for _, a := range all {
			if deref(a.TenantID) == beta.ID {
				want++
			}
		}
		require.GreaterOrEqual(t, want, 3, "at least create, suspend, activate")
		require.Len(t, got, want)
		for _, a := range got {
			assert.Equal(t, beta.ID, deref(a.TenantID))
		}
		got, _ = e.listAudit(url.Values{"tenant_id": {beta.ID}, "actor": {"ops"}})
		assert.Empty(t, got, "filters combine")
		r := e.do("GET", "/api/v1/admin/audit?tenant_id=beta", e.admin, nil)
		assert.Equal(t, 422, r.Status, "a slug is not a tenant id: %s", r.Body)
	})
	t.Run("pagination", func(t *testing.T) {
		var seen []int64
		pages := 0
		for page := 1; ; page++ {
			got, meta := e.listAudit(url.Values{"page_size": {"2"}, "page": {fmt.Sprint(page)}})
			if len(got) == 0 {
				break
			}
			assert.InDelta(t, len(all), meta["total"], 0, "page %d total", page)
			pages++
			require.LessOrEqual(t, len(got), 2)
			for _, a := range got {
				seen = append(seen, a.ID)
			}
		}
		assert.Equal(t, (len(all)+1)/2, pages)
		want := make([]int64, len(all))
		for i, a := range all {
			want[i] = a.ID
		}
		assert.Equal(t, want, seen, "pages cover every row once, newest first")
	})
}

// seedOutbox adds n outbox rows to the tenant's schema, a second apart in order.
func (e *env) seedOutbox(db tenantDB, n int) {
	e.t.Helper()
	_, err := db.pool.Exec(context.Background(), `INSERT INTO `+db.table("audit_outbox")+`
		(occurred_at, actor, action, target_type, target_id, after, request_id)
		SELECT now() - interval '1 day' + g * interval '1 second', 'bulk', 'tenant_user.create', 'tenant_user',
			'u-' || g, jsonb_build_object('n', g), 'req-' || g
		FROM generate_series(1, $1) g`, n)
	require.NoError(e.t, err)
}

// An outbox longer than one batch is shipped whole, over several runs, in the order of the
// changes.
func TestAuditOutboxBeyondOneBatch(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a := e.createTenant("acme")
	db, pt := e.outboxDB(a)
	const rows = 2*outboxBatch + 3
	e.seedOutbox(db, rows)

	var shipped []int
	for range 10 {
		n, err := e.srv.shipOutbox(ctx, pt)
		require.NoError(t, err)
		if n == 0 {
			break
		}
		shipped = append(shipped, n)
	}
	assert.Equal(t, []int{outboxBatch, outboxBatch, 3}, shipped, "rows per run")
	assert.Zero(t, e.outboxRows(db))

	got := e.auditRows(a.ID, "tenant_user.create")
	require.Len(t, got, rows)
	for i, r := range got {
		var after struct{ N int }
		require.NoError(t, json.Unmarshal(r.After, &after))
		require.Equal(t, i+1, after.N, "row %d of the chain is change %d", i, after.N)
	}
	v := e.verify()
	assert.True(t, v.OK, "%+v", v)
}

// Two shippers (two admin servers, or the request path and the background shipper) racing on
// the same outbox row record it once, and neither fails.
func TestAuditOutboxTwoShippersRace(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a := e.createTenant("acme")
	db, pt := e.outboxDB(a)
	const rounds = 20
	for round := range rounds {
		e.seedOutbox(db, 1)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var ns [2]int
		var errs [2]error
		for i := range 2 {
			wg.Go(func() {
				<-start
				ns[i], errs[i] = e.srv.shipOutbox(ctx, pt)
			})
		}
		close(start)
		wg.Wait()
		require.NoError(t, errs[0], "round %d", round)
		require.NoError(t, errs[1], "round %d", round)
		assert.GreaterOrEqual(t, ns[0]+ns[1], 1, "round %d: somebody shipped it", round)
		require.Zero(t, e.outboxRows(db), "round %d", round)
	}
	var n, distinct int
	require.NoError(t, e.w.Admin.QueryRow(ctx, `SELECT count(*), count(DISTINCT outbox_id) FROM admin.audit_log WHERE actor = 'bulk'`).Scan(&n, &distinct))
	assert.Equal(t, rounds, n, "each row recorded once")
	assert.Equal(t, rounds, distinct)
	v := e.verify()
	assert.True(t, v.OK, "%+v", v)
}
