package authntest

import (
	"crypto"
	"encoding/base64"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestThumbprint checks the key ids against jwx's RFC 7638 implementation, and the RFC's own
// example (§3.1).
func TestThumbprint(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "ES384", "ES512", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k, err := newKey(alg)
			require.NoError(t, err)
			jk, err := jwk.Import(k.Signer.Public())
			require.NoError(t, err)
			want, err := jk.Thumbprint(crypto.SHA256)
			require.NoError(t, err)
			assert.Equal(t, base64.RawURLEncoding.EncodeToString(want), k.ID)
		})
	}

	rfc, err := jwk.ParseKey([]byte(`{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB"}`))
	require.NoError(t, err)
	var pub any
	require.NoError(t, jwk.Export(rfc, &pub))
	got, err := Thumbprint(pub)
	require.NoError(t, err)
	assert.Equal(t, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", got)
}

// TestKeyIDsDistinct: every key has its own kid, across realms and issuers, so a verifier
// that cached one issuer's keys never confuses them with a restarted issuer's.
func TestKeyIDsDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 2 {
		iss := NewIssuer()
		for _, realm := range []string{"a", "b"} {
			_, err := iss.AddRealm(realm, "ES256")
			require.NoError(t, err)
			for _, k := range iss.Keys(realm) {
				assert.False(t, seen[k.ID], "kid %s used twice", k.ID)
				seen[k.ID] = true
			}
		}
		iss.Close()
	}
	assert.Len(t, seen, 8)
}
