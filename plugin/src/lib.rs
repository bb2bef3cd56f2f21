//! Bandmate as a CLAP and VST3 plugin and a standalone application (nice-plug).
//!
//! Threads: the GUI edits the session through the [`Controller`]; the instance's [`Worker`]
//! runs the models; the audio thread plays the clip with the [`Player`], which receives new clips
//! through the lock-free [`clip_feed`].

pub mod clip_feed;
pub mod controller;
pub mod models;
pub mod params;
pub mod player;
pub mod state;
pub mod worker;

pub use bandmate::music::Clip;
pub use bandmate_gui::Edit;
pub use controller::Controller;
pub use params::{BandmateParams, Mode};
pub use player::{HostTransport, NoteMessage, PlayOptions, Player, PlayerClip};
pub use state::Session;
pub use worker::{Job, JobKind, JobRequest, JobSettings, Worker, WorkerReport};

use clip_feed::{ClipReceiver, clip_feed};
use nice_plug::midi::{Channel, Key, VoiceID};
use nice_plug::prelude::*;
use std::num::NonZeroU32;
use std::sync::{Arc, PoisonError};

pub struct Bandmate {
    params: Arc<BandmateParams>,
    controller: Arc<Controller>,
    player: Player,
    clips: ClipReceiver,
}

impl Default for Bandmate {
    /// Cheap: hosts create instances to scan them. No model, no thread, a few small buffers.
    fn default() -> Self {
        let params = Arc::new(BandmateParams::default());
        let (sender, clips) = clip_feed();
        Self {
            controller: Arc::new(Controller::new(params.clone(), sender)),
            params,
            player: Player::new(),
            clips,
        }
    }
}

impl Bandmate {
    /// The handle the editor uses.
    pub fn controller(&self) -> Arc<Controller> {
        self.controller.clone()
    }
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

    type Editor = ();
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
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
        self.clips.receive(&mut self.player);
        let session = self
            .params
            .session
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(warning) = &session.load_warning {
            nice_warn!("{warning}");
        }
        self.player
            .swap_clip(Box::new(PlayerClip::from_clip(&session.clip)));
        true
    }

    fn reset(&mut self) {
        self.player.reset();
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
        let ours = self.player.process_block(&transport, samples, options);

        // Incoming notes pass through, merged with ours in timing order.
        let mut ours = ours.iter().peekable();
        while let Some(incoming) = context.next_event() {
            while let Some(m) = ours.next_if(|m| m.timing < incoming.timing()) {
                let _ = context.try_send_event(note_event(m));
            }
            let _ = context.try_send_event(incoming);
        }
        for m in ours {
            let _ = context.try_send_event(note_event(m));
        }
        ProcessStatus::KeepAlive
    }
}

fn note_event(m: &NoteMessage) -> NoteEvent<()> {
    let (channel, key) = (Channel::Number(m.channel), Key::Number(m.pitch));
    if m.on {
        NoteEvent::NoteOn {
            timing: m.timing,
            voice_id: VoiceID::Wildcard,
            channel,
            key,
            velocity: m.velocity as f32 / 127.0,
        }
    } else {
        NoteEvent::NoteOff {
            timing: m.timing,
            voice_id: VoiceID::Wildcard,
            channel,
            key,
            velocity: 0.0,
        }
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
