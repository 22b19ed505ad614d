package cache

import (
	"encoding/base64"
	"errors"
	"strings"
)

// Keys name what they cache unambiguously, because a collision would serve one user's
// permissions to another:
//
//   - a tenant's keys are "tenant:{<tenantID>}:..." and platform keys "platform:...", so the
//     levels never mix;
//   - tenantID is restricted to lowercase hex and '-' (a UUID), so it can contain neither the
//     ':' nor the '}' that end it, and one tenant has one spelling;
//   - user ids come from tokens and are not ours to restrict, so they are base64url-encoded
//     (alphabet [A-Za-z0-9_-]): no user id can forge a ':', a brace or another tenant's
//     segment, and different ids give different keys;
//   - the braces are a Redis Cluster hash tag, keeping a tenant's keys in one slot so prefix
//     deletions and multi-key operations stay on one node;
//   - a part several users share (SharedCodec) is "tenant:{<tenantID>}:s:<hex id>" or
//     "platform:s:<hex id>": "s:" and "u:" never collide, and the id is hex.

// ErrInvalidTenantID is returned by the key helpers for a tenant id that is not 1 to 64
// characters of [0-9a-f-].
var ErrInvalidTenantID = errors.New("cache: tenant id must be 1-64 characters of [0-9a-f-]")

func validTenantID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && c != '-' {
			return false
		}
	}
	return true
}

// TenantPrefix returns the prefix of every key of a tenant, for DeletePrefix.
func TenantPrefix(tenantID string) (string, error) {
	if !validTenantID(tenantID) {
		return "", ErrInvalidTenantID
	}
	return "tenant:{" + tenantID + "}:", nil
}

// TenantUserKey returns the key of a tenant user's entry:
// "tenant:{<tenantID>}:u:<base64url(userID)>".
func TenantUserKey(tenantID, userID string) (string, error) {
	if !validTenantID(tenantID) {
		return "", ErrInvalidTenantID
	}
	return userKey("tenant:{", tenantID, "}:u:", userID), nil
}

// PlatformUserKey returns the key of a platform user's entry: "platform:u:<base64url(userID)>".
func PlatformUserKey(userID string) string { return userKey("platform:u:", "", "", userID) }

// userKey builds a key in one allocation: it runs on every check.
func userKey(a, b, c, userID string) string {
	var sb strings.Builder
	sb.Grow(len(a) + len(b) + len(c) + base64.RawURLEncoding.EncodedLen(len(userID)))
	sb.WriteString(a)
	sb.WriteString(b)
	sb.WriteString(c)
	var buf [96]byte
	for len(userID) > 0 {
		// 72 input bytes encode to exactly 96 output bytes with no partial group.
		n := min(len(userID), 72)
		enc := base64.RawURLEncoding.AppendEncode(buf[:0], []byte(userID[:n]))
		sb.Write(enc)
		userID = userID[n:]
	}
	return sb.String()
}

// SharedKey returns the key of the shared part id that entry key names: in the key's tenant
// (and so its hash slot), "tenant:{<tenantID>}:s:<id>", or "platform:s:<id>". ok is false for
// an id that is not 1 to 128 lowercase hex digits, or a key of neither form.
func SharedKey(key, id string) (string, bool) {
	if len(id) == 0 || len(id) > 128 {
		return "", false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	switch {
	case strings.HasPrefix(key, "tenant:{"):
		end := strings.Index(key, "}:")
		if end < 0 || !validTenantID(key[len("tenant:{"):end]) {
			return "", false
		}
		return key[:end+2] + "s:" + id, true
	case strings.HasPrefix(key, "platform:"):
		return "platform:s:" + id, true
	}
	return "", false
}
