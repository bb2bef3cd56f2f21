//! The Nottingham folk tunes (`nottingham/MIDI/*.mid`, split in `nottingham/splits.json`).
//!
//! Each file has two MIDI tracks, both on channel 1 and without names: the first is the
//! melody, the second the chord accompaniment (empty in a few tunes). The clip gets the tracks
//! `Melody` (role melody, channel 0) and `Chords` (role accompaniment, channel 1) so that an
//! export plays them on separate channels. The files carry no tempo: 120 BPM.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::{Song, Split, index_then, parallel_map, split_names};
use crate::music::{Track, TrackRole};

/// Index of the melody track in a Nottingham clip.
pub const MELODY_TRACK: u16 = 0;
/// Index of the chord track in a Nottingham clip.
pub const CHORD_TRACK: u16 = 1;

/// File names of `split`, from `nottingham/splits.json`.
pub fn split_files(data_root: &Path, split: Split) -> Result<Vec<String>> {
    split_names(data_root, "nottingham", "Nottingham", split)
}

/// `splits.json` and the MIDI files of `split`.
pub fn source_files(data_root: &Path, split: Split) -> Result<Vec<PathBuf>> {
    let dir = data_root.join("nottingham");
    let midi = dir.join("MIDI");
    let names = split_files(data_root, split)?;
    Ok(index_then(
        dir.join("splits.json"),
        names.iter().map(|f| midi.join(f)),
    ))
}

/// The tunes of `split`, ids = file stems (`ashover1`).
pub fn load(data_root: &Path, split: Split) -> Result<Vec<Song>> {
    let midi_dir = data_root.join("nottingham").join("MIDI");
    let names = split_files(data_root, split)?;
    parallel_map(&names, |name| load_tune(&midi_dir.join(name)))
}

/// One tune file as a melody + chords song.
pub fn load_tune(path: &Path) -> Result<Song> {
    let mut clip = crate::midi::read_file(path)?;
    // The import names unnamed tracks "Track N" after their MIDI track and drops tracks
    // without notes: map MIDI track 1 to the melody and 2 to the chords.
    let mut remap = Vec::with_capacity(clip.tracks.len());
    for track in &clip.tracks {
        remap.push(match track.name.as_str() {
            "Track 1" => MELODY_TRACK,
            "Track 2" => CHORD_TRACK,
            other => bail!(
                "{}: unexpected track '{other}' (expected a melody and a chord track)",
                path.display()
            ),
        });
    }
    if remap.len() != 2 && remap.first() != Some(&MELODY_TRACK) {
        bail!("{}: the melody track has no notes", path.display());
    }
    for note in &mut clip.notes {
        note.track = remap[note.track as usize];
    }
    clip.tracks = vec![
        Track::new("Melody", TrackRole::Melody, 0),
        Track::new("Chords", TrackRole::Accompaniment, 1),
    ];
    clip.sort_notes();
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Song::new(id, clip))
}
