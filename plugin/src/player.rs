//! The audio-thread scheduler: plays the clip looped in time with the host transport, with
//! sample-accurate note-ons and note-offs.
//!
//! Everything here runs on the audio thread after construction: fixed-capacity arrays only, no
//! allocation, no locks, no logging. Positions are in quarter notes (beats) of the host timeline;
//! the clip loops from host beat 0, so clip position = host beat mod clip length.
//!
//! Timing rule: sample `k` of a block sits at beat `b0 + k·Δ` (Δ = beats per sample). An event at
//! beat `e` plays at the first sample at or after it, `k = ⌈(e − b0)/Δ⌉`; a block therefore owns
//! the beats in `(b0 − Δ, b0 + (n−1)·Δ]`, and consecutive blocks tile the timeline exactly.

use crate::voice::{
    BlockStart, EventBuffer, KEYS, NoteMessage, SoundingNotes, Timeline, key_of, sample_at,
};
use bandmate::music::{Clip, STEPS_PER_BEAT};

/// Most clip notes started in one block (a note folded into one starting on the same key at the
/// same sample counts too, so that a dense clip costs bounded time); more are dropped and
/// counted.
pub const MAX_NOTE_ONS_PER_BLOCK: usize = 1024;
/// Keys that can sound at once: 16 channels × 128 pitches.
pub const MAX_SOUNDING: usize = KEYS;
/// Events one block can emit: every sounding key's note-off plus each note-on with its own off.
pub const MAX_EVENTS_PER_BLOCK: usize = MAX_SOUNDING + 2 * MAX_NOTE_ONS_PER_BLOCK;

/// Most loop wraps or clip laps handled in one block (guards against degenerate loop ranges).
const MAX_SEGMENTS_PER_BLOCK: usize = 64;
/// How far the host's position may drift from where the previous block said the next one starts
/// and still count as going on, as a share of the previous block's length: a tempo ramp inside
/// a block (CLAP `tempo_inc`) moves the next block's start by up to about half the block times
/// the relative tempo change. A seek or an unannounced loop moves it further.
const DRIFT_PER_BLOCK: f64 = 0.5;

/// One note of the clip as the scheduler needs it, in beats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduledNote {
    /// Start in beats from the clip start.
    pub start: f64,
    /// Length in beats (cut at the clip end).
    pub length: f64,
    pub pitch: u8,
    /// MIDI velocity 1–127.
    pub velocity: u8,
    /// MIDI channel 0–15 (the note's track's channel).
    pub channel: u8,
}

/// A clip laid out for playback: notes sorted by start, and the loop length. Built and reloaded
/// off the audio thread (allocation happens there), handed over through a ring buffer; the audio
/// thread only reads it.
#[derive(Clone, Debug)]
pub struct PlayerClip {
    notes: Vec<ScheduledNote>,
    length_beats: f64,
    /// The clip's own tempo, used when the host gives none.
    tempo: f64,
}

impl Default for PlayerClip {
    fn default() -> Self {
        Self::empty()
    }
}

impl PlayerClip {
    pub fn empty() -> Self {
        Self {
            notes: Vec::new(),
            length_beats: 0.0,
            tempo: 120.0,
        }
    }

    pub fn from_clip(clip: &Clip) -> Self {
        let mut out = Self::empty();
        out.load(clip);
        out
    }

    /// Replace the contents with `clip`, reusing the buffer where it is large enough.
    pub fn load(&mut self, clip: &Clip) {
        let steps = clip.steps();
        let beats_per_step = 1.0 / STEPS_PER_BEAT as f64;
        self.notes.clear();
        self.length_beats = steps as f64 * beats_per_step;
        self.tempo = if clip.tempo.is_finite() && clip.tempo > 0.0 {
            clip.tempo
        } else {
            120.0
        };
        for note in clip.notes.iter().filter(|n| n.start < steps) {
            let end = note.end().min(steps);
            let channel = clip
                .tracks
                .get(note.track as usize)
                .map_or(0, |t| t.channel.min(15));
            self.notes.push(ScheduledNote {
                start: note.start as f64 * beats_per_step,
                length: (end - note.start) as f64 * beats_per_step,
                pitch: note.pitch.min(127),
                velocity: note.velocity.clamp(1, 127),
                channel,
            });
        }
        self.notes.sort_unstable_by(|a, b| {
            a.start
                .total_cmp(&b.start)
                .then(a.pitch.cmp(&b.pitch))
                .then(a.channel.cmp(&b.channel))
        });
        // The same key starting twice at once is one note (the longest, the loudest): a host
        // cannot tell two note-ons of one key at one sample apart.
        self.notes.dedup_by(|later, kept| {
            let same = later.start == kept.start
                && later.pitch == kept.pitch
                && later.channel == kept.channel;
            if same {
                kept.length = kept.length.max(later.length);
                kept.velocity = kept.velocity.max(later.velocity);
            }
            same
        });
    }

    pub fn notes(&self) -> &[ScheduledNote] {
        &self.notes
    }

    pub fn length_beats(&self) -> f64 {
        self.length_beats
    }

    pub fn tempo(&self) -> f64 {
        self.tempo
    }
}

/// What the host says about the transport for one block (a copy of the fields the scheduler
/// reads, so that tests can drive it without a host).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostTransport {
    pub sample_rate: f64,
    pub playing: bool,
    /// Quarter notes per minute, if the host gives it.
    pub tempo: Option<f64>,
    /// Position at the block's first sample in quarter notes; `None` makes the scheduler run
    /// its own free-running clock.
    pub pos_beats: Option<f64>,
    /// Active loop range in quarter notes, end exclusive.
    pub loop_beats: Option<(f64, f64)>,
}

impl HostTransport {
    /// A stopped transport that knows only the sample rate.
    pub fn new(sample_rate: f64) -> Self {
        Self {
            sample_rate,
            playing: false,
            tempo: None,
            pos_beats: None,
            loop_beats: None,
        }
    }
}

/// Playback settings read from the parameters once per block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlayOptions {
    /// Send every note on this channel (0–15) instead of its track's channel.
    pub channel: Option<u8>,
    /// Multiplies every velocity (the result is clamped to 1–127).
    pub velocity_scale: f32,
}

impl Default for PlayOptions {
    fn default() -> Self {
        Self {
            channel: None,
            velocity_scale: 1.0,
        }
    }
}

/// Counters the GUI can show; they only ever grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlayerStats {
    /// Note-ons dropped because one block had more than [`MAX_NOTE_ONS_PER_BLOCK`].
    pub dropped_note_ons: u64,
    /// Times the host position jumped (seek, loop the scheduler was not told about).
    pub jumps: u64,
    /// The most notes one block has looked at (clip notes started or folded, sounding notes
    /// checked for their note-off): the scheduler's work per block, bounded by the caps above
    /// whatever the clip's size.
    pub most_notes_visited: u64,
}

/// A sounding note as the scheduler keeps it (by key, in [`SoundingNotes`]).
#[derive(Clone, Copy, Debug, Default)]
struct Sounding {
    /// Host beat of the note-off.
    off: f64,
    /// The block (its serial number) and sample of the note-on: a note-off in the same block
    /// must come at a later sample, or the host would see it before the note-on.
    on_block: u64,
    on_sample: u32,
}

/// The scheduler. Create it off the audio thread; afterwards nothing allocates.
pub struct Player {
    clip: Box<PlayerClip>,
    sounding: SoundingNotes<Sounding, MAX_SOUNDING>,
    events: EventBuffer<MAX_EVENTS_PER_BLOCK>,
    note_ons_this_block: usize,
    /// Notes looked at in this block (see [`PlayerStats::most_notes_visited`]).
    visited_this_block: u64,
    /// Counts blocks (see [`Sounding::on_block`]).
    block_serial: u64,
    /// Where the previous block ended if playback went on.
    timeline: Timeline,
    /// Every sounding note ends at the next block's first sample (after a reset, deactivation
    /// or clip swap, which cannot send events themselves).
    release_pending: bool,
    /// The output-channel option of the last block; a change ends every sounding note.
    last_channel: Option<Option<u8>>,
    /// Position of the free-running clock, used when the host gives no position.
    free_beats: f64,
    stats: PlayerStats,
}

impl Default for Player {
    fn default() -> Self {
        Self::new()
    }
}

/// Where one part of a block sits: its first sample, that sample's beat, and the beats it owns.
#[derive(Clone, Copy, Debug)]
struct Segment {
    first_sample: u32,
    origin_beat: f64,
    beats_per_sample: f64,
    /// Exclusive lower bound of the beats this segment plays.
    from: f64,
    /// Inclusive upper bound.
    to: f64,
    /// Last sample index of the block (offsets are clamped to it).
    last_sample: u32,
}

impl Segment {
    fn sample_of(&self, beat: f64) -> u32 {
        sample_at(
            beat,
            self.origin_beat,
            self.beats_per_sample,
            self.first_sample,
            self.last_sample,
        )
    }
}

impl Player {
    pub fn new() -> Self {
        Self {
            clip: Box::new(PlayerClip::empty()),
            sounding: SoundingNotes::new(),
            events: EventBuffer::default(),
            note_ons_this_block: 0,
            visited_this_block: 0,
            block_serial: 0,
            timeline: Timeline::default(),
            release_pending: false,
            last_channel: None,
            free_beats: 0.0,
            stats: PlayerStats::default(),
        }
    }

    /// Swap in a new clip and return the old one (to be dropped off the audio thread). Notes
    /// still sounding from the old clip end at the next block's first sample.
    pub fn swap_clip(&mut self, clip: Box<PlayerClip>) -> Box<PlayerClip> {
        self.release_pending |= !self.sounding.is_empty();
        std::mem::replace(&mut self.clip, clip)
    }

    pub fn clip(&self) -> &PlayerClip {
        &self.clip
    }

    pub fn stats(&self) -> PlayerStats {
        self.stats
    }

    /// Keys sounding now.
    pub fn sounding_count(&self) -> usize {
        self.sounding.len()
    }

    /// Forget the position and restart the free-running clock (the host's `reset`, or a
    /// deactivation); every sounding note gets its note-off at the next block's first sample,
    /// since neither can send events and a host may keep its voices.
    pub fn reset(&mut self) {
        self.release_pending |= !self.sounding.is_empty();
        self.events.clear();
        self.timeline.forget();
        self.free_beats = 0.0;
    }

    /// Note-offs at sample 0 for every sounding note; for deactivation or bypass.
    pub fn all_notes_off(&mut self) -> &[NoteMessage] {
        self.events.clear();
        self.release_all(0);
        self.timeline.forget();
        self.events.as_slice()
    }

    /// Schedule one block of `samples` samples; the events come back sorted by timing, note-offs
    /// before note-ons at the same sample.
    pub fn process_block(
        &mut self,
        transport: &HostTransport,
        samples: u32,
        options: PlayOptions,
    ) -> &[NoteMessage] {
        self.events.clear();
        self.note_ons_this_block = 0;
        self.visited_this_block = 0;
        self.block_serial += 1;
        let valid_rate = transport.sample_rate.is_finite() && transport.sample_rate > 0.0;
        if samples == 0 || !valid_rate {
            return self.events.as_slice();
        }
        if self.last_channel.is_some_and(|c| c != options.channel) {
            self.release_pending = true;
        }
        self.last_channel = Some(options.channel);
        if std::mem::take(&mut self.release_pending) {
            self.release_all(0);
        }
        let tempo = transport
            .tempo
            .filter(|t| t.is_finite() && *t > 0.0)
            .unwrap_or(self.clip.tempo);
        let beats_per_sample = tempo / 60.0 / transport.sample_rate;
        let (playing, block_beat) = match transport.pos_beats.filter(|p| p.is_finite()) {
            Some(pos) => (transport.playing, pos),
            None => {
                let pos = self.free_beats;
                self.free_beats += samples as f64 * beats_per_sample;
                (true, pos)
            }
        };
        if !playing {
            self.release_all(0);
            self.timeline.forget();
            return self.finish_block();
        }

        // Carry on from where the last block stopped scanning, unless the host jumped.
        let BlockStart { from, jumped } = self.timeline.start(block_beat, beats_per_sample, 0.0);
        if jumped {
            self.stats.jumps += 1;
            self.release_all(0);
        }

        let last_sample = samples - 1;
        let tolerance =
            (samples as f64 * beats_per_sample * DRIFT_PER_BLOCK).max(beats_per_sample) + 1e-9;
        let mut segment = Segment {
            first_sample: 0,
            origin_beat: block_beat,
            beats_per_sample,
            from,
            to: block_beat + last_sample as f64 * beats_per_sample,
            last_sample,
        };
        let loop_range = transport
            .loop_beats
            .filter(|(start, end)| start.is_finite() && end.is_finite() && end > start);
        for _ in 0..MAX_SEGMENTS_PER_BLOCK {
            let wrap = loop_range.filter(|&(_, end)| segment.from < end && end <= segment.to);
            let Some((loop_start, loop_end)) = wrap else {
                self.play_segment(&segment, options);
                self.timeline
                    .finish(segment.to, beats_per_sample, tolerance);
                return self.finish_block();
            };
            // The host wraps at the first sample at or after the loop end.
            let wrap_sample = segment.sample_of(loop_end).max(segment.first_sample);
            if wrap_sample > segment.first_sample {
                let before = Segment {
                    to: segment.origin_beat
                        + (wrap_sample - 1 - segment.first_sample) as f64 * beats_per_sample,
                    ..segment
                };
                self.play_segment(&before, options);
            }
            self.release_all(wrap_sample);
            let wrapped_beat = loop_start
                + (segment.origin_beat
                    + (wrap_sample - segment.first_sample) as f64 * beats_per_sample
                    - loop_end);
            segment = Segment {
                first_sample: wrap_sample,
                origin_beat: wrapped_beat,
                from: wrapped_beat - beats_per_sample,
                to: wrapped_beat + (last_sample - wrap_sample) as f64 * beats_per_sample,
                ..segment
            };
        }
        // A loop shorter than a few samples: stop scanning rather than spin.
        self.timeline
            .finish(segment.to, beats_per_sample, tolerance);
        self.finish_block()
    }

    fn finish_block(&mut self) -> &[NoteMessage] {
        let visited = &mut self.stats.most_notes_visited;
        *visited = (*visited).max(self.visited_this_block);
        self.events.sorted()
    }

    /// Note-ons for clip notes starting in the segment, then note-offs due in it.
    fn play_segment(&mut self, segment: &Segment, options: PlayOptions) {
        let length = self.clip.length_beats;
        if length > 0.0 && segment.to > segment.from {
            let mut lap = (segment.from / length).floor();
            for _ in 0..MAX_SEGMENTS_PER_BLOCK {
                let lap_start = lap * length;
                if lap_start > segment.to {
                    break;
                }
                let (lo, hi) = (segment.from - lap_start, segment.to - lap_start);
                let notes = &self.clip.notes;
                let first = notes.partition_point(|n| n.start <= lo);
                let end = notes.partition_point(|n| n.start <= hi);
                // Past the cap the rest are only counted: bounded time for any clip.
                let room = MAX_NOTE_ONS_PER_BLOCK - self.note_ons_this_block;
                let taken = (end - first).min(room);
                self.stats.dropped_note_ons += (end - first - taken) as u64;
                self.visited_this_block += taken as u64;
                for i in first..first + taken {
                    let note = self.clip.notes[i];
                    self.start_note(segment, lap_start + note.start, note, options);
                }
                lap += 1.0;
            }
        }
        // Note-offs due up to the segment end (including ones started just now). A note-off
        // never shares its note-on's sample (the host would read it first): it moves to the next
        // sample, or to the next block's first one.
        self.visited_this_block += self.sounding.len() as u64;
        let block = self.block_serial;
        self.sounding.end_due(&mut self.events, |s| {
            if s.off <= segment.to {
                let timing = segment.sample_of(s.off);
                if s.on_block != block || timing > s.on_sample {
                    Some(timing)
                } else {
                    // The sample after the note-on's; if that is the block's last, next block.
                    (s.on_sample < segment.last_sample).then_some(s.on_sample + 1)
                }
            } else {
                None
            }
        });
    }

    fn start_note(
        &mut self,
        segment: &Segment,
        beat: f64,
        note: ScheduledNote,
        options: PlayOptions,
    ) {
        self.note_ons_this_block += 1;
        let key = key_of(options.channel.unwrap_or(note.channel), note.pitch);
        let timing = segment.sample_of(beat);
        // The same key again while it sounds: end the old note first, or, if it started at this
        // very sample, let it last as long as the longer of the two (two note-ons of one key at
        // one sample would leave the host one note-on without its note-off).
        if let Some(old) = self.sounding.get_mut(key) {
            let this_block = old.on_block == self.block_serial;
            if this_block && old.on_sample == timing {
                old.off = old.off.max(beat + note.length);
                return;
            }
            let mut off_timing = segment.sample_of(old.off.min(beat));
            if this_block {
                off_timing = off_timing.max(old.on_sample + 1);
            }
            self.sounding.end(key, off_timing, &mut self.events);
        }
        let velocity = (note.velocity as f32 * options.velocity_scale)
            .round()
            .clamp(1.0, 127.0);
        let sounding = Sounding {
            off: beat + note.length,
            on_block: self.block_serial,
            on_sample: timing,
        };
        // Never full: the table has room for every key.
        self.sounding
            .start(key, velocity as u8, timing, sounding, &mut self.events);
    }

    /// Note-offs at `timing` for every sounding note (callers make sure no note started in this
    /// block at or after `timing`: block starts, loop wraps).
    fn release_all(&mut self, timing: u32) {
        self.visited_this_block += self.sounding.release_all(timing, &mut self.events) as u64;
    }
}

#[cfg(test)]
mod tests;
