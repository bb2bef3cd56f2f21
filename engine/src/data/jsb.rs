//! Bach chorales at 16th-note resolution (`jsb/`), Boulanger-Lewandowski split.
//!
//! `Jsb16thSeparated.json` gives four voices per frame (soprano, alto, tenor, bass; -1 = rest):
//! it becomes four tracks, soprano as melody and bass as bass. A run of frames with the same
//! pitch in a voice becomes one note: the data does not tell held notes from repeated ones.
//! `jsb-chorales-16th.json` gives the sounding pitches per frame: one polyphonic track.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::frames::{frame_clip, frame_songs, json_pitch, polyphonic_song, voice_notes};
use super::{Song, Split};
use crate::music::{Track, TrackRole};

/// Voice names and roles, in the order of the frames' four numbers.
pub const VOICES: [(&str, TrackRole); 4] = [
    ("Soprano", TrackRole::Melody),
    ("Alto", TrackRole::Accompaniment),
    ("Tenor", TrackRole::Accompaniment),
    ("Bass", TrackRole::Bass),
];

pub fn voices_path(data_root: &Path) -> PathBuf {
    data_root.join("jsb").join("Jsb16thSeparated.json")
}

pub fn polyphonic_path(data_root: &Path) -> PathBuf {
    data_root.join("jsb").join("jsb-chorales-16th.json")
}

/// The chorales of `split` as four tracks (S/A/T/B), ids `split/index`.
pub fn load_voices(data_root: &Path, split: Split) -> Result<Vec<Song>> {
    chorales(data_root, &voices_path(data_root), split, four_voices)
}

/// One chorale's frames of four voices as a song of four tracks (S/A/T/B); `at(f)` names frame
/// `f` in errors.
fn four_voices(id: String, frames: &[Vec<f64>], at: &dyn Fn(usize) -> String) -> Result<Song> {
    let mut voices: Vec<Vec<Option<u8>>> =
        (0..4).map(|_| Vec::with_capacity(frames.len())).collect();
    for (f, frame) in frames.iter().enumerate() {
        if frame.len() != 4 {
            bail!("{} has {} voices, expected 4", at(f), frame.len());
        }
        for (voice, &value) in voices.iter_mut().zip(frame) {
            voice.push(if value < 0.0 {
                None
            } else {
                Some(json_pitch(value, &|| at(f))?)
            });
        }
    }
    let tracks = VOICES
        .iter()
        .enumerate()
        .map(|(i, (name, role))| Track::new(*name, *role, i as u8))
        .collect();
    let notes = voices
        .iter()
        .enumerate()
        .flat_map(|(track, voice)| voice_notes(voice, 1, track as u16))
        .collect();
    Ok(Song::new(id, frame_clip(tracks, notes, frames.len(), 1)))
}

/// The chorales of `split` as one polyphonic track, ids `split/index`.
pub fn load_polyphonic(data_root: &Path, split: Split) -> Result<Vec<Song>> {
    chorales(
        data_root,
        &polyphonic_path(data_root),
        split,
        |id, frames, at| polyphonic_song(id, frames, at, "Chorale", 1),
    )
}

/// The chorales of `split` in the JSB file `path`, each made a song by `song` (see
/// [`frame_songs`]).
fn chorales(
    data_root: &Path,
    path: &Path,
    split: Split,
    song: impl Fn(String, &[Vec<f64>], &dyn Fn(usize) -> String) -> Result<Song>,
) -> Result<Vec<Song>> {
    frame_songs(&data_root.join("jsb"), "JSB", path, split, "chorale", song)
}
