package daemon_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/pdp"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/redistest"
	"github.com/neofast/neoauthz/internal/routes"
	"github.com/neofast/neoauthz/internal/server"
	authzsync "github.com/neofast/neoauthz/internal/sync"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// heldPDP is a pdp that never hears a notification: every database counts as listened to, so
// what it caches is trusted, but no floor ever rises. Only a consistency token can make it
// read a write.
type heldPDP struct {
	svc  *pdp.Service
	conn *grpc.ClientConn
	base string // forward auth
}

func startHeldPDP(t *testing.T, w *testenv.World, rdb redis.UniversalClient, prefix string, idp *authntest.Issuer,
	table *routes.Table, databases []string) *heldPDP {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	store := pgstore.New(w.Admin, w.Registry, pgstore.Options{})
	realms := pgstore.NewRealmIndex(store)
	// No global audience: acme's own settings.audiences decide for its tokens (one of the
	// writes changes them).
	validator, err := authn.New(authn.Config{TrustedIssuerBases: []string{idp.URL()}, PlatformRealm: "platform",
		AllowAnyAudience: true}, realms, log)
	require.NoError(t, err)
	floors := &authzsync.Floors{}
	for _, db := range databases {
		floors.MarkUp(db)
	}
	svc, err := pdp.New(pdp.Config{Cache: cache.Options{Prefix: prefix}}, validator, store, w.Admin, floors, rdb, log, prometheus.NewRegistry())
	require.NoError(t, err)
	svc.AlsoInvalidate(realms.Invalidate)
	cfg := server.DefaultConfig()
	cfg.ForwardAuthHeaders = server.ConventionTraefik
	srv, err := server.New(cfg, svc, table, log, prometheus.NewRegistry())
	require.NoError(t, err)
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ctx, grpcLis, httpLis)
	}()
	conn, err := grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		<-done
		svc.Close()
		store.Close()
	})
	return &heldPDP{svc: svc, conn: conn, base: "http://" + httpLis.Addr().String()}
}

// verdict is what an interface answered.
type verdict string

const (
	allowed    verdict = "allowed"
	denied     verdict = "denied" // 401, 403, or a neoauthz.v1 deny
	badRequest verdict = "bad request"
)

var interfaces = []string{"neoauthz.v1", "ext_authz", "forward_auth"}

// ask sends one check through iface: GET path with the bearer jwt (neoauthz.v1 asks for the
// route's permission directly) and the consistency token tok.
func (p *heldPDP) ask(t *testing.T, iface, jwt, path, perm, tok string) verdict {
	t.Helper()
	ctx := context.Background()
	switch iface {
	case "neoauthz.v1":
		res, err := authzv1.NewAuthorizationServiceClient(p.conn).Check(ctx, &authzv1.CheckRequest{
			Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: jwt}}, Permission: perm, ConsistencyToken: tok})
		if status.Code(err) == codes.InvalidArgument {
			return badRequest
		}
		require.NoError(t, err)
		if res.GetAllowed() {
			return allowed
		}
		return denied
	case "ext_authz":
		headers := map[string]string{"authorization": "Bearer " + jwt}
		if tok != "" {
			headers["x-neoauthz-consistency"] = tok
		}
		res, err := authv3.NewAuthorizationClient(p.conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path, Headers: headers}},
		}})
		require.NoError(t, err)
		switch {
		case res.GetOkResponse() != nil:
			return allowed
		case res.GetDeniedResponse().GetStatus().GetCode() == 400:
			return badRequest
		}
		return denied
	default:
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/auth", nil)
		require.NoError(t, err)
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", path)
		req.Header.Set("Authorization", "Bearer "+jwt)
		if tok != "" {
			req.Header.Set("X-Neoauthz-Consistency", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return allowed
		case http.StatusBadRequest:
			return badRequest
		case http.StatusUnauthorized, http.StatusForbidden:
			return denied
		}
		t.Fatalf("forward auth answered %d", resp.StatusCode)
		return ""
	}
}

// writeAt runs sql (with args) and then version in one transaction: the consistency token
// the admin API returns for a write is the version read inside the writing transaction.
func writeAt(t *testing.T, pool *pgxpool.Pool, version, sql string, args ...any) uint64 {
	t.Helper()
	ctx := context.Background()
	var v int64
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return err
		}
		return tx.QueryRow(ctx, version).Scan(&v)
	}), sql)
	return uint64(v)
}

// TestReadYourWritesMatrix: for every kind of write, through every interface, on the pdp that
// served the earlier checks and on a second one sharing Redis, the first check carrying the
// write's consistency token reflects the write, although neither pdp hears any notification.
func TestReadYourWritesMatrix(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "daemon")
	primary := w.AddRegion(t, "us-east-1")
	acme, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme-realm"})
	require.NoError(t, err)
	// A database-per-tenant tenant's database is named after its slug, on a server other
	// tests share: the slug is this test's own.
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	beta, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "beta" + hex.EncodeToString(suffix[:]), Region: "us-east-1",
		Realm: "beta-realm", Deployment: tenancy.DeployDatabase})
	require.NoError(t, err)
	require.NotNil(t, beta.DatabaseName)
	acmeDB, betaDB := w.Connect(t, primary, ""), w.Connect(t, primary, *beta.DatabaseName)
	_, err = w.Admin.Exec(ctx, `UPDATE admin.tenants SET settings = jsonb_set(settings, '{audiences}', '["app"]') WHERE slug = 'acme'`)
	require.NoError(t, err)

	idp := newIssuer(t, "acme-realm", "beta-realm", "platform")
	mint := func(realm, sub string) string {
		tok, err := idp.Mint(realm, map[string]any{"sub": sub, "aud": "app"})
		require.NoError(t, err)
		return tok
	}
	table, err := routes.Load(strings.NewReader(`{"routes": [
		{"method": "GET", "path": "/api/users", "permission": "users.read.tenant"},
		{"method": "GET", "path": "/platform/tenants", "permission": "tenants.read.platform"}]}`))
	require.NoError(t, err)

	// Subjects: one per (interface, instance) for the per-user writes; alice of acme for the
	// tenant-wide ones.
	grantTenant := func(pool *pgxpool.Pool, schema, user string) {
		q := pgx.Identifier{schema}.Sanitize()
		_, err := pool.Exec(ctx, `WITH u AS (INSERT INTO `+q+`.users (external_id) VALUES ($1) RETURNING id)
			INSERT INTO `+q+`.user_roles (user_id, role_id) SELECT u.id, r.id FROM u, `+q+`.roles r WHERE r.code = 'admin'`, user)
		require.NoError(t, err)
	}
	grantTenant(acmeDB, acme.SchemaName, "alice")
	instances := []string{"same", "second"}
	for _, iface := range interfaces {
		for _, inst := range instances {
			user := iface + "-" + inst
			grantTenant(acmeDB, acme.SchemaName, user)
			grantTenant(betaDB, beta.SchemaName, user)
			_, err := w.Admin.Exec(ctx, `WITH u AS (INSERT INTO admin.platform_users (external_id) VALUES ($1) RETURNING id)
				INSERT INTO admin.platform_user_roles (user_id, role_id) SELECT u.id, r.id FROM u, admin.platform_roles r
				 WHERE r.code = 'viewer'`, user)
			require.NoError(t, err)
		}
	}

	rdb, prefix := redistest.Client(t, "daemon")
	dbs := []string{authzsync.AdminDatabase, authzsync.DatabaseKey(*acme.ConnectionID, ""),
		authzsync.DatabaseKey(*beta.ConnectionID, *beta.DatabaseName)}
	pdps := map[string]*heldPDP{
		"same":   startHeldPDP(t, w, rdb, prefix, idp, table, dbs),
		"second": startHeldPDP(t, w, rdb, prefix, idp, table, dbs),
	}

	const adminVersion = `SELECT version FROM admin.authz_state`
	tenantVersion := func(schema string) string {
		return `SELECT version FROM ` + pgx.Identifier{schema, "authz_state"}.Sanitize()
	}
	tenantToken := func(id string, v uint64) consistency.Token {
		tok, err := consistency.ForTenant(id, v)
		require.NoError(t, err)
		return tok
	}
	revokeTenant := func(pool *pgxpool.Pool, tn tenancy.Tenant, user string) consistency.Token {
		q := pgx.Identifier{tn.SchemaName}.Sanitize()
		return tenantToken(tn.ID, writeAt(t, pool, tenantVersion(tn.SchemaName),
			`DELETE FROM `+q+`.user_roles WHERE user_id = (SELECT id FROM `+q+`.users WHERE external_id = $1)`, user))
	}
	setAcme := func(set string) consistency.Token {
		return consistency.ForAdmin(writeAt(t, w.Admin, adminVersion, `UPDATE admin.tenants SET `+set+` WHERE slug = 'acme'`))
	}
	type subject struct{ realm, user, path, perm string }
	kinds := []struct {
		name    string
		subject func(user string) subject
		write   func(user string) consistency.Token
		undo    func() consistency.Token // for writes that affect every case
	}{
		{
			name: "platform RBAC",
			subject: func(user string) subject {
				return subject{"platform", user, "/platform/tenants", "tenants.read.platform"}
			},
			write: func(user string) consistency.Token {
				return consistency.ForAdmin(writeAt(t, w.Admin, adminVersion, `DELETE FROM admin.platform_user_roles
					WHERE user_id = (SELECT id FROM admin.platform_users WHERE external_id = $1)`, user))
			},
		},
		{
			name:    "tenant status",
			subject: func(string) subject { return subject{"acme-realm", "alice", "/api/users", "users.read.tenant"} },
			write:   func(string) consistency.Token { return setAcme(`status = 'suspended'`) },
			undo:    func() consistency.Token { return setAcme(`status = 'active'`) },
		},
		{
			name:    "tenant settings (audiences)",
			subject: func(string) subject { return subject{"acme-realm", "alice", "/api/users", "users.read.tenant"} },
			write: func(string) consistency.Token {
				return setAcme(`settings = jsonb_set(settings, '{audiences}', '["another-app"]')`)
			},
			undo: func() consistency.Token { return setAcme(`settings = jsonb_set(settings, '{audiences}', '["app"]')`) },
		},
		{
			name:    "tenant RBAC, schema tenant",
			subject: func(user string) subject { return subject{"acme-realm", user, "/api/users", "users.read.tenant"} },
			write:   func(user string) consistency.Token { return revokeTenant(acmeDB, acme, user) },
		},
		{
			name:    "tenant RBAC, database-per-tenant tenant",
			subject: func(user string) subject { return subject{"beta-realm", user, "/api/users", "users.read.tenant"} },
			write:   func(user string) consistency.Token { return revokeTenant(betaDB, beta, user) },
		},
	}

	var cur consistency.Token // the last undo's token: the next case starts from it
	for _, kind := range kinds {
		for _, iface := range interfaces {
			for _, inst := range instances {
				t.Run(fmt.Sprintf("%s/%s/%s pdp", kind.name, iface, inst), func(t *testing.T) {
					s := kind.subject(iface + "-" + inst)
					jwt := mint(s.realm, s.user)
					// Both pdps decide (and cache) the allow first; the token of the previous
					// case's undo makes them see it.
					for _, name := range instances {
						require.Equal(t, allowed, pdps[name].ask(t, iface, jwt, s.path, s.perm, cur.String()), "before the write, on the %s pdp", name)
						pdps[name].svc.WaitIdle()
					}
					tok := kind.write(s.user)
					p := pdps[inst]
					require.Equal(t, allowed, p.ask(t, iface, jwt, s.path, s.perm, ""),
						"without the token the cached allow must still be served (notifications are held back)")
					assert.Equal(t, denied, p.ask(t, iface, jwt, s.path, s.perm, tok.String()),
						"the first check carrying the write's token did not reflect the write")
					if kind.undo != nil {
						cur = kind.undo()
					}
				})
			}
		}
	}

	t.Run("merged tokens", func(t *testing.T) {
		// Two fresh subjects, one platform and one tenant user, revoked by two writes; one
		// merged token covers both on the second pdp.
		grantTenant(acmeDB, acme.SchemaName, "merged")
		_, err := w.Admin.Exec(ctx, `WITH u AS (INSERT INTO admin.platform_users (external_id) VALUES ('merged') RETURNING id)
			INSERT INTO admin.platform_user_roles (user_id, role_id) SELECT u.id, r.id FROM u, admin.platform_roles r WHERE r.code = 'viewer'`)
		require.NoError(t, err)
		platformJWT, tenantJWT := mint("platform", "merged"), mint("acme-realm", "merged")
		p := pdps["second"]
		for _, iface := range interfaces {
			require.Equal(t, allowed, p.ask(t, iface, platformJWT, "/platform/tenants", "tenants.read.platform", cur.String()))
			require.Equal(t, allowed, p.ask(t, iface, tenantJWT, "/api/users", "users.read.tenant", cur.String()))
		}
		p.svc.WaitIdle()
		a := kinds[0].write("merged")
		b := revokeTenant(acmeDB, acme, "merged")
		merged, err := consistency.Merge(a, b)
		require.NoError(t, err)
		for _, iface := range interfaces {
			assert.Equal(t, denied, p.ask(t, iface, platformJWT, "/platform/tenants", "tenants.read.platform", merged.String()), iface)
			assert.Equal(t, denied, p.ask(t, iface, tenantJWT, "/api/users", "users.read.tenant", merged.String()), iface)
		}
	})

	t.Run("impossible and malformed tokens", func(t *testing.T) {
		var v int64
		require.NoError(t, acmeDB.QueryRow(ctx, tenantVersion(acme.SchemaName)).Scan(&v))
		jwt := mint("acme-realm", "alice")
		for name, tok := range map[string]string{
			"admin part above the admin database": consistency.ForAdmin(1 << 40).String(),
			"tenant part above its schema":        tenantToken(acme.ID, uint64(v)+1000).String(),
			"a tenant that does not exist":        tenantToken("00000000-0000-4000-8000-000000000000", 1).String(),
			"a bare version":                      "15",
			"garbage":                             "nz1.%%%",
		} {
			for _, iface := range interfaces {
				for _, inst := range instances {
					assert.Equal(t, badRequest, pdps[inst].ask(t, iface, jwt, "/api/users", "users.read.tenant", tok),
						"%s through %s on the %s pdp", name, iface, inst)
				}
			}
		}
	})
}
