//! Training the latent score network ([`crate::models::latent_score`]) on Nottingham melodies
//! encoded by the shipped 2-bar MusicVAE.
//!
//! Data (one cached tensor, as in the multi-instrument VAE paper): every run of consecutive
//! 2-bar 4/4 windows of a train song's melody ([`crate::latent::window_runs`]) is transposed by
//! every shift within ±`max_shift` that stays inside the split's pitch span and encoded once to
//! its latent means; a training sequence is any 8 consecutive latents of one (run, shift). The
//! per-dimension mean and standard deviation of all train latents standardize them (stored in
//! the config). Loss: denoising score matching on the VP SDE with ε-prediction,
//! E_{t ~ U(eps, 1)} ‖ε̂(m(t)x₀ + σ(t)ε, t) − ε‖². Validation per epoch: the same loss on the
//! valid split's sequences (no shift) at fixed t and noise. The run goes through the shared loop
//! ([`super::run_loop`]): checkpoints, resume, the card.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::adamw::AdamW;
use super::format_duration;
use super::run_loop::{
    EpochOrder, LoopOptions, LoopState, Measured, Trainee, derefs_to_run, new_model, run, step_rng,
    steps_per_epoch,
};
use crate::data::{self, Dataset, Split};
use crate::latent::{VpSde, window_runs};
use crate::models::latent_score::{Config, LatentScore, mse};
use crate::music::melody::transpose_tokens;
use crate::nn::random::normal_noise;
use crate::vae::MelodyVae;

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct LatentTrainOptions {
    pub config: Config,
    /// The MusicVAE whose latents are modelled (`assets/vae`).
    pub vae_dir: PathBuf,
    pub batch: usize,
    pub weight_decay: f64,
    pub max_shift: i32,
    /// Smallest diffusion time of training and sampling.
    pub eps: f64,
    pub data_root: PathBuf,
    pub cache_dir: PathBuf,
    pub seed: u64,
    /// Learning rate, budget, checkpoints, the run and export folders.
    pub run: LoopOptions,
}

derefs_to_run!(LatentTrainOptions);

impl LatentTrainOptions {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            vae_dir: crate::vae::default_weights_dir(),
            batch: 128,
            weight_decay: 0.0,
            max_shift: 5,
            eps: 1e-3,
            data_root: data::default_data_root(),
            cache_dir: data::default_cache_dir(),
            seed: 0,
            run: LoopOptions {
                max_epochs: 100_000,
                log_every: 50,
                ..LoopOptions::new("latent", 5e-4, "30m")
            },
        }
    }
}

/// Encoded sequences: a table of latents and the start rows of the 8-latent sequences.
pub struct LatentData {
    /// `[rows, z_dim]` latent means.
    pub table: Tensor,
    /// Row of the first latent of each sequence.
    pub starts: Vec<u32>,
    pub windows: usize,
}

/// Encode every run of `songs` (at every shift in `shifts` that fits `span`) and list the
/// sequences of `positions` consecutive latents.
pub fn encode_runs(
    vae: &MelodyVae,
    songs: &[data::Song],
    shifts: &[i32],
    span: (u8, u8),
    positions: usize,
) -> Result<LatentData> {
    let mut rows: Vec<Vec<f32>> = Vec::new();
    let mut starts = Vec::new();
    let mut windows = 0;
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let flush = |pending: &mut Vec<Vec<u8>>, rows: &mut Vec<Vec<f32>>| -> Result<()> {
        for chunk in pending.chunks(512) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            rows.extend(vae.encode(&refs)?);
        }
        pending.clear();
        Ok(())
    };
    for song in songs {
        let Ok((runs, _)) = window_runs(&song.clip) else {
            continue;
        };
        for run in runs.iter().filter(|r| r.len() >= positions) {
            windows += run.len();
            for &shift in shifts {
                let moved: Option<Vec<Vec<u8>>> = run
                    .iter()
                    .map(|w| transpose_tokens(w, shift, span.0, span.1))
                    .collect();
                let Some(moved) = moved else { continue };
                let first = rows.len() + pending.len();
                starts.extend((0..=run.len() - positions).map(|s| (first + s) as u32));
                pending.extend(moved);
                if pending.len() >= 4096 {
                    flush(&mut pending, &mut rows)?;
                }
            }
        }
    }
    flush(&mut pending, &mut rows)?;
    let z = vae.z_dim();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Ok(LatentData {
        table: Tensor::from_vec(flat, (rows.len(), z), &Device::Cpu)?,
        starts,
        windows,
    })
}

/// Per-dimension mean and standard deviation of `table` `[rows, z]`.
fn table_stats(table: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
    let mean = table.mean(0)?;
    let var = table.broadcast_sub(&mean)?.sqr()?.mean(0)?;
    let std: Vec<f32> = var
        .to_vec1::<f32>()?
        .into_iter()
        .map(|v| v.sqrt().max(1e-4))
        .collect();
    Ok((mean.to_vec1::<f32>()?, std))
}

/// The standardized sequences starting at `starts`: `[n, positions, z]`.
fn gather(table: &Tensor, starts: &[u32], positions: usize) -> Result<Tensor> {
    let idx: Vec<u32> = starts
        .iter()
        .flat_map(|&s| (0..positions as u32).map(move |p| s + p))
        .collect();
    let z = table.dim(1)?;
    let idx = Tensor::from_vec(idx, starts.len() * positions, table.device())?;
    Ok(table
        .index_select(&idx, 0)?
        .reshape((starts.len(), positions, z))?)
}

/// The denoising score matching loss of `x0` `[b, l, z]` at times `t` with noise `noise`.
pub fn dsm_loss(model: &LatentScore, x0: &Tensor, t: &[f32], noise: &[f32]) -> Result<Tensor> {
    let cfg = model.config();
    let sde = VpSde {
        beta_min: cfg.beta_min,
        beta_max: cfg.beta_max,
    };
    let (b, l, z) = x0.dims3()?;
    let device = x0.device();
    let m: Vec<f32> = t.iter().map(|&t| sde.mean_coef(t as f64) as f32).collect();
    let s: Vec<f32> = t.iter().map(|&t| sde.sigma(t as f64) as f32).collect();
    let m = Tensor::from_vec(m, (b, 1, 1), device)?;
    let s = Tensor::from_vec(s, (b, 1, 1), device)?;
    let eps = Tensor::from_slice(noise, (b, l, z), device)?;
    let xt = (x0.broadcast_mul(&m)? + eps.broadcast_mul(&s)?)?;
    let tt = Tensor::from_slice(t, b, device)?;
    Ok(mse(&model.forward(&xt, &tt)?, &eps)?)
}

/// One AdamW step on [`dsm_loss`] of the batch `x0` `[batch, positions, z]` (times `t`, noise
/// `noise`), cut into one sub-batch per pool thread ([`crate::nn::pool_parts`]); returns the loss.
pub fn dsm_step(
    model: &LatentScore,
    opt: &mut AdamW,
    x0: &Tensor,
    t: &[f32],
    noise: &[f32],
) -> Result<f64> {
    let (b, l, z) = x0.dims3()?;
    let (ranges, weights) = crate::nn::pool_parts(b, 16);
    // On a pool thread, so that its parallel ops do not each wake two threads.
    crate::nn::in_pool(|| {
        opt.split_backward_step(&weights, |i| {
            let r = ranges[i].clone();
            dsm_loss(
                model,
                &x0.narrow(0, r.start, r.len())?,
                &t[r.clone()],
                &noise[r.start * l * z..r.end * l * z],
            )
        })
    })
}

/// Validation loss: every valid sequence at 4 fixed times (0.05, 0.25, 0.5, 0.9) and fixed noise.
fn validate(model: &LatentScore, table: &Tensor, starts: &[u32]) -> Result<f64> {
    let cfg = model.config();
    let mut rng = ChaCha8Rng::seed_from_u64(1234);
    let (mut total, mut count) = (0.0, 0usize);
    for chunk in starts.chunks(256) {
        let x0 = gather(table, chunk, cfg.positions)?;
        for &tv in &[0.05f32, 0.25, 0.5, 0.9] {
            let t = vec![tv; chunk.len()];
            let noise = normal_noise(&mut rng, chunk.len() * cfg.positions * cfg.z_dim);
            let loss = dsm_loss(model, &x0, &t, &noise)?.to_scalar::<f32>()? as f64;
            total += loss * chunk.len() as f64;
            count += chunk.len();
        }
    }
    Ok(total / count.max(1) as f64)
}

/// A score network in training (see [`train_latent`]).
struct LatentTrainee {
    opts: LatentTrainOptions,
    /// With the per-dimension statistics of the train latents.
    cfg: Config,
    train: LatentData,
    valid: LatentData,
    /// The tables standardized with `cfg`'s statistics.
    train_table: Tensor,
    valid_table: Tensor,
    varmap: VarMap,
    model: LatentScore,
    opt: AdamW,
    order: EpochOrder,
}

impl LatentTrainee {
    fn new(opts: &LatentTrainOptions, train: LatentData, valid: LatentData) -> Result<Self> {
        let (latent_mean, latent_std) = table_stats(&train.table)?;
        let cfg = Config {
            latent_mean,
            latent_std,
            ..opts.config.clone()
        };
        eprintln!("latent: d_model {}, {} layers", cfg.d_model, cfg.layers);
        let (varmap, model, opt) = new_model("latent", opts.run.lr, opts.weight_decay, |vb| {
            LatentScore::new(&cfg, vb)
        })?;
        let mut trainee = Self {
            opts: opts.clone(),
            train_table: train.table.clone(),
            valid_table: valid.table.clone(),
            cfg,
            train,
            valid,
            varmap,
            model,
            opt,
            order: EpochOrder::default(),
        };
        trainee.standardize()?;
        Ok(trainee)
    }

    /// Standardize the tables with the statistics of `cfg`.
    fn standardize(&mut self) -> Result<()> {
        let standardize = |t: &Tensor| crate::models::latent_score::standardize(&self.cfg, t);
        self.train_table = standardize(&self.train.table)?;
        self.valid_table = standardize(&self.valid.table)?;
        Ok(())
    }
}

impl Trainee for LatentTrainee {
    /// The config without the statistics (kept in the notes: a resumed run goes on with its
    /// own), and the data sizes.
    fn record(&self) -> serde_json::Value {
        let shape = Config {
            latent_mean: Vec::new(),
            latent_std: Vec::new(),
            ..self.cfg.clone()
        };
        serde_json::json!({
            "config": shape,
            "train_sequences": self.train.starts.len(),
            "val_sequences": self.valid.starts.len(),
            "train_windows": self.train.windows,
            "batch": self.opts.batch,
        })
    }

    fn steps_per_epoch(&self) -> usize {
        steps_per_epoch(self.train.starts.len(), self.opts.batch, None)
    }

    fn step(&mut self, epoch: usize, batch: usize, step: usize, lr: f64) -> Result<Measured> {
        let (opts, cfg) = (&self.opts, &self.cfg);
        let starts = &self.train.starts;
        let idx = self
            .order
            .batch(starts.len(), opts.seed, epoch, batch, opts.batch)?;
        let batch_starts: Vec<u32> = idx.iter().map(|&i| starts[i]).collect();
        let mut rng = step_rng(opts.seed, step);
        let x0 = gather(&self.train_table, &batch_starts, cfg.positions)?;
        let t: Vec<f32> = (0..opts.batch)
            .map(|_| rng.random_range(opts.eps as f32..1.0))
            .collect();
        let noise = normal_noise(&mut rng, opts.batch * cfg.positions * cfg.z_dim);
        self.opt.lr = lr;
        dsm_step(&self.model, &mut self.opt, &x0, &t, &noise).map(Into::into)
    }

    fn validate(&mut self) -> Result<Measured> {
        validate(&self.model, &self.valid_table, &self.valid.starts).map(Into::into)
    }

    fn weights_and_optimizer(&mut self) -> (&mut VarMap, &mut AdamW) {
        (&mut self.varmap, &mut self.opt)
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).unwrap_or_default()
    }

    fn curve_names(&self) -> (&str, &str) {
        (
            "Latent score model: denoising score matching loss (ε MSE)",
            "validation (fixed t, noise)",
        )
    }

    fn train_curve_name(&self) -> &str {
        "train"
    }

    fn notes(&self) -> serde_json::Value {
        serde_json::json!({
            "latent_mean": self.cfg.latent_mean,
            "latent_std": self.cfg.latent_std,
        })
    }

    /// The run's own statistics standardize the latents.
    fn resume(&mut self, state: &LoopState, _run_dir: &Path) -> Result<()> {
        let stats = |key: &str| -> Result<Vec<f32>> {
            serde_json::from_value(state.notes[key].clone())
                .with_context(|| format!("the training state has no {key}"))
        };
        self.cfg.latent_mean = stats("latent_mean")?;
        self.cfg.latent_std = stats("latent_std")?;
        self.standardize()
    }

    /// Epochs are short: every 10th validation line (and every best).
    fn logs_validation(&self, epoch: usize) -> bool {
        epoch.is_multiple_of(10)
    }

    fn card(&self, state: &LoopState, opts: &LoopOptions) -> String {
        card(self, state, opts)
    }
}

/// Train (or resume) the score network. Progress goes to stderr.
pub fn train_latent(opts: &LatentTrainOptions) -> Result<LoopState> {
    if opts.batch == 0 {
        bail!("batch must be at least 1");
    }
    let vae = MelodyVae::load(&opts.vae_dir)?;
    let cfg = &opts.config;
    if cfg.z_dim != vae.z_dim() {
        bail!(
            "the score config has z_dim {}, the VAE in {} has {}",
            cfg.z_dim,
            opts.vae_dir.display(),
            vae.z_dim()
        );
    }
    eprintln!(
        "latent: loading Nottingham from {}",
        opts.data_root.display()
    );
    let load =
        |split| data::load_cached(Dataset::Nottingham, split, &opts.data_root, &opts.cache_dir);
    let train_songs = load(Split::Train)?;
    let valid_songs = load(Split::Valid)?;
    let span = crate::data::melody_windows(&train_songs, 2)?
        .pitch_span()
        .context("the train split has no melody")?;
    let shifts: Vec<i32> = (-opts.max_shift..=opts.max_shift).collect();
    let t0 = Instant::now();
    let train = encode_runs(&vae, &train_songs, &shifts, span, cfg.positions)?;
    let valid = encode_runs(&vae, &valid_songs, &[0], (0, 127), cfg.positions)?;
    if train.starts.len() < opts.batch || valid.starts.is_empty() {
        bail!(
            "too few 16-bar 4/4 melodies in Nottingham under {} ({} train, {} valid sequences)",
            opts.data_root.display(),
            train.starts.len(),
            valid.starts.len()
        );
    }
    eprintln!(
        "latent: {} train sequences ({} windows × {} shifts, {} latents) and {} valid sequences encoded in {:.1}s",
        train.starts.len(),
        train.windows,
        shifts.len(),
        train.table.dim(0)?,
        valid.starts.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut trainee = LatentTrainee::new(opts, train, valid)?;
    run(&mut trainee, &opts.run)
}

/// The model card.
fn card(t: &LatentTrainee, state: &LoopState, loop_opts: &LoopOptions) -> String {
    let (cfg, opts) = (&t.cfg, &t.opts);
    let rows: String = state
        .val_loss
        .iter()
        .filter(|v| v.1 % 10 == 0 || Some(v.2) == state.best_val || v.1 == state.epoch)
        .map(|v| format!("| {} | {} | {:.4} |\n", v.1, v.0, v.2))
        .collect();
    format!(
        "# Latent score model (default weights)\n\n\
A score network over sequences of 8 MusicVAE latents (16 bars of melody), Mittal et al. (2021)\n\
with the VP SDE of Song et al. (2021): `engine/src/models/latent_score.rs` (a pre-norm\n\
transformer over the 8 positions, time-conditioned), samplers in `engine/src/latent/sampler.rs`.\n\n\
- Status: {}\n\
- Data: Nottingham train split melodies, runs of consecutive 2-bar 4/4 windows encoded by the\n\
  shipped 2-bar MusicVAE (`assets/vae`, latent means), each run at every transposition within\n\
  ±{} semitones that stays in the split's pitch span: {} windows, {} training sequences of 8;\n\
  validation on {} sequences of the valid split (no transposition, t ∈ {{0.05, 0.25, 0.5, 0.9}}, fixed noise).\n\
- Shape: d_model {}, {} heads, {} layers, z {}; VP SDE β from {} to {}; latents standardized per\n\
  dimension with the train statistics (in config.json).\n\
- Loss: denoising score matching, ε-prediction MSE, t ~ U({}, 1).\n\
- Training: AdamW (lr {}, warm-up {} steps, cosine decay to lr/10 over the budget), batch {},\n\
  {} steps, {} epochs, {} wall time on a 2-core CPU, seed {}.\n\
- Best validation loss: {:.4}\n\n\
| epoch | step | validation loss |\n|---|---|---|\n{rows}\n\
Loss curve: `loss.png`. Reproduce: `cargo xtask train latent`.\n",
        if state.finished {
            "finished"
        } else {
            "training"
        },
        opts.max_shift,
        t.train.windows,
        t.train.starts.len(),
        t.valid.starts.len(),
        cfg.d_model,
        cfg.heads,
        cfg.layers,
        cfg.z_dim,
        cfg.beta_min,
        cfg.beta_max,
        opts.eps,
        loop_opts.lr,
        loop_opts.warmup,
        opts.batch,
        state.step,
        state.epoch,
        format_duration(Duration::from_secs_f64(state.elapsed_secs)),
        opts.seed,
        state.best_val.unwrap_or(f64::NAN),
    )
}

/// Seconds per training step of `cfg` at `batch` on random data.
pub fn time_latent_step(cfg: &Config, batch: usize, iters: usize) -> Result<f64> {
    let varmap = VarMap::new();
    let model = LatentScore::new(
        cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    let mut opt = AdamW::new(&varmap, 1e-4, 0.0)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let n = batch * cfg.positions * cfg.z_dim;
    let x0 = Tensor::from_vec(
        normal_noise(&mut rng, n),
        (batch, cfg.positions, cfg.z_dim),
        &Device::Cpu,
    )?;
    let mut best = f64::INFINITY;
    for _ in 0..iters.max(1) + 1 {
        let t: Vec<f32> = (0..batch)
            .map(|_| rng.random_range(0.001f32..1.0))
            .collect();
        let noise = normal_noise(&mut rng, n);
        let tick = Instant::now();
        dsm_step(&model, &mut opt, &x0, &t, &noise)?;
        best = best.min(tick.elapsed().as_secs_f64());
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random table of `rows` latents and the sequences starting at `starts`.
    fn random_data(cfg: &Config, rows: usize, starts: Vec<u32>, seed: u64) -> LatentData {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let table = Tensor::from_vec(
            normal_noise(&mut rng, rows * cfg.z_dim),
            (rows, cfg.z_dim),
            &Device::Cpu,
        )
        .unwrap();
        LatentData {
            table,
            starts,
            windows: rows,
        }
    }

    #[test]
    fn a_tiny_run_resumes_with_its_statistics_and_exports_weights_that_load() {
        let cfg = Config::tiny();
        let mut opts = LatentTrainOptions::new(cfg.clone());
        opts.batch = 2;
        let make = || {
            let train = random_data(&cfg, 20, vec![0, 3, 6, 9, 12], 1);
            let valid = random_data(&cfg, 10, vec![0, 2], 2);
            LatentTrainee::new(&opts, train, valid).unwrap()
        };
        let (a, b) = super::super::run_loop::testing::runs_and_resumes("latent", make, |dir| {
            crate::latent::LatentModel::load(dir).map(drop)
        });
        assert_eq!(a.notes, b.notes);
        assert_eq!(a.notes["latent_mean"].as_array().map(Vec::len), Some(8));
    }
}
