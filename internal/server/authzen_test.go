package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/consistency"
)

const testAuthZENConfig = `{
  "peps": [{ "name": "gateway", "mtls_identities": ["spiffe://test/gateway"], "tenants": ["acme"] }],
  "actions": [{ "name": "can_read_users", "permission": "users.read.tenant" }]
}`

// authzenClient talks to a server whose HTTP port serves TLS, presenting a client
// certificate for cn (none when cn is "").
type authzenClient struct {
	base   string
	client *http.Client
}

func startAuthZEN(t *testing.T, fake *fakeDecider, cn string) (*testServer, *authzenClient) {
	t.Helper()
	return startAuthZENWith(t, fake, cn, testAuthZENConfig)
}

func startAuthZENWith(t *testing.T, fake *fakeDecider, cn, config string) (*testServer, *authzenClient) {
	t.Helper()
	ca := newTestCA(t)
	dir := t.TempDir()
	scert, skey := ca.issue(t, "127.0.0.1", true, []string{"localhost"}, nil)
	certFile, keyFile := writeFile(t, dir, "server.pem", scert), writeFile(t, dir, "server-key.pem", skey)
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	azFile := writeFile(t, dir, "authzen.json", []byte(config))
	ts := startServer(t, fake, func(c *Config) {
		c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile = certFile, keyFile, caFile
		c.HTTPTLS, c.AuthZENConfigPath = true, azFile
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	tc := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cn != "" {
		cp, kp := ca.issue(t, "pep", false, nil, []string{cn})
		pair, err := tls.X509KeyPair(cp, kp)
		require.NoError(t, err)
		tc.Certificates = []tls.Certificate{pair}
	}
	tr := &http.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return ts, &authzenClient{base: "https://" + strings.TrimPrefix(ts.http, "http://"), client: &http.Client{Transport: tr}}
}

// do sends a request and decodes the JSON answer into a generic map.
func (c *authzenClient) do(t *testing.T, path, contentType, body string, header map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), "body %q", raw)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	return resp.StatusCode, resp.Header, out
}

func (c *authzenClient) post(t *testing.T, path, body string) (int, map[string]any) {
	t.Helper()
	code, _, out := c.do(t, path, "application/json", body, nil)
	return code, out
}

const aliceReads = `{"subject":{"type":"user","id":"alice"},"action":{"name":"can_read_users"},"resource":{"type":"app","id":"x"}}`

func TestAuthZENEvaluation(t *testing.T) {
	fake := newFake()
	ts, c := startAuthZEN(t, fake, "spiffe://test/gateway")

	code, h, out := c.do(t, pathEvaluation, "application/json; charset=utf-8", aliceReads,
		map[string]string{"X-Request-ID": "req-1", headerConsistency: consistency.ForAdmin(42).String()})
	require.Equal(t, http.StatusOK, code, "%v", out)
	assert.Equal(t, true, out["decision"])
	ctx := out["context"].(map[string]any)
	assert.Equal(t, "granted", ctx["reason"])
	assert.NotEmpty(t, ctx["decision_id"])
	assert.Equal(t, consistency.ForAdmin(42).String(), ctx["consistency_token"], "the token of the data used")
	assert.Equal(t, "req-1", h.Get("X-Request-ID"))
	req, sub, _ := fake.lastRequest()
	assert.Equal(t, "users.read.tenant", req.Permission)
	assert.EqualValues(t, 42, req.Consistency.Admin, "x-neoauthz-consistency reaches the pdp")
	assert.Equal(t, "alice", sub.UserID)
	assert.Nil(t, req.Resource, "a code check carries no resource")

	for name, hdr := range map[string]map[string]string{
		"malformed token":  {headerConsistency: "42"},
		"impossible token": {headerConsistency: consistency.ForAdmin(fakeCurrentVersion + 1).String()},
		"replaced header":  {headerMinVersion: "42"},
	} {
		_, _, before := fake.lastRequest()
		code, _, _ := c.do(t, pathEvaluation, "application/json", aliceReads, hdr)
		assert.Equal(t, http.StatusBadRequest, code, name)
		_, _, after := fake.lastRequest()
		assert.Equal(t, before, after, "%s: the pdp was asked to decide", name)
	}

	// The default mapping: an action name that is a permission is used as it is.
	code, out = c.post(t, pathEvaluation, `{"subject":{"type":"user","id":"alice"},"action":{"name":"projects.read"},
		"resource":{"type":"project","id":"p1","properties":{"owner_id":"alice","team_id":"t1"}}}`)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, true, out["decision"])
	req, _, _ = fake.lastRequest()
	require.NotNil(t, req.Resource)
	assert.Equal(t, "alice", req.Resource.OwnerID)
	assert.Equal(t, "t1", req.Resource.TeamID)

	denies := map[string]struct{ body, reason string }{
		"engine deny":      {`{"subject":{"type":"user","id":"alice"},"action":{"name":"users.delete.tenant"},"resource":{"type":"a","id":"b"}}`, "explicit_deny"},
		"unknown action":   {`{"subject":{"type":"user","id":"alice"},"action":{"name":"can_fly"},"resource":{"type":"a","id":"b"}}`, "unknown_action"},
		"unknown subjects": {`{"subject":{"type":"robot","id":"alice"},"action":{"name":"can_read_users"},"resource":{"type":"a","id":"b"}}`, "unsupported_subject_type"},
	}
	for name, tc := range denies {
		code, out := c.post(t, pathEvaluation, tc.body)
		require.Equal(t, http.StatusOK, code, name)
		assert.Equal(t, false, out["decision"], name)
		assert.Equal(t, tc.reason, out["context"].(map[string]any)["reason"], name)
	}

	// Errors are a status and {"error": {...}}, never a decision.
	errs := map[string]struct {
		contentType, body string
		status            int
	}{
		"no content type":   {"", aliceReads, 400},
		"form content type": {"application/x-www-form-urlencoded", aliceReads, 400},
		"not JSON":          {"application/json", `{"subject":`, 400},
		"not an object":     {"application/json", `[1]`, 400},
		"trailing data":     {"application/json", aliceReads + `{}`, 400},
		"no subject":        {"application/json", `{"action":{"name":"can_read_users"},"resource":{"type":"a","id":"b"}}`, 400},
		"no subject id":     {"application/json", `{"subject":{"type":"user"},"action":{"name":"can_read_users"},"resource":{"type":"a","id":"b"}}`, 400},
		"no resource id":    {"application/json", `{"subject":{"type":"user","id":"alice"},"action":{"name":"can_read_users"},"resource":{"type":"a"}}`, 400},
		"no action":         {"application/json", `{"subject":{"type":"user","id":"alice"},"resource":{"type":"a","id":"b"}}`, 400},
		"id not a string":   {"application/json", `{"subject":{"type":"user","id":7},"action":{"name":"can_read_users"},"resource":{"type":"a","id":"b"}}`, 400},
		"owner not string":  {"application/json", `{"subject":{"type":"user","id":"alice"},"action":{"name":"projects.read"},"resource":{"type":"a","id":"b","properties":{"owner_id":{}}}}`, 400},
		"not UTF-8":         {"application/json", "{\"subject\":{\"type\":\"user\",\"id\":\"al\xffce\"},\"action\":{\"name\":\"can_read_users\"},\"resource\":{\"type\":\"a\",\"id\":\"b\"}}", 400},
		"duplicate member":  {"application/json", `{"subject":{"type":"user","id":"alice","id":"root"},"action":{"name":"can_read_users"},"resource":{"type":"a","id":"b"}}`, 400},
		"nested too deep":   {"application/json", `{"subject":{"type":"user","id":"alice"},"action":{"name":"can_read_users"},"resource":{"type":"a","id":"b"},"context":{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`, 400},
		"context not obj":   {"application/json", `{"subject":{"type":"user","id":"alice"},"action":{"name":"can_read_users"},"resource":{"type":"a","id":"b"},"context":[1]}`, 400},
		"cannot decide":     {"application/json", `{"subject":{"type":"user","id":"alice"},"action":{"name":"fail.unavailable.tenant"},"resource":{"type":"a","id":"b"}}`, 503},
	}
	for name, tc := range errs {
		code, _, out := c.do(t, pathEvaluation, tc.contentType, tc.body, nil)
		assert.Equal(t, tc.status, code, "%s: %v", name, out)
		assert.NotContains(t, out, "decision", name)
		e, _ := out["error"].(map[string]any)
		require.NotNil(t, e, name)
		assert.EqualValues(t, tc.status, e["status"], name)
		assert.NotEmpty(t, e["message"], name)
	}
	code, out = c.post(t, "/tenants/globex"+pathEvaluation, aliceReads)
	assert.Equal(t, http.StatusForbidden, code, "the PEP is bound to acme: %v", out)
	code, out = c.post(t, "/tenants/acme"+pathEvaluation, aliceReads)
	assert.Equal(t, http.StatusOK, code, "%v", out)
	assert.Equal(t, true, out["decision"])

	families, err := ts.reg.Gather()
	require.NoError(t, err)
	var observed, allowed float64
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case f.GetName() == "permission_check_duration_seconds" && labels["api"] == apiAuthZEN:
				observed = float64(m.GetHistogram().GetSampleCount())
			case f.GetName() == "permission_checks_total" && labels["permission"] == "users.read.tenant" && labels["result"] == resultAllowed:
				allowed = m.GetCounter().GetValue()
			}
		}
	}
	assert.Positive(t, observed, "permission_check_duration_seconds{api=authzen}")
	assert.Positive(t, allowed, "permission_checks_total{permission=users.read.tenant,result=allowed}")
}

// TestAuthZENInvalidRouteTenantFirst: a route's tenant parameter that is no tenant name is an
// invalid request, even when it also disagrees with the tenant the PEP asks about.
func TestAuthZENInvalidRouteTenantFirst(t *testing.T) {
	_, c := startAuthZENWith(t, newFake(), "spiffe://test/gateway", `{
	  "peps": [{ "name": "gateway", "mtls_identities": ["spiffe://test/gateway"], "tenants": ["acme"] }],
	  "route_resource_type": "route", "subject_tokens": true
	}`)
	// A subject token: the path binds its tenant, so a route tenant can conflict with it.
	route := func(path string) string {
		return `{"subject":{"type":"user","id":"alice","properties":{"token":"alice-token"}},"action":{"name":"GET"},
			"resource":{"type":"route","id":"` + path + `"}}`
	}
	code, out := c.post(t, "/tenants/acme"+pathEvaluation, route("/api/tenants/acme/reports"))
	require.Equal(t, http.StatusOK, code, "%v", out)
	assert.Equal(t, true, out["decision"])
	code, out = c.post(t, "/tenants/acme"+pathEvaluation, route("/api/tenants/globex/reports"))
	require.Equal(t, http.StatusOK, code, "%v", out)
	assert.Equal(t, false, out["decision"], "another tenant: cross-tenant")
	for _, bad := range []string{"Not_A_Tenant", strings.Repeat("a", 4096)} {
		code, out = c.post(t, "/tenants/acme"+pathEvaluation, route("/api/tenants/"+bad+"/reports"))
		assert.Equal(t, http.StatusBadRequest, code, "%.20s: %v", bad, out)
	}
}

func TestAuthZENEvaluations(t *testing.T) {
	_, c := startAuthZEN(t, newFake(), "spiffe://test/gateway")
	decisions := func(out map[string]any) []any {
		var ds []any
		for _, e := range out["evaluations"].([]any) {
			ds = append(ds, e.(map[string]any)["decision"])
		}
		return ds
	}
	// Top-level defaults, overridden per item.
	code, out := c.post(t, pathEvaluations, `{"subject":{"type":"user","id":"alice"},"action":{"name":"can_read_users"},
		"resource":{"type":"a","id":"b"},"evaluations":[{}, {"action":{"name":"users.delete.tenant"}}, {"action":{"name":"reports.read.tenant"}}]}`)
	require.Equal(t, http.StatusOK, code, "%v", out)
	assert.Equal(t, []any{true, false, true}, decisions(out))
	assert.NotContains(t, out, "decision")

	// Without items it is a single evaluation.
	code, out = c.post(t, pathEvaluations, aliceReads)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, true, out["decision"])

	// An item that cannot be decided is a deny carrying its error; the others are decided.
	code, out = c.post(t, pathEvaluations, `{"subject":{"type":"user","id":"alice"},"resource":{"type":"a","id":"b"},
		"evaluations":[{"action":{"name":"fail.unavailable.tenant"}}, {"action":{"name":"can_read_users"}}]}`)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []any{false, true}, decisions(out))
	first := out["evaluations"].([]any)[0].(map[string]any)
	assert.EqualValues(t, 503, first["context"].(map[string]any)["error"].(map[string]any)["status"])

	for _, body := range []string{
		`{"evaluations":[{"subject":{"type":"user","id":"alice"},"action":{"name":"can_read_users"}}]}`, // no resource anywhere
		`{"subject":{"type":"user","id":"alice"},"action":{"name":"can_read_users"},"resource":{"type":"a","id":"b"},"evaluations":[{}],"options":{"evaluations_semantic":"any"}}`,
		`{"subject":{"type":"user","id":"alice"},"action":{"name":"can_read_users"},"resource":{"type":"a","id":"b"},"evaluations":[` +
			strings.Repeat(`{},`, maxAuthZENItems) + `{}]}`,
	} {
		code, out := c.post(t, pathEvaluations, body)
		assert.Equal(t, http.StatusBadRequest, code, "%v", out)
		assert.NotContains(t, out, "evaluations")
	}
}

func TestAuthZENCallers(t *testing.T) {
	t.Run("a certificate that names no PEP", func(t *testing.T) {
		_, c := startAuthZEN(t, newFake(), "spiffe://test/intruder")
		code, h, out := c.do(t, pathEvaluation, "application/json", aliceReads, nil)
		assert.Equal(t, http.StatusUnauthorized, code)
		assert.Contains(t, h.Get("WWW-Authenticate"), "Bearer")
		assert.NotContains(t, out, "decision")
	})
	t.Run("no certificate", func(t *testing.T) {
		_, c := startAuthZEN(t, newFake(), "")
		code, _ := c.post(t, pathEvaluation, aliceReads)
		assert.Equal(t, http.StatusUnauthorized, code)
		// The TLS HTTP port still serves health to clients without certificates (once the
		// server has first found the decision service ready).
		require.Eventually(t, func() bool {
			resp, err := c.client.Get(c.base + "/health")
			require.NoError(t, err, "the TLS handshake without a client certificate")
			_ = resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, 10*time.Second, 10*time.Millisecond, "health never became 200 over TLS")
	})
	t.Run("a user token is no PEP credential", func(t *testing.T) {
		_, c := startAuthZEN(t, newFake(), "")
		code, _, _ := c.do(t, pathEvaluation, "application/json", aliceReads, map[string]string{"Authorization": "Bearer alice-token"})
		assert.Equal(t, http.StatusForbidden, code)
		code, _, _ = c.do(t, pathEvaluation, "application/json", aliceReads, map[string]string{"Authorization": "Bearer expired"})
		assert.Equal(t, http.StatusUnauthorized, code)
	})
}

func TestAuthZENMetadata(t *testing.T) {
	_, c := startAuthZEN(t, newFake(), "")
	resp, err := c.client.Get(c.base + "/.well-known/authzen-configuration/tenants/acme")
	require.NoError(t, err)
	defer resp.Body.Close()
	var md map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&md))
	// The fake decider has no user directory: subject search is neither served nor named.
	assert.Equal(t, map[string]string{
		"policy_decision_point":       c.base + "/tenants/acme",
		"access_evaluation_endpoint":  c.base + "/tenants/acme/access/v1/evaluation",
		"access_evaluations_endpoint": c.base + "/tenants/acme/access/v1/evaluations",
		"search_action_endpoint":      c.base + "/tenants/acme/access/v1/search/action",
	}, md)
	resp2, err := c.client.Post(c.base+"/access/v1/search/subject", "application/json", bytes.NewReader([]byte(`{}`)))
	require.NoError(t, err)
	_ = resp2.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp2.StatusCode)
}

func TestAuthZENConfigValidate(t *testing.T) {
	valid := func() map[string]any {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(testAuthZENConfig), &m))
		return m
	}
	_, err := ParseAuthZENConfig([]byte(testAuthZENConfig))
	require.NoError(t, err)
	tests := map[string]struct {
		edit func(m map[string]any)
		want string
	}{
		"unknown field":     {func(m map[string]any) { m["subject_token"] = true }, "unknown field"},
		"http base":         {func(m map[string]any) { m["policy_decision_point"] = "http://pdp" }, "https"},
		"pep without id":    {func(m map[string]any) { m["peps"] = []any{map[string]any{"name": "x", "tenants": []any{"acme"}}} }, "mtls_identities or client"},
		"pep without scope": {func(m map[string]any) { m["peps"] = []any{map[string]any{"name": "x", "mtls_identities": []any{"a"}}} }, "names no tenant"},
		"bad tenant":        {func(m map[string]any) { m["peps"].([]any)[0].(map[string]any)["tenants"] = []any{"Acme;"} }, "not a tenant"},
		"bad permission":    {func(m map[string]any) { m["actions"] = []any{map[string]any{"name": "a", "permission": "read"}} }, "permission"},
		"mapped twice": {func(m map[string]any) {
			m["actions"] = []any{map[string]any{"name": "a", "permission": "x.y"}, map[string]any{"name": "a", "permission": "x.z"}}
		}, "mapped twice"},
		"shared identity": {func(m map[string]any) {
			m["peps"] = append(m["peps"].([]any), map[string]any{"name": "y", "mtls_identities": []any{"spiffe://test/gateway"}, "tenants": []any{"b"}})
		}, "also"},
		"subject id":  {func(m map[string]any) { m["subjects"] = map[string]any{"user": map[string]any{"id": "name"}} }, "subjects"},
		"owner by":    {func(m map[string]any) { m["resources"] = map[string]any{"doc": map[string]any{"owner_by": "name"}} }, "owner_by"},
		"search":      {func(m map[string]any) { m["resources"] = map[string]any{"doc": map[string]any{"search": "teams"}} }, "search"},
		"client half": {func(m map[string]any) { m["peps"].([]any)[0].(map[string]any)["client"] = map[string]any{"realm": "r"} }, "client_id"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := valid()
			tc.edit(m)
			b, err := json.Marshal(m)
			require.NoError(t, err)
			_, err = ParseAuthZENConfig(b)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	t.Run("a bad file fails the configuration", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "authzen.json")
		require.NoError(t, os.WriteFile(p, []byte(`{"peps": [{}]}`), 0o600))
		cfg := DefaultConfig()
		cfg.AuthZENConfigPath = p
		require.ErrorContains(t, cfg.Validate(), "peps[0]")
		_, err := New(cfg, newFake(), nil, nil, nil)
		require.Error(t, err)
		cfg.AuthZENConfigPath = filepath.Join(t.TempDir(), "missing.json")
		require.Error(t, cfg.Validate())
	})
	t.Run("http tls needs a certificate", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.HTTPTLS = true
		require.ErrorContains(t, cfg.Validate(), "http tls")
	})
}

func TestAuthZENPlatformSubjects(t *testing.T) {
	const config = `{
	  "peps": [
	    { "name": "ops", "mtls_identities": ["spiffe://test/ops"], "platform": true, "tenants": ["acme"] },
	    { "name": "app", "mtls_identities": ["spiffe://test/app"], "tenants": ["acme"] }
	  ],
	  "subjects": { "operator": { "level": "platform" }, "user": {} },
	  "resources": { "tenant": { "tenant": "slug", "team": "team" } }
	}`
	body := `{"subject":{"type":"operator","id":"root"},"action":{"name":"tenants.read"},
		"resource":{"type":"tenant","id":"x","properties":{"slug":"acme","team":"ignored"}}}`
	fake := newFake()
	_, ops := startAuthZENWith(t, fake, "spiffe://test/ops", config)
	code, out := ops.post(t, pathEvaluation, body)
	require.Equal(t, http.StatusOK, code, "%v", out)
	assert.Equal(t, true, out["decision"])
	req, sub, _ := fake.lastRequest()
	assert.Equal(t, "root", sub.UserID)
	require.NotNil(t, req.Resource)
	assert.Equal(t, "acme", req.Resource.Tenant, "the target tenant comes from the mapped property")
	assert.Empty(t, req.Resource.TeamID, "teams are for tenant-level subjects")

	_, app := startAuthZENWith(t, newFake(), "spiffe://test/app", config)
	code, out = app.post(t, pathEvaluation, body)
	assert.Equal(t, http.StatusForbidden, code, "a PEP without platform may not ask about platform subjects: %v", out)
}

func TestAuthZENSubjectTokens(t *testing.T) {
	const config = `{
	  "peps": [{ "name": "gateway", "mtls_identities": ["spiffe://test/gateway"], "tenants": ["acme"] }],
	  "subject_tokens": true
	}`
	body := func(user, token string) string {
		return `{"subject":{"type":"user","id":"` + user + `","properties":{"token":"` + token + `"}},
			"action":{"name":"users.read.tenant"},"resource":{"type":"a","id":"b"}}`
	}
	reason := func(out map[string]any) any { return out["context"].(map[string]any)["reason"] }

	_, anon := startAuthZENWith(t, newFake(), "", config)
	code, out := anon.post(t, pathEvaluation, body("bob", "bob-token"))
	require.Equal(t, http.StatusOK, code, "%v", out)
	assert.Equal(t, true, out["decision"], "a caller may ask about the bearer of a subject token")
	code, out = anon.post(t, "/tenants/acme"+pathEvaluation, body("bob", "bob-token"))
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, false, out["decision"])
	assert.Equal(t, "cross_tenant", reason(out), "the path binds the tenant")
	code, out = anon.post(t, pathEvaluation, body("alice", "bob-token"))
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "subject_token_mismatch", reason(out))
	code, out = anon.post(t, pathEvaluation, body("bob", "expired"))
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, false, out["decision"])
	assert.Equal(t, "unauthenticated", reason(out))

	// A PEP's subject token must be of a tenant the PEP may ask about.
	_, pep := startAuthZENWith(t, newFake(), "spiffe://test/gateway", config)
	code, out = pep.post(t, pathEvaluation, body("alice", "alice-token"))
	require.Equal(t, http.StatusOK, code, "%v", out)
	assert.Equal(t, true, out["decision"])
	code, _ = pep.post(t, pathEvaluation, body("bob", "bob-token"))
	assert.Equal(t, http.StatusForbidden, code, "the gateway is bound to acme, bob is of globex")
	code, _ = pep.post(t, "/tenants/acme"+pathEvaluation, body("bob", "bob-token"))
	assert.Equal(t, http.StatusForbidden, code)
}
