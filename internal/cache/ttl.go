package cache

import (
	"math"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// TTL is a bounded LRU whose entries each carry their own expiry, judged by an injected
// clock: the in-process cache for small answers (verified tokens, realm and tenant lookups,
// negative answers) that need no second tier. It is golang-lru's simplelru under one mutex:
// one list element and one map slot per entry, no expiry buckets and no reaper goroutine. An
// expired entry is dropped when it is read, or as the least recently used when room is needed.
//
// A TTL made by NewTTLSized is bounded in bytes too: each entry's cost (its estimated retained
// size, the cache's bookkeeping included) counts against maxBytes, and adding an entry evicts
// the least recently used ones until the total fits.
type TTL[K comparable, V any] struct {
	now    func() time.Time
	maxTTL time.Duration // <= 0: no bound beyond each entry's own expiry

	cost     func(V) int64 // nil: no byte bound
	maxBytes int64

	mu    sync.Mutex
	lru   *simplelru.LRU[K, ttlEntry[V]]
	bytes int64 // cost of the entries held, under mu
}

type ttlEntry[V any] struct {
	v       V
	expires int64 // Unix nanoseconds: the entry is valid while now is before it
	cost    int64
}

// TTLEntryOverhead is what the cache's bookkeeping costs per entry besides the key and value:
// simplelru's list element (its links, the entry's expiry and cost, and the size-class
// rounding of the element) and the map slot holding the key again and a pointer, at the map's
// average load. Measured by TestTTLEntryOverhead with 32-byte keys and pointer values.
const TTLEntryOverhead = 136

// NewTTL returns a TTL cache of at most size entries (size <= 0: no bound on the count), none
// kept longer than maxTTL whatever its expiry (maxTTL <= 0: no such bound); now == nil means
// time.Now.
func NewTTL[K comparable, V any](size int, maxTTL time.Duration, now func() time.Time) *TTL[K, V] {
	return NewTTLSized[K, V](size, 0, nil, maxTTL, now)
}

// NewTTLSized is NewTTL bounded also in bytes: the entries' costs (cost(v), which should
// include TTLEntryOverhead and the key) never sum to more than maxBytes once an Add returns.
// maxBytes <= 0 or cost == nil bounds the entry count only.
func NewTTLSized[K comparable, V any](size int, maxBytes int64, cost func(V) int64, maxTTL time.Duration, now func() time.Time) *TTL[K, V] {
	if now == nil {
		now = time.Now
	}
	if size <= 0 {
		size = math.MaxInt
	}
	c := &TTL[K, V]{now: now, maxTTL: maxTTL}
	var onEvict simplelru.EvictCallback[K, ttlEntry[V]]
	if maxBytes > 0 && cost != nil {
		c.cost, c.maxBytes = cost, maxBytes
		onEvict = func(_ K, e ttlEntry[V]) { c.bytes -= e.cost } // called under c.mu
	}
	lru, err := simplelru.NewLRU(size, onEvict)
	if err != nil {
		panic(err) // unreachable: size > 0
	}
	c.lru = lru
	return c
}

// Get returns the value of k while it has not expired (and is no further than maxTTL from
// expiring).
func (c *TTL[K, V]) Get(k K) (V, bool) {
	now := unixNano(c.now())
	c.mu.Lock()
	e, ok := c.lru.Get(k)
	// Past its expiry, or further from it than maxTTL: a wall clock set back cannot stretch
	// an entry's life beyond the longest the cache gives.
	if ok && (now >= e.expires || c.maxTTL > 0 && e.expires-now > int64(c.maxTTL)) {
		c.lru.Remove(k)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Add stores v under k until expires (or maxTTL from now, if sooner), evicting the least
// recently used entries when full. It replaces what k held; an entry already expired, or
// whose cost alone exceeds the byte bound, is not stored.
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
	if !now.Before(expires) || n > c.maxBytes && c.cost != nil {
		c.lru.Remove(k)
		return
	}
	// Add replaces a value in place without the eviction callback: take the old cost out here,
	// so that it leaves the total exactly once.
	if old, ok := c.lru.Peek(k); ok {
		c.bytes -= old.cost
	}
	c.bytes += n
	c.lru.Add(k, ttlEntry[V]{v: v, expires: unixNano(expires), cost: n})
	for c.bytes > c.maxBytes && c.cost != nil {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			break
		}
	}
}

// Remove drops k.
func (c *TTL[K, V]) Remove(k K) {
	c.mu.Lock()
	c.lru.Remove(k)
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
	c.lru.Purge()
	c.mu.Unlock()
}

// Len is the number of entries held, expired ones not yet dropped included.
func (c *TTL[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
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
