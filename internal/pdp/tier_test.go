package pdp_test

import (
	"context"
	"testing"

	"github.com/neofast/neoauthz/internal/metrictest"
	"github.com/neofast/neoauthz/internal/pdp"
)

// Tier names which part of the pdp produced a decision's permission set.
type tier string

const (
	tierL1   tier = "l1"   // the in-process cache
	tierL2   tier = "l2"   // Redis
	tierLoad tier = "load" // PostgreSQL
	tierNone tier = "none" // no permission set was consulted (e.g. the tenant directory decided)
)

// tierCounts reads the counters that move when each tier answers.
func (in *instance) tierCounts(tb testing.TB) (l1, l2, loads float64) {
	tb.Helper()
	get := func(tier string) map[string]string {
		return map[string]string{"tier": tier, "operation": "get", "result": "hit"}
	}
	return metrictest.Sum(tb, in.reg, "cache_operations_total", get("l1")),
		metrictest.Sum(tb, in.reg, "cache_operations_total", get("l2")),
		metrictest.Sum(tb, in.reg, "cache_loads_total", map[string]string{"result": "ok"})
}

// served runs one check alone on the instance and reports the tier that answered it, from the
// instance's cache metrics (a load wins over a Redis hit, which wins over an L1 hit).
func (in *instance) served(tb testing.TB, check func() pdp.Result) (pdp.Result, tier) {
	tb.Helper()
	l1, l2, loads := in.tierCounts(tb)
	res := check()
	l1b, l2b, loadsb := in.tierCounts(tb)
	switch {
	case loadsb > loads:
		return res, tierLoad
	case l2b > l2:
		return res, tierL2
	case l1b > l1:
		return res, tierL1
	}
	return res, tierNone
}

// checkTier is check with the tier that answered.
func (in *instance) checkTier(tb testing.TB, tenant, user, perm string) (pdp.Result, tier) {
	tb.Helper()
	return in.served(tb, func() pdp.Result { return in.check(tb, tenant, user, perm) })
}

// checkErr is one check that may fail (a database down), with the tier that answered.
func (in *instance) checkErr(tb testing.TB, tenant, user, perm string) (pdp.Result, tier, error) {
	tb.Helper()
	var err error
	res, tr := in.served(tb, func() pdp.Result {
		var sub pdp.Subject
		sub, err = in.svc.SubjectFromPrincipal(context.Background(), tenant, user)
		if err != nil {
			return pdp.Result{}
		}
		var res pdp.Result
		res, err = in.svc.Check(context.Background(), sub, pdp.Request{Permission: perm})
		return res
	})
	return res, tr, err
}
