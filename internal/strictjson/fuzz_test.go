package strictjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/neofast/neoauthz/internal/strictjson"
)

// FuzzCheckMembers compares CheckMembers with a reference built on encoding/json's tokenizer
// on every valid JSON text: the two must agree on whether some object has a duplicate member.
func FuzzCheckMembers(f *testing.F) {
	for _, s := range []string{
		`{"alg":"RS256","kid":"k"}`, `{"a":1,"a":2}`, `{"a":{"b":[{"c":1,"c":2}]}}`, `{"\u0061":1,"a":2}`,
		`{"a":"\"a\"","b":{"a":1}}`, "{\"\xff\":1,\"\xfe\":2}", `[1,"a",{"x":null}]`, `"s"`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := strictjson.CheckMembers(data)
		if !json.Valid(data) {
			return
		}
		want, deep := referenceDuplicate(data)
		if deep {
			if !errors.Is(got, strictjson.ErrTooDeep) {
				t.Fatalf("CheckMembers(%q) = %v, want ErrTooDeep", data, got)
			}
			return
		}
		if errors.Is(got, strictjson.ErrDuplicateMember) != want || (got != nil && !errors.Is(got, strictjson.ErrDuplicateMember)) {
			t.Fatalf("CheckMembers(%q) = %v, want duplicate = %v", data, got, want)
		}
	})
}

// referenceDuplicate walks valid JSON with json.Decoder tokens.
func referenceDuplicate(data []byte) (dup, deep bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	type level struct {
		object    bool
		expectKey bool
		seen      map[string]bool
	}
	var stack []*level
	for {
		tok, err := dec.Token()
		if err != nil {
			return false, false
		}
		top := func() *level {
			if len(stack) == 0 {
				return nil
			}
			return stack[len(stack)-1]
		}
		if l := top(); l != nil && l.object && l.expectKey {
			if k, ok := tok.(string); ok {
				if l.seen[k] {
					return true, false
				}
				l.seen[k] = true
				l.expectKey = false
				continue
			}
		}
		if l := top(); l != nil && l.object {
			l.expectKey = true // the value is read; the next string token is a name
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) == strictjson.MaxDepth {
				return false, true
			}
			stack = append(stack, &level{object: tok == json.Delim('{'), expectKey: tok == json.Delim('{'), seen: map[string]bool{}})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if l := top(); l != nil && l.object {
				l.expectKey = true
			}
		}
	}
}

func BenchmarkCheckMembers(b *testing.B) {
	claims := []byte(`{"exp":1767225600,"iat":1767222000,"jti":"0f3c2b1e-8d7a-4c5b-9e6f-1a2b3c4d5e6f",
		"iss":"https://sso.example.com/realms/acme","aud":["neoauthz","account"],"sub":"5b1f0c2e-1111-4b7a-9c3d-2e4f5a6b7c8d",
		"typ":"Bearer","azp":"web","sid":"9a8b7c6d","acr":"1","allowed-origins":["https://app.example.com"],
		"realm_access":{"roles":["offline_access","uma_authorization","default-roles-acme"]},
		"resource_access":{"account":{"roles":["manage-account","view-profile"]}},"scope":"openid email profile",
		"email_verified":true,"name":"Alice Example","preferred_username":"alice","given_name":"Alice",
		"family_name":"Example","email":"alice@example.com"}`)
	b.ReportAllocs()
	for range b.N {
		if err := strictjson.CheckMembers(claims); err != nil {
			b.Fatal(err)
		}
	}
}
