package redistest

import (
	"testing"

	"github.com/neofast/neoauthz/internal/pgtest"
)

// Server is a redis-server owned by one test, which it can kill and restart on the same
// port (to test what happens when Redis dies mid-traffic and comes back).
type Server struct{ n *node }

// StartServer starts a redis-server on a free loopback port; it is killed when the test
// ends. Without the binary the test fails (see pgtest.Unavailable); scripts/services.sh
// installs it.
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	need(tb, "redis-server")
	port := pgtest.FreePort(tb)
	return &Server{n: startNode(tb, tb.TempDir(), "redis-server", port, serverArgs(port)...)}
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.n.addr }

// Start (re)starts the server and waits until it answers.
func (s *Server) Start() {
	s.n.tb.Helper()
	s.n.start()
}

// Kill stops the server at once.
func (s *Server) Kill() { s.n.kill() }
