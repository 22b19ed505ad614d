package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/metrictest"
	"github.com/neofast/neoauthz/internal/redistest"
)

// sval stands for an entry with shared parts: its own version and parts many entries hold.
type sval struct {
	Version int64
	Parts   []*part
}

type part struct{ id, data string }

// partCodec is a SharedCodec whose parts live in memory (like an interner) once decoded.
type partCodec struct {
	mu      sync.Mutex
	parts   map[string]*part
	fetches atomic.Int32 // parts fetched
	calls   atomic.Int32 // fetch calls
}

func newPartCodec() *partCodec { return &partCodec{parts: map[string]*part{}} }

func (c *partCodec) Marshal(v sval) ([]byte, error) {
	b := fmt.Appendf(nil, "%d", v.Version)
	for _, p := range v.Parts {
		b = fmt.Appendf(b, "|%s", p.id)
	}
	return b, nil
}

func (c *partCodec) Unmarshal([]byte) (sval, error) { return sval{}, errors.New("unused") }

func (c *partCodec) Shared(v sval) []SharedPart {
	out := make([]SharedPart, len(v.Parts))
	for i, p := range v.Parts {
		out[i] = SharedPart{ID: p.id, Data: []byte(p.data)}
	}
	return out
}

func (c *partCodec) UnmarshalShared(b []byte, fetch func([]string) ([][]byte, error)) (sval, int64, error) {
	var v sval
	fields := strings.Split(string(b), "|")
	if _, err := fmt.Sscanf(fields[0], "%d", &v.Version); err != nil {
		return sval{}, 0, err
	}
	ids := fields[1:]
	v.Parts = make([]*part, len(ids))
	var missing []string
	c.mu.Lock()
	for i, id := range ids {
		if v.Parts[i] = c.parts[id]; v.Parts[i] == nil {
			missing = append(missing, id)
		}
	}
	c.mu.Unlock()
	if len(missing) > 0 {
		c.fetches.Add(int32(len(missing)))
		c.calls.Add(1)
		data, err := fetch(missing)
		if err != nil {
			return sval{}, 0, err
		}
		for j, id := range missing {
			if strings.HasPrefix(string(data[j]), "corrupt") {
				return sval{}, 0, fmt.Errorf("entry: %w", corruptPart{id})
			}
		}
		c.mu.Lock()
		for j, id := range missing {
			c.parts[id] = &part{id: id, data: string(data[j])}
		}
		for i, id := range ids {
			v.Parts[i] = c.parts[id]
		}
		c.mu.Unlock()
	}
	return v, 1, nil
}

// corruptPart is partCodec's error for a fetched part that is not what its id names.
type corruptPart struct{ id string }

func (e corruptPart) Error() string              { return "part " + e.id + " is corrupt" }
func (e corruptPart) CorruptSharedIDs() []string { return []string{e.id} }

func newSharedCache(t *testing.T, rdb redis.UniversalClient, prefix string, codec *partCodec) *Cache[sval] {
	t.Helper()
	c, err := New[sval](Options{Prefix: prefix, Name: "shared", Timeout: redistestTimeout}, rdb, codec, nil)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// redistestTimeout is generous: the machine may be loaded, and a timed-out Redis operation
// would turn an expected L2 hit into a miss.
const redistestTimeout = 5_000_000_000

func TestSharedPartStoredOnceAndFetchedOnce(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	shared := &part{id: "ab12", data: "the compiled part"}
	key := func(u string) string { k, err := TenantUserKey("0a-1", u); require.NoError(t, err); return k }
	fresh := func(v sval) bool { return v.Version >= 1 }
	load := func(context.Context) (Loaded[sval], error) {
		return Loaded[sval]{Value: sval{Version: 1, Parts: []*part{shared}}}, nil
	}

	a := newSharedCache(t, rdb, prefix, newPartCodec())
	for _, u := range []string{"alice", "bob", "carol"} {
		_, src, err := a.Get(ctx, key(u), fresh, load)
		require.NoError(t, err)
		require.Equal(t, SourceLoad, src)
	}
	a.WaitIdle()

	keys, err := rdb.Keys(ctx, escapeGlob(prefix)+"*").Result()
	require.NoError(t, err)
	var parts, users int
	for _, k := range keys {
		switch {
		case strings.HasSuffix(k, "}:s:ab12"):
			parts++
		case strings.Contains(k, "}:u:"):
			users++
		}
	}
	assert.Equal(t, 1, parts, "got %d copies of the shared part in Redis (keys %v), want 1", parts, keys)
	assert.Equal(t, 3, users, "got %d user entries in Redis, want 3", users)
	sk, ok := SharedKey(key("alice"), "ab12")
	require.True(t, ok)
	got, err := rdb.Get(ctx, prefix+sk).Result()
	require.NoError(t, err)
	assert.Equal(t, shared.data, got)

	// Another instance: the first entry fetches the part, the next ones find it in memory.
	codec := newPartCodec()
	b := newSharedCache(t, rdb, prefix, codec)
	for _, u := range []string{"alice", "bob", "carol"} {
		v, src, err := b.Get(ctx, key(u), fresh, func(context.Context) (Loaded[sval], error) {
			return Loaded[sval]{}, errors.New("loaded although Redis has the entry")
		})
		require.NoError(t, err)
		assert.Equal(t, SourceL2, src, "user %s", u)
		assert.Equal(t, shared.data, v.Parts[0].data)
	}
	assert.Equal(t, int32(1), codec.fetches.Load(), "got %d fetches of one shared part, want 1", codec.fetches.Load())

	// An entry whose part is gone from Redis is a miss, and the load writes both again.
	require.NoError(t, rdb.Del(ctx, prefix+sk).Err())
	c := newSharedCache(t, rdb, prefix, newPartCodec())
	var loads atomic.Int32
	_, src, err := c.Get(ctx, key("alice"), fresh, func(ctx context.Context) (Loaded[sval], error) {
		loads.Add(1)
		return load(ctx)
	})
	require.NoError(t, err)
	assert.Equal(t, SourceLoad, src, "got an entry whose shared part is gone served from %v, want a load", src)
	c.WaitIdle()
	assert.Equal(t, int64(1), rdb.Exists(ctx, prefix+sk).Val(), "got the shared part not rewritten by the load")
}

func TestSharedKey(t *testing.T) {
	for _, tc := range []struct {
		name, key, id, want string
		ok                  bool
	}{
		{"tenant", "tenant:{0a-1}:u:YWxpY2U", "ab12", "tenant:{0a-1}:s:ab12", true},
		{"platform", "platform:u:YWxpY2U", "ab12", "platform:s:ab12", true},
		{"id not hex", "tenant:{0a-1}:u:YWxpY2U", "AB12", "", false},
		{"id with a brace", "tenant:{0a-1}:u:YWxpY2U", "ab}1", "", false},
		{"empty id", "tenant:{0a-1}:u:YWxpY2U", "", "", false},
		{"bad tenant", "tenant:{X}:u:YWxpY2U", "ab12", "", false},
		{"other key", "anything", "ab12", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := SharedKey(tc.key, tc.id)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got, "got %q, want %q", got, tc.want)
		})
	}
}

// A shared part is written to Redis only when absent: the entries of further users who share
// it leave its bytes alone and only extend its life.
func TestSharedPartWrittenOnlyWhenAbsent(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	shared := &part{id: "cd34", data: "the compiled part"}
	key := func(u string) string { k, err := TenantUserKey("0a-2", u); require.NoError(t, err); return k }
	fresh := func(v sval) bool { return v.Version >= 1 }
	load := func(context.Context) (Loaded[sval], error) {
		return Loaded[sval]{Value: sval{Version: 1, Parts: []*part{shared}}}, nil
	}
	c := newSharedCache(t, rdb, prefix, newPartCodec())
	_, _, err := c.Get(ctx, key("alice"), fresh, load)
	require.NoError(t, err)
	c.WaitIdle()
	sk, ok := SharedKey(key("alice"), "cd34")
	require.True(t, ok)
	require.Equal(t, shared.data, rdb.Get(ctx, prefix+sk).Val())

	// Mark the stored part and shorten its life: a rewrite would replace the mark, and the
	// next entry naming the part must extend its life past its own.
	require.NoError(t, rdb.Set(ctx, prefix+sk, "marked", time.Minute).Err())
	_, _, err = c.Get(ctx, key("bob"), fresh, load)
	require.NoError(t, err)
	c.WaitIdle()
	assert.Equal(t, "marked", rdb.Get(ctx, prefix+sk).Val(), "got the shared part rewritten by a second user's entry, want it written only when absent")
	entryTTL := rdb.PTTL(ctx, prefix+key("bob")).Val()
	partTTL := rdb.PTTL(ctx, prefix+sk).Val()
	require.Positive(t, entryTTL)
	assert.GreaterOrEqual(t, partTTL, entryTTL, "got the part expiring (in %v) before the entry naming it (in %v)", partTTL, entryTTL)
}

// A part in Redis that is not what its id names is deleted when read, so the fill that follows
// writes it again (SET NX would not replace it): one corrupt part is not a miss for good.
func TestCorruptSharedPartReplaced(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	shared := &part{id: "ef56", data: "the compiled part"}
	key, err := TenantUserKey("0a-3", "carol")
	require.NoError(t, err)
	fresh := func(v sval) bool { return v.Version >= 1 }
	var loads atomic.Int32
	load := func(context.Context) (Loaded[sval], error) {
		loads.Add(1)
		return Loaded[sval]{Value: sval{Version: 1, Parts: []*part{shared}}}, nil
	}
	c := newSharedCache(t, rdb, prefix, newPartCodec())
	_, _, err = c.Get(ctx, key, fresh, load)
	require.NoError(t, err)
	c.WaitIdle()
	sk, ok := SharedKey(key, shared.id)
	require.True(t, ok)
	require.NoError(t, rdb.Set(ctx, prefix+sk, "corrupt bytes", time.Hour).Err())

	// A pdp with nothing in memory reads the entry, then the corrupt part.
	c2 := newSharedCache(t, rdb, prefix, newPartCodec())
	v, src, err := c2.Get(ctx, key, fresh, load)
	require.NoError(t, err)
	assert.Equal(t, SourceLoad, src, "got a corrupt part served")
	assert.Equal(t, shared.data, v.Parts[0].data)
	c2.WaitIdle()
	assert.Equal(t, shared.data, rdb.Get(ctx, prefix+sk).Val(), "got the corrupt part left in place")

	// And a third reads it whole from Redis.
	c3 := newSharedCache(t, rdb, prefix, newPartCodec())
	_, src, err = c3.Get(ctx, key, fresh, load)
	require.NoError(t, err)
	assert.Equal(t, SourceL2, src)
	assert.Equal(t, int32(2), loads.Load())
}

// An entry made of several shared parts: each is stored once, read back in one fetch of the
// parts not in memory, and an entry one of whose parts is gone is a miss.
func TestSeveralSharedParts(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	p1, p2, p3 := &part{id: "e1", data: "role one"}, &part{id: "e2", data: "role two"}, &part{id: "e3", data: "direct"}
	key := func(u string) string { k, err := TenantUserKey("0a-3", u); require.NoError(t, err); return k }
	fresh := func(v sval) bool { return v.Version >= 1 }
	loads := map[string][]*part{"alice": {p1, p2}, "bob": {p3, p1, p2}, "carol": {p2}}
	a := newSharedCache(t, rdb, prefix, newPartCodec())
	for u, parts := range loads {
		_, _, err := a.Get(ctx, key(u), fresh, func(context.Context) (Loaded[sval], error) {
			return Loaded[sval]{Value: sval{Version: 1, Parts: parts}}, nil
		})
		require.NoError(t, err)
	}
	a.WaitIdle()
	for _, p := range []*part{p1, p2, p3} {
		sk, ok := SharedKey(key("alice"), p.id)
		require.True(t, ok)
		assert.Equal(t, p.data, rdb.Get(ctx, prefix+sk).Val(), "part %s", p.id)
	}

	// Another instance: carol's entry brings p2 into memory, so bob's fetches only p3 and p1,
	// in one round trip.
	codec := newPartCodec()
	b := newSharedCache(t, rdb, prefix, codec)
	noLoad := func(context.Context) (Loaded[sval], error) {
		return Loaded[sval]{}, errors.New("loaded although Redis has the entry")
	}
	for _, u := range []string{"carol", "bob"} {
		v, src, err := b.Get(ctx, key(u), fresh, noLoad)
		require.NoError(t, err)
		require.Equal(t, SourceL2, src, "user %s", u)
		require.Len(t, v.Parts, len(loads[u]))
		for i, p := range loads[u] {
			assert.Equal(t, p.data, v.Parts[i].data, "user %s part %d", u, i)
		}
	}
	assert.Equal(t, int32(3), codec.fetches.Load(), "got %d parts fetched for three distinct parts, want 3", codec.fetches.Load())
	assert.Equal(t, int32(2), codec.calls.Load(), "got %d fetches for two entries, want one each", codec.calls.Load())

	// One of alice's parts gone from Redis: her entry is a miss, though the other part is there.
	sk, _ := SharedKey(key("alice"), p2.id)
	require.NoError(t, rdb.Del(ctx, prefix+sk).Err())
	c := newSharedCache(t, rdb, prefix, newPartCodec())
	loaded := false
	_, src, err := c.Get(ctx, key("alice"), fresh, func(context.Context) (Loaded[sval], error) {
		loaded = true
		return Loaded[sval]{Value: sval{Version: 1, Parts: loads["alice"]}}, nil
	})
	require.NoError(t, err)
	assert.Equal(t, SourceLoad, src, "got an entry with a part gone served from %v, want a load", src)
	assert.True(t, loaded)
}

// TestSharedPartFailureIsNotAMiss: when one of an entry's parts is missing and reading
// another fails (here a key of the wrong type, which Redis refuses to GET), the read is a
// Redis error for the breaker and the metrics, not a missing part: the pipeline's first
// error (the missing part's) does not hide the failure. Either way the entry is loaded.
func TestSharedPartFailureIsNotAMiss(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t, "cache")
	p1, p2 := &part{id: "f1", data: "role one"}, &part{id: "f2", data: "role two"}
	key, err := TenantUserKey("0a-4", "alice")
	require.NoError(t, err)
	fresh := func(v sval) bool { return v.Version >= 1 }
	load := func(context.Context) (Loaded[sval], error) {
		return Loaded[sval]{Value: sval{Version: 1, Parts: []*part{p1, p2}}}, nil
	}
	a := newSharedCache(t, rdb, prefix, newPartCodec())
	_, _, err = a.Get(ctx, key, fresh, load)
	require.NoError(t, err)
	a.WaitIdle()
	k1, _ := SharedKey(key, p1.id)
	k2, _ := SharedKey(key, p2.id)
	require.NoError(t, rdb.Del(ctx, prefix+k1).Err())
	require.NoError(t, rdb.Del(ctx, prefix+k2).Err())
	require.NoError(t, rdb.RPush(ctx, prefix+k2, "not a part").Err())

	reg := prometheus.NewRegistry()
	b, err := New[sval](Options{Prefix: prefix, Name: "shared", Timeout: redistestTimeout}, rdb, newPartCodec(), reg)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	_, src, err := b.Get(ctx, key, fresh, load)
	require.NoError(t, err)
	assert.Equal(t, SourceLoad, src)
	assert.InDelta(t, 1.0, metrictest.Sum(t, reg, "cache_operations_total", ops("l2", "get", "error")), 0,
		"got the failed part read not counted as a Redis error")
	assert.Zero(t, metrictest.Sum(t, reg, "cache_operations_total", ops("l2", "get_shared", "miss")),
		"got the failed part read counted as a missing part")
}
