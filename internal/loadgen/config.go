package loadgen

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/neofast/neoauthz/internal/daemon"
)

// Config is what a run does. ParseFlags fills it from the command line and the environment.
type Config struct {
	Duration    time.Duration // per measured phase
	Concurrency []int         // workers per phase, one phase each
	Tenants     int
	Users       int // per tenant
	Rebuild     bool
	JSON        bool
	Conns       int   // gRPC client connections per server under test, shared by the workers
	Rounds      int   // warm phases are measured in this many interleaved slices
	MaxRequests int64 // per phase, besides Duration
	Alg         string
	RedisDB     int
	CPUProfile  string // file prefix: one CPU profile per warm ext_authz phase
	MemProfile  string // file: a heap profile with every user warm
	CacheBytes  int64  // the pdp's -cache-max-bytes
	MemoryLimit int64  // the pdp's GOMEMLIMIT (0: none)
	// CgroupMemory runs each pdp in a memory cgroup of this limit, with -memory-limit=auto
	// unless MemoryLimit is set (0: no cgroup).
	CgroupMemory int64
	Seed         uint64
	Verbose      bool
	// StreamWorkers is the pdp's -grpc-stream-workers (0: its default; -1: none).
	StreamWorkers int

	DatabaseURL string // DATABASE_URL
	RedisURL    string // REDIS_URL
}

// Limits that keep a run bounded whatever the flags say.
const (
	maxConcurrency = 1024
	maxTenants     = 100 // bench-00 … bench-99
	maxUsers       = 100_000
	maxDuration    = 5 * time.Minute
)

// ParseFlags parses args (without the program name). getenv supplies DATABASE_URL and
// REDIS_URL. Usage and errors go to stderr; flag.ErrHelp is returned for -h.
func ParseFlags(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := Config{DatabaseURL: getenv("DATABASE_URL"), RedisURL: getenv("REDIS_URL")}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conc := fs.String("concurrency", "16,64", "comma-separated worker counts; every phase runs at each")
	fs.DurationVar(&c.Duration, "duration", 5*time.Second, "length of each measured phase")
	fs.IntVar(&c.Tenants, "tenants", 50, "tenants in the data set (bench-00 …)")
	fs.IntVar(&c.Users, "users", 1000, "users per tenant")
	fs.BoolVar(&c.Rebuild, "rebuild", false, "drop and rebuild the data set (databases neoauthz_bench_admin and neoauthz_bench_us)")
	fs.BoolVar(&c.JSON, "json", false, "print the results as JSON instead of a table")
	fs.IntVar(&c.Conns, "conns", 1, "gRPC connections per server under test (the same for the ceiling and the pdp)")
	fs.IntVar(&c.Rounds, "rounds", 5, "slices the warm phases and the ceiling are measured in, taking turns (duration/rounds each)")
	fs.Int64Var(&c.MaxRequests, "max-requests", 5_000_000, "upper bound of requests per phase")
	fs.StringVar(&c.Alg, "alg", "RS256", "signing algorithm of the test realms (RS256 is Keycloak's default; ES256 mints 20× faster)")
	fs.IntVar(&c.RedisDB, "redis-db", 15, "Redis logical database of the pdp under test; FLUSHDB'd before each fresh pdp")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of each warm ext_authz phase to PREFIX.ext_authz_warm_c<N>.pprof")
	cacheBytes := fs.String("cache-max-bytes", "64MiB", "the pdp's in-process cache budget (its -cache-max-bytes)")
	memLimit := fs.String("pdp-memory-limit", "", "the pdp's soft memory limit, set as its GOMEMLIMIT, e.g. 100MiB (default: none)")
	cgroupMemory := fs.String("pdp-cgroup-memory", "", "run each pdp in a new memory cgroup of this limit, e.g. 128MiB, as in a container, with its -memory-limit=auto (Linux, root; default: none)")
	fs.StringVar(&c.MemProfile, "memprofile", "", "write a heap profile to FILE once every user is warm")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the user and permission choices")
	fs.IntVar(&c.StreamWorkers, "pdp-grpc-stream-workers", 0, "the pdp's -grpc-stream-workers (0: its default, 32 per CPU; -1: a new goroutine per request, as the ceiling)")
	fs.BoolVar(&c.Verbose, "v", false, "log the pdp's warnings and progress details")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: loadgen [flags]\n\nLoad test of a local pdp against a do-nothing ext_authz server (see `make bench-load`).\nNeeds DATABASE_URL and REDIS_URL (eval \"$(scripts/services.sh)\").\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	var err error
	if c.Concurrency, err = parseConcurrency(*conc); err != nil {
		return Config{}, err
	}
	if c.CacheBytes, err = daemon.ParseBytes(*cacheBytes); err != nil {
		return Config{}, fmt.Errorf("-cache-max-bytes: %w", err)
	}
	if *memLimit != "" {
		if c.MemoryLimit, err = daemon.ParseBytes(*memLimit); err != nil {
			return Config{}, fmt.Errorf("-pdp-memory-limit: %w", err)
		}
	}
	if *cgroupMemory != "" {
		if c.CgroupMemory, err = daemon.ParseBytes(*cgroupMemory); err != nil {
			return Config{}, fmt.Errorf("-pdp-cgroup-memory: %w", err)
		}
	}
	return c, c.validate()
}

func parseConcurrency(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, err := strconv.Atoi(part)
		if err != nil || n < 1 || n > maxConcurrency {
			return nil, fmt.Errorf("-concurrency: %q is not a worker count between 1 and %d", part, maxConcurrency)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("-concurrency: give at least one worker count, e.g. 16,64")
	}
	return out, nil
}

func (c *Config) validate() error {
	var errs []error
	if c.Duration <= 0 || c.Duration > maxDuration {
		errs = append(errs, fmt.Errorf("-duration must be in (0, %s]", maxDuration))
	}
	if c.Tenants < 1 || c.Tenants > maxTenants {
		errs = append(errs, fmt.Errorf("-tenants must be in [1, %d]", maxTenants))
	}
	if c.Users < 1 || c.Users > maxUsers {
		errs = append(errs, fmt.Errorf("-users must be in [1, %d]", maxUsers))
	}
	if c.Conns < 1 || c.Conns > 64 {
		errs = append(errs, errors.New("-conns must be in [1, 64]"))
	}
	if c.Rounds < 1 || c.Rounds > 100 || (c.Duration > 0 && c.Duration/time.Duration(max(c.Rounds, 1)) < 100*time.Millisecond) {
		errs = append(errs, errors.New("-rounds must be in [1, 100] with slices (duration/rounds) of at least 100ms"))
	}
	if c.MaxRequests < 1 {
		errs = append(errs, errors.New("-max-requests must be positive"))
	}
	switch c.Alg {
	case "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA":
	default:
		errs = append(errs, fmt.Errorf("-alg %q: use RS256, RS384, RS512, PS256, ES256, ES384 or EdDSA", c.Alg))
	}
	if c.RedisDB < 0 || c.RedisDB > 15 {
		errs = append(errs, errors.New("-redis-db must be in [0, 15]"))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New(`DATABASE_URL is not set: run through make bench-load, or eval "$(scripts/services.sh)" first`))
	}
	return errors.Join(errs...)
}
