package decision

import (
	"slices"
	"time"
)

// ListPermissions returns, sorted and without duplicates, every concrete code "r.a.s" whose code
// check the set allows at now. Candidates are the catalog (the tenant's concrete codes, which is
// how wildcards are expanded) plus every scope of each grant that names its resource and action.
// Catalog entries that are not concrete codes of the set's level are skipped. A set whose status
// denies everything lists nothing.
func (s *Set) ListPermissions(now time.Time, catalog []string) []string {
	if s == nil || s.status != ReasonGranted {
		return nil
	}
	parts := s.parts()
	n := 0
	for _, p := range parts {
		n += len(p.grants)
	}
	cands := make([]string, 0, len(catalog)+3*n)
	for _, c := range catalog {
		if _, _, _, hasScope, err := ParseRequest(s.level, c); err == nil && hasScope {
			cands = append(cands, c)
		}
	}
	for _, p := range parts {
		for i := range p.grants {
			c, _ := ParseCode(s.level, p.grants[i].text.Value().code)
			if c.AnyResource || c.AnyAction {
				continue
			}
			for sc := ScopeLow; sc <= ScopeTop; sc++ {
				cands = append(cands, c.Resource+"."+c.Action+"."+sc.Name(s.level))
			}
		}
	}
	slices.Sort(cands)
	cands = slices.Compact(cands)
	nowUS := now.UnixMicro()
	out := cands[:0]
	for _, c := range cands {
		r, a, sc, _, _ := ParseRequest(s.level, c)
		if s.eval(nowUS, r, a, uint8(sc), true, Resource{}).Allowed {
			out = append(out, c)
		}
	}
	return slices.Clip(out)
}
