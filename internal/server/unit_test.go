package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/pdp"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// TestReasonTable checks that every pdp reason has a row, that only granted allows, and that
// the neoauthz.v1 enum covers every reason.
func TestReasonTable(t *testing.T) {
	n := 0
	for r := pdp.Reason(0); r.String() != "unknown"; r++ {
		n++
		out := outcomeOf(r)
		assert.NotEqual(t, authzv1.Reason_REASON_UNSPECIFIED, out.proto, "reason %v has no proto reason", r)
		assert.Equal(t, strings.ToUpper("REASON_"+r.String()), out.proto.String(), "reason %v: got proto %v", r, out.proto)
		switch r {
		case pdp.ReasonGranted:
			assert.Equal(t, http.StatusOK, out.http)
			assert.Equal(t, codes.OK, out.grpc)
		case pdp.ReasonUnauthenticated:
			assert.Equal(t, http.StatusUnauthorized, out.http)
			assert.Equal(t, "unauthenticated", out.code)
			assert.Equal(t, codes.Unauthenticated, out.grpc)
		default:
			assert.Equal(t, http.StatusForbidden, out.http, "reason %v", r)
			assert.Equal(t, "forbidden", out.code, "reason %v", r)
			assert.Equal(t, codes.PermissionDenied, out.grpc, "reason %v", r)
		}
	}
	assert.Equal(t, len(reasonOutcomes), n, "got %d table rows, want one per pdp reason (%d)", len(reasonOutcomes), n)
	unknown := outcomeOf(pdp.Reason(200))
	assert.Equal(t, http.StatusForbidden, unknown.http, "an unknown reason must deny")
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		in         string
		wantTok    string
		wantBearer bool
	}{
		{"", "", false},
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER   abc  ", "abc", true},
		{"Bearer", "", true},
		{"Bearer ", "", true},
		{"Bearer a b", "", true},
		{"Bearer a,Bearer b", "", true},
		{"Basic dXNlcjpwdw==", "", false},
		{"Bearerabc", "", false},
		{"Token abc", "", false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.in), func(t *testing.T) {
			tok, b := bearerToken(tc.in)
			assert.Equal(t, tc.wantTok, tok)
			assert.Equal(t, tc.wantBearer, b)
		})
	}
}

func TestHostPattern(t *testing.T) {
	hp, err := parseHostPattern("{tenant}.App.example.com")
	require.NoError(t, err)
	tests := map[string]string{
		"acme.app.example.com":       "acme",
		"ACME.app.example.com":       "acme",
		"acme.app.example.com:8443":  "acme",
		"acme.app.example.com.":      "acme",
		"a.b.app.example.com":        "",
		".app.example.com":           "",
		"app.example.com":            "",
		"acme.app.example.com.evil":  "",
		"acme.app.example.org":       "",
		"ac me.app.example.com":      "",
		"[::1]:443":                  "",
		"":                           "",
		"evil.com, acme.app.example": "",
	}
	for host, want := range tests {
		assert.Equal(t, want, hp.tenant(host), "host %q", host)
	}
	prefixed, err := parseHostPattern("tenant-{tenant}.example.com")
	require.NoError(t, err)
	assert.Equal(t, "acme", prefixed.tenant("tenant-acme.example.com"))
	assert.Empty(t, prefixed.tenant("acme.example.com"))
	assert.Empty(t, hostPattern{}.tenant("acme.app.example.com"), "no pattern binds nothing")
}

func TestBindTenant(t *testing.T) {
	got, conflict := bindTenant("", "acme", "")
	assert.Equal(t, "acme", got)
	assert.False(t, conflict)
	got, conflict = bindTenant("acme", "ACME", "acme")
	assert.Equal(t, "acme", got)
	assert.False(t, conflict)
	_, conflict = bindTenant("acme", "", "globex")
	assert.True(t, conflict)
}

func TestAuthnFailure(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantLabel string
		wantOK    bool
	}{
		{"expired", fmt.Errorf("%w: %w", pdp.ErrUnauthenticated, authn.ErrExpired), "expired", true},
		{"bad signature", fmt.Errorf("%w: %w", pdp.ErrUnauthenticated, authn.ErrBadSignature), "bad_signature", true},
		{"pdp only", pdp.ErrUnauthenticated, "unauthenticated", true},
		{"idp unavailable is not a 401", fmt.Errorf("%w: %w", pdp.ErrUnauthenticated, authn.ErrUnavailable), "", false},
		{"authn error without pdp wrap", authn.ErrExpired, "", false},
		{"other", pdp.ErrUnavailable, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			label, ok := authnFailure(tc.err)
			assert.Equal(t, tc.wantOK, ok)
			assert.Equal(t, tc.wantLabel, label)
		})
	}
}

func TestWWWAuthenticate(t *testing.T) {
	assert.Equal(t, `Bearer realm="neoauthz"`, wwwAuthenticate(reasonMissingToken))
	assert.Equal(t, `Bearer realm="neoauthz", error="invalid_token", error_description="expired"`, wwwAuthenticate("expired"))
	assert.Equal(t, `Bearer realm="neoauthz", error="invalid_token", error_description="ab"`, wwwAuthenticate(`a"b`))
}

func TestPathOnly(t *testing.T) {
	assert.Equal(t, "/a/b", pathOnly("/a/b?token=secret"))
	assert.Equal(t, "/a", pathOnly("/a#x"))
	assert.Equal(t, "/a", pathOnly("/a"))
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  x", "Basic y", "Bearer a,b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, bearer := bearerToken(h)
		if tok != "" {
			if !bearer {
				t.Fatalf("token %q without bearer scheme from %q", tok, h)
			}
			if strings.ContainsAny(tok, " \t,") || !strings.Contains(h, tok) {
				t.Fatalf("bad token %q from %q", tok, h)
			}
		}
	})
}

func FuzzHostPatternTenant(f *testing.F) {
	hp, err := parseHostPattern("{tenant}.app.example.com")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"acme.app.example.com", "a.b.app.example.com:1", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		got := hp.tenant(host)
		if got == "" {
			return
		}
		if strings.ContainsAny(got, ".:/ ") || got != strings.ToLower(got) {
			t.Fatalf("host %q bound tenant %q", host, got)
		}
	})
}

// The decision service satisfies the interface the transports declare.
var _ Decider = (*pdp.Service)(nil)

func TestLoggedPathIsBounded(t *testing.T) {
	assert.Equal(t, "/api/reports", loggedPath("/api/reports?token=secret#x"))
	long := "/" + strings.Repeat("é", 400) // two bytes each: a cut can fall inside one
	got := loggedPath(long + "?q=1")
	assert.LessOrEqual(t, len(got), maxLoggedPath+len("..."), "got %d bytes", len(got))
	assert.True(t, utf8.ValidString(got), "got invalid UTF-8 %q", got)
	assert.True(t, strings.HasSuffix(got, "..."))
}
