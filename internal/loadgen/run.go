package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"time"
)

// Main runs the load tool with command-line args and returns the exit code: 0 done (whether or
// not the throughput target was met: it is printed), 1 a failure or any request error or
// failed sanity check, 2 a usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := ParseFlags(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	level := slog.LevelInfo
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	rep, err := Run(ctx, cfg, log, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 1
	}
	if cfg.JSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 1
	}
	if len(rep.Problems) > 0 {
		fmt.Fprintf(stderr, "loadgen: %d PROBLEM(S): see the lines starting with !!! above\n", len(rep.Problems))
		return 1
	}
	return 0
}

// Run prepares everything and measures every phase; log gets progress, pdpLogs the pdp's own
// log lines (warnings and errors only, unless Verbose: a pdp logs denies at info, and
// logging them would measure the terminal).
func Run(ctx context.Context, cfg Config, log *slog.Logger, pdpLogs io.Writer) (*Report, error) {
	begin := time.Now()
	rep := &Report{Tenants: cfg.Tenants, UsersPerTenant: cfg.Users, Users: cfg.Tenants * cfg.Users, Codes: catalogCodes,
		Roles: 6 + customRoles, ZipfS: ZipfS, Duration: cfg.Duration.String(), Conns: cfg.Conns,
		GOMAXPROCS: runtime.GOMAXPROCS(0), Alg: cfg.Alg, Redis: cfg.RedisURL != ""}

	log.Info("preparing the data set", "tenants", cfg.Tenants, "users_per_tenant", cfg.Users, "rebuild", cfg.Rebuild)
	ds, err := PrepareDataset(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	rep.DatasetReused, rep.BuildSeconds, rep.LoadSeconds = ds.Reused, ds.BuildTime.Seconds(), ds.LoadTime.Seconds()
	if ds.Reused {
		log.Info("data set reused", "read_back", ds.LoadTime.Round(time.Millisecond))
	} else {
		log.Info("data set built", "took", ds.BuildTime.Round(time.Millisecond))
	}

	redisURL := ""
	if cfg.RedisURL != "" {
		if redisURL, err = benchRedisURL(cfg.RedisURL, cfg.RedisDB); err != nil {
			return nil, err
		}
	} else {
		log.Warn("REDIS_URL is not set: the pdp runs on its in-process cache and PostgreSQL only")
	}

	step := time.Now()
	iss, err := startIssuer(ctx, ds.Tenants, cfg.Alg)
	if err != nil {
		return nil, fmt.Errorf("token issuer: %w", err)
	}
	defer iss.Close()
	if err := mintTokens(ctx, iss, ds); err != nil {
		return nil, fmt.Errorf("mint tokens: %w", err)
	}
	rep.MintSeconds = time.Since(step).Seconds()
	log.Info("tokens minted", "tokens", len(ds.Users), "alg", cfg.Alg, "took", time.Since(step).Round(time.Millisecond))

	dir, err := os.MkdirTemp("", "neoauthz-loadgen-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	routesPath, err := writeRoutes(dir, ds.Catalog)
	if err != nil {
		return nil, err
	}
	pdpLevel := slog.LevelWarn
	if cfg.Verbose {
		pdpLevel = slog.LevelInfo
	}
	env := pdpEnv{adminURL: ds.AdminURL, secretKey: ds.SecretKey, redisURL: redisURL, routes: routesPath, issuer: iss,
		cacheBytes: cfg.CacheBytes,
		log:        slog.New(slog.NewJSONHandler(pdpLogs, &slog.HandlerOptions{Level: pdpLevel}))}

	ceilingAddr, stopCeiling, err := startCeiling()
	if err != nil {
		return nil, err
	}
	defer stopCeiling()
	ceilingConns, closeCeiling, err := dial(ceilingAddr, cfg.Conns)
	if err != nil {
		return nil, err
	}
	defer closeCeiling()
	ceiling := newExtAuthzCaller(ceilingConns, ds.Catalog)

	l := &load{users: ds.Users, catalog: len(ds.Catalog), perm: Permutation(len(ds.Users), cfg.Seed), seed: cfg.Seed}
	var stream uint64
	// slice measures one slice of a phase into acc; the pdp's cache counters are read around it.
	slice := func(acc *phaseAcc, p *pdpInstance, c caller, d time.Duration, maxRequests int64) {
		if rep.SetupSeconds == 0 {
			rep.SetupSeconds = time.Since(begin).Seconds()
		}
		stream++
		runtime.GC() // every slice starts from the same collector state
		var before CacheStats
		if p != nil {
			before, _ = scrapeCache(ctx, p.httpAddr)
		}
		t, elapsed := l.run(ctx, phaseSpec{name: acc.name, concurrency: acc.concurrency, duration: d,
			maxRequests: maxRequests, stream: stream}, c, cfg.Conns)
		var cache *CacheStats
		if p != nil {
			if after, err := scrapeCache(ctx, p.httpAddr); err == nil {
				d := after.sub(before)
				cache = &d
			}
		}
		acc.add(&t, elapsed, cache)
	}
	done := func(acc *phaseAcc) {
		res := acc.result()
		log.Info("phase done", "phase", res.Phase, "concurrency", res.Concurrency, "requests", res.Requests,
			"errors", res.Errors, "rps", int(res.Throughput), "p50_ms", res.P50ms, "p99_ms", res.P99ms)
		rep.Phases = append(rep.Phases, res)
	}
	// fresh starts a new pdp on an emptied Redis database: nothing cached anywhere.
	fresh := func() (*pdpInstance, func(), *extAuthzCaller, *checkCaller, error) {
		if err := flushRedis(ctx, redisURL); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("FLUSHDB the bench Redis database %d: %w", cfg.RedisDB, err)
		}
		p, err := startPDP(ctx, env)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("start the pdp: %w", err)
		}
		conns, closeConns, err := dial(p.grpcAddr, cfg.Conns)
		if err != nil {
			p.stop()
			return nil, nil, nil, nil, err
		}
		stop := func() { closeConns(); p.stop() }
		return p, stop, newExtAuthzCaller(conns, ds.Catalog), newCheckCaller(conns, ds.Catalog), nil
	}

	// Cold: a fresh pdp per concurrency, measured from its first request, in one piece.
	for _, conc := range cfg.Concurrency {
		p, stop, ext, _, err := fresh()
		if err != nil {
			return nil, err
		}
		acc := &phaseAcc{name: phaseExtCold, concurrency: conc}
		slice(acc, p, ext, cfg.Duration, cfg.MaxRequests)
		stop()
		done(acc)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}

	// Warm: one more fresh pdp, warmed over every user. Then, at each concurrency, the ceiling,
	// the pdp's ext_authz and its Check take turns in short slices (rounds of duration/rounds),
	// so that a neighbour's load on a shared machine, or a GC of a big heap, hits all three
	// alike instead of deciding the ratio.
	p, stop, ext, check, err := fresh()
	if err != nil {
		return nil, err
	}
	defer stop()
	before, err := sampleMemory(ctx, redisURL)
	if err != nil {
		return nil, fmt.Errorf("memory before the warm-up: %w", err)
	}
	log.Info("warming up: one ext_authz request per user, hottest first", "users", len(ds.Users))
	wt, took := l.warmUp(ctx, ext, cfg.Conns, max(64, slices.Max(cfg.Concurrency)), 3*time.Minute)
	rep.WarmupSeconds = took.Seconds()
	log.Info("warm-up done", "took", took.Round(time.Millisecond), "allowed", wt.allowed, "denied", wt.denied, "errors", wt.errors)
	settleRedis(ctx, redisURL)
	warm, err := sampleMemory(ctx, redisURL)
	if err != nil {
		return nil, fmt.Errorf("memory after the warm-up: %w", err)
	}
	rep.Memory = &Memory{RSSBefore: before.rss, RSSWarm: warm.rss, HeapBefore: before.heap, HeapWarm: warm.heap,
		RedisBefore: before.redis, RedisWarm: warm.redis, RedisKeys: warm.keys, Users: len(ds.Users)}
	log.Info(rep.Memory.line())
	if cfg.MemProfile != "" {
		if err := writeHeapProfile(cfg.MemProfile); err != nil {
			return nil, fmt.Errorf("heap profile: %w", err)
		}
	}
	if wt.errors > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("warm-up: %d ERRORS (first: %s)", wt.errors, wt.firstError))
	}
	sliceLen := cfg.Duration / time.Duration(cfg.Rounds)
	sliceMax := max(1, cfg.MaxRequests/int64(cfg.Rounds))
	for _, conc := range cfg.Concurrency {
		ceil := &phaseAcc{name: phaseCeiling, concurrency: conc}
		warm := &phaseAcc{name: phaseExtWarm, concurrency: conc}
		chk := &phaseAcc{name: phaseCheckWarm, concurrency: conc}
		for range cfg.Rounds {
			slice(ceil, nil, ceiling, sliceLen, sliceMax)
			slice(warm, p, ext, sliceLen, sliceMax)
			slice(chk, p, check, sliceLen, sliceMax)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
		done(ceil)
		done(warm)
		done(chk)
		if cfg.CPUProfile != "" {
			// An extra, unreported warm ext_authz phase under the profiler.
			if err := profiled(cfg.CPUProfile, conc, func() {
				slice(&phaseAcc{name: phaseExtWarm, concurrency: conc}, nil, ext, cfg.Duration, cfg.MaxRequests)
			}); err != nil {
				return nil, err
			}
		}
	}
	rep.Phases = ordered(rep.Phases, cfg.Concurrency)
	rep.TotalSeconds = time.Since(begin).Seconds()
	rep.finish()
	return rep, nil
}

// profiled runs f under the CPU profiler when prefix is set.
func profiled(prefix string, conc int, f func()) error {
	if prefix == "" {
		f()
		return nil
	}
	path := fmt.Sprintf("%s.ext_authz_warm_c%d.pprof", prefix, conc)
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		return err
	}
	f()
	pprof.StopCPUProfile()
	return nil
}

func writeHeapProfile(path string) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	return pprof.WriteHeapProfile(out)
}

// ordered sorts the rows for the table: by phase kind (ceiling, cold, warm, Check), then by
// concurrency in the order given.
func ordered(rows []PhaseResult, concs []int) []PhaseResult {
	var out []PhaseResult
	for _, name := range []string{phaseCeiling, phaseExtCold, phaseExtWarm, phaseCheckWarm} {
		for _, c := range concs {
			for _, r := range rows {
				if r.Phase == name && r.Concurrency == c {
					out = append(out, r)
				}
			}
		}
	}
	return out
}
