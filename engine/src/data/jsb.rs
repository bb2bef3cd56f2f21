//! Bach chorales at 16th-note resolution (`jsb/`), Boulanger-Lewandowski split.
//!
//! `Jsb16thSeparated.json` gives four voices per frame (soprano, alto, tenor, bass; -1 = rest):
//! it becomes four tracks, soprano as melody and bass as bass. A run of frames with the same
//! pitch in a voice becomes one note: the data does not tell held notes from repeated ones.
//! `jsb-chorales-16th.json` gives the sounding pitches per frame: one polyphonic track.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::frames::{frame_clip, json_pitch, polyphonic_notes, single_track, voice_notes};
use super::{Song, Split, parse_json, require_dir, take_split};
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
    require_dir(&data_root.join("jsb"), "JSB")?;
    let path = voices_path(data_root);
    let all: HashMap<String, Vec<Vec<Vec<f64>>>> = parse_json(&path)?;
    let chorales = take_split(all, split, &path)?;
    chorales
        .iter()
        .enumerate()
        .map(|(index, frames)| {
            let id = format!("{}/{index:03}", split.name());
            let mut voices: Vec<Vec<Option<u8>>> =
                (0..4).map(|_| Vec::with_capacity(frames.len())).collect();
            for (f, frame) in frames.iter().enumerate() {
                if frame.len() != 4 {
                    bail!(
                        "{}: chorale {id}, frame {f} has {} voices, expected 4",
                        path.display(),
                        frame.len()
                    );
                }
                for (voice, &value) in voices.iter_mut().zip(frame) {
                    voice.push(if value < 0.0 {
                        None
                    } else {
                        let what = || format!("{}: chorale {id}, frame {f}", path.display());
                        Some(json_pitch(value, &what)?)
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
        })
        .collect()
}

/// The chorales of `split` as one polyphonic track, ids `split/index`.
pub fn load_polyphonic(data_root: &Path, split: Split) -> Result<Vec<Song>> {
    require_dir(&data_root.join("jsb"), "JSB")?;
    let path = polyphonic_path(data_root);
    let all: HashMap<String, Vec<Vec<Vec<f64>>>> = parse_json(&path)?;
    let chorales = take_split(all, split, &path)?;
    chorales
        .iter()
        .enumerate()
        .map(|(index, frames)| {
            let id = format!("{}/{index:03}", split.name());
            let frames = frames
                .iter()
                .enumerate()
                .map(|(f, frame)| {
                    let what = || format!("{}: chorale {id}, frame {f}", path.display());
                    frame.iter().map(|&v| json_pitch(v, &what)).collect()
                })
                .collect::<Result<Vec<Vec<u8>>>>()?;
            let notes = polyphonic_notes(&frames, 1, 0);
            let clip = frame_clip(single_track("Chorale"), notes, frames.len(), 1);
            Ok(Song::new(id, clip))
        })
        .collect()
}
