// Package redistest gives each test a Redis client and a key prefix of its own.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/neofast/neoauthz/internal/pgtest"
)

// URL returns REDIS_URL (or the local default); when nothing answers the test fails (see
// pgtest.Unavailable).
func URL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatalf("REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		pgtest.Unavailable(tb, "Redis", err)
	}
	return url
}

// Client returns a client on REDIS_URL and a fresh key prefix ("test:<pkg>:<random>:"); keys
// under the prefix are deleted when the test ends.
func Client(tb testing.TB, pkg string) (redis.UniversalClient, string) {
	tb.Helper()
	opts, err := redis.ParseURL(URL(tb))
	if err != nil {
		tb.Fatalf("REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "test:" + pkg + ":" + hex.EncodeToString(b) + ":"
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		_ = c.Close()
	})
	return c, prefix
}
