package server

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkSeries gathers permission_checks_total from reg: value by "tenant/permission/result".
func checkSeries(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "permission_checks_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			out[l["tenant"]+"/"+l["permission"]+"/"+l["result"]] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestCheckMetricCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				m.check("acme", "users.read.tenant", resultAllowed)
				if i%2 == g%2 {
					m.check("acme", "users.read.tenant", resultDenied)
				}
				m.check("", "invalid", resultError)
				m.check("globex", "users.read.tenant", resultUnauthenticated)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, map[string]float64{
		"acme/users.read.tenant/allowed":           400,
		"acme/users.read.tenant/denied":            200,
		"/invalid/error":                           400,
		"globex/users.read.tenant/unauthenticated": 400,
	}, checkSeries(t, reg), "only the results counted appear, each with its count")

	// A second server on the same registry counts into the same series.
	m2, err := newMetrics(reg)
	require.NoError(t, err)
	m2.check("acme", "users.read.tenant", resultAllowed)
	assert.InDelta(t, 401.0, checkSeries(t, reg)["acme/users.read.tenant/allowed"], 0)
}

// A flood of distinct tenants and permissions, from several goroutines, stays within the
// label limits and the pair limit, and every check is counted once.
func TestCheckMetricPairCap(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newCheckCounts(20, 50, 100)
	require.NoError(t, reg.Register(c))
	const goroutines, tenants, perms = 4, 30, 80
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range tenants {
				for j := range perms {
					c.inc("t"+strconv.Itoa((i+g)%tenants), "p"+strconv.Itoa(j), resultAllowed)
				}
			}
		})
	}
	wg.Wait()
	series := checkSeries(t, reg)
	tenantLabels, permLabels, pairs, others := map[string]bool{}, map[string]bool{}, 0, 0
	total := 0.0
	for k, v := range series {
		tenant, perm, result := splitSeries(k)
		assert.Equal(t, resultAllowed, result)
		tenantLabels[tenant], permLabels[perm] = true, true
		if perm == otherLabel {
			others++
		} else {
			pairs++
		}
		total += v
	}
	assert.InDelta(t, float64(goroutines*tenants*perms), total, 0, "every check counted once")
	assert.LessOrEqual(t, len(tenantLabels), 21, "20 tenants and other")
	assert.LessOrEqual(t, len(permLabels), 51, "50 permissions and other")
	assert.Equal(t, 100, pairs, "the pair limit is reached and holds")
	assert.LessOrEqual(t, others, len(tenantLabels), "one other pair per tenant at most")
	c.mu.RLock()
	assert.Equal(t, int64(100), c.counted)
	c.mu.RUnlock()
	assert.Contains(t, tenantLabels, otherLabel)

	// Known pairs keep their own series after the limit.
	var known string
	for k := range series {
		if tenant, perm, _ := splitSeries(k); perm != otherLabel && tenant != otherLabel {
			known = k
			break
		}
	}
	require.NotEmpty(t, known)
	tenant, perm, _ := splitSeries(known)
	c.inc(tenant, perm, resultAllowed)
	assert.InDelta(t, series[known]+1, checkSeries(t, reg)[known], 0)
}

func splitSeries(k string) (tenant, perm, result string) {
	p := strings.SplitN(k, "/", 3)
	return p[0], p[1], p[2]
}

// Counting a check of a pair counted before allocates nothing.
func TestCheckMetricHitAllocs(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	tenant, perm := string([]byte("acme")), string([]byte("users.read.tenant"))
	m.check(tenant, perm, resultAllowed)
	assert.Zero(t, testing.AllocsPerRun(100, func() { m.check(tenant, perm, resultDenied) }))
}

// BenchmarkCheckMetric counts checks over the load tool's label space (50 tenants × 150
// permissions × allowed and denied), and reports the heap the series keep.
func BenchmarkCheckMetric(b *testing.B) {
	const tenants, perms = 50, 150
	labels := make([][2]string, 0, tenants*perms)
	for i := range tenants {
		for j := range perms {
			labels = append(labels, [2]string{fmt.Sprintf("tenant-%02d", i), fmt.Sprintf("perm.%03d.tenant", j)})
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := newMetrics(prometheus.NewRegistry())
	require.NoError(b, err)
	for _, l := range labels {
		m.check(l[0], l[1], resultAllowed)
		m.check(l[0], l[1], resultDenied)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ResetTimer()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l := labels[i%len(labels)]
		m.check(l[0], l[1], resultAllowed)
		i++
	}
	b.ReportMetric(float64(after.HeapObjects-before.HeapObjects), "live-objects")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc), "live-B")
	runtime.KeepAlive(m)
}

// TestCheckMetricInvalidUTF8: a label value that is not UTF-8 counts as "invalid", so that no
// scrape of /metrics fails (prometheus refuses such a value when it builds the series).
func TestCheckMetricInvalidUTF8(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	require.NoError(t, err)
	m.check("\xff", "users.read.tenant", resultAllowed)
	m.check("acme", "\xfe", resultDenied)
	series := checkSeries(t, reg)
	assert.InDelta(t, 1.0, series["invalid/users.read.tenant/allowed"], 0, "got %v", series)
	assert.InDelta(t, 1.0, series["acme/invalid/denied"], 0, "got %v", series)
}
