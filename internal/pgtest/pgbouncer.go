package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PgBouncer is a pgbouncer process of a test, in transaction pooling mode in front of the test
// server, listening on a random loopback port; it is killed when the test ends.
type PgBouncer struct {
	// Host and Port are where clients connect.
	Host string
	Port int
	// PoolSize is the most server connections it opens per database and user.
	PoolSize int

	user, password string
	dir            string
}

// PgBouncerOptions tunes StartPgBouncer.
type PgBouncerOptions struct {
	// PoolSize is default_pool_size and max_db_connections (default 2).
	PoolSize int
	// DatabaseParams is added to the fallback database entry, e.g.
	// connect_query='SET default_transaction_read_only = on'.
	DatabaseParams string
}

// StartPgBouncer starts pgbouncer (Debian package pgbouncer; scripts/services.sh installs it as
// root) in front of the test server. Every database of the server is reachable through it
// under its own name. A missing binary fails the test (see Unavailable).
func StartPgBouncer(tb testing.TB, opts PgBouncerOptions) *PgBouncer {
	tb.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		// Debian installs it in /usr/sbin, which is not on every user's PATH.
		bin, err = exec.LookPath("/usr/sbin/pgbouncer")
	}
	if err != nil {
		Unavailable(tb, "the pgbouncer binary (Debian package pgbouncer)", err)
		return nil
	}
	server, err := pgx.ParseConfig(ServerURL(tb))
	require(tb, err, "parse DATABASE_URL")
	if opts.PoolSize <= 0 {
		opts.PoolSize = 2
	}
	// pgbouncer refuses to run as root; it then runs as postgres, which must read its files.
	dir, err := os.MkdirTemp("", "neoauthz-pgbouncer-")
	require(tb, err, "pgbouncer folder")
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	require(tb, os.Chmod(dir, 0o755), "pgbouncer folder")
	b := &PgBouncer{Host: "127.0.0.1", PoolSize: opts.PoolSize, user: server.User, password: server.Password, dir: dir}
	users := fmt.Sprintf("%q %q\n", server.User, server.Password)
	require(tb, os.WriteFile(filepath.Join(dir, "users.txt"), []byte(users), 0o644), "pgbouncer users")

	var args []string
	if os.Geteuid() == 0 {
		args = append(args, "-u", "postgres")
	}
	// A port found free may be taken before pgbouncer binds it: try a few.
	for attempt := 0; ; attempt++ {
		b.Port = FreePort(tb)
		ini := filepath.Join(dir, "pgbouncer.ini")
		require(tb, os.WriteFile(ini, []byte(b.config(server.Host, server.Port, opts)), 0o644), "pgbouncer.ini")
		logPath := filepath.Join(dir, "out.log")
		log, err := os.Create(logPath)
		require(tb, err, "pgbouncer log")
		cmd := exec.Command(bin, append(args, ini)...)
		cmd.Stdout, cmd.Stderr = log, log
		DieWithTest(cmd)
		require(tb, cmd.Start(), "start pgbouncer")
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); _ = log.Close(); close(exited) }()
		if b.waitReady(exited) {
			tb.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
			return b
		}
		_ = cmd.Process.Kill()
		<-exited
		out, _ := os.ReadFile(logPath)
		if attempt == 3 {
			tb.Fatalf("pgbouncer did not start:\n%s", out)
		}
	}
}

func (b *PgBouncer) config(host string, port uint16, opts PgBouncerOptions) string {
	return fmt.Sprintf(`[databases]
* = host=%s port=%d %s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
admin_users = %s
pool_mode = transaction
default_pool_size = %d
max_db_connections = %d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 2000
server_reset_query =
`, host, port, opts.DatabaseParams, b.Port, filepath.Join(b.dir, "users.txt"), b.user, opts.PoolSize, opts.PoolSize)
}

// waitReady waits until a query through pgbouncer answers, or the process exited.
func (b *PgBouncer) waitReady(exited <-chan struct{}) bool {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, b.URL("postgres")+"&default_query_exec_mode=exec")
		if err == nil {
			_, err = conn.Exec(ctx, "SELECT 1")
			_ = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// Addr is host:port.
func (b *PgBouncer) Addr() string { return net.JoinHostPort(b.Host, strconv.Itoa(b.Port)) }

// URL is the connection URL of database through pgbouncer (TLS off).
func (b *PgBouncer) URL(database string) string {
	user := b.user
	if b.password != "" {
		user += ":" + b.password
	}
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", user, b.Addr(), database)
}

// ServerConnections returns how many server connections pgbouncer holds now (SHOW SERVERS on
// its admin console), to compare with what PostgreSQL reports.
func (b *PgBouncer) ServerConnections(ctx context.Context) (int, error) {
	return b.count(ctx, "SHOW SERVERS")
}

// ClientConnections returns how many clients are connected to pgbouncer now (SHOW CLIENTS).
func (b *PgBouncer) ClientConnections(ctx context.Context) (int, error) {
	return b.count(ctx, "SHOW CLIENTS")
}

func (b *PgBouncer) count(ctx context.Context, show string) (int, error) {
	conn, err := pgx.Connect(ctx, b.URL("pgbouncer")+"&default_query_exec_mode=simple_protocol")
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, show)
	if err != nil {
		return 0, err
	}
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

// FreePort returns a loopback port nothing listens on now.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require(tb, err, "find a free port")
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}
