package authn

import (
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two aud lists share an encoding only when they are equal, and membership read from the
// encoding is membership in the list, whatever bytes the values hold.
func TestEncodeAud(t *testing.T) {
	long := strings.Repeat("x", 300) // a length of two uvarint bytes
	lists := [][]string{
		nil, {""}, {"", ""}, {"a"}, {"ab"}, {"a", "b"}, {"b", "a"}, {"\x01a"}, {"\x01", "a"},
		{"\x02ab"}, {"a\x00b"}, {"a", "\x00b"}, {long}, {long, "a"}, {"ö", "account"},
	}
	for i, l := range lists {
		enc := encodeAud(l)
		for j, m := range lists {
			assert.Equal(t, i == j, enc == encodeAud(m), "encodings of %q and %q", l, m)
		}
		for _, w := range []string{"", "a", "b", "ab", "\x00b", "\x01a", long, "account", "x"} {
			assert.Equal(t, slices.Contains(l, w), audContainsAny(enc, []string{w}), "%q in %q", w, l)
		}
		assert.False(t, audContainsAny(enc, nil))
	}
}

// A cached token keeps its own claims, in one allocation, a claim equal to an earlier one
// sharing its bytes, and its exp to the nanosecond, at every NumericDate the parser accepts.
func TestCachedTokenClaims(t *testing.T) {
	long := strings.Repeat("ü", 200)
	owns := [][numOwnClaims]string{
		{"sub", "user", "u@example.com"},
		{"sub", "sub", "u@example.com"},
		{"sub", "u@example.com", "u@example.com"},
		{"sub", "", ""},
		{"sub", "", "sub"},
		{"x", "x", "x"},
		{"sub", "user", "sub"},
		{long, "a", long},
		{long, "b" + long, "b" + long},
	}
	exps := []string{"1772366700", "1772366700.5", "1772366700.123456789", "0", "253402300799", "253402300798.75"}
	tenant := &TenantRealm{TenantID: "t-acme", Slug: "acme"}
	for _, own := range owns {
		for _, rawExp := range exps {
			exp, ok, err := numericDate([]byte(rawExp))
			require.NoError(t, err)
			require.True(t, ok)
			c := &claims{sub: own[claimSub], preferredUsername: own[claimPreferredUsername], email: own[claimEmail], azp: "web", exp: exp}
			ct := newCachedToken(LevelTenant, "acme", tenant, c, encodeAud([]string{"api"}))
			want := Identity{Level: LevelTenant, TenantID: "t-acme", TenantSlug: "acme", Realm: "acme", AuthorizedParty: "web",
				Subject: c.sub, PreferredUsername: c.preferredUsername, Email: c.email, ExpiresAt: exp}
			assert.Equal(t, want, ct.identity(), "claims %q, exp %s", own, rawExp)
		}
		ct := newCachedToken(LevelTenant, "acme", tenant, &claims{sub: own[0], preferredUsername: own[1], email: own[2]}, "")
		got := ct.ownClaims()
		distinct := 0
		for i, s := range own {
			j := slices.Index(own[:], s)
			if j == i {
				distinct += len(s)
			} else if s != "" {
				assert.Same(t, unsafe.StringData(got[j]), unsafe.StringData(got[i]), "claim %d of %q copied apart from the equal claim %d", i, own, j)
			}
			if s != "" {
				off := uintptr(unsafe.Pointer(unsafe.StringData(got[i]))) - uintptr(unsafe.Pointer(unsafe.StringData(ct.own)))
				assert.LessOrEqual(t, off+uintptr(len(s)), uintptr(len(ct.own)), "claim %d of %q outside the record's own claims", i, own)
			}
		}
		assert.Len(t, ct.own, distinct, "own claims of %q", own)
	}
}

// The record stays in the 64-byte size class.
func TestCachedTokenRecordSize(t *testing.T) {
	assert.LessOrEqual(t, unsafe.Sizeof(cachedToken{}), uintptr(64))
}
