package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/redistest"
)

func TestClusterServesEverySlotAndFailsOver(t *testing.T) {
	cl := redistest.StartCluster(t)
	rdb, err := cache.ParseRedisURL(cl.URL())
	require.NoError(t, err)
	defer rdb.Close()
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "tenant:{x}:1"} {
		require.NoError(t, rdb.Set(ctx, k, "v", 0).Err())
	}
	old := cl.MasterOf("a")
	cl.Kill(old)
	now := cl.WaitFailover("a", old)
	require.NotEqual(t, old, now)
	require.Eventually(t, func() bool { return rdb.Get(ctx, "a").Val() == "v" }, time.Minute, 50*time.Millisecond)
}
