package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/metrictest"
	"github.com/neofast/neoauthz/internal/redistest"
)

// val stands for a compiled permission set: data plus the version it was computed at.
type val struct {
	Version int64  `json:"v"`
	Data    string `json:"d"`
}

func atLeast(n int64) func(val) bool { return func(v val) bool { return v.Version >= n } }

// loader returns v and counts its calls.
func loader(v val, calls *atomic.Int32) func(context.Context) (Loaded[val], error) {
	return func(context.Context) (Loaded[val], error) {
		calls.Add(1)
		return Loaded[val]{Value: v}, nil
	}
}

func newTestCache(tb testing.TB, rdb redis.UniversalClient, prefix string, opts Options) (*Cache[val], *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	opts.Prefix = prefix
	if opts.Name == "" {
		opts.Name = "test"
	}
	if opts.Timeout == 0 {
		// Generous: this machine may be loaded and -race is slow, and a timed-out Redis
		// operation would turn an expected L2 hit into a miss.
		opts.Timeout = 5 * time.Second
	}
	c, err := New[val](opts, rdb, JSONCodec[val]{}, reg)
	require.NoError(tb, err)
	tb.Cleanup(c.Close)
	return c, reg
}

func ops(tier, op, result string) map[string]string {
	return map[string]string{"tier": tier, "operation": op, "result": result}
}

// writeRaw stores v under key in Redis as another instance would.
func writeRaw(tb testing.TB, rdb redis.UniversalClient, prefix, key string, v val, ttl time.Duration) {
	tb.Helper()
	payload, err := json.Marshal(v)
	require.NoError(tb, err)
	require.NoError(tb, rdb.Set(context.Background(), prefix+key, encodeEnvelope(payload, time.Now().Add(ttl), 1), ttl).Err())
}

func TestGetSources(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	a, _ := newTestCache(t, rdb, prefix, Options{})
	want := val{Version: 1, Data: "perms"}
	var calls atomic.Int32

	got, src, err := a.Get(ctx, "k", atLeast(1), loader(want, &calls))
	require.NoError(t, err)
	assert.Equal(t, SourceLoad, src, "first Get")
	assert.Equal(t, want, got)
	a.WaitIdle()

	got, src, err = a.Get(ctx, "k", atLeast(1), loader(want, &calls))
	require.NoError(t, err)
	assert.Equal(t, SourceL1, src, "second Get")
	assert.Equal(t, want, got)

	// Another instance sharing Redis finds it in L2, then (promoted) in its L1.
	b, _ := newTestCache(t, rdb, prefix, Options{})
	got, src, err = b.Get(ctx, "k", atLeast(1), loader(want, &calls))
	require.NoError(t, err)
	assert.Equal(t, SourceL2, src, "other instance")
	assert.Equal(t, want, got)
	b.WaitIdle()
	got, src, err = b.Get(ctx, "k", atLeast(1), loader(want, &calls))
	require.NoError(t, err)
	assert.Equal(t, SourceL1, src, "other instance after promotion")
	assert.Equal(t, want, got)

	assert.Equal(t, int32(1), calls.Load(), "loader calls")
}

func TestGetL1Only(t *testing.T) {
	ctx := context.Background()
	c, reg := newTestCache(t, nil, "", Options{})
	var calls atomic.Int32
	_, src, err := c.Get(ctx, "k", atLeast(1), loader(val{Version: 1}, &calls))
	require.NoError(t, err)
	assert.Equal(t, SourceLoad, src)
	c.WaitIdle()
	_, src, err = c.Get(ctx, "k", atLeast(1), loader(val{Version: 1}, &calls))
	require.NoError(t, err)
	assert.Equal(t, SourceL1, src)
	assert.Equal(t, Health{}, c.Healthy(), "health without Redis")
	require.NoError(t, c.Ping(ctx))
	assert.Zero(t, metrictest.Sum(t, reg, "cache_redis_up", nil), "no redis_up series without Redis")
}

func TestGetRejectsEmptyKey(t *testing.T) {
	c, _ := newTestCache(t, nil, "", Options{})
	var calls atomic.Int32
	_, src, err := c.Get(context.Background(), "", atLeast(0), loader(val{}, &calls))
	require.ErrorIs(t, err, ErrInvalidKey)
	assert.Equal(t, Source(0), src)
	assert.Zero(t, calls.Load())
}

func TestStaleEntriesAreMisses(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	c, reg := newTestCache(t, rdb, prefix, Options{})
	var calls atomic.Int32

	_, _, err := c.Get(ctx, "k", atLeast(5), loader(val{Version: 5}, &calls))
	require.NoError(t, err)
	c.WaitIdle() // version 5 is now in L1 and in Redis

	got, src, err := c.Get(ctx, "k", atLeast(6), loader(val{Version: 6}, &calls))
	require.NoError(t, err)
	assert.Equal(t, SourceLoad, src)
	assert.Equal(t, int64(6), got.Version)
	assert.Equal(t, int32(2), calls.Load(), "loader calls")
	assert.InDelta(t, 1.0, metrictest.Sum(t, reg, "cache_operations_total", ops("l1", "get", "stale")), 0, "l1 stale")
	assert.InDelta(t, 1.0, metrictest.Sum(t, reg, "cache_operations_total", ops("l2", "get", "stale")), 0, "l2 stale")

	// The fresh value replaced the stale one in both tiers.
	c.WaitIdle()
	_, src, err = c.Get(ctx, "k", atLeast(6), loader(val{Version: 6}, &calls))
	require.NoError(t, err)
	assert.Equal(t, SourceL1, src)
	other, _ := newTestCache(t, rdb, prefix, Options{})
	_, src, err = other.Get(ctx, "k", atLeast(6), loader(val{Version: 6}, &calls))
	require.NoError(t, err)
	assert.Equal(t, SourceL2, src)
}

func TestStaleValueWrittenByAnotherInstance(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	c, _ := newTestCache(t, rdb, prefix, Options{})
	// Written after our fresh value, as a slow instance that loaded old data would.
	writeRaw(t, rdb, prefix, "k", val{Version: 3, Data: "old"}, time.Minute)

	var calls atomic.Int32
	for range 3 {
		got, src, err := c.Get(ctx, "k", atLeast(4), loader(val{Version: 4, Data: "new"}, &calls))
		require.NoError(t, err)
		assert.Equal(t, int64(4), got.Version, "got a version older than the floor from %v", src)
		c.WaitIdle()
		writeRaw(t, rdb, prefix, "k", val{Version: 3, Data: "old"}, time.Minute)
		c.l1.Del("k")
	}

	// The raw write is in the real format: a caller with a lower floor takes it.
	got, src, err := c.Get(ctx, "k", atLeast(3), loader(val{Version: 4}, &calls))
	require.NoError(t, err)
	assert.Equal(t, SourceL2, src)
	assert.Equal(t, val{Version: 3, Data: "old"}, got)
}

// TestBufferedSetRace checks that an old value landing in ristretto after a newer floor is
// known is never returned, whatever the timing of ristretto's buffered Sets.
func TestBufferedSetRace(t *testing.T) {
	ctx := context.Background()
	c, _ := newTestCache(t, nil, "", Options{})
	var calls atomic.Int32
	for i := range 500 {
		key := fmt.Sprintf("k%d", i)
		c.setL1(&entry[val]{key: key, val: val{Version: 1}, exp: time.Now().Add(time.Minute)})
		got, _, err := c.Get(ctx, key, atLeast(2), loader(val{Version: 2}, &calls))
		require.NoError(t, err)
		require.Equal(t, int64(2), got.Version, "iteration %d", i)
	}

	// Old values keep landing concurrently (a slow loader elsewhere) while readers require
	// the new version.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				c.setL1(&entry[val]{key: "hot", val: val{Version: 1}, exp: time.Now().Add(time.Minute)})
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			for range 500 {
				got, _, err := c.Get(ctx, "hot", atLeast(2), loader(val{Version: 2}, &calls))
				if !assert.NoError(t, err) || !assert.Equal(t, int64(2), got.Version) {
					return
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
}

func TestStaleLoadIsRetried(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	c, _ := newTestCache(t, rdb, prefix, Options{})

	var floor atomic.Int64
	floor.Store(5)
	fresh := func(v val) bool { return v.Version >= floor.Load() }
	var calls atomic.Int32
	load := func(context.Context) (Loaded[val], error) {
		if calls.Add(1) == 1 {
			// The load read version 5; meanwhile a notification made version 6 known.
			floor.Store(6)
			return Loaded[val]{Value: val{Version: 5}}, nil
		}
		return Loaded[val]{Value: val{Version: 6}}, nil
	}
	got, src, err := c.Get(ctx, "k", fresh, load)
	require.NoError(t, err)
	assert.Equal(t, SourceLoad, src)
	assert.Equal(t, int64(6), got.Version)
	assert.Equal(t, int32(2), calls.Load(), "loader calls")

	c.WaitIdle()
	got, src, err = c.Get(ctx, "k", fresh, load)
	require.NoError(t, err)
	assert.Equal(t, SourceL1, src)
	assert.Equal(t, int64(6), got.Version)
	b, err := rdb.Get(ctx, prefix+"k").Bytes()
	require.NoError(t, err)
	payload, _, _, err := decodeEnvelope(b)
	require.NoError(t, err)
	assert.JSONEq(t, `{"v":6,"d":""}`, string(payload), "stored in Redis")
}

func TestStaleLoadTwiceFails(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	c, reg := newTestCache(t, rdb, prefix, Options{})

	var floor atomic.Int64
	floor.Store(5)
	fresh := func(v val) bool { return v.Version >= floor.Load() }
	load := func(context.Context) (Loaded[val], error) {
		v := floor.Load()
		floor.Add(1) // the data changes under every read
		return Loaded[val]{Value: val{Version: v}}, nil
	}
	_, src, err := c.Get(ctx, "k", fresh, load)
	require.ErrorIs(t, err, ErrStaleLoad)
	assert.Equal(t, SourceLoad, src)
	assert.InDelta(t, 2.0, metrictest.Sum(t, reg, "cache_loads_total", map[string]string{"result": "stale"}), 0)

	c.WaitIdle()
	_, ok := c.getL1("k")
	assert.False(t, ok, "stale value in L1")
	n, err := rdb.Exists(ctx, prefix+"k").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "stale value in Redis")
}

func TestLoadErrorIsReturnedAndNotCached(t *testing.T) {
	ctx := context.Background()
	c, reg := newTestCache(t, nil, "", Options{})
	boom := errors.New("database down")
	_, src, err := c.Get(ctx, "k", atLeast(1), func(context.Context) (Loaded[val], error) { return Loaded[val]{}, boom })
	require.ErrorIs(t, err, boom)
	assert.Equal(t, SourceLoad, src)
	var calls atomic.Int32
	_, src, err = c.Get(ctx, "k", atLeast(1), loader(val{Version: 1}, &calls))
	require.NoError(t, err)
	assert.Equal(t, SourceLoad, src)
	assert.InDelta(t, 1.0, metrictest.Sum(t, reg, "cache_loads_total", map[string]string{"result": "error"}), 0)
}

// TestCoalescedLoads runs in a synctest bubble: synctest.Wait returns once every caller is
// blocked inside Get (the leader in its load, the others waiting for it), so no caller can
// arrive after the load finished, however slow the machine.
func TestCoalescedLoads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c, reg := newTestCache(t, nil, "", Options{})

		release := make(chan struct{})
		var calls atomic.Int32
		load := func(context.Context) (Loaded[val], error) {
			calls.Add(1)
			<-release
			return Loaded[val]{Value: val{Version: 7}}, nil
		}
		const n = 100
		var wg sync.WaitGroup
		type got struct {
			v   val
			src Source
			err error
		}
		results := make(chan got, n)
		for range n {
			wg.Go(func() {
				v, src, err := c.Get(ctx, "k", atLeast(7), load)
				results <- got{v, src, err}
			})
		}
		synctest.Wait()
		require.InDelta(t, n, metrictest.Sum(t, reg, "cache_operations_total", ops("l1", "get", "miss")), 0, "every caller missed L1")
		require.Equal(t, int32(1), calls.Load(), "one load under way")
		close(release)
		wg.Wait()
		close(results)
		for r := range results {
			require.NoError(t, r.err)
			assert.Equal(t, SourceLoad, r.src)
			assert.Equal(t, int64(7), r.v.Version)
		}
		assert.Equal(t, int32(1), calls.Load(), "loader calls")
	})
}

// TestCoalescedCallerWithNewerFloor checks that a caller who knows a newer version than the
// one a shared load produced loads again rather than receive it.
func TestCoalescedCallerWithNewerFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c, _ := newTestCache(t, nil, "", Options{})

		release := make(chan struct{})
		var calls atomic.Int32
		load := func(context.Context) (Loaded[val], error) {
			if calls.Add(1) == 1 {
				<-release
				return Loaded[val]{Value: val{Version: 5}}, nil
			}
			return Loaded[val]{Value: val{Version: 6}}, nil
		}
		leader := make(chan val, 1)
		go func() {
			v, _, err := c.Get(ctx, "k", atLeast(5), load)
			assert.NoError(t, err)
			leader <- v
		}()
		synctest.Wait() // the leader is in its load
		require.Equal(t, int32(1), calls.Load())
		follower := make(chan val, 1)
		go func() {
			v, _, err := c.Get(ctx, "k", atLeast(6), load) // e.g. a newer floor than the leader's
			assert.NoError(t, err)
			follower <- v
		}()
		synctest.Wait() // the follower waits for the leader's load
		require.Equal(t, int32(1), calls.Load(), "the follower joined the load under way")
		close(release)
		assert.Equal(t, int64(5), (<-leader).Version, "leader")
		assert.Equal(t, int64(6), (<-follower).Version, "follower")
		assert.Equal(t, int32(2), calls.Load(), "loader calls")
	})
}

func TestWaiterLeavesOnCancel(t *testing.T) {
	c, _ := newTestCache(t, nil, "", Options{})
	release := make(chan struct{})
	defer close(release)
	load := func(context.Context) (Loaded[val], error) {
		<-release
		return Loaded[val]{Value: val{Version: 1}}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err := c.Get(ctx, "k", atLeast(1), load)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// TestTTLCapping checks the lifetimes each tier gives an entry without racing the clock: the
// caps are read back from Redis and L1, expiry in L1 runs on synctest's clock, and expiry
// across tiers is waited for as a condition.
func TestTTLCapping(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")

	// l1Expiry returns when k's L1 entry expires, after buffered sets are applied.
	l1Expiry := func(t *testing.T, c *Cache[val], k string) time.Time {
		t.Helper()
		c.WaitIdle()
		e, ok := c.getL1(k)
		require.True(t, ok, "%s is in L1", k)
		return time.Unix(0, e.exp)
	}
	// redisExpiry returns the Redis TTL of k and the expiry its envelope carries.
	redisExpiry := func(t *testing.T, k string) (time.Duration, time.Time) {
		t.Helper()
		pttl, err := rdb.PTTL(ctx, k).Result()
		require.NoError(t, err)
		b, err := rdb.Get(ctx, k).Bytes()
		require.NoError(t, err)
		_, exp, _, err := decodeEnvelope(b)
		require.NoError(t, err)
		return pttl, exp
	}

	t.Run("loaded TTL shorter than the tiers", func(t *testing.T) {
		c, _ := newTestCache(t, rdb, prefix+"short:", Options{})
		var calls atomic.Int32
		load := func(context.Context) (Loaded[val], error) {
			calls.Add(1)
			return Loaded[val]{Value: val{Version: 1}, TTL: 30 * time.Second}, nil
		}
		before := time.Now()
		_, _, err := c.Get(ctx, "k", atLeast(1), load)
		require.NoError(t, err)
		after := time.Now()
		c.WaitIdle()
		pttl, exp := redisExpiry(t, prefix+"short:k")
		assert.Positive(t, pttl)
		assert.LessOrEqual(t, pttl, 30*time.Second, "Redis TTL")
		assert.False(t, exp.After(after.Add(30*time.Second)), "Redis envelope expiry: got %s", exp)
		l1 := l1Expiry(t, c, "k")
		assert.False(t, l1.Before(before.Add(30*time.Second)) || l1.After(after.Add(30*time.Second)),
			"L1 expiry: got %s, want the load time + 30s", l1)
		_, src, err := c.Get(ctx, "k", atLeast(1), load)
		require.NoError(t, err)
		assert.Equal(t, SourceL1, src)
		assert.Equal(t, int32(1), calls.Load())
	})

	t.Run("loaded TTL longer than the tiers", func(t *testing.T) {
		c, _ := newTestCache(t, rdb, prefix+"long:", Options{L1TTL: time.Minute, L2TTL: 2 * time.Minute})
		load := func(context.Context) (Loaded[val], error) {
			return Loaded[val]{Value: val{Version: 1}, TTL: time.Hour}, nil
		}
		_, _, err := c.Get(ctx, "k", atLeast(1), load)
		require.NoError(t, err)
		after := time.Now()
		c.WaitIdle()
		pttl, exp := redisExpiry(t, prefix+"long:k")
		assert.Greater(t, pttl, time.Minute, "Redis TTL is L2TTL, not L1TTL")
		assert.LessOrEqual(t, pttl, 2*time.Minute, "Redis TTL")
		assert.False(t, exp.After(after.Add(2*time.Minute)), "Redis envelope expiry: got %s", exp)
		assert.False(t, l1Expiry(t, c, "k").After(after.Add(time.Minute)), "L1 expiry is capped by L1TTL")
	})

	t.Run("a promoted entry keeps the Redis entry's expiry", func(t *testing.T) {
		c, _ := newTestCache(t, rdb, prefix+"promo:", Options{L1TTL: time.Hour})
		writeRaw(t, rdb, prefix+"promo:", "k", val{Version: 1}, 20*time.Second)
		_, exp := redisExpiry(t, prefix+"promo:k")
		var calls atomic.Int32
		_, src, err := c.Get(ctx, "k", atLeast(1), loader(val{Version: 1}, &calls))
		require.NoError(t, err)
		require.Equal(t, SourceL2, src)
		assert.True(t, exp.Equal(l1Expiry(t, c, "k")), "L1 expiry of the promoted entry: got %s, want %s", l1Expiry(t, c, "k"), exp)
		assert.Zero(t, calls.Load())
	})

	t.Run("L1 drops the entry at its loaded TTL", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, _ := newTestCache(t, nil, "", Options{})
			var calls atomic.Int32
			load := func(context.Context) (Loaded[val], error) {
				calls.Add(1)
				return Loaded[val]{Value: val{Version: 1}, TTL: 300 * time.Millisecond}, nil
			}
			get := func() Source {
				t.Helper()
				_, src, err := c.Get(ctx, "k", atLeast(1), load)
				require.NoError(t, err)
				c.WaitIdle()
				return src
			}
			assert.Equal(t, SourceLoad, get())
			time.Sleep(299 * time.Millisecond)
			assert.Equal(t, SourceL1, get(), "just before the TTL")
			time.Sleep(2 * time.Millisecond)
			assert.Equal(t, SourceLoad, get(), "past the TTL")
			assert.Equal(t, int32(2), calls.Load())
		})
	})

	t.Run("past L1TTL from Redis, past L2TTL loaded", func(t *testing.T) {
		c, _ := newTestCache(t, rdb, prefix+"tiers:", Options{L1TTL: 50 * time.Millisecond, L2TTL: 2 * time.Second})
		var calls atomic.Int32
		load := loader(val{Version: 1}, &calls)
		_, src, err := c.Get(ctx, "k", atLeast(1), load)
		require.NoError(t, err)
		require.Equal(t, SourceLoad, src)
		c.WaitIdle()
		// Each wait ends on a condition; until it holds, any tier above the awaited one answers.
		waitFor := func(want Source) {
			t.Helper()
			require.Eventually(t, func() bool {
				_, src, err := c.Get(ctx, "k", atLeast(1), load)
				require.NoError(t, err)
				return src == want
			}, 30*time.Second, 5*time.Millisecond, "never served from %s", want)
		}
		waitFor(SourceL2)
		assert.Equal(t, int32(1), calls.Load(), "no load while Redis holds it")
		waitFor(SourceLoad)
		assert.Equal(t, int32(2), calls.Load())
	})

	t.Run("negative TTL is not cached", func(t *testing.T) {
		c, _ := newTestCache(t, rdb, prefix+"neg:", Options{})
		var calls atomic.Int32
		load := func(context.Context) (Loaded[val], error) {
			calls.Add(1)
			return Loaded[val]{Value: val{Version: 1}, TTL: -1}, nil
		}
		for range 2 {
			_, src, err := c.Get(ctx, "k", atLeast(1), load)
			require.NoError(t, err)
			assert.Equal(t, SourceLoad, src)
			c.WaitIdle()
		}
		n, err := rdb.Exists(ctx, prefix+"neg:k").Result()
		require.NoError(t, err)
		assert.Zero(t, n)
	})
}

func TestGarbageInRedis(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	c, reg := newTestCache(t, rdb, prefix, Options{})

	tests := []struct {
		name string
		raw  []byte
	}{
		{"not an envelope", []byte("\x00garbage")},
		{"empty", []byte{}},
		{"envelope around bad JSON", encodeEnvelope([]byte("{not json"), time.Now().Add(time.Minute), 1)},
		{"future format", append([]byte{envelopeMagic, envelopeVersion + 1}, make([]byte, 20)...)},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("g%d", i)
			require.NoError(t, rdb.Set(ctx, prefix+key, tc.raw, time.Minute).Err())
			var calls atomic.Int32
			got, src, err := c.Get(ctx, key, atLeast(1), loader(val{Version: 1, Data: "ok"}, &calls))
			require.NoError(t, err)
			assert.Equal(t, SourceLoad, src)
			assert.Equal(t, val{Version: 1, Data: "ok"}, got)
			assert.InDelta(t, float64(i+1), metrictest.Sum(t, reg, "cache_operations_total", ops("l2", "get", "error")), 0, "l2 get errors")
			assert.InDelta(t, float64(i+1), metrictest.Sum(t, reg, "cache_l2_decode_errors_total", nil), 0, "decode errors")

			// The load overwrote the garbage.
			c.WaitIdle()
			c.l1.Del(key)
			_, src, err = c.Get(ctx, key, atLeast(1), loader(val{Version: 1, Data: "ok"}, &calls))
			require.NoError(t, err)
			assert.Equal(t, SourceL2, src)
		})
	}
	// Redis itself answered every time.
	assert.True(t, c.Healthy().OK, "health after garbage: %+v", c.Healthy())
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	c, _ := newTestCache(t, rdb, prefix, Options{})
	var calls atomic.Int32
	for _, k := range []string{"a", "b", "c"} {
		_, _, err := c.Get(ctx, k, atLeast(1), loader(val{Version: 1}, &calls))
		require.NoError(t, err)
	}
	c.WaitIdle()
	c.Delete(ctx, "a", "b")
	c.WaitIdle()

	n, err := rdb.Exists(ctx, prefix+"a", prefix+"b", prefix+"c").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "keys left in Redis")
	for k, want := range map[string]Source{"a": SourceLoad, "b": SourceLoad, "c": SourceL1} {
		_, src, err := c.Get(ctx, k, atLeast(1), loader(val{Version: 1}, &calls))
		require.NoError(t, err)
		assert.Equal(t, want, src, "key %s", k)
	}
}

func TestDeletePrefix(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	c, _ := newTestCache(t, rdb, prefix, Options{})
	t1, t2 := "0f1e2d3c-0000-4000-8000-000000000001", "0f1e2d3c-0000-4000-8000-000000000002"
	var calls atomic.Int32
	var keys1, keys2 []string
	for i := range 50 {
		k1, err := TenantUserKey(t1, fmt.Sprintf("user%d", i))
		require.NoError(t, err)
		k2, err := TenantUserKey(t2, fmt.Sprintf("user%d", i))
		require.NoError(t, err)
		keys1, keys2 = append(keys1, k1), append(keys2, k2)
		for _, k := range []string{k1, k2} {
			_, _, err = c.Get(ctx, k, atLeast(1), loader(val{Version: 1}, &calls))
			require.NoError(t, err)
		}
	}
	c.WaitIdle()

	p1, err := TenantPrefix(t1)
	require.NoError(t, err)
	c.DeletePrefix(ctx, p1)
	c.WaitIdle()

	left, err := rdb.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	assert.Len(t, left, len(keys2), "keys left in Redis")
	for _, k := range keys1 {
		_, ok := c.getL1(k)
		assert.False(t, ok, "%s still in L1", k)
	}
	for _, k := range keys2 {
		_, ok := c.getL1(k)
		assert.True(t, ok, "%s gone from L1", k)
	}
}

func TestMetricsSharedRegistry(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	reg := prometheus.NewRegistry()
	a, err := New[val](Options{Prefix: prefix, Name: "permset"}, rdb, JSONCodec[val]{}, reg)
	require.NoError(t, err)
	defer a.Close()
	b, err := New[val](Options{Prefix: prefix, Name: "realm"}, nil, JSONCodec[val]{}, reg)
	require.NoError(t, err, "a second cache on the same registry")
	defer b.Close()

	var calls atomic.Int32
	_, _, err = a.Get(ctx, "k", atLeast(1), loader(val{Version: 1}, &calls))
	require.NoError(t, err)
	_, _, err = b.Get(ctx, "k", atLeast(1), loader(val{Version: 1}, &calls))
	require.NoError(t, err)
	a.WaitIdle()

	assert.InDelta(t, 1.0, metrictest.Sum(t, reg, "cache_redis_up", map[string]string{"cache": "permset"}), 0)
	assert.InDelta(t, 1.0, metrictest.Sum(t, reg, "cache_operations_total", map[string]string{"cache": "permset", "tier": "l2", "operation": "set", "result": "ok"}), 0)
	assert.InDelta(t, 1.0, metrictest.Sum(t, reg, "cache_operations_total", map[string]string{"cache": "realm", "tier": "l1", "operation": "get", "result": "miss"}), 0)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "cache_load_duration_seconds" {
			assert.Len(t, mf.GetMetric(), 2, "histogram series")
			for _, m := range mf.GetMetric() {
				assert.Equal(t, uint64(1), m.GetHistogram().GetSampleCount())
			}
		}
	}
	h := a.Healthy()
	assert.True(t, h.Enabled)
	assert.True(t, h.OK)
	assert.Empty(t, h.Err)
	assert.Positive(t, h.Latency)
}

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"brace in prefix", Options{Prefix: "app:{x}:"}},
		{"negative TTL", Options{L1TTL: -time.Second}},
		{"negative cost", Options{L1MaxCost: -1}},
		{"negative timeout", Options{Timeout: -time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New[val](tc.opts, nil, JSONCodec[val]{}, nil)
			assert.Error(t, err)
		})
	}
}

func TestCloseWhileInUse(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	c, err := New[val](Options{Prefix: prefix}, rdb, JSONCodec[val]{}, nil)
	require.NoError(t, err)
	var calls atomic.Int32
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				key := fmt.Sprintf("k%d", (g*200+i)%50)
				got, _, err := c.Get(ctx, key, atLeast(1), loader(val{Version: 1}, &calls))
				if !assert.NoError(t, err) || !assert.Equal(t, int64(1), got.Version) {
					return
				}
				if i%50 == 0 {
					c.Delete(ctx, key)
					c.DeletePrefix(ctx, "k1")
				}
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	c.Close()
	wg.Wait()
	c.Close() // twice is fine
	c.WaitIdle()
	_, src, err := c.Get(ctx, "k0", atLeast(1), loader(val{Version: 1}, &calls))
	require.NoError(t, err)
	assert.Equal(t, SourceLoad, src, "after Close")
}

// TestDeletePrefixIsNotAGlob checks that characters Redis' MATCH treats specially are taken
// literally: "x*:" must not delete "xy:1".
func TestDeletePrefixIsNotAGlob(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	c, _ := newTestCache(t, rdb, prefix, Options{})
	var calls atomic.Int32
	keys := []string{"x*:1", "xy:1", "x?:1", "x[y]:1", "x\\:1"}
	for _, k := range keys {
		_, _, err := c.Get(ctx, k, atLeast(1), loader(val{Version: 1}, &calls))
		require.NoError(t, err)
	}
	c.WaitIdle()
	for _, p := range []string{"x*:", "x?:", "x[y]:", "x\\:"} {
		c.DeletePrefix(ctx, p)
	}
	c.WaitIdle()
	left, err := rdb.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{prefix + "xy:1"}, left)
	_, ok := c.getL1("xy:1")
	assert.True(t, ok, "xy:1 in L1")
}

func TestEscapeGlob(t *testing.T) {
	assert.Equal(t, "a\\*b\\?c\\[d\\]e\\\\f{g}:\xff", escapeGlob("a*b?c[d]e\\f{g}:\xff"))
}
