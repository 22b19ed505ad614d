// Package pgtest gives each test its own PostgreSQL database, cloned from a template that is
// built once per content hash.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ServerURL returns DATABASE_URL (or the local default). When no server answers, the test
// fails (see Unavailable).
func ServerURL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		Unavailable(tb, "PostgreSQL", err)
		return ""
	}
	_ = conn.Close(ctx)
	return url
}

// SkipUnavailableEnv names the environment variable that turns a missing service from a test
// failure into a skip, for people who knowingly run without PostgreSQL or Redis.
const SkipUnavailableEnv = "NEOAUTHZ_TEST_SKIP_UNAVAILABLE"

// Unavailable fails the test: a test that cannot run its real dependencies proves nothing, and
// a skip is easy to miss in a long run. Only an explicit SkipUnavailableEnv=1 (and never with CI
// set) turns the failure into a skip.
func Unavailable(tb testing.TB, service string, err error) {
	tb.Helper()
	msg := fmt.Sprintf("%s is not available (%v); run the tests with `make test`, which starts it", service, err)
	if os.Getenv(SkipUnavailableEnv) == "1" && os.Getenv("CI") == "" {
		tb.Skip(msg + " [skipped: " + SkipUnavailableEnv + "=1]")
	}
	tb.Fatal(msg + " (set " + SkipUnavailableEnv + "=1 to skip such tests instead)")
}

// Template is a database built once by Setup and copied for each test.
type Template struct {
	// Name identifies the template, e.g. the test package's name; [a-z0-9_] only.
	Name string
	// Key changes whenever what Setup builds changes (e.g. a hash of the migrations);
	// a template built for another key is rebuilt.
	Key string
	// Setup builds the template's content in the database at url.
	Setup func(ctx context.Context, url string) error

	once sync.Once
	err  error
	db   string
}

var safeName = regexp.MustCompile(`^[a-z0-9_]+$`)

// NewDatabase creates a fresh database cloned from the template and returns its URL; it is
// dropped when the test ends.
func (t *Template) NewDatabase(tb testing.TB) string {
	tb.Helper()
	server := ServerURL(tb)
	ctx := context.Background()
	t.once.Do(func() { t.db, t.err = t.build(ctx, server) })
	require(tb, t.err, "build template database")

	name := fmt.Sprintf("nzt_%s_%s", t.Name, randomSuffix())
	if len(name) > 63 {
		name = name[:63]
	}
	conn, err := pgx.Connect(ctx, server)
	require(tb, err, "connect")
	defer conn.Close(ctx)
	require(tb, withLock(ctx, conn, t.db, func() error {
		_, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
			pgx.Identifier{name}.Sanitize(), pgx.Identifier{t.db}.Sanitize()))
		return err
	}), "create test database")
	tb.Cleanup(func() { Drop(tb, server, name) })
	return WithDatabase(server, name)
}

// Drop drops a database, disconnecting its sessions.
func Drop(tb testing.TB, server, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		tb.Logf("drop %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		tb.Logf("drop %s: %v", name, err)
	}
}

// Pool opens a pool on url, closed when the test ends.
func Pool(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	require(tb, err, "open pool")
	tb.Cleanup(pool.Close)
	return pool
}

// WithDatabase returns url with its database name replaced.
func WithDatabase(url, db string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return url
	}
	q := ""
	if cfg.TLSConfig == nil {
		q = "?sslmode=disable"
	}
	user := cfg.User
	if cfg.Password != "" {
		user += ":" + cfg.Password
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s%s", user, cfg.Host, cfg.Port, db, q)
}

func (t *Template) build(ctx context.Context, server string) (string, error) {
	if !safeName.MatchString(t.Name) {
		return "", fmt.Errorf("template name %q: use [a-z0-9_] only", t.Name)
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(t.Key))
	db := fmt.Sprintf("nzt_tpl_%s_%x", t.Name, h.Sum64())
	if len(db) > 63 {
		db = db[:63]
	}
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	err = withLock(ctx, conn, db, func() error {
		var ready bool
		err := conn.QueryRow(ctx, `SELECT coalesce(shobj_description(oid, 'pg_database') = 'ready', false)
			FROM pg_database WHERE datname = $1`, db).Scan(&ready)
		if err == nil && ready {
			return nil
		}
		ident := pgx.Identifier{db}.Sanitize()
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
			return err
		}
		if t.Setup != nil {
			if err := t.Setup(ctx, WithDatabase(server, db)); err != nil {
				return fmt.Errorf("template setup: %w", err)
			}
		}
		// Setup's sessions may linger a moment after their pools close; a template with
		// users connected cannot be copied.
		_, err = conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, db)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, "COMMENT ON DATABASE "+ident+" IS 'ready'")
		return err
	})
	return db, err
}

// withLock runs fn holding a session advisory lock named after key, so parallel test
// packages neither build the same template twice nor copy it while it is in use.
func withLock(ctx context.Context, conn *pgx.Conn, key string, fn func() error) error {
	h := fnv.New64a()
	_, _ = h.Write([]byte("neoauthz-pgtest:" + key))
	id := int64(h.Sum64())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", id); err != nil {
		return err
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", id) //nolint:errcheck // released with the session anyway
	return fn()
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func require(tb testing.TB, err error, what string) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("pgtest: %s: %v", what, err)
	}
}
