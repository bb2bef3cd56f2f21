//! The 2-bar melody MusicVAE as a tool: load the shipped weights, turn clips into token
//! windows, encode them to latents, decode latents (argmax or sampled), sample the prior and
//! interpolate between two melodies (Magenta Studio's Interpolate: spherical interpolation of
//! the latents). Reconstruction accuracy is in [`eval`].

#[cfg(feature = "lab")]
pub mod eval;
pub mod net;

use std::path::PathBuf;

use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::models::music_vae::slerp;
use crate::music::melody::{WINDOW_STEPS, melody_track, tokenize, top_line};
use crate::music::{Clip, TimeSignature};
use crate::nn::weights::{ModelFiles, model_loaders};
pub use net::{VaeNet, VaeShape};

/// Where the shipped weights live, relative to the workspace root.
pub fn default_weights_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/vae")
}

/// A MusicVAE (flat 2-bar or hierarchical 16-bar) with its weights.
pub struct MelodyVae {
    model: VaeNet,
    device: Device,
    /// Keeps the variables alive (and lets tests train them).
    varmap: VarMap,
}

/// The first 2-bar window of a clip's melody as tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct MelodyWindow {
    pub tokens: Vec<u8>,
    /// The melody had chords there; the top note was kept.
    pub had_chords: bool,
    /// No track has the melody role: this track (0-based), the highest on average, was taken.
    pub guessed_track: Option<u16>,
}

impl MelodyVae {
    model_loaders! {
        load, "MusicVAE", "vae",
        "train them with `cargo xtask train vae` or pass --weights"
    }

    /// A model from its `config.json` and `model.safetensors`.
    pub fn from_files(files: &ModelFiles) -> Result<Self> {
        files.load_with_varmap(VaeShape::validate, Self::random_on, Self::varmap)
    }

    /// A model with freshly initialized weights on the CPU (for tests and training).
    pub fn random(cfg: &VaeShape) -> Result<Self> {
        Self::random_on(cfg, &Device::Cpu)
    }

    /// A model with freshly initialized weights on `device`.
    pub fn random_on(cfg: &VaeShape, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let model = VaeNet::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        Ok(Self {
            model,
            device: device.clone(),
            varmap,
        })
    }

    /// The device the weights are on (where the inputs go).
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn model(&self) -> &VaeNet {
        &self.model
    }

    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    pub fn shape(&self) -> VaeShape {
        self.model.shape()
    }

    pub fn z_dim(&self) -> usize {
        self.model.z_dim()
    }

    /// Tokens (16ths) per window the model reads and writes.
    pub fn window_steps(&self) -> usize {
        self.model.steps()
    }

    /// The latent means μ (`[z_dim]` each) of token windows.
    pub fn encode(&self, windows: &[&[u8]]) -> Result<Vec<Vec<f32>>> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        // One part of the batch per pool thread, each encoded on its own core.
        let (parts, _) = crate::nn::pool_parts(windows.len(), 64);
        // Inside `with_candle_ops`, the pool threads take the candle ops too.
        let candle_ops = crate::nn::cpu::storage::candle_ops_only();
        let encoded = crate::nn::in_pool(|| {
            parts
                .par_iter()
                .map(|r| {
                    let tokens = self
                        .model
                        .tokens_tensor(&windows[r.clone()], &self.device)?; // [n, 32]
                    let encode = || {
                        crate::nn::cpu::storage::keep_candle_ops(candle_ops, || {
                            self.model.encode(&tokens)
                        })
                    };
                    let (mu, _) = if parts.len() > 1 {
                        crate::nn::serially(encode)?
                    } else {
                        encode()?
                    };
                    Ok(mu.to_vec2::<f32>()?)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        Ok(encoded.concat())
    }

    /// Decode latents into token windows: argmax at every step (`temperature` `None`) or
    /// sampled at `temperature` with a generator seeded by `seed`.
    pub fn decode(
        &self,
        latents: &[Vec<f32>],
        temperature: Option<f64>,
        seed: u64,
    ) -> Result<Vec<Vec<u8>>> {
        if latents.is_empty() {
            return Ok(Vec::new());
        }
        let z_dim = self.z_dim();
        if let Some(bad) = latents.iter().find(|z| z.len() != z_dim) {
            bail!(
                "a latent has {} values, the model's z has {z_dim}",
                bad.len()
            );
        }
        let flat: Vec<f32> = latents.iter().flatten().copied().collect();
        let z = Tensor::from_vec(flat, (latents.len(), z_dim), &self.device)?; // [n, z]
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let uniforms: Vec<f32> = match temperature {
            Some(_) => (0..latents.len() * self.window_steps())
                .map(|_| rng.random())
                .collect(),
            None => Vec::new(),
        };
        Ok(self.model.decode(&z, temperature, &uniforms)?)
    }

    /// `count` melodies from the prior z ~ N(0, I), seeded.
    pub fn sample(
        &self,
        count: usize,
        temperature: Option<f64>,
        seed: u64,
    ) -> Result<Vec<Vec<u8>>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let z_dim = self.z_dim();
        let latents: Vec<Vec<f32>> = (0..count)
            .map(|_| crate::nn::random::normal_noise(&mut rng, z_dim))
            .collect();
        self.decode(&latents, temperature, seed.wrapping_add(1))
    }

    /// `steps` windows (at least 2) from `a` to `b`: the argmax decodings of the spherical
    /// interpolation of their latents at t = 0, 1/(steps−1), …, 1. The first and last are the
    /// reconstructions of `a` and `b`.
    pub fn interpolate(&self, a: &[u8], b: &[u8], steps: usize) -> Result<Vec<Vec<u8>>> {
        if steps < 2 {
            bail!("interpolation needs at least 2 steps (the two ends), got {steps}");
        }
        let z = self.encode(&[a, b])?;
        let latents: Vec<Vec<f32>> = (0..steps)
            .map(|i| slerp(&z[0], &z[1], i as f32 / (steps - 1) as f32))
            .collect();
        self.decode(&latents, None, 0)
    }
}

/// The first 2 bars of `clip`'s melody as tokens (see [`first_window_of`]).
pub fn first_window(clip: &Clip) -> Result<MelodyWindow> {
    first_window_of(clip, WINDOW_STEPS)
}

/// The first `steps` sixteenths of `clip`'s melody as tokens. The melody is the melody-role
/// track, or the pitched track with the highest mean pitch. Errors (never panics) for clips
/// shorter than that in 4/4, meters other than 4/4 and 2/4 (2/4 bars are read in pairs), a
/// silent start, or no pitched notes.
pub fn first_window_of(clip: &Clip, steps: usize) -> Result<MelodyWindow> {
    let bars = steps / 16;
    let meter = clip.time_signature;
    let two_four = TimeSignature::new(2, 4);
    if meter != TimeSignature::FOUR_FOUR && meter != two_four {
        bail!(
            "the clip is in {}/{}; the MusicVAE takes 4/4 melodies (or 2/4, read in pairs of bars)",
            meter.numerator,
            meter.denominator
        );
    }
    if let Some(change) = clip
        .meter_changes
        .iter()
        .find(|c| (c.step as usize) < steps && c.time_signature != meter)
    {
        bail!(
            "the meter changes to {}/{} at step {} inside the first {bars} bars; the MusicVAE needs {steps} sixteenths of 4/4",
            change.time_signature.numerator,
            change.time_signature.denominator,
            change.step
        );
    }
    let (track, notes, guessed) = melody_track(clip)?;
    let end = notes
        .iter()
        .map(|n| n.end())
        .max()
        .unwrap_or(0)
        .max(clip.steps());
    if (end as usize) < steps {
        bail!(
            "the clip is {end} sixteenths long; the MusicVAE needs {bars} bars of 4/4 ({steps} sixteenths)"
        );
    }
    let first: Vec<_> = notes
        .iter()
        .filter(|n| (n.start as usize) < steps)
        .copied()
        .collect();
    let (line, had_chords) = top_line(&first);
    if line.is_empty() {
        bail!("the melody plays no note in its first {bars} bars");
    }
    Ok(MelodyWindow {
        tokens: tokenize(&line, steps)?,
        had_chords,
        guessed_track: guessed.then_some(track),
    })
}

/// One clip holding `windows` one after another (each as long as the first; 2 bars when empty).
pub fn windows_to_clip(windows: &[Vec<u8>]) -> Clip {
    let steps = windows.first().map_or(WINDOW_STEPS, Vec::len);
    let mut clip = crate::music::melody::tokens_to_clip(&vec![
        crate::music::melody::REST;
        windows.len().max(1) * steps
    ]);
    for (i, w) in windows.iter().enumerate() {
        // Each window on its own: a note never runs on into the next window.
        let offset = (i * steps) as u32;
        clip.notes.extend(
            crate::music::melody::detokenize(w, crate::music::PLAIN_VELOCITY)
                .into_iter()
                .map(|n| crate::music::Note {
                    start: n.start + offset,
                    ..n
                }),
        );
    }
    clip
}
