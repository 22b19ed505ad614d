package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Histogram is a fixed-size log-linear latency histogram in nanoseconds, HDR-style: values
// below 256 ns have buckets of 1 ns, and every power of two above is split into 128 buckets,
// so a reported percentile is within 1/128 (< 0.8%) of a recorded value. Recording is a few
// instructions and no allocation, which matters because a worker records every request and
// a sample slice of millions of requests would both allocate and need sorting.
type Histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	min, max int64
	sum      float64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // buckets per power of two
	// The largest int64 has bits.Len64 = 63: shift 55, mantissa < 256.
	histBuckets = (64-histSubBits-1)*histSub + 2*histSub
)

func bucketOf(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	return shift*histSub + int(v>>shift)
}

// bucketRange returns the lowest value of bucket i and the bucket's width.
func bucketRange(i int) (low, width uint64) {
	if i < 2*histSub {
		return uint64(i), 1
	}
	shift := i/histSub - 1
	mantissa := uint64(i - shift*histSub)
	return mantissa << shift, 1 << shift
}

// Record adds one latency; negative values count as 0.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(uint64(v))]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest recorded value.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the arithmetic mean.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the q-quantile (0 < q ≤ 1): the value at rank ceil(q·n), as the middle of
// its bucket, clamped to the recorded min and max; the top rank is the exact max.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(1, min(rank, h.n))
	if rank == h.n {
		return time.Duration(h.max)
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			low, width := bucketRange(i)
			v := int64(low + (width-1)/2)
			return time.Duration(max(h.min, min(v, h.max)))
		}
	}
	return time.Duration(h.max)
}
