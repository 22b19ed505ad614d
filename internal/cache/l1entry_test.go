package cache

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// l1Footprint fills an L1-only cache with n user entries that all share one value (so only the
// cache's own memory is measured) and returns the heap bytes and objects each entry adds, after
// a GC, with the number of entries L1 holds. Keys are built for each Get and dropped, as on the
// check path, so the bytes of the key an entry keeps are counted.
func l1Footprint(tb testing.TB, n int) (bytesPer, objectsPer float64, held int) {
	tb.Helper()
	ctx := context.Background()
	v := &val{Version: 1, Data: "shared"}
	load := func(context.Context) (Loaded[*val], error) { return Loaded[*val]{Value: v}, nil }
	fresh := func(*val) bool { return true }
	c, err := New[*val](Options{L1MaxCost: 256 << 20, Name: "footprint"}, nil, nil, nil)
	require.NoError(tb, err)
	defer c.Close()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		// A user id like an identity provider's subject (a UUID).
		key, err := TenantUserKey("0f1e2d3c-aaaa-4000-8000-000000000001", fmt.Sprintf("5c0d7e1a-%04x-4b2c-9d3e-%012x", i%0xffff, i))
		require.NoError(tb, err)
		_, _, err = c.Get(ctx, key, fresh, load)
		require.NoError(tb, err)
		if i%1024 == 0 {
			c.WaitIdle() // ristretto drops Sets when its buffer is full
		}
	}
	c.WaitIdle()
	runtime.GC()
	runtime.ReadMemStats(&after)
	c.mu.RLock()
	c.l1.IterValues(func(*l1Entry[*val]) bool { held++; return false })
	c.mu.RUnlock()
	require.Positive(tb, held)
	runtime.KeepAlive(c)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(held),
		float64(after.HeapObjects-before.HeapObjects) / float64(held), held
}

// TestL1EntryFootprint: what one L1 entry costs the heap, measured over 50,000 entries, stays
// within what l1Cost counts for it against the byte budget (so the budget bounds real memory),
// and l1EntryOverhead does not overstate it by much (so the budget is not wasted). It was 293
// bytes and 2.02 objects with ristretto's TTL bookkeeping and whole keys in strings of their
// own; it is about 205 and 1.02 now.
func TestL1EntryFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 50,000 entries")
	}
	const n = 50_000
	bytesPer, objectsPer, held := l1Footprint(t, n)
	key, err := TenantUserKey("0f1e2d3c-aaaa-4000-8000-000000000001", "5c0d7e1a-0000-4b2c-9d3e-000000000000")
	require.NoError(t, err)
	counted := float64(l1Cost(key, 0))
	t.Logf("%d entries held: %.0f heap bytes and %.2f heap objects per L1 entry (key %d bytes); l1Cost counts %.0f", held, bytesPer, objectsPer, len(key), counted)
	assert.GreaterOrEqual(t, held, n*9/10, "most of the entries are held")
	assert.LessOrEqual(t, bytesPer, counted, "an entry costs more heap than the budget counts for it")
	assert.GreaterOrEqual(t, bytesPer, counted/2, "l1EntryOverhead overstates an entry's heap more than twice")
	assert.LessOrEqual(t, objectsPer, 1.1, "an entry with a user's key is one heap object")
}

// TestL1CollisionGuard: an entry ristretto returns for a key is used only when it was stored
// under that very key. A 128-bit hash collision is stood in for by placing one key's entry
// in another key's slot.
func TestL1CollisionGuard(t *testing.T) {
	c, _ := newTestCache(t, nil, "", Options{})
	exp := time.Now().Add(time.Minute).UnixNano()
	require.True(t, c.l1.Set("alice", &l1Entry[val]{key: makeL1Key("mallory"), val: val{Version: 9, Data: "mallory's"}, exp: exp}, 1))
	c.l1.Wait()
	missThenLoad(t, c, "alice", "alice's")
}

// missThenLoad checks that key is not in L1 for PeekL1 nor Get, and that Get loads data.
func missThenLoad(t *testing.T, c *Cache[val], key, data string) {
	t.Helper()
	_, ok := c.PeekL1(key)
	assert.False(t, ok, "%s is not peeked", key)
	var calls atomic.Int32
	got, src, err := c.Get(context.Background(), key, atLeast(1), loader(val{Version: 1, Data: data}, &calls))
	require.NoError(t, err)
	assert.Equal(t, SourceLoad, src)
	assert.Equal(t, data, got.Data)
}

// TestL1EntryLive: an L1 entry is served before its expiry only, and never when it lies
// further ahead than the longest L1 TTL (the wall clock was set back after it was stored).
func TestL1EntryLive(t *testing.T) {
	const maxTTL = time.Minute
	now := time.Now().UnixNano()
	for _, tc := range []struct {
		name string
		exp  int64
		want bool
	}{
		{"before expiry", now + int64(time.Second), true},
		{"exactly maxTTL ahead", now + int64(maxTTL), true},
		{"at expiry", now, false},
		{"past expiry", now - 1, false},
		{"further ahead than maxTTL", now + int64(maxTTL) + 1, false},
	} {
		e := l1Entry[val]{key: makeL1Key("k"), exp: tc.exp}
		assert.Equal(t, tc.want, e.live(now, maxTTL), tc.name)
	}
}

// TestL1ExpiredEntryNotServed: L1 gives ristretto no TTL, so an expired entry may still be in
// its map; it is a miss all the same, and a load replaces it.
func TestL1ExpiredEntryNotServed(t *testing.T) {
	c, _ := newTestCache(t, nil, "", Options{})
	require.True(t, c.l1.Set("k", &l1Entry[val]{key: makeL1Key("k"), val: val{Version: 1, Data: "old"}, exp: time.Now().UnixNano() - 1}, 1))
	c.l1.Wait()
	_, ok := c.l1.Get("k")
	require.True(t, ok, "the expired entry is still in ristretto's map")
	missThenLoad(t, c, "k", "new")
	c.WaitIdle()
	got, ok := c.PeekL1("k")
	require.True(t, ok)
	assert.Equal(t, "new", got.Data)
}

// TestL1Key: an L1 key kept as an interned prefix and its own rest compares, prints and
// matches prefixes exactly like the whole key string.
func TestL1Key(t *testing.T) {
	keys := []string{"", "k", "k1", ":", "a:", ":b", "a:b", "a:bc", "a:b:c", "ab:c", "tenant:{0f1e}:u:YWxpY2U", "tenant:{0f1e}:u:Ym9i",
		"tenant:{0f1f}:u:YWxpY2U", "platform:u:YWxpY2U", "tenant:{0f1e}:s:00ff",
		// own parts that just fit in the entry, and just do not
		"t:" + strings.Repeat("a", l1KeyInline), "t:" + strings.Repeat("a", l1KeyInline-1) + "b",
		"t:" + strings.Repeat("a", l1KeyInline+1), "t:" + strings.Repeat("a", l1KeyInline) + "b"}
	for _, stored := range keys {
		k := makeL1Key(stored)
		assert.Equal(t, stored, k.String())
		for _, asked := range keys {
			assert.Equal(t, stored == asked, k.is(asked), "entry %q asked for %q", stored, asked)
			for i := 0; i <= len(asked); i++ {
				p := asked[:i]
				assert.Equal(t, strings.HasPrefix(stored, p), k.hasPrefix(p), "entry %q, prefix %q", stored, p)
			}
		}
	}
	long := "tenant:{0f1e}:u:" + strings.Repeat("x", 500)
	k := makeL1Key(long)
	assert.True(t, k.is(long))
	assert.False(t, k.is(long[:len(long)-1]+"y"))
}
