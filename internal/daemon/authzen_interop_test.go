package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"google.golang.org/grpc"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/pdptest"
	"github.com/neofast/neoauthz/internal/redistest"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// interopDir holds the AuthZEN working group's interop scenarios (see its README.md).
const interopDir = "../../testdata/authzen"

// authzenPDP is a running pdp with the AuthZEN API and a PEP credential for it.
type authzenPDP struct {
	base string
	grpc *grpc.ClientConn // on its gRPC port
	pep  string           // bearer token of the todo-backend PEP
}

// post sends body to the pdp's path as the PEP and decodes the JSON answer into out.
func (p *authzenPDP) post(t testing.TB, path string, body any, out any) int {
	t.Helper()
	return postJSON(t, p.base+path, "Bearer "+p.pep, body, out)
}

func postJSON(t testing.TB, url, authorization string, body, out any) int {
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
	db   *pgxpool.Pool
	idp  *authntest.Issuer
	pep  string
	exec func(sql string)
}

func newTodoWorld(t testing.TB) *todoWorld {
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

	idp := newIssuer(t, "todo-realm", "platform")
	pep, err := idp.Mint("platform", map[string]any{"sub": "service-account-todo-backend", "azp": "todo-backend", "aud": "neoauthz"})
	require.NoError(t, err)
	return &todoWorld{w: w, db: db, idp: idp, pep: pep, exec: func(sql string) {
		_, err := db.Exec(ctx, sql)
		require.NoError(t, err)
	}}
}

// start runs a pdp over the world with the given AuthZEN file and the gateway's route table.
func (tw *todoWorld) start(t testing.TB, authzenFile string) *authzenPDP {
	cfg := daemon.DefaultConfig()
	cfg.AdminURL = tw.w.AdminURL
	cfg.RedisURL = redistest.URL(t)
	cfg.TrustedIssuers = []string{tw.idp.URL()}
	cfg.Audiences = []string{"neoauthz"}
	cfg.Server.RouteTablePath = filepath.Join(interopDir, "gateway", "routes.json")
	cfg.Server.AuthZENConfigPath = filepath.Join(interopDir, "todo", authzenFile)
	p := pdptest.Start(t, cfg)
	return &authzenPDP{base: "http://" + p.HTTPAddr, grpc: p.Conn, pep: tw.pep}
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

// TestAuthZENSearchAndTrust covers the rest of the AuthZEN API over the Todo tenant: search,
// metadata, the evaluations semantics, who may ask, subject tokens and freshness.
func TestAuthZENSearchAndTrust(t *testing.T) {
	tw := newTodoWorld(t)
	// The shipped file plus subject tokens, in a file of the test's own.
	b, err := os.ReadFile(filepath.Join(interopDir, "todo", "authzen.json"))
	require.NoError(t, err)
	var file map[string]any
	require.NoError(t, json.Unmarshal(b, &file))
	file["subject_tokens"] = true
	file["resources"].(map[string]any)["team"] = map[string]any{"team": "team_id", "search": "teams"}
	file["actions"] = append(file["actions"].([]any),
		map[string]any{"name": "can_update_todos_in", "resource_type": "team", "permission": "todos.update"})
	b, err = json.Marshal(file)
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "authzen.json"), b, 0o600))
	abs, err := filepath.Abs(filepath.Join(interopDir, "todo"))
	require.NoError(t, err)
	rel, err := filepath.Rel(abs, filepath.Join(dir, "authzen.json"))
	require.NoError(t, err)
	pdp := tw.start(t, rel)
	// Two teams; Beth may update the todos of team red.
	tw.exec(`INSERT INTO t_todo.teams (slug, name) VALUES ('red', 'Red'), ('blue', 'Blue');
		INSERT INTO t_todo.permissions (code) VALUES ('todos.update.team');
		INSERT INTO t_todo.user_permissions (user_id, permission_id, team_id, is_granted)
		SELECT u.id, p.id, t.id, true FROM t_todo.users u, t_todo.permissions p, t_todo.teams t
		 WHERE u.email = 'beth@the-smiths.com' AND p.code = 'todos.update.team' AND t.slug = 'red'`)
	teamID := func(slug string) string {
		var id string
		require.NoError(t, tw.db.QueryRow(context.Background(), `SELECT id::text FROM t_todo.teams WHERE slug = $1`, slug).Scan(&id))
		return id
	}
	red, blue := teamID("red"), teamID("blue")

	const (
		rick  = "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"
		morty = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"
		beth  = "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"
	)
	user := func(id string) map[string]any { return map[string]any{"type": "user", "id": id} }
	mortysTodo := map[string]any{"type": "todo", "id": "t1", "properties": map[string]any{"ownerID": "morty@the-citadel.com"}}
	update := map[string]any{"name": "can_update_todo"}

	t.Run("subject search, paginated", func(t *testing.T) {
		req := map[string]any{"subject": map[string]any{"type": "user"}, "action": update, "resource": mortysTodo}
		var res struct {
			Page struct {
				NextToken string `json:"next_token"`
				Count     int    `json:"count"`
			} `json:"page"`
			Results []struct{ Type, ID string } `json:"results"`
		}
		require.Equal(t, http.StatusOK, pdp.post(t, "/access/v1/search/subject", req, &res))
		var all []string
		for _, r := range res.Results {
			assert.Equal(t, "user", r.Type)
			all = append(all, r.ID)
		}
		assert.ElementsMatch(t, []string{rick, morty}, all, "evil_genius Rick and owner Morty")
		assert.Empty(t, res.Page.NextToken)

		// One candidate per page: the same users, page after page, until next_token is "".
		var paged []string
		req["page"] = map[string]any{"limit": 1}
		for i := 0; i < 10; i++ {
			res.Results, res.Page.NextToken = nil, ""
			require.Equal(t, http.StatusOK, pdp.post(t, "/access/v1/search/subject", req, &res))
			for _, r := range res.Results {
				paged = append(paged, r.ID)
			}
			if res.Page.NextToken == "" {
				break
			}
			req["page"] = map[string]any{"limit": 1, "token": res.Page.NextToken}
		}
		assert.ElementsMatch(t, all, paged)

		// A token is only good for the query it came from.
		req["page"] = map[string]any{"limit": 1}
		require.Equal(t, http.StatusOK, pdp.post(t, "/access/v1/search/subject", req, &res))
		require.NotEmpty(t, res.Page.NextToken)
		req["page"] = map[string]any{"limit": 1, "token": res.Page.NextToken}
		req["action"] = map[string]any{"name": "can_delete_todo"}
		assert.Equal(t, http.StatusBadRequest, pdp.post(t, "/access/v1/search/subject", req, nil))
	})

	t.Run("action search", func(t *testing.T) {
		var res struct {
			Results []struct{ Name string } `json:"results"`
		}
		names := func(subject string) []string {
			res.Results = nil
			require.Equal(t, http.StatusOK, pdp.post(t, "/access/v1/search/action",
				map[string]any{"subject": user(subject), "resource": mortysTodo}, &res))
			var out []string
			for _, r := range res.Results {
				out = append(out, r.Name)
			}
			return out
		}
		assert.ElementsMatch(t, []string{"can_read_user", "can_read_todos", "can_create_todo", "can_update_todo", "can_delete_todo"}, names(morty))
		assert.ElementsMatch(t, []string{"can_read_user", "can_read_todos"}, names(beth))
	})

	t.Run("resource search: the teams a subject may act on", func(t *testing.T) {
		search := func(subject string, page map[string]any) ([]string, string) {
			req := map[string]any{"subject": user(subject), "action": map[string]any{"name": "can_update_todos_in"},
				"resource": map[string]any{"type": "team"}}
			if page != nil {
				req["page"] = page
			}
			var res struct {
				Page struct {
					NextToken string `json:"next_token"`
				} `json:"page"`
				Results []struct{ Type, ID string } `json:"results"`
			}
			require.Equal(t, http.StatusOK, pdp.post(t, "/access/v1/search/resource", req, &res))
			var ids []string
			for _, r := range res.Results {
				assert.Equal(t, "team", r.Type)
				ids = append(ids, r.ID)
			}
			return ids, res.Page.NextToken
		}
		got, _ := search(beth, nil)
		assert.Equal(t, []string{red}, got, "Beth's grant is restricted to team red")
		got, _ = search(morty, nil)
		assert.Empty(t, got, "own scope reaches no team")
		var paged []string
		page := map[string]any{"limit": 1}
		for range 5 {
			ids, next := search(rick, page)
			paged = append(paged, ids...)
			if next == "" {
				break
			}
			page = map[string]any{"limit": 1, "token": next}
		}
		assert.ElementsMatch(t, []string{red, blue}, paged, "Rick updates every todo")

		// Other resource types are not stored: refused, not answered with an empty list.
		assert.Equal(t, http.StatusBadRequest, pdp.post(t, "/access/v1/search/resource",
			map[string]any{"subject": user(rick), "action": update, "resource": map[string]any{"type": "todo"}}, nil))
	})

	t.Run("metadata names the endpoints served", func(t *testing.T) {
		for path, base := range map[string]string{
			"/.well-known/authzen-configuration":              pdp.base,
			"/.well-known/authzen-configuration/tenants/todo": pdp.base + "/tenants/todo",
		} {
			resp, err := http.Get(pdp.base + path)
			require.NoError(t, err)
			var md map[string]string
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&md))
			_ = resp.Body.Close()
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			assert.Equal(t, map[string]string{
				"policy_decision_point":       base,
				"access_evaluation_endpoint":  base + "/access/v1/evaluation",
				"access_evaluations_endpoint": base + "/access/v1/evaluations",
				"search_subject_endpoint":     base + "/access/v1/search/subject",
				"search_resource_endpoint":    base + "/access/v1/search/resource",
				"search_action_endpoint":      base + "/access/v1/search/action",
			}, md)
			// Every endpoint it names is served (a POST without a body is a 400, not a 404).
			for name, u := range md {
				if name == "policy_decision_point" {
					continue
				}
				assert.Equal(t, http.StatusBadRequest, postJSON(t, u, "Bearer "+pdp.pep, nil, nil), name)
			}
		}
	})

	t.Run("evaluations semantics", func(t *testing.T) {
		items := []map[string]any{
			{"subject": user(beth)},  // deny
			{"subject": user(morty)}, // permit
			{"subject": user(beth)},  // deny
		}
		for semantic, want := range map[string][]bool{
			"":                       {false, true, false},
			"execute_all":            {false, true, false},
			"deny_on_first_deny":     {false},
			"permit_on_first_permit": {false, true},
		} {
			req := map[string]any{"action": update, "resource": mortysTodo, "evaluations": items}
			if semantic != "" {
				req["options"] = map[string]any{"evaluations_semantic": semantic}
			}
			var got evaluationsOut
			require.Equal(t, http.StatusOK, pdp.post(t, "/access/v1/evaluations", req, &got), semantic)
			var decisions []bool
			for _, d := range got.Evaluations {
				decisions = append(decisions, *d.Decision)
			}
			assert.Equal(t, want, decisions, semantic)
		}
	})

	t.Run("who may ask", func(t *testing.T) {
		req := map[string]any{"subject": user(morty), "action": update, "resource": mortysTodo}
		url := pdp.base + "/access/v1/evaluation"
		var out struct {
			Decision *bool `json:"decision"`
		}
		// No credential and no subject token: 401. A user's own token is no PEP credential: 403.
		assert.Equal(t, http.StatusUnauthorized, postJSON(t, url, "", req, &out))
		assert.Nil(t, out.Decision, "an error is never a decision")
		mortyTok, err := tw.idp.Mint("todo-realm", map[string]any{"sub": morty, "aud": "neoauthz"})
		require.NoError(t, err)
		assert.Equal(t, http.StatusForbidden, postJSON(t, url, "Bearer "+mortyTok, req, nil))
		assert.Equal(t, http.StatusUnauthorized, postJSON(t, url, "Bearer not-a-token", req, nil))
		// A PEP bound to the todo tenant may not ask about another one.
		assert.Equal(t, http.StatusForbidden, pdp.post(t, "/tenants/other/access/v1/evaluation", req, nil))

		// Without a PEP credential, a subject token lets a caller ask about its bearer only.
		var d decisionOut
		withTok := func(sub string, tok string) map[string]any {
			return map[string]any{"subject": map[string]any{"type": "user", "id": sub, "properties": map[string]any{"token": tok}},
				"action": update, "resource": mortysTodo}
		}
		require.Equal(t, http.StatusOK, postJSON(t, url, "", withTok(morty, mortyTok), &d))
		assert.True(t, *d.Decision)
		require.Equal(t, http.StatusOK, postJSON(t, url, "", withTok(rick, mortyTok), &d))
		assert.False(t, *d.Decision)
		assert.Equal(t, "subject_token_mismatch", d.Context.Reason)
		require.Equal(t, http.StatusOK, postJSON(t, url, "", withTok(morty, "forged"), &d))
		assert.False(t, *d.Decision)
		assert.Equal(t, "unauthenticated", d.Context.Reason)
	})

	t.Run("AuthZEN decisions are counted like every other", func(t *testing.T) {
		resp, err := http.Get(pdp.base + "/metrics")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.NoError(t, err)
		for _, want := range []string{`permission_check_duration_seconds_count{api="authzen"}`,
			`permission_checks_total{permission="todos.update",result="allowed",tenant="todo"}`,
			`db_query_duration_seconds_count{query="user_by_email"}`, `db_query_duration_seconds_count{query="subject_candidates"}`} {
			assert.Contains(t, string(body), want)
		}
	})

	t.Run("a revocation reaches AuthZEN at once", func(t *testing.T) {
		req := map[string]any{"subject": user(morty), "action": update, "resource": mortysTodo}
		var d decisionOut
		require.Equal(t, http.StatusOK, pdp.post(t, "/access/v1/evaluation", req, &d))
		require.True(t, *d.Decision)
		tw.exec(`DELETE FROM t_todo.user_roles WHERE user_id = (SELECT id FROM t_todo.users WHERE email = 'morty@the-citadel.com')`)
		require.Eventually(t, func() bool {
			pdp.post(t, "/access/v1/evaluation", req, &d)
			return !*d.Decision
		}, 10*time.Second, 5*time.Millisecond, "the revoked role still allows")
		assert.Equal(t, "no_permission", d.Context.Reason)
	})
}
