// Package ratelimit provides the token bucket that bounds per-tenant work (decision-log
// entries, just-in-time user writes).
package ratelimit

import (
	"sync"
	"time"
)

// Bucket is a token bucket: Rate tokens per second, at most its burst saved up, starting full.
// It is safe for concurrent use; the caller passes the time, so tests move it.
type Bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// NewBucket returns a full bucket refilling rate tokens per second and holding at most burst
// (at least 1). A rate of 0 or less never refills: only the burst is ever taken.
func NewBucket(rate, burst float64) *Bucket {
	if burst < 1 {
		burst = 1
	}
	return &Bucket{rate: max(rate, 0), burst: burst, tokens: burst}
}

// Rate is the bucket's refill rate per second.
func (b *Bucket) Rate() float64 { return b.rate }

// Take takes one token at now and reports whether there was one.
func (b *Bucket) Take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.tokens+now.Sub(b.last).Seconds()*b.rate, b.burst)
	}
	if now.After(b.last) {
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
