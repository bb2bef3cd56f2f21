//! Bootstrap over windows: 95% percentile intervals and paired comparisons.
//!
//! Every row of an evaluation is scored on the same windows, so one set of resamples (window
//! indices drawn with replacement, seeded) serves every row and metric: replicate k of two rows
//! uses the same windows, which makes their difference a paired comparison. Reports store the
//! resample seed, so two reports of the same windows can be compared the same way.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Replicates drawn for every interval and comparison.
pub const REPLICATES: usize = 400;

/// Window indices drawn with replacement: `indices[replicate][k]`.
#[derive(Clone, Debug)]
pub struct Resamples {
    pub indices: Vec<Vec<usize>>,
}

impl Resamples {
    pub fn new(windows: usize, replicates: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0b00_57a9);
        let indices = (0..replicates)
            .map(|_| {
                (0..windows)
                    .map(|_| rng.random_range(0..windows.max(1)))
                    .collect()
            })
            .collect();
        Self { indices }
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// A number with its 95% interval, and how many windows it rests on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub value: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    pub n: usize,
}

impl Interval {
    /// `0.123 [0.101, 0.140]`, or `-` without a value.
    pub fn cell(&self) -> String {
        match (self.value, self.lo, self.hi) {
            (Some(v), Some(lo), Some(hi)) => format!("{v:.3} [{lo:.3}, {hi:.3}]"),
            (Some(v), _, _) => format!("{v:.3}"),
            _ => "-".into(),
        }
    }
}

/// The mean of `values`; `None` when there is none.
pub(crate) fn mean_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// The finite ones of `replicates`, sorted; `None` when there is none.
pub(crate) fn sorted_finite(replicates: &[f64]) -> Option<Vec<f64>> {
    let mut sorted: Vec<f64> = replicates
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    sorted.sort_by(f64::total_cmp);
    (!sorted.is_empty()).then_some(sorted)
}

/// The 2.5th and 97.5th percentiles of `replicates` (non-finite ones left out).
pub fn percentiles(replicates: &[f64]) -> (Option<f64>, Option<f64>) {
    let Some(sorted) = sorted_finite(replicates) else {
        return (None, None);
    };
    let at =
        |q: f64| sorted[((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)];
    (Some(at(0.025)), Some(at(0.975)))
}

/// The mean of the windows' values (`None` = no value for that window) with its interval.
pub fn mean_interval(values: &[Option<f64>], resamples: &Resamples) -> Interval {
    let value = mean_of(values.iter().flatten().copied());
    let replicates: Vec<f64> = resamples
        .indices
        .iter()
        .filter_map(|idx| mean_of(idx.iter().filter_map(|&i| values.get(i).copied().flatten())))
        .collect();
    let (lo, hi) = percentiles(&replicates);
    Interval {
        value,
        lo,
        hi,
        n: values.iter().flatten().count(),
    }
}

/// The outcome of comparing A with B on one metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Better,
    Worse,
    NoDifference,
    /// Too few windows with a value in both.
    Unknown,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NoDifference => "no difference",
            Verdict::Unknown => "-",
        }
    }
}

/// Verdict from bootstrap replicates of loss(A) − loss(B): A is better when the whole 95%
/// interval is below 0, worse when above.
pub fn verdict_from_differences(differences: &[f64]) -> Verdict {
    match percentiles(differences) {
        (Some(_), Some(hi)) if hi < 0.0 => Verdict::Better,
        (Some(lo), Some(_)) if lo > 0.0 => Verdict::Worse,
        (Some(_), Some(_)) => Verdict::NoDifference,
        _ => Verdict::Unknown,
    }
}

/// Paired bootstrap of per-window losses (lower is better) of A and B, over the windows where
/// both have a value.
pub fn paired_verdict(
    loss_a: &[Option<f64>],
    loss_b: &[Option<f64>],
    resamples: &Resamples,
) -> Verdict {
    let differences: Vec<Option<f64>> = loss_a
        .iter()
        .zip(loss_b)
        .map(|(a, b)| Some((*a)? - (*b)?))
        .collect();
    if differences.iter().flatten().count() < 2 {
        return Verdict::Unknown;
    }
    let replicates: Vec<f64> = resamples
        .indices
        .iter()
        .filter_map(|idx| {
            mean_of(
                idx.iter()
                    .filter_map(|&i| differences.get(i).copied().flatten()),
            )
        })
        .collect();
    verdict_from_differences(&replicates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_holds_the_mean_and_narrows_with_more_windows() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let draw = |n: usize, rng: &mut ChaCha8Rng| -> Vec<Option<f64>> {
            (0..n).map(|_| Some(rng.random::<f64>())).collect()
        };
        let small = draw(20, &mut rng);
        let large = draw(500, &mut rng);
        let a = mean_interval(&small, &Resamples::new(20, REPLICATES, 0));
        let b = mean_interval(&large, &Resamples::new(500, REPLICATES, 0));
        for i in [a, b] {
            assert!(i.lo.unwrap() <= i.value.unwrap() && i.value.unwrap() <= i.hi.unwrap());
        }
        assert!(b.hi.unwrap() - b.lo.unwrap() < 0.5 * (a.hi.unwrap() - a.lo.unwrap()));
        // Uniform(0, 1) over 500 windows: the mean is 0.5 within a few hundredths.
        assert!(
            b.lo.unwrap() < 0.5 + 0.05 && b.hi.unwrap() > 0.5 - 0.05,
            "{b:?}"
        );
        // Missing values are left out, not counted as zero.
        let gappy = vec![Some(1.0), None, Some(1.0)];
        assert_eq!(
            mean_interval(&gappy, &Resamples::new(3, 50, 1)).value,
            Some(1.0)
        );
    }

    #[test]
    fn paired_verdicts_find_a_clear_difference_and_no_difference_between_equals() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let base: Vec<f64> = (0..200).map(|_| rng.random::<f64>()).collect();
        let a: Vec<Option<f64>> = base.iter().map(|&x| Some(x)).collect();
        let better: Vec<Option<f64>> = base.iter().map(|&x| Some(x - 0.1)).collect();
        let noisy: Vec<Option<f64>> = base
            .iter()
            .map(|&x| Some(x + 0.02 * (rng.random::<f64>() - 0.5)))
            .collect();
        let r = Resamples::new(200, REPLICATES, 0);
        assert_eq!(paired_verdict(&better, &a, &r), Verdict::Better);
        assert_eq!(paired_verdict(&a, &better, &r), Verdict::Worse);
        assert_eq!(paired_verdict(&a, &a, &r), Verdict::NoDifference);
        assert_eq!(paired_verdict(&noisy, &a, &r), Verdict::NoDifference);
        assert_eq!(paired_verdict(&[None; 200], &a, &r), Verdict::Unknown);
    }
}
