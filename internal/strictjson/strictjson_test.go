package strictjson_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/strictjson"
)

func TestCheckMembers(t *testing.T) {
	many := func(n int, dup bool) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`"k` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + `":1`)
		}
		if dup {
			b.WriteString(`,"kxa` + `a":2`) // equals member 0? no: member 0 is "kaa"
			b.WriteString(`,"kaa":3`)
		}
		b.WriteString("}")
		return b.String()
	}
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"flat", `{"alg":"RS256","kid":"k","typ":"JWT"}`, nil},
		{"same name in sibling objects", `{"a":{"x":1},"b":{"x":2},"c":[{"x":1},{"x":2}]}`, nil},
		{"same name at two depths", `{"x":{"x":{"x":1}}}`, nil},
		{"names inside string values", `{"a":"\"a\":1,","b":"{\"a\":2}"}`, nil},
		{"value equal to a name", `{"a":"a","b":"a"}`, nil},
		{"top-level duplicate", `{"alg":"none","kid":"k","alg":"RS256"}`, strictjson.ErrDuplicateMember},
		{"duplicate after a nested object", `{"sub":"a","x":{"sub":"b"},"sub":"c"}`, strictjson.ErrDuplicateMember},
		{"nested duplicate", `{"realm_access":{"roles":["a"],"roles":["admin"]}}`, strictjson.ErrDuplicateMember},
		{"duplicate in an array element", `{"a":[1,{"b":1,"b":2}]}`, strictjson.ErrDuplicateMember},
		{"escaped duplicate", `{"alg":"RS256","\u0061lg":"none"}`, strictjson.ErrDuplicateMember},
		{"escaped both", `{"\u0061":1,"\u0061":2}`, strictjson.ErrDuplicateMember},
		{"invalid UTF-8 names decode alike", "{\"\xff\":1,\"\xfe\":2}", strictjson.ErrDuplicateMember},
		{"distinct UTF-8 names", `{"é":1,"è":2}`, nil},
		{"large object", many(200, false), nil},
		{"large object with a duplicate", many(200, true), strictjson.ErrDuplicateMember},
		{"too deep", strings.Repeat("[", strictjson.MaxDepth+1) + strings.Repeat("]", strictjson.MaxDepth+1), strictjson.ErrTooDeep},
		{"deepest accepted", strings.Repeat("[", strictjson.MaxDepth) + strings.Repeat("]", strictjson.MaxDepth), nil},
		{"unterminated string", `{"a`, strictjson.ErrSyntax},
		{"unbalanced", `{"a":[1}`, strictjson.ErrSyntax},
		{"unclosed", `{"a":1`, strictjson.ErrSyntax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := strictjson.CheckMembers([]byte(tc.in))
			if tc.want == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tc.want)
			}
		})
	}
}

func TestCheckMembersNamesTheDuplicate(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"a":1,"a":2}`, "a"},
		{`{"s":{"type":"user","id":"alice","id":"root"}}`, "id"},
		{`{"e":[{"x":[1,{"y":1,"y":2}]}]}`, "y"},
		{`{"a":{"b":1},"c":2,"a":3}`, "a"},
		{`{"a\u0062":1,"ab":2}`, "ab"}, // equal after unescaping
		{`{"` + strings.Repeat("n", 100) + `":1,"` + strings.Repeat("n", 100) + `":2}`, strings.Repeat("n", 64)},
	} {
		var de *strictjson.DuplicateMemberError
		require.ErrorAs(t, strictjson.CheckMembers([]byte(tc.in)), &de, tc.in)
		assert.Equal(t, tc.want, de.Name, tc.in)
	}
}

func TestCheckMembersAllocatesNothing(t *testing.T) {
	doc := []byte(`{"exp":1,"iat":2,"iss":"https://sso/realms/acme","sub":"u","typ":"Bearer","azp":"web",
		"realm_access":{"roles":["a","b"]},"resource_access":{"web":{"roles":["x"]}},"scope":"openid email"}`)
	allocs := testing.AllocsPerRun(100, func() {
		if err := strictjson.CheckMembers(doc); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs, "got %v allocations per check, want 0", allocs)
}

type inner struct {
	Code string `json:"code"`
}

type Embedded struct {
	Note string `json:"note"`
}

type body struct {
	Embedded
	Name     string           `json:"name"`
	Tags     []inner          `json:"tags"`
	ByKey    map[string]inner `json:"by_key"`
	Ptr      *inner           `json:"ptr"`
	Free     json.RawMessage  `json:"free"`
	Any      any              `json:"any"`
	Settings map[string]any   `json:"settings"`
	Plain    string
	Skipped  string            `json:"-"`
	Labels   map[string]string `json:"labels,omitempty"`
}

func TestUnmarshal(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		wantErr  string
	}{
		{"exact names", `{"name":"a","note":"n","tags":[{"code":"c"}],"by_key":{"Any Key":{"code":"c"}},"ptr":{"code":"p"},
			"free":{"Whatever":1},"any":{"X":1},"settings":{"Mixed":{"Case":1}},"Plain":"p","labels":{"A":"b"}}`, ""},
		{"case-folded top-level name", `{"Name":"a"}`, `unknown field "Name" (field names are case-sensitive: did you mean "name"?)`},
		{"case-folded promoted name", `{"NOTE":"a"}`, `unknown field "NOTE"`},
		{"case-folded nested name", `{"tags":[{"Code":"c"}]}`, `unknown field "Code"`},
		{"case-folded name in a map value", `{"by_key":{"k":{"CODE":"c"}}}`, `unknown field "CODE"`},
		{"case-folded name behind a pointer", `{"ptr":{"Code":"c"}}`, `unknown field "Code"`},
		{"untagged field by another case", `{"plain":"p"}`, `unknown field "plain"`},
		{"skipped field", `{"Skipped":"x"}`, `unknown field "Skipped"`},
		{"unknown field", `{"colour":"a"}`, `unknown field "colour"`},
		{"duplicate", `{"name":"a","name":"b"}`, "duplicate object member"},
		{"duplicate inside a free-form value", `{"free":{"a":1,"a":2}}`, "duplicate object member"},
		{"trailing value", `{"name":"a"} {}`, "more than one value"},
		{"not JSON", `{"name":}`, "invalid character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b body
			err := strictjson.Unmarshal([]byte(tc.in), &b)
			if tc.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, "a", b.Name)
				assert.Equal(t, "n", b.Note)
				assert.Equal(t, "p", b.Ptr.Code)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}
