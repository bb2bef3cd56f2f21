//! Two-channel piano roll (onset, sustain) on the 16th-note grid.
//!
//! A plain binary roll merges a repeated note into one long note; the onset channel keeps them
//! apart. Layout is `[2, steps, pitches]` in row-major order, the layout the models read
//! (`// [batch, 2, steps, pitches]` once batched).

use super::clip::{Clip, Note, Track};

pub const ONSET: usize = 0;
pub const SUSTAIN: usize = 1;

/// A dense roll over a pitch window `pitch_lo..pitch_lo + pitches`.
#[derive(Clone, Debug, PartialEq)]
pub struct PianoRoll {
    pub steps: usize,
    pub pitch_lo: u8,
    pub pitches: usize,
    /// `[2, steps, pitches]`, values in 0..=1 (exactly 0 or 1 when made from a clip).
    pub data: Vec<f32>,
}

/// Which notes of a clip go into a roll.
#[derive(Clone, Debug, Default)]
pub struct RollFilter {
    /// Only these tracks; `None` takes every non-drum track.
    pub tracks: Option<Vec<u16>>,
}

impl PianoRoll {
    pub fn zeros(steps: usize, pitch_lo: u8, pitches: usize) -> Self {
        assert!(
            pitch_lo as usize + pitches <= 128,
            "pitch window leaves the MIDI range"
        );
        Self {
            steps,
            pitch_lo,
            pitches,
            data: vec![0.0; 2 * steps * pitches],
        }
    }

    /// Full MIDI range (128 pitches).
    pub fn full(steps: usize) -> Self {
        Self::zeros(steps, 0, 128)
    }

    pub fn index(&self, channel: usize, step: usize, pitch_offset: usize) -> usize {
        (channel * self.steps + step) * self.pitches + pitch_offset
    }

    /// Value at a MIDI pitch; 0 outside the window.
    pub fn get(&self, channel: usize, step: usize, pitch: u8) -> f32 {
        match self.offset(pitch) {
            Some(o) if step < self.steps => self.data[self.index(channel, step, o)],
            _ => 0.0,
        }
    }

    pub fn set(&mut self, channel: usize, step: usize, pitch: u8, value: f32) {
        if let Some(o) = self.offset(pitch)
            && step < self.steps
        {
            let i = self.index(channel, step, o);
            self.data[i] = value;
        }
    }

    /// Offset of `pitch` inside the window.
    pub fn offset(&self, pitch: u8) -> Option<usize> {
        let o = pitch.checked_sub(self.pitch_lo)? as usize;
        (o < self.pitches).then_some(o)
    }

    /// Draw the notes of `clip` that pass `filter` into a roll of `clip.steps()` steps.
    /// Notes outside the pitch window are left out; use [`PianoRoll::notes_outside`] to count them.
    pub fn from_clip(clip: &Clip, pitch_lo: u8, pitches: usize, filter: &RollFilter) -> Self {
        let mut roll = Self::zeros(clip.steps() as usize, pitch_lo, pitches);
        for n in clip.notes.iter().filter(|n| passes(clip, filter, n)) {
            roll.draw(n);
        }
        roll
    }

    /// Draw one note (clipped to the roll's length).
    pub fn draw(&mut self, note: &Note) {
        let start = note.start as usize;
        if start >= self.steps || self.offset(note.pitch).is_none() {
            return;
        }
        self.set(ONSET, start, note.pitch, 1.0);
        for s in start..(note.end() as usize).min(self.steps) {
            self.set(SUSTAIN, s, note.pitch, 1.0);
        }
    }

    /// How many notes passing `filter` fall outside the pitch window `pitch_lo..pitch_lo+pitches`.
    pub fn notes_outside(clip: &Clip, pitch_lo: u8, pitches: usize, filter: &RollFilter) -> usize {
        let hi = pitch_lo as usize + pitches;
        clip.notes
            .iter()
            .filter(|n| passes(clip, filter, n))
            .filter(|n| (n.pitch as usize) < pitch_lo as usize || n.pitch as usize >= hi)
            .count()
    }

    /// Read notes back, with cells counted as on when `>= threshold`.
    ///
    /// A note starts at an onset cell, or at a sustain cell after a silent one (so a roll whose
    /// onset channel was lost still decodes), and lasts while sustain stays on and no new onset
    /// comes. An onset without sustain makes a one-step note.
    pub fn to_notes(&self, threshold: f32, velocity: u8, track: u16) -> Vec<Note> {
        self.read_notes(threshold, velocity, track, true)
    }

    /// Read notes back the way a sampled roll is meant: a note starts only at an onset cell
    /// and lasts while sustain stays on and no new onset comes; sustain cells outside such a
    /// run are ignored (a sampled roll's stray sustain cells would otherwise become short notes
    /// that nobody wrote). An onset without sustain makes a one-step note.
    pub fn to_notes_from_onsets(&self, threshold: f32, velocity: u8, track: u16) -> Vec<Note> {
        self.read_notes(threshold, velocity, track, false)
    }

    /// Notes of the roll; a sustain cell after a silent one starts a note only when
    /// `sustain_starts`.
    fn read_notes(
        &self,
        threshold: f32,
        velocity: u8,
        track: u16,
        sustain_starts: bool,
    ) -> Vec<Note> {
        let mut notes = Vec::new();
        for o in 0..self.pitches {
            let pitch = self.pitch_lo + o as u8;
            let mut open: Option<u32> = None;
            for s in 0..self.steps {
                let onset = self.data[self.index(ONSET, s, o)] >= threshold;
                let sustain = self.data[self.index(SUSTAIN, s, o)] >= threshold;
                if let Some(start) = open
                    && (onset || !sustain)
                {
                    notes.push(Note::new(start, pitch, s as u32 - start, velocity, track));
                    open = None;
                }
                if open.is_none() && (onset || (sustain_starts && sustain)) {
                    open = Some(s as u32);
                }
            }
            if let Some(start) = open {
                notes.push(Note::new(
                    start,
                    pitch,
                    self.steps as u32 - start,
                    velocity,
                    track,
                ));
            }
        }
        notes.sort_by_key(|n| (n.start, n.pitch));
        notes
    }

    /// Share of cells that are on in `channel` (the data's density, the prior of the binomial
    /// diffusion).
    pub fn density(&self, channel: usize) -> f32 {
        let plane = &self.data
            [channel * self.steps * self.pitches..(channel + 1) * self.steps * self.pitches];
        if plane.is_empty() {
            return 0.0;
        }
        plane.iter().filter(|&&v| v >= 0.5).count() as f32 / plane.len() as f32
    }
}

fn passes(clip: &Clip, filter: &RollFilter, note: &Note) -> bool {
    match &filter.tracks {
        Some(tracks) => tracks.contains(&note.track),
        None => !clip
            .tracks
            .get(note.track as usize)
            .is_some_and(Track::is_drums),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_notes_survive_the_roll() {
        let mut clip = Clip::new(1);
        clip.notes = vec![
            Note::new(0, 60, 2, 100, 0),
            Note::new(2, 60, 2, 100, 0),
            Note::new(5, 64, 11, 100, 0),
        ];
        let roll = PianoRoll::from_clip(&clip, 21, 88, &RollFilter::default());
        assert_eq!(roll.to_notes(0.5, 100, 0), clip.notes);
    }

    #[test]
    fn sustain_without_onset_still_decodes() {
        let mut roll = PianoRoll::full(8);
        for s in 2..5 {
            roll.set(SUSTAIN, s, 40, 1.0);
        }
        assert_eq!(roll.to_notes(0.5, 80, 1), vec![Note::new(2, 40, 3, 80, 1)]);
    }

    #[test]
    fn decoding_from_onsets_ignores_stray_sustain() {
        let mut roll = PianoRoll::full(8);
        roll.set(ONSET, 0, 60, 1.0);
        for s in 0..3 {
            roll.set(SUSTAIN, s, 60, 1.0);
        }
        // A sustain gap at step 3, then sustain without an onset: not a note.
        for s in 4..6 {
            roll.set(SUSTAIN, s, 60, 1.0);
        }
        // A lone sustain cell on another pitch; an onset without sustain.
        roll.set(SUSTAIN, 2, 62, 1.0);
        roll.set(ONSET, 7, 64, 1.0);
        assert_eq!(
            roll.to_notes_from_onsets(0.5, 90, 2),
            vec![Note::new(0, 60, 3, 90, 2), Note::new(7, 64, 1, 90, 2)]
        );
        // The lenient reader turns the stray cells into notes.
        assert_eq!(roll.to_notes(0.5, 90, 2).len(), 4);
    }

    #[test]
    fn notes_outside_the_window_are_counted_not_drawn() {
        let mut clip = Clip::new(1);
        clip.notes = vec![Note::new(0, 10, 2, 100, 0), Note::new(0, 60, 2, 100, 0)];
        let roll = PianoRoll::from_clip(&clip, 21, 88, &RollFilter::default());
        assert_eq!(roll.to_notes(0.5, 100, 0).len(), 1);
        assert_eq!(
            PianoRoll::notes_outside(&clip, 21, 88, &RollFilter::default()),
            1
        );
    }
}
