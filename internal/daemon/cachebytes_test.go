package daemon

import (
	"flag"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1048576": 1 << 20, "64MiB": 64 << 20, "64M": 64 << 20,
		"512 KiB": 512 << 10, "2GiB": 2 << 30, "1gb": 1 << 30, "100B": 100} {
		got, err := ParseBytes(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, "%q: got %d, want %d", in, got, want)
	}
	for _, in := range []string{"", "MiB", "1.5GiB", "-1", "64TiB", "ten", "9999999999999GiB"} {
		_, err := ParseBytes(in)
		assert.Error(t, err, "%q: got no error", in)
	}
}

// parseFlags returns the default configuration with args (and the environment) applied.
func parseFlags(args ...string) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("pdp", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	return c, fs.Parse(args)
}

func TestCacheMaxBytesFlag(t *testing.T) {
	c, err := parseFlags()
	require.NoError(t, err)
	assert.Equal(t, int64(DefaultCacheMaxBytes), c.CacheMaxBytes)

	c, err = parseFlags("-cache-max-bytes", "256MiB")
	require.NoError(t, err)
	assert.Equal(t, int64(256<<20), c.CacheMaxBytes)

	_, err = parseFlags("-cache-max-entries", "1000000")
	require.ErrorContains(t, err, errRemovedEntries.Error(), "got %v for the removed flag, want the explanation", err)

	t.Setenv("NEOAUTHZ_CACHE_MAX_ENTRIES", "1000000")
	c, err = parseFlags()
	require.NoError(t, err)
	assert.ErrorIs(t, c.Validate(), errRemovedEntries, "got no error for the removed variable")

	t.Setenv("NEOAUTHZ_CACHE_MAX_ENTRIES", "")
	c, err = parseFlags("-cache-max-bytes", "1KiB")
	require.NoError(t, err)
	assert.ErrorContains(t, c.Validate(), "cache-max-bytes must be at least")
}
