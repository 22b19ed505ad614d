package adminapi

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// settings.user_sync is validated (shape, role codes that exist and are active in the
// tenant), stored in canonical form, and copied into the tenant schema where sync_user reads
// it; settings without it turn sync off there too.
func TestTenantUserSyncSetting(t *testing.T) {
	e := newEnv(t)
	a := e.createTenant("acme")
	db, _ := e.outboxDB(a)
	const path = "/api/v1/admin/tenants/acme"
	schemaCopy := func() (string, bool) {
		var v string
		err := db.pool.QueryRow(context.Background(), `SELECT value::text FROM `+db.table("settings")+` WHERE key = 'user_sync'`).Scan(&v)
		return v, err == nil
	}
	_, err := db.pool.Exec(context.Background(), `UPDATE `+db.table("roles")+` SET is_active = false WHERE code = 'guest'`)
	require.NoError(t, err)

	for _, tc := range []struct {
		name  string
		sync  any
		field string
	}{
		{"not an object", true, "settings.user_sync"},
		{"enabled missing", map[string]any{"default_roles": []string{}}, "settings.user_sync.enabled"},
		{"enabled not a boolean", map[string]any{"enabled": "yes"}, "settings.user_sync"},
		{"unknown field", map[string]any{"enabled": true, "admins": true}, "settings.user_sync"},
		{"bad role code", map[string]any{"enabled": true, "default_roles": []string{"Member;"}}, "settings.user_sync.default_roles"},
		{"role twice", map[string]any{"enabled": true, "default_roles": []string{"member", "member"}}, "settings.user_sync.default_roles"},
		{"unknown role", map[string]any{"enabled": true, "default_roles": []string{"member", "wizard"}}, "settings.user_sync.default_roles"},
		{"inactive role", map[string]any{"enabled": true, "default_roles": []string{"guest"}}, "settings.user_sync.default_roles"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("PATCH", path, e.admin, map[string]any{"settings": map[string]any{"user_sync": tc.sync}})
			require.Equal(t, 422, r.Status, "%s", r.Body)
			assert.Contains(t, r.Error.Details["fields"], tc.field, "%s", r.Body)
			_, ok := schemaCopy()
			assert.False(t, ok, "a refused setting reached the schema")
		})
	}

	r := e.do("PATCH", path, e.admin, map[string]any{"settings": map[string]any{
		"audiences": []string{"app"}, "user_sync": map[string]any{"enabled": true, "default_roles": []string{"member", "viewer"}}}})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var got struct {
		Settings map[string]any `json:"settings"`
	}
	r.into(&got)
	assert.Equal(t, map[string]any{"enabled": true, "default_roles": []any{"member", "viewer"}}, got.Settings["user_sync"])
	v, ok := schemaCopy()
	require.True(t, ok, "the schema has no copy")
	assert.JSONEq(t, `{"enabled": true, "default_roles": ["member", "viewer"]}`, v)
	var enabled bool
	require.NoError(t, e.w.Admin.QueryRow(context.Background(),
		`SELECT settings->'user_sync'->'enabled' = 'true'::jsonb FROM admin.tenants WHERE slug = 'acme'`).Scan(&enabled))
	assert.True(t, enabled)

	// enabled alone: no default roles.
	r = e.do("PATCH", path, e.admin, map[string]any{"settings": map[string]any{"user_sync": map[string]any{"enabled": true}}})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	v, _ = schemaCopy()
	assert.JSONEq(t, `{"enabled": true, "default_roles": []}`, v)

	// Settings replaced without user_sync: off in the schema too.
	r = e.do("PATCH", path, e.admin, map[string]any{"settings": map[string]any{"audiences": []string{"app"}}})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	_, ok = schemaCopy()
	assert.False(t, ok, "sync is still on in the schema")
}

// Default roles confer their codes on every user a token creates: an actor may set only roles
// it could assign itself.
func TestTenantUserSyncDefaultRolesNoEscalation(t *testing.T) {
	e := newEnv(t)
	a := e.createTenant("acme")
	db, _ := e.outboxDB(a)
	ta := e.platformUser("ta", "tenant_admin@"+a.ID) // tenants.update at acme, no role inside it
	const path = "/api/v1/admin/tenants/acme"
	r := e.do("PATCH", path, ta, map[string]any{"settings": map[string]any{"user_sync": map[string]any{"enabled": true, "default_roles": []string{"member"}}}})
	require.Equal(t, 403, r.Status, "%s", r.Body)
	var n int
	require.NoError(t, db.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+db.table("settings")+` WHERE key = 'user_sync'`).Scan(&n))
	assert.Zero(t, n, "a refused setting reached the schema")

	r = e.do("PATCH", path, ta, map[string]any{"settings": map[string]any{"user_sync": map[string]any{"enabled": true}}})
	require.Equal(t, 200, r.Status, "sync without default roles confers nothing: %s", r.Body)
}

// A user created by sync_user (the pdp's write path) is audited through the tenant's outbox
// like an API write: the shipper records it in admin.audit_log, with the sync actor.
func TestUserSyncAuditShipped(t *testing.T) {
	e := newEnv(t)
	a := e.createTenant("acme")
	db, _ := e.outboxDB(a)
	r := e.do("PATCH", "/api/v1/admin/tenants/acme", e.admin, map[string]any{"settings": map[string]any{
		"user_sync": map[string]any{"enabled": true, "default_roles": []string{"member"}}}})
	require.Equal(t, 200, r.Status, "%s", r.Body)

	var outcome string
	require.NoError(t, db.pool.QueryRow(context.Background(), `SELECT outcome FROM `+db.table("sync_user")+`('kc-123', 'kim@example.com', 'kim', interval '1 hour')`).Scan(&outcome))
	require.Equal(t, "created", outcome)
	e.srv.ShipAuditOutboxes(context.Background())
	rows := e.auditRows(a.ID, "tenant_user.sync_create")
	require.Len(t, rows, 1, "got %d audit rows, want 1", len(rows))
	assert.Equal(t, "system:user-sync", rows[0].Actor)
	assert.Equal(t, 0, e.outboxRows(db))
	assert.Empty(t, e.auditRows(a.ID, "audit_outbox.rejected"))
}
