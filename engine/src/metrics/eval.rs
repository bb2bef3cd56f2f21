//! `evaluate`: every metric of a generated set against a reference set, as one [`Report`].

use super::features::Feature;
use super::mittal::{self, SelfSimilarity, SelfSimilarityComparison, SimilarityScores};
use super::rhythm::RhythmMelodyComparison;
use super::yang_lerch::{self, DistanceSummary, FeatureComparison};
use crate::music::Clip;
use serde_json::{Value, json};
use std::fmt::Write;

/// Options of [`evaluate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalOptions {
    /// Most clips per set used for the O(n²) pairwise distances of Yang & Lerch: larger sets are
    /// sub-sampled by a shuffle seeded with `seed`. The other metrics use every clip.
    pub max_clips: usize,
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            max_clips: 200,
            seed: 0,
        }
    }
}

/// The evaluation of a generated set against a reference set.
#[derive(Clone, Debug)]
pub struct Report {
    pub reference_clips: usize,
    pub generated_clips: usize,
    /// Clips of each set used for the pairwise distances.
    pub reference_clips_for_distances: usize,
    pub generated_clips_for_distances: usize,
    pub options: EvalOptions,
    /// Reference × generated pairs of identical clips left out of the inter-set distances.
    pub identical_pairs_skipped: usize,
    /// Yang & Lerch (2020), one entry per [`Feature`].
    pub features: Vec<FeatureComparison>,
    /// Mittal et al. (2021) framewise self-similarity.
    pub self_similarity: SelfSimilarityComparison,
    /// Lerch's rhythm and melody statistics.
    pub rhythm_melody: RhythmMelodyComparison,
}

/// The few numbers a model's table row shows for a generated set against a reference set.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SetSummary {
    /// Yang–Lerch mean overlapping area.
    pub mean_overlap_area: Option<f64>,
    /// Mittal et al.'s consistency and variance (pitch, duration).
    pub pitch_consistency: Option<f64>,
    pub pitch_variance: Option<f64>,
    pub duration_consistency: Option<f64>,
    pub duration_variance: Option<f64>,
    /// Of the generated set.
    pub diatonicity: Option<f64>,
    pub downbeat_share: Option<f64>,
    pub beat_share: Option<f64>,
}

impl SetSummary {
    /// [`evaluate`] with the default options, summarised.
    pub fn compare(reference: &[Clip], generated: &[Clip]) -> Self {
        let report = evaluate(reference, generated, &EvalOptions::default());
        let stats = crate::metrics::rhythm::rhythm_melody_stats(generated);
        let ss = report.self_similarity;
        Self {
            mean_overlap_area: report.mean_overlap_area(),
            pitch_consistency: ss.pitch.map(|s| s.consistency),
            pitch_variance: ss.pitch.map(|s| s.variance),
            duration_consistency: ss.duration.map(|s| s.consistency),
            duration_variance: ss.duration.map(|s| s.variance),
            diatonicity: stats.diatonicity,
            downbeat_share: stats.downbeat_share,
            beat_share: stats.beat_share,
        }
    }

    /// Markdown cells: mean OA, the four Mittal scores and diatonicity (3 decimals, `-` for
    /// none), separated by ` | `.
    pub fn cells(&self) -> String {
        [
            self.mean_overlap_area,
            self.pitch_consistency,
            self.pitch_variance,
            self.duration_consistency,
            self.duration_variance,
            self.diatonicity,
        ]
        .map(|x| x.map_or("-".to_string(), |x| format!("{x:.3}")))
        .join(" | ")
    }
}

/// The column names of [`SetSummary::cells`].
pub const SET_SUMMARY_COLUMNS: &str = "mean OA | pitch consistency | pitch variance | duration consistency | duration variance | diatonicity";

/// Evaluate `generated` against `reference` (Yang & Lerch features, Mittal et al.'s framewise
/// self-similarity, rhythm and melody statistics). Empty sets give `None`/null metrics.
pub fn evaluate(reference: &[Clip], generated: &[Clip], opts: &EvalOptions) -> Report {
    let ref_sample = yang_lerch::sample_indices(reference.len(), opts.max_clips, opts.seed);
    let gen_sample = yang_lerch::sample_indices(generated.len(), opts.max_clips, opts.seed);
    let yl = yang_lerch::compare(reference, generated, &ref_sample, &gen_sample);
    Report {
        reference_clips: reference.len(),
        generated_clips: generated.len(),
        reference_clips_for_distances: ref_sample.len(),
        generated_clips_for_distances: gen_sample.len(),
        options: opts.clone(),
        identical_pairs_skipped: yl.identical_pairs_skipped,
        features: yl.comparisons,
        self_similarity: mittal::compare(reference, generated),
        rhythm_melody: RhythmMelodyComparison::new(reference, generated),
    }
}

/// A finite number as JSON, anything else as null.
fn number(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

fn option(x: Option<f64>) -> Value {
    x.map_or(Value::Null, number)
}

fn numbers(xs: &[f64]) -> Value {
    Value::Array(xs.iter().map(|&x| number(x)).collect())
}

fn summary_json(s: &DistanceSummary) -> Value {
    json!({"count": s.count, "mean": number(s.mean), "std": number(s.std)})
}

fn self_similarity_json(s: &SelfSimilarity) -> Value {
    let stats = |o: Option<mittal::OverlapStats>| {
        o.map_or(
            Value::Null,
            |o| json!({"pairs": o.pairs, "mean": number(o.mean), "variance": number(o.variance)}),
        )
    };
    json!({"pitch": stats(s.pitch), "duration": stats(s.duration)})
}

fn scores_json(s: Option<SimilarityScores>) -> Value {
    s.map_or(
        Value::Null,
        |s| json!({"consistency": number(s.consistency), "variance": number(s.variance)}),
    )
}

fn cell(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x:.3}"),
        Some(x) if x.is_infinite() => "inf".to_string(),
        // NaN: no value (e.g. no intra-set distances in a set of one clip).
        _ => "-".to_string(),
    }
}

impl Report {
    /// Mean OA(intra-set reference, inter-set) over the features that have one.
    pub fn mean_overlap_area(&self) -> Option<f64> {
        let oas: Vec<f64> = self
            .features
            .iter()
            .filter_map(|f| f.overlap_area)
            .collect();
        super::stats::mean(&oas)
    }

    /// The comparison of `feature`.
    pub fn feature(&self, feature: Feature) -> Option<&FeatureComparison> {
        self.features.iter().find(|f| f.feature == feature)
    }

    pub fn to_json(&self) -> Value {
        let mut features = serde_json::Map::new();
        for f in &self.features {
            let set = |mean: &[f64], std: &[f64]| {
                if f.feature.dimensions() == 1 {
                    json!({"mean": number(mean[0]), "std": number(std[0])})
                } else {
                    json!({"mean": numbers(mean), "std": numbers(std)})
                }
            };
            features.insert(
                f.feature.name().to_string(),
                json!({
                    "unit": f.feature.unit(),
                    "reference": set(&f.reference_mean, &f.reference_std),
                    "generated": set(&f.generated_mean, &f.generated_std),
                    "intra_reference_distances": summary_json(&f.intra_reference),
                    "intra_generated_distances": summary_json(&f.intra_generated),
                    "inter_distances": summary_json(&f.inter),
                    "overlap_area": option(f.overlap_area),
                    "kl_divergence": option(f.kl_divergence),
                    "overlap_area_generated": option(f.overlap_area_generated),
                    "kl_divergence_generated": option(f.kl_divergence_generated),
                }),
            );
        }
        let mut rhythm = serde_json::Map::new();
        for row in self.rhythm_melody.rows() {
            rhythm.insert(
                row.name.to_string(),
                json!({
                    "reference": option(row.reference),
                    "generated": option(row.generated),
                    "abs_difference": option(row.abs_difference),
                }),
            );
        }
        let ss = &self.self_similarity;
        json!({
            "clips": {
                "reference": self.reference_clips,
                "generated": self.generated_clips,
                "reference_for_distances": self.reference_clips_for_distances,
                "generated_for_distances": self.generated_clips_for_distances,
            },
            "sampling": {
                "max_clips": self.options.max_clips,
                "seed": self.options.seed,
                "method": "sets larger than max_clips: first max_clips of a ChaCha8 shuffle seeded with seed; \
                           other metrics use every clip",
            },
            "yang_lerch": {
                "features": features,
                "mean_overlap_area": option(self.mean_overlap_area()),
                "identical_pairs_skipped": self.identical_pairs_skipped,
            },
            "mittal_self_similarity": {
                "reference": self_similarity_json(&ss.reference),
                "generated": self_similarity_json(&ss.generated),
                "pitch": scores_json(ss.pitch),
                "duration": scores_json(ss.duration),
            },
            "rhythm_melody": {
                "reference_onsets": self.rhythm_melody.reference.onsets,
                "generated_onsets": self.rhythm_melody.generated.onsets,
                "stats": rhythm,
            },
        })
    }

    /// A plain-text table of the main numbers.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Yang & Lerch (2020): distances over {} reference × {} generated clips \
             (max {} per set, seed {}; {} identical pairs skipped)",
            self.reference_clips_for_distances,
            self.generated_clips_for_distances,
            self.options.max_clips,
            self.options.seed,
            self.identical_pairs_skipped
        );
        let _ = writeln!(
            out,
            "  {:<30} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
            "feature", "ref mean", "gen mean", "intra ref", "intra gen", "inter", "OA", "KL"
        );
        for f in &self.features {
            let scalar = |m: &[f64]| {
                if f.feature.dimensions() == 1 {
                    cell(Some(m[0]))
                } else {
                    "-".to_string()
                }
            };
            let _ = writeln!(
                out,
                "  {:<30} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
                f.feature.name(),
                scalar(&f.reference_mean),
                scalar(&f.generated_mean),
                cell(Some(f.intra_reference.mean)),
                cell(Some(f.intra_generated.mean)),
                cell(Some(f.inter.mean)),
                cell(f.overlap_area),
                cell(f.kl_divergence),
            );
        }
        let _ = writeln!(
            out,
            "  mean OA: {}   (OA: 1 = generated as close to the reference as the reference to itself)",
            cell(self.mean_overlap_area())
        );
        let ss = &self.self_similarity;
        let _ = writeln!(
            out,
            "\nMittal et al. (2021) framewise self-similarity (4-bar windows, 2-bar hop)"
        );
        let _ = writeln!(
            out,
            "  {:<10} {:>8} {:>8} {:>8} {:>8} {:>12} {:>9}",
            "", "ref μ", "ref σ²", "gen μ", "gen σ²", "consistency", "variance"
        );
        for (name, r, g, s) in [
            ("pitch", ss.reference.pitch, ss.generated.pitch, ss.pitch),
            (
                "duration",
                ss.reference.duration,
                ss.generated.duration,
                ss.duration,
            ),
        ] {
            let _ = writeln!(
                out,
                "  {:<10} {:>8} {:>8} {:>8} {:>8} {:>12} {:>9}",
                name,
                cell(r.map(|o| o.mean)),
                cell(r.map(|o| o.variance)),
                cell(g.map(|o| o.mean)),
                cell(g.map(|o| o.variance)),
                cell(s.map(|s| s.consistency)),
                cell(s.map(|s| s.variance)),
            );
        }
        let _ = writeln!(out, "\nRhythm and melody");
        let _ = writeln!(
            out,
            "  {:<18} {:>9} {:>9} {:>9}",
            "", "reference", "generated", "|diff|"
        );
        for row in self.rhythm_melody.rows() {
            let _ = writeln!(
                out,
                "  {:<18} {:>9} {:>9} {:>9}",
                row.name,
                cell(row.reference),
                cell(row.generated),
                cell(row.abs_difference)
            );
        }
        out
    }
}
