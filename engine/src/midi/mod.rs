//! Standard MIDI files: import (quantized to the 16th grid) and export.
//!
//! Import ([`read_bytes`], [`read_file`]):
//! - SMF types 0, 1 and 2; type 2 (independent sequences) is read sequentially, each track
//!   starting where the previous one ends. RIFF (RMID) wrappers are unwrapped.
//! - One clip track per (MIDI track, channel) pair with notes, in that order. Its name is the
//!   track-name event, else "Track N" (N = 1-based MIDI track), or "Channel N" (1-based) when the
//!   MIDI track holds several channels (a named one then gets " (channel N)" appended).
//!   The role comes from [`TrackRole::guess`](crate::music::TrackRole::guess), so channel 10
//!   (0-based 9) stays a drum track. A file without notes gives a clip without tracks.
//! - Note-on with velocity 0 is a note-off. Overlapping notes of one key and channel are paired
//!   first-in first-out: a note-off ends the oldest sounding note. Notes still sounding at the
//!   end of their track end there.
//! - Onsets and ends are rounded to the nearest 16th (halves up); a note is at least 1 step.
//!   Tempo and time-signature events at step 0 set `tempo` and `time_signature` (default
//!   120 BPM, 4/4); later ones become `tempo_changes` and `meter_changes` (repeats dropped,
//!   the last per step kept, none after the clip's end). `bars` holds every note, at least 1.
//! - Limits, all clean errors: files over [`MAX_FILE_BYTES`] (16 MiB), clips over
//!   [`MAX_BARS`] (10,000 bars), SMPTE timing, zero tracks, truncated chunks, unreadable events,
//!   invalid time signatures. Bytes after the last declared track are ignored.
//!
//! Performance-timed files (POP909) go through [`read_bytes_with_beats`] with the song's beat
//! list ([`parse_beat_file`]): seconds (through the tempo map) → fractional beats (piecewise
//! linear over the beats, extrapolated with the first/last interval) → nearest 16th. The first
//! downbeat starts bar 1, or bar 2 when notes come before it (a pickup; more bars if needed).
//! POP909's `beat_midi.txt` (checked on all 909 songs): column 3 = 1.0 every 4th beat in the
//! 880 duple-meter songs (4/4 downbeats); in the 29 triple-meter songs column 3 marks every 6th
//! beat and column 2 every 3rd, so column 2 gives their (3/4) downbeats. A 4-beat bar gives
//! 4/4, a 3-beat bar 3/4.
//!
//! Export ([`write_bytes`]) writes type 1 at 480 PPQ: a conductor track, then one track per clip
//! track; import → export → import is exact on the grid (tested on every Nottingham and POP909
//! file).

mod beats;
mod error;
mod export;
mod import;
#[cfg(test)]
mod tests;

pub use beats::{BeatMark, parse_beat_file};
pub use error::MidiError;
pub use export::{EXPORT_PPQ, write_bytes, write_file};
pub use import::{MAX_BARS, MAX_FILE_BYTES, read_bytes, read_bytes_with_beats, read_file};
