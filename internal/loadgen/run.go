package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"
)

// Main runs the load tool with command-line args and returns the exit code: 0 done (whether or
// not the throughput target was met: it is printed), 1 a failure or any request error or
// failed sanity check, 2 a usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if raw := os.Getenv(childEnv); raw != "" {
		return serveChild(ctx, raw, os.Stdin, stdout, stderr)
	}
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
	env := pdpEnv{adminURL: ds.AdminURL, secretKey: ds.SecretKey, redisURL: redisURL, routes: routesPath, issuer: iss,
		verbose: cfg.Verbose, streamWorkers: cfg.StreamWorkers, decisionLog: true, logs: pdpLogs, cacheBytes: cfg.CacheBytes,
		memoryLimit: cfg.MemoryLimit, cgroupMemory: cfg.CgroupMemory}

	ceilingProc, err := startCeiling(ctx, pdpLogs)
	if err != nil {
		return nil, err
	}
	defer ceilingProc.stop()
	ceilingConns, closeCeiling, err := dial(ceilingProc.grpcAddr, cfg.Conns)
	if err != nil {
		return nil, err
	}
	defer closeCeiling()
	ceiling := newExtAuthzCaller(ceilingConns, ds.Catalog)

	l := &load{users: ds.Users, catalog: len(ds.Catalog), perm: Permutation(len(ds.Users), cfg.Seed), seed: cfg.Seed}
	var stream uint64
	// slice measures one slice of a phase into acc: requests, and the CPU the server process
	// used (read from /proc around it). For the pdp (cache true) its cache counters are read
	// around that.
	slice := func(acc *phaseAcc, p *childProc, cache bool, c caller, d time.Duration, maxRequests int64) {
		if rep.SetupSeconds == 0 {
			rep.SetupSeconds = time.Since(begin).Seconds()
		}
		stream++
		runtime.GC() // every slice starts from the same collector state
		var before CacheStats
		if cache {
			before, _ = ScrapeCache(ctx, p.httpAddr)
		}
		cpu0, cpuErr0 := p.cpu()
		t, elapsed := l.run(ctx, phaseSpec{name: acc.name, concurrency: acc.concurrency, duration: d,
			maxRequests: maxRequests, stream: stream}, c, cfg.Conns)
		cpu1, cpuErr1 := p.cpu()
		var stats *CacheStats
		if cache {
			if after, err := ScrapeCache(ctx, p.httpAddr); err == nil {
				d := after.sub(before)
				stats = &d
			}
		}
		cpu := time.Duration(-1) // unknown: no /proc
		if cpuErr0 == nil && cpuErr1 == nil {
			cpu = cpu1 - cpu0
		}
		acc.add(&t, elapsed, stats, cpu)
	}
	done := func(acc *phaseAcc) {
		res := acc.result()
		log.Info("phase done", "phase", res.Phase, "concurrency", res.Concurrency, "requests", res.Requests,
			"errors", res.Errors, "rps", int(res.Throughput), "p50_ms", res.P50ms, "p99_ms", res.P99ms)
		rep.Phases = append(rep.Phases, res)
	}
	// fresh starts a new pdp on an emptied Redis database: nothing cached anywhere.
	fresh := func(env pdpEnv) (*childProc, func(), *extAuthzCaller, *checkCaller, error) {
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
		p, stop, ext, _, err := fresh(env)
		if err != nil {
			return nil, err
		}
		acc := &phaseAcc{name: phaseExtCold, concurrency: conc}
		slice(acc, p, true, ext, cfg.Duration, cfg.MaxRequests)
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
	// A second warm pdp with the decision log off is the reference the log's cost is measured
	// against; it is warmed first (on an emptied Redis), then the one with the log on.
	offEnv := env
	offEnv.decisionLog = false
	pOff, stopOff, extOff, _, err := fresh(offEnv)
	if err != nil {
		return nil, err
	}
	defer stopOff()
	warmUp := func(ext caller, what string) {
		log.Info("warming up: one ext_authz request per user, hottest first", "users", len(ds.Users), "pdp", what)
		wt, took := l.warmUp(ctx, ext, cfg.Conns, max(64, slices.Max(cfg.Concurrency)), 3*time.Minute)
		rep.WarmupSeconds += took.Seconds()
		log.Info("warm-up done", "took", took.Round(time.Millisecond), "allowed", wt.allowed, "denied", wt.denied, "errors", wt.errors)
		if wt.errors > 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("warm-up (%s): %d ERRORS (first: %s)", what, wt.errors, wt.firstError))
		}
	}
	warmUp(extOff, "decision log off")
	p, stop, ext, check, err := fresh(env)
	if err != nil {
		return nil, err
	}
	defer stop()
	before, err := sampleMemory(ctx, p, redisURL)
	if err != nil {
		return nil, fmt.Errorf("memory before the warm-up: %w", err)
	}
	warmUp(ext, "decision log on")
	settleRedis(ctx, redisURL)
	warm, err := sampleMemory(ctx, p, redisURL)
	if err != nil {
		return nil, fmt.Errorf("memory after the warm-up: %w", err)
	}
	rep.Memory = &Memory{RSSBefore: before.rss.rss, RSSWarm: warm.rss.rss, RSSFileWarm: warm.rss.file,
		HeapBefore: before.heap, HeapWarm: warm.heap, LiveWarm: warm.live,
		RedisBefore: before.redis, RedisWarm: warm.redis, RedisKeys: warm.keys, Users: len(ds.Users)}
	log.Info(rep.Memory.line())
	if cfg.MemProfile != "" {
		if err := p.send("heapprofile " + cfg.MemProfile); err != nil {
			return nil, fmt.Errorf("heap profile of the pdp: %w", err)
		}
	}
	sliceLen := cfg.Duration / time.Duration(cfg.Rounds)
	sliceMax := max(1, cfg.MaxRequests/int64(cfg.Rounds))
	for _, conc := range cfg.Concurrency {
		ceil := &phaseAcc{name: phaseCeiling, concurrency: conc}
		warm := &phaseAcc{name: phaseExtWarm, concurrency: conc}
		warmOff := &phaseAcc{name: phaseExtWarmNoLog, concurrency: conc}
		chk := &phaseAcc{name: phaseCheckWarm, concurrency: conc}
		for range cfg.Rounds {
			slice(ceil, ceilingProc, false, ceiling, sliceLen, sliceMax)
			slice(warm, p, true, ext, sliceLen, sliceMax)
			slice(warmOff, pOff, true, extOff, sliceLen, sliceMax)
			slice(chk, p, true, check, sliceLen, sliceMax)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
		done(ceil)
		done(warm)
		done(warmOff)
		done(chk)
		if cfg.CPUProfile != "" {
			// An extra, unreported warm ext_authz phase under the profiler.
			if err := profiled(p, cfg.CPUProfile, conc, func() {
				slice(&phaseAcc{name: phaseExtWarm, concurrency: conc}, p, false, ext, cfg.Duration, cfg.MaxRequests)
			}); err != nil {
				return nil, err
			}
		}
	}
	end, err := processMemory(p.cmd.Process.Pid)
	if err != nil {
		return nil, fmt.Errorf("memory after the phases: %w", err)
	}
	rep.Memory.RSSPeak, rep.Memory.RSSEnd = end.peak, end.rss
	if p.cgroup != nil {
		u, err := p.cgroup.usage()
		if err != nil {
			return nil, err
		}
		rep.Memory.CgroupLimit, rep.Memory.CgroupPeak, rep.Memory.OOMKills = p.cgroup.limit, u.peak, u.oomKills
	}
	rep.Phases = ordered(rep.Phases, cfg.Concurrency)
	rep.TotalSeconds = time.Since(begin).Seconds()
	rep.finish()
	return rep, nil
}

// profiled runs f with the server process p under the CPU profiler.
func profiled(p *childProc, prefix string, conc int, f func()) error {
	path, err := filepath.Abs(fmt.Sprintf("%s.ext_authz_warm_c%d.pprof", prefix, conc))
	if err != nil {
		return err
	}
	if err := p.send("cpuprofile " + path); err != nil {
		return fmt.Errorf("CPU profile of the pdp: %w", err)
	}
	f()
	if err := p.send("stop"); err != nil {
		return fmt.Errorf("CPU profile of the pdp: %w", err)
	}
	return nil
}

// ordered sorts the rows for the table: by phase kind (ceiling, cold, warm, Check), then by
// concurrency in the order given.
func ordered(rows []PhaseResult, concs []int) []PhaseResult {
	var out []PhaseResult
	for _, name := range []string{phaseCeiling, phaseExtCold, phaseExtWarm, phaseExtWarmNoLog, phaseCheckWarm} {
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
