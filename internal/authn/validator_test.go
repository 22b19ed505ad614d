package authn_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/authn/authntest"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b64(b)
}

func TestValidateAcceptsValidTokens(t *testing.T) {
	e := newEnv(t, nil)
	exp := t0.Add(authntest.DefaultTokenLifetime)
	full := map[string]any{
		"sub":                "user-42",
		"azp":                "web",
		"aud":                []string{"account", "acme-api"},
		"preferred_username": "alice",
		"email":              "alice@example.com",
		"realm_access":       map[string]any{"roles": []string{"admin", "user"}},
		"groups":             []string{"/eng", "/eng/platform"},
		"sid":                "sess-1",
	}
	tests := []struct {
		name  string
		realm string
		want  authn.Identity
	}{
		{"RS256 tenant", "acme", authn.Identity{Level: authn.LevelTenant, TenantID: "t-acme", TenantSlug: "acme", Realm: "acme"}},
		{"ES256 tenant", "globex", authn.Identity{Level: authn.LevelTenant, TenantID: "t-globex", TenantSlug: "globex", Realm: "globex"}},
		{"PS256 tenant", "psco", authn.Identity{Level: authn.LevelTenant, TenantID: "t-psco", TenantSlug: "psco", Realm: "psco"}},
		{"EdDSA tenant", "edco", authn.Identity{Level: authn.LevelTenant, TenantID: "t-edco", TenantSlug: "edco", Realm: "edco"}},
		{"platform", "platform", authn.Identity{Level: authn.LevelPlatform, Realm: "platform"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			want.Subject, want.AuthorizedParty, want.PreferredUsername, want.Email = "user-42", "web", "alice", "alice@example.com"
			want.ExpiresAt = exp
			id, err := e.v.Validate(context.Background(), e.mint(t, tc.realm, full))
			require.NoError(t, err)
			assert.Equal(t, want, id, "got identity %+v, want %+v", id, want)
		})
	}
}

// A NumericDate may have a fraction: ExpiresAt keeps it, from the cache as on a fresh validation.
func TestValidateFractionalExp(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.mint(t, "acme", map[string]any{"exp": float64(t0.Unix()+300) + 0.25})
	want := time.Unix(t0.Unix()+300, 250_000_000).UTC()
	for _, call := range []string{"fresh", "cached"} {
		id, err := e.v.Validate(context.Background(), tok)
		require.NoError(t, err)
		assert.Equal(t, want, id.ExpiresAt, "%s validation: got ExpiresAt %v, want %v", call, id.ExpiresAt, want)
	}
}

// TestValidateRejects is the bad-token catalogue.
func TestValidateRejects(t *testing.T) {
	idp := sharedIssuer()
	acme := idp.ActiveKey("acme")
	globex := idp.ActiveKey("globex")
	rsaPub := acme.Signer.Public()
	der, err := x509.MarshalPKIXPublicKey(rsaPub)
	require.NoError(t, err)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	claims := map[string]any{
		"iss": idp.IssuerURL("acme"), "sub": "user-1", "typ": "Bearer",
		"iat": t0.Unix(), "exp": t0.Add(5 * time.Minute).Unix(),
	}
	hmacToken := func(secret []byte) func(t *testing.T, e *env) string {
		return func(t *testing.T, _ *env) string {
			input := b64JSON(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": acme.ID}) + "." + b64JSON(t, claims)
			m := hmac.New(sha256.New, secret)
			m.Write([]byte(input))
			return input + "." + b64(m.Sum(nil))
		}
	}
	mintC := func(realm string, c map[string]any) func(t *testing.T, e *env) string {
		return func(t *testing.T, e *env) string { return e.mint(t, realm, c) }
	}
	mintH := func(h map[string]any) func(t *testing.T, e *env) string {
		return func(t *testing.T, e *env) string { return e.mintHeader(t, "acme", nil, h) }
	}
	issuer := func(iss string) func(t *testing.T, e *env) string { return mintC("acme", map[string]any{"iss": iss}) }
	valid := func(t *testing.T, e *env) string { return e.mint(t, "acme", nil) }
	segments := func(t *testing.T, e *env) []string { return strings.Split(valid(t, e), ".") }

	tests := []struct {
		name  string
		token func(t *testing.T, e *env) string
		want  error
	}{
		{"alg none", func(t *testing.T, _ *env) string {
			return b64JSON(t, map[string]any{"alg": "none", "typ": "JWT", "kid": acme.ID}) + "." + b64JSON(t, claims) + "."
		}, authn.ErrAlgorithmNotAllowed},
		{"HS256 with the public key PEM as secret", hmacToken(pemBytes), authn.ErrAlgorithmNotAllowed},
		{"HS256 with the public key DER as secret", hmacToken(der), authn.ErrAlgorithmNotAllowed},
		{"algorithm not in allow-list", func(t *testing.T, e *env) string {
			s := segments(t, e)
			return b64JSON(t, map[string]any{"alg": "ES256K", "typ": "JWT", "kid": acme.ID}) + "." + s[1] + "." + s[2]
		}, authn.ErrAlgorithmNotAllowed},
		{"RSA key with ES256 header", func(t *testing.T, _ *env) string {
			tok, err := authntest.Sign(map[string]any{"alg": "ES256", "typ": "JWT", "kid": acme.ID}, claims, globex.Signer)
			require.NoError(t, err)
			return tok
		}, authn.ErrAlgorithmNotAllowed},
		{"RS256 key used with PS256 (JWK alg disagrees)", func(t *testing.T, _ *env) string {
			tok, err := authntest.Sign(map[string]any{"alg": "PS256", "typ": "JWT", "kid": acme.ID}, claims, acme.Signer)
			require.NoError(t, err)
			return tok
		}, authn.ErrAlgorithmNotAllowed},
		{"unknown kid", mintH(map[string]any{"kid": "no-such-kid"}), authn.ErrUnknownKey},
		{"kid of another realm", func(t *testing.T, _ *env) string {
			tok, err := authntest.Sign(map[string]any{"alg": "ES256", "typ": "JWT", "kid": globex.ID}, claims, globex.Signer)
			require.NoError(t, err)
			return tok
		}, authn.ErrUnknownKey},
		{"kid of the realm's encryption key", func(t *testing.T, _ *env) string {
			var encKid string
			for _, key := range idp.Keys("acme") {
				if key.Alg == "RSA-OAEP" {
					encKid = key.ID
				}
			}
			require.NotEmpty(t, encKid)
			tok, err := authntest.Sign(map[string]any{"alg": "RS256", "typ": "JWT", "kid": encKid}, claims, idp.Key("acme", encKid).Signer)
			require.NoError(t, err)
			return tok
		}, authn.ErrUnknownKey},
		{"missing kid", mintH(map[string]any{"kid": nil}), authn.ErrMalformed},
		{"kid too long", mintH(map[string]any{"kid": strings.Repeat("k", 300)}), authn.ErrMalformed},
		{"bad signature", func(t *testing.T, e *env) string {
			s := segments(t, e)
			sig, err := base64.RawURLEncoding.DecodeString(s[2])
			require.NoError(t, err)
			sig[0] ^= 1
			return s[0] + "." + s[1] + "." + b64(sig)
		}, authn.ErrBadSignature},
		{"payload swapped under a valid signature", func(t *testing.T, e *env) string {
			s := segments(t, e)
			other := strings.Split(e.mint(t, "acme", map[string]any{"sub": "root"}), ".")
			return s[0] + "." + other[1] + "." + s[2]
		}, authn.ErrBadSignature},
		{"expired and badly signed is a signature failure", func(t *testing.T, e *env) string {
			s := strings.Split(e.mint(t, "acme", map[string]any{"exp": t0.Add(-time.Hour).Unix()}), ".")
			return s[0] + "." + s[1] + "." + b64(make([]byte, 256))
		}, authn.ErrBadSignature},
		{"expired", mintC("acme", map[string]any{"iat": t0.Add(-10 * time.Minute).Unix(), "exp": t0.Add(-time.Minute).Unix()}), authn.ErrExpired},
		{"expired beyond skew", mintC("acme", map[string]any{"exp": t0.Add(-31 * time.Second).Unix()}), authn.ErrExpired},
		{"expired exactly at exp+skew", mintC("acme", map[string]any{"exp": t0.Add(-30 * time.Second).Unix()}), authn.ErrExpired},
		{"nbf in the future beyond skew", mintC("acme", map[string]any{"nbf": t0.Add(31 * time.Second).Unix()}), authn.ErrNotYetValid},
		{"iat in the future beyond skew", mintC("acme", map[string]any{"iat": t0.Add(2 * time.Minute).Unix(), "exp": t0.Add(time.Hour).Unix()}), authn.ErrNotYetValid},
		{"missing exp", mintC("acme", map[string]any{"exp": nil}), authn.ErrMissingClaim},
		{"claim names are case-sensitive", mintC("acme", map[string]any{"exp": nil, "EXP": t0.Add(time.Hour).Unix()}), authn.ErrMissingClaim},
		{"missing sub", mintC("acme", map[string]any{"sub": nil}), authn.ErrMissingClaim},
		{"sub longer than a user id may be", mintC("acme", map[string]any{"sub": strings.Repeat("u", 256)}), authn.ErrMalformed},
		{"missing iss", mintC("acme", map[string]any{"iss": nil}), authn.ErrMissingClaim},
		{"exp not a number", mintC("acme", map[string]any{"exp": "tomorrow"}), authn.ErrMalformed},
		{"issuer with trailing slash", issuer(idp.IssuerURL("acme") + "/"), authn.ErrUnknownIssuer},
		{"issuer https instead of http", issuer(strings.Replace(idp.IssuerURL("acme"), "http://", "https://", 1)), authn.ErrUnknownIssuer},
		{"issuer on another host", issuer("http://sso.evil.example/realms/acme"), authn.ErrUnknownIssuer},
		{"issuer with /auth prefix", issuer(idp.URL() + "/auth/realms/acme"), authn.ErrUnknownIssuer},
		{"issuer with extra path", issuer(idp.IssuerURL("acme") + "/protocol"), authn.ErrUnknownIssuer},
		{"issuer with dot-dot realm", issuer(idp.URL() + "/realms/.."), authn.ErrUnknownIssuer},
		{"issuer case differs", issuer(strings.Replace(idp.IssuerURL("acme"), "/realms/", "/Realms/", 1)), authn.ErrUnknownIssuer},
		{"suspended tenant", mintC("initech", nil), authn.ErrTenantNotActive},
		{"unknown realm", issuer(idp.URL() + "/realms/ghost"), authn.ErrUnknownRealm},
		{"refresh token", mintC("acme", map[string]any{"typ": "Refresh"}), authn.ErrWrongTokenType},
		{"ID token", mintC("acme", map[string]any{"typ": "ID"}), authn.ErrWrongTokenType},
		{"header typ not JWT", mintH(map[string]any{"typ": "JOSE"}), authn.ErrWrongTokenType},
		{"oversized", func(t *testing.T, e *env) string {
			return e.mint(t, "acme", map[string]any{"pad": strings.Repeat("x", authn.DefaultMaxTokenBytes)})
		}, authn.ErrTooLarge},
		{"invalid base64 character", func(t *testing.T, e *env) string {
			s := segments(t, e)
			return s[0] + "." + s[1] + "." + s[2][:10] + "+" + s[2][11:]
		}, authn.ErrMalformed},
		{"padded base64", func(t *testing.T, e *env) string { return valid(t, e) + "==" }, authn.ErrMalformed},
		{"newline inside the signature", func(t *testing.T, e *env) string {
			s := segments(t, e)
			return s[0] + "." + s[1] + "." + s[2][:10] + "\n" + s[2][10:]
		}, authn.ErrMalformed},
		{"non-canonical base64 trailing bits", func(t *testing.T, e *env) string {
			s := segments(t, e)
			// A 256-byte RSA signature leaves 2 unused bits in its last
			// character; setting one keeps the decoded bytes identical.
			last := s[2][len(s[2])-1]
			alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			idx := strings.IndexByte(alphabet, last)
			return s[0] + "." + s[1] + "." + s[2][:len(s[2])-1] + string(alphabet[idx|1])
		}, authn.ErrMalformed},
		{"segment not base64 length", func(t *testing.T, e *env) string {
			s := segments(t, e)
			return s[0] + "." + s[1] + "x." + s[2]
		}, authn.ErrMalformed},
		{"two segments", func(t *testing.T, e *env) string {
			s := segments(t, e)
			return s[0] + "." + s[1]
		}, authn.ErrMalformed},
		{"four segments", func(t *testing.T, e *env) string { return valid(t, e) + ".abc" }, authn.ErrMalformed},
		{"JWE (five segments)", func(t *testing.T, _ *env) string {
			return b64JSON(t, map[string]any{"alg": "RSA-OAEP", "enc": "A256GCM", "kid": acme.ID}) + ".a2V5.aXY.Y2lwaGVy.dGFn"
		}, authn.ErrMalformed},
		{"header not JSON", func(t *testing.T, e *env) string {
			s := segments(t, e)
			return b64([]byte("not json")) + "." + s[1] + "." + s[2]
		}, authn.ErrMalformed},
		{"payload JSON array", func(t *testing.T, e *env) string {
			s := segments(t, e)
			return s[0] + "." + b64([]byte(`["iss"]`)) + "." + s[2]
		}, authn.ErrMalformed},
		{"empty token", func(*testing.T, *env) string { return "" }, authn.ErrMalformed},
		{"crit header", mintH(map[string]any{"crit": []string{"exp"}, "exp": 1}), authn.ErrMalformed},
		{"empty crit header", mintH(map[string]any{"crit": []string{}}), authn.ErrMalformed},
		{"b64 header", mintH(map[string]any{"b64": false, "crit": []string{"b64"}}), authn.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			// Warm the acme keys so that any request seen below is one the
			// token itself caused.
			_, err := e.v.Validate(context.Background(), valid(t, e))
			require.NoError(t, err)
			tok := tc.token(t, e)
			id, err := e.v.Validate(context.Background(), tok)
			require.Error(t, err, "got identity %+v, want error %v", id, tc.want)
			require.ErrorIs(t, err, tc.want, "got %v, want %v", err, tc.want)
			assert.Zero(t, id)
			if len(tok) > 20 {
				for _, seg := range strings.Split(tok, ".") {
					if len(seg) > 8 {
						assert.NotContains(t, err.Error(), seg, "error message leaks a token segment")
					}
				}
			}
		})
	}
}

// TestKeyURLHeadersAreNeverFollowed checks jku, x5u, jwk and x5c are refused
// without any outbound request.
func TestKeyURLHeadersAreNeverFollowed(t *testing.T) {
	idp := sharedIssuer()
	attackerKey, err := authntest.NewSigner("RS256")
	require.NoError(t, err)
	jwk := (&authntest.Key{ID: "attacker", Alg: "RS256", Signer: attackerKey}).JWK()
	tests := []struct {
		name   string
		header map[string]any
	}{
		{"jku", map[string]any{"jku": idp.URL() + "/attacker/jwks.json", "kid": "attacker"}},
		{"x5u", map[string]any{"x5u": idp.URL() + "/attacker/cert.pem", "kid": "attacker"}},
		{"jwk", map[string]any{"jwk": jwk, "kid": "attacker"}},
		{"x5c", map[string]any{"x5c": []string{"MIIB"}, "kid": "attacker"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			_, err := e.v.Validate(context.Background(), e.mint(t, "acme", nil))
			require.NoError(t, err)
			h := map[string]any{"alg": "RS256", "typ": "JWT"}
			for k, v := range tc.header {
				h[k] = v
			}
			tok, err := authntest.Sign(h, map[string]any{
				"iss": idp.IssuerURL("acme"), "sub": "user-1", "exp": t0.Add(time.Minute).Unix(),
			}, attackerKey)
			require.NoError(t, err)
			before := idp.Requests()
			_, err = e.v.Validate(context.Background(), tok)
			require.ErrorIs(t, err, authn.ErrMalformed, "got %v, want %v", err, authn.ErrMalformed)
			assert.Equal(t, before, idp.Requests(), "got %d requests, want %d", idp.Requests(), before)
		})
	}
}

func TestValidateClockSkew(t *testing.T) {
	tests := []struct {
		name   string
		skew   time.Duration
		claims map[string]any
		want   error
	}{
		{"exp 10s ago within default skew", 0, map[string]any{"exp": t0.Add(-10 * time.Second).Unix()}, nil},
		{"exp 10s ago without skew", time.Nanosecond, map[string]any{"exp": t0.Add(-10 * time.Second).Unix()}, authn.ErrExpired},
		{"exp 10s ahead without skew", time.Nanosecond, map[string]any{"exp": t0.Add(10 * time.Second).Unix()}, nil},
		{"nbf 10s ahead within default skew", 0, map[string]any{"nbf": t0.Add(10 * time.Second).Unix()}, nil},
		{"nbf 10s ahead without skew", time.Nanosecond, map[string]any{"nbf": t0.Add(10 * time.Second).Unix()}, authn.ErrNotYetValid},
		{"iat 10s ahead within default skew", 0, map[string]any{"iat": t0.Add(10 * time.Second).Unix()}, nil},
		{"iat 10s ahead without skew", time.Nanosecond, map[string]any{"iat": t0.Add(10 * time.Second).Unix()}, authn.ErrNotYetValid},
		{"exp 2m ago with 3m skew", 3 * time.Minute, map[string]any{"exp": t0.Add(-2 * time.Minute).Unix()}, nil},
		{"fractional exp", 0, map[string]any{"exp": float64(t0.Unix()) + 60.5}, nil},
		{"missing exp with skew", 3 * time.Minute, map[string]any{"exp": nil}, authn.ErrMissingClaim},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *authn.Config) { c.ClockSkew = tc.skew })
			_, err := e.v.Validate(context.Background(), e.mint(t, "acme", tc.claims))
			if tc.want == nil {
				require.NoError(t, err, "got %v, want success", err)
			} else {
				require.ErrorIs(t, err, tc.want, "got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestValidateAudienceAndClient(t *testing.T) {
	type cfg struct{ audiences, clients []string }
	ours := cfg{audiences: []string{"neoauthz"}}
	tests := []struct {
		name   string
		cfg    cfg
		realm  string
		claims map[string]any
		want   error
	}{
		{"any audience when explicitly allowed", cfg{}, "globex", map[string]any{"aud": "anything"}, nil},
		{"global audience in aud string", ours, "globex", map[string]any{"aud": "neoauthz"}, nil},
		{"global audience in aud array", ours, "globex", map[string]any{"aud": []string{"account", "neoauthz"}}, nil},
		{"azp does not stand in for aud", ours, "globex", map[string]any{"azp": "neoauthz", "aud": "account"}, authn.ErrWrongAudience},
		{"no aud, azp equal to an audience", ours, "globex", map[string]any{"azp": "neoauthz", "aud": nil}, authn.ErrWrongAudience},
		{"wrong aud and azp", ours, "globex", map[string]any{"azp": "web", "aud": []string{"account"}}, authn.ErrWrongAudience},
		{"no aud, wrong azp", ours, "globex", map[string]any{"azp": "web"}, authn.ErrWrongAudience},
		{"tenant audience accepted for its tenant", ours, "acme", map[string]any{"aud": "acme-api", "azp": "acme-web"}, nil},
		{"tenant audience checked with no global one", cfg{}, "acme", map[string]any{"aud": "other", "azp": "acme-web"}, authn.ErrWrongAudience},
		{"tenant audience of another tenant refused", ours, "globex", map[string]any{"aud": "acme-api"}, authn.ErrWrongAudience},
		{"platform uses global audiences", ours, "platform", map[string]any{"aud": "acme-api"}, authn.ErrWrongAudience},
		{"any client when none configured", ours, "globex", map[string]any{"aud": "neoauthz", "azp": "whatever"}, nil},
		{"accepted client", cfg{audiences: ours.audiences, clients: []string{"web"}}, "globex", map[string]any{"aud": "neoauthz", "azp": "web"}, nil},
		{"our audience, another client", cfg{audiences: ours.audiences, clients: []string{"web"}}, "globex", map[string]any{"aud": "neoauthz", "azp": "evil"}, authn.ErrWrongClient},
		{"our audience, no azp", cfg{audiences: ours.audiences, clients: []string{"web"}}, "globex", map[string]any{"aud": "neoauthz", "azp": nil}, authn.ErrWrongClient},
		{"azp equal to an audience is not a client", cfg{audiences: ours.audiences, clients: []string{"web"}}, "globex", map[string]any{"aud": "neoauthz", "azp": "neoauthz"}, authn.ErrWrongClient},
		{"tenant clients checked with no global one", ours, "acme", map[string]any{"aud": "neoauthz", "azp": "web"}, authn.ErrWrongClient},
		{"tenant client accepted for its tenant", cfg{audiences: ours.audiences, clients: []string{"web"}}, "acme", map[string]any{"aud": "neoauthz", "azp": "acme-web"}, nil},
		{"global client accepted for a tenant with its own", cfg{audiences: ours.audiences, clients: []string{"web"}}, "acme", map[string]any{"aud": "neoauthz", "azp": "web"}, nil},
		{"tenant client of another tenant refused", cfg{audiences: ours.audiences, clients: []string{"web"}}, "globex", map[string]any{"aud": "neoauthz", "azp": "acme-web"}, authn.ErrWrongClient},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *authn.Config) {
				c.Audiences, c.Clients, c.AllowAnyAudience = tc.cfg.audiences, tc.cfg.clients, len(tc.cfg.audiences) == 0
			})
			// acme's settings hold audiences and clients of its own.
			e.res.set("acme", authn.TenantRealm{TenantID: "t-acme", Slug: "acme", Status: "active",
				Audiences: []string{"acme-api"}, Clients: []string{"acme-web"}})
			_, err := e.v.Validate(context.Background(), e.mint(t, tc.realm, tc.claims))
			if tc.want == nil {
				require.NoError(t, err, "got %v, want success", err)
			} else {
				require.ErrorIs(t, err, tc.want, "got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestTenantClientsReachCachedTokens: narrowing a tenant's accepted clients or audiences
// refuses its tokens already in the verified-token cache once the realm answer is refreshed.
func TestTenantClientsReachCachedTokens(t *testing.T) {
	e := newEnv(t, nil)
	open := authn.TenantRealm{TenantID: "t-acme", Slug: "acme", Status: "active"}
	e.res.set("acme", open)
	tok := e.mint(t, "acme", map[string]any{"aud": "acme-api", "azp": "web"})
	_, err := e.v.Validate(context.Background(), tok)
	require.NoError(t, err)

	narrowed := open
	narrowed.Clients = []string{"acme-web"}
	e.res.set("acme", narrowed)
	e.v.Invalidate("acme")
	_, err = e.v.Validate(context.Background(), tok)
	require.ErrorIs(t, err, authn.ErrWrongClient, "got %v, want %v", err, authn.ErrWrongClient)

	narrowed = open
	narrowed.Audiences = []string{"other-api"}
	e.res.set("acme", narrowed)
	e.v.Invalidate("acme")
	_, err = e.v.Validate(context.Background(), tok)
	require.ErrorIs(t, err, authn.ErrWrongAudience, "got %v, want %v", err, authn.ErrWrongAudience)
}

// TestValidateDuplicateMembers: a token whose header or claims hold one member twice, at any
// depth and however the name is spelt, is refused as such before its signature is looked at.
func TestValidateDuplicateMembers(t *testing.T) {
	e := newEnv(t, nil)
	k := e.idp.ActiveKey("acme")
	iss := e.idp.IssuerURL("acme")
	exp := t0.Add(time.Hour).Unix()
	hdr := `{"alg":"` + k.Alg + `","typ":"JWT","kid":"` + k.ID + `"}`
	claims := fmt.Sprintf(`{"iss":%q,"sub":"alice","typ":"Bearer","exp":%d`, iss, exp)
	for _, tc := range []struct{ name, header, claims string }{
		{"alg twice in the header", `{"alg":"none","typ":"JWT","kid":"` + k.ID + `","alg":"` + k.Alg + `"}`, claims + `}`},
		{"kid twice in the header", `{"alg":"` + k.Alg + `","kid":"other","typ":"JWT","kid":"` + k.ID + `"}`, claims + `}`},
		{"sub twice", hdr, claims + `,"sub":"root"}`},
		{"escaped second sub", hdr, claims + `,"s\u0075b":"root"}`},
		{"iss twice", hdr, claims + fmt.Sprintf(`,"iss":%q}`, e.idp.IssuerURL("globex"))},
		{"nested roles twice", hdr, claims + `,"realm_access":{"roles":["user"],"roles":["admin"]}}`},
		{"deeply nested member twice", hdr, claims + `,"resource_access":{"web":{"roles":[{"a":1,"a":2}]}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := authntest.SignJSON([]byte(tc.header), []byte(tc.claims), k.Signer)
			require.NoError(t, err)
			_, err = e.v.Validate(context.Background(), tok)
			require.ErrorIs(t, err, authn.ErrDuplicateMember, "got %v, want %v", err, authn.ErrDuplicateMember)
			assert.Equal(t, "duplicate_member", authn.Reason(err))

			// The same token with a broken signature: still refused for the duplicate, which
			// is found before any key is fetched or signature checked.
			_, err = e.v.Validate(context.Background(), tok[:strings.LastIndexByte(tok, '.')+1]+"AAAA")
			require.ErrorIs(t, err, authn.ErrDuplicateMember, "got %v, want %v", err, authn.ErrDuplicateMember)
		})
	}
	t.Run("control: the same token without a duplicate is accepted", func(t *testing.T) {
		tok, err := authntest.SignJSON([]byte(hdr), []byte(claims+`,"realm_access":{"roles":["user"]}}`), k.Signer)
		require.NoError(t, err)
		id, err := e.v.Validate(context.Background(), tok)
		require.NoError(t, err)
		assert.Equal(t, "alice", id.Subject)
	})
	t.Run("nesting is bounded", func(t *testing.T) {
		deep := claims + `,"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`
		tok, err := authntest.SignJSON([]byte(hdr), []byte(deep), k.Signer)
		require.NoError(t, err)
		_, err = e.v.Validate(context.Background(), tok)
		require.ErrorIs(t, err, authn.ErrMalformed, "got %v, want %v", err, authn.ErrMalformed)
	})
}

func TestValidateAllowedAlgorithmsConfig(t *testing.T) {
	e := newEnv(t, func(c *authn.Config) { c.AllowedAlgorithms = []string{"RS256"} })
	_, err := e.v.Validate(context.Background(), e.mint(t, "acme", nil))
	require.NoError(t, err)
	_, err = e.v.Validate(context.Background(), e.mint(t, "globex", nil))
	require.ErrorIs(t, err, authn.ErrAlgorithmNotAllowed, "got %v, want %v", err, authn.ErrAlgorithmNotAllowed)
}

func TestValidateUnknownRealmFetchesNothing(t *testing.T) {
	e := newEnv(t, nil)
	before := e.idp.Requests()
	tok := e.mint(t, "acme", map[string]any{"iss": e.idp.URL() + "/realms/ghost"})
	for range 3 {
		_, err := e.v.Validate(context.Background(), tok)
		require.ErrorIs(t, err, authn.ErrUnknownRealm, "got %v, want %v", err, authn.ErrUnknownRealm)
	}
	assert.Equal(t, before, e.idp.Requests(), "got %d requests, want %d", e.idp.Requests(), before)
	assert.Equal(t, int64(1), e.res.calls.Load(), "got %d resolver calls, want 1 (negative answer cached)", e.res.calls.Load())
}

func TestValidateCacheHit(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.mint(t, "acme", nil)
	first, err := e.v.Validate(context.Background(), tok)
	require.NoError(t, err)
	fetches := e.idp.JWKSFetches("acme")
	second, err := e.v.Validate(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, first, second)
	assert.Same(t, unsafe.StringData(first.Subject), unsafe.StringData(second.Subject), "got a new identity, want the cached one")
	assert.Equal(t, fetches, e.idp.JWKSFetches("acme"))
}

func TestValidateCachedTokenExpires(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.mint(t, "acme", nil) // exp t0+5m
	_, err := e.v.Validate(context.Background(), tok)
	require.NoError(t, err)
	e.clock.Advance(authntest.DefaultTokenLifetime + 29*time.Second)
	_, err = e.v.Validate(context.Background(), tok)
	require.NoError(t, err, "within skew")
	e.clock.Advance(time.Second)
	_, err = e.v.Validate(context.Background(), tok)
	require.ErrorIs(t, err, authn.ErrExpired, "got %v, want %v", err, authn.ErrExpired)
}

func TestValidateCachedTokenBoundedByCacheTTL(t *testing.T) {
	e := newEnv(t, func(c *authn.Config) { c.CacheTTL = time.Minute })
	tok := e.mint(t, "acme", nil)
	first, err := e.v.Validate(context.Background(), tok)
	require.NoError(t, err)
	e.clock.Advance(2 * time.Minute)
	second, err := e.v.Validate(context.Background(), tok)
	require.NoError(t, err)
	assert.NotSame(t, unsafe.StringData(first.Subject), unsafe.StringData(second.Subject), "got the cached identity, want a fresh verification after CacheTTL")
}

func TestInvalidateReachesCachedTokens(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.mint(t, "acme", nil)
	_, err := e.v.Validate(context.Background(), tok)
	require.NoError(t, err)

	e.res.set("acme", authn.TenantRealm{TenantID: "t-acme", Slug: "acme", Status: "suspended"})
	_, err = e.v.Validate(context.Background(), tok)
	require.NoError(t, err, "the realm answer is cached until invalidated")

	e.v.Invalidate("acme")
	_, err = e.v.Validate(context.Background(), tok)
	require.ErrorIs(t, err, authn.ErrTenantNotActive, "got %v, want %v", err, authn.ErrTenantNotActive)

	e.res.set("acme", authn.TenantRealm{TenantID: "t-acme", Slug: "acme", Status: "active"})
	e.v.InvalidateAll()
	_, err = e.v.Validate(context.Background(), tok)
	require.NoError(t, err)

	// The realm moves to another tenant: the cached identity must not keep
	// the old tenant.
	e.res.set("acme", authn.TenantRealm{TenantID: "t-other", Slug: "other", Status: "active"})
	e.v.InvalidateAll()
	id, err := e.v.Validate(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, "t-other", id.TenantID, "got tenant %q, want %q", id.TenantID, "t-other")

	e.res.mu.Lock()
	delete(e.res.m, "acme")
	e.res.mu.Unlock()
	e.v.Invalidate("acme")
	_, err = e.v.Validate(context.Background(), tok)
	require.ErrorIs(t, err, authn.ErrUnknownRealm, "got %v, want %v", err, authn.ErrUnknownRealm)
}

func TestRealmCacheExpires(t *testing.T) {
	e := newEnv(t, func(c *authn.Config) { c.RealmCacheTTL = time.Minute })
	_, err := e.v.Validate(context.Background(), e.mint(t, "acme", nil))
	require.NoError(t, err)
	e.res.set("acme", authn.TenantRealm{TenantID: "t-acme", Status: "suspended"})
	e.clock.Advance(61 * time.Second)
	_, err = e.v.Validate(context.Background(), e.mint(t, "acme", map[string]any{"exp": t0.Add(time.Hour).Unix()}))
	require.ErrorIs(t, err, authn.ErrTenantNotActive, "got %v, want %v", err, authn.ErrTenantNotActive)
}

// TestRealmCacheExpiryReachesCachedTokens: a cached token's tenant check lasts no longer than
// the realm answer it used, so without any invalidation a suspension is seen once that answer
// expires (a lost notification is bounded by RealmCacheTTL, for cached tokens too).
func TestRealmCacheExpiryReachesCachedTokens(t *testing.T) {
	e := newEnv(t, func(c *authn.Config) { c.RealmCacheTTL = time.Minute })
	tok := e.mint(t, "acme", map[string]any{"exp": t0.Add(time.Hour).Unix()})
	_, err := e.v.Validate(context.Background(), tok)
	require.NoError(t, err)
	e.res.set("acme", authn.TenantRealm{TenantID: "t-acme", Slug: "acme", Status: "suspended"})
	_, err = e.v.Validate(context.Background(), tok)
	require.NoError(t, err, "the realm answer is cached until it expires")
	e.clock.Advance(61 * time.Second)
	_, err = e.v.Validate(context.Background(), tok)
	require.ErrorIs(t, err, authn.ErrTenantNotActive, "got %v, want %v", err, authn.ErrTenantNotActive)
}

// TestInvalidateReachesRecheckedTokens: a hit that re-checked its tenant (after an
// invalidation) and passed still sees the next invalidation.
func TestInvalidateReachesRecheckedTokens(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.mint(t, "acme", nil)
	_, err := e.v.Validate(context.Background(), tok)
	require.NoError(t, err)
	for range 3 {
		e.v.InvalidateAll()
		_, err = e.v.Validate(context.Background(), tok)
		require.NoError(t, err)
		_, err = e.v.Validate(context.Background(), tok)
		require.NoError(t, err)
	}
	e.res.set("acme", authn.TenantRealm{TenantID: "t-acme", Slug: "acme", Status: "suspended"})
	e.v.Invalidate("acme")
	_, err = e.v.Validate(context.Background(), tok)
	require.ErrorIs(t, err, authn.ErrTenantNotActive, "got %v, want %v", err, authn.ErrTenantNotActive)
}

// TestSharedTenantChecksFollowTheirAnswer: the tokens of a tenant share the record of a tenant
// check made with one realm answer at one generation; an invalidation or the answer's expiry
// still reaches every one of them.
func TestSharedTenantChecksFollowTheirAnswer(t *testing.T) {
	e := newEnv(t, func(c *authn.Config) { c.RealmCacheTTL = time.Minute })
	exp := t0.Add(time.Hour).Unix()
	toks := []string{e.mint(t, "acme", map[string]any{"sub": "a", "exp": exp}), e.mint(t, "acme", map[string]any{"sub": "b", "exp": exp})}
	validateAll := func(want error) {
		t.Helper()
		for _, tok := range toks {
			_, err := e.v.Validate(context.Background(), tok)
			if want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, want, "got %v, want %v", err, want)
			}
		}
	}
	validateAll(nil)
	e.v.Invalidate("globex") // another realm: acme's tokens re-check, and share the new record
	validateAll(nil)
	e.clock.Advance(61 * time.Second) // acme's answer expires: a new one, new records
	validateAll(nil)
	validateAll(nil)

	e.res.set("acme", authn.TenantRealm{TenantID: "t-acme", Slug: "acme", Status: "suspended"})
	validateAll(nil) // the answer is cached until it expires
	e.clock.Advance(61 * time.Second)
	validateAll(authn.ErrTenantNotActive)

	e.res.set("acme", authn.TenantRealm{TenantID: "t-acme", Slug: "acme", Status: "active"})
	e.v.Invalidate("acme")
	toks = append(toks, e.mint(t, "acme", map[string]any{"sub": "c", "exp": exp}))
	validateAll(nil)
	e.res.set("acme", authn.TenantRealm{TenantID: "t-acme", Slug: "acme", Status: "suspended"})
	e.v.Invalidate("acme")
	validateAll(authn.ErrTenantNotActive)
}

// TestInvalidateReachesConcurrentHits: while other goroutines keep hitting a cached token
// (each hit may record or reuse a tenant check), a suspension followed by InvalidateAll is seen
// by every validation that starts after InvalidateAll has returned.
func TestInvalidateReachesConcurrentHits(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.mint(t, "acme", nil)
	_, err := e.v.Validate(context.Background(), tok)
	require.NoError(t, err)

	var invalidated atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var late atomic.Int64 // validations that started after the invalidation and still passed
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				after := invalidated.Load()
				_, err := e.v.Validate(context.Background(), tok)
				if after && err == nil {
					late.Add(1)
				}
			}
		})
	}
	for range 50 { // let hits record and reuse checks around a few invalidations first
		e.v.InvalidateAll()
		_, err = e.v.Validate(context.Background(), tok)
		require.NoError(t, err)
	}
	e.res.set("acme", authn.TenantRealm{TenantID: "t-acme", Slug: "acme", Status: "suspended"})
	e.v.InvalidateAll()
	invalidated.Store(true)
	for range 100 {
		_, err = e.v.Validate(context.Background(), tok)
		require.ErrorIs(t, err, authn.ErrTenantNotActive, "got %v, want %v", err, authn.ErrTenantNotActive)
	}
	close(stop)
	wg.Wait()
	assert.Zero(t, late.Load(), "got %d validations passing after the invalidation, want 0", late.Load())
}

type failingResolver struct{}

func (failingResolver) ResolveRealm(context.Context, string) (authn.TenantRealm, error) {
	return authn.TenantRealm{}, errors.New("connection refused")
}

func TestResolverFailureIsUnavailable(t *testing.T) {
	idp := sharedIssuer()
	v, err := authn.New(authn.Config{
		TrustedIssuerBases: []string{idp.URL()}, AllowAnyAudience: true, HTTPClient: idp.Client(), Now: func() time.Time { return t0 },
	}, failingResolver{}, nil)
	require.NoError(t, err)
	tok, err := idp.Mint("acme", nil)
	require.NoError(t, err)
	_, err = v.Validate(context.Background(), tok)
	require.ErrorIs(t, err, authn.ErrUnavailable, "got %v, want %v", err, authn.ErrUnavailable)
	assert.False(t, authn.KindOf(err).Unauthenticated(), "a resolver outage must not look like a 401")
}

func TestTrustedBaseNormalised(t *testing.T) {
	idp := sharedIssuer()
	e := newEnv(t, func(c *authn.Config) {
		c.TrustedIssuerBases = []string{strings.ToUpper(idp.URL()[:4]) + idp.URL()[4:] + "//"}
	})
	_, err := e.v.Validate(context.Background(), e.mint(t, "acme", nil))
	require.NoError(t, err, "got %v, want success", err)
}
