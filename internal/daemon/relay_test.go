package daemon_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/redistest"
	authzsync "github.com/neofast/neoauthz/internal/sync"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// startRelay serves `pdp relay` in process until the returned stop is called (or the test
// ends).
func startRelay(t *testing.T, cfg daemon.RelayConfig) (stop func()) {
	t.Helper()
	require.NoError(t, cfg.Validate())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.ServeRelay(ctx, cfg, slog.New(slog.DiscardHandler), lis) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		assert.NoError(t, <-done)
	}
	t.Cleanup(stop)
	return stop
}

// metricValue reads one sample of the pdp's /metrics ("" when absent).
func metricValue(t *testing.T, base, sample string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

// TestRelayModeEndToEnd runs a pdp with -sync=relay beside a relay: a revocation reaches it
// through Redis; with the relay gone it stops trusting its cache (a revocation committed then
// is denied at once, read from PostgreSQL) and trusts it again once a relay is back.
func TestRelayModeEndToEnd(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "daemon")
	primary := w.AddRegion(t, "us-east-1")
	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme-realm"})
	require.NoError(t, err)
	db := w.Connect(t, primary, "")
	_, err = db.Exec(ctx, `INSERT INTO t_acme.users (external_id) VALUES ('alice'), ('bob');
		INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r
		WHERE r.code = 'admin'`)
	require.NoError(t, err)
	idp := authntest.NewIssuer()
	t.Cleanup(idp.Close)
	_, err = idp.AddRealm("acme-realm", "RS256")
	require.NoError(t, err)

	_, prefix := redistest.Client(t, "daemon-relay")
	stream := prefix + "{relay}:events"
	relayCfg := daemon.DefaultRelayConfig()
	relayCfg.AdminURL, relayCfg.RedisURL, relayCfg.Stream = w.AdminURL, redistest.URL(t), stream
	relayCfg.Heartbeat = 200 * time.Millisecond
	stopRelay := startRelay(t, relayCfg)

	p := startPDP(t, w, idp, `{"routes": [{"method": "GET", "path": "/api/users", "permission": "users.read.tenant"}]}`, func(c *daemon.Config) {
		c.Sync, c.RelayStream, c.Heartbeat = daemon.SyncRelay, stream, 200*time.Millisecond
		c.DecisionLog = false
	})
	up := func(db string) string {
		return metricValue(t, p.base, `sync_listener_up{database="`+db+`"}`)
	}
	tenantDB := authzsync.DatabaseKey(*tn.ConnectionID, "")
	waitUp := func(want string) {
		t.Helper()
		for _, db := range []string{authzsync.AdminDatabase, tenantDB} {
			require.Eventually(t, func() bool { return up(db) == want }, 30*time.Second, 10*time.Millisecond,
				"sync_listener_up of %s: got %q, want %s", db, up(db), want)
		}
	}
	waitUp("1")

	api := authzv1.NewAuthorizationServiceClient(p.conn)
	allowed := func(user string) bool {
		tok, err := idp.Mint("acme-realm", map[string]any{"sub": user, "typ": "Bearer", "aud": "neoauthz"})
		require.NoError(t, err)
		res, err := api.Check(ctx, &authzv1.CheckRequest{Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: tok}},
			Permission: "users.delete.tenant"})
		require.NoError(t, err)
		return res.GetAllowed()
	}
	require.True(t, allowed("alice"))
	require.True(t, allowed("bob"))

	revoke := func(user string) {
		_, err := db.Exec(ctx, `DELETE FROM t_acme.user_roles WHERE user_id = (SELECT id FROM t_acme.users WHERE external_id = $1)`, user)
		require.NoError(t, err)
	}
	revoke("alice")
	require.Eventually(t, func() bool { return !allowed("alice") }, 30*time.Second, 5*time.Millisecond,
		"the revocation never reached the pdp through the relay")
	for range 20 {
		require.False(t, allowed("alice"), "allowed again after the deny")
	}
	assert.NotEmpty(t, metricValue(t, p.base, `sync_notifications_received_total{database="`+tenantDB+`"}`))

	// Relay gone: the cache is not trusted; bob, still cached as allowed, is denied on the
	// first check after his revocation although no notification can arrive.
	require.True(t, allowed("bob"))
	stopRelay()
	waitUp("0")
	revoke("bob")
	assert.False(t, allowed("bob"), "a cached allow was used while no relay vouched for the database")

	startRelay(t, relayCfg)
	waitUp("1")
	assert.False(t, allowed("bob"))
	assert.False(t, allowed("alice"))
}
