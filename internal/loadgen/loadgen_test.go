package loadgen

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// Every value lies in its bucket, and buckets are at most 1/128 of their value wide.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		v := rng.Uint64N(1 << uint(rng.IntN(62)+1))
		i := bucketOf(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of range", v, i)
		}
		low, width := bucketRange(i)
		if v < low || v >= low+width {
			t.Fatalf("value %d not in bucket %d [%d, %d)", v, i, low, low+width)
		}
		if v >= 256 && float64(width)/float64(low) > 1.0/128 {
			t.Fatalf("bucket %d too wide: %d at %d", i, width, low)
		}
	}
	if i := bucketOf(math.MaxInt64); i >= histBuckets {
		t.Fatalf("max int64 lands in bucket %d of %d", i, histBuckets)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Fatal("empty histogram should report 0")
	}
	// 1..10000 µs, shuffled: p50 ≈ 5000 µs, p99 ≈ 9900 µs, max exact.
	rng := rand.New(rand.NewPCG(3, 4))
	vals := rng.Perm(10_000)
	var a, b Histogram
	for i, v := range vals {
		d := time.Duration(v+1) * time.Microsecond
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	h.Merge(&a)
	h.Merge(&b)
	if h.Count() != 10_000 {
		t.Fatalf("count %d", h.Count())
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}} {
		got := h.Quantile(c.q)
		if rel := math.Abs(float64(got-c.want)) / float64(c.want); rel > 0.01 {
			t.Errorf("p%v = %v, want %v ± 1%%", c.q*100, got, c.want)
		}
	}
	if h.Quantile(1) != 10*time.Millisecond || h.Max() != 10*time.Millisecond {
		t.Errorf("p100 %v, max %v; want exactly 10ms", h.Quantile(1), h.Max())
	}
	if m := h.Mean(); m < 5000*time.Microsecond || m > 5001*time.Microsecond {
		t.Errorf("mean %v", m)
	}
	var one Histogram
	one.Record(1234567 * time.Nanosecond)
	if one.Quantile(0.5) != 1234567*time.Nanosecond {
		t.Errorf("single value: p50 %v (clamped to min/max, it must be exact)", one.Quantile(0.5))
	}
}

func TestPermutation(t *testing.T) {
	p := Permutation(1000, 7)
	seen := make([]bool, 1000)
	for _, v := range p {
		if seen[v] {
			t.Fatalf("%d twice", v)
		}
		seen[v] = true
	}
	q := Permutation(1000, 7)
	for i := range p {
		if p[i] != q[i] {
			t.Fatal("same seed, different permutation")
		}
	}
}

func TestPickerZipf(t *testing.T) {
	const n = 50_000
	perm := Permutation(n, 1)
	rank := make([]int, n) // index → popularity rank
	for r, i := range perm {
		rank[i] = r
	}
	p := NewPicker(perm, 1, 1)
	counts := make([]int, n)
	const draws = 400_000
	for range draws {
		i := p.Next()
		if i < 0 || i >= n {
			t.Fatalf("index %d out of range", i)
		}
		counts[rank[i]]++
	}
	// P(rank k) ∝ (k+1)^-1.1: rank 0 is the most frequent, rank 1 about 2^-1.1 of it, and the
	// 5,000 hottest users take about 88% of the draws.
	if counts[0] < counts[1] || counts[1] < counts[10] {
		t.Errorf("not decreasing: %d %d %d", counts[0], counts[1], counts[10])
	}
	if r := float64(counts[1]) / float64(counts[0]); math.Abs(r-math.Pow(2, -ZipfS)) > 0.05 {
		t.Errorf("rank 1 / rank 0 = %.3f, want %.3f", r, math.Pow(2, -ZipfS))
	}
	head := 0
	for _, c := range counts[:5000] {
		head += c
	}
	if s := float64(head) / draws; s < 0.84 || s > 0.92 {
		t.Errorf("the 5,000 hottest users got %.1f%% of the draws, want about 88%%", 100*s)
	}
	// Workers get different streams.
	a, b := NewPicker(perm, 1, 1), NewPicker(perm, 1, 2)
	same := 0
	for range 100 {
		if a.Next() == b.Next() {
			same++
		}
	}
	if same == 100 {
		t.Error("two streams drew the same sequence")
	}
}

func TestPickCode(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	u := &User{Likely: []uint16{3, 7}}
	likely := 0
	for range 10_000 {
		c := pickCode(u, 150, rng)
		if c < 0 || c >= 150 {
			t.Fatalf("code %d", c)
		}
		if c == 3 || c == 7 {
			likely++
		}
	}
	if likely < 8800 || likely > 9300 { // 90% + 10% × 2/150
		t.Errorf("%d of 10000 picks from the likely codes", likely)
	}
	if c := pickCode(&User{}, 150, rng); c < 0 || c >= 150 {
		t.Fatalf("code %d for a user without likely codes", c)
	}
}

func TestParseFlags(t *testing.T) {
	env := func(k string) string {
		return map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1/postgres", "REDIS_URL": "redis://127.0.0.1:6379/0"}[k]
	}
	c, err := ParseFlags(nil, env, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Duration != 5*time.Second || len(c.Concurrency) != 2 || c.Concurrency[0] != 16 || c.Concurrency[1] != 64 ||
		c.Tenants != 50 || c.Users != 1000 || c.Rebuild || c.JSON || c.RedisDB != 15 {
		t.Errorf("defaults: %+v", c)
	}
	c, err = ParseFlags([]string{"-duration", "2s", "-concurrency", " 8, 32 ,128", "-tenants", "3", "-users", "10", "-rebuild", "-json"}, env, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Duration != 2*time.Second || len(c.Concurrency) != 3 || c.Concurrency[2] != 128 || c.Tenants != 3 || c.Users != 10 || !c.Rebuild || !c.JSON {
		t.Errorf("parsed: %+v", c)
	}
	for _, bad := range [][]string{
		{"-concurrency", "0"}, {"-concurrency", "16,x"}, {"-concurrency", ","}, {"-duration", "0s"},
		{"-tenants", "101"}, {"-users", "0"}, {"-alg", "HS256"}, {"extra"},
	} {
		if _, err := ParseFlags(bad, env, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
	if _, err := ParseFlags(nil, func(string) string { return "" }, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("no DATABASE_URL: %v", err)
	}
}

func TestURLs(t *testing.T) {
	u, err := dbURL("postgres://u:p%40ss@db:5433/postgres?sslmode=disable", AdminDB)
	if err != nil || u != "postgres://u:p%40ss@db:5433/neoauthz_bench_admin?sslmode=disable" {
		t.Errorf("dbURL: %q %v", u, err)
	}
	if _, err := dbURL("host=db dbname=x", AdminDB); err == nil {
		t.Error("a keyword/value DSN was accepted")
	}
	r, err := benchRedisURL("redis://:secret@127.0.0.1:6379/0?dial_timeout=1s", 15)
	if err != nil || r != "redis://:secret@127.0.0.1:6379/15?dial_timeout=1s" {
		t.Errorf("benchRedisURL: %q %v", r, err)
	}
	if _, err := benchRedisURL("redis-cluster://a,b", 15); err == nil {
		t.Error("a cluster URL was accepted")
	}
}

func TestReportRatiosAndProblems(t *testing.T) {
	r := &Report{Phases: []PhaseResult{
		{Phase: phaseCeiling, Concurrency: 16, Throughput: 1000, Allowed: 10},
		{Phase: phaseExtWarm, Concurrency: 16, Throughput: 750, Allowed: 5, Denied: 1},
		{Phase: phaseCheckWarm, Concurrency: 16, Throughput: 900, Allowed: 5, Denied: 0},
		{Phase: phaseExtCold, Concurrency: 16, Throughput: 100, Allowed: 5, Denied: 1, Errors: 2, FirstError: "boom"},
	}}
	r.finish()
	if p := r.Phases[1].Ratio; p == nil || *p != 0.75 {
		t.Errorf("warm ratio %v", p)
	}
	if r.Phases[2].Ratio != nil {
		t.Error("Check got a ratio to the ext_authz ceiling")
	}
	if !r.TargetMet {
		t.Error("75% should meet the 70% target")
	}
	if len(r.Problems) != 2 {
		t.Errorf("problems: %q", r.Problems)
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil || !strings.Contains(b.String(), "0.75") || !strings.Contains(b.String(), "!!! ") {
		t.Errorf("table:\n%s", b.String())
	}
}

func TestReportDecisionLogTarget(t *testing.T) {
	r := &Report{Phases: []PhaseResult{
		{Phase: phaseCeiling, Concurrency: 16, Throughput: 1000, Allowed: 10},
		{Phase: phaseExtWarm, Concurrency: 16, Throughput: 800, Allowed: 5, Denied: 1},
		{Phase: phaseExtWarmNoLog, Concurrency: 16, Throughput: 1000, Allowed: 5, Denied: 1},
	}}
	r.finish()
	if r.TargetMet || len(r.LogTarget) != 1 || !strings.Contains(r.LogTarget[0], "80% (MISSED)") {
		t.Errorf("decision log at 80%% of off must miss the 90%% target: met %v, %q", r.TargetMet, r.LogTarget)
	}
	r.Phases[1].Throughput, r.Phases[1].Ratio, r.LogTarget, r.Target = 950, nil, nil, nil
	r.finish()
	if !r.TargetMet || !strings.Contains(r.LogTarget[0], "95% (met)") {
		t.Errorf("95%%: met %v, %q", r.TargetMet, r.LogTarget)
	}
}

func TestParseProcStatCPU(t *testing.T) {
	// A command name may hold spaces and parentheses; utime 1234 and stime 56 ticks follow.
	line := []byte("4242 (load gen) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 56 0 0 20 0 9 0 100 1000000 500 18446744073709551615\n")
	got, err := parseProcStatCPU(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1290 * clockTick; got != want {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := parseProcStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("got no error for a truncated line, want one")
	}
}

func TestProcessMemory(t *testing.T) {
	m, err := processMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// VmHWM is the highest VmRSS so far; the test binary's code is mapped from its file.
	if m.rss <= 0 || m.peak < m.rss || m.file <= 0 || m.file > m.rss {
		t.Errorf("got VmRSS %d, VmHWM %d, RssFile %d", m.rss, m.peak, m.file)
	}
	if _, err := processMemory(-1); err == nil {
		t.Error("no error for a process that does not exist")
	}
}
