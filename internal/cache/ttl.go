package cache

import (
	"math"
	"sync"
	"time"
)

// TTL is a bounded cache whose entries each carry their own expiry, judged by an injected
// clock: the in-process cache for small answers (verified tokens, realm and tenant lookups,
// negative answers) that need no second tier. It is one map under one mutex: no list, no
// expiry buckets, no reaper goroutine. An expired entry is dropped when it is read, or first
// when room is needed.
//
// Room is made by sampled LRU, as Redis does: of up to ttlEvictionSample entries the map's
// randomised iteration offers, the least recently used goes (an expired one at once). A cache
// of at most that many entries is therefore exactly LRU; a larger one evicts an entry among
// the least recently used. An exact LRU list (golang-lru's, which this replaced) costs a
// 112-byte list element per entry beside the map slot: for the verified-token cache that was
// a third of a token's retained memory, and every hit moved the element under the lock.
//
// A TTL made by NewTTLSized is bounded in bytes too: each entry's cost (its estimated retained
// size, the cache's bookkeeping included) counts against maxBytes, and adding an entry evicts
// until the total fits.
type TTL[K comparable, V any] struct {
	now    func() time.Time
	maxTTL time.Duration // <= 0: no bound beyond each entry's own expiry
	size   int           // most entries held

	cost     func(V) int64 // nil: no byte bound
	maxBytes int64

	mu    sync.Mutex
	m     map[K]ttlEntry[V]
	tick  uint64 // counts uses: an entry's used is the tick of its last Add or Get
	bytes int64  // cost of the entries held
}

// ttlEntry is what the map holds per key. Its cost is not kept: cost(v) is asked again when
// the entry leaves (cost must give a value the same answer every time).
type ttlEntry[V any] struct {
	v       V
	expires int64 // Unix nanoseconds: the entry is valid while now is before it
	used    uint64
}

// ttlEvictionSample is how many entries an eviction compares.
const ttlEvictionSample = 16

// TTLEntryOverhead is what the cache's bookkeeping costs per entry besides the key and value:
// the map slot's expiry and use tick and the slots the map holds free, which depend on where
// it is between two growths. Measured by TestTTLEntryOverhead with 32-byte keys and pointer
// values between 44 and 91 bytes (98 under the race detector); this is above the upper end,
// so that a byte bound bounds memory.
const TTLEntryOverhead = 112

// NewTTL returns a TTL cache of at most size entries (size <= 0: no bound on the count), none
// kept longer than maxTTL whatever its expiry (maxTTL <= 0: no such bound); now == nil means
// time.Now.
func NewTTL[K comparable, V any](size int, maxTTL time.Duration, now func() time.Time) *TTL[K, V] {
	return NewTTLSized[K, V](size, 0, nil, maxTTL, now)
}

// NewTTLSized is NewTTL bounded also in bytes: the entries' costs (cost(v), which should
// include TTLEntryOverhead and the key, and must not change while v is held) never sum to more
// than maxBytes once an Add returns. maxBytes <= 0 or cost == nil bounds the entry count only.
func NewTTLSized[K comparable, V any](size int, maxBytes int64, cost func(V) int64, maxTTL time.Duration, now func() time.Time) *TTL[K, V] {
	if now == nil {
		now = time.Now
	}
	if size <= 0 {
		size = math.MaxInt
	}
	c := &TTL[K, V]{now: now, maxTTL: maxTTL, size: size, m: map[K]ttlEntry[V]{}}
	if maxBytes > 0 && cost != nil {
		c.cost, c.maxBytes = cost, maxBytes
	}
	return c
}

// Get returns the value of k while it has not expired (and is no further than maxTTL from
// expiring).
func (c *TTL[K, V]) Get(k K) (V, bool) {
	now := unixNano(c.now())
	c.mu.Lock()
	e, ok := c.m[k]
	switch {
	case !ok:
	case c.stale(e, now):
		c.removeLocked(k, e)
		ok = false
	case c.tick-e.used >= uint64(len(c.m))/2:
		// Refreshed only when not among the most recently used half: eviction looks for the
		// least recently used, and a hot entry then costs no map write.
		c.tick++
		e.used = c.tick
		c.m[k] = e
	}
	c.mu.Unlock()
	if !ok {
		var zero V
		return zero, false
	}
	return e.v, true
}

// stale reports whether e is past its expiry at now, or further from it than maxTTL: a wall
// clock set back cannot stretch an entry's life beyond the longest the cache gives.
func (c *TTL[K, V]) stale(e ttlEntry[V], now int64) bool {
	return now >= e.expires || c.maxTTL > 0 && e.expires-now > int64(c.maxTTL)
}

// Add stores v under k until expires (or maxTTL from now, if sooner), evicting when full. It
// replaces what k held; an entry already expired, or whose cost alone exceeds the byte bound,
// is not stored.
func (c *TTL[K, V]) Add(k K, v V, expires time.Time) {
	now := c.now()
	if c.maxTTL > 0 {
		if limit := now.Add(c.maxTTL); limit.Before(expires) {
			expires = limit
		}
	}
	var n int64
	if c.cost != nil {
		n = c.cost(v)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old, had := c.m[k]
	if had {
		c.removeLocked(k, old)
	}
	if !now.Before(expires) || c.cost != nil && n > c.maxBytes {
		return
	}
	c.tick++
	c.m[k] = ttlEntry[V]{v: v, expires: unixNano(expires), used: c.tick}
	c.bytes += n
	for len(c.m) > c.size || c.cost != nil && c.bytes > c.maxBytes {
		c.evictOne(k, unixNano(now))
	}
}

// evictOne removes, of up to ttlEvictionSample entries other than keep, the first stale one
// or else the least recently used. The caller holds c.mu, and keep is not the only entry.
func (c *TTL[K, V]) evictOne(keep K, now int64) {
	var victim K
	var oldest ttlEntry[V]
	found, seen := false, 0
	for k, e := range c.m {
		if k == keep {
			continue
		}
		if c.stale(e, now) {
			victim, oldest, found = k, e, true
			break
		}
		if !found || e.used < oldest.used {
			victim, oldest, found = k, e, true
		}
		if seen++; seen == ttlEvictionSample {
			break
		}
	}
	if found {
		c.removeLocked(victim, oldest)
	}
}

// removeLocked deletes k, which holds e; the caller holds c.mu.
func (c *TTL[K, V]) removeLocked(k K, e ttlEntry[V]) {
	delete(c.m, k)
	if c.cost != nil {
		c.bytes -= c.cost(e.v)
	}
}

// Remove drops k.
func (c *TTL[K, V]) Remove(k K) {
	c.mu.Lock()
	if e, ok := c.m[k]; ok {
		c.removeLocked(k, e)
	}
	c.mu.Unlock()
}

// Bytes is the cost of the entries held (0 without a byte bound).
func (c *TTL[K, V]) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Purge drops every entry.
func (c *TTL[K, V]) Purge() {
	c.mu.Lock()
	clear(c.m)
	c.bytes = 0
	c.mu.Unlock()
}

// Len is the number of entries held, expired ones not yet dropped included.
func (c *TTL[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// unixNano is t in Unix nanoseconds, saturated to the int64 range (past 2262 without maxTTL).
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minUnixNano):
		return math.MinInt64
	case t.After(maxUnixNano):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var minUnixNano, maxUnixNano = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)
