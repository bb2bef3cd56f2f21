//! Set metrics on the generated parts only: Yang & Lerch's overlapping areas and Mittal et
//! al.'s consistency and variance, with bootstrap replicates over windows.
//!
//! Each row's set is its generated parts (one clip per window and seed, the region's notes
//! only, cut to the region and moved onto one pitched track so that the track-reading features
//! compare music, not track assignment); the reference set is the true holes of the same
//! windows. Differences from [`crate::metrics::yang_lerch`]'s table:
//! - identical pairs are kept in the inter-set distances (a copy of the reference is not
//!   rewarded by leaving its zero distances out);
//! - both OAs are reported, OA(intra-reference, inter) and OA(intra-generated, inter), and each
//!   feature's score is their mean; the mean OA is a summary of those, not a score of its own;
//! - Mittal's windows are 1 bar with a 1-bar hop, inside the region.
//!
//! Replicate k draws the windows of resample k (the same for every row) and, for a row with
//! several seeds, one seed per drawn window; pairs of a clip with itself are left out.

use super::Case;
use super::bootstrap::{Interval, Resamples, percentiles};
use crate::metrics::features::{ClipFeatures, Feature};
use crate::metrics::mittal::{relative_agreement, window_overlaps_with};
use crate::metrics::stats::{self, DensityPair};
use crate::metrics::yang_lerch::euclidean;
use crate::music::{Clip, Note, Track, TrackRole};

/// Replicates used for set metrics (the first ones of the shared resamples).
pub const SET_REPLICATES: usize = 100;
/// Most clips per set for the point estimate's pairwise distances.
const MAX_CLIPS: usize = 300;

/// The names of the set metrics, in table order.
pub fn names() -> Vec<String> {
    let mut out: Vec<String> = Feature::ALL
        .iter()
        .map(|f| format!("set: OA {}", f.name()))
        .collect();
    out.extend(
        [
            "set: mean OA",
            "set: mean OA to reference",
            "set: mean OA to generated",
            "set: pitch consistency",
            "set: pitch variance",
            "set: duration consistency",
            "set: duration variance",
        ]
        .map(String::from),
    );
    out
}

/// The generated part of `output` for `case` as a clip of its own: the region's notes, moved
/// to start at the region, cut at its end, on one pitched track.
pub fn part_clip(case: &Case, notes: &[Note]) -> Clip {
    let spb = case.truth.steps_per_bar().max(1);
    let (lo, hi) = (case.region.steps.start, case.region.steps.end);
    let mut clip = Clip {
        notes: Vec::new(),
        tracks: vec![Track::new("Part", TrackRole::Accompaniment, 0)],
        bars: (hi - lo).div_ceil(spb).max(1),
        tempo_changes: Vec::new(),
        meter_changes: Vec::new(),
        ..case.truth.clone()
    };
    clip.notes = notes
        .iter()
        .map(|n| Note {
            start: n.start - lo,
            length: n.length.min(hi - n.start).max(1),
            track: 0,
            ..*n
        })
        .collect();
    clip.sort_notes();
    clip
}

/// Per-clip inputs of the set metrics.
struct ClipStats {
    features: Vec<Vec<f64>>,
    pitch_overlaps: Vec<f64>,
    duration_overlaps: Vec<f64>,
}

impl ClipStats {
    fn of(clip: &Clip) -> Self {
        let f = ClipFeatures::of(clip);
        let (pitch_overlaps, duration_overlaps) = window_overlaps_with(clip, 1, 1);
        Self {
            features: Feature::ALL.iter().map(|&x| f.vector(x)).collect(),
            pitch_overlaps,
            duration_overlaps,
        }
    }
}

/// The set metrics of one selection: `reference[i]` and `generated[j]` index the clip lists.
fn scores_of(
    reference: &[&ClipStats],
    generated: &[&ClipStats],
    ref_ids: &[usize],
    gen_ids: &[usize],
) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    let (mut to_reference, mut to_generated) = (Vec::new(), Vec::new());
    for f in 0..Feature::ALL.len() {
        let intra = |set: &[&ClipStats], ids: &[usize]| {
            let mut d = Vec::with_capacity(set.len() * set.len() / 2);
            for a in 0..set.len() {
                for b in a + 1..set.len() {
                    if ids[a] != ids[b] {
                        d.push(euclidean(&set[a].features[f], &set[b].features[f]));
                    }
                }
            }
            d
        };
        let intra_reference = intra(reference, ref_ids);
        let intra_generated = intra(generated, gen_ids);
        let mut inter = Vec::with_capacity(reference.len() * generated.len());
        for r in reference {
            for g in generated {
                inter.push(euclidean(&r.features[f], &g.features[f]));
            }
        }
        let oa = |a: &[f64]| DensityPair::new(a, &inter).map(|p| p.overlap_area());
        let (r, g) = (oa(&intra_reference), oa(&intra_generated));
        to_reference.push(r);
        to_generated.push(g);
        out.push(r.zip(g).map(|(r, g)| 0.5 * (r + g)));
    }
    let mean = |xs: &[Option<f64>]| stats::mean(&xs.iter().flatten().copied().collect::<Vec<_>>());
    out.push(mean(&out.clone()));
    out.push(mean(&to_reference));
    out.push(mean(&to_generated));
    let pooled = |set: &[&ClipStats], pitch: bool| -> Option<(f64, f64)> {
        let all: Vec<f64> = set
            .iter()
            .flat_map(|c| {
                if pitch {
                    &c.pitch_overlaps
                } else {
                    &c.duration_overlaps
                }
            })
            .copied()
            .collect();
        Some((stats::mean(&all)?, stats::variance(&all, 0)?))
    };
    for pitch in [true, false] {
        let both = pooled(reference, pitch).zip(pooled(generated, pitch));
        out.push(both.map(|(r, g)| relative_agreement(r.0, g.0)));
        out.push(both.map(|(r, g)| relative_agreement(r.1, g.1)));
    }
    out
}

/// A row's set metrics: the point estimate over every clip (capped) and the replicates.
#[derive(Clone, Debug)]
pub struct SetScores {
    pub point: Vec<Option<f64>>,
    /// `[metric][replicate]` (NaN where the replicate had no value).
    pub replicates: Vec<Vec<f64>>,
}

impl SetScores {
    /// 95% intervals around the point estimates. A set metric of a resampled set is biased (a
    /// resample repeats windows, so its pairs hold more identical clips than the set's), so the
    /// replicates' percentiles are moved by the distance from their median to the point
    /// estimate; every set metric lies in [0, 1] and so does its interval.
    pub fn intervals(&self) -> Vec<Interval> {
        self.point
            .iter()
            .zip(&self.replicates)
            .map(|(&value, reps)| {
                let (lo, hi) = match (value, percentiles(reps), median(reps)) {
                    (Some(v), (Some(lo), Some(hi)), Some(m)) => (
                        Some((v + lo - m).clamp(0.0, 1.0)),
                        Some((v + hi - m).clamp(0.0, 1.0)),
                    ),
                    _ => (None, None),
                };
                Interval {
                    value,
                    lo,
                    hi,
                    n: 0,
                }
            })
            .collect()
    }
}

fn median(replicates: &[f64]) -> Option<f64> {
    let sorted = super::bootstrap::sorted_finite(replicates)?;
    Some(sorted[sorted.len() / 2])
}

/// Set metrics of `generated[window][seed]` against `reference[window]` (a row without a clip
/// for some windows, such as a short set of other songs, leaves them out).
pub fn set_scores(reference: &[Clip], generated: &[Vec<Clip>], resamples: &Resamples) -> SetScores {
    let reference: Vec<ClipStats> = reference.iter().map(ClipStats::of).collect();
    let generated: Vec<Vec<ClipStats>> = generated
        .iter()
        .map(|clips| clips.iter().map(ClipStats::of).collect())
        .collect();
    // Point estimate: every window, every seed, capped by an even stride.
    let pick = |n: usize| -> Vec<usize> {
        let stride = n.div_ceil(MAX_CLIPS).max(1);
        (0..n).step_by(stride).collect()
    };
    let ref_ids = pick(reference.len());
    let flat: Vec<(usize, &ClipStats)> = generated
        .iter()
        .enumerate()
        .flat_map(|(w, clips)| clips.iter().map(move |c| (w, c)))
        .collect();
    let gen_ids = pick(flat.len());
    let point = scores_of(
        &ref_ids.iter().map(|&i| &reference[i]).collect::<Vec<_>>(),
        &gen_ids.iter().map(|&i| flat[i].1).collect::<Vec<_>>(),
        &ref_ids,
        &gen_ids,
    );
    let mut replicates = vec![Vec::new(); point.len()];
    for (k, idx) in resamples.indices.iter().take(SET_REPLICATES).enumerate() {
        let (mut refs, mut gens, mut ref_ids, mut gen_ids) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (j, &w) in idx.iter().enumerate() {
            if let Some(r) = reference.get(w) {
                refs.push(r);
                ref_ids.push(w);
            }
            if let Some(clips) = generated.get(w).filter(|c| !c.is_empty()) {
                let seed = (k + j) % clips.len();
                gens.push(&clips[seed]);
                gen_ids.push(w * 1024 + seed);
            }
        }
        for (m, value) in scores_of(&refs, &gens, &ref_ids, &gen_ids)
            .into_iter()
            .enumerate()
        {
            replicates[m].push(value.unwrap_or(f64::NAN));
        }
    }
    SetScores { point, replicates }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::bootstrap::REPLICATES;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_clips(n: usize, lo: u8, spread: u8, seed: u64) -> Vec<Clip> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let mut clip = Clip::new(2);
                let count = rng.random_range(4..12);
                for _ in 0..count {
                    let start = rng.random_range(0..28);
                    let length = [1, 2, 4, 8][rng.random_range(0..4)];
                    clip.notes.push(Note::new(
                        start,
                        lo + rng.random_range(0..spread),
                        length,
                        90,
                        0,
                    ));
                }
                clip.sort_notes();
                clip
            })
            .collect()
    }

    #[test]
    fn a_set_like_the_reference_scores_higher_than_a_foreign_one_and_intervals_hold_it() {
        let reference = random_clips(60, 60, 12, 1);
        let like: Vec<Vec<Clip>> = random_clips(60, 60, 12, 2)
            .into_iter()
            .map(|c| vec![c])
            .collect();
        let foreign: Vec<Vec<Clip>> = random_clips(60, 30, 48, 3)
            .into_iter()
            .map(|c| vec![c])
            .collect();
        let resamples = Resamples::new(60, REPLICATES, 0);
        let a = set_scores(&reference, &like, &resamples);
        let b = set_scores(&reference, &foreign, &resamples);
        let mean_oa = names().iter().position(|n| n == "set: mean OA").unwrap();
        let (a_oa, b_oa) = (a.point[mean_oa].unwrap(), b.point[mean_oa].unwrap());
        assert!(a_oa > 0.8 && b_oa < a_oa - 0.1, "{a_oa} vs {b_oa}");
        let i = a.intervals()[mean_oa];
        assert!(
            i.lo.unwrap() < a_oa + 0.05 && i.hi.unwrap() > a_oa - 0.05,
            "{i:?}"
        );
        assert_eq!(a.replicates[mean_oa].len(), SET_REPLICATES);
        // The reference against itself: identical pairs are kept, so the OA is not exactly 1,
        // but the Mittal scores are.
        let itself: Vec<Vec<Clip>> = reference.iter().map(|c| vec![c.clone()]).collect();
        let s = set_scores(&reference, &itself, &resamples);
        assert!(s.point[mean_oa].unwrap() > 0.9);
        let consistency = names()
            .iter()
            .position(|n| n == "set: pitch consistency")
            .unwrap();
        assert_eq!(s.point[consistency], Some(1.0));
    }
}
