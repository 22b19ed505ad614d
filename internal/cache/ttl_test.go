package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/memtest"
)

// The byte bound evicts the least recently used entries once their costs exceed it, counts a
// replaced or removed entry out exactly once, and refuses an entry larger than the bound.
func TestTTLByteBoundEvicts(t *testing.T) {
	now := time.Unix(1_000, 0)
	c := NewTTLSized[string, string](1000, 100, func(v string) int64 { return int64(len(v)) }, time.Hour, func() time.Time { return now })
	later := now.Add(time.Minute)
	for i := range 5 {
		c.Add(fmt.Sprint("k", i), string(make([]byte, 30)), later)
		assert.LessOrEqual(t, c.Bytes(), int64(100), "after adding k%d", i)
	}
	assert.Equal(t, 3, c.Len(), "got %d entries of 30 bytes under a 100-byte bound, want 3", c.Len())
	assert.Equal(t, int64(90), c.Bytes())
	for _, k := range []string{"k0", "k1"} {
		_, ok := c.Get(k)
		assert.False(t, ok, "got %s, the least recently used, kept past the byte bound", k)
	}
	_, ok := c.Get("k2") // k2 becomes the most recently used: k3 goes next
	require.True(t, ok)

	c.Add("k2", string(make([]byte, 50)), later) // replaced: 30 out, 50 in
	assert.LessOrEqual(t, c.Bytes(), int64(100))
	_, ok = c.Get("k3")
	assert.False(t, ok, "got k3 kept although the larger k2 needed its room")
	assert.Equal(t, int64(80), c.Bytes(), "got %d bytes counted for k2 (50) and k4 (30)", c.Bytes())

	c.Remove("k4")
	assert.Equal(t, int64(50), c.Bytes())
	c.Add("huge", string(make([]byte, 101)), later)
	_, ok = c.Get("huge")
	assert.False(t, ok, "got an entry larger than the whole bound stored")
	assert.Equal(t, int64(50), c.Bytes())

	now = later // k2 expires: reading it drops it and its cost
	_, ok = c.Get("k2")
	assert.False(t, ok)
	assert.Zero(t, c.Bytes())
}

// Each entry is judged by its own expiry on the injected clock, never kept past maxTTL, and the
// least recently used entry goes first when the count is full.
func TestTTLExpiryAndLRU(t *testing.T) {
	now := time.Unix(1_000, 0)
	c := NewTTL[string, int](2, time.Minute, func() time.Time { return now })
	c.Add("short", 1, now.Add(10*time.Second))
	c.Add("long", 2, now.Add(time.Hour)) // held for maxTTL only
	assert.Equal(t, 2, c.Len())

	now = now.Add(10 * time.Second)
	_, ok := c.Get("short")
	assert.False(t, ok, "got an entry at its expiry")
	assert.Equal(t, 1, c.Len(), "got the expired entry kept after it was read")
	v, ok := c.Get("long")
	assert.True(t, ok)
	assert.Equal(t, 2, v)
	now = now.Add(50 * time.Second)
	_, ok = c.Get("long")
	assert.False(t, ok, "got an entry kept past maxTTL")

	c.Add("a", 1, now.Add(time.Second))
	c.Add("b", 2, now.Add(time.Second))
	_, ok = c.Get("a") // a becomes the most recently used: b goes next
	require.True(t, ok)
	c.Add("c", 3, now.Add(time.Second))
	_, ok = c.Get("b")
	assert.False(t, ok, "got b kept although it was the least recently used")
	for k, want := range map[string]int{"a": 1, "c": 3} {
		v, ok := c.Get(k)
		assert.True(t, ok, "got %s dropped", k)
		assert.Equal(t, want, v)
	}

	c.Add("a", 10, now.Add(time.Second)) // replaced
	v, _ = c.Get("a")
	assert.Equal(t, 10, v)
	c.Add("a", 11, now) // already expired: not stored, and the old value is gone too
	_, ok = c.Get("a")
	assert.False(t, ok, "got a value kept after an Add that replaced it with an expired one")

	c.Remove("c")
	_, ok = c.Get("c")
	assert.False(t, ok)
	c.Add("d", 4, now.Add(time.Second))
	c.Purge()
	assert.Zero(t, c.Len())
}

// TestTTLClockSetBack: an entry is never served further from its expiry than maxTTL, so a
// wall clock set back (by an hour here) cannot keep a verified token or a tenant answer
// beyond the longest the cache gives.
func TestTTLClockSetBack(t *testing.T) {
	now := time.Unix(10_000, 0)
	c := NewTTL[string, int](10, time.Minute, func() time.Time { return now })
	c.Add("k", 1, now.Add(time.Hour)) // held for maxTTL: until now+1m
	_, ok := c.Get("k")
	require.True(t, ok)
	now = now.Add(-time.Hour)
	_, ok = c.Get("k")
	assert.False(t, ok, "got an entry served an hour and a minute before its expiry, beyond maxTTL")
	assert.Zero(t, c.Len(), "got the entry kept")
}

// A zero size bounds nothing; the byte bound then still holds.
func TestTTLUnboundedCount(t *testing.T) {
	now := time.Unix(1_000, 0)
	c := NewTTLSized[int, int](0, 1000, func(int) int64 { return 10 }, time.Hour, func() time.Time { return now })
	for i := range 150 {
		c.Add(i, i, now.Add(time.Minute))
	}
	assert.Equal(t, 100, c.Len())
	assert.Equal(t, int64(1000), c.Bytes())
	c.Purge()
	assert.Zero(t, c.Bytes(), "got bytes counted after Purge")
}

// TTLEntryOverhead is what an entry of 32-byte key and pointer value really costs beyond them,
// measured as live heap at several sizes: the map grows in steps, so the bookkeeping per entry
// ranges from about 44 bytes (a full map) to about 91 (one just grown; 98 under the race
// detector). The constant is the
// upper end, so that a byte bound built on it bounds memory, and not far above the lower.
// There is no heap object per entry: the map's storage is all.
func TestTTLEntryOverhead(t *testing.T) {
	now := time.Unix(1_000, 0)
	v := new(int)
	for _, n := range []int{5_000, 30_000, 50_000, 100_000} {
		bytes, objects := memtest.Retained(func() any {
			c := NewTTLSized[[sha256.Size]byte, *int](n, 1<<40, func(*int) int64 { return 1 }, time.Hour, func() time.Time { return now })
			for i := range n {
				var k [sha256.Size]byte
				binary.LittleEndian.PutUint64(k[:], uint64(i))
				c.Add(k, v, now.Add(time.Minute))
			}
			return c
		})
		perEntry, perEntryObjects := float64(bytes)/float64(n), float64(objects)/float64(n)
		overhead := perEntry - sha256.Size - float64(unsafe.Sizeof(v))
		t.Logf("%d entries: %.1f bytes each (%.1f beyond key and value), %.3f heap objects", n, perEntry, overhead, perEntryObjects)
		assert.LessOrEqual(t, overhead, float64(TTLEntryOverhead),
			"%d entries: got %.1f bytes of bookkeeping per entry, more than TTLEntryOverhead (%d)", n, overhead, TTLEntryOverhead)
		assert.Greater(t, overhead, float64(TTLEntryOverhead)/3,
			"%d entries: got %.1f bytes of bookkeeping per entry, far below TTLEntryOverhead (%d)", n, overhead, TTLEntryOverhead)
		assert.Less(t, perEntryObjects, 0.01, "%d entries: got %.3f heap objects per entry", n, perEntryObjects)
	}
}

// Past ttlEvictionSample entries eviction is sampled: what goes is among the least recently
// used. An entry used since is evicted only when a sample held no older one, at most
// 0.75^16 ≈ 1% of evictions here; the test allows 5% of them, far beyond chance.
func TestTTLSampledEviction(t *testing.T) {
	now := time.Unix(1_000, 0)
	const n = 1000
	c := NewTTL[int, int](n, time.Hour, func() time.Time { return now })
	for i := range n {
		c.Add(i, i, now.Add(time.Minute))
	}
	for i := n / 2; i < n; i++ { // the newer half is used again
		_, ok := c.Get(i)
		require.True(t, ok)
	}
	for i := n; i < n+n/4; i++ { // a quarter more: as many evictions
		c.Add(i, i, now.Add(time.Minute))
	}
	assert.Equal(t, n, c.Len())
	lost := 0
	for i := n / 2; i < n+n/4; i++ {
		if _, ok := c.Get(i); !ok {
			lost++
		}
	}
	assert.LessOrEqual(t, lost, n/4/20, "got %d of the %d entries used since evicted, of %d evictions", lost, n/2+n/4, n/4)

	// Up to ttlEvictionSample entries the sample is all of them: expired ones go first.
	c = NewTTL[int, int](8, time.Hour, func() time.Time { return now })
	for i := range 8 {
		c.Add(i, i, now.Add(time.Duration(1+i%2)*time.Minute)) // odd ones live longer
	}
	now = now.Add(90 * time.Second)
	for i := range 4 {
		c.Add(1000+i, i, now.Add(time.Minute))
	}
	for i := 1; i < 8; i += 2 {
		_, ok := c.Get(i)
		assert.True(t, ok, "got %d, live, evicted while expired entries were held", i)
	}
}

func BenchmarkTTLGetHit(b *testing.B) {
	c := NewTTL[[sha256.Size]byte, *int](1000, time.Hour, nil)
	var k [sha256.Size]byte
	c.Add(k, new(int), time.Now().Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get(k); !ok {
			b.Fatal("miss")
		}
	}
}
