//go:build unix

package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a PostgreSQL server of a test's own: initdb into a temporary directory, started
// on a free loopback port, as the postgres user when the test runs as root (PostgreSQL refuses
// to run as root). StartPrimary starts one; StartReplica adds a streaming replica of it
// (pg_basebackup -R). Both are stopped and their directories removed when the test ends, and
// die with the test binary if it is killed first.
type Server struct {
	tb      testing.TB
	Port    int
	primary *Server // nil for a primary
	bin     string
	dir     string // the data directory
	cred    *syscall.Credential
	cmd     *exec.Cmd
	exited  chan struct{}
}

// serverSettings are the servers' settings: loopback TCP only, fast and not crash-safe (a test's
// data is thrown away), small, and able to stream to a replica.
var serverSettings = []string{
	"listen_addresses=127.0.0.1", "unix_socket_directories=", "fsync=off",
	"full_page_writes=off", "shared_buffers=16MB", "max_connections=80", "wal_level=replica",
	"max_wal_senders=5", "hot_standby=on", "logging_collector=off", "log_min_messages=warning",
}

// StartPrimary starts a fresh PostgreSQL server (trust authentication, replication allowed from
// loopback, as initdb sets it up) and returns once it accepts connections.
func StartPrimary(tb testing.TB) *Server {
	tb.Helper()
	s := newServer(tb, nil)
	s.run("initdb", "-D", s.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
	s.Start()
	return s
}

// StartReplica starts a streaming replica of s (a hot standby answering reads) and returns once
// it answers as a standby.
func (s *Server) StartReplica(tb testing.TB) *Server {
	tb.Helper()
	r := newServer(tb, s)
	// -R writes standby.signal and primary_conninfo; -c fast does not wait for a checkpoint.
	r.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", "postgres", "-D", r.dir,
		"-R", "-X", "stream", "-c", "fast", "--no-sync")
	r.Start()
	return r
}

// newServer prepares a server's directory (owned by the user the server runs as) and finds the
// binaries; a missing binary or user is Unavailable.
func newServer(tb testing.TB, primary *Server) *Server {
	tb.Helper()
	s := &Server{tb: tb, primary: primary, bin: serverBinaries(tb)}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			Unavailable(tb, "the postgres user (PostgreSQL does not run as root)", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parent is private to the test's user, which the postgres user is not.
	parent, err := os.MkdirTemp("", "neoauthz-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(parent) })
	if s.cred != nil {
		if err := os.Chown(parent, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			tb.Fatal(err)
		}
	}
	s.dir = filepath.Join(parent, "data")
	tb.Cleanup(s.Stop)
	return s
}

// serverBinaries returns the directory of the newest installed PostgreSQL server binaries
// (Debian keeps them out of PATH), or the one holding initdb on PATH.
func serverBinaries(tb testing.TB) string {
	tb.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) < version(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if ok(dirs[i]) {
			return dirs[i]
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && ok(filepath.Dir(p)) {
		return filepath.Dir(p)
	}
	Unavailable(tb, "the PostgreSQL server binaries initdb, postgres and pg_basebackup (Debian: postgresql)",
		errors.New("not found in /usr/lib/postgresql/*/bin nor on PATH"))
	return ""
}

func ok(dir string) bool {
	for _, b := range []string{"initdb", "postgres", "pg_basebackup"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return false
		}
	}
	return true
}

// version is the major version in /usr/lib/postgresql/<version>/bin.
func version(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

// command returns bin's command, run as the server's user.
func (s *Server) command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, bin), args...)
	cmd.Dir = filepath.Dir(s.dir)
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	DieWithTest(cmd)
	return cmd
}

// run runs a setup command to its end, failing the test with its output when it fails.
func (s *Server) run(bin string, args ...string) {
	s.tb.Helper()
	out, err := s.command(bin, args...).CombinedOutput()
	if err != nil {
		s.tb.Fatalf("pgtest: %s: %v\n%s", bin, err, out)
	}
}

// Start starts the server (again, after Stop) and waits until it answers: a replica, once it
// answers as a standby. A port someone took meanwhile is replaced by another.
func (s *Server) Start() {
	s.tb.Helper()
	if s.cmd != nil {
		return
	}
	for attempt := 0; ; attempt++ {
		if s.Port == 0 || attempt > 0 {
			s.Port = FreePort(s.tb)
		}
		args := []string{"-D", s.dir, "-p", strconv.Itoa(s.Port)}
		for _, kv := range serverSettings {
			args = append(args, "-c", kv)
		}
		s.cmd = s.command("postgres", args...)
		logf, err := os.OpenFile(filepath.Join(filepath.Dir(s.dir), "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			s.tb.Fatal(err)
		}
		s.cmd.Stdout, s.cmd.Stderr = logf, logf
		err = s.cmd.Start()
		_ = logf.Close()
		if err != nil {
			s.tb.Fatal(err)
		}
		s.exited = make(chan struct{})
		go func(cmd *exec.Cmd, exited chan struct{}) {
			_ = cmd.Wait()
			close(exited)
		}(s.cmd, s.exited)
		if s.waitReady() {
			return
		}
		s.cmd = nil
		if attempt == 2 {
			s.tb.Fatalf("pgtest: postgres did not start; its log:\n%s", s.logTail())
		}
	}
}

// waitReady waits until the server answers (a replica: as a standby); false when it exited.
func (s *Server) waitReady() bool {
	s.tb.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			var standby bool
			err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&standby)
			_ = conn.Close(ctx)
			if err == nil && standby == (s.primary != nil) {
				cancel()
				return true
			}
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	s.tb.Fatalf("pgtest: postgres on port %d did not answer within 90s; its log:\n%s", s.Port, s.logTail())
	return false
}

// Stop shuts the server down (fast shutdown: sessions are ended) and waits until it has exited.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// URL returns the server's URL for database.
func (s *Server) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, database)
}

// Exec runs sql on the server's postgres database.
func (s *Server) Exec(sql string, args ...any) {
	s.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	require(s.tb, err, "connect")
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	require(s.tb, err, sql)
}

// PauseReplay stops a replica from applying the WAL it receives (pg_wal_replay_pause): its
// data stays as it is while the primary moves on.
func (s *Server) PauseReplay() { s.tb.Helper(); s.Exec(`SELECT pg_wal_replay_pause()`) }

// ResumeReplay lets a paused replica apply WAL again.
func (s *Server) ResumeReplay() { s.tb.Helper(); s.Exec(`SELECT pg_wal_replay_resume()`) }

// CatchUp waits until a replica has replayed everything its primary has written so far.
func (s *Server) CatchUp() {
	s.tb.Helper()
	ctx := context.Background()
	p, err := pgx.Connect(ctx, s.primary.URL("postgres"))
	require(s.tb, err, "connect to the primary")
	defer p.Close(ctx)
	var lsn string
	require(s.tb, p.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn), "read the primary's WAL position")
	r, err := pgx.Connect(ctx, s.URL("postgres"))
	require(s.tb, err, "connect to the replica")
	defer r.Close(ctx)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var done bool
		require(s.tb, r.QueryRow(ctx, `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn`, lsn).Scan(&done), "read the replica's replay position")
		if done {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("pgtest: the replica on port %d did not replay up to %s within 60s", s.Port, lsn)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(s.dir), "server.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
