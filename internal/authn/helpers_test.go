package authn_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/authn/authntest"
)

// t0 is the fixed instant the shared issuer mints at; validators' clocks
// start there.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// mapResolver is the in-test RealmResolver.
type mapResolver struct {
	mu    sync.Mutex
	m     map[string]authn.TenantRealm
	calls atomic.Int64
}

func (r *mapResolver) ResolveRealm(_ context.Context, realm string) (authn.TenantRealm, error) {
	r.calls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	tr, ok := r.m[realm]
	if !ok {
		return authn.TenantRealm{}, authn.ErrRealmNotFound
	}
	return tr, nil
}

func (r *mapResolver) set(realm string, tr authn.TenantRealm) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[realm] = tr
}

func newResolver() *mapResolver {
	return &mapResolver{m: map[string]authn.TenantRealm{
		"acme":    {TenantID: "t-acme", Slug: "acme", Status: "active"},
		"globex":  {TenantID: "t-globex", Slug: "globex", Status: "active"},
		"psco":    {TenantID: "t-psco", Slug: "psco", Status: "active"},
		"edco":    {TenantID: "t-edco", Slug: "edco", Status: "active"},
		"initech": {TenantID: "t-initech", Slug: "initech", Status: "suspended"},
	}}
}

// sharedIssuer holds the realms most tests read and never mutate; tests that
// rotate keys or break the server use their own issuer.
var sharedIssuer = sync.OnceValue(func() *authntest.Issuer {
	idp := authntest.NewIssuer(authntest.WithClock(func() time.Time { return t0 }))
	for realm, alg := range map[string]string{
		"platform": "RS256", "acme": "RS256", "globex": "ES256", "psco": "PS256", "edco": "EdDSA", "initech": "RS256",
	} {
		if _, err := idp.AddRealm(realm, alg); err != nil {
			panic(err)
		}
	}
	return idp
})

type env struct {
	idp   *authntest.Issuer
	clock *fakeClock
	res   *mapResolver
	v     *authn.Validator
}

func newEnvWith(t testing.TB, idp *authntest.Issuer, mutate func(*authn.Config)) *env {
	t.Helper()
	e := &env{idp: idp, clock: newClock(), res: newResolver()}
	cfg := authn.Config{
		TrustedIssuerBases: []string{idp.URL()},
		PlatformRealm:      "platform",
		AllowAnyAudience:   true, // tests of audiences and clients set their own
		HTTPClient:         idp.Client(),
		Now:                e.clock.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := authn.New(cfg, e.res, nil)
	require.NoError(t, err)
	e.v = v
	return e
}

func newEnv(t testing.TB, mutate func(*authn.Config)) *env {
	return newEnvWith(t, sharedIssuer(), mutate)
}

func (e *env) mint(t testing.TB, realm string, claims map[string]any) string {
	t.Helper()
	tok, err := e.idp.Mint(realm, claims)
	require.NoError(t, err)
	return tok
}

func (e *env) mintHeader(t testing.TB, realm string, claims, header map[string]any) string {
	t.Helper()
	tok, err := e.idp.MintWithHeader(realm, claims, header)
	require.NoError(t, err)
	return tok
}
