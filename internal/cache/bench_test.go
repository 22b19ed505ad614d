package cache

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/redistest"
)

func BenchmarkGetL1Hit(b *testing.B) {
	ctx := context.Background()
	c, _ := newTestCache(b, nil, "", Options{})
	key, err := TenantUserKey("0f1e2d3c-aaaa-4000-8000-000000000001", "alice@example.com")
	require.NoError(b, err)
	var calls atomic.Int32
	load := loader(val{Version: 7, Data: "perms"}, &calls)
	fresh := atLeast(7)
	_, _, err = c.Get(ctx, key, fresh, load)
	require.NoError(b, err)
	c.WaitIdle()
	// Each check builds its key, so a hit compares the key with a copy, never with itself.
	key = strings.Clone(key)

	b.ReportAllocs()
	for b.Loop() {
		_, src, err := c.Get(ctx, key, fresh, load)
		if err != nil || src != SourceL1 {
			b.Fatalf("got %v, %v; want an L1 hit", src, err)
		}
	}
}

func BenchmarkGetL1HitParallel(b *testing.B) {
	ctx := context.Background()
	c, _ := newTestCache(b, nil, "", Options{})
	var calls atomic.Int32
	load := loader(val{Version: 7}, &calls)
	fresh := atLeast(7)
	_, _, err := c.Get(ctx, "k", fresh, load)
	require.NoError(b, err)
	c.WaitIdle()

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, src, err := c.Get(ctx, "k", fresh, load); err != nil || src != SourceL1 {
				b.Errorf("got %v, %v; want an L1 hit", src, err)
				return
			}
		}
	})
}

// BenchmarkGetL2Hit measures a Get served by Redis (L1 emptied before each one, untimed) and
// reports the latency percentiles.
func BenchmarkGetL2Hit(b *testing.B) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(b, "cache")
	c, _ := newTestCache(b, rdb, prefix, Options{})
	var calls atomic.Int32
	load := loader(val{Version: 7, Data: "perms"}, &calls)
	fresh := atLeast(7)
	_, _, err := c.Get(ctx, "k", fresh, load)
	require.NoError(b, err)
	c.WaitIdle()

	lat := make([]time.Duration, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		c.l1.Wait()   // the previous promotion has landed ...
		c.l1.Del("k") // ... and is removed
		b.StartTimer()
		start := time.Now()
		_, src, err := c.Get(ctx, "k", fresh, load)
		lat = append(lat, time.Since(start))
		if err != nil || src != SourceL2 {
			b.Fatalf("got %v, %v; want an L2 hit", src, err)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}
