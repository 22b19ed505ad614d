package daemon_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/pdp"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/redistest"
	"github.com/neofast/neoauthz/internal/routes"
	"github.com/neofast/neoauthz/internal/server"
	authzsync "github.com/neofast/neoauthz/internal/sync"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// stack is the pdp's real parts in process: PostgreSQL, Redis, the token validator against a
// Keycloak-shaped issuer, the decision service and the transports. Tenant acme has alice (an
// admin) and bob (no role); globex has carol (an admin).
type stack struct {
	srv *server.Server
	svc *pdp.Service
	idp *authntest.Issuer
	w   *testenv.World
	reg *prometheus.Registry // the decision service's and its PostgreSQL reads' metrics
}

func newStack(tb testing.TB, cfg server.Config, routeTable string) *stack {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	w := testenv.New(tb, "daemon")
	primary := w.AddRegion(tb, "us-east-1")
	for _, slug := range []string{"acme", "globex"} {
		_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: slug, Region: "us-east-1", Realm: slug})
		require.NoError(tb, err)
	}
	db := w.Connect(tb, primary, "")
	_, err := db.Exec(ctx, `INSERT INTO t_acme.users (external_id) VALUES ('alice'), ('bob');
		INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r
		 WHERE u.external_id = 'alice' AND r.code = 'admin';
		INSERT INTO t_globex.users (external_id) VALUES ('carol');
		INSERT INTO t_globex.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_globex.users u, t_globex.roles r
		 WHERE r.code = 'admin'`)
	require.NoError(tb, err)

	idp := authntest.NewIssuer()
	tb.Cleanup(idp.Close)
	for _, realm := range []string{"acme", "globex", "platform"} {
		_, err = idp.AddRealm(realm, "RS256")
		require.NoError(tb, err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	store := pgstore.New(w.Admin, w.Registry, pgstore.Options{Registerer: reg})
	tb.Cleanup(store.Close)
	v, err := authn.New(authn.Config{TrustedIssuerBases: []string{idp.URL()}, PlatformRealm: "platform", Audiences: []string{"neoauthz"}}, store, log)
	require.NoError(tb, err)
	rdb, prefix := redistest.Client(tb, "daemonstack")
	floors := &authzsync.Floors{}
	svc, err := pdp.New(pdp.Config{Cache: cacheOpts(prefix)}, v, store, w.Admin, floors, rdb, log, reg)
	require.NoError(tb, err)
	tb.Cleanup(svc.Close)
	mgr := authzsync.New(authzsync.Config{AdminURL: w.AdminURL}, floors, w.Admin, w.Registry, store, svc.TenantChanged, log, prometheus.NewRegistry())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mgr.Run(ctx)
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
	// Both listeners up: until the admin database's is, the tenant directory is not trusted and
	// every check would read PostgreSQL again.
	for _, db := range []string{authzsync.AdminDatabase, authzsync.DatabaseKey(primary.ID, "")} {
		require.Eventually(tb, func() bool {
			_, down := floors.DownSince(db)
			return !down
		}, 10*time.Second, 5*time.Millisecond, "the listener of %s never came up", db)
	}
	var table *routes.Table
	if routeTable != "" {
		table, err = routes.Load(strings.NewReader(routeTable))
		require.NoError(tb, err)
	}
	srv, err := server.New(cfg, svc, table, log, prometheus.NewRegistry())
	require.NoError(tb, err)
	return &stack{srv: srv, svc: svc, idp: idp, w: w, reg: reg}
}

// token mints an access token of realm for sub, valid for an hour, for our audience.
func (s *stack) token(tb testing.TB, realm, sub string) string {
	tb.Helper()
	tok, err := s.idp.Mint(realm, map[string]any{"sub": sub, "aud": "neoauthz", "typ": "Bearer", "exp": time.Now().Add(time.Hour).Unix()})
	require.NoError(tb, err)
	return tok
}
