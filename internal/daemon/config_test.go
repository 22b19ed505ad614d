package daemon_test

import (
	"flag"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/daemon"
)

// TestConfigNeedsAudiences: the pdp refuses to start without accepted audiences unless the
// operator says, with a flag of its own, that tokens for any audience are fine.
func TestConfigNeedsAudiences(t *testing.T) {
	parse := func(args ...string) (daemon.Config, error) {
		t.Setenv("NEOAUTHZ_AUDIENCES", "")
		t.Setenv("NEOAUTHZ_CLIENTS", "")
		t.Setenv("NEOAUTHZ_ALLOW_ANY_AUDIENCE", "")
		return parseConfig(nil, args...)
	}
	_, err := parse()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NEOAUTHZ_AUDIENCES (-audiences)")
	assert.Contains(t, err.Error(), "-allow-any-audience")

	cfg, err := parse("-audiences", "neoauthz", "-clients", "web,mobile")
	require.NoError(t, err)
	assert.Equal(t, []string{"neoauthz"}, cfg.Audiences)
	assert.Equal(t, []string{"web", "mobile"}, cfg.Clients)

	cfg, err = parse("-allow-any-audience")
	require.NoError(t, err)
	assert.True(t, cfg.AllowAnyAudience)

	_, err = parse("-allow-any-audience", "-audiences", "neoauthz")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not both")
}

// TestConfigDatabaseLoadPath: the pool cap and the PgBouncer settings are read from flags and
// the environment, and wrong values are refused before anything connects.
func TestConfigDatabaseLoadPath(t *testing.T) {
	parse := func(env map[string]string, args ...string) (daemon.Config, error) {
		for _, k := range []string{"NEOAUTHZ_DB_MAX_CONNS", "NEOAUTHZ_DB_POOLERS", "ADMIN_DATABASE_POOLER_URL"} {
			t.Setenv(k, env[k]) // restored when the test ends
			if _, ok := env[k]; !ok {
				require.NoError(t, os.Unsetenv(k))
			}
		}
		return parseConfig(func(c *daemon.Config) { c.AllowAnyAudience = true }, args...)
	}
	cfg, err := parse(map[string]string{"NEOAUTHZ_DB_MAX_CONNS": "4"})
	require.NoError(t, err)
	assert.Equal(t, 4, cfg.DBMaxConns, "default and env")
	assert.Empty(t, cfg.DBPoolers)

	cfg, err = parse(map[string]string{
		"NEOAUTHZ_DB_MAX_CONNS":     "2",
		"NEOAUTHZ_DB_POOLERS":       "eu-primary=pgb-eu:6432",
		"ADMIN_DATABASE_POOLER_URL": "postgres://pdp@pgb-admin:6432/neoauthz_admin",
	})
	require.NoError(t, err)
	assert.Equal(t, 2, cfg.DBMaxConns)
	assert.Equal(t, "pgb-eu:6432", cfg.DBPoolers["eu-primary"])
	assert.Equal(t, "postgres://pdp@pgb-admin:6432/neoauthz_admin", cfg.AdminPoolerURL)

	cfg, err = parse(nil, "-db-max-conns", "3", "-db-poolers", "a=h1:1,b=h2:2")
	require.NoError(t, err)
	assert.Equal(t, 3, cfg.DBMaxConns)
	assert.Len(t, cfg.DBPoolers, 2)

	_, err = parse(map[string]string{"NEOAUTHZ_DB_POOLERS": "eu-primary"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NEOAUTHZ_DB_POOLERS")
	_, err = parse(map[string]string{"NEOAUTHZ_DB_MAX_CONNS": "0"})
	require.Error(t, err)
	_, err = parse(nil, "-db-max-conns", "1000")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "db-max-conns must be between 1 and")
	_, err = parse(map[string]string{"ADMIN_DATABASE_POOLER_URL": "postgres://pdp:s3cret@pgb:notaport/x"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret", "the error must not quote the password")
}

// parseConfig reads args (and the environment) over the defaults with an admin database and
// an issuer set, as cmd/pdp does, after mod; it returns the configuration and Validate's answer.
func parseConfig(mod func(*daemon.Config), args ...string) (daemon.Config, error) {
	cfg := daemon.DefaultConfig()
	cfg.AdminURL = "postgres://127.0.0.1/admin"
	cfg.TrustedIssuers = []string{"http://127.0.0.1:8180"}
	if mod != nil {
		mod(&cfg)
	}
	fs := flag.NewFlagSet("pdp", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// TestConfigReplicaFills: fills may read replicas by default; the flag or the environment
// turns that off.
func TestConfigReplicaFills(t *testing.T) {
	allowAny := func(c *daemon.Config) { c.AllowAnyAudience = true }
	t.Setenv("NEOAUTHZ_REPLICA_FILLS", "") // restored when the test ends
	require.NoError(t, os.Unsetenv("NEOAUTHZ_REPLICA_FILLS"))
	cfg, err := parseConfig(allowAny)
	require.NoError(t, err)
	assert.True(t, cfg.ReplicaFills, "on by default")
	cfg, err = parseConfig(allowAny, "-replica-fills=false")
	require.NoError(t, err)
	assert.False(t, cfg.ReplicaFills)
	t.Setenv("NEOAUTHZ_REPLICA_FILLS", "false")
	cfg, err = parseConfig(allowAny)
	require.NoError(t, err)
	assert.False(t, cfg.ReplicaFills)
}

// TestConfigSyncMode: direct LISTEN is the default; relay mode needs Redis, and its settings
// come from flags and the environment.
func TestConfigSyncMode(t *testing.T) {
	for _, k := range []string{"NEOAUTHZ_SYNC", "NEOAUTHZ_RELAY_STALENESS", "NEOAUTHZ_RELAY_STREAM", "REDIS_URL"} {
		t.Setenv(k, "")
		require.NoError(t, os.Unsetenv(k))
	}
	anyAudience := func(c *daemon.Config) { c.AllowAnyAudience = true }
	cfg, err := parseConfig(anyAudience)
	require.NoError(t, err)
	assert.Equal(t, daemon.SyncDirect, cfg.Sync)

	_, err = parseConfig(anyAudience, "-sync", "relay")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "REDIS_URL")

	t.Setenv("NEOAUTHZ_SYNC", "relay")
	t.Setenv("NEOAUTHZ_RELAY_STALENESS", "3s")
	cfg, err = parseConfig(anyAudience, "-redis-url", "redis://127.0.0.1:6379", "-relay-stream", "s{x}")
	require.NoError(t, err)
	assert.Equal(t, daemon.SyncRelay, cfg.Sync)
	assert.Equal(t, 3*time.Second, cfg.RelayStaleness)
	assert.Equal(t, "s{x}", cfg.RelayStream)

	_, err = parseConfig(anyAudience, "-sync", "listen")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `sync "listen"`)

	rc := daemon.DefaultRelayConfig()
	err = rc.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ADMIN_DATABASE_URL")
	assert.Contains(t, err.Error(), "REDIS_URL")
	rc.AdminURL, rc.RedisURL = "postgres://127.0.0.1/admin", "redis://127.0.0.1:6379"
	require.NoError(t, rc.Validate())
	rc.MaxLen = 10
	assert.Error(t, rc.Validate())
}

// TestRegionsSetting: -regions and NEOAUTHZ_REGIONS take a list of region codes; a bad code is
// a configuration error, and the decision log's platform region must be one of them.
func TestRegionsSetting(t *testing.T) {
	parse := func(env string, args ...string) (daemon.Config, error) {
		t.Setenv("NEOAUTHZ_REGIONS", env)
		return parseConfig(func(c *daemon.Config) { c.AllowAnyAudience = true }, args...)
	}
	cfg, err := parse("")
	require.NoError(t, err)
	assert.True(t, cfg.Regions.All(), "default: every region")

	cfg, err = parse("eu-west-1, eu-central-1")
	require.NoError(t, err)
	assert.Equal(t, []string{"eu-central-1", "eu-west-1"}, cfg.Regions.Codes())

	cfg, err = parse("eu-west-1", "-regions", "us-east-1")
	require.NoError(t, err)
	assert.Equal(t, []string{"us-east-1"}, cfg.Regions.Codes(), "the flag wins over the environment")

	_, err = parse("EU_WEST")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NEOAUTHZ_REGIONS")
	_, err = parse("", "-regions", "eu-west-1,,us-east-1")
	require.Error(t, err)

	_, err = parse("eu-west-1", "-decision-log-platform-region", "us-east-1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not one of the served regions")
}
