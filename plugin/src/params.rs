//! The parameters the host sees and automates, and the persisted session (clip, mask).
//! Range constructors are shared with the GUI.

use crate::state::SessionStore;
use bandmate::music::{Key, Scale, parse_pitch, pitch_name};
use nice_plug::prelude::*;
use std::ops::RangeInclusive;
use std::sync::{Arc, RwLock};

/// The scale of the key lock (the engine's [`Scale`], as a host parameter).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScale {
    #[id = "major"]
    Major,
    #[id = "minor"]
    Minor,
    #[id = "harmonic-minor"]
    #[name = "Harmonic minor"]
    HarmonicMinor,
    #[id = "dorian"]
    Dorian,
    #[id = "mixolydian"]
    Mixolydian,
    #[id = "pentatonic-major"]
    #[name = "Pentatonic major"]
    PentatonicMajor,
    #[id = "pentatonic-minor"]
    #[name = "Pentatonic minor"]
    PentatonicMinor,
    #[id = "blues"]
    Blues,
}

impl KeyScale {
    pub const ALL: [KeyScale; 8] = [
        KeyScale::Major,
        KeyScale::Minor,
        KeyScale::HarmonicMinor,
        KeyScale::Dorian,
        KeyScale::Mixolydian,
        KeyScale::PentatonicMajor,
        KeyScale::PentatonicMinor,
        KeyScale::Blues,
    ];

    pub fn scale(self) -> Scale {
        match self {
            KeyScale::Major => Scale::Major,
            KeyScale::Minor => Scale::Minor,
            KeyScale::HarmonicMinor => Scale::HarmonicMinor,
            KeyScale::Dorian => Scale::Dorian,
            KeyScale::Mixolydian => Scale::Mixolydian,
            KeyScale::PentatonicMajor => Scale::PentatonicMajor,
            KeyScale::PentatonicMinor => Scale::PentatonicMinor,
            KeyScale::Blues => Scale::Blues,
        }
    }

    /// The parameter value for an engine scale (chromatic, which locks nothing, is major).
    pub fn from_scale(scale: Scale) -> Self {
        Self::ALL
            .into_iter()
            .find(|k| k.scale() == scale)
            .unwrap_or(KeyScale::Major)
    }
}

/// Names of the twelve tonics, C first.
pub const TONICS: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

#[derive(Params)]
pub struct BandmateParams {
    /// Clip, mask and their version; see [`crate::state`].
    #[persist = "session"]
    pub session: SessionStore,

    /// The model the editor's actions run, by name; empty: the first model that can run
    /// the action.
    #[persist = "model"]
    pub model: Arc<RwLock<String>>,

    /// Answer each bar the host plays with the next one (the band player).
    #[id = "band"]
    pub band: BoolParam,
    /// Network evaluations per sample: fewer is faster, more is cleaner.
    #[id = "steps"]
    pub steps: IntParam,
    /// The random seed of the next action: the same seed, clip and settings give the same
    /// result.
    #[id = "seed"]
    pub seed: IntParam,
    /// Lowest pitch a model may write.
    #[id = "pitch_low"]
    pub pitch_low: IntParam,
    /// Highest pitch a model may write.
    #[id = "pitch_high"]
    pub pitch_high: IntParam,
    /// Tonic of the key lock's key (0 = C … 11 = B).
    #[id = "key_tonic"]
    pub key_tonic: IntParam,
    /// Scale of the key lock's key.
    #[id = "key_scale"]
    pub key_scale: EnumParam<KeyScale>,
    /// How many notes the models write, from sparse (0) to dense (1).
    #[id = "density"]
    pub density: FloatParam,
    /// How far Vary moves away from the clip, 0 (not at all) to 1 (a new clip).
    #[id = "strength"]
    pub strength: FloatParam,
    /// Sampling temperature of the models.
    #[id = "temperature"]
    pub temperature: FloatParam,
    /// How closely Fill and Continue follow the bars before the hole: 0 writes fresh material,
    /// 0.5 is the model's calibration, 1 stays close to a copy.
    #[id = "repeat"]
    pub repeat: FloatParam,
    /// Record incoming notes into the clip while the host plays (quantized to 16ths, on a
    /// "Recorded" track).
    #[id = "record"]
    pub record: BoolParam,
    /// Keep generated notes in the key set by the tonic and scale parameters.
    #[id = "key_lock"]
    pub key_lock: BoolParam,
    /// 0 plays each track on its own channel; 1–16 sends everything on that channel.
    #[id = "out_channel"]
    pub output_channel: IntParam,
    /// Multiplies every played velocity.
    #[id = "velocity"]
    pub velocity_scale: FloatParam,
}

pub fn density_range() -> FloatRange {
    FloatRange::Linear { min: 0.0, max: 1.0 }
}

pub fn strength_range() -> FloatRange {
    FloatRange::Linear { min: 0.0, max: 1.0 }
}

pub fn temperature_range() -> FloatRange {
    FloatRange::Skewed {
        min: 0.1,
        max: 2.0,
        factor: FloatRange::skew_factor(-1.0),
    }
}

pub fn repeat_range() -> FloatRange {
    FloatRange::Linear { min: 0.0, max: 1.0 }
}

pub fn steps_range() -> IntRange {
    IntRange::Linear { min: 5, max: 100 }
}

pub fn seed_range() -> IntRange {
    IntRange::Linear { min: 0, max: 9999 }
}

pub fn pitch_range() -> IntRange {
    IntRange::Linear { min: 0, max: 127 }
}

fn pitch_to_string() -> Arc<dyn Fn(i32) -> String + Send + Sync> {
    Arc::new(|p| pitch_name(p.clamp(0, 127) as u8))
}

/// Parses a parameter's text into its value.
type StringToValue = Arc<dyn Fn(&str) -> Option<i32> + Send + Sync>;

fn string_to_pitch() -> StringToValue {
    Arc::new(|s| {
        let s = s.trim();
        s.parse::<i32>()
            .ok()
            .or_else(|| parse_pitch(s).ok().map(i32::from))
            .filter(|p| (0..=127).contains(p))
    })
}

pub fn output_channel_range() -> IntRange {
    IntRange::Linear { min: 0, max: 16 }
}

pub fn velocity_scale_range() -> FloatRange {
    FloatRange::Linear { min: 0.0, max: 2.0 }
}

impl Default for BandmateParams {
    fn default() -> Self {
        Self {
            session: SessionStore::default(),
            model: Arc::new(RwLock::new(String::new())),
            band: BoolParam::new("Band player", false),
            steps: IntParam::new(
                "Steps",
                bandmate::settings::DEFAULT_STEPS as i32,
                steps_range(),
            ),
            seed: IntParam::new("Seed", 1, seed_range()),
            pitch_low: IntParam::new("Lowest pitch", 0, pitch_range())
                .with_value_to_string(pitch_to_string())
                .with_string_to_value(string_to_pitch()),
            pitch_high: IntParam::new("Highest pitch", 127, pitch_range())
                .with_value_to_string(pitch_to_string())
                .with_string_to_value(string_to_pitch()),
            key_tonic: IntParam::new("Key tonic", 0, IntRange::Linear { min: 0, max: 11 })
                .with_value_to_string(Arc::new(|t| TONICS[t.clamp(0, 11) as usize].to_string()))
                .with_string_to_value(Arc::new(|s| {
                    TONICS
                        .iter()
                        .position(|n| n.eq_ignore_ascii_case(s.trim()))
                        .map(|i| i as i32)
                })),
            key_scale: EnumParam::new("Key scale", KeyScale::Major),
            density: FloatParam::new("Density", 0.5, density_range())
                .with_unit(" %")
                .with_value_to_string(formatters::v2s_f32_percentage(0))
                .with_string_to_value(formatters::s2v_f32_percentage()),
            strength: FloatParam::new("Strength", 0.5, strength_range())
                .with_unit(" %")
                .with_value_to_string(formatters::v2s_f32_percentage(0))
                .with_string_to_value(formatters::s2v_f32_percentage()),
            temperature: FloatParam::new("Temperature", 1.0, temperature_range())
                .with_value_to_string(formatters::v2s_f32_rounded(2)),
            repeat: FloatParam::new("Repeat", 0.5, repeat_range())
                .with_unit(" %")
                .with_value_to_string(formatters::v2s_f32_percentage(0))
                .with_string_to_value(formatters::s2v_f32_percentage()),
            record: BoolParam::new("Record", false),
            key_lock: BoolParam::new("Key lock", false),
            output_channel: IntParam::new("Output channel", 0, output_channel_range())
                .with_value_to_string(Arc::new(|c| {
                    if c == 0 {
                        "Per track".to_string()
                    } else {
                        c.to_string()
                    }
                }))
                .with_string_to_value(Arc::new(|s| {
                    let s = s.trim();
                    if s.eq_ignore_ascii_case("per track") {
                        Some(0)
                    } else {
                        s.parse().ok()
                    }
                })),
            velocity_scale: FloatParam::new("Velocity scale", 1.0, velocity_scale_range())
                .with_unit(" %")
                .with_value_to_string(formatters::v2s_f32_percentage(0))
                .with_string_to_value(formatters::s2v_f32_percentage()),
        }
    }
}

impl BandmateParams {
    /// The key lock's key, `None` when the lock is off.
    pub fn key(&self) -> Option<Key> {
        self.key_lock.value().then(|| {
            Key::new(
                self.key_tonic.value().clamp(0, 11) as u8,
                self.key_scale.value().scale(),
            )
        })
    }

    /// The pitch range models may write in, `None` when it is the whole MIDI range.
    pub fn pitch_range(&self) -> Option<RangeInclusive<u8>> {
        let lo = self.pitch_low.value().clamp(0, 127) as u8;
        let hi = self.pitch_high.value().clamp(0, 127) as u8;
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        (lo > 0 || hi < 127).then_some(lo..=hi)
    }

    /// The chosen model's name (empty: automatic).
    pub fn model_name(&self) -> String {
        self.model.read().map(|m| m.clone()).unwrap_or_default()
    }

    /// The output channel as the scheduler wants it: `None` for each track's own channel.
    pub fn output_channel(&self) -> Option<u8> {
        match self.output_channel.value() {
            c @ 1..=16 => Some(c as u8 - 1),
            _ => None,
        }
    }
}
