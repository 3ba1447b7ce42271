package zipf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Sampler draws ranks 0..n-1 where rank k has probability proportional to
// 1/(k+1)^s: rank 0 is the most popular. It is not safe for concurrent use.
type Sampler struct {
	cdf []float64 // cdf[k] = P(rank <= k); cdf[n-1] = 1
	rng *rand.Rand
}

// New returns a Sampler over n ranks with exponent s whose draws are fixed
// by seed. It returns an error unless n >= 1 and s > 0.
func New(n int, s float64, seed uint64) (*Sampler, error) {
	if n < 1 || !(s > 0) || math.IsInf(s, 0) {
		return nil, fmt.Errorf("zipf: New(n=%d, s=%g): need n >= 1 and finite s > 0", n, s)
	}
	cdf := make([]float64, n)
	sum := 0.0
	for k := range cdf {
		sum += math.Pow(float64(k+1), -s)
		cdf[k] = sum
	}
	for k := range cdf {
		cdf[k] /= sum
	}
	cdf[n-1] = 1
	return &Sampler{cdf: cdf, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}, nil
}

// Next returns the next rank.
func (z *Sampler) Next() int {
	u := z.rng.Float64()
	return sort.SearchFloat64s(z.cdf, u) // first k with cdf[k] >= u
}

// Trace returns the next m ranks.
func (z *Sampler) Trace(m int) []int32 {
	out := make([]int32, m)
	for i := range out {
		out[i] = int32(z.Next())
	}
	return out
}

// P returns the probability of rank k.
func (z *Sampler) P(k int) float64 {
	if k == 0 {
		return z.cdf[0]
	}
	return z.cdf[k] - z.cdf[k-1]
}
