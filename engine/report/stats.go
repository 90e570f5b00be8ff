package report

import "math"

// Z95 is the standard normal quantile for a two-sided 95% interval,
// Φ⁻¹(0.975).
const Z95 = 1.959963984540054

// Wilson is the Wilson score interval for a binomial proportion x/n
// (Wilson 1927; method 3 of Newcombe 1998, "Two-sided confidence intervals
// for the single proportion", Stat Med 17:857), without continuity
// correction:
//
//	centre = (p̂ + z²/2n) / (1 + z²/n)
//	half   = z/(1 + z²/n) · √(p̂(1−p̂)/n + z²/4n²)
//	(l, u) = centre ∓ half
//
// Unlike the Wald interval it stays inside [0, 1], is not degenerate at
// x = 0 or x = n, and keeps close to nominal coverage for small n. With
// n = 0 nothing is known: (0, 1).
func Wilson(x, n int, z float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	nn := float64(n)
	p := float64(x) / nn
	z2 := z * z
	den := 1 + z2/nn
	centre := (p + z2/(2*nn)) / den
	half := z / den * math.Sqrt(p*(1-p)/nn+z2/(4*nn*nn))
	lo, hi = centre-half, centre+half
	// Exact bounds at the extremes (rounding could leave 1e-17).
	if x == 0 {
		lo = 0
	}
	if x == n {
		hi = 1
	}
	return max(lo, 0), min(hi, 1)
}

// Newcombe is the hybrid score interval for the difference of two
// independent proportions θ = p₁ − p₂, p₁ = x1/n1, p₂ = x2/n2 (method 10
// of Newcombe 1998, "Interval estimation for the difference between
// independent proportions: comparison of eleven methods", Stat Med
// 17:873). With (l₁, u₁) and (l₂, u₂) the Wilson intervals of each
// proportion:
//
//	δ = √((p₁ − l₁)² + (u₂ − p₂)²)
//	ε = √((u₁ − p₁)² + (p₂ − l₂)²)
//	(L, U) = (θ − δ, θ + ε)
//
// Newcombe writes δ = z·√(l₁(1−l₁)/n1 + u₂(1−u₂)/n2), which is the same
// number: a Wilson limit l satisfies (p − l)² = z²·l(1−l)/n. It is the
// "method of variance estimates recovery" (MOVER) applied to a difference:
// each arm contributes the distance from its estimate to the Wilson limit
// on the side that moves θ towards that end. Coverage is close to nominal
// even with small counts or rates near 0 or 1, where the Wald interval
// p₁ − p₂ ± z·SE fails. Worked example (Newcombe 1998, Table II):
// 56/70 − 48/80 = 0.2000, 95% CI 0.0524 to 0.3339.
func Newcombe(x1, n1, x2, n2 int, z float64) (diff, lo, hi float64) {
	p1, p2 := prop(x1, n1), prop(x2, n2)
	l1, u1 := Wilson(x1, n1, z)
	l2, u2 := Wilson(x2, n2, z)
	diff = p1 - p2
	lo = diff - math.Sqrt(sq(p1-l1)+sq(u2-p2))
	hi = diff + math.Sqrt(sq(u1-p1)+sq(p2-l2))
	return diff, max(lo, -1), min(hi, 1)
}

// RatioMOVER is the MOVER-R interval for the ratio of two independent
// proportions φ = p₁/p₂ built on the same Wilson intervals (Donner & Zou
// 2012, Stat Methods Med Res 21:347; Fagerland, Lydersen & Laake,
// "Statistical Analysis of Contingency Tables", 2017, chapter 4). φ is inside
// the interval when the MOVER interval for p₁ − φ·p₂ contains 0; solving
// (p₁ − φp₂)² = (p₁ − l₁)² + φ²(u₂ − p₂)² for the lower limit (and the
// mirror image for the upper) gives the closed forms
//
//	L = (p₁p₂ − √((p₁p₂)² − l₁u₂(2p₁ − l₁)(2p₂ − u₂))) / (u₂(2p₂ − u₂))
//	U = (p₁p₂ + √((p₁p₂)² − u₁l₂(2p₁ − u₁)(2p₂ − l₂))) / (l₂(2p₂ − l₂))
//
// Where arm 2 is so uncertain that u₂ > 2p₂ the first denominator is
// negative and the formula still gives the one positive root. A limit
// that does not exist (a negative discriminant, or U < 0) is taken as the
// widest possible: L = 0, U = +Inf, as Fagerland et al. do. ok is false
// when p₂ = 0: the ratio itself is undefined. Worked example (Fagerland et
// al., Perondi 2004): 7/34 vs 1/34 → 7.0000, 95% CI 1.1537 to 41.9763.
func RatioMOVER(x1, n1, x2, n2 int, z float64) (ratio, lo, hi float64, ok bool) {
	p1, p2 := prop(x1, n1), prop(x2, n2)
	if n1 <= 0 || n2 <= 0 || p2 == 0 {
		return 0, 0, math.Inf(1), false
	}
	l1, u1 := Wilson(x1, n1, z)
	l2, u2 := Wilson(x2, n2, z)
	ratio = p1 / p2
	b := p1 * p2
	lo = root(u2*(2*p2-u2), b, l1*(2*p1-l1), -1)
	if math.IsNaN(lo) || lo < 0 {
		lo = 0
	}
	hi = root(l2*(2*p2-l2), b, u1*(2*p1-u1), +1)
	if math.IsNaN(hi) || hi < 0 {
		hi = math.Inf(1)
	}
	return ratio, lo, hi, true
}

// root solves a·θ² − 2b·θ + c = 0 as (b + sign·√(b² − ac)) / a; with
// a = 0 the equation is linear. NaN when there is no real root.
func root(a, b, c, sign float64) float64 {
	if a == 0 {
		if b == 0 {
			return math.NaN()
		}
		return c / (2 * b)
	}
	disc := b*b - a*c
	if disc < 0 {
		return math.NaN()
	}
	return (b + sign*math.Sqrt(disc)) / a
}

func prop(x, n int) float64 {
	if n <= 0 {
		return 0
	}
	return float64(x) / float64(n)
}

func sq(x float64) float64 { return x * x }
