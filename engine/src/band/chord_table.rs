//! The band player's chord-table accompanist, fitted on Nottingham: the "most frequent bar for
//! that chord" baseline, with a chord transition table in front so it can answer the bar
//! *after* the one just played:
//! 1. the chord of the bar just played is read from its notes (duration-weighted pitch classes
//!    matched against the 24 major and minor triads);
//! 2. the next chord is the most frequent successor of that chord in the training data
//!    (transposition-invariant: root movement and quality);
//! 3. the answer is the most frequent accompaniment bar of the training data for the next
//!    chord's quality, moved to its root.
//!
//! The fitted tables are small JSON (`assets/band/table.json`, embedded in the binary). The
//! plugin offers it beside the recurrent VAE ([`super::player`]) as an instant answer.

#[cfg(feature = "lab")]
use anyhow::bail;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
#[cfg(feature = "lab")]
use std::collections::HashMap;

#[cfg(feature = "lab")]
use crate::data::Song;
use crate::music::{Clip, Note, TrackRole};

/// The embedded table fitted on the Nottingham train split.
const EMBEDDED_TABLE: &[u8] = include_bytes!("../../../assets/band/table.json");

/// Major or minor triad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Quality {
    Major,
    Minor,
}

impl Quality {
    fn intervals(self) -> [u8; 3] {
        match self {
            Quality::Major => [0, 4, 7],
            Quality::Minor => [0, 3, 7],
        }
    }

    fn index(self) -> usize {
        match self {
            Quality::Major => 0,
            Quality::Minor => 1,
        }
    }
}

/// A triad: root pitch class and quality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chord {
    pub root: u8,
    pub quality: Quality,
}

impl Chord {
    pub fn contains(&self, pitch: u8) -> bool {
        let pc = (pitch + 12 - self.root % 12) % 12;
        self.quality.intervals().contains(&pc)
    }
}

/// The triad that best explains duration-weighted pitch classes; `None` without notes.
pub fn estimate_chord(weights: &[f64; 12]) -> Option<Chord> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let mut best: Option<(f64, Chord)> = None;
    for root in 0..12u8 {
        for quality in [Quality::Major, Quality::Minor] {
            let chord = Chord { root, quality };
            let inside: f64 = quality
                .intervals()
                .iter()
                .map(|i| weights[((root + i) % 12) as usize])
                .sum();
            // The root counts a little extra so that C-E-G is C major, not E minor (+6).
            let score = inside - 0.5 * (total - inside) + 0.1 * weights[root as usize];
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, chord));
            }
        }
    }
    best.map(|(_, c)| c)
}

/// Duration-weighted pitch classes of `notes`.
pub fn pitch_class_weights<'a>(notes: impl IntoIterator<Item = &'a Note>) -> [f64; 12] {
    let mut w = [0.0; 12];
    for n in notes {
        w[(n.pitch % 12) as usize] += n.length.max(1) as f64;
    }
    w
}

/// One note of an accompaniment pattern: step in the bar, pitch above the chord's root pitch
/// class (so `root + offset` is the pitch), length, velocity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PatternNote {
    pub step: u32,
    pub offset: u8,
    pub length: u32,
    pub velocity: u8,
}

/// The fitted tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChordTable {
    /// Steps per bar the patterns are written for (16: 4/4).
    pub steps_per_bar: u32,
    /// Per current quality (major, minor): counts of (root movement in semitones, next quality).
    pub transitions: [Vec<(u8, Quality, u32)>; 2],
    /// Per quality: the most frequent accompaniment bar for a chord of that quality.
    pub patterns: [Vec<PatternNote>; 2],
    /// Bars the table was fitted on.
    pub bars: usize,
}

#[cfg(feature = "lab")]
pub(crate) fn is_role(clip: &Clip, n: &Note, role: TrackRole) -> bool {
    clip.tracks
        .get(n.track as usize)
        .is_some_and(|t| t.role == role)
}

impl ChordTable {
    /// The table embedded in the binary.
    pub fn embedded() -> Result<Self> {
        serde_json::from_slice(EMBEDDED_TABLE).context("the embedded band table is damaged")
    }

    /// Fit on songs with a melody track and an accompaniment track, bars of `steps_per_bar`
    /// steps (others are skipped). Training code: only with the `lab` feature.
    #[cfg(feature = "lab")]
    pub fn fit(songs: &[Song], steps_per_bar: u32) -> Result<Self> {
        let mut transitions: [HashMap<(u8, Quality), u32>; 2] = Default::default();
        let mut patterns: [HashMap<Vec<PatternNote>, u32>; 2] = Default::default();
        let mut bars = 0;
        for song in songs {
            let clip = &song.clip;
            if clip.steps_per_bar() != steps_per_bar || !clip.meter_changes.is_empty() {
                continue;
            }
            let mut previous: Option<Chord> = None;
            for bar in 0..clip.bars {
                let window = clip.window(bar, 1);
                let accompaniment: Vec<&Note> = window
                    .notes
                    .iter()
                    .filter(|n| is_role(&window, n, TrackRole::Accompaniment))
                    .collect();
                let chord = estimate_chord(&pitch_class_weights(accompaniment.iter().copied()));
                if let (Some(a), Some(b)) = (previous, chord) {
                    let movement = (b.root + 12 - a.root) % 12;
                    *transitions[a.quality.index()]
                        .entry((movement, b.quality))
                        .or_default() += 1;
                }
                if let Some(c) = chord {
                    let mut pattern: Vec<PatternNote> = accompaniment
                        .iter()
                        .filter(|n| n.pitch >= c.root)
                        .map(|n| PatternNote {
                            step: n.start,
                            offset: n.pitch - c.root,
                            length: n.length,
                            velocity: n.velocity,
                        })
                        .collect();
                    pattern.sort_by_key(|p| (p.step, p.offset));
                    if !pattern.is_empty() {
                        *patterns[c.quality.index()].entry(pattern).or_default() += 1;
                        bars += 1;
                    }
                }
                previous = chord;
            }
        }
        if bars == 0 {
            bail!("no bar of {steps_per_bar} steps with an accompaniment to fit on");
        }
        let top = |m: &HashMap<Vec<PatternNote>, u32>| {
            m.iter()
                .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                .map(|(p, _)| p.clone())
                .unwrap_or_default()
        };
        let list = |m: &HashMap<(u8, Quality), u32>| {
            let mut v: Vec<(u8, Quality, u32)> = m.iter().map(|(&(d, q), &c)| (d, q, c)).collect();
            v.sort_by(|a, b| {
                b.2.cmp(&a.2)
                    .then(a.0.cmp(&b.0))
                    .then(a.1.index().cmp(&b.1.index()))
            });
            v
        };
        Ok(Self {
            steps_per_bar,
            transitions: [list(&transitions[0]), list(&transitions[1])],
            patterns: [top(&patterns[0]), top(&patterns[1])],
            bars,
        })
    }

    /// The most likely chord after `chord`.
    pub fn next_chord(&self, chord: Chord) -> Chord {
        match self.transitions[chord.quality.index()].first() {
            Some(&(movement, quality, _)) => Chord {
                root: (chord.root + movement) % 12,
                quality,
            },
            None => chord,
        }
    }

    /// The accompaniment bar for `chord` in a bar of `steps_per_bar` steps (patterns longer
    /// than the bar are cut), on `track`.
    pub fn bar_for(&self, chord: Chord, steps_per_bar: u32, track: u16) -> Vec<Note> {
        self.patterns[chord.quality.index()]
            .iter()
            .filter(|p| p.step < steps_per_bar)
            .map(|p| {
                Note::new(
                    p.step,
                    (chord.root + p.offset).min(127),
                    p.length.clamp(1, steps_per_bar - p.step),
                    p.velocity.clamp(1, 127),
                    track,
                )
            })
            .collect()
    }
}

/// The live band player on the chord table: push the bar just played, get the next bar.
#[derive(Clone, Debug)]
pub struct ChordBandPlayer {
    table: ChordTable,
    /// The chord the player last heard (kept through bars without notes).
    last_chord: Option<Chord>,
}

impl ChordBandPlayer {
    pub fn new(table: ChordTable) -> Self {
        Self {
            table,
            last_chord: None,
        }
    }

    /// Forget the bars so far (transport jump or stop).
    pub fn reset(&mut self) {
        self.last_chord = None;
    }

    /// `played`: one bar (any tracks; at most the first 512 notes are read). Returns the next
    /// bar's accompaniment as a one-bar clip with one "Band" track; empty while the player has
    /// not heard a note yet.
    pub fn next_bar(&mut self, played: &Clip) -> Clip {
        let steps = played.steps_per_bar();
        let weights = pitch_class_weights(played.notes.iter().take(512));
        if let Some(chord) = estimate_chord(&weights) {
            self.last_chord = Some(chord);
        }
        let mut out = Clip::new(1);
        out.time_signature = played.time_signature;
        out.tempo = played.tempo;
        let track = out.add_track(crate::music::Track::new(
            "Band",
            TrackRole::Accompaniment,
            1,
        ));
        if let Some(chord) = self.last_chord {
            out.notes = self
                .table
                .bar_for(self.table.next_chord(chord), steps, track);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triads_are_recognised_from_their_notes() {
        let chord_of = |pitch_classes: [usize; 3]| {
            let mut w = [0.0; 12];
            for pc in pitch_classes {
                w[pc] = 1.0;
            }
            estimate_chord(&w)
        };
        let chord = |root, quality| Some(Chord { root, quality });
        assert_eq!(chord_of([0, 4, 7]), chord(0, Quality::Major));
        assert_eq!(chord_of([9, 0, 4]), chord(9, Quality::Minor));
        assert_eq!(estimate_chord(&[0.0; 12]), None);
    }
}
