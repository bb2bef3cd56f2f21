//! A minimal CLAP host around Bandmate's library (clack-host), shared by the host-level tests
//! (`tests/tests/plugin_host.rs`), the process benchmark (`plugin/benches/process.rs`) and the
//! smoke host that also runs under Wine (`plugin/examples/clap_smoke.rs`), which include this
//! file with `#[path]`. Each uses a part of it.
#![allow(dead_code)]

use bandmate::music::{Clip, Note, Track, TrackRole};
use clack_extensions::state::PluginState as StateExtension;
use clack_host::events::event_types::{NoteOffEvent, NoteOnEvent, TransportEvent, TransportFlags};
use clack_host::events::io::OutputEventBuffer;
use clack_host::events::{EventFlags, EventHeader};
use clack_host::prelude::*;
use clack_host::process::StartedPluginAudioProcessor;
use clack_host::utils::{BeatTime, SecondsTime};
use std::ffi::CString;
use std::path::Path;
use std::time::{Duration, Instant};

pub const PLUGIN_ID: &[u8] = b"org.bandmate.bandmate";

pub struct Host;
pub struct Shared;

impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {}
}

impl HostHandlers for Host {
    type Shared<'a> = Shared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();
}

/// Load the CLAP library at `path`.
pub fn load_entry(path: &Path) -> PluginEntry {
    // SAFETY: the library is Bandmate's own CLAP build.
    unsafe { PluginEntry::load(path) }
        .unwrap_or_else(|e| panic!("loading {}: {e:?}", path.display()))
}

/// A new Bandmate instance, found through the factory's descriptors, as host `host_name`.
pub fn new_instance(entry: &PluginEntry, host_name: &str) -> PluginInstance<Host> {
    let host = HostInfo::new(host_name, "Bandmate", "https://example.org", "0.1.0").unwrap();
    let factory = entry.get_plugin_factory().expect("a plugin factory");
    let descriptor = factory
        .plugin_descriptors()
        .find(|d| d.id().is_some_and(|id| id.to_bytes() == PLUGIN_ID))
        .expect("Bandmate's descriptor");
    assert_eq!(descriptor.name().unwrap().to_bytes(), b"Bandmate");
    let id = CString::from(descriptor.id().unwrap());
    PluginInstance::<Host>::new(|_| Shared, |_| (), entry, &id, &host).expect("an instance")
}

/// nice-plug's CLAP state: the length (u64, little-endian) and the JSON of a `PluginState`
/// whose `session` field holds a Bandmate session with `clip`.
pub fn state_with_clip(clip: &Clip) -> Vec<u8> {
    with_length(state_json_with_clip(clip))
}

/// A state whose `session` field is `field` verbatim (for corrupt or foreign sessions).
pub fn state_with_session_field(field: &str) -> Vec<u8> {
    with_length(state_json_with_session_field(field))
}

fn with_length(json: Vec<u8>) -> Vec<u8> {
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend(json);
    bytes
}

/// nice-plug's state as VST3 stores it (the JSON alone, no length): a Bandmate session with
/// `clip`.
pub fn state_json_with_clip(clip: &Clip) -> Vec<u8> {
    let session = serde_json::json!({ "version": 1, "clip": clip, "mask": null });
    state_json_with_session_field(&session.to_string())
}

fn state_json_with_session_field(field: &str) -> Vec<u8> {
    serde_json::json!({ "version": "0.1.0", "params": {}, "fields": { "session": field } })
        .to_string()
        .into_bytes()
}

pub fn load_state(instance: &mut PluginInstance<Host>, bytes: &[u8]) -> Result<(), String> {
    let handle = instance.plugin_handle();
    let ext: StateExtension = handle.get_extension().expect("the state extension");
    ext.load(&handle, &mut &bytes[..])
        .map_err(|e| format!("{e}"))
}

pub fn save_state(instance: &mut PluginInstance<Host>) -> Vec<u8> {
    let handle = instance.plugin_handle();
    let ext: StateExtension = handle.get_extension().expect("the state extension");
    let mut out = Vec::new();
    ext.save(&handle, &mut out).expect("saving state");
    out
}

/// 100,000 notes over 16 bars: 128 pitches × 4 channels on 196 steps, 512 notes on each step,
/// overlapping (the host torture test's and the benchmark's dense clip).
pub fn dense_clip_100k() -> Clip {
    let mut clip = Clip::new(16);
    for channel in 1..4 {
        clip.add_track(Track::new(
            format!("T{channel}"),
            TrackRole::Accompaniment,
            channel,
        ));
    }
    for i in 0..100_000u32 {
        let step = (i / 512) % 196;
        clip.notes.push(Note::new(
            step,
            (i % 128) as u8,
            1 + i % 7,
            100,
            (i / 128 % 4) as u16,
        ));
    }
    clip
}

/// What a host reports at the start of a block (4/4, bar 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct Transport {
    pub playing: bool,
    pub beats: f64,
    pub seconds: f64,
    /// BPM at the block's first sample.
    pub tempo: f64,
    /// BPM change per sample (CLAP's in-block ramp).
    pub tempo_inc: f64,
    /// The loop range in whole beats, when the loop is on.
    pub loop_beats: Option<(i64, i64)>,
}

impl Transport {
    pub fn event(&self) -> TransportEvent {
        let mut flags = TransportFlags::HAS_TEMPO
            | TransportFlags::HAS_BEATS_TIMELINE
            | TransportFlags::HAS_SECONDS_TIMELINE;
        if self.playing {
            flags |= TransportFlags::IS_PLAYING;
        }
        if self.loop_beats.is_some() {
            flags |= TransportFlags::IS_LOOP_ACTIVE;
        }
        let (loop_start, loop_end) = self.loop_beats.unwrap_or((0, 0));
        TransportEvent {
            header: EventHeader::new_core(0, EventFlags::empty()),
            flags,
            song_pos_beats: BeatTime::from_float(self.beats),
            song_pos_seconds: SecondsTime::from_float(self.seconds),
            tempo: self.tempo,
            tempo_inc: self.tempo_inc,
            loop_start_beats: BeatTime::from_int(loop_start),
            loop_end_beats: BeatTime::from_int(loop_end),
            loop_start_seconds: SecondsTime::from_int(0),
            loop_end_seconds: SecondsTime::from_int(0),
            bar_start: BeatTime::from_int(0),
            bar_number: 0,
            time_signature_numerator: 4,
            time_signature_denominator: 4,
        }
    }
}

/// The transport of a host playing from beat 0 at a steady `tempo`, at `sample` (4/4, no loop).
pub fn steady_transport(sample: u64, rate: f64, tempo: f64) -> TransportEvent {
    let seconds = sample as f64 / rate;
    Transport {
        playing: true,
        beats: seconds * tempo / 60.0,
        seconds,
        tempo,
        ..Transport::default()
    }
    .event()
}

/// An activated instance that processes, with one stereo output port: runs blocks as a host
/// does.
pub struct Processing {
    pub processor: StartedPluginAudioProcessor<Host>,
    outputs: Vec<Vec<f32>>,
    ports: AudioPorts,
    input_events: EventBuffer,
}

impl Processing {
    /// Activate `instance` at `rate` for blocks of `min_block` to `max_block` samples and start
    /// processing.
    pub fn start(
        instance: &mut PluginInstance<Host>,
        rate: f64,
        min_block: u32,
        max_block: u32,
    ) -> Self {
        let config = PluginAudioConfiguration {
            sample_rate: rate,
            min_frames_count: min_block,
            max_frames_count: max_block,
        };
        let processor = instance.activate(|_, _| (), config).expect("activation");
        Self {
            processor: processor.start_processing().expect("start processing"),
            outputs: vec![vec![0.0f32; max_block as usize]; 2],
            ports: AudioPorts::with_capacity(2, 1),
            input_events: EventBuffer::new(),
        }
    }

    /// One block of `n` samples at `transport`, the plugin's events pushed to `output_events`:
    /// how long the plugin's `process()` took.
    pub fn block(
        &mut self,
        n: u32,
        transport: &TransportEvent,
        output_events: &mut impl OutputEventBuffer,
    ) -> Duration {
        let input_audio = InputAudioBuffers::empty();
        let mut output_audio = self.ports.with_output_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_output_only(
                self.outputs.iter_mut().map(|b| &mut b[..n as usize]),
            ),
        }]);
        let start = Instant::now();
        self.processor
            .process(
                &input_audio,
                &mut output_audio,
                &self.input_events.as_input(),
                &mut OutputEvents::from(output_events),
                None,
                Some(transport),
            )
            .expect("process");
        start.elapsed()
    }

    /// Whether the first `n` output samples of every channel are silent.
    pub fn silent(&self, n: u32) -> bool {
        self.outputs
            .iter()
            .all(|c| c[..n as usize].iter().all(|&x| x == 0.0))
    }

    /// Stop processing and deactivate.
    pub fn stop(self, instance: &mut PluginInstance<Host>) {
        instance.deactivate(self.processor.stop_processing());
    }
}

/// A note event the plugin sent: absolute sample, on/off, channel, key, velocity (0 for offs).
pub type Played = (u64, bool, u8, u8, u8);

/// The note events of one block that starts at `block_start`, appended to `out`.
pub fn collect_notes(events: &EventBuffer, block_start: u64, out: &mut Vec<Played>) {
    for event in events.iter() {
        let at = block_start + event.header().time() as u64;
        if let Some(on) = event.as_event::<NoteOnEvent>() {
            let raw = on.as_raw();
            let velocity = (raw.velocity * 127.0).round() as u8;
            out.push((at, true, raw.channel as u8, raw.key as u8, velocity));
        } else if let Some(off) = event.as_event::<NoteOffEvent>() {
            let raw = off.as_raw();
            out.push((at, false, raw.channel as u8, raw.key as u8, 0));
        }
    }
}

/// Load the library at `path`, give a new instance `clip`, activate it at `rate` with blocks of
/// `block` samples and play `blocks` blocks at a steady `tempo` from beat 0: every note event it
/// sent, in order.
pub fn play_steady(
    path: &Path,
    clip: &Clip,
    rate: f64,
    block: u32,
    blocks: usize,
    tempo: f64,
) -> Vec<Played> {
    let entry = load_entry(path);
    let mut instance = new_instance(&entry, "bandmate-smoke");
    load_state(&mut instance, &state_with_clip(clip)).expect("loading the clip");
    let mut processing = Processing::start(&mut instance, rate, block, block);
    let mut output_events = EventBuffer::with_capacity(8192);
    let mut played = Vec::new();
    for i in 0..blocks as u64 {
        let start = i * block as u64;
        output_events.clear();
        processing.block(
            block,
            &steady_transport(start, rate, tempo),
            &mut output_events,
        );
        collect_notes(&output_events, start, &mut played);
    }
    processing.stop(&mut instance);
    played
}
