package admincli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os/user"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/testenv"
)

func cliActor(t *testing.T) string {
	u, err := user.Current()
	require.NoError(t, err)
	return "cli:" + u.Username
}

// Every CLI write is audited with actor cli:<os user>, in the transaction of the change.
func TestCLIWritesAreAudited(t *testing.T) {
	w := testenv.New(t, "admincli")
	ctx := context.Background()
	w.AddRegion(t, "us-east-1")
	cfg, err := pgx.ParseConfig(w.AdminURL)
	require.NoError(t, err)
	steps := [][]string{
		{"region", "create", "--code", "eu-west-1", "--name", "EU"},
		{"db", "register", "--name", "eu-db", "--region", "eu-west-1", "--host", cfg.Host, "--database", "eu_db", "--user", cfg.User, "--tls-mode", "disable"},
		{"tenant", "create", "--slug", "acme", "--realm", "acme", "--region", "us-east-1"},
		{"tenant", "suspend", "acme"},
		{"tenant", "activate", "acme"},
		{"tenant", "delete", "acme"},
		{"migrate", "apply", "--scope", "admin"},
	}
	for _, args := range steps {
		env, _ := cliEnv(w, nil)
		require.NoError(t, Run(ctx, args, env), "%v", args)
	}
	rows, err := w.Admin.Query(ctx, `SELECT action, actor FROM admin.audit_log ORDER BY id`)
	require.NoError(t, err)
	got := map[string]string{}
	for rows.Next() {
		var action, actor string
		require.NoError(t, rows.Scan(&action, &actor))
		got[action] = actor
	}
	require.NoError(t, rows.Err())
	for _, action := range []string{"region.create", "database_connection.register", "tenant.create", "tenant.provisioned",
		"tenant.suspend", "tenant.activate", "tenant.delete", "migrations.apply", "migrations.apply.finished"} {
		assert.Equal(t, cliActor(t), got[action], "actor of %s: got %q", action, got[action])
	}
	env, out := cliEnv(w, nil)
	require.NoError(t, Run(ctx, []string{"audit", "verify"}, env))
	assert.Contains(t, out.String(), "intact")
}

// A registered password that does not open under the configured key is a configuration
// error: the database is neither marked failing nor deactivated.
func TestDBCheckWithAWrongKeyIsAConfigurationError(t *testing.T) {
	w := testenv.New(t, "admincli")
	ctx := context.Background()
	w.AddRegion(t, "us-east-1")
	key := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	cfg, err := pgx.ParseConfig(w.AdminURL)
	require.NoError(t, err)
	right := key()
	env, _ := cliEnv(w, map[string]string{"NEOAUTHZ_SECRET_KEY": right, "PW": "secret"})
	require.NoError(t, Run(ctx, []string{"db", "register", "--name", "sealed-db", "--region", "us-east-1", "--host", cfg.Host,
		"--database", cfg.Database, "--user", cfg.User, "--password-env", "PW", "--tls-mode", "disable", "--max-failures", "1"}, env))

	env, _ = cliEnv(w, map[string]string{"NEOAUTHZ_SECRET_KEY": key()})
	err = Run(ctx, []string{"db", "check", "sealed-db"}, env)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NEOAUTHZ_SECRET_KEY")
	var active bool
	var failures int
	require.NoError(t, w.Admin.QueryRow(ctx, `SELECT is_active, consecutive_failures FROM admin.database_connections WHERE name = 'sealed-db'`).Scan(&active, &failures))
	assert.True(t, active, "a wrong key deactivated a healthy database")
	assert.Zero(t, failures, "a wrong key counted as a database failure")
}

func TestHelpNeedsNoConfiguration(t *testing.T) {
	for _, args := range [][]string{{"migrate", "--help"}, {"migrate", "apply", "--help"}, {"tenant", "create", "-h"}, {"serve", "--help"}, {"audit", "--help"}} {
		out := &syncBuffer{}
		env := Env{Stdout: out, Stderr: &syncBuffer{}, Getenv: func(string) string { return "" }}
		require.NoError(t, Run(context.Background(), args, env), "%v", args)
		assert.Contains(t, out.String(), "admin "+args[0], "%v", args)
	}
}

// --scope all on a fresh admin database migrates the admin set first, then reads the registry.
func TestMigrateAllOnAFreshAdminDatabase(t *testing.T) {
	w := testenv.New(t, "admincli")
	ctx := context.Background()
	name := "nzt_fresh_" + randomHex(t)
	_, err := w.Admin.Exec(ctx, `CREATE DATABASE `+name)
	require.NoError(t, err)
	t.Cleanup(func() { pgtest.Drop(t, w.Server(), name) })
	out := &syncBuffer{}
	url := pgtest.WithDatabase(w.Server(), name)
	env := Env{Stdout: out, Stderr: &syncBuffer{}, Getenv: func(k string) string {
		if k == "ADMIN_DATABASE_URL" {
			return url
		}
		return ""
	}}
	require.NoError(t, Run(ctx, []string{"migrate", "apply", "--scope", "all"}, env), "%s", out.String())
	env.Stdout = &syncBuffer{}
	require.NoError(t, Run(ctx, []string{"migrate", "apply", "--scope", "all"}, env), "a second run finds nothing to do")
}

func randomHex(t *testing.T) string {
	b := make([]byte, 6)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// A deactivation by `db check` commits with its audit row, attributed to the operator.
func TestDBCheckDeactivationIsAudited(t *testing.T) {
	w := testenv.New(t, "admincli")
	ctx := context.Background()
	w.AddRegion(t, "us-east-1")
	env, _ := cliEnv(w, nil)
	require.NoError(t, Run(ctx, []string{"db", "register", "--name", "dead-db", "--region", "us-east-1", "--host", "127.0.0.1",
		"--port", "1", "--database", "nothing", "--user", "nobody", "--tls-mode", "disable", "--max-failures", "1"}, env))
	env, _ = cliEnv(w, nil)
	_ = Run(ctx, []string{"db", "check", "dead-db"}, env)
	var active bool
	require.NoError(t, w.Admin.QueryRow(ctx, `SELECT is_active FROM admin.database_connections WHERE name = 'dead-db'`).Scan(&active))
	require.False(t, active, "one failure out of max 1 deactivates")
	var actor string
	require.NoError(t, w.Admin.QueryRow(ctx, `SELECT a.actor FROM admin.audit_log a JOIN admin.database_connections c ON c.id::text = a.target_id
		WHERE c.name = 'dead-db' AND a.action = 'database_connection.deactivate'`).Scan(&actor))
	assert.Equal(t, cliActor(t), actor)
}
