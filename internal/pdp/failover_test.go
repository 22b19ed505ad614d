package pdp_test

import (
	"context"
	"fmt"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/pdp"
	"github.com/neofast/neoauthz/internal/redistest"
)

// The failover tests run a pdp on a real Redis Cluster or Sentinel deployment, kill the master
// holding the tenant's keys under traffic and revoke a permission while the replica takes
// over. Every decision is compared with the committed state: alice holds the permission until
// the revocation commits and must be denied once its notification has arrived; bob and an
// unknown user never hold it. Redis is only a cache, so no check may fail at all; the figures
// logged are how long the cache itself was unreachable and how long checks failed.

func TestRedisClusterFailover(t *testing.T) {
	cl := redistest.StartCluster(t)
	f := newFixture(t)
	rdb := f.useRedis(t, cl.URL())

	// All of a tenant's keys share one slot (the tenant id is the hash tag), so multi-key
	// operations on a tenant stay on one node.
	probe, err := cache.TenantPrefix(f.tenant.ID)
	require.NoError(t, err)
	probe = f.prefix + probe + "failover-probe"
	slot := cl.KeySlot(probe)
	for _, user := range []string{"alice", "bob", "nobody", "a user id with {braces} and :colons:"} {
		key, err := cache.TenantUserKey(f.tenant.ID, user)
		require.NoError(t, err)
		assert.Equal(t, slot, cl.KeySlot(f.prefix+key), "the key of %q", user)
	}
	master := cl.MasterOf(probe)
	require.NotEmpty(t, master)

	f.failover(t, rdb, probe, func() string {
		cl.Kill(master)
		return cl.WaitFailover(probe, master)
	})
}

func TestRedisSentinelFailover(t *testing.T) {
	s := redistest.StartSentinel(t)
	f := newFixture(t)
	rdb := f.useRedis(t, s.URL())
	key, err := cache.TenantPrefix(f.tenant.ID)
	require.NoError(t, err)
	master := s.Master()
	require.NotEmpty(t, master)

	f.failover(t, rdb, f.prefix+key+"failover-probe", func() string {
		s.Kill(master)
		return s.WaitFailover(master)
	})
}

// useRedis makes the fixture's pdps use the Redis deployment at url.
func (f *fixture) useRedis(t *testing.T, url string) redis.UniversalClient {
	t.Helper()
	rdb, err := cache.ParseRedisURL(url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	f.rdb = rdb
	return rdb
}

// failover runs traffic on a pdp, calls kill (which kills the master and waits until a
// replica serves again), revokes alice's permission right after the kill, and checks every
// decision made meanwhile. probe is a key in the tenant's slot, written and read all along
// to measure how long Redis was unreachable.
func (f *fixture) failover(t *testing.T, rdb redis.UniversalClient, probe string, kill func() string) {
	ctx := context.Background()
	const perm = "users.delete.tenant"
	in := f.start(t, pdp.Config{}, nil)
	require.True(t, in.check(t, "acme", "alice", perm).Allowed)
	aliceKey, err := cache.TenantUserKey(f.tenant.ID, "alice")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		in.svc.WaitIdle()
		return rdb.Exists(ctx, f.prefix+aliceKey).Val() == 1
	}, 30*time.Second, 50*time.Millisecond, "alice's entry reaches Redis")

	var revokeStart, revokeSeen atomic.Int64 // UnixNano; 0 = not yet
	var checks, wrong, failed atomic.Int64
	var mu gosync.Mutex
	var maxCheckGap, maxRedisGap time.Duration
	stop := make(chan struct{})
	var wg gosync.WaitGroup
	for _, user := range []string{"alice", "bob", "nobody"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var failingSince time.Time
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				sub, err := in.svc.SubjectFromPrincipal(ctx, "acme", user)
				var res pdp.Result
				if err == nil {
					res, err = in.svc.Check(ctx, sub, pdp.Request{Permission: perm})
				}
				end := time.Now()
				checks.Add(1)
				if err != nil {
					failed.Add(1)
					if failingSince.IsZero() {
						failingSince = start
					}
				} else {
					if !failingSince.IsZero() {
						mu.Lock()
						maxCheckGap = max(maxCheckGap, end.Sub(failingSince))
						mu.Unlock()
						failingSince = time.Time{}
					}
					rs, seen := revokeStart.Load(), revokeSeen.Load()
					switch {
					case user != "alice":
						if res.Allowed {
							wrong.Add(1)
						}
					case rs == 0 || end.UnixNano() < rs: // before the revocation: allow
						if !res.Allowed {
							wrong.Add(1)
						}
					case seen != 0 && start.UnixNano() > seen: // after its notification: deny
						if res.Allowed {
							wrong.Add(1)
						}
					}
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Add(1)
	go func() { // the probe: what Redis' own clients see
		defer wg.Done()
		lastOK := time.Now()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			err := rdb.Set(c, probe, "x", time.Minute).Err()
			cancel()
			if err == nil {
				mu.Lock()
				maxRedisGap = max(maxRedisGap, time.Since(lastOK))
				mu.Unlock()
				lastOK = time.Now()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	promoted := make(chan string, 1)
	go func() { promoted <- kill() }()
	// Revoke during the failover: once notified, the pdp must deny, whatever Redis holds.
	revokeStart.Store(time.Now().UnixNano())
	f.exec(t, `DELETE FROM t_acme.user_roles WHERE user_id = (SELECT id FROM t_acme.users WHERE external_id = 'alice')`)
	in.waitFloor(t, f.tenant.ID, f.version(t))
	revokeSeen.Store(time.Now().UnixNano())
	assert.False(t, in.check(t, "acme", "alice", perm).Allowed, "denied once the revocation is notified")
	newMaster := <-promoted
	failoverTook := time.Since(killed)

	// The cache is used again after the failover: new fills land in the promoted master. Each
	// attempt fills another user, since a user already in L1 is not filled (nor written) again.
	var users atomic.Int64
	require.Eventually(t, func() bool {
		user := fmt.Sprintf("later-%d", users.Add(1))
		key, err := cache.TenantUserKey(f.tenant.ID, user)
		require.NoError(t, err)
		assert.False(t, in.check(t, "acme", user, perm).Allowed)
		in.svc.WaitIdle()
		return rdb.Exists(ctx, f.prefix+key).Val() == 1
	}, 3*time.Minute, 100*time.Millisecond, "Redis is used again after the failover")
	time.Sleep(300 * time.Millisecond) // traffic on the promoted master
	close(stop)
	wg.Wait()

	// A second pdp starting now reads Redis (where alice's pre-revocation entry may survive
	// on the promoted replica) and must still deny.
	other := f.start(t, pdp.Config{}, nil)
	assert.False(t, other.check(t, "acme", "alice", perm).Allowed, "no stale allow from the promoted replica")
	assert.False(t, in.check(t, "acme", "alice", perm).Allowed)

	assert.Zero(t, wrong.Load(), "decisions that differ from the committed state")
	assert.Zero(t, failed.Load(), "checks that failed: Redis is a cache, PostgreSQL answers while it fails over")
	assert.Positive(t, checks.Load())
	t.Logf("failover to %s took %v; Redis unreachable for at most %v; %d checks, %d failed (longest failing run %v), %d wrong",
		newMaster, failoverTook.Round(time.Millisecond), maxRedisGap.Round(time.Millisecond), checks.Load(), failed.Load(),
		maxCheckGap.Round(time.Millisecond), wrong.Load())
}
