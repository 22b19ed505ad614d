package authn

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unique"
	"unsafe"

	"github.com/neofast/neoauthz/internal/cache"
)

// cachedToken is a verified token as the token cache keeps it: one 64-byte heap object, the
// strings it shares with the other tokens of its tenant and client (parties), and one
// allocation of the token's own claims (own). Validate builds the identity from it on each hit.
type cachedToken struct {
	// parties keeps the interned realm, tenant, client and audiences alive, so that the tokens
	// using them go on sharing one copy; aud is read from it on a tenant re-check.
	parties unique.Handle[parties]
	// checked is the last tenant check this token passed (nil: none): while no invalidation
	// has happened since and the realm answer it used has not expired, a hit needs no new one.
	// Records are shared by the tokens checked against one realm answer at one generation.
	checked atomic.Pointer[tenantCheck]
	// own holds the own claims, each value once.
	own string
	// lens are the lengths of the own claims. Each is a string member of a payload decoded
	// from at most maxTokenBytesLimit bytes of token, and decoding a JSON string at most
	// triples it (an invalid UTF-8 byte becomes U+FFFD, three bytes; escapes shrink), so it
	// fits in 32 bits (the constant below does not compile otherwise); so do the offsets,
	// which sum distinct claims, distinct parts of the payload.
	lens [numOwnClaims]uint32
	// expSec and expNsec are exp as Unix time (a NumericDate may have a fraction).
	expSec  int64
	expNsec uint32
	// from holds, for each own claim i, in bits 2i and 2i+1, the index of the claim whose
	// bytes in own it uses: i itself, or the first earlier claim equal to it.
	from  uint8
	level Level
}

// A decoded own claim's length fits in lens (see there).
const _ uint32 = 3 * maxTokenBytesLimit

// The own claims, in own's order: a token's claims that are its own, not its tenant's or
// client's.
const (
	claimSub = iota
	claimPreferredUsername
	claimEmail
	numOwnClaims
)

// from's two bits per claim hold the indexes of numOwnClaims claims.
var _ [4 - numOwnClaims]struct{}

// parties are the claims and tenant data a token has in common with the other tokens of its
// tenant issued to the same client.
type parties struct {
	realm, tenantID, tenantSlug, azp string
	aud                              string // the aud values, encoded by encodeAud
}

// newCachedToken builds the cache's record of a verified token whose claims are c, for the
// level and tenant it was validated at.
func newCachedToken(level Level, realm string, tenant *TenantRealm, c *claims, aud string) *cachedToken {
	ct := &cachedToken{
		parties: unique.Make(parties{realm: realm, tenantID: tenant.TenantID, tenantSlug: tenant.Slug, azp: c.azp, aud: aud}),
		expSec:  c.exp.Unix(),
		expNsec: uint32(c.exp.Nanosecond()),
		level:   level,
	}
	ct.setOwn(&[numOwnClaims]string{claimSub: c.sub, claimPreferredUsername: c.preferredUsername, claimEmail: c.email})
	return ct
}

// setOwn stores the own claims in one allocation, each value once.
func (ct *cachedToken) setOwn(claims *[numOwnClaims]string) {
	n := 0
	for i, s := range claims {
		j := slices.Index(claims[:i+1], s) // i when no earlier claim equals s
		ct.from |= uint8(j) << (2 * i)
		ct.lens[i] = uint32(len(s))
		if j == i {
			n += len(s)
		}
	}
	var b strings.Builder
	b.Grow(n)
	for i, s := range claims {
		if ct.source(i) == i {
			b.WriteString(s)
		}
	}
	ct.own = b.String()
}

// source is the index of the claim whose bytes in own claim i uses.
func (ct *cachedToken) source(i int) int { return int(ct.from>>(2*i)) & 3 }

// ownClaims returns the own claims, as views of own.
func (ct *cachedToken) ownClaims() (claims [numOwnClaims]string) {
	next := uint32(0)
	for i := range claims {
		if j := ct.source(i); j != i {
			claims[i] = claims[j] // equal, so of the same length
			continue
		}
		claims[i] = ct.own[next : next+ct.lens[i]]
		next += ct.lens[i]
	}
	return claims
}

// identity is the identity the token carries.
func (ct *cachedToken) identity() Identity {
	p := ct.parties.Value()
	own := ct.ownClaims()
	return Identity{
		Level: ct.level, TenantID: p.tenantID, TenantSlug: p.tenantSlug, Realm: p.realm, AuthorizedParty: p.azp,
		Subject: own[claimSub], PreferredUsername: own[claimPreferredUsername], Email: own[claimEmail],
		ExpiresAt: time.Unix(ct.expSec, int64(ct.expNsec)).UTC(),
	}
}

// size estimates what a cached token retains: the record, its own strings, its key and the
// cache's bookkeeping. The token's client and audiences count too although tokens share them:
// a token's claims are bounded only by MaxTokenBytes, and a token whose aud is its own must not
// hold more than its estimate. The tenant's id, slug and realm are the tenant's, bounded by the
// realm cache, and not counted. The cache is bounded in bytes by this, not by its entry count
// alone. TestCachedTokenSize compares it with a measurement.
func (ct *cachedToken) size() int64 {
	p := ct.parties.Value()
	return int64(unsafe.Sizeof(*ct)) + sha256.Size + cache.TTLEntryOverhead + int64(len(ct.own)+len(p.azp)+len(p.aud))
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
