package server

import (
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaultConfigValid(t *testing.T) {
	cfg := DefaultConfig()
	require.NoError(t, cfg.Validate())
	assert.Equal(t, ":9191", cfg.GRPCAddr)
	assert.Equal(t, ":8181", cfg.HTTPAddr)
	assert.Equal(t, "x-neoauthz-tenant", cfg.TenantHeader)
	assert.Equal(t, "x-neoauthz-user", cfg.UserHeader)
	assert.Equal(t, "x-neoauthz-decision-id", cfg.DecisionIDHeader)
	assert.Equal(t, 10*time.Second, cfg.ShutdownTimeout)
	assert.False(t, cfg.TrustForwardedPermission)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"bad grpc addr", func(c *Config) { c.GRPCAddr = "9191" }, "grpc address"},
		{"empty http addr", func(c *Config) { c.HTTPAddr = "" }, "http address is empty"},
		{"cert without key", func(c *Config) { c.TLSCertFile = "c.pem" }, "set together"},
		{"client CA without cert", func(c *Config) { c.TLSClientCAFile = "ca.pem" }, "needs a server certificate"},
		{"trusted clients without mTLS", func(c *Config) { c.TrustedClientIdentities = []string{"svc"} }, "need a tls client CA"},
		{"host pattern without placeholder", func(c *Config) { c.TenantHostPattern = "app.example.com" }, "tenant host pattern"},
		{"host pattern bare placeholder", func(c *Config) { c.TenantHostPattern = "{tenant}" }, "fixed part"},
		{"host pattern with port", func(c *Config) { c.TenantHostPattern = "{tenant}.example.com:443" }, "without port"},
		{"uppercase header", func(c *Config) { c.UserHeader = "X-User" }, "not a valid header name"},
		{"duplicate headers", func(c *Config) { c.UserHeader = c.TenantHeader }, "must differ"},
		{"zero shutdown timeout", func(c *Config) { c.ShutdownTimeout = 0 }, "shutdown timeout"},
		{"unknown convention", func(c *Config) { c.ForwardAuthHeaders = "haproxy" }, "unknown convention"},
		{"host header without nginx", func(c *Config) { c.ForwardAuthHeaders, c.ForwardAuthHostHeader = ConventionTraefik, "X-Real-Host" }, "only read under the nginx"},
		{"host header names the uri", func(c *Config) { c.ForwardAuthHeaders, c.ForwardAuthHostHeader = ConventionNginx, "x-original-uri" }, "another part"},
		{"host header names a method", func(c *Config) { c.ForwardAuthHeaders, c.ForwardAuthHostHeader = ConventionNginx, "X-Forwarded-Method" }, "another part"},
		{"host header is Host", func(c *Config) { c.ForwardAuthHeaders, c.ForwardAuthHostHeader = ConventionNginx, "Host" }, "another part"},
		{"bad host header", func(c *Config) { c.ForwardAuthHeaders, c.ForwardAuthHostHeader = ConventionNginx, "X Host" }, "not a valid header name"},
		{"bad metrics addr", func(c *Config) { c.MetricsAddr = "9090" }, "metrics address"},
		{"metrics addr is the http addr", func(c *Config) { c.MetricsAddr = c.HTTPAddr }, "must differ"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func TestRegisterFlags(t *testing.T) {
	t.Setenv(EnvGRPCAddr, "127.0.0.1:7000")
	t.Setenv(EnvHTTPAddr, "127.0.0.1:7001")
	t.Setenv(EnvTrustedClients, "billing, spiffe://x/y ,")
	t.Setenv(EnvTenantHostPattern, "{tenant}.example.com")
	t.Setenv(EnvShutdownTimeout, "3s")
	t.Setenv(EnvTrustForwardedPermission, "true")
	t.Setenv(EnvForwardAuthHeaders, "nginx")
	t.Setenv(EnvForwardAuthHostHeader, "X-Real-Host")
	t.Setenv(EnvMetricsAddr, "127.0.0.1:9090")

	cfg := DefaultConfig()
	fs := flag.NewFlagSet("pdp", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-http-addr", ":9000", "-tls-cert", "c.pem", "-tls-key", "k.pem", "-tls-client-ca", "ca.pem"}))

	assert.Equal(t, "127.0.0.1:7000", cfg.GRPCAddr, "env over default")
	assert.Equal(t, ":9000", cfg.HTTPAddr, "flag over env")
	assert.Equal(t, []string{"billing", "spiffe://x/y"}, cfg.TrustedClientIdentities)
	assert.Equal(t, "{tenant}.example.com", cfg.TenantHostPattern)
	assert.Equal(t, 3*time.Second, cfg.ShutdownTimeout)
	assert.True(t, cfg.TrustForwardedPermission)
	assert.Equal(t, "nginx", cfg.ForwardAuthHeaders)
	assert.Equal(t, "X-Real-Host", cfg.ForwardAuthHostHeader)
	assert.Equal(t, "127.0.0.1:9090", cfg.MetricsAddr)
	require.NoError(t, cfg.Validate())

	cfg = DefaultConfig()
	fs = flag.NewFlagSet("pdp", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-trusted-clients", "other", "-trust-forwarded-permission=false"}))
	assert.Equal(t, []string{"other"}, cfg.TrustedClientIdentities, "the flag replaces the env list")
	assert.False(t, cfg.TrustForwardedPermission)
}

func TestRegisterFlagsBadEnv(t *testing.T) {
	t.Setenv(EnvShutdownTimeout, "ten seconds")
	t.Setenv(EnvTrustForwardedPermission, "maybe")
	cfg := DefaultConfig()
	cfg.RegisterFlags(flag.NewFlagSet("pdp", flag.ContinueOnError))
	err := cfg.Validate()
	require.Error(t, err, "bad environment values are reported, not ignored")
	assert.Contains(t, err.Error(), EnvShutdownTimeout)
	assert.Contains(t, err.Error(), EnvTrustForwardedPermission)
}
