package loadgen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/neofast/neoauthz/internal/daemon"
)

// Memory is what warming every user costs: the pdp's own process (a child of the load tool)
// before its warm-up and after it, and the pdp's Redis database.
type Memory struct {
	RSSBefore int64 `json:"rss_before_bytes"`
	RSSWarm   int64 `json:"rss_warm_bytes"`
	// RSSFileWarm is the part of RSSWarm that maps files (the binary's code and data), which
	// the Go runtime's memory limit does not count.
	RSSFileWarm int64 `json:"rss_file_warm_bytes"`
	// RSSPeak is the process's highest RSS up to the end of the measured phases (VmHWM), and
	// RSSEnd its RSS then.
	RSSPeak    int64  `json:"rss_peak_bytes"`
	RSSEnd     int64  `json:"rss_end_bytes"`
	HeapBefore uint64 `json:"heap_inuse_before_bytes"`
	HeapWarm   uint64 `json:"heap_inuse_warm_bytes"`
	// LiveWarm is the bytes of the live objects after a collection (HeapAlloc); HeapWarm less
	// this is the free space inside the spans in use.
	LiveWarm uint64 `json:"heap_live_warm_bytes"`
	// CgroupLimit is the limit of the memory cgroup the pdp ran in (0: none), CgroupPeak the
	// cgroup's highest usage and OOMKills the processes the kernel killed for the limit.
	CgroupLimit int64 `json:"cgroup_limit_bytes,omitempty"`
	CgroupPeak  int64 `json:"cgroup_peak_bytes,omitempty"`
	OOMKills    int64 `json:"cgroup_oom_kills,omitempty"`
	RedisBefore int64 `json:"redis_used_memory_before_bytes,omitempty"`
	RedisWarm   int64 `json:"redis_used_memory_warm_bytes,omitempty"`
	RedisKeys   int64 `json:"redis_keys_warm,omitempty"`
	Users       int   `json:"users_warm"`
}

// memSample is one reading.
type memSample struct {
	rss   procMemory
	heap  uint64 // HeapInuse after a collection
	live  uint64 // HeapAlloc after a collection
	redis int64
	keys  int64
}

// sampleMemory reads the pdp process's RSS and live heap (after a collection) and Redis's
// used_memory and key count for redisURL's database ("" = no Redis).
func sampleMemory(ctx context.Context, p *childProc, redisURL string) (memSample, error) {
	var s memSample
	heap, err := p.ask("heap")
	if err != nil {
		return s, fmt.Errorf("the pdp's heap: %w", err)
	}
	inuse, live, _ := strings.Cut(heap, " ")
	if s.heap, err = strconv.ParseUint(inuse, 10, 64); err != nil {
		return s, fmt.Errorf("the pdp's heap %q: %w", heap, err)
	}
	if s.live, err = strconv.ParseUint(live, 10, 64); err != nil {
		return s, fmt.Errorf("the pdp's heap %q: %w", heap, err)
	}
	if s.rss, err = processMemory(p.cmd.Process.Pid); err != nil {
		return s, err
	}
	if redisURL == "" {
		return s, nil
	}
	o, err := redis.ParseURL(redisURL)
	if err != nil {
		return s, errors.New("REDIS_URL does not parse")
	}
	c := redis.NewClient(o)
	defer c.Close()
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return s, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			s.redis, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	s.keys, err = c.DBSize(ctx).Result()
	return s, err
}

// settleRedis waits until the pdp's queued Redis writes have landed: the key count holds
// still for half a second (at most 20s).
func settleRedis(ctx context.Context, redisURL string) {
	if redisURL == "" {
		return
	}
	o, err := redis.ParseURL(redisURL)
	if err != nil {
		return
	}
	c := redis.NewClient(o)
	defer c.Close()
	last := int64(-1)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		n, err := c.DBSize(ctx).Result()
		if err != nil || n == last {
			return
		}
		last = n
		time.Sleep(500 * time.Millisecond)
	}
}

// procMemory is a process's resident memory as /proc/PID/status gives it.
type procMemory struct {
	rss, peak, file int64 // VmRSS, VmHWM, RssFile
}

// processMemory reads a process's resident memory from /proc (Linux).
func processMemory(pid int) (procMemory, error) {
	v, err := daemon.ProcStatus("/proc/"+strconv.Itoa(pid)+"/status", "VmRSS", "VmHWM", "RssFile")
	if err != nil {
		return procMemory{}, err
	}
	return procMemory{rss: v[0], peak: v[1], file: v[2]}, nil
}

// line renders the memory figures for the table.
func (m *Memory) line() string {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	per := func(d int64) string { return fmt.Sprintf("%+d B/user", d/int64(max(m.Users, 1))) }
	s := fmt.Sprintf("memory, %d users warm: process RSS %s → %s (%s; %s of it file-backed)",
		m.Users, mib(m.RSSBefore), mib(m.RSSWarm), per(m.RSSWarm-m.RSSBefore), mib(m.RSSFileWarm))
	if m.RSSEnd > 0 {
		s += fmt.Sprintf(", %s after the phases, peak %s", mib(m.RSSEnd), mib(m.RSSPeak))
	}
	s += fmt.Sprintf("; Go heap in use %s → %s (%s), live objects %s",
		mib(int64(m.HeapBefore)), mib(int64(m.HeapWarm)), per(int64(m.HeapWarm)-int64(m.HeapBefore)), mib(int64(m.LiveWarm)))
	if m.CgroupLimit > 0 {
		s += fmt.Sprintf("; in a memory cgroup of %s: peak usage %s, %d OOM kills", mib(m.CgroupLimit), mib(m.CgroupPeak), m.OOMKills)
	}
	if m.RedisWarm > 0 {
		s += fmt.Sprintf("; Redis used_memory %s → %s (%s, %d keys)", mib(m.RedisBefore), mib(m.RedisWarm),
			per(m.RedisWarm-m.RedisBefore), m.RedisKeys)
	}
	return s
}
