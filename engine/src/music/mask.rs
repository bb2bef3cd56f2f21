//! Masks: the (step, pitch) cells a model regenerates. Everything outside stays as it is.

use super::clip::{Clip, TrackRole};
use super::key::parse_pitch;
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;

/// A set of (step, pitch) cells over a clip's whole length and all 128 pitches, optionally
/// limited to one track (the other tracks are then context only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SavedMask")]
pub struct Mask {
    pub steps: u32,
    /// `[steps, 128]`, row-major.
    cells: Vec<bool>,
    /// Regenerate only this track's notes; `None` means every non-drum track.
    pub track: Option<u16>,
}

/// A mask as saved, before its cells are checked against its steps.
#[derive(Deserialize)]
struct SavedMask {
    steps: u32,
    cells: Vec<bool>,
    track: Option<u16>,
}

impl From<SavedMask> for Mask {
    /// A damaged mask (cells not `steps × 128`) keeps the whole steps its cells cover: never more
    /// memory than the saved text held, never an index past the cells.
    fn from(saved: SavedMask) -> Self {
        let SavedMask {
            mut steps,
            mut cells,
            track,
        } = saved;
        if cells.len() as u64 != steps as u64 * 128 {
            steps = (cells.len() / 128).min(u32::MAX as usize) as u32;
            cells.truncate(steps as usize * 128);
        }
        Self {
            steps,
            cells,
            track,
        }
    }
}

impl Mask {
    pub fn empty(steps: u32) -> Self {
        Self {
            steps,
            cells: vec![false; steps as usize * 128],
            track: None,
        }
    }

    pub fn all(steps: u32) -> Self {
        Self {
            steps,
            cells: vec![true; steps as usize * 128],
            track: None,
        }
    }

    /// Cells in `steps` × `pitches` (both inclusive-exclusive / inclusive as typed).
    pub fn rect(
        total_steps: u32,
        steps: std::ops::Range<u32>,
        pitches: RangeInclusive<u8>,
    ) -> Self {
        let mut m = Self::empty(total_steps);
        for s in steps.start..steps.end.min(total_steps) {
            for p in pitches.clone() {
                m.set(s, p, true);
            }
        }
        m
    }

    /// Whole bars `bars` (0-based, inclusive) at every pitch.
    pub fn bars(clip: &Clip, bars: RangeInclusive<u32>) -> Self {
        let spb = clip.steps_per_bar();
        Self::rect(
            clip.steps(),
            bars.start() * spb..(bars.end() + 1) * spb,
            0..=127,
        )
    }

    /// Every step, pitches in `pitches`.
    pub fn pitches(clip: &Clip, pitches: RangeInclusive<u8>) -> Self {
        Self::rect(clip.steps(), 0..clip.steps(), pitches)
    }

    /// The cells below the melody: at each step, every pitch under the lowest sounding melody
    /// note (or under the last one heard, across rests; before the first note, nothing).
    /// The melody track is the first with role melody, else track 0.
    pub fn below_melody(clip: &Clip) -> Self {
        let melody = clip.track_with_role(TrackRole::Melody).unwrap_or(0);
        let mut m = Self::empty(clip.steps());
        let mut last: Option<u8> = None;
        for s in 0..clip.steps() {
            let lowest = clip
                .track_notes(melody)
                .filter(|n| n.covers(s))
                .map(|n| n.pitch)
                .min();
            if lowest.is_some() {
                last = lowest;
            }
            if let Some(top) = last {
                for p in 0..top {
                    m.set(s, p, true);
                }
            }
        }
        m.track = None;
        m
    }

    /// Regenerate one whole track.
    pub fn track(clip: &Clip, track: u16) -> Self {
        Self {
            track: Some(track),
            ..Self::all(clip.steps())
        }
    }

    pub fn get(&self, step: u32, pitch: u8) -> bool {
        step < self.steps
            && pitch < 128
            && self
                .cells
                .get(step as usize * 128 + pitch as usize)
                .copied()
                .unwrap_or(false)
    }

    pub fn set(&mut self, step: u32, pitch: u8, on: bool) {
        if step < self.steps
            && pitch < 128
            && let Some(cell) = self.cells.get_mut(step as usize * 128 + pitch as usize)
        {
            *cell = on;
        }
    }

    /// Number of masked cells.
    pub fn count(&self) -> usize {
        self.cells.iter().filter(|&&c| c).count()
    }

    pub fn is_empty(&self) -> bool {
        !self.cells.iter().any(|&c| c)
    }

    pub fn is_full(&self) -> bool {
        self.cells.iter().all(|&c| c)
    }

    pub fn union(&self, other: &Mask) -> Mask {
        self.combine(other, |a, b| a || b)
    }

    pub fn intersect(&self, other: &Mask) -> Mask {
        self.combine(other, |a, b| a && b)
    }

    pub fn invert(&self) -> Mask {
        Mask {
            cells: self.cells.iter().map(|c| !c).collect(),
            ..self.clone()
        }
    }

    /// Same cells on a clip of `steps` steps (cut, or padded with unmasked cells).
    pub fn resized(&self, steps: u32) -> Mask {
        let mut cells = self.cells.clone();
        cells.resize(steps as usize * 128, false);
        Mask {
            steps,
            cells,
            track: self.track,
        }
    }

    /// Whether a note's first cell is masked (then the note belongs to the regenerated part).
    pub fn covers_note(&self, note: &super::clip::Note) -> bool {
        self.track.is_none_or(|t| t == note.track) && self.get(note.start, note.pitch)
    }

    /// Steps that have at least one masked cell.
    pub fn masked_steps(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.steps).filter(|&s| {
            self.cells[s as usize * 128..(s as usize + 1) * 128]
                .iter()
                .any(|&c| c)
        })
    }

    fn combine(&self, other: &Mask, f: impl Fn(bool, bool) -> bool) -> Mask {
        let other = other.resized(self.steps);
        let cells = self
            .cells
            .iter()
            .zip(&other.cells)
            .map(|(&a, &b)| f(a, b))
            .collect();
        let track = if self.track == other.track {
            self.track
        } else {
            self.track.or(other.track)
        };
        Mask {
            steps: self.steps,
            cells,
            track,
        }
    }
}

/// Parse a bar range as a DAW numbers bars: "3-4" or "3" (1-based, inclusive) to 0-based.
pub fn parse_bar_range(text: &str) -> Result<RangeInclusive<u32>, String> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let parse = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| format!("bar range '{text}': bars are numbered from 1"))
    };
    let (first, last) = (parse(a)?, parse(b)?);
    if last < first {
        return Err(format!("bar range '{text}' ends before it starts"));
    }
    Ok(first - 1..=last - 1)
}

/// Parse a pitch range: "C3-C5" (C3 = 60) or "48-72", inclusive.
pub fn parse_pitch_range(text: &str) -> Result<RangeInclusive<u8>, String> {
    // Split at a '-' that follows a digit so "C-1-C3" and "Bb-1-60" work.
    let bytes = text.as_bytes();
    let split = (1..bytes.len()).find(|&i| bytes[i] == b'-' && bytes[i - 1].is_ascii_digit());
    let (a, b) = match split {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, text),
    };
    let (lo, hi) = (parse_pitch(a)?, parse_pitch(b)?);
    if hi < lo {
        return Err(format!("pitch range '{text}' ends below where it starts"));
    }
    Ok(lo..=hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::clip::{Note, Track};

    #[test]
    fn a_saved_mask_with_fewer_cells_than_steps_is_cut_to_its_cells() {
        // 4 steps declared, cells for 2 steps and a half: before, `get(3, 0)` indexed past the
        // cells and panicked in the editor's first frame.
        let mut cells = vec![false; 2 * 128 + 64];
        cells[128 + 5] = true;
        let text = serde_json::json!({"steps": 4, "cells": cells, "track": null}).to_string();
        let mask: Mask = serde_json::from_str(&text).unwrap();
        assert_eq!(mask.steps, 2);
        assert!(mask.get(1, 5));
        assert!(!mask.get(3, 0));
        assert_eq!(mask.count(), 1);
        // A huge declared length allocates nothing beyond what was saved.
        let text = serde_json::json!({"steps": u32::MAX, "cells": [true], "track": 2}).to_string();
        let mask: Mask = serde_json::from_str(&text).unwrap();
        assert_eq!((mask.steps, mask.count(), mask.track), (0, 0, Some(2)));
        // An intact mask reads back as it was.
        let whole = Mask::rect(8, 2..4, 60..=62);
        let text = serde_json::to_string(&whole).unwrap();
        assert_eq!(serde_json::from_str::<Mask>(&text).unwrap(), whole);
    }

    #[test]
    fn bar_ranges_are_one_based_and_inclusive() {
        assert_eq!(parse_bar_range("3-4").unwrap(), 2..=3);
        assert_eq!(parse_bar_range("1").unwrap(), 0..=0);
        assert!(parse_bar_range("0-2").is_err());
        assert!(parse_bar_range("4-3").is_err());
        assert!(parse_bar_range("x").is_err());
    }

    #[test]
    fn pitch_ranges_take_names_and_numbers() {
        assert_eq!(parse_pitch_range("C3-C5").unwrap(), 60..=84);
        assert_eq!(parse_pitch_range("48-72").unwrap(), 48..=72);
        assert_eq!(parse_pitch_range("C-1-C0").unwrap(), 12..=24);
        assert!(parse_pitch_range("C5-C3").is_err());
    }

    #[test]
    fn bar_mask_covers_whole_bars() {
        let clip = Clip::new(4);
        let m = Mask::bars(&clip, 2..=3);
        assert_eq!(m.count(), 32 * 128);
        assert!(m.get(32, 0) && m.get(63, 127) && !m.get(31, 60));
        assert_eq!(m.invert().count(), 32 * 128);
        assert!(m.union(&m.invert()).is_full());
        assert!(m.intersect(&m.invert()).is_empty());
    }

    #[test]
    fn below_melody_follows_the_melody_through_rests() {
        let mut clip = Clip::new(1);
        clip.tracks = vec![
            Track::new("Melody", TrackRole::Melody, 0),
            Track::new("Chords", TrackRole::Accompaniment, 1),
        ];
        clip.notes = vec![Note::new(2, 72, 2, 100, 0), Note::new(8, 67, 4, 100, 0)];
        let m = Mask::below_melody(&clip);
        assert!(!m.get(0, 40)); // before the first melody note
        assert!(m.get(2, 71) && !m.get(2, 72));
        assert!(m.get(5, 71)); // rest: keeps the last melody pitch
        assert!(m.get(8, 66) && !m.get(8, 67) && !m.get(8, 70));
    }

    #[test]
    fn track_mask_selects_notes_of_that_track_only() {
        let mut clip = Clip::new(1);
        clip.add_track(Track::new("Bass", TrackRole::Bass, 1));
        let m = Mask::track(&clip, 1);
        assert!(m.covers_note(&Note::new(0, 40, 1, 100, 1)));
        assert!(!m.covers_note(&Note::new(0, 40, 1, 100, 0)));
    }
}
