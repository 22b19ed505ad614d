package cache

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/metrictest"
	"github.com/neofast/neoauthz/internal/redistest"
)

func TestRedisUnreachable(t *testing.T) {
	ctx := context.Background()
	rdb, err := ParseRedisURL("redis://127.0.0.1:1") // nothing listens on port 1
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	c, reg := newTestCache(t, rdb, "test:cache:unreachable:", Options{Timeout: 500 * time.Millisecond})

	h := c.Healthy()
	assert.True(t, h.Enabled)
	assert.False(t, h.OK, "health with Redis unreachable")
	assert.NotEmpty(t, h.Err)
	require.Error(t, c.Ping(ctx))

	var calls atomic.Int32
	for i := range 20 {
		key := fmt.Sprintf("k%d", i%5)
		got, src, err := c.Get(ctx, key, atLeast(1), loader(val{Version: 1, Data: key}, &calls))
		require.NoError(t, err)
		assert.Equal(t, val{Version: 1, Data: key}, got)
		assert.NotEqual(t, SourceL2, src)
		c.WaitIdle()
	}
	assert.Equal(t, int32(5), calls.Load(), "loads: once per key, then L1")
	// The breaker opened: later operations did not even try Redis.
	skipped := metrictest.Sum(t, reg, "cache_operations_total", map[string]string{"tier": "l2", "result": "skipped"})
	assert.Positive(t, skipped, "operations skipped by the breaker")
	assert.InDelta(t, 0.0, metrictest.Sum(t, reg, "cache_redis_up", nil), 0)
}

func TestRedisDiesAndReturns(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartServer(t)
	rdb, err := ParseRedisURL(srv.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	// A generous timeout: a killed Redis refuses at once, and a live one must not look dead
	// because a busy machine delayed its answer.
	c, reg := newTestCache(t, rdb, "test:cache:dies:", Options{Timeout: 10 * time.Second})
	c.l2.br.minBackoff = 100 * time.Millisecond // keep the test short
	require.True(t, c.Healthy().OK, "health at start: %+v", c.Healthy())

	var calls atomic.Int32
	get := func(key string, floor int64) (val, Source) {
		t.Helper()
		got, src, err := c.Get(ctx, key, atLeast(floor), loader(val{Version: floor, Data: key}, &calls))
		require.NoError(t, err)
		require.Equal(t, val{Version: floor, Data: key}, got)
		return got, src
	}
	_, src := get("before", 1)
	assert.Equal(t, SourceLoad, src)
	c.WaitIdle()

	srv.Kill()
	for i := range 10 {
		_, src = get("before", 1)
		assert.Equal(t, SourceL1, src, "cached before Redis died")
		_, src = get(fmt.Sprintf("during%d", i), 1)
		assert.Equal(t, SourceLoad, src, "new key while Redis is down")
		c.WaitIdle()
	}
	_, src = get("before", 2) // a newer version became known: loaded, not served from L1
	assert.Equal(t, SourceLoad, src)
	h := c.Healthy()
	assert.False(t, h.OK, "health while Redis is down")
	assert.NotEmpty(t, h.Err)
	assert.InDelta(t, 0.0, metrictest.Sum(t, reg, "cache_redis_up", nil), 0)

	srv.Start() // same port, empty
	// Without a Ping: a probe after the breaker's backoff finds Redis back.
	require.Eventually(t, func() bool {
		get("probe", 1)
		c.WaitIdle()
		return c.Healthy().OK
	}, 10*time.Second, 50*time.Millisecond, "L2 never came back: %+v", c.Healthy())
	assert.InDelta(t, 1.0, metrictest.Sum(t, reg, "cache_redis_up", nil), 0)

	_, src = get("after", 1)
	assert.Equal(t, SourceLoad, src)
	c.WaitIdle()
	c.l1.Del("after")
	_, src = get("after", 1)
	assert.Equal(t, SourceL2, src, "L2 used again after Redis returned")
}

func TestPingClosesBreaker(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartServer(t)
	rdb, err := ParseRedisURL(srv.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	c, _ := newTestCache(t, rdb, "test:cache:ping:", Options{Timeout: 500 * time.Millisecond})
	c.l2.br.minBackoff = time.Hour // only a Ping can close it

	srv.Kill()
	var calls atomic.Int32
	for i := range 5 {
		_, _, err := c.Get(ctx, fmt.Sprintf("k%d", i), atLeast(1), loader(val{Version: 1}, &calls))
		require.NoError(t, err)
	}
	require.NotZero(t, c.l2.br.openUntil.Load(), "breaker open")
	srv.Start()
	require.NoError(t, c.Ping(ctx))
	assert.True(t, c.Healthy().OK)
	probe, ok := c.l2.br.allow()
	assert.True(t, ok)
	assert.False(t, probe)
}

// TestSlowRedisIsBounded uses a client that ignores context deadlines and a Redis that
// never answers (a listener that accepts and stays silent): Get must still return within
// about Options.Timeout.
func TestSlowRedisIsBounded(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = conn.Close() })
		}
	}()
	rdb := redis.NewClient(&redis.Options{Addr: l.Addr().String(), ReadTimeout: 10 * time.Second, MaxRetries: -1, DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { _ = rdb.Close() })
	c, _ := newTestCache(t, rdb, "test:cache:slow:", Options{Timeout: 20 * time.Millisecond})
	require.False(t, c.l2.ctxHonored)

	var calls atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, src, err := c.Get(ctx, "k", atLeast(1), loader(val{Version: 1}, &calls))
		assert.NoError(t, err)
		assert.Equal(t, SourceLoad, src)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Get waited for the silent Redis")
	}
	assert.False(t, c.Healthy().OK)
	assert.Contains(t, c.Healthy().Err, "deadline")
}
