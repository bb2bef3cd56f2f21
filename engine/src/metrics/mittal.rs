//! Framewise self-similarity of Mittal et al. (2021), "Symbolic music generation with diffusion
//! models", section 5.2.
//!
//! Each clip is cut into 4-bar windows with a 2-bar hop (only whole windows: a clip of B bars has
//! windows starting at bars 0, 2, 4, … while start + 4 ≤ B). A window holds the pitched notes that
//! start in it, their lengths cut at the window end (note_seq's `trim_note_sequence`). For each
//! window a normal density is fitted to its pitches (semitones) and one to its note lengths (grid
//! steps), with the population variance; neighbouring windows are compared by the overlapping area
//! (OA) of their normals. Pairs involving a window without notes are skipped.
//!
//! Variance floor: a window whose notes share one pitch (or one length) has variance 0, a point
//! mass, and the OA of a point mass is degenerate. Since pitches and lengths are integers, each
//! value is read as spread over its unit cell: the variance is floored at 1/12 (the variance of a
//! uniform distribution of width 1). Only near-constant windows are affected.
//!
//! Over a set, μ and σ² are the mean and population variance of all its OAs (all clips pooled).
//! Then consistency = max(0, 1 − |μ_gen − μ_ref| / μ_ref) and
//! variance = max(0, 1 − |σ²_gen − σ²_ref| / σ²_ref), for pitch and for duration. When μ_ref
//! (or σ²_ref) is 0, the score is 1 if the generated value is 0 too, else 0.

use super::features::{bars, pitched_notes};
use super::stats::{self, normal_overlap};
use crate::music::Clip;

/// Bars per window and bars between window starts.
pub const WINDOW_BARS: usize = 4;
pub const HOP_BARS: usize = 2;
/// Floor of a window's pitch or length variance (see the module documentation).
pub const VARIANCE_FLOOR: f64 = 1.0 / 12.0;

/// Mean and variance of the neighbouring-window OAs of a set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OverlapStats {
    /// Number of neighbouring-window pairs.
    pub pairs: usize,
    pub mean: f64,
    pub variance: f64,
}

impl OverlapStats {
    fn of(overlaps: &[f64]) -> Option<OverlapStats> {
        Some(OverlapStats {
            pairs: overlaps.len(),
            mean: stats::mean(overlaps)?,
            variance: stats::variance(overlaps, 0)?,
        })
    }
}

/// Framewise self-similarity of one set; `None` where the set has no window pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfSimilarity {
    pub pitch: Option<OverlapStats>,
    pub duration: Option<OverlapStats>,
}

/// The OAs of the neighbouring windows of one clip: (pitch OAs, duration OAs).
pub fn window_overlaps(clip: &Clip) -> (Vec<f64>, Vec<f64>) {
    window_overlaps_with(clip, WINDOW_BARS, HOP_BARS)
}

/// [`window_overlaps`] with windows of `window_bars` bars every `hop_bars` bars (for clips too
/// short for the paper's 4-bar windows, such as the 4-bar infill windows of the roll model).
pub fn window_overlaps_with(
    clip: &Clip,
    window_bars: usize,
    hop_bars: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (window_bars, hop_bars) = (window_bars.max(1), hop_bars.max(1));
    let bars = bars(clip);
    let notes = pitched_notes(clip);
    let mut fits = Vec::new();
    let mut first = 0;
    while first + window_bars <= bars.len() {
        let lo = bars[first].start;
        let last = bars[first + window_bars - 1];
        let hi = last.start + last.steps;
        let (pitches, lengths): (Vec<f64>, Vec<f64>) = notes
            .iter()
            .filter(|n| n.start >= lo && n.start < hi)
            .map(|n| (n.pitch as f64, (n.end().min(hi) - n.start) as f64))
            .unzip();
        fits.push(normal_fit(&pitches).zip(normal_fit(&lengths)));
        first += hop_bars;
    }
    let mut pitch = Vec::new();
    let mut duration = Vec::new();
    for pair in fits.windows(2) {
        if let (Some((p1, d1)), Some((p2, d2))) = (pair[0], pair[1]) {
            pitch.push(normal_overlap(p1.0, p1.1, p2.0, p2.1));
            duration.push(normal_overlap(d1.0, d1.1, d2.0, d2.1));
        }
    }
    (pitch, duration)
}

/// (mean, floored population variance) of `values`; `None` if empty.
fn normal_fit(values: &[f64]) -> Option<(f64, f64)> {
    Some((
        stats::mean(values)?,
        stats::variance(values, 0)?.max(VARIANCE_FLOOR),
    ))
}

/// The self-similarity statistics of a set of clips.
pub fn self_similarity(clips: &[Clip]) -> SelfSimilarity {
    self_similarity_with(clips, WINDOW_BARS, HOP_BARS)
}

/// [`self_similarity`] with other windows (see [`window_overlaps_with`]).
pub fn self_similarity_with(clips: &[Clip], window_bars: usize, hop_bars: usize) -> SelfSimilarity {
    let (mut pitch, mut duration) = (Vec::new(), Vec::new());
    for clip in clips {
        let (p, d) = window_overlaps_with(clip, window_bars, hop_bars);
        pitch.extend(p);
        duration.extend(d);
    }
    SelfSimilarity {
        pitch: OverlapStats::of(&pitch),
        duration: OverlapStats::of(&duration),
    }
}

/// max(0, 1 − |generated − reference| / reference); for reference 0: 1 if generated is 0 too.
pub fn relative_agreement(reference: f64, generated: f64) -> f64 {
    if reference == 0.0 {
        return if generated == 0.0 { 1.0 } else { 0.0 };
    }
    (1.0 - (generated - reference).abs() / reference.abs()).max(0.0)
}

/// Consistency and variance scores of one attribute (pitch or duration).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimilarityScores {
    pub consistency: f64,
    pub variance: f64,
}

/// Mittal et al.'s comparison of a generated set with a reference (ground-truth) set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfSimilarityComparison {
    pub reference: SelfSimilarity,
    pub generated: SelfSimilarity,
    /// `None` if either set has no window pair.
    pub pitch: Option<SimilarityScores>,
    pub duration: Option<SimilarityScores>,
}

pub fn compare(reference: &[Clip], generated: &[Clip]) -> SelfSimilarityComparison {
    compare_with(reference, generated, WINDOW_BARS, HOP_BARS)
}

/// [`compare`] with other windows (see [`window_overlaps_with`]).
pub fn compare_with(
    reference: &[Clip],
    generated: &[Clip],
    window_bars: usize,
    hop_bars: usize,
) -> SelfSimilarityComparison {
    let (r, g) = (
        self_similarity_with(reference, window_bars, hop_bars),
        self_similarity_with(generated, window_bars, hop_bars),
    );
    let scores = |a: Option<OverlapStats>, b: Option<OverlapStats>| {
        a.zip(b).map(|(a, b)| SimilarityScores {
            consistency: relative_agreement(a.mean, b.mean),
            variance: relative_agreement(a.variance, b.variance),
        })
    };
    SelfSimilarityComparison {
        reference: r,
        generated: g,
        pitch: scores(r.pitch, g.pitch),
        duration: scores(r.duration, g.duration),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::Note;

    #[test]
    fn windows_of_a_repeated_pattern_overlap_fully() {
        let mut clip = Clip::new(8);
        for bar in 0..8 {
            for (i, p) in [60, 64, 67, 72].into_iter().enumerate() {
                clip.notes
                    .push(Note::new(bar * 16 + i as u32 * 4, p, 4, 100, 0));
            }
        }
        let (pitch, duration) = window_overlaps(&clip);
        // Windows at bars 0, 2, 4: two neighbouring pairs.
        assert_eq!(pitch, vec![1.0, 1.0]);
        assert_eq!(duration, vec![1.0, 1.0]);
    }

    #[test]
    fn a_register_jump_lowers_the_pitch_overlap() {
        // Bars 0-3 alternate C4 and E4, bars 4-7 hold C6.
        let mut clip = Clip::new(8);
        for step in (0..128).step_by(4) {
            let pitch = if step < 64 { 60 + (step % 8) as u8 } else { 84 };
            clip.notes.push(Note::new(step, pitch, 4, 100, 0));
        }
        let (pitch, duration) = window_overlaps(&clip);
        // Windows at bars 0, 2 (half before, half after the jump) and 4.
        assert_eq!(pitch.len(), 2);
        assert!(pitch[0] < 0.6 && pitch[1] < 0.1, "{pitch:?}");
        assert_eq!(duration, vec![1.0, 1.0]);
    }

    #[test]
    fn relative_agreement_is_clamped() {
        assert_eq!(relative_agreement(0.5, 0.5), 1.0);
        assert!((relative_agreement(0.5, 0.4) - 0.8).abs() < 1e-12);
        assert_eq!(relative_agreement(0.5, 2.0), 0.0);
        assert_eq!(relative_agreement(0.0, 0.0), 1.0);
    }
}
