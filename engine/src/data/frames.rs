//! Frame lists (lists of sounding pitches per time step) to notes on the 16th grid.

use std::path::Path;

use anyhow::{Result, bail};

use super::{Song, Split, read_split};
use crate::music::{Clip, Note, STEPS_PER_BEAT, TimeSignature, Track, TrackRole};

use crate::music::PLAIN_VELOCITY;

/// Notes of a polyphonic frame sequence: each run of consecutive frames containing a pitch
/// becomes one note. Frame `i` starts at step `i * steps_per_frame`.
pub(crate) fn polyphonic_notes(frames: &[Vec<u8>], steps_per_frame: u32, track: u16) -> Vec<Note> {
    let mut started: [Option<u32>; 128] = [None; 128];
    let mut notes = Vec::new();
    let mut sounding = [false; 128];
    for (i, frame) in frames.iter().enumerate() {
        let i = i as u32;
        sounding.fill(false);
        for &p in frame {
            sounding[p.min(127) as usize] = true;
        }
        for pitch in 0..128 {
            match (started[pitch], sounding[pitch]) {
                (None, true) => started[pitch] = Some(i),
                (Some(first), false) => {
                    notes.push(frame_note(first, i, pitch as u8, steps_per_frame, track));
                    started[pitch] = None;
                }
                _ => {}
            }
        }
    }
    let end = frames.len() as u32;
    for (pitch, first) in started.iter().enumerate() {
        if let Some(first) = *first {
            notes.push(frame_note(first, end, pitch as u8, steps_per_frame, track));
        }
    }
    notes
}

/// Notes of one monophonic voice (`None` = rest): each run of equal pitches becomes one note.
pub(crate) fn voice_notes(voice: &[Option<u8>], steps_per_frame: u32, track: u16) -> Vec<Note> {
    let mut notes = Vec::new();
    let mut run: Option<(u32, u8)> = None;
    for (i, &pitch) in voice.iter().enumerate() {
        let i = i as u32;
        if let Some((first, p)) = run
            && Some(p) != pitch
        {
            notes.push(frame_note(first, i, p, steps_per_frame, track));
            run = None;
        }
        if run.is_none()
            && let Some(p) = pitch
        {
            run = Some((i, p));
        }
    }
    if let Some((first, p)) = run {
        notes.push(frame_note(
            first,
            voice.len() as u32,
            p,
            steps_per_frame,
            track,
        ));
    }
    notes
}

fn frame_note(first: u32, end: u32, pitch: u8, steps_per_frame: u32, track: u16) -> Note {
    Note::new(
        first * steps_per_frame,
        pitch,
        (end - first) * steps_per_frame,
        PLAIN_VELOCITY,
        track,
    )
}

/// A 4/4, 120 BPM clip of `frames` frames with `tracks`, holding `notes` (sorted).
pub(crate) fn frame_clip(
    tracks: Vec<Track>,
    mut notes: Vec<Note>,
    frames: usize,
    steps_per_frame: u32,
) -> Clip {
    let mut clip = Clip::new(0);
    clip.tracks = tracks;
    let steps = frames as u32 * steps_per_frame;
    clip.bars = steps
        .div_ceil(TimeSignature::FOUR_FOUR.steps_per_bar())
        .max(1);
    debug_assert_eq!(clip.steps_per_bar(), 4 * STEPS_PER_BEAT);
    notes.sort_by_key(|n| (n.start, n.pitch, n.track, n.length, n.velocity));
    clip.notes = notes;
    clip
}

/// One polyphonic piano track.
pub(crate) fn single_track(name: &str) -> Vec<Track> {
    vec![Track::new(name, TrackRole::Accompaniment, 0)]
}

/// The frame sequences of `split` in the JSON file `path` of the dataset folder `dir` (`what`
/// names the folder in the error), each made a song by `song(id, frames, at)`, ids
/// `split/index`; `at(f)` names frame `f` in errors (`path: <item> <id>, frame f`).
pub(crate) fn frame_songs(
    dir: &Path,
    what: &str,
    path: &Path,
    split: Split,
    item: &str,
    song: impl Fn(String, &[Vec<f64>], &dyn Fn(usize) -> String) -> Result<Song>,
) -> Result<Vec<Song>> {
    let sequences: Vec<Vec<Vec<f64>>> = read_split(dir, what, path, split)?;
    sequences
        .iter()
        .enumerate()
        .map(|(index, frames)| {
            let id = format!("{}/{index:03}", split.name());
            let at = |f: usize| format!("{}: {item} {id}, frame {f}", path.display());
            song(id.clone(), frames, &at)
        })
        .collect()
}

/// The song `id` of one polyphonic track named `track` from `frames` of sounding pitches,
/// `steps_per_frame` steps each; `at(f)` names frame `f` in errors.
pub(crate) fn polyphonic_song(
    id: String,
    frames: &[Vec<f64>],
    at: &dyn Fn(usize) -> String,
    track: &str,
    steps_per_frame: u32,
) -> Result<Song> {
    let frames = frames
        .iter()
        .enumerate()
        .map(|(f, frame)| frame.iter().map(|&v| json_pitch(v, &|| at(f))).collect())
        .collect::<Result<Vec<Vec<u8>>>>()?;
    let notes = polyphonic_notes(&frames, steps_per_frame, 0);
    let clip = frame_clip(single_track(track), notes, frames.len(), steps_per_frame);
    Ok(Song::new(id, clip))
}

/// A MIDI pitch from a JSON number (integers, or floats such as `60.0`), checked to 0–127.
pub(crate) fn json_pitch(value: f64, what: &dyn Fn() -> String) -> Result<u8> {
    if value.fract() != 0.0 || !(0.0..=127.0).contains(&value) {
        bail!("{}: {value} is not a MIDI pitch", what());
    }
    Ok(value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_frames_become_single_notes() {
        let frames = vec![vec![60, 64], vec![60, 64], vec![60, 67], vec![], vec![60]];
        let mut notes = polyphonic_notes(&frames, 4, 0);
        notes.sort();
        let expected = vec![
            Note::new(0, 60, 12, PLAIN_VELOCITY, 0),
            Note::new(0, 64, 8, PLAIN_VELOCITY, 0),
            Note::new(8, 67, 4, PLAIN_VELOCITY, 0),
            Note::new(16, 60, 4, PLAIN_VELOCITY, 0),
        ];
        assert_eq!(notes, expected);
    }

    #[test]
    fn voice_runs_split_on_pitch_change_and_rests() {
        let voice = [Some(60), Some(60), Some(62), None, Some(62), Some(62)];
        let notes = voice_notes(&voice, 1, 2);
        assert_eq!(
            notes,
            vec![
                Note::new(0, 60, 2, PLAIN_VELOCITY, 2),
                Note::new(2, 62, 1, PLAIN_VELOCITY, 2),
                Note::new(4, 62, 2, PLAIN_VELOCITY, 2),
            ]
        );
    }
}
