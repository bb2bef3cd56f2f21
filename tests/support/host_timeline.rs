//! A simulated host and where a clip's notes belong on its timeline, shared by the scheduler's
//! unit tests (`plugin/src/player/tests.rs`) and the CLAP host tests
//! (`tests/tests/plugin_host.rs`), which include this file with `#[path]`.
//!
//! The host advances its position sample by sample in exact integer units (1 unit = 1/(60·rate)
//! beat, so a sample at `t` BPM is `t` units); [`reference`] computes from that exact timeline
//! where every note-on and note-off belongs. The plugin only sees what a real host reports per
//! block (f64 beats, tempo, loop).
#![allow(dead_code)]

use bandmate::music::Clip;

/// A note event: absolute sample, on/off, channel, key, velocity (0 for offs).
pub type NoteEvent = (u64, bool, u8, u8, u8);

/// What the simulated host does, in seconds; changes take effect at the first block boundary at
/// or after their time, as in hosts that report one tempo per block.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub rate: u32,
    pub start_bpm: i64,
    pub tempo_change: Option<(f64, i64)>,
    /// Loop range in whole beats.
    pub loop_beats: Option<(i64, i64)>,
    pub stop_at: Option<f64>,
    /// Start again at this time from this beat.
    pub restart: Option<(f64, i64)>,
    /// Seek while playing: at this time jump to this beat.
    pub seek: Option<(f64, i64)>,
    pub seconds: f64,
}

impl Scenario {
    /// Playing from beat 0 at `bpm` for `seconds`, with no change, loop or stop.
    pub fn steady(rate: u32, bpm: i64, seconds: f64) -> Self {
        Self {
            rate,
            start_bpm: bpm,
            tempo_change: None,
            loop_beats: None,
            stop_at: None,
            restart: None,
            seek: None,
            seconds,
        }
    }
}

/// One sample of the host's exact timeline.
#[derive(Clone, Copy, Debug)]
pub struct HostSample {
    pub playing: bool,
    /// Position in units of 1/(60·rate) beat.
    pub units: i64,
    /// Units per sample (the tempo in BPM).
    pub step: i64,
    /// The position did not follow from the previous sample (start, loop wrap, seek).
    pub discontinuous: bool,
}

/// What the host reports for one block: its first sample's state.
#[derive(Clone, Copy, Debug)]
pub struct HostBlock {
    /// The block's first sample since the start.
    pub start: u64,
    /// Samples in the block.
    pub len: u32,
    pub playing: bool,
    pub bpm: i64,
    /// Position at the block's first sample.
    pub beats: f64,
}

/// A host running a [`Scenario`] in blocks of at most `block` samples: an iterator over the
/// blocks that records the exact timeline of every sample it hands out.
pub struct SimulatedHost {
    scenario: Scenario,
    block: u32,
    total: u64,
    sample: u64,
    bpm: i64,
    units: i64,
    playing: bool,
    /// The next sample starts afresh (start, restart, seek).
    fresh: bool,
    /// The scenario's tempo change, stop, restart and seek, once done.
    done: [bool; 4],
    pub timeline: Vec<HostSample>,
}

impl SimulatedHost {
    pub fn new(scenario: &Scenario, block: u32) -> Self {
        let total = (scenario.seconds * scenario.rate as f64) as u64;
        Self {
            scenario: *scenario,
            block,
            total,
            sample: 0,
            bpm: scenario.start_bpm,
            units: 0,
            playing: true,
            fresh: true,
            done: [false; 4],
            timeline: Vec::with_capacity(total as usize),
        }
    }

    fn units_per_beat(&self) -> i64 {
        60 * self.scenario.rate as i64
    }

    /// Whether the change at `time` (seconds) with index `which` is due at the current sample;
    /// marks it done when it is.
    fn due(&mut self, time: Option<f64>, which: usize) -> bool {
        let Some(time) = time else { return false };
        let at = (time * self.scenario.rate as f64).round() as u64;
        let due = !self.done[which] && self.sample >= at;
        self.done[which] |= due;
        due
    }
}

impl Iterator for SimulatedHost {
    type Item = HostBlock;

    fn next(&mut self) -> Option<HostBlock> {
        if self.sample >= self.total {
            return None;
        }
        let s = self.scenario;
        let units_per_beat = self.units_per_beat();
        if self.due(s.tempo_change.map(|c| c.0), 0) {
            self.bpm = s.tempo_change.unwrap().1;
        }
        if self.due(s.stop_at, 1) {
            self.playing = false;
        }
        if self.due(s.restart.map(|r| r.0), 2) {
            self.playing = true;
            self.units = s.restart.unwrap().1 * units_per_beat;
            self.fresh = true;
        }
        if self.due(s.seek.map(|r| r.0), 3) {
            self.units = s.seek.unwrap().1 * units_per_beat;
            self.fresh = true;
        }
        let len = (self.block as u64).min(self.total - self.sample) as u32;
        let block = HostBlock {
            start: self.sample,
            len,
            playing: self.playing,
            bpm: self.bpm,
            beats: self.units as f64 / units_per_beat as f64,
        };
        for _ in 0..len {
            let mut discontinuous = std::mem::take(&mut self.fresh);
            if self.playing
                && let Some((ls, le)) = s.loop_beats
                && self.units >= le * units_per_beat
            {
                self.units = ls * units_per_beat + (self.units - le * units_per_beat);
                discontinuous = true;
            }
            self.timeline.push(HostSample {
                playing: self.playing,
                units: self.units,
                step: self.bpm,
                discontinuous,
            });
            if self.playing {
                self.units += self.bpm;
            }
        }
        self.sample += len as u64;
        Some(block)
    }
}

/// Where every event of `clip` (on its tracks' channels) belongs on `timeline` at `rate`, sorted
/// as [`sorted`] does: a note sounds from the first sample whose exact position reaches its
/// start; everything sounding stops at a stop, a loop wrap or a jump; the same key again while it
/// sounds ends the old note on the same sample.
pub fn reference(clip: &Clip, rate: u32, timeline: &[HostSample]) -> Vec<NoteEvent> {
    let units_per_step = 15 * rate as i64; // 60·rate / 4 steps per beat
    let clip_units = clip.steps() as i64 * units_per_step;
    let mut notes: Vec<_> = clip
        .notes
        .iter()
        .filter(|n| n.start < clip.steps())
        .collect();
    notes.sort_by_key(|n| (n.start, n.pitch));
    let mut sounding: Vec<(u8, u8, i64)> = Vec::new(); // channel, pitch, off units
    let mut out = Vec::new();
    let mut was_playing = false;
    for (s, h) in timeline.iter().enumerate() {
        let s = s as u64;
        if !h.playing || h.discontinuous || !was_playing {
            out.extend(sounding.drain(..).map(|(c, p, _)| (s, false, c, p, 0)));
        }
        if !h.playing {
            was_playing = false;
            continue;
        }
        let prev = if h.discontinuous || !was_playing {
            h.units - h.step
        } else {
            timeline[s as usize - 1].units
        };
        was_playing = true;
        for lap in prev.div_euclid(clip_units)..=h.units.div_euclid(clip_units) {
            for n in &notes {
                let start = lap * clip_units + n.start as i64 * units_per_step;
                if start <= prev || start > h.units {
                    continue;
                }
                let ch = clip.tracks[n.track as usize].channel;
                if let Some(i) = sounding
                    .iter()
                    .position(|&(c, p, _)| (c, p) == (ch, n.pitch))
                {
                    sounding.remove(i);
                    out.push((s, false, ch, n.pitch, 0));
                }
                let end = n.end().min(clip.steps()) as i64 * units_per_step;
                sounding.push((ch, n.pitch, lap * clip_units + end));
                out.push((s, true, ch, n.pitch, n.velocity));
            }
        }
        let (due, rest): (Vec<_>, Vec<_>) = sounding.drain(..).partition(|&(_, _, o)| o <= h.units);
        sounding = rest;
        out.extend(due.into_iter().map(|(c, p, _)| (s, false, c, p, 0)));
    }
    sorted(out)
}

/// `events` by sample, then offs before ons, channel and key, so that two lists compare directly.
pub fn sorted(mut events: Vec<NoteEvent>) -> Vec<NoteEvent> {
    events.sort_by_key(|&(s, on, c, p, _)| (s, on, c, p));
    events
}

/// Where `got` first differs from `expected`, for a failure message (None when they are equal).
pub fn first_difference(got: &[NoteEvent], expected: &[NoteEvent]) -> Option<String> {
    if got == expected {
        return None;
    }
    let first = got.iter().zip(expected).position(|(a, b)| a != b);
    Some(format!(
        "{} events, expected {}; first difference at {first:?}: got {:?}, expected {:?}",
        got.len(),
        expected.len(),
        first.map(|i| got[i]),
        first.map(|i| expected[i])
    ))
}
