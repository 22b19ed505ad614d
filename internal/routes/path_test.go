package routes

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want string // "" means ErrBadPath
	}{
		{"root", "/", "/"},
		{"plain", "/api/reports", "/api/reports"},
		{"double slash", "//api//reports", "/api/reports"},
		{"many slashes", "///api///reports///", "/api/reports"},
		{"trailing slash", "/api/reports/", "/api/reports"},
		{"root with slashes", "///", "/"},
		{"query", "/api/reports?x=1", "/api/reports"},
		{"query with slash and dots", "/api/reports?next=/../admin", "/api/reports"},
		{"fragment", "/api/reports#frag", "/api/reports"},
		{"fragment before query", "/api/reports#a?b", "/api/reports"},
		{"empty query", "/api/reports?", "/api/reports"},
		{"dot segment", "/api/./reports", "/api/reports"},
		{"trailing dot", "/api/reports/.", "/api/reports"},
		{"dot dot", "/api/x/../reports", "/api/reports"},
		{"trailing dot dot", "/api/reports/x/..", "/api/reports"},
		{"encoded dot dot", "/api/%2e%2e/api/reports", "/api/reports"},
		{"encoded dot dot upper", "/api/x/%2E%2E/reports", "/api/reports"},
		{"mixed encoded dot dot", "/api/x/.%2e/reports", "/api/reports"},
		{"encoded single dot", "/api/%2e/reports", "/api/reports"},
		{"public escape", "/api/public/%2e%2e/admin/x", "/api/admin/x"},
		{"dot dot to root", "/api/..", "/"},
		{"three dots is a name", "/api/.../x", "/api/.../x"},
		{"dot prefix is a name", "/api/..x/.y", "/api/..x/.y"},
		{"unreserved decoded", "/api/users/%41", "/api/users/A"},
		{"tilde decoded", "/api/%7euser", "/api/~user"},
		{"sub-delim decoded", "/api/a%21b%3Bc%3d", "/api/a!b;c="},
		{"colon and at decoded", "/api/u%3Aa%40b", "/api/u:a@b"},
		{"space stays encoded", "/api/a%20b", "/api/a%20b"},
		{"raw space encoded", "/api/a b", "/api/a%20b"},
		{"encoded query char kept", "/api/a%3fb", "/api/a%3Fb"},
		{"encoded hash kept", "/api/a%23b", "/api/a%23b"},
		{"encoded percent kept", "/api/100%25", "/api/100%25"},
		{"hex upper-cased", "/api/a%5bb%5d", "/api/a%5Bb%5D"},
		{"unicode raw", "/api/users/é", "/api/users/%C3%A9"},
		{"unicode encoded lower", "/api/users/%c3%a9", "/api/users/%C3%A9"},
		{"unicode cjk", "/api/users/日本", "/api/users/%E6%97%A5%E6%9C%AC"},
		{"case kept", "/API/Reports", "/API/Reports"},

		{"empty", "", ""},
		{"no leading slash", "api/reports", ""},
		{"asterisk form", "*", ""},
		{"only query", "?x=1", ""},
		{"absolute form", "http://h/api", ""},
		{"above root", "/..", ""},
		{"above root later", "/api/../..", ""},
		{"encoded above root", "/%2e%2e/%2e%2e/etc", ""},
		{"encoded slash", "/api/reports%2Fsecret", ""},
		{"encoded slash lower", "/api/reports%2fsecret", ""},
		{"encoded backslash", "/api/a%5Cb", ""},
		{"encoded backslash lower", "/api/a%5cb", ""},
		{"raw backslash", "/api/a\\b", ""},
		{"double-encoded slash", "/api/a%252Fb", ""},
		{"double-encoded dot", "/api/%252e%252e/admin", ""},
		{"double-encoded backslash", "/api/a%255cb", ""},
		{"double-encoded slash via encoded digits", "/api/a%25%32%46b", ""},
		{"invalid percent", "/api/%zz", ""},
		{"truncated percent", "/api/%4", ""},
		{"percent at end", "/api/%", ""},
		{"iis unicode escape", "/api/%u002e", ""},
		{"nul raw", "/api/a\x00b", ""},
		{"nul encoded", "/api/a%00b", ""},
		{"newline", "/api/a\nb", ""},
		{"tab encoded", "/api/a%09b", ""},
		{"del", "/api/a\x7fb", ""},
		{"control in query", "/api/reports?x=\r\n", ""},
		{"invalid utf8 raw", "/api/\xff", ""},
		{"overlong dot", "/api/%C0%AE%C0%AE/admin", ""},
		{"truncated utf8", "/api/%C3", ""},
		{"c1 control", "/api/%C2%85", ""},
		{"dot semicolon", "/api/public/..;/admin", ""},
		{"dot semicolon params", "/api/public/..;jsessionid=x/admin", ""},
		{"single dot semicolon", "/api/.;/admin", ""},
		{"encoded dot semicolon", "/api/public/%2e%2e%3b/admin", ""},
		{"too long", "/" + strings.Repeat("a", MaxPathLen), ""},
		{"too long once encoded", "/" + strings.Repeat(" ", MaxPathLen/2), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizePath(tc.raw)
			if tc.want == "" {
				require.ErrorIs(t, err, ErrBadPath, "NormalizePath(%q): got %q, want ErrBadPath", tc.raw, got)
				return
			}
			require.NoError(t, err, "NormalizePath(%q)", tc.raw)
			assert.Equal(t, tc.want, got, "NormalizePath(%q): got %q, want %q", tc.raw, got, tc.want)
			again, err := NormalizePath(got)
			require.NoError(t, err, "NormalizePath(%q) again", got)
			assert.Equal(t, got, again, "not idempotent: got %q, want %q", again, got)
		})
	}
}

func TestNormalizePathLengthLimit(t *testing.T) {
	atLimit := "/" + strings.Repeat("a", MaxPathLen-1)
	got, err := NormalizePath(atLimit + "?" + strings.Repeat("q", 3*MaxPathLen))
	require.NoError(t, err, "a path of exactly MaxPathLen bytes with a long query")
	assert.Equal(t, atLimit, got, "got %d bytes, want %d", len(got), len(atLimit))
}

func TestNormalizePathNoAllocWhenCanonical(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = NormalizePath("/api/tenants/acme/users/u-1?page=2")
	})
	assert.Zero(t, allocs, "got %v allocs, want 0", allocs)
}
