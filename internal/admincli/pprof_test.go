package admincli

import (
	"context"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/testenv"
)

// serveAddr runs `admin serve` with the given environment until the test ends and returns its
// address.
func serveAddr(t *testing.T, w *testenv.World, vars map[string]string) string {
	t.Helper()
	vars["NEOAUTHZ_TRUSTED_ISSUERS"], vars["NEOAUTHZ_PLATFORM_REALM"], vars["NEOAUTHZ_AUDIENCES"] = "http://127.0.0.1:1", "platform", "neoauthz"
	vars["NEOAUTHZ_ADMIN_ADDR"] = "127.0.0.1:0"
	env, out := cliEnv(w, vars)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"serve", "--decision-prune-interval", "-1s"}, env) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	})
	addrRe := regexp.MustCompile(`listening on (\S+)`)
	var addr string
	require.Eventually(t, func() bool {
		if m := addrRe.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	}, 10*time.Second, 20*time.Millisecond)
	return addr
}

func TestServePprofIsOptIn(t *testing.T) {
	w := testenv.New(t, "admincli")
	get := func(addr, path string) int {
		res, err := http.Get("http://" + addr + path)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	off := serveAddr(t, w, map[string]string{})
	assert.Equal(t, http.StatusNotFound, get(off, "/debug/pprof/"), "off by default")
	on := serveAddr(t, w, map[string]string{"NEOAUTHZ_PPROF": "true"})
	assert.Equal(t, http.StatusOK, get(on, "/debug/pprof/"))
	assert.Equal(t, http.StatusOK, get(on, "/debug/pprof/heap?debug=1"))
	assert.Equal(t, http.StatusOK, get(on, "/health"), "the API is still served beside the profiles")
}
