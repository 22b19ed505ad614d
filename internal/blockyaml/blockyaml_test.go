package blockyaml

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestToJSON(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"scalars", "a: 1\nb: 0.25s\nc: true\nd: null\ne: \"@x\"\nf: 'it''s'\ng: 1.5\nh: V3", `{"a":1,"b":"0.25s","c":true,"d":null,"e":"@x","f":"it's","g":1.5,"h":"V3"}`},
		{"comments", "# head\na: x # tail\nb: \"x # not a comment\"\nc: a#b", `{"a":"x","b":"x # not a comment","c":"a#b"}`},
		{"nesting", "a:\n  b:\n    c: 1\n  d: 2", `{"a":{"b":{"c":1},"d":2}}`},
		{"sequence of mappings", "a:\n  - b: 1\n    c: 2\n  - d: 3", `{"a":[{"b":1,"c":2},{"d":3}]}`},
		{"sequence at key indent", "a:\n- x\n- \"*\"\nb: 1", `{"a":["x","*"],"b":1}`},
		{"nested sequences", "a:\n  - - 1\n    - 2\n  -\n    b: c", `{"a":[[1,2],{"b":"c"}]}`},
		{"empty collections", "a: {}\nb: []\nc:", `{"a":{},"b":[],"c":null}`},
		{"quoted keys", "\"@type\": t\n\":method\": GET", `{"@type":"t",":method":"GET"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ToJSON([]byte(tc.in))
			require.NoError(t, err)
			assert.JSONEq(t, tc.want, string(got))
		})
	}

	bad := []struct {
		name, in string
	}{
		{"duplicate key", "a: 1\na: 2"},
		{"anchor", "a: &x 1"},
		{"alias", "a: *x"},
		{"tag", "a: !!str 1"},
		{"block scalar", "a: |\n  x"},
		{"flow mapping", "a: {b: 1}"},
		{"unquoted indicator", "@type: x"},
		{"yaml 1.1 boolean", "a: yes"},
		{"capitalised boolean", "a: True"},
		{"colon in plain scalar", "a: b: c"},
		{"bad indentation", "a:\n    b: 1\n  c: 2"},
		{"value and block", "a: 1\n  b: 2"},
		{"tab", "a:\n\tb: 1"},
		{"second document", "a: 1\n---\nb: 2"},
		{"unterminated quote", "a: \"x"},
		{"empty", "# nothing"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ToJSON([]byte(tc.in))
			assert.Error(t, err, "got %s, want an error", got)
		})
	}
}
