//! The parameters the host sees and automates, and the persisted session (clip, mask).
//! Range constructors are shared with the GUI.

use crate::state::SessionStore;
use nice_plug::prelude::*;
use std::sync::Arc;

/// What the Generate action does (and, for `Band`, what the band player does live).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Regenerate the masked cells, keeping everything else.
    #[id = "fill"]
    Fill,
    /// Write the bars after the clip's end.
    #[id = "continue"]
    Continue,
    /// Write accompaniment under the melody.
    #[id = "harmonize"]
    Harmonize,
    /// Change the masked cells by `strength`, keeping the clip's character.
    #[id = "vary"]
    Vary,
    /// Write a new clip from nothing.
    #[id = "generate"]
    Generate,
    /// Answer each played bar with the next one.
    #[id = "band"]
    #[name = "Band player"]
    Band,
}

#[derive(Params)]
pub struct BandmateParams {
    /// Clip, mask and their version; see [`crate::state`].
    #[persist = "session"]
    pub session: SessionStore,

    #[id = "mode"]
    pub mode: EnumParam<Mode>,
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
    /// Keep generated notes in the clip's key.
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
            mode: EnumParam::new("Mode", Mode::Fill),
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
    /// The output channel as the scheduler wants it: `None` for each track's own channel.
    pub fn output_channel(&self) -> Option<u8> {
        match self.output_channel.value() {
            c @ 1..=16 => Some(c as u8 - 1),
            _ => None,
        }
    }
}
