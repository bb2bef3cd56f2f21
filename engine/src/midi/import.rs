//! Standard MIDI File import, quantized to the 16th grid.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use midly::{EventIter, MetaMessage, MidiMessage, TrackEventKind};

use super::beats::{BeatGrid, BeatMark};
use super::error::MidiError;
use crate::music::{
    Clip, MeterChange, Note, STEPS_PER_BEAT, TempoChange, TimeSignature, Track, TrackRole,
};

/// Largest MIDI file accepted (16 MiB; the largest dataset file, in Nottingham, is 34 KB).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Longest clip an import may produce, in bars of its first time signature: the limit of every
/// clip ([`crate::music::validate`]), so that whatever imports can be saved and reopened.
pub use crate::music::MAX_BARS;
/// Tempo of a file without tempo events: 120 BPM.
const DEFAULT_MICROS_PER_QUARTER: u32 = 500_000;
/// A clip's track index is a `u16`.
const MAX_TRACKS: usize = u16::MAX as usize + 1;

/// Read and import a MIDI file; errors name the file.
pub fn read_file(path: &Path) -> Result<Clip, MidiError> {
    read_file_inner(path).map_err(|e| e.in_file(path))
}

fn read_file_inner(path: &Path) -> Result<Clip, MidiError> {
    let size = std::fs::metadata(path).map_err(MidiError::Io)?.len();
    check_size(size)?;
    let bytes = std::fs::read(path).map_err(MidiError::Io)?;
    read_bytes(&bytes)
}

/// Import a MIDI file on its own tick grid: ticks are rounded to the nearest 16th.
pub fn read_bytes(bytes: &[u8]) -> Result<Clip, MidiError> {
    let file = parse_file(bytes)?;
    let ppq = file.ppq as u128;
    // Nearest step, halves rounded up; exact integer arithmetic.
    let to_step =
        |tick: u64| ((tick as u128 * 2 * STEPS_PER_BEAT as u128 + ppq) / (2 * ppq)) as i64;
    let meters: Vec<(i64, TimeSignature)> = file
        .meters
        .iter()
        .map(|&(t, ts)| (to_step(t), ts))
        .collect();
    let tempos: Vec<(i64, f64)> = file
        .tempos
        .iter()
        .map(|&(t, us)| (to_step(t), bpm(us)))
        .collect();
    let (time_signature, meters) = initial_and_changes(&meters, TimeSignature::FOUR_FOUR);
    let (tempo, tempos) = initial_and_changes(&tempos, bpm(DEFAULT_MICROS_PER_QUARTER));
    let spans = file
        .notes
        .iter()
        .map(|n| (to_step(n.on), to_step(n.off)))
        .collect();
    assemble(&file, spans, time_signature, tempo, &tempos, &meters)
}

/// Import a performance-timed MIDI file (POP909) with its beat list: each event's time in seconds
/// (through the file's tempo map) becomes a fractional beat by interpolation over `beats`
/// (see [`BeatMark`]), then the nearest 16th step (4 steps per beat).
///
/// Bars start at downbeats: the first downbeat is the first step of bar 1, or of bar 2 (3, ...)
/// when notes start before it (a pickup), so that the pickup fits in whole bars before it.
/// The meter is `n/4` with `n` the usual number of beats between downbeats (4 without
/// downbeats), the tempo comes from the median beat interval, and the file's own tempo and
/// time-signature events only serve to compute seconds.
pub fn read_bytes_with_beats(bytes: &[u8], beats: &[BeatMark]) -> Result<Clip, MidiError> {
    let grid = BeatGrid::new(beats)?;
    let file = parse_file(bytes)?;
    let seconds = SecondsMap::new(&file);
    let time_signature = TimeSignature::new(grid.beats_per_bar, 4);
    let spb = time_signature.steps_per_bar() as i64;
    // Steps relative to the first downbeat; the cap keeps the f64 → i64 conversion exact.
    let limit = (MAX_BARS as i64 + 1) * spb;
    let downbeat_step = grid.first_downbeat as i64 * STEPS_PER_BEAT as i64;
    let to_step = |tick: u64| {
        let step = (grid.beat_at(seconds.at(tick)) * STEPS_PER_BEAT as f64).round();
        step.clamp(-limit as f64 * 2.0, limit as f64 * 2.0) as i64 - downbeat_step
    };
    let mut spans: Vec<(i64, i64)> = file
        .notes
        .iter()
        .map(|n| (to_step(n.on), to_step(n.off)))
        .collect();
    let earliest = spans.iter().map(|s| s.0).min().unwrap_or(0);
    // Whole bars needed before the first downbeat to hold the earliest note (usually 0 or 1).
    let pickup_bars = ((-earliest).max(0) as u64).div_ceil(spb as u64) as i64;
    for span in &mut spans {
        span.0 += pickup_bars * spb;
        span.1 += pickup_bars * spb;
    }
    assemble(&file, spans, time_signature, grid.tempo, &[], &[])
}

fn check_size(size: u64) -> Result<(), MidiError> {
    if size > MAX_FILE_BYTES {
        return Err(MidiError::TooLarge {
            size,
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(())
}

fn bpm(micros_per_quarter: u32) -> f64 {
    60_000_000.0 / micros_per_quarter as f64
}

/// The value at step 0 (the last event there, else `default`) and the later changes
/// (the last one per step, repeats of the current value dropped). `events` is sorted by step.
fn initial_and_changes<T: Copy + PartialEq>(events: &[(i64, T)], default: T) -> (T, Vec<(i64, T)>) {
    let mut initial = default;
    let mut changes: Vec<(i64, T)> = Vec::new();
    for &(step, value) in events {
        if step <= 0 {
            initial = value;
        } else if changes.last().is_some_and(|c| c.0 == step) {
            if let Some(last) = changes.last_mut() {
                last.1 = value;
            }
        } else {
            changes.push((step, value));
        }
    }
    let mut current = initial;
    changes.retain(|&(_, value)| {
        let keep = value != current;
        current = value;
        keep
    });
    (initial, changes)
}

/// The changes of `changes` (step, value) before step `end`, each made by `make(step, value)`.
fn changes_before<T: Copy, C>(
    changes: &[(i64, T)],
    end: i64,
    make: impl Fn(u32, T) -> C,
) -> Vec<C> {
    changes
        .iter()
        .filter(|c| c.0 < end)
        .map(|&(step, value)| make(step as u32, value))
        .collect()
}

/// Build the clip from note spans in grid steps (`spans[i]` belongs to `file.notes[i]`).
fn assemble(
    file: &ParsedFile,
    spans: Vec<(i64, i64)>,
    time_signature: TimeSignature,
    tempo: f64,
    tempos: &[(i64, f64)],
    meters: &[(i64, TimeSignature)],
) -> Result<Clip, MidiError> {
    let spb = time_signature.steps_per_bar() as i64;
    let max_steps = MAX_BARS as i64 * spb;
    // One clip track per (MIDI track, channel) with notes, in that order.
    let mut track_of: BTreeMap<(u16, u8), u16> = file
        .notes
        .iter()
        .map(|n| ((n.midi_track, n.channel), 0))
        .collect();
    if track_of.len() > MAX_TRACKS {
        return Err(MidiError::TooManyTracks {
            count: track_of.len(),
            limit: MAX_TRACKS,
        });
    }
    let mut channels_per_track = vec![0u8; file.names.len()];
    for &(midi_track, _) in track_of.keys() {
        channels_per_track[midi_track as usize] += 1;
    }
    let mut tracks = Vec::with_capacity(track_of.len());
    for (index, (&(midi_track, channel), clip_track)) in track_of.iter_mut().enumerate() {
        let channels_in_track = channels_per_track[midi_track as usize];
        let name = match file
            .names
            .get(midi_track as usize)
            .and_then(Option::as_deref)
        {
            Some(name) if channels_in_track > 1 => format!("{name} (channel {})", channel + 1),
            Some(name) => name.to_string(),
            None if channels_in_track > 1 => format!("Channel {}", channel + 1),
            None => format!("Track {}", midi_track as u32 + 1),
        };
        let role = TrackRole::guess(&name, channel);
        tracks.push(Track::new(name, role, channel));
        *clip_track = index as u16;
    }
    let mut notes = Vec::with_capacity(file.notes.len());
    let mut end_steps = 0i64;
    for (raw, &(start, end)) in file.notes.iter().zip(&spans) {
        let start = start.max(0);
        let end = end.max(start + 1);
        if end > max_steps {
            return Err(MidiError::TooLong {
                bar: (end - 1) as u64 / spb as u64 + 1,
                limit: MAX_BARS,
            });
        }
        end_steps = end_steps.max(end);
        let track = track_of[&(raw.midi_track, raw.channel)];
        notes.push(Note::new(
            start as u32,
            raw.pitch,
            (end - start) as u32,
            raw.velocity,
            track,
        ));
    }
    let bars = (end_steps as u64).div_ceil(spb as u64).max(1) as i64;
    let clip_steps = bars * spb;
    let mut clip = Clip {
        notes,
        tracks,
        tempo,
        time_signature,
        bars: bars as u32,
        tempo_changes: changes_before(tempos, clip_steps, |step, bpm| TempoChange { step, bpm }),
        meter_changes: changes_before(meters, clip_steps, |step, time_signature| MeterChange {
            step,
            time_signature,
        }),
    };
    clip.sort_notes();
    // The same limits as every clip: the checks above already keep notes, bars and tempos
    // inside them; what is left to repair here (a file without notes gets its one track) needs
    // no warning.
    let _repairs = clip.sanitize();
    Ok(clip)
}

/// A note in ticks, before quantization.
#[derive(Clone, Copy, Debug)]
struct RawNote {
    midi_track: u16,
    channel: u8,
    pitch: u8,
    velocity: u8,
    on: u64,
    off: u64,
}

/// The events of a MIDI file that matter for a clip, in absolute ticks.
#[derive(Debug)]
struct ParsedFile {
    ppq: u16,
    /// Track-name meta event of each MIDI track (the first non-empty one).
    names: Vec<Option<String>>,
    notes: Vec<RawNote>,
    /// (tick, µs per quarter), sorted by tick; equal ticks in track order.
    tempos: Vec<(u64, u32)>,
    /// (tick, meter), sorted like `tempos`.
    meters: Vec<(u64, TimeSignature)>,
}

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The SMF inside a RIFF RMID wrapper (its `data` chunk), or `bytes` itself.
fn unwrap_riff(bytes: &[u8]) -> Result<&[u8], MidiError> {
    if !bytes.starts_with(b"RIFF") {
        return Ok(bytes);
    }
    if bytes.len() < 12 || &bytes[8..12] != b"RMID" {
        return Err(MidiError::NotMidi);
    }
    let mut rest = &bytes[12..];
    while rest.len() >= 8 {
        let len = le_u32(&rest[4..8]) as usize;
        let body = &rest[8..];
        if &rest[..4] == b"data" {
            return body
                .get(..len)
                .ok_or_else(|| MidiError::Truncated("RIFF data chunk is cut short".into()));
        }
        // RIFF chunks are padded to even lengths.
        rest = body.get(len + len % 2..).unwrap_or(&[]);
    }
    Err(MidiError::Truncated(
        "RIFF file without a data chunk".into(),
    ))
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Check the chunk structure and read every track's notes, tempi and meters.
fn parse_file(bytes: &[u8]) -> Result<ParsedFile, MidiError> {
    if bytes.is_empty() {
        return Err(MidiError::Empty);
    }
    check_size(bytes.len() as u64)?;
    let smf = unwrap_riff(bytes)?;
    if !smf.starts_with(b"MThd") {
        return Err(MidiError::NotMidi);
    }
    if smf.len() < 14 {
        return Err(MidiError::Truncated(format!(
            "header is {} bytes, expected 14",
            smf.len()
        )));
    }
    let header_len = be_u32(&smf[4..8]) as usize;
    if header_len < 6 {
        return Err(MidiError::Malformed(format!(
            "header chunk has {header_len} bytes, expected 6"
        )));
    }
    let mut rest = smf.get(8 + header_len..).ok_or_else(|| {
        MidiError::Truncated(format!(
            "header chunk declares {header_len} bytes, the file ends first"
        ))
    })?;
    let format = be_u16(&smf[8..10]);
    let declared_tracks = be_u16(&smf[10..12]) as usize;
    let division = be_u16(&smf[12..14]);
    if format > 2 {
        return Err(MidiError::Malformed(format!("unknown SMF format {format}")));
    }
    if division & 0x8000 != 0 {
        return Err(MidiError::SmpteTiming {
            fps: ((division >> 8) as u8 as i8 as i16).unsigned_abs() as u8,
            ticks_per_frame: division as u8,
        });
    }
    if division == 0 {
        return Err(MidiError::Malformed("zero ticks per quarter note".into()));
    }
    if declared_tracks == 0 {
        return Err(MidiError::NoTracks);
    }
    // Track chunks; other chunk types are skipped, bytes after the last declared track ignored.
    let mut chunks: Vec<&[u8]> = Vec::new();
    while chunks.len() < declared_tracks {
        if rest.len() < 8 {
            return Err(MidiError::Truncated(format!(
                "header declares {declared_tracks} tracks, the file ends after {}",
                chunks.len()
            )));
        }
        let len = be_u32(&rest[4..8]) as usize;
        let body = &rest[8..];
        if len > body.len() {
            return Err(MidiError::Truncated(format!(
                "chunk {} declares {len} bytes, only {} remain",
                chunks.len() + 1,
                body.len()
            )));
        }
        if &rest[..4] == b"MTrk" {
            chunks.push(&body[..len]);
        }
        rest = &body[len..];
    }
    let mut file = ParsedFile {
        ppq: division,
        names: Vec::with_capacity(chunks.len()),
        notes: Vec::new(),
        tempos: Vec::new(),
        meters: Vec::new(),
    };
    let mut sounding = Sounding {
        queues: vec![VecDeque::new(); 16 * 128],
        active: Vec::new(),
    };
    let mut track_start = 0u64;
    for (index, data) in chunks.iter().enumerate() {
        let midi_track = index as u16;
        let track_end = read_track(index, data, track_start, &mut file, &mut sounding)?;
        // Notes still sounding end at the end of their track.
        for slot in sounding.active.drain(..) {
            for (on, velocity) in sounding.queues[slot].drain(..) {
                file.notes.push(RawNote {
                    midi_track,
                    channel: (slot / 128) as u8,
                    pitch: (slot % 128) as u8,
                    velocity,
                    on,
                    off: track_end,
                });
            }
        }
        // Type 2 (sequential): each track starts where the previous one ended.
        if format == 2 {
            track_start = track_end;
        }
    }
    file.tempos.sort_by_key(|t| t.0);
    file.meters.sort_by_key(|m| m.0);
    Ok(file)
}

/// Sounding notes per channel and key (`channel * 128 + key`): (on tick, velocity), oldest
/// first; `active` lists the keys that got a note in the current track.
struct Sounding {
    queues: Vec<VecDeque<(u64, u8)>>,
    active: Vec<usize>,
}

/// Read one track's events into `file`; returns the tick of its end.
fn read_track(
    index: usize,
    data: &[u8],
    start: u64,
    file: &mut ParsedFile,
    sounding: &mut Sounding,
) -> Result<u64, MidiError> {
    let midi_track = index as u16;
    let mut name = None;
    let mut tick = start;
    let mut events = EventIter::new(data);
    loop {
        let unread = events.unread().len();
        let event = match events.next() {
            Some(Ok(event)) => event,
            // midly stops quietly at an event it cannot read: report it.
            None if unread > 0 => {
                return Err(MidiError::Malformed(format!(
                    "track {}: unreadable event at byte {} of {}",
                    index + 1,
                    data.len() - unread,
                    data.len()
                )));
            }
            None => break,
            Some(Err(e)) => {
                return Err(MidiError::Malformed(format!("track {}: {e}", index + 1)));
            }
        };
        tick += event.delta.as_int() as u64;
        match event.kind {
            TrackEventKind::Midi { channel, message } => {
                let slot =
                    |key: midly::num::u7| channel.as_int() as usize * 128 + key.as_int() as usize;
                match message {
                    MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                        let queue = &mut sounding.queues[slot(key)];
                        if queue.is_empty() {
                            sounding.active.push(slot(key));
                        }
                        queue.push_back((tick, vel.as_int()));
                    }
                    MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                        // FIFO: a note-off ends the oldest sounding note of its key and channel.
                        if let Some((on, velocity)) = sounding.queues[slot(key)].pop_front() {
                            file.notes.push(RawNote {
                                midi_track,
                                channel: channel.as_int(),
                                pitch: key.as_int(),
                                velocity,
                                on,
                                off: tick,
                            });
                        }
                    }
                    _ => {}
                }
            }
            TrackEventKind::Meta(MetaMessage::TrackName(bytes)) if name.is_none() => {
                let text = String::from_utf8_lossy(bytes).trim().to_string();
                if !text.is_empty() {
                    name = Some(text);
                }
            }
            // A zero tempo is meaningless; it is ignored.
            TrackEventKind::Meta(MetaMessage::Tempo(us)) if us.as_int() > 0 => {
                file.tempos.push((tick, us.as_int()));
            }
            TrackEventKind::Meta(MetaMessage::TimeSignature(numerator, power, _, _)) => {
                if numerator == 0 || power > 6 {
                    return Err(MidiError::Malformed(format!(
                        "track {}: invalid time signature {numerator}/2^{power} at tick {tick}",
                        index + 1
                    )));
                }
                file.meters
                    .push((tick, TimeSignature::new(numerator, 1 << power)));
            }
            TrackEventKind::Meta(MetaMessage::EndOfTrack) => break,
            _ => {}
        }
    }
    file.names.push(name);
    Ok(tick)
}

/// Ticks → seconds through the file's tempo map.
struct SecondsMap {
    /// (tick, seconds at tick, seconds per tick from there on), sorted by tick.
    segments: Vec<(u64, f64, f64)>,
}

impl SecondsMap {
    fn new(file: &ParsedFile) -> SecondsMap {
        let per_tick = |us: u32| us as f64 / 1e6 / file.ppq as f64;
        let mut segments = vec![(0u64, 0.0, per_tick(DEFAULT_MICROS_PER_QUARTER))];
        for &(tick, us) in &file.tempos {
            let &(t0, s0, rate) = segments.last().unwrap_or(&(0, 0.0, 0.0));
            let seconds = s0 + (tick - t0) as f64 * rate;
            if tick == t0 {
                segments.pop();
            }
            segments.push((tick, seconds, per_tick(us)));
        }
        SecondsMap { segments }
    }

    fn at(&self, tick: u64) -> f64 {
        let i = self
            .segments
            .partition_point(|s| s.0 <= tick)
            .saturating_sub(1);
        match self.segments.get(i) {
            Some(&(t0, s0, rate)) => s0 + (tick - t0) as f64 * rate,
            None => 0.0,
        }
    }
}
