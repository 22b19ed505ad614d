package pgtest

import (
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to a server (PostgreSQL) on a loopback port of its own, so a
// test can take the server away from whoever connects through it: Stop refuses new connections
// and breaks open ones (a server that is down), Hang accepts them but never answers (a server
// that is slow), Start forwards again on the same port.
type Proxy struct {
	tb     testing.TB
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	hang  bool
}

// NewProxy starts forwarding to target (host:port); it stops when the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	p := &Proxy{tb: tb, target: target, addr: "127.0.0.1:0"}
	p.listen(false)
	p.addr = p.ln.Addr().String()
	tb.Cleanup(p.Stop)
	return p
}

// Port is the proxy's port on 127.0.0.1.
func (p *Proxy) Port() int {
	_, port, _ := net.SplitHostPort(p.addr)
	n, _ := strconv.Atoi(port)
	return n
}

// Start forwards again after Stop or Hang.
func (p *Proxy) Start() { p.Stop(); p.listen(false) }

// Hang accepts connections and never answers.
func (p *Proxy) Hang() { p.Stop(); p.listen(true) }

// Stop closes the listener and every connection through it.
func (p *Proxy) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *Proxy) listen(hang bool) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.tb.Fatalf("pgtest: proxy listen: %v", err)
	}
	p.mu.Lock()
	p.ln, p.hang = ln, hang
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var up net.Conn
			if !hang {
				if up, err = net.Dial("tcp", p.target); err != nil {
					_ = c.Close()
					continue
				}
			}
			p.mu.Lock()
			if p.ln != ln { // stopped meanwhile
				p.mu.Unlock()
				_ = c.Close()
				if up != nil {
					_ = up.Close()
				}
				return
			}
			p.conns = append(p.conns, c)
			if up != nil {
				p.conns = append(p.conns, up)
			}
			p.mu.Unlock()
			if up != nil {
				go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
				go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
			}
		}
	}()
}
