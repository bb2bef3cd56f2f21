//! Training the band model ([`crate::models::band`]) on Nottingham (melody + chords).
//!
//! Batches are sequences of `seq_bars + 1` bars of 4/4 tunes, transposed by a random shift; the
//! model hears bars 0..seq_bars (each track dropped at random, so the product of experts learns
//! every subset) and predicts bars 1..=seq_bars of every track. Loss per bar: binary
//! cross-entropy of the next bar's cells summed over cells and tracks, plus β·KL of the bar's
//! posterior, plus the optional auxiliary losses of the seed (scale, rhythm, harmony) on the
//! predicted probabilities. Validation: the same loss without noise, dropout or transposition on
//! valid-split sequences, once per epoch. Checkpoints and resume as in [`super::roll`].

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
use super::roll::bce_with_logits;
use super::run_files::{CheckpointFiles, export_best, export_loss_curve, progress_bar};
use super::{format_duration, parse_duration};
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
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup: usize,
    pub budget: Duration,
    pub max_epochs: usize,
    pub max_steps: Option<usize>,
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
    pub log_every: usize,
    pub checkpoint_every: Duration,
    pub run_dir: PathBuf,
    pub assets_dir: Option<PathBuf>,
    pub data_root: PathBuf,
    pub cache_dir: PathBuf,
    pub seed: u64,
    pub fresh: bool,
}

impl TrainOptions {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            batch: 32,
            lr: 1e-3,
            weight_decay: 0.01,
            warmup: 200,
            budget: parse_duration("40m").expect("valid literal"),
            max_epochs: 1000,
            max_steps: None,
            seq_bars: 8,
            hop_bars: 2,
            epoch_steps: Some(500),
            max_shift: 5,
            drop_track: 0.3,
            drop_bar: 0.1,
            beta: 0.1,
            aux: AuxWeights::DEFAULT,
            val_sequences: 512,
            log_every: 50,
            checkpoint_every: Duration::from_secs(180),
            run_dir: PathBuf::from("artifacts/train/band"),
            assets_dir: None,
            data_root: data::default_data_root(),
            cache_dir: data::default_cache_dir(),
            seed: 0,
            fresh: false,
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

/// What a run has done so far (`state.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainState {
    pub config: Option<Config>,
    pub aux: Option<AuxWeights>,
    pub step: usize,
    pub epoch: usize,
    pub batch_in_epoch: usize,
    pub elapsed_secs: f64,
    /// (step, mean training loss since the previous point).
    pub train_loss: Vec<(usize, f64)>,
    /// (step, epoch, validation reconstruction loss in nats per bar).
    pub val_loss: Vec<(usize, usize, f64)>,
    pub best_val: Option<f64>,
    pub train_sequences: usize,
    pub val_sequences: usize,
    pub batch: usize,
    pub finished: bool,
}

#[derive(Clone, Debug)]
pub struct TrainReport {
    pub state: TrainState,
    pub run_dir: PathBuf,
}

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

fn spread<T: Clone>(items: &[T], count: usize) -> Vec<T> {
    if items.len() <= count {
        return items.to_vec();
    }
    (0..count)
        .map(|i| items[i * items.len() / count].clone())
        .collect()
}

fn learning_rate(opts: &TrainOptions, step: usize, progress: f64) -> f64 {
    super::run_loop::learning_rate(opts.lr, opts.warmup, step, progress)
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

/// Train (or resume) a band model. Progress lines on stderr.
pub fn train(opts: &TrainOptions) -> Result<TrainReport> {
    let device = Device::Cpu;
    let cfg = opts.config.clone();
    if let Err(e) = cfg.validate() {
        bail!("band model config: {e}");
    }
    std::fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("cannot create {}", opts.run_dir.display()))?;
    let files = CheckpointFiles::in_dir(&opts.run_dir);
    eprintln!("band: loading Nottingham from {}", opts.data_root.display());
    let train_songs = data::load_cached(
        Dataset::Nottingham,
        Split::Train,
        &opts.data_root,
        &opts.cache_dir,
    )?;
    let valid_songs = data::load_cached(
        Dataset::Nottingham,
        Split::Valid,
        &opts.data_root,
        &opts.cache_dir,
    )?;
    let train_seqs = sequences(&train_songs, &cfg, opts.seq_bars, opts.hop_bars);
    let val_seqs = spread(
        &sequences(&valid_songs, &cfg, opts.seq_bars, opts.seq_bars),
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

    let mut state = TrainState::default();
    let resume = !opts.fresh && files.exist();
    if resume {
        state = serde_json::from_str(&std::fs::read_to_string(&files.state)?)
            .with_context(|| format!("{} is not a training state", files.state.display()))?;
        if state.config.as_ref() != Some(&cfg) || state.aux != Some(opts.aux) {
            bail!(
                "{} holds a run of another model shape or loss; pass --fresh or another run folder",
                opts.run_dir.display()
            );
        }
        eprintln!(
            "band: resuming at step {} (epoch {}, {} used)",
            state.step,
            state.epoch + 1,
            format_duration(Duration::from_secs_f64(state.elapsed_secs))
        );
    } else {
        state.config = Some(cfg.clone());
        state.aux = Some(opts.aux);
        state.train_sequences = train_seqs.len();
        state.val_sequences = val_seqs.len();
        state.batch = opts.batch;
    }
    let mut varmap = VarMap::new();
    let model = BandVae::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
    let mut opt = AdamW::new(&varmap, opts.lr, opts.weight_decay)?;
    if resume {
        files.load(&mut varmap, &mut opt, state.step)?;
    }
    let started = Instant::now();
    let before = state.elapsed_secs;
    let used = || before + started.elapsed().as_secs_f64();
    let steps_per_epoch = (train_seqs.len() / opts.batch)
        .min(opts.epoch_steps.unwrap_or(usize::MAX))
        .max(1);
    let budget = opts.budget.as_secs_f64();
    let mut last_checkpoint = Instant::now();
    let mut window_loss = (0.0, 0usize);
    let mut step_time = None::<f64>;
    let mut val_seconds = 0.0f64;

    'epochs: while state.epoch < opts.max_epochs {
        let mut order: Vec<usize> = (0..train_seqs.len()).collect();
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
            let seqs: Vec<&Sequence> = idx.iter().map(|&i| &train_seqs[i]).collect();
            let progress = (now / budget.max(1.0)).max(
                opts.max_steps
                    .map_or(0.0, |m| state.step as f64 / m.max(1) as f64),
            );
            opt.lr = learning_rate(opts, state.step, progress);
            let loss = train_step(&model, &mut opt, &seqs, opts, &mut rng, &device)?;
            if !loss.is_finite() {
                bail!("training loss became {loss} at step {}", state.step);
            }
            state.step += 1;
            state.batch_in_epoch += 1;
            window_loss.0 += loss;
            window_loss.1 += 1;
            let dt = tick.elapsed().as_secs_f64();
            step_time = Some(step_time.map_or(dt, |s| 0.95 * s + 0.05 * dt));
            if state.step % opts.log_every.max(1) == 0 {
                let mean = window_loss.0 / window_loss.1 as f64;
                state.train_loss.push((state.step, mean));
                window_loss = (0.0, 0);
                let u = used();
                eprintln!(
                    "band: {} epoch {} batch {}/{} step {} loss {mean:.3} lr {:.2e} {:.1} steps/s",
                    progress_bar(u, (budget - u).max(0.0)),
                    state.epoch + 1,
                    state.batch_in_epoch,
                    steps_per_epoch,
                    state.step,
                    opt.lr,
                    1.0 / step_time.unwrap_or(1.0).max(1e-9),
                );
            }
            if last_checkpoint.elapsed() >= opts.checkpoint_every {
                state.elapsed_secs = used();
                files.save(&varmap, &opt, &state)?;
                last_checkpoint = Instant::now();
            }
        }
        let vt = Instant::now();
        let val = validate(&model, &val_seqs, 64, &device)?;
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
        let val = validate(&model, &val_seqs, 64, &device)?;
        state.elapsed_secs = used();
        end_of_epoch(opts, &cfg, &varmap, &mut state, val)?;
    }
    state.elapsed_secs = used();
    state.finished = true;
    files.save(&varmap, &opt, &state)?;
    if let Some(dir) = &opts.assets_dir
        && dir.is_dir()
    {
        write_card(dir, &cfg, &state, opts)?;
    }
    eprintln!(
        "band: done: {} steps, {} epochs, {} wall time, best validation loss {:.4} nats/bar",
        state.step,
        state.epoch,
        format_duration(Duration::from_secs_f64(state.elapsed_secs)),
        state.best_val.unwrap_or(f64::NAN)
    );
    Ok(TrainReport {
        state,
        run_dir: opts.run_dir.clone(),
    })
}

/// Record the validation loss, redraw the loss curve, export the best weights.
fn end_of_epoch(
    opts: &TrainOptions,
    cfg: &Config,
    varmap: &VarMap,
    state: &mut TrainState,
    val: f64,
) -> Result<()> {
    state.val_loss.push((state.step, state.epoch, val));
    let best = state.best_val.is_none_or(|b| val < b);
    eprintln!(
        "band: epoch {} validation loss {val:.4} nats/bar{} ({} elapsed)",
        state.epoch,
        if best { " (best)" } else { "" },
        format_duration(Duration::from_secs_f64(state.elapsed_secs))
    );
    let train_pts: Vec<(f64, f64)> = state
        .train_loss
        .iter()
        .map(|&(s, l)| (s as f64, l))
        .collect();
    let val_pts: Vec<(f64, f64)> = state
        .val_loss
        .iter()
        .map(|&(s, _, l)| (s as f64, l))
        .collect();
    let png = opts.run_dir.join("loss.png");
    loss_curve(
        &png,
        "Band RMVAE: next-bar loss per bar",
        "optimizer step",
        &[
            Series {
                name: "train (total, with KL and auxiliary terms)",
                points: &train_pts,
                color: plotters::style::RGBColor(40, 90, 200),
            },
            Series {
                name: "validation (next-bar BCE, Nottingham valid)",
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
        write_card(dir, cfg, state, opts)?;
    }
    Ok(())
}

/// The training section of the model card (`CARD.md`); `bandmate band-eval` appends the
/// evaluation table.
fn write_card(dir: &Path, cfg: &Config, state: &TrainState, opts: &TrainOptions) -> Result<()> {
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
    let card = format!(
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
        status = if state.finished {
            "finished"
        } else {
            "training in progress (these are the best weights so far)"
        },
        train = state.train_sequences,
        len = opts.seq_bars + 1,
        hop = opts.hop_bars,
        shift = opts.max_shift,
        dt = opts.drop_track,
        db = opts.drop_bar,
        val = state.val_sequences,
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
        lr = opts.lr,
        warm = opts.warmup,
        budget = format_duration(opts.budget),
        batch = state.batch,
        steps_done = state.step,
        epochs = state.epoch,
        eps = opts.epoch_steps.unwrap_or(0),
        wall = format_duration(Duration::from_secs_f64(state.elapsed_secs)),
        seed = opts.seed,
        best = state.best_val.unwrap_or(f64::NAN),
    );
    std::fs::write(dir.join("CARD.md"), card)
        .with_context(|| format!("cannot write {}", dir.join("CARD.md").display()))
}
