//! Bandmate's engine: music types, MIDI I/O, datasets, metrics and (later) the models.
//! It knows nothing of plugins or GUIs.

pub mod data;
pub mod metrics;
pub mod midi;
pub mod music;
