//! MIDI input capture on the audio thread: incoming notes stamped with their position on the
//! host timeline, and a cue at the last 16th of every bar (or earlier: the lookahead), sent off the audio thread through an
//! rtrb ring buffer (see [`crate::band`] for the side that quantizes, records and answers them).
//!
//! Positions are host beats (quarter notes): sample `k` of a block sits at `b0 + k·Δ`, the rule
//! of [`crate::player`]. Bars are counted from host beat 0 with the host's time signature.
//! Nothing here allocates or blocks; a full ring keeps events in a fixed backlog that is retried
//! on the next block, and only when that is full too are events dropped (and counted).

use crate::voice::{BlockStart, Timeline};
use rtrb::{Consumer, Producer, RingBuffer};

/// Events the ring holds.
pub const CAPTURE_RING_CAPACITY: usize = 4096;
/// Events kept on the audio thread while the ring is full.
const BACKLOG_CAPACITY: usize = 512;
/// The cue comes this many beats before each downbeat by default: one 16th note.
pub const CUE_BEATS_BEFORE_DOWNBEAT: f64 = 0.25;

/// What the audio thread reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CaptureEvent {
    /// A note-on (`velocity` 1–127) or note-off (`velocity` 0) at host beat `beat`.
    Note {
        beat: f64,
        pitch: u8,
        velocity: u8,
        channel: u8,
    },
    /// The transport reached the cue of bar `bar` (by default its last 16th; bars of
    /// `beats_per_bar` beats counted from host beat 0): the bar is complete and its answer is
    /// due at the next downbeat.
    BarCue { bar: i64, beats_per_bar: f64 },
    /// The transport stopped or jumped: held notes are gone and the bar restarts.
    Reset,
}

/// The transport of one block as capture needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockClock {
    /// Host beat of the block's first sample.
    pub beat: f64,
    /// Beats per sample (tempo / 60 / sample rate).
    pub beats_per_sample: f64,
    pub samples: u32,
    pub beats_per_bar: f64,
}

impl BlockClock {
    pub fn beat_of_sample(&self, sample: u32) -> f64 {
        self.beat + sample as f64 * self.beats_per_sample
    }

    /// The last beat this block owns (its last sample's).
    pub fn last_beat(&self) -> f64 {
        self.beat_of_sample(self.samples.saturating_sub(1))
    }
}

/// A connected audio-side capture and the receiving end.
pub fn capture_feed() -> (Capture, Consumer<CaptureEvent>) {
    let (producer, consumer) = RingBuffer::new(CAPTURE_RING_CAPACITY);
    (
        Capture {
            producer,
            backlog: Box::new([CaptureEvent::Reset; BACKLOG_CAPACITY]),
            backlog_len: 0,
            dropped: 0,
            timeline: Timeline::default(),
            from: 0.0,
            running: false,
            cue_beats: CUE_BEATS_BEFORE_DOWNBEAT,
            last_cued_bar: None,
        },
        consumer,
    )
}

/// The audio-thread end. Call [`Capture::begin_block`], then [`Capture::note`] for every
/// incoming note of the block, then [`Capture::end_block`].
pub struct Capture {
    producer: Producer<CaptureEvent>,
    backlog: Box<[CaptureEvent; BACKLOG_CAPACITY]>,
    backlog_len: usize,
    dropped: u64,
    /// Where the previous block ended, while playing.
    timeline: Timeline,
    /// This block owns the beats after this one (from [`Timeline::start`]).
    from: f64,
    /// Whether the previous block was captured (playing and enabled).
    running: bool,
    /// How many beats before each downbeat the cue comes.
    cue_beats: f64,
    /// The last bar cued since the transport started (a lookahead change never cues twice).
    last_cued_bar: Option<i64>,
}

impl Capture {
    /// Events lost because the ring and the backlog were both full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Cue each bar `steps` 16ths before the next downbeat (at least 1; at most the bar).
    pub fn set_lookahead_steps(&mut self, steps: u32) {
        self.cue_beats = steps.max(1) as f64 * 0.25;
    }

    /// Start a block. `clock` is `None` when the transport is stopped, gives no position, or
    /// capture is off; a stop or a jump sends [`CaptureEvent::Reset`].
    pub fn begin_block(&mut self, clock: Option<&BlockClock>) {
        self.flush_backlog();
        match clock {
            None => {
                if self.running {
                    self.push(CaptureEvent::Reset);
                }
                self.running = false;
                self.timeline.forget();
                self.last_cued_bar = None;
            }
            Some(clock) => {
                // Carries on if it starts within a sample of where the last block said.
                let slack = clock.beats_per_sample + 1e-9;
                let BlockStart { from, jumped } =
                    self.timeline
                        .start(clock.beat, clock.beats_per_sample, slack);
                if self.running && jumped {
                    self.push(CaptureEvent::Reset);
                    self.last_cued_bar = None;
                }
                self.from = from;
                self.running = true;
            }
        }
    }

    /// An incoming note at sample `timing` of the block (`velocity` 0 for a note-off).
    pub fn note(&mut self, clock: &BlockClock, timing: u32, pitch: u8, velocity: u8, channel: u8) {
        if !self.running {
            return;
        }
        self.push(CaptureEvent::Note {
            beat: clock.beat_of_sample(timing.min(clock.samples.saturating_sub(1))),
            pitch: pitch.min(127),
            velocity: velocity.min(127),
            channel: channel.min(15),
        });
    }

    /// Close the block: a cue for every bar whose last 16th falls inside it.
    pub fn end_block(&mut self, clock: Option<&BlockClock>) {
        let Some(clock) = clock.filter(|_| self.running) else {
            return;
        };
        // This block owns the beats (from, to].
        let (from, to) = (self.from, clock.last_beat());
        self.timeline.finish(to, clock.beats_per_sample, 0.0);
        let bar_len = clock.beats_per_bar;
        if !(bar_len.is_finite() && bar_len > 0.25) {
            return;
        }
        // The lookahead stays inside the bar (a bar shorter than the lookahead cues on its
        // downbeat's next 16th).
        let cue_before = self.cue_beats.min(bar_len - 0.25);
        let cue_of = |bar: f64| (bar + 1.0) * bar_len - cue_before;
        let mut bar = ((from + cue_before) / bar_len).floor() - 1.0;
        // At most a few bars per block; the bound guards against absurd tempos.
        for _ in 0..64 {
            let cue = cue_of(bar);
            if cue > to {
                break;
            }
            if cue > from && self.last_cued_bar.is_none_or(|b| (bar as i64) > b) {
                self.push(CaptureEvent::BarCue {
                    bar: bar as i64,
                    beats_per_bar: bar_len,
                });
                self.last_cued_bar = Some(bar as i64);
            }
            bar += 1.0;
        }
    }

    fn push(&mut self, event: CaptureEvent) {
        self.flush_backlog();
        if self.backlog_len == 0 && self.producer.push(event).is_ok() {
            return;
        }
        if self.backlog_len < BACKLOG_CAPACITY {
            self.backlog[self.backlog_len] = event;
            self.backlog_len += 1;
        } else {
            self.dropped += 1;
        }
    }

    fn flush_backlog(&mut self) {
        let mut sent = 0;
        while sent < self.backlog_len && self.producer.push(self.backlog[sent]).is_ok() {
            sent += 1;
        }
        if sent > 0 {
            self.backlog.copy_within(sent..self.backlog_len, 0);
            self.backlog_len -= sent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(beat: f64, samples: u32) -> BlockClock {
        // 120 BPM at 48 kHz.
        BlockClock {
            beat,
            beats_per_sample: 2.0 / 48_000.0,
            samples,
            beats_per_bar: 4.0,
        }
    }

    fn drain(consumer: &mut Consumer<CaptureEvent>) -> Vec<CaptureEvent> {
        std::iter::from_fn(|| consumer.pop().ok()).collect()
    }

    #[test]
    fn notes_get_their_beat_and_every_bar_one_cue() {
        let (mut capture, mut consumer) = capture_feed();
        let mut beat = 0.0;
        let mut events = Vec::new();
        // 3 bars in blocks of 512 samples; a note-on at sample 10 of the first block.
        for block in 0..(3.0 * 4.0 / (512.0 * 2.0 / 48_000.0)) as usize + 1 {
            let c = clock(beat, 512);
            capture.begin_block(Some(&c));
            if block == 0 {
                capture.note(&c, 10, 60, 100, 0);
            }
            capture.end_block(Some(&c));
            events.extend(drain(&mut consumer));
            beat += 512.0 * c.beats_per_sample;
        }
        assert_eq!(
            events[0],
            CaptureEvent::Note {
                beat: 10.0 * (2.0 / 48_000.0),
                pitch: 60,
                velocity: 100,
                channel: 0
            }
        );
        let cues: Vec<i64> = events
            .iter()
            .filter_map(|e| match e {
                CaptureEvent::BarCue { bar, .. } => Some(*bar),
                _ => None,
            })
            .collect();
        assert_eq!(cues, vec![0, 1, 2]);
    }

    #[test]
    fn blocks_of_a_bar_too_short_to_cue_carry_on_without_resets() {
        let (mut capture, mut consumer) = capture_feed();
        let short = BlockClock {
            beats_per_bar: 0.25, // 1/16: no cue fits
            ..clock(0.0, 64)
        };
        for block in 0..4 {
            let c = BlockClock {
                beat: block as f64 * 64.0 * short.beats_per_sample,
                ..short
            };
            capture.begin_block(Some(&c));
            capture.end_block(Some(&c));
        }
        assert_eq!(drain(&mut consumer), vec![]);
    }

    #[test]
    fn a_stop_or_a_jump_resets_and_a_full_ring_loses_nothing_until_the_backlog_is_full() {
        let (mut capture, mut consumer) = capture_feed();
        let c = clock(8.0, 64);
        capture.begin_block(Some(&c));
        capture.end_block(Some(&c));
        capture.begin_block(Some(&clock(2.0, 64))); // jumped back
        assert_eq!(drain(&mut consumer), vec![CaptureEvent::Reset]);
        capture.begin_block(None); // stopped
        assert_eq!(drain(&mut consumer), vec![CaptureEvent::Reset]);

        let c = clock(0.0, 64);
        capture.begin_block(Some(&c));
        let total = CAPTURE_RING_CAPACITY + BACKLOG_CAPACITY;
        for i in 0..total {
            capture.note(&c, 0, (i % 128) as u8, 90, 0);
        }
        assert_eq!(capture.dropped(), 0);
        capture.note(&c, 0, 1, 90, 0);
        assert_eq!(capture.dropped(), 1);
        // Once the receiver drains the ring, the backlog follows in order.
        capture.end_block(Some(&c));
        let first = drain(&mut consumer);
        assert_eq!(first.len(), CAPTURE_RING_CAPACITY);
        capture.begin_block(Some(&clock(64.0 * c.beats_per_sample, 64)));
        let rest = drain(&mut consumer);
        assert_eq!(rest.len(), BACKLOG_CAPACITY);
        assert!(
            matches!(rest[0], CaptureEvent::Note { pitch, .. } if pitch as usize == CAPTURE_RING_CAPACITY % 128)
        );
    }
}
