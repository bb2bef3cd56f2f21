//! Bandmate's engine. It knows nothing of plugins or GUIs. Three layers, chosen by features:
//!
//! - always: [`music`] (clips, notes, keys, masks, piano rolls, melody tokens, windows) and
//!   [`midi`] (import/export) — no ML dependency; what the editor (`bandmate-gui`) uses;
//! - `models`: the networks ([`nn`], [`models`]), their samplers and the tasks a producer asks
//!   for ([`diffusion`], [`latent`], [`vae`], [`band`]) with the embedded weights — what the
//!   plugin runs;
//! - `lab` (default, implies `models`): datasets ([`data`]), metrics and evaluation
//!   ([`metrics`], [`evaluation`], the `eval` modules), training ([`train`]), plots and the
//!   `bandmate` CLI.

pub mod midi;
pub mod music;
pub mod settings;

#[cfg(feature = "models")]
pub mod band;
/// The GPU build's path (candle ops instead of the CPU kernels) checked on the CPU against the
/// kernels, for every shipped model (tests only; above the models so that no model imports it).
#[cfg(all(test, feature = "models"))]
mod candle_path;
#[cfg(feature = "models")]
pub mod diffusion;
#[cfg(feature = "models")]
pub mod latent;
#[cfg(feature = "models")]
pub mod models;
#[cfg(feature = "models")]
pub mod nn;
#[cfg(feature = "models")]
pub mod vae;

#[cfg(feature = "lab")]
pub mod data;
#[cfg(feature = "lab")]
pub mod evaluation;
#[cfg(feature = "lab")]
pub mod metrics;
#[cfg(feature = "lab")]
pub mod train;
