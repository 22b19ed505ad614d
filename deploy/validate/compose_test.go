package validate

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/daemon"
)

func TestCompose(t *testing.T) {
	dir, err := filepath.Abs("../docker")
	require.NoError(t, err)
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "docker-compose.yml")}},
		Environment: types.Mapping{},
	})
	require.NoError(t, err, "compose-go loads the file (schema, interpolation, consistency)")

	names := make([]string, 0, len(p.Services))
	for n := range p.Services {
		names = append(names, n)
	}
	assert.ElementsMatch(t, []string{"postgres", "redis", "migrate", "admin", "pdp", "envoy", "app"}, names)

	// Every long-running service of ours and every dependency has a health check, and the
	// ones of our images run the binary's probe against its real /health address.
	for _, n := range []string{"postgres", "redis", "admin", "pdp"} {
		hc := p.Services[n].HealthCheck
		require.NotNil(t, hc, "%s has a health check", n)
		assert.NotEmpty(t, hc.Test, n)
	}
	assert.Equal(t, types.HealthCheckTest{"CMD", "/usr/local/bin/pdp", "probe", "http://127.0.0.1:8181/health"}, p.Services["pdp"].HealthCheck.Test)
	assert.Equal(t, types.HealthCheckTest{"CMD", "/usr/local/bin/admin", "probe", "http://127.0.0.1:8001/health"}, p.Services["admin"].HealthCheck.Test)

	ports := func(svc string) map[uint32]bool {
		out := map[uint32]bool{}
		for _, pc := range p.Services[svc].Ports {
			out[pc.Target] = true
		}
		return out
	}
	pdp := p.Services["pdp"]
	for _, key := range []string{"NEOAUTHZ_GRPC_ADDR", "NEOAUTHZ_HTTP_ADDR"} {
		require.Contains(t, pdp.Environment, key)
	}
	httpPort, err := strconv.Atoi(strings.TrimPrefix(*pdp.Environment["NEOAUTHZ_HTTP_ADDR"], ":"))
	require.NoError(t, err)
	assert.True(t, ports("pdp")[uint32(httpPort)], "the pdp's HTTP address is published")
	assert.True(t, ports("pdp")[10000], "Envoy's listener (envoy/envoy.yaml) is published on the shared namespace")
	assert.True(t, ports("admin")[8001])

	// The pdp has a memory limit (its soft limit derives from it) of at least four times its
	// cache budget, as in the Kubernetes manifests.
	assert.GreaterOrEqual(t, int64(pdp.MemLimit), int64(4*daemon.DefaultCacheMaxBytes), "the pdp's mem_limit")
	assert.NotContains(t, pdp.Environment, "NEOAUTHZ_CACHE_MAX_BYTES", "the budget is the default the limit is sized for")

	// Envoy and the upstream run in the pdp's network namespace, as in a pod.
	for _, n := range []string{"envoy", "app"} {
		assert.Equal(t, "service:pdp", p.Services[n].NetworkMode, n)
	}
	var envoyConf string
	for _, v := range p.Services["envoy"].Volumes {
		if v.Target == "/etc/envoy/envoy.yaml" {
			envoyConf = v.Source
		}
	}
	require.NotEmpty(t, envoyConf)
	_, err = os.Stat(envoyConf)
	assert.NoError(t, err, "the mounted Envoy configuration is the repository's")

	// Environment names are ones the binaries read.
	pdpKnown, adminKnown := pdpEnv(t), adminEnv(t)
	for name, known := range map[string]map[string]bool{"pdp": pdpKnown, "admin": adminKnown, "migrate": adminKnown} {
		for key := range p.Services[name].Environment {
			assert.True(t, known[key], "%s: environment variable %s is not read by the binary", name, key)
		}
	}
	checkArgs(t, "compose pdp", pdp.Command, pdpKnows)
	migrate := p.Services["migrate"]
	require.GreaterOrEqual(t, len(migrate.Command), 2)
	flags := adminCommandFlags(t, strings.Join(migrate.Command[:2], " "))
	checkArgs(t, "compose migrate", migrate.Command, func(n string) bool { return flags[n] })
	assert.Equal(t, "service_completed_successfully", p.Services["admin"].DependsOn["migrate"].Condition)
	assert.Equal(t, "service_completed_successfully", pdp.DependsOn["migrate"].Condition)
}
