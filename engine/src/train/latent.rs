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
//! valid split's sequences (no shift) at fixed t and noise. Checkpoints and resume as the other
//! trainers ([`super::run_files`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::adamw::AdamW;
use super::plot::{Series, loss_curve};
use super::run_files::{CheckpointFiles, export_best, export_loss_curve, progress_bar};
use super::vae::normal_noise;
use super::{format_duration, parse_duration};
use crate::data::melody::transpose_tokens;
use crate::data::{self, Dataset, Split};
use crate::latent::{VpSde, window_runs};
use crate::models::latent_score::{Config, LatentScore, mse};
use crate::vae::MelodyVae;

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct LatentTrainOptions {
    pub config: Config,
    /// The MusicVAE whose latents are modelled (`assets/vae`).
    pub vae_dir: PathBuf,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup: usize,
    pub budget: Duration,
    pub max_epochs: usize,
    pub max_steps: Option<usize>,
    pub max_shift: i32,
    /// Smallest diffusion time of training and sampling.
    pub eps: f64,
    pub log_every: usize,
    pub checkpoint_every: Duration,
    pub run_dir: PathBuf,
    pub assets_dir: Option<PathBuf>,
    pub data_root: PathBuf,
    pub cache_dir: PathBuf,
    pub seed: u64,
    pub fresh: bool,
}

impl LatentTrainOptions {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            vae_dir: crate::vae::default_weights_dir(),
            batch: 128,
            lr: 5e-4,
            weight_decay: 0.0,
            warmup: 200,
            budget: parse_duration("30m").expect("valid literal"),
            max_epochs: 100_000,
            max_steps: None,
            max_shift: 5,
            eps: 1e-3,
            log_every: 50,
            checkpoint_every: Duration::from_secs(300),
            run_dir: PathBuf::from("artifacts/train/latent"),
            assets_dir: None,
            data_root: data::default_data_root(),
            cache_dir: data::default_cache_dir(),
            seed: 0,
            fresh: false,
        }
    }
}

/// What a run has done so far (`state.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LatentTrainState {
    pub config: Option<Config>,
    pub step: usize,
    pub epoch: usize,
    pub elapsed_secs: f64,
    /// (step, mean training loss) per log interval.
    pub train_loss: Vec<(usize, f64)>,
    /// (step, epoch, validation loss) per epoch.
    pub val: Vec<(usize, usize, f64)>,
    pub best_val: Option<f64>,
    pub train_sequences: usize,
    pub val_sequences: usize,
    pub train_windows: usize,
    pub batch: usize,
    pub finished: bool,
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

fn learning_rate(opts: &LatentTrainOptions, step: usize, progress: f64) -> f64 {
    super::run_loop::learning_rate(opts.lr, opts.warmup, step, progress)
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

/// Train (or resume) the score network. Progress goes to stderr.
pub fn train_latent(opts: &LatentTrainOptions) -> Result<LatentTrainState> {
    if opts.batch == 0 {
        bail!("batch must be at least 1");
    }
    std::fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("cannot create {}", opts.run_dir.display()))?;
    let files = CheckpointFiles::in_dir(&opts.run_dir);
    let vae = MelodyVae::load(&opts.vae_dir)?;
    let mut cfg = opts.config.clone();
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
    let span = crate::data::melody::melody_windows(&train_songs, 2)?
        .pitch_span()
        .context("the train split has no melody")?;
    let shifts: Vec<i32> = (-opts.max_shift..=opts.max_shift).collect();
    let t0 = Instant::now();
    let train = encode_runs(&vae, &train_songs, &shifts, span, cfg.positions)?;
    let valid = encode_runs(&vae, &valid_songs, &[0], (0, 127), cfg.positions)?;
    if train.starts.is_empty() || valid.starts.is_empty() {
        bail!(
            "no 16-bar 4/4 melodies in Nottingham under {}",
            opts.data_root.display()
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

    let resume = !opts.fresh && files.exist();
    let mut state: LatentTrainState = if resume {
        let state: LatentTrainState = serde_json::from_str(&std::fs::read_to_string(&files.state)?)
            .with_context(|| format!("{} is not a training state", files.state.display()))?;
        let saved = state.config.clone().context("state.json has no config")?;
        let shape = |c: &Config| (c.z_dim, c.positions, c.d_model, c.heads, c.layers);
        if shape(&saved) != shape(&cfg) {
            bail!(
                "{} holds a run of another model shape; pass --fresh or another run folder",
                opts.run_dir.display()
            );
        }
        cfg = saved;
        eprintln!(
            "latent: resuming at step {} (epoch {})",
            state.step,
            state.epoch + 1
        );
        state
    } else {
        let (mean, std) = table_stats(&train.table)?;
        cfg.latent_mean = mean;
        cfg.latent_std = std;
        LatentTrainState {
            config: Some(cfg.clone()),
            train_sequences: train.starts.len(),
            val_sequences: valid.starts.len(),
            train_windows: train.windows,
            batch: opts.batch,
            ..LatentTrainState::default()
        }
    };
    let standardize = |t: &Tensor| crate::models::latent_score::standardize(&cfg, t);
    let train_table = standardize(&train.table)?;
    let valid_table = standardize(&valid.table)?;

    let mut varmap = VarMap::new();
    let model = LatentScore::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    let mut opt = AdamW::new(&varmap, opts.lr, opts.weight_decay)?;
    if resume {
        files.load(&mut varmap, &mut opt, state.step)?;
    }
    let params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    eprintln!(
        "latent: {params} parameters, d_model {}, {} layers",
        cfg.d_model, cfg.layers
    );

    let started = Instant::now();
    let base_elapsed = state.elapsed_secs;
    let used = || base_elapsed + started.elapsed().as_secs_f64();
    let budget = opts.budget.as_secs_f64();
    let steps_per_epoch = (train.starts.len() / opts.batch).max(1);
    let mut last_checkpoint = Instant::now();
    let (mut window_loss, mut window_n) = (0.0, 0usize);
    let mut step_time = None::<f64>;
    let n = opts.batch * cfg.positions * cfg.z_dim;
    'epochs: while state.epoch < opts.max_epochs {
        let mut order = train.starts.clone();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            opts.seed.wrapping_add(state.epoch as u64),
        ));
        for batch in order.chunks_exact(opts.batch).take(steps_per_epoch) {
            let now = used();
            if now + step_time.unwrap_or(0.0) * 20.0 >= budget
                || opts.max_steps.is_some_and(|m| state.step >= m)
            {
                break 'epochs;
            }
            let tick = Instant::now();
            let mut rng = ChaCha8Rng::seed_from_u64(
                opts.seed ^ (state.step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let x0 = gather(&train_table, batch, cfg.positions)?;
            let t: Vec<f32> = (0..opts.batch)
                .map(|_| rng.random_range(opts.eps as f32..1.0))
                .collect();
            let noise = normal_noise(&mut rng, n);
            let progress = (now / budget.max(1.0)).max(
                opts.max_steps
                    .map_or(0.0, |m| state.step as f64 / m.max(1) as f64),
            );
            opt.lr = learning_rate(opts, state.step, progress);
            let loss = dsm_step(&model, &mut opt, &x0, &t, &noise)?;
            if !loss.is_finite() {
                bail!("training loss became {loss} at step {}", state.step);
            }
            state.step += 1;
            window_loss += loss;
            window_n += 1;
            let dt = tick.elapsed().as_secs_f64();
            step_time = Some(step_time.map_or(dt, |s| 0.95 * s + 0.05 * dt));
            if state.step.is_multiple_of(opts.log_every.max(1)) {
                state
                    .train_loss
                    .push((state.step, window_loss / window_n as f64));
                let used = used();
                let left_steps = opts.max_steps.map_or(f64::INFINITY, |m| {
                    m.saturating_sub(state.step) as f64 * step_time.unwrap_or(0.0)
                });
                eprintln!(
                    "latent: {} epoch {} step {} loss {:.4} lr {:.1e} {:.0} seq/s",
                    progress_bar(used, (budget - used).max(0.0).min(left_steps)),
                    state.epoch + 1,
                    state.step,
                    window_loss / window_n as f64,
                    opt.lr,
                    opts.batch as f64 / step_time.unwrap_or(1.0).max(1e-9)
                );
                (window_loss, window_n) = (0.0, 0);
            }
            if last_checkpoint.elapsed() >= opts.checkpoint_every {
                state.elapsed_secs = used();
                files.save(&varmap, &opt, &state)?;
                last_checkpoint = Instant::now();
            }
        }
        state.epoch += 1;
        let val = validate(&model, &valid_table, &valid.starts)?;
        state.elapsed_secs = used();
        end_of_epoch(opts, &cfg, &varmap, &mut state, val)?;
        files.save(&varmap, &opt, &state)?;
        last_checkpoint = Instant::now();
    }
    if state.val.last().is_none_or(|v| v.0 != state.step) {
        // The budget or --max-steps ended an epoch early: validate what was trained.
        state.epoch += 1;
        let val = validate(&model, &valid_table, &valid.starts)?;
        state.elapsed_secs = used();
        end_of_epoch(opts, &cfg, &varmap, &mut state, val)?;
    }
    state.elapsed_secs = used();
    state.finished = true;
    files.save(&varmap, &opt, &state)?;
    if let Some(dir) = opts.assets_dir.as_deref().filter(|d| d.is_dir()) {
        write_card(dir, &cfg, &state, opts, None)?;
    }
    eprintln!(
        "latent: done: {} steps, {} epochs, {}, best validation loss {:.4}",
        state.step,
        state.epoch,
        format_duration(Duration::from_secs_f64(state.elapsed_secs)),
        state.best_val.unwrap_or(f64::NAN)
    );
    Ok(state)
}

fn end_of_epoch(
    opts: &LatentTrainOptions,
    cfg: &Config,
    varmap: &VarMap,
    state: &mut LatentTrainState,
    val: f64,
) -> Result<()> {
    state.val.push((state.step, state.epoch, val));
    let best = state.best_val.is_none_or(|b| val < b);
    // Epochs are short: report every 10th and every best.
    if best || state.epoch.is_multiple_of(10) {
        eprintln!(
            "latent: epoch {} validation loss {val:.4}{} ({} elapsed)",
            state.epoch,
            if best { " (best)" } else { "" },
            format_duration(Duration::from_secs_f64(state.elapsed_secs))
        );
    }
    let train_pts: Vec<(f64, f64)> = state.train_loss.iter().map(|p| (p.0 as f64, p.1)).collect();
    let val_pts: Vec<(f64, f64)> = state.val.iter().map(|v| (v.0 as f64, v.2)).collect();
    let png = opts.run_dir.join("loss.png");
    loss_curve(
        &png,
        "Latent score model: denoising score matching loss (ε MSE)",
        "optimizer step",
        &[
            Series {
                name: "train",
                points: &train_pts,
                color: plotters::style::RGBColor(40, 90, 200),
            },
            Series {
                name: "validation (fixed t, noise)",
                points: &val_pts,
                color: plotters::style::RGBColor(220, 60, 40),
            },
        ],
    )?;
    if best {
        state.best_val = Some(val);
        export_best(varmap, &opts.run_dir, opts.assets_dir.as_deref(), cfg)?;
    }
    if let Some(dir) = export_loss_curve(&png, opts.assets_dir.as_deref())? {
        write_card(dir, cfg, state, opts, None)?;
    }
    Ok(())
}

/// The model card; `eval_table` (markdown) is appended when given.
pub fn write_card(
    dir: &Path,
    cfg: &Config,
    state: &LatentTrainState,
    opts: &LatentTrainOptions,
    eval_table: Option<&str>,
) -> Result<()> {
    let rows: String = state
        .val
        .iter()
        .filter(|v| v.1 % 10 == 0 || Some(v.2) == state.best_val || v.1 == state.epoch)
        .map(|v| format!("| {} | {} | {:.4} |\n", v.1, v.0, v.2))
        .collect();
    let mut text = format!(
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
        state.train_windows,
        state.train_sequences,
        state.val_sequences,
        cfg.d_model,
        cfg.heads,
        cfg.layers,
        cfg.z_dim,
        cfg.beta_min,
        cfg.beta_max,
        opts.eps,
        opts.lr,
        opts.warmup,
        state.batch,
        state.step,
        state.epoch,
        format_duration(Duration::from_secs_f64(state.elapsed_secs)),
        opts.seed,
        state.best_val.unwrap_or(f64::NAN),
    );
    if let Some(table) = eval_table {
        text.push_str("\n## Evaluation\n\n");
        text.push_str(table);
    }
    std::fs::write(dir.join("CARD.md"), text)
        .with_context(|| format!("cannot write {}/CARD.md", dir.display()))
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
