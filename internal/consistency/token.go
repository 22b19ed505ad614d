// Package consistency is the consistency token: an opaque, versioned string naming the
// versions of authorization data a client's writes produced — the admin database's version
// and, per tenant, the version of the tenant's schema. The admin API returns one for every
// write; the pdp accepts one on every interface and answers from data at least that new.
package consistency

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Prefix starts every token of the current format. A later format takes another prefix, so a
// pdp can tell formats apart and refuse ones it does not know.
const Prefix = "nz1."

// Bounds on a token: it is client input.
const (
	// MaxTenants is the most tenant parts a token may name.
	MaxTenants = 16
	// MaxLen is the longest token accepted, in bytes.
	MaxLen = len(Prefix) + (binary.MaxVarintLen64+MaxTenants*(uuidLen+binary.MaxVarintLen64)+2)/3*4
)

// MaxVersion is the highest version a part may name: versions are PostgreSQL bigints.
const MaxVersion = math.MaxInt64

const uuidLen = 16

// ErrMalformed is returned by Parse for anything that is not a token this package wrote.
var ErrMalformed = errors.New("malformed consistency token")

// Tenant is a tenant part: the tenant's id and its schema's authz_state version.
type Tenant struct {
	ID      string // canonical lower-case UUID
	Version uint64
}

// Token names versions of authorization data. The zero Token names nothing (no
// requirement). Tenant parts are sorted by id, one per tenant.
type Token struct {
	// Admin is the admin database's authz_state version (tenant directory and platform
	// RBAC); 0 when the token has no admin part.
	Admin   uint64
	Tenants []Tenant
}

// ForAdmin returns a token with only an admin part.
func ForAdmin(v uint64) Token { return Token{Admin: v} }

// ForTenant returns a token with one tenant part; id must be a UUID.
func ForTenant(id string, v uint64) (Token, error) {
	canon, ok := canonicalUUID(id)
	if !ok || v == 0 || v > MaxVersion {
		return Token{}, fmt.Errorf("consistency: invalid tenant part %q@%d", id, v)
	}
	return Token{Tenants: []Tenant{{ID: canon, Version: v}}}, nil
}

// IsZero reports whether the token names nothing.
func (t Token) IsZero() bool { return t.Admin == 0 && len(t.Tenants) == 0 }

// TenantVersion returns the version the token names for tenant id (0 when none).
func (t Token) TenantVersion(id string) uint64 {
	for _, p := range t.Tenants {
		if p.ID == id {
			return p.Version
		}
	}
	return 0
}

// Merge returns a token naming, for every part of either, the higher version: data at least
// that new satisfies both. More than MaxTenants tenant parts is an error (the result could
// not be sent back).
func Merge(a, b Token) (Token, error) {
	out := Token{Admin: max(a.Admin, b.Admin), Tenants: make([]Tenant, 0, len(a.Tenants)+len(b.Tenants))}
	i, j := 0, 0
	for i < len(a.Tenants) || j < len(b.Tenants) {
		switch {
		case j == len(b.Tenants) || i < len(a.Tenants) && a.Tenants[i].ID < b.Tenants[j].ID:
			out.Tenants = append(out.Tenants, a.Tenants[i])
			i++
		case i == len(a.Tenants) || b.Tenants[j].ID < a.Tenants[i].ID:
			out.Tenants = append(out.Tenants, b.Tenants[j])
			j++
		default:
			out.Tenants = append(out.Tenants, Tenant{ID: a.Tenants[i].ID, Version: max(a.Tenants[i].Version, b.Tenants[j].Version)})
			i, j = i+1, j+1
		}
	}
	if len(out.Tenants) > MaxTenants {
		return Token{}, fmt.Errorf("consistency: a merged token would name %d tenants, at most %d", len(out.Tenants), MaxTenants)
	}
	if len(out.Tenants) == 0 {
		out.Tenants = nil
	}
	return out, nil
}

// String encodes the token: Prefix, then unpadded base64url of the admin version as a
// uvarint followed by each tenant part as 16 id bytes and a uvarint version. The zero
// Token encodes as "".
func (t Token) String() string {
	if t.IsZero() {
		return ""
	}
	var buf [MaxLen]byte
	return string(t.appendEncoded(buf[:0]))
}

// appendEncoded appends String's encoding of a non-zero token to dst. It runs on every
// answer carrying a token, so its scratch space is on the stack.
func (t Token) appendEncoded(dst []byte) []byte {
	var buf [binary.MaxVarintLen64 + MaxTenants*(uuidLen+binary.MaxVarintLen64)]byte
	b := binary.AppendUvarint(buf[:0], t.Admin)
	for _, p := range t.Tenants {
		b = appendUUIDBytes(b, p.ID)
		b = binary.AppendUvarint(b, p.Version)
	}
	dst = append(dst, Prefix...)
	return base64.RawURLEncoding.AppendEncode(dst, b)
}

// appendUUIDBytes appends the bytes of a tenant id's hex digits (its dashes skipped).
func appendUUIDBytes(b []byte, id string) []byte {
	var buf [36]byte
	digits := buf[:0]
	for i := 0; i < len(id); i++ {
		if id[i] != '-' {
			digits = append(digits, id[i])
		}
	}
	n, _ := hex.Decode(digits, digits)
	return append(b, digits[:n]...)
}

// Parse reads a token strictly: the current prefix, at most MaxLen bytes, canonical base64url
// and varints, versions within MaxVersion, tenant parts in increasing id order with a
// version each, and at least one part. "" parses as the zero Token. Anything else is
// ErrMalformed; the error never repeats the input.
func Parse(s string) (Token, error) {
	if s == "" {
		return Token{}, nil
	}
	if len(s) > MaxLen {
		return Token{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxLen)
	}
	body, ok := strings.CutPrefix(s, Prefix)
	if !ok {
		return Token{}, fmt.Errorf("%w: unknown format", ErrMalformed)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || len(raw) == 0 {
		return Token{}, fmt.Errorf("%w: bad encoding", ErrMalformed)
	}
	var t Token
	rest := raw
	if t.Admin, rest, ok = uvarint(rest); !ok {
		return Token{}, fmt.Errorf("%w: bad admin version", ErrMalformed)
	}
	for len(rest) > 0 {
		if len(t.Tenants) == MaxTenants || len(rest) < uuidLen {
			return Token{}, fmt.Errorf("%w: bad tenant part", ErrMalformed)
		}
		id := formatUUID(rest[:uuidLen])
		var v uint64
		if v, rest, ok = uvarint(rest[uuidLen:]); !ok || v == 0 {
			return Token{}, fmt.Errorf("%w: bad tenant version", ErrMalformed)
		}
		if n := len(t.Tenants); n > 0 && t.Tenants[n-1].ID >= id {
			return Token{}, fmt.Errorf("%w: tenant parts out of order", ErrMalformed)
		}
		t.Tenants = append(t.Tenants, Tenant{ID: id, Version: v})
	}
	if t.IsZero() {
		return Token{}, fmt.Errorf("%w: names nothing", ErrMalformed)
	}
	// One encoding per token: anything that does not re-encode to itself was not written
	// by String (base64 with stray bits, non-minimal varints).
	var enc [MaxLen]byte
	if string(t.appendEncoded(enc[:0])) != s {
		return Token{}, fmt.Errorf("%w: not canonical", ErrMalformed)
	}
	return t, nil
}

// uvarint reads a minimal uvarint no larger than MaxVersion.
func uvarint(b []byte) (uint64, []byte, bool) {
	v, n := binary.Uvarint(b)
	var minimal [binary.MaxVarintLen64]byte
	if n <= 0 || v > MaxVersion || n != binary.PutUvarint(minimal[:], v) {
		return 0, nil, false
	}
	return v, b[n:], true
}

func formatUUID(b []byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	hex.Encode(s[9:13], b[4:6])
	hex.Encode(s[14:18], b[6:8])
	hex.Encode(s[19:23], b[8:10])
	hex.Encode(s[24:36], b[10:16])
	s[8], s[13], s[18], s[23] = '-', '-', '-', '-'
	return string(s[:])
}

// canonicalUUID returns id in lower case when it is a UUID in the 8-4-4-4-12 form. An id
// already in that form is returned as it is: tenant ids from the directory are, and they are
// checked on every answer.
func canonicalUUID(id string) (string, bool) {
	if len(id) != 36 {
		return "", false
	}
	upper := false
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return "", false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		case 'A' <= c && c <= 'F':
			upper = true
		default:
			return "", false
		}
	}
	if upper {
		return strings.ToLower(id), true
	}
	return id, true
}

// Equal reports whether two tokens name the same versions.
func (t Token) Equal(o Token) bool {
	return t.Admin == o.Admin && slices.Equal(t.Tenants, o.Tenants)
}
