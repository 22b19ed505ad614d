package cache

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// TTL is a bounded LRU whose entries each carry their own expiry, judged by an injected
// clock: the in-process cache for small answers (verified tokens, realm and tenant lookups,
// negative answers) that need no second tier. expirable.LRU has one TTL for all entries and
// reads the wall clock; it is kept only as the memory bound (maxTTL), while correctness comes
// from comparing each entry's expiry with now.
//
// A TTL made by NewTTLSized is bounded in bytes too: each entry's cost (its estimated retained
// size, the cache's bookkeeping included) counts against maxBytes, and adding an entry evicts
// the least recently used ones until the total fits.
type TTL[K comparable, V any] struct {
	lru *expirable.LRU[K, ttlEntry[V]]
	now func() time.Time

	cost     func(V) int64 // nil: no byte bound
	maxBytes int64
	bytes    atomic.Int64 // cost of the entries held; changed under the LRU's lock or addMu
	addMu    sync.Mutex   // orders Add and Remove, so that a replaced entry is counted out once
}

type ttlEntry[V any] struct {
	v       V
	expires time.Time
	cost    int64
}

// TTLEntryOverhead is what the LRU's bookkeeping costs per entry besides the key and value: its
// list element, map slot and expiry bucket link, as measured with golang-lru/v2's expirable LRU.
const TTLEntryOverhead = 160

// NewTTL returns a TTL cache of at most size entries, none kept longer than maxTTL whatever
// its expiry; now == nil means time.Now.
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
	c := &TTL[K, V]{now: now}
	var onEvict expirable.EvictCallback[K, ttlEntry[V]]
	if maxBytes > 0 && cost != nil {
		c.cost, c.maxBytes = cost, maxBytes
		onEvict = func(_ K, e ttlEntry[V]) { c.bytes.Add(-e.cost) }
	}
	c.lru = expirable.NewLRU[K, ttlEntry[V]](size, onEvict, maxTTL)
	return c
}

// Get returns the value of k while it has not expired.
func (c *TTL[K, V]) Get(k K) (V, bool) {
	e, ok := c.lru.Get(k)
	if ok && c.now().Before(e.expires) {
		return e.v, true
	}
	if ok {
		c.Remove(k)
	}
	var zero V
	return zero, false
}

// Add stores v under k until expires, evicting the least recently used entry when full.
// An entry whose cost alone exceeds the byte bound is not stored.
func (c *TTL[K, V]) Add(k K, v V, expires time.Time) {
	if c.cost == nil {
		c.lru.Add(k, ttlEntry[V]{v: v, expires: expires})
		return
	}
	n := c.cost(v)
	c.addMu.Lock()
	defer c.addMu.Unlock()
	// The LRU replaces a value in place without its eviction callback: take the old one out
	// first, so that its cost leaves the total exactly once.
	c.lru.Remove(k)
	if n > c.maxBytes {
		return
	}
	c.bytes.Add(n)
	c.lru.Add(k, ttlEntry[V]{v: v, expires: expires, cost: n})
	for c.bytes.Load() > c.maxBytes {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			break
		}
	}
}

// Remove drops k.
func (c *TTL[K, V]) Remove(k K) {
	if c.cost == nil {
		c.lru.Remove(k)
		return
	}
	c.addMu.Lock()
	c.lru.Remove(k)
	c.addMu.Unlock()
}

// Bytes is the cost of the entries held (0 without a byte bound).
func (c *TTL[K, V]) Bytes() int64 { return c.bytes.Load() }

// Purge drops every entry.
func (c *TTL[K, V]) Purge() { c.lru.Purge() }

// Len is the number of entries held, expired ones not yet dropped included.
func (c *TTL[K, V]) Len() int { return c.lru.Len() }
