//! Evaluation metrics of the source papers (Yang & Lerch 2020, Mittal et al. 2021, Lerch).
//!
//! [`evaluate`] compares a generated set of clips with a reference set and returns a [`Report`]
//! (JSON or a text table); [`plot_histograms`] draws both sets' distributions into a PNG.
//! Each submodule documents how it follows (or, where noted, adapts) its paper.

pub mod eval;
pub mod features;
pub mod mittal;
pub mod plot;
pub mod rhythm;
pub mod stats;
pub mod yang_lerch;

pub use eval::{EvalOptions, Report, evaluate};
pub use features::{ClipFeatures, Feature};
pub use plot::plot_histograms;

#[cfg(test)]
mod tests;
