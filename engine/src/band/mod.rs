//! The band player: what plays along while the host plays, a bar at a time.
//!
//! - [`player`]: the recurrent multimodal VAE with a product of experts (the default model):
//!   hears the bar just played on every track and answers the next bar of the tracks it plays.
//! - [`chord_table`]: a chord-table accompanist (the next chord's most frequent bar), the
//!   baseline and an instant fallback.
//! - [`bars`]: bars as the models read and write them; [`eval`]: the next-bar evaluation.

pub mod bars;
pub mod chord_table;
#[cfg(feature = "lab")]
pub mod eval;
pub mod player;

pub use chord_table::*;
