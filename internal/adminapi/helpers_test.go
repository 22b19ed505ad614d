package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

const platformRealm = "platform"

// env is one test's control plane, token issuer and API server.
type env struct {
	t      testing.TB
	w      *testenv.World
	iss    *authntest.Issuer
	srv    *Server
	ts     *httptest.Server
	client *http.Client
	admin  string // token of a system_admin
}

func newEnv(t testing.TB) *env {
	t.Helper()
	w := testenv.New(t, "adminapi")
	w.AddRegion(t, "eu-west-1")
	iss := authntest.NewIssuer()
	t.Cleanup(iss.Close)
	_, err := iss.AddRealm(platformRealm, "RS256")
	require.NoError(t, err)
	store := pgstore.New(w.Admin, w.Registry, pgstore.Options{})
	t.Cleanup(store.Close)
	v, err := authn.New(authn.Config{TrustedIssuerBases: []string{iss.URL()}, PlatformRealm: platformRealm, AllowAnyAudience: true}, store, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv, err := New(Deps{Admin: w.Admin, Registry: w.Registry, Fleet: w.Fleet, Tenants: w.Tenants, Store: store, Validator: v})
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ts.Close(); srv.Close() })
	e := &env{t: t, w: w, iss: iss, srv: srv, ts: ts, client: ts.Client()}
	_, err = Bootstrap(context.Background(), w.Admin, "root", "root@example.com", "test")
	require.NoError(t, err)
	e.admin = e.token("root")
	return e
}

// token mints a platform-realm token for sub.
func (e *env) token(sub string) string {
	e.t.Helper()
	tok, err := e.iss.Mint(platformRealm, map[string]any{"sub": sub})
	require.NoError(e.t, err)
	return tok
}

// platformUser creates a platform user holding the given roles; a role "code@tenantID" is
// restricted to that tenant.
func (e *env) platformUser(sub string, roles ...string) string {
	e.t.Helper()
	ctx := context.Background()
	var id string
	require.NoError(e.t, e.w.Admin.QueryRow(ctx, `INSERT INTO admin.platform_users (external_id) VALUES ($1) RETURNING id::text`, sub).Scan(&id))
	for _, r := range roles {
		code, tenant, _ := bytes.Cut([]byte(r), []byte("@"))
		var tid *string
		if len(tenant) > 0 {
			s := string(tenant)
			tid = &s
		}
		_, err := e.w.Admin.Exec(ctx, `INSERT INTO admin.platform_user_roles (user_id, role_id, tenant_id)
			SELECT $1::uuid, id, $3::uuid FROM admin.platform_roles WHERE code = $2`, id, string(code), tid)
		require.NoError(e.t, err)
	}
	return e.token(sub)
}

// resp is a decoded response.
type resp struct {
	Status  int
	Header  http.Header
	Success bool            `json:"success"`
	Data    json.RawMessage `json:"data"`
	Meta    map[string]any  `json:"meta"`
	Error   *struct {
		Code    string         `json:"code"`
		Message string         `json:"message"`
		Details map[string]any `json:"details"`
	} `json:"error"`
	Body []byte
}

func (r *resp) into(v any) {
	if err := json.Unmarshal(r.Data, v); err != nil {
		panic(err)
	}
}

// do sends a request; body is JSON-encoded unless it is a string (sent as is).
func (e *env) do(method, path, token string, body any, hdr ...string) *resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(e.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	require.NoError(e.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.client.Do(req)
	require.NoError(e.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(e.t, err)
	out := &resp{Status: res.StatusCode, Header: res.Header, Body: raw}
	if res.Header.Get("Content-Type") == "application/json" {
		require.NoError(e.t, json.Unmarshal(raw, out), "body: %s", raw)
	}
	return out
}

// createTenant provisions a schema tenant through the API.
func (e *env) createTenant(slug string) tenancy.Tenant {
	e.t.Helper()
	r := e.do("POST", "/api/v1/admin/tenants", e.admin, map[string]any{
		"slug": slug, "name": slug, "region": "eu-west-1", "external_auth_realm": slug + "-realm"})
	require.Equal(e.t, 201, r.Status, "create tenant: %s", r.Body)
	var t tenancy.Tenant
	r.into(&t)
	return t
}
