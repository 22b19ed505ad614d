package adminapi

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/audit"

	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/tenancy"
)

// outboxDB is the tenant's schema through the server's own write pool.
func (e *env) outboxDB(t tenancy.Tenant) (tenantDB, pgstore.Tenant) {
	e.t.Helper()
	pt := pgstore.Tenant{ID: t.ID, Slug: t.Slug, Status: t.Status, SchemaName: t.SchemaName,
		ConnectionID: deref(t.ConnectionID), Database: deref(t.DatabaseName)}
	db, err := e.srv.tenantDBOf(context.Background(), pt)
	require.NoError(e.t, err)
	return db, pt
}

func (e *env) outboxRows(db tenantDB) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, db.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+db.table("audit_outbox")).Scan(&n))
	return n
}

// auditRows returns the audit rows of tenantID with action.
func (e *env) auditRows(tenantID, action string) []AuditEntry {
	e.t.Helper()
	rows, err := e.w.Admin.Query(context.Background(), `SELECT `+audit.Columns+`
		FROM admin.audit_log WHERE tenant_id = $1::uuid AND action = $2 ORDER BY id`, tenantID, action)
	require.NoError(e.t, err)
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		a, err := scanAudit(rows)
		require.NoError(e.t, err)
		out = append(out, a)
	}
	require.NoError(e.t, rows.Err())
	return out
}

// A tenant RBAC write records its audit row through the tenant's outbox, shipped right after
// the commit: the outbox is empty again and the row is in admin.audit_log once.
func TestTenantWriteAuditShippedThroughOutbox(t *testing.T) {
	e := newEnv(t)
	a := e.createTenant("acme")
	db, _ := e.outboxDB(a)

	r := e.do("POST", "/api/v1/tenants/acme/users", e.admin, map[string]any{"external_id": "alice"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var u TenantUser
	r.into(&u)

	assert.Zero(t, e.outboxRows(db), "the synchronous ship empties the outbox")
	got := e.auditRows(a.ID, "tenant_user.create")
	require.Len(t, got, 1)
	assert.Equal(t, "root", got[0].Actor)
	assert.Equal(t, "tenant_user", got[0].TargetType)
	assert.Equal(t, u.ID, deref(got[0].TargetID))
	assert.Equal(t, a.ID, deref(got[0].TenantID))
	assert.NotNil(t, got[0].OutboxID, "shipped rows carry their outbox id")
	assert.Equal(t, r.Header.Get(HeaderRequestID), deref(got[0].RequestID))
	var after map[string]any
	require.NoError(t, json.Unmarshal(got[0].After, &after))
	assert.Equal(t, "alice", after["external_id"])

	// A failed write leaves nothing behind in either database.
	r = e.do("POST", "/api/v1/tenants/acme/users", e.admin, map[string]any{"external_id": "alice"})
	require.Equal(t, 409, r.Status, "%s", r.Body)
	assert.Zero(t, e.outboxRows(db))
	assert.Len(t, e.auditRows(a.ID, "tenant_user.create"), 1)

	v := e.verify()
	assert.True(t, v.OK, "%+v", v)
}

// An outbox row left by a crash after the tenant commit is shipped by the background shipper,
// and recorded once however many times it is shipped.
func TestAuditOutboxLeftByCrashShippedOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a := e.createTenant("acme")
	e.createTenant("beta")
	db, pt := e.outboxDB(a)

	var outboxID string
	var occurredAt time.Time
	require.NoError(t, db.pool.QueryRow(ctx, `INSERT INTO `+db.table("audit_outbox")+`
		(occurred_at, actor, action, target_type, target_id, after, request_id)
		VALUES (now() - interval '1 minute', 'crashed-admin', 'tenant_user.create', 'tenant_user', 'u-1', '{"external_id": "ghost"}', 'req-crash')
		RETURNING id::text, occurred_at`).Scan(&outboxID, &occurredAt))

	assert.Equal(t, 1, e.srv.ShipAuditOutboxes(ctx), "the background shipper picks the row up")
	assert.Zero(t, e.srv.ShipAuditOutboxes(ctx), "shipping again finds nothing")
	assert.Zero(t, e.outboxRows(db))

	// A crash between the admin append and the outbox delete leaves the row in the outbox:
	// shipping it again removes it without recording it twice.
	_, err := db.pool.Exec(ctx, `INSERT INTO `+db.table("audit_outbox")+`
		(id, occurred_at, actor, action, target_type, target_id, after, request_id)
		VALUES ($1::uuid, $2, 'crashed-admin', 'tenant_user.create', 'tenant_user', 'u-1', '{"external_id": "ghost"}', 'req-crash')`,
		outboxID, occurredAt)
	require.NoError(t, err)
	n, err := e.srv.shipOutbox(ctx, pt)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Zero(t, e.srv.ShipAuditOutboxes(ctx))
	assert.Zero(t, e.outboxRows(db))

	got := e.auditRows(a.ID, "tenant_user.create")
	require.Len(t, got, 1, "recorded exactly once")
	assert.Equal(t, "crashed-admin", got[0].Actor)
	assert.Equal(t, outboxID, deref(got[0].OutboxID))
	assert.Equal(t, "req-crash", deref(got[0].RequestID))
	assert.True(t, occurredAt.Equal(got[0].OccurredAt), "the row keeps the time of the change: %v vs %v", occurredAt, got[0].OccurredAt)
	assert.JSONEq(t, `{"external_id": "ghost"}`, string(got[0].After))

	v := e.verify()
	assert.True(t, v.OK, "the chain still verifies: %+v", v)
	res, err := VerifyAudit(ctx, e.w.Admin, nil)
	require.NoError(t, err)
	assert.Equal(t, v, res)

	// The outbox id is covered by the hash.
	e.tamper(`UPDATE admin.audit_log SET outbox_id = gen_random_uuid() WHERE id = $1`, got[0].ID)
	v = e.verify()
	assert.False(t, v.OK)
	require.NotNil(t, v.FirstBadID)
	assert.Equal(t, got[0].ID, *v.FirstBadID)
}

// A schema not yet migrated to the outbox still gets its audit row, appended after the commit.
func TestTenantWriteWithoutOutboxTable(t *testing.T) {
	e := newEnv(t)
	a := e.createTenant("acme")
	db, _ := e.outboxDB(a)
	_, err := db.pool.Exec(context.Background(), `DROP TABLE `+db.table("audit_outbox"))
	require.NoError(t, err)

	r := e.do("POST", "/api/v1/tenants/acme/users", e.admin, map[string]any{"external_id": "alice"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	got := e.auditRows(a.ID, "tenant_user.create")
	require.Len(t, got, 1)
	assert.Nil(t, got[0].OutboxID)
	assert.Zero(t, e.srv.ShipAuditOutboxes(context.Background()))
	assert.True(t, e.verify().OK)
}

// Anyone who can write to a tenant schema can insert outbox rows: only tenant RBAC actions
// are shipped as such; anything else is recorded as a rejected outbox row; the chained row
// says when it was shipped and from which schema, and a claimed time that cannot be right is
// marked.
func TestForgedOutboxRowsAreNotShippedAsGenuine(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a := e.createTenant("acme")
	db, pt := e.outboxDB(a)
	insert := func(occurredAt, action, targetType string) {
		_, err := db.pool.Exec(ctx, `INSERT INTO `+db.table("audit_outbox")+`
			(occurred_at, actor, action, target_type, target_id, after) VALUES ($1::timestamptz, 'root', $2, $3, 'x', '{}')`,
			occurredAt, action, targetType)
		require.NoError(t, err)
	}
	insert("2020-01-01T00:00:00Z", "tenant.delete", "tenant")
	insert("2020-01-01T00:00:00Z", "tenant_user.create", "tenant_user")
	insert("2999-01-01T00:00:00Z", "tenant_user.delete", "tenant_user")
	_, err := e.srv.shipOutbox(ctx, pt)
	require.NoError(t, err)
	assert.Zero(t, e.outboxRows(db))

	assert.Empty(t, e.auditRows(a.ID, "tenant.delete"), "a platform action claimed through the outbox was recorded as genuine")
	rejected := e.auditRows(a.ID, "audit_outbox.rejected")
	require.Len(t, rejected, 1)
	assert.Contains(t, string(rejected[0].After), "tenant.delete")
	for _, action := range []string{"tenant_user.create", "tenant_user.delete"} {
		got := e.auditRows(a.ID, action)
		require.Len(t, got, 1, action)
		assert.True(t, got[0].OccurredAtImplausible, "%s: a claimed time before the tenant existed or in the future is marked", action)
		require.NotNil(t, got[0].ShippedAt, action)
		assert.Equal(t, a.SchemaName, deref(got[0].SourceSchema), action)
	}
	// An ordinary write's row is plausible and carries its shipping facts too.
	e.must(201, "POST", "/api/v1/tenants/acme/users", map[string]any{"external_id": "alice"})
	rows := e.auditRows(a.ID, "tenant_user.create")
	require.Len(t, rows, 2)
	assert.False(t, rows[1].OccurredAtImplausible)
	assert.NotNil(t, rows[1].ShippedAt)
	assert.True(t, e.verify().OK, "the chain verifies: the new fields are covered by the hash")
	e.tamper(`UPDATE admin.audit_log SET source_schema = 't_other' WHERE id = $1`, rows[1].ID)
	assert.False(t, e.verify().OK, "the source schema is covered by the hash")
}
