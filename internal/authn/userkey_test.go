package authn_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/cache"
)

// A verified token carries the pdp's cache key of its user, the same as the cache package
// builds, from the first validation and from the token cache alike.
func TestValidateUserKey(t *testing.T) {
	e := newEnv(t, nil)
	const tenantID = "0b6f3c1e-7d2a-4e8b-9c1d-2f3a4b5c6d7e"
	e.res.set("acme", authn.TenantRealm{TenantID: tenantID, Slug: "acme", Status: "active"})
	want, err := cache.TenantUserKey(tenantID, "user-7")
	require.NoError(t, err)
	tok := e.mint(t, "acme", map[string]any{"sub": "user-7"})
	for range 2 { // verified, then from the token cache
		id, err := e.v.Validate(context.Background(), tok)
		require.NoError(t, err)
		assert.Equal(t, want, id.UserKey)
	}
	id, err := e.v.Validate(context.Background(), e.mint(t, "platform", map[string]any{"sub": "root-1"}))
	require.NoError(t, err)
	assert.Equal(t, cache.PlatformUserKey("root-1"), id.UserKey)
}
