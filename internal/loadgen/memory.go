package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Memory is what warming every user costs: the pdp's own process (a child of the load tool)
// before its warm-up and after it, and the pdp's Redis database.
type Memory struct {
	RSSBefore   int64  `json:"rss_before_bytes"`
	RSSWarm     int64  `json:"rss_warm_bytes"`
	HeapBefore  uint64 `json:"heap_inuse_before_bytes"`
	HeapWarm    uint64 `json:"heap_inuse_warm_bytes"`
	RedisBefore int64  `json:"redis_used_memory_before_bytes,omitempty"`
	RedisWarm   int64  `json:"redis_used_memory_warm_bytes,omitempty"`
	RedisKeys   int64  `json:"redis_keys_warm,omitempty"`
	Users       int    `json:"users_warm"`
}

// memSample is one reading.
type memSample struct {
	rss   int64
	heap  uint64
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
	if s.heap, err = strconv.ParseUint(heap, 10, 64); err != nil {
		return s, fmt.Errorf("the pdp's heap %q: %w", heap, err)
	}
	if s.rss, err = processRSS(p.cmd.Process.Pid); err != nil {
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

// processRSS returns a process's resident set size from /proc (Linux).
func processRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// line renders the memory figures for the table.
func (m *Memory) line() string {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	per := func(d int64) string { return fmt.Sprintf("%+d B/user", d/int64(max(m.Users, 1))) }
	s := fmt.Sprintf("memory, %d users warm: process RSS %s → %s (%s); Go heap in use %s → %s (%s)",
		m.Users, mib(m.RSSBefore), mib(m.RSSWarm), per(m.RSSWarm-m.RSSBefore),
		mib(int64(m.HeapBefore)), mib(int64(m.HeapWarm)), per(int64(m.HeapWarm)-int64(m.HeapBefore)))
	if m.RedisWarm > 0 {
		s += fmt.Sprintf("; Redis used_memory %s → %s (%s, %d keys)", mib(m.RedisBefore), mib(m.RedisWarm),
			per(m.RedisWarm-m.RedisBefore), m.RedisKeys)
	}
	return s
}
