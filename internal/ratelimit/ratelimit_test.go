package ratelimit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	b := NewBucket(2, 3)
	for i := range 3 {
		assert.True(t, b.Take(t0), "take %d of the burst", i)
	}
	assert.False(t, b.Take(t0), "the burst is spent")
	assert.True(t, b.Take(t0.Add(500*time.Millisecond)), "half a second refills one token at 2/s")
	assert.False(t, b.Take(t0.Add(500*time.Millisecond)))
	assert.False(t, b.Take(t0), "a clock going back refills nothing")
	later := t0.Add(time.Hour)
	for i := range 3 {
		assert.True(t, b.Take(later), "refilled up to the burst: take %d", i)
	}
	assert.False(t, b.Take(later), "never more than the burst")

	z := NewBucket(0, 0)
	assert.True(t, z.Take(t0), "a burst below 1 is 1")
	assert.False(t, z.Take(t0.Add(time.Hour)), "rate 0 never refills")
}
