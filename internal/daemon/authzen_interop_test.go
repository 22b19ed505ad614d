package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/redistest"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// interopDir holds the AuthZEN working group's interop scenarios (see its README.md).
const interopDir = "../../testdata/authzen"

// authzenPDP is a running pdp with the AuthZEN API and a PEP credential for it.
type authzenPDP struct {
	base string
	pep  string // bearer token of the todo-backend PEP
}

// post sends body to the pdp's path as the PEP and decodes the JSON answer into out.
func (p *authzenPDP) post(t *testing.T, path string, body any, out any) int {
	t.Helper()
	return postJSON(t, p.base+path, "Bearer "+p.pep, body, out)
}

func postJSON(t *testing.T, url, authorization string, body, out any) int {
	t.Helper()
	b, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil {
		require.NoError(t, json.Unmarshal(raw, out), "body %s", raw)
	}
	return resp.StatusCode
}

// todoWorld provisions the interop Todo scenario as tenant "todo" and returns what a pdp
// needs to serve it.
type todoWorld struct {
	w    *testenv.World
	idp  *authntest.Issuer
	pep  string
	exec func(sql string)
}

func newTodoWorld(t *testing.T) *todoWorld {
	ctx := context.Background()
	w := testenv.New(t, "daemon")
	primary := w.AddRegion(t, "us-east-1")
	_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "todo", Region: "us-east-1", Realm: "todo-realm"})
	require.NoError(t, err)
	db := w.Connect(t, primary, "")
	sql, err := os.ReadFile(filepath.Join(interopDir, "todo", "tenant.sql"))
	require.NoError(t, err)
	_, err = db.Exec(ctx, "BEGIN; SET LOCAL search_path TO t_todo;\n"+string(sql)+"\nCOMMIT;")
	require.NoError(t, err)

	idp := authntest.NewIssuer()
	t.Cleanup(idp.Close)
	for _, realm := range []string{"todo-realm", "platform"} {
		_, err := idp.AddRealm(realm, "RS256")
		require.NoError(t, err)
	}
	pep, err := idp.Mint("platform", map[string]any{"sub": "service-account-todo-backend", "azp": "todo-backend", "aud": "neoauthz"})
	require.NoError(t, err)
	return &todoWorld{w: w, idp: idp, pep: pep, exec: func(sql string) {
		_, err := db.Exec(ctx, sql)
		require.NoError(t, err)
	}}
}

// start runs a pdp over the world with the given AuthZEN file and the gateway's route table.
func (tw *todoWorld) start(t *testing.T, authzenFile string) *authzenPDP {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := daemon.DefaultConfig()
	cfg.AdminURL = tw.w.AdminURL
	cfg.RedisURL = redistest.URL(t)
	cfg.TrustedIssuers = []string{tw.idp.URL()}
	cfg.Audiences = []string{"neoauthz"}
	cfg.Server.RouteTablePath = filepath.Join(interopDir, "gateway", "routes.json")
	cfg.Server.AuthZENConfigPath = filepath.Join(interopDir, "todo", authzenFile)
	require.NoError(t, cfg.Validate())
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- daemon.Serve(ctx, cfg, slog.New(slog.DiscardHandler), grpcLis, httpLis) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Error("the pdp did not shut down")
		}
	})
	base := "http://" + httpLis.Addr().String()
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 15*time.Second, 20*time.Millisecond, "the pdp never became healthy")
	return &authzenPDP{base: base, pep: tw.pep}
}

// interopFile is the shape of the interop decision files.
type interopFile struct {
	Decisions   []interopCase `json:"decisions"`   // decisions.json
	Evaluation  []interopCase `json:"evaluation"`  // later files
	Evaluations []interopCase `json:"evaluations"` // later files
}

type interopCase struct {
	Request  map[string]any  `json:"request"`
	Expected json.RawMessage `json:"expected"`
}

func loadInterop(t *testing.T, parts ...string) interopFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{interopDir}, parts...)...))
	require.NoError(t, err)
	var f interopFile
	require.NoError(t, json.Unmarshal(b, &f))
	return f
}

type decisionOut struct {
	Decision *bool `json:"decision"`
	Context  struct {
		Reason     string `json:"reason"`
		DecisionID string `json:"decision_id"`
		Version    uint64 `json:"version"`
		Error      *struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"context"`
}

type evaluationsOut struct {
	Evaluations []decisionOut `json:"evaluations"`
}

// runSingles sends every case to /access/v1/evaluation and, all together, as the items of
// one /access/v1/evaluations request; every decision must be the expected one.
func runSingles(t *testing.T, pdp *authzenPDP, prefix string, cases []interopCase) {
	t.Helper()
	require.NotEmpty(t, cases)
	items := make([]map[string]any, len(cases))
	for i, c := range cases {
		var want bool
		require.NoError(t, json.Unmarshal(c.Expected, &want))
		var got decisionOut
		code := pdp.post(t, prefix+"/access/v1/evaluation", c.Request, &got)
		require.Equal(t, http.StatusOK, code, "case %d: %v", i, c.Request)
		require.NotNil(t, got.Decision, "case %d", i)
		assert.Equal(t, want, *got.Decision, "case %d: %v: got %v (reason %s), want %v", i, c.Request, *got.Decision, got.Context.Reason, want)
		assert.NotEmpty(t, got.Context.DecisionID, "case %d", i)
		assert.NotEmpty(t, got.Context.Reason, "case %d", i)
		items[i] = c.Request
	}
	var batch evaluationsOut
	require.Equal(t, http.StatusOK, pdp.post(t, prefix+"/access/v1/evaluations", map[string]any{"evaluations": items}, &batch))
	require.Len(t, batch.Evaluations, len(cases))
	for i, c := range cases {
		var want bool
		require.NoError(t, json.Unmarshal(c.Expected, &want))
		require.NotNil(t, batch.Evaluations[i].Decision)
		assert.Equal(t, want, *batch.Evaluations[i].Decision, "evaluations[%d]: %v", i, c.Request)
	}
}

// TestAuthZENInterop runs the AuthZEN interop Todo and API-gateway scenarios against a real
// pdp (PostgreSQL, Redis, identity): every expected decision must come out.
func TestAuthZENInterop(t *testing.T) {
	tw := newTodoWorld(t)
	pdp := tw.start(t, "authzen.json")

	t.Run("todo 1.0 evaluation and evaluations", func(t *testing.T) {
		f := loadInterop(t, "todo", "decisions-authorization-api-1_0-02.json")
		require.Len(t, f.Evaluation, 40)
		runSingles(t, pdp, "", f.Evaluation)
		runSingles(t, pdp, "/tenants/todo", f.Evaluation)
		require.NotEmpty(t, f.Evaluations)
		for i, c := range f.Evaluations {
			var want []struct {
				Decision bool `json:"decision"`
			}
			require.NoError(t, json.Unmarshal(c.Expected, &want))
			var got evaluationsOut
			require.Equal(t, http.StatusOK, pdp.post(t, "/access/v1/evaluations", c.Request, &got))
			require.Len(t, got.Evaluations, len(want), "evaluations case %d", i)
			for j := range want {
				assert.Equal(t, want[j].Decision, *got.Evaluations[j].Decision, "evaluations case %d item %d", i, j)
			}
		}
	})

	t.Run("api gateway through the route table", func(t *testing.T) {
		f := loadInterop(t, "gateway", "decisions.json")
		require.Len(t, f.Evaluation, 25)
		runSingles(t, pdp, "", f.Evaluation)
	})

	t.Run("todo decisions.json with subjects named by email", func(t *testing.T) {
		f := loadInterop(t, "todo", "decisions.json")
		require.Len(t, f.Decisions, 40)
		runSingles(t, tw.start(t, "authzen-email-subjects.json"), "", f.Decisions)
	})
}
