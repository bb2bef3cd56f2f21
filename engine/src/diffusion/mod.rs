//! Diffusion processes and their samplers (outside the models, seeded).
//!
//! The piano-roll diffusion of Atassi (2023): [`binomial`] is the forward process,
//! [`sampler`] the reverse processes with conditioning on known cells, [`model`] the loaded
//! model, [`tasks`] fill / continue / harmonize / vary / generate on clips; generated notes get their
//! velocities from [`crate::music::velocity`].

pub mod binomial;
#[cfg(feature = "lab")]
pub mod eval;
pub mod model;
pub mod part_tasks;
pub mod parts;
pub mod regenerate;
pub mod sampler;
pub mod tasks;

pub use model::RollModel;
pub use sampler::{CANCELLED, SamplerKind, SamplerOptions, WindowProblem};
pub use tasks::{
    RollOptions, StepHook, continue_clip, fill, fill_echo, generate, harmonize, regenerate, vary,
};
