package admincli

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

func TestDecisionsQueryAndPrune(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "admincli")
	w.AddRegion(t, "us-east-1")
	analytics := w.AddDatabase(t, "us-east-1", "us-analytics", registry.TypeAnalytics)
	run, err := w.Fleet.Apply(ctx, fleet.Plan{Scope: fleet.ScopeAnalytics})
	require.NoError(t, err)
	require.Equal(t, "succeeded", run.Status)
	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme-realm"})
	require.NoError(t, err)
	db := w.Connect(t, analytics, "")
	now := time.Now().UTC()
	for _, d := range []struct {
		id string
		at time.Time
	}{{"recent", now.Add(-time.Hour)}, {"old", now.Add(-60 * 24 * time.Hour)}} {
		_, err := db.Exec(ctx, `INSERT INTO analytics.decision_log (decided_at, decision_id, tenant_id, user_id, permission, allowed, reason, transport)
			VALUES ($1, $2, $3, 'alice', 'reports.read.tenant', false, 'no_permission', 'extauthz')`, d.at, d.id, tn.ID)
		require.NoError(t, err)
	}

	env, out := cliEnv(w, nil)
	require.NoError(t, Run(ctx, []string{"decisions", "query", "--tenant", "acme", "--output", "json"}, env))
	var res struct {
		Decisions []struct {
			DecisionID string `json:"decision_id"`
		}
		Total int
	}
	require.NoError(t, json.Unmarshal([]byte(out.String()), &res))
	assert.Equal(t, 2, res.Total)

	env, out = cliEnv(w, map[string]string{"NEOAUTHZ_DECISION_RETENTION": "720h"})
	require.NoError(t, Run(ctx, []string{"decisions", "prune"}, env))
	assert.Contains(t, out.String(), "us-analytics")

	env, out = cliEnv(w, nil)
	require.NoError(t, Run(ctx, []string{"decisions", "query", "--tenant", "acme", "--user", "alice"}, env))
	assert.Contains(t, out.String(), "recent")
	assert.NotContains(t, out.String(), "old", "pruned: older than 30 days")
	assert.Contains(t, out.String(), "1 of 1")

	assert.ErrorIs(t, Run(ctx, []string{"decisions", "query"}, env), ErrUsage, "--tenant is required")
	assert.ErrorIs(t, Run(ctx, []string{"decisions", "query", "--tenant", "acme", "--from", "yesterday"}, env), ErrUsage)
	assert.ErrorIs(t, Run(ctx, []string{"decisions", "prune", "--retention", "0s"}, env), ErrUsage)
}
