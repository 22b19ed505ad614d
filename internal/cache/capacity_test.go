package cache

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/metrictest"
)

// TestL1HoldsMaxCostEntries: with entries of cost 1, L1MaxCost is a number of entries. (It
// once held about 1/57th of that, because ristretto added its own per-entry overhead.)
func TestL1HoldsMaxCostEntries(t *testing.T) {
	const n = 2000
	c, _ := newTestCache(t, nil, "", Options{L1MaxCost: n})
	ctx := context.Background()
	load := func(i int) func(context.Context) (Loaded[val], error) {
		return func(context.Context) (Loaded[val], error) {
			return Loaded[val]{Value: val{Version: 1, Data: fmt.Sprint(i)}, Cost: 1}, nil
		}
	}
	for i := range n * 9 / 10 {
		_, _, err := c.Get(ctx, fmt.Sprint("k", i), atLeast(1), load(i))
		require.NoError(t, err)
	}
	c.WaitIdle()
	hits := 0
	for i := range n * 9 / 10 {
		_, src, err := c.Get(ctx, fmt.Sprint("k", i), atLeast(1), load(i))
		require.NoError(t, err)
		if src == SourceL1 {
			hits++
		}
	}
	assert.GreaterOrEqual(t, hits, n*8/10, "got %d L1 hits of %d entries, want nearly all", hits, n*9/10)
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
