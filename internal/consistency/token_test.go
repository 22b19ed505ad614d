package consistency

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	tenantA = "0b6a0c1e-8c3d-4f5e-9a7b-1c2d3e4f5a6b"
	tenantB = "7f000000-0000-4000-8000-000000000001"
)

func mustTenant(t *testing.T, id string, v uint64) Token {
	t.Helper()
	tok, err := ForTenant(id, v)
	require.NoError(t, err)
	return tok
}

func TestRoundTrip(t *testing.T) {
	ab, err := Merge(mustTenant(t, tenantB, 9), mustTenant(t, tenantA, 300))
	require.NoError(t, err)
	ab.Admin = 15
	for _, tok := range []Token{ForAdmin(1), ForAdmin(MaxVersion), mustTenant(t, tenantA, 1), ab} {
		s := tok.String()
		require.True(t, strings.HasPrefix(s, Prefix), "got %q, want the %q prefix", s, Prefix)
		got, err := Parse(s)
		require.NoError(t, err, s)
		assert.True(t, got.Equal(tok), "got %+v, want %+v", got, tok)
	}
	z, err := Parse("")
	require.NoError(t, err)
	assert.True(t, z.IsZero())
	assert.Empty(t, Token{}.String())
}

func TestMergeTakesTheHigherVersionOfEveryPart(t *testing.T) {
	a := Token{Admin: 20, Tenants: []Tenant{{ID: tenantA, Version: 5}}}
	b := Token{Admin: 7, Tenants: []Tenant{{ID: tenantA, Version: 8}, {ID: tenantB, Version: 2}}}
	m, err := Merge(a, b)
	require.NoError(t, err)
	assert.Equal(t, uint64(20), m.Admin)
	assert.Equal(t, []Tenant{{ID: tenantA, Version: 8}, {ID: tenantB, Version: 2}}, m.Tenants)
	m2, err := Merge(b, a)
	require.NoError(t, err)
	assert.True(t, m.Equal(m2), "merge is not commutative: %+v vs %+v", m, m2)
	assert.Equal(t, uint64(8), m.TenantVersion(tenantA))
	assert.Zero(t, m.TenantVersion("00000000-0000-0000-0000-000000000000"))
}

func TestMergeBoundsTenantParts(t *testing.T) {
	var tok Token
	for i := range MaxTenants + 1 {
		part := mustTenant(t, fmt.Sprintf("00000000-0000-4000-8000-%012x", i), 1)
		merged, err := Merge(tok, part)
		if i == MaxTenants {
			require.Error(t, err, "got a token of %d tenants", len(merged.Tenants))
			break
		}
		require.NoError(t, err)
		tok = merged
	}
	require.Len(t, tok.Tenants, MaxTenants)
	assert.LessOrEqual(t, len(tok.String()), MaxLen)
	_, err := Parse(tok.String())
	assert.NoError(t, err)
}

func TestParseRefusesWhatStringNeverWrites(t *testing.T) {
	good := mustTenant(t, tenantA, 3).String()
	body := strings.TrimPrefix(good, Prefix)
	for name, s := range map[string]string{
		"no prefix":           body,
		"other format":        "nz2." + body,
		"bare number":         "15",
		"padding":             good + "=",
		"standard base64":     Prefix + "+/",
		"empty body":          Prefix,
		"names nothing":       Prefix + "AA",
		"above bigint":        ForAdmin(MaxVersion).String()[:len(Prefix)] + "gICAgICAgICAAQ",
		"non-minimal varint":  Prefix + "gQA",
		"truncated tenant":    good[:len(good)-4],
		"zero tenant version": Token{Admin: 1, Tenants: []Tenant{{ID: tenantA, Version: 0}}}.String(),
		"too long":            Prefix + strings.Repeat("A", MaxLen),
		"whitespace":          " " + good,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(s)
			require.ErrorIs(t, err, ErrMalformed)
			assert.NotContains(t, err.Error(), body, "the error repeats the input")
		})
	}
	// Out of order and duplicate tenant parts.
	dup := Token{Tenants: []Tenant{{ID: tenantB, Version: 1}, {ID: tenantA, Version: 1}}}
	_, err := Parse(dup.String())
	require.ErrorIs(t, err, ErrMalformed)
	dup = Token{Tenants: []Tenant{{ID: tenantA, Version: 1}, {ID: tenantA, Version: 2}}}
	_, err = Parse(dup.String())
	require.ErrorIs(t, err, ErrMalformed)
}

func TestForTenantRefusesNonUUIDs(t *testing.T) {
	for _, id := range []string{"", "acme", strings.Repeat("a", 36), "0b6a0c1e8c3d4f5e9a7b1c2d3e4f5a6b", tenantA + "0",
		"0b6a0c1e8-c3d-4f5e-9a7b-1c2d3e4f5a6b", "0b6a0c1e-8c3d-4f5e-9a7b-1c2d3e4f5a6g", "0b6a0c1e-8c3d-4f5e-9a7b+1c2d3e4f5a6b"} {
		_, err := ForTenant(id, 1)
		assert.Error(t, err, id)
	}
	_, err := ForTenant(tenantA, 0)
	assert.Error(t, err)
	tok, err := ForTenant(strings.ToUpper(tenantA), 1)
	require.NoError(t, err)
	assert.Equal(t, tenantA, tok.Tenants[0].ID)
}

// TestStringIsTheDocumentedEncoding pins the wire format against the documentation's
// description, built here independently: tokens are stored by clients, so the encoding of a
// given token never changes.
func TestStringIsTheDocumentedEncoding(t *testing.T) {
	ab, err := Merge(mustTenant(t, tenantB, 1<<40), mustTenant(t, tenantA, 300))
	require.NoError(t, err)
	ab.Admin = 127
	for _, tok := range []Token{ForAdmin(1), ForAdmin(MaxVersion), mustTenant(t, tenantA, 1), ab} {
		raw := binary.AppendUvarint(nil, tok.Admin)
		for _, p := range tok.Tenants {
			id, err := hex.DecodeString(strings.ReplaceAll(p.ID, "-", ""))
			require.NoError(t, err)
			raw = binary.AppendUvarint(append(raw, id...), p.Version)
		}
		assert.Equal(t, Prefix+base64.RawURLEncoding.EncodeToString(raw), tok.String())
	}
}

// BenchmarkString is the encoding every answer naming a tenant part pays when its version
// tuple is not memoised: one allocation, the string.
func BenchmarkString(b *testing.B) {
	tok := Token{Admin: 4711, Tenants: []Tenant{{ID: tenantA, Version: 123456}}}
	b.ReportAllocs()
	for b.Loop() {
		if tok.String() == "" {
			b.Fatal("empty")
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(ForAdmin(15).String())
	f.Add(Token{Admin: 3, Tenants: []Tenant{{ID: tenantA, Version: 9}}}.String())
	f.Add("nz1.")
	f.Add("18446744073709551615")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			return
		}
		if len(s) > MaxLen || len(tok.Tenants) > MaxTenants || tok.Admin > MaxVersion {
			t.Fatalf("accepted out of bounds: %q", s)
		}
		if tok.String() != s {
			t.Fatalf("not canonical: %q re-encodes as %q", s, tok.String())
		}
	})
}
