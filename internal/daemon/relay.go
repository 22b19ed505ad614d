package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/relay"
	"github.com/neofast/neoauthz/internal/secretbox"
	authzsync "github.com/neofast/neoauthz/internal/sync"
)

// RelayConfig is what `pdp relay` reads from flags and the environment.
type RelayConfig struct {
	// AdminURL is the admin database (ADMIN_DATABASE_URL).
	AdminURL string
	// RedisURL is where events are published (REDIS_URL, required).
	RedisURL string
	// SecretKey opens registered database passwords (NEOAUTHZ_SECRET_KEY).
	SecretKey string
	// HTTPAddr serves /health and /metrics.
	HTTPAddr string
	// Heartbeat is the listeners' liveness probe period, and so the longest silence between
	// two events about a database (pdps' -relay-staleness defaults to twice it).
	Heartbeat time.Duration
	// PollInterval is the version poll period; the relay polls for every pdp.
	PollInterval time.Duration
	// Stream is the Redis stream key.
	Stream string
	// MaxLen is about how many events the stream keeps (MAXLEN ~).
	MaxLen int64
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// MemoryLimit is the Go runtime's soft memory limit (ApplyMemoryLimit), auto by default.
	MemoryLimit MemoryLimit

	envErrs []error // environment variables that did not parse, reported by Validate
}

// DefaultRelayConfig returns the defaults.
func DefaultRelayConfig() RelayConfig {
	return RelayConfig{HTTPAddr: ":8182", Heartbeat: 2 * time.Second, PollInterval: 5 * time.Second,
		Stream: relay.DefaultStream, MaxLen: relay.DefaultMaxLen, LogLevel: "info", MemoryLimit: MemoryLimit{Auto: true}}
}

// RegisterFlags defines the relay's flags; each takes its default from its environment variable.
func (c *RelayConfig) RegisterFlags(fs *flag.FlagSet) {
	envString(fs, &c.AdminURL, "admin-database-url", "ADMIN_DATABASE_URL", "admin database URL (required)")
	envString(fs, &c.RedisURL, "redis-url", "REDIS_URL", "Redis URL the events are published to (required; redis://, rediss://, redis-sentinel://, redis-cluster://)")
	envString(fs, &c.SecretKey, "secret-key", secretbox.EnvKey, "base64 key that opens registered database passwords")
	envString(fs, &c.HTTPAddr, "http-addr", "NEOAUTHZ_RELAY_HTTP_ADDR", "listen address of /health and /metrics")
	envDuration(fs, &c.Heartbeat, "heartbeat", "NEOAUTHZ_HEARTBEAT", "listener liveness probe period, and the longest silence between two events about a database")
	envDuration(fs, &c.PollInterval, "poll-interval", "NEOAUTHZ_POLL_INTERVAL", "version poll period")
	envString(fs, &c.Stream, "relay-stream", "NEOAUTHZ_RELAY_STREAM", "Redis stream key of the events")
	if v, ok := os.LookupEnv("NEOAUTHZ_RELAY_MAX_LEN"); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			c.MaxLen = n
		} else {
			c.MaxLen = -1 // Validate says what is wrong
		}
	}
	fs.Int64Var(&c.MaxLen, "relay-max-len", c.MaxLen, "about how many events the stream keeps (MAXLEN ~); a pdp further behind re-reads versions (env NEOAUTHZ_RELAY_MAX_LEN)")
	envString(fs, &c.LogLevel, "log-level", "NEOAUTHZ_LOG_LEVEL", "debug, info, warn or error")
	envValue(fs, parsedValue[MemoryLimit]{&c.MemoryLimit, ParseMemoryLimit}, "memory-limit", memoryLimitEnv, memoryLimitUsage, &c.envErrs)
}

// Validate reports every problem at once.
func (c *RelayConfig) Validate() error {
	errs := append([]error(nil), c.envErrs...)
	if c.AdminURL == "" {
		errs = append(errs, errors.New("ADMIN_DATABASE_URL (--admin-database-url) is required"))
	}
	if c.RedisURL == "" {
		errs = append(errs, errors.New("REDIS_URL (--redis-url) is required: the relay publishes there"))
	}
	if c.Heartbeat <= 0 || c.PollInterval <= 0 {
		errs = append(errs, errors.New("heartbeat and poll-interval must be positive"))
	}
	if c.Stream == "" {
		errs = append(errs, errors.New("relay-stream must not be empty"))
	}
	if c.MaxLen < 1000 {
		errs = append(errs, errors.New("relay-max-len must be a number of at least 1000"))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Logger returns the JSON logger the configuration asks for.
func (c *RelayConfig) Logger() *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// RunRelay listens on the admin database and every registered one, as a direct-mode pdp does,
// and publishes what it hears to Redis until ctx ends. Several relays may run at once: pdps
// apply duplicates harmlessly (floors only rise) and trust a database while any relay's
// heartbeat for it is fresh.
func RunRelay(ctx context.Context, cfg RelayConfig, log *slog.Logger) error {
	lis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP listener: %w", err)
	}
	return ServeRelay(ctx, cfg, log, lis)
}

// ServeRelay runs the relay with /health and /metrics on lis.
func ServeRelay(ctx context.Context, cfg RelayConfig, log *slog.Logger, lis net.Listener) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	box, err := secretbox.New(cfg.SecretKey)
	if err != nil {
		_ = lis.Close()
		return err
	}
	admin, err := pgstore.NewAdminPool(ctx, cfg.AdminURL, pgstore.DefaultMaxConnsPerDatabase, false)
	if err != nil {
		_ = lis.Close()
		return fmt.Errorf("admin database: %w", err)
	}
	defer admin.Close()
	rdb, err := cache.ParseRedisURL(cfg.RedisURL)
	if err != nil {
		_ = lis.Close()
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	defer rdb.Close()
	reg2 := registry.New(admin, box)
	store := pgstore.New(admin, reg2, pgstore.Options{Registerer: reg})
	defer store.Close()

	pub := relay.NewPublisher(rdb, cfg.Stream, cfg.MaxLen, cfg.Heartbeat)
	floors := &authzsync.Floors{}
	mgr := authzsync.New(authzsync.Config{AdminURL: cfg.AdminURL, Heartbeat: cfg.Heartbeat, PollInterval: cfg.PollInterval,
		Publish: pub}, floors, admin, reg2, store, nil, log, reg)

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		body := map[string]string{"status": "ok", "admin_listener": "ok", "redis": "ok"}
		code := http.StatusOK
		if _, down := floors.DownSince(authzsync.AdminDatabase); down {
			body["admin_listener"], body["status"], code = "down", "unavailable", http.StatusServiceUnavailable
		}
		if err := rdb.Ping(rctx).Err(); err != nil {
			body["redis"], body["status"], code = "down", "unavailable", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("relay starting", "relay", pub.ID(), "stream", cfg.Stream, "heartbeat", cfg.Heartbeat)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return mgr.Run(gctx) })
	g.Go(func() error {
		if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}
