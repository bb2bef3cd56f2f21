//! Music types shared by the models, the plugin and the GUI.

pub mod clip;
pub mod example;
pub mod key;
pub mod mask;
pub mod melody;
pub mod roll;
pub mod segment;
pub mod validate;
pub mod velocity;

pub use clip::{
    Clip, DRUM_CHANNEL, MeterChange, Note, PLAIN_VELOCITY, STEPS_PER_BEAT, TempoChange,
    TimeSignature, Track, TrackRole,
};
pub use example::example_clip;
pub use key::{Key, Scale, parse_pitch, pitch_name};
pub use mask::{Mask, parse_bar_range, parse_pitch_range};
pub use roll::{ONSET, PianoRoll, RollFilter, SUSTAIN};
pub use validate::{MAX_BARS, MAX_TEMPO, MIN_TEMPO};
