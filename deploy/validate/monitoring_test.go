package validate

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/neofast/neoauthz/internal/adminapi"
	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/pdptest"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/redistest"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

const (
	rulesFile     = "../monitoring/alerts.yml"
	dashboardFile = "../monitoring/grafana-dashboard.json"
)

func TestPromtoolChecksTheRules(t *testing.T) {
	path, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool is not installed (Debian package prometheus; make test installs it as root)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	out, err := exec.Command(path, "check", "rules", rulesFile).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
	assert.Contains(t, string(out), "SUCCESS")
}

// ruleExprs returns every expression of the alert rules, by alert name.
func ruleExprs(t *testing.T) map[string]string {
	raw, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var doc struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	out := map[string]string{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r.Expr
		}
	}
	return out
}

// dashboardExprs returns the expressions of the dashboard's panels and variables.
func dashboardExprs(t *testing.T) map[string]string {
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d struct {
		Title  string
		UID    string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct{ Name, Query, Type string }
		}
	}
	require.NoError(t, json.Unmarshal(raw, &d))
	require.NotEmpty(t, d.UID)
	out := map[string]string{}
	for _, p := range d.Panels {
		require.NotEmpty(t, p.Targets, "panel %q queries something", p.Title)
		for i, tg := range p.Targets {
			out[p.Title+"#"+string(rune('A'+i))] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			out["variable "+v.Name] = strings.TrimSuffix(strings.TrimPrefix(v.Query, "label_values("), ", instance)")
		}
	}
	return out
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promFunctions = regexp.MustCompile(`^\s*\(`)
	promKeywords  = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true, "inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression selects: identifiers that are not
// functions (followed by "("), keywords, label matchers, grouping labels or durations.
func metricNames(expr string) []string {
	e := promStrings.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRanges.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		name := e[loc[0]:loc[1]]
		if promKeywords[strings.ToLower(name)] || promFunctions.MatchString(e[loc[1]:]) ||
			strings.HasPrefix(name, "$") || (loc[0] > 0 && (e[loc[0]-1] == '$' || e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9')) {
			continue
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNamesOfAnExpression(t *testing.T) {
	assert.Equal(t, []string{"sync_staleness_seconds_bucket"},
		metricNames(`histogram_quantile(0.99, sum by (le, instance) (rate(sync_staleness_seconds_bucket{instance=~"$instance"}[5m]))) > 5`))
	assert.Equal(t, []string{"a_total", "b"}, metricNames(`sum(rate(a_total{x="y"}[$__rate_interval])) / on (instance) b`))
}

// TestRulesAndDashboardUseExportedMetrics runs the pdp and the admin API on real PostgreSQL
// and Redis, makes them do what produces every series (a check, a failed token, a change
// notification), scrapes their /metrics, and checks that every metric name the alert rules and
// the dashboard use is there.
func TestRulesAndDashboardUseExportedMetrics(t *testing.T) {
	exported := scrapePdp(t)
	for name := range scrapeAdmin(t) {
		exported[name] = true
	}
	for _, src := range []map[string]string{ruleExprs(t), dashboardExprs(t)} {
		for where, expr := range src {
			names := metricNames(expr)
			assert.NotEmpty(t, names, "%s: %s selects no metric", where, expr)
			for _, n := range names {
				assert.True(t, exported[n], "%s: metric %s is not exported by the binaries", where, n)
			}
		}
	}
}

// scrapeNames returns the sample names of a Prometheus text exposition.
func scrapeNames(t *testing.T, body io.Reader) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		out[name] = true
	}
	require.NoError(t, sc.Err())
	return out
}

func scrapePdp(t *testing.T) map[string]bool {
	ctx := context.Background()
	w := testenv.New(t, "validate")
	primary := w.AddRegion(t, "us-east-1")
	w.AddDatabase(t, "us-east-1", "us-analytics", registry.TypeAnalytics)
	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme-realm"})
	require.NoError(t, err)
	run, err := w.Fleet.Apply(ctx, fleet.Plan{Scope: fleet.ScopeAnalytics})
	require.NoError(t, err)
	require.Equal(t, "succeeded", run.Status)
	db := w.Connect(t, primary, "")
	schema := pgx.Identifier{tn.SchemaName}.Sanitize()
	_, err = db.Exec(ctx, `INSERT INTO `+schema+`.users (external_id) VALUES ('alice')`)
	require.NoError(t, err)

	idp := authntest.NewIssuer()
	t.Cleanup(idp.Close)
	_, err = idp.AddRealm("acme-realm", "RS256")
	require.NoError(t, err)
	tok, err := idp.Mint("acme-realm", map[string]any{"sub": "alice", "typ": "Bearer", "aud": "neoauthz"})
	require.NoError(t, err)

	cfg := daemon.DefaultConfig()
	cfg.AdminURL, cfg.RedisURL, cfg.TrustedIssuers = w.AdminURL, redistest.URL(t), []string{idp.URL()}
	cfg.Audiences = []string{"neoauthz"}
	cfg.DecisionLogConfig.FlushInterval = 50 * time.Millisecond
	pdp := pdptest.Start(t, cfg)

	client := authzv1.NewAuthorizationServiceClient(pdp.Conn)
	check := func(token string) {
		_, err := client.Check(ctx, &authzv1.CheckRequest{Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: token}},
			Permission: "users.read.tenant"})
		require.NoError(t, err)
	}
	check(tok)
	check("not-a-token")
	base := "http://" + pdp.HTTPAddr
	var names map[string]bool
	n := 0
	require.Eventually(t, func() bool {
		// A change notification (a new user) reaches the listener, once it listens.
		n++
		_, err := db.Exec(ctx, `INSERT INTO `+schema+`.users (external_id) VALUES ($1)`, "user-"+strconv.Itoa(n))
		require.NoError(t, err)
		check(tok)
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		names = scrapeNames(t, resp.Body)
		return names["sync_notifications_received_total"] && names["decision_log_written_total"]
	}, 60*time.Second, 200*time.Millisecond, "the pdp exports notification and decision-log series")
	return names
}

func scrapeAdmin(t *testing.T) map[string]bool {
	w := testenv.New(t, "validate")
	w.AddRegion(t, "us-east-1")
	// A recorded migration run, so that the run counts have a series.
	_, err := w.Fleet.Apply(context.Background(), fleet.Plan{Scope: fleet.ScopeAdmin})
	require.NoError(t, err)
	store := pgstore.New(w.Admin, w.Registry, pgstore.Options{})
	t.Cleanup(store.Close)
	v, err := authn.New(authn.Config{TrustedIssuerBases: []string{"http://127.0.0.1:1"}, PlatformRealm: "platform", Audiences: []string{"neoauthz"}}, store, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv, err := adminapi.New(adminapi.Deps{Admin: w.Admin, Registry: w.Registry, Fleet: w.Fleet, Tenants: w.Tenants, Store: store, Validator: v})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	h := srv.Handler()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/health", nil))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return scrapeNames(t, rec.Body)
}
