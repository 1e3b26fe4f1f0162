package measure

import (
	"math"
	"slices"
	"testing"
)

func TestSummarizeOddAndEven(t *testing.T) {
	cases := []struct {
		name string
		xs   []float64
		want Summary
	}{
		{"single", []float64{7}, Summary{N: 1, Median: 7, Min: 7, Max: 7, P90: 7}},
		// Unsorted input; sorted: 1 2 3 4 5 → rank(p90) = 3.6 → 4 + 0.6*(5-4).
		{"odd", []float64{5, 1, 4, 2, 3}, Summary{N: 5, Median: 3, Min: 1, Max: 5, P90: 4.6}},
		// Sorted: 10 20 30 40 → median 25, rank(p90) = 2.7 → 30 + 0.7*10.
		{"even", []float64{40, 10, 30, 20}, Summary{N: 4, Median: 25, Min: 10, Max: 40, P90: 37}},
		// Boot times in ms as the benchmark produces them, with one outlier.
		{"boot-ms", []float64{54.1, 66.7, 58.8, 116.9, 60.2, 59.9, 61.0, 57.3, 62.4, 63.5},
			Summary{N: 10, Median: 60.6, Min: 54.1, Max: 116.9, P90: 71.72}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			orig := slices.Clone(c.xs)
			got, err := Summarize(c.xs)
			if err != nil {
				t.Fatalf("Summarize(%v): %v", c.xs, err)
			}
			if got.N != c.want.N || !near(got.Median, c.want.Median) || !near(got.Min, c.want.Min) ||
				!near(got.Max, c.want.Max) || !near(got.P90, c.want.P90) {
				t.Errorf("Summarize(%v) = %+v, want %+v", c.xs, got, c.want)
			}
			if !slices.Equal(orig, c.xs) {
				t.Errorf("Summarize modified its input: %v, was %v", c.xs, orig)
			}
		})
	}
}

func TestPercentileEnds(t *testing.T) {
	xs := []float64{3, 1, 2}
	for p, want := range map[float64]float64{0: 1, 100: 3, 50: 2, 25: 1.5, 75: 2.5} {
		got, err := Percentile(xs, p)
		if err != nil {
			t.Fatalf("Percentile(%v, %v): %v", xs, p, err)
		}
		if !near(got, want) {
			t.Errorf("Percentile(%v, %v) = %v, want %v", xs, p, got, want)
		}
	}
}

func TestStatsRejectBadInput(t *testing.T) {
	if _, err := Summarize(nil); err == nil {
		t.Error("Summarize(nil): no error")
	}
	if _, err := Summarize([]float64{1, math.NaN()}); err == nil {
		t.Error("Summarize with NaN: no error")
	}
	if _, err := Summarize([]float64{math.Inf(1)}); err == nil {
		t.Error("Summarize with +Inf: no error")
	}
	for _, p := range []float64{-1, 100.5, math.NaN()} {
		if _, err := Percentile([]float64{1, 2}, p); err == nil {
			t.Errorf("Percentile(p=%v): no error", p)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
