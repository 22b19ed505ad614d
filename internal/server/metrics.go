package server

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric label values.
const (
	apiGRPC        = "grpc"
	apiExtAuthz    = "extauthz"
	apiForwardAuth = "forwardauth"
	apiAuthZEN     = "authzen"

	resultAllowed         = "allowed"
	resultDenied          = "denied"
	resultUnauthenticated = "unauthenticated"
	resultError           = "error" // bad request or could not decide

	// otherLabel replaces a tenant or permission label value once its limit of distinct values
	// is reached.
	otherLabel = "other"
)

// Label limits of permission_checks_total. Its cardinality is tenants × permissions × 4
// results; tenant is the slug of a tenant the pdp knows ("" before a subject is known or at
// platform level, "unknown" for a tenant-level subject of no known tenant) and permission is
// the requested code when it parses ("invalid" otherwise), so every value is short. Callers of
// neoauthz.v1 can still send many distinct valid codes, so both labels are also capped in
// number, and so is their product: values beyond a label's limit are counted as "other", a
// (tenant, permission) pair beyond maxCheckPairs is counted under permission="other" for its
// tenant, and the series count stays bounded whatever callers send (at most maxCheckPairs
// pairs plus one "other" pair per tenant label, each with up to 4 results).
const (
	maxTenantLabels     = 2000
	maxPermissionLabels = 500
	maxCheckPairs       = 10000
)

// metrics are the pdp transport's Prometheus collectors.
type metrics struct {
	checks       *checkCounts // permission_checks_total{tenant, permission, result}
	duration     map[string]prometheus.Observer
	authnFailure *prometheus.CounterVec // authn_failures_total{reason}
	// fwdConflict is forward_auth_header_conflicts_total{header}: forward-auth requests
	// refused because a header describing the original request was repeated or disagreed
	// with the configured convention's. The header label takes the convention headers only.
	fwdConflict *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	checks := newCheckCounts(maxTenantLabels, maxPermissionLabels, maxCheckPairs)
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "permission_check_duration_seconds",
		Help: "Time to answer a check request, by API (grpc, extauthz, forwardauth, authzen).",
		// A cached decision takes microseconds; a cache fill reads PostgreSQL (milliseconds);
		// Envoy's ext_authz timeout is 250ms.
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"api"})
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authn_failures_total",
		Help: "Rejected credentials by reason (missing_token, expired, bad_signature, ...).",
	}, []string{"reason"})

	conflicts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "forward_auth_header_conflicts_total",
		Help: "Forward-auth requests refused (400) because a header describing the original request was repeated or disagreed with the configured convention's, by header.",
	}, []string{"header"})

	var err error
	if conflicts, err = register(reg, conflicts); err != nil {
		return nil, err
	}
	if checks, err = register(reg, checks); err != nil {
		return nil, err
	}
	if duration, err = register(reg, duration); err != nil {
		return nil, err
	}
	if failures, err = register(reg, failures); err != nil {
		return nil, err
	}
	m := &metrics{
		checks:       checks,
		authnFailure: failures,
		fwdConflict:  conflicts,
		duration:     make(map[string]prometheus.Observer, 4),
	}
	for _, api := range []string{apiGRPC, apiExtAuthz, apiForwardAuth, apiAuthZEN} {
		// Curried once: the hot path then costs no label hashing for the histogram.
		m.duration[api] = duration.WithLabelValues(api)
	}
	return m, nil
}

// register registers c, or returns the collector already registered under the same
// description, so that two servers (tests, or a restart within one process) can share a
// registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

func (m *metrics) check(tenant, permission, result string) {
	m.checks.inc(tenant, permission, result)
}

func (m *metrics) forwardAuthConflict(header string) {
	m.fwdConflict.WithLabelValues(header).Inc()
}

func (m *metrics) observe(api string, since time.Time) {
	m.duration[api].Observe(time.Since(since).Seconds())
}

// labelLimiter admits at most max distinct label values and maps later ones to "other".
// Lookups of known values take no lock and allocate nothing. value returns the limiter's own
// copy of an admitted value, so that the series using it share one string and keep no
// request's memory alive.
type labelLimiter struct {
	max  int64
	n    atomic.Int64
	seen sync.Map // string → the same string, cloned
}

func (l *labelLimiter) value(v string) string {
	if s, ok := l.seen.Load(v); ok {
		return s.(string)
	}
	if !utf8.ValidString(v) {
		// Prometheus refuses such a label value when /metrics is scraped.
		return labelInvalid
	}
	if l.n.Add(1) > l.max {
		l.n.Add(-1)
		return otherLabel
	}
	c := strings.Clone(v)
	s, loaded := l.seen.LoadOrStore(c, c)
	if loaded {
		l.n.Add(-1) // another goroutine admitted it first
	}
	return s.(string)
}

// checkCounts is the permission_checks_total collector. A check finds its counters in one
// map read under a read lock and adds one to an atomic: no label hashing by prometheus and no
// allocation once its pair has been counted before. Each pair is one object holding its four
// results' counts, where a CounterVec keeps some ten objects per series for the garbage
// collector to mark; series are built only when /metrics is scraped.
type checkCounts struct {
	desc        *prometheus.Desc
	mu          sync.RWMutex
	pairs       map[pairKey]*pairChecks // by label values (the limiters' copies)
	counted     int64                   // pairs made, "other" pairs excluded; under mu
	tenantLabel labelLimiter
	permLabel   labelLimiter
	maxPairs    int64
}

type pairKey struct{ tenant, permission string }

// pairChecks are the counts of one (tenant, permission) pair by result.
type pairChecks struct {
	tenant, permission string
	n                  [len(checkResults)]atomic.Uint64
}

// checkResults are the result label's values, in the order of pairChecks.n.
var checkResults = [...]string{resultAllowed, resultDenied, resultUnauthenticated, resultError}

func resultIndex(result string) int {
	switch result {
	case resultAllowed:
		return 0
	case resultDenied:
		return 1
	case resultUnauthenticated:
		return 2
	default:
		return 3 // resultError: the only other value callers pass
	}
}

func newCheckCounts(maxTenants, maxPermissions, maxPairs int64) *checkCounts {
	return &checkCounts{
		desc: prometheus.NewDesc("permission_checks_total",
			"Permission checks by tenant slug, requested permission and result (allowed, denied, unauthenticated, error).",
			[]string{"tenant", "permission", "result"}, nil),
		pairs:       make(map[pairKey]*pairChecks),
		tenantLabel: labelLimiter{max: maxTenants},
		permLabel:   labelLimiter{max: maxPermissions},
		maxPairs:    maxPairs,
	}
}

func (c *checkCounts) inc(tenant, permission, result string) {
	c.pair(tenant, permission).n[resultIndex(result)].Add(1)
}

// pair returns the counters of (tenant, permission).
func (c *checkCounts) pair(tenant, permission string) *pairChecks {
	c.mu.RLock()
	p := c.pairs[pairKey{tenant, permission}]
	c.mu.RUnlock()
	if p != nil {
		return p
	}
	return c.newPair(tenant, permission)
}

// newPair finds or makes the pair a check of (tenant, permission) counts under, once the
// labels' limits and the pair limit are applied. Only label values (the limiters' copies) are
// stored as keys, so that values beyond a limit add nothing.
func (c *checkCounts) newPair(tenant, permission string) *pairChecks {
	tenant, permission = c.tenantLabel.value(tenant), c.permLabel.value(permission)
	// Checks whose values map to other labels (beyond a cap) come here every time: find
	// their pair under the read lock, so that only a pair still to be made takes the lock.
	c.mu.RLock()
	p := c.pairs[pairKey{tenant, permission}]
	if p == nil && c.counted >= c.maxPairs {
		p = c.pairs[pairKey{tenant, otherLabel}]
	}
	c.mu.RUnlock()
	if p != nil {
		return p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pairs[pairKey{tenant, permission}]; p != nil {
		return p
	}
	if permission != otherLabel {
		if c.counted >= c.maxPairs {
			permission = otherLabel
			if p := c.pairs[pairKey{tenant, permission}]; p != nil {
				return p
			}
		} else {
			c.counted++
		}
	}
	p = &pairChecks{tenant: tenant, permission: permission}
	c.pairs[pairKey{tenant, permission}] = p
	return p
}

// Describe implements prometheus.Collector.
func (c *checkCounts) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector: one series per result a pair has counted.
func (c *checkCounts) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	pairs := make([]*pairChecks, 0, len(c.pairs))
	for _, p := range c.pairs {
		pairs = append(pairs, p)
	}
	c.mu.RUnlock()
	for _, p := range pairs {
		for i := range p.n {
			if n := p.n[i].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n),
					p.tenant, p.permission, checkResults[i])
			}
		}
	}
}
