package pdp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/decision"
)

// BenchmarkWarmUserMemory measures the live heap a warm user costs in the pdp's L1: every user
// is loaded once through the cache exactly as Service.get does (a fresh Input per load, as
// decoded from PostgreSQL), then the heap in use after a collection is compared with the
// empty cache's. "shared" interns compiled parts; "unshared" compiles each user's own, as the
// pdp did before. Run it with -benchtime=1x: one iteration warms every user.
//
//	heap-B/user            live heap per warm user, shared parts included
//	heap-objs/user         live heap objects per warm user, shared parts included
//	beyond-shared-B/user   live heap per further warm user whose part is already in memory: a
//	                       twin of every user (same facts, another id) is warmed after them
//	parts                  distinct compiled parts (a set has one per role assignment and one
//	                       for its direct grants and denies)
//	cost-B/user            what the byte budget counts per user (entry cost + cache overhead,
//	                       plus the shared parts' estimated size once)
//	est-shared-B/user      the estimated size of the parts, lists of parts and memberships
//	                       (Set.Size's shared figure, each counted once), per user
func BenchmarkWarmUserMemory(b *testing.B) {
	for _, ds := range []struct {
		name  string
		users int
		gen   func(i int) decision.Input
	}{
		{"loadgen-50x1000", 50 * 1000, loadgenShape},
		{"100k-users-200-roles", 100_000, randomRoles(100_000)},
	} {
		for _, shared := range []bool{true, false} {
			name := ds.name + "/unshared"
			if shared {
				name = ds.name + "/shared"
			}
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					warmMemory(b, ds.users, ds.gen, shared)
				}
			})
		}
	}
}

func warmMemory(b *testing.B, users int, gen func(int) decision.Input, shared bool) {
	b.Helper()
	var parts *decision.Interner
	if shared {
		parts = decision.NewInterner()
	}
	c, err := cache.New[*Entry](cache.Options{L1MaxCost: 8 << 30, L1TTL: time.Hour, Name: "bench"}, nil, entryCodec{parts: parts}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	now := time.Now()
	keys := make([]string, users)
	for i := range keys {
		in := gen(i)
		keys[i], _ = cache.TenantUserKey(in.TenantID, in.UserID)
	}
	before, beforeObjs := liveHeapObjects()
	var cost, unsharedBytes int64
	var unsharedParts int
	warm := func(keys []string, twin string) {
		for i, key := range keys {
			_, _, err := c.Get(ctx, key, func(*Entry) bool { return true }, func(context.Context) (cache.Loaded[*Entry], error) {
				in := gen(i)
				in.UserID += twin
				e := &Entry{AdminVersion: 1, LoadedAt: now.UnixNano()}
				if _, err := parts.CompileInto(&e.Set, in, now); err != nil { // a nil parts shares nothing
					return cache.Loaded[*Entry]{}, err
				}
				n := entryCost(e)
				if twin == "" {
					cost += n + 256 + int64(len(key)) // the cache's own overhead per entry, see cache.l1Cost
					if !shared {
						_, part := e.Set.Size()
						unsharedBytes += part
						unsharedParts += len(e.Set.PartIDs())
					}
				}
				return cache.Loaded[*Entry]{Value: e, Cost: n}, nil
			})
			if err != nil {
				b.Fatal(err)
			}
			if i%1000 == 999 {
				c.WaitIdle() // ristretto drops Sets its buffer cannot take
			}
		}
		c.WaitIdle()
	}
	warm(keys, "")
	after, afterObjs := liveHeapObjects()
	twins := make([]string, users)
	for i := range twins {
		in := gen(i)
		twins[i], _ = cache.TenantUserKey(in.TenantID, in.UserID+"-twin")
	}
	beforeTwins := liveHeap()
	if shared {
		warm(twins, "-twin")
	}
	afterTwins := liveHeap()
	resident := 0
	for _, key := range keys {
		if _, ok := c.PeekL1(key); ok {
			resident++
		}
	}
	if resident < users*99/100 {
		b.Fatalf("got %d of %d users resident in L1", resident, users)
	}
	partBytes, nparts := unsharedBytes, unsharedParts
	if shared {
		partBytes, nparts = parts.Bytes(), parts.Len()
	}
	cost += partBytes
	delta := float64(after) - float64(before)
	b.ReportMetric(delta/float64(resident), "heap-B/user")
	b.ReportMetric((float64(afterObjs)-float64(beforeObjs))/float64(resident), "heap-objs/user")
	if shared {
		b.ReportMetric((float64(afterTwins)-float64(beforeTwins))/float64(users), "beyond-shared-B/user")
	}
	b.ReportMetric(float64(partBytes)/float64(users), "est-shared-B/user")
	b.ReportMetric(float64(nparts), "parts")
	b.ReportMetric(float64(cost)/float64(users), "cost-B/user")
	runtime.KeepAlive(c)
}

func liveHeap() uint64 {
	h, _ := liveHeapObjects()
	return h
}

// liveHeapObjects returns the live heap's bytes and objects after a collection.
func liveHeapObjects() (bytes, objects uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.HeapObjects
}

// loadgenShape is user i of the load tool's data set (internal/loadgen seedSQL), generated
// in memory: 50 tenants of 1,000 users, 150 concrete codes, 20 roles of 5–20 codes (four with a
// wildcard) in inheritance chains, six teams, users with 1–3 roles (the third restricted to a
// team), 1% owners, 10% a direct grant, 10% a deny. Strings are fresh for every call, as a
// load from PostgreSQL makes them.
func loadgenShape(n int) decision.Input {
	tenant, i := n/1000, n%1000
	code := func(k int) string {
		return fmt.Sprintf("bench_r%d.%s.%s", k/6, []string{"read", "write"}[k/3%2], []string{"own", "team", "tenant"}[k%3])
	}
	wild := map[int]string{0: "projects.*.team", 4: "documents.*.own", 8: "*.read.team", 12: "reports.*.tenant"}
	roles := make([]decision.Role, 0, 21)
	for k := range 20 {
		r := decision.Role{ID: fmt.Sprintf("r%02d", k), Code: fmt.Sprintf("bench_role_%02d", k), Active: true}
		for j := 0; j <= 4+(k*7)%16; j++ {
			r.Permissions = append(r.Permissions, code((k*37+j*11)%150))
		}
		if w, ok := wild[k]; ok {
			r.Permissions = append(r.Permissions, w)
		}
		if k%3 != 0 {
			r.Inherits = append(r.Inherits, fmt.Sprintf("r%02d", k-1))
		}
		if k%5 == 0 && k != 19 {
			r.Inherits = append(r.Inherits, "r19") // the viewer
		}
		roles = append(roles, r)
	}
	roles = append(roles, decision.Role{ID: "owner", Code: "owner", Active: true, Permissions: []string{"*.*.tenant"}})
	team := func(k int) string { return fmt.Sprintf("team-%d", k) }
	in := decision.Input{
		Level: decision.LevelTenant, TenantID: fmt.Sprintf("%08x-0000-0000-0000-000000000000", tenant),
		TenantKnown: true, TenantStatus: "active", UserKnown: true, UserStatus: "active",
		UserID: fmt.Sprintf("user-%d", i), Version: 1, Roles: roles,
		Descendants: map[string][]string{team(0): {team(5)}},
	}
	if i%4 != 3 {
		in.MemberOf = []string{team(i % 6)}
	}
	for j := 0; j <= i%3; j++ {
		a := decision.Assignment{RoleID: fmt.Sprintf("r%02d", (i*7+j*13)%20)}
		if j == 2 {
			a.Group = team(i % 6)
		}
		in.Assignments = append(in.Assignments, a)
	}
	if i%100 == 0 {
		in.Assignments = append(in.Assignments, decision.Assignment{RoleID: "owner"})
	}
	switch i % 10 {
	case 1:
		d := decision.DirectPermission{Code: code((i * 3) % 150), Granted: true}
		if i%40 == 1 {
			d.Group = team(i % 6)
		}
		in.Direct = append(in.Direct, d)
	case 2:
		in.Direct = append(in.Direct, decision.DirectPermission{Code: roles[(i*7)%20].Permissions[0]})
	}
	return in
}

// randomRoles returns a generator of one tenant whose users hold 1–3 of 200 roles (each of
// 5–20 codes from 600) at random, unrestricted, and are members of one of 20 teams.
func randomRoles(users int) func(int) decision.Input {
	rnd := rand.New(rand.NewPCG(20, 26))
	perms := make([][]int, 200)
	for k := range perms {
		for range 5 + rnd.IntN(16) {
			perms[k] = append(perms[k], rnd.IntN(600))
		}
	}
	held := make([][]int, users)
	for i := range held {
		for range 1 + rnd.IntN(3) {
			held[i] = append(held[i], rnd.IntN(200))
		}
	}
	return func(i int) decision.Input {
		in := decision.Input{
			Level: decision.LevelTenant, TenantID: "0000abcd-0000-0000-0000-000000000000", TenantKnown: true,
			TenantStatus: "active", UserKnown: true, UserStatus: "active", UserID: fmt.Sprintf("user-%d", i),
			Version: 1, MemberOf: []string{fmt.Sprintf("team-%d", i%20)},
		}
		for _, k := range held[i] {
			r := decision.Role{ID: fmt.Sprintf("r%03d", k), Code: fmt.Sprintf("role_%03d", k), Active: true}
			for _, p := range perms[k] {
				r.Permissions = append(r.Permissions, fmt.Sprintf("res%d.%s.%s", p/6, []string{"read", "write"}[p/3%2], []string{"own", "team", "tenant"}[p%3]))
			}
			in.Roles = append(in.Roles, r)
			in.Assignments = append(in.Assignments, decision.Assignment{RoleID: r.ID})
		}
		return in
	}
}
