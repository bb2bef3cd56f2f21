//! Training the melody MusicVAE on Nottingham: the flat 2-bar model
//! ([`crate::models::music_vae`]) or the hierarchical 16-bar one ([`crate::models::hier_vae`]).
//!
//! Training windows: the melodies of the train split cut into windows of the model's length
//! (2 or 16 bars) every `hop_bars` bars ([`crate::music::melody`]), kept as one token buffer; every batch transposes each window by a
//! random shift within ±`max_shift` that keeps it inside the train split's pitch span.
//! Loss per sequence: summed cross-entropy over the steps (teacher forcing) +
//! β·max(KL, λ) (free bits λ in nats), β rising linearly from 0 to `beta` over
//! `kl_anneal_steps`. Validation once per epoch on the valid split's windows (hop 2 bars, not
//! transposed, z = μ): the same loss at full β, plus teacher-forced token accuracy.
//! The run goes through the shared loop ([`super::run_loop`]): checkpoints, resume, the card.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::adamw::AdamW;
use super::run_loop::{
    EpochOrder, LoopOptions, LoopState, Measured, Trainee, derefs_to_run, new_model, run_reported,
    step_rng, steps_per_epoch,
};
use crate::data::melody_windows_of;
use crate::data::{self, Dataset, Split};
use crate::models::music_vae::{kl_divergence, reconstruction_loss};
use crate::music::melody::{MelodyWindows, transpose_tokens};
use crate::nn::random::normal_noise;
use crate::vae::{VaeNet, VaeShape};

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct VaeTrainOptions {
    pub config: VaeShape,
    pub batch: usize,
    pub weight_decay: f64,
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
    pub data_root: PathBuf,
    pub cache_dir: PathBuf,
    pub seed: u64,
    /// Learning rate (linear warm-up, then cosine decay to lr/10 over the budget), budget,
    /// checkpoints, the run folder and the export folder (model.safetensors, config.json,
    /// CARD.md, loss.png; `None`: run folder only). `bandmate train vae` exports to
    /// `artifacts/vae` (`artifacts/vae16` for the 16-bar model), to the shipped `assets/vae`
    /// (`assets/vae16`) only with `--ship` (or to `--assets DIR`).
    pub run: LoopOptions,
}

derefs_to_run!(VaeTrainOptions);

impl VaeTrainOptions {
    pub fn new(config: VaeShape) -> Self {
        Self {
            config,
            batch: 128,
            weight_decay: 0.0,
            hop_bars: 1,
            epoch_steps: None,
            max_shift: 6,
            beta: 0.2,
            free_bits: 12.0,
            kl_anneal_steps: 3000,
            val_windows: 2048,
            data_root: data::default_data_root(),
            cache_dir: data::default_cache_dir(),
            seed: 0,
            run: LoopOptions {
                warmup: 100,
                ..LoopOptions::new("vae", 2e-3, "30m")
            },
        }
    }
}

/// The outcome of [`train_vae`].
pub use super::run_loop::TrainReport as VaeTrainReport;

/// Loss terms of one batch.
pub struct LossTerms {
    /// `[]`, to backpropagate.
    pub loss: Tensor,
    pub reconstruction: f64,
    pub kl: f64,
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

/// β at `step` of the KL annealing.
pub fn beta_at(opts: &VaeTrainOptions, step: usize) -> f64 {
    if opts.kl_anneal_steps == 0 {
        return opts.beta;
    }
    opts.beta * (step as f64 / opts.kl_anneal_steps as f64).min(1.0)
}

/// A MusicVAE in training (see [`train_vae`]).
struct VaeTrainee {
    opts: VaeTrainOptions,
    cfg: VaeShape,
    train: MelodyWindows,
    val: MelodyWindows,
    /// Pitch span of the train split (transpositions stay inside it).
    span: (u8, u8),
    title: String,
    varmap: VarMap,
    vae: VaeNet,
    opt: AdamW,
    order: EpochOrder,
}

impl VaeTrainee {
    fn new(opts: &VaeTrainOptions, train: MelodyWindows, val: MelodyWindows) -> Result<Self> {
        let span = train
            .pitch_span()
            .context("the train windows have no notes")?;
        let cfg = opts.config.clone();
        eprintln!("vae: config {}", serde_json::to_string(&cfg)?);
        let (varmap, vae, opt) = new_model("vae", opts.run.lr, opts.weight_decay, |vb| {
            VaeNet::new(&cfg, vb)
        })?;
        Ok(Self {
            opts: opts.clone(),
            title: format!("MusicVAE {}: loss per sequence (nats)", cfg.describe()),
            cfg,
            train,
            val,
            span,
            varmap,
            vae,
            opt,
            order: EpochOrder::default(),
        })
    }
}

impl Trainee for VaeTrainee {
    fn record(&self) -> serde_json::Value {
        let w = &self.train;
        serde_json::json!({
            "config": self.cfg,
            "pitch_span": self.span,
            "train_windows": w.len(),
            "val_windows": self.val.len(),
            "chord_windows": w.chord_windows,
            "two_four_windows": w.two_four_windows,
            "skipped_bars": w.skipped_bars,
            "batch": self.opts.batch,
        })
    }

    fn steps_per_epoch(&self) -> usize {
        steps_per_epoch(self.train.len(), self.opts.batch, self.opts.epoch_steps)
    }

    /// The loss, and its reconstruction and KL terms.
    fn step(&mut self, epoch: usize, batch: usize, step: usize, lr: f64) -> Result<Measured> {
        let (opts, device) = (&self.opts, Device::Cpu);
        let idx = self
            .order
            .batch(self.train.len(), opts.seed, epoch, batch, opts.batch)?;
        let mut rng = step_rng(opts.seed, step);
        let tokens = make_batch(
            &self.train,
            idx,
            opts.max_shift,
            self.span,
            &mut rng,
            &device,
        )?;
        let z = self.cfg.z_dim();
        let noise = Tensor::from_vec(
            normal_noise(&mut rng, opts.batch * z),
            (opts.batch, z),
            &device,
        )?;
        self.opt.lr = lr;
        let beta = beta_at(opts, step);
        let (vae, opt) = (&self.vae, &mut self.opt);
        // On a pool thread, so that its parallel ops do not each wake two threads.
        let terms = crate::nn::in_pool(|| -> Result<_> {
            let terms = batch_loss(vae, &tokens, Some(&noise), beta, opts.free_bits)?;
            opt.backward_step(&terms.loss)?;
            Ok(terms)
        })?;
        Ok(Measured {
            loss: terms.loss.to_scalar::<f32>()? as f64,
            extra: vec![terms.reconstruction, terms.kl],
        })
    }

    /// The loss at full β with z = μ, its reconstruction and KL terms, and the teacher-forced
    /// accuracy.
    fn validate(&mut self) -> Result<Measured> {
        let (opts, val) = (&self.opts, &self.val);
        let (loss, recon, kl, accuracy) = validate(&self.vae, val, 256, opts.beta, opts.free_bits)?;
        Ok(Measured {
            loss,
            extra: vec![recon, kl, accuracy],
        })
    }

    fn weights_and_optimizer(&mut self) -> (&mut VarMap, &mut AdamW) {
        (&mut self.varmap, &mut self.opt)
    }

    fn curve_names(&self) -> (&str, &str) {
        (&self.title, "validation loss (full β, z = μ)")
    }

    fn extra_names(&self) -> &[&str] {
        &["recon", "KL", "teacher-forced accuracy"]
    }

    fn train_curve_name(&self) -> &str {
        "train loss (recon + β·max(KL, λ))"
    }

    fn extra_curves(&self, state: &LoopState) -> Vec<(String, Vec<(f64, f64)>)> {
        let recon = state
            .train_loss
            .iter()
            .zip(&state.train_extra)
            .filter_map(|(&(step, _), extra)| Some((step as f64, *extra.first()?)))
            .collect();
        vec![("train reconstruction".into(), recon)]
    }

    fn card(&self, state: &LoopState, opts: &LoopOptions) -> String {
        card(self, state, opts)
    }
}

/// Train (or resume) the MusicVAE. Progress lines go to stderr.
pub fn train_vae(opts: &VaeTrainOptions) -> Result<VaeTrainReport> {
    if opts.batch == 0 {
        bail!("batch must be at least 1");
    }
    eprintln!("vae: loading Nottingham from {}", opts.data_root.display());
    let load =
        |split| data::load_cached(Dataset::Nottingham, split, &opts.data_root, &opts.cache_dir);
    let bars = opts.config.bars();
    let train_windows = melody_windows_of(&load(Split::Train)?, bars, opts.hop_bars)?;
    let val_windows = spread(
        &melody_windows_of(&load(Split::Valid)?, bars, 2)?,
        opts.val_windows,
    );
    if train_windows.len() < opts.batch || val_windows.is_empty() {
        bail!(
            "too few {bars}-bar 4/4 melody windows in Nottingham under {} ({} train, {} valid)",
            opts.data_root.display(),
            train_windows.len(),
            val_windows.len()
        );
    }
    let mut trainee = VaeTrainee::new(opts, train_windows, val_windows)?;
    let (t, span) = (&trainee.train, trainee.span);
    eprintln!(
        "vae: {} train windows of {bars} bars (hop {} bar(s); {} from 2/4 bars, {} with chords reduced to the top note, {} bars of other meters skipped), {} valid windows; pitches {}..{}",
        t.len(),
        opts.hop_bars,
        t.two_four_windows,
        t.chord_windows,
        t.skipped_bars,
        trainee.val.len(),
        span.0,
        span.1
    );
    run_reported(&mut trainee, &opts.run)
}

/// The model card.
fn card(t: &VaeTrainee, state: &LoopState, loop_opts: &LoopOptions) -> String {
    let (cfg, opts) = (&t.cfg, &t.opts);
    let rows: String = state
        .val_loss
        .iter()
        .zip(&state.val_extra)
        .map(|(&(step, epoch, loss), extra)| {
            let x = |i: usize| extra.get(i).copied().unwrap_or(f64::NAN);
            format!(
                "| {epoch} | {step} | {loss:.3} | {:.3} | {:.2} | {:.4} |\n",
                x(0),
                x(1),
                x(2)
            )
        })
        .collect();
    format!(
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
         {training}\
         - Best validation loss (nats per sequence, full β, z = μ): {best:.3}\n\n\
         | epoch | step | validation loss | reconstruction | KL | teacher-forced accuracy |\n\
         |---|---|---|---|---|---|\n{rows}\n\
         Loss curve: `loss.png`. Reproduce: `cargo xtask train vae{reproduce}`.\n",
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
        status = state.card_status(),
        chords = t.train.chord_windows,
        train = t.train.len(),
        hop = opts.hop_bars,
        two_four = t.train.two_four_windows,
        skipped = t.train.skipped_bars,
        shift = opts.max_shift,
        lo = crate::music::pitch_name(t.span.0),
        hi = crate::music::pitch_name(t.span.1),
        val = t.val.len(),
        beta = opts.beta,
        anneal = opts.kl_anneal_steps,
        fb = opts.free_bits,
        training = state.training_line(loop_opts, opts.batch, None, opts.seed),
        best = state.best_val.unwrap_or(f64::NAN),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` random windows of `steps` tokens (pitches, rests, holds).
    fn random_windows(steps: usize, count: usize, seed: u64) -> MelodyWindows {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut w = MelodyWindows::empty(steps);
        w.tokens = (0..steps * count)
            .map(|_| match rng.random_range(0..4) {
                0 => 128,
                1 => 129,
                _ => rng.random_range(60..72),
            })
            .collect();
        w
    }

    #[test]
    fn a_tiny_run_resumes_and_exports_weights_that_load() {
        let cfg = VaeShape::Flat(crate::models::music_vae::Config::tiny());
        let mut opts = VaeTrainOptions::new(cfg.clone());
        opts.batch = 2;
        let steps = cfg.steps();
        let (train, val) = (random_windows(steps, 5, 1), random_windows(steps, 3, 2));
        let (_, b) = super::super::run_loop::testing::runs_and_resumes(
            "vae",
            || VaeTrainee::new(&opts, train.clone(), val.clone()).unwrap(),
            |dir| crate::vae::MelodyVae::load(dir).map(drop),
        );
        // Reconstruction and KL per log point, and accuracy per validation.
        assert!(b.train_extra.iter().all(|e| e.len() == 2));
        assert!(
            b.val_extra
                .iter()
                .all(|e| e.len() == 3 && (0.0..=1.0).contains(&e[2]))
        );
    }
}
