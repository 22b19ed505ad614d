package sync_test

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	authzsync "github.com/neofast/neoauthz/internal/sync"
)

// BenchmarkListenerDeathWindow measures how long after pg_terminate_backend of the admin
// listener its database is still trusted: from the moment the terminate is sent until
// DownSince reports it down. Every iteration is reported (p50, p99, max), not the last one.
func BenchmarkListenerDeathWindow(b *testing.B) {
	e := newEnvTB(b)
	e.runTB(b, authzsync.Config{Heartbeat: time.Second, PollInterval: time.Hour, RegistryInterval: time.Hour})
	waitUpTB(b, e, authzsync.AdminDatabase)
	ctx := context.Background()
	var windows []time.Duration
	for b.Loop() {
		start := time.Now()
		_, err := e.w.Admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE application_name = $1 AND datname = current_database()`, authzsync.ListenerApplicationName)
		require.NoError(b, err)
		for e.up(authzsync.AdminDatabase) {
			if time.Since(start) > 10*time.Second {
				b.Fatal("the listener's death was never noticed")
			}
			runtime.Gosched()
		}
		windows = append(windows, time.Since(start))
		waitUpTB(b, e, authzsync.AdminDatabase)
	}
	slices.Sort(windows)
	n := len(windows)
	b.ReportMetric(float64(windows[n/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(windows[min(n-1, n*99/100)].Microseconds()), "p99-µs")
	b.ReportMetric(float64(windows[n-1].Microseconds()), "max-µs")
}
