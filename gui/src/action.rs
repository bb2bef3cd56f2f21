//! What the editor asks of the plugin: an [`Action`] (a model [`Task`] with its
//! [`ModelSettings`], an audition, a cancel). The widgets produce them; the plugin runs them.

use bandmate::music::{Key, Scale};

/// What a model is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Task {
    /// Regenerate the masked cells.
    FillMask,
    /// Append `bars` bars.
    Continue { bars: u32 },
    /// Accompaniment under the melody.
    Harmonize,
    /// Change the masked cells by `strength` (0–1).
    Vary { strength: f32 },
    /// A new clip of the current length.
    Generate,
    /// Regenerate one track.
    RegenerateVoice { track: u16 },
    /// `amount` (0–1) of the way from the previous version (A) to the current clip (B).
    Interpolate { amount: f32 },
}

impl Task {
    pub fn label(&self) -> &'static str {
        match self {
            Task::FillMask => "Fill mask",
            Task::Continue { .. } => "Continue",
            Task::Harmonize => "Harmonize",
            Task::Vary { .. } => "Vary",
            Task::Generate => "Generate",
            Task::RegenerateVoice { .. } => "Regenerate voice",
            Task::Interpolate { .. } => "Interpolate",
        }
    }
}

/// Sampling settings sent with every task.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSettings {
    /// Index into [`crate::EditorState::models`] (0: automatic).
    pub model: usize,
    /// Sampling (denoising) steps.
    pub steps: u32,
    /// Sampling temperature: below 1 tamer, above 1 wilder.
    pub temperature: f32,
    /// Target note density, 0–1.
    pub density: f32,
    /// How closely Fill and Continue follow the bars before the hole, 0 (fresh material) to 1
    /// (close to a copy); 0.5 is the model's own setting.
    pub repeat: f32,
    pub seed: u64,
    /// Keep generated notes in [`ModelSettings::key`].
    pub key_lock: bool,
    pub key: Key,
    pub pitch_low: u8,
    pub pitch_high: u8,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            model: 0,
            steps: bandmate::settings::DEFAULT_STEPS as u32,
            temperature: 1.0,
            density: 0.5,
            repeat: 0.5,
            seed: 1,
            key_lock: false,
            key: Key::new(0, Scale::Major),
            pitch_low: 0,
            pitch_high: 127,
        }
    }
}

/// What the editor asks of the plugin.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Play a note through the host (keyboard click).
    Audition { pitch: u8, velocity: u8 },
    /// Run a model on the current clip and mask.
    Run { task: Task, settings: ModelSettings },
    /// Cancel the running job.
    Cancel,
}
