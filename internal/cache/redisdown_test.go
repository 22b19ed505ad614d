package cache

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	skipped := metricValue(t, reg, "cache_operations_total", map[string]string{"tier": "l2", "result": "skipped"})
	assert.Positive(t, skipped, "operations skipped by the breaker")
	assert.InDelta(t, 0.0, metricValue(t, reg, "cache_redis_up", nil), 0)
}

// redisServer is a redis-server owned by one test, which it can kill and restart.
type redisServer struct {
	tb   testing.TB
	port int
	cmd  *exec.Cmd
}

func startRedisServer(tb testing.TB) *redisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatal("redis-server is not on PATH")
		}
		tb.Skip("redis-server is not on PATH; install it (apt-get install redis-server) to run this test")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(tb, l.Close())
	s := &redisServer{tb: tb, port: port}
	s.start()
	tb.Cleanup(s.kill)
	return s
}

func (s *redisServer) url() string { return "redis://127.0.0.1:" + strconv.Itoa(s.port) }

func (s *redisServer) start() {
	s.tb.Helper()
	s.cmd = exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	require.NoError(s.tb, s.cmd.Start())
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(s.port), MaxRetries: -1})
	defer c.Close()
	require.Eventually(s.tb, func() bool {
		return c.Ping(context.Background()).Err() == nil
	}, 10*time.Second, 20*time.Millisecond, "redis-server did not start on port %d", s.port)
}

func (s *redisServer) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

func TestRedisDiesAndReturns(t *testing.T) {
	ctx := context.Background()
	srv := startRedisServer(t)
	rdb, err := ParseRedisURL(srv.url())
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	c, reg := newTestCache(t, rdb, "test:cache:dies:", Options{Timeout: 500 * time.Millisecond})
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

	srv.kill()
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
	assert.InDelta(t, 0.0, metricValue(t, reg, "cache_redis_up", nil), 0)

	srv.start() // same port, empty
	// Without a Ping: a probe after the breaker's backoff finds Redis back.
	require.Eventually(t, func() bool {
		get("probe", 1)
		c.WaitIdle()
		return c.Healthy().OK
	}, 10*time.Second, 50*time.Millisecond, "L2 never came back: %+v", c.Healthy())
	assert.InDelta(t, 1.0, metricValue(t, reg, "cache_redis_up", nil), 0)

	_, src = get("after", 1)
	assert.Equal(t, SourceLoad, src)
	c.WaitIdle()
	c.l1.Del("after")
	_, src = get("after", 1)
	assert.Equal(t, SourceL2, src, "L2 used again after Redis returned")
}

func TestPingClosesBreaker(t *testing.T) {
	ctx := context.Background()
	srv := startRedisServer(t)
	rdb, err := ParseRedisURL(srv.url())
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	c, _ := newTestCache(t, rdb, "test:cache:ping:", Options{Timeout: 500 * time.Millisecond})
	c.l2.br.minBackoff = time.Hour // only a Ping can close it

	srv.kill()
	var calls atomic.Int32
	for i := range 5 {
		_, _, err := c.Get(ctx, fmt.Sprintf("k%d", i), atLeast(1), loader(val{Version: 1}, &calls))
		require.NoError(t, err)
	}
	require.NotZero(t, c.l2.br.openUntil.Load(), "breaker open")
	srv.start()
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
