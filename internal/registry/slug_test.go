package registry_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/neofast/neoauthz/internal/registry"
)

// slugGrammar is platform.valid_slug's pattern (migrations/platform), which ValidSlug must agree
// with so that what the API accepts is what the database accepts.
var slugGrammar = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func TestValidSlugMatchesTheDatabaseGrammar(t *testing.T) {
	for _, s := range []string{
		"", "a", "acme", "a-b", "-a", "a-", "a--b", "A", "acme_corp", "acme.corp", "é", "0", "9z",
		"3e49deaa-765b-4937-9196-d2c9b51b3d0b", "3E49DEAA-765B-4937-9196-D2C9B51B3D0B",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "a\x00", " a",
	} {
		assert.Equal(t, slugGrammar.MatchString(s), registry.ValidSlug(s), "ValidSlug(%q)", s)
	}
}

func FuzzValidSlug(f *testing.F) {
	f.Add("acme")
	f.Add("a-")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := registry.ValidSlug(s), slugGrammar.MatchString(s); got != want {
			t.Fatalf("ValidSlug(%q) = %v, want %v", s, got, want)
		}
	})
}
