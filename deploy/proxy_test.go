package deploy_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/demoapp"
	"github.com/neofast/neoauthz/internal/pdptest"
	"github.com/neofast/neoauthz/internal/redistest"
	"github.com/neofast/neoauthz/internal/server"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// The proxy tests put a real nginx or Caddy, configured with the shipped file (only its
// addresses replaced), between a client and an application that echoes what it receives,
// with a real pdp (PostgreSQL, Redis, a Keycloak-shaped issuer) behind /auth.

const (
	hostPattern = "{tenant}.app.test"
	routesJSON  = `{ "routes": [
  { "method": "GET", "path": "/healthz", "public": true },
  { "method": "GET", "path": "/api/reports", "permission": "reports.read.tenant" },
  { "method": "GET", "path": "/api/tenants/{tenant}/reports", "permission": "reports.read.tenant", "tenant": "tenant" }
]}`
)

// stack is a pdp, an echoing application and a proxy between them.
type stack struct {
	proxy    string // base URL of the proxy
	idp      *authntest.Issuer
	appCalls atomic.Int64
	tokens   map[string]string // alice (acme admin), bob (acme member), erin (initech admin)
}

// startPDP starts the pdp with the given forward-auth convention and returns its HTTP address.
func startPDP(t *testing.T, s *stack, convention string) string {
	t.Helper()
	ctx := context.Background()
	w := testenv.New(t, "deploy")
	primary := w.AddRegion(t, "us-east-1")
	for _, slug := range []string{"acme", "globex", "initech"} {
		_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: slug, Region: "us-east-1", Realm: slug})
		require.NoError(t, err)
	}
	db := w.Connect(t, primary, "")
	_, err := db.Exec(ctx, `
		INSERT INTO t_acme.users (external_id) VALUES ('alice'), ('bob');
		INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u JOIN t_acme.roles r
			ON (u.external_id, r.code) IN (('alice', 'admin'), ('bob', 'member'));
		INSERT INTO t_initech.users (external_id) VALUES ('erin');
		INSERT INTO t_initech.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_initech.users u, t_initech.roles r
			WHERE r.code = 'admin'`)
	require.NoError(t, err)

	s.idp = authntest.NewIssuer()
	t.Cleanup(s.idp.Close)
	s.tokens = map[string]string{}
	for _, realm := range []string{"platform", "acme", "globex", "initech"} {
		_, err := s.idp.AddRealm(realm, "RS256")
		require.NoError(t, err)
	}
	for sub, realm := range map[string]string{"alice": "acme", "bob": "acme", "erin": "initech"} {
		tok, err := s.idp.Mint(realm, map[string]any{"sub": sub, "aud": "neoauthz", "azp": "neoauthz"})
		require.NoError(t, err)
		s.tokens[sub] = tok
	}

	routesFile := filepath.Join(t.TempDir(), "routes.json")
	require.NoError(t, os.WriteFile(routesFile, []byte(routesJSON), 0o600))
	cfg := daemon.DefaultConfig()
	cfg.AdminURL = w.AdminURL
	cfg.RedisURL = redistest.URL(t)
	cfg.TrustedIssuers = []string{s.idp.URL()}
	cfg.Audiences = []string{"neoauthz"}
	cfg.Server.RouteTablePath = routesFile
	cfg.Server.TenantHostPattern = hostPattern
	cfg.Server.ForwardAuthHeaders = convention
	return pdptest.Start(t, cfg).HTTPAddr
}

// startApp starts the echoing application and returns its address.
func startApp(t *testing.T, s *stack) string {
	t.Helper()
	h := demoapp.Handler()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.appCalls.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(app.Close)
	return strings.TrimPrefix(app.URL, "http://")
}

// proxyBinary finds a proxy installed by scripts/proxies.sh. Under CI a missing proxy fails
// the test; elsewhere it is skipped with the command that installs it.
func proxyBinary(t *testing.T, name string, paths ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := name + " is not installed; `make test` installs it (scripts/proxies.sh, as root)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(l.Addr().String())
	require.NoError(t, l.Close())
	return port
}

// shipped reads a shipped file and replaces its addresses; each must occur, so a changed
// file cannot silently escape the test.
func shipped(t *testing.T, name string, replace ...string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	s := string(b)
	for i := 0; i < len(replace); i += 2 {
		require.Contains(t, s, replace[i], "%s no longer contains %q", name, replace[i])
		s = strings.ReplaceAll(s, replace[i], replace[i+1])
	}
	return s
}

// runProxy starts a proxy process, waits until it answers on port and returns its base URL.
func runProxy(t *testing.T, port string, cmd *exec.Cmd) string {
	t.Helper()
	// A file, not a pipe: the worker processes that inherit it cannot keep Wait waiting.
	out, err := os.CreateTemp(t.TempDir(), "proxy-*.log")
	require.NoError(t, err)
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	logged := func() string { b, _ := os.ReadFile(out.Name()); return string(b) }
	// A process group of its own, so that the proxy's worker processes stop with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(cmd.Path), logged())
		}
	})
	base := "http://127.0.0.1:" + port
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("%s exited: %s", cmd.Path, logged())
		default:
		}
		if resp, err := http.Get(base + "/healthz"); err == nil {
			_ = resp.Body.Close()
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer on port %s: %s", cmd.Path, port, logged())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNginx(t *testing.T) {
	testProxy(t, server.ConventionNginx, proxyBinary(t, "nginx", "/usr/sbin/nginx"), startNginx,
		http.StatusServiceUnavailable) // not auth_request's 500
}

func TestCaddy(t *testing.T) {
	testProxy(t, server.ConventionCaddy, proxyBinary(t, "caddy", "/usr/bin/caddy"), startCaddy,
		http.StatusBadGateway) // Caddy's answer when forward_auth's upstream is down
}

// testProxy runs proxySuite through a proxy started by start with the pdp and the
// application's addresses, then checks the proxy's answer (unreachable) when the pdp is down.
func testProxy(t *testing.T, convention, bin string, start func(t *testing.T, bin, pdp, app string) string, unreachable int) {
	s := &stack{}
	pdp := startPDP(t, s, convention)
	app := startApp(t, s)
	s.proxy = start(t, bin, pdp, app)
	proxySuite(t, s)

	t.Run("pdp unreachable", func(t *testing.T) {
		s.proxy = start(t, bin, closedAddr(t), app)
		r := s.do(t, "acme.app.test", "/api/reports", bearer(s.tokens["alice"]))
		assert.Equal(t, unreachable, r.status, "got %d, want %d; body %s", r.status, unreachable, r.body)
		assert.Nil(t, r.echo, "the application was reached")
	})
}

func startNginx(t *testing.T, bin, pdp, app string) string {
	t.Helper()
	port := freePort(t)
	dir := t.TempDir()
	conf := shipped(t, "nginx.conf",
		"server 127.0.0.1:8181;", "server "+pdp+";",
		"server 127.0.0.1:8080;", "server "+app+";",
		"listen 127.0.0.1:8088;", "listen 127.0.0.1:"+port+";",
		// Temporary files in the test's directory, not the packaged /var/lib/nginx.
		"http {", "http {\n client_body_temp_path "+dir+"/body; proxy_temp_path "+dir+"/proxy; fastcgi_temp_path "+dir+
			"/fastcgi; uwsgi_temp_path "+dir+"/uwsgi; scgi_temp_path "+dir+"/scgi;")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600))
	return runProxy(t, port, exec.Command(bin, "-e", "stderr", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"),
		"-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+";"))
}

func startCaddy(t *testing.T, bin, pdp, app string) string {
	t.Helper()
	port := freePort(t)
	dir := t.TempDir()
	conf := shipped(t, "Caddyfile",
		"forward_auth 127.0.0.1:8181 {", "forward_auth "+pdp+" {",
		"reverse_proxy 127.0.0.1:8080", "reverse_proxy "+app,
		"http://:8089 {", "http://:"+port+" {")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(conf), 0o600))
	cmd := exec.Command(bin, "run", "--adapter", "caddyfile", "--config", filepath.Join(dir, "Caddyfile"))
	// Caddy keeps state under HOME/XDG directories: the test's own.
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	return runProxy(t, port, cmd)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:" + freePort(t)
}

// reply is what the client got through the proxy.
type reply struct {
	status int
	header http.Header
	echo   *demoapp.Echo // what the application received; nil when it was not reached
	body   string
}

func (s *stack) do(t *testing.T, host, target string, header http.Header) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.proxy+"/", nil)
	require.NoError(t, err)
	req.URL.Opaque = target // sent as written, without Go's cleaning
	req.Host = host
	for k, vs := range header {
		req.Header[k] = vs
	}
	before := s.appCalls.Load()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if s.appCalls.Load() > before {
		r.echo = &demoapp.Echo{}
		require.NoError(t, json.Unmarshal(b, r.echo), "body %s", b)
	}
	return r
}

// identity returns every identity-like header the application received, by lowercased
// name with "_" read as "-" (as some frameworks do), each with all its values.
func identity(e *demoapp.Echo) map[string][]string {
	out := map[string][]string{}
	for k, vs := range e.Header {
		n := strings.ReplaceAll(strings.ToLower(k), "_", "-")
		if strings.HasPrefix(n, "x-neoauthz-") {
			out[n] = append(out[n], vs...)
		}
	}
	return out
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func with(h http.Header, kv ...string) http.Header {
	h = h.Clone()
	if h == nil {
		h = http.Header{}
	}
	for i := 0; i < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1])
	}
	return h
}

// proxySuite drives the decisions and the spoofing attempts through the proxy.
func proxySuite(t *testing.T, s *stack) {
	const acme, globex = "acme.app.test", "globex.app.test"
	alice, bob := bearer(s.tokens["alice"]), bearer(s.tokens["bob"])

	// allowedAs checks an allowed request: the application received it unchanged, with
	// exactly the pdp's identity headers, one value each.
	allowedAs := func(t *testing.T, r reply, target, tenant, user string) {
		t.Helper()
		require.Equal(t, http.StatusOK, r.status, "got %d, want 200; body %s", r.status, r.body)
		require.NotNil(t, r.echo, "the application was not reached")
		assert.Equal(t, target, r.echo.URI)
		got := identity(r.echo)
		require.Len(t, got["x-neoauthz-decision-id"], 1, "got identity headers %v", got)
		assert.NotEmpty(t, got["x-neoauthz-decision-id"][0])
		delete(got, "x-neoauthz-decision-id")
		want := map[string][]string{"x-neoauthz-tenant": {tenant}, "x-neoauthz-user": {user}}
		assert.Equal(t, want, got, "identity headers the application received")
	}
	refused := func(t *testing.T, r reply, status int) {
		t.Helper()
		assert.Equal(t, status, r.status, "got %d, want %d; body %s", r.status, status, r.body)
		assert.Nil(t, r.echo, "the application was reached")
	}

	t.Run("allowed", func(t *testing.T) {
		allowedAs(t, s.do(t, acme, "/api/reports?page=2", alice), "/api/reports?page=2", "acme", "alice")
		allowedAs(t, s.do(t, "127.0.0.1", "/api/tenants/acme/reports", alice), "/api/tenants/acme/reports", "acme", "alice")
	})
	t.Run("denied", func(t *testing.T) {
		refused(t, s.do(t, acme, "/api/reports", bob), http.StatusForbidden)
	})
	t.Run("no token", func(t *testing.T) {
		r := s.do(t, acme, "/api/reports", nil)
		refused(t, r, http.StatusUnauthorized)
		assert.Equal(t, `Bearer realm="neoauthz"`, r.header.Get("WWW-Authenticate"))
	})
	t.Run("bad token", func(t *testing.T) {
		r := s.do(t, acme, "/api/reports", bearer(s.tokens["alice"]+"x"))
		refused(t, r, http.StatusUnauthorized)
		assert.True(t, strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer realm="neoauthz", error="invalid_token"`),
			"got WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	})
	t.Run("bad path", func(t *testing.T) {
		// An encoded "/" passes the proxy and is refused by the pdp: 400, not 500.
		refused(t, s.do(t, acme, "/api/reports%2Fx", alice), http.StatusBadRequest)
	})
	t.Run("cross tenant, host-bound", func(t *testing.T) {
		refused(t, s.do(t, globex, "/api/reports", alice), http.StatusForbidden)
	})
	t.Run("cross tenant, path-bound", func(t *testing.T) {
		refused(t, s.do(t, "127.0.0.1", "/api/tenants/globex/reports", alice), http.StatusForbidden)
	})
	t.Run("public route with client identity headers", func(t *testing.T) {
		r := s.do(t, acme, "/healthz", http.Header{
			"X-Neoauthz-Tenant": {"globex"}, "X-Neoauthz-User": {"root"}, "X-Neoauthz-Decision-Id": {"forged"},
			"X-Neoauthz-Permission": {"admin.manage.tenant"},
		})
		require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
		require.NotNil(t, r.echo)
		assert.Empty(t, identity(r.echo), "a public route carries no identity")
	})

	// Spoofing: headers a client adds to change the decided request or the identity have no
	// effect — the same decision, and the application sees exactly the pdp's identity.
	spoofs := []struct {
		name   string
		header []string
	}{
		{"X-Forwarded-Uri", []string{"X-Forwarded-Uri", "/healthz"}},
		{"X-Forwarded-Method", []string{"X-Forwarded-Method", "OPTIONS"}},
		{"X-Forwarded-Host", []string{"X-Forwarded-Host", globex}},
		{"X-Original-URI", []string{"X-Original-URI", "/healthz"}},
		{"X-Original-Method", []string{"X-Original-Method", "OPTIONS"}},
		{"X-Original-Host", []string{"X-Original-Host", globex}},
		{"X-Neoauthz identity", []string{"X-Neoauthz-Tenant", "globex", "X-Neoauthz-User", "root", "X-Neoauthz-Decision-Id", "forged"}},
		{"X-Neoauthz-Permission", []string{"X-Neoauthz-Permission", "reports.read.own"}},
		// Some frameworks read "_" as "-" in header names.
		{"X_Neoauthz_User", []string{"X_Neoauthz_User", "root", "X_Neoauthz_Tenant", "globex"}},
		{"all at once", []string{"X-Forwarded-Uri", "/healthz", "X-Original-URI", "/healthz", "X-Forwarded-Host", globex,
			"X-Original-Host", globex, "X-Neoauthz-User", "root", "X-Neoauthz-Tenant", "globex"}},
	}
	for _, sp := range spoofs {
		t.Run("spoofed "+sp.name, func(t *testing.T) {
			allowedAs(t, s.do(t, acme, "/api/reports", with(alice, sp.header...)), "/api/reports", "acme", "alice")
			refused(t, s.do(t, acme, "/api/reports", with(bob, sp.header...)), http.StatusForbidden)
			refused(t, s.do(t, globex, "/api/reports", with(alice, sp.header...)), http.StatusForbidden)
			refused(t, s.do(t, acme, "/api/reports", with(nil, sp.header...)), http.StatusUnauthorized)
		})
	}
	t.Run("Host variants", func(t *testing.T) {
		allowedAs(t, s.do(t, "ACME.App.Test", "/api/reports", alice), "/api/reports", "acme", "alice")
		allowedAs(t, s.do(t, "acme.app.test.", "/api/reports", alice), "/api/reports", "acme", "alice")
		allowedAs(t, s.do(t, "acme.app.test:443", "/api/reports", alice), "/api/reports", "acme", "alice")
		refused(t, s.do(t, "GLOBEX.app.test", "/api/reports", with(alice, "X-Forwarded-Host", acme, "X-Original-Host", acme)), http.StatusForbidden)
	})

	// Last: the issuer fails, and a token of a realm whose keys the pdp has not fetched yet
	// cannot be verified. The pdp cannot decide: 503, never 200 or 500.
	t.Run("pdp cannot decide", func(t *testing.T) {
		s.idp.SetFailing(true)
		defer s.idp.SetFailing(false)
		r := s.do(t, "127.0.0.1", "/api/reports", bearer(s.tokens["erin"]))
		refused(t, r, http.StatusServiceUnavailable)
		assert.NotContains(t, r.body, s.tokens["erin"])
	})
}
