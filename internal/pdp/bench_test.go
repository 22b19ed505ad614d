package pdp_test

import (
	"context"
	"fmt"
	"sort"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/pdp"
)

// BenchmarkRevocationStaleness runs two pdp instances under check load, commits 200
// revocations, and records for each the time from the commit returning to the first deny on
// each instance.
func BenchmarkRevocationStaleness(b *testing.B) {
	const rounds = 200
	f := newFixture(b)
	insts := []*instance{f.start(b, pdp.Config{}, nil), f.start(b, pdp.Config{}, nil)}
	ctx := context.Background()
	grant := `INSERT INTO t_acme.user_roles (user_id, role_id) SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r WHERE u.external_id = 'alice' AND r.code = 'admin' ON CONFLICT DO NOTHING`
	revoke := `DELETE FROM t_acme.user_roles WHERE user_id = (SELECT id FROM t_acme.users WHERE external_id = 'alice')`

	var lat []time.Duration
	for range b.N {
		lat = lat[:0]
		for range rounds {
			f.exec(b, grant)
			for _, in := range insts {
				in.waitFloor(b, f.tenant.ID, f.version(b))
				require.True(b, in.check(b, "acme", "alice", "users.delete.tenant").Allowed)
			}
			var commit atomic.Int64
			var wg gosync.WaitGroup
			results := make([]time.Duration, len(insts))
			for i, in := range insts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sub, _ := in.svc.SubjectFromPrincipal(ctx, "acme", "alice")
					for {
						res, err := in.svc.Check(ctx, sub, pdp.Request{Permission: "users.delete.tenant"})
						if err == nil && !res.Allowed {
							if c := commit.Load(); c != 0 {
								results[i] = time.Since(time.Unix(0, c))
								return
							}
						}
						// Load, not a busy loop that would starve the listeners of CPU on a
						// small machine; the resolution stays well under a millisecond.
						time.Sleep(50 * time.Microsecond)
					}
				}()
			}
			_, err := f.db.Exec(ctx, revoke)
			require.NoError(b, err)
			commit.Store(time.Now().UnixNano())
			wg.Wait()
			lat = append(lat, results...)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	b.ReportMetric(float64(p(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	fmt.Printf("revocation staleness over %d commits × %d instances: p50 %s, p99 %s, max %s\n",
		rounds, len(insts), p(0.5), p(0.99), lat[len(lat)-1])
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
		time.Sleep(window - time.Since(start))
		close(stop)
		wg.Wait()
		return float64(n.Load()) / window.Seconds()
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
	req := pdp.Request{Permission: "users.read.tenant"}
	_, err = in.svc.Check(ctx, sub, req)
	require.NoError(b, err)
	in.svc.WaitIdle()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := in.svc.Check(ctx, sub, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckL2Hit: instance a fills Redis; instance b, with an empty L1, is measured.
func BenchmarkCheckL2Hit(b *testing.B) {
	f := newFixture(b)
	users := benchUsers(b, f, 2000)
	a := f.start(b, pdp.Config{}, nil)
	ctx := context.Background()
	for _, u := range users {
		a.check(b, "acme", u, "projects.read.team")
	}
	a.svc.WaitIdle()
	lat := make([]time.Duration, 0, len(users))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		in := f.start(b, pdp.Config{}, nil)
		b.StartTimer()
		for _, u := range users {
			sub, _ := in.svc.SubjectFromPrincipal(ctx, "acme", u)
			start := time.Now()
			if _, err := in.svc.Check(ctx, sub, pdp.Request{Permission: "projects.read.team"}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
	}
	p50, p99 := percentiles(lat)
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
}

// BenchmarkCheckMiss: nothing cached anywhere (no Redis entry, empty L1): load from
// PostgreSQL, compile, decide.
func BenchmarkCheckMiss(b *testing.B) {
	f := newFixture(b)
	users := benchUsers(b, f, 2000)
	ctx := context.Background()
	lat := make([]time.Duration, 0, len(users))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f.prefix = fmt.Sprintf("%smiss%d:", f.prefix, i) // a fresh Redis namespace
		in := f.start(b, pdp.Config{}, nil)
		b.StartTimer()
		for _, u := range users {
			sub, _ := in.svc.SubjectFromPrincipal(ctx, "acme", u)
			start := time.Now()
			if _, err := in.svc.Check(ctx, sub, pdp.Request{Permission: "projects.read.team"}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
	}
	p50, p99 := percentiles(lat)
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
}
