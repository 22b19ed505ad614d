package admincli

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/devidp"
	"github.com/neofast/neoauthz/internal/keycloak"
	"github.com/neofast/neoauthz/internal/testenv"
)

// TestTenantCreateRealmCLI: --create-realm with the NEOAUTHZ_KEYCLOAK_* settings creates the
// realm, --delete-realm needs --purge, and bad settings are refused before anything runs.
func TestTenantCreateRealmCLI(t *testing.T) {
	ctx := context.Background()
	idp, err := devidp.Start(devidp.Config{Addr: "127.0.0.1:0", AdminClientID: "svc", AdminSecret: "cli-secret"})
	require.NoError(t, err)
	t.Cleanup(idp.Close)
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, []byte("cli-secret\n"), 0o600))
	w := testenv.New(t, "admincli")
	w.AddRegion(t, "us-east-1")
	vars := map[string]string{keycloak.EnvURL: idp.URL(), keycloak.EnvClientID: "svc", keycloak.EnvSecretFile: secretFile,
		keycloak.EnvRealmPattern: "org-{slug}"}

	env, out := cliEnv(w, vars)
	require.NoError(t, Run(ctx, []string{"tenant", "create", "--slug", "kappa", "--region", "us-east-1", "--create-realm",
		"--owner-username", "kim", "--owner-email", "kim@kappa.test"}, env))
	assert.Contains(t, out.String(), "realm org-kappa (created in Keycloak)")

	env, _ = cliEnv(w, vars)
	require.ErrorIs(t, Run(ctx, []string{"tenant", "delete", "kappa", "--delete-realm"}, env), ErrUsage)
	env, out = cliEnv(w, vars)
	require.NoError(t, Run(ctx, []string{"tenant", "delete", "kappa", "--purge", "--delete-realm"}, env))
	assert.Contains(t, out.String(), "realm org-kappa deleted")

	bad := map[string]string{keycloak.EnvURL: idp.URL(), keycloak.EnvClientID: "svc", keycloak.EnvSecret: "x",
		keycloak.EnvRealmPattern: "no-placeholder"}
	env, _ = cliEnv(w, bad)
	err = Run(ctx, []string{"tenant", "list"}, env)
	require.Error(t, err)
	assert.Contains(t, err.Error(), keycloak.EnvRealmPattern)
}
