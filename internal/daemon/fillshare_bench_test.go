package daemon_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/loadgen"
	"github.com/neofast/neoauthz/internal/pdptest"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/redistest"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// BenchmarkFillShare measures how many permission-set fills reach PostgreSQL when several pdps
// share Redis and load through one PgBouncer: every user is checked on every pdp (cold start),
// then again after every fifth user's roles changed, three times (each change is one refill
// per pdp). "together": a user's checks on the pdps arrive at the same moment (a burst fanned
// out to every service); "spread": the pdps see the users one pdp after the other (a user's
// requests reach the services at different times); "burst": as together, four checks of the
// user on each pdp at once (one pdp's concurrent misses share one fill). Run it once:
// `go test -run '^$' -bench FillShare -benchtime=1x ./internal/daemon/`.
func BenchmarkFillShare(b *testing.B) {
	b.Run("together", func(b *testing.B) { fillShare(b, false, 1) })
	b.Run("spread", func(b *testing.B) { fillShare(b, true, 1) })
	b.Run("burst", func(b *testing.B) { fillShare(b, false, 4) })
}

func fillShare(b *testing.B, spread bool, copies int) {
	const pdps, users, workers, rounds = 4, 200, 16, 3
	ctx := context.Background()
	w := testenv.New(b, "daemon")
	primary := w.AddRegion(b, "us-east-1")
	_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme-realm"})
	require.NoError(b, err)
	db := w.Connect(b, primary, "")
	_, err = db.Exec(ctx, fmt.Sprintf(`INSERT INTO t_acme.users (external_id) SELECT 'u' || g FROM generate_series(1, %d) g;
		INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r
		WHERE r.code = (ARRAY['viewer', 'admin'])[1 + substr(u.external_id, 2)::int %% 2]`, users))
	require.NoError(b, err)
	idp := newIssuer(b, "acme-realm", "platform")
	tokens := make([]string, users)
	for i := range tokens {
		tokens[i], err = idp.Mint("acme-realm", map[string]any{"sub": fmt.Sprintf("u%d", i+1), "typ": "Bearer", "aud": "neoauthz"})
		require.NoError(b, err)
	}
	bouncer := pgtest.StartPgBouncer(b, pgtest.PgBouncerOptions{PoolSize: 2})
	redisURL := redistest.URL(b)
	var started []*pdptest.PDP
	for range pdps {
		cfg := daemon.DefaultConfig()
		cfg.AdminURL = w.AdminURL
		cfg.AdminPoolerURL = bouncer.URL(w.Admin.Config().ConnConfig.Database)
		cfg.DBPoolers = pgstore.Poolers{primary.Name: bouncer.Addr()}
		cfg.DBMaxConns = 2
		cfg.RedisURL = redisURL
		cfg.TrustedIssuers = []string{idp.URL()}
		cfg.Audiences = []string{"neoauthz"}
		cfg.DecisionLog = false
		started = append(started, pdptest.Start(b, cfg))
	}

	checkAll := func() {
		type job struct{ p, u int }
		jobs := make(chan job)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for j := range jobs {
					api := authzv1.NewAuthorizationServiceClient(started[j.p].Conn)
					_, err := api.Check(ctx, &authzv1.CheckRequest{Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: tokens[j.u]}},
						Permission: "users.read.tenant"})
					if err != nil {
						b.Error(err)
					}
				}
			})
		}
		if spread {
			for p := range pdps {
				for _, u := range rand.Perm(users) {
					jobs <- job{p, u}
				}
			}
		} else {
			for _, u := range rand.Perm(users) {
				for p := range pdps {
					for range copies {
						jobs <- job{p, u}
					}
				}
			}
		}
		close(jobs)
		wg.Wait()
	}
	b.ResetTimer()
	for b.Loop() {
		checkAll()
		for r := range rounds {
			_, err = db.Exec(ctx, `UPDATE t_acme.user_roles ur SET role_id = (SELECT id FROM t_acme.roles WHERE code = 'viewer')
				FROM t_acme.users u WHERE u.id = ur.user_id AND substr(u.external_id, 2)::int % 5 = $1`, r)
			require.NoError(b, err)
			checkAll()
		}
	}
	b.StopTimer()

	var total loadgen.CacheStats
	for _, p := range started {
		st, err := loadgen.ScrapeCache(ctx, p.HTTPAddr)
		require.NoError(b, err)
		total = total.Add(st)
	}
	misses := total.L1Misses
	coalesced := misses - total.L2Hits - total.Loads
	b.Logf("%d pdps, %d users: %0.f checks missed L1; %0.f served by Redis (%.1f%%), %0.f coalesced onto another check's fill in the same pdp (%.1f%%), %0.f loads from PostgreSQL (%.1f%%)",
		pdps, users, misses, total.L2Hits, 100*total.L2Hits/misses, coalesced, 100*coalesced/misses, total.Loads, 100*total.Loads/misses)
	b.ReportMetric(100*total.Loads/misses, "%misses-to-postgres")
	b.ReportMetric(100*total.L2Hits/misses, "%misses-from-redis")
	b.ReportMetric(100*coalesced/misses, "%misses-coalesced")
}
