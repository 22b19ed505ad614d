package authn

import (
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// ttlCache is a bounded LRU whose entries each carry their own expiry,
// judged by the injected clock. expirable.LRU has one TTL for all entries
// and reads the wall clock; it is kept only as the memory bound (maxTTL),
// while correctness comes from comparing each entry's expiry with now.
type ttlCache[K comparable, V any] struct {
	lru *expirable.LRU[K, ttlEntry[V]]
	now func() time.Time
}

type ttlEntry[V any] struct {
	v       V
	expires time.Time
}

func newTTLCache[K comparable, V any](size int, maxTTL time.Duration, now func() time.Time) *ttlCache[K, V] {
	return &ttlCache[K, V]{lru: expirable.NewLRU[K, ttlEntry[V]](size, nil, maxTTL), now: now}
}

func (c *ttlCache[K, V]) get(k K) (V, bool) {
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

func (c *ttlCache[K, V]) add(k K, v V, expires time.Time) {
	c.lru.Add(k, ttlEntry[V]{v: v, expires: expires})
}

func (c *ttlCache[K, V]) remove(k K) { c.lru.Remove(k) }

func (c *ttlCache[K, V]) purge() { c.lru.Purge() }
