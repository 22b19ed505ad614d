package daemon_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/pdp"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/redistest"
	"github.com/neofast/neoauthz/internal/server"
	authzsync "github.com/neofast/neoauthz/internal/sync"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// BenchmarkExtAuthzHandlerWarm calls the ext_authz handler in process — token from the
// verified-token cache, permission set from L1, real engine — the way Envoy's requests reach
// it, minus the network.
func BenchmarkExtAuthzHandlerWarm(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := testenv.New(b, "daemon")
	primary := w.AddRegion(b, "us-east-1")
	_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme"})
	require.NoError(b, err)
	db := w.Connect(b, primary, "")
	_, err = db.Exec(ctx, `INSERT INTO t_acme.users (external_id) VALUES ('alice');
		INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r WHERE r.code = 'admin'`)
	require.NoError(b, err)

	idp := authntest.NewIssuer()
	b.Cleanup(idp.Close)
	_, err = idp.AddRealm("acme", "RS256")
	require.NoError(b, err)
	tok, err := idp.Mint("acme", map[string]any{"sub": "alice", "aud": "neoauthz", "typ": "Bearer", "exp": time.Now().Add(time.Hour).Unix()})
	require.NoError(b, err)

	log := slog.New(slog.DiscardHandler)
	store := pgstore.New(w.Admin, w.Registry, pgstore.Options{})
	b.Cleanup(store.Close)
	v, err := authn.New(authn.Config{TrustedIssuerBases: []string{idp.URL()}, PlatformRealm: "platform", Audiences: []string{"neoauthz"}}, store, log)
	require.NoError(b, err)
	rdb, prefix := redistest.Client(b, "daemonbench")
	floors := &authzsync.Floors{}
	svc, err := pdp.New(pdp.Config{Cache: cacheOpts(prefix)}, v, store, w.Admin, floors, rdb, log, prometheus.NewRegistry())
	require.NoError(b, err)
	b.Cleanup(svc.Close)
	mgr := authzsync.New(authzsync.Config{AdminURL: w.AdminURL}, floors, w.Admin, w.Registry, store, svc.TenantChanged, log, prometheus.NewRegistry())
	go func() { _ = mgr.Run(ctx) }()
	require.Eventually(b, func() bool {
		_, down := floors.DownSince(authzsync.DatabaseKey(primary.ID, ""))
		return !down
	}, 10*time.Second, 5*time.Millisecond)
	srv, err := server.New(server.DefaultConfig(), svc, nil, log, prometheus.NewRegistry())
	require.NoError(b, err)

	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/users", Headers: map[string]string{"authorization": "Bearer " + tok}}},
		ContextExtensions: map[string]string{"permission": "users.read.tenant"},
	}}
	res, err := srv.Check(ctx, req)
	require.NoError(b, err)
	require.NotNil(b, res.GetOkResponse(), "warm-up must allow")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := srv.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func cacheOpts(prefix string) cache.Options { return cache.Options{Prefix: prefix} }
