//! Bandmate as a CLAP and VST3 plugin and a standalone application (nice-plug).
//!
//! Threads: the GUI edits the session through the [`Controller`]; the instance's [`Worker`]
//! runs the models; the audio thread plays the clip with the [`Player`], which receives new clips
//! through the lock-free [`clip_feed`].

pub mod audition;
pub mod band;
pub mod capture;
pub mod clip_feed;
pub mod controller;
pub mod drag_handle;
#[cfg(target_os = "linux")]
pub mod drag_out;
#[cfg(any(windows, target_os = "macos"))]
pub mod drag_out_native;
pub mod editor;
pub mod models;
pub mod outbox;
pub mod params;
pub mod player;
pub mod state;
pub mod voice;
pub mod worker;

pub use bandmate::music::Clip;
pub use bandmate_gui::Edit;
pub use controller::Controller;
pub use params::{BandmateParams, KeyScale};
pub use player::{HostTransport, PlayOptions, Player, PlayerClip};
pub use state::Session;
pub use voice::NoteMessage;
pub use worker::{Job, JobKind, JobRequest, JobSettings, Worker, WorkerReport};

use audition::{AuditionVoice, audition_feed};
use band::{BandControls, BandSession, BandStats, BandThread, BandVoice, answer_feed};
use capture::{BlockClock, Capture, capture_feed};
use clip_feed::{ClipReceiver, clip_feed};
use nice_plug::midi::Key;
use nice_plug::prelude::*;
use outbox::{Outbox, note_event};
use player::MAX_EVENTS_PER_BLOCK;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, PoisonError};

pub struct Bandmate {
    params: Arc<BandmateParams>,
    controller: Arc<Controller>,
    player: Player,
    clips: ClipReceiver,
    /// MIDI input capture and the band player; created on the first activation.
    band: Option<BandRig>,
    band_stats: Arc<BandStats>,
    band_controls: Arc<BandControls>,
    /// Notes auditioned from the editor's keyboard.
    audition: AuditionVoice,
    /// The player's, the band's and the audition's events of one block, merged
    /// (preallocated; `scratch` holds the first merge).
    merged: Box<[NoteMessage; MERGED_EVENTS]>,
    scratch: Box<[NoteMessage; MERGED_EVENTS]>,
    /// Note-offs the host's queue refused, sent again next block.
    outbox: Outbox,
}

const MERGED_EVENTS: usize =
    MAX_EVENTS_PER_BLOCK + band::MAX_BAND_EVENTS + audition::MAX_AUDITION_EVENTS;

/// The audio-thread ends of capture and band playback, and the thread between them.
struct BandRig {
    capture: Capture,
    voice: BandVoice,
    /// Kept for its lifetime: dropping it stops the thread.
    _thread: BandThread,
}

impl Default for Bandmate {
    /// Cheap: hosts create instances to scan them. No model, no thread, a few small buffers.
    fn default() -> Self {
        let params = Arc::new(BandmateParams::default());
        state::open_from_env(&params.session);
        let (sender, clips) = clip_feed();
        let controller = Arc::new(Controller::new(params.clone(), sender));
        controller.apply_band_settings();
        // A state loaded while the plugin is active gets no `activate`: its clip goes to the
        // audio thread from here. (Weak: the controller holds the parameters.)
        let loaded = Arc::downgrade(&controller);
        params.session.on_load(move || {
            if let Some(controller) = loaded.upgrade() {
                controller.session_loaded();
            }
        });
        let (audition_sender, audition) = audition_feed();
        controller.connect_audition(audition_sender);
        Self {
            band_controls: controller.band_controls().clone(),
            controller,
            params,
            player: Player::new(),
            clips,
            band: None,
            band_stats: Arc::new(BandStats::default()),
            audition,
            merged: Box::new([NoteMessage::EMPTY; MERGED_EVENTS]),
            scratch: Box::new([NoteMessage::EMPTY; MERGED_EVENTS]),
            outbox: Outbox::default(),
        }
    }
}

impl Bandmate {
    /// The handle the editor uses.
    pub fn controller(&self) -> Arc<Controller> {
        self.controller.clone()
    }

    /// Band-player counters (answered, missed, latency, recorded notes, last error).
    pub fn band_stats(&self) -> Arc<BandStats> {
        self.band_stats.clone()
    }

    /// Start capture and the band thread (off the audio thread; once per instance).
    fn start_band(&mut self) -> std::io::Result<()> {
        if self.band.is_some() {
            return Ok(());
        }
        let (capture, events) = capture_feed();
        let (to_audio, from_band) = answer_feed();
        let session = BandSession::new(
            Box::new(models::band_predictor),
            self.band_controls.clone(),
            self.band_stats.clone(),
            to_audio,
        );
        let controller = self.controller.clone();
        let stats = self.band_stats.clone();
        let thread = BandThread::spawn(events, session, move |notes| {
            let added = controller.record(notes);
            stats
                .recorded_notes
                .fetch_add(added as u64, std::sync::atomic::Ordering::Relaxed);
        })?;
        self.band = Some(BandRig {
            capture,
            voice: BandVoice::new(from_band, self.band_stats.clone()),
            _thread: thread,
        });
        Ok(())
    }
}

/// Merges two timing-sorted event lists into `out`; returns how many were written.
fn merge_sorted(a: &[NoteMessage], b: &[NoteMessage], out: &mut [NoteMessage]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while n < out.len() && (i < a.len() || j < b.len()) {
        let take_a = j == b.len() || (i < a.len() && a[i] <= b[j]);
        out[n] = if take_a { a[i] } else { b[j] };
        if take_a {
            i += 1;
        } else {
            j += 1;
        }
        n += 1;
    }
    n
}

impl Plugin for Bandmate {
    const NAME: &'static str = "Bandmate";
    const VENDOR: &'static str = "Bandmate";
    const URL: &'static str = env!("CARGO_PKG_HOMEPAGE");
    const EMAIL: &'static str = "";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    /// A silent stereo output by default (hosts that treat note generators as instruments want
    /// one), or no audio at all.
    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: None,
            main_output_channels: NonZeroU32::new(2),
            aux_input_ports: &[],
            aux_output_ports: &[],
            names: PortNames::const_default(),
        },
        AudioIOLayout {
            main_input_channels: None,
            main_output_channels: None,
            aux_input_ports: &[],
            aux_output_ports: &[],
            names: PortNames::const_default(),
        },
    ];

    const MIDI_INPUT: MidiConfig = MidiConfig::Basic;
    const MIDI_OUTPUT: MidiConfig = MidiConfig::Basic;

    type Editor = nice_plug_egui::EguiEditor<editor::EditorApp>;
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create(self.controller.clone(), self.band_stats.clone())
    }

    fn filter_state(state: &mut PluginState) {
        state::filter_state(state);
    }

    fn activate(
        &mut self,
        _audio_io_layout: &AudioIOLayout,
        _buffer_config: &BufferConfig,
        _context: &mut impl ActivateContext<Self>,
    ) -> bool {
        // Also runs after a state load: the session is the newest clip, so anything still on its
        // way to the audio thread is stale.
        self.controller.discard_pending();
        self.controller.apply_band_settings();
        self.clips.receive(&mut self.player);
        if let Err(e) = self.start_band() {
            nice_warn!("band player and recording are off: cannot start their thread: {e}");
        }
        let session = self
            .params
            .session
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(warning) = &session.load_warning {
            nice_warn!("{warning}");
        }
        self.player
            .swap_clip(Box::new(PlayerClip::from_clip(&session.playback_clip())));
        true
    }

    /// Sounding notes get their note-offs at the next block's first sample.
    fn reset(&mut self) {
        self.player.reset();
        if let Some(rig) = self.band.as_mut() {
            rig.voice.reset();
        }
    }

    /// As `reset`: the note-offs go out at the first block after the next activation (a host
    /// that keeps its voices across deactivation hears them end).
    fn deactivate(&mut self) {
        self.reset();
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        for channel in buffer.as_slice() {
            channel.fill(0.0);
        }
        self.clips.receive(&mut self.player);
        let t = context.transport();
        let transport = HostTransport {
            sample_rate: t.sample_rate as f64,
            playing: t.playing,
            tempo: t.tempo,
            pos_beats: t.pos_beats(),
            loop_beats: t.loop_range_beats(),
        };
        let options = PlayOptions {
            channel: self.params.output_channel(),
            velocity_scale: self.params.velocity_scale.value(),
        };
        let samples = buffer.samples() as u32;
        let band_mode = self.params.band.value();
        let record = self.params.record.value();
        self.band_controls.answer.store(band_mode, Relaxed);
        self.band_controls.record.store(record, Relaxed);
        let channel = self.params.output_channel().unwrap_or(1) as u64;
        self.band_controls.channel.store(channel, Relaxed);
        // Capture needs the host's position; the band plays only while the host does.
        let clock = block_clock(t, transport.pos_beats, transport.sample_rate, samples);
        let capture_clock = clock.filter(|_| band_mode || record);
        let band_clock = clock.filter(|_| band_mode);

        let ours = self.player.process_block(&transport, samples, options);
        let first_len = match self.band.as_mut() {
            Some(rig) => {
                let band = rig.voice.process_block(band_clock.as_ref());
                merge_sorted(ours, band, &mut self.scratch[..])
            }
            None => merge_sorted(ours, &[], &mut self.scratch[..]),
        };
        let auditioned = self.audition.process_block(
            samples,
            transport.sample_rate,
            self.params.output_channel().unwrap_or(0),
        );
        let merged_len = merge_sorted(&self.scratch[..first_len], auditioned, &mut self.merged[..]);
        if let Some(rig) = self.band.as_mut() {
            rig.capture
                .set_lookahead_steps(self.band_controls.lookahead_steps.load(Relaxed));
            rig.capture.begin_block(capture_clock.as_ref());
        }

        // Note-offs the host refused last block go first.
        let outbox = &mut self.outbox;
        outbox.retry(|e| context.try_send_event(e).is_ok());
        // Incoming notes pass through (and are captured), merged with ours in timing order.
        let mut ours = self.merged[..merged_len].iter().peekable();
        while let Some(incoming) = context.next_event() {
            if let (Some(rig), Some(clock)) = (self.band.as_mut(), capture_clock.as_ref()) {
                capture_note(&mut rig.capture, clock, &incoming);
            }
            while let Some(m) = ours.next_if(|m| m.timing < incoming.timing()) {
                outbox.send(note_event(m), |e| context.try_send_event(e).is_ok());
            }
            outbox.send(incoming, |e| context.try_send_event(e).is_ok());
        }
        if let Some(rig) = self.band.as_mut() {
            rig.capture.end_block(capture_clock.as_ref());
        }
        for m in ours {
            outbox.send(note_event(m), |e| context.try_send_event(e).is_ok());
        }
        ProcessStatus::KeepAlive
    }
}

/// Where the host's block sits in beats, when the host plays and says where it is (the
/// capture and the band player need it); 4/4 at 120 BPM where the host does not say.
fn block_clock(
    t: &Transport,
    pos_beats: Option<f64>,
    sample_rate: f64,
    samples: u32,
) -> Option<BlockClock> {
    let beat = pos_beats.filter(|b| t.playing && b.is_finite() && samples > 0)?;
    let tempo = t
        .tempo
        .filter(|t| t.is_finite() && *t > 0.0)
        .unwrap_or(120.0);
    let beats_per_bar = match (t.time_sig_numerator, t.time_sig_denominator) {
        (Some(n), Some(d)) if n > 0 && d > 0 => n as f64 * 4.0 / d as f64,
        _ => 4.0,
    };
    Some(BlockClock {
        beat,
        beats_per_sample: tempo / 60.0 / sample_rate,
        samples,
        beats_per_bar,
    })
}

/// Hand an incoming note-on or note-off to the band player's capture.
fn capture_note(capture: &mut Capture, clock: &BlockClock, incoming: &NoteEvent<()>) {
    match *incoming {
        NoteEvent::NoteOn {
            timing,
            channel,
            key: Key::Number(pitch),
            velocity,
            ..
        } => {
            let velocity = (velocity * 127.0).round().clamp(1.0, 127.0) as u8;
            capture.note(
                clock,
                timing,
                pitch,
                velocity,
                channel.number().unwrap_or(0),
            );
        }
        NoteEvent::NoteOff {
            timing,
            channel,
            key: Key::Number(pitch),
            ..
        } => capture.note(clock, timing, pitch, 0, channel.number().unwrap_or(0)),
        _ => {}
    }
}

impl ClapPlugin for Bandmate {
    const CLAP_ID: &'static str = "org.bandmate.bandmate";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("A generative MIDI co-writer: plays, fills, varies and continues clips");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[ClapFeature::NoteEffect, ClapFeature::Utility];
}

impl Vst3Plugin for Bandmate {
    const VST3_CLASS_ID: [u8; 16] = *b"BandmateMidiGen1";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Instrument, Vst3SubCategory::Generator];
}

nice_export_clap!(Bandmate);
nice_export_vst3!(Bandmate);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn dropping_the_plugin_returns_at_once_while_a_model_loads_for_a_job() {
        let mut plugin = Bandmate::default();
        // The worker's models take until the test lets them load.
        let (open, gate) = crossbeam_channel::bounded::<()>(0);
        let (loading, load_started) = crossbeam_channel::bounded(1);
        let (sender, clips) = clip_feed();
        plugin.clips = clips;
        plugin.controller = Arc::new(
            Controller::new(plugin.params.clone(), sender).with_generators(move || {
                let _ = loading.send(());
                let _ = gate.recv();
                (worker::testing::gated().0)()
            }),
        );
        plugin.start_band().unwrap();
        plugin.controller.set_clip(bandmate::music::example_clip());
        plugin
            .controller
            .submit(Job::Harmonize {
                clip: bandmate::music::example_clip(),
            })
            .unwrap();
        load_started
            .recv_timeout(Duration::from_secs(10))
            .expect("the model load started");
        // Before, the drop joined the worker (and the band thread) on the host's main thread:
        // it returned when the load did.
        let started = Instant::now();
        drop(plugin);
        let took = started.elapsed();
        println!("the plugin's drop took {took:?}");
        assert!(took < Duration::from_millis(200), "the drop took {took:?}");
        open.send(()).expect("the load was still running");
    }
}
