package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Defaults for Options.
const (
	DefaultL1MaxCost = 64 << 20
	DefaultL1TTL     = 5 * time.Minute
	DefaultL2TTL     = 10 * time.Minute
	DefaultPrefix    = "neoauthz:"
	DefaultName      = "default"
	DefaultTimeout   = 50 * time.Millisecond
)

var (
	// ErrStaleLoad is returned by Get when the loader twice returned a value the caller's fresh
	// predicate rejects: the data kept changing while it was read. Nothing was cached; the caller
	// should fail closed (or retry later) rather than decide on old data.
	ErrStaleLoad = errors.New("cache: loaded value is older than the newest known version")
	// ErrInvalidKey is returned by Get for an empty key. An empty key is what a failed key
	// helper leaves behind, and caching under it would share one entry between unrelated users.
	ErrInvalidKey = errors.New("cache: empty key")
)

// Codec turns values into bytes for Redis.
type Codec[V any] interface {
	Marshal(V) ([]byte, error)
	Unmarshal([]byte) (V, error)
}

// SharedCodec is a Codec for values made of parts many values share (the compiled parts of a
// permission set: one per role assignment, shared by every user of the tenant who holds it).
// Redis then stores each part once, under a key in the entry's hash slot (SharedKey), and each
// entry only names its parts.
type SharedCodec[V any] interface {
	// Marshal encodes v's own part, which names its shared parts. (Unmarshal is not used.)
	Codec[V]
	// Shared returns v's shared parts: each one's id (lowercase hex) and encoding.
	Shared(v V) []SharedPart
	// UnmarshalShared decodes an entry written by Marshal and returns it with its L1 cost
	// (its own part: shared parts are counted once, with Reserve). fetch reads shared parts'
	// bytes from Redis, in the order of ids; it is to be called at most once, only with the
	// parts not already in memory, and returns an error wrapping ErrSharedMissing when Redis
	// does not have one of them. Fetched parts that are not what their ids name are reported
	// with an error wrapping a CorruptShared, and Redis then drops them.
	UnmarshalShared(b []byte, fetch func(ids []string) ([][]byte, error)) (V, int64, error)
}

// SharedPart is one shared part of a value: its id (lowercase hex) and encoding.
type SharedPart struct {
	ID   string
	Data []byte
}

// ErrSharedMissing is what SharedCodec's fetch returns (wrapped) for a shared part Redis does
// not hold: the entry is an L2 miss.
var ErrSharedMissing = errors.New("cache: shared part not in Redis")

// CorruptShared is what an UnmarshalShared error wraps when fetched shared parts are not what
// their ids name (their bytes fail the id's check). The entry is a miss, and the parts are
// deleted from Redis: a part is written with SET NX, which never replaces it, and each use
// extends its life, so a corrupt part would otherwise stay a miss for every entry naming it.
type CorruptShared interface {
	error
	CorruptSharedIDs() []string
}

// Options configures a Cache. Zero fields take the Default* values.
type Options struct {
	// L1MaxCost bounds the in-process tier, in bytes: each entry counts its Loaded.Cost (the
	// value's retained size) plus the cache's own per-entry overhead (l1EntryOverhead and the
	// key). Ristretto's admission counters are sized from it too (numCounters).
	L1MaxCost int64
	// L1TTL is the longest an entry lives in process.
	L1TTL time.Duration
	// L2TTL is the longest an entry lives in Redis.
	L2TTL time.Duration
	// Prefix is put before every Redis key. Caches sharing a Redis need different prefixes
	// (e.g. "neoauthz:permset:"): they hold different types, and DeletePrefix works under it.
	// It must not contain '{' or '}': Redis Cluster hashes the first {...} of a key, and the
	// key helpers rely on theirs to keep a tenant in one slot.
	Prefix string
	// Name is the value of the "cache" label on the metrics (e.g. "permset").
	Name string
	// Timeout bounds each Redis operation; a slow Redis must not slow checks much.
	Timeout time.Duration
}

func (o Options) withDefaults() (Options, error) {
	if o.L1MaxCost == 0 {
		o.L1MaxCost = DefaultL1MaxCost
	}
	if o.L1TTL == 0 {
		o.L1TTL = DefaultL1TTL
	}
	if o.L2TTL == 0 {
		o.L2TTL = DefaultL2TTL
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	switch {
	case o.L1MaxCost < 0:
		return o, errors.New("cache: L1MaxCost must not be negative")
	case o.L1TTL < 0, o.L2TTL < 0:
		return o, errors.New("cache: TTLs must not be negative")
	case o.Timeout < 0:
		return o, errors.New("cache: Timeout must not be negative")
	case strings.ContainsAny(o.Prefix, "{}"):
		return o, errors.New("cache: Prefix must not contain '{' or '}' (it would change Redis Cluster hash slots)")
	}
	return o, nil
}

// Loaded is what a loader returns.
type Loaded[V any] struct {
	Value V
	// TTL shortens the entry's life below the tier TTLs (e.g. the set's earliest expiry, or a
	// short TTL for an unknown user); 0 means the tier defaults, and it is capped by them. A
	// negative TTL returns the value without caching it anywhere.
	TTL time.Duration
	// Cost is the bytes the value retains, counted against Options.L1MaxCost besides the
	// cache's own per-entry overhead. Memory several values share should be counted by one
	// of them (see SharedCodec).
	Cost int64
}

// Source tells where Get found its value.
type Source uint8

// Sources of a value; the zero Source means none (Get failed before looking anywhere).
const (
	SourceL1 Source = iota + 1
	SourceL2
	SourceLoad
)

func (s Source) String() string {
	switch s {
	case SourceL1:
		return "l1"
	case SourceL2:
		return "l2"
	case SourceLoad:
		return "load"
	}
	return "none"
}

// entry is a value on its way into a tier: loaded, or read from Redis.
type entry[V any] struct {
	key  string
	val  V
	exp  time.Time // when the entry's TTL ends; carried into Redis so a promotion keeps it
	cost int64
}

// l1Entry is what L1 holds: one heap object, key included (see l1Key). (Held by value in
// ristretto's map it would not be an object of its own, but every hit would then copy it
// through ristretto's generic Get, which made hits slower.) The key is kept to rule out
// ristretto hash collisions: ristretto stores by 128-bit hash, and a collision would hand one
// user's permissions to another. The expiry is checked on every read
// (live): ristretto is given no TTL, which spares its per-entry expiry buckets; an expired
// entry stays until a Set replaces it or the byte budget evicts it, and is never returned.
type l1Entry[V any] struct {
	key l1Key
	val V
	exp int64 // when the entry's TTL ends, in Unix nanoseconds
}

// l1Key is an L1 entry's key, whole, in two parts: up to and including its last ':' (a tenant's
// "tenant:{<id>}:u:", which its users' keys share), interned once per process, and the rest,
// the entry's own part, held in the entry itself when it fits (so a typical entry is one heap
// object), else in a string of its own.
type l1Key struct {
	prefix unique.Handle[string]
	long   string // the own part when longer than l1KeyInline
	n      uint8  // else its length in buf
	buf    [l1KeyInline]byte
}

// l1KeyInline is how long an own part an entry holds in itself: a Keycloak subject (a UUID)
// encodes to 48 characters of base64url.
const l1KeyInline = 48

func makeL1Key(key string) l1Key {
	i := strings.LastIndexByte(key, ':') + 1
	k := l1Key{prefix: unique.Make(key[:i])}
	if rest := key[i:]; len(rest) <= l1KeyInline {
		k.n = uint8(copy(k.buf[:], rest))
	} else {
		k.long = strings.Clone(rest) // key[i:] would keep the caller's whole key alive
	}
	return k
}

// is reports whether k is key, byte for byte. It runs on every hit: lengths first, then the
// own part, which tells users apart, then the prefix.
func (k *l1Key) is(key string) bool {
	p := k.prefix.Value()
	if k.long != "" {
		return len(key) == len(p)+len(k.long) && key[len(p):] == k.long && key[:len(p)] == p
	}
	return len(key) == len(p)+int(k.n) && key[len(p):] == string(k.buf[:k.n]) && key[:len(p)] == p
}

func (k *l1Key) hasPrefix(prefix string) bool {
	p := k.prefix.Value()
	if len(prefix) <= len(p) {
		return strings.HasPrefix(p, prefix)
	}
	if !strings.HasPrefix(prefix, p) {
		return false
	}
	q := prefix[len(p):]
	if k.long != "" {
		return strings.HasPrefix(k.long, q)
	}
	return len(q) <= int(k.n) && string(k.buf[:len(q)]) == q
}

func (k *l1Key) String() string {
	if k.long != "" {
		return k.prefix.Value() + k.long
	}
	return k.prefix.Value() + string(k.buf[:k.n])
}

// live reports whether e may be returned at now (Unix nanoseconds): before its expiry, and no
// further from it than maxTTL, so a wall clock set back cannot stretch an entry's life
// beyond the longest TTL L1 gives.
func (e *l1Entry[V]) live(now int64, maxTTL time.Duration) bool {
	return now < e.exp && e.exp-now <= int64(maxTTL)
}

// Cache is a generic two-tier cache; see the package documentation for its contract.
type Cache[V any] struct {
	opts  Options
	codec Codec[V]
	m     *metrics
	sf    singleflight.Group

	// mu guards the L1 and the write queue against Close: ristretto panics when Set or Del race
	// with its Close, so operations hold mu.RLock and Close takes mu.Lock.
	mu     sync.RWMutex
	closed bool
	l1     *ristretto.Cache[string, *l1Entry[V]]

	l2 *redisTier[V] // nil when no Redis is configured
}

// New returns a cache. rdb may be nil for an L1-only cache; reg may be nil for unregistered
// metrics. New does not fail when Redis is down: it probes it once (within Options.Timeout) to
// set the initial health and carries on.
func New[V any](opts Options, rdb redis.UniversalClient, codec Codec[V], reg prometheus.Registerer) (*Cache[V], error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if rdb != nil && codec == nil {
		return nil, errors.New("cache: a codec is required with Redis")
	}
	m, err := newMetrics(reg, opts.Name, rdb != nil)
	if err != nil {
		return nil, err
	}
	l1, err := ristretto.NewCache(&ristretto.Config[string, *l1Entry[V]]{
		NumCounters: numCounters(opts.L1MaxCost),
		MaxCost:     opts.L1MaxCost,
		BufferItems: 64, // ristretto's recommended value
		// setL1 counts ristretto's per-entry memory in l1EntryOverhead, with the rest of ours.
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("cache: L1: %w", err)
	}
	c := &Cache[V]{opts: opts, codec: codec, m: m, l1: l1}
	if rdb != nil {
		c.l2 = newRedisTier(rdb, opts, codec, m)
		_ = c.l2.ping(context.Background()) // bounded by Options.Timeout
	}
	return c, nil
}

// Sizing of L1's fixed and per-entry memory.
const (
	// counterEntryBytes is the entry size numCounters assumes. Ristretto advises ten counters
	// per entry the cache holds when full; its sketch and doorkeeper take about 5 bytes per
	// counter, so a budget B costs about B/20 of fixed memory. Smaller entries than assumed
	// mean fewer counters per entry, which makes admission a little less precise, not wrong.
	counterEntryBytes = 1024
	// l1EntryOverhead is what one L1 entry costs besides its value (and the own part of a key
	// too long to be held in the entry): our l1Entry (96 bytes with a pointer value), the
	// slot of ristretto's store map (56 bytes) and of its cost map (16 bytes), at the maps'
	// load factor. Measured (TestL1EntryFootprint) at 205 bytes with 50,000 entries and 204
	// to 250 bytes between 5,000 and 100,000 as the maps grow in steps; this is the upper end,
	// so the budget bounds real memory.
	l1EntryOverhead = 256
)

// numCounters sizes ristretto's admission counters from the byte budget: ten per entry of
// counterEntryBytes that fits, within bounds.
func numCounters(maxCost int64) int64 {
	return min(max(maxCost/counterEntryBytes*10, 1_000), 10_000_000)
}

// l1Cost is what an entry counts against L1MaxCost: its cost, the overhead, and its key's own
// part (after the last ':', see l1Key) when the entry cannot hold it in itself.
func l1Cost(key string, cost int64) int64 {
	n := int64(0)
	if own := len(key) - strings.LastIndexByte(key, ':') - 1; own > l1KeyInline {
		n = int64(own+15) &^ 15 // its allocation's size class, near enough
	}
	return max(cost, 0) + l1EntryOverhead + n
}

// Get returns a value for key that fresh accepts: from L1, else from Redis (promoting it to
// L1), else from load. Concurrent Gets of one key share one load; a caller whose predicate
// rejects the shared result loads again itself rather than receive it. A loaded value that
// fresh rejects is loaded once more, then reported as ErrStaleLoad; it is never stored.
//
// fresh is called on every hit, so it must be cheap (a version comparison). load runs under
// the first caller's values and deadline but not its cancellation, since others may share
// it; like any code run by singleflight.DoChan it must not panic.
func (c *Cache[V]) Get(ctx context.Context, key string, fresh func(V) bool, load func(ctx context.Context) (Loaded[V], error)) (V, Source, error) {
	var zero V
	if key == "" {
		return zero, 0, ErrInvalidKey
	}
	if e, ok := c.getL1(key); ok {
		if fresh(e.val) {
			c.m.l1Hit.Inc()
			return e.val, SourceL1, nil
		}
		// Left in place: a newer value for the key will replace it, and deleting here could
		// remove a fresh value another goroutine just stored.
		c.m.l1Stale.Inc()
	} else {
		c.m.l1Miss.Inc()
	}
	if c.l2 != nil {
		if e, ok := c.l2.get(ctx, key, fresh); ok {
			c.setL1(e)
			return e.val, SourceL2, nil
		}
	}
	v, err := c.loadShared(ctx, key, fresh, load)
	return v, SourceLoad, err
}

// PeekL1 returns key's value from the in-process tier without loading, touching Redis or
// counting anything: the warm path of a caller that can judge freshness without a closure. A
// caller that accepts the value reports it with HitL1; otherwise it calls Get.
func (c *Cache[V]) PeekL1(key string) (V, bool) {
	if e, ok := c.getL1(key); ok {
		return e.val, true
	}
	var zero V
	return zero, false
}

// HitL1 counts a value from PeekL1 that the caller accepted.
func (c *Cache[V]) HitL1() { c.m.l1Hit.Inc() }

func (c *Cache[V]) getL1(key string) (*l1Entry[V], bool) {
	c.mu.RLock()
	e, ok := c.l1.Get(key)
	c.mu.RUnlock()
	if !ok || !e.key.is(key) || !e.live(time.Now().UnixNano(), c.opts.L1TTL) {
		return nil, false
	}
	return e, true
}

func (c *Cache[V]) setL1(e *entry[V]) {
	// The entry keeps e's expiry (a promotion from Redis keeps the Redis entry's), capped by
	// L1TTL.
	now := time.Now()
	exp := min(e.exp.UnixNano(), now.Add(c.opts.L1TTL).UnixNano())
	if exp <= now.UnixNano() {
		return
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return
	}
	// ristretto applies Sets later from a buffer (and may drop them), which is fine: the
	// value is checked with fresh whenever it is read.
	if c.l1.Set(e.key, &l1Entry[V]{key: makeL1Key(e.key), val: e.val, exp: exp}, l1Cost(e.key, e.cost)) {
		c.m.l1SetOK.Inc()
	} else {
		c.m.l1SetDropped.Inc()
	}
}

// loadShared runs load once for all concurrent callers of key.
func (c *Cache[V]) loadShared(ctx context.Context, key string, fresh func(V) bool, load func(context.Context) (Loaded[V], error)) (V, error) {
	var zero V
	led := false
	ch := c.sf.DoChan(key, func() (any, error) {
		led = true
		// The load is shared, so the first caller's cancellation must not fail the others;
		// its deadline still bounds the load. Values (trace, logger) are kept.
		lctx, cancel := detach(ctx)
		defer cancel()
		return c.loadFresh(lctx, key, fresh, load)
	})
	var r singleflight.Result
	select {
	case r = <-ch:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	v, _ := r.Val.(V) // a nil interface V arrives as a nil any
	if led {
		return v, r.Err
	}
	switch {
	case r.Err == nil && fresh(v):
		return v, nil
	case r.Err != nil && !errors.Is(r.Err, ErrStaleLoad):
		return zero, r.Err
	}
	// The shared load was fresh enough for its leader but not for this caller (which knows a
	// newer version, e.g. from a consistency token), or stale for the leader and perhaps not for
	// us: load again, alone.
	return c.loadFresh(ctx, key, fresh, load)
}

// loadFresh calls load until it returns a value fresh accepts (two tries), stores it, and
// returns it.
func (c *Cache[V]) loadFresh(ctx context.Context, key string, fresh func(V) bool, load func(context.Context) (Loaded[V], error)) (V, error) {
	var zero V
	for range 2 {
		start := time.Now()
		l, err := load(ctx)
		c.m.loadDuration.Observe(time.Since(start).Seconds())
		if err != nil {
			c.m.loadErr.Inc()
			return zero, err
		}
		if fresh(l.Value) {
			c.m.loadOK.Inc()
			c.store(key, l)
			return l.Value, nil
		}
		c.m.loadStale.Inc()
	}
	return zero, ErrStaleLoad
}

func (c *Cache[V]) store(key string, l Loaded[V]) {
	if l.TTL < 0 {
		return
	}
	now := time.Now()
	l1TTL, l2TTL := c.opts.L1TTL, c.opts.L2TTL
	if l.TTL > 0 {
		l1TTL, l2TTL = min(l1TTL, l.TTL), min(l2TTL, l.TTL)
	}
	c.setL1(&entry[V]{key: key, val: l.Value, exp: now.Add(l1TTL), cost: l.Cost})
	if c.l2 != nil {
		c.mu.RLock()
		if !c.closed {
			c.l2.enqueueSet(&entry[V]{key: key, val: l.Value, exp: now.Add(l2TTL), cost: l.Cost})
		}
		c.mu.RUnlock()
	}
}

// detach returns a context that keeps ctx's values and deadline but not its cancellation.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	d := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(d, dl)
	}
	return context.WithCancel(d)
}

// Reserve sets aside n bytes of the L1 budget for memory the entries share but do not count
// themselves (the shared parts of a SharedCodec's values): entries then have L1MaxCost - n,
// and no less than an eighth of it. Shrinking takes effect as the next entries are stored.
func (c *Cache[V]) Reserve(n int64) {
	room := max(c.opts.L1MaxCost-max(n, 0), c.opts.L1MaxCost/8)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.closed && c.l1.MaxCost() != room {
		c.l1.UpdateMaxCost(room)
	}
}

// Delete removes keys from L1 and (best effort, within Options.Timeout) from Redis. It only
// frees memory: a stale value that survives is still never returned.
func (c *Cache[V]) Delete(ctx context.Context, keys ...string) {
	c.mu.RLock()
	if !c.closed {
		for _, k := range keys {
			c.l1.Del(k)
		}
	}
	c.mu.RUnlock()
	c.m.l1Delete.Add(float64(len(keys)))
	if c.l2 != nil && len(keys) > 0 {
		c.l2.del(ctx, keys)
	}
}

// DeletePrefix removes every key starting with prefix (all keys when prefix is empty): in L1
// now, by walking ristretto's values (each entry carries its key, so no separate index is
// kept; Sets still in ristretto's buffer may survive), and in Redis in the background with
// SCAN and UNLINK on every master, best effort. Like Delete, it only frees memory.
func (c *Cache[V]) DeletePrefix(ctx context.Context, prefix string) {
	c.mu.RLock()
	if !c.closed {
		c.l1.Wait() // apply buffered Sets first so fewer stale entries slip through
		var keys []string
		c.l1.IterValues(func(e *l1Entry[V]) bool {
			if e.key.hasPrefix(prefix) {
				keys = append(keys, e.key.String())
			}
			return false
		})
		// Del outside IterValues: it holds a shard's read lock.
		for _, k := range keys {
			c.l1.Del(k)
		}
		c.m.l1Delete.Add(float64(len(keys)))
		if c.l2 != nil {
			c.l2.deletePrefix(ctx, prefix)
		}
	}
	c.mu.RUnlock()
}

// Health is the state of the Redis tier.
type Health struct {
	// Enabled is false when the cache has no Redis; OK and Err are then meaningless.
	Enabled bool
	// OK is false after a failed Redis operation, until one succeeds again.
	OK bool
	// Err is the last Redis error while not OK.
	Err string
	// Latency is the duration of the last successful Redis operation.
	Latency time.Duration
}

// Healthy reports the state of the Redis tier, without contacting Redis.
func (c *Cache[V]) Healthy() Health {
	if c.l2 == nil {
		return Health{}
	}
	return c.l2.br.health()
}

// Ping checks Redis now, bypassing the circuit breaker, and updates Healthy; a success closes
// the breaker. It returns nil when no Redis is configured.
func (c *Cache[V]) Ping(ctx context.Context) error {
	if c.l2 == nil {
		return nil
	}
	return c.l2.ping(ctx)
}

// WaitIdle blocks until the Redis writes and background deletions queued so far are done and
// L1's buffered Sets are applied. Tests use it for determinism.
func (c *Cache[V]) WaitIdle() {
	if c.l2 != nil {
		c.l2.waitIdle()
	}
	c.mu.RLock()
	if !c.closed {
		c.l1.Wait()
	}
	c.mu.RUnlock()
}

// Close finishes queued Redis work and releases L1. The Redis client is the caller's to close.
// Get keeps working after Close, loading every time.
func (c *Cache[V]) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	// No Set can be queued now (enqueues check closed under mu.RLock), so the writers drain.
	if c.l2 != nil {
		c.l2.close()
	}
	c.mu.Lock()
	c.l1.Close()
	c.mu.Unlock()
}
