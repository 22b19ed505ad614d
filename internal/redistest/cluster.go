package redistest

import (
	"context"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/neofast/neoauthz/internal/pgtest"
)

// NodeTimeout is the cluster-node-timeout of Cluster and the down-after-milliseconds of
// Sentinel: how long a master may be silent before its replica takes over. Short, so that a
// failover test is quick; long enough that a busy test machine does not fail over by itself.
const NodeTimeout = 2 * time.Second

// Cluster is a Redis Cluster of three masters with one replica each, owned by one test.
type Cluster struct {
	tb    testing.TB
	nodes []*node
}

// StartCluster starts six redis-server processes with cluster mode on loopback ports, forms
// a cluster of them with redis-cli, and waits until every slot is served and every replica
// is in sync. The processes are killed when the test ends.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	need(tb, "redis-server", "redis-cli")
	dir := tb.TempDir()
	c := &Cluster{tb: tb}
	for range 6 {
		port := pgtest.FreePort(tb)
		c.nodes = append(c.nodes, startNode(tb, dir, "redis-server", port, serverArgs(port,
			// The bus port defaults to port+10000, which may be above 65535 or taken.
			"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(pgtest.FreePort(tb)), "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(NodeTimeout.Milliseconds())),
			// A replica may always take over, however long it was out of touch.
			"--cluster-replica-validity-factor", "0")...))
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.nodes {
		args = append(args, n.addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.waitHealthy(3)
	return c
}

// URL is the cluster's redis-cluster:// URL, listing every node.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr
	}
	return "redis-cluster://" + strings.Join(addrs, ",")
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	addr   string
	master bool
	failed bool
	slots  [][2]int
}

// topology returns CLUSTER NODES as seen by the first live node.
func (c *Cluster) topology() []clusterNode {
	for _, n := range c.nodes {
		if n.cmd == nil {
			continue
		}
		cl := n.client()
		s, err := cl.ClusterNodes(context.Background()).Result()
		_ = cl.Close()
		if err != nil {
			continue
		}
		var out []clusterNode
		for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			flags := strings.Split(f[2], ",")
			cn := clusterNode{addr: strings.Split(f[1], "@")[0], master: slices.Contains(flags, "master"),
				failed: slices.Contains(flags, "fail") || slices.Contains(flags, "fail?")}
			for _, r := range f[8:] {
				lo, hi, ok := strings.Cut(r, "-")
				if !ok {
					hi = lo
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 == nil && err2 == nil {
					cn.slots = append(cn.slots, [2]int{a, b})
				}
			}
			out = append(out, cn)
		}
		return out
	}
	return nil
}

// waitHealthy waits until every live node says cluster_state:ok, masters live masters serve
// slots, and every live replica's link to its master is up.
func (c *Cluster) waitHealthy(masters int) {
	c.tb.Helper()
	waitFor(c.tb, 2*time.Minute, "the cluster is healthy", func() bool {
		for _, n := range c.nodes {
			if n.cmd == nil {
				continue
			}
			cl := n.client()
			ci, _ := cl.ClusterInfo(context.Background()).Result()
			ok := field(ci, "cluster_state") == "ok" &&
				(info(cl, "replication", "role") == "master" || info(cl, "replication", "master_link_status") == "up")
			_ = cl.Close()
			if !ok {
				return false
			}
		}
		live := 0
		for _, cn := range c.topology() {
			if cn.master && !cn.failed && len(cn.slots) > 0 {
				live++
			}
		}
		return live == masters
	}, c.nodes...)
}

// MasterOf returns the address of the live master serving key's slot, or "".
func (c *Cluster) MasterOf(key string) string {
	c.tb.Helper()
	slot := c.KeySlot(key)
	for _, cn := range c.topology() {
		if !cn.master || cn.failed {
			continue
		}
		for _, r := range cn.slots {
			if int(slot) >= r[0] && int(slot) <= r[1] {
				return cn.addr
			}
		}
	}
	return ""
}

// KeySlot returns the cluster slot of key.
func (c *Cluster) KeySlot(key string) int64 {
	c.tb.Helper()
	for _, n := range c.nodes {
		if n.cmd == nil {
			continue
		}
		cl := n.client()
		s, err := cl.ClusterKeySlot(context.Background(), key).Result()
		_ = cl.Close()
		if err == nil {
			return s
		}
	}
	c.tb.Fatal("no cluster node answered CLUSTER KEYSLOT")
	return -1
}

// Kill kills the node at addr (SIGKILL, as in a crash).
func (c *Cluster) Kill(addr string) {
	c.tb.Helper()
	for _, n := range c.nodes {
		if n.addr == addr {
			n.kill()
			return
		}
	}
	c.tb.Fatalf("no cluster node at %s", addr)
}

// WaitFailover waits until key's slot is served by a live master other than old (its
// replica, promoted) and the cluster is healthy again, and returns the new master's address.
func (c *Cluster) WaitFailover(key, old string) string {
	c.tb.Helper()
	var now string
	waitFor(c.tb, 2*time.Minute, "a replica takes over from "+old, func() bool {
		now = c.MasterOf(key)
		return now != "" && now != old
	})
	c.waitHealthy(3)
	return now
}
