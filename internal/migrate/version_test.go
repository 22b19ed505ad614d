package migrate

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseVersion(t *testing.T) {
	good := map[string]string{"1": "1", "1.2": "1.2", "1_2": "1.2", "2026_01_05_1": "2026.01.05.1", "007": "007"}
	for in, want := range good {
		v, err := ParseVersion(in)
		require.NoError(t, err, "ParseVersion(%q)", in)
		assert.Equal(t, want, v.String(), "ParseVersion(%q): got %q, want %q", in, v.String(), want)
	}
	for _, in := range []string{"", "a", "1.", ".1", "1..2", "1__2", "1.2b", "-1", "1 2", "v1"} {
		_, err := ParseVersion(in)
		assert.Error(t, err, "ParseVersion(%q): got no error, want one", in)
	}
}

func TestVersionCompare(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.10", "1.9", 1},
		{"2", "1.9.9", 1},
		{"1", "1.0", 0},
		{"1.0.0", "1", 0},
		{"01.2", "1.2", 0},
		{"1.0.1", "1", 1},
		{"10", "9", 1},
		{"123456789012345678901234567890", "123456789012345678901234567889", 1},
		{"1.2", "1.2.0.0.1", -1},
	}
	for _, tc := range tests {
		a, b := MustParseVersion(tc.a), MustParseVersion(tc.b)
		got := a.Compare(b)
		assert.Equal(t, tc.want, got, "Compare(%s, %s): got %d, want %d", tc.a, tc.b, got, tc.want)
		got = b.Compare(a)
		assert.Equal(t, -tc.want, got, "Compare(%s, %s): got %d, want %d", tc.b, tc.a, got, -tc.want)
		if tc.want == 0 {
			assert.Equal(t, a.key(), b.key(), "equal versions %s, %s: got keys %q, %q", tc.a, tc.b, a.key(), b.key())
		}
	}
	var zero Version
	assert.Equal(t, -1, zero.Compare(MustParseVersion("0")), "got zero Version not lowest")
	assert.Equal(t, 0, zero.Compare(Version{}), "got zero Versions unequal")
	assert.True(t, zero.IsZero(), "got IsZero false for the zero Version")
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1", "1.2", "1_2", "01.0", ""} {
		f.Add(s, "1.10")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		va, errA := ParseVersion(a)
		vb, errB := ParseVersion(b)
		if errA != nil || errB != nil {
			return
		}
		if c := va.Compare(vb); c != -vb.Compare(va) {
			t.Fatalf("Compare(%q, %q) = %d, reverse = %d: not antisymmetric", a, b, c, vb.Compare(va))
		}
		if (va.Compare(vb) == 0) != (va.key() == vb.key()) {
			t.Fatalf("%q, %q: Compare and key disagree", a, b)
		}
	})
}
