package authn_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/memtest"
)

// keycloakClaims are the claims of an access token as Keycloak issues it for user i of a
// realm: a UUID subject and session, profile claims, the account audience and the default
// realm and client roles.
func keycloakClaims(i int) map[string]any {
	return map[string]any{
		"sub":                fmt.Sprintf("5f0c8e4e-2a3b-4c5d-8e9f-%012d", i),
		"sid":                fmt.Sprintf("9b1d4c2a-7e6f-4a8b-9c0d-%012d", i),
		"jti":                fmt.Sprintf("onrtac:1c2d3e4f-5a6b-4c7d-8e9f-%012d", i),
		"azp":                "web-app",
		"aud":                []string{"orders-api", "account"},
		"acr":                "1",
		"scope":              "openid email profile",
		"email_verified":     true,
		"name":               fmt.Sprintf("User %d", i),
		"given_name":         "User",
		"family_name":        fmt.Sprint(i),
		"preferred_username": fmt.Sprintf("user%d", i),
		"email":              fmt.Sprintf("user%d@example.com", i),
		"allowed-origins":    []string{"https://app.example.com"},
		"realm_access":       map[string]any{"roles": []string{"default-roles-acme", "offline_access", "uma_authorization"}},
		"resource_access":    map[string]any{"account": map[string]any{"roles": []string{"manage-account", "view-profile"}}},
	}
}

// tokenCache is what n cached Keycloak-shaped tokens of one tenant cost: live heap bytes and
// objects per token, and the cache's own estimate per token. It is measured as the difference
// between a validator holding n+1 tokens and one holding 1, each the difference between the
// heap while the validator is held and once it is dropped, so that neither what every
// validator has (keys, realm answers) nor garbage of earlier tests counts.
func tokenCache(t *testing.T, n int) (bytes, objects, estimate float64) {
	toks := make([]string, n+1)
	for i := range toks {
		tok, err := sharedIssuer().Mint("edco", keycloakClaims(i))
		require.NoError(t, err)
		toks[i] = tok
	}
	var est int64
	fill := func(toks []string) func() any {
		return func() any {
			e := newEnv(t, func(c *authn.Config) { c.CacheSize, c.CacheMaxBytes = len(toks), 1<<40 })
			for _, tok := range toks {
				_, err := e.v.Validate(context.Background(), tok)
				require.NoError(t, err)
			}
			est = authn.CachedTokenBytes(e.v)
			return e
		}
	}
	b1, o1 := memtest.Retained(fill(toks[:1]))
	est1 := est
	bn, on := memtest.Retained(fill(toks))
	return float64(bn-b1) / float64(n), float64(on-o1) / float64(n), float64(est-est1) / float64(n)
}

// A cached token is two heap objects (the 64-byte record Validate builds the identity from, and
// the token's own strings) and a slot of the cache's map, and the byte bound's estimate of it is
// no less than what it really retains (the map's bookkeeping is counted at its upper end, see
// cache.TTLEntryOverhead) and at most 40% more.
func TestCachedTokenSize(t *testing.T) {
	bytes, objects, estimate := tokenCache(t, 5_000)
	t.Logf("per cached token: %.0f bytes, %.2f heap objects; estimated %.0f bytes", bytes, objects, estimate)
	assert.GreaterOrEqual(t, estimate, bytes*0.97, "got an estimate of %.0f bytes per token, measured %.0f", estimate, bytes)
	assert.LessOrEqual(t, estimate, bytes*1.4, "got an estimate of %.0f bytes per token, measured %.0f", estimate, bytes)
	assert.LessOrEqual(t, objects, 2.1, "got %.2f heap objects per cached token", objects)
}

// A cache hit allocates nothing, also when its tenant check is a record shared with another
// token.
func TestValidateCacheHitAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes the token hasher's pool allocate")
	}
	e := newEnv(t, nil)
	ctx := context.Background()
	toks := []string{e.mint(t, "acme", keycloakClaims(1)), e.mint(t, "acme", keycloakClaims(2))}
	for _, tok := range toks {
		_, err := e.v.Validate(ctx, tok)
		require.NoError(t, err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, tok := range toks {
			if _, err := e.v.Validate(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
	})
	assert.Zero(t, allocs, "allocations per two cache hits")
}
