package authn

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/neofast/neoauthz/internal/strictjson"
)

// forbiddenHeaders are JOSE headers we refuse outright. jku, x5u, jwk and x5c
// would let the token choose its own verification key; we never follow or
// use them. crit names extensions we would have to understand (we
// understand none), b64 changes what is signed, zip and enc belong to JWE.
var forbiddenHeaders = [...]string{"jku", "x5u", "jwk", "x5c", "crit", "b64", "zip", "enc"}

// maxNumericDate is 9999-12-31T23:59:59Z; larger dates are nonsense and
// would overflow time arithmetic.
const maxNumericDate = 253402300799

// maxKidBytes bounds the kid header; Keycloak's kids are 43 characters.
const maxKidBytes = 256

// parsedToken is a compact JWS split and decoded, not yet verified.
type parsedToken struct {
	alg     string
	kid     string
	payload map[string]json.RawMessage
	iss     string
}

// b64 is strict: no padding, no ignored newlines, no non-zero trailing bits,
// so each token has exactly one accepted encoding.
var b64 = base64.RawURLEncoding.Strict()

// parseToken checks the token's shape and header and decodes its payload.
// Nothing it returns is trusted until the signature has been verified; only
// iss (to find the keys) and the header are looked at before that.
func parseToken(token string, allowed map[string]keyFamily) (*parsedToken, error) {
	dots := 0
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c == '.':
			dots++
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return nil, newError(KindMalformed, "invalid character")
		}
	}
	switch dots {
	case 2:
	case 4:
		return nil, newError(KindMalformed, "JWE is not accepted")
	default:
		return nil, newError(KindMalformed, "not a compact JWS")
	}
	h, rest, _ := strings.Cut(token, ".")
	p, sig, _ := strings.Cut(rest, ".")

	hdrJSON, err := b64.DecodeString(h)
	if err != nil {
		return nil, newError(KindMalformed, "header is not base64url")
	}
	payloadJSON, err := b64.DecodeString(p)
	if err != nil {
		return nil, newError(KindMalformed, "payload is not base64url")
	}
	if _, err := b64.DecodeString(sig); err != nil {
		return nil, newError(KindMalformed, "signature is not base64url")
	}
	// Before anything reads either part: a reader keeping the first member and one keeping the
	// last (jws.Verify reads the header too) must never see two different tokens.
	if err := checkMembers(hdrJSON, "header"); err != nil {
		return nil, err
	}
	if err := checkMembers(payloadJSON, "payload"); err != nil {
		return nil, err
	}

	var hdr map[string]json.RawMessage
	if err := decodeObject(hdrJSON, &hdr); err != nil {
		return nil, newError(KindMalformed, "header is not a JSON object")
	}
	for _, name := range forbiddenHeaders {
		if _, ok := hdr[name]; ok {
			return nil, newError(KindMalformed, "header "+name+" is not accepted")
		}
	}
	pt := &parsedToken{}
	alg, ok, err := stringMember(hdr, "alg")
	if err != nil || !ok {
		return nil, newError(KindMalformed, "alg header missing")
	}
	if _, ok := allowed[alg]; !ok {
		return nil, newError(KindAlgorithmNotAllowed, "")
	}
	pt.alg = alg
	if pt.kid, ok, err = stringMember(hdr, "kid"); err != nil || !ok || pt.kid == "" {
		return nil, newError(KindMalformed, "kid header missing")
	}
	if len(pt.kid) > maxKidBytes {
		// Unknown kids are remembered; long ones would make that memory large.
		return nil, newError(KindMalformed, "kid header too long")
	}
	if typ, ok, err := stringMember(hdr, "typ"); err != nil || ok && !strings.EqualFold(typ, "JWT") {
		return nil, newError(KindWrongTokenType, "typ header is not JWT")
	}
	if sig == "" {
		return nil, newError(KindMalformed, "empty signature")
	}

	if err := decodeObject(payloadJSON, &pt.payload); err != nil {
		return nil, newError(KindMalformed, "payload is not a JSON object")
	}
	iss, ok, err := stringMember(pt.payload, "iss")
	if err != nil {
		return nil, newError(KindMalformed, "iss is not a string")
	}
	if !ok || iss == "" {
		return nil, newError(KindMissingClaim, "iss")
	}
	pt.iss = iss
	return pt, nil
}

// claims are the payload members we use, read after the signature verified. realmRoles and
// groups are read only so that a token holding them malformed is refused; nothing keeps them.
type claims struct {
	sub, azp, typ, preferredUsername, email string
	aud                                     []string
	exp, nbf, iat                           time.Time
	hasExp, hasNbf, hasIat                  bool
	realmRoles, groups                      []string
}

// readClaims extracts typed claims. Member names are matched exactly:
// encoding/json's case-insensitive struct matching would let "EXP" count as
// exp.
func readClaims(m map[string]json.RawMessage) (*claims, error) {
	c := &claims{}
	var err error
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"sub", &c.sub}, {"azp", &c.azp}, {"typ", &c.typ},
		{"preferred_username", &c.preferredUsername}, {"email", &c.email},
	} {
		if *f.dst, _, err = stringMember(m, f.name); err != nil {
			return nil, newError(KindMalformed, f.name+" is not a string")
		}
	}
	if c.aud, err = stringOrArray(m["aud"]); err != nil {
		return nil, newError(KindMalformed, "aud is not a string or array of strings")
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
		has  *bool
	}{
		{"exp", &c.exp, &c.hasExp}, {"nbf", &c.nbf, &c.hasNbf}, {"iat", &c.iat, &c.hasIat},
	} {
		if *f.dst, *f.has, err = numericDate(m[f.name]); err != nil {
			return nil, newError(KindMalformed, f.name+" is not a valid NumericDate")
		}
	}
	if c.groups, err = stringOrArray(m["groups"]); err != nil {
		return nil, newError(KindMalformed, "groups is not an array of strings")
	}
	if ra := m["realm_access"]; !isNull(ra) {
		var obj map[string]json.RawMessage
		if err := decodeObject(ra, &obj); err != nil {
			return nil, newError(KindMalformed, "realm_access is not an object")
		}
		if c.realmRoles, err = stringOrArray(obj["roles"]); err != nil {
			return nil, newError(KindMalformed, "realm_access.roles is not an array of strings")
		}
	}
	return c, nil
}

// checkMembers refuses a header or payload with a duplicate member at any depth, or nested
// beyond strictjson.MaxDepth.
func checkMembers(data []byte, part string) error {
	switch err := strictjson.CheckMembers(data); {
	case err == nil:
		return nil
	case errors.Is(err, strictjson.ErrDuplicateMember):
		return newError(KindDuplicateMember, part)
	default:
		return newError(KindMalformed, part+" is not a JSON object")
	}
}

func decodeObject(data []byte, dst *map[string]json.RawMessage) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return errNotObject
	}
	return json.Unmarshal(data, dst)
}

var errNotObject = newError(KindMalformed, "not a JSON object")

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// stringMember returns m[name] as a string; ok is false when it is absent
// or null.
func stringMember(m map[string]json.RawMessage, name string) (s string, ok bool, err error) {
	raw := m[name]
	if isNull(raw) {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, err
	}
	return s, true, nil
}

func stringOrArray(raw json.RawMessage) ([]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	raw = bytes.TrimSpace(raw)
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	var a []string
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, err
	}
	return a, nil
}

// numericDate parses a JSON number of seconds since the epoch (fractions
// allowed, as RFC 7519 permits).
func numericDate(raw json.RawMessage) (time.Time, bool, error) {
	if isNull(raw) {
		return time.Time{}, false, nil
	}
	raw = bytes.TrimSpace(raw)
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return time.Time{}, false, errNotNumber
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false, errNotNumber
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true, nil
}

var errNotNumber = newError(KindMalformed, "not a NumericDate")
