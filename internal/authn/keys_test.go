package authn_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/authn/authntest"
)

// ownIssuer returns an issuer this test may rotate or break, with realm
// "acme" (alg) and, for two-realm tests, "globex" (ES256). Its clock is the
// env's, so tokens minted later are fresh.
func ownIssuer(t *testing.T, alg string, mutate func(*authn.Config)) *env {
	t.Helper()
	clock := newClock()
	idp := authntest.NewIssuer(authntest.WithClock(clock.Now))
	t.Cleanup(idp.Close)
	_, err := idp.AddRealm("acme", alg)
	require.NoError(t, err)
	_, err = idp.AddRealm("globex", "ES256")
	require.NoError(t, err)
	e := newEnvWith(t, idp, func(c *authn.Config) {
		c.Now = clock.Now
		if mutate != nil {
			mutate(c)
		}
	})
	e.clock = clock
	return e
}

func TestRotatedKeyAcceptedAfterOneRefetch(t *testing.T) {
	e := ownIssuer(t, "RS256", nil)
	ctx := context.Background()
	_, err := e.v.Validate(ctx, e.mint(t, "acme", nil))
	require.NoError(t, err)
	require.Equal(t, 1, e.idp.JWKSFetches("acme"))

	_, err = e.idp.Rotate("acme", "ES256")
	require.NoError(t, err)
	rotated := e.mint(t, "acme", map[string]any{"sub": "after-rotation"})

	// Keys were fetched less than UnknownKidRefetchInterval ago: no refetch.
	_, err = e.v.Validate(ctx, rotated)
	require.ErrorIs(t, err, authn.ErrUnknownKey, "got %v, want %v", err, authn.ErrUnknownKey)
	assert.Equal(t, 1, e.idp.JWKSFetches("acme"), "got %d fetches, want 1", e.idp.JWKSFetches("acme"))

	// Once the interval has passed, exactly one refetch finds the new key,
	// even though the refusal above happened (it must not be remembered).
	e.clock.Advance(authn.DefaultUnknownKidRefetchInterval)
	id, err := e.v.Validate(ctx, rotated)
	require.NoError(t, err)
	assert.Equal(t, "after-rotation", id.Subject)
	assert.Equal(t, 2, e.idp.JWKSFetches("acme"), "got %d fetches, want 2", e.idp.JWKSFetches("acme"))

	_, err = e.v.Validate(ctx, e.mint(t, "acme", map[string]any{"sub": "another"}))
	require.NoError(t, err)
	assert.Equal(t, 2, e.idp.JWKSFetches("acme"), "got %d fetches, want 2", e.idp.JWKSFetches("acme"))
}

func TestRemovedKeyStopsWorkingAfterRefresh(t *testing.T) {
	e := ownIssuer(t, "RS256", nil)
	ctx := context.Background()
	old := e.idp.ActiveKey("acme")
	_, err := e.idp.Rotate("acme", "RS256")
	require.NoError(t, err)
	signedByOld := func(sub string) string {
		tok, err := authntest.Sign(map[string]any{"alg": "RS256", "typ": "JWT", "kid": old.ID}, map[string]any{
			"iss": e.idp.IssuerURL("acme"), "sub": sub, "azp": "test-client", "exp": e.clock.Now().Add(time.Hour).Unix(),
		}, old.Signer)
		require.NoError(t, err)
		return tok
	}
	_, err = e.v.Validate(ctx, signedByOld("a"))
	require.NoError(t, err)
	e.idp.RemoveKey("acme", old.ID)
	e.clock.Advance(authn.DefaultUnknownKidRefetchInterval)
	// Still known from the cached set; the removal is seen at the next fetch.
	_, err = e.v.Validate(ctx, signedByOld("b"))
	require.NoError(t, err)

	_, err = e.v.Validate(ctx, e.mint(t, "acme", map[string]any{"kid": nil}))
	require.NoError(t, err)
	tok, err := e.idp.MintWithHeader("acme", nil, map[string]any{"kid": "brand-new"})
	require.NoError(t, err)
	_, err = e.v.Validate(ctx, tok) // unknown kid: triggers the refetch
	require.ErrorIs(t, err, authn.ErrUnknownKey)
	_, err = e.v.Validate(ctx, signedByOld("c"))
	require.ErrorIs(t, err, authn.ErrUnknownKey, "got %v, want %v", err, authn.ErrUnknownKey)
}

func TestUnknownKidRemembered(t *testing.T) {
	e := ownIssuer(t, "ES256", nil)
	ctx := context.Background()
	_, err := e.v.Validate(ctx, e.mint(t, "acme", nil))
	require.NoError(t, err)
	bogus := e.mintHeader(t, "acme", nil, map[string]any{"kid": "bogus"})

	e.clock.Advance(authn.DefaultUnknownKidRefetchInterval)
	_, err = e.v.Validate(ctx, bogus)
	require.ErrorIs(t, err, authn.ErrUnknownKey)
	require.Equal(t, 2, e.idp.JWKSFetches("acme"), "the first sighting after the interval refetches")

	// The interval has passed again, but the kid was checked against a fresh
	// set less than UnknownKidTTL ago: no fetch.
	e.clock.Advance(authn.DefaultUnknownKidRefetchInterval)
	_, err = e.v.Validate(ctx, bogus)
	require.ErrorIs(t, err, authn.ErrUnknownKey)
	assert.Equal(t, 2, e.idp.JWKSFetches("acme"), "got %d fetches, want 2", e.idp.JWKSFetches("acme"))

	e.clock.Advance(authn.DefaultUnknownKidTTL)
	_, err = e.v.Validate(ctx, bogus)
	require.ErrorIs(t, err, authn.ErrUnknownKey)
	assert.Equal(t, 3, e.idp.JWKSFetches("acme"), "got %d fetches, want 3", e.idp.JWKSFetches("acme"))
}

func TestRandomKidFloodCausesOneFetchPerRealm(t *testing.T) {
	e := ownIssuer(t, "ES256", nil)
	ctx := context.Background()
	realms := []string{"acme", "globex"}
	for _, r := range realms {
		_, err := e.v.Validate(ctx, e.mint(t, r, nil))
		require.NoError(t, err)
	}
	// Only the header differs between flood tokens: the kid is looked up
	// before the signature is checked, so re-signing each one would only
	// slow the test down.
	const n = 10_000
	tokens := make([]string, n)
	bodies := map[string]string{}
	for _, r := range realms {
		tok := e.mint(t, r, nil)
		bodies[r] = tok[strings.IndexByte(tok, '.'):]
	}
	for i := range tokens {
		tokens[i] = b64JSON(t, map[string]any{"alg": "ES256", "typ": "JWT", "kid": "rnd-" + strconv.Itoa(i)}) + bodies[realms[i%2]]
	}
	before := map[string]int{}
	for _, r := range realms {
		before[r] = e.idp.JWKSFetches(r)
	}
	e.clock.Advance(authn.DefaultUnknownKidRefetchInterval)

	var wg sync.WaitGroup
	var accepted atomic.Int64
	next := atomic.Int64{}
	for range 64 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				if _, err := e.v.Validate(ctx, tokens[i]); err == nil {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Zero(t, accepted.Load(), "got %d accepted, want 0", accepted.Load())
	for _, r := range realms {
		got := e.idp.JWKSFetches(r) - before[r]
		// Exactly one: the interval has passed, so the first unknown kid
		// refetches, and every other one joins it or is rate-limited.
		assert.Equal(t, 1, got, "realm %s: got %d JWKS fetches, want 1", r, got)
	}
}

func TestKeycloakDownUsesLastGoodKeysUntilMaxKeyAge(t *testing.T) {
	e := ownIssuer(t, "RS256", func(c *authn.Config) { c.MaxKeyAge = time.Hour })
	ctx := context.Background()
	_, err := e.v.Validate(ctx, e.mint(t, "acme", nil))
	require.NoError(t, err)

	e.idp.SetFailing(true)
	e.clock.Advance(59 * time.Minute)
	// A brand-new token (not cached) of the still-published key.
	_, err = e.v.Validate(ctx, e.mint(t, "acme", map[string]any{"sub": "during-outage"}))
	require.NoError(t, err, "last good keys must keep working before MaxKeyAge")

	e.clock.Advance(time.Minute)
	_, err = e.v.Validate(ctx, e.mint(t, "acme", map[string]any{"sub": "after-max-age"}))
	require.ErrorIs(t, err, authn.ErrUnavailable, "got %v, want %v", err, authn.ErrUnavailable)
	assert.False(t, authn.KindOf(err).Unauthenticated())

	// Keycloak is back; the next attempt after the refetch interval recovers.
	e.idp.SetFailing(false)
	e.clock.Advance(authn.DefaultUnknownKidRefetchInterval)
	_, err = e.v.Validate(ctx, e.mint(t, "acme", map[string]any{"sub": "recovered"}))
	require.NoError(t, err, "got %v, want success", err)
}

func TestKeycloakDownAtStartIsRateLimited(t *testing.T) {
	e := ownIssuer(t, "ES256", nil)
	e.idp.SetFailing(true)
	ctx := context.Background()
	before := e.idp.Requests()
	for i := range 20 {
		_, err := e.v.Validate(ctx, e.mint(t, "acme", map[string]any{"sub": fmt.Sprint(i)}))
		require.ErrorIs(t, err, authn.ErrUnavailable)
	}
	assert.Equal(t, before+1, e.idp.Requests(), "got %d requests, want %d (one discovery attempt)", e.idp.Requests(), before+1)
}

func TestJWKSURIOnAnotherHostRefused(t *testing.T) {
	var hits atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	t.Cleanup(other.Close)
	e := ownIssuer(t, "ES256", nil)
	e.idp.SetJWKSURI("acme", other.URL+"/certs")
	_, err := e.v.Validate(context.Background(), e.mint(t, "acme", nil))
	require.ErrorIs(t, err, authn.ErrUnavailable, "got %v, want %v", err, authn.ErrUnavailable)
	assert.Zero(t, hits.Load(), "got %d requests to the other host, want 0", hits.Load())
}

func TestBackgroundRefresh(t *testing.T) {
	e := ownIssuer(t, "ES256", func(c *authn.Config) { c.JWKSRefreshInterval = 10 * time.Millisecond })
	_, err := e.v.Validate(context.Background(), e.mint(t, "acme", nil))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.v.Run(ctx) }()
	require.Eventually(t, func() bool { return e.idp.JWKSFetches("acme") >= 3 }, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	assert.Zero(t, e.idp.JWKSFetches("globex"), "a realm never seen must not be refreshed")

	// A key rotated in is picked up by the refresher, with no request-time fetch.
	_, err = e.idp.Rotate("acme", "ES256")
	require.NoError(t, err)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- e.v.Run(ctx) }()
	n := e.idp.JWKSFetches("acme")
	// Two fetches after the rotation: the refresh that made the first has finished, and so
	// stored the rotated keys, once the second has started (refreshes of a realm take turns).
	require.Eventually(t, func() bool { return e.idp.JWKSFetches("acme") > n+1 }, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	before := e.idp.Requests() // read once the refresher has stopped: none of its fetches follow
	_, err = e.v.Validate(context.Background(), e.mint(t, "acme", map[string]any{"sub": "rotated"}))
	require.NoError(t, err)
	assert.Equal(t, before, e.idp.Requests())
}
