// Package daemon wires the pdp's parts together — stores, identity, caches, listeners,
// transports — and runs them until the context ends.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/decisionlog"
	"github.com/neofast/neoauthz/internal/pdp"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/relay"
	"github.com/neofast/neoauthz/internal/routes"
	"github.com/neofast/neoauthz/internal/secretbox"
	"github.com/neofast/neoauthz/internal/server"
	authzsync "github.com/neofast/neoauthz/internal/sync"
)

// Config is everything the pdp reads from flags and the environment.
type Config struct {
	Server server.Config

	// AdminURL is the admin database (ADMIN_DATABASE_URL); every other database comes from
	// its registry.
	AdminURL string
	// AdminPoolerURL, when set, is the admin database through a PgBouncer in transaction
	// pooling mode (ADMIN_DATABASE_POOLER_URL): the pdp's reads go there, while LISTEN, which
	// needs a session, stays on AdminURL.
	AdminPoolerURL string
	// DBPoolers sends the loads from registered connections' databases through PgBouncers in
	// transaction pooling mode (NEOAUTHZ_DB_POOLERS, "<connection name>=<host>:<port>,...").
	DBPoolers pgstore.Poolers
	// DBMaxConns caps every pool the pdp opens on a database (admin included) for its reads
	// (NEOAUTHZ_DB_MAX_CONNS); a registered connection's pool_max caps it too.
	DBMaxConns int
	// RedisURL enables the shared L2 cache (REDIS_URL); empty runs on L1 + PostgreSQL.
	RedisURL string
	// SecretKey opens registered database passwords (NEOAUTHZ_SECRET_KEY).
	SecretKey string

	// TrustedIssuers are Keycloak base URLs whose realms' tokens are accepted.
	TrustedIssuers []string
	// PlatformRealm is the realm of platform-level users.
	PlatformRealm string
	// Audiences are the accepted audiences: a token's aud must contain one. Required unless
	// AllowAnyAudience; a tenant's settings.audiences adds more for its tokens.
	Audiences []string
	// Clients, when set, are the accepted clients: a token's azp must be one of them (a
	// tenant's settings.clients adds more for its tokens).
	Clients []string
	// AllowAnyAudience accepts tokens for any audience when none is configured.
	AllowAnyAudience bool
	// ClockSkew tolerated on exp/nbf/iat.
	ClockSkew time.Duration

	// MaxStaleness allows cached decisions for a database whose listener is down for this
	// long; 0 fails closed.
	MaxStaleness time.Duration
	// CacheMaxBytes bounds the in-process permission-set cache, in bytes of retained memory
	// (see docs/scale.md for sizing).
	CacheMaxBytes int64
	// removedEntries is set when the environment still names NEOAUTHZ_CACHE_MAX_ENTRIES.
	removedEntries bool
	// MemoryLimit is the Go runtime's soft memory limit (ApplyMemoryLimit): by default a
	// share of the container's memory limit.
	MemoryLimit MemoryLimit
	// CacheTTL bounds an entry's life in process; Redis keeps entries twice as long.
	CacheTTL time.Duration
	// UnknownUserTTL is how long "unknown user" is cached.
	UnknownUserTTL time.Duration
	// PollInterval is the version poll period (bounds staleness if notifications are lost).
	PollInterval time.Duration
	// Heartbeat is the listener's liveness probe period.
	Heartbeat time.Duration

	// ReplicaFills lets cache fills read the replicas the registry links to a tenant's primary
	// (NEOAUTHZ_REPLICA_FILLS, default on); what a replica returns below the version the pdp
	// must honour is read again from the primary.
	ReplicaFills bool

	// Sync is how notifications reach the pdp: SyncDirect (LISTEN on every database) or
	// SyncRelay (read from relays through Redis; no PostgreSQL connection for notifications).
	Sync string
	// RelayStaleness is how long after a relay's last heartbeat for a database the pdp still
	// trusts what it cached from it (relay mode); 0: twice Heartbeat.
	RelayStaleness time.Duration
	// RelayStream is the Redis stream key relays publish to and relay-mode pdps read.
	RelayStream string

	// Regions limits the pdp to tenants whose data lives in these regions (NEOAUTHZ_REGIONS,
	// -regions eu-west-1,eu-central-1): it listens to, connects to and loads from only their
	// databases, plus the admin database. The zero value serves every region.
	Regions registry.Regions

	// LogLevel is debug, info, warn or error.
	LogLevel string

	// envErrs collects environment values RegisterFlags could not parse, reported by Validate.
	envErrs []error

	// DecisionLog turns the decision log on (NEOAUTHZ_DECISION_LOG, default on): decisions
	// are written to the analytics database of their tenant's region.
	DecisionLog bool
	// DecisionLogConfig tunes it (sampling, rate limit, queue, batches).
	DecisionLogConfig decisionlog.Config

	// UserSync bounds just-in-time user sync for tenants that turn it on
	// (settings.user_sync): writes per second and burst per tenant, profile update interval.
	UserSync pdp.UserSyncConfig
}

// Sync modes.
const (
	SyncDirect = "direct"
	SyncRelay  = "relay"
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Server:         server.DefaultConfig(),
		PlatformRealm:  "platform",
		ClockSkew:      authn.DefaultClockSkew,
		CacheMaxBytes:  DefaultCacheMaxBytes,
		MemoryLimit:    MemoryLimit{Auto: true},
		DBMaxConns:     int(pgstore.DefaultMaxConnsPerDatabase),
		CacheTTL:       5 * time.Minute,
		UnknownUserTTL: 5 * time.Second,
		PollInterval:   5 * time.Second,
		Heartbeat:      2 * time.Second,
		Sync:           SyncDirect,
		RelayStream:    relay.DefaultStream,
		LogLevel:       "info",
		DecisionLog:    true,
		ReplicaFills:   true,
		DecisionLogConfig: decisionlog.Config{
			QueueSize:       decisionlog.DefaultQueueSize,
			BatchSize:       decisionlog.DefaultBatchSize,
			FlushInterval:   decisionlog.DefaultFlushInterval,
			AllowSampleRate: decisionlog.DefaultAllowSampleRate,
			TenantRate:      decisionlog.DefaultTenantRate,
		},
		UserSync: pdp.UserSyncConfig{Rate: 5, Burst: 20, ProfileInterval: time.Hour},
	}
}

// RegisterFlags defines the flags; each takes its default from its environment variable.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Server.RegisterFlags(fs)
	str := func(p *string, name, env, usage string) { envString(fs, p, name, env, usage) }
	list := func(p *[]string, name, env, usage string) {
		if v, ok := os.LookupEnv(env); ok {
			*p = splitList(v)
		}
		fs.Var(listFlag{p}, name, usage+" (env "+env+")")
	}
	dur := func(p *time.Duration, name, env, usage string) { envDuration(fs, p, name, env, usage) }
	str(&c.AdminURL, "admin-database-url", "ADMIN_DATABASE_URL", "admin database URL (required)")
	str(&c.AdminPoolerURL, "admin-database-pooler-url", "ADMIN_DATABASE_POOLER_URL", "the admin database through PgBouncer in transaction pooling mode, for reads (LISTEN stays on -admin-database-url); empty: read directly")
	str(&c.RedisURL, "redis-url", "REDIS_URL", "Redis URL for the shared cache (redis://, rediss://, redis-sentinel://, redis-cluster://); empty: no Redis")
	str(&c.SecretKey, "secret-key", secretbox.EnvKey, "base64 key that opens registered database passwords")
	list(&c.TrustedIssuers, "trusted-issuers", "NEOAUTHZ_TRUSTED_ISSUERS", "comma-separated Keycloak base URLs (issuer = <base>/realms/<realm>)")
	str(&c.PlatformRealm, "platform-realm", "NEOAUTHZ_PLATFORM_REALM", "Keycloak realm of platform users")
	list(&c.Audiences, "audiences", "NEOAUTHZ_AUDIENCES", "comma-separated accepted audiences: aud must contain one (required unless -allow-any-audience)")
	list(&c.Clients, "clients", "NEOAUTHZ_CLIENTS", "comma-separated accepted clients: azp must be one; empty: any client")
	if v, ok := os.LookupEnv("NEOAUTHZ_ALLOW_ANY_AUDIENCE"); ok && v != "" {
		c.AllowAnyAudience, _ = strconv.ParseBool(v)
	}
	fs.BoolVar(&c.AllowAnyAudience, "allow-any-audience", c.AllowAnyAudience,
		"accept tokens issued for any audience when no audience is configured (env NEOAUTHZ_ALLOW_ANY_AUDIENCE)")
	dur(&c.ClockSkew, "clock-skew", "NEOAUTHZ_CLOCK_SKEW", "tolerated clock skew for exp/nbf/iat")
	dur(&c.MaxStaleness, "max-staleness", "NEOAUTHZ_MAX_STALENESS", "serve cached decisions this long after a database's listener went down (0: fail closed)")
	dur(&c.CacheTTL, "cache-ttl", "NEOAUTHZ_CACHE_TTL", "in-process cache entry lifetime (Redis: twice this)")
	dur(&c.UnknownUserTTL, "unknown-user-ttl", "NEOAUTHZ_UNKNOWN_USER_TTL", "how long an unknown user is cached")
	dur(&c.PollInterval, "poll-interval", "NEOAUTHZ_POLL_INTERVAL", "version poll period")
	dur(&c.Heartbeat, "heartbeat", "NEOAUTHZ_HEARTBEAT", "listener liveness probe period")
	str(&c.Sync, "sync", "NEOAUTHZ_SYNC", "how notifications arrive: direct (LISTEN on every database) or relay (from `pdp relay` through Redis)")
	dur(&c.RelayStaleness, "relay-staleness", "NEOAUTHZ_RELAY_STALENESS", "relay mode: trust a database's cached data this long after a relay's last heartbeat for it (0: 2 × -heartbeat)")
	str(&c.RelayStream, "relay-stream", "NEOAUTHZ_RELAY_STREAM", "Redis stream key of the relays' events")
	if v, ok := os.LookupEnv("NEOAUTHZ_CACHE_MAX_BYTES"); ok {
		if n, err := ParseBytes(v); err == nil {
			c.CacheMaxBytes = n
		} else {
			c.CacheMaxBytes = -1 // Validate says what is wrong
		}
	}
	fs.Var(bytesFlag{&c.CacheMaxBytes}, "cache-max-bytes", "in-process cache capacity in bytes, e.g. 64MiB, 1GiB (env NEOAUTHZ_CACHE_MAX_BYTES)")
	_, c.removedEntries = os.LookupEnv("NEOAUTHZ_CACHE_MAX_ENTRIES")
	fs.Func("cache-max-entries", "removed: use -cache-max-bytes", func(string) error { return errRemovedEntries })
	str(&c.LogLevel, "log-level", "NEOAUTHZ_LOG_LEVEL", "debug, info, warn or error")

	parsed := func(v flag.Value, name, env, usage string) { envValue(fs, v, name, env, usage, &c.envErrs) }
	parsed(parsedValue[MemoryLimit]{&c.MemoryLimit, ParseMemoryLimit}, "memory-limit", memoryLimitEnv, memoryLimitUsage)
	parsed(intFlag{&c.DBMaxConns}, "db-max-conns", "NEOAUTHZ_DB_MAX_CONNS", "most connections of each pool the pdp opens on a database for its reads, admin database included (registered pool_max caps it too)")
	parsed(parsedValue[pgstore.Poolers]{&c.DBPoolers, pgstore.ParsePoolers}, "db-poolers", "NEOAUTHZ_DB_POOLERS", "comma-separated <connection name>=<host>:<port>: load from that registered connection's databases through this PgBouncer (transaction pooling mode); LISTEN stays direct")
	parsed(parsedValue[registry.Regions]{&c.Regions, registry.ParseRegions}, "regions", "NEOAUTHZ_REGIONS",
		"comma-separated region codes this pdp serves (tenants of other regions are denied not_served_in_region, their databases never opened); empty: every region")
	dl := &c.DecisionLogConfig
	parsed(boolFlag{&c.DecisionLog}, "decision-log", "NEOAUTHZ_DECISION_LOG", "record decisions in the regional analytics databases")
	parsed(boolFlag{&c.ReplicaFills}, "replica-fills", "NEOAUTHZ_REPLICA_FILLS", "let cache fills read registered replicas of a tenant's primary when their data is new enough")
	parsed(floatFlag{&dl.AllowSampleRate}, "decision-log-allow-sample-rate", "NEOAUTHZ_DECISION_LOG_ALLOW_SAMPLE_RATE", "fraction of allows recorded, 0..1 (denies: all); tenant settings decision_log.allow_sample_rate override it")
	parsed(floatFlag{&dl.TenantRate}, "decision-log-tenant-rate", "NEOAUTHZ_DECISION_LOG_TENANT_RATE", "most decisions recorded per second per tenant; tenant settings decision_log.max_per_second override it")
	parsed(intFlag{&dl.QueueSize}, "decision-log-queue", "NEOAUTHZ_DECISION_LOG_QUEUE", "decisions waiting to be written at most (more are dropped and counted)")
	parsed(intFlag{&dl.BatchSize}, "decision-log-batch", "NEOAUTHZ_DECISION_LOG_BATCH", "decisions per COPY at most")
	dur(&dl.FlushInterval, "decision-log-flush-interval", "NEOAUTHZ_DECISION_LOG_FLUSH_INTERVAL", "longest wait before a partial batch is written")
	str(&dl.PlatformRegion, "decision-log-platform-region", "NEOAUTHZ_DECISION_LOG_PLATFORM_REGION", "region whose analytics database gets platform decisions (default: the first region with one)")
	us := &c.UserSync
	parsed(floatFlag{&us.Rate}, "user-sync-rate", "NEOAUTHZ_USER_SYNC_RATE", "just-in-time user sync: most user creations and profile updates per second per tenant")
	parsed(intFlag{&us.Burst}, "user-sync-burst", "NEOAUTHZ_USER_SYNC_BURST", "just-in-time user sync: most such writes per tenant at once")
	dur(&us.ProfileInterval, "user-sync-profile-interval", "NEOAUTHZ_USER_SYNC_PROFILE_INTERVAL", "just-in-time user sync: least time between two profile updates of a user")
}

// envString defines a string flag whose default comes from env when set.
func envString(fs *flag.FlagSet, p *string, name, env, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		*p = v
	}
	fs.StringVar(p, name, *p, usage+" (env "+env+")")
}

// envValue defines flag name as v, set first from env when it is set; a value of env that does
// not parse is added to errs (for Validate to report).
func envValue(fs *flag.FlagSet, v flag.Value, name, env, usage string, errs *[]error) {
	if s, ok := os.LookupEnv(env); ok {
		if err := v.Set(s); err != nil {
			*errs = append(*errs, fmt.Errorf("%s=%q: %w", env, s, err))
		}
	}
	fs.Var(v, name, usage+" (env "+env+")")
}

// envDuration defines a duration flag whose default comes from env when it parses.
func envDuration(fs *flag.FlagSet, p *time.Duration, name, env, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		if d, err := time.ParseDuration(v); err == nil {
			*p = d
		}
	}
	fs.DurationVar(p, name, *p, usage+" (env "+env+")")
}

// parsedValue is a flag.Value of a type that has a parser and prints itself back.
type parsedValue[T fmt.Stringer] struct {
	p     *T
	parse func(string) (T, error)
}

func (f parsedValue[T]) String() string {
	if f.p == nil {
		return ""
	}
	return (*f.p).String()
}

func (f parsedValue[T]) Set(s string) error {
	v, err := f.parse(s)
	if err != nil {
		return err
	}
	*f.p = v
	return nil
}

type boolFlag struct{ p *bool }

func (b boolFlag) String() string {
	if b.p == nil {
		return "false"
	}
	return strconv.FormatBool(*b.p)
}
func (b boolFlag) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("not a boolean")
	}
	*b.p = v
	return nil
}
func (b boolFlag) IsBoolFlag() bool { return true }

type floatFlag struct{ p *float64 }

func (f floatFlag) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.FormatFloat(*f.p, 'g', -1, 64)
}
func (f floatFlag) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return errors.New("not a non-negative number")
	}
	*f.p = v
	return nil
}

type intFlag struct{ p *int }

func (f intFlag) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.Itoa(*f.p)
}
func (f intFlag) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return errors.New("not a positive integer")
	}
	*f.p = v
	return nil
}

// Bounds of the in-process cache's byte budget.
const (
	DefaultCacheMaxBytes = 64 << 20
	MinCacheMaxBytes     = 1 << 20
)

// errRemovedEntries explains the flag that counted entries: an entry's size varies by two
// orders of magnitude, so a count bounded nothing a memory limit could be set against.
var errRemovedEntries = errors.New("the entry count was removed: the in-process cache is bounded in bytes; set -cache-max-bytes / NEOAUTHZ_CACHE_MAX_BYTES instead (docs/scale.md)")

// ParseBytes reads a size: a whole number of bytes, optionally followed by KiB, MiB, GiB (or
// K, M, G, which mean the same binary units; KB, MB, GB too).
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
		i--
	}
	unit := int64(1)
	switch strings.ToUpper(strings.TrimSpace(s[i:])) {
	case "", "B":
	case "K", "KB", "KIB":
		unit = 1 << 10
	case "M", "MB", "MIB":
		unit = 1 << 20
	case "G", "GB", "GIB":
		unit = 1 << 30
	default:
		return 0, fmt.Errorf("size %q: use a number of bytes with an optional KiB, MiB or GiB", s)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s[:i]), 10, 64)
	if err != nil || n < 0 || n > (1<<62)/unit {
		return 0, fmt.Errorf("size %q: use a number of bytes with an optional KiB, MiB or GiB", s)
	}
	return n * unit, nil
}

type bytesFlag struct{ p *int64 }

func (b bytesFlag) String() string {
	if b.p == nil {
		return ""
	}
	return strconv.FormatInt(*b.p, 10)
}

func (b bytesFlag) Set(s string) error {
	n, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b.p = n
	return nil
}

// MaxDBMaxConns bounds -db-max-conns: the point of the cap is that a pdp holds few.
const MaxDBMaxConns = 100

type listFlag struct{ p *[]string }

func (l listFlag) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l listFlag) Set(s string) error { *l.p = splitList(s); return nil }

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	errs := append([]error(nil), c.envErrs...)
	dl := c.DecisionLogConfig
	dl.Regions = c.Regions
	if err := dl.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Server.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.AdminURL == "" {
		errs = append(errs, errors.New("ADMIN_DATABASE_URL (--admin-database-url) is required"))
	}
	if c.AdminPoolerURL != "" {
		if _, err := pgxpool.ParseConfig(c.AdminPoolerURL); err != nil {
			// The parse error may quote the URL, password included.
			errs = append(errs, errors.New("ADMIN_DATABASE_POOLER_URL (--admin-database-pooler-url) does not parse as a PostgreSQL URL"))
		}
	}
	if c.DBMaxConns < 1 || c.DBMaxConns > MaxDBMaxConns {
		errs = append(errs, fmt.Errorf("db-max-conns must be between 1 and %d", MaxDBMaxConns))
	}
	if len(c.TrustedIssuers) == 0 {
		errs = append(errs, errors.New("NEOAUTHZ_TRUSTED_ISSUERS (--trusted-issuers) is required: the Keycloak base URL(s) whose realms issue tokens"))
	}
	if err := authn.CheckAudienceSetting(len(c.Audiences) > 0, c.AllowAnyAudience, "NEOAUTHZ_AUDIENCES (-audiences)", "-allow-any-audience"); err != nil {
		errs = append(errs, err)
	}
	if c.MaxStaleness < 0 || c.CacheTTL <= 0 || c.UnknownUserTTL <= 0 || c.PollInterval <= 0 || c.Heartbeat <= 0 {
		errs = append(errs, errors.New("durations must be positive (max-staleness may be 0)"))
	}
	switch c.Sync {
	case SyncDirect:
	case SyncRelay:
		if c.RedisURL == "" {
			errs = append(errs, errors.New("-sync=relay reads the relays' events from Redis: REDIS_URL (--redis-url) is required"))
		}
	default:
		errs = append(errs, fmt.Errorf("sync %q: use %s or %s", c.Sync, SyncDirect, SyncRelay))
	}
	if c.RelayStaleness < 0 || c.RelayStream == "" {
		errs = append(errs, errors.New("relay-staleness must not be negative and relay-stream not empty"))
	}
	if c.UserSync.Rate <= 0 || c.UserSync.Burst < 1 || c.UserSync.ProfileInterval <= 0 {
		errs = append(errs, errors.New("user-sync-rate, user-sync-burst and user-sync-profile-interval must be positive"))
	}
	if c.CacheMaxBytes < MinCacheMaxBytes {
		errs = append(errs, fmt.Errorf("cache-max-bytes must be at least %d (1MiB)", MinCacheMaxBytes))
	}
	if c.removedEntries {
		errs = append(errs, fmt.Errorf("NEOAUTHZ_CACHE_MAX_ENTRIES: %w", errRemovedEntries))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

// Logger returns the JSON logger the configuration asks for.
func (c *Config) Logger() *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Run serves until ctx ends. Listeners are opened first so a port in use fails at once.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	grpcLis, err := net.Listen("tcp", cfg.Server.GRPCAddr)
	if err != nil {
		return fmt.Errorf("gRPC listener: %w", err)
	}
	httpLis, err := net.Listen("tcp", cfg.Server.HTTPAddr)
	if err != nil {
		_ = grpcLis.Close()
		return fmt.Errorf("HTTP listener: %w", err)
	}
	l := server.Listeners{GRPC: grpcLis, HTTP: httpLis}
	if cfg.Server.MetricsAddr != "" {
		if l.Metrics, err = net.Listen("tcp", cfg.Server.MetricsAddr); err != nil {
			_, _ = grpcLis.Close(), httpLis.Close()
			return fmt.Errorf("metrics listener: %w", err)
		}
	}
	return ServeListeners(ctx, cfg, log, l)
}

// Serve runs the pdp on the given listeners (tests pass loopback listeners on port 0).
func Serve(ctx context.Context, cfg Config, log *slog.Logger, grpcLis, httpLis net.Listener) error {
	return ServeListeners(ctx, cfg, log, server.Listeners{GRPC: grpcLis, HTTP: httpLis})
}

// ServeListeners runs the pdp on l (a nil listener is not served).
func ServeListeners(ctx context.Context, cfg Config, log *slog.Logger, l server.Listeners) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	box, err := secretbox.New(cfg.SecretKey)
	if err != nil {
		return err
	}
	adminURL := cfg.AdminURL
	if cfg.AdminPoolerURL != "" {
		adminURL = cfg.AdminPoolerURL
	}
	admin, err := pgstore.NewAdminPool(ctx, adminURL, int32(cfg.DBMaxConns), cfg.AdminPoolerURL != "")
	if err != nil {
		return fmt.Errorf("admin database: %w", err)
	}
	defer admin.Close()
	reg2 := registry.New(admin, box)
	if err := checkRegions(ctx, reg2, cfg.Regions, log); err != nil {
		return err
	}
	store := pgstore.New(admin, reg2, pgstore.Options{Registerer: reg, MaxConnsPerDatabase: int32(cfg.DBMaxConns), Poolers: cfg.DBPoolers,
		ReplicaFills: cfg.ReplicaFills, Regions: cfg.Regions})
	defer store.Close()
	for name := range cfg.DBPoolers {
		// Not fatal: the connection may be registered later; until then the entry is unused.
		if _, err := reg2.GetConnection(ctx, name); errors.Is(err, registry.ErrNotFound) {
			log.Warn("NEOAUTHZ_DB_POOLERS names a connection that is not registered", "connection", name)
		}
	}

	// Realms resolve from an in-memory index so made-up realm names in unverified tokens
	// cost no database query.
	realms := pgstore.NewRealmIndex(store)
	validator, err := authn.New(authn.Config{TrustedIssuerBases: cfg.TrustedIssuers, PlatformRealm: cfg.PlatformRealm,
		Audiences: cfg.Audiences, Clients: cfg.Clients, AllowAnyAudience: cfg.AllowAnyAudience, ClockSkew: cfg.ClockSkew}, realms, log)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}

	var rdb redis.UniversalClient
	if cfg.RedisURL != "" {
		if rdb, err = cache.ParseRedisURL(cfg.RedisURL); err != nil {
			return fmt.Errorf("REDIS_URL: %w", err)
		}
		defer rdb.Close()
	}
	floors := &authzsync.Floors{}
	svc, err := pdp.New(pdp.Config{
		MaxStaleness:   cfg.MaxStaleness,
		UnknownUserTTL: cfg.UnknownUserTTL,
		Regions:        cfg.Regions,
		Cache:          cache.Options{L1MaxCost: cfg.CacheMaxBytes, L1TTL: cfg.CacheTTL, L2TTL: 2 * cfg.CacheTTL},
		UserSync:       cfg.UserSync,
	}, validator, store, admin, floors, rdb, log, reg)
	if err != nil {
		return err
	}
	defer svc.Close()
	// The realm index is dropped with the validator's caches: on a tenant change, and when a
	// consistency token names an admin version whose notification has not come yet.
	svc.AlsoInvalidate(realms.Invalidate)
	syncCfg := authzsync.Config{AdminURL: cfg.AdminURL, PollInterval: cfg.PollInterval, Heartbeat: cfg.Heartbeat,
		Staleness: cfg.RelayStaleness, Regions: cfg.Regions}
	if cfg.Sync == SyncRelay {
		syncCfg.Feed = relay.NewReader(rdb, cfg.RelayStream)
	}
	mgr := authzsync.New(syncCfg, floors, admin, reg2, store, svc.TenantChanged, log, reg)

	var table *routes.Table
	if cfg.Server.RouteTablePath != "" {
		if table, err = routes.LoadFile(cfg.Server.RouteTablePath); err != nil {
			return fmt.Errorf("route table: %w", err)
		}
	}
	srv, err := server.New(cfg.Server, svc, table, log, reg)
	if err != nil {
		return err
	}
	var decisions *decisionlog.Recorder
	if cfg.DecisionLog {
		dl := cfg.DecisionLogConfig
		dl.Regions = cfg.Regions
		if decisions, err = decisionlog.New(dl, admin, reg2, log, reg); err != nil {
			return err
		}
		srv.SetDecisionLog(decisions)
	}
	log.Info("pdp starting", "redis", cfg.RedisURL != "", "sync", cfg.Sync, "db_max_conns", cfg.DBMaxConns,
		"admin_via_pooler", cfg.AdminPoolerURL != "", "db_poolers", cfg.DBPoolers.String(), "trusted_issuers", cfg.TrustedIssuers, "routes", cfg.Server.RouteTablePath,
		"regions", regionsLabel(cfg.Regions))

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return mgr.Run(gctx) })
	g.Go(func() error { return validator.Run(gctx) })
	g.Go(func() error { return srv.ServeListeners(gctx, l) })
	if decisions != nil {
		// Not under gctx: it writes what is queued after the transports have stopped.
		dctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() { defer close(done); _ = decisions.Run(dctx) }()
		defer func() { stop(); <-done }()
	}
	return g.Wait()
}

// checkRegions refuses to start on a served region the admin database does not know (a typo
// would leave the pdp denying every tenant), warns when the admin database cannot be read
// yet, and warns about inactive regions (their tenants are
// still served: deactivating a region stops new tenants, not existing ones).
func checkRegions(ctx context.Context, reg *registry.Store, regions registry.Regions, log *slog.Logger) error {
	inactive, err := reg.CheckServedRegions(ctx, regions)
	switch {
	case errors.Is(err, registry.ErrUnknownRegion):
		return fmt.Errorf("-regions / NEOAUTHZ_REGIONS: %w", err)
	case err != nil:
		// The admin database may come up after the pdp: serve (nothing is read until it
		// answers) rather than exit, and say the regions went unchecked.
		log.Warn("could not check the served regions against the admin database", "error", registry.Redact(err))
		return nil
	}
	if len(inactive) > 0 {
		log.Warn("served regions are not active in the admin database", "regions", inactive)
	}
	return nil
}

func regionsLabel(r registry.Regions) string {
	if r.All() {
		return "all"
	}
	return r.String()
}
