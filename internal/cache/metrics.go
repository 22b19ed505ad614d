package cache

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the series of one cache, resolved once so the hit path does no label lookups.
//
// cache_operations_total{cache, tier, operation, result}:
//   - tier "l1": get hit|miss|stale, set ok|dropped (ristretto refused it), delete ok;
//   - tier "l2": get hit|miss|stale|error|skipped (breaker open), get_shared hit|miss (per
//     shared part read from Redis because it was not in memory; see SharedCodec), set ok|error|dropped
//     (queue full)|skipped, delete ok|error|skipped.
//
// cache_l2_decode_errors_total{cache} counts Redis values that did not decode (also counted as
// get errors); cache_loads_total{cache, result} counts loader calls: ok|error|stale.
type metrics struct {
	l1Hit, l1Miss, l1Stale, l1SetOK, l1SetDropped, l1Delete                        prometheus.Counter
	l2Hit, l2Miss, l2Stale, l2GetErr, l2GetSkipped, l2Decode                       prometheus.Counter
	l2SharedHit, l2SharedMiss                                                      prometheus.Counter
	l2SetOK, l2SetErr, l2SetDropped, l2SetSkipped, l2DelOK, l2DelErr, l2DelSkipped prometheus.Counter
	loadOK, loadErr, loadStale                                                     prometheus.Counter
	loadDuration                                                                   prometheus.Observer
	redisUp                                                                        prometheus.Gauge // nil without Redis
}

func newMetrics(reg prometheus.Registerer, name string, withRedis bool) (*metrics, error) {
	ops := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cache_operations_total",
		Help: "Cache operations by tier (l1, l2), operation (get, get_shared, set, delete) and result.",
	}, []string{"cache", "tier", "operation", "result"})
	loads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cache_loads_total",
		Help: "Loader calls after cache misses, by result (ok, error, stale).",
	}, []string{"cache", "result"})
	decode := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cache_l2_decode_errors_total",
		Help: "Values read from Redis that could not be decoded.",
	}, []string{"cache"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cache_load_duration_seconds",
		Help:    "Duration of loader calls after cache misses.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5ms .. ~4s
	}, []string{"cache"})
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "cache_redis_up",
		Help: "1 when the cache's last Redis operation succeeded, 0 after a failure.",
	}, []string{"cache"})

	if reg != nil {
		var err error
		// Several caches (one per kind of value) share a registry, so the second one to
		// register reuses the first one's collectors.
		if ops, err = register(reg, ops); err != nil {
			return nil, err
		}
		if loads, err = register(reg, loads); err != nil {
			return nil, err
		}
		if decode, err = register(reg, decode); err != nil {
			return nil, err
		}
		if dur, err = register(reg, dur); err != nil {
			return nil, err
		}
		if up, err = register(reg, up); err != nil {
			return nil, err
		}
	}
	op := func(tier, operation, result string) prometheus.Counter {
		return ops.WithLabelValues(name, tier, operation, result)
	}
	m := &metrics{
		l1Hit:        op("l1", "get", "hit"),
		l1Miss:       op("l1", "get", "miss"),
		l1Stale:      op("l1", "get", "stale"),
		l1SetOK:      op("l1", "set", "ok"),
		l1SetDropped: op("l1", "set", "dropped"),
		l1Delete:     op("l1", "delete", "ok"),
		loadOK:       loads.WithLabelValues(name, "ok"),
		loadErr:      loads.WithLabelValues(name, "error"),
		loadStale:    loads.WithLabelValues(name, "stale"),
		loadDuration: dur.WithLabelValues(name),
	}
	if withRedis {
		m.l2Hit = op("l2", "get", "hit")
		m.l2Miss = op("l2", "get", "miss")
		m.l2Stale = op("l2", "get", "stale")
		m.l2GetErr = op("l2", "get", "error")
		m.l2GetSkipped = op("l2", "get", "skipped")
		m.l2Decode = decode.WithLabelValues(name)
		m.l2SharedHit = op("l2", "get_shared", "hit")
		m.l2SharedMiss = op("l2", "get_shared", "miss")
		m.l2SetOK = op("l2", "set", "ok")
		m.l2SetErr = op("l2", "set", "error")
		m.l2SetDropped = op("l2", "set", "dropped")
		m.l2SetSkipped = op("l2", "set", "skipped")
		m.l2DelOK = op("l2", "delete", "ok")
		m.l2DelErr = op("l2", "delete", "error")
		m.l2DelSkipped = op("l2", "delete", "skipped")
		// Only caches with Redis export the gauge: 0 must mean "Redis failing", not "none".
		m.redisUp = up.WithLabelValues(name)
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

func (m *metrics) setRedisUp(up bool) {
	if m.redisUp == nil {
		return
	}
	if up {
		m.redisUp.Set(1)
	} else {
		m.redisUp.Set(0)
	}
}
