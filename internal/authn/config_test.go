package authn_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn"
)

func TestConfigValidate(t *testing.T) {
	ok := func() authn.Config {
		return authn.Config{TrustedIssuerBases: []string{"https://sso.example.com"}, Audiences: []string{"neoauthz"}}
	}
	tests := []struct {
		name    string
		mutate  func(*authn.Config)
		wantErr string
	}{
		{"minimal", func(*authn.Config) {}, ""},
		{"full", func(c *authn.Config) {
			c.TrustedIssuerBases = []string{"https://sso.example.com/", "http://keycloak:8080/auth"}
			c.PlatformRealm = "platform"
			c.Audiences = []string{"neoauthz"}
			c.Clients = []string{"web", "mobile"}
			c.AllowedAlgorithms = []string{"RS256", "ES256", "EdDSA"}
			c.ClockSkew = time.Minute
		}, ""},
		{"no bases", func(c *authn.Config) { c.TrustedIssuerBases = nil }, "at least one"},
		{"base without scheme", func(c *authn.Config) { c.TrustedIssuerBases = []string{"sso.example.com"} }, "scheme"},
		{"base with ftp scheme", func(c *authn.Config) { c.TrustedIssuerBases = []string{"ftp://sso.example.com"} }, "scheme"},
		{"base with query", func(c *authn.Config) { c.TrustedIssuerBases = []string{"https://sso.example.com/?x=1"} }, "query"},
		{"base with user info", func(c *authn.Config) { c.TrustedIssuerBases = []string{"https://u:p@sso.example.com"} }, "user info"},
		{"HS256 allowed", func(c *authn.Config) { c.AllowedAlgorithms = []string{"RS256", "HS256"} }, `"HS256"`},
		{"none allowed", func(c *authn.Config) { c.AllowedAlgorithms = []string{"none"} }, `"none"`},
		{"unknown algorithm", func(c *authn.Config) { c.AllowedAlgorithms = []string{"RS1"} }, `"RS1"`},
		{"negative skew", func(c *authn.Config) { c.ClockSkew = -time.Second }, "ClockSkew"},
		{"huge skew", func(c *authn.Config) { c.ClockSkew = time.Hour }, "ClockSkew"},
		{"negative max age", func(c *authn.Config) { c.MaxKeyAge = -1 }, "MaxKeyAge"},
		{"huge token limit", func(c *authn.Config) { c.MaxTokenBytes = 1 << 30 }, "MaxTokenBytes"},
		{"negative cache size", func(c *authn.Config) { c.CacheSize = -1 }, "CacheSize"},
		{"platform realm with slash", func(c *authn.Config) { c.PlatformRealm = "a/b" }, "PlatformRealm"},
		{"empty audience", func(c *authn.Config) { c.Audiences = []string{""} }, "(Audiences)"},
		{"empty client", func(c *authn.Config) { c.Clients = []string{"web", ""} }, "(Clients)"},
		{"no audiences", func(c *authn.Config) { c.Audiences = nil }, "Audiences: at least one accepted audience is required"},
		{"any audience, explicitly", func(c *authn.Config) { c.Audiences, c.AllowAnyAudience = nil, true }, ""},
		{"any audience and audiences", func(c *authn.Config) { c.AllowAnyAudience = true }, "AllowAnyAudience"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err, "got %v, want no error", err)
				return
			}
			require.Error(t, err, "got no error, want one mentioning %q", tc.wantErr)
			assert.Contains(t, err.Error(), tc.wantErr, "got %q, want it to mention %q", err, tc.wantErr)
			_, err = authn.New(c, nil, nil)
			require.Error(t, err, "New must refuse what Validate refuses")
		})
	}
}

func TestDefaultAllowedAlgorithmsAreAsymmetric(t *testing.T) {
	c := authn.Config{TrustedIssuerBases: []string{"https://sso.example.com"}, AllowAnyAudience: true, AllowedAlgorithms: authn.DefaultAllowedAlgorithms()}
	require.NoError(t, c.Validate())
	for _, a := range authn.DefaultAllowedAlgorithms() {
		assert.NotEqual(t, "none", a)
		assert.NotEqual(t, "HS", a[:2], "got %s in the defaults, want no HMAC", a)
	}
}
