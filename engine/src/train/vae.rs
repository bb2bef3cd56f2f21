//! Training the melody MusicVAE on Nottingham: the flat 2-bar model
//! ([`crate::models::music_vae`]) or the hierarchical 16-bar one ([`crate::models::hier_vae`]).
//!
//! Training windows: the melodies of the train split cut into windows of the model's length
//! (2 or 16 bars) every `hop_bars` bars ([`crate::data::melody`]), kept as one token buffer; every batch transposes each window by a
//! random shift within ±`max_shift` that keeps it inside the train split's pitch span.
//! Loss per sequence: summed cross-entropy over the steps (teacher forcing) +
//! β·max(KL, λ) (free bits λ in nats), β rising linearly from 0 to `beta` over
//! `kl_anneal_steps`. Validation once per epoch on the valid split's windows (hop 2 bars, not
//! transposed, z = μ): the same loss at full β, plus teacher-forced token accuracy.
//! Checkpoints and resume as the roll trainer ([`super::run_files`]).

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
use super::{format_duration, parse_duration};
use crate::data::melody::{MelodyWindows, melody_windows_of, transpose_tokens};
use crate::data::{self, Dataset, Split};
use crate::models::music_vae::{kl_divergence, reconstruction_loss};
use crate::vae::{VaeNet, VaeShape};

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct VaeTrainOptions {
    pub config: VaeShape,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Linear warm-up steps, then cosine decay to lr/10 over the budget.
    pub warmup: usize,
    pub budget: Duration,
    pub max_epochs: usize,
    pub max_steps: Option<usize>,
    /// Bars between the starts of training windows.
    pub hop_bars: u32,
    /// Cap on the batches of one epoch.
    pub epoch_steps: Option<usize>,
    /// Largest transposition in semitones, up or down.
    pub max_shift: i32,
    /// Largest β of the KL term.
    pub beta: f64,
    /// Free bits λ: the KL term is β·max(KL, λ) (nats per sequence).
    pub free_bits: f64,
    /// Steps over which β rises linearly from 0 to `beta`.
    pub kl_anneal_steps: usize,
    /// At most this many validation windows (evenly spread).
    pub val_windows: usize,
    pub log_every: usize,
    pub checkpoint_every: Duration,
    pub run_dir: PathBuf,
    /// `assets/vae`: model.safetensors, config.json, CARD.md, loss.png. `None`: run folder only.
    pub assets_dir: Option<PathBuf>,
    pub data_root: PathBuf,
    pub cache_dir: PathBuf,
    pub seed: u64,
    pub fresh: bool,
}

impl VaeTrainOptions {
    pub fn new(config: VaeShape) -> Self {
        Self {
            config,
            batch: 128,
            lr: 2e-3,
            weight_decay: 0.0,
            warmup: 100,
            budget: parse_duration("30m").expect("valid literal"),
            max_epochs: 1000,
            max_steps: None,
            hop_bars: 1,
            epoch_steps: None,
            max_shift: 6,
            beta: 0.2,
            free_bits: 12.0,
            kl_anneal_steps: 3000,
            val_windows: 2048,
            log_every: 25,
            checkpoint_every: Duration::from_secs(300),
            run_dir: PathBuf::from("artifacts/train/vae"),
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
pub struct VaeTrainState {
    pub config: Option<VaeShape>,
    pub step: usize,
    pub epoch: usize,
    pub batch_in_epoch: usize,
    pub elapsed_secs: f64,
    /// (step, mean training loss, mean reconstruction nats, mean KL nats) per log interval.
    pub train_loss: Vec<(usize, f64, f64, f64)>,
    /// Validation per epoch.
    pub val: Vec<ValidationPoint>,
    pub best_val: Option<f64>,
    /// Pitch span of the train split (transpositions stay inside it).
    pub pitch_span: (u8, u8),
    pub train_windows: usize,
    pub val_windows: usize,
    pub chord_windows: usize,
    pub two_four_windows: usize,
    pub skipped_bars: usize,
    pub batch: usize,
    pub finished: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ValidationPoint {
    pub step: usize,
    pub epoch: usize,
    /// Reconstruction + β·max(KL, λ) at full β, z = μ.
    pub loss: f64,
    pub reconstruction: f64,
    pub kl: f64,
    /// Teacher-forced token accuracy.
    pub accuracy: f64,
}

/// The outcome of [`train_vae`].
#[derive(Clone, Debug)]
pub struct VaeTrainReport {
    pub state: VaeTrainState,
    pub run_dir: PathBuf,
}

/// Loss terms of one batch.
pub struct LossTerms {
    /// `[]`, to backpropagate.
    pub loss: Tensor,
    pub reconstruction: f64,
    pub kl: f64,
}

/// `count` standard normal values from `rng` (Box–Muller).
pub fn normal_noise(rng: &mut impl Rng, count: usize) -> Vec<f32> {
    (0..count)
        .map(|_| {
            let u1: f32 = rng.random::<f32>().max(1e-7);
            let u2: f32 = rng.random();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect()
}

/// Loss of one batch of tokens `[batch, steps]` (u32) with noise `[batch, z]` (or z = μ).
pub fn batch_loss(
    vae: &VaeNet,
    tokens: &Tensor,
    noise: Option<&Tensor>,
    beta: f64,
    free_bits: f64,
) -> Result<LossTerms> {
    let out = vae.forward(tokens, noise)?;
    let recon = reconstruction_loss(&out.logits, tokens)?;
    let kl = kl_divergence(&out.mu, &out.log_var)?;
    let kl_term = kl.maximum(free_bits)?.affine(beta, 0.0)?;
    let loss = (&recon + kl_term)?;
    Ok(LossTerms {
        loss,
        reconstruction: recon.to_scalar::<f32>()? as f64,
        kl: kl.to_scalar::<f32>()? as f64,
    })
}

/// The batch of windows `idx`, each transposed by a random shift in ±`max_shift` that stays
/// in `span`: `[batch, steps]` u32.
fn make_batch(
    windows: &MelodyWindows,
    idx: &[usize],
    max_shift: i32,
    span: (u8, u8),
    rng: &mut impl Rng,
    device: &Device,
) -> Result<Tensor> {
    let mut flat = Vec::with_capacity(idx.len() * windows.steps);
    for &i in idx {
        let w = windows.window(i);
        let shift = rng.random_range(-max_shift..=max_shift);
        let tokens = transpose_tokens(w, shift, span.0, span.1).unwrap_or_else(|| w.to_vec());
        flat.extend(tokens.into_iter().map(u32::from));
    }
    Ok(Tensor::from_vec(flat, (idx.len(), windows.steps), device)?)
}

/// Validation loss terms and teacher-forced accuracy of `windows` (z = μ, no transposition).
pub fn validate(
    vae: &VaeNet,
    windows: &MelodyWindows,
    batch: usize,
    beta: f64,
    free_bits: f64,
) -> Result<(f64, f64, f64, f64)> {
    let device = Device::Cpu;
    let n = windows.len();
    let (mut loss, mut recon, mut kl, mut correct) = (0.0, 0.0, 0.0, 0usize);
    for start in (0..n).step_by(batch.max(1)) {
        let end = (start + batch).min(n);
        let idx: Vec<usize> = (start..end).collect();
        let tokens = make_batch(
            windows,
            &idx,
            0,
            (0, 127),
            &mut ChaCha8Rng::seed_from_u64(0),
            &device,
        )?;
        let out = vae.forward(&tokens, None)?;
        let r = reconstruction_loss(&out.logits, &tokens)?.to_scalar::<f32>()? as f64;
        let k = kl_divergence(&out.mu, &out.log_var)?.to_scalar::<f32>()? as f64;
        let predicted = out.logits.argmax(2)?;
        correct += predicted
            .eq(&tokens)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()? as usize;
        let m = (end - start) as f64;
        loss += (r + beta * k.max(free_bits)) * m;
        recon += r * m;
        kl += k * m;
    }
    let n_f = n.max(1) as f64;
    Ok((
        loss / n_f,
        recon / n_f,
        kl / n_f,
        correct as f64 / (n.max(1) * windows.steps) as f64,
    ))
}

/// Evenly spaced `count` windows of `windows`.
fn spread(windows: &MelodyWindows, count: usize) -> MelodyWindows {
    let n = windows.len();
    if n <= count {
        return windows.clone();
    }
    let mut out = MelodyWindows {
        tokens: Vec::with_capacity(count * windows.steps),
        ..windows.clone()
    };
    out.tokens.clear();
    for i in 0..count {
        out.tokens.extend_from_slice(windows.window(i * n / count));
    }
    out
}

fn learning_rate(opts: &VaeTrainOptions, step: usize, progress: f64) -> f64 {
    super::run_loop::learning_rate(opts.lr, opts.warmup, step, progress)
}

/// β at `step` of the KL annealing.
pub fn beta_at(opts: &VaeTrainOptions, step: usize) -> f64 {
    if opts.kl_anneal_steps == 0 {
        return opts.beta;
    }
    opts.beta * (step as f64 / opts.kl_anneal_steps as f64).min(1.0)
}

/// Train (or resume) the MusicVAE. Progress lines go to stderr.
pub fn train_vae(opts: &VaeTrainOptions) -> Result<VaeTrainReport> {
    let device = Device::Cpu;
    if opts.batch == 0 {
        bail!("batch must be at least 1");
    }
    std::fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("cannot create {}", opts.run_dir.display()))?;
    let files = CheckpointFiles::in_dir(&opts.run_dir);

    eprintln!("vae: loading Nottingham from {}", opts.data_root.display());
    let load =
        |split| data::load_cached(Dataset::Nottingham, split, &opts.data_root, &opts.cache_dir);
    let bars = opts.config.bars();
    let train_windows = melody_windows_of(&load(Split::Train)?, bars, opts.hop_bars)?;
    let val_windows = spread(
        &melody_windows_of(&load(Split::Valid)?, bars, 2)?,
        opts.val_windows,
    );
    if train_windows.is_empty() || val_windows.is_empty() {
        bail!(
            "no {bars}-bar 4/4 melody windows in Nottingham under {}",
            opts.data_root.display()
        );
    }
    let span = train_windows
        .pitch_span()
        .context("the train windows have no notes")?;
    eprintln!(
        "vae: {} train windows of {bars} bars (hop {} bar(s); {} from 2/4 bars, {} with chords reduced to the top note, {} bars of other meters skipped), {} valid windows; pitches {}..{}",
        train_windows.len(),
        opts.hop_bars,
        train_windows.two_four_windows,
        train_windows.chord_windows,
        train_windows.skipped_bars,
        val_windows.len(),
        span.0,
        span.1
    );

    let mut cfg = opts.config.clone();
    let resume = !opts.fresh && files.exist();
    let state: VaeTrainState = if resume {
        let state: VaeTrainState = serde_json::from_str(&std::fs::read_to_string(&files.state)?)
            .with_context(|| format!("{} is not a training state", files.state.display()))?;
        let saved = state.config.clone().context("state.json has no config")?;
        if saved != cfg {
            bail!(
                "{} holds a run of another model shape; pass --fresh or another run folder",
                opts.run_dir.display()
            );
        }
        cfg = saved;
        eprintln!(
            "vae: resuming at step {} (epoch {}, {} used)",
            state.step,
            state.epoch + 1,
            format_duration(Duration::from_secs_f64(state.elapsed_secs))
        );
        state
    } else {
        VaeTrainState {
            config: Some(cfg.clone()),
            pitch_span: span,
            train_windows: train_windows.len(),
            val_windows: val_windows.len(),
            chord_windows: train_windows.chord_windows,
            two_four_windows: train_windows.two_four_windows,
            skipped_bars: train_windows.skipped_bars,
            batch: opts.batch,
            ..VaeTrainState::default()
        }
    };
    let mut state = state;

    let mut varmap = VarMap::new();
    let vae = VaeNet::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
    let mut opt = AdamW::new(&varmap, opts.lr, opts.weight_decay)?;
    if resume {
        files.load(&mut varmap, &mut opt, state.step)?;
    }
    let params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    eprintln!(
        "vae: {params} parameters, config {}",
        serde_json::to_string(&cfg)?
    );

    let started = Instant::now();
    let base_elapsed = state.elapsed_secs;
    let used = || base_elapsed + started.elapsed().as_secs_f64();
    let steps_per_epoch = (train_windows.len() / opts.batch)
        .min(opts.epoch_steps.unwrap_or(usize::MAX))
        .max(1);
    let budget = opts.budget.as_secs_f64();
    let mut last_checkpoint = Instant::now();
    let mut window = (0.0, 0.0, 0.0, 0usize);
    let mut step_time = None::<f64>;
    let mut val_seconds = 0.0f64;

    'epochs: while state.epoch < opts.max_epochs {
        let mut order: Vec<usize> = (0..train_windows.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            opts.seed.wrapping_add(state.epoch as u64),
        ));
        while state.batch_in_epoch < steps_per_epoch {
            let now = used();
            if now + val_seconds.max(step_time.unwrap_or(0.0) * 10.0) >= budget
                || opts.max_steps.is_some_and(|m| state.step >= m)
            {
                break 'epochs;
            }
            let tick = Instant::now();
            let mut rng = ChaCha8Rng::seed_from_u64(
                opts.seed ^ (state.step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let idx =
                &order[state.batch_in_epoch * opts.batch..(state.batch_in_epoch + 1) * opts.batch];
            let tokens = make_batch(&train_windows, idx, opts.max_shift, span, &mut rng, &device)?;
            let noise = Tensor::from_vec(
                normal_noise(&mut rng, opts.batch * cfg.z_dim()),
                (opts.batch, cfg.z_dim()),
                &device,
            )?;
            let progress = (now / budget.max(1.0)).max(
                opts.max_steps
                    .map_or(0.0, |m| state.step as f64 / m.max(1) as f64),
            );
            opt.lr = learning_rate(opts, state.step, progress);
            let beta = beta_at(opts, state.step);
            // On a pool thread, so that its parallel ops do not each wake two threads.
            let terms = crate::nn::in_pool(|| -> Result<_> {
                let terms = batch_loss(&vae, &tokens, Some(&noise), beta, opts.free_bits)?;
                opt.backward_step(&terms.loss)?;
                Ok(terms)
            })?;
            let loss = terms.loss.to_scalar::<f32>()? as f64;
            if !loss.is_finite() {
                bail!("training loss became {loss} at step {}", state.step);
            }
            state.step += 1;
            state.batch_in_epoch += 1;
            window.0 += loss;
            window.1 += terms.reconstruction;
            window.2 += terms.kl;
            window.3 += 1;
            let dt = tick.elapsed().as_secs_f64();
            step_time = Some(step_time.map_or(dt, |s| 0.95 * s + 0.05 * dt));

            if state.step.is_multiple_of(opts.log_every.max(1)) {
                let k = window.3 as f64;
                state
                    .train_loss
                    .push((state.step, window.0 / k, window.1 / k, window.2 / k));
                let used = used();
                let left_epochs = ((opts.max_epochs - state.epoch) * steps_per_epoch
                    - state.batch_in_epoch) as f64
                    * step_time.unwrap_or(0.0);
                let left_steps = opts.max_steps.map_or(f64::INFINITY, |m| {
                    m.saturating_sub(state.step) as f64 * step_time.unwrap_or(0.0)
                });
                let eta = (budget - used).max(0.0).min(left_epochs).min(left_steps);
                eprintln!(
                    "vae: {} epoch {} batch {}/{} step {} loss {:.3} (recon {:.3}, KL {:.2}, β {:.3}) lr {:.1e} {:.0} seq/s",
                    progress_bar(used, eta),
                    state.epoch + 1,
                    state.batch_in_epoch,
                    steps_per_epoch,
                    state.step,
                    window.0 / k,
                    window.1 / k,
                    window.2 / k,
                    beta,
                    opt.lr,
                    opts.batch as f64 / step_time.unwrap_or(1.0).max(1e-9),
                );
                window = (0.0, 0.0, 0.0, 0);
            }
            if last_checkpoint.elapsed() >= opts.checkpoint_every {
                state.elapsed_secs = used();
                files.save(&varmap, &opt, &state)?;
                last_checkpoint = Instant::now();
            }
        }
        let vt = Instant::now();
        let val = validate(&vae, &val_windows, 256, opts.beta, opts.free_bits)?;
        val_seconds = vt.elapsed().as_secs_f64();
        state.epoch += 1;
        state.batch_in_epoch = 0;
        state.elapsed_secs = used();
        end_of_epoch(opts, &cfg, &varmap, &mut state, val)?;
        files.save(&varmap, &opt, &state)?;
        last_checkpoint = Instant::now();
    }
    if state.batch_in_epoch > 0 {
        state.epoch += 1;
        state.batch_in_epoch = 0;
        let val = validate(&vae, &val_windows, 256, opts.beta, opts.free_bits)?;
        state.elapsed_secs = used();
        end_of_epoch(opts, &cfg, &varmap, &mut state, val)?;
    }
    state.elapsed_secs = used();
    state.finished = true;
    files.save(&varmap, &opt, &state)?;
    if let Some(dir) = &opts.assets_dir
        && dir.is_dir()
    {
        write_card(dir, &cfg, &state, opts, None)?;
    }
    eprintln!(
        "vae: done: {} steps, {} epochs, {} wall time, best validation loss {:.4}",
        state.step,
        state.epoch,
        format_duration(Duration::from_secs_f64(state.elapsed_secs)),
        state.best_val.unwrap_or(f64::NAN)
    );
    Ok(VaeTrainReport {
        state,
        run_dir: opts.run_dir.clone(),
    })
}

fn end_of_epoch(
    opts: &VaeTrainOptions,
    cfg: &VaeShape,
    varmap: &VarMap,
    state: &mut VaeTrainState,
    (loss, reconstruction, kl, accuracy): (f64, f64, f64, f64),
) -> Result<()> {
    state.val.push(ValidationPoint {
        step: state.step,
        epoch: state.epoch,
        loss,
        reconstruction,
        kl,
        accuracy,
    });
    let best = state.best_val.is_none_or(|b| loss < b);
    eprintln!(
        "vae: epoch {} validation loss {loss:.3} (recon {reconstruction:.3}, KL {kl:.2}, teacher-forced accuracy {accuracy:.4}){} ({} elapsed)",
        state.epoch,
        if best { " (best)" } else { "" },
        format_duration(Duration::from_secs_f64(state.elapsed_secs))
    );
    let train_pts: Vec<(f64, f64)> = state.train_loss.iter().map(|p| (p.0 as f64, p.1)).collect();
    let recon_pts: Vec<(f64, f64)> = state.train_loss.iter().map(|p| (p.0 as f64, p.2)).collect();
    let val_pts: Vec<(f64, f64)> = state.val.iter().map(|v| (v.step as f64, v.loss)).collect();
    let png = opts.run_dir.join("loss.png");
    loss_curve(
        &png,
        &format!("MusicVAE {}: loss per sequence (nats)", cfg.describe()),
        "optimizer step",
        &[
            Series {
                name: "train loss (recon + β·max(KL, λ))",
                points: &train_pts,
                color: plotters::style::RGBColor(40, 90, 200),
            },
            Series {
                name: "train reconstruction",
                points: &recon_pts,
                color: plotters::style::RGBColor(60, 170, 80),
            },
            Series {
                name: "validation loss (full β, z = μ)",
                points: &val_pts,
                color: plotters::style::RGBColor(220, 60, 40),
            },
        ],
    )?;
    if best {
        state.best_val = Some(loss);
        export_best(varmap, &opts.run_dir, opts.assets_dir.as_deref(), cfg)?;
    }
    if let Some(dir) = export_loss_curve(&png, opts.assets_dir.as_deref())? {
        write_card(dir, cfg, state, opts, None)?;
    }
    Ok(())
}

/// The model card; `accuracy_table` (markdown) is appended when given.
pub fn write_card(
    dir: &Path,
    cfg: &VaeShape,
    state: &VaeTrainState,
    opts: &VaeTrainOptions,
    accuracy_table: Option<&str>,
) -> Result<()> {
    let rows: String = state
        .val
        .iter()
        .map(|v| {
            format!(
                "| {} | {} | {:.3} | {:.3} | {:.2} | {:.4} |\n",
                v.epoch, v.step, v.loss, v.reconstruction, v.kl, v.accuracy
            )
        })
        .collect();
    let card = format!(
        "# MusicVAE, {title} (default weights)\n\n\
         {about}\n\n\
         - Status: {status}\n\
         - Data: Nottingham train split melodies (the melody track; chords reduced to their top\n  \
           note in {chords} windows), {train} windows of {bars} bars of 4/4 starting every {hop} bar(s)\n  \
           ({two_four} of them 2/4 bars read in pairs as 4/4 bars; {skipped} bars of other meters —\n  \
           3/4, 6/8, … — skipped), each batch transposed by a random shift within ±{shift}\n  \
           semitones that stays inside the split's pitch span {lo}–{hi}; validation on {val}\n  \
           windows of the valid split (hop 2 bars).\n\
         - Shape: {shape}.\n\
         - Loss: summed cross-entropy over the {seq_steps} steps + β·max(KL, λ), β annealed linearly from\n  \
           0 to {beta} over {anneal} steps, free bits λ = {fb} nats.\n\
         - Training: AdamW (lr {lr}, warm-up {warm} steps, cosine decay to lr/10 over the {budget}\n  \
           budget), batch {batch}, {steps} steps, {epochs} epoch(s), {wall} wall time on a 2-core\n  \
           CPU, seed {seed}.\n\
         - Best validation loss (nats per sequence, full β, z = μ): {best:.3}\n\n\
         | epoch | step | validation loss | reconstruction | KL | teacher-forced accuracy |\n\
         |---|---|---|---|---|---|\n{rows}\n\
         Loss curve: `loss.png`. Reproduce: `cargo xtask train vae{reproduce}`.\n{acc}",
        title = cfg.describe(),
        about = match cfg {
            VaeShape::Flat(_) =>
                "The flat MusicVAE of Roberts et al. (2018) for 2-bar melodies, scaled down for a 2-core\n\
                 CPU: `engine/src/models/music_vae.rs` (bidirectional LSTM encoder, autoregressive LSTM\n\
                 decoder conditioned on z). Tokens: 32 sixteenths × 130 classes (128 note-ons, rest,\n\
                 hold), `engine/src/data/melody.rs`.",
            VaeShape::Hierarchical(_) =>
                "The hierarchical MusicVAE of Roberts et al. (2018) for 16-bar melodies, scaled down for\n\
                 a 2-core CPU: `engine/src/models/hier_vae.rs` (a bidirectional bar encoder and a\n\
                 bidirectional encoder over the bar summaries; a conductor LSTM emits one embedding per\n\
                 bar and a bar decoder LSTM plays each bar from it). Tokens: 256 sixteenths × 130\n\
                 classes (128 note-ons, rest, hold), `engine/src/data/melody.rs`.",
        },
        bars = cfg.bars(),
        seq_steps = cfg.steps(),
        shape = match cfg {
            VaeShape::Flat(c) => format!(
                "encoder 2 × {} LSTM units, decoder {} units, z {}",
                c.encoder_hidden, c.decoder_hidden, c.z_dim
            ),
            VaeShape::Hierarchical(c) => format!(
                "bar encoder 2 × {} LSTM units, song encoder 2 × {}, z {}, conductor {} units \
                 (bar embeddings of {}), bar decoder {} units",
                c.bar_encoder_hidden,
                c.encoder_hidden,
                c.z_dim,
                c.conductor_hidden,
                c.bar_embedding,
                c.decoder_hidden
            ),
        },
        reproduce = if cfg.is_hierarchical() {
            " --config hier"
        } else {
            ""
        },
        status = if state.finished {
            "finished"
        } else {
            "training in progress (these are the best weights so far)"
        },
        chords = state.chord_windows,
        train = state.train_windows,
        hop = opts.hop_bars,
        two_four = state.two_four_windows,
        skipped = state.skipped_bars,
        shift = opts.max_shift,
        lo = crate::music::pitch_name(state.pitch_span.0),
        hi = crate::music::pitch_name(state.pitch_span.1),
        val = state.val_windows,
        beta = opts.beta,
        anneal = opts.kl_anneal_steps,
        fb = opts.free_bits,
        lr = opts.lr,
        warm = opts.warmup,
        budget = format_duration(opts.budget),
        batch = state.batch,
        steps = state.step,
        epochs = state.epoch,
        wall = format_duration(Duration::from_secs_f64(state.elapsed_secs)),
        seed = opts.seed,
        best = state.best_val.unwrap_or(f64::NAN),
        acc = accuracy_table.map(|t| format!("\n{t}")).unwrap_or_default(),
    );
    std::fs::write(dir.join("CARD.md"), card)
        .with_context(|| format!("cannot write {}", dir.join("CARD.md").display()))
}

/// Seconds per training step (forward, backward, AdamW) of `cfg` at `batch` on random
/// melodies, averaged over `iters` after one warm-up step.
pub fn time_vae_step(cfg: &VaeShape, batch: usize, iters: usize) -> Result<f64> {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let vae = VaeNet::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
    let steps = cfg.steps();
    let mut opt = AdamW::new(&varmap, 1e-3, 0.0)?;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let flat: Vec<u32> = (0..batch * steps)
        .map(|_| rng.random_range(55..=130u32).min(129))
        .collect();
    let tokens = Tensor::from_vec(flat, (batch, steps), &device)?;
    let noise = Tensor::from_vec(
        normal_noise(&mut rng, batch * cfg.z_dim()),
        (batch, cfg.z_dim()),
        &device,
    )?;
    let mut step = || -> Result<()> {
        crate::nn::in_pool(|| {
            let terms = batch_loss(&vae, &tokens, Some(&noise), 0.2, 1.0)?;
            opt.backward_step(&terms.loss)
        })
    };
    step()?;
    let tick = Instant::now();
    for _ in 0..iters {
        step()?;
    }
    Ok(tick.elapsed().as_secs_f64() / iters.max(1) as f64)
}
