//! The polyphonic benchmarks of Boulanger-Lewandowski et al. (2012) in `bl2012/`.
//!
//! Each frame is a quarter note (4 grid steps) listing the sounding pitches. A run of
//! consecutive frames containing a pitch becomes one note (the frames do not tell held from
//! repeated notes). One track; 4/4 at 120 BPM since the data carries neither.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::frames::{frame_clip, json_pitch, polyphonic_notes, single_track};
use super::{Bl2012Set, Song, Split, parse_json, require_dir, take_split};
use crate::music::STEPS_PER_BEAT;

pub fn path(data_root: &Path, set: Bl2012Set) -> PathBuf {
    data_root.join("bl2012").join(set.file_name())
}

/// The sequences of `split` in `set`, ids `split/index`.
pub fn load(data_root: &Path, set: Bl2012Set, split: Split) -> Result<Vec<Song>> {
    require_dir(&data_root.join("bl2012"), "bl2012")?;
    let path = path(data_root, set);
    let all: HashMap<String, Vec<Vec<Vec<f64>>>> = parse_json(&path)?;
    let sequences = take_split(all, split, &path)?;
    sequences
        .iter()
        .enumerate()
        .map(|(index, frames)| {
            let id = format!("{}/{index:03}", split.name());
            let frames = frames
                .iter()
                .enumerate()
                .map(|(f, frame)| {
                    let what = || format!("{}: sequence {id}, frame {f}", path.display());
                    frame.iter().map(|&v| json_pitch(v, &what)).collect()
                })
                .collect::<Result<Vec<Vec<u8>>>>()?;
            let notes = polyphonic_notes(&frames, STEPS_PER_BEAT, 0);
            let clip = frame_clip(single_track("Piano"), notes, frames.len(), STEPS_PER_BEAT);
            Ok(Song::new(id, clip))
        })
        .collect()
}
