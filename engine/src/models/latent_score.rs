//! The latent score network (Mittal et al. 2021): a small transformer over a song's sequence of
//! 2-bar MusicVAE latents (8 latents = 16 bars), conditioned on the diffusion time t of a VP SDE
//! (Song et al. 2021), trained by denoising score matching. It predicts the noise ε that was
//! added to the (standardized) latents; the score is `−ε̂ / σ(t)` ([`crate::latent::VpSde`]).
//!
//! - Input: `x` `[batch, positions, z_dim]` (standardized latents with noise), `t` `[batch]`.
//! - Embedding: a linear map z_dim → d_model, a learned position embedding `[positions, d_model]`
//!   and a time embedding (sinusoidal features of 1000·t through a 2-layer SiLU MLP) added to
//!   every position.
//! - `layers` pre-norm transformer blocks (multi-head self-attention over the positions, then a
//!   GELU MLP of width `4·d_model`), a final layer norm and a linear map back to z_dim.
//! - Output: `σ(t)·x` plus that map. `σ(t)·x` is the exact ε of standard normal data, so the
//!   network learns a correction; without this skip the final layer norm held ε̂ to a fixed
//!   size, ε̂ fell behind a growing x at large t, and the samplers diverged.
//!
//! Weight paths (`vb.pp`): `input`, `position`, `time.0`, `time.2`, `blocks.{i}.{norm1, qkv,
//! attn_out, norm2, mlp_in, mlp_out}`, `norm`, `output`.

use crate::nn::{Linear, linear};
use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// [`LatentScore::forward`] cuts a batch between the pool threads only when each part holds at
/// least this many sequences.
pub const PART_SEQUENCES: usize = 64;

/// Shapes of the network and the data normalization (stored as `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Latent dimensions (the MusicVAE's z).
    pub z_dim: usize,
    /// Latents per sequence: 8 × 2 bars = 16 bars.
    pub positions: usize,
    pub d_model: usize,
    pub heads: usize,
    pub layers: usize,
    /// VP SDE: β(t) = beta_min + t·(beta_max − beta_min), t ∈ [0, 1].
    pub beta_min: f64,
    pub beta_max: f64,
    /// Per-dimension mean and standard deviation of the training latents: the network works on
    /// `(z − mean) / std`. Empty until the training data sets them.
    #[serde(default)]
    pub latent_mean: Vec<f32>,
    #[serde(default)]
    pub latent_std: Vec<f32>,
}

super::presets!(Config { "small" => small, "tiny" => tiny });

impl Config {
    /// The shipped shape (~2 M parameters).
    pub fn small() -> Self {
        Self {
            z_dim: 64,
            positions: 8,
            d_model: 256,
            heads: 4,
            layers: 4,
            beta_min: 0.1,
            beta_max: 20.0,
            latent_mean: Vec::new(),
            latent_std: Vec::new(),
        }
    }

    /// For tests.
    pub fn tiny() -> Self {
        Self {
            z_dim: 8,
            d_model: 32,
            heads: 2,
            layers: 1,
            ..Self::small()
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.z_dim == 0 || self.positions == 0 || self.layers == 0 || self.heads == 0 {
            return Err("latent score config: sizes must be positive".into());
        }
        if !self.d_model.is_multiple_of(self.heads) || !self.d_model.is_multiple_of(2) {
            return Err(format!(
                "latent score config: d_model {} must be even and a multiple of heads {}",
                self.d_model, self.heads
            ));
        }
        if !(self.beta_min > 0.0 && self.beta_max > self.beta_min) {
            return Err("latent score config: need 0 < beta_min < beta_max".into());
        }
        for (name, v) in [
            ("latent_mean", &self.latent_mean),
            ("latent_std", &self.latent_std),
        ] {
            if !v.is_empty() && v.len() != self.z_dim {
                return Err(format!(
                    "latent score config: {name} has {} values, z_dim is {}",
                    v.len(),
                    self.z_dim
                ));
            }
        }
        if self.latent_std.iter().any(|&s| s.is_nan() || s <= 0.0) {
            return Err("latent score config: latent_std must be positive".into());
        }
        Ok(())
    }
}

/// Layer normalization over the last dimension with PyTorch's names (`weight`, `bias`), through
/// [`crate::nn::layer_norm`] (candle's fused kernel has no backward pass).
struct Norm {
    weight: Tensor,
    bias: Tensor,
}

impl Norm {
    fn new(d: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(d, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(d, "bias", candle_nn::Init::Const(0.0))?,
        })
    }

    /// `[…, d]` → `[…, d]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::nn::layer_norm(x, &self.weight, &self.bias, 1e-5)
    }
}

struct Block {
    norm1: Norm,
    qkv: Linear,
    attn_out: Linear,
    norm2: Norm,
    mlp_in: Linear,
    mlp_out: Linear,
    heads: usize,
}

impl Block {
    fn new(d: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm1: Norm::new(d, vb.pp("norm1"))?,
            qkv: linear(d, 3 * d, vb.pp("qkv"))?,
            attn_out: linear(d, d, vb.pp("attn_out"))?,
            norm2: Norm::new(d, vb.pp("norm2"))?,
            mlp_in: linear(d, 4 * d, vb.pp("mlp_in"))?,
            mlp_out: linear(4 * d, d, vb.pp("mlp_out"))?,
            heads,
        })
    }

    /// `[b, l, d]` → `[b, l, d]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let qkv = self.qkv.forward(&self.norm1.forward(x)?)?; // [b, l, 3d]
        let mixed = crate::nn::self_attention(&qkv, self.heads)?; // [b, l, d]
        let x = (x + self.attn_out.forward(&mixed)?)?;
        let h = crate::nn::gelu(&self.mlp_in.forward(&self.norm2.forward(&x)?)?)?;
        x + self.mlp_out.forward(&h)?
    }
}

/// The score network.
pub struct LatentScore {
    input: Linear,
    /// `[positions, d_model]`.
    position: Tensor,
    time_in: Linear,
    time_out: Linear,
    blocks: Vec<Block>,
    norm: Norm,
    output: Linear,
    cfg: Config,
}

impl LatentScore {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        if let Err(e) = cfg.validate() {
            candle_core::bail!("{e}");
        }
        let d = cfg.d_model;
        let position = vb.get_with_hints(
            (cfg.positions, d),
            "position",
            candle_nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        let blocks = (0..cfg.layers)
            .map(|i| Block::new(d, cfg.heads, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            input: linear(cfg.z_dim, d, vb.pp("input"))?,
            position,
            time_in: linear(d, d, vb.pp("time.0"))?,
            time_out: linear(d, d, vb.pp("time.2"))?,
            blocks,
            norm: Norm::new(d, vb.pp("norm"))?,
            output: linear(d, cfg.z_dim, vb.pp("output"))?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The device the weights are on, where the inputs go.
    pub fn device(&self) -> &Device {
        self.position.device()
    }

    /// Sinusoidal features of `1000·t`: `[b]` → `[b, d_model]` (sines then cosines, frequencies
    /// from 1 down to 1/10000).
    fn time_features(&self, t: &Tensor) -> Result<Tensor> {
        let half = self.cfg.d_model / 2;
        let freqs: Vec<f32> = (0..half)
            .map(|i| (-(10000f32).ln() * i as f32 / half as f32).exp())
            .collect();
        let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
        let args = (t.unsqueeze(1)?.affine(1000.0, 0.0)?.broadcast_mul(&freqs))?; // [b, half]
        Tensor::cat(&[args.sin()?, args.cos()?], 1)
    }

    /// The predicted noise ε̂ `[b, positions, z_dim]` of `x` `[b, positions, z_dim]` at times
    /// `t` `[b]` (f32, in (0, 1]). Every op passes gradients back (candle's fused layer norm
    /// and softmax do not, which once left all but the output layer untrained).
    ///
    /// A batch of at least two parts of [`PART_SEQUENCES`] is cut into one part per pool thread
    /// ([`crate::nn::pool_parts`]), each run through the network on its thread alone
    /// ([`crate::nn::serially`]), and the outputs joined. (A training step's sub-batches are
    /// smaller and stay whole.)
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let (ranges, _) = crate::nn::pool_parts(x.dim(0)?, PART_SEQUENCES);
        if ranges.len() < 2 {
            return self.forward_whole(x, t);
        }
        // Inside `with_candle_ops`, the pool threads take the candle ops too.
        let candle_ops = crate::nn::cpu::storage::candle_ops_only();
        let parts: Vec<Tensor> = ranges
            .into_par_iter()
            .map(|r| {
                let (x, t) = (
                    x.narrow(0, r.start, r.len())?,
                    t.narrow(0, r.start, r.len())?,
                );
                crate::nn::cpu::storage::keep_candle_ops(candle_ops, || {
                    crate::nn::serially(|| self.forward_whole(&x, &t))
                })
            })
            .collect::<Result<_>>()?;
        Tensor::cat(&parts, 0)
    }

    /// [`LatentScore::forward`] on the whole batch at once.
    fn forward_whole(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let temb = self.time_features(t)?; // [b, d]
        let temb = self
            .time_out
            .forward(&self.time_in.forward(&temb)?.silu()?)?; // [b, d]
        let h = self.input.forward(x)?; // [b, l, d]
        let mut h = h
            .broadcast_add(&self.position.unsqueeze(0)?)?
            .broadcast_add(&temb.unsqueeze(1)?)?;
        for block in &self.blocks {
            h = block.forward(&h)?;
        }
        let correction = self.output.forward(&self.norm.forward(&h)?)?;
        // ε̂ = σ(t)·x + network: σ(t)·x is the exact noise predictor of standard normal data
        // (what standardized latents are to first order), so the network only learns the
        // correction, and ε̂ keeps tracking x at large t where the sampler needs it most.
        let sigma = self.sigma(t)?.reshape((t.dim(0)?, 1, 1))?;
        x.broadcast_mul(&sigma)? + correction
    }

    /// σ(t) = √(1 − m(t)²), m(t) = exp(−¼t²(β1 − β0) − ½tβ0): `[b]`.
    fn sigma(&self, t: &Tensor) -> Result<Tensor> {
        let (b0, b1) = (self.cfg.beta_min, self.cfg.beta_max);
        let log_m = ((t.sqr()? * (-0.25 * (b1 - b0)))? - (t * (0.5 * b0))?)?;
        let m2 = (log_m * 2.0)?.exp()?;
        (m2.neg()? + 1.0)?.clamp(1e-12, 1.0)?.sqrt()
    }
}

/// Standardize latents `[…, z_dim]` with the config's statistics (identity when unset).
pub fn standardize(cfg: &Config, z: &Tensor) -> Result<Tensor> {
    if cfg.latent_mean.is_empty() {
        return Ok(z.clone());
    }
    let (mean, std) = stats(cfg, z.device())?;
    z.broadcast_sub(&mean)?.broadcast_div(&std)
}

/// The inverse of [`standardize`].
pub fn unstandardize(cfg: &Config, x: &Tensor) -> Result<Tensor> {
    if cfg.latent_mean.is_empty() {
        return Ok(x.clone());
    }
    let (mean, std) = stats(cfg, x.device())?;
    x.broadcast_mul(&std)?.broadcast_add(&mean)
}

fn stats(cfg: &Config, device: &Device) -> Result<(Tensor, Tensor)> {
    let mean = Tensor::new(cfg.latent_mean.as_slice(), device)?.to_dtype(DType::F32)?;
    let std = Tensor::new(cfg.latent_std.as_slice(), device)?.to_dtype(DType::F32)?;
    Ok((mean, std))
}

/// Mean squared error over the last dimension, averaged: `[]`.
pub fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    (a - b)?.sqr()?.mean(D::Minus1)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_support::max_abs;
    use candle_nn::VarMap;

    /// A small network with fresh weights (the map holds them).
    fn small_model(d_model: usize, heads: usize, layers: usize) -> (Config, VarMap, LatentScore) {
        let cfg = Config {
            d_model,
            heads,
            layers,
            ..Config::small()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = LatentScore::new(&cfg, vb).unwrap();
        (cfg, varmap, model)
    }

    #[test]
    fn a_batch_cut_between_threads_gives_the_whole_batch_outputs() {
        let (cfg, _weights, model) = small_model(16, 2, 1);
        let batch = 2 * PART_SEQUENCES + 5;
        let x = Tensor::randn(0f32, 1.0, (batch, cfg.positions, cfg.z_dim), &Device::Cpu).unwrap();
        let t = Tensor::rand(0.01f32, 1.0, batch, &Device::Cpu).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let cut = pool.install(|| model.forward(&x, &t).unwrap());
        let whole = model.forward_whole(&x, &t).unwrap();
        let diff = crate::nn::test_support::max_abs_diff(&cut, &whole);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn training_reaches_every_weight() {
        let (cfg, varmap, model) = small_model(32, 4, 2);
        let x = Tensor::randn(0f32, 1.0, (3, cfg.positions, cfg.z_dim), &Device::Cpu).unwrap();
        let t = Tensor::new(&[0.1f32, 0.5, 0.9], &Device::Cpu).unwrap();
        let y = model.forward(&x, &t).unwrap();
        let grads = y.sqr().unwrap().mean_all().unwrap().backward().unwrap();
        let vars = varmap.data().lock().unwrap();
        for name in [
            "blocks.0.norm1.weight",
            "blocks.0.qkv.weight",
            "input.weight",
            "position",
        ] {
            let g = grads
                .get(&vars[name])
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            assert!(max_abs(g) > 0.0, "zero gradient for {name}");
        }
    }
}
