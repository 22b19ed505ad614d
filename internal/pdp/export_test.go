package pdp

import (
	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/decision"
)

// CachedSet returns the set L1 holds for a tenant user, or nil.
func CachedSet(s *Service, tenantID, user string) *decision.Set {
	key, err := cache.TenantUserKey(tenantID, user)
	if err != nil {
		return nil
	}
	if e, ok := s.sets.PeekL1(key); ok {
		return &e.Set
	}
	return nil
}
