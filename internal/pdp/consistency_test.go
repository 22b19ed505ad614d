package pdp

import (
	"context"
	"errors"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProbesShareOneRead: requests naming a version that does not exist, arriving together,
// cost one version read between them, and every one of them is an invalid request.
func TestProbesShareOneRead(t *testing.T) {
	var p probes
	var reads atomic.Int64
	release := make(chan struct{})
	read := func(context.Context) (uint64, error) {
		reads.Add(1)
		<-release
		return 10, nil
	}
	const callers = 50
	arrived := time.Now()
	errs := make([]error, callers)
	var wg gosync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.exists(context.Background(), "t1", 11, arrived, read)
		}()
	}
	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		pr := p.running["t1"]
		return pr != nil && pr.waiters == callers
	}, 10*time.Second, time.Millisecond, "the callers never all waited on one read")
	close(release)
	wg.Wait()
	assert.Equal(t, int64(1), reads.Load(), "got %d reads for %d requests, want 1", reads.Load(), callers)
	for i, err := range errs {
		require.ErrorIs(t, err, ErrInvalidRequest, "caller %d", i)
	}

	// A version that exists is remembered: no read at all the next time.
	require.NoError(t, p.exists(context.Background(), "t1", 10, time.Now(), read))
	assert.Equal(t, int64(1), reads.Load())
}

// TestProbeFromBeforeArrivalProvesNothing: a read that began before a request arrived cannot
// show the request's version absent (its write may have committed after that read); the
// request waits for a read of its own.
func TestProbeFromBeforeArrivalProvesNothing(t *testing.T) {
	var p probes
	var version atomic.Uint64
	version.Store(5)
	first := make(chan struct{})
	release := make(chan struct{})
	read := func(context.Context) (uint64, error) {
		v := version.Load()
		if v == 5 {
			close(first)
			<-release
		}
		return v, nil
	}
	done := make(chan error, 1)
	go func() { done <- p.exists(context.Background(), "t1", 6, time.Now(), read) }()
	<-first // a read is under way and will say 5
	version.Store(6)
	late := make(chan error, 1)
	go func() { late <- p.exists(context.Background(), "t1", 6, time.Now(), read) }()
	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.running["t1"] != nil && p.running["t1"].waiters == 2
	}, 10*time.Second, time.Millisecond)
	close(release)
	assert.ErrorIs(t, <-done, ErrInvalidRequest, "the first request's own read said 5")
	assert.NoError(t, <-late, "the later request must not be refused by a read older than itself")

	failing := func(context.Context) (uint64, error) { return 0, errors.New("connection refused") }
	err := p.exists(context.Background(), "t2", 1, time.Now(), failing)
	require.ErrorIs(t, err, ErrUnavailable)
	assert.NotErrorIs(t, err, ErrInvalidRequest, "a failed read is not an invalid request")
}
