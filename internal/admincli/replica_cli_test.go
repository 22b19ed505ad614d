package admincli

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/testenv"
)

func TestDBRegisterReplica(t *testing.T) {
	w := testenv.New(t, "admincli")
	ctx := context.Background()
	primary := w.AddRegion(t, "us-east-1")
	register := func(extra ...string) error {
		env, _ := cliEnv(w, nil)
		return Run(ctx, append([]string{"db", "register", "--name", "us-replica", "--type", "replica", "--region", "us-east-1",
			"--host", "replica.internal", "--database", primary.Database, "--user", "postgres"}, extra...), env)
	}
	err := register()
	require.Error(t, err, "a replica names its primary")
	assert.Contains(t, err.Error(), "primary")
	require.NoError(t, register("--primary", primary.Name))

	env, out := cliEnv(w, nil)
	require.NoError(t, Run(ctx, []string{"db", "list"}, env))
	assert.Contains(t, out.String(), "replica of "+primary.Name)
}
