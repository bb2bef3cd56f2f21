//! Training the piano-roll diffusion UNet ([`crate::models::roll`]) on POP909.
//!
//! Noisy rolls are drawn on the fly: every batch takes 4-bar 4/4 windows of the train split,
//! transposes each by a random shift that keeps its notes in the pitch window, draws a random
//! step t in 1..=T and x_t ~ q(x_t | x_0), and fits the logits of x̂_0 with binary cross-entropy.
//! Validation: the same loss on a fixed set of valid-split windows, steps and noise, once per
//! epoch. The run goes through the shared loop ([`super::run_loop`]): checkpoints (weights,
//! AdamW moments, state, and the weight average with `ema`) go to the run folder every few
//! minutes; a run started again with the same folder resumes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::adamw::AdamW;
use super::ema::Ema;
use super::run_loop::{
    EpochOrder, LoopOptions, LoopState, Measured, Trainee, derefs_to_run, new_model, run_reported,
    spread, step_rng, steps_per_epoch,
};
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
    pub weight_decay: f64,
    /// Bars between the starts of training windows.
    pub hop_bars: u32,
    /// Cap on the batches of one epoch (each epoch then sees a fresh random subset), so that
    /// validation and checkpoints come often on a slow CPU.
    pub epoch_steps: Option<usize>,
    /// Largest transposition in semitones, up or down.
    pub max_shift: i32,
    /// Validation windows (spread evenly over the valid split).
    pub val_windows: usize,
    pub data_root: PathBuf,
    pub cache_dir: PathBuf,
    pub seed: u64,
    /// Keep an exponential moving average of the weights with this decay ([`Ema`]); it is
    /// then what is validated and exported (the raw weights' validation loss is logged too).
    pub ema: Option<f64>,
    /// Learning rate (linear warm-up, then cosine decay to lr/10 over the budget), budget,
    /// checkpoints and the run folder; the best weights go to `assets_dir` (config.json,
    /// model.safetensors, CARD.md, loss.png; `None`: run folder only). `bandmate train roll`
    /// exports to `artifacts/roll`, to the shipped `assets/roll` only with `--ship` (or to
    /// `--assets DIR`).
    pub run: LoopOptions,
}

derefs_to_run!(TrainOptions);

impl TrainOptions {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            batch: 16,
            weight_decay: 0.01,
            hop_bars: 2,
            epoch_steps: None,
            max_shift: 6,
            val_windows: 512,
            data_root: data::default_data_root(),
            cache_dir: data::default_cache_dir(),
            seed: 0,
            ema: None,
            run: LoopOptions::new("roll", 2e-3, "90m"),
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

/// The 4/4 windows of `steps` steps (whole bars) of every song, starting every `hop_bars` bars;
/// `model` names the model in the error when `steps` is not whole bars.
pub(crate) fn four_four_windows(
    songs: &[Song],
    steps: usize,
    hop_bars: u32,
    model: &str,
) -> Result<impl Iterator<Item = crate::music::Clip>> {
    let spb = TimeSignature::FOUR_FOUR.steps_per_bar() as usize;
    if !steps.is_multiple_of(spb) {
        bail!("{model} windows of {steps} steps are not whole 4/4 bars of {spb} steps");
    }
    let bars = (steps / spb) as u32;
    Ok(songs
        .iter()
        .flat_map(move |song| crate::music::segment::windows(&song.clip, bars, hop_bars))
        .filter(|w| w.time_signature == TimeSignature::FOUR_FOUR))
}

/// The 4/4 windows of `cfg.steps` steps (whole bars) of every song, starting every `hop_bars`
/// bars, with the notes of the non-drum tracks.
pub fn roll_windows(songs: &[Song], cfg: &Config, hop_bars: u32) -> Result<Vec<RollWindow>> {
    let mut out = Vec::new();
    for w in four_four_windows(songs, cfg.steps, hop_bars, "roll model")? {
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

/// The outcome of [`train`].
pub use super::run_loop::TrainReport;

/// The EMA decay of a run, if it keeps a weight average (from its state's notes).
pub fn ema_decay(state: &LoopState) -> Option<f64> {
    state.notes.get("ema").and_then(serde_json::Value::as_f64)
}

/// (step, validation loss of the raw weights) of a run that exports a weight average.
pub fn raw_val_loss(state: &LoopState) -> Vec<(usize, f64)> {
    state
        .val_loss
        .iter()
        .zip(&state.val_extra)
        .filter_map(|(v, extra)| Some((v.0, *extra.first()?)))
        .collect()
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

/// A roll model in training (see [`train`]).
struct RollTrainee {
    opts: TrainOptions,
    cfg: Config,
    schedule: BinomialSchedule,
    train: Vec<RollWindow>,
    val: Vec<RollWindow>,
    varmap: VarMap,
    net: RollUnet,
    opt: AdamW,
    /// The weight average and the network reading its variables (which every update sets in
    /// place): what is validated and exported.
    ema: Option<(Ema, RollUnet)>,
    order: EpochOrder,
}

impl RollTrainee {
    /// A new model for `train` windows (whose density becomes the prior) and `val` windows.
    fn new(opts: &TrainOptions, train: Vec<RollWindow>, val: Vec<RollWindow>) -> Result<Self> {
        let cfg = Config {
            prior: density(&train, &opts.config),
            ..opts.config.clone()
        };
        eprintln!(
            "roll: prior p = {:?} (onset, sustain density of the train windows)",
            cfg.prior
        );
        eprintln!("roll: config {}", serde_json::to_string(&cfg)?);
        let (varmap, net, opt) = new_model("roll", opts.run.lr, opts.weight_decay, |vb| {
            RollUnet::new(&cfg, vb)
        })?;
        let mut trainee = Self {
            opts: opts.clone(),
            schedule: BinomialSchedule::new(cfg.diffusion_steps, cfg.prior),
            cfg,
            train,
            val,
            varmap,
            net,
            opt,
            ema: None,
            order: EpochOrder::default(),
        };
        trainee.start_ema(opts.ema)?;
        Ok(trainee)
    }

    /// Start a weight average of the current weights with `decay` (none without).
    fn start_ema(&mut self, decay: Option<f64>) -> Result<()> {
        self.ema = match decay {
            Some(decay) => {
                let ema = Ema::new(&self.varmap, decay)?;
                let vb = VarBuilder::from_varmap(&ema.shadow, DType::F32, &Device::Cpu);
                eprintln!("roll: weight average with decay {decay}");
                let net = RollUnet::new(&self.cfg, vb)?;
                Some((ema, net))
            }
            None => None,
        };
        Ok(())
    }
}

impl Trainee for RollTrainee {
    fn record(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.cfg,
            "train_windows": self.train.len(),
            "val_windows": self.val.len(),
            "batch": self.opts.batch,
        })
    }

    fn steps_per_epoch(&self) -> usize {
        steps_per_epoch(self.train.len(), self.opts.batch, self.opts.epoch_steps)
    }

    fn step(&mut self, epoch: usize, batch: usize, step: usize, lr: f64) -> Result<Measured> {
        let (opts, cfg) = (&self.opts, &self.cfg);
        let ws = self
            .order
            .pick(&self.train, opts.seed, epoch, batch, opts.batch)?;
        let mut rng = step_rng(opts.seed, step);
        let shifts: Vec<i32> = ws
            .iter()
            .map(|w| random_shift(w, cfg, opts.max_shift, &mut rng))
            .collect();
        let ts: Vec<usize> = ws
            .iter()
            .map(|_| rng.random_range(1..=cfg.diffusion_steps))
            .collect();
        let device = Device::Cpu;
        let b = make_batch(
            &ws,
            &shifts,
            &ts,
            cfg,
            &self.schedule,
            true,
            &mut rng,
            &device,
        )?;
        self.opt.lr = lr;
        let loss = train_step(&self.net, &mut self.opt, &b.input, &b.t, &b.x0)?;
        if let Some((ema, _)) = &self.ema {
            ema.update(step)?;
        }
        Ok(loss.into())
    }

    /// With a weight average, its loss, the raw weights' loss beside it.
    fn validate(&mut self) -> Result<Measured> {
        let device = Device::Cpu;
        let (val, cfg, schedule, batch) = (&self.val, &self.cfg, &self.schedule, self.opts.batch);
        let raw = validate(&self.net, val, cfg, schedule, batch, &device)?;
        Ok(match &self.ema {
            Some((_, ema_net)) => Measured {
                loss: validate(ema_net, val, cfg, schedule, batch, &device)?,
                extra: vec![raw],
            },
            None => raw.into(),
        })
    }

    fn exported(&mut self) -> &VarMap {
        self.ema.as_ref().map_or(&self.varmap, |(e, _)| &e.shadow)
    }

    fn weights_and_optimizer(&mut self) -> (&mut VarMap, &mut AdamW) {
        (&mut self.varmap, &mut self.opt)
    }

    fn curve_names(&self) -> (&str, &str) {
        (
            "Roll diffusion: BCE of x̂_0",
            if self.ema.is_some() {
                "validation, weight average (POP909 valid)"
            } else {
                "validation (POP909 valid)"
            },
        )
    }

    fn extra_names(&self) -> &[&str] {
        &["raw weights"]
    }

    fn extra_curves(&self, state: &LoopState) -> Vec<(String, Vec<(f64, f64)>)> {
        let raw = raw_val_loss(state);
        if raw.is_empty() {
            return Vec::new();
        }
        let points = raw.into_iter().map(|(s, l)| (s as f64, l)).collect();
        vec![("validation, raw weights".into(), points)]
    }

    fn notes(&self) -> serde_json::Value {
        serde_json::json!({ "ema": self.ema.as_ref().map(|(e, _)| e.decay) })
    }

    fn save_extra(&self, run_dir: &Path) -> Result<()> {
        match &self.ema {
            Some((ema, _)) => ema.save(&run_dir.join(EMA_FILE)),
            None => Ok(()),
        }
    }

    /// The weight average goes on from the loaded weights with the asked decay or the run's,
    /// and its saved values.
    fn resume(&mut self, state: &LoopState, run_dir: &Path) -> Result<()> {
        self.start_ema(self.opts.ema.or(ema_decay(state)))?;
        let path = run_dir.join(EMA_FILE);
        if let Some((ema, _)) = self.ema.as_mut()
            && path.exists()
        {
            ema.load(&path)?;
        }
        Ok(())
    }

    fn card(&self, state: &LoopState, opts: &LoopOptions) -> String {
        card(self, state, opts)
    }
}

/// Train (or resume) a roll model. Prints progress lines on stderr.
pub fn train(opts: &TrainOptions) -> Result<TrainReport> {
    eprintln!("roll: loading POP909 from {}", opts.data_root.display());
    let load = |split| data::load_cached(Dataset::Pop909, split, &opts.data_root, &opts.cache_dir);
    let cfg = &opts.config;
    let train_windows = roll_windows(&load(Split::Train)?, cfg, opts.hop_bars)?;
    let bars = (cfg.steps / (4 * STEPS_PER_BEAT as usize)) as u32;
    let val_windows = spread(
        &roll_windows(&load(Split::Valid)?, cfg, bars)?,
        opts.val_windows,
    );
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
    let mut trainee = RollTrainee::new(opts, train_windows, val_windows)?;
    run_reported(&mut trainee, &opts.run)
}

/// The model card: data, shape, steps, wall time and losses.
fn card(t: &RollTrainee, state: &LoopState, loop_opts: &LoopOptions) -> String {
    let (cfg, opts) = (&t.cfg, &t.opts);
    let raw = raw_val_loss(state);
    let raw_at = |step: usize| {
        raw.iter()
            .find(|r| r.0 == step)
            .map_or(String::new(), |r| format!(" {:.5} |", r.1))
    };
    let val_rows: String = state
        .val_loss
        .iter()
        .map(|&(step, epoch, l)| format!("| {epoch} | {step} | {l:.5} |{}\n", raw_at(step)))
        .collect();
    let (val_head, ema_line) = match t.ema.as_ref().map(|(e, _)| e.decay) {
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
    format!(
        "# Roll diffusion model (default weights)\n\n\
         Binomial diffusion on two-channel (onset, sustain) piano rolls, after Atassi (2023),\n\
         \"Generating symbolic music using diffusion models\". The network is the UNet of\n\
         `engine/src/models/roll.rs`; it predicts x̂_0 from x_t. Sampling and tasks are in\n\
         `engine/src/diffusion/`.\n\n\
         - Status: {status}\n\
         - Data: POP909 train split ({train} windows of {bars} bars of 4/4, hop {hop} bars, all\n  \
           non-drum tracks merged), random transposition within ±{shift} semitones that keeps\n  \
           the notes in the pitch window; validation on {val} windows of the valid split.\n\
         {shape}\
         {conditioning}\
         {training}\
         {ema_line}\
         - Best validation loss (mean BCE per cell over t uniform in 1..T): {best:.5}\n\n\
         {val_head}{val_rows}\n\
         Loss curve: `loss.png`. Reproduce: `cargo xtask train roll`.\n",
        status = state.card_status(),
        train = t.train.len(),
        bars = cfg.steps / 16,
        hop = opts.hop_bars,
        shift = opts.max_shift,
        val = t.val.len(),
        shape = shape_lines(cfg, "the mean cell density of the train windows"),
        conditioning = if cfg.conditioned {
            "- Conditioned: the network also reads the known cells and where they are; trained on\n  \
             masks drawn like the tasks (`train::roll::training_free_cells`); validation with\n  \
             nothing known.\n"
        } else {
            ""
        },
        training = state.training_line(loop_opts, opts.batch, Some(opts.weight_decay), opts.seed),
        best = state.best_val.unwrap_or(f64::NAN),
    )
}

/// The model card's lines on a roll network's window, diffusion and shape; `prior_is` says
/// what the prior densities are the mean of.
pub(crate) fn shape_lines(cfg: &Config, prior_is: &str) -> String {
    format!(
        "- Window: {steps} steps (16th notes) × pitches {lo}–{hi}.\n\
         - Diffusion: T = {t}, cosine ᾱ_t, prior p = {p0:.5} (onsets), {p1:.5} (sustain): \
         {prior_is}.\n\
         - Shape: base channels {bc}, channel multipliers {mults:?}, {rb} residual block(s) per \
         level.\n",
        steps = cfg.steps,
        lo = crate::music::pitch_name(cfg.pitch_lo),
        hi = crate::music::pitch_name(cfg.pitch_lo + cfg.pitches as u8 - 1),
        t = cfg.diffusion_steps,
        p0 = cfg.prior[0],
        p1 = cfg.prior[1],
        bc = cfg.base_channels,
        mults = cfg.channel_mults,
        rb = cfg.res_blocks,
    )
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

    /// `base` with windows of `steps` steps over the 24 pitches from C3 (48).
    fn two_octaves(steps: usize, base: Config) -> Config {
        Config {
            steps,
            pitches: 24,
            pitch_lo: 48,
            ..base
        }
    }

    #[test]
    fn windows_render_with_transposition() {
        let cfg = two_octaves(16, Config::tiny());
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
        let cfg = two_octaves(64, Config::fast_conditioned());
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

    /// Random windows of `cfg`'s shape.
    fn random_windows(cfg: &Config, count: usize, seed: u64) -> Vec<RollWindow> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..count)
            .map(|_| {
                let notes: Vec<(u16, u8, u16)> = (0..12)
                    .map(|_| {
                        (
                            rng.random_range(0..cfg.steps as u16),
                            cfg.pitch_lo + rng.random_range(8..cfg.pitches as u8 - 8),
                            rng.random_range(1..8),
                        )
                    })
                    .collect();
                let melody = (0..notes.len()).map(|i| i < 4).collect();
                RollWindow { notes, melody }
            })
            .collect()
    }

    #[test]
    fn a_tiny_run_with_a_weight_average_resumes_and_exports_weights_that_load() {
        let cfg = Config {
            channel_mults: vec![1, 2],
            conditioned: true,
            ..Config::small().narrow()
        };
        let mut opts = TrainOptions::new(cfg.clone());
        opts.batch = 2;
        opts.ema = Some(0.9);
        let (train, val) = (random_windows(&cfg, 5, 1), random_windows(&cfg, 3, 2));
        let (a, b) = super::super::run_loop::testing::runs_and_resumes(
            "roll",
            || RollTrainee::new(&opts, train.clone(), val.clone()).unwrap(),
            |dir| crate::diffusion::model::RollModel::load_dir(dir).map(drop),
        );
        assert_eq!((ema_decay(&a), ema_decay(&b)), (Some(0.9), Some(0.9)));
        assert_eq!(raw_val_loss(&b).len(), 3);
        assert_ne!(raw_val_loss(&b)[2].1, b.val_loss[2].2);
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
