package cache

import (
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// TTL is a bounded LRU whose entries each carry their own expiry, judged by an injected
// clock: the in-process cache for small answers (verified tokens, realm and tenant lookups,
// negative answers) that need no second tier. expirable.LRU has one TTL for all entries and
// reads the wall clock; it is kept only as the memory bound (maxTTL), while correctness comes
// from comparing each entry's expiry with now.
type TTL[K comparable, V any] struct {
	lru *expirable.LRU[K, ttlEntry[V]]
	now func() time.Time
}

type ttlEntry[V any] struct {
	v       V
	expires time.Time
}

// NewTTL returns a TTL cache of at most size entries, none kept longer than maxTTL whatever
// its expiry; now == nil means time.Now.
func NewTTL[K comparable, V any](size int, maxTTL time.Duration, now func() time.Time) *TTL[K, V] {
	if now == nil {
		now = time.Now
	}
	return &TTL[K, V]{lru: expirable.NewLRU[K, ttlEntry[V]](size, nil, maxTTL), now: now}
}

// Get returns the value of k while it has not expired.
func (c *TTL[K, V]) Get(k K) (V, bool) {
	e, ok := c.lru.Get(k)
	if ok && c.now().Before(e.expires) {
		return e.v, true
	}
	if ok {
		c.lru.Remove(k)
	}
	var zero V
	return zero, false
}

// Add stores v under k until expires, evicting the least recently used entry when full.
func (c *TTL[K, V]) Add(k K, v V, expires time.Time) {
	c.lru.Add(k, ttlEntry[V]{v: v, expires: expires})
}

// Remove drops k.
func (c *TTL[K, V]) Remove(k K) { c.lru.Remove(k) }

// Purge drops every entry.
func (c *TTL[K, V]) Purge() { c.lru.Purge() }

// Len is the number of entries held, expired ones not yet dropped included.
func (c *TTL[K, V]) Len() int { return c.lru.Len() }
