package adminapi

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/decisionlog"
	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/registry"
)

func TestDecisionsAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	analytics := e.w.AddDatabase(t, "eu-west-1", "eu-analytics", registry.TypeAnalytics)
	run, err := e.w.Fleet.Apply(ctx, fleet.Plan{Scope: fleet.ScopeAnalytics})
	require.NoError(t, err)
	require.Equal(t, "succeeded", run.Status)
	acme, beta := e.createTenant("acme"), e.createTenant("beta")
	db := e.w.Connect(t, analytics, "")
	at := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for i, d := range []struct {
		id, tenant, user, perm string
		allowed                bool
	}{
		{"d1", acme.ID, "alice", "reports.read.tenant", false},
		{"d2", acme.ID, "alice", "users.read.tenant", true},
		{"d3", acme.ID, "bob", "reports.read.tenant", false},
		{"d4", beta.ID, "carol", "reports.read.tenant", false},
	} {
		_, err := db.Exec(ctx, `INSERT INTO analytics.decision_log (decided_at, decision_id, tenant_id, user_id, permission, allowed, reason, transport)
			VALUES ($1, $2, $3, $4, $5, $6, 'x', 'extauthz')`, at.Add(time.Duration(i)*time.Minute), d.id, d.tenant, d.user, d.perm, d.allowed)
		require.NoError(t, err)
	}
	list := func(token, tenant string, q url.Values) ([]decisionlog.Entry, *resp) {
		r := e.do("GET", "/api/v1/tenants/"+tenant+"/decisions?"+q.Encode(), token, nil)
		var out []decisionlog.Entry
		if r.Status == 200 {
			r.into(&out)
		}
		return out, r
	}
	ids := func(es []decisionlog.Entry) []string {
		out := []string{}
		for _, e := range es {
			out = append(out, e.DecisionID)
		}
		return out
	}

	got, r := list(e.admin, "acme", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	assert.Equal(t, []string{"d3", "d2", "d1"}, ids(got), "the tenant's decisions, newest first")
	assert.EqualValues(t, 3, r.Meta["total"])
	got, _ = list(e.admin, "acme", url.Values{"user": {"alice"}, "allowed": {"false"}})
	assert.Equal(t, []string{"d1"}, ids(got))
	got, _ = list(e.admin, "acme", url.Values{"permission": {"reports.read.tenant"}, "from": {at.Add(time.Minute).Format(time.RFC3339)}})
	assert.Equal(t, []string{"d3"}, ids(got))
	got, r = list(e.admin, "acme", url.Values{"page_size": {"2"}, "page": {"2"}})
	assert.Equal(t, []string{"d1"}, ids(got))
	assert.EqualValues(t, 2, r.Meta["total_pages"])
	_, r = list(e.admin, "acme", url.Values{"allowed": {"maybe"}, "from": {"yesterday"}})
	assert.Equal(t, 422, r.Status)
	assert.Contains(t, r.Error.Details["fields"], "allowed")
	assert.Contains(t, r.Error.Details["fields"], "from")

	r = e.do("GET", "/api/v1/tenants/acme/decisions/d2", e.admin, nil)
	require.Equal(t, 200, r.Status)
	var one decisionlog.Entry
	r.into(&one)
	assert.Equal(t, "alice", one.User)
	assert.True(t, one.Allowed)
	assert.Equal(t, 404, e.do("GET", "/api/v1/tenants/acme/decisions/d4", e.admin, nil).Status, "beta's decision is not acme's")
	assert.Equal(t, 404, e.do("GET", "/api/v1/tenants/acme/decisions/bad%20id", e.admin, nil).Status)

	// A tenant_admin restricted to acme reads acme's decisions only.
	ta := e.platformUser("ta", "tenant_admin@"+acme.ID)
	got, r = list(ta, "acme", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	assert.Len(t, got, 3)
	_, r = list(ta, "beta", nil)
	assert.Equal(t, 403, r.Status, "another tenant's decisions are refused")
	assert.Equal(t, 403, e.do("GET", "/api/v1/tenants/beta/decisions/d4", ta, nil).Status)
	assert.Equal(t, 401, e.do("GET", "/api/v1/tenants/acme/decisions", "", nil).Status)
}
