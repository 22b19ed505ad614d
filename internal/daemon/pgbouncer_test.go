package daemon_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// TestPDPThroughPgBouncer runs one pdp loading through a PgBouncer in transaction pooling mode
// (admin database and tenant database, -admin-database-pooler-url and -db-poolers) beside one
// loading directly: they decide alike, and a revocation reaches both through their direct
// LISTEN, so going through the pooler changes nothing about freshness.
func TestPDPThroughPgBouncer(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "daemon")
	primary := w.AddRegion(t, "us-east-1")
	_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme-realm"})
	require.NoError(t, err)
	db := w.Connect(t, primary, "")
	_, err = db.Exec(ctx, `INSERT INTO t_acme.users (external_id) VALUES ('alice'), ('bob'), ('carol');
		INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r
		WHERE (u.external_id = 'alice' AND r.code = 'admin') OR (u.external_id = 'carol' AND r.code = 'viewer')`)
	require.NoError(t, err)

	idp := newIssuer(t, "acme-realm", "platform")
	b := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{PoolSize: 2,
		DatabaseParams: "connect_query='SET default_transaction_read_only = on'"})
	noRedis := func(c *daemon.Config) { c.RedisURL = "" } // every L1 miss is a load
	direct := startPDP(t, w, idp, `{"routes": [{"method": "GET", "path": "/healthz", "public": true}]}`, noRedis)
	pooled := startPDP(t, w, idp, `{"routes": [{"method": "GET", "path": "/healthz", "public": true}]}`, func(c *daemon.Config) {
		noRedis(c)
		c.AdminPoolerURL = b.URL(w.Admin.Config().ConnConfig.Database)
		c.DBPoolers = pgstore.Poolers{primary.Name: b.Addr()}
		c.DBMaxConns = 2
	})

	tokens := map[string]string{}
	for _, sub := range []string{"alice", "bob", "carol", "nobody"} {
		tok, err := idp.Mint("acme-realm", map[string]any{"sub": sub, "typ": "Bearer", "aud": "neoauthz"})
		require.NoError(t, err)
		tokens[sub] = tok
	}
	perms := []string{"users.read.tenant", "users.delete.tenant", "documents.read.own", "roles.assign.tenant"}
	decide := func(p *pdpProc, sub, perm string) (bool, authzv1.Reason) {
		res, err := authzv1.NewAuthorizationServiceClient(p.conn).Check(ctx, &authzv1.CheckRequest{
			Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: tokens[sub]}}, Permission: perm})
		require.NoError(t, err)
		return res.GetAllowed(), res.GetReason()
	}
	var allowed int
	for sub := range tokens {
		for _, perm := range perms {
			wantAllowed, wantReason := decide(direct, sub, perm)
			gotAllowed, gotReason := decide(pooled, sub, perm)
			assert.Equal(t, wantAllowed, gotAllowed, "%s %s: allowed through the pooler: got %v, want %v", sub, perm, gotAllowed, wantAllowed)
			assert.Equal(t, wantReason, gotReason, "%s %s: reason", sub, perm)
			if gotAllowed {
				allowed++
			}
		}
	}
	require.Positive(t, allowed, "the comparison needs allowed decisions")
	clients, err := b.ClientConnections(ctx)
	require.NoError(t, err)
	assert.Positive(t, clients, "the pooled pdp's connections are PgBouncer's clients")

	_, err = db.Exec(ctx, `DELETE FROM t_acme.user_roles u USING t_acme.users x WHERE x.id = u.user_id AND x.external_id = 'alice'`)
	require.NoError(t, err)
	for _, p := range []*pdpProc{direct, pooled} {
		require.Eventually(t, func() bool { ok, _ := decide(p, "alice", "users.delete.tenant"); return !ok },
			20*time.Second, 5*time.Millisecond, "alice still allowed after the revocation")
	}
	ok, _ := decide(pooled, "carol", "users.read.tenant")
	want, _ := decide(direct, "carol", "users.read.tenant")
	assert.Equal(t, want, ok, "carol, untouched by the revocation")
}
