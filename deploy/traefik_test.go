package deploy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/blockyaml"
	"github.com/neofast/neoauthz/internal/server"
)

// Traefik is not a Debian package, so no real Traefik runs in the tests: TestTraefikConfig
// reads traefik.yml into the part of Traefik's dynamic configuration it uses, refusing any
// key it does not know (a misspelt key is silently ignored by Traefik, e.g. a
// trustForwardedHeader that leaves the default), and checks the settings that protect the
// decision.

type traefikDynamic struct {
	HTTP struct {
		Middlewares map[string]struct {
			Headers *struct {
				CustomRequestHeaders map[string]string `json:"customRequestHeaders"`
			} `json:"headers"`
			ForwardAuth *struct {
				Address             string   `json:"address"`
				TrustForwardHeader  *bool    `json:"trustForwardHeader"`
				AuthRequestHeaders  []string `json:"authRequestHeaders"`
				AuthResponseHeaders []string `json:"authResponseHeaders"`
			} `json:"forwardAuth"`
		} `json:"middlewares"`
		Routers map[string]struct {
			EntryPoints []string `json:"entryPoints"`
			Rule        string   `json:"rule"`
			Middlewares []string `json:"middlewares"`
			Service     string   `json:"service"`
		} `json:"routers"`
		Services map[string]struct {
			LoadBalancer struct {
				Servers []struct {
					URL string `json:"url"`
				} `json:"servers"`
			} `json:"loadBalancer"`
		} `json:"services"`
	} `json:"http"`
}

func loadTraefik(t *testing.T, src []byte) (traefikDynamic, error) {
	t.Helper()
	js, err := blockyaml.ToJSON(src)
	if err != nil {
		return traefikDynamic{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var d traefikDynamic
	return d, dec.Decode(&d)
}

func identityHeaders() []string {
	c := server.DefaultConfig()
	return []string{c.TenantHeader, c.UserHeader, c.DecisionIDHeader}
}

func TestTraefikConfig(t *testing.T) {
	src, err := os.ReadFile("traefik.yml")
	require.NoError(t, err)
	d, err := loadTraefik(t, src)
	require.NoError(t, err)

	fa := d.HTTP.Middlewares["neoauthz"].ForwardAuth
	require.NotNil(t, fa, "the neoauthz middleware is a forwardAuth")
	assert.Equal(t, "http://127.0.0.1:8181/auth", fa.Address, "the pdp's default HTTP address and /auth")
	require.NotNil(t, fa.TrustForwardHeader, "trustForwardHeader is stated")
	assert.False(t, *fa.TrustForwardHeader, "a client's X-Forwarded-* must not reach the pdp")
	assert.Contains(t, fa.AuthRequestHeaders, "Authorization")
	assert.Contains(t, fa.AuthRequestHeaders, "X-Neoauthz-Consistency", "read-your-writes tokens reach the pdp")
	for _, h := range fa.AuthRequestHeaders {
		assert.False(t, strings.HasPrefix(strings.ToLower(h), "x-original-") || strings.HasPrefix(strings.ToLower(h), "x-forwarded-"),
			"authRequestHeaders passes the client's %s to the pdp", h)
	}
	assert.ElementsMatch(t, identityHeaders(), lower(fa.AuthResponseHeaders), "the identity headers the pdp sets")

	strip := d.HTTP.Middlewares["neoauthz-strip"].Headers
	require.NotNil(t, strip, "the neoauthz-strip middleware removes headers")
	for _, h := range identityHeaders() {
		found := false
		for k, v := range strip.CustomRequestHeaders {
			if strings.EqualFold(k, h) {
				found = true
				assert.Empty(t, v, "%s: an empty value removes the header", k)
			}
		}
		assert.True(t, found, "neoauthz-strip does not remove %s", h)
	}

	require.Len(t, d.HTTP.Routers, 1)
	for name, r := range d.HTTP.Routers {
		assert.Equal(t, []string{"neoauthz-strip", "neoauthz"}, r.Middlewares, "router %s: strip, then ask the pdp", name)
		svc, ok := d.HTTP.Services[r.Service]
		require.True(t, ok, "router %s: service %q is not defined", name, r.Service)
		require.Len(t, svc.LoadBalancer.Servers, 1)
		assert.Equal(t, "http://127.0.0.1:8080", svc.LoadBalancer.Servers[0].URL, "the make run demo application")
	}
}

// TestTraefikConfigRefusesMistakes makes sure the reader is strict enough for the test above
// to mean something.
func TestTraefikConfigRefusesMistakes(t *testing.T) {
	src, err := os.ReadFile("traefik.yml")
	require.NoError(t, err)
	for _, tc := range []struct{ old, new string }{
		{"trustForwardHeader: false", "trustForwardedHeader: false"},
		{"authResponseHeaders:", "authResponseHeader:"},
		{"customRequestHeaders:", "customRequestHeader:"},
	} {
		require.Equal(t, 1, strings.Count(string(src), tc.old), "%q must occur once", tc.old)
		_, err := loadTraefik(t, []byte(strings.Replace(string(src), tc.old, tc.new, 1)))
		assert.Error(t, err, "%s: got no error", tc.new)
	}
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}
