//! Training the piano-roll diffusion UNet ([`crate::models::roll`]) on POP909.
//!
//! Noisy rolls are drawn on the fly: every batch takes 4-bar 4/4 windows of the train split,
//! transposes each by a random shift that keeps its notes in the pitch window, draws a random
//! step t in 1..=T and x_t ~ q(x_t | x_0), and fits the logits of x̂_0 with binary cross-entropy.
//! Validation: the same loss on a fixed set of valid-split windows, steps and noise, once per
//! epoch. Checkpoints (weights, AdamW moments, state) go to the run folder every few minutes;
//! a run started again with the same folder resumes.

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
use super::ema::Ema;
use super::plot::{Series, loss_curve};
use super::run_files::{
    CheckpointFiles, export_best, export_loss_curve, save_weights_atomic, write_json_atomic,
};
use super::{format_duration, parse_duration};
use crate::data::{self, Dataset, Song, Split};
use crate::diffusion::binomial::BinomialSchedule;
use crate::models::roll::{Config, RollUnet, conditioned_input};
use crate::music::{Note, STEPS_PER_BEAT, TimeSignature, Track, TrackRole};

/// The weight average's file in the run folder, beside the checkpoint.
const EMA_FILE: &str = "ema.safetensors";

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Model shape; its `prior` is replaced by the training data's density.
    pub config: Config,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Steps of linear learning-rate warm-up (then cosine decay to lr/10 over the budget).
    pub warmup: usize,
    /// Wall-time budget, counting time spent before a resume.
    pub budget: Duration,
    /// Stop after this many epochs (or earlier, at the budget).
    pub max_epochs: usize,
    /// Stop after this many optimizer steps (for smoke runs).
    pub max_steps: Option<usize>,
    /// Bars between the starts of training windows.
    pub hop_bars: u32,
    /// Cap on the batches of one epoch (each epoch then sees a fresh random subset), so that
    /// validation and checkpoints come often on a slow CPU.
    pub epoch_steps: Option<usize>,
    /// Largest transposition in semitones, up or down.
    pub max_shift: i32,
    /// Validation windows (spread evenly over the valid split).
    pub val_windows: usize,
    /// Print a progress line every this many steps.
    pub log_every: usize,
    /// Save a checkpoint at least this often.
    pub checkpoint_every: Duration,
    /// Checkpoints, state, log and loss curve (an ignored folder such as `artifacts/train/roll`).
    pub run_dir: PathBuf,
    /// Where the best weights go (`assets/roll`): config.json, model.safetensors, CARD.md,
    /// loss.png. `None` keeps them in the run folder only.
    pub assets_dir: Option<PathBuf>,
    pub data_root: PathBuf,
    pub cache_dir: PathBuf,
    pub seed: u64,
    /// Start over even when the run folder holds a checkpoint.
    pub fresh: bool,
    /// Keep an exponential moving average of the weights with this decay ([`Ema`]); it is
    /// then what is validated and exported (the raw weights' validation loss is logged too).
    pub ema: Option<f64>,
}

impl TrainOptions {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            batch: 16,
            lr: 2e-3,
            weight_decay: 0.01,
            warmup: 200,
            budget: parse_duration("90m").expect("valid literal"),
            max_epochs: 1000,
            max_steps: None,
            hop_bars: 2,
            epoch_steps: None,
            max_shift: 6,
            val_windows: 512,
            log_every: 25,
            checkpoint_every: Duration::from_secs(300),
            run_dir: PathBuf::from("artifacts/train/roll"),
            assets_dir: None,
            data_root: data::default_data_root(),
            cache_dir: data::default_cache_dir(),
            seed: 0,
            fresh: false,
            ema: None,
        }
    }
}

/// Notes of one training window as `(start step, MIDI pitch, length)`.
#[derive(Clone, Debug, PartialEq)]
pub struct RollWindow {
    pub notes: Vec<(u16, u8, u16)>,
    /// Per note: it is on a melody-role track (what harmonize keeps).
    pub melody: Vec<bool>,
}

impl RollWindow {
    fn pitch_span(&self) -> Option<(u8, u8)> {
        let lo = self.notes.iter().map(|n| n.1).min()?;
        let hi = self.notes.iter().map(|n| n.1).max()?;
        Some((lo, hi))
    }

    /// Draw the window transposed by `shift` into `out` (`[2, steps, pitches]`, zeroed first);
    /// notes leaving the pitch window are dropped.
    pub fn render(&self, cfg: &Config, shift: i32, out: &mut [f32]) {
        out.fill(0.0);
        let plane = cfg.steps * cfg.pitches;
        for &(start, pitch, len) in &self.notes {
            let offset = pitch as i32 + shift - cfg.pitch_lo as i32;
            if offset < 0 || offset >= cfg.pitches as i32 || start as usize >= cfg.steps {
                continue;
            }
            let (o, s0) = (offset as usize, start as usize);
            out[s0 * cfg.pitches + o] = 1.0;
            for s in s0..(s0 + len as usize).min(cfg.steps) {
                out[plane + s * cfg.pitches + o] = 1.0;
            }
        }
    }
}

/// The 4/4 windows of `cfg.steps` steps (whole bars) of every song, starting every `hop_bars`
/// bars, with the notes of the non-drum tracks.
pub fn roll_windows(songs: &[Song], cfg: &Config, hop_bars: u32) -> Result<Vec<RollWindow>> {
    let spb = TimeSignature::FOUR_FOUR.steps_per_bar() as usize;
    if !cfg.steps.is_multiple_of(spb) {
        bail!(
            "roll model windows of {} steps are not whole 4/4 bars of {spb} steps",
            cfg.steps
        );
    }
    let bars = (cfg.steps / spb) as u32;
    let mut out = Vec::new();
    for song in songs {
        for w in data::windows(&song.clip, bars, hop_bars) {
            if w.time_signature != TimeSignature::FOUR_FOUR {
                continue;
            }
            let pitched: Vec<&Note> = w
                .notes
                .iter()
                .filter(|n| !w.tracks.get(n.track as usize).is_some_and(Track::is_drums))
                .collect();
            let notes: Vec<(u16, u8, u16)> = pitched
                .iter()
                .map(|n| {
                    (
                        n.start as u16,
                        n.pitch,
                        n.length.min(u16::MAX as u32) as u16,
                    )
                })
                .collect();
            let melody = pitched
                .iter()
                .map(|n| {
                    w.tracks
                        .get(n.track as usize)
                        .is_some_and(|t| t.role == TrackRole::Melody)
                })
                .collect();
            if !notes.is_empty() {
                out.push(RollWindow { notes, melody });
            }
        }
    }
    Ok(out)
}

/// The cells a conditioned model is asked to generate in one training window (`[steps,
/// pitches]`, true = free), drawn like the tasks it serves; `None`: every cell (generate).
///
/// A region is drawn: 20% nothing known (generate), 25% a run of bars (fill, continue), 25%
/// everything but the melody (harmonize; windows without a melody take a run of bars), 15% a
/// pitch band over a run of bars, 15% one to three rectangles. As in the tasks, a note whose
/// onset lies outside the region is context: all its cells are known; the region's other cells
/// are free. Known cells take the window's values, so a free note running past the end of an
/// inner region leaves a known tail there, where the tasks hold 0 (they cut generated notes at
/// the mask); the evaluated fill (bars 3–4), harmonize and generate masks have no such tails.
pub fn training_free_cells(
    w: &RollWindow,
    shift: i32,
    cfg: &Config,
    rng: &mut impl Rng,
) -> Option<Vec<bool>> {
    let (steps, pitches) = (cfg.steps, cfg.pitches);
    let spb = TimeSignature::FOUR_FOUR.steps_per_bar() as usize;
    let bars = steps / spb;
    let mut region = vec![false; steps * pitches];
    let bar_run = |rng: &mut dyn rand::RngCore| {
        let first = rng.random_range(0..bars);
        let last = rng.random_range(first..bars);
        (first * spb, (last + 1) * spb)
    };
    let u: f32 = rng.random();
    let harmonize = (0.45..0.7).contains(&u) && w.melody.iter().any(|&m| m);
    if u < 0.2 {
        return None;
    } else if harmonize {
        region.fill(true);
    } else if u < 0.7 {
        let (a, b) = bar_run(rng);
        region[a * pitches..b * pitches].fill(true);
    } else {
        let rects = if u < 0.85 { 1 } else { rng.random_range(1..=3) };
        for _ in 0..rects {
            let (a, b) = if u < 0.85 {
                bar_run(rng)
            } else {
                let len = rng.random_range(4..=steps);
                let a = rng.random_range(0..=steps - len);
                (a, a + len)
            };
            let width = rng.random_range(4..=pitches.min(40));
            let lo = rng.random_range(0..=pitches - width);
            for s in a..b {
                region[s * pitches + lo..s * pitches + lo + width].fill(true);
            }
        }
    }
    let mut free = region.clone();
    for (k, &(start, pitch, len)) in w.notes.iter().enumerate() {
        let offset = pitch as i32 + shift - cfg.pitch_lo as i32;
        if offset < 0 || offset >= pitches as i32 || start as usize >= steps {
            continue;
        }
        let (o, s0) = (offset as usize, start as usize);
        let context = if harmonize {
            w.melody[k]
        } else {
            !region[s0 * pitches + o]
        };
        if context {
            for s in s0..(s0 + len.max(1) as usize).min(steps) {
                free[s * pitches + o] = false;
            }
        }
    }
    Some(free)
}

/// Mean cell density per channel (onset, sustain) of `windows` in the model's window.
pub fn density(windows: &[RollWindow], cfg: &Config) -> [f32; 2] {
    let plane = cfg.steps * cfg.pitches;
    let mut buf = vec![0.0f32; 2 * plane];
    let mut on = [0f64; 2];
    for w in windows {
        w.render(cfg, 0, &mut buf);
        on[0] += buf[..plane].iter().map(|&v| v as f64).sum::<f64>();
        on[1] += buf[plane..].iter().map(|&v| v as f64).sum::<f64>();
    }
    let cells = (windows.len().max(1) * plane) as f64;
    [(on[0] / cells) as f32, (on[1] / cells) as f32]
}

/// A random transposition in `-max_shift..=max_shift` that keeps every note in the window
/// (0 when none does).
fn random_shift(w: &RollWindow, cfg: &Config, max_shift: i32, rng: &mut impl Rng) -> i32 {
    let Some((lo, hi)) = w.pitch_span() else {
        return 0;
    };
    let lo_ok = cfg.pitch_lo as i32 - lo as i32;
    let hi_ok = (cfg.pitch_lo as i32 + cfg.pitches as i32 - 1) - hi as i32;
    let (a, b) = (lo_ok.max(-max_shift), hi_ok.min(max_shift));
    if a > b { 0 } else { rng.random_range(a..=b) }
}

/// Numerically stable mean binary cross-entropy of `logits` against 0/1 `target`
/// (`crate::nn::fused::bce_with_logits_mean`: one pass each way on the CPU).
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
    crate::nn::fused::bce_with_logits_mean(logits, target)
}

/// One batch: x_0, the network input (x_t, and the known cells for a conditioned model) and t.
struct Batch {
    x0: Tensor,
    input: Tensor,
    t: Tensor,
}

/// `conditioned_masks`: draw the free cells of every window ([`training_free_cells`]) for a
/// conditioned model; otherwise (and for validation) nothing is known.
#[allow(clippy::too_many_arguments)]
fn make_batch(
    windows: &[&RollWindow],
    shifts: &[i32],
    ts: &[usize],
    cfg: &Config,
    schedule: &BinomialSchedule,
    conditioned_masks: bool,
    rng: &mut impl Rng,
    device: &Device,
) -> Result<Batch> {
    let plane = cfg.steps * cfg.pitches;
    let n = windows.len();
    let mut x0 = vec![0.0f32; n * 2 * plane];
    for (i, w) in windows.iter().enumerate() {
        w.render(cfg, shifts[i], &mut x0[i * 2 * plane..(i + 1) * 2 * plane]);
    }
    let xt = schedule.q_sample(&x0, plane, ts, rng);
    let mut input = Vec::with_capacity(n * cfg.input_channels() * plane);
    for (i, w) in windows.iter().enumerate() {
        let free = (cfg.conditioned && conditioned_masks)
            .then(|| training_free_cells(w, shifts[i], cfg, rng))
            .flatten();
        let roll = i * 2 * plane..(i + 1) * 2 * plane;
        conditioned_input(
            cfg,
            &xt[roll.clone()],
            &x0[roll],
            free.as_deref(),
            &mut input,
        );
    }
    Ok(Batch {
        x0: Tensor::from_vec(x0, (n, 2, cfg.steps, cfg.pitches), device)?,
        input: Tensor::from_vec(
            input,
            (n, cfg.input_channels(), cfg.steps, cfg.pitches),
            device,
        )?,
        t: Tensor::from_vec(ts.iter().map(|&t| t as f32).collect::<Vec<_>>(), n, device)?,
    })
}

/// What a run has done so far (saved as `state.json` next to the checkpoint).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainState {
    pub config: Option<Config>,
    pub step: usize,
    pub epoch: usize,
    /// Batches of the current epoch already done.
    pub batch_in_epoch: usize,
    pub elapsed_secs: f64,
    /// (step, mean training loss since the previous point).
    pub train_loss: Vec<(usize, f64)>,
    /// (step, epoch, validation loss) of the exported weights (the average, with an EMA).
    pub val_loss: Vec<(usize, usize, f64)>,
    /// (step, validation loss of the raw weights) when an EMA is exported instead.
    #[serde(default)]
    pub raw_val_loss: Vec<(usize, f64)>,
    /// The EMA decay of the run, if any.
    #[serde(default)]
    pub ema: Option<f64>,
    pub best_val: Option<f64>,
    pub train_windows: usize,
    pub val_windows: usize,
    pub batch: usize,
    pub finished: bool,
}

/// The outcome of [`train`].
#[derive(Clone, Debug)]
pub struct TrainReport {
    pub state: TrainState,
    pub run_dir: PathBuf,
}

/// Validation loss on fixed windows, steps and noise.
fn validate(
    net: &RollUnet,
    windows: &[RollWindow],
    cfg: &Config,
    schedule: &BinomialSchedule,
    batch: usize,
    device: &Device,
) -> Result<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x005E_ED0F_u64);
    let n = windows.len();
    let t_of = |i: usize| 1 + (i * cfg.diffusion_steps) / n.max(1);
    let mut total = 0.0;
    for start in (0..n).step_by(batch.max(1)) {
        let end = (start + batch).min(n);
        let ws: Vec<&RollWindow> = windows[start..end].iter().collect();
        let ts: Vec<usize> = (start..end).map(t_of).collect();
        let b = make_batch(
            &ws,
            &vec![0; ws.len()],
            &ts,
            cfg,
            schedule,
            false,
            &mut rng,
            device,
        )?;
        let logits = net.forward(&b.input, &b.t)?;
        let loss = bce_with_logits(&logits, &b.x0)?.to_scalar::<f32>()? as f64;
        total += loss * ws.len() as f64;
    }
    Ok(total / n.max(1) as f64)
}

/// The validation loss of the weights that are exported: the average's with an EMA (the raw
/// weights' loss then goes to `state.raw_val_loss`), else the raw weights'.
fn validate_exported(
    net: &RollUnet,
    ema_net: Option<&RollUnet>,
    windows: &[RollWindow],
    cfg: &Config,
    schedule: &BinomialSchedule,
    batch: usize,
    state: &mut TrainState,
) -> Result<f64> {
    let device = Device::Cpu;
    let raw = validate(net, windows, cfg, schedule, batch, &device)?;
    let Some(ema_net) = ema_net else {
        return Ok(raw);
    };
    state.raw_val_loss.push((state.step, raw));
    eprintln!("roll: validation loss of the raw weights {raw:.5}");
    validate(ema_net, windows, cfg, schedule, batch, &device)
}

/// The variables that are validated and exported: the average's, if there is one.
fn exported<'a>(varmap: &'a VarMap, ema: Option<&'a Ema>) -> &'a VarMap {
    ema.map_or(varmap, |e| &e.shadow)
}

/// Evenly spaced `count` of `items`.
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

/// Train (or resume) a roll model. Prints progress lines on stderr.
pub fn train(opts: &TrainOptions) -> Result<TrainReport> {
    let device = Device::Cpu;
    std::fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("cannot create {}", opts.run_dir.display()))?;
    let files = CheckpointFiles::in_dir(&opts.run_dir);

    eprintln!("roll: loading POP909 from {}", opts.data_root.display());
    let train_songs = data::load_cached(
        Dataset::Pop909,
        Split::Train,
        &opts.data_root,
        &opts.cache_dir,
    )?;
    let valid_songs = data::load_cached(
        Dataset::Pop909,
        Split::Valid,
        &opts.data_root,
        &opts.cache_dir,
    )?;
    let mut cfg = opts.config.clone();
    let train_windows = roll_windows(&train_songs, &cfg, opts.hop_bars)?;
    let bars = (cfg.steps / (4 * STEPS_PER_BEAT as usize)) as u32;
    let val_windows = spread(&roll_windows(&valid_songs, &cfg, bars)?, opts.val_windows);
    if train_windows.is_empty() || val_windows.is_empty() {
        bail!(
            "no 4/4 windows of {} steps in POP909 under {}",
            cfg.steps,
            opts.data_root.display()
        );
    }
    let outside = train_windows
        .iter()
        .flat_map(|w| &w.notes)
        .filter(|n| n.1 < cfg.pitch_lo || n.1 as usize >= cfg.pitch_lo as usize + cfg.pitches)
        .count();
    let all_notes: usize = train_windows.iter().map(|w| w.notes.len()).sum();
    eprintln!(
        "roll: {} train windows (hop {} bars), {} valid windows; {outside} of {all_notes} train notes outside pitches {}..{}",
        train_windows.len(),
        opts.hop_bars,
        val_windows.len(),
        cfg.pitch_lo,
        cfg.pitch_lo as usize + cfg.pitches - 1
    );

    let mut state = TrainState::default();
    let resume = !opts.fresh && files.state.exists() && files.weights.exists();
    if resume {
        state = serde_json::from_str(&std::fs::read_to_string(&files.state)?)
            .with_context(|| format!("{} is not a training state", files.state.display()))?;
        let saved = state.config.clone().context("state.json has no config")?;
        if (Config {
            prior: saved.prior,
            ..cfg.clone()
        }) != saved
        {
            bail!(
                "{} holds a run of another model shape; pass --fresh or another run folder",
                opts.run_dir.display()
            );
        }
        cfg = saved;
        eprintln!(
            "roll: resuming at step {} (epoch {}, {} used)",
            state.step,
            state.epoch + 1,
            format_duration(Duration::from_secs_f64(state.elapsed_secs))
        );
    } else {
        cfg.prior = density(&train_windows, &cfg);
        state.config = Some(cfg.clone());
        state.train_windows = train_windows.len();
        state.val_windows = val_windows.len();
        state.batch = opts.batch;
    }
    eprintln!(
        "roll: prior p = {:?} (onset, sustain density of the train windows)",
        cfg.prior
    );
    let schedule = BinomialSchedule::new(cfg.diffusion_steps, cfg.prior);

    let mut varmap = VarMap::new();
    let net = RollUnet::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
    let mut opt = AdamW::new(&varmap, opts.lr, opts.weight_decay)?;
    if resume {
        varmap
            .load(&files.weights)
            .with_context(|| format!("cannot load {}", files.weights.display()))?;
        opt.load(&files.optimizer)?;
        opt.step = state.step;
    }
    let ema_path = opts.run_dir.join(EMA_FILE);
    let mut ema = match opts.ema.or(state.ema) {
        Some(decay) => Some(Ema::new(&varmap, decay)?),
        None => None,
    };
    if let Some(ema) = ema.as_mut() {
        if resume && ema_path.exists() {
            ema.load(&ema_path)?;
        }
        state.ema = Some(ema.decay);
        eprintln!("roll: weight average with decay {}", ema.decay);
    }
    // The averaged weights as a network of their own (it reads the average's variables, which
    // every update sets in place).
    let ema_net = match &ema {
        Some(e) => Some(RollUnet::new(
            &cfg,
            VarBuilder::from_varmap(&e.shadow, DType::F32, &device),
        )?),
        None => None,
    };
    let validate_now = |state: &mut TrainState| {
        validate_exported(
            &net,
            ema_net.as_ref(),
            &val_windows,
            &cfg,
            &schedule,
            opts.batch,
            state,
        )
    };
    let params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    eprintln!(
        "roll: {params} parameters, config {}",
        serde_json::to_string(&cfg)?
    );

    let started = Instant::now();
    let base_elapsed = state.elapsed_secs;
    let used = || base_elapsed + started.elapsed().as_secs_f64();
    let steps_per_epoch = (train_windows.len() / opts.batch.max(1))
        .min(opts.epoch_steps.unwrap_or(usize::MAX))
        .max(1);
    let mut last_checkpoint = Instant::now();
    let mut window_loss = (0.0, 0usize);
    let mut step_time = None::<f64>;
    let budget = opts.budget.as_secs_f64();
    let mut val_seconds = 0.0f64;

    'epochs: while state.epoch < opts.max_epochs {
        let mut order: Vec<usize> = (0..train_windows.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            opts.seed.wrapping_add(state.epoch as u64),
        ));
        while state.batch_in_epoch < steps_per_epoch {
            let now = used();
            // Leave time for the last validation and save.
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
            let ws: Vec<&RollWindow> = idx.iter().map(|&i| &train_windows[i]).collect();
            let shifts: Vec<i32> = ws
                .iter()
                .map(|w| random_shift(w, &cfg, opts.max_shift, &mut rng))
                .collect();
            let ts: Vec<usize> = ws
                .iter()
                .map(|_| rng.random_range(1..=cfg.diffusion_steps))
                .collect();
            let b = make_batch(&ws, &shifts, &ts, &cfg, &schedule, true, &mut rng, &device)?;
            let progress = {
                let by_time = now / budget.max(1.0);
                let by_steps = opts
                    .max_steps
                    .map_or(0.0, |m| state.step as f64 / m.max(1) as f64);
                let by_epochs = (state.epoch as f64
                    + state.batch_in_epoch as f64 / steps_per_epoch.max(1) as f64)
                    / opts.max_epochs as f64;
                by_time.max(by_steps).max(by_epochs)
            };
            opt.lr = learning_rate(opts, state.step, progress);
            let loss = train_step(&net, &mut opt, &b.input, &b.t, &b.x0)?;
            if !loss.is_finite() {
                bail!("training loss became {loss} at step {}", state.step);
            }
            if let Some(ema) = &ema {
                ema.update(state.step)?;
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
                let used = used();
                let left_budget = (budget - used).max(0.0);
                let left_epochs = ((opts.max_epochs - state.epoch) * steps_per_epoch
                    - state.batch_in_epoch) as f64
                    * step_time.unwrap_or(0.0);
                let eta = left_budget.min(left_epochs);
                let frac = (used / (used + eta).max(1e-9)).clamp(0.0, 1.0);
                let filled = (frac * 20.0).round() as usize;
                eprintln!(
                    "roll: [{}{}] epoch {} batch {}/{} step {} loss {:.5} lr {:.2e} {:.1} samples/s elapsed {} ETA {}",
                    "#".repeat(filled),
                    "-".repeat(20 - filled),
                    state.epoch + 1,
                    state.batch_in_epoch,
                    steps_per_epoch,
                    state.step,
                    mean,
                    opt.lr,
                    opts.batch as f64 / step_time.unwrap_or(1.0).max(1e-9),
                    format_duration(Duration::from_secs_f64(used)),
                    format_duration(Duration::from_secs_f64(eta)),
                );
            }
            if last_checkpoint.elapsed() >= opts.checkpoint_every {
                state.elapsed_secs = used();
                checkpoint(&varmap, &opt, ema.as_ref(), &state, &files)?;
                last_checkpoint = Instant::now();
            }
        }
        // End of an epoch: validate, keep the best weights.
        let vt = Instant::now();
        let val = validate_now(&mut state)?;
        val_seconds = vt.elapsed().as_secs_f64();
        state.epoch += 1;
        state.batch_in_epoch = 0;
        state.elapsed_secs = used();
        end_of_epoch(opts, &cfg, exported(&varmap, ema.as_ref()), &mut state, val)?;
        checkpoint(&varmap, &opt, ema.as_ref(), &state, &files)?;
        last_checkpoint = Instant::now();
    }
    // Stopped by the budget or a step limit in the middle of an epoch: validate what we have.
    if state.batch_in_epoch > 0 {
        state.epoch += 1;
        state.batch_in_epoch = 0;
        let val = validate_now(&mut state)?;
        state.elapsed_secs = used();
        end_of_epoch(opts, &cfg, exported(&varmap, ema.as_ref()), &mut state, val)?;
    }
    state.elapsed_secs = used();
    state.finished = true;
    checkpoint(&varmap, &opt, ema.as_ref(), &state, &files)?;
    if let Some(dir) = &opts.assets_dir {
        write_card(dir, &cfg, &state, opts)?;
    }
    eprintln!(
        "roll: done: {} steps, {} epochs, {} wall time, best validation loss {:.5}",
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

fn checkpoint(
    varmap: &VarMap,
    opt: &AdamW,
    ema: Option<&Ema>,
    state: &TrainState,
    files: &CheckpointFiles,
) -> Result<()> {
    let (optim, state_path) = (&files.optimizer, &files.state);
    save_weights_atomic(varmap, &files.weights)?;
    if let Some(ema) = ema {
        ema.save(&files.weights.with_file_name(EMA_FILE))?;
    }
    let tmp = optim.with_extension("safetensors.tmp");
    opt.save(&tmp)?;
    std::fs::rename(&tmp, optim).with_context(|| format!("cannot write {}", optim.display()))?;
    write_json_atomic(state_path, state)
}

/// Record the validation loss, redraw the loss curve, and export the weights when they are
/// the best so far.
fn end_of_epoch(
    opts: &TrainOptions,
    cfg: &Config,
    varmap: &VarMap,
    state: &mut TrainState,
    val: f64,
) -> Result<()> {
    let elapsed = state.elapsed_secs;
    state.val_loss.push((state.step, state.epoch, val));
    let best = state.best_val.is_none_or(|b| val < b);
    eprintln!(
        "roll: epoch {} validation loss {val:.5}{} ({} elapsed)",
        state.epoch,
        if best { " (best)" } else { "" },
        format_duration(Duration::from_secs_f64(elapsed))
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
    let raw_pts: Vec<(f64, f64)> = state
        .raw_val_loss
        .iter()
        .map(|&(s, l)| (s as f64, l))
        .collect();
    let png = opts.run_dir.join("loss.png");
    let mut series = vec![
        Series {
            name: "train (mean per log interval)",
            points: &train_pts,
            color: plotters::style::RGBColor(40, 90, 200),
        },
        Series {
            name: if state.ema.is_some() {
                "validation, weight average (POP909 valid)"
            } else {
                "validation (POP909 valid)"
            },
            points: &val_pts,
            color: plotters::style::RGBColor(220, 60, 40),
        },
    ];
    if !raw_pts.is_empty() {
        series.push(Series {
            name: "validation, raw weights",
            points: &raw_pts,
            color: plotters::style::RGBColor(240, 160, 40),
        });
    }
    loss_curve(
        &png,
        "Roll diffusion: BCE of x̂_0",
        "optimizer step",
        &series,
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

/// The model card: data, shape, steps, wall time and losses.
fn write_card(dir: &Path, cfg: &Config, state: &TrainState, opts: &TrainOptions) -> Result<()> {
    let raw_at = |step: usize| {
        state
            .raw_val_loss
            .iter()
            .find(|r| r.0 == step)
            .map_or(String::new(), |r| format!(" {:.5} |", r.1))
    };
    let val_rows: String = state
        .val_loss
        .iter()
        .map(|&(step, epoch, l)| format!("| {epoch} | {step} | {l:.5} |{}\n", raw_at(step)))
        .collect();
    let (val_head, ema_line) = match state.ema {
        Some(d) => (
            "| epoch | step | validation loss (weight average) | raw weights |\n|---|---|---|---|\n",
            format!(
                "- Exported weights: the exponential moving average of the training weights, decay\n  \
                 {d} (`train::ema`); the raw weights' validation loss is in the last column.\n"
            ),
        ),
        None => (
            "| epoch | step | validation loss |\n|---|---|---|\n",
            String::new(),
        ),
    };
    let card = format!(
        "# Roll diffusion model (default weights)\n\n\
         Binomial diffusion on two-channel (onset, sustain) piano rolls, after Atassi (2023),\n\
         \"Generating symbolic music using diffusion models\". The network is the UNet of\n\
         `engine/src/models/roll.rs`; it predicts x̂_0 from x_t. Sampling and tasks are in\n\
         `engine/src/diffusion/`.\n\n\
         - Status: {status}\n\
         - Data: POP909 train split ({train} windows of {bars} bars of 4/4, hop {hop} bars, all\n  \
           non-drum tracks merged), random transposition within ±{shift} semitones that keeps\n  \
           the notes in the pitch window; validation on {val} windows of the valid split.\n\
         - Window: {steps} steps (16th notes) × pitches {lo}–{hi}.\n\
         - Diffusion: T = {t}, cosine ᾱ_t, prior p = {p0:.5} (onsets), {p1:.5} (sustain): the mean\n  \
           cell density of the train windows.\n\
         - Shape: base channels {bc}, channel multipliers {mults:?}, {rb} residual block(s) per level.\n\
         {conditioning}\
         - Training: AdamW (lr {lr}, weight decay {wd}, warm-up {warm} steps, cosine decay to lr/10\n  \
           over the {budget} budget), batch {batch}, {steps_done} steps, {epochs} epoch(s),\n  \
           {wall} wall time on a 2-core CPU, seed {seed}.\n\
         {ema_line}\
         - Best validation loss (mean BCE per cell over t uniform in 1..T): {best:.5}\n\n\
         {val_head}{val_rows}\n\
         Loss curve: `loss.png`. Reproduce: `cargo xtask train roll`.\n",
        status = if state.finished {
            "finished"
        } else {
            "training in progress (these are the best weights so far)"
        },
        train = state.train_windows,
        bars = cfg.steps / 16,
        hop = opts.hop_bars,
        shift = opts.max_shift,
        val = state.val_windows,
        steps = cfg.steps,
        lo = crate::music::pitch_name(cfg.pitch_lo),
        hi = crate::music::pitch_name(cfg.pitch_lo + cfg.pitches as u8 - 1),
        t = cfg.diffusion_steps,
        p0 = cfg.prior[0],
        p1 = cfg.prior[1],
        bc = cfg.base_channels,
        mults = cfg.channel_mults,
        rb = cfg.res_blocks,
        conditioning = if cfg.conditioned {
            "- Conditioned: the network also reads the known cells and where they are; trained on\n  \
             masks drawn like the tasks (`train::roll::training_free_cells`); validation with\n  \
             nothing known.\n"
        } else {
            ""
        },
        lr = opts.lr,
        wd = opts.weight_decay,
        warm = opts.warmup,
        budget = format_duration(opts.budget),
        batch = state.batch,
        steps_done = state.step,
        epochs = state.epoch,
        wall = format_duration(Duration::from_secs_f64(state.elapsed_secs)),
        seed = opts.seed,
        best = state.best_val.unwrap_or(f64::NAN),
    );
    std::fs::write(dir.join("CARD.md"), card)
        .with_context(|| format!("cannot write {}", dir.join("CARD.md").display()))
}

/// One AdamW step on the mean BCE of the x̂_0 logits for network inputs `xt`
/// `[batch, input channels, steps, pitches]` (noisy rolls, and the known cells for a
/// conditioned model) at times `t` `[batch]` against `x0`, the batch cut into one
/// sub-batch per pool thread ([`crate::nn::pool_parts`]); returns the loss.
pub fn train_step(
    net: &RollUnet,
    opt: &mut AdamW,
    xt: &Tensor,
    t: &Tensor,
    x0: &Tensor,
) -> Result<f64> {
    let (ranges, weights) = crate::nn::pool_parts(xt.dim(0)?, 4);
    // On a pool thread, so that its parallel ops do not each wake two threads.
    crate::nn::in_pool(|| {
        opt.split_backward_step(&weights, |i| {
            let r = &ranges[i];
            let part = |x: &Tensor| x.narrow(0, r.start, r.len());
            Ok(bce_with_logits(
                &net.forward(&part(xt)?, &part(t)?)?,
                &part(x0)?,
            )?)
        })
    })
}

/// Seconds per forward pass and per training step (forward, backward, AdamW) of `cfg` on
/// random rolls of `batch`, averaged over `iters` after one warm-up step.
pub fn time_step(cfg: &Config, batch: usize, iters: usize) -> Result<(f64, f64)> {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let net = RollUnet::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
    let mut opt = AdamW::new(&varmap, 1e-3, 0.01)?;
    let schedule = BinomialSchedule::new(cfg.diffusion_steps, cfg.prior);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let plane = cfg.steps * cfg.pitches;
    let x0: Vec<f32> = (0..batch * 2 * plane)
        .map(|_| if rng.random::<f32>() < 0.05 { 1.0 } else { 0.0 })
        .collect();
    let ts: Vec<usize> = (0..batch)
        .map(|_| rng.random_range(1..=cfg.diffusion_steps))
        .collect();
    let xt = schedule.q_sample(&x0, plane, &ts, &mut rng);
    let mut input = Vec::with_capacity(batch * cfg.input_channels() * plane);
    for b in 0..batch {
        let roll = b * 2 * plane..(b + 1) * 2 * plane;
        conditioned_input(cfg, &xt[roll.clone()], &x0[roll], None, &mut input);
        crate::models::roll::part_input(
            cfg,
            None,
            crate::models::roll::PartRole::Accompaniment,
            &mut input,
        );
    }
    let (x0, xt) = (
        Tensor::from_vec(x0, (batch, 2, cfg.steps, cfg.pitches), &device)?,
        Tensor::from_vec(
            input,
            (batch, cfg.input_channels(), cfg.steps, cfg.pitches),
            &device,
        )?,
    );
    let t = Tensor::from_vec(
        ts.iter().map(|&t| t as f32).collect::<Vec<_>>(),
        batch,
        &device,
    )?;
    let mut step = || -> Result<()> {
        train_step(&net, &mut opt, &xt, &t, &x0)?;
        Ok(())
    };
    step()?;
    let tick = Instant::now();
    for _ in 0..iters {
        step()?;
    }
    let per_step = tick.elapsed().as_secs_f64() / iters.max(1) as f64;
    let tick = Instant::now();
    for _ in 0..iters {
        crate::nn::in_pool(|| net.forward(&xt, &t))?;
    }
    let per_forward = tick.elapsed().as_secs_f64() / iters.max(1) as f64;
    Ok((per_forward, per_step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_render_with_transposition() {
        let cfg = Config {
            steps: 16,
            pitches: 24,
            pitch_lo: 48,
            ..Config::tiny()
        };
        let w = RollWindow {
            notes: vec![(0, 60, 4), (8, 71, 20)],
            melody: vec![true, false],
        };
        let mut buf = vec![0.0; 2 * 16 * 24];
        w.render(&cfg, 2, &mut buf);
        let plane = 16 * 24;
        assert_eq!(buf[14], 1.0); // onset of 62 at step 0
        assert_eq!(buf[plane + 3 * 24 + 14], 1.0);
        assert_eq!(buf[plane + 4 * 24 + 14], 0.0);
        assert_eq!(buf[plane + 15 * 24 + 25 - 2], 0.0); // 73 is outside the 24-pitch window
        assert_eq!(buf.iter().sum::<f32>(), 1.0 + 4.0);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let s = random_shift(&w, &cfg, 6, &mut rng);
            assert!((-6..=0).contains(&s) && 60 + s >= 48 && 71 + s < 72, "{s}");
        }
    }

    #[test]
    fn training_masks_keep_whole_context_notes_and_cover_every_task() {
        let cfg = Config {
            steps: 64,
            pitches: 24,
            pitch_lo: 48,
            ..Config::fast_conditioned()
        };
        // A melody note over bars 1-2 and an accompaniment note crossing into bar 3.
        let w = RollWindow {
            notes: vec![(0, 71, 24), (20, 55, 20), (40, 60, 8)],
            melody: vec![true, false, false],
        };
        let cell = |s: usize, p: u8| s * 24 + (p - 48) as usize;
        let (mut none, mut harmonize) = (0, 0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..400 {
            let Some(free) = training_free_cells(&w, 0, &cfg, &mut rng) else {
                none += 1;
                continue;
            };
            assert_eq!(free.len(), 64 * 24);
            // A note whose onset is known is context: every cell of it is known.
            for &(start, pitch, len) in &w.notes {
                let cells: Vec<bool> = (start..start + len)
                    .map(|s| free[cell(s as usize, pitch)])
                    .collect();
                assert!(cells[0] || cells.iter().all(|f| !f), "{cells:?}");
            }
            let melody_known = (0..24).all(|s| !free[cell(s, 71)]);
            let rest_free = (0..64 * 24)
                .filter(|&i| !(i % 24 == 71 - 48 && i / 24 < 24))
                .all(|i| free[i]);
            if melody_known && rest_free {
                harmonize += 1;
            }
        }
        assert!((40..120).contains(&none), "{none} draws knew nothing");
        assert!(
            (60..160).contains(&harmonize),
            "{harmonize} harmonize draws"
        );
    }

    #[test]
    fn bce_matches_the_formula() {
        let x = Tensor::new(&[-30f32, 0.0, 2.0, 30.0], &Device::Cpu).unwrap();
        let z = Tensor::new(&[0f32, 1.0, 0.0, 1.0], &Device::Cpu).unwrap();
        let got = bce_with_logits(&x, &z).unwrap().to_scalar::<f32>().unwrap();
        let want = (0.0 + 2f32.ln() + (1.0 + 2f32.exp()).ln() + 0.0) / 4.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}
