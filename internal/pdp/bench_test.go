package pdp_test

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/pdp"
)

// BenchmarkRevocationStaleness measures commit → deny on two pdp instances over 200
// revocations of mixed kinds (assignment, role permission, explicit deny, user status, tenant
// suspension) while a check load on both instances keeps every core busy. The clock starts
// before the revoking statement is sent; every revocation on every instance is a sample
// (p50, p99, max over all of them, across all b.N iterations). After its first deny each
// instance keeps checking until the round ends: any allow then is counted (allows-after-deny,
// which must be 0).
func BenchmarkRevocationStaleness(b *testing.B) {
	const rounds = 200
	f := newFixture(b)
	ctx := context.Background()
	// alice's permission comes from a role of its own, so each kind of revocation removes it.
	f.exec(b, `DELETE FROM t_acme.user_roles WHERE user_id = (SELECT id FROM t_acme.users WHERE external_id = 'alice')`)
	f.exec(b, `INSERT INTO t_acme.roles (code, name) VALUES ('bench', 'Bench')`)
	f.exec(b, `INSERT INTO t_acme.role_permissions (role_id, permission_id) SELECT r.id, p.id FROM t_acme.roles r, t_acme.permissions p
		WHERE r.code = 'bench' AND p.code = 'users.delete.tenant'`)
	f.exec(b, `INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r
		WHERE u.external_id = 'alice' AND r.code = 'bench'`)
	insts := []*instance{f.start(b, pdp.Config{}, nil), f.start(b, pdp.Config{}, nil)}

	type kind struct {
		name           string
		admin          bool // the statement runs on the admin database
		revoke, regain string
	}
	const alice = `(SELECT id FROM t_acme.users WHERE external_id = 'alice')`
	const perm = `(SELECT id FROM t_acme.permissions WHERE code = 'users.delete.tenant')`
	const bench = `(SELECT id FROM t_acme.roles WHERE code = 'bench')`
	kinds := []kind{
		{name: "assignment", revoke: `DELETE FROM t_acme.user_roles WHERE user_id = ` + alice,
			regain: `INSERT INTO t_acme.user_roles (user_id, role_id) VALUES (` + alice + `, ` + bench + `)`},
		{name: "role permission", revoke: `DELETE FROM t_acme.role_permissions WHERE role_id = ` + bench,
			regain: `INSERT INTO t_acme.role_permissions (role_id, permission_id) VALUES (` + bench + `, ` + perm + `)`},
		{name: "explicit deny", revoke: `INSERT INTO t_acme.user_permissions (user_id, permission_id, is_granted) VALUES (` + alice + `, ` + perm + `, false)`,
			regain: `DELETE FROM t_acme.user_permissions WHERE user_id = ` + alice},
		{name: "user status", revoke: `UPDATE t_acme.users SET status = 'inactive' WHERE external_id = 'alice'`,
			regain: `UPDATE t_acme.users SET status = 'active' WHERE external_id = 'alice'`},
		{name: "tenant suspension", admin: true, revoke: `UPDATE admin.tenants SET status = 'suspended' WHERE slug = 'acme'`,
			regain: `UPDATE admin.tenants SET status = 'active' WHERE slug = 'acme'`},
	}
	exec := func(k kind, sql string) {
		pool := f.db
		if k.admin {
			pool = f.w.Admin
		}
		_, err := pool.Exec(ctx, sql)
		require.NoError(b, err, sql)
	}
	allowedOn := func(in *instance) bool {
		sub, err := in.svc.SubjectFromPrincipal(ctx, "acme", "alice")
		if err != nil {
			return false
		}
		res, err := in.svc.Check(ctx, sub, pdp.Request{Permission: "users.delete.tenant"})
		return err == nil && res.Allowed
	}

	// The load: warm checks of another user on both instances, one goroutine per core, for
	// the whole benchmark.
	loadCtx, stopLoad := context.WithCancel(ctx)
	var loadWG gosync.WaitGroup
	var loadChecks atomic.Int64
	for g := range max(2, runtime.GOMAXPROCS(0)) {
		in := insts[g%len(insts)]
		loadWG.Add(1)
		go func() {
			defer loadWG.Done()
			sub, _ := in.svc.SubjectFromPrincipal(ctx, "acme", "bob")
			for loadCtx.Err() == nil {
				_, _ = in.svc.Check(ctx, sub, pdp.Request{Permission: "users.read.tenant"})
				loadChecks.Add(1)
			}
		}()
	}
	defer func() {
		stopLoad()
		loadWG.Wait()
	}()

	var lat []time.Duration
	var allowsAfterDeny int64
	started := time.Now()
	for b.Loop() {
		for r := range rounds {
			k := kinds[r%len(kinds)]
			for _, in := range insts {
				require.Eventually(b, func() bool { return allowedOn(in) }, 20*time.Second, time.Millisecond,
					"alice never regained the permission (%s)", k.name)
			}
			var start atomic.Int64
			var wg gosync.WaitGroup
			results := make([]time.Duration, len(insts))
			stop := make(chan struct{})
			for i, in := range insts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					denied := false
					for {
						allowed := allowedOn(in)
						switch {
						case !allowed && !denied && start.Load() != 0:
							denied = true
							results[i] = time.Since(time.Unix(0, start.Load()))
						case allowed && denied:
							atomic.AddInt64(&allowsAfterDeny, 1)
						}
						if denied {
							select {
							case <-stop:
								return
							default:
							}
						}
						// The watchers sample; the load goroutines keep the cores busy.
						time.Sleep(50 * time.Microsecond)
					}
				}()
			}
			start.Store(time.Now().UnixNano()) // before the statement is sent
			exec(k, k.revoke)
			// Keep the watchers checking for a while after the slowest first deny, then end the
			// round.
			for {
				done := true
				for i := range results {
					done = done && results[i] != 0
				}
				if done {
					break
				}
				time.Sleep(100 * time.Microsecond)
			}
			time.Sleep(2 * time.Millisecond)
			close(stop)
			wg.Wait()
			lat = append(lat, results...)
			exec(k, k.regain)
		}
	}
	elapsed := time.Since(started)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	b.ReportMetric(float64(p(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(allowsAfterDeny), "allows-after-deny")
	b.ReportMetric(float64(loadChecks.Load())/elapsed.Seconds(), "load-checks/s")
	fmt.Printf("revocation staleness over %d samples (%d revocations × %d instances, mixed kinds, under load): p50 %s, p99 %s, max %s, allows after deny %d\n",
		len(lat), len(lat)/len(insts), len(insts), p(0.5), p(0.99), lat[len(lat)-1], allowsAfterDeny)
	if allowsAfterDeny != 0 {
		b.Errorf("got %d allows after a deny, want 0", allowsAfterDeny)
	}
}

// BenchmarkNotificationBurst measures check throughput on one instance while a single
// transaction sends 10,000 notifications (one per user), against the same duration without.
func BenchmarkNotificationBurst(b *testing.B) {
	f := newFixture(b)
	in := f.start(b, pdp.Config{}, nil)
	ctx := context.Background()
	f.exec(b, `INSERT INTO t_acme.users (external_id) SELECT 'burst-' || n FROM generate_series(1, 10000) n`)
	in.waitFloor(b, f.tenant.ID, f.version(b))
	sub, err := in.svc.SubjectFromPrincipal(ctx, "acme", "alice")
	require.NoError(b, err)

	measure := func(window time.Duration, during func()) float64 {
		var n atomic.Int64
		stop := make(chan struct{})
		var wg gosync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := in.svc.Check(ctx, sub, pdp.Request{Permission: "users.read.tenant"}); err == nil {
						n.Add(1)
					}
				}
			}()
		}
		start := time.Now()
		if during != nil {
			during()
		}
		time.Sleep(window - time.Since(start)) // at least the window; the burst may take longer
		close(stop)
		wg.Wait()
		// Checks over the time they really ran, not the nominal window.
		return float64(n.Load()) / time.Since(start).Seconds()
	}
	for range b.N {
		base := measure(time.Second, nil)
		burst := measure(time.Second, func() {
			f.exec(b, `UPDATE t_acme.users SET status = status WHERE external_id LIKE 'burst-%'`)
		})
		in.waitFloor(b, f.tenant.ID, f.version(b))
		b.ReportMetric(base, "checks/s-quiet")
		b.ReportMetric(burst, "checks/s-burst")
		fmt.Printf("check throughput: %.0f/s quiet, %.0f/s during a burst of 10,000 notifications (%.0f%%)\n", base, burst, 100*burst/base)
	}
}

// benchUsers adds n users holding the member role and one team-restricted manager role.
func benchUsers(b *testing.B, f *fixture, n int) []string {
	b.Helper()
	f.exec(b, `INSERT INTO t_acme.users (external_id) SELECT 'u' || g FROM generate_series(1, $1) g`, n)
	f.exec(b, `INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r
		WHERE u.external_id LIKE 'u%' AND r.code = 'member'`)
	f.exec(b, `INSERT INTO t_acme.user_roles (user_id, role_id, team_id) SELECT u.id, r.id, t.id FROM t_acme.users u, t_acme.roles r, t_acme.teams t
		WHERE u.external_id LIKE 'u%' AND r.code = 'manager' AND t.slug = 'eng'`)
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("u%d", i+1)
	}
	return users
}

func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
}

// BenchmarkCheckWarm is a Check answered from the in-process cache (the pdp's hot path,
// without transport).
func BenchmarkCheckWarm(b *testing.B) {
	f := newFixture(b)
	in := f.start(b, pdp.Config{}, nil)
	ctx := context.Background()
	sub, err := in.svc.SubjectFromPrincipal(ctx, "acme", "alice")
	require.NoError(b, err)
	benchWarm(b, in, sub)
}

// benchWarm measures warm checks of sub on in, after one check that fills the caches.
func benchWarm(b *testing.B, in *instance, sub pdp.Subject) {
	ctx := context.Background()
	req := pdp.Request{Permission: "users.read.tenant"}
	_, err := in.svc.Check(ctx, sub, req)
	require.NoError(b, err)
	in.svc.WaitUserSync()
	in.svc.WaitIdle()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := in.svc.Check(ctx, sub, req); err != nil {
			b.Fatal(err)
		}
	}
}

// tierServed fails b unless every one of n checks on in was answered by the tier want,
// reading in's cache metrics before (the values passed) and after.
func tierServed(b *testing.B, in *instance, n int, want tier, l1, l2, loads float64) {
	b.Helper()
	l1b, l2b, loadsb := in.tierCounts(b)
	got := map[tier]float64{tierL1: l1b - l1, tierL2: l2b - l2, tierLoad: loadsb - loads}
	for tr, c := range got {
		expected := 0.0
		if tr == want {
			expected = float64(n)
		}
		if c != expected {
			b.Fatalf("tier %s answered %.0f of %d checks, want %.0f (all from %s)", tr, c, n, expected, want)
		}
	}
}

// benchTier measures checks of users, round-robin, on one instance already started, and
// asserts that every one was answered by the tier want.
func benchTier(b *testing.B, in *instance, users []string, want tier) {
	ctx := context.Background()
	subs := make([]pdp.Subject, len(users))
	for i, u := range users {
		var err error
		subs[i], err = in.svc.SubjectFromPrincipal(ctx, "acme", u)
		require.NoError(b, err)
	}
	req := pdp.Request{Permission: "projects.read.team"}
	lat := make([]time.Duration, 0, b.N)
	l1, l2, loads := in.tierCounts(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if _, err := in.svc.Check(ctx, subs[i%len(subs)], req); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	tierServed(b, in, b.N, want, l1, l2, loads)
	p50, p99 := percentiles(lat)
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
}

// BenchmarkCheckL2Hit: instance a fills Redis; instance b, whose L1 keeps nothing (a 1 ns
// lifetime), is measured: every check misses L1 and is answered from Redis.
func BenchmarkCheckL2Hit(b *testing.B) {
	f := newFixture(b)
	users := benchUsers(b, f, 2000)
	a := f.start(b, pdp.Config{}, nil)
	for _, u := range users {
		a.check(b, "acme", u, "projects.read.team")
	}
	a.svc.WaitIdle()
	in := f.start(b, pdp.Config{Cache: cache.Options{L1TTL: time.Nanosecond}}, nil)
	benchTier(b, in, users, tierL2)
}

// BenchmarkCheckMiss: nothing cached anywhere — an L1 that keeps nothing and Redis entries that
// are gone (1 ms) before a user comes round again: Redis miss, load from PostgreSQL, compile,
// decide, write back.
func BenchmarkCheckMiss(b *testing.B) {
	f := newFixture(b)
	users := benchUsers(b, f, 2000)
	in := f.start(b, pdp.Config{Cache: cache.Options{L1TTL: time.Nanosecond, L2TTL: time.Millisecond}}, nil)
	benchTier(b, in, users, tierLoad)
}

// BenchmarkCheckWarmUserSync is BenchmarkCheckWarm for a tenant with user sync on and a token
// subject: each warm check also compares the token's profile claims with the ones last synced.
func BenchmarkCheckWarmUserSync(b *testing.B) {
	f := newFixture(b)
	in := f.start(b, pdp.Config{}, nil)
	f.setUserSync(b, true, nil, in)
	benchWarm(b, in, f.tokenSubject("alice", "alice@example.com", "alice"))
}
