package decision

import (
	"hash/maphash"
	"math/bits"
	"unique"
)

// pairTable maps a (resource, action) key to its bucket. A request's segments never contain
// '*', so the keys (r, "*") and ("*", a) of the wildcard buckets never meet a request's exact
// key. It is open addressing over a power-of-two slot array at most half full, with the keys
// interned process-wide: about 30 bytes per key, where a Go map of raKey took about 120.
type pairTable struct {
	// slots: 0 is empty; else i+1 names keys[i] and spans[i]. In a table of fewer than
	// maxTagged keys, a slot's upper 16 bits are a tag from its key's hash, so a probe
	// compares strings only when the tags match.
	slots []uint32
	keys  []unique.Handle[raKey]
	spans []span
}

const maxTagged = 1<<16 - 1

func slotTag(h uint64) uint32 { return uint32(h>>48) << 16 }

var pairSeed = maphash.MakeSeed()

func pairHash(r, a string) uint64 {
	return combineHash(maphash.String(pairSeed, r), maphash.String(pairSeed, a))
}

func combineHash(hr, ha uint64) uint64 { return hr ^ bits.RotateLeft64(ha, 29) }

var starHash = maphash.String(pairSeed, "*")

// pairHashes are the hashes of a request's three keys, (r, a), (r, "*") and ("*", a): computed
// once per check and used in the tables of every part.
// rbit and abit are r's and a's bits in a part's key filters.
type pairHashes struct{ ra, rs, sa, rbit, abit uint64 }

func newPairHashes(r, a string) pairHashes {
	hr, ha := maphash.String(pairSeed, r), maphash.String(pairSeed, a)
	return pairHashes{
		ra: combineHash(hr, ha), rs: combineHash(hr, starHash), sa: combineHash(starHash, ha),
		rbit: segmentBit(hr), abit: segmentBit(ha),
	}
}

// newPairTable indexes distinct keys, keys[i] naming spans[i].
func newPairTable(keys []raKey, spans []span) pairTable {
	if len(keys) == 0 {
		return pairTable{}
	}
	t := pairTable{
		slots: make([]uint32, 1<<bits.Len(uint(2*len(keys)-1))),
		keys:  make([]unique.Handle[raKey], len(keys)),
		spans: spans,
	}
	mask := uint64(len(t.slots) - 1)
	tagged := len(keys) < maxTagged
	for i, k := range keys {
		t.keys[i] = unique.Make(k)
		h := pairHash(k.r, k.a)
		j := h & mask
		for t.slots[j] != 0 {
			j = (j + 1) & mask
		}
		t.slots[j] = uint32(i + 1)
		if tagged {
			t.slots[j] |= slotTag(h)
		}
	}
	return t
}

// find returns the bucket of (r, a), whose pairHash is h. It never allocates.
func (t *pairTable) find(h uint64, r, a string) (span, bool) {
	if len(t.slots) == 0 {
		return span{}, false
	}
	mask := uint64(len(t.slots) - 1)
	tagged, tag := len(t.keys) < maxTagged, slotTag(h)
	for j := h & mask; ; j = (j + 1) & mask {
		i := t.slots[j]
		if i == 0 {
			return span{}, false
		}
		if tagged {
			if i&^maxTagged != tag {
				continue
			}
			i &= maxTagged
		}
		if k := t.keys[i-1].Value(); k.r == r && k.a == a {
			return t.spans[i-1], true
		}
	}
}
