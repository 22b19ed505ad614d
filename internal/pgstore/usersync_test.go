package pgstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/tenancy"
)

func TestSyncTenantUserOutcomes(t *testing.T) {
	e := newEnv(t, pgstore.Options{})
	ctx := context.Background()
	tn, db := e.createTenant(t, tenancy.CreateRequest{Slug: "acme", Realm: "acme"})
	p := pgstore.UserProfile{ExternalID: "kc-1", Email: "a@example.com", Username: "a"}

	out, v0, err := e.store.SyncTenantUser(ctx, tn, p, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, pgstore.SyncDisabled, out, "no settings row: off")
	_, err = db.Exec(ctx, `INSERT INTO `+table(tn.SchemaName, "settings")+` (key, value)
		VALUES ('user_sync', '{"enabled": true, "default_roles": ["viewer", "gone"]}')`)
	require.NoError(t, err)

	out, v1, err := e.store.SyncTenantUser(ctx, tn, p, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, pgstore.SyncCreated, out)
	assert.Greater(t, v1, v0, "the insert bumps the version")
	assert.Equal(t, stateVersion(t, db, tn.SchemaName), v1, "the version returned is the write's")
	var roles []string
	require.NoError(t, db.QueryRow(ctx, `SELECT array_agg(r.code) FROM `+table(tn.SchemaName, "user_roles")+` ur
		JOIN `+table(tn.SchemaName, "roles")+` r ON r.id = ur.role_id`).Scan(&roles))
	assert.Equal(t, []string{"viewer"}, roles, "a default role that does not exist is skipped")

	out, v2, err := e.store.SyncTenantUser(ctx, tn, p, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, pgstore.SyncUnchanged, out)
	assert.Equal(t, v1, v2, "nothing written")

	p.Email = "b@example.com"
	out, _, err = e.store.SyncTenantUser(ctx, tn, p, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, pgstore.SyncDeferred, out, "the row changed less than an hour ago")
	out, v3, err := e.store.SyncTenantUser(ctx, tn, p, 0)
	require.NoError(t, err)
	assert.Equal(t, pgstore.SyncUpdated, out)
	assert.Greater(t, v3, v2)
	var email string
	require.NoError(t, db.QueryRow(ctx, `SELECT email FROM `+table(tn.SchemaName, "users")+` WHERE external_id = 'kc-1'`).Scan(&email))
	assert.Equal(t, "b@example.com", email)
}

// The pdp's database role needs no write privilege: EXECUTE on sync_user is the whole of its
// write path, PUBLIC may not run the function, and a temporary table of the caller cannot
// stand in for the schema's tables.
func TestSyncUserIsTheOnlyWritePath(t *testing.T) {
	e := newEnv(t, pgstore.Options{})
	ctx := context.Background()
	tn, db := e.createTenant(t, tenancy.CreateRequest{Slug: "acme", Realm: "acme"})
	schema := tn.SchemaName
	_, err := db.Exec(ctx, `INSERT INTO `+table(schema, "settings")+` (key, value) VALUES ('user_sync', '{"enabled": true, "default_roles": ["member"]}')`)
	require.NoError(t, err)

	role := unique("pdp_test_")
	_, err = db.Exec(ctx, `CREATE ROLE `+pgx.Identifier{role}.Sanitize()+` LOGIN`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = db.Exec(context.Background(), `DROP OWNED BY `+pgx.Identifier{role}.Sanitize())
		_, _ = db.Exec(context.Background(), `DROP ROLE `+pgx.Identifier{role}.Sanitize())
	})
	_, err = db.Exec(ctx, `GRANT USAGE ON SCHEMA `+pgx.Identifier{schema}.Sanitize()+` TO `+pgx.Identifier{role}.Sanitize()+`;
		GRANT SELECT ON ALL TABLES IN SCHEMA `+pgx.Identifier{schema}.Sanitize()+` TO `+pgx.Identifier{role}.Sanitize())
	require.NoError(t, err)

	cfg, err := pgx.ParseConfig(db.Config().ConnString())
	require.NoError(t, err)
	cfg.User, cfg.Password = role, ""
	cfg.RuntimeParams["default_transaction_read_only"] = "on" // as the pdp's sessions
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })

	call := func() (string, error) {
		var out string
		err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{AccessMode: pgx.ReadWrite}, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT outcome FROM `+table(schema, "sync_user")+`('kc-9', NULL, NULL, interval '1 hour')`).Scan(&out)
		})
		return out, err
	}
	denied := func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "42501"
	}
	_, err = call()
	assert.True(t, denied(err), "without the GRANT: got %v, want permission denied", err)
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{AccessMode: pgx.ReadWrite}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO `+table(schema, "users")+` (external_id) VALUES ('kc-9')`)
		return err
	})
	assert.True(t, denied(err), "direct insert: got %v, want permission denied", err)

	_, err = db.Exec(ctx, `GRANT EXECUTE ON FUNCTION `+table(schema, "sync_user")+`(text, text, text, interval) TO `+pgx.Identifier{role}.Sanitize())
	require.NoError(t, err)
	// A look-alike users table in the caller's temporary schema is not used.
	_, err = conn.Exec(ctx, `BEGIN READ WRITE; CREATE TEMP TABLE users (id uuid, external_id text, email text, display_name text); COMMIT`)
	require.NoError(t, err)
	out, err := call()
	require.NoError(t, err)
	assert.Equal(t, "created", out)
	var n int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM `+table(schema, "users")+` u JOIN `+table(schema, "user_roles")+` ur ON ur.user_id = u.id
		WHERE u.external_id = 'kc-9'`).Scan(&n))
	assert.Equal(t, 1, n, "the schema's users table got the user and its role")
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_temp.users`).Scan(&n))
	assert.Zero(t, n, "the temporary look-alike was written")
}
