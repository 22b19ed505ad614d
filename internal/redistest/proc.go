package redistest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/neofast/neoauthz/internal/pgtest"
)

// need fails the test (see pgtest.Unavailable) when a binary is not on PATH.
func need(tb testing.TB, bins ...string) {
	tb.Helper()
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			pgtest.Unavailable(tb, "the "+bin+" binary (Debian: redis-server, redis-tools, redis-sentinel)", err)
		}
	}
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// serverArgs are a redis-server's arguments for a test: loopback only, no persistence.
func serverArgs(port int, extra ...string) []string {
	return append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"}, extra...)
}

// node is one redis-server or redis-sentinel process of a test, logging into its own folder.
type node struct {
	tb   testing.TB
	addr string
	dir  string
	bin  string
	args []string
	// logFile is the process's log, in dir.
	logFile string
	cmd     *exec.Cmd
}

// startNode starts bin with args in a fresh folder under dir and waits until it answers PING;
// it is killed when the test ends.
func startNode(tb testing.TB, dir, bin string, port int, args ...string) *node {
	tb.Helper()
	n := &node{tb: tb, addr: addr(port), dir: filepath.Join(dir, strconv.Itoa(port)), bin: bin, args: args, logFile: "out.log"}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	n.start()
	tb.Cleanup(n.kill)
	return n
}

func (n *node) start() {
	n.tb.Helper()
	log, err := os.Create(filepath.Join(n.dir, "out.log"))
	if err != nil {
		n.tb.Fatal(err)
	}
	defer log.Close()
	n.cmd = exec.Command(n.bin, n.args...)
	n.cmd.Dir = n.dir
	n.cmd.Stdout, n.cmd.Stderr = log, log
	pgtest.DieWithTest(n.cmd)
	if err := n.cmd.Start(); err != nil {
		n.tb.Fatal(err)
	}
	c := n.client()
	defer c.Close()
	waitFor(n.tb, 20*time.Second, n.bin+" on "+n.addr+" answers", func() bool {
		return c.Ping(context.Background()).Err() == nil
	}, n)
}

// kill stops the process at once (SIGKILL: no shutdown, as in a crash).
func (n *node) kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
	n.cmd = nil
}

func (n *node) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.addr, MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
}

// info returns one field of an INFO section (e.g. "role" of INFO replication), or "".
func info(c *redis.Client, section, name string) string {
	s, err := c.Info(context.Background(), section).Result()
	if err != nil {
		return ""
	}
	return field(s, name)
}

// field returns the value of name in INFO-style "name:value" lines, or "".
func field(s, name string) string {
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// waitFor polls cond until it holds, failing the test with what was awaited, and the logs
// of nodes, after timeout.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool, nodes ...*node) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			for _, n := range nodes {
				b, _ := os.ReadFile(filepath.Join(n.dir, n.logFile))
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				tb.Logf("%s %s (running: %v):\n%s", n.bin, n.addr, n.cmd != nil, b)
			}
			tb.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
