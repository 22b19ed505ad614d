package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// regionWorld is two regions, each with a primary database of its own: eucorp (alice, an
// admin) in eu-west-1; uscorp (bob, an admin) and ussusp (suspended; carol, an admin) in
// us-east-1; a platform viewer, root; and an AuthZEN PEP for uscorp.
type regionWorld struct {
	w       *testenv.World
	idp     *authntest.Issuer
	eu, us  registry.Connection
	tokens  map[string]string
	authzen string // AuthZEN file: one PEP per tenant, subjects by external id
}

func newRegionWorld(t *testing.T) *regionWorld {
	ctx := context.Background()
	rw := &regionWorld{w: testenv.New(t, "daemon"), idp: authntest.NewIssuer(), tokens: map[string]string{}}
	t.Cleanup(rw.idp.Close)
	rw.eu = rw.w.AddRegion(t, "eu-west-1")
	rw.us = rw.w.AddRegion(t, "us-east-1")
	for _, tn := range []struct {
		slug, region, user string
		conn               registry.Connection
	}{{"eucorp", "eu-west-1", "alice", rw.eu}, {"uscorp", "us-east-1", "bob", rw.us}, {"ussusp", "us-east-1", "carol", rw.us}} {
		_, err := rw.w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: tn.slug, Region: tn.region, Realm: tn.slug})
		require.NoError(t, err)
		db := rw.w.Connect(t, tn.conn, "")
		schema := "t_" + tn.slug
		_, err = db.Exec(ctx, `WITH u AS (INSERT INTO `+schema+`.users (external_id) VALUES ($1) RETURNING id)
			INSERT INTO `+schema+`.user_roles (user_id, role_id) SELECT u.id, r.id FROM u, `+schema+`.roles r
			 WHERE r.code = 'admin'`, tn.user)
		require.NoError(t, err)
		db.Close() // the test's own connections must not count below
		_, err = rw.idp.AddRealm(tn.slug, "RS256")
		require.NoError(t, err)
		rw.tokens[tn.user] = rw.mint(t, tn.slug, tn.user, "")
	}
	_, err := rw.w.Admin.Exec(ctx, `UPDATE admin.tenants SET status = 'suspended' WHERE slug = 'ussusp'`)
	require.NoError(t, err)
	_, err = rw.w.Admin.Exec(ctx, `WITH u AS (INSERT INTO admin.platform_users (external_id) VALUES ('root') RETURNING id)
		INSERT INTO admin.platform_user_roles (user_id, role_id) SELECT u.id, r.id FROM u, admin.platform_roles r WHERE r.code = 'viewer'`)
	require.NoError(t, err)
	_, err = rw.idp.AddRealm("platform", "RS256")
	require.NoError(t, err)
	rw.tokens["root"] = rw.mint(t, "platform", "root", "")
	rw.tokens["us-pep"] = rw.mint(t, "platform", "service-account-us-pep", "us-pep")

	rw.authzen = filepath.Join(t.TempDir(), "authzen.json")
	require.NoError(t, os.WriteFile(rw.authzen, []byte(`{
	  "peps": [{"name": "us-pep", "client": {"realm": "platform", "client_id": "us-pep", "subject": "service-account-us-pep"}, "tenants": ["uscorp"]}],
	  "subjects": {"user": {"id": "external_id"}, "person": {"id": "email"}},
	  "actions": [{"name": "can_read_users", "permission": "users.read.tenant"}]
	}`), 0o600))
	return rw
}

func (rw *regionWorld) mint(t *testing.T, realm, sub, azp string) string {
	t.Helper()
	claims := map[string]any{"sub": sub, "aud": "neoauthz", "typ": "Bearer", "exp": time.Now().Add(time.Hour).Unix()}
	if azp != "" {
		claims["azp"] = azp
	}
	tok, err := rw.idp.Mint(realm, claims)
	require.NoError(t, err)
	return tok
}

// usDatabases are the databases of us-east-1.
func (rw *regionWorld) usDatabases() []string { return []string{rw.us.Database} }

// TestRegionScopedPDP runs a pdp limited to eu-west-1 against two regions and asks it, through
// every interface, about subjects of both: the US tenant's token and principal are denied
// not_served_in_region (also for a suspended tenant: the region comes first), platform checks
// about a US tenant are served, and the US database sees no connection from the pdp at all —
// no listener, no pool, no load. A pdp serving every region, started last, does connect there,
// which shows that the count would see a connection.
func TestRegionScopedPDP(t *testing.T) {
	ctx := context.Background()
	rw := newRegionWorld(t)
	for _, db := range rw.usDatabases() {
		rw.w.WaitNoBackends(t, db)
	}
	socket := filepath.Join(t.TempDir(), "pdp.sock")
	p := startPDP(t, rw.w, rw.idp, `{"routes": [{"method": "GET", "path": "/api/users", "permission": "users.read.tenant"}]}`,
		func(c *daemon.Config) {
			var err error
			c.Regions, err = registry.ParseRegions("eu-west-1")
			require.NoError(t, err)
			c.Server.UnixSocket = socket
			c.Server.AuthZENConfigPath = rw.authzen
		})
	// The EU database's listener is up (the pdp is past its start) before anything is asked.
	require.Eventually(t, func() bool { return rw.w.Backends(t, rw.eu.Database) > 0 }, 30*time.Second, 10*time.Millisecond,
		"the pdp never listened to the EU database")

	api := authzv1.NewAuthorizationServiceClient(p.conn)
	tokenCheck := func(user, perm string, res *authzv1.Resource) *authzv1.CheckResponse {
		t.Helper()
		out, err := api.Check(ctx, &authzv1.CheckRequest{Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: rw.tokens[user]}},
			Permission: perm, Resource: res})
		require.NoError(t, err, "check for %s", user)
		return out
	}

	t.Run("gRPC Check with a token", func(t *testing.T) {
		res := tokenCheck("alice", "users.read.tenant", nil)
		assert.True(t, res.GetAllowed(), "the served region's tenant is decided")
		res = tokenCheck("bob", "users.read.tenant", nil)
		assert.False(t, res.GetAllowed())
		assert.Equal(t, authzv1.Reason_REASON_NOT_SERVED_IN_REGION, res.GetReason(), "got %v", res.GetReason())
		// A suspended tenant's realm does not authenticate (identity comes before any region).
		res = tokenCheck("carol", "users.read.tenant", nil)
		assert.Equal(t, authzv1.Reason_REASON_UNAUTHENTICATED, res.GetReason(), "got %v", res.GetReason())
		bulk, err := api.CheckBulk(ctx, &authzv1.CheckBulkRequest{Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: rw.tokens["bob"]}},
			Items: []*authzv1.CheckBulkItem{{Permission: "users.read.tenant"}, {Permission: "users.delete.tenant"}}})
		require.NoError(t, err)
		for _, r := range bulk.GetResults() {
			assert.Equal(t, authzv1.Reason_REASON_NOT_SERVED_IN_REGION, r.GetReason())
			assert.False(t, r.GetAllowed())
		}
		list, err := api.ListPermissions(ctx, &authzv1.ListPermissionsRequest{Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: rw.tokens["bob"]}}})
		require.NoError(t, err)
		assert.Empty(t, list.GetPermissions(), "nothing is listed for a tenant of another region")
	})

	t.Run("gRPC Check with a trusted principal", func(t *testing.T) {
		conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		defer conn.Close()
		local := authzv1.NewAuthorizationServiceClient(conn)
		for _, tc := range []struct {
			tenant, user string
			want         authzv1.Reason
		}{
			{"eucorp", "alice", authzv1.Reason_REASON_GRANTED},
			{"uscorp", "bob", authzv1.Reason_REASON_NOT_SERVED_IN_REGION},
			{"uscorp", "nobody", authzv1.Reason_REASON_NOT_SERVED_IN_REGION},
			{"ussusp", "carol", authzv1.Reason_REASON_NOT_SERVED_IN_REGION},
			{"nowhere", "bob", authzv1.Reason_REASON_UNKNOWN_TENANT},
		} {
			res, err := local.Check(ctx, &authzv1.CheckRequest{Permission: "users.read.tenant",
				Subject: &authzv1.Subject{Kind: &authzv1.Subject_Principal{Principal: &authzv1.Principal{Tenant: tc.tenant, User: tc.user}}}})
			require.NoError(t, err)
			assert.Equal(t, tc.want, res.GetReason(), "%s/%s: got %v, want %v", tc.tenant, tc.user, res.GetReason(), tc.want)
			assert.Equal(t, tc.want == authzv1.Reason_REASON_GRANTED, res.GetAllowed(), "%s/%s", tc.tenant, tc.user)
		}
	})

	t.Run("consistency token naming a tenant of another region", func(t *testing.T) {
		var usID string
		require.NoError(t, rw.w.Admin.QueryRow(ctx, `SELECT id::text FROM admin.tenants WHERE slug = 'uscorp'`).Scan(&usID))
		tok, err := consistency.ForTenant(usID, 1<<40) // far beyond the database: probing it would refuse the request
		require.NoError(t, err)
		res, err := api.Check(ctx, &authzv1.CheckRequest{Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: rw.tokens["bob"]}},
			Permission: "users.read.tenant", ConsistencyToken: tok.String()})
		require.NoError(t, err, "the part is not probed: the US database is not read")
		assert.Equal(t, authzv1.Reason_REASON_NOT_SERVED_IN_REGION, res.GetReason())
	})

	t.Run("ext_authz", func(t *testing.T) {
		ext := authv3.NewAuthorizationClient(p.conn)
		check := func(user string) *authv3.CheckResponse {
			res, err := ext.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "GET", Path: "/api/users", Headers: map[string]string{"authorization": "Bearer " + rw.tokens[user]}}},
			}})
			require.NoError(t, err)
			return res
		}
		assert.Equal(t, int32(codes.OK), check("alice").GetStatus().GetCode())
		res := check("bob")
		assert.Equal(t, int32(codes.PermissionDenied), res.GetStatus().GetCode())
		assert.Equal(t, 403, int(res.GetDeniedResponse().GetStatus().GetCode()))
		var env struct {
			Success bool `json:"success"`
			Error   struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Details struct {
					Reason string `json:"reason"`
				} `json:"details"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal([]byte(res.GetDeniedResponse().GetBody()), &env))
		assert.False(t, env.Success)
		assert.Equal(t, "forbidden", env.Error.Code)
		assert.Equal(t, "not_served_in_region", env.Error.Details.Reason)
		assert.Equal(t, "tenant is not served in this region", env.Error.Message)
	})

	t.Run("forward auth", func(t *testing.T) {
		for _, tc := range []struct {
			user   string
			status int
			reason string
		}{{"alice", http.StatusOK, ""}, {"bob", http.StatusForbidden, "not_served_in_region"}} {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/auth", nil)
			require.NoError(t, err)
			req.Header.Set("X-Forwarded-Method", "GET")
			req.Header.Set("X-Forwarded-Uri", "/api/users")
			req.Header.Set("Authorization", "Bearer "+rw.tokens[tc.user])
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			var env struct {
				Error *struct {
					Details struct {
						Reason string `json:"reason"`
					} `json:"details"`
				} `json:"error"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&env))
			resp.Body.Close()
			assert.Equal(t, tc.status, resp.StatusCode, "%s", tc.user)
			if tc.reason != "" {
				require.NotNil(t, env.Error, "%s", tc.user)
				assert.Equal(t, tc.reason, env.Error.Details.Reason, "%s", tc.user)
			}
		}
	})

	t.Run("AuthZEN", func(t *testing.T) {
		var out struct {
			Decision bool `json:"decision"`
			Context  struct {
				Reason string `json:"reason"`
			} `json:"context"`
		}
		status := postJSON(t, p.base+"/access/v1/evaluation", "Bearer "+rw.tokens["us-pep"], map[string]any{
			"subject":  map[string]any{"type": "user", "id": "bob"},
			"action":   map[string]any{"name": "can_read_users"},
			"resource": map[string]any{"type": "account", "id": "1"},
		}, &out)
		assert.Equal(t, http.StatusOK, status)
		assert.False(t, out.Decision)
		assert.Equal(t, "not_served_in_region", out.Context.Reason)

		// A subject named by email is not looked up in the US database either.
		status = postJSON(t, p.base+"/access/v1/evaluation", "Bearer "+rw.tokens["us-pep"], map[string]any{
			"subject":  map[string]any{"type": "person", "id": "bob@example.com"},
			"action":   map[string]any{"name": "can_read_users"},
			"resource": map[string]any{"type": "account", "id": "1"},
		}, &out)
		assert.Equal(t, http.StatusOK, status)
		assert.False(t, out.Decision)
		assert.Equal(t, "not_served_in_region", out.Context.Reason)

		// Nor is a subject search run there: 403 with the reason, not an empty answer.
		var searched struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		status = postJSON(t, p.base+"/access/v1/search/subject", "Bearer "+rw.tokens["us-pep"], map[string]any{
			"subject":  map[string]any{"type": "user"},
			"action":   map[string]any{"name": "can_read_users"},
			"resource": map[string]any{"type": "account", "id": "1"},
		}, &searched)
		assert.Equal(t, http.StatusForbidden, status)
		assert.Equal(t, "tenant is not served in this region", searched.Error.Message)
	})

	t.Run("platform checks about a tenant of another region are served", func(t *testing.T) {
		res := tokenCheck("root", "tenants.read", &authzv1.Resource{Tenant: "uscorp"})
		assert.True(t, res.GetAllowed(), "platform RBAC lives in the admin database: got %v", res.GetReason())
		res = tokenCheck("root", "tenants.update", &authzv1.Resource{Tenant: "uscorp"})
		assert.Equal(t, authzv1.Reason_REASON_NO_PERMISSION, res.GetReason())
	})

	t.Run("metric labels stay bounded", func(t *testing.T) {
		resp, err := http.Get(p.base + "/metrics")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		text := string(body)
		assert.NotContains(t, text, rw.us.ID, "no series names the US database")
		assert.Contains(t, text, `sync_listener_up{database="`+rw.eu.ID+`"} 1`)
		for _, line := range strings.Split(text, "\n") {
			if !strings.HasPrefix(line, "permission_checks_total{") {
				continue
			}
			// The tenant label is a known tenant's slug (or empty at platform level); the
			// deny's reason is not a label.
			assert.Regexp(t, `tenant="(eucorp|uscorp|ussusp|unknown|)"`, line)
			assert.NotContains(t, line, "not_served")
		}
		assert.Contains(t, text, `permission_checks_total{permission="users.read.tenant",result="denied",tenant="uscorp"}`)
	})

	// Nothing above connected to the US database: no listener, no pool, no load.
	for _, db := range rw.usDatabases() {
		assert.Zero(t, rw.w.Backends(t, db), "connections to the US database %s", db)
	}

	t.Run("a pdp serving every region does connect to the US database", func(t *testing.T) {
		all := startPDP(t, rw.w, rw.idp, `{"routes": [{"method": "GET", "path": "/api/users", "permission": "users.read.tenant"}]}`, nil)
		res, err := authzv1.NewAuthorizationServiceClient(all.conn).Check(ctx, &authzv1.CheckRequest{
			Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: rw.tokens["bob"]}}, Permission: "users.read.tenant"})
		require.NoError(t, err)
		assert.True(t, res.GetAllowed(), "got %v", res.GetReason())
		assert.Positive(t, rw.w.Backends(t, rw.us.Database), "the count sees a pdp's connections")
	})
}

// TestRegionsUnknownAtStartup: a served region the admin database does not know stops the pdp
// with a message naming it.
func TestRegionsUnknownAtStartup(t *testing.T) {
	w := testenv.New(t, "daemon")
	w.AddRegion(t, "eu-west-1")
	cfg := daemon.DefaultConfig()
	cfg.AdminURL = w.AdminURL
	cfg.TrustedIssuers = []string{"http://127.0.0.1:1"}
	cfg.Audiences = []string{"neoauthz"}
	cfg.DecisionLog = false
	var err error
	cfg.Regions, err = registry.ParseRegions("eu-west-1,eu-wset-1")
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg.Server.GRPCAddr, cfg.Server.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	err = daemon.Run(ctx, cfg, slog.New(slog.DiscardHandler))
	require.ErrorIs(t, err, registry.ErrUnknownRegion)
	assert.Contains(t, err.Error(), "eu-wset-1")
	assert.NotContains(t, err.Error(), "eu-west-1,", "only the unknown code is named")
}
