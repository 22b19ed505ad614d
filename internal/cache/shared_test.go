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

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/redistest"
)

// sval stands for an entry with a shared part: its own version and a part many entries hold.
type sval struct {
	Version int64
	Part    *part
}

type part struct{ id, data string }

// partCodec is a SharedCodec whose parts live in memory (like an interner) once decoded.
type partCodec struct {
	mu      sync.Mutex
	parts   map[string]*part
	fetches atomic.Int32
}

func newPartCodec() *partCodec { return &partCodec{parts: map[string]*part{}} }

func (c *partCodec) Marshal(v sval) ([]byte, error) {
	return fmt.Appendf(nil, "%d|%s", v.Version, v.Part.id), nil
}

func (c *partCodec) Unmarshal([]byte) (sval, error) { return sval{}, errors.New("unused") }

func (c *partCodec) Shared(v sval) (string, []byte) { return v.Part.id, []byte(v.Part.data) }

func (c *partCodec) UnmarshalShared(b []byte, fetch func(string) ([]byte, error)) (sval, int64, error) {
	var v sval
	var id string
	if _, err := fmt.Sscanf(strings.Replace(string(b), "|", " ", 1), "%d %s", &v.Version, &id); err != nil {
		return sval{}, 0, err
	}
	c.mu.Lock()
	p := c.parts[id]
	c.mu.Unlock()
	if p == nil {
		c.fetches.Add(1)
		data, err := fetch(id)
		if err != nil {
			return sval{}, 0, err
		}
		p = &part{id: id, data: string(data)}
		c.mu.Lock()
		c.parts[id] = p
		c.mu.Unlock()
	}
	v.Part = p
	return v, 1, nil
}

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
		return Loaded[sval]{Value: sval{Version: 1, Part: shared}}, nil
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
		assert.Equal(t, shared.data, v.Part.data)
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
		return Loaded[sval]{Value: sval{Version: 1, Part: shared}}, nil
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
