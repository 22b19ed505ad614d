package pdp_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/pdp"
)

// A verified token's UserKey (cache.TenantUserKey of its tenant and subject, built once per
// token) decides exactly as the key built per check; a subject whose identity names another
// user or tenant does not use the identity's key.
func TestCheckTokenUserKey(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	ctx := context.Background()
	key := func(user string) string {
		k, err := cache.TenantUserKey(f.tenant.ID, user)
		require.NoError(t, err)
		return k
	}
	const perm = "users.read.tenant"

	alice := f.tokenSubject("alice", "", "")
	alice.Identity.UserKey = key("alice")
	res := in.checkSub(t, alice, perm)
	assert.True(t, res.Allowed, "alice is an admin: %+v", res)
	assert.Equal(t, pdp.ReasonGranted, res.Reason)

	// bob's subject with alice's identity (and key): decided as bob, who has no role.
	bob := f.tokenSubject("bob", "", "")
	bob.Identity = alice.Identity
	res = in.checkSub(t, bob, perm)
	assert.False(t, res.Allowed, "bob must not be decided with alice's key: %+v", res)

	// The identity's key from another tenant: not used either.
	other := f.tokenSubject("bob", "", "")
	other.Identity.TenantID = "00000000-0000-0000-0000-000000000000"
	other.Identity.UserKey = key("alice")
	res = in.checkSub(t, other, perm)
	assert.False(t, res.Allowed, "%+v", res)

	// A subject decided with and without the token's key gets the same answer.
	plain, err := in.svc.SubjectFromPrincipal(ctx, "acme", "alice")
	require.NoError(t, err)
	want := in.checkSub(t, plain, perm)
	got := in.checkSub(t, alice, perm)
	want.DecisionID, got.DecisionID = "", ""
	assert.Equal(t, want, got)
}
