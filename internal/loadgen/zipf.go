package loadgen

import "math/rand/v2"

// ZipfS is the Zipf exponent of user popularity: a few users make most of the traffic, with
// a long tail, as in real multi-tenant SaaS traffic.
const ZipfS = 1.1

// Picker draws indexes in [0, n) with a Zipf distribution over popularity ranks, mapped through
// a permutation so that the hottest users are not all in the first tenant. A Picker is not safe
// for concurrent use: each worker has its own, seeded differently.
type Picker struct {
	rng  *rand.Rand
	zipf *rand.Zipf
	perm []int32
}

// NewPicker returns a Picker over perm (rank → index; see Permutation) whose random stream is
// determined by seed and stream.
func NewPicker(perm []int32, seed, stream uint64) *Picker {
	rng := rand.New(rand.NewPCG(seed, stream))
	return &Picker{rng: rng, zipf: rand.NewZipf(rng, ZipfS, 1, uint64(len(perm)-1)), perm: perm}
}

// Next returns the next index.
func (p *Picker) Next() int { return int(p.perm[p.zipf.Uint64()]) }

// Rand returns the picker's random source, for the worker's other choices.
func (p *Picker) Rand() *rand.Rand { return p.rng }

// Permutation returns a random permutation of [0, n) determined by seed: the popularity rank
// → user mapping, the same in every run so cold and warm phases see the same hot users.
func Permutation(n int, seed uint64) []int32 {
	perm := make([]int32, n)
	for i := range perm {
		perm[i] = int32(i)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	rng.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
	return perm
}
