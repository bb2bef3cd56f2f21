//! The generative models, one per file (candle; CPU everywhere, GPU with `cuda`/`metal`).
pub mod band;
pub mod hier_vae;
pub mod latent_score;
pub mod music_vae;
pub mod roll;
