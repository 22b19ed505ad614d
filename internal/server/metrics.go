package server

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

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
// number: values beyond the limit are counted as "other" and the series count stays bounded
// whatever callers send.
const (
	maxTenantLabels     = 2000
	maxPermissionLabels = 500
)

// metrics are the pdp transport's Prometheus collectors.
type metrics struct {
	checks       *prometheus.CounterVec // permission_checks_total{tenant, permission, result}
	duration     map[string]prometheus.Observer
	authnFailure *prometheus.CounterVec // authn_failures_total{reason}
	// fwdConflict is forward_auth_header_conflicts_total{header}: forward-auth requests
	// refused because a header describing the original request was repeated or disagreed
	// with the configured convention's. The header label takes the convention headers only.
	fwdConflict *prometheus.CounterVec

	tenants     labelLimiter
	permissions labelLimiter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "permission_checks_total",
		Help: "Permission checks by tenant slug, requested permission and result (allowed, denied, unauthenticated, error).",
	}, []string{"tenant", "permission", "result"})
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
		tenants:      labelLimiter{max: maxTenantLabels},
		permissions:  labelLimiter{max: maxPermissionLabels},
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
	m.checks.WithLabelValues(m.tenants.value(tenant), m.permissions.value(permission), result).Inc()
}

func (m *metrics) forwardAuthConflict(header string) {
	m.fwdConflict.WithLabelValues(header).Inc()
}

func (m *metrics) observe(api string, since time.Time) {
	m.duration[api].Observe(time.Since(since).Seconds())
}

// labelLimiter admits at most max distinct label values and maps later ones to "other".
// Lookups of known values take no lock and allocate nothing.
type labelLimiter struct {
	max  int64
	n    atomic.Int64
	seen sync.Map // string → struct{}
}

func (l *labelLimiter) value(v string) string {
	if _, ok := l.seen.Load(v); ok {
		return v
	}
	if l.n.Add(1) > l.max {
		l.n.Add(-1)
		return otherLabel
	}
	if _, loaded := l.seen.LoadOrStore(v, struct{}{}); loaded {
		l.n.Add(-1) // another goroutine admitted it first
	}
	return v
}
