//! Bandmate's engine: music types, MIDI I/O, datasets, metrics, models and samplers.
//! It knows nothing of plugins or GUIs.

pub mod band;
pub mod data;
pub mod diffusion;
pub mod evaluation;
pub mod latent;
pub mod metrics;
pub mod midi;
pub mod models;
pub mod music;
pub mod nn;
pub mod train;
pub mod vae;
