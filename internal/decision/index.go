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
	slots []uint32 // 0: empty; i+1: keys[i] and spans[i]
	keys  []unique.Handle[raKey]
	spans []span
}

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
	for i, k := range keys {
		t.keys[i] = unique.Make(k)
		j := pairHash(k.r, k.a) & mask
		for t.slots[j] != 0 {
			j = (j + 1) & mask
		}
		t.slots[j] = uint32(i + 1)
	}
	return t
}

// find returns the bucket of (r, a), whose pairHash is h. It never allocates.
func (t *pairTable) find(h uint64, r, a string) (span, bool) {
	if len(t.slots) == 0 {
		return span{}, false
	}
	mask := uint64(len(t.slots) - 1)
	for j := h & mask; ; j = (j + 1) & mask {
		i := t.slots[j]
		if i == 0 {
			return span{}, false
		}
		if k := t.keys[i-1].Value(); k.r == r && k.a == a {
			return t.spans[i-1], true
		}
	}
}
