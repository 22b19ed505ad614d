package daemon_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/daemon"
	"github.com/neofast/neoauthz/internal/pdptest"
	"github.com/neofast/neoauthz/internal/redistest"
	"github.com/neofast/neoauthz/internal/testenv"
)

// pdpProc is a whole pdp served on loopback listeners for one test.
type pdpProc struct {
	conn *grpc.ClientConn // gRPC client on its gRPC port
	base string           // its HTTP port's base URL
}

// startPDP serves a pdp on w's admin database, Redis and idp (audience "neoauthz"), with the
// route table routes and forward auth reading Traefik's headers; mod adjusts the configuration. It returns once gRPC health is SERVING
// and stops the pdp when the test ends.
func startPDP(t *testing.T, w *testenv.World, idp *authntest.Issuer, routes string, mod func(*daemon.Config)) *pdpProc {
	t.Helper()
	routesFile := filepath.Join(t.TempDir(), "routes.json")
	require.NoError(t, os.WriteFile(routesFile, []byte(routes), 0o600))
	cfg := daemon.DefaultConfig()
	cfg.AdminURL = w.AdminURL
	cfg.RedisURL = redistest.URL(t)
	cfg.TrustedIssuers = []string{idp.URL()}
	cfg.Audiences = []string{"neoauthz"}
	cfg.Server.RouteTablePath = routesFile
	cfg.Server.ForwardAuthHeaders = "traefik"
	if mod != nil {
		mod(&cfg)
	}
	p := pdptest.Start(t, cfg)
	return &pdpProc{conn: p.Conn, base: "http://" + p.HTTPAddr}
}

// newIssuer starts a Keycloak-shaped issuer with the given realms (RS256), closed when the test
// ends.
func newIssuer(t testing.TB, realms ...string) *authntest.Issuer {
	t.Helper()
	idp := authntest.NewIssuer()
	t.Cleanup(idp.Close)
	for _, realm := range realms {
		_, err := idp.AddRealm(realm, "RS256")
		require.NoError(t, err)
	}
	return idp
}
