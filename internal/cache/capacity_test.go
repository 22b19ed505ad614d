package cache

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/metrictest"
)

// costLoad returns a loader of a value of cost bytes.
func costLoad(i int, cost int64) func(context.Context) (Loaded[val], error) {
	return func(context.Context) (Loaded[val], error) {
		return Loaded[val]{Value: val{Version: 1, Data: fmt.Sprint(i)}, Cost: cost}, nil
	}
}

// l1Hits loads keys k0..k(n-1) into c, then counts how many L1 holds.
func l1Hits(t *testing.T, c *Cache[val], n int, cost int64) int {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		_, _, err := c.Get(ctx, fmt.Sprint("k", i), atLeast(1), costLoad(i, cost))
		require.NoError(t, err)
	}
	c.WaitIdle()
	hits := 0
	for i := range n {
		if _, ok := c.PeekL1(fmt.Sprint("k", i)); ok {
			hits++
		}
	}
	return hits
}

// TestL1HoldsMaxCostBytes: L1MaxCost is bytes, each entry counting its cost and the cache's own
// overhead, so entries that fit the budget stay. (It once held about 1/57th of its capacity,
// because ristretto added its own per-entry overhead to costs counted in entries.)
func TestL1HoldsMaxCostBytes(t *testing.T) {
	const budget, cost = 4 << 20, 1000
	c, _ := newTestCache(t, nil, "", Options{L1MaxCost: budget})
	fit := int(budget / l1Cost("k0000", cost))
	hits := l1Hits(t, c, fit*9/10, cost)
	assert.GreaterOrEqual(t, hits, fit*8/10, "got %d L1 hits of %d entries that fit %d bytes, want nearly all", hits, fit*9/10, budget)
}

// TestL1EvictsBeyondByteBudget: a small byte budget holds no more than its bytes' worth.
func TestL1EvictsBeyondByteBudget(t *testing.T) {
	const budget, cost, n = 64 << 10, 4 << 10, 200
	c, _ := newTestCache(t, nil, "", Options{L1MaxCost: budget})
	hits := l1Hits(t, c, n, cost)
	most := int(budget / l1Cost("k0", cost))
	assert.LessOrEqual(t, hits, most, "got %d entries of %d bytes in L1, want at most %d in %d bytes", hits, cost, most, budget)
	assert.Positive(t, hits, "got nothing kept in L1, want up to %d entries", most)
}

// TestReserveShrinksRoomForEntries: memory set aside for shared parts comes off the budget.
func TestReserveShrinksRoomForEntries(t *testing.T) {
	const budget, cost, n = 256 << 10, 4 << 10, 200
	c, _ := newTestCache(t, nil, "", Options{L1MaxCost: budget})
	c.Reserve(192 << 10)
	hits := l1Hits(t, c, n, cost)
	most := int((budget - 192<<10) / l1Cost("k0", cost))
	assert.LessOrEqual(t, hits, most, "got %d entries in L1 with 192 KiB of 256 KiB reserved, want at most %d", hits, most)
	assert.Positive(t, hits)
}

// TestNumCountersFromBudget: ristretto's admission counters follow the byte budget, not a
// fixed million entries (whose counters alone took about 48 MB).
func TestNumCountersFromBudget(t *testing.T) {
	assert.Equal(t, int64(64<<20/counterEntryBytes*10), numCounters(64<<20))
	assert.Equal(t, int64(1_000), numCounters(1<<10), "got %d for a tiny budget, want the floor", numCounters(1<<10))
	assert.Equal(t, int64(10_000_000), numCounters(1<<40), "got %d for a huge budget, want the cap", numCounters(1<<40))
}

func TestPeekL1(t *testing.T) {
	c, reg := newTestCache(t, nil, "", Options{})
	ctx := context.Background()
	_, ok := c.PeekL1("k")
	assert.False(t, ok, "nothing there yet, and nothing is loaded")
	_, _, err := c.Get(ctx, "k", atLeast(1), func(context.Context) (Loaded[val], error) {
		return Loaded[val]{Value: val{Version: 3, Data: "x"}}, nil
	})
	require.NoError(t, err)
	c.WaitIdle()
	got, ok := c.PeekL1("k")
	require.True(t, ok)
	assert.Equal(t, val{Version: 3, Data: "x"}, got)
	assert.InDelta(t, 0, metrictest.Sum(t, reg, "cache_operations_total", ops("l1", "get", "hit")), 0, "a peek counts nothing")
	c.HitL1()
	assert.InDelta(t, 1, metrictest.Sum(t, reg, "cache_operations_total", ops("l1", "get", "hit")), 0)
}
