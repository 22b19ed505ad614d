package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/neofast/neoauthz/internal/pgtest"
)

// SentinelMaster is the name the sentinels of StartSentinel monitor.
const SentinelMaster = "neoauthz"

// Sentinel is a Redis master with one replica watched by three sentinels, owned by one test.
type Sentinel struct {
	tb        testing.TB
	servers   []*node
	sentinels []*node
}

// StartSentinel starts a master, its replica and three redis-sentinel processes (quorum 2) on
// loopback ports and waits until the replica is in sync and every sentinel knows the replica
// and the other sentinels (a failover needs a majority of them). Everything is killed when the
// test ends.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	need(tb, "redis-server", "redis-sentinel")
	dir := tb.TempDir()
	s := &Sentinel{tb: tb}
	mport, rport := pgtest.FreePort(tb), pgtest.FreePort(tb)
	s.servers = append(s.servers, startNode(tb, dir, "redis-server", mport, serverArgs(mport)...),
		startNode(tb, dir, "redis-server", rport, serverArgs(rport, "--replicaof", "127.0.0.1", strconv.Itoa(mport))...))
	for range 3 {
		port := pgtest.FreePort(tb)
		// The sentinel rewrites its configuration file, so each has its own.
		conf := filepath.Join(dir, "sentinel-"+strconv.Itoa(port)+".conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndaemonize no\nloglevel warning\n"+
			"sentinel monitor %[2]s 127.0.0.1 %[3]d 2\nsentinel down-after-milliseconds %[2]s %[4]d\n"+
			"sentinel failover-timeout %[2]s 10000\nsentinel parallel-syncs %[2]s 1\n",
			port, SentinelMaster, mport, NodeTimeout.Milliseconds())
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			tb.Fatal(err)
		}
		s.sentinels = append(s.sentinels, startNode(tb, dir, "redis-sentinel", port, conf))
	}
	s.waitHealthy(addr(mport))
	return s
}

// URL is the redis-sentinel:// URL naming the three sentinels and the master.
func (s *Sentinel) URL() string {
	addrs := make([]string, len(s.sentinels))
	for i, n := range s.sentinels {
		addrs[i] = n.addr
	}
	return "redis-sentinel://" + strings.Join(addrs, ",") + "/" + SentinelMaster
}

// Master returns the master's address as the sentinels' majority reports it, or "".
func (s *Sentinel) Master() string {
	votes := map[string]int{}
	for _, n := range s.sentinels {
		c := n.client()
		a, err := c.Do(context.Background(), "SENTINEL", "get-master-addr-by-name", SentinelMaster).StringSlice()
		_ = c.Close()
		if err == nil && len(a) == 2 {
			votes[a[0]+":"+a[1]]++
		}
	}
	for a, v := range votes {
		if v >= 2 {
			return a
		}
	}
	return ""
}

// waitHealthy waits until every sentinel names master, knows one replica and two other
// sentinels, and the replica is in sync.
func (s *Sentinel) waitHealthy(master string) {
	s.tb.Helper()
	waitFor(s.tb, 2*time.Minute, "the sentinels agree on "+master+" and its replica is in sync", func() bool {
		for _, n := range s.sentinels {
			c := n.client()
			replicas, err1 := c.Do(context.Background(), "SENTINEL", "replicas", SentinelMaster).Slice()
			others, err2 := c.Do(context.Background(), "SENTINEL", "sentinels", SentinelMaster).Slice()
			_ = c.Close()
			if err1 != nil || err2 != nil || len(replicas) != 1 || len(others) != 2 {
				return false
			}
		}
		if s.Master() != master {
			return false
		}
		for _, n := range s.servers {
			if n.cmd == nil || n.addr == master {
				continue
			}
			c := n.client()
			up := info(c, "replication", "master_link_status") == "up"
			_ = c.Close()
			if !up {
				return false
			}
		}
		return true
	}, append(s.servers, s.sentinels...)...)
}

// Kill kills the Redis server at addr (SIGKILL, as in a crash).
func (s *Sentinel) Kill(addr string) {
	s.tb.Helper()
	for _, n := range s.servers {
		if n.addr == addr {
			n.kill()
			return
		}
	}
	s.tb.Fatalf("no Redis server at %s", addr)
}

// WaitFailover waits until the sentinels have promoted a server other than old and it
// answers as a master, and returns its address.
func (s *Sentinel) WaitFailover(old string) string {
	s.tb.Helper()
	var now string
	waitFor(s.tb, 2*time.Minute, "the sentinels promote a replica of "+old, func() bool {
		now = s.Master()
		if now == "" || now == old {
			return false
		}
		for _, n := range s.servers {
			if n.addr == now && n.cmd != nil {
				c := n.client()
				role := info(c, "replication", "role")
				_ = c.Close()
				return role == "master"
			}
		}
		return false
	})
	return now
}
