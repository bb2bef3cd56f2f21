//! Training the band model ([`crate::models::band`]) on Nottingham (melody + chords).
//!
//! Batches are sequences of `seq_bars + 1` bars of 4/4 tunes, transposed by a random shift; the
//! model hears bars 0..seq_bars (each track dropped at random, so the product of experts learns
//! every subset) and predicts bars 1..=seq_bars of every track. Loss per bar: binary
//! cross-entropy of the next bar's cells summed over cells and tracks, plus β·KL of the bar's
//! posterior, plus the optional auxiliary losses of the seed (scale, rhythm, harmony) on the
//! predicted probabilities. Validation: the same loss without noise, dropout or transposition on
//! valid-split sequences, once per epoch. The run goes through the shared loop
//! ([`super::run_loop`]): checkpoints, resume, the card.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::adamw::AdamW;
use super::format_duration;
use super::roll::bce_with_logits;
use super::run_loop::{
    EpochOrder, LoopOptions, LoopState, Measured, Trainee, derefs_to_run, new_model, run_reported,
    spread, step_rng, steps_per_epoch,
};
use crate::band::bars::{BarNote, render, song_bars};
use crate::data::{self, Dataset, Song, Split};
use crate::models::band::{BandVae, Config};
use crate::music::Key;
use crate::nn::roll_sums::{logit_summaries, roll_summaries};

/// Weights of the seed's auxiliary losses (0 turns one off).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuxWeights {
    /// Expected out-of-key onsets per bar (key of the sequence, Krumhansl–Kessler).
    pub scale: f64,
    /// Mean squared error of the expected onsets per step (all tracks) against the true count.
    pub rhythm: f64,
    /// Cross-entropy of the predicted pitch-class distribution of the sounding notes against
    /// the true next bar's.
    pub harmony: f64,
}

impl AuxWeights {
    pub const OFF: AuxWeights = AuxWeights {
        scale: 0.0,
        rhythm: 0.0,
        harmony: 0.0,
    };
    pub const DEFAULT: AuxWeights = AuxWeights {
        scale: 1.0,
        rhythm: 1.0,
        harmony: 1.0,
    };
}

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub config: Config,
    pub batch: usize,
    pub weight_decay: f64,
    /// Bars the model hears per training sequence.
    pub seq_bars: usize,
    /// Bars between the starts of training sequences.
    pub hop_bars: usize,
    pub epoch_steps: Option<usize>,
    pub max_shift: i32,
    /// Chance that a track is missing from a whole sequence / from one bar.
    pub drop_track: f64,
    pub drop_bar: f64,
    /// Weight β of the KL term.
    pub beta: f64,
    pub aux: AuxWeights,
    pub val_sequences: usize,
    pub data_root: PathBuf,
    pub cache_dir: PathBuf,
    pub seed: u64,
    /// Learning rate, budget, checkpoints, the run and export folders.
    pub run: LoopOptions,
}

derefs_to_run!(TrainOptions);

impl TrainOptions {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            batch: 32,
            weight_decay: 0.01,
            seq_bars: 8,
            hop_bars: 2,
            epoch_steps: Some(500),
            max_shift: 5,
            drop_track: 0.3,
            drop_bar: 0.1,
            beta: 0.1,
            aux: AuxWeights::DEFAULT,
            val_sequences: 512,
            data_root: data::default_data_root(),
            cache_dir: data::default_cache_dir(),
            seed: 0,
            run: LoopOptions {
                log_every: 50,
                checkpoint_every: Duration::from_secs(180),
                ..LoopOptions::new("band", 1e-3, "40m")
            },
        }
    }
}

/// `seq_bars + 1` consecutive bars of a tune, notes per model track.
#[derive(Clone, Debug)]
pub struct Sequence {
    pub bars: Vec<Vec<Vec<BarNote>>>,
    /// Duration-weighted pitch classes of the whole sequence (for its key).
    pub pitch_classes: [f64; 12],
}

/// The training sequences of `songs`: `seq_bars + 1` bars every `hop_bars` bars of every tune
/// in `cfg.steps`-step bars, skipping sequences without notes.
pub fn sequences(songs: &[Song], cfg: &Config, seq_bars: usize, hop_bars: usize) -> Vec<Sequence> {
    let mut out = Vec::new();
    for song in songs {
        let Some(bars) = song_bars(&song.clip, cfg) else {
            continue;
        };
        let len = seq_bars + 1;
        let mut start = 0;
        while start + len <= bars.len() {
            let seq: Vec<Vec<Vec<BarNote>>> = bars[start..start + len]
                .iter()
                .map(|b| b.iter().map(|t| t.clone().unwrap_or_default()).collect())
                .collect();
            let mut pcs = [0.0; 12];
            for n in seq.iter().flatten().flatten() {
                pcs[(n.1 % 12) as usize] += n.2 as f64;
            }
            if pcs.iter().sum::<f64>() > 0.0 {
                out.push(Sequence {
                    bars: seq,
                    pitch_classes: pcs,
                });
            }
            start += hop_bars.max(1);
        }
    }
    out
}

/// A random transposition in `-max_shift..=max_shift` that keeps every note in its track's
/// window (0 when none does).
fn random_shift(seq: &Sequence, cfg: &Config, max_shift: i32, rng: &mut impl Rng) -> i32 {
    let (mut lo, mut hi) = (-max_shift, max_shift);
    for bar in &seq.bars {
        for (k, notes) in bar.iter().enumerate() {
            let spec = &cfg.tracks[k];
            for n in notes {
                lo = lo.max(spec.pitch_lo as i32 - n.1 as i32);
                hi = hi.min(spec.pitch_lo as i32 + spec.pitches as i32 - 1 - n.1 as i32);
            }
        }
    }
    if lo > hi {
        0
    } else {
        rng.random_range(lo..=hi)
    }
}

/// One batch as tensors.
pub struct Batch {
    /// Per track `[batch, seq_bars, cells]`: the bars heard.
    pub inputs: Vec<Tensor>,
    /// Per track `[batch, seq_bars, cells]`: the bars to predict (one later).
    pub targets: Vec<Tensor>,
    /// `[batch, seq_bars, tracks]`: 1 where a track is heard.
    pub present: Tensor,
    /// Per track `[1 or batch, 1, pitches]`: 1 at pitches outside the sequence's key.
    pub out_of_key: Vec<Tensor>,
}

/// Build a batch; `shifts` per sequence, `present` flags `[batch][seq_bars][tracks]`.
pub fn make_batch(
    seqs: &[&Sequence],
    shifts: &[i32],
    present: &[Vec<Vec<bool>>],
    cfg: &Config,
    device: &Device,
) -> Result<Batch> {
    let n = seqs.len();
    let seq_bars = seqs.first().map_or(0, |s| s.bars.len() - 1);
    let tracks = cfg.tracks.len();
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    let mut out_of_key = Vec::new();
    for k in 0..tracks {
        let spec = &cfg.tracks[k];
        let cells = cfg.bar_cells(k);
        let mut x = vec![0.0f32; n * seq_bars * cells];
        let mut y = vec![0.0f32; n * seq_bars * cells];
        let mut ook = vec![0.0f32; n * spec.pitches];
        for (i, seq) in seqs.iter().enumerate() {
            for t in 0..seq_bars {
                let at = (i * seq_bars + t) * cells;
                render(
                    &seq.bars[t][k],
                    spec,
                    cfg.steps,
                    shifts[i],
                    &mut x[at..at + cells],
                );
                render(
                    &seq.bars[t + 1][k],
                    spec,
                    cfg.steps,
                    shifts[i],
                    &mut y[at..at + cells],
                );
            }
            let mut pcs = [0.0; 12];
            for (pc, w) in seq.pitch_classes.iter().enumerate() {
                pcs[(pc as i32 + shifts[i]).rem_euclid(12) as usize] = *w;
            }
            if let Some(key) = Key::estimate(&pcs) {
                for p in 0..spec.pitches {
                    if !key.contains(spec.pitch_lo + p as u8) {
                        ook[i * spec.pitches + p] = 1.0;
                    }
                }
            }
        }
        inputs.push(Tensor::from_vec(x, (n, seq_bars, cells), device)?);
        targets.push(Tensor::from_vec(y, (n, seq_bars, cells), device)?);
        out_of_key.push(Tensor::from_vec(ook, (n, 1, spec.pitches), device)?);
    }
    let flags: Vec<f32> = present
        .iter()
        .flatten()
        .flatten()
        .map(|&p| if p { 1.0 } else { 0.0 })
        .collect();
    if flags.len() != n * seq_bars * tracks {
        bail!("present flags do not match the batch");
    }
    Ok(Batch {
        inputs,
        targets,
        present: Tensor::from_vec(flags, (n, seq_bars, tracks), device)?,
        out_of_key,
    })
}

/// The loss terms of one batch (each a scalar tensor, nats or units per bar).
pub struct Losses {
    pub total: Tensor,
    pub reconstruction: Tensor,
    pub kl: Tensor,
}

/// Loss of a batch; `eps` is the posterior noise (`None`: means).
pub fn batch_loss(
    model: &BandVae,
    batch: &Batch,
    eps: Option<&Tensor>,
    beta: f64,
    aux: AuxWeights,
) -> Result<Losses> {
    let cfg = model.config();
    let (n, seq, _) = batch.present.dims3()?;
    let (logits, kl) = model.forward(&batch.inputs, &batch.present, eps)?;
    let mut reconstruction: Option<Tensor> = None;
    let mut onsets_per_step: Option<(Tensor, Tensor)> = None; // predicted, true: [n*seq, steps]
    let mut pcs: Option<(Tensor, Tensor)> = None; // predicted, true: [n*seq, 12]
    let mut scale: Option<Tensor> = None;
    for (k, (l, y)) in logits.iter().zip(&batch.targets).enumerate() {
        let cells = cfg.bar_cells(k) as f64;
        let spec = &cfg.tracks[k];
        let (rows, steps, p) = (n * seq, cfg.steps, spec.pitches);
        // Nats per bar of this track, and (with the auxiliary losses) the sums they read,
        // `[n·seq, steps + 13]`: onsets per step, sustain per pitch class, out-of-key onsets; of
        // the predicted probabilities (with each bar's cross-entropy in one more column) and of
        // the targets.
        let (r, sums) = if aux == AuxWeights::OFF {
            // Mean BCE per cell × cells.
            ((bce_with_logits(l, y)? * cells)?, None)
        } else {
            let target = y.reshape((rows, 2, steps, p))?;
            let ook = batch.out_of_key[k]
                .broadcast_as((n, seq, p))?
                .reshape((rows, p))?; // [n·seq, pitches]
            let predicted = logit_summaries(l, y, &ook, steps, spec.pitch_lo)?;
            // Summed cross-entropy over the bars.
            let r = (predicted.narrow(1, steps + 13, 1)?.sum_all()? / rows as f64)?;
            (
                r,
                Some((predicted, roll_summaries(&target, &ook, spec.pitch_lo)?)),
            )
        };
        reconstruction = Some(match reconstruction {
            None => r,
            Some(s) => (s + r)?,
        });
        let Some(sums) = sums else {
            continue;
        };
        let step_counts = (sums.0.narrow(1, 0, steps)?, sums.1.narrow(1, 0, steps)?);
        onsets_per_step = Some(match onsets_per_step {
            None => step_counts,
            Some((a, b)) => ((a + step_counts.0)?, (b + step_counts.1)?),
        });
        let track_pcs = (sums.0.narrow(1, steps, 12)?, sums.1.narrow(1, steps, 12)?);
        pcs = Some(match pcs {
            None => track_pcs,
            Some((a, b)) => ((a + track_pcs.0)?, (b + track_pcs.1)?),
        });
        // Expected out-of-key onsets per bar.
        let s = (sums.0.narrow(1, steps + 12, 1)?.sum_all()? / rows as f64)?;
        scale = Some(match scale {
            None => s,
            Some(a) => (a + s)?,
        });
    }
    let reconstruction = reconstruction.context("the model has no track")?;
    let kl = kl.mean_all()?;
    let mut total = (&reconstruction + (&kl * beta)?)?;
    if let (Some(s), true) = (scale, aux.scale > 0.0) {
        total = (total + (s * aux.scale)?)?;
    }
    if let (Some((pred, truth)), true) = (onsets_per_step, aux.rhythm > 0.0) {
        let mse = (pred - truth)?.sqr()?.mean_all()?;
        total = (total + (mse * aux.rhythm)?)?;
    }
    if let (Some((pred, truth)), true) = (pcs, aux.harmony > 0.0) {
        let pred = (&pred / (pred.sum_keepdim(1)? + 1e-6)?.broadcast_as(pred.shape())?)?;
        let mass = (truth.sum_keepdim(1)? + 1e-6)?;
        let truth = truth.broadcast_div(&mass)?;
        let ce = (truth * (pred + 1e-6)?.log()?)?.sum(1)?.neg()?.mean_all()?;
        total = (total + (ce * aux.harmony)?)?;
    }
    Ok(Losses {
        total,
        reconstruction,
        kl,
    })
}

/// The outcome of [`train`].
pub use super::run_loop::TrainReport;

/// Every track present in every bar.
fn all_present(n: usize, seq_bars: usize, tracks: usize) -> Vec<Vec<Vec<bool>>> {
    vec![vec![vec![true; tracks]; seq_bars]; n]
}

/// Validation: next-bar reconstruction (nats per bar, all tracks) with posterior means, all
/// tracks heard, no transposition.
pub fn validate(model: &BandVae, seqs: &[Sequence], batch: usize, device: &Device) -> Result<f64> {
    let cfg = model.config();
    let mut total = 0.0;
    for chunk in seqs.chunks(batch.max(1)) {
        let refs: Vec<&Sequence> = chunk.iter().collect();
        let seq_bars = chunk[0].bars.len() - 1;
        let b = make_batch(
            &refs,
            &vec![0; refs.len()],
            &all_present(refs.len(), seq_bars, cfg.tracks.len()),
            cfg,
            device,
        )?;
        let l = batch_loss(model, &b, None, 0.0, AuxWeights::OFF)?;
        total += l.reconstruction.to_scalar::<f32>()? as f64 * refs.len() as f64;
    }
    Ok(total / seqs.len().max(1) as f64)
}

/// One optimizer step on a random batch drawn from `seqs` by `rng` (also used by tests).
pub fn train_step(
    model: &BandVae,
    opt: &mut AdamW,
    batch_seqs: &[&Sequence],
    opts: &TrainOptions,
    rng: &mut impl Rng,
    device: &Device,
) -> Result<f64> {
    let cfg = model.config();
    let tracks = cfg.tracks.len();
    let seq_bars = batch_seqs[0].bars.len() - 1;
    let shifts: Vec<i32> = batch_seqs
        .iter()
        .map(|s| random_shift(s, cfg, opts.max_shift, rng))
        .collect();
    let present: Vec<Vec<Vec<bool>>> = batch_seqs
        .iter()
        .map(|_| {
            let kept: Vec<bool> = (0..tracks)
                .map(|_| !rng.random_bool(opts.drop_track))
                .collect();
            (0..seq_bars)
                .map(|_| {
                    kept.iter()
                        .map(|&k| k && !rng.random_bool(opts.drop_bar))
                        .collect()
                })
                .collect()
        })
        .collect();
    // One sub-batch per pool thread (of at least 4 sequences), each trained on its own core.
    let (ranges, weights) = crate::nn::pool_parts(batch_seqs.len(), 4);
    let parts: Vec<(Batch, Tensor)> = ranges
        .iter()
        .map(|r| {
            let b = make_batch(
                &batch_seqs[r.clone()],
                &shifts[r.clone()],
                &present[r.clone()],
                cfg,
                device,
            )?;
            let eps = Tensor::randn(0f32, 1f32, (r.len(), seq_bars, cfg.latent), device)?;
            Ok((b, eps))
        })
        .collect::<Result<_>>()?;
    // On a pool thread, so that its parallel ops do not each wake two threads.
    crate::nn::in_pool(|| {
        opt.split_backward_step(&weights, |i| {
            let (b, eps) = &parts[i];
            Ok(batch_loss(model, b, Some(eps), opts.beta, opts.aux)?.total)
        })
    })
}

/// A band model in training (see [`train`]).
struct BandTrainee {
    opts: TrainOptions,
    train: Vec<Sequence>,
    val: Vec<Sequence>,
    varmap: VarMap,
    model: BandVae,
    opt: AdamW,
    order: EpochOrder,
}

impl BandTrainee {
    fn new(opts: &TrainOptions, train: Vec<Sequence>, val: Vec<Sequence>) -> Result<Self> {
        let (varmap, model, opt) = new_model("band", opts.run.lr, opts.weight_decay, |vb| {
            BandVae::new(&opts.config, vb)
        })?;
        Ok(Self {
            opts: opts.clone(),
            train,
            val,
            varmap,
            model,
            opt,
            order: EpochOrder::default(),
        })
    }
}

impl Trainee for BandTrainee {
    fn record(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.opts.config,
            "aux": self.opts.aux,
            "train_sequences": self.train.len(),
            "val_sequences": self.val.len(),
            "batch": self.opts.batch,
        })
    }

    fn steps_per_epoch(&self) -> usize {
        steps_per_epoch(self.train.len(), self.opts.batch, self.opts.epoch_steps)
    }

    fn step(&mut self, epoch: usize, batch: usize, step: usize, lr: f64) -> Result<Measured> {
        let opts = &self.opts;
        let seqs = self
            .order
            .pick(&self.train, opts.seed, epoch, batch, opts.batch)?;
        let mut rng = step_rng(opts.seed, step);
        self.opt.lr = lr;
        let (model, opt) = (&self.model, &mut self.opt);
        train_step(model, opt, &seqs, opts, &mut rng, &Device::Cpu).map(Into::into)
    }

    fn validate(&mut self) -> Result<Measured> {
        validate(&self.model, &self.val, 64, &Device::Cpu).map(Into::into)
    }

    fn weights_and_optimizer(&mut self) -> (&mut VarMap, &mut AdamW) {
        (&mut self.varmap, &mut self.opt)
    }

    fn curve_names(&self) -> (&str, &str) {
        (
            "Band RMVAE: next-bar loss per bar",
            "validation (next-bar BCE, Nottingham valid)",
        )
    }

    fn train_curve_name(&self) -> &str {
        "train (total, with KL and auxiliary terms)"
    }

    fn card(&self, state: &LoopState, opts: &LoopOptions) -> String {
        card(self, state, opts)
    }
}

/// Train (or resume) a band model. Progress lines on stderr.
pub fn train(opts: &TrainOptions) -> Result<TrainReport> {
    let cfg = &opts.config;
    if let Err(e) = cfg.validate() {
        bail!("band model config: {e}");
    }
    eprintln!("band: loading Nottingham from {}", opts.data_root.display());
    let load =
        |split| data::load_cached(Dataset::Nottingham, split, &opts.data_root, &opts.cache_dir);
    let train_seqs = sequences(&load(Split::Train)?, cfg, opts.seq_bars, opts.hop_bars);
    let val_seqs = spread(
        &sequences(&load(Split::Valid)?, cfg, opts.seq_bars, opts.seq_bars),
        opts.val_sequences,
    );
    if train_seqs.len() < opts.batch || val_seqs.is_empty() {
        bail!(
            "too few {}-bar sequences of {}-step bars in Nottingham under {} ({} train, {} valid)",
            opts.seq_bars + 1,
            cfg.steps,
            opts.data_root.display(),
            train_seqs.len(),
            val_seqs.len()
        );
    }
    let (mut outside, mut all) = (0usize, 0usize);
    for s in &train_seqs {
        for bar in &s.bars {
            for (k, notes) in bar.iter().enumerate() {
                all += notes.len();
                outside += notes.iter().filter(|n| !cfg.tracks[k].holds(n.1)).count();
            }
        }
    }
    eprintln!(
        "band: {} train sequences of {} bars (hop {}), {} valid; {outside} of {all} train notes outside the track windows",
        train_seqs.len(),
        opts.seq_bars + 1,
        opts.hop_bars,
        val_seqs.len()
    );
    let mut trainee = BandTrainee::new(opts, train_seqs, val_seqs)?;
    run_reported(&mut trainee, &opts.run)
}

/// The training section of the model card (`CARD.md`); `bandmate band-eval` appends the
/// evaluation table.
fn card(t: &BandTrainee, state: &LoopState, loop_opts: &LoopOptions) -> String {
    let (cfg, opts) = (&t.opts.config, &t.opts);
    let val_rows: String = state
        .val_loss
        .iter()
        .map(|(step, epoch, l)| format!("| {epoch} | {step} | {l:.4} |\n"))
        .collect();
    let tracks: Vec<String> = cfg
        .tracks
        .iter()
        .map(|t| {
            format!(
                "{} ({}–{})",
                t.name,
                crate::music::pitch_name(t.pitch_lo),
                crate::music::pitch_name(t.pitch_lo + t.pitches as u8 - 1)
            )
        })
        .collect();
    format!(
        "# Band player: recurrent multimodal VAE (product of experts)\n\n\
         After Vignal, \"Generating new music with deep probabilistic models\": per-track bar\n\
         encoders give Gaussian experts, their product with the prior expert is the bar's latent\n\
         (any subset of tracks may be missing), a GRU runs over the bars, and per-track decoders\n\
         give the next bar as onset/sustain logits. Model: `engine/src/models/band.rs`; training:\n\
         `engine/src/train/band.rs`; live player and tasks: `engine/src/band/`.\n\n\
         - Status: {status}\n\
         - Data: Nottingham train split, {train} sequences of {len} bars (hop {hop}), random\n  \
           transposition within ±{shift} semitones inside the track windows; each track missing\n  \
           from a sequence with p = {dt} and from a bar with p = {db}. Validation on {val}\n  \
           sequences of the valid split.\n\
         - Tracks: {tracks}; bars of {steps} steps.\n\
         - Shape: encoder {eh}, latent {lat}, GRU {rh}, decoder {dh}.\n\
         - Loss per bar: next-bar BCE (summed over cells and tracks) + β·KL (β = {beta}) + scale\n  \
           {sw} · out-of-key onsets + rhythm {rw} · onset-count error + harmony {hw} · pitch-class\n  \
           cross-entropy.\n\
         - Training: AdamW (lr {lr}, warm-up {warm}, cosine to lr/10 over the {budget} budget),\n  \
           batch {batch}, {steps_done} steps, {epochs} epochs of ≤ {eps} batches, {wall} wall\n  \
           time on a 2-core CPU, seed {seed}.\n\
         - Best validation loss (next-bar BCE, nats per bar, all tracks heard): {best:.4}\n\n\
         | epoch | step | validation loss |\n|---|---|---|\n{val_rows}\n\
         Loss curve: `loss.png`. Reproduce: `cargo xtask train band`.\n",
        status = state.card_status(),
        train = t.train.len(),
        len = opts.seq_bars + 1,
        hop = opts.hop_bars,
        shift = opts.max_shift,
        dt = opts.drop_track,
        db = opts.drop_bar,
        val = t.val.len(),
        tracks = tracks.join(", "),
        steps = cfg.steps,
        eh = cfg.encoder_hidden,
        lat = cfg.latent,
        rh = cfg.rnn_hidden,
        dh = cfg.decoder_hidden,
        beta = opts.beta,
        sw = opts.aux.scale,
        rw = opts.aux.rhythm,
        hw = opts.aux.harmony,
        lr = loop_opts.lr,
        warm = loop_opts.warmup,
        budget = format_duration(loop_opts.budget),
        batch = opts.batch,
        steps_done = state.step,
        epochs = state.epoch,
        eps = opts.epoch_steps.unwrap_or(0),
        wall = format_duration(Duration::from_secs_f64(state.elapsed_secs)),
        seed = opts.seed,
        best = state.best_val.unwrap_or(f64::NAN),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// `count` random sequences of `bars` bars of `cfg`'s tracks.
    fn random_sequences(cfg: &Config, bars: usize, count: usize, seed: u64) -> Vec<Sequence> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..count)
            .map(|_| {
                let bars: Vec<Vec<Vec<BarNote>>> = (0..bars)
                    .map(|_| {
                        cfg.tracks
                            .iter()
                            .map(|t| {
                                (0..3)
                                    .map(|_| {
                                        let start = rng.random_range(0..cfg.steps as u8 - 2);
                                        let pitch = t.pitch_lo + rng.random_range(12..24);
                                        (start, pitch, 2)
                                    })
                                    .collect()
                            })
                            .collect()
                    })
                    .collect();
                let mut pitch_classes = [0.0; 12];
                for n in bars.iter().flatten().flatten() {
                    pitch_classes[(n.1 % 12) as usize] += n.2 as f64;
                }
                Sequence {
                    bars,
                    pitch_classes,
                }
            })
            .collect()
    }

    #[test]
    fn a_tiny_run_resumes_and_exports_weights_that_load() {
        let cfg = Config::tiny();
        let mut opts = TrainOptions::new(cfg.clone());
        opts.batch = 2;
        opts.seq_bars = 2;
        let (train, val) = (
            random_sequences(&cfg, 3, 5, 1),
            random_sequences(&cfg, 3, 3, 2),
        );
        super::super::run_loop::testing::runs_and_resumes(
            "band",
            || BandTrainee::new(&opts, train.clone(), val.clone()).unwrap(),
            |dir| crate::band::player::BandModel::load_dir(dir).map(drop),
        );
    }
}
