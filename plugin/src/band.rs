//! The band player and MIDI recording, off the audio thread, and the voice that plays the
//! band's answers on it.
//!
//! ```text
//! audio thread ── CaptureEvent (rtrb) ──▶ band thread ── AnsweredBar (rtrb) ──▶ audio thread
//!  (Capture)                          quantize, record,                    (BandVoice: plays
//!                                     predict the next bar                  it from its downbeat)
//! ```
//!
//! At the last 16th of every bar the band thread hands the bar just played to the
//! [`BarPredictor`]; its answer is the next bar, which the [`BandVoice`] plays from that bar's
//! downbeat. An answer that arrives after its downbeat is dropped (never played out of time) and
//! counted as missed. When recording is armed, every completed note is quantized to the 16th
//! grid by its transport position and added to the session's clip.

use crate::capture::CaptureEvent;
use crate::voice::{
    BlockStart, EventBuffer, NoteMessage, SoundingNotes, Timeline, key_of, sample_at,
};
use crate::worker::{OwnedThread, STOP_WAIT};
use bandmate::music::{Clip, Note, TimeSignature, Track, TrackRole};
use rtrb::{Consumer, Producer, RingBuffer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most notes in one answered bar; the rest are dropped by the band thread.
pub const MAX_BAR_NOTES: usize = 128;
/// Answers that can be on their way to the audio thread.
const ANSWERS_IN_FLIGHT: usize = 4;
/// Keys the band voice can hold at once.
const MAX_BAND_SOUNDING: usize = 256;
/// Events the band voice emits per block at most.
pub const MAX_BAND_EVENTS: usize = 2 * MAX_BAR_NOTES + MAX_BAND_SOUNDING;
/// How long the band thread sleeps between looks at the capture ring while capturing...
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// ...and while neither the band player nor recording is on.
const IDLE_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The model side of the band player.
pub trait BarPredictor: Send {
    /// `played` is one bar (its time signature, one track per role the musician played) with
    /// notes in 16th steps from the bar's start; the answer is the next bar in the same form,
    /// holding the tracks the model plays.
    fn next_bar(&mut self, played: &Clip) -> Result<Clip, String>;
    /// Forget the bars so far (the transport jumped or stopped).
    fn reset(&mut self);
    /// Play these roles from now on (an error if the model has no such track).
    fn set_roles(&mut self, roles: &[TrackRole]) -> Result<(), String>;
}

/// The roles the band player can take, in the order of their bits in [`BandControls::plays`].
pub const BAND_ROLES: [TrackRole; 4] = [
    TrackRole::Melody,
    TrackRole::Accompaniment,
    TrackRole::Bass,
    TrackRole::Drums,
];

/// The bit of `role` in [`BandControls::plays`].
pub fn role_bit(role: TrackRole) -> u64 {
    1 << BAND_ROLES.iter().position(|&r| r == role).unwrap_or(0)
}

/// The roles of a [`BandControls::plays`] mask.
pub fn roles_of(mask: u64) -> Vec<TrackRole> {
    BAND_ROLES
        .iter()
        .copied()
        .filter(|&r| mask & role_bit(r) != 0)
        .collect()
}

/// Makes the predictor on the band thread when the first bar is due (models load lazily).
pub type PredictorFactory = Box<dyn FnMut() -> Result<Box<dyn BarPredictor>, String> + Send>;

/// Counters and the last error, shared with the GUI. All updates are lock-free except the error
/// text, which only the band thread writes.
#[derive(Debug, Default)]
pub struct BandStats {
    /// Bars answered in time.
    pub answered: AtomicU64,
    /// Answers that arrived after their downbeat and were skipped.
    pub missed: AtomicU64,
    /// From the bar's cue to the answer being ready, of the last answer, in microseconds.
    pub last_latency_us: AtomicU64,
    /// Notes recorded into the clip.
    pub recorded_notes: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl BandStats {
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_error(&self, error: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }
}

/// One note of an answer, in host beats.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BandNote {
    pub start: f64,
    pub end: f64,
    pub pitch: u8,
    pub velocity: u8,
    pub channel: u8,
}

/// The answer for one bar, fixed-size so that it crosses to the audio thread without allocation.
#[derive(Clone, Copy, Debug)]
pub struct AnsweredBar {
    pub bar: i64,
    /// Host beat of the bar's downbeat.
    pub start: f64,
    pub end: f64,
    notes: [BandNote; MAX_BAR_NOTES],
    len: usize,
}

impl AnsweredBar {
    pub fn notes(&self) -> &[BandNote] {
        &self.notes[..self.len]
    }
}

/// Settings the band thread reads for every bar.
#[derive(Debug)]
pub struct BandControls {
    /// Record completed notes into the clip.
    pub record: AtomicBool,
    /// Answer bars (band-player mode).
    pub answer: AtomicBool,
    /// Output channel of the answers, 0–15.
    pub channel: AtomicU64,
    /// The roles the model plays, one bit per [`BAND_ROLES`] entry ([`role_bit`]); the musician
    /// is heard as the first of melody and accompaniment that the model does not play.
    pub plays: AtomicU64,
    /// How many 16ths before the next downbeat the bar goes to the model (1–8; 1 = the last
    /// 16th of the bar). Earlier leaves the model more time but misses the notes played after.
    pub lookahead_steps: AtomicU32,
}

/// Most 16ths of lookahead.
pub const MAX_LOOKAHEAD_STEPS: u32 = 8;

impl Default for BandControls {
    fn default() -> Self {
        Self {
            record: AtomicBool::new(false),
            answer: AtomicBool::new(false),
            channel: AtomicU64::new(1),
            plays: AtomicU64::new(role_bit(TrackRole::Accompaniment)),
            lookahead_steps: AtomicU32::new(1),
        }
    }
}

impl BandControls {
    /// The role the musician's notes are heard as, given what the model plays.
    pub fn musician_role(plays: u64) -> TrackRole {
        [TrackRole::Melody, TrackRole::Accompaniment]
            .into_iter()
            .find(|&r| plays & role_bit(r) == 0)
            .unwrap_or(TrackRole::Melody)
    }
}

/// A note the musician is holding or has played in the current bar, in host beats.
#[derive(Clone, Copy, Debug, PartialEq)]
struct PlayedNote {
    start: f64,
    end: Option<f64>,
    pitch: u8,
    velocity: u8,
}

/// The band thread's bookkeeping, separate from the thread so tests can drive it directly.
pub struct BandSession {
    held: HashMap<(u8, u8), PlayedNote>,
    /// Notes that ended, kept until they are before the current bar.
    finished: Vec<PlayedNote>,
    predictor: Option<Box<dyn BarPredictor>>,
    /// Makes the predictor: on the first bar, and again after a predictor panicked.
    factory: PredictorFactory,
    /// The factory failed (with an error, not a panic): not tried again.
    factory_failed: bool,
    controls: Arc<BandControls>,
    stats: Arc<BandStats>,
    to_audio: Producer<AnsweredBar>,
    /// The [`BandControls::plays`] mask the predictor was last set to.
    applied_plays: Option<u64>,
}

impl BandSession {
    pub fn new(
        factory: PredictorFactory,
        controls: Arc<BandControls>,
        stats: Arc<BandStats>,
        to_audio: Producer<AnsweredBar>,
    ) -> Self {
        Self {
            held: HashMap::new(),
            finished: Vec::new(),
            predictor: None,
            factory,
            factory_failed: false,
            controls,
            stats,
            to_audio,
            applied_plays: None,
        }
    }

    /// [`BandSession::handle`] with a panic (a model's) caught: it never reaches the host, the
    /// editor shows it, and the predictor is made again for the next bar.
    pub fn handle_guarded(&mut self, event: CaptureEvent, recorded: &mut Vec<(f64, f64, u8, u8)>) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.handle(event, recorded)
        }));
        if let Err(panic) = outcome {
            self.predictor = None;
            self.applied_plays = None;
            self.stats.set_error(Some(format!(
                "band player: the model panicked on this bar ({}); it restarts at the next bar",
                crate::worker::panic_message(&*panic)
            )));
        }
    }

    /// Handle one event; completed notes to record are appended to `recorded` as
    /// `(start beat, end beat, pitch, velocity)`.
    pub fn handle(&mut self, event: CaptureEvent, recorded: &mut Vec<(f64, f64, u8, u8)>) {
        match event {
            CaptureEvent::Note {
                beat,
                pitch,
                velocity,
                channel,
            } => {
                let key = (channel, pitch);
                // A note-on for a held key ends the held note first.
                if let Some(mut note) = self.held.remove(&key) {
                    note.end = Some(beat);
                    self.finish(note, recorded);
                }
                if velocity > 0 {
                    let note = PlayedNote {
                        start: beat,
                        end: None,
                        pitch,
                        velocity,
                    };
                    self.held.insert(key, note);
                }
            }
            CaptureEvent::BarCue { bar, beats_per_bar } => {
                let started = Instant::now();
                if self.controls.answer.load(Ordering::Relaxed) {
                    self.answer(bar, beats_per_bar, started);
                }
                let bar_start = bar as f64 * beats_per_bar;
                // Keep what may still overlap the next bar.
                self.finished
                    .retain(|n| n.end.unwrap_or(f64::INFINITY) > bar_start + beats_per_bar);
            }
            CaptureEvent::Reset => {
                self.held.clear();
                self.finished.clear();
                if let Some(p) = self.predictor.as_mut() {
                    p.reset();
                }
            }
        }
    }

    fn finish(&mut self, note: PlayedNote, recorded: &mut Vec<(f64, f64, u8, u8)>) {
        let end = note.end.unwrap_or(note.start);
        if self.controls.record.load(Ordering::Relaxed) {
            recorded.push((note.start, end, note.pitch, note.velocity));
        }
        self.finished.push(note);
    }

    /// The bar `bar` as played, quantized to 16ths: notes that start in it (a 32nd early counts
    /// as on the downbeat), held notes cut at the bar's end, on one track of role `role`.
    pub fn played_bar(&self, bar: i64, beats_per_bar: f64, role: TrackRole) -> Clip {
        let steps_per_bar = (beats_per_bar * 4.0).round().max(1.0) as u32;
        let mut clip = Clip::new(1);
        clip.time_signature = TimeSignature::new(steps_per_bar.div_ceil(4).max(1) as u8, 4);
        if !steps_per_bar.is_multiple_of(4) {
            clip.time_signature = TimeSignature::new(steps_per_bar.min(255) as u8, 16);
        }
        // Only the musician's track: an empty track of another role would tell the model that
        // part was silent, where it should hear its own answer.
        clip.tracks.clear();
        let track = clip.add_track(Track::new("played", role, 0));
        let bar_start = bar as f64 * beats_per_bar;
        for note in self.finished.iter().chain(self.held.values()) {
            let step = ((note.start - bar_start) * 4.0).round();
            if step < 0.0 || step >= steps_per_bar as f64 {
                continue;
            }
            let end = note.end.unwrap_or(bar_start + beats_per_bar);
            let length = ((end - note.start) * 4.0).round().max(1.0) as u32;
            let start = step as u32;
            clip.notes.push(Note::new(
                start,
                note.pitch,
                length.min(steps_per_bar - start),
                note.velocity.max(1),
                track,
            ));
        }
        clip.sort_notes();
        clip
    }

    fn answer(&mut self, bar: i64, beats_per_bar: f64, started: Instant) {
        if self.predictor.is_none() {
            if self.factory_failed {
                return;
            }
            match (self.factory)() {
                Ok(p) => self.predictor = Some(p),
                Err(e) => {
                    self.factory_failed = true;
                    self.stats
                        .set_error(Some(format!("band player unavailable: {e}")));
                    return;
                }
            }
        }
        let plays = self.controls.plays.load(Ordering::Relaxed);
        if plays == 0 {
            return;
        }
        let Some(predictor) = self.predictor.as_mut() else {
            return;
        };
        if self.applied_plays != Some(plays) {
            if let Err(e) = predictor.set_roles(&roles_of(plays)) {
                self.stats.set_error(Some(format!("band player: {e}")));
                return;
            }
            self.applied_plays = Some(plays);
        }
        let played = self.played_bar(bar, beats_per_bar, BandControls::musician_role(plays));
        let Some(predictor) = self.predictor.as_mut() else {
            return;
        };
        let answer = match predictor.next_bar(&played) {
            Ok(answer) => answer,
            Err(e) => {
                self.stats.set_error(Some(format!("band player: {e}")));
                return;
            }
        };
        let start = (bar + 1) as f64 * beats_per_bar;
        let mut out = AnsweredBar {
            bar: bar + 1,
            start,
            end: start + beats_per_bar,
            notes: [BandNote::default(); MAX_BAR_NOTES],
            len: 0,
        };
        let channel = self.controls.channel.load(Ordering::Relaxed).min(15) as u8;
        let steps_per_bar = (beats_per_bar * 4.0).round() as u32;
        for note in answer.notes.iter().filter(|n| n.start < steps_per_bar) {
            if out.len == MAX_BAR_NOTES {
                break;
            }
            let end = note.end().min(steps_per_bar);
            out.notes[out.len] = BandNote {
                start: start + note.start as f64 / 4.0,
                end: start + end as f64 / 4.0,
                pitch: note.pitch.min(127),
                velocity: note.velocity.clamp(1, 127),
                channel,
            };
            out.len += 1;
        }
        self.stats
            .last_latency_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.stats.set_error(None);
        // The ring holds a few bars; if the audio thread is not taking them (deactivated), the
        // answer is stale anyway.
        let _ = self.to_audio.push(out);
    }
}

/// Adds recorded notes `(start beat, end beat, pitch, velocity)` to `clip`: each lands on the
/// nearest 16th of its position modulo the clip's length (the clip loops from host beat 0, as it
/// plays), at least one step long and cut at the clip's end, on the "Recorded" track (made when
/// missing). A note already in the clip at the same step and pitch on that track is not doubled.
/// An empty clip becomes four bars long first. Returns how many notes were added.
pub fn record_into(clip: &mut Clip, notes: &[(f64, f64, u8, u8)]) -> usize {
    if clip.steps() == 0 {
        clip.bars = 4;
    }
    let steps = clip.steps();
    let track = match clip.tracks.iter().position(|t| t.name == RECORDED_TRACK) {
        Some(i) => i as u16,
        None => clip.add_track(Track::new(RECORDED_TRACK, TrackRole::Melody, 0)),
    };
    let mut added = 0;
    for &(start, end, pitch, velocity) in notes {
        if !(start.is_finite() && end.is_finite()) {
            continue;
        }
        let step = ((start * 4.0).round() as i64).rem_euclid(steps as i64) as u32;
        let length = (((end - start) * 4.0).round().max(1.0) as u32).min(steps - step);
        let exists = clip
            .notes
            .iter()
            .any(|n| n.track == track && n.start == step && n.pitch == pitch);
        if !exists {
            clip.notes.push(Note::new(
                step,
                pitch.min(127),
                length,
                velocity.clamp(1, 127),
                track,
            ));
            added += 1;
        }
    }
    clip.sort_notes();
    added
}

/// Name of the track recorded notes go to.
pub const RECORDED_TRACK: &str = "Recorded";

/// The band thread of one instance. Stops when dropped.
pub struct BandThread {
    stop: Arc<AtomicBool>,
    thread: OwnedThread,
}

impl BandThread {
    /// Spawn the thread reading `events`; recorded notes go to `record`, called with
    /// `(start beat, end beat, pitch, velocity)` batches.
    pub fn spawn(
        mut events: Consumer<CaptureEvent>,
        mut session: BandSession,
        mut record: impl FnMut(&[(f64, f64, u8, u8)]) + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = OwnedThread::spawn("bandmate-band", move || {
            let mut recorded = Vec::new();
            while !stop_flag.load(Ordering::Relaxed) {
                while let Ok(event) = events.pop() {
                    session.handle_guarded(event, &mut recorded);
                }
                if !recorded.is_empty() {
                    // A panic while recording loses these notes, not the thread.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        record(&recorded)
                    }));
                    if let Err(panic) = outcome {
                        session.stats.set_error(Some(format!(
                            "recording: {} notes lost ({})",
                            recorded.len(),
                            crate::worker::panic_message(&*panic)
                        )));
                    }
                    recorded.clear();
                }
                let controls = &session.controls;
                let active = controls.answer.load(Ordering::Relaxed)
                    || controls.record.load(Ordering::Relaxed);
                // Woken early by the drop.
                std::thread::park_timeout(if active {
                    POLL_INTERVAL
                } else {
                    IDLE_POLL_INTERVAL
                });
            }
        })?;
        Ok(Self { stop, thread })
    }
}

impl Drop for BandThread {
    /// Tells the thread to stop and waits at most [`STOP_WAIT`] for it: a thread inside a model
    /// call (the band model's first load) is left to end on its own, so that the host's main
    /// thread never waits for it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.unpark();
        self.thread.join_within(STOP_WAIT);
    }
}

/// The ring from the band thread to the audio thread.
pub fn answer_feed() -> (Producer<AnsweredBar>, Consumer<AnsweredBar>) {
    RingBuffer::new(ANSWERS_IN_FLIGHT)
}

/// Plays answered bars on the audio thread. Fixed-size state; never allocates after `new`.
pub struct BandVoice {
    incoming: Consumer<AnsweredBar>,
    /// Bars waiting for or in playback, in bar order (at most two matter: now and next).
    bars: Box<[AnsweredBar; ANSWERS_IN_FLIGHT]>,
    bars_len: usize,
    /// The host beat of each sounding note's note-off.
    sounding: SoundingNotes<f64, MAX_BAND_SOUNDING>,
    events: EventBuffer<MAX_BAND_EVENTS>,
    /// Where the last block ended, while playing.
    timeline: Timeline,
    /// Every sounding note ends at the next block's first sample (after a reset).
    release_pending: bool,
    stats: Arc<BandStats>,
}

impl BandVoice {
    pub fn new(incoming: Consumer<AnsweredBar>, stats: Arc<BandStats>) -> Self {
        let empty = AnsweredBar {
            bar: 0,
            start: 0.0,
            end: 0.0,
            notes: [BandNote::default(); MAX_BAR_NOTES],
            len: 0,
        };
        Self {
            incoming,
            bars: Box::new([empty; ANSWERS_IN_FLIGHT]),
            bars_len: 0,
            sounding: SoundingNotes::new(),
            events: EventBuffer::default(),
            timeline: Timeline::default(),
            release_pending: false,
            stats,
        }
    }

    /// The host's `reset` or a deactivation: sounding notes get their note-offs at the next
    /// block's first sample (neither can send events), and playback starts over.
    pub fn reset(&mut self) {
        self.release_pending = true;
        self.timeline.forget();
    }

    /// Keys sounding now.
    pub fn sounding_count(&self) -> usize {
        self.sounding.len()
    }

    /// One block: `clock` is `None` while stopped. Events come back sorted by timing.
    pub fn process_block(&mut self, clock: Option<&crate::capture::BlockClock>) -> &[NoteMessage] {
        self.events.clear();
        if std::mem::take(&mut self.release_pending) {
            self.release_all(0);
        }
        let Some(clock) = clock.filter(|c| c.samples > 0 && c.beats_per_sample > 0.0) else {
            self.release_all(0);
            self.bars_len = 0;
            self.timeline.forget();
            while self.incoming.pop().is_ok() {}
            return self.events.as_slice();
        };
        // Carries on if it starts within a sample of where the last block said.
        let slack = clock.beats_per_sample + 1e-9;
        let BlockStart { from, jumped } =
            self.timeline
                .start(clock.beat, clock.beats_per_sample, slack);
        if jumped {
            // What was planned belongs to another place in the song.
            self.release_all(0);
            self.bars_len = 0;
        }
        let to = clock.last_beat();
        while let Ok(bar) = self.incoming.pop() {
            if bar.start <= from {
                self.stats.missed.fetch_add(1, Ordering::Relaxed);
            } else if self.bars_len < ANSWERS_IN_FLIGHT {
                self.bars[self.bars_len] = bar;
                self.bars_len += 1;
                self.stats.answered.fetch_add(1, Ordering::Relaxed);
            }
        }
        let sample_of = |beat: f64| {
            sample_at(
                beat,
                clock.beat,
                clock.beats_per_sample,
                0,
                clock.samples - 1,
            )
        };
        for b in 0..self.bars_len {
            let bar = self.bars[b];
            for note in bar.notes() {
                if note.start > from && note.start <= to {
                    self.start_note(note, sample_of(note.start));
                }
            }
        }
        self.sounding.end_due(&mut self.events, |&mut off| {
            (off <= to).then(|| sample_of(off))
        });
        // Bars that are over are done.
        let mut kept = 0;
        for b in 0..self.bars_len {
            if self.bars[b].end > to {
                self.bars[kept] = self.bars[b];
                kept += 1;
            }
        }
        self.bars_len = kept;
        self.timeline.finish(to, clock.beats_per_sample, 0.0);
        self.events.sorted()
    }

    /// A key that sounds ends first; with every slot taken the note is not played.
    fn start_note(&mut self, note: &BandNote, timing: u32) {
        let key = key_of(note.channel, note.pitch);
        self.sounding
            .start(key, note.velocity, timing, note.end, &mut self.events);
    }

    fn release_all(&mut self, timing: u32) {
        self.sounding.release_all(timing, &mut self.events);
    }
}

#[cfg(test)]
mod tests;
