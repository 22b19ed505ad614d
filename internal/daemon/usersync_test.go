package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// TestUserSyncEndToEnd drives just-in-time user sync through the whole pdp with tokens of a
// Keycloak-shaped issuer: acme has sync on with default role admin, globex has it off.
func TestUserSyncEndToEnd(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "daemon")
	primary := w.AddRegion(t, "us-east-1")
	for _, slug := range []string{"acme", "globex"} {
		_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: slug, Region: "us-east-1", Realm: slug + "-realm"})
		require.NoError(t, err)
	}
	db := w.Connect(t, primary, "")
	_, err := db.Exec(ctx, `INSERT INTO t_acme.settings (key, value) VALUES ('user_sync', '{"enabled": true, "default_roles": ["admin"]}')`)
	require.NoError(t, err)
	_, err = w.Admin.Exec(ctx, `UPDATE admin.tenants SET settings = '{"user_sync": {"enabled": true, "default_roles": ["admin"]}}' WHERE slug = 'acme'`)
	require.NoError(t, err)

	idp := authntest.NewIssuer()
	t.Cleanup(idp.Close)
	for _, realm := range []string{"acme-realm", "globex-realm", "platform"} {
		_, err := idp.AddRealm(realm, "RS256")
		require.NoError(t, err)
	}
	token := func(realm, sub, email string) string {
		tok, err := idp.Mint(realm, map[string]any{"sub": sub, "typ": "Bearer", "aud": "neoauthz", "email": email,
			"preferred_username": sub, "exp": time.Now().Add(time.Hour).Unix()})
		require.NoError(t, err)
		return tok
	}
	p := startPDP(t, w, idp, `{"routes": [{"method": "GET", "path": "/api/users", "permission": "users.read.tenant"}]}`,
		func(c *daemon.Config) { c.UserSync.Rate, c.UserSync.Burst = 1e-9, 3 })
	type details struct {
		Error struct {
			Details struct {
				Reason string `json:"reason"`
				Detail string `json:"detail"`
			} `json:"details"`
		} `json:"error"`
	}
	forward := func(tok string) (int, http.Header, details) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/auth", nil)
		require.NoError(t, err)
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", "/api/users")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var d details
		if resp.StatusCode != http.StatusOK {
			require.NoError(t, json.Unmarshal(body, &d), "%s", body)
		}
		return resp.StatusCode, resp.Header, d
	}
	rows := func(schema, sub string) int {
		var n int
		require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM `+schema+`.users WHERE external_id = $1`, sub).Scan(&n))
		return n
	}

	code, h, _ := forward(token("acme-realm", "newbie", "newbie@acme.example"))
	assert.Equal(t, http.StatusOK, code, "the first token of a new acme user is allowed through the default role")
	assert.Equal(t, "newbie", h.Get("X-Neoauthz-User"))
	assert.Equal(t, 1, rows("t_acme", "newbie"))
	var email string
	require.NoError(t, db.QueryRow(ctx, `SELECT email FROM t_acme.users WHERE external_id = 'newbie'`).Scan(&email))
	assert.Equal(t, "newbie@acme.example", email)

	// Another realm's tenant has sync off: its unknown user stays unknown, in either schema.
	code, _, d := forward(token("globex-realm", "stranger", ""))
	assert.Equal(t, http.StatusForbidden, code)
	assert.Equal(t, "unknown_user", d.Error.Details.Reason)
	assert.Zero(t, rows("t_globex", "stranger")+rows("t_acme", "stranger"))

	code, _, _ = forward(token("acme-realm", "second", ""))
	assert.Equal(t, http.StatusOK, code)

	// Suspended: refused before any user gate, nothing written (the bucket still holds a token).
	_, err = w.Tenants.Suspend(ctx, "acme")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		code, _, _ := forward(token("acme-realm", "fourth", ""))
		return code != http.StatusOK
	}, 10*time.Second, 10*time.Millisecond)
	code, _, _ = forward(token("acme-realm", "fourth", ""))
	assert.Contains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, code)
	assert.Zero(t, rows("t_acme", "fourth"), "a suspended tenant got a user")

	// Active again: the last token of the burst of three creates one more user, then the next
	// new user is denied with the detail.
	_, err = w.Tenants.Activate(ctx, "acme")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		code, _, _ := forward(token("acme-realm", "fifth", ""))
		return code == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond)
	code, _, d = forward(token("acme-realm", "sixth", ""))
	assert.Equal(t, http.StatusForbidden, code)
	assert.Equal(t, "unknown_user", d.Error.Details.Reason)
	assert.Equal(t, "user sync rate limited", d.Error.Details.Detail)
	assert.Zero(t, rows("t_acme", "sixth"))
}
