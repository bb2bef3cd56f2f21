//! Errors of MIDI import and export.

use std::path::PathBuf;

/// Why a MIDI file or beat file could not be read or written. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum MidiError {
    /// Another error, prefixed with the file it happened in.
    #[error("{}: {error}", path.display())]
    File {
        path: PathBuf,
        error: Box<MidiError>,
    },
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    #[error("empty file")]
    Empty,
    #[error("file is {size} bytes, more than the {limit}-byte limit for MIDI files")]
    TooLarge { size: u64, limit: u64 },
    #[error("not a Standard MIDI File (it does not start with an MThd header)")]
    NotMidi,
    #[error("truncated MIDI file: {0}")]
    Truncated(String),
    #[error("malformed MIDI file: {0}")]
    Malformed(String),
    #[error("MIDI file has no tracks")]
    NoTracks,
    #[error(
        "SMPTE timecode timing ({fps} frames/s, {ticks_per_frame} ticks/frame) is not supported; \
         only ticks per quarter note"
    )]
    SmpteTiming { fps: u8, ticks_per_frame: u8 },
    #[error("note ends in bar {bar}, beyond the {limit}-bar limit for a clip")]
    TooLong { bar: u64, limit: u32 },
    #[error("{count} (track, channel) pairs hold notes, more than the {limit} a clip can have")]
    TooManyTracks { count: usize, limit: usize },
    #[error("beat file line {line}: {problem}")]
    BeatFile { line: usize, problem: String },
    #[error("invalid beat list: {0}")]
    Beats(String),
}

impl MidiError {
    /// Wrap `self` with the file it came from.
    pub fn in_file(self, path: impl Into<PathBuf>) -> MidiError {
        MidiError::File {
            path: path.into(),
            error: Box::new(self),
        }
    }
}
