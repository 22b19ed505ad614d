package sync_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/registry"
	authzsync "github.com/neofast/neoauthz/internal/sync"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

// TestManagerListensOnlyToServedRegions: with Config.Regions, the manager listens to the admin
// database and the served regions' databases (including a database-per-tenant tenant's own,
// and one registered while it runs), never to another region's.
func TestManagerListensOnlyToServedRegions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w := testenv.New(t, "sync")
	eu := w.AddRegion(t, "eu-west-1")
	us := w.AddRegion(t, "us-east-1")
	// Database-per-tenant databases are named after the slug, server-wide: unique per run.
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	euOwn, usOwn := tenancy.DatabaseName("euown-"+suffix), tenancy.DatabaseName("usown-"+suffix)
	for _, tc := range []struct{ slug, region, deployment string }{
		{"euown-" + suffix, "eu-west-1", tenancy.DeployDatabase}, {"usown-" + suffix, "us-east-1", tenancy.DeployDatabase},
		{"usschema", "us-east-1", tenancy.DeploySchema},
	} {
		if tc.deployment == tenancy.DeployDatabase {
			t.Cleanup(func() { pgtest.Drop(t, w.Server(), tenancy.DatabaseName(tc.slug)) })
		}
		_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: tc.slug, Region: tc.region, Realm: tc.slug, Deployment: tc.deployment})
		require.NoError(t, err)
	}

	regions, err := registry.ParseRegions("eu-west-1")
	require.NoError(t, err)
	store := pgstore.New(w.Admin, w.Registry, pgstore.Options{Regions: regions})
	floors := &authzsync.Floors{}
	mgr := authzsync.New(authzsync.Config{AdminURL: w.AdminURL, Regions: regions, RegistryInterval: 50 * time.Millisecond},
		floors, w.Admin, w.Registry, store, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; store.Close() })

	listeners := func(database string) int {
		var n int
		require.NoError(t, w.Admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2`,
			database, authzsync.ListenerApplicationName).Scan(&n))
		return n
	}
	up := func(key string) bool {
		_, down := floors.DownSince(key)
		return !down
	}
	for _, key := range []string{authzsync.AdminDatabase, authzsync.DatabaseKey(eu.ID, ""), authzsync.DatabaseKey(eu.ID, euOwn)} {
		require.Eventually(t, func() bool { return up(key) }, 30*time.Second, 10*time.Millisecond, "listener of %s never came up", key)
	}
	assert.Equal(t, 1, listeners(eu.Database))
	assert.Equal(t, 1, listeners(euOwn))

	// A database registered later in the served region is picked up; one in the other is not.
	euLater := w.AddDatabase(t, "eu-west-1", "eu-west-1-second", registry.TypePrimary)
	usLater := w.AddDatabase(t, "us-east-1", "us-east-1-second", registry.TypePrimary)
	require.Eventually(t, func() bool { return up(authzsync.DatabaseKey(euLater.ID, "")) }, 30*time.Second, 10*time.Millisecond)

	for _, db := range []string{us.Database, usOwn, usLater.Database} {
		assert.Zero(t, w.Backends(t, db), "connections to %s", db)
	}
	_, known := floors.DownSince(authzsync.DatabaseKey(us.ID, ""))
	assert.True(t, known, "the US database is never marked up (no listener)")
}
