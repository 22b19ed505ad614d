package cache

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/redistest"
)

func parse(t *testing.T, raw string) redis.UniversalClient {
	t.Helper()
	c, err := ParseRedisURL(raw)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestParseRedisURLStandalone(t *testing.T) {
	c, ok := parse(t, "redis://:s3cret@127.0.0.1:6380/2?dial_timeout=2s").(*redis.Client)
	require.True(t, ok, "a *redis.Client")
	o := c.Options()
	assert.Equal(t, "127.0.0.1:6380", o.Addr)
	assert.Equal(t, "s3cret", o.Password)
	assert.Equal(t, 2, o.DB)
	assert.Equal(t, 2*time.Second, o.DialTimeout)
	assert.True(t, o.ContextTimeoutEnabled)
	assert.Nil(t, o.TLSConfig)
	assertSmallBuffers(t, o.ReadBufferSize, o.WriteBufferSize, o.PipelineReadBufferSize, o.PipelineWriteBufferSize)

	c, ok = parse(t, "rediss://cache.example:6390").(*redis.Client)
	require.True(t, ok)
	require.NotNil(t, c.Options().TLSConfig)
	assert.Equal(t, "cache.example", c.Options().TLSConfig.ServerName)
}

func TestParseRedisURLCluster(t *testing.T) {
	c, ok := parse(t, "rediss-cluster://app:p%40ss@n1:7000,n2,[::1]:7002?dial_timeout=3s&skip_verify=true").(*redis.ClusterClient)
	require.True(t, ok, "a *redis.ClusterClient")
	o := c.Options()
	assert.Equal(t, []string{"n1:7000", "n2:6379", "[::1]:7002"}, o.Addrs)
	assert.Equal(t, "app", o.Username)
	assert.Equal(t, "p@ss", o.Password)
	assert.Equal(t, 3*time.Second, o.DialTimeout)
	assert.True(t, o.ContextTimeoutEnabled)
	require.NotNil(t, o.TLSConfig)
	assert.Empty(t, o.TLSConfig.ServerName, "each node checked against its own name")
	assert.True(t, o.TLSConfig.InsecureSkipVerify)
	assertSmallBuffers(t, o.ReadBufferSize, o.WriteBufferSize, o.PipelineReadBufferSize, o.PipelineWriteBufferSize)
}

// assertSmallBuffers checks a client's connection buffers are the cache's, not go-redis' larger
// defaults (see connBufferSize).
func assertSmallBuffers(t *testing.T, read, write, pipelineRead, pipelineWrite int) {
	t.Helper()
	assert.Equal(t, []int{connBufferSize, connBufferSize, pipelineBufferSize, pipelineBufferSize},
		[]int{read, write, pipelineRead, pipelineWrite})
}

func TestParseRedisURLSentinel(t *testing.T) {
	c, ok := parse(t, "redis-sentinel://:s3cret@s1,s2:26380/mymaster/3?sentinel_password=sp&pool_size=7").(*redis.Client)
	require.True(t, ok, "a failover *redis.Client")
	o := c.Options()
	assert.Equal(t, "s3cret", o.Password, "the servers' password")
	assert.Equal(t, 3, o.DB)
	assert.Equal(t, 7, o.PoolSize)
	assert.True(t, o.ContextTimeoutEnabled)
	assertSmallBuffers(t, o.ReadBufferSize, o.WriteBufferSize, o.PipelineReadBufferSize, o.PipelineWriteBufferSize)

	c, ok = parse(t, "redis-sentinel://s1/mymaster?db=4").(*redis.Client)
	require.True(t, ok)
	assert.Equal(t, 4, c.Options().DB)
}

func TestParseRedisURLErrors(t *testing.T) {
	for _, raw := range []string{
		"",
		"127.0.0.1:6379",
		"ftp://u:s3cret@h",
		"redis://u:s3cret@h:notaport",
		"redis://u:s3cret@h/0?bogus=1",
		"redis-sentinel://u:s3cret@s1,s2",               // no master name
		"redis-sentinel://u:s3cret@s1/m/1/2",            // too many segments
		"redis-sentinel://u:s3cret@s1/m/1?db=2",         // db twice
		"redis-sentinel://u:s3cret@s1/m?master_name=x",  // master twice
		"redis-cluster://u:s3cret@n1,n2/0",              // no databases in Cluster
		"redis-cluster://u:s3cret@n1,,n2",               // empty host
		"redis-cluster://u:s3cret@n1?addr=n2:6379",      // hosts belong in the authority
		"redis-cluster://u:s3cret@n1?skip_verify=maybe", // not a boolean
		"redis-cluster://u:s3cret@n1?read_timeout=xyz",  // bad duration
		"redis-cluster://u:s3cret@n1:xyz",               // bad port
		"re dis://u:s3cret@h",                           // unprintable scheme
	} {
		c, err := ParseRedisURL(raw)
		if !assert.Error(t, err, "%q", raw) {
			_ = c.Close()
			continue
		}
		assert.NotContains(t, err.Error(), "s3cret", "error for %q leaks the password", raw)
	}
}

func TestParseRedisURLConnects(t *testing.T) {
	c := parse(t, redistest.URL(t))
	require.NoError(t, c.Ping(context.Background()).Err())
}
