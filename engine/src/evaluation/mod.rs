//! One evaluation library for every model (roll diffusion, latent diffusion, band model): what a
//! producer hears when a model regenerates part of a clip.
//!
//! An evaluation is a list of [`Case`]s — windows of real songs with a [`Region`] to regenerate
//! (steps × tracks) — and a list of rows (the model, the true hole, real music of other songs,
//! copy, random notes drawn from the data's statistics, …) that each return one whole clip per
//! case and seed. Only what a row generated is scored: the notes inside the region, never the
//! given context, which is the condition.
//!
//! - [`part_fit`]: per-sample metrics of the generated part against the true hole and the same
//!   part's context (voices, register, density, note-length and onset histograms, key,
//!   consonance with the other parts, melodic continuity, given notes kept, notes on the right
//!   track), per role (melody, accompaniment, bass) and for all pitched notes together.
//! - [`set_metrics`]: Yang & Lerch's overlapping areas (identical pairs kept, both OAs) and
//!   Mittal et al.'s consistency and variance, on the generated parts of the set only.
//! - [`bootstrap`]: 95% percentile intervals over windows for every number, and paired
//!   comparisons ("better", "worse", "no difference").
//! - [`random_data`]: the random-from-data baseline (notes drawn per role from the training
//!   data's pitch, length, onset, density and polyphony statistics).
//! - [`report`]: the result as JSON (every row, metric, interval and per-window value), markdown
//!   tables with verdicts, and `--compare A.json B.json`.
//! - [`listen`]: MIDI files and a PNG sheet of piano rolls of the first windows, per row.

pub mod bootstrap;
pub mod listen;
pub mod part_fit;
pub mod random_data;
pub mod report;
pub mod set_metrics;

use std::ops::Range;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::music::{Clip, Note, TrackRole};

pub use report::{EvalReport, RowOutputs, TaskReport, evaluate_task};

/// One task's cases and every row's outputs (for `--listen`).
pub struct TaskOutputs<T> {
    pub task: T,
    pub cases: Vec<Case>,
    pub rows: Vec<RowOutputs>,
}

/// `count` of `all`, picked by a shuffle seeded with `seed`.
pub fn seeded_pick<T>(mut all: Vec<T>, count: usize, seed: u64) -> Vec<T> {
    all.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    all.truncate(count);
    all
}

/// The task named `s` (any case) in `names`, a list of (the task's names, the task); the error
/// lists the first name of each.
pub fn parse_task<T: Copy>(s: &str, names: &[(&[&str], T)]) -> Result<T, String> {
    let wanted = s.to_ascii_lowercase();
    names
        .iter()
        .find(|(aliases, _)| aliases.contains(&wanted.as_str()))
        .map(|&(_, task)| task)
        .ok_or_else(|| {
            let first: Vec<&str> = names.iter().map(|(aliases, _)| aliases[0]).collect();
            format!("unknown task '{wanted}' ({})", first.join(", "))
        })
}

/// What a case regenerates: notes starting in `steps` on `tracks` (every track when `None`).
/// Notes on a track the window does not have count as generated too (a new track).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub steps: Range<u32>,
    pub tracks: Option<Vec<u16>>,
}

impl Region {
    /// Whether `note` of the window's truth or context lies in the region.
    pub fn covers(&self, note: &Note) -> bool {
        self.steps.contains(&note.start)
            && self
                .tracks
                .as_ref()
                .is_none_or(|tracks| tracks.contains(&note.track))
    }
}

/// One evaluation window: the song as it is, and the region every row regenerates.
#[derive(Clone, Debug)]
pub struct Case {
    /// `song:first bar` (stable across runs, so that two reports can be paired).
    pub id: String,
    /// The whole window as the song has it.
    pub truth: Clip,
    pub region: Region,
}

impl Case {
    /// What every row is given: the window without the region's notes.
    pub fn context(&self) -> Clip {
        let mut clip = self.truth.clone();
        clip.notes.retain(|n| !self.region.covers(n));
        clip
    }

    /// The notes of `output` a row generated: those starting in the region's steps on a region
    /// track or on a track the window does not have; pitched notes only.
    pub fn generated(&self, output: &Clip) -> Vec<Note> {
        let known = self.truth.tracks.len() as u16;
        output
            .notes
            .iter()
            .filter(|n| {
                self.region.steps.contains(&n.start)
                    && (n.track >= known || self.region.covers(n))
                    && !is_drums(output, n)
            })
            .copied()
            .collect()
    }

    /// The true hole: the truth's pitched notes in the region.
    pub fn truth_part(&self) -> Vec<Note> {
        self.generated(&self.truth)
    }

    /// `context` with `notes` added: what a row's output is when the row only produces notes.
    pub fn with_notes(&self, notes: impl IntoIterator<Item = Note>) -> Clip {
        let mut clip = self.context();
        clip.notes.extend(notes);
        clip.sort_notes();
        clip
    }

    /// The roles the region asks for: the roles of the region's pitched tracks that have notes
    /// in the true hole (every pitched track of the window when the region names no track).
    pub fn roles(&self) -> Vec<TrackRole> {
        let mut roles = Vec::new();
        for n in self.truth_part() {
            let role = role_of(&self.truth, &n);
            if role != TrackRole::Drums && !roles.contains(&role) {
                roles.push(role);
            }
        }
        roles.sort_by_key(|r| *r as u8);
        roles
    }
}

/// The role of the track a note is on (accompaniment for a note on a missing track).
pub fn role_of(clip: &Clip, note: &Note) -> TrackRole {
    clip.tracks
        .get(note.track as usize)
        .map_or(TrackRole::Accompaniment, |t| t.role)
}

pub(crate) fn is_drums(clip: &Clip, note: &Note) -> bool {
    clip.tracks
        .get(note.track as usize)
        .is_some_and(|t| t.is_drums())
}

/// Music for tests.
#[cfg(test)]
pub(crate) mod test_music {
    use crate::music::{Clip, Note, Track, TrackRole};

    /// `bars` bars of a melody of quarter notes (track 0, `Melody`), pitch `melody(bar, beat)`,
    /// velocity 90, over `second` (track 1, named `second.0` with role `second.1`) holding the
    /// pitches of `chord(bar)` through the bar, velocity 70.
    pub fn quarters_over_chords(
        bars: u32,
        second: (&str, TrackRole),
        melody: impl Fn(u32, u32) -> u8,
        chord: impl Fn(u32) -> Vec<u8>,
    ) -> Clip {
        let mut clip = Clip::new(bars);
        clip.tracks = vec![
            Track::new("Melody", TrackRole::Melody, 0),
            Track::new(second.0, second.1, 1),
        ];
        for bar in 0..bars {
            for beat in 0..4 {
                let pitch = melody(bar, beat);
                clip.notes
                    .push(Note::new(bar * 16 + beat * 4, pitch, 4, 90, 0));
            }
            for pitch in chord(bar) {
                clip.notes.push(Note::new(bar * 16, pitch, 16, 70, 1));
            }
        }
        clip
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::Track;

    fn two_part_window() -> Clip {
        let mut clip = Clip::new(4);
        clip.tracks = vec![
            Track::new("Melody", TrackRole::Melody, 0),
            Track::new("Chords", TrackRole::Accompaniment, 1),
        ];
        for bar in 0..4 {
            clip.notes.push(Note::new(bar * 16, 72, 8, 90, 0));
            clip.notes.push(Note::new(bar * 16, 48, 16, 70, 1));
        }
        clip
    }

    #[test]
    fn the_context_leaves_out_the_region_and_generated_notes_are_found_by_track() {
        let case = Case {
            id: "x:0".into(),
            truth: two_part_window(),
            region: Region {
                steps: 32..64,
                tracks: Some(vec![0]),
            },
        };
        let context = case.context();
        assert_eq!(context.notes.len(), 6, "two melody notes in bars 3-4 go");
        assert_eq!(case.truth_part().len(), 2);
        assert_eq!(case.roles(), vec![TrackRole::Melody]);
        // A row that writes to the melody track, to the chord track and to a new track: the
        // chord-track note is outside the region (a change of given music, not generated).
        let mut output = context.clone();
        let new = output.add_track(Track::new("Generated", TrackRole::Accompaniment, 2));
        output.notes.push(Note::new(40, 74, 4, 90, 0));
        output.notes.push(Note::new(40, 50, 4, 90, 1));
        output.notes.push(Note::new(44, 76, 4, 90, new));
        let generated = case.generated(&output);
        assert_eq!(generated.len(), 2);
        assert!(generated.iter().all(|n| n.pitch == 74 || n.pitch == 76));
    }
}
