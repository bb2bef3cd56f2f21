//! The clip: what a producer draws in the piano roll and what every model reads and writes.
//!
//! Time is measured in grid steps of a 16th note (`STEPS_PER_BEAT` = 4 steps per quarter note).

use serde::{Deserialize, Serialize};

use super::key::Key;

/// Grid steps per quarter note (a step is a 16th note).
pub const STEPS_PER_BEAT: u32 = 4;

/// MIDI channel 10 (0-based 9): General MIDI drums.
pub const DRUM_CHANNEL: u8 = 9;

/// Velocity of notes whose source carries none (JSB and bl2012 frames, melody tokens).
pub const PLAIN_VELOCITY: u8 = 90;

/// One note on the 16th-note grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Note {
    /// Start in grid steps from the clip start.
    pub start: u32,
    /// MIDI pitch, 0–127.
    pub pitch: u8,
    /// Length in grid steps, at least 1.
    pub length: u32,
    /// MIDI velocity, 1–127.
    pub velocity: u8,
    /// Index into [`Clip::tracks`].
    pub track: u16,
}

impl Note {
    pub fn new(start: u32, pitch: u8, length: u32, velocity: u8, track: u16) -> Self {
        Self {
            start,
            pitch: pitch.min(127),
            length: length.max(1),
            velocity: velocity.clamp(1, 127),
            track,
        }
    }

    /// First step after the note (saturates: a hostile length cannot wrap around).
    pub fn end(&self) -> u32 {
        self.start.saturating_add(self.length)
    }

    /// Whether the note sounds during `step`.
    pub fn covers(&self, step: u32) -> bool {
        step >= self.start && step < self.end()
    }

    /// The part of the note inside steps `lo..hi` (which it must reach into), with `lo` as
    /// step 0.
    pub fn cut_to(&self, lo: u32, hi: u32) -> Note {
        let start = self.start.max(lo);
        let end = self.end().min(hi);
        Note {
            start: start - lo,
            length: end - start,
            ..*self
        }
    }
}

/// What a track plays, so models and the band player know which voice is which.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrackRole {
    Melody,
    #[default]
    Accompaniment,
    Bass,
    Drums,
}

impl TrackRole {
    pub fn name(self) -> &'static str {
        match self {
            TrackRole::Melody => "melody",
            TrackRole::Accompaniment => "accompaniment",
            TrackRole::Bass => "bass",
            TrackRole::Drums => "drums",
        }
    }

    /// Guess a role from a track name and MIDI channel (0-based).
    pub fn guess(name: &str, channel: u8) -> Self {
        let lower = name.to_ascii_lowercase();
        if channel == DRUM_CHANNEL || lower.contains("drum") || lower.contains("perc") {
            TrackRole::Drums
        } else if lower.contains("melody") || lower.contains("lead") || lower.contains("vocal") {
            TrackRole::Melody
        } else if lower.contains("bass") {
            TrackRole::Bass
        } else {
            TrackRole::Accompaniment
        }
    }
}

/// A named track of a clip, with the MIDI channel (0-based) it plays on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    pub name: String,
    pub role: TrackRole,
    pub channel: u8,
}

impl Track {
    pub fn new(name: impl Into<String>, role: TrackRole, channel: u8) -> Self {
        Self {
            name: name.into(),
            role,
            channel: channel.min(15),
        }
    }

    pub fn is_drums(&self) -> bool {
        self.role == TrackRole::Drums || self.channel == DRUM_CHANNEL
    }
}

/// A time signature such as 4/4, 3/4 or 6/8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeSignature {
    pub numerator: u8,
    pub denominator: u8,
}

impl TimeSignature {
    pub const FOUR_FOUR: TimeSignature = TimeSignature {
        numerator: 4,
        denominator: 4,
    };

    pub fn new(numerator: u8, denominator: u8) -> Self {
        Self {
            numerator: numerator.max(1),
            denominator: denominator.max(1),
        }
    }

    /// Grid steps in one bar: 16 for 4/4, 12 for 3/4 and for 6/8. At least one step, also for
    /// a damaged meter (a zero read from a file or a saved state counts as 1).
    pub fn steps_per_bar(&self) -> u32 {
        ((self.numerator.max(1) as u32 * 4 * STEPS_PER_BEAT) / self.denominator.max(1) as u32)
            .max(1)
    }

    /// Whether the meter is one a clip may have: numerator and denominator at least 1.
    pub fn is_valid(&self) -> bool {
        self.numerator >= 1 && self.denominator >= 1
    }
}

impl Default for TimeSignature {
    fn default() -> Self {
        Self::FOUR_FOUR
    }
}

impl std::fmt::Display for TimeSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.numerator, self.denominator)
    }
}

/// A tempo change at a grid step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TempoChange {
    pub step: u32,
    pub bpm: f64,
}

/// A time-signature change at a grid step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterChange {
    pub step: u32,
    pub time_signature: TimeSignature,
}

/// A multi-track MIDI clip on a 16th-note grid.
///
/// `tempo` and `time_signature` are the values at the start; `tempo_changes` and `meter_changes`
/// hold later changes (imported files keep them so that an export plays back the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    pub notes: Vec<Note>,
    pub tracks: Vec<Track>,
    /// Quarter notes per minute at the start.
    pub tempo: f64,
    pub time_signature: TimeSignature,
    /// Length in bars (of `time_signature`).
    pub bars: u32,
    #[serde(default)]
    pub tempo_changes: Vec<TempoChange>,
    #[serde(default)]
    pub meter_changes: Vec<MeterChange>,
}

impl Default for Clip {
    fn default() -> Self {
        Self::new(4)
    }
}

impl Clip {
    /// An empty 4/4 clip at 120 BPM with one accompaniment track.
    pub fn new(bars: u32) -> Self {
        Self {
            notes: Vec::new(),
            tracks: vec![Track::new("Piano", TrackRole::Accompaniment, 0)],
            tempo: 120.0,
            time_signature: TimeSignature::FOUR_FOUR,
            bars,
            tempo_changes: Vec::new(),
            meter_changes: Vec::new(),
        }
    }

    /// The key of the pitched (non-drum) notes, weighted by length ([`Key::estimate`]); `None`
    /// without pitched notes.
    pub fn estimate_key(&self) -> Option<Key> {
        let mut weights = [0.0f64; 12];
        for n in &self.notes {
            let drums = self
                .tracks
                .get(n.track as usize)
                .is_some_and(Track::is_drums);
            if !drums {
                weights[(n.pitch % 12) as usize] += n.length as f64;
            }
        }
        Key::estimate(&weights)
    }

    pub fn steps_per_bar(&self) -> u32 {
        self.time_signature.steps_per_bar()
    }

    /// Length of the clip in grid steps (saturating for a hostile bar count; a clip that went
    /// through [`Clip::sanitize`] is far below the limit).
    pub fn steps(&self) -> u32 {
        self.bars.saturating_mul(self.steps_per_bar())
    }

    /// Grid-step range of 0-based bar `bar`.
    pub fn bar_steps(&self, bar: u32) -> std::ops::Range<u32> {
        let spb = self.steps_per_bar();
        bar * spb..(bar + 1) * spb
    }

    /// Add a track and return its index.
    pub fn add_track(&mut self, track: Track) -> u16 {
        self.tracks.push(track);
        (self.tracks.len() - 1) as u16
    }

    /// The first track with `role`, if any.
    pub fn track_with_role(&self, role: TrackRole) -> Option<u16> {
        self.tracks
            .iter()
            .position(|t| t.role == role)
            .map(|i| i as u16)
    }

    /// Sort notes by (start, pitch, track, ...) so that equal clips compare equal.
    pub fn sort_notes(&mut self) {
        self.notes
            .sort_by_key(|n| (n.start, n.pitch, n.track, n.length, n.velocity));
    }

    /// Notes of one track.
    pub fn track_notes(&self, track: u16) -> impl Iterator<Item = &Note> + '_ {
        self.notes.iter().filter(move |n| n.track == track)
    }

    /// Grow `bars` so that every note fits.
    pub fn fit_bars_to_notes(&mut self) {
        let end = self.notes.iter().map(Note::end).max().unwrap_or(0);
        let spb = self.steps_per_bar();
        self.bars = self.bars.max(end.div_ceil(spb));
    }

    /// The part of the clip in bars `first..first + count` (0-based), shifted to start at 0.
    /// Notes crossing the window edges are cut to the window.
    pub fn window(&self, first_bar: u32, bars: u32) -> Clip {
        let spb = self.steps_per_bar();
        let (lo, hi) = (first_bar * spb, (first_bar + bars) * spb);
        let notes = self
            .notes
            .iter()
            .filter(|n| n.start < hi && n.end() > lo)
            .map(|n| n.cut_to(lo, hi))
            .collect();
        Clip {
            notes,
            bars,
            tempo_changes: Vec::new(),
            meter_changes: Vec::new(),
            ..self.clone()
        }
    }

    /// Transpose every pitched (non-drum) note by `semitones`; `None` if a note would leave 0–127.
    pub fn transposed(&self, semitones: i32) -> Option<Clip> {
        let mut out = self.clone();
        for n in &mut out.notes {
            if self
                .tracks
                .get(n.track as usize)
                .is_some_and(Track::is_drums)
            {
                continue;
            }
            let p = n.pitch as i32 + semitones;
            if !(0..=127).contains(&p) {
                return None;
            }
            n.pitch = p as u8;
        }
        Some(out)
    }

    /// Lowest and highest pitch of the non-drum notes.
    pub fn pitch_span(&self) -> Option<(u8, u8)> {
        let pitched = self.notes.iter().filter(|n| {
            !self
                .tracks
                .get(n.track as usize)
                .is_some_and(Track::is_drums)
        });
        pitched.fold(None, |acc, n| match acc {
            None => Some((n.pitch, n.pitch)),
            Some((lo, hi)) => Some((lo.min(n.pitch), hi.max(n.pitch))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_per_bar_follows_the_meter() {
        assert_eq!(TimeSignature::new(4, 4).steps_per_bar(), 16);
        assert_eq!(TimeSignature::new(3, 4).steps_per_bar(), 12);
        assert_eq!(TimeSignature::new(6, 8).steps_per_bar(), 12);
        assert_eq!(TimeSignature::new(2, 4).steps_per_bar(), 8);
        assert_eq!(TimeSignature::new(7, 8).steps_per_bar(), 14);
    }

    #[test]
    fn a_hostile_length_neither_overflows_nor_wraps() {
        let note = Note::new(u32::MAX - 2, 60, u32::MAX, 100, 0);
        assert_eq!(note.end(), u32::MAX);
        assert!(note.covers(u32::MAX - 1));
        assert!(
            !note.covers(3),
            "a wrapped end would make it cover the clip's start"
        );
    }

    #[test]
    fn a_zero_in_a_saved_meter_does_not_divide_by_zero() {
        let meter: TimeSignature =
            serde_json::from_str(r#"{"numerator": 4, "denominator": 0}"#).unwrap();
        assert!(!meter.is_valid());
        assert_eq!(meter.steps_per_bar(), 64);
        let mut clip = Clip::new(u32::MAX);
        clip.time_signature = meter;
        assert_eq!(clip.steps(), u32::MAX);
    }

    #[test]
    fn window_cuts_notes_at_the_edges() {
        let mut clip = Clip::new(4);
        clip.notes.push(Note::new(12, 60, 8, 100, 0)); // crosses bar 1's start
        clip.notes.push(Note::new(40, 64, 4, 90, 0));
        let w = clip.window(1, 1);
        assert_eq!(w.bars, 1);
        assert_eq!(w.notes, vec![Note::new(0, 60, 4, 100, 0)]);
    }

    #[test]
    fn transposition_refuses_to_leave_the_midi_range() {
        let mut clip = Clip::new(1);
        clip.notes.push(Note::new(0, 120, 1, 100, 0));
        assert!(clip.transposed(8).is_none());
        assert_eq!(clip.transposed(7).unwrap().notes[0].pitch, 127);
    }
}
