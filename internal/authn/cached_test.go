package authn

import (
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// Two aud lists share an encoding only when they are equal, and membership read from the
// encoding is membership in the list, whatever bytes the values hold.
func TestEncodeAud(t *testing.T) {
	long := strings.Repeat("x", 300) // a length of two uvarint bytes
	lists := [][]string{
		nil, {""}, {"", ""}, {"a"}, {"ab"}, {"a", "b"}, {"b", "a"}, {"\x01a"}, {"\x01", "a"},
		{"\x02ab"}, {"a\x00b"}, {"a", "\x00b"}, {long}, {long, "a"}, {"ö", "account"},
	}
	for i, l := range lists {
		enc := encodeAud(l)
		for j, m := range lists {
			assert.Equal(t, i == j, enc == encodeAud(m), "encodings of %q and %q", l, m)
		}
		for _, w := range []string{"", "a", "b", "ab", "\x00b", "\x01a", long, "account", "x"} {
			assert.Equal(t, slices.Contains(l, w), audContainsAny(enc, []string{w}), "%q in %q", w, l)
		}
		assert.False(t, audContainsAny(enc, nil))
	}
}

// packStrings keeps every value, in one allocation, an equal value sharing its copy.
func TestPackStrings(t *testing.T) {
	sub, user, email, sid := "user-1", "user-1", "u@example.com", ""
	want := []string{sub, user, email, sid}
	packStrings(&sub, &user, &email, &sid)
	assert.Equal(t, want, []string{sub, user, email, sid})
	assert.Same(t, unsafeData(sub), unsafeData(user), "got the equal username copied apart from sub")
	assert.Same(t, unsafeData(email), ptrAdd(unsafeData(sub), len(sub)), "got email outside the subject's allocation")
	assert.Equal(t, len(sub)+len(email), distinctLen(&sub, &user, &email, &sid))
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }

func ptrAdd(p *byte, n int) *byte { return (*byte)(unsafe.Add(unsafe.Pointer(p), n)) }
