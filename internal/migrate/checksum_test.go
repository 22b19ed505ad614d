package migrate

import (
	"hash/crc32"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestChecksumKnownAnswer(t *testing.T) {
	// Values computed outside Go (Python's zlib.crc32 of the lines joined without
	// terminators, as a signed int), so a mistake shared by our CRC and line splitting shows.
	tests := []struct {
		name string
		file string
		want int32
	}{
		{"two lines, final newline", "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n", 169406234},
		{"crlf", "CREATE TABLE t (id int);\r\nINSERT INTO t VALUES (1);\r\n", 169406234},
		{"old mac cr", "CREATE TABLE t (id int);\rINSERT INTO t VALUES (1);", 169406234},
		{"bom stripped", "\ufeffCREATE TABLE t (id int);\nINSERT INTO t VALUES (1);", 169406234},
		{"non-ascii, negative", "SELECT 1;\n-- é ünïcode\n", -1191335089},
		{"empty", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checksum([]byte(tc.file))
			assert.Equal(t, tc.want, got, "got %d, want %d", got, tc.want)
		})
	}
}

func TestChecksumMatchesJoinedLines(t *testing.T) {
	lines := []string{"-- roles", "CREATE TABLE roles (", "  id int,", "", "  name text", ");", "   "}
	// The rule restated independently: the CRC of the lines' bytes one after another.
	want := int32(crc32.ChecksumIEEE([]byte(strings.Join(lines, "")))) //nolint:gosec // signed, as Flyway stores it
	for _, eol := range []string{"\n", "\r\n", "\r"} {
		for _, final := range []bool{false, true} {
			file := strings.Join(lines, eol)
			if final {
				file += eol
			}
			got := checksum([]byte(file))
			assert.Equal(t, want, got, "eol %q final %v: got %d, want %d", eol, final, got, want)
		}
	}
	// An edit must change it.
	assert.NotEqual(t, want, checksum([]byte(strings.Join(lines, "\n")+"x")), "got the same checksum after an edit")
}

func TestReadLines(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a", []string{"a"}},
		{"a\n", []string{"a"}},
		{"a\n\n", []string{"a", ""}},
		{"a\r\nb", []string{"a", "b"}},
		{"a\r\rb", []string{"a", "", "b"}},
		{"a\n\rb", []string{"a", "", "b"}},
		{"\r\n", []string{""}},
	}
	for _, tc := range tests {
		var got []string
		for _, l := range readLines([]byte(tc.in)) {
			got = append(got, string(l))
		}
		assert.Equal(t, tc.want, got, "readLines(%q): got %q, want %q", tc.in, got, tc.want)
	}
}
