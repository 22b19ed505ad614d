package authn

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/neofast/neoauthz/internal/cache"
)

// TenantRealm is what a RealmResolver knows about the tenant owning a realm.
type TenantRealm struct {
	TenantID string
	Slug     string
	// Status is the tenant's status; only "active" authenticates.
	Status string
	// Audiences are accepted in aud for this tenant's tokens, in addition to
	// Config.Audiences (the tenant's settings.audiences).
	Audiences []string
	// Clients are accepted as azp for this tenant's tokens, in addition to
	// Config.Clients (the tenant's settings.clients).
	Clients []string
}

// TenantStatusActive is the only tenant status whose tokens authenticate.
const TenantStatusActive = "active"

// RealmResolver maps a Keycloak realm to the tenant whose external_auth_realm
// it is. It returns ErrRealmNotFound when there is none; any other error is
// treated as "could not decide".
type RealmResolver interface {
	ResolveRealm(ctx context.Context, realm string) (TenantRealm, error)
}

// resolverTimeout bounds one shared resolver call; it runs detached from
// the first caller's context because other callers may be waiting on it.
const resolverTimeout = 5 * time.Second

type realmResult struct {
	tr      TenantRealm
	found   bool
	expires time.Time // when the cache drops this answer
	// checks holds the last tenant check record made with this answer (see check); nil when
	// the realm was not found.
	checks *atomic.Pointer[tenantCheck]
}

// realmCache caches resolver answers, found and not found, and coalesces
// concurrent lookups of one realm.
type realmCache struct {
	resolver RealmResolver
	cache    *cache.TTL[string, realmResult]
	ttl      time.Duration
	now      func() time.Time
	sf       singleflight.Group
	// gen is bumped by every invalidation, after the cache has dropped what
	// it invalidates: an answer obtained while gen still read g was in the
	// cache, or fetched, before any invalidation that came after g. A lookup
	// that started before an invalidation does not store its (possibly
	// stale) answer; mu makes that check and the store one step with respect
	// to invalidations.
	gen atomic.Uint64
	mu  sync.Mutex
}

func newRealmCache(r RealmResolver, cfg Config) *realmCache {
	return &realmCache{
		resolver: r,
		cache:    cache.NewTTL[string, realmResult](cfg.RealmCacheSize, cfg.RealmCacheTTL, cfg.Now),
		ttl:      cfg.RealmCacheTTL,
		now:      cfg.Now,
	}
}

// lookup returns the answer for realm (its result is the tenant owning realm or
// ErrUnknownRealm) with its expiry, or ErrUnavailable when there is no answer.
func (c *realmCache) lookup(ctx context.Context, realm string) (realmResult, error) {
	if r, ok := c.cache.Get(realm); ok {
		return r, nil
	}
	// The generation is part of the key: a caller arriving after an invalidation never joins
	// a lookup that began before it.
	gen := c.gen.Load()
	ch := c.sf.DoChan(strconv.FormatUint(gen, 10)+"/"+realm, func() (any, error) {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resolverTimeout)
		defer cancel()
		tr, err := c.resolver.ResolveRealm(qctx, realm)
		r := realmResult{expires: c.now().Add(c.ttl)}
		switch {
		case errors.Is(err, ErrRealmNotFound):
		case err != nil:
			return nil, err
		default:
			r.tr, r.found, r.checks = tr, true, new(atomic.Pointer[tenantCheck])
		}
		c.mu.Lock()
		if c.gen.Load() == gen {
			c.cache.Add(realm, r, r.expires)
		}
		c.mu.Unlock()
		return r, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return realmResult{}, wrapError(KindUnavailable, "resolving realm", res.Err)
		}
		return res.Val.(realmResult), nil
	case <-ctx.Done():
		return realmResult{}, wrapError(KindUnavailable, "resolving realm", ctx.Err())
	}
}

func (r realmResult) result() (TenantRealm, error) {
	if !r.found {
		return TenantRealm{}, ErrUnknownRealm
	}
	return r.tr, nil
}

// check returns the record of a tenant check passed with this answer by a caller that read
// gen before looking the realm up: {gen, r.expires}. The tokens checked with one answer at one
// generation share one record, so that a cached token costs no record of its own.
func (r realmResult) check(gen uint64) *tenantCheck {
	if c := r.checks.Load(); c != nil && c.gen == gen {
		return c
	}
	c := &tenantCheck{gen: gen, until: r.expires}
	r.checks.Store(c)
	return c
}

func (c *realmCache) invalidate(realm string) {
	c.mu.Lock()
	c.cache.Remove(realm)
	c.gen.Add(1)
	c.mu.Unlock()
}

func (c *realmCache) invalidateAll() {
	c.mu.Lock()
	c.cache.Purge()
	c.gen.Add(1)
	c.mu.Unlock()
}
