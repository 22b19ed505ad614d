package authn_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/neofast/neoauthz/internal/authn"
)

func BenchmarkValidateCacheHit(b *testing.B) {
	e := newEnv(b, nil)
	tok := e.mint(b, "acme", nil)
	ctx := context.Background()
	if _, err := e.v.Validate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.v.Validate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateCacheMiss measures a full validation (parse, realm
// lookup from cache, signature verification, claims). A one-entry cache
// and two alternating tokens make every call a miss.
func BenchmarkValidateCacheMiss(b *testing.B) {
	for _, tc := range []struct{ alg, realm string }{{"RS256", "acme"}, {"ES256", "globex"}, {"PS256", "psco"}, {"EdDSA", "edco"}} {
		b.Run(tc.alg, func(b *testing.B) {
			e := newEnv(b, func(c *authn.Config) { c.CacheSize = 1 })
			var toks [2]string
			for i := range toks {
				toks[i] = e.mint(b, tc.realm, map[string]any{"sub": "user-" + strconv.Itoa(i)})
			}
			ctx := context.Background()
			for _, tok := range toks {
				if _, err := e.v.Validate(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := e.v.Validate(ctx, toks[i&1]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkValidateParallelCacheHit(b *testing.B) {
	e := newEnv(b, nil)
	tok := e.mint(b, "acme", nil)
	ctx := context.Background()
	if _, err := e.v.Validate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.v.Validate(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
