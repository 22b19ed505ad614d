package daemon_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/pdptest"
	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// TestAnalyticsDatabaseDownUnderTraffic: with the region's analytics database taken away
// while ext_authz traffic flows, every decision is still right, the lost records are counted
// in decision_log_dropped_total, and recording resumes when the database is back.
func TestAnalyticsDatabaseDownUnderTraffic(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := testenv.New(t, "daemon")
	primary := w.AddRegion(t, "us-east-1")
	analytics := w.AddDatabase(t, "us-east-1", "us-analytics", registry.TypeAnalytics)
	run, err := w.Fleet.Apply(ctx, fleet.Plan{Scope: fleet.ScopeAnalytics})
	require.NoError(t, err)
	require.Equal(t, "succeeded", run.Status)
	px := pgtest.NewProxy(t, net.JoinHostPort(analytics.Host, strconv.Itoa(analytics.Port)))
	_, err = w.Admin.Exec(ctx, `UPDATE admin.database_connections SET host = '127.0.0.1', port = $2 WHERE id = $1`, analytics.ID, px.Port())
	require.NoError(t, err)
	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme-realm"})
	require.NoError(t, err)
	schema := pgx.Identifier{tn.SchemaName}.Sanitize()
	db := w.Connect(t, primary, "")
	_, err = db.Exec(ctx, `INSERT INTO `+schema+`.users (external_id) VALUES ('alice'), ('bob');
		INSERT INTO `+schema+`.user_roles (user_id, role_id) SELECT u.id, r.id FROM `+schema+`.users u, `+schema+`.roles r
		WHERE u.external_id = 'alice' AND r.code = 'admin'`)
	require.NoError(t, err)

	idp := authntest.NewIssuer()
	t.Cleanup(idp.Close)
	_, err = idp.AddRealm("acme-realm", "RS256")
	require.NoError(t, err)
	token := func(sub string) string {
		tok, err := idp.Mint("acme-realm", map[string]any{"sub": sub, "typ": "Bearer", "aud": "neoauthz"})
		require.NoError(t, err)
		return tok
	}
	alice, bob := token("alice"), token("bob")

	cfg := daemon.DefaultConfig()
	cfg.AdminURL, cfg.TrustedIssuers, cfg.Audiences = w.AdminURL, []string{idp.URL()}, []string{"neoauthz"}
	cfg.DecisionLogConfig.FlushInterval = 20 * time.Millisecond
	cfg.DecisionLogConfig.WriteTimeout = 500 * time.Millisecond
	cfg.DecisionLogConfig.TenantRate = 1e6
	pdp := pdptest.Start(t, cfg)

	ext := authv3.NewAuthorizationClient(pdp.Conn)
	check := func(tok string) codes.Code {
		res, err := ext.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/api/users", Headers: map[string]string{"authorization": "Bearer " + tok}}},
			ContextExtensions: map[string]string{"permission": "users.read.tenant"},
		}})
		require.NoError(t, err, "decisions never fail because of the decision log")
		return codes.Code(res.GetStatus().GetCode())
	}
	traffic := func(n int) {
		for range n {
			require.Equal(t, codes.OK, check(alice))
			require.Equal(t, codes.PermissionDenied, check(bob))
		}
	}
	logDB := w.Connect(t, analytics, "")
	recorded := func() int {
		var n int
		require.NoError(t, logDB.QueryRow(ctx, `SELECT count(*) FROM analytics.decision_log WHERE tenant_id = $1`, tn.ID).Scan(&n))
		return n
	}
	dropped := func() float64 {
		res, err := http.Get("http://" + pdp.HTTPAddr + "/metrics")
		require.NoError(t, err)
		defer res.Body.Close()
		total := 0.0
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, `decision_log_dropped_total{reason="write_failed"}`) ||
				strings.HasPrefix(line, `decision_log_dropped_total{reason="queue_full"}`) {
				v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				require.NoError(t, err)
				total += v
			}
		}
		return total
	}

	traffic(5)
	require.Eventually(t, func() bool { return recorded() >= 5 }, 30*time.Second, 20*time.Millisecond, "every deny is recorded")

	px.Stop()
	require.Eventually(t, func() bool {
		traffic(20)
		return dropped() > 0
	}, 30*time.Second, 10*time.Millisecond, "drops are counted while the database is down")
	before := recorded()

	px.Start()
	require.Eventually(t, func() bool {
		traffic(5)
		return recorded() > before
	}, 30*time.Second, 50*time.Millisecond, "recording resumes once the database is back")
	assert.Positive(t, dropped())
}
