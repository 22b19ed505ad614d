package cache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/redistest"
)

// On a real Redis Cluster a tenant's keys share one slot, and Delete (keys of several slots)
// and DeletePrefix (a SCAN on every master) work.
func TestRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	rdb, err := ParseRedisURL(cl.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	cc := rdb.(*redis.ClusterClient)
	ctx := context.Background()
	const prefix = "test:cache:"
	c, _ := newTestCache(t, rdb, prefix, Options{})

	tenants := []string{"0f1e2d3c-0000-4000-8000-000000000001", "0f1e2d3c-0000-4000-8000-000000000002",
		"0f1e2d3c-0000-4000-8000-000000000003", "0f1e2d3c-0000-4000-8000-000000000004"}
	keys := map[string][]string{}
	slots := map[int64]bool{}
	var calls atomic.Int32
	for _, tn := range tenants {
		tp, err := TenantPrefix(tn)
		require.NoError(t, err)
		slot := cl.KeySlot(prefix + tp)
		slots[slot] = true
		for i := range 20 {
			k, err := TenantUserKey(tn, fmt.Sprintf("user}{%d", i))
			require.NoError(t, err)
			assert.Equal(t, slot, cl.KeySlot(prefix+k), "every key of a tenant is in its slot")
			keys[tn] = append(keys[tn], k)
			_, _, err = c.Get(ctx, k, atLeast(1), loader(val{Version: 1}, &calls))
			require.NoError(t, err)
		}
	}
	require.Greater(t, len(slots), 1, "the tenants span several slots")
	c.WaitIdle()
	require.ElementsMatch(t, all(keys, tenants...), inRedis(t, cc, prefix))

	// Delete takes keys of several slots (several masters) at once.
	c.Delete(ctx, keys[tenants[0]][0], keys[tenants[1]][0], keys[tenants[2]][0])
	c.WaitIdle()
	for _, tn := range tenants[:3] {
		keys[tn] = keys[tn][1:]
	}
	require.ElementsMatch(t, all(keys, tenants...), inRedis(t, cc, prefix))

	// DeletePrefix removes one tenant's keys from whichever master holds them.
	for _, tn := range tenants[:2] {
		tp, err := TenantPrefix(tn)
		require.NoError(t, err)
		c.DeletePrefix(ctx, tp)
	}
	c.WaitIdle()
	assert.ElementsMatch(t, all(keys, tenants[2:]...), inRedis(t, cc, prefix))
}

func all(keys map[string][]string, tenants ...string) []string {
	var out []string
	for _, tn := range tenants {
		out = append(out, keys[tn]...)
	}
	return out
}

// inRedis lists the keys under prefix on every master, without the prefix.
func inRedis(t *testing.T, cc *redis.ClusterClient, prefix string) []string {
	t.Helper()
	var mu sync.Mutex
	var out []string
	require.NoError(t, cc.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
		ks, err := n.Keys(ctx, escapeGlob(prefix)+"*").Result()
		mu.Lock()
		defer mu.Unlock()
		for _, k := range ks {
			out = append(out, k[len(prefix):])
		}
		return err
	}))
	return out
}
