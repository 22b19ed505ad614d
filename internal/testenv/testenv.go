// Package testenv builds a neoauthz control plane for tests: a migrated admin database of the
// test's own, regions, and regional databases registered in it — on real PostgreSQL.
package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/secretbox"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/migrations"
)

// World is one test's control plane.
type World struct {
	AdminURL string
	Admin    *pgxpool.Pool
	Registry *registry.Store
	Fleet    *fleet.Runner
	Tenants  *tenancy.Service
	Sets     fleet.Sets
	server   string
	pkg      string
}

var (
	setsOnce sync.Once
	sets     fleet.Sets
	setsErr  error
	key      string
)

// Sets returns the project's migration sets and a hash of their content.
func Sets(tb testing.TB) (fleet.Sets, string) {
	tb.Helper()
	setsOnce.Do(func() {
		sets, setsErr = fleet.LoadSets(migrations.FS)
		h := sha256.New()
		_ = fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				b, _ := fs.ReadFile(migrations.FS, path)
				h.Write([]byte(path))
				h.Write(b)
			}
			return nil
		})
		key = hex.EncodeToString(h.Sum(nil))
	})
	if setsErr != nil {
		tb.Fatalf("load migrations: %v", setsErr)
	}
	return sets, key
}

var (
	templatesMu sync.Mutex
	templates   = map[string]*pgtest.Template{}
)

// template returns the package's template of the given kind (admin: platform + admin sets;
// regional: platform + tenant_template).
func template(tb testing.TB, pkg, kind string) *pgtest.Template {
	s, k := Sets(tb)
	templatesMu.Lock()
	defer templatesMu.Unlock()
	name := pkg + "_" + kind
	if t, ok := templates[name]; ok {
		return t
	}
	steps := []fleet.Step{{Set: migrations.SetPlatform, Schema: migrations.PlatformSchema}}
	if kind == "admin" {
		steps = append(steps, fleet.Step{Set: migrations.SetAdmin, Schema: migrations.AdminSchema})
	} else {
		steps = append(steps, fleet.Step{Set: migrations.SetTenant, Schema: migrations.TenantTemplateSchema})
	}
	t := &pgtest.Template{Name: name, Key: k, Setup: func(ctx context.Context, url string) error {
		r := &fleet.Runner{Sets: s}
		return r.ApplyTarget(ctx, fleet.Target{Name: kind, ConnString: url, Steps: steps})
	}}
	templates[name] = t
	return t
}

// New returns a World whose admin database is fresh and migrated; pkg names the test package
// ([a-z0-9_]), so each package has databases of its own.
func New(tb testing.TB, pkg string) *World {
	tb.Helper()
	s, _ := Sets(tb)
	server := pgtest.ServerURL(tb)
	url := template(tb, pkg, "admin").NewDatabase(tb)
	pool := pgtest.Pool(tb, url)
	box, err := secretbox.New("")
	if err != nil {
		tb.Fatal(err)
	}
	reg := registry.New(pool, box)
	runner := &fleet.Runner{Admin: pool, AdminURL: url, Registry: reg, Sets: s, Log: slog.New(slog.DiscardHandler)}
	return &World{AdminURL: url, Admin: pool, Registry: reg, Fleet: runner, Sets: s, server: server, pkg: pkg,
		Tenants: &tenancy.Service{Admin: pool, Registry: reg, Fleet: runner}}
}

// AddRegion creates a region with one healthy primary database of its own (a fresh database
// on the test server, already migrated) and returns that connection.
func (w *World) AddRegion(tb testing.TB, code string) registry.Connection {
	tb.Helper()
	ctx := context.Background()
	if _, err := w.Registry.CreateRegion(ctx, registry.Region{Code: code, Name: code}); err != nil {
		tb.Fatalf("create region: %v", err)
	}
	return w.AddDatabase(tb, code, code+"-primary", registry.TypePrimary)
}

// AddDatabase registers a fresh database on the test server in region.
func (w *World) AddDatabase(tb testing.TB, region, name, typ string) registry.Connection {
	tb.Helper()
	url := template(tb, w.pkg, "regional").NewDatabase(tb)
	return w.register(tb, url, registry.Connection{Name: name, Type: typ, RegionCode: region})
}

// AddServerDatabase creates a database on the server at serverURL (one the test started, e.g.
// with pgtest.StartPrimary), migrates it as AddDatabase's are, and registers it in region as a
// healthy primary.
func (w *World) AddServerDatabase(tb testing.TB, serverURL, region, name string) registry.Connection {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		tb.Fatalf("connect to %s: %v", name, err)
	}
	defer conn.Close(ctx)
	const db = "neoauthz_regional"
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		tb.Fatalf("create database on %s: %v", name, err)
	}
	url := pgtest.WithDatabase(serverURL, db)
	r := &fleet.Runner{Sets: w.Sets}
	if err := r.ApplyTarget(ctx, fleet.Target{Name: name, ConnString: url, Steps: []fleet.Step{
		{Set: migrations.SetPlatform, Schema: migrations.PlatformSchema},
		{Set: migrations.SetTenant, Schema: migrations.TenantTemplateSchema},
	}}); err != nil {
		tb.Fatalf("migrate %s: %v", name, err)
	}
	return w.register(tb, url, registry.Connection{Name: name, Type: registry.TypePrimary, RegionCode: region})
}

// AddReplica registers the server at replicaURL (a streaming replica of primary's server, e.g.
// from pgtest's StartReplica) as a healthy replica of primary.
func (w *World) AddReplica(tb testing.TB, primary registry.Connection, name, replicaURL string) registry.Connection {
	tb.Helper()
	return w.register(tb, pgtest.WithDatabase(replicaURL, primary.Database), registry.Connection{Name: name,
		Type: registry.TypeReplica, RegionCode: primary.RegionCode, PrimaryID: primary.ID})
}

// register registers the database at url with c's name, type, region and primary, and checks
// that it is healthy.
func (w *World) register(tb testing.TB, url string, c registry.Connection) registry.Connection {
	tb.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	c.Host, c.Port, c.Database, c.Username, c.TLSMode = cfg.Host, int(cfg.Port), cfg.Database, cfg.User, "disable"
	c, err = w.Registry.RegisterConnection(ctx, c)
	if err != nil {
		tb.Fatalf("register database: %v", err)
	}
	c, _, err = w.Registry.Check(ctx, c, 0)
	if err != nil || !c.IsHealthy {
		tb.Fatalf("database %s is not healthy: %v %v", c.Name, err, c.LastError)
	}
	return c
}

// Connect opens a pool on a registered database (or, with database set, another database on
// its server), closed when the test ends.
func (w *World) Connect(tb testing.TB, c registry.Connection, database string) *pgxpool.Pool {
	tb.Helper()
	dsn, err := w.Registry.ConnString(c, database)
	if err != nil {
		tb.Fatal(err)
	}
	return pgtest.Pool(tb, dsn)
}

// Server returns the test server's URL.
func (w *World) Server() string { return w.server }

// Backends returns how many server processes are connected to the database named database
// (pg_stat_activity is server-wide, so the admin pool can see every database's). Tests use it
// to prove that nothing connected to a database.
func (w *World) Backends(tb testing.TB, database string) int {
	tb.Helper()
	var n int
	if err := w.Admin.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, database).Scan(&n); err != nil {
		tb.Fatalf("count backends: %v", err)
	}
	return n
}

// WaitNoBackends waits (up to 30 seconds) until nothing is connected to database: the server
// ends a closed connection's process shortly after the client has gone.
func (w *World) WaitNoBackends(tb testing.TB, database string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for w.Backends(tb, database) != 0 {
		if time.Now().After(deadline) {
			tb.Fatalf("database %s still has %d connections", database, w.Backends(tb, database))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
