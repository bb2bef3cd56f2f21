//! Rhythm and melody statistics of a set (after Lerch): where onsets fall in the bar, mean note
//! length, pitch range and diatonicity.
//!
//! - Onset positions: the distinct onset steps of each clip (all tracks, drums included), placed
//!   in their bar (meter changes followed) and classed, first match wins, as downbeat (bar start),
//!   beat (a multiple of the beat, see [`beat_steps`]: a dotted quarter in 6/8), 8th (even step) or
//!   odd 16th. Shares are over all onsets of the set.
//! - Mean note length: over all pitched notes of the set, in grid steps.
//! - Pitch range: mean over the clips with pitched notes of highest − lowest pitch.
//! - Diatonicity: per clip, the share of pitched notes whose pitch class lies in the diatonic
//!   scale that holds the most of them (the 12 major scales; each natural minor scale has the
//!   pitch classes of one of them); over the set, weighted by note count (notes in / notes).

use super::features::{bars, beat_steps, pitched_notes};
use crate::music::{Clip, Key, Scale};

/// The statistics of one set; `None` where the set has no onset or no pitched note.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RhythmMelodyStats {
    pub onsets: usize,
    pub downbeat_share: Option<f64>,
    pub beat_share: Option<f64>,
    pub eighth_share: Option<f64>,
    pub sixteenth_share: Option<f64>,
    pub pitched_notes: usize,
    pub mean_note_length: Option<f64>,
    pub mean_pitch_range: Option<f64>,
    pub diatonicity: Option<f64>,
}

impl RhythmMelodyStats {
    /// (name, value) of each statistic, in report order.
    pub fn values(&self) -> [(&'static str, Option<f64>); 7] {
        [
            ("downbeat_share", self.downbeat_share),
            ("beat_share", self.beat_share),
            ("eighth_share", self.eighth_share),
            ("sixteenth_share", self.sixteenth_share),
            ("mean_note_length", self.mean_note_length),
            ("mean_pitch_range", self.mean_pitch_range),
            ("diatonicity", self.diatonicity),
        ]
    }
}

/// Onset counts of one clip: [downbeat, beat, 8th, odd 16th].
pub fn onset_positions(clip: &Clip) -> [usize; 4] {
    let bars = bars(clip);
    let mut onsets: Vec<u32> = clip.notes.iter().map(|n| n.start).collect();
    onsets.sort_unstable();
    onsets.dedup();
    let mut counts = [0; 4];
    for onset in onsets {
        let bar = bars[bars.partition_point(|b| b.start <= onset) - 1];
        let pos = onset - bar.start;
        let class = if pos == 0 {
            0
        } else if pos.is_multiple_of(beat_steps(bar.time_signature)) {
            1
        } else if pos.is_multiple_of(2) {
            2
        } else {
            3
        };
        counts[class] += 1;
    }
    counts
}

/// (notes in the best-fitting diatonic scale, pitched notes) of one clip.
pub fn diatonic_notes(clip: &Clip) -> (usize, usize) {
    let mut per_class = [0usize; 12];
    let notes = pitched_notes(clip);
    notes
        .iter()
        .for_each(|n| per_class[(n.pitch % 12) as usize] += 1);
    let best = (0..12u8)
        .map(|tonic| {
            let scale = Key::new(tonic, Scale::Major).pitch_classes();
            (0..12)
                .filter(|&pc| scale[pc])
                .map(|pc| per_class[pc])
                .sum()
        })
        .max()
        .unwrap_or(0);
    (best, notes.len())
}

pub fn rhythm_melody_stats(clips: &[Clip]) -> RhythmMelodyStats {
    let mut positions = [0usize; 4];
    let (mut length_sum, mut pitched) = (0u64, 0usize);
    let (mut range_sum, mut ranged_clips) = (0.0, 0usize);
    let mut diatonic = 0usize;
    for clip in clips {
        let p = onset_positions(clip);
        positions.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        let notes = pitched_notes(clip);
        length_sum += notes.iter().map(|n| n.length as u64).sum::<u64>();
        if let Some((lo, hi)) = clip.pitch_span() {
            range_sum += (hi - lo) as f64;
            ranged_clips += 1;
        }
        let (inside, total) = diatonic_notes(clip);
        diatonic += inside;
        pitched += total;
    }
    let onsets: usize = positions.iter().sum();
    let share = |i: usize| (onsets > 0).then(|| positions[i] as f64 / onsets as f64);
    let per_note = |x: f64| (pitched > 0).then(|| x / pitched as f64);
    RhythmMelodyStats {
        onsets,
        downbeat_share: share(0),
        beat_share: share(1),
        eighth_share: share(2),
        sixteenth_share: share(3),
        pitched_notes: pitched,
        mean_note_length: per_note(length_sum as f64),
        mean_pitch_range: (ranged_clips > 0).then(|| range_sum / ranged_clips as f64),
        diatonicity: per_note(diatonic as f64),
    }
}

/// One statistic of both sets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RhythmMelodyRow {
    pub name: &'static str,
    pub reference: Option<f64>,
    pub generated: Option<f64>,
    /// |generated − reference|.
    pub abs_difference: Option<f64>,
}

/// Both sets' statistics; [`RhythmMelodyComparison::rows`] pairs them up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RhythmMelodyComparison {
    pub reference: RhythmMelodyStats,
    pub generated: RhythmMelodyStats,
}

impl RhythmMelodyComparison {
    pub fn new(reference: &[Clip], generated: &[Clip]) -> Self {
        Self {
            reference: rhythm_melody_stats(reference),
            generated: rhythm_melody_stats(generated),
        }
    }

    /// Each statistic of both sets with their absolute difference.
    pub fn rows(&self) -> Vec<RhythmMelodyRow> {
        self.reference
            .values()
            .into_iter()
            .zip(self.generated.values())
            .map(|((name, reference), (_, generated))| RhythmMelodyRow {
                name,
                reference,
                generated,
                abs_difference: reference.zip(generated).map(|(r, g)| (g - r).abs()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::{Note, TimeSignature};

    #[test]
    fn onsets_are_classed_by_position_in_the_bar() {
        let mut clip = Clip::new(2);
        for (s, p) in [(0, 60), (0, 64), (4, 62), (6, 64), (9, 65), (16, 67)] {
            clip.notes.push(Note::new(s, p, 1, 100, 0));
        }
        // Distinct onsets 0 and 16 (downbeats), 4 (beat), 6 (8th), 9 (16th).
        assert_eq!(onset_positions(&clip), [2, 1, 1, 1]);
        clip.time_signature = TimeSignature::new(6, 8);
        // 12-step bars: 0 and 16? 16 is 4 steps into bar 2 → an 8th; 6 is the second beat.
        assert_eq!(onset_positions(&clip), [1, 1, 2, 1]);
    }

    #[test]
    fn a_scale_is_fully_diatonic_and_chromatic_notes_are_not() {
        let mut clip = Clip::new(2);
        for (i, p) in [62, 64, 66, 67, 69, 71, 73, 74].into_iter().enumerate() {
            clip.notes.push(Note::new(i as u32 * 2, p, 2, 100, 0)); // D major
        }
        assert_eq!(diatonic_notes(&clip), (8, 8));
        let mut chromatic = Clip::new(1);
        for p in 60..72 {
            chromatic
                .notes
                .push(Note::new((p - 60) as u32, p, 1, 100, 0));
        }
        assert_eq!(diatonic_notes(&chromatic), (7, 12));
        let s = rhythm_melody_stats(&[clip, chromatic]);
        assert!((s.diatonicity.unwrap() - 15.0 / 20.0).abs() < 1e-12);
        assert_eq!(s.mean_pitch_range, Some((12.0 + 11.0) / 2.0));
        assert!((s.mean_note_length.unwrap() - 28.0 / 20.0).abs() < 1e-12);
    }
}
