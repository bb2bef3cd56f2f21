//! The polyphonic benchmarks of Boulanger-Lewandowski et al. (2012) in `bl2012/`.
//!
//! Each frame is a quarter note (4 grid steps) listing the sounding pitches. A run of
//! consecutive frames containing a pitch becomes one note (the frames do not tell held from
//! repeated notes). One track; 4/4 at 120 BPM since the data carries neither.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::frames::{frame_songs, polyphonic_song};
use super::{Bl2012Set, Song, Split};
use crate::music::STEPS_PER_BEAT;

pub fn path(data_root: &Path, set: Bl2012Set) -> PathBuf {
    data_root.join("bl2012").join(set.file_name())
}

/// The sequences of `split` in `set`, ids `split/index`.
pub fn load(data_root: &Path, set: Bl2012Set, split: Split) -> Result<Vec<Song>> {
    let dir = data_root.join("bl2012");
    frame_songs(
        &dir,
        "bl2012",
        &path(data_root, set),
        split,
        "sequence",
        |id, frames, at| polyphonic_song(id, frames, at, "Piano", STEPS_PER_BEAT),
    )
}
