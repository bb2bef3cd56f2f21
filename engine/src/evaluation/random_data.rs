//! The random-from-data baseline: notes drawn per role from the training data's statistics.
//!
//! For each role (melody, accompaniment, bass) the fit counts, over every bar of the training
//! clips in which the role's tracks exist: onset events per bar (zeros included), the onset
//! position of each event in the bar, the notes starting together in an event (polyphony),
//! pitches, note lengths in steps (up to 4 bars) and the mean velocity. A sample draws, bar by
//! bar, the number of events, then per event its position, its size, its pitches (distinct) and
//! each note's length, cut at the next onset as often as the role's notes end by their next
//! onset in the data (so a melody stays a line). It knows the role's register, rhythm and texture, and nothing of the
//! context: the floor a model has to clear by listening.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::report::{RANDOM, RowOutputs, track_for};
use super::{Case, role_of};
use crate::music::{Clip, Note, TrackRole};

/// The sampling seed of window `window` under seed `seed`, the convention of every evaluation's
/// sampled rows.
pub fn window_seed(seed: u64, window: usize) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(window as u64)
}

const MAX_LENGTH: usize = 64;

/// Counts of one role.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RoleStats {
    pub bars: u64,
    /// `events_per_bar[k]`: bars with k onset events.
    pub events_per_bar: Vec<u64>,
    /// Onset events per position in a 16-step bar.
    pub onset_position: Vec<u64>,
    /// `chord_size[k]`: events of k notes.
    pub chord_size: Vec<u64>,
    pub pitch: Vec<u64>,
    /// `length[k]`: notes of k steps (the last bucket holds longer ones).
    pub length: Vec<u64>,
    pub velocity_sum: u64,
    pub notes: u64,
    /// Notes that end by the role's next onset (a line's notes, not held under the next ones).
    #[serde(default)]
    pub ended_by_next_onset: u64,
}

/// The statistics of every role.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DataStats {
    pub roles: Vec<(TrackRole, RoleStats)>,
}

fn bump(counts: &mut Vec<u64>, at: usize) {
    if counts.len() <= at {
        counts.resize(at + 1, 0);
    }
    counts[at] += 1;
}

fn draw(counts: &[u64], rng: &mut ChaCha8Rng) -> Option<usize> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let mut x = rng.random_range(0..total);
    for (i, &c) in counts.iter().enumerate() {
        if x < c {
            return Some(i);
        }
        x -= c;
    }
    None
}

impl DataStats {
    /// Count the 4/4 clips of `clips` (other meters are skipped).
    pub fn fit(clips: &[Clip]) -> DataStats {
        let mut out = DataStats::default();
        for clip in clips {
            let spb = clip.steps_per_bar();
            if spb != 16 {
                continue;
            }
            let roles: Vec<TrackRole> = {
                let mut r: Vec<TrackRole> = clip.tracks.iter().map(|t| t.role).collect();
                r.retain(|&x| x != TrackRole::Drums);
                r.sort_by_key(|&x| x as u8);
                r.dedup();
                r
            };
            for role in roles {
                let stats = out.role_mut(role);
                let mut notes: Vec<&Note> = clip
                    .notes
                    .iter()
                    .filter(|n| role_of(clip, n) == role)
                    .collect();
                notes.sort_by_key(|n| (n.start, n.pitch));
                for bar in 0..clip.bars {
                    let range = bar * spb..(bar + 1) * spb;
                    let in_bar: Vec<&&Note> =
                        notes.iter().filter(|n| range.contains(&n.start)).collect();
                    let mut events = 0;
                    let mut i = 0;
                    while i < in_bar.len() {
                        let start = in_bar[i].start;
                        let size = in_bar[i..].iter().take_while(|n| n.start == start).count();
                        bump(&mut stats.onset_position, (start % spb) as usize);
                        bump(&mut stats.chord_size, size);
                        events += 1;
                        i += size;
                    }
                    bump(&mut stats.events_per_bar, events);
                    stats.bars += 1;
                    for n in in_bar {
                        let next_onset = notes.iter().map(|m| m.start).find(|&s| s > n.start);
                        if next_onset.is_none_or(|s| n.start + n.length <= s) {
                            stats.ended_by_next_onset += 1;
                        }
                        bump(&mut stats.pitch, n.pitch as usize);
                        bump(&mut stats.length, (n.length as usize).clamp(1, MAX_LENGTH));
                        stats.velocity_sum += n.velocity as u64;
                        stats.notes += 1;
                    }
                }
            }
        }
        out
    }

    fn role_mut(&mut self, role: TrackRole) -> &mut RoleStats {
        if let Some(i) = self.roles.iter().position(|(r, _)| *r == role) {
            return &mut self.roles[i].1;
        }
        self.roles.push((role, RoleStats::default()));
        &mut self.roles.last_mut().unwrap().1
    }

    pub fn role(&self, role: TrackRole) -> Option<&RoleStats> {
        self.roles.iter().find(|(r, _)| *r == role).map(|(_, s)| s)
    }

    /// The random row's output for `case`: each role of the true hole drawn on that role's
    /// track, the context kept.
    pub fn output(&self, case: &Case, seed: u64) -> Clip {
        let mut notes = Vec::new();
        for (r, role) in case.roles().into_iter().enumerate() {
            if let Some(track) = track_for(&case.truth, role) {
                notes.extend(self.sample(
                    role,
                    case.region.steps.clone(),
                    track,
                    seed.wrapping_mul(31).wrapping_add(r as u64),
                ));
            }
        }
        case.with_notes(notes)
    }

    /// The "random (data)" row of `cases`, one set per seed of `seeds`.
    pub fn row(&self, cases: &[Case], seeds: &[u64]) -> RowOutputs {
        RowOutputs {
            name: RANDOM.into(),
            outputs: seeds
                .iter()
                .map(|&seed| {
                    cases
                        .iter()
                        .enumerate()
                        .map(|(i, c)| Some(self.output(c, window_seed(seed, i))))
                        .collect()
                })
                .collect(),
            seconds: 0.0,
        }
    }

    /// Notes of `role` on `track` for the bars that start in `steps` (16 steps a bar, counted
    /// from `steps.start`), cut at `steps.end`. Empty for a role the data never had.
    pub fn sample(
        &self,
        role: TrackRole,
        steps: std::ops::Range<u32>,
        track: u16,
        seed: u64,
    ) -> Vec<Note> {
        let Some(stats) = self.role(role) else {
            return Vec::new();
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let velocity = (stats.velocity_sum / stats.notes.max(1)).clamp(1, 127) as u8;
        let mut out = Vec::new();
        let mut bar = steps.start;
        while bar < steps.end {
            let events = draw(&stats.events_per_bar, &mut rng).unwrap_or(0);
            // Positions are drawn without replacement: `events` distinct onsets.
            let mut free = stats.onset_position.clone();
            for _ in 0..events {
                let Some(position) = draw(&free, &mut rng) else {
                    break;
                };
                free[position] = 0;
                let start = bar + position as u32;
                if start >= steps.end {
                    continue;
                }
                let size = draw(&stats.chord_size, &mut rng).unwrap_or(1).max(1);
                let mut pitches: Vec<u8> = Vec::with_capacity(size);
                for _ in 0..4 * size {
                    if pitches.len() == size {
                        break;
                    }
                    if let Some(p) = draw(&stats.pitch, &mut rng).map(|p| p as u8)
                        && !pitches.contains(&p)
                    {
                        pitches.push(p);
                    }
                }
                for p in pitches {
                    let length = draw(&stats.length, &mut rng).unwrap_or(4).max(1) as u32;
                    let length = length.min(steps.end - start);
                    out.push(Note::new(start, p, length, velocity, track));
                }
            }
            bar += 16;
        }
        out.sort_by_key(|n| (n.start, n.pitch));
        // As often as in the data, a note ends by the next onset instead of sounding under it.
        let ended = stats.ended_by_next_onset as f64 / stats.notes.max(1) as f64;
        let onsets: Vec<u32> = out.iter().map(|n| n.start).collect();
        for note in &mut out {
            if let Some(&next) = onsets.iter().find(|&&s| s > note.start)
                && note.start + note.length > next
                && rng.random::<f64>() < ended
            {
                note.length = next - note.start;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::test_music::quarters_over_chords;

    /// A melody of quarter notes in 72..=79 (velocity 90) and a bass of whole notes in 36..=43,
    /// 8 bars.
    fn training_clip() -> Clip {
        quarters_over_chords(
            8,
            ("Bass", TrackRole::Bass),
            |bar, beat| 72 + ((bar + beat) % 8) as u8,
            |bar| vec![36 + (bar % 8) as u8],
        )
    }

    #[test]
    fn samples_follow_each_roles_register_rhythm_and_density() {
        let stats = DataStats::fit(&[training_clip()]);
        let melody = stats.role(TrackRole::Melody).unwrap();
        assert_eq!(melody.bars, 8);
        assert_eq!(melody.events_per_bar[4], 8);
        let notes = stats.sample(TrackRole::Melody, 32..96, 0, 7);
        // Four quarter-note onsets per bar, one voice, in the melody's register.
        assert_eq!(notes.len(), 16);
        assert!(
            notes
                .iter()
                .all(|n| (72..=79).contains(&n.pitch) && n.length == 4 && n.start % 4 == 0)
        );
        assert!(notes.iter().all(|n| n.velocity == 90));
        let bass = stats.sample(TrackRole::Bass, 0..64, 1, 7);
        assert_eq!(bass.len(), 4);
        assert!(
            bass.iter()
                .all(|n| (36..=43).contains(&n.pitch) && n.length == 16 && n.track == 1)
        );
        // A line whose notes end by the next onset (the last one holds 16 steps) stays one voice
        // even when long notes are drawn.
        let mut legato = training_clip();
        for n in legato.notes.iter_mut().filter(|n| n.track == 0) {
            n.length = if n.start == 7 * 16 + 12 { 16 } else { 4 };
        }
        let stats = DataStats::fit(&[legato]);
        let melody = stats.role(TrackRole::Melody).unwrap();
        assert_eq!(melody.ended_by_next_onset, melody.notes);
        let line = stats.sample(TrackRole::Melody, 0..128, 0, 3);
        assert!(
            line.windows(2)
                .all(|w| w[0].start + w[0].length <= w[1].start),
            "{line:?}"
        );
        // A role the data never had gives nothing; seeds change the draw.
        assert!(
            stats
                .sample(TrackRole::Accompaniment, 0..64, 0, 1)
                .is_empty()
        );
        assert_ne!(
            stats.sample(TrackRole::Melody, 0..64, 0, 1),
            stats.sample(TrackRole::Melody, 0..64, 0, 2)
        );
    }
}
