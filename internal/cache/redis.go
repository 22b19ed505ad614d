package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sizes of the asynchronous write path: enough to absorb a burst of misses, small enough that a
// stuck Redis holds little memory; writes beyond it are dropped (the next miss writes again).
const (
	writeQueueSize = 1024
	writeWorkers   = 4
	scanCount      = 512
)

// redisTier is L2. Every method treats a Redis failure as a miss and reports it to the breaker.
type redisTier[V any] struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	l2TTL   time.Duration // the life of shared parts, which outlive every entry naming them
	codec   Codec[V]
	m       *metrics
	br      *breaker
	// ctxHonored is whether the client applies context deadlines to socket reads
	// (ContextTimeoutEnabled); when it does not, reads wait in a goroutine we can abandon.
	ctxHonored bool

	queue   chan *entry[V]
	workers sync.WaitGroup
	bg      context.Context // cancelled by close; background scans run under it
	stopBG  context.CancelFunc

	idleMu   sync.Mutex
	idleCond *sync.Cond
	pending  int // queued or running writes and scans, for waitIdle
}

func newRedisTier[V any](rdb redis.UniversalClient, opts Options, codec Codec[V], m *metrics) *redisTier[V] {
	t := &redisTier[V]{
		rdb:        rdb,
		prefix:     opts.Prefix,
		timeout:    opts.Timeout,
		l2TTL:      opts.L2TTL,
		codec:      codec,
		m:          m,
		br:         newBreaker(m),
		ctxHonored: honorsContext(rdb),
		queue:      make(chan *entry[V], writeQueueSize),
	}
	t.idleCond = sync.NewCond(&t.idleMu)
	t.bg, t.stopBG = context.WithCancel(context.Background())
	for range writeWorkers {
		t.workers.Add(1)
		go func() {
			defer t.workers.Done()
			for e := range t.queue {
				t.write(e)
				t.addPending(-1)
			}
		}()
	}
	return t
}

func honorsContext(rdb redis.UniversalClient) bool {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// bounded runs fn with Options.Timeout and returns by then even when the client ignores
// context deadlines (go-redis does unless ContextTimeoutEnabled is set, and would then wait
// for its ReadTimeout, 3s by default). An abandoned call finishes in its goroutine.
func bounded[T any](ctx context.Context, t time.Duration, honored bool, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, t)
	// Only this goroutine cancels: were fn's goroutine to cancel after sending its result,
	// the select below could see ctx done and report a spurious "context canceled".
	defer cancel()
	if honored {
		return fn(ctx)
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// finish reports an operation's outcome to the breaker. It returns false when the operation
// failed; a failure because the caller gave up (its ctx ended) is not Redis's fault and does
// not count against it.
func (t *redisTier[V]) finish(ctx context.Context, probe bool, start time.Time, op string, err error) bool {
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		t.br.success(probe, time.Since(start))
		return true
	case ctx.Err() != nil:
		t.br.release(probe)
	default:
		t.br.failure(probe, fmt.Errorf("redis %s: %w", op, err))
		if cc, ok := t.rdb.(*redis.ClusterClient); ok {
			// go-redis re-reads the slot map on MOVED, which a dead master never sends, and
			// our short timeouts end its retries before another node could send it: without
			// this a promoted replica went unused for about a minute. Reloads are
			// asynchronous and coalesced.
			cc.ReloadState(t.bg)
		}
	}
	return false
}

func (t *redisTier[V]) get(ctx context.Context, key string, fresh func(V) bool) (*entry[V], bool) {
	probe, ok := t.br.allow()
	if !ok {
		t.m.l2GetSkipped.Inc()
		return nil, false
	}
	start := time.Now()
	b, err := bounded(ctx, t.timeout, t.ctxHonored, func(ctx context.Context) ([]byte, error) {
		return t.rdb.Get(ctx, t.prefix+key).Bytes()
	})
	if !t.finish(ctx, probe, start, "get", err) {
		t.m.l2GetErr.Inc()
		return nil, false
	}
	if err != nil { // redis.Nil
		t.m.l2Miss.Inc()
		return nil, false
	}
	payload, exp, cost, err := decodeEnvelope(b)
	var v V
	if err == nil {
		if sc, ok := t.codec.(SharedCodec[V]); ok {
			v, cost, err = sc.UnmarshalShared(payload, func(ids []string) ([][]byte, error) { return t.getShared(ctx, key, ids) })
		} else {
			v, err = t.codec.Unmarshal(payload)
		}
	}
	var corrupt CorruptShared
	switch {
	case errors.Is(err, ErrSharedMissing):
		t.m.l2Miss.Inc()
		return nil, false
	case errors.As(err, &corrupt):
		t.m.l2GetErr.Inc()
		t.m.l2Decode.Inc()
		t.dropShared(ctx, key, corrupt.CorruptSharedIDs())
		return nil, false
	case errors.Is(err, errRedisFailed):
		t.m.l2GetErr.Inc()
		return nil, false
	case err != nil:
		// Redis answered, so this is not a Redis outage and does not trip the breaker or
		// health (bytes from an older release would otherwise flap both); the load that
		// follows overwrites the entry.
		t.m.l2GetErr.Inc()
		t.m.l2Decode.Inc()
		return nil, false
	}
	if !fresh(v) {
		t.m.l2Stale.Inc()
		return nil, false
	}
	t.m.l2Hit.Inc()
	return &entry[V]{key: key, val: v, exp: exp, cost: cost}, true
}

// errRedisFailed wraps a failed Redis operation inside a codec call (a shared part's fetch).
var errRedisFailed = errors.New("cache: redis operation failed")

// getShared reads the shared parts ids that entry key names, in one round trip.
func (t *redisTier[V]) getShared(ctx context.Context, key string, ids []string) ([][]byte, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		sk, ok := SharedKey(key, id)
		if !ok {
			return nil, fmt.Errorf("%w: id %q does not name a key", ErrSharedMissing, id)
		}
		keys[i] = t.prefix + sk
	}
	probe, ok := t.br.allow()
	if !ok {
		return nil, fmt.Errorf("%w: circuit open", errRedisFailed)
	}
	start := time.Now()
	cmds, err := bounded(ctx, t.timeout, t.ctxHonored, func(ctx context.Context) ([]*redis.StringCmd, error) {
		// A pipeline rather than MGET: a cluster pipeline splits by slot, and platform
		// parts carry no hash tag.
		pipe := t.rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.Get(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return cmds, err
		}
		// Exec reports the first command's error, which may be a missing part's redis.Nil
		// while another command failed: the failure is what Redis answered.
		for _, cmd := range cmds {
			if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
				return cmds, err
			}
		}
		return cmds, nil
	})
	if !t.finish(ctx, probe, start, "get", err) {
		return nil, fmt.Errorf("%w: %w", errRedisFailed, err)
	}
	out := make([][]byte, len(cmds))
	for i, cmd := range cmds {
		b, err := cmd.Bytes()
		if err != nil { // redis.Nil: every other error failed the pipeline above
			t.m.l2SharedMiss.Inc()
			return nil, ErrSharedMissing
		}
		t.m.l2SharedHit.Inc()
		out[i] = b
	}
	return out, nil
}

// dropShared deletes the shared parts ids of entry key (see CorruptShared), in one round trip.
func (t *redisTier[V]) dropShared(ctx context.Context, key string, ids []string) {
	var keys []string
	for _, id := range ids {
		if sk, ok := SharedKey(key, id); ok {
			keys = append(keys, t.prefix+sk)
		}
	}
	if len(keys) == 0 {
		return
	}
	probe, ok := t.br.allow()
	if !ok {
		return
	}
	start := time.Now()
	_, err := bounded(ctx, t.timeout, t.ctxHonored, func(ctx context.Context) ([]redis.Cmder, error) {
		// One DEL per key: a cluster pipeline splits by slot, a multi-key DEL would not.
		pipe := t.rdb.Pipeline()
		for _, k := range keys {
			pipe.Del(ctx, k)
		}
		return pipe.Exec(ctx)
	})
	t.finish(ctx, probe, start, "del", err)
}

// enqueueSet queues a write to Redis, or drops it when the queue is full. The caller holds the
// Cache's read lock and has checked it is not closed, so the queue is open.
func (t *redisTier[V]) enqueueSet(e *entry[V]) {
	t.addPending(1)
	select {
	case t.queue <- e:
	default:
		t.addPending(-1)
		t.m.l2SetDropped.Inc()
	}
}

func (t *redisTier[V]) write(e *entry[V]) {
	// The TTL counts from the load, not from when the queue got to it.
	ttl := time.Until(e.exp)
	if ttl < time.Millisecond {
		return
	}
	probe, ok := t.br.allow()
	if !ok {
		t.m.l2SetSkipped.Inc()
		return
	}
	payload, err := t.codec.Marshal(e.val)
	var shared []SharedPart
	var sharedKeys []string
	if sc, ok := t.codec.(SharedCodec[V]); ok && err == nil {
		shared = sc.Shared(e.val)
		sharedKeys = make([]string, len(shared))
		for i, p := range shared {
			if sharedKeys[i], ok = SharedKey(e.key, p.ID); !ok {
				err = fmt.Errorf("cache: no shared key for entry %q and id %q", e.key, p.ID)
				break
			}
		}
	}
	if err != nil {
		t.br.release(probe)
		t.m.l2SetErr.Inc()
		return
	}
	b := encodeEnvelope(payload, e.exp, e.cost)
	start := time.Now()
	ctx := context.Background()
	_, err = bounded(ctx, t.timeout, t.ctxHonored, func(ctx context.Context) (struct{}, error) {
		if len(shared) == 0 {
			return struct{}{}, t.rdb.Set(ctx, t.prefix+e.key, b, ttl).Err()
		}
		// The shared parts first, living the longest an entry may: every entry naming them
		// expires before they do. Each is written only when absent (many users' entries name
		// one part), and its life is extended otherwise, never shortened. A pipeline, not
		// MULTI: a tenant's parts share its entry's slot (SharedKey), but platform parts carry
		// no hash tag, and a cluster pipeline splits by slot.
		partTTL := max(t.l2TTL, ttl)
		pipe := t.rdb.Pipeline()
		for i, p := range shared {
			pipe.SetNX(ctx, t.prefix+sharedKeys[i], p.Data, partTTL)
			pipe.Do(ctx, "pexpire", t.prefix+sharedKeys[i], partTTL.Milliseconds(), "gt")
		}
		pipe.Set(ctx, t.prefix+e.key, b, ttl)
		_, err := pipe.Exec(ctx)
		return struct{}{}, err
	})
	if t.finish(ctx, probe, start, "set", err) {
		t.m.l2SetOK.Inc()
	} else {
		t.m.l2SetErr.Inc()
	}
}

func (t *redisTier[V]) del(ctx context.Context, keys []string) {
	probe, ok := t.br.allow()
	if !ok {
		t.m.l2DelSkipped.Inc()
		return
	}
	start := time.Now()
	_, err := bounded(ctx, t.timeout, t.ctxHonored, func(ctx context.Context) ([]redis.Cmder, error) {
		// One UNLINK per key in a pipeline: a multi-key UNLINK fails in Cluster when keys
		// live in different slots, and the cluster pipeline splits by slot for us.
		pipe := t.rdb.Pipeline()
		for _, k := range keys {
			pipe.Unlink(ctx, t.prefix+k)
		}
		return pipe.Exec(ctx)
	})
	if t.finish(ctx, probe, start, "unlink", err) {
		t.m.l2DelOK.Add(float64(len(keys)))
	} else {
		t.m.l2DelErr.Inc()
	}
}

// deletePrefix starts a background SCAN + UNLINK of the keys under prefix on every master.
// The caller holds the Cache's read lock and has checked it is not closed.
func (t *redisTier[V]) deletePrefix(_ context.Context, prefix string) {
	pattern := escapeGlob(t.prefix+prefix) + "*"
	t.addPending(1)
	go func() {
		defer t.addPending(-1)
		var err error
		if cc, ok := t.rdb.(*redis.ClusterClient); ok {
			err = cc.ForEachMaster(t.bg, func(ctx context.Context, node *redis.Client) error {
				return t.scanUnlink(ctx, node, pattern)
			})
		} else {
			err = t.scanUnlink(t.bg, t.rdb, pattern)
		}
		if err != nil {
			t.m.l2DelErr.Inc()
		}
	}()
}

func (t *redisTier[V]) scanUnlink(ctx context.Context, node redis.Cmdable, pattern string) error {
	var cursor uint64
	for {
		start := time.Now()
		type page struct {
			keys []string
			next uint64
		}
		p, err := bounded(ctx, t.timeout, t.ctxHonored, func(ctx context.Context) (page, error) {
			keys, next, err := node.Scan(ctx, cursor, pattern, scanCount).Result()
			return page{keys, next}, err
		})
		if !t.finish(ctx, false, start, "scan", err) {
			return err
		}
		if len(p.keys) > 0 {
			start = time.Now()
			_, err = bounded(ctx, t.timeout, t.ctxHonored, func(ctx context.Context) ([]redis.Cmder, error) {
				pipe := node.Pipeline()
				for _, k := range p.keys {
					pipe.Unlink(ctx, k)
				}
				return pipe.Exec(ctx)
			})
			if !t.finish(ctx, false, start, "unlink", err) {
				return err
			}
			t.m.l2DelOK.Add(float64(len(p.keys)))
		}
		if cursor = p.next; cursor == 0 {
			return nil
		}
	}
}

// escapeGlob quotes the characters Redis' MATCH treats specially, so a prefix matches only
// itself.
func escapeGlob(s string) string {
	// Byte by byte: keys need not be UTF-8, and ranging over runes would rewrite bad bytes.
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (t *redisTier[V]) ping(ctx context.Context) error {
	start := time.Now()
	_, err := bounded(ctx, t.timeout, t.ctxHonored, func(ctx context.Context) (string, error) {
		return t.rdb.Ping(ctx).Result()
	})
	t.finish(ctx, false, start, "ping", err)
	if err != nil {
		return fmt.Errorf("cache: redis ping: %w", err)
	}
	return nil
}

func (t *redisTier[V]) addPending(d int) {
	t.idleMu.Lock()
	t.pending += d
	if t.pending == 0 {
		t.idleCond.Broadcast()
	}
	t.idleMu.Unlock()
}

func (t *redisTier[V]) waitIdle() {
	t.idleMu.Lock()
	for t.pending > 0 {
		t.idleCond.Wait()
	}
	t.idleMu.Unlock()
}

// close writes what is queued (quickly skipped if the breaker is open), stops background
// scans and waits for both. No enqueue can happen any more (see Cache.Close).
func (t *redisTier[V]) close() {
	close(t.queue)
	t.workers.Wait()
	t.stopBG()
	t.waitIdle()
}

// Circuit breaker settings: a dead Redis costs at most breakerThreshold timeouts, then one
// probe per backoff.
const (
	breakerThreshold  = 3
	breakerMinBackoff = time.Second
	breakerMaxBackoff = 30 * time.Second
)

// breaker skips Redis after consecutive failures. Closed, it costs one atomic load per
// operation; open, operations are skipped until openUntil, when one of them becomes the
// probe that closes it again or reopens it for twice as long.
type breaker struct {
	m                      *metrics
	threshold              int
	minBackoff, maxBackoff time.Duration

	openUntil atomic.Int64 // unix nanoseconds; 0 when closed
	probing   atomic.Bool
	healthy   atomic.Bool
	latency   atomic.Int64

	mu       sync.Mutex
	failures int
	backoff  time.Duration
	lastErr  string
}

func newBreaker(m *metrics) *breaker {
	return &breaker{m: m, threshold: breakerThreshold, minBackoff: breakerMinBackoff, maxBackoff: breakerMaxBackoff}
}

// allow says whether to try Redis now, and whether this try is the probe.
func (b *breaker) allow() (probe, ok bool) {
	until := b.openUntil.Load()
	if until == 0 {
		return false, true
	}
	if time.Now().UnixNano() < until {
		return false, false
	}
	if b.probing.CompareAndSwap(false, true) {
		return true, true
	}
	return false, false
}

func (b *breaker) success(probe bool, d time.Duration) {
	b.latency.Store(int64(d))
	if !probe && b.healthy.Load() {
		return // nothing to reset: healthy implies no failures since the last success
	}
	b.mu.Lock()
	b.failures, b.backoff, b.lastErr = 0, 0, ""
	b.openUntil.Store(0)
	b.healthy.Store(true)
	if probe {
		b.probing.Store(false)
	}
	b.mu.Unlock()
	b.m.setRedisUp(true)
}

func (b *breaker) failure(probe bool, err error) {
	b.mu.Lock()
	b.failures++
	b.lastErr = err.Error()
	b.healthy.Store(false)
	switch {
	case probe:
		b.backoff = min(max(2*b.backoff, b.minBackoff), b.maxBackoff)
		b.openUntil.Store(time.Now().Add(b.backoff).UnixNano())
		b.probing.Store(false)
	case b.failures >= b.threshold && b.openUntil.Load() == 0:
		b.backoff = b.minBackoff
		b.openUntil.Store(time.Now().Add(b.backoff).UnixNano())
	}
	b.mu.Unlock()
	b.m.setRedisUp(false)
}

// release gives up a probe that ended without telling anything about Redis.
func (b *breaker) release(probe bool) {
	if probe {
		b.probing.Store(false)
	}
}

func (b *breaker) health() Health {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Health{Enabled: true, OK: b.healthy.Load(), Err: b.lastErr, Latency: time.Duration(b.latency.Load())}
}
