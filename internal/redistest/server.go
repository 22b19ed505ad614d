package redistest

import (
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server owned by one test, which it can kill and restart on the same
// port (to test what happens when Redis dies mid-traffic and comes back).
type Server struct {
	tb   testing.TB
	port int
	cmd  *exec.Cmd
}

// StartServer starts a redis-server on a free loopback port; it is killed when the test
// ends. Without the binary the test fails (see pgtest.Unavailable); scripts/services.sh
// installs it.
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	need(tb, "redis-server")
	port := freePort(tb)
	s := &Server{tb: tb, port: port}
	s.Start()
	tb.Cleanup(s.Kill)
	return s
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(s.port) }

// Start (re)starts the server and waits until it answers.
func (s *Server) Start() {
	s.tb.Helper()
	s.cmd = exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(s.port), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server did not start on port %d", s.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server at once.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}
