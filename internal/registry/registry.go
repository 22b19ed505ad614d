// Package registry stores the regions and the database connections neoauthz manages, and
// checks the connections' health.
package registry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/neofast/neoauthz/internal/audit"
	"github.com/neofast/neoauthz/internal/secretbox"
)

// ErrNotFound is returned when a region or connection does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a unique name or address is already taken.
var ErrConflict = errors.New("already exists")

// ErrConfiguration is returned when this process's configuration (not the database) stops an
// operation, e.g. a registered password that does not open under NEOAUTHZ_SECRET_KEY.
var ErrConfiguration = errors.New("configuration error")

// ValidationError names the field that was refused and why.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// Connection types of the registry.
const (
	TypePrimary   = "primary"
	TypeReplica   = "replica"
	TypeAnalytics = "analytics"
	TypeBackup    = "backup"
)

var (
	identifierRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	hostRe       = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,253}$`)
	userRe       = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,63}$`)
	uuidRe       = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	tlsModes     = map[string]bool{"disable": true, "allow": true, "prefer": true, "require": true, "verify-ca": true, "verify-full": true}
	connTypes    = map[string]bool{TypePrimary: true, TypeReplica: true, TypeAnalytics: true, TypeBackup: true}
)

// ValidSlug reports whether s is a valid slug: lowercase letters, digits and inner dashes,
// at most 63 characters.
// It is a loop rather than a regular expression because the pdp checks tenant names from
// requests with it.
func ValidSlug(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// ValidIdentifier reports whether s may be used as a schema or database name.
func ValidIdentifier(s string) bool {
	return identifierRe.MatchString(s) && (len(s) < 3 || s[:3] != "pg_")
}

// Region is a place where tenants' data lives.
type Region struct {
	Code          string    `json:"code"`
	Name          string    `json:"name"`
	IsActive      bool      `json:"is_active"`
	DataResidency bool      `json:"data_residency"`
	CreatedAt     time.Time `json:"created_at"`
}

// Connection is a registered database. Password is accepted on registration and never read
// back; ConnString decrypts it when a connection is opened.
type Connection struct {
	ID                     string     `json:"id"`
	Name                   string     `json:"name"`
	Type                   string     `json:"type"`
	RegionCode             string     `json:"region"`
	Host                   string     `json:"host"`
	Port                   int        `json:"port"`
	Database               string     `json:"database"`
	Username               string     `json:"username"`
	Password               string     `json:"-"`
	TLSMode                string     `json:"tls_mode"`
	PoolMin                int        `json:"pool_min"`
	PoolMax                int        `json:"pool_max"`
	IsActive               bool       `json:"is_active"`
	IsHealthy              bool       `json:"is_healthy"`
	LastHealthCheck        *time.Time `json:"last_health_check,omitempty"`
	LastLatencyMS          *float64   `json:"last_latency_ms,omitempty"`
	LastError              *string    `json:"last_error,omitempty"`
	ConsecutiveFailures    int        `json:"consecutive_failures"`
	MaxConsecutiveFailures int        `json:"max_consecutive_failures"`
	// PrimaryID is, for a replica, the id of the primary it streams from (on registration, the
	// primary's id or name); empty for every other type.
	PrimaryID string    `json:"primary_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`

	sealed []byte
}

// Store reads and writes the registry in the admin database.
type Store struct {
	pool dbtx
	box  *secretbox.Box
}

// dbtx is what Store runs statements on: the pool, or a caller's transaction (In).
type dbtx interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// In returns a Store whose statements run in tx, so a caller commits a registry change with
// its audit row (a Store's own transactions become savepoints of tx).
func (s *Store) In(tx pgx.Tx) *Store { return &Store{pool: tx, box: s.box} }

// New returns a Store over the admin database; box seals registered passwords.
func New(pool *pgxpool.Pool, box *secretbox.Box) *Store {
	if box == nil {
		box = &secretbox.Box{}
	}
	return &Store{pool: pool, box: box}
}

// CreateRegion adds a region.
func (s *Store) CreateRegion(ctx context.Context, r Region) (Region, error) {
	if !ValidSlug(r.Code) {
		return Region{}, &ValidationError{"code", "use lowercase letters, digits and dashes, e.g. us-east-1"}
	}
	if r.Name == "" {
		r.Name = r.Code
	}
	err := s.pool.QueryRow(ctx, `INSERT INTO admin.regions (code, name, is_active, data_residency)
		VALUES ($1, $2, true, $3) RETURNING is_active, created_at`, r.Code, r.Name, r.DataResidency).
		Scan(&r.IsActive, &r.CreatedAt)
	return r, mapErr(err, "region "+r.Code)
}

// ListRegions returns every region by code.
func (s *Store) ListRegions(ctx context.Context) ([]Region, error) {
	rows, err := s.pool.Query(ctx, `SELECT code, name, is_active, data_residency, created_at FROM admin.regions ORDER BY code`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Region, error) {
		var r Region
		err := row.Scan(&r.Code, &r.Name, &r.IsActive, &r.DataResidency, &r.CreatedAt)
		return r, err
	})
}

func (c *Connection) validate() error {
	switch {
	case !ValidSlug(c.Name):
		return &ValidationError{"name", "use lowercase letters, digits and dashes"}
	case !connTypes[c.Type]:
		return &ValidationError{"type", "must be primary, replica, analytics or backup"}
	case !ValidSlug(c.RegionCode):
		return &ValidationError{"region", "unknown region code"}
	case !hostRe.MatchString(c.Host):
		return &ValidationError{"host", "must be a host name or an IP address"}
	case c.Port < 1 || c.Port > 65535:
		return &ValidationError{"port", "must be between 1 and 65535"}
	case !ValidIdentifier(c.Database):
		return &ValidationError{"database", "use lowercase letters, digits and underscores (at most 63), not starting with pg_"}
	case !userRe.MatchString(c.Username):
		return &ValidationError{"username", "use letters, digits, _ . @ -"}
	case !tlsModes[c.TLSMode]:
		return &ValidationError{"tls_mode", "must be disable, allow, prefer, require, verify-ca or verify-full"}
	case c.PoolMax < 1 || c.PoolMin < 0 || c.PoolMin > c.PoolMax:
		return &ValidationError{"pool_max", "need 0 <= pool_min <= pool_max and pool_max >= 1"}
	case c.MaxConsecutiveFailures < 1:
		return &ValidationError{"max_consecutive_failures", "must be at least 1"}
	case c.Type == TypeReplica && c.PrimaryID == "":
		return &ValidationError{"primary", "a replica names the primary it streams from"}
	case c.Type != TypeReplica && c.PrimaryID != "":
		return &ValidationError{"primary", "only a replica has a primary"}
	case c.PrimaryID != "" && !ValidSlug(c.PrimaryID) && !uuidRe.MatchString(c.PrimaryID):
		return &ValidationError{"primary", "give the primary's name or id"}
	}
	return nil
}

// linkPrimary resolves a replica's primary (by id or name, in the registration's transaction)
// to its id, refusing what the database's foreign key would refuse with a message that says why.
func linkPrimary(ctx context.Context, tx pgx.Tx, c *Connection) error {
	if c.Type != TypeReplica {
		return nil
	}
	p, err := scanConn(tx.QueryRow(ctx, `SELECT `+connColumns+` FROM admin.database_connections
		WHERE name = $1 OR id::text = $1`, c.PrimaryID))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return &ValidationError{"primary", "no database connection " + c.PrimaryID}
	case err != nil:
		return err
	case p.Type != TypePrimary:
		return &ValidationError{"primary", p.Name + " is a " + p.Type + ", not a primary: link a replica to the primary it streams from"}
	case p.RegionCode != c.RegionCode:
		return &ValidationError{"region", "a replica is in its primary's region (" + p.RegionCode + ")"}
	case p.Database != c.Database:
		return &ValidationError{"database", "a replica serves its primary's database (" + p.Database + ")"}
	}
	c.PrimaryID = p.ID
	return nil
}

// RegisterConnection adds a database to the registry, sealing its password. Defaults: type
// primary, port 5432, TLS prefer, pool 0..10, three failures before deactivation. A replica
// names its primary (PrimaryID, an id or a name): an active or inactive primary of the same
// region and database.
func (s *Store) RegisterConnection(ctx context.Context, c Connection) (Connection, error) {
	if c.Type == "" {
		c.Type = TypePrimary
	}
	if c.Port == 0 {
		c.Port = 5432
	}
	if c.TLSMode == "" {
		c.TLSMode = "prefer"
	}
	if c.PoolMax == 0 {
		c.PoolMax = 10
	}
	if c.MaxConsecutiveFailures == 0 {
		c.MaxConsecutiveFailures = 3
	}
	if err := c.validate(); err != nil {
		return Connection{}, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Connection{}, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if err := linkPrimary(ctx, tx, &c); err != nil {
		return Connection{}, err
	}
	if err := tx.QueryRow(ctx, `SELECT gen_random_uuid()::text`).Scan(&c.ID); err != nil {
		return Connection{}, err
	}
	sealed, err := s.box.Seal(c.Password, c.ID)
	if err != nil {
		return Connection{}, err
	}
	err = tx.QueryRow(ctx, `INSERT INTO admin.database_connections
		(id, name, type, region_code, host, port, database, username, password_encrypted, tls_mode,
		 pool_min, pool_max, max_consecutive_failures, primary_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, nullif($14, '')::uuid) RETURNING is_active, created_at`,
		c.ID, c.Name, c.Type, c.RegionCode, c.Host, c.Port, c.Database, c.Username, sealed, c.TLSMode,
		c.PoolMin, c.PoolMax, c.MaxConsecutiveFailures, c.PrimaryID).Scan(&c.IsActive, &c.CreatedAt)
	if err != nil {
		return Connection{}, mapErr(err, "database connection "+c.Name)
	}
	if err := tx.Commit(ctx); err != nil {
		return Connection{}, err
	}
	c.Password, c.sealed = "", sealed
	return c, nil
}

const connColumns = `id::text, name, type, region_code, host, port, database, username, password_encrypted,
	tls_mode, pool_min, pool_max, is_active, is_healthy, last_health_check, last_latency_ms, last_error,
	consecutive_failures, max_consecutive_failures, coalesce(primary_id::text, ''), created_at`

func scanConn(row pgx.Row) (Connection, error) {
	var c Connection
	err := row.Scan(&c.ID, &c.Name, &c.Type, &c.RegionCode, &c.Host, &c.Port, &c.Database, &c.Username,
		&c.sealed, &c.TLSMode, &c.PoolMin, &c.PoolMax, &c.IsActive, &c.IsHealthy, &c.LastHealthCheck,
		&c.LastLatencyMS, &c.LastError, &c.ConsecutiveFailures, &c.MaxConsecutiveFailures, &c.PrimaryID, &c.CreatedAt)
	return c, err
}

// ConnectionFilter narrows ListConnections; zero fields match everything.
type ConnectionFilter struct {
	Type       string
	RegionCode string
	ActiveOnly bool
}

// ListConnections returns registered connections by name.
func (s *Store) ListConnections(ctx context.Context, f ConnectionFilter) ([]Connection, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+connColumns+` FROM admin.database_connections
		WHERE ($1 = '' OR type = $1) AND ($2 = '' OR region_code = $2) AND (NOT $3 OR is_active)
		ORDER BY name`, f.Type, f.RegionCode, f.ActiveOnly)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Connection, error) { return scanConn(row) })
}

// GetConnection returns a connection by id or name.
func (s *Store) GetConnection(ctx context.Context, idOrName string) (Connection, error) {
	c, err := scanConn(s.pool.QueryRow(ctx, `SELECT `+connColumns+` FROM admin.database_connections
		WHERE name = $1 OR id::text = $1`, idOrName))
	return c, mapErr(err, "database connection "+idOrName)
}

// Replicas returns the active replicas linked to the primary primaryID, by name.
func (s *Store) Replicas(ctx context.Context, primaryID string) ([]Connection, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+connColumns+` FROM admin.database_connections
		WHERE primary_id::text = $1 AND type = 'replica' AND is_active ORDER BY name`, primaryID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Connection, error) { return scanConn(row) })
}

// PickPrimary returns the region's active, healthy primary database holding the fewest
// tenants. Provisioning never places a tenant on an unhealthy database.
func (s *Store) PickPrimary(ctx context.Context, region string) (Connection, error) {
	c, err := scanConn(s.pool.QueryRow(ctx, `SELECT `+connColumns+` FROM admin.database_connections c
		WHERE c.region_code = $1 AND c.type = 'primary' AND c.is_active AND c.is_healthy
		ORDER BY (SELECT count(*) FROM admin.tenants t WHERE t.database_connection_id = c.id AND t.status <> 'deleted'), c.name
		LIMIT 1`, region))
	if errors.Is(err, pgx.ErrNoRows) {
		return Connection{}, fmt.Errorf("region %q has no active, healthy primary database (register one with `admin db register` and run `admin db check`): %w", region, ErrNotFound)
	}
	return c, err
}

// ConnString returns a libpq URL for the connection, with the password decrypted; database
// overrides the registered database name when not empty.
func (s *Store) ConnString(c Connection, database string) (string, error) {
	pw, err := s.box.Open(c.sealed, c.ID)
	if err != nil {
		return "", fmt.Errorf("database connection %s: %w", c.Name, err)
	}
	if database == "" {
		database = c.Database
	}
	u := url.URL{Scheme: "postgres", Host: c.Host + ":" + strconv.Itoa(c.Port), Path: "/" + database}
	if pw != "" {
		u.User = url.UserPassword(c.Username, pw)
	} else {
		u.User = url.User(c.Username)
	}
	q := url.Values{}
	q.Set("sslmode", c.TLSMode)
	q.Set("application_name", "neoauthz")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Check connects to the database, runs a query, and records the outcome: latency,
// is_healthy, consecutive_failures. A connection that fails max_consecutive_failures times in
// a row is deactivated; deactivated reports whether this check did so.
func (s *Store) Check(ctx context.Context, c Connection, timeout time.Duration) (checked Connection, deactivated bool, err error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	// A password that does not open under this process's key is a configuration error: it says
	// nothing about the database, so it is neither recorded nor counted as a failure.
	if _, err := s.ConnString(c, ""); err != nil {
		return c, false, fmt.Errorf("%w: %w", ErrConfiguration, err)
	}
	start := time.Now()
	probeErr := s.probe(ctx, c, timeout)
	latency := float64(time.Since(start).Microseconds()) / 1000
	var lastErr *string
	if probeErr != nil {
		msg := probeErr.Error()
		lastErr = &msg
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var wasActive bool
		err := tx.QueryRow(ctx, `SELECT is_active FROM admin.database_connections WHERE id = $1 FOR UPDATE`, c.ID).Scan(&wasActive)
		if err != nil {
			return mapErr(err, "database connection "+c.Name)
		}
		checked, err = scanConn(tx.QueryRow(ctx, `UPDATE admin.database_connections SET
				is_healthy = $2,
				last_health_check = now(),
				last_latency_ms = $3,
				last_error = $4,
				consecutive_failures = CASE WHEN $2 THEN 0 ELSE consecutive_failures + 1 END,
				is_active = is_active AND ($2 OR consecutive_failures + 1 < max_consecutive_failures),
				updated_at = now()
			WHERE id = $1 RETURNING `+connColumns, c.ID, probeErr == nil, latency, lastErr))
		if err != nil {
			return err
		}
		deactivated = wasActive && !checked.IsActive
		if !deactivated {
			return nil
		}
		// The deactivation and its audit row commit together, attributed to whoever checks.
		_, err = audit.Append(ctx, tx, audit.Attributed(ctx, audit.Record{Action: "database_connection.deactivate",
			TargetType: "database_connection", TargetID: c.ID,
			Before: map[string]any{"is_active": true},
			After: map[string]any{"is_active": false, "reason": "health check failed", "consecutive_failures": checked.ConsecutiveFailures,
				"max_consecutive_failures": checked.MaxConsecutiveFailures, "last_error": checked.LastError}}))
		return err
	})
	if err != nil {
		return c, false, err
	}
	return checked, deactivated, nil
}

// Deactivate takes a connection out of service (provisioning and migrations skip it).
func (s *Store) Deactivate(ctx context.Context, idOrName string) (Connection, error) {
	c, err := scanConn(s.pool.QueryRow(ctx, `UPDATE admin.database_connections SET is_active = false, updated_at = now()
		WHERE name = $1 OR id::text = $1 RETURNING `+connColumns, idOrName))
	return c, mapErr(err, "database connection "+idOrName)
}

func (s *Store) probe(ctx context.Context, c Connection, timeout time.Duration) error {
	dsn, err := s.ConnString(c, "")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return Redact(err)
	}
	defer conn.Close(context.Background())
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// Redact keeps a connection error's reason but not the URL it was built from (which can hold
// the password); use it on any error from connecting to a registered database.
func Redact(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Errorf("%s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return errors.Unwrap(connErr)
	}
	return err
}

func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505":
			return fmt.Errorf("%s: %w", what, ErrConflict)
		case "23503":
			return &ValidationError{Field: pgErr.ConstraintName, Message: "refers to something that does not exist"}
		case "23514":
			return &ValidationError{Field: pgErr.ConstraintName, Message: "refused by check constraint"}
		}
	}
	return err
}

// ValidHost reports whether s can be a registered host: a host name or an IP address.
func ValidHost(s string) bool { return hostRe.MatchString(s) }
