package cache

import (
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeyHelpers(t *testing.T) {
	k, err := TenantUserKey("0f1e2d3c-aaaa-4000-8000-000000000001", "alice")
	require.NoError(t, err)
	assert.Equal(t, "tenant:{0f1e2d3c-aaaa-4000-8000-000000000001}:u:YWxpY2U", k)
	p, err := TenantPrefix("0f1e2d3c-aaaa-4000-8000-000000000001")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(k, p))
	assert.Equal(t, "platform:u:YWxpY2U", PlatformUserKey("alice"))

	for _, bad := range []string{"", "A", "ABCDEF", "a:b", "{a}", "a}", "g", "a b", "ä", strings.Repeat("a", 65)} {
		_, err := TenantUserKey(bad, "alice")
		assert.ErrorIs(t, err, ErrInvalidTenantID, "tenant %q", bad)
		_, err = TenantPrefix(bad)
		assert.ErrorIs(t, err, ErrInvalidTenantID, "tenant %q", bad)
	}
	_, err = TenantUserKey(strings.Repeat("a", 64), "x")
	assert.NoError(t, err, "64 characters")
}

// TestKeysDoNotCollide draws tenant ids and user ids heavy in the characters that delimit
// keys and checks that different pairs never share a key, and that a tenant's prefix covers
// its own keys only.
func TestKeysDoNotCollide(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const userAlphabet = ":{}u-_aZ09=/+ \x00é"
	const tenantAlphabet = "0123456789abcdef-"
	randString := func(alphabet string, maxLen int) string {
		runes := []rune(alphabet)
		n := r.IntN(maxLen + 1)
		var b strings.Builder
		for range n {
			b.WriteRune(runes[r.IntN(len(runes))])
		}
		return b.String()
	}
	type pair struct{ tenant, user string }
	seen := map[string]pair{}
	var pairs []pair
	for range 20000 {
		p := pair{randString(tenantAlphabet, 4), randString(userAlphabet, 6)}
		k, err := TenantUserKey(p.tenant, p.user)
		if p.tenant == "" {
			require.Error(t, err)
			continue
		}
		require.NoError(t, err)
		if prev, ok := seen[k]; ok {
			require.Equal(t, prev, p, "key %q", k)
		}
		seen[k] = p
		pairs = append(pairs, p)

		pk := PlatformUserKey(p.user)
		if prev, ok := seen[pk]; ok {
			require.Equal(t, pair{"", p.user}, prev, "platform key %q", pk)
		}
		seen[pk] = pair{"", p.user}

		// The key decodes back to its pair: the encoding is injective.
		rest, ok := strings.CutPrefix(k, "tenant:{")
		require.True(t, ok)
		tenant, user, ok := strings.Cut(rest, "}:u:")
		require.True(t, ok)
		raw, err := base64.RawURLEncoding.DecodeString(user)
		require.NoError(t, err)
		decoded := pair{tenant, string(raw)}
		require.Equal(t, p, decoded)
	}
	for i := range 2000 {
		a, b := pairs[i], pairs[r.IntN(len(pairs))]
		pa, err := TenantPrefix(a.tenant)
		require.NoError(t, err)
		kb, err := TenantUserKey(b.tenant, b.user)
		require.NoError(t, err)
		assert.Equal(t, a.tenant == b.tenant, strings.HasPrefix(kb, pa), "prefix %q, key %q", pa, kb)
	}
}

func FuzzTenantUserKey(f *testing.F) {
	f.Add("ab", "x}:u:y", "ab", "x")
	f.Add("a", "b}:u:c", "a}:u:b", "c")
	f.Add("0", "", "0", ":")
	f.Fuzz(func(t *testing.T, t1, u1, t2, u2 string) {
		k1, err1 := TenantUserKey(t1, u1)
		k2, err2 := TenantUserKey(t2, u2)
		if err1 != nil || err2 != nil {
			return
		}
		if (k1 == k2) != (t1 == t2 && u1 == u2) {
			t.Fatalf("(%q, %q) -> %q and (%q, %q) -> %q", t1, u1, k1, t2, u2, k2)
		}
		if strings.HasPrefix(k1, "platform:") || k1 == PlatformUserKey(u2) {
			t.Fatalf("tenant key %q looks like a platform key", k1)
		}
	})
}
