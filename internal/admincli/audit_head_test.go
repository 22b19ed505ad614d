package admincli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/testenv"
)

// superuserDelete removes audit rows the way someone with superuser access could.
func superuserDelete(t *testing.T, w *testenv.World, where string) {
	t.Helper()
	_, err := w.Admin.Exec(context.Background(), `ALTER TABLE admin.audit_log DISABLE TRIGGER audit_log_append_only;
		DELETE FROM admin.audit_log WHERE `+where+`;
		ALTER TABLE admin.audit_log ENABLE TRIGGER audit_log_append_only`)
	require.NoError(t, err)
}

func writeThree(t *testing.T, w *testenv.World) {
	t.Helper()
	for _, code := range []string{"r-1", "r-2", "r-3"} {
		env, _ := cliEnv(w, nil)
		require.NoError(t, Run(context.Background(), []string{"region", "create", "--code", code}, env))
	}
}

// Removing the newest rows, or all of them, is reported: the chain's head is kept outside the
// chain, updated in the same transaction as every append.
func TestAuditVerifySeesATruncatedChain(t *testing.T) {
	for name, where := range map[string]string{"last row": "id = (SELECT max(id) FROM admin.audit_log)", "every row": "true"} {
		t.Run(name, func(t *testing.T) {
			w := testenv.New(t, "admincli")
			writeThree(t, w)
			superuserDelete(t, w, where)
			env, out := cliEnv(w, nil)
			require.Error(t, Run(context.Background(), []string{"audit", "verify"}, env), "verify said: %s", out.String())
			assert.Contains(t, out.String(), "BROKEN")
		})
	}
}

// A checkpoint printed by `audit checkpoint` (MAC'd with the operator's key) lets verify
// notice a chain shortened together with its head table.
func TestAuditCheckpoint(t *testing.T) {
	w := testenv.New(t, "admincli")
	ctx := context.Background()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	vars := map[string]string{"NEOAUTHZ_AUDIT_KEY": base64.StdEncoding.EncodeToString(b)}
	writeThree(t, w)
	env, out := cliEnv(w, vars)
	require.NoError(t, Run(ctx, []string{"audit", "checkpoint"}, env))
	head := strings.TrimSpace(out.String())
	require.NotEmpty(t, head)

	env, out = cliEnv(w, vars)
	require.NoError(t, Run(ctx, []string{"audit", "verify", "--expect-head", head}, env), "%s", out.String())

	forged := strings.Replace(head, "3", "2", 1)
	env, _ = cliEnv(w, vars)
	require.Error(t, Run(ctx, []string{"audit", "verify", "--expect-head", forged}, env), "a checkpoint whose MAC does not match")
	env, _ = cliEnv(w, nil)
	require.Error(t, Run(ctx, []string{"audit", "verify", "--expect-head", head}, env), "no key to check the checkpoint")

	superuserDelete(t, w, "true")
	_, err := w.Admin.Exec(ctx, `DELETE FROM admin.audit_head`)
	require.NoError(t, err)
	env, out = cliEnv(w, vars)
	require.Error(t, Run(ctx, []string{"audit", "verify", "--expect-head", head}, env))
	assert.Contains(t, out.String(), "BROKEN")
}
