package cache

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
