package authn_test

import (
	"context"
	"strings"
	"testing"

	"github.com/neofast/neoauthz/internal/authn"
)

// FuzzValidate checks that Validate never panics, classifies every error,
// never echoes the token in an error, and accepts nothing but tokens the
// issuer actually minted.
func FuzzValidate(f *testing.F) {
	e := newEnv(f, nil)
	minted := map[string]bool{}
	for _, realm := range []string{"acme", "globex", "psco", "edco", "platform", "initech"} {
		tok := e.mint(f, realm, map[string]any{"realm_access": map[string]any{"roles": []string{"r"}}, "groups": []string{"/g"}})
		minted[tok] = true
		f.Add(tok)
	}
	f.Add(e.mintHeader(f, "acme", nil, map[string]any{"kid": "unknown"}))
	f.Add(e.mintHeader(f, "acme", nil, map[string]any{"jku": "http://127.0.0.1:1/"}))
	f.Add(e.mint(f, "acme", map[string]any{"typ": "Refresh"}))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c.d.e")
	f.Add("")

	ctx := context.Background()
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := e.v.Validate(ctx, tok)
		if err == nil {
			if !minted[tok] {
				t.Fatalf("accepted a token the issuer did not mint: got identity %+v, want an error", id)
			}
			return
		}
		if id != (authn.Identity{}) {
			t.Fatalf("got identity %+v with error %v, want none", id, err)
		}
		if authn.KindOf(err) == authn.KindInternal {
			t.Fatalf("got unclassified error %v, want an *authn.Error", err)
		}
		if len(tok) >= 16 && strings.Contains(err.Error(), tok) {
			t.Fatalf("error %q contains the token", err)
		}
	})
}
