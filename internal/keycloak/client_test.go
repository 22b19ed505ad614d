package keycloak_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/devidp"
	"github.com/neofast/neoauthz/internal/keycloak"
)

const (
	adminClient = "neoauthz-admin"
	adminSecret = "s3cret-value-never-printed"
)

func startIDP(t *testing.T) *devidp.Server {
	t.Helper()
	idp, err := devidp.Start(devidp.Config{Addr: "127.0.0.1:0", Realms: []string{"platform"}, Audience: "neoauthz",
		AdminClientID: adminClient, AdminSecret: adminSecret})
	require.NoError(t, err)
	t.Cleanup(idp.Close)
	return idp
}

func provisioner(t *testing.T, idp *devidp.Server, secret string) *keycloak.Provisioner {
	t.Helper()
	c, err := keycloak.New(keycloak.Config{BaseURL: idp.URL(), Realm: "master", ClientID: adminClient,
		ClientSecret: keycloak.Secret(secret), Timeout: 10 * time.Second}, nil)
	require.NoError(t, err)
	return &keycloak.Provisioner{Client: c, Settings: keycloak.Provisioning{RealmPattern: keycloak.DefaultRealmPattern,
		AppClientID: "app", Audience: "neoauthz-api", AccessTokenLifespan: 5 * time.Minute}}
}

// devToken asks the development issuer for a token and returns its status and claims.
func devToken(t *testing.T, idp *devidp.Server, query string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(idp.URL() + "/dev/token?" + query)
	require.NoError(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	parts := strings.Split(body.AccessToken, ".")
	require.Len(t, parts, 3)
	raw, err := base64URL(parts[1])
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(raw, &claims))
	return resp.StatusCode, claims
}

func TestBadServiceCredentials(t *testing.T) {
	idp := startIDP(t)
	p := provisioner(t, idp, "wrong-secret")
	_, err := p.Ensure(context.Background(), keycloak.TenantRealm{Realm: "tenant-x", TenantID: "t1"})
	require.ErrorIs(t, err, keycloak.ErrUnauthorized)
	assert.Contains(t, err.Error(), `service account "neoauthz-admin" of realm master`)
	assert.Contains(t, err.Error(), "invalid_client")
	assert.NotContains(t, err.Error(), "wrong-secret")
}

func TestSecretNeverPrinted(t *testing.T) {
	cfg := keycloak.Config{BaseURL: "https://sso.example", Realm: "master", ClientID: "c", ClientSecret: adminSecret}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("cfg", "secret", cfg.ClientSecret, "cfg", cfg)
	js, err := json.Marshal(cfg)
	require.NoError(t, err)
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg.ClientSecret), logged.String(), string(js)} {
		assert.NotContains(t, out, adminSecret)
		assert.Contains(t, out, "[redacted]")
	}
}

func TestEnsureIsIdempotentAndChecksTheMark(t *testing.T) {
	ctx := context.Background()
	idp := startIDP(t)
	p := provisioner(t, idp, adminSecret)
	spec := keycloak.TenantRealm{Realm: "tenant-acme", TenantID: "tenant-1", DisplayName: "Acme",
		Owner: &keycloak.Owner{Username: "olivia", Email: "olivia@acme.test"}}
	first, err := p.Ensure(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, "app", first.ClientID)
	assert.NotEmpty(t, first.OwnerID)
	again, err := p.Ensure(ctx, spec)
	require.NoError(t, err, "a rerun accepts what exists (409 → fetch and reconcile)")
	assert.Equal(t, first, again)

	idp.RevokeServiceTokens()
	r, err := p.Client.GetRealm(ctx, "tenant-acme")
	require.NoError(t, err, "a refused service token is replaced once")
	assert.Equal(t, "tenant-1", r.Attributes[keycloak.TenantAttribute])
	assert.True(t, *r.Enabled)
	assert.Equal(t, 300, r.AccessTokenLifespan)
	mappers, err := p.Client.ProtocolMappers(ctx, "tenant-acme", mustClient(t, p, "tenant-acme").ID)
	require.NoError(t, err)
	require.Len(t, mappers, 1, "the rerun added no second mapper")
	assert.Equal(t, keycloak.MapperAudience, mappers[0].ProtocolMapper)

	// Tokens of the realm carry the client as azp and the mapper's audience.
	status, claims := devToken(t, idp, "realm=tenant-acme&username=olivia")
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "app", claims["azp"])
	assert.Equal(t, []any{"neoauthz-api"}, claims["aud"])
	assert.Equal(t, first.OwnerID, claims["sub"])

	_, err = p.Ensure(ctx, keycloak.TenantRealm{Realm: "tenant-acme", TenantID: "tenant-2"})
	require.ErrorIs(t, err, keycloak.ErrNotOwned, "a realm made for another tenant is never taken over")
	_, err = p.Delete(ctx, "tenant-acme", "tenant-2")
	require.ErrorIs(t, err, keycloak.ErrNotOwned)
	_, err = p.Ensure(ctx, keycloak.TenantRealm{Realm: "platform", TenantID: "tenant-2"})
	require.ErrorIs(t, err, keycloak.ErrNotOwned, "an existing unmarked realm is refused")

	changed, err := p.SetEnabled(ctx, "tenant-acme", "tenant-1", false)
	require.NoError(t, err)
	assert.True(t, changed)
	status, _ = devToken(t, idp, "realm=tenant-acme&sub=x")
	assert.Equal(t, http.StatusForbidden, status, "a disabled realm issues no tokens")
	changed, err = p.SetEnabled(ctx, "tenant-acme", "tenant-1", false)
	require.NoError(t, err)
	assert.False(t, changed)
	_, err = p.SetEnabled(ctx, "tenant-acme", "tenant-1", true)
	require.NoError(t, err)
	status, _ = devToken(t, idp, "realm=tenant-acme&sub=x")
	assert.Equal(t, http.StatusOK, status)

	existed, err := p.Delete(ctx, "tenant-acme", "tenant-1")
	require.NoError(t, err)
	assert.True(t, existed)
	existed, err = p.Delete(ctx, "tenant-acme", "tenant-1")
	require.NoError(t, err)
	assert.False(t, existed, "deleting twice is harmless")
	_, err = p.Client.GetRealm(ctx, "tenant-acme")
	require.ErrorIs(t, err, keycloak.ErrNotFound)
	resp, err := http.Get(idp.URL() + "/realms/tenant-acme/.well-known/openid-configuration")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "a deleted realm is no longer served")
}

func mustClient(t *testing.T, p *keycloak.Provisioner, realm string) keycloak.ClientRepresentation {
	t.Helper()
	c, err := p.Client.FindClient(context.Background(), realm, "app")
	require.NoError(t, err)
	return c
}

// TestAdminStatusCodes checks the development issuer's admin API answers as Keycloak documents.
func TestAdminStatusCodes(t *testing.T) {
	idp := startIDP(t)
	tok := serviceToken(t, idp)
	call := func(method, path, token, body string) (int, string) {
		req, err := http.NewRequest(method, idp.URL()+path, strings.NewReader(body))
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}
	cases := []struct {
		name, method, path, token, body string
		want                            int
		location                        string
	}{
		{"no token", "POST", "/admin/realms", "", `{"realm":"r1"}`, 401, ""},
		{"bad token", "GET", "/admin/realms/platform", "not-a-token", "", 401, ""},
		{"create", "POST", "/admin/realms", tok, `{"realm":"r1","enabled":true}`, 201, "/admin/realms/r1"},
		{"duplicate", "POST", "/admin/realms", tok, `{"realm":"r1"}`, 409, ""},
		{"unknown field", "POST", "/admin/realms", tok, `{"realm":"r2","nope":1}`, 400, ""},
		{"unknown realm", "GET", "/admin/realms/nope", tok, "", 404, ""},
		{"client", "POST", "/admin/realms/r1/clients", tok, `{"clientId":"web"}`, 201, "/admin/realms/r1/clients/"},
		{"duplicate client", "POST", "/admin/realms/r1/clients", tok, `{"clientId":"web"}`, 409, ""},
		{"client of unknown realm", "POST", "/admin/realms/nope/clients", tok, `{"clientId":"web"}`, 404, ""},
		{"mappers of unknown client", "GET", "/admin/realms/r1/clients/nope/protocol-mappers/models", tok, "", 404, ""},
		{"user", "POST", "/admin/realms/r1/users", tok, `{"username":"Uma"}`, 201, "/admin/realms/r1/users/"},
		{"duplicate user", "POST", "/admin/realms/r1/users", tok, `{"username":"uma"}`, 409, ""},
		{"update", "PUT", "/admin/realms/r1", tok, `{"enabled":false}`, 204, ""},
		{"delete", "DELETE", "/admin/realms/r1", tok, "", 204, ""},
		{"delete again", "DELETE", "/admin/realms/r1", tok, "", 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, location := call(tc.method, tc.path, tc.token, tc.body)
			assert.Equal(t, tc.want, status, "got %d, want %d", status, tc.want)
			if tc.location != "" {
				assert.True(t, strings.HasPrefix(location, idp.URL()+tc.location), "got Location %q, want it under %s", location, tc.location)
			}
		})
	}
}

func serviceToken(t *testing.T, idp *devidp.Server) string {
	t.Helper()
	resp, err := http.PostForm(idp.URL()+"/realms/master/protocol/openid-connect/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {adminClient}, "client_secret": {adminSecret}})
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var tr keycloak.TokenResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tr))
	assert.Positive(t, tr.ExpiresIn)
	return tr.AccessToken
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	_, ok, err := keycloak.ConfigFromEnv(getenv)
	require.NoError(t, err)
	assert.False(t, ok, "no URL: provisioning is off")

	env[keycloak.EnvURL] = "https://sso.example"
	_, ok, err = keycloak.ConfigFromEnv(getenv)
	assert.True(t, ok)
	require.Error(t, err)
	assert.Contains(t, err.Error(), keycloak.EnvClientID)

	env[keycloak.EnvClientID] = "svc"
	env[keycloak.EnvSecretFile] = t.TempDir() + "/secret"
	require.NoError(t, writeFile(env[keycloak.EnvSecretFile], "from-file\n"))
	cfg, _, err := keycloak.ConfigFromEnv(getenv)
	require.NoError(t, err)
	assert.Equal(t, "master", cfg.Realm)
	assert.Equal(t, keycloak.Secret("from-file"), cfg.ClientSecret)

	env[keycloak.EnvRealmPattern] = "no-slug"
	_, err = keycloak.ProvisioningFromEnv(getenv)
	require.Error(t, err)
	env[keycloak.EnvRealmPattern] = "kc-{slug}"
	p, err := keycloak.ProvisioningFromEnv(getenv)
	require.NoError(t, err)
	assert.Equal(t, "kc-acme", p.RealmName("acme"))
	assert.Equal(t, "app", p.AppClientID)
}
