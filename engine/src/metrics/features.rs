//! Per-clip features of Yang & Lerch (2020), computed as the `mgeval` reference implementation
//! does, adapted to Bandmate's 16th-note grid and to clips with several tracks.
//!
//! Pitch features (pitch count, pitch-class histogram and transition matrix, pitch range, average
//! pitch interval) and the note-length histogram use the notes of the non-drum tracks; note count
//! and inter-onset interval use every note. Conventions:
//! - Pitch-class histogram: weighted by note length in steps (mgeval sums a piano roll, i.e.
//!   duration × velocity; we leave velocity out), normalised to sum 1.
//! - Transition matrix: as `pretty_midi`'s `get_pitch_class_transition_matrix` (which mgeval
//!   calls), within each track count the pairs (a, b) where b starts where a ends, summed over the
//!   tracks and normalised by the total (mgeval's `normalize=2`).
//! - Average pitch interval: mgeval takes consecutive note-ons of one track in event order, so the
//!   notes of a chord are consecutive notes too. We do that per track, ordering notes by onset and
//!   then by ascending pitch, and average |interval| over all tracks' intervals.
//! - Average inter-onset interval: as pretty_midi's `get_onsets` (every note's onset, chords
//!   included) then `mean(diff)`, in grid steps. Steps rather than seconds keep clips at
//!   different tempi comparable as notated rhythms.
//! - Note-length histogram: mgeval's 12 classes (whole, half, quarter, 8th, 16th, dotted half,
//!   dotted quarter, dotted 8th, dotted 16th, half triplet, quarter triplet, 8th triplet), each
//!   note counted in the class nearest to its length (first class on a tie), normalised. mgeval
//!   scales the classes to the bar (1/96 bar units, a whole note in 4/4); we scale them to the
//!   whole note (16 steps) so that a quarter note is a quarter note in every meter.
//!
//! A clip without pitched notes has zero pitch features; fewer than two onsets give IOI 0.

use crate::music::{Clip, Note, STEPS_PER_BEAT, TimeSignature};

/// The note-length classes of mgeval, in grid steps (a whole note is 16 steps).
pub const NOTE_LENGTH_CLASSES: [(&str, f64); 12] = [
    ("whole", 16.0),
    ("half", 8.0),
    ("quarter", 4.0),
    ("8th", 2.0),
    ("16th", 1.0),
    ("dotted half", 12.0),
    ("dotted quarter", 6.0),
    ("dotted 8th", 3.0),
    ("dotted 16th", 1.5),
    ("half triplet", 16.0 / 3.0),
    ("quarter triplet", 8.0 / 3.0),
    ("8th triplet", 4.0 / 3.0),
];

/// One of the Yang & Lerch features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    PitchCount,
    PitchClassHistogram,
    PitchClassTransitionMatrix,
    PitchRange,
    AvgPitchInterval,
    NoteCount,
    AvgIoi,
    NoteLengthHistogram,
}

impl Feature {
    pub const ALL: [Feature; 8] = [
        Feature::PitchCount,
        Feature::PitchClassHistogram,
        Feature::PitchClassTransitionMatrix,
        Feature::PitchRange,
        Feature::AvgPitchInterval,
        Feature::NoteCount,
        Feature::AvgIoi,
        Feature::NoteLengthHistogram,
    ];

    /// Snake-case name used as the JSON key.
    pub fn name(self) -> &'static str {
        match self {
            Feature::PitchCount => "pitch_count",
            Feature::PitchClassHistogram => "pitch_class_histogram",
            Feature::PitchClassTransitionMatrix => "pitch_class_transition_matrix",
            Feature::PitchRange => "pitch_range",
            Feature::AvgPitchInterval => "avg_pitch_interval",
            Feature::NoteCount => "note_count",
            Feature::AvgIoi => "avg_ioi",
            Feature::NoteLengthHistogram => "note_length_histogram",
        }
    }

    /// Unit of the feature's values (empty for shares).
    pub fn unit(self) -> &'static str {
        match self {
            Feature::PitchCount => "pitches",
            Feature::PitchRange | Feature::AvgPitchInterval => "semitones",
            Feature::NoteCount => "notes",
            Feature::AvgIoi => "steps",
            _ => "",
        }
    }

    pub fn dimensions(self) -> usize {
        match self {
            Feature::PitchClassHistogram | Feature::NoteLengthHistogram => 12,
            Feature::PitchClassTransitionMatrix => 144,
            _ => 1,
        }
    }
}

/// The Yang & Lerch features of one clip.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipFeatures {
    pub pitch_count: f64,
    pub pitch_class_histogram: [f64; 12],
    /// Row = pitch class of the earlier note, column = of the following note.
    pub pitch_class_transition_matrix: [[f64; 12]; 12],
    pub pitch_range: f64,
    pub avg_pitch_interval: f64,
    pub note_count: f64,
    pub avg_ioi: f64,
    pub note_length_histogram: [f64; 12],
}

impl ClipFeatures {
    pub fn of(clip: &Clip) -> ClipFeatures {
        let pitched = pitched_notes(clip);

        let mut used = [false; 128];
        pitched.iter().for_each(|n| used[n.pitch as usize] = true);
        let pitch_count = used.iter().filter(|u| **u).count() as f64;

        let mut pitch_class_histogram = [0.0; 12];
        for n in &pitched {
            pitch_class_histogram[(n.pitch % 12) as usize] += n.length as f64;
        }
        normalise(&mut pitch_class_histogram);

        let mut pitch_class_transition_matrix = [[0.0; 12]; 12];
        let mut intervals = Vec::new();
        for track in pitched_tracks(clip) {
            let mut notes: Vec<&Note> = pitched.iter().filter(|n| n.track == track).collect();
            notes.sort_by_key(|n| (n.start, n.pitch));
            for a in &notes {
                let first = notes.partition_point(|b| b.start < a.end());
                let last = notes.partition_point(|b| b.start <= a.end());
                for b in &notes[first..last] {
                    pitch_class_transition_matrix[(a.pitch % 12) as usize]
                        [(b.pitch % 12) as usize] += 1.0;
                }
            }
            intervals.extend(
                notes
                    .windows(2)
                    .map(|w| (w[1].pitch as f64 - w[0].pitch as f64).abs()),
            );
        }
        let total: f64 = pitch_class_transition_matrix.iter().flatten().sum();
        if total > 0.0 {
            pitch_class_transition_matrix
                .iter_mut()
                .flatten()
                .for_each(|x| *x /= total);
        }

        let pitch_range = clip.pitch_span().map_or(0.0, |(lo, hi)| (hi - lo) as f64);
        let avg_pitch_interval = super::stats::mean(&intervals).unwrap_or(0.0);

        let mut onsets: Vec<u32> = clip.notes.iter().map(|n| n.start).collect();
        onsets.sort_unstable();
        let avg_ioi = match (onsets.first(), onsets.last()) {
            (Some(first), Some(last)) if onsets.len() > 1 => {
                (last - first) as f64 / (onsets.len() - 1) as f64
            }
            _ => 0.0,
        };

        let mut note_length_histogram = [0.0; 12];
        for n in &pitched {
            note_length_histogram[note_length_class(n.length)] += 1.0;
        }
        normalise(&mut note_length_histogram);

        ClipFeatures {
            pitch_count,
            pitch_class_histogram,
            pitch_class_transition_matrix,
            pitch_range,
            avg_pitch_interval,
            note_count: clip.notes.len() as f64,
            avg_ioi,
            note_length_histogram,
        }
    }

    /// The feature as a vector (the transition matrix row by row).
    pub fn vector(&self, feature: Feature) -> Vec<f64> {
        match feature {
            Feature::PitchCount => vec![self.pitch_count],
            Feature::PitchClassHistogram => self.pitch_class_histogram.to_vec(),
            Feature::PitchClassTransitionMatrix => self
                .pitch_class_transition_matrix
                .iter()
                .flatten()
                .copied()
                .collect(),
            Feature::PitchRange => vec![self.pitch_range],
            Feature::AvgPitchInterval => vec![self.avg_pitch_interval],
            Feature::NoteCount => vec![self.note_count],
            Feature::AvgIoi => vec![self.avg_ioi],
            Feature::NoteLengthHistogram => self.note_length_histogram.to_vec(),
        }
    }
}

/// Index into [`NOTE_LENGTH_CLASSES`] of the class nearest to `length` steps.
pub fn note_length_class(length: u32) -> usize {
    let mut best = 0;
    for (i, (_, steps)) in NOTE_LENGTH_CLASSES.iter().enumerate() {
        if (steps - length as f64).abs() < (NOTE_LENGTH_CLASSES[best].1 - length as f64).abs() {
            best = i;
        }
    }
    best
}

fn normalise(values: &mut [f64]) {
    let total: f64 = values.iter().sum();
    if total > 0.0 {
        values.iter_mut().for_each(|v| *v /= total);
    }
}

/// Whether note `n` is on a drum track (notes naming a missing track count as pitched).
pub fn is_drum_note(clip: &Clip, n: &Note) -> bool {
    clip.tracks
        .get(n.track as usize)
        .is_some_and(|t| t.is_drums())
}

/// The notes of the non-drum tracks.
pub fn pitched_notes(clip: &Clip) -> Vec<Note> {
    clip.notes
        .iter()
        .filter(|n| !is_drum_note(clip, n))
        .copied()
        .collect()
}

fn pitched_tracks(clip: &Clip) -> Vec<u16> {
    let mut tracks: Vec<u16> = clip
        .notes
        .iter()
        .filter(|n| !is_drum_note(clip, n))
        .map(|n| n.track)
        .collect();
    tracks.sort_unstable();
    tracks.dedup();
    tracks
}

/// One bar of a clip: its first step, its length in steps and its meter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub start: u32,
    pub steps: u32,
    pub time_signature: TimeSignature,
}

/// The bars of `clip`, following its meter changes (a change that falls inside a bar ends that
/// bar early), until both `clip.bars` bars and every note are covered.
pub fn bars(clip: &Clip) -> Vec<Bar> {
    let mut changes = clip.meter_changes.clone();
    changes.sort_by_key(|c| c.step);
    let last_note_end = clip.notes.iter().map(Note::end).max().unwrap_or(0);
    let mut out = Vec::new();
    let (mut pos, mut ts) = (0u32, clip.time_signature);
    let mut next_change = 0;
    while out.len() < clip.bars as usize || pos < last_note_end {
        while next_change < changes.len() && changes[next_change].step <= pos {
            ts = changes[next_change].time_signature;
            next_change += 1;
        }
        let mut end = pos + ts.steps_per_bar();
        if let Some(c) = changes.get(next_change)
            && c.step < end
        {
            end = c.step;
        }
        out.push(Bar {
            start: pos,
            steps: end - pos,
            time_signature: ts,
        });
        pos = end;
    }
    out
}

/// Grid steps of one beat of `ts`: a dotted quarter in compound meters (6/8, 9/8, 12/8, 3/8),
/// otherwise the note value of the denominator (a quarter in x/4, a half in x/2, an 8th in 7/8).
pub fn beat_steps(ts: TimeSignature) -> u32 {
    if ts.denominator == 8 && ts.numerator.is_multiple_of(3) {
        3 * 2
    } else {
        ((4 * STEPS_PER_BEAT) / ts.denominator.max(1) as u32).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::{MeterChange, Track, TrackRole};

    #[test]
    fn features_of_a_small_melody_with_a_chord() {
        let mut clip = Clip::new(1);
        // C4 quarter, E4 8th, G4 8th (legato), then a C-E-G chord on beat 3 (half note).
        for &(s, p, l) in &[
            (0, 60, 4),
            (4, 64, 2),
            (6, 67, 2),
            (8, 60, 8),
            (8, 64, 8),
            (8, 67, 8),
        ] {
            clip.notes.push(Note::new(s, p, l, 100, 0));
        }
        let f = ClipFeatures::of(&clip);
        assert_eq!(f.pitch_count, 3.0);
        assert_eq!(f.pitch_range, 7.0);
        assert_eq!(f.note_count, 6.0);
        // C: 4 + 8 steps, E: 2 + 8, G: 2 + 8 of 32.
        assert_eq!(f.pitch_class_histogram[0], 12.0 / 32.0);
        assert_eq!(f.pitch_class_histogram[4], 10.0 / 32.0);
        // Transitions C→E, E→G, and G→{C, E, G} where the chord starts: 5 pairs.
        assert_eq!(f.pitch_class_transition_matrix[0][4], 0.2);
        assert_eq!(f.pitch_class_transition_matrix[7][7], 0.2);
        // Order C E G C E G: intervals 4 3 7 4 3.
        assert!((f.avg_pitch_interval - 21.0 / 5.0).abs() < 1e-12);
        // Onsets 0 4 6 8 8 8: (8 - 0) / 5.
        assert!((f.avg_ioi - 1.6).abs() < 1e-12);
        // quarter, 8th, 8th, 3 × half.
        assert_eq!(f.note_length_histogram[1], 0.5);
        assert_eq!(f.note_length_histogram[2], 1.0 / 6.0);
        assert_eq!(f.note_length_histogram[3], 1.0 / 3.0);
    }

    #[test]
    fn drum_notes_do_not_count_as_pitches() {
        let mut clip = Clip::new(1);
        let drums = clip.add_track(Track::new("Drums", TrackRole::Drums, 9));
        clip.notes.push(Note::new(0, 60, 4, 100, 0));
        clip.notes.push(Note::new(0, 36, 1, 100, drums));
        clip.notes.push(Note::new(4, 42, 1, 100, drums));
        let f = ClipFeatures::of(&clip);
        assert_eq!(
            (f.pitch_count, f.pitch_range, f.note_count),
            (1.0, 0.0, 3.0)
        );
        assert_eq!(f.note_length_histogram[2], 1.0);
    }

    #[test]
    fn note_lengths_go_to_the_nearest_class() {
        let class = |l| NOTE_LENGTH_CLASSES[note_length_class(l)].0;
        assert_eq!(class(1), "16th");
        assert_eq!(class(3), "dotted 8th");
        assert_eq!(class(5), "half triplet");
        assert_eq!(class(12), "dotted half");
        assert_eq!(class(40), "whole");
    }

    #[test]
    fn bars_follow_meter_changes() {
        let mut clip = Clip::new(3);
        clip.meter_changes.push(MeterChange {
            step: 16,
            time_signature: TimeSignature::new(3, 4),
        });
        let starts: Vec<u32> = bars(&clip).iter().map(|b| b.start).collect();
        assert_eq!(starts, vec![0, 16, 28]);
        clip.notes.push(Note::new(50, 60, 4, 100, 0));
        assert_eq!(bars(&clip).len(), 5);
        assert_eq!(beat_steps(TimeSignature::new(6, 8)), 6);
        assert_eq!(beat_steps(TimeSignature::new(3, 4)), 4);
        assert_eq!(beat_steps(TimeSignature::new(7, 8)), 2);
    }
}
