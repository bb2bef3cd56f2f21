//! Yang & Lerch (2020), "On the evaluation of generative models in music": intra-set and
//! inter-set distances of each feature, their kernel density estimates, and the overlapping area
//! (OA) and KL divergence between the reference's intra-set distances and the inter-set distances.
//!
//! As in mgeval: the intra-set distances of a set are the Euclidean distances from every clip to
//! every other clip of the set (ordered pairs, self-pairs left out, so each unordered pair counts
//! twice as in mgeval's leave-one-out loop); the inter-set distances are those of every reference ×
//! generated pair. One deviation: a generated clip identical (same notes and meter) to a reference
//! clip is matched one-to-one with it and that pair is left out of the inter-set distances, as a
//! self-pair is left out of the intra-set distances. So a set evaluated against itself gives OA 1;
//! the number of such pairs is reported (a copy of the reference shows up there).
//!
//! The densities are integrated over a grid that extends 7 bandwidths beyond the data (mgeval
//! integrates only between the smallest and largest distance, which loses the tails), and the KL
//! divergence is taken on that common grid (mgeval evaluates p and q on different grids).

use super::features::{ClipFeatures, Feature, is_drum_note};
use super::stats::{self, DensityPair};
use crate::music::{Clip, TimeSignature};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// Indices of at most `cap` of `n` clips: all of them in order if `n <= cap`, else the first
/// `cap` of a shuffle seeded by `seed` (ChaCha8), sorted. Equal `n` and `seed` give equal picks.
pub fn sample_indices(n: usize, cap: usize, seed: u64) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..n).collect();
    if n > cap {
        indices.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        indices.truncate(cap);
        indices.sort_unstable();
    }
    indices
}

/// Summary of a set of distances.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistanceSummary {
    pub count: usize,
    pub mean: f64,
    pub std: f64,
}

impl DistanceSummary {
    fn of(distances: &[f64]) -> DistanceSummary {
        DistanceSummary {
            count: distances.len(),
            mean: stats::mean(distances).unwrap_or(f64::NAN),
            std: stats::variance(distances, 0).map_or(f64::NAN, f64::sqrt),
        }
    }
}

/// The distances of one feature.
#[derive(Clone, Debug, Default)]
pub struct FeatureDistances {
    pub intra_reference: Vec<f64>,
    pub intra_generated: Vec<f64>,
    pub inter: Vec<f64>,
}

/// The comparison of one feature between the two sets.
#[derive(Clone, Debug)]
pub struct FeatureComparison {
    pub feature: Feature,
    /// Per-dimension mean and (population) standard deviation of the feature over all clips.
    pub reference_mean: Vec<f64>,
    pub reference_std: Vec<f64>,
    pub generated_mean: Vec<f64>,
    pub generated_std: Vec<f64>,
    pub intra_reference: DistanceSummary,
    pub intra_generated: DistanceSummary,
    pub inter: DistanceSummary,
    /// OA(intra-set reference, inter-set): 1 = the generated set is as close to the reference as
    /// the reference is to itself. `None` if a distance set is empty (a set of fewer than 2 clips).
    pub overlap_area: Option<f64>,
    /// KL(intra-set reference ‖ inter-set); 0 is best.
    pub kl_divergence: Option<f64>,
    /// OA(intra-set generated, inter-set), mgeval's second pair.
    pub overlap_area_generated: Option<f64>,
    /// KL(intra-set generated ‖ inter-set).
    pub kl_divergence_generated: Option<f64>,
}

/// Features of the clips, and the per-feature distances between the sampled ones.
pub struct YangLerch {
    pub comparisons: Vec<FeatureComparison>,
    pub distances: Vec<(Feature, FeatureDistances)>,
    /// Reference × generated pairs left out of the inter-set distances as identical clips.
    pub identical_pairs_skipped: usize,
}

/// Compare `reference` and `generated`. Feature means use every clip; the distances use the clips
/// at `reference_sample` and `generated_sample` (indices, see [`sample_indices`]).
pub fn compare(
    reference: &[Clip],
    generated: &[Clip],
    reference_sample: &[usize],
    generated_sample: &[usize],
) -> YangLerch {
    let ref_features: Vec<ClipFeatures> = reference.iter().map(ClipFeatures::of).collect();
    let gen_features: Vec<ClipFeatures> = generated.iter().map(ClipFeatures::of).collect();

    // One-to-one matching of identical clips among the sampled ones.
    let mut unmatched: HashMap<ClipKey, Vec<usize>> = HashMap::new();
    for &r in reference_sample.iter().rev() {
        unmatched
            .entry(ClipKey::of(&reference[r]))
            .or_default()
            .push(r);
    }
    let matched_reference: Vec<Option<usize>> = generated_sample
        .iter()
        .map(|&g| {
            unmatched
                .get_mut(&ClipKey::of(&generated[g]))
                .and_then(Vec::pop)
        })
        .collect();
    let identical_pairs_skipped = matched_reference.iter().flatten().count();

    let mut comparisons = Vec::new();
    let mut distances = Vec::new();
    for feature in Feature::ALL {
        let ref_vectors: Vec<Vec<f64>> = ref_features.iter().map(|f| f.vector(feature)).collect();
        let gen_vectors: Vec<Vec<f64>> = gen_features.iter().map(|f| f.vector(feature)).collect();
        let d = FeatureDistances {
            intra_reference: intra_distances(&ref_vectors, reference_sample),
            intra_generated: intra_distances(&gen_vectors, generated_sample),
            inter: inter_distances(
                &ref_vectors,
                reference_sample,
                &gen_vectors,
                generated_sample,
                &matched_reference,
            ),
        };
        let to_reference = DensityPair::new(&d.intra_reference, &d.inter);
        let to_generated = DensityPair::new(&d.intra_generated, &d.inter);
        let (reference_mean, reference_std) = mean_and_std(&ref_vectors, feature.dimensions());
        let (generated_mean, generated_std) = mean_and_std(&gen_vectors, feature.dimensions());
        comparisons.push(FeatureComparison {
            feature,
            reference_mean,
            reference_std,
            generated_mean,
            generated_std,
            intra_reference: DistanceSummary::of(&d.intra_reference),
            intra_generated: DistanceSummary::of(&d.intra_generated),
            inter: DistanceSummary::of(&d.inter),
            overlap_area: to_reference.as_ref().map(DensityPair::overlap_area),
            kl_divergence: to_reference.as_ref().map(DensityPair::kl_divergence),
            overlap_area_generated: to_generated.as_ref().map(DensityPair::overlap_area),
            kl_divergence_generated: to_generated.as_ref().map(DensityPair::kl_divergence),
        });
        distances.push((feature, d));
    }
    YangLerch {
        comparisons,
        distances,
        identical_pairs_skipped,
    }
}

/// Euclidean distance between two feature vectors.
pub(crate) fn euclidean(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// Distances between every ordered pair of distinct sampled clips.
fn intra_distances(vectors: &[Vec<f64>], sample: &[usize]) -> Vec<f64> {
    let mut out = Vec::with_capacity(sample.len() * sample.len().saturating_sub(1));
    for (k, &i) in sample.iter().enumerate() {
        for &j in &sample[k + 1..] {
            let d = euclidean(&vectors[i], &vectors[j]);
            out.push(d);
            out.push(d);
        }
    }
    out
}

/// Distances between every sampled reference × generated pair except the matched identical ones.
fn inter_distances(
    reference: &[Vec<f64>],
    reference_sample: &[usize],
    generated: &[Vec<f64>],
    generated_sample: &[usize],
    matched_reference: &[Option<usize>],
) -> Vec<f64> {
    let mut out = Vec::with_capacity(reference_sample.len() * generated_sample.len());
    for (&g, matched) in generated_sample.iter().zip(matched_reference) {
        for &r in reference_sample {
            if *matched != Some(r) {
                out.push(euclidean(&reference[r], &generated[g]));
            }
        }
    }
    out
}

fn mean_and_std(vectors: &[Vec<f64>], dims: usize) -> (Vec<f64>, Vec<f64>) {
    (0..dims)
        .map(|d| {
            let column: Vec<f64> = vectors.iter().map(|v| v[d]).collect();
            (
                stats::mean(&column).unwrap_or(f64::NAN),
                stats::variance(&column, 0).map_or(f64::NAN, f64::sqrt),
            )
        })
        .unzip()
}

/// What makes two clips identical for the features: meter and notes (drum flag, not track index).
#[derive(PartialEq, Eq, Hash)]
struct ClipKey {
    time_signature: TimeSignature,
    /// (step, numerator, denominator) of each meter change.
    meter_changes: Vec<(u32, u8, u8)>,
    notes: Vec<(u32, u8, u32, bool)>,
}

impl ClipKey {
    fn of(clip: &Clip) -> ClipKey {
        let mut notes: Vec<(u32, u8, u32, bool)> = clip
            .notes
            .iter()
            .map(|n| (n.start, n.pitch, n.length, is_drum_note(clip, n)))
            .collect();
        notes.sort_unstable();
        ClipKey {
            time_signature: clip.time_signature,
            meter_changes: clip
                .meter_changes
                .iter()
                .map(|m| {
                    (
                        m.step,
                        m.time_signature.numerator,
                        m.time_signature.denominator,
                    )
                })
                .collect(),
            notes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_seeded_and_capped() {
        assert_eq!(sample_indices(5, 10, 1), vec![0, 1, 2, 3, 4]);
        let a = sample_indices(1000, 50, 7);
        assert_eq!(a.len(), 50);
        assert_eq!(a, sample_indices(1000, 50, 7));
        assert_ne!(a, sample_indices(1000, 50, 8));
        assert!(a.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn identical_clips_are_matched_one_to_one() {
        let mut a = Clip::new(1);
        a.notes.push(crate::music::Note::new(0, 60, 4, 100, 0));
        let mut b = Clip::new(1);
        b.notes.push(crate::music::Note::new(0, 67, 2, 100, 0));
        // The reference holds a twice; the generated set holds a once and b once.
        let reference = vec![a.clone(), a.clone(), b.clone()];
        let generated = vec![a, b];
        let yl = compare(&reference, &generated, &[0, 1, 2], &[0, 1]);
        assert_eq!(yl.identical_pairs_skipped, 2);
        let (_, d) = &yl.distances[0];
        assert_eq!(d.intra_reference.len(), 6);
        assert_eq!(d.inter.len(), 4);
    }
}
