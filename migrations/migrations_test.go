package migrations_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

type payload struct {
	Level    string  `json:"level"`
	TenantID *string `json:"tenant_id"`
	Kind     string  `json:"kind"`
	UserID   *string `json:"user_id"`
	RoleID   *string `json:"role_id"`
	Version  int64   `json:"version"`
}

func listen(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	_, err = conn.Exec(context.Background(), "LISTEN neoauthz")
	require.NoError(t, err)
	return conn
}

// next returns every notification committed on db since the last call: it commits a marker
// notification of its own and reads until the marker, which PostgreSQL delivers after every
// notification of the transactions committed before it.
func next(t *testing.T, conn *pgx.Conn, db *pgxpool.Pool) []payload {
	t.Helper()
	marker := fmt.Sprintf("marker-%d", markers.Add(1))
	_, err := db.Exec(context.Background(), `SELECT pg_notify('neoauthz', $1)`, marker)
	require.NoError(t, err)
	var out []payload
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		n, err := conn.WaitForNotification(ctx)
		cancel()
		require.NoError(t, err, "the marker notification never arrived")
		if n.Payload == marker {
			require.NotEmpty(t, out, "no notification arrived")
			return out
		}
		var p payload
		require.NoError(t, json.Unmarshal([]byte(n.Payload), &p), n.Payload)
		assert.Less(t, len(n.Payload), 8000)
		out = append(out, p)
	}
}

var markers atomic.Int64

func str(s string) *string { return &s }

func TestTenantTriggersNotifyEachKindOfChange(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "migrations")
	primary := w.AddRegion(t, "us-east-1")
	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"})
	require.NoError(t, err)
	dsn, err := w.Registry.ConnString(primary, "")
	require.NoError(t, err)
	db := w.Connect(t, primary, "")
	l := listen(t, dsn)

	var version int64
	require.NoError(t, db.QueryRow(ctx, `SELECT version FROM t_acme.authz_state`).Scan(&version))
	tenant := str(tn.ID)
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := db.Exec(ctx, sql, args...)
		require.NoError(t, err, sql)
	}
	expect := func(want ...payload) {
		t.Helper()
		version++
		for i := range want {
			want[i].Level, want[i].TenantID, want[i].Version = "tenant", tenant, version
		}
		assert.ElementsMatch(t, want, next(t, l, db))
		var v int64
		require.NoError(t, db.QueryRow(ctx, `SELECT version FROM t_acme.authz_state`).Scan(&v))
		assert.Equal(t, version, v, "authz_state.version is bumped once per transaction")
	}

	exec(`INSERT INTO t_acme.users (external_id, email) VALUES ('kc-alice', 'alice@example.com'), ('kc-bob', NULL)`)
	expect(payload{Kind: "user", UserID: str("kc-alice")}, payload{Kind: "user", UserID: str("kc-bob")})

	exec(`INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r WHERE u.external_id = 'kc-alice' AND r.code = 'member'`)
	expect(payload{Kind: "user", UserID: str("kc-alice")})

	exec(`INSERT INTO t_acme.user_permissions (user_id, permission_id, is_granted) SELECT u.id, p.id, false FROM t_acme.users u, t_acme.permissions p WHERE u.external_id = 'kc-bob' AND p.code = 'billing.read.tenant'`)
	expect(payload{Kind: "user", UserID: str("kc-bob")})

	exec(`INSERT INTO t_acme.teams (slug, name) VALUES ('eng', 'Engineering')`)
	expect(payload{Kind: "team"})

	exec(`INSERT INTO t_acme.team_members (team_id, user_id) SELECT t.id, u.id FROM t_acme.teams t, t_acme.users u WHERE u.external_id = 'kc-bob'`)
	expect(payload{Kind: "user", UserID: str("kc-bob")})

	var member string
	require.NoError(t, db.QueryRow(ctx, `SELECT id::text FROM t_acme.roles WHERE code = 'member'`).Scan(&member))
	exec(`UPDATE t_acme.roles SET is_active = false WHERE code = 'member'`)
	expect(payload{Kind: "role", RoleID: str(member)})

	exec(`DELETE FROM t_acme.role_permissions WHERE role_id = $1::uuid AND permission_id = (SELECT id FROM t_acme.permissions WHERE code = 'documents.*.own')`, member)
	expect(payload{Kind: "role", RoleID: str(member)})

	exec(`INSERT INTO t_acme.permissions (code) VALUES ('invoices.read.tenant')`)
	expect(payload{Kind: "permission"})

	// Deleting a user cascades to its assignments and memberships: one notification for the user.
	exec(`DELETE FROM t_acme.users WHERE external_id = 'kc-alice'`)
	expect(payload{Kind: "user", UserID: str("kc-alice")})

	// A rolled-back change notifies nothing and bumps nothing.
	tx, err := db.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `DELETE FROM t_acme.users WHERE external_id = 'kc-bob'`)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	exec(`UPDATE t_acme.users SET status = 'inactive' WHERE external_id = 'kc-bob'`)
	expect(payload{Kind: "user", UserID: str("kc-bob")})
}

func TestAdminTriggersNotifyPlatformAndTenantChanges(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "migrations")
	w.AddRegion(t, "us-east-1")
	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"})
	require.NoError(t, err)
	l := listen(t, w.AdminURL)
	exec := func(sql string) {
		t.Helper()
		_, err := w.Admin.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}

	_, err = w.Tenants.Suspend(ctx, "acme")
	require.NoError(t, err)
	got := next(t, l, w.Admin)
	require.Len(t, got, 1)
	assert.Equal(t, "tenant", got[0].Level)
	assert.Equal(t, "tenant", got[0].Kind)
	assert.Equal(t, &tn.ID, got[0].TenantID)

	exec(`UPDATE admin.tenants SET settings = '{"audiences": ["acme-app"]}' WHERE slug = 'acme'`)
	got = next(t, l, w.Admin)
	require.Len(t, got, 1, "accepted audiences live in settings")
	assert.Equal(t, "tenant", got[0].Kind)

	exec(`UPDATE admin.tenants SET name = 'Renamed' WHERE slug = 'acme'`)
	exec(`INSERT INTO admin.platform_users (external_id) VALUES ('kc-root')`)
	got = next(t, l, w.Admin)
	require.Len(t, got, 1, "a rename is not an authorization change; the user insert is")
	assert.Equal(t, payload{Level: "platform", Kind: "user", UserID: str("kc-root"), Version: got[0].Version}, got[0])

	exec(`INSERT INTO admin.platform_user_roles (user_id, role_id, tenant_id)
		SELECT u.id, r.id, t.id FROM admin.platform_users u, admin.platform_roles r, admin.tenants t
		WHERE u.external_id = 'kc-root' AND r.code = 'tenant_admin' AND t.slug = 'acme'`)
	got = next(t, l, w.Admin)
	require.Len(t, got, 1)
	assert.Equal(t, "user", got[0].Kind)
	assert.Equal(t, str("kc-root"), got[0].UserID)

	exec(`UPDATE admin.platform_roles SET is_active = false WHERE code = 'support'`)
	got = next(t, l, w.Admin)
	require.Len(t, got, 1)
	assert.Equal(t, "platform", got[0].Level)
	assert.Equal(t, "role", got[0].Kind)
	assert.NotNil(t, got[0].RoleID)
}

func TestConstraints(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "migrations")
	primary := w.AddRegion(t, "us-east-1")
	_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"})
	require.NoError(t, err)
	db := w.Connect(t, primary, "")
	refused := []string{
		`INSERT INTO t_acme.permissions (code) VALUES ('Users.read.tenant')`,
		`INSERT INTO t_acme.permissions (code) VALUES ('users.read.platform')`,
		`INSERT INTO t_acme.permissions (code) VALUES ('users.read')`,
		`INSERT INTO t_acme.permissions (code) VALUES ('users.re*d.tenant')`,
		`INSERT INTO t_acme.roles (code, name) VALUES ('Admin', 'x')`,
		`INSERT INTO t_acme.users (external_id, status) VALUES ('u', 'sleeping')`,
		// One assignment per (user, role, team), unrestricted included (NULLs not distinct).
		`WITH u AS (INSERT INTO t_acme.users (external_id) VALUES ('dup') RETURNING id)
		 INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM u, t_acme.roles r, generate_series(1, 2) WHERE r.code = 'viewer'`,
		// A role still assigned cannot be deleted.
		`WITH u AS (INSERT INTO t_acme.users (external_id) VALUES ('holder') RETURNING id),
		      a AS (INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM u, t_acme.roles r WHERE r.code = 'viewer')
		 SELECT 1`,
		`INSERT INTO admin.tenants (slug, name, deployment_type, region_code, schema_name, external_auth_realm) VALUES ('x', 'x', 'schema', 'us-east-1', 'bad"name', 'x')`,
		`INSERT INTO admin.platform_permissions (code) VALUES ('tenants.read.team')`,
	}
	_, err = db.Exec(ctx, refused[7])
	require.NoError(t, err, "setup: assign viewer")
	refused[7] = `DELETE FROM t_acme.roles WHERE code = 'viewer'`
	for _, sql := range refused {
		target := db
		if len(sql) > 30 && sql[12:18] == "admin." {
			target = w.Admin
		}
		_, err := target.Exec(ctx, sql)
		assert.Error(t, err, "must be refused: %s", sql)
	}
	for _, ok := range []string{`INSERT INTO t_acme.permissions (code) VALUES ('invoices.*.team')`, `INSERT INTO t_acme.permissions (code) VALUES ('x-y.a_b.own')`} {
		_, err := db.Exec(ctx, ok)
		assert.NoError(t, err, ok)
	}

	// A team may not become its own ancestor.
	_, err = db.Exec(ctx, `INSERT INTO t_acme.teams (slug, name) VALUES ('a', 'A'), ('b', 'B')`)
	require.NoError(t, err)
	_, err = db.Exec(ctx, `UPDATE t_acme.teams SET parent_team_id = (SELECT id FROM t_acme.teams WHERE slug = 'a') WHERE slug = 'b'`)
	require.NoError(t, err)
	_, err = db.Exec(ctx, `UPDATE t_acme.teams SET parent_team_id = (SELECT id FROM t_acme.teams WHERE slug = 'b') WHERE slug = 'a'`)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "own ancestor")

	// The audit log is append-only.
	_, err = w.Admin.Exec(ctx, `DELETE FROM admin.audit_log`)
	require.Error(t, err)
}
