package admincli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for the serve goroutine and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func cliEnv(w *testenv.World, vars map[string]string) (Env, *syncBuffer) {
	env, out, _ := cliEnvWithStderr(w, vars)
	return env, out
}

// cliEnvWithStderr is cliEnv that also returns what goes to stderr (the logs).
func cliEnvWithStderr(w *testenv.World, vars map[string]string) (Env, *syncBuffer, *syncBuffer) {
	out, errOut := &syncBuffer{}, &syncBuffer{}
	return Env{Stdout: out, Stderr: errOut, Getenv: func(k string) string {
		if k == "ADMIN_DATABASE_URL" {
			return w.AdminURL
		}
		return vars[k]
	}}, out, errOut
}

func TestBootstrapAndAuditVerify(t *testing.T) {
	w := testenv.New(t, "admincli")
	ctx := context.Background()
	env, out := cliEnv(w, nil)
	require.NoError(t, Run(ctx, []string{"bootstrap", "--user", "alice", "--email", "a@example.com"}, env))
	assert.Contains(t, out.String(), "created platform user alice")
	assert.Contains(t, out.String(), "assigned role system_admin")

	env, out = cliEnv(w, nil)
	require.NoError(t, Run(ctx, []string{"bootstrap", "--user", "alice"}, env))
	assert.Contains(t, out.String(), "already exists")
	assert.Contains(t, out.String(), "nothing changed")
	var n int
	require.NoError(t, w.Admin.QueryRow(ctx, `SELECT count(*) FROM admin.platform_user_roles`).Scan(&n))
	assert.Equal(t, 1, n)

	err := Run(ctx, []string{"bootstrap"}, env)
	assert.ErrorIs(t, err, ErrUsage)

	env, out = cliEnv(w, nil)
	require.NoError(t, Run(ctx, []string{"audit", "verify"}, env))
	assert.Contains(t, out.String(), "audit log intact: 1 rows verified")

	_, err = w.Admin.Exec(ctx, `ALTER TABLE admin.audit_log DISABLE TRIGGER audit_log_append_only;
		UPDATE admin.audit_log SET actor = 'mallory';
		ALTER TABLE admin.audit_log ENABLE TRIGGER audit_log_append_only`)
	require.NoError(t, err)
	env, out = cliEnv(w, nil)
	err = Run(ctx, []string{"audit", "verify"}, env)
	require.Error(t, err)
	assert.Contains(t, out.String(), "row 1 altered")
}

func TestServeConfig(t *testing.T) {
	w := testenv.New(t, "admincli")
	env, _ := cliEnv(w, nil)
	err := Run(context.Background(), []string{"serve"}, env)
	require.ErrorIs(t, err, ErrUsage)
	assert.Contains(t, err.Error(), "--trusted-issuers")
	assert.Contains(t, err.Error(), "--platform-realm")

	env, _ = cliEnv(w, map[string]string{"NEOAUTHZ_TRUSTED_ISSUERS": "http://kc", "NEOAUTHZ_PLATFORM_REALM": "p", "NEOAUTHZ_ADMIN_HEALTH_INTERVAL": "soon"})
	require.ErrorIs(t, Run(context.Background(), []string{"serve"}, env), ErrUsage)
	env, _ = cliEnv(w, map[string]string{"NEOAUTHZ_TRUSTED_ISSUERS": "http://kc", "NEOAUTHZ_PLATFORM_REALM": "p", "NEOAUTHZ_AUDIENCES": "neoauthz"})
	require.ErrorIs(t, Run(context.Background(), []string{"serve", "--addr", "nonsense"}, env), ErrUsage)
}

// TestServeNeedsAudiences: the admin API does not start accepting tokens for any audience
// unless told so explicitly.
func TestServeNeedsAudiences(t *testing.T) {
	w := testenv.New(t, "admincli")
	base := map[string]string{"NEOAUTHZ_TRUSTED_ISSUERS": "http://kc", "NEOAUTHZ_PLATFORM_REALM": "p", "NEOAUTHZ_ADMIN_ADDR": "nonsense"}
	env, _ := cliEnv(w, base)
	err := Run(context.Background(), []string{"serve"}, env)
	require.ErrorIs(t, err, ErrUsage)
	assert.Contains(t, err.Error(), "--audiences")
	assert.Contains(t, err.Error(), "--allow-any-audience")

	// With either, what is left to complain about is the address.
	for _, args := range [][]string{{"serve", "--audiences", "neoauthz"}, {"serve", "--allow-any-audience"}} {
		env, _ = cliEnv(w, base)
		err = Run(context.Background(), args, env)
		require.ErrorIs(t, err, ErrUsage, "%v", args)
		assert.NotContains(t, err.Error(), "--audiences", "%v", args)
	}
	env, _ = cliEnv(w, map[string]string{"NEOAUTHZ_TRUSTED_ISSUERS": "http://kc", "NEOAUTHZ_PLATFORM_REALM": "p",
		"NEOAUTHZ_ADMIN_ADDR": "nonsense", "NEOAUTHZ_ALLOW_ANY_AUDIENCE": "true"})
	err = Run(context.Background(), []string{"serve"}, env)
	require.ErrorIs(t, err, ErrUsage)
	assert.NotContains(t, err.Error(), "--audiences")
	env, _ = cliEnv(w, base)
	err = Run(context.Background(), []string{"serve", "--audiences", "neoauthz", "--allow-any-audience"}, env)
	require.ErrorIs(t, err, ErrUsage)
	assert.Contains(t, err.Error(), "not both")
}

func TestServeStartsAndStops(t *testing.T) {
	w := testenv.New(t, "admincli")
	iss := authntest.NewIssuer()
	defer iss.Close()
	_, err := iss.AddRealm("platform", "RS256")
	require.NoError(t, err)
	env, out, logs := cliEnvWithStderr(w, map[string]string{"NEOAUTHZ_TRUSTED_ISSUERS": iss.URL(), "NEOAUTHZ_PLATFORM_REALM": "platform",
		"NEOAUTHZ_AUDIENCES": "neoauthz", "NEOAUTHZ_ADMIN_ADDR": "127.0.0.1:0", "NEOAUTHZ_ADMIN_HEALTH_INTERVAL": "1s"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"serve"}, env) }()
	addrRe := regexp.MustCompile(`listening on (\S+)`)
	var addr string
	require.Eventually(t, func() bool {
		m := addrRe.FindStringSubmatch(out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}, 10*time.Second, 20*time.Millisecond)
	res, err := http.Get("http://" + addr + "/health")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, 200, res.StatusCode)
	tok, err := iss.Mint("platform", map[string]any{"sub": "nobody", "aud": "neoauthz"})
	require.NoError(t, err)
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/admin/tenants", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, 403, res.StatusCode, "an unknown platform user is refused")
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	assert.NotContains(t, out.String(), tok, "tokens are never printed")
	assert.NotEmpty(t, logs.String(), "serve logs to stderr")
	assert.NotContains(t, logs.String(), tok, "nor logged")
	// Nor any part that identifies it: its signature.
	assert.NotContains(t, logs.String(), tok[strings.LastIndexByte(tok, '.')+1:], "nor its signature logged")
}

func TestTenantWritesPrintAConsistencyToken(t *testing.T) {
	w := testenv.New(t, "admincli")
	w.AddRegion(t, "eu-west-1")
	ctx := context.Background()
	_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "eu-west-1", Realm: "acme"})
	require.NoError(t, err)
	var before int64
	require.NoError(t, w.Admin.QueryRow(ctx, `SELECT version FROM admin.authz_state`).Scan(&before))

	env, out := cliEnv(w, nil)
	require.NoError(t, Run(ctx, []string{"tenant", "suspend", "acme", "--output", "json"}, env))
	var got struct {
		Data             map[string]any `json:"data"`
		ConsistencyToken string         `json:"consistency_token"`
	}
	require.NoError(t, json.Unmarshal([]byte(out.String()), &got), out.String())
	assert.Equal(t, "suspended", got.Data["status"])
	tok, err := consistency.Parse(got.ConsistencyToken)
	require.NoError(t, err)
	assert.Greater(t, tok.Admin, uint64(before), "got a token older than the suspension")

	env, out = cliEnv(w, nil)
	require.NoError(t, Run(ctx, []string{"tenant", "activate", "acme"}, env))
	assert.Equal(t, "tenant acme is active\n", out.String())
	assert.ErrorIs(t, Run(ctx, []string{"tenant", "activate"}, env), ErrUsage)
}
