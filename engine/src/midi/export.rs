//! Standard MIDI File export: type 1, 480 ticks per quarter note.

use std::path::Path;

use super::error::MidiError;
use crate::music::{Clip, STEPS_PER_BEAT, TimeSignature};

/// Ticks per quarter note of exported files.
pub const EXPORT_PPQ: u16 = 480;
const TICKS_PER_STEP: u64 = EXPORT_PPQ as u64 / STEPS_PER_BEAT as u64;
/// Largest delta time a variable-length quantity holds (28 bits).
const MAX_DELTA: u64 = 0x0FFF_FFFF;
/// Track names longer than this are cut (at a character boundary).
const MAX_NAME_BYTES: usize = 1024;
/// A type-1 file holds at most 65,535 tracks, one of them the conductor track.
const MAX_NOTE_TRACKS: usize = u16::MAX as usize - 1;

/// Encode `clip` as a type-1 MIDI file at 480 PPQ: a conductor track with the tempo, the tempo
/// changes and the time signature(s), then one track per clip track (its name as track-name
/// event, its channel) with note-on/note-off pairs; at equal times note-offs come first.
///
/// Notes whose `track` has no entry in `clip.tracks` go to extra tracks named "Track N" on
/// channel 1. Tracks without notes are written too (an import drops them again). An import
/// gives back the same notes as long as no note lies inside a longer note of the same pitch and
/// track (imports never produce that; see the FIFO note pairing in the module docs).
pub fn write_bytes(clip: &Clip) -> Vec<u8> {
    let used_tracks = clip
        .notes
        .iter()
        .map(|n| n.track as usize + 1)
        .max()
        .unwrap_or(0);
    let track_count = clip.tracks.len().max(used_tracks).min(MAX_NOTE_TRACKS);
    let clip_end = clip.bars as u64 * clip.steps_per_bar() as u64 * TICKS_PER_STEP;

    let mut out = Vec::new();
    out.extend_from_slice(b"MThd");
    out.extend_from_slice(&6u32.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(track_count as u16 + 1).to_be_bytes());
    out.extend_from_slice(&EXPORT_PPQ.to_be_bytes());

    let mut conductor = Vec::new();
    conductor.push(Event::meta(0, 0x51, &tempo_bytes(clip.tempo)));
    conductor.push(Event::meta(0, 0x58, &meter_bytes(clip.time_signature)));
    for change in &clip.tempo_changes {
        conductor.push(Event::meta(
            step_ticks(change.step),
            0x51,
            &tempo_bytes(change.bpm),
        ));
    }
    for change in &clip.meter_changes {
        conductor.push(Event::meta(
            step_ticks(change.step),
            0x58,
            &meter_bytes(change.time_signature),
        ));
    }
    write_track(&mut out, conductor, clip_end);

    // Notes per track, sorted by (start, pitch, length) so that of two notes of one pitch
    // starting together the shorter is switched on first (and so ended first by FIFO pairing).
    let mut notes_by_track: Vec<Vec<_>> = vec![Vec::new(); track_count];
    for note in &clip.notes {
        notes_by_track[(note.track as usize).min(track_count - 1)].push(*note);
    }
    for (index, mut notes) in notes_by_track.into_iter().enumerate() {
        notes.sort_by_key(|n| (n.start, n.pitch, n.length));
        let (name, channel) = match clip.tracks.get(index) {
            Some(track) => (track.name.clone(), track.channel.min(15)),
            None => (format!("Track {}", index + 1), 0),
        };
        let mut events = Vec::with_capacity(notes.len() * 2 + 1);
        events.push(Event::meta(0, 0x03, truncate_name(&name).as_bytes()));
        for note in &notes {
            let (pitch, velocity) = (note.pitch.min(127), note.velocity.clamp(1, 127));
            events.push(Event::channel(
                step_ticks(note.start),
                Rank::NoteOn,
                [0x90 | channel, pitch, velocity],
            ));
            let end = note.start as u64 + note.length.max(1) as u64;
            events.push(Event::channel(
                end * TICKS_PER_STEP,
                Rank::NoteOff,
                [0x80 | channel, pitch, 64],
            ));
        }
        write_track(&mut out, events, clip_end);
    }
    out
}

/// Export `clip` to `path` (see [`write_bytes`]); errors name the file.
pub fn write_file(clip: &Clip, path: &Path) -> Result<(), MidiError> {
    std::fs::write(path, write_bytes(clip)).map_err(|e| MidiError::Io(e).in_file(path))
}

/// Order of events at the same tick: meta events, then note-offs, then note-ons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Meta,
    NoteOff,
    NoteOn,
}

struct Event {
    tick: u64,
    rank: Rank,
    /// The event without its delta time.
    bytes: Vec<u8>,
}

impl Event {
    fn meta(tick: u64, kind: u8, data: &[u8]) -> Event {
        let mut bytes = vec![0xFF, kind];
        push_varlen(&mut bytes, data.len() as u64);
        bytes.extend_from_slice(data);
        Event {
            tick,
            rank: Rank::Meta,
            bytes,
        }
    }

    fn channel(tick: u64, rank: Rank, message: [u8; 3]) -> Event {
        Event {
            tick,
            rank,
            bytes: message.to_vec(),
        }
    }
}

fn step_ticks(step: u32) -> u64 {
    step as u64 * TICKS_PER_STEP
}

/// Tempo meta data: µs per quarter note, 24 bits; invalid tempi become 120 BPM.
fn tempo_bytes(bpm: f64) -> [u8; 3] {
    let bpm = if bpm.is_finite() && bpm > 0.0 {
        bpm
    } else {
        120.0
    };
    let micros = (60_000_000.0 / bpm).round().clamp(1.0, 0xFF_FFFF as f64) as u32;
    let b = micros.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// Time-signature meta data; a denominator that is not a power of two is written as the next
/// lower one.
fn meter_bytes(ts: TimeSignature) -> [u8; 4] {
    let power = 7 - ts.denominator.max(1).leading_zeros() as u8;
    [ts.numerator.max(1), power, 24, 8]
}

fn truncate_name(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

fn push_varlen(out: &mut Vec<u8>, value: u64) {
    let value = value.min(MAX_DELTA);
    let mut shift = 21;
    while shift > 0 && value >> shift == 0 {
        shift -= 7;
    }
    while shift > 0 {
        out.push(0x80 | ((value >> shift) & 0x7F) as u8);
        shift -= 7;
    }
    out.push((value & 0x7F) as u8);
}

/// Append an MTrk chunk with `events` (sorted here) and an end-of-track event at `end` or after
/// the last event. Deltas too long for 28 bits are bridged with empty text events.
fn write_track(out: &mut Vec<u8>, mut events: Vec<Event>, end: u64) {
    events.sort_by_key(|e| (e.tick, e.rank));
    let last = events.last().map_or(0, |e| e.tick).max(end);
    events.push(Event::meta(last, 0x2F, &[]));
    let mut data = Vec::with_capacity(events.len() * 4);
    let mut now = 0u64;
    let mut running_status = None;
    for event in &events {
        while event.tick - now > MAX_DELTA {
            push_varlen(&mut data, MAX_DELTA);
            data.extend_from_slice(&[0xFF, 0x01, 0x00]);
            now += MAX_DELTA;
            running_status = None;
        }
        push_varlen(&mut data, event.tick - now);
        now = event.tick;
        let status = event.bytes[0];
        if status < 0xF0 && running_status == Some(status) {
            data.extend_from_slice(&event.bytes[1..]);
        } else {
            data.extend_from_slice(&event.bytes);
        }
        running_status = (status < 0xF0).then_some(status);
    }
    out.extend_from_slice(b"MTrk");
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&data);
}
