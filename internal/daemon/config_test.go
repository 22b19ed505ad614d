package daemon_test

import (
	"flag"
	"io"
	"testing"

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
		cfg := daemon.DefaultConfig()
		cfg.AdminURL = "postgres://127.0.0.1/admin"
		cfg.TrustedIssuers = []string{"http://127.0.0.1:8180"}
		fs := flag.NewFlagSet("pdp", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg.RegisterFlags(fs)
		if err := fs.Parse(args); err != nil {
			return cfg, err
		}
		return cfg, cfg.Validate()
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
