package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Phase names.
const (
	phaseCeiling = "ceiling ext_authz"
	phaseExtCold = "pdp ext_authz cold"
	phaseExtWarm = "pdp ext_authz warm"
	// phaseExtWarmNoLog is warm ext_authz on a pdp with the decision log off; phaseExtWarm
	// runs with it on (the defaults).
	phaseExtWarmNoLog = "pdp ext_authz warm, decision log off"
	phaseCheckWarm    = "pdp Check warm"
)

// DecisionLogTarget is the decision log's budget: warm ext_authz throughput with it on at least
// this share of the throughput with it off.
const DecisionLogTarget = 0.90

// TargetRatio is the target: warm ext_authz throughput at least this share of the
// do-nothing server's.
const TargetRatio = 0.70

// PhaseResult is one row of the report.
type PhaseResult struct {
	Phase       string   `json:"phase"`
	Concurrency int      `json:"concurrency"`
	Requests    uint64   `json:"requests"`
	Errors      uint64   `json:"errors"`
	Allowed     uint64   `json:"allowed"`
	Denied      uint64   `json:"denied"`
	Seconds     float64  `json:"seconds"`
	Throughput  float64  `json:"throughput_rps"`
	P50ms       float64  `json:"p50_ms"`
	P99ms       float64  `json:"p99_ms"`
	MeanMs      float64  `json:"mean_ms"`
	MaxMs       float64  `json:"max_ms"`
	Ratio       *float64 `json:"ratio_to_ceiling,omitempty"`
	// ServerCPUus is the CPU time (user + system) the server process spent per request.
	ServerCPUus *float64 `json:"server_cpu_us_per_request,omitempty"`
	// CPURatio is ServerCPUus over the ceiling's at the same concurrency.
	CPURatio   *float64    `json:"server_cpu_ratio_to_ceiling,omitempty"`
	Cache      *CacheStats `json:"pdp_cache,omitempty"`
	FirstError string      `json:"first_error,omitempty"`
}

// Report is everything a run found.
type Report struct {
	Tenants        int           `json:"tenants"`
	UsersPerTenant int           `json:"users_per_tenant"`
	Users          int           `json:"users"`
	Codes          int           `json:"permission_codes"`
	Roles          int           `json:"roles"`
	ZipfS          float64       `json:"zipf_s"`
	Duration       string        `json:"phase_duration"`
	Conns          int           `json:"grpc_conns"`
	GOMAXPROCS     int           `json:"gomaxprocs"`
	Alg            string        `json:"alg"`
	Redis          bool          `json:"redis"`
	DatasetReused  bool          `json:"dataset_reused"`
	BuildSeconds   float64       `json:"dataset_build_seconds"`
	LoadSeconds    float64       `json:"dataset_read_seconds"`
	MintSeconds    float64       `json:"mint_seconds"`
	WarmupSeconds  float64       `json:"warmup_seconds"`
	SetupSeconds   float64       `json:"setup_seconds"` // everything before the first measured phase
	TotalSeconds   float64       `json:"total_seconds"`
	Memory         *Memory       `json:"memory,omitempty"`
	Phases         []PhaseResult `json:"phases"`
	Problems       []string      `json:"problems,omitempty"` // errors and failed sanity checks
	TargetMet      bool          `json:"target_met"`
	Target         []string      `json:"target"`
	LogTarget      []string      `json:"decision_log_target,omitempty"` // decision log on vs off
}

// finish computes ratios, the sanity checks and the target.
func (r *Report) finish() {
	ceiling, noLog, ceilingCPU := map[int]float64{}, map[int]float64{}, map[int]float64{}
	for _, p := range r.Phases {
		switch p.Phase {
		case phaseCeiling:
			ceiling[p.Concurrency] = p.Throughput
			if p.ServerCPUus != nil {
				ceilingCPU[p.Concurrency] = *p.ServerCPUus
			}
		case phaseExtWarmNoLog:
			noLog[p.Concurrency] = p.Throughput
		}
	}
	r.TargetMet = true
	for i := range r.Phases {
		p := &r.Phases[i]
		if c := ceiling[p.Concurrency]; c > 0 && strings.Contains(p.Phase, "ext_authz") && p.Phase != phaseCeiling {
			ratio := p.Throughput / c
			p.Ratio = &ratio
			if c := ceilingCPU[p.Concurrency]; c > 0 && p.ServerCPUus != nil {
				cr := *p.ServerCPUus / c
				p.CPURatio = &cr
			}
		}
		if p.Errors > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%s c=%d: %d ERRORS (first: %s)", p.Phase, p.Concurrency, p.Errors, p.FirstError))
		}
		if p.Phase != phaseCeiling && (p.Allowed == 0 || p.Denied == 0) {
			r.Problems = append(r.Problems, fmt.Sprintf("%s c=%d: allowed %d, denied %d — both should be non-zero", p.Phase, p.Concurrency, p.Allowed, p.Denied))
		}
		if p.Phase == phaseExtWarm {
			ok := p.Ratio != nil && *p.Ratio >= TargetRatio
			r.TargetMet = r.TargetMet && ok
			verdict := "MISSED"
			if ok {
				verdict = "met"
			}
			got := "no ceiling"
			if p.Ratio != nil {
				got = fmt.Sprintf("%.0f%%", 100**p.Ratio)
			}
			r.Target = append(r.Target, fmt.Sprintf("c=%d: %s (%s)", p.Concurrency, got, verdict))
			if off := noLog[p.Concurrency]; off > 0 {
				share := p.Throughput / off
				ok := share >= DecisionLogTarget
				r.TargetMet = r.TargetMet && ok
				verdict := "MISSED"
				if ok {
					verdict = "met"
				}
				r.LogTarget = append(r.LogTarget, fmt.Sprintf("c=%d: %.0f%% (%s)", p.Concurrency, 100*share, verdict))
			}
		}
	}
}

// WriteJSON prints the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable prints the report for people.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "neoauthz load test — %d tenants × %d users (%d), %d roles, %d permission codes; Zipf s=%.1f; %s per phase; %d gRPC conn(s) per server; GOMAXPROCS=%d; %s tokens; Redis %v\n",
		r.Tenants, r.UsersPerTenant, r.Users, r.Roles, r.Codes, r.ZipfS, r.Duration, r.Conns, r.GOMAXPROCS, r.Alg, r.Redis)
	if r.DatasetReused {
		fmt.Fprintf(&b, "setup: data set reused (read back in %s)", secs(r.LoadSeconds))
	} else {
		fmt.Fprintf(&b, "setup: data set built in %s, read back in %s", secs(r.BuildSeconds), secs(r.LoadSeconds))
	}
	fmt.Fprintf(&b, "; %d tokens minted in %s; warm-up over every user %s; %s before the first phase, %s in all\n\n",
		r.Users, secs(r.MintSeconds), secs(r.WarmupSeconds), secs(r.SetupSeconds), secs(r.TotalSeconds))

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tconc\trequests\terrors\tallowed\tdenied\treq/s\tp50\tp99\tvs ceiling\tserver CPU µs/req\tCPU vs ceiling\tL1 hit\tRedis hits\tdb loads\t")
	for _, p := range r.Phases {
		ratio, cpu, cpuRatio, hit, l2, loads := "", "", "", "", "", ""
		if p.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *p.Ratio)
		}
		if p.ServerCPUus != nil {
			cpu = fmt.Sprintf("%.1f", *p.ServerCPUus)
		}
		if p.CPURatio != nil {
			cpuRatio = fmt.Sprintf("%.2f×", *p.CPURatio)
		}
		if c := p.Cache; c != nil {
			if n := c.L1Hits + c.L1Misses; n > 0 {
				hit = fmt.Sprintf("%.1f%%", 100*c.L1Hits/n)
			}
			l2, loads = fmt.Sprintf("%.0f", c.L2Hits), fmt.Sprintf("%.0f", c.Loads)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.Phase, p.Concurrency, p.Requests, p.Errors,
			p.Allowed, p.Denied, p.Throughput, latency(p.P50ms), latency(p.P99ms), ratio, cpu, cpuRatio, hit, l2, loads)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Memory != nil {
		fmt.Fprintf(&b, "\n%s\n", r.Memory.line())
	}
	fmt.Fprintf(&b, "\ntarget: warm ext_authz throughput ≥ %.0f%% of the do-nothing server's — %s\n", 100*TargetRatio, strings.Join(r.Target, ", "))
	if len(r.LogTarget) > 0 {
		fmt.Fprintf(&b, "target: warm ext_authz with the decision log on ≥ %.0f%% of off — %s\n", 100*DecisionLogTarget, strings.Join(r.LogTarget, ", "))
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "!!! %s\n", p)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(100 * time.Millisecond).String()
}

func latency(ms float64) string {
	if ms < 1 {
		return fmt.Sprintf("%.0fµs", ms*1000)
	}
	return fmt.Sprintf("%.2fms", ms)
}
