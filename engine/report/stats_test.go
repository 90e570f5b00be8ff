package report

import (
	"math"
	"math/rand/v2"
	"testing"
)

// close4 compares to the 4 decimals the papers print.
func close4(got, want float64) bool { return math.Abs(got-want) < 0.00005+1e-12 }

// Newcombe 1998 ("Two-sided confidence intervals for the single
// proportion", Stat Med 17:857), Table I, method 3 (Wilson score, no
// continuity correction).
func TestWilsonPublishedExamples(t *testing.T) {
	for _, c := range []struct {
		x, n   int
		lo, hi float64
	}{
		{81, 263, 0.2553, 0.3662},
		{15, 148, 0.0624, 0.1605},
		{0, 20, 0, 0.1611},
		{1, 29, 0.0061, 0.1718},
	} {
		lo, hi := Wilson(c.x, c.n, Z95)
		if !close4(lo, c.lo) || !close4(hi, c.hi) {
			t.Errorf("Wilson(%d/%d) = %.4f to %.4f, want %.4f to %.4f", c.x, c.n, lo, hi, c.lo, c.hi)
		}
	}
	if lo, hi := Wilson(0, 0, Z95); lo != 0 || hi != 1 {
		t.Errorf("Wilson(0/0) = %v to %v, want the whole of 0 to 1", lo, hi)
	}
}

// Newcombe 1998 ("Interval estimation for the difference between
// independent proportions: comparison of eleven methods", Stat Med
// 17:873), Table II, method 10; and Fagerland, Lydersen & Laake (2017) for
// Perondi et al. 2004.
func TestNewcombePublishedExamples(t *testing.T) {
	for _, c := range []struct {
		x1, n1, x2, n2 int
		diff, lo, hi   float64
	}{
		{56, 70, 48, 80, 0.2000, 0.0524, 0.3339},
		{9, 10, 3, 10, 0.6000, 0.1705, 0.8090},
		{5, 56, 0, 29, 0.0893, -0.0381, 0.1926},
		{0, 10, 0, 20, 0, -0.1611, 0.2775},
		{0, 10, 0, 10, 0, -0.2775, 0.2775},
		{10, 10, 0, 20, 1, 0.6791, 1},
		{10, 10, 0, 10, 1, 0.6075, 1},
		{7, 34, 1, 34, 0.1765, 0.0189, 0.3404},
	} {
		d, lo, hi := Newcombe(c.x1, c.n1, c.x2, c.n2, Z95)
		if !close4(d, c.diff) || !close4(lo, c.lo) || !close4(hi, c.hi) {
			t.Errorf("Newcombe(%d/%d − %d/%d) = %.4f (%.4f to %.4f), want %.4f (%.4f to %.4f)",
				c.x1, c.n1, c.x2, c.n2, d, lo, hi, c.diff, c.lo, c.hi)
		}
		// Swapping the arms mirrors the interval.
		d2, lo2, hi2 := Newcombe(c.x2, c.n2, c.x1, c.n1, Z95)
		if !close4(d2, -d) || !close4(lo2, -hi) || !close4(hi2, -lo) {
			t.Errorf("swapped %d/%d − %d/%d = %.4f (%.4f to %.4f), want the mirror image", c.x2, c.n2, c.x1, c.n1, d2, lo2, hi2)
		}
	}
}

func TestRatioMOVERPublishedExample(t *testing.T) {
	// Fagerland, Lydersen & Laake (2017), Perondi et al. 2004: 7/34 vs 1/34.
	r, lo, hi, ok := RatioMOVER(7, 34, 1, 34, Z95)
	if !ok || !close4(r, 7) || !close4(lo, 1.1537) || !close4(hi, 41.9763) {
		t.Fatalf("RatioMOVER(7/34, 1/34) = %.4f (%.4f to %.4f) ok=%v, want 7.0000 (1.1537 to 41.9763)", r, lo, hi, ok)
	}
	if _, _, _, ok := RatioMOVER(3, 10, 0, 10, Z95); ok {
		t.Fatal("a zero denominator rate must leave the ratio undefined")
	}
	// No events in arm 1: the estimate is 0 and the lower limit too.
	if r, lo, hi, ok := RatioMOVER(0, 16, 15, 72, Z95); !ok || r != 0 || lo != 0 || !(hi > 0 && hi < 2) {
		t.Fatalf("RatioMOVER(0/16, 15/72) = %v (%v to %v) ok=%v", r, lo, hi, ok)
	}
}

// TestIntervalsCoverage checks by simulation what the intervals promise:
// about 95% of them contain the true value (Newcombe reports 93–97% for
// method 10 over a wide range of parameters).
func TestIntervalsCoverage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const trials = 4000
	for _, c := range []struct {
		n1, n2 int
		p1, p2 float64
	}{
		{200, 800, 0.30, 0.10},
		{40, 160, 0.25, 0.15},
		{60, 60, 0.05, 0.05},
	} {
		hitD, hitR, validR := 0, 0, 0
		for range trials {
			x1, x2 := binom(rng, c.n1, c.p1), binom(rng, c.n2, c.p2)
			_, lo, hi := Newcombe(x1, c.n1, x2, c.n2, Z95)
			if lo <= c.p1-c.p2 && c.p1-c.p2 <= hi {
				hitD++
			}
			if _, rlo, rhi, ok := RatioMOVER(x2, c.n2, x1, c.n1, Z95); ok {
				validR++
				if rlo <= c.p2/c.p1 && c.p2/c.p1 <= rhi {
					hitR++
				}
			}
		}
		covD := float64(hitD) / trials
		covR := float64(hitR) / float64(validR)
		if covD < 0.92 || covD > 0.985 || covR < 0.92 || covR > 0.985 {
			t.Errorf("%+v: coverage difference %.3f, ratio %.3f; want about 0.95", c, covD, covR)
		}
	}
}

func binom(rng *rand.Rand, n int, p float64) int {
	x := 0
	for range n {
		if rng.Float64() < p {
			x++
		}
	}
	return x
}
