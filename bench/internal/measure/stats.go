// Package measure starts VMM processes, times their boot to a console marker,
// reads their memory use from /proc/PID/smaps and summarises samples.
package measure

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Summary holds the order statistics the benchmark reports for one sample.
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	P90    float64 `json:"p90"`
}

// Summarize returns the median, minimum, maximum and 90th percentile of xs.
// It does not modify xs.
func Summarize(xs []float64) (Summary, error) {
	s, err := sortedCopy(xs)
	if err != nil {
		return Summary{}, fmt.Errorf("summarize: %w", err)
	}
	return Summary{
		N:      len(s),
		Median: percentileSorted(s, 50),
		Min:    s[0],
		Max:    s[len(s)-1],
		P90:    percentileSorted(s, 90),
	}, nil
}

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of xs, interpolating
// linearly between the two closest ranks (the method of NumPy's default and
// of a textbook median), so Percentile(xs, 50) is the median.
// It does not modify xs.
func Percentile(xs []float64, p float64) (float64, error) {
	if math.IsNaN(p) || p < 0 || p > 100 {
		return 0, fmt.Errorf("percentile: p = %v is outside [0, 100]", p)
	}
	s, err := sortedCopy(xs)
	if err != nil {
		return 0, fmt.Errorf("percentile: %w", err)
	}
	return percentileSorted(s, p), nil
}

func sortedCopy(xs []float64) ([]float64, error) {
	if len(xs) == 0 {
		return nil, errors.New("empty sample")
	}
	for i, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("sample %d is %v", i, x)
		}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s, nil
}

// percentileSorted expects a non-empty sorted slice and 0 ≤ p ≤ 100.
func percentileSorted(s []float64, p float64) float64 {
	rank := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	return s[lo] + (s[hi]-s[lo])*(rank-float64(lo))
}
