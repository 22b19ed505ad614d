package authn

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"sync/atomic"
	"time"
	"unique"
	"unsafe"

	"github.com/neofast/neoauthz/internal/cache"
)

// cachedToken is a verified token as the token cache keeps it: one heap object holding the
// identity Validate returns, whose strings are either shared with the other tokens of its
// tenant and client (parties) or packed into one allocation of the token's own (packClaims).
type cachedToken struct {
	id Identity
	// parties keeps the interned realm, tenant, client and audiences alive, so that the tokens
	// using them go on sharing one copy; aud is read from it on a tenant re-check.
	parties unique.Handle[parties]
	// checked is the last tenant check this token passed (nil: none): while no invalidation
	// has happened since and the realm answer it used has not expired, a hit needs no new one.
	// Records are shared by the tokens checked against one realm answer at one generation.
	checked atomic.Pointer[tenantCheck]
}

// parties are the claims and tenant data a token has in common with the other tokens of its
// tenant issued to the same client.
type parties struct {
	realm, tenantID, tenantSlug, azp string
	aud                              string // the aud values, encoded by encodeAud
}

// newCachedToken builds the cache's record of a verified token whose claims are c, for id's
// level and tenant. The identity's strings are taken from the interned parties and from one
// allocation holding the token's own claims.
func newCachedToken(level Level, realm string, tenant *TenantRealm, c *claims, aud string) *cachedToken {
	h := unique.Make(parties{realm: realm, tenantID: tenant.TenantID, tenantSlug: tenant.Slug, azp: c.azp, aud: aud})
	p := h.Value()
	ct := &cachedToken{parties: h, id: Identity{
		Level: level, Realm: p.realm, TenantID: p.tenantID, TenantSlug: p.tenantSlug, AuthorizedParty: p.azp,
		Subject: c.sub, PreferredUsername: c.preferredUsername, Email: c.email, SessionID: c.sid,
		ExpiresAt: c.exp,
	}}
	packStrings(&ct.id.Subject, &ct.id.PreferredUsername, &ct.id.Email, &ct.id.SessionID)
	return ct
}

// packStrings copies the strings into one allocation and points each at its copy; a string
// equal to an earlier one shares that one's copy.
func packStrings(fields ...*string) {
	var b strings.Builder
	b.Grow(distinctLen(fields...))
	for i, f := range fields {
		if earlier(fields[:i], *f) < 0 {
			b.WriteString(*f)
		}
	}
	all := b.String()
	for i, f := range fields {
		if j := earlier(fields[:i], *f); j >= 0 {
			*f = *fields[j]
		} else {
			*f, all = all[:len(*f)], all[len(*f):]
		}
	}
}

// distinctLen is the length of the strings, each counted once.
func distinctLen(fields ...*string) int {
	n := 0
	for i, f := range fields {
		if earlier(fields[:i], *f) < 0 {
			n += len(*f)
		}
	}
	return n
}

// earlier is the index of the first of fields equal to s, or -1.
func earlier(fields []*string, s string) int {
	for j, f := range fields {
		if *f == s {
			return j
		}
	}
	return -1
}

// size estimates what a cached token retains: the record, its own strings, its key and the
// cache's bookkeeping. The token's client and audiences count too although tokens share them:
// a token's claims are bounded only by MaxTokenBytes, and a token whose aud is its own must not
// hold more than its estimate. The tenant's id, slug and realm are the tenant's, bounded by the
// realm cache, and not counted. The cache is bounded in bytes by this, not by its entry count
// alone. TestCachedTokenSize compares it with a measurement.
func (ct *cachedToken) size() int64 {
	id := &ct.id
	p := ct.parties.Value()
	own := distinctLen(&id.Subject, &id.PreferredUsername, &id.Email, &id.SessionID)
	return int64(unsafe.Sizeof(*ct)) + sha256.Size + cache.TTLEntryOverhead + int64(own+len(p.azp)+len(p.aud))
}

// tenantCheck records a passed tenant check: the realm cache's generation read before the
// realm was resolved, and when the answer used expires.
type tenantCheck struct {
	gen   uint64
	until time.Time
}

// stillChecked reports whether ct's last tenant check still holds at now.
func (ct *cachedToken) stillChecked(gen uint64, now time.Time) bool {
	c := ct.checked.Load()
	return c != nil && c.gen == gen && now.Before(c.until)
}

// encodeAud encodes the aud values as one comparable string: each value preceded by its
// length as a uvarint, so that no two lists share an encoding.
func encodeAud(aud []string) string {
	n := 0
	for _, a := range aud {
		n += binary.MaxVarintLen64 + len(a)
	}
	b := make([]byte, 0, n)
	for _, a := range aud {
		b = binary.AppendUvarint(b, uint64(len(a)))
		b = append(b, a...)
	}
	return string(b)
}

// audContainsAny reports whether the aud list encoded in enc holds any of want.
func audContainsAny(enc string, want []string) bool {
	for enc != "" {
		n, k := binary.Uvarint([]byte(enc[:min(len(enc), binary.MaxVarintLen64)]))
		if k <= 0 || n > uint64(len(enc)-k) {
			return false // unreachable: enc is encodeAud's
		}
		a := enc[k : k+int(n)]
		for _, w := range want {
			if a == w {
				return true
			}
		}
		enc = enc[k+int(n):]
	}
	return false
}
