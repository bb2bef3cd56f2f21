//! Statistics behind the metrics: Gaussian kernel density estimates (Scott's rule, as
//! `scipy.stats.gaussian_kde`), the overlapping area and KL divergence of two estimated densities,
//! and the closed-form overlapping area of two normal densities.

use std::f64::consts::{FRAC_2_SQRT_PI, SQRT_2};

/// Arithmetic mean; `None` for an empty slice.
pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Variance with `ddof` degrees of freedom removed (0: population, 1: sample); `None` if
/// there are not more than `ddof` values.
pub fn variance(xs: &[f64], ddof: usize) -> Option<f64> {
    if xs.len() <= ddof {
        return None;
    }
    let m = mean(xs)?;
    Some(xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - ddof) as f64)
}

/// Complementary error function, accurate to about 1e-15 (series below 3, continued fraction above).
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 3.0 {
        // erf(x) = 2/√π · e^{-x²} · Σ_n 2^n x^{2n+1} / (1·3·…·(2n+1)): all terms positive.
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term > sum * 1e-17 {
            n += 1.0;
            term *= 2.0 * x * x / (2.0 * n + 1.0);
            sum += term;
        }
        1.0 - FRAC_2_SQRT_PI * (-x * x).exp() * sum
    } else {
        // erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))), evaluated bottom-up.
        let mut tail = x;
        for k in (1..=120).rev() {
            tail = x + (k as f64 / 2.0) / tail;
        }
        FRAC_2_SQRT_PI / 2.0 * (-x * x).exp() / tail
    }
}

/// Standard normal cumulative distribution function.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / SQRT_2)
}

/// Overlapping area ∫ min(p, q) of the normal densities N(`mean1`, `var1`) and N(`mean2`, `var2`),
/// in closed form from the crossing points of the two densities. A zero variance is a point mass:
/// two equal point masses overlap fully (1), otherwise a point mass overlaps nothing (0).
pub fn normal_overlap(mean1: f64, var1: f64, mean2: f64, var2: f64) -> f64 {
    let (s1, s2) = (var1.max(0.0).sqrt(), var2.max(0.0).sqrt());
    if s1 == 0.0 || s2 == 0.0 {
        return if s1 == s2 && mean1 == mean2 { 1.0 } else { 0.0 };
    }
    if (s1 - s2).abs() <= 1e-12 * s1.max(s2) {
        // Equal widths cross once, half-way between the means.
        let s = 0.5 * (s1 + s2);
        return erfc((mean1 - mean2).abs() / (2.0 * SQRT_2 * s));
    }
    // Let density 1 be the narrower one: it is above density 2 between the two crossings.
    let (m1, v1, s1, m2, v2, s2) = if s1 < s2 {
        (mean1, var1, s1, mean2, var2, s2)
    } else {
        (mean2, var2, s2, mean1, var1, s1)
    };
    // log p1(x) = log p2(x)  ⇔  a x² + b x + c = 0.
    let a = 0.5 / v1 - 0.5 / v2;
    let b = m2 / v2 - m1 / v1;
    let c = 0.5 * m1 * m1 / v1 - 0.5 * m2 * m2 / v2 + (s1 / s2).ln();
    let disc = (b * b - 4.0 * a * c).max(0.0);
    let q = -0.5 * (b + b.signum() * disc.sqrt());
    let (r1, r2) = if q == 0.0 {
        let r = (-c / a).max(0.0).sqrt();
        (-r, r)
    } else {
        (q / a, c / q)
    };
    let (x1, x2) = (r1.min(r2), r1.max(r2));
    let below_1 = |x: f64| normal_cdf((x - m1) / s1);
    let above_1 = |x: f64| normal_cdf((m1 - x) / s1);
    let between_2 = normal_cdf((x2 - m2) / s2) - normal_cdf((x1 - m2) / s2);
    (below_1(x1) + between_2 + above_1(x2)).clamp(0.0, 1.0)
}

/// A one-dimensional Gaussian kernel density estimate with Scott's bandwidth, as
/// `scipy.stats.gaussian_kde(data)`: kernel standard deviation = sample std (ddof 1) · n^(-1/5).
#[derive(Clone, Debug)]
pub struct Kde {
    data: Vec<f64>,
    bandwidth: f64,
}

impl Kde {
    /// `None` for empty data or data with a non-finite value. Data whose spread is zero (or a single
    /// value) gives a point mass: bandwidth 0.
    pub fn scott(data: &[f64]) -> Option<Kde> {
        if data.is_empty() || data.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let m = mean(data)?;
        let std = variance(data, 1).map_or(0.0, f64::sqrt);
        let bandwidth = if std <= 1e-9 * m.abs().max(1.0) {
            0.0
        } else {
            std * (data.len() as f64).powf(-0.2)
        };
        Some(Kde {
            data: data.to_vec(),
            bandwidth,
        })
    }

    pub fn bandwidth(&self) -> f64 {
        self.bandwidth
    }

    pub fn data(&self) -> &[f64] {
        &self.data
    }

    pub fn is_point_mass(&self) -> bool {
        self.bandwidth == 0.0
    }

    /// The exact density at `x` (O(n)); infinite at a point mass.
    pub fn evaluate(&self, x: f64) -> f64 {
        if self.is_point_mass() {
            return if x == self.data[0] {
                f64::INFINITY
            } else {
                0.0
            };
        }
        let h = self.bandwidth;
        let norm = 1.0 / (self.data.len() as f64 * h * (2.0 * std::f64::consts::PI).sqrt());
        self.data
            .iter()
            .map(|d| (-0.5 * ((x - d) / h).powi(2)).exp())
            .sum::<f64>()
            * norm
    }

    /// The density on `grid` with kernel width `bandwidth`, by linear binning of the data and a
    /// discrete Gaussian convolution; normalised so that Σ density · step = 1.
    fn density_on(&self, grid: &Grid, bandwidth: f64) -> Vec<f64> {
        let mut bins = vec![0.0; grid.len];
        for &x in &self.data {
            let t = ((x - grid.start) / grid.step).clamp(0.0, (grid.len - 1) as f64);
            let i = (t.floor() as usize).min(grid.len - 2);
            let frac = t - i as f64;
            bins[i] += 1.0 - frac;
            bins[i + 1] += frac;
        }
        let half = ((6.0 * bandwidth / grid.step).ceil() as usize).max(1);
        let mut kernel: Vec<f64> = (0..=2 * half)
            .map(|j| {
                let z = (j as f64 - half as f64) * grid.step / bandwidth;
                (-0.5 * z * z).exp()
            })
            .collect();
        let kernel_sum: f64 = kernel.iter().sum();
        kernel.iter_mut().for_each(|k| *k /= kernel_sum);
        let mut density = vec![0.0; grid.len];
        for (i, &weight) in bins.iter().enumerate().filter(|(_, w)| **w > 0.0) {
            let lo = i.saturating_sub(half);
            let hi = (i + half).min(grid.len - 1);
            for (target, k) in density[lo..=hi]
                .iter_mut()
                .zip(&kernel[lo + half - i..=hi + half - i])
            {
                *target += weight * k;
            }
        }
        let total: f64 = density.iter().sum::<f64>() * grid.step;
        if total > 0.0 {
            density.iter_mut().for_each(|d| *d /= total);
        }
        density
    }
}

/// Evenly spaced evaluation points `start + i · step`, `i < len`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grid {
    pub start: f64,
    pub step: f64,
    pub len: usize,
}

impl Grid {
    pub fn x(&self, i: usize) -> f64 {
        self.start + i as f64 * self.step
    }
}

/// Fewest and most points of a common grid.
const MIN_GRID_POINTS: usize = 512;
const MAX_GRID_POINTS: usize = 1 << 18;
/// The KL divergence floors q at this fraction of its peak, so that disjoint densities give a
/// large finite value (about ln 1e10 ≈ 23) instead of infinity.
const KL_FLOOR: f64 = 1e-10;

/// Two estimated densities p and q on a common grid (or two point masses), for the overlapping
/// area and KL divergence of Yang & Lerch (2020).
#[derive(Clone, Debug)]
pub enum DensityPair {
    /// Both densities on the same grid, each summing to 1 / step.
    Curves {
        grid: Grid,
        p: Vec<f64>,
        q: Vec<f64>,
    },
    /// Both data sets had zero spread: point masses at these values.
    PointMasses { p_at: f64, q_at: f64 },
}

impl DensityPair {
    /// Estimate both densities. If one of them is a point mass (zero spread) and the other is not,
    /// the point mass is smoothed with the other's bandwidth, so that the overlap measures how far
    /// it sits from the other distribution. `None` if either data set is empty or non-finite.
    pub fn new(p_data: &[f64], q_data: &[f64]) -> Option<DensityPair> {
        let (p, q) = (Kde::scott(p_data)?, Kde::scott(q_data)?);
        let (hp, hq) = match (p.bandwidth, q.bandwidth) {
            (0.0, 0.0) => {
                return Some(DensityPair::PointMasses {
                    p_at: p.data[0],
                    q_at: q.data[0],
                });
            }
            (0.0, h) | (h, 0.0) => (h, h),
            (hp, hq) => (hp, hq),
        };
        let (h_min, h_max) = (hp.min(hq), hp.max(hq));
        let all = p.data.iter().chain(&q.data);
        let lo = all.clone().fold(f64::INFINITY, |a, &b| a.min(b)) - 7.0 * h_max;
        let hi = all.fold(f64::NEG_INFINITY, |a, &b| a.max(b)) + 7.0 * h_max;
        let wanted = ((hi - lo) / (h_min / 8.0)).ceil() as usize + 1;
        let len = wanted.clamp(MIN_GRID_POINTS, MAX_GRID_POINTS);
        let grid = Grid {
            start: lo,
            step: (hi - lo) / (len - 1) as f64,
            len,
        };
        Some(DensityPair::Curves {
            p: p.density_on(&grid, hp),
            q: q.density_on(&grid, hq),
            grid,
        })
    }

    /// ∫ min(p, q) dx, between 0 (disjoint) and 1 (identical). Point masses: 1 if at the same
    /// value, else 0.
    pub fn overlap_area(&self) -> f64 {
        match self {
            DensityPair::Curves { grid, p, q } => {
                let area: f64 = p.iter().zip(q).map(|(a, b)| a.min(*b)).sum::<f64>() * grid.step;
                area.clamp(0.0, 1.0)
            }
            DensityPair::PointMasses { p_at, q_at } => {
                if same_value(*p_at, *q_at) {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// KL(p ‖ q) = ∫ p ln(p / q) dx on the grid, with q floored at 1e-10 of its peak. Point
    /// masses: 0 if at the same value, else ln 1e10.
    pub fn kl_divergence(&self) -> f64 {
        match self {
            DensityPair::Curves { grid, p, q } => {
                let floor = KL_FLOOR * q.iter().fold(0.0f64, |a, &b| a.max(b));
                let kl: f64 = p
                    .iter()
                    .zip(q)
                    .filter(|(a, _)| **a > 0.0)
                    .map(|(a, b)| a * (a / b.max(floor)).ln())
                    .sum::<f64>()
                    * grid.step;
                kl.max(0.0)
            }
            DensityPair::PointMasses { p_at, q_at } => {
                if same_value(*p_at, *q_at) {
                    0.0
                } else {
                    -KL_FLOOR.ln()
                }
            }
        }
    }
}

fn same_value(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_reference_values() {
        let cases = [
            (0.0, 1.0),
            (0.5, 1.0 - 0.520_499_877_813_046_5),
            (1.0, 1.0 - 0.842_700_792_949_714_9),
            (2.0, 1.0 - 0.995_322_265_018_952_7),
            (3.0, 2.209_049_699_858_544e-5),
            (5.0, 1.537_459_794_428_034_8e-12),
            (-1.0, 1.842_700_792_949_715),
        ];
        for (x, want) in cases {
            let got = erfc(x);
            assert!(
                (got - want).abs() <= 1e-14_f64.max(want * 1e-10),
                "erfc({x}) = {got}, want {want}"
            );
        }
        assert!((normal_cdf(1.959_963_984_540_054) - 0.975).abs() < 1e-12);
    }

    #[test]
    fn normal_overlap_of_identical_normals_is_one_and_of_distant_ones_zero() {
        assert_eq!(normal_overlap(60.0, 4.0, 60.0, 4.0), 1.0);
        assert!(normal_overlap(0.0, 1.0, 40.0, 1.0) < 1e-12);
        assert!(normal_overlap(0.0, 1.0, 40.0, 9.0) < 1e-12);
        assert_eq!(normal_overlap(3.0, 0.0, 3.0, 0.0), 1.0);
        assert_eq!(normal_overlap(3.0, 0.0, 4.0, 0.0), 0.0);
    }

    #[test]
    fn normal_overlap_matches_numeric_integration() {
        let pdf = |x: f64, m: f64, v: f64| {
            (-(x - m) * (x - m) / (2.0 * v)).exp() / (2.0 * std::f64::consts::PI * v).sqrt()
        };
        for &(m1, v1, m2, v2) in &[
            (0.0, 1.0, 1.0, 1.0),
            (0.0, 1.0, 0.5, 4.0),
            (62.0, 9.0, 65.0, 0.5),
            (2.0, 0.3, 2.0, 3.0),
        ] {
            let (lo, hi, n) = (-40.0, 110.0, 600_000);
            let dx = (hi - lo) / n as f64;
            let numeric: f64 = (0..n)
                .map(|i| {
                    let x = lo + (i as f64 + 0.5) * dx;
                    pdf(x, m1, v1).min(pdf(x, m2, v2))
                })
                .sum::<f64>()
                * dx;
            let closed = normal_overlap(m1, v1, m2, v2);
            assert!(
                (closed - numeric).abs() < 1e-6,
                "{m1},{v1} vs {m2},{v2}: {closed} vs {numeric}"
            );
            assert!((closed - normal_overlap(m2, v2, m1, v1)).abs() < 1e-12);
        }
    }

    #[test]
    fn scott_bandwidth_and_kde_integrate_like_scipy() {
        let data = [1.0, 2.0, 2.5, 4.0, 7.0, 7.5, 8.0];
        let kde = Kde::scott(&data).unwrap();
        let std = variance(&data, 1).unwrap().sqrt();
        assert!((kde.bandwidth() - std * 7f64.powf(-0.2)).abs() < 1e-12);
        // Trapezoidal integral of the exact density over a wide range.
        let (lo, hi, n) = (-30.0, 40.0, 20_000);
        let dx = (hi - lo) / n as f64;
        let integral: f64 = (0..=n)
            .map(|i| {
                let w = if i == 0 || i == n { 0.5 } else { 1.0 };
                w * kde.evaluate(lo + i as f64 * dx)
            })
            .sum::<f64>()
            * dx;
        assert!((integral - 1.0).abs() < 1e-9, "integral {integral}");
    }

    #[test]
    fn binned_density_agrees_with_the_exact_kde() {
        let data: Vec<f64> = (0..500).map(|i| ((i * 37) % 101) as f64 / 10.0).collect();
        let other: Vec<f64> = data.iter().map(|x| x * 1.3 + 2.0).collect();
        let pair = DensityPair::new(&data, &other).unwrap();
        let DensityPair::Curves { grid, p, q } = &pair else {
            panic!("expected curves")
        };
        let (kp, kq) = (Kde::scott(&data).unwrap(), Kde::scott(&other).unwrap());
        let peak = p.iter().fold(0.0f64, |a, &b| a.max(b));
        for i in (0..grid.len).step_by(7) {
            let x = grid.x(i);
            assert!((p[i] - kp.evaluate(x)).abs() < 2e-3 * peak, "p at {x}");
            assert!((q[i] - kq.evaluate(x)).abs() < 2e-3 * peak, "q at {x}");
        }
        let sum_p: f64 = p.iter().sum::<f64>() * grid.step;
        assert!((sum_p - 1.0).abs() < 1e-12);
    }

    #[test]
    fn overlap_and_kl_of_identical_shifted_and_degenerate_data() {
        let data: Vec<f64> = (0..200).map(|i| (i as f64 * 0.618).fract() * 4.0).collect();
        let same = DensityPair::new(&data, &data).unwrap();
        assert!((same.overlap_area() - 1.0).abs() < 1e-12);
        assert!(same.kl_divergence().abs() < 1e-12);
        let far: Vec<f64> = data.iter().map(|x| x + 100.0).collect();
        let apart = DensityPair::new(&data, &far).unwrap();
        assert!(apart.overlap_area() < 1e-6);
        assert!(apart.kl_divergence() > 20.0);
        let zeros = [0.0; 10];
        let pm = DensityPair::new(&zeros, &zeros).unwrap();
        assert_eq!((pm.overlap_area(), pm.kl_divergence()), (1.0, 0.0));
        let ones = [1.0; 5];
        assert_eq!(DensityPair::new(&zeros, &ones).unwrap().overlap_area(), 0.0);
        // A point mass next to a spread distribution borrows its bandwidth: partial overlap.
        let mixed = DensityPair::new(&[2.0; 20], &data).unwrap().overlap_area();
        assert!(mixed > 0.1 && mixed < 0.9, "{mixed}");
        assert!(DensityPair::new(&[], &data).is_none());
    }
}
