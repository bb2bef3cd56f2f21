//! One training loop for the models: learning-rate schedule, wall-time budget, checkpoints and
//! resume, validation once per epoch, progress lines, the loss curve, the export of the best
//! weights and the model card. A model plugs in through [`Trainee`]: how to take one optimizer
//! step, how to validate, and what its card says; the trait's default methods cover what only
//! some models need (numbers beside the loss, files beside the checkpoint, a resumed record).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::adamw::AdamW;
use super::format_duration;
use super::plot::{Series, loss_curve};
use super::run_files::{CheckpointFiles, export_best, export_loss_curve, progress_bar};

/// The learning rate at optimizer step `step`: a linear warm-up over `warmup` steps to `lr`,
/// then a cosine decay to `lr / 10` as `progress` (0..1 of the run) goes by.
pub fn learning_rate(lr: f64, warmup: usize, step: usize, progress: f64) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let p = progress.clamp(0.0, 1.0);
    lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
}

/// How long and how a run goes.
#[derive(Clone, Debug)]
pub struct LoopOptions {
    /// The model's name in progress lines (`parts`).
    pub name: String,
    pub lr: f64,
    pub warmup: usize,
    /// Wall-time budget, counting the time spent before a resume.
    pub budget: Duration,
    pub max_epochs: usize,
    /// Stop after this many optimizer steps (smoke runs).
    pub max_steps: Option<usize>,
    /// A progress line every this many steps.
    pub log_every: usize,
    /// A checkpoint at least this often.
    pub checkpoint_every: Duration,
    /// Checkpoint, state, log and loss curve.
    pub run_dir: PathBuf,
    /// Where the best weights, config, loss curve and card go; `None`: the run folder only.
    pub assets_dir: Option<PathBuf>,
    /// Start over even when the run folder holds a checkpoint.
    pub fresh: bool,
}

impl LoopOptions {
    /// The options of model `name` at learning rate `lr` within `budget` (`90m`), in the run
    /// folder `artifacts/train/<name>` without an export; 200 warm-up steps, at most 1000
    /// epochs, a progress line every 25 steps and a checkpoint every 5 minutes.
    pub fn new(name: &str, lr: f64, budget: &str) -> Self {
        Self {
            name: name.into(),
            lr,
            warmup: 200,
            budget: super::parse_duration(budget).expect("a valid budget"),
            max_epochs: 1000,
            max_steps: None,
            log_every: 25,
            checkpoint_every: Duration::from_secs(300),
            run_dir: PathBuf::from("artifacts/train").join(name),
            assets_dir: None,
            fresh: false,
        }
    }
}

/// What a run has done (saved as `state.json` beside the checkpoint).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoopState {
    pub step: usize,
    pub epoch: usize,
    /// Batches of the current epoch already done.
    pub batch_in_epoch: usize,
    pub elapsed_secs: f64,
    /// (step, mean training loss since the previous point).
    pub train_loss: Vec<(usize, f64)>,
    /// (step, epoch, validation loss).
    pub val_loss: Vec<(usize, usize, f64)>,
    pub best_val: Option<f64>,
    pub finished: bool,
    /// The model's own record (its config and data sizes): a resumed run must match it.
    pub model: serde_json::Value,
    /// Per point of `train_loss`: the means of the steps' other numbers ([`Measured::extra`]).
    #[serde(default)]
    pub train_extra: Vec<Vec<f64>>,
    /// Per point of `val_loss`: the validation's other numbers ([`Measured::extra`]).
    #[serde(default)]
    pub val_extra: Vec<Vec<f64>>,
    /// What the model keeps across a resume without it being checked ([`Trainee::notes`]).
    #[serde(default)]
    pub notes: serde_json::Value,
}

impl LoopState {
    /// The model card's line on how the run trained: optimizer and schedule, batch, steps,
    /// epochs, wall time and seed (`weight_decay` when the run used one).
    pub fn training_line(
        &self,
        loop_opts: &LoopOptions,
        batch: usize,
        weight_decay: Option<f64>,
        seed: u64,
    ) -> String {
        let decay = weight_decay.map_or(String::new(), |wd| format!(", weight decay {wd}"));
        format!(
            "- Training: AdamW (lr {lr}{decay}, warm-up {warm} steps, cosine decay to lr/10 over \
             the {budget} budget), batch {batch}, {steps} steps, {epochs} epoch(s), {wall} wall \
             time on a 2-core CPU, seed {seed}.\n",
            lr = loop_opts.lr,
            warm = loop_opts.warmup,
            budget = super::format_duration(loop_opts.budget),
            steps = self.step,
            epochs = self.epoch,
            wall = super::format_duration(Duration::from_secs_f64(self.elapsed_secs)),
        )
    }

    /// The status line of a model card: whether the run finished or its best weights so far are
    /// exported.
    pub fn card_status(&self) -> &'static str {
        if self.finished {
            "finished"
        } else {
            "training in progress (these are the best weights so far)"
        }
    }
}

/// The outcome of a training run ([`run_reported`]).
#[derive(Clone, Debug)]
pub struct TrainReport {
    pub state: LoopState,
    pub run_dir: PathBuf,
}

/// What one optimizer step or one validation measured: the loss (the validation loss picks the
/// best weights) and other numbers kept beside it, named by [`Trainee::extra_names`] (e.g. a
/// VAE's reconstruction and KL).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measured {
    pub loss: f64,
    pub extra: Vec<f64>,
}

impl From<f64> for Measured {
    fn from(loss: f64) -> Self {
        Self {
            loss,
            extra: Vec::new(),
        }
    }
}

/// The rng of optimizer step `step` of a run seeded with `seed` (batch draws, noise, masks).
pub fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The shuffled order of `n` training items in epoch `epoch` of a run seeded with `seed`.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(
        seed.wrapping_add(epoch as u64),
    ));
    order
}

/// [`epoch_order`] kept for the epoch under way: the items of each batch.
#[derive(Clone, Debug, Default)]
pub struct EpochOrder {
    epoch: Option<usize>,
    order: Vec<usize>,
}

impl EpochOrder {
    /// The indices (of `n` items) of batch `batch` of `size` in epoch `epoch`.
    pub fn batch(
        &mut self,
        n: usize,
        seed: u64,
        epoch: usize,
        batch: usize,
        size: usize,
    ) -> Result<&[usize]> {
        if self.epoch != Some(epoch) || self.order.len() != n {
            self.order = epoch_order(n, seed, epoch);
            self.epoch = Some(epoch);
        }
        self.order
            .get(batch * size..(batch + 1) * size)
            .with_context(|| format!("batch {batch} of {size} is past the {n} training items"))
    }

    /// The items of batch `batch` of `size` in epoch `epoch` (see [`EpochOrder::batch`]).
    pub fn pick<'a, T>(
        &mut self,
        items: &'a [T],
        seed: u64,
        epoch: usize,
        batch: usize,
        size: usize,
    ) -> Result<Vec<&'a T>> {
        let idx = self.batch(items.len(), seed, epoch, batch, size)?;
        Ok(idx.iter().map(|&i| &items[i]).collect())
    }
}

/// A model built by `build` on new variables, and their AdamW optimizer; the number of
/// parameters goes to stderr.
pub fn new_model<M, E>(
    name: &str,
    lr: f64,
    weight_decay: f64,
    build: impl FnOnce(VarBuilder) -> std::result::Result<M, E>,
) -> Result<(VarMap, M, AdamW)>
where
    anyhow::Error: From<E>,
{
    let varmap = VarMap::new();
    let model = build(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    let opt = AdamW::new(&varmap, lr, weight_decay)?;
    let params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    eprintln!("{name}: {params} parameters");
    Ok((varmap, model, opt))
}

/// Optimizer steps in an epoch of `items` training items in batches of `batch`, at most `cap`.
pub fn steps_per_epoch(items: usize, batch: usize, cap: Option<usize>) -> usize {
    (items / batch.max(1)).min(cap.unwrap_or(usize::MAX)).max(1)
}

/// Evenly spaced `count` of `items` (all of them when there are no more).
pub fn spread<T: Clone>(items: &[T], count: usize) -> Vec<T> {
    if items.len() <= count {
        return items.to_vec();
    }
    (0..count)
        .map(|i| items[i * items.len() / count].clone())
        .collect()
}

/// A model being trained by [`run`].
pub trait Trainee {
    /// The record kept in the state; a run resumes only when it is unchanged.
    fn record(&self) -> serde_json::Value;
    /// Optimizer steps in one epoch.
    fn steps_per_epoch(&self) -> usize;
    /// One optimizer step at learning rate `lr` on batch `batch` of epoch `epoch` (global step
    /// `step`, for seeding); returns the training loss (and its other numbers).
    fn step(&mut self, epoch: usize, batch: usize, step: usize, lr: f64) -> Result<Measured>;
    /// The validation loss of the exported weights (fixed windows, noise and masks), and its
    /// other numbers.
    fn validate(&mut self) -> Result<Measured>;
    /// The trained variables and their optimizer (for checkpoints).
    fn weights_and_optimizer(&mut self) -> (&mut VarMap, &mut AdamW);
    /// Title of the loss curve and the validation series' name.
    fn curve_names(&self) -> (&str, &str);
    /// The model card for the weights exported so far.
    fn card(&self, state: &LoopState, opts: &LoopOptions) -> String;

    /// The exported variables: the trained ones, or e.g. their weight average.
    fn exported(&mut self) -> &VarMap {
        self.weights_and_optimizer().0
    }
    /// `config.json` of the exported weights: the record's `config`.
    fn config_json(&self) -> serde_json::Value {
        self.record()["config"].clone()
    }
    /// Names of the other numbers of [`Measured::extra`] in progress lines, in order (the
    /// steps' may be fewer than the validations').
    fn extra_names(&self) -> &[&str] {
        &[]
    }
    /// Name of the training loss series of the loss curve.
    fn train_curve_name(&self) -> &str {
        "train (mean per log interval)"
    }
    /// More series of the loss curve (name, (step, value) points), e.g. from
    /// [`LoopState::val_extra`].
    fn extra_curves(&self, _state: &LoopState) -> Vec<(String, Vec<(f64, f64)>)> {
        Vec::new()
    }
    /// What the state keeps for a resume without checking it against the resumed run (e.g. a
    /// weight average's decay); [`Trainee::resume`] gets it back in [`LoopState::notes`].
    fn notes(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Save the checkpoint's files beyond the weights and the optimizer into `run_dir`.
    fn save_extra(&self, _run_dir: &Path) -> Result<()> {
        Ok(())
    }
    /// The run resumes from `state` (weights and optimizer loaded): take back what
    /// [`Trainee::notes`] and [`Trainee::save_extra`] kept.
    fn resume(&mut self, _state: &LoopState, _run_dir: &Path) -> Result<()> {
        Ok(())
    }
    /// Whether the validation line of epoch `epoch` is printed (a new best always is).
    fn logs_validation(&self, _epoch: usize) -> bool {
        true
    }
}

/// `(recon 1.234, KL 5.678)` for the other numbers `extra` named by `names`; empty without any.
fn extra_text(names: &[&str], extra: &[f64]) -> String {
    if extra.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = extra
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{} {v:.4}", names.get(i).copied().unwrap_or("extra")))
        .collect();
    format!(" ({})", parts.join(", "))
}

/// The mean of every column of `rows` (rows of equal length).
fn column_means(rows: &[Vec<f64>]) -> Vec<f64> {
    let width = rows.first().map_or(0, Vec::len);
    (0..width)
        .map(|c| rows.iter().map(|r| r[c]).sum::<f64>() / rows.len() as f64)
        .collect()
}

/// A trainer's options hold the loop's as `run`; `$t` also reads and writes them as its own
/// fields (`opts.lr`, `opts.run_dir`), as its callers did before they moved into `run`.
macro_rules! derefs_to_run {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = $crate::train::run_loop::LoopOptions;
            fn deref(&self) -> &Self::Target {
                &self.run
            }
        }
        impl std::ops::DerefMut for $t {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.run
            }
        }
    };
}
pub(crate) use derefs_to_run;

/// [`run`], with the run folder beside the final state.
pub fn run_reported(trainee: &mut dyn Trainee, opts: &LoopOptions) -> Result<TrainReport> {
    Ok(TrainReport {
        state: run(trainee, opts)?,
        run_dir: opts.run_dir.clone(),
    })
}

/// Train (or resume) `trainee`; progress lines go to stderr.
///
/// A run folder resumes only with a `state.json` of this loop whose model record matches:
/// checkpoints written by the trainers' own loops before they moved here do not resume (start
/// them again with `--fresh`).
pub fn run(trainee: &mut dyn Trainee, opts: &LoopOptions) -> Result<LoopState> {
    let name = opts.name.as_str();
    std::fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("cannot create {}", opts.run_dir.display()))?;
    let files = CheckpointFiles::in_dir(&opts.run_dir);
    // The record as it reads back from `state.json` (serde_json's float parsing may differ from
    // the value in the last bit, which would fail the comparison below).
    let record = serde_json::from_str(&serde_json::to_string(&trainee.record())?)?;
    let mut state = LoopState {
        model: record,
        ..LoopState::default()
    };
    if !opts.fresh && files.exist() {
        let saved: LoopState = serde_json::from_str(&std::fs::read_to_string(&files.state)?)
            .with_context(|| format!("{} is not a training state", files.state.display()))?;
        if saved.model != state.model {
            bail!(
                "{} holds a run of another model or data; pass --fresh or another run folder",
                opts.run_dir.display()
            );
        }
        state = saved;
        let (varmap, opt) = trainee.weights_and_optimizer();
        files.load(varmap, opt, state.step)?;
        trainee.resume(&state, &opts.run_dir)?;
        eprintln!(
            "{name}: resuming at step {} (epoch {}, {} used)",
            state.step,
            state.epoch + 1,
            format_duration(Duration::from_secs_f64(state.elapsed_secs))
        );
    }
    let started = Instant::now();
    let base_elapsed = state.elapsed_secs;
    let used = || base_elapsed + started.elapsed().as_secs_f64();
    let budget = opts.budget.as_secs_f64();
    let steps_per_epoch = trainee.steps_per_epoch().max(1);
    let mut last_checkpoint = Instant::now();
    let mut window_loss = (0.0, 0usize);
    let mut window_extra: Vec<Vec<f64>> = Vec::new();
    let mut step_time = None::<f64>;
    let mut val_seconds = 0.0f64;

    let save = |trainee: &mut dyn Trainee, state: &mut LoopState| -> Result<()> {
        state.notes = trainee.notes();
        trainee.save_extra(&opts.run_dir)?;
        let (varmap, opt) = trainee.weights_and_optimizer();
        files.save(varmap, opt, state)
    };

    'epochs: while state.epoch < opts.max_epochs {
        while state.batch_in_epoch < steps_per_epoch {
            let now = used();
            // Leave time for the last validation and save.
            if now + val_seconds.max(step_time.unwrap_or(0.0) * 10.0) >= budget
                || opts.max_steps.is_some_and(|m| state.step >= m)
            {
                break 'epochs;
            }
            let tick = Instant::now();
            let progress = {
                let by_time = now / budget.max(1.0);
                let by_steps = opts
                    .max_steps
                    .map_or(0.0, |m| state.step as f64 / m.max(1) as f64);
                let by_epochs = (state.epoch as f64
                    + state.batch_in_epoch as f64 / steps_per_epoch as f64)
                    / opts.max_epochs.max(1) as f64;
                by_time.max(by_steps).max(by_epochs)
            };
            let lr = learning_rate(opts.lr, opts.warmup, state.step, progress);
            let Measured { loss, extra } =
                trainee.step(state.epoch, state.batch_in_epoch, state.step, lr)?;
            if !loss.is_finite() {
                bail!("{name}: training loss became {loss} at step {}", state.step);
            }
            state.step += 1;
            state.batch_in_epoch += 1;
            window_loss.0 += loss;
            window_loss.1 += 1;
            window_extra.push(extra);
            let dt = tick.elapsed().as_secs_f64();
            step_time = Some(step_time.map_or(dt, |s| 0.95 * s + 0.05 * dt));
            if state.step.is_multiple_of(opts.log_every.max(1)) {
                let mean = window_loss.0 / window_loss.1 as f64;
                let extra = column_means(&window_extra);
                let extra_line = extra_text(trainee.extra_names(), &extra);
                state.train_loss.push((state.step, mean));
                state.train_extra.push(extra);
                window_loss = (0.0, 0);
                window_extra.clear();
                let used = used();
                let per_step = step_time.unwrap_or(0.0);
                let left_epochs = ((opts.max_epochs - state.epoch) * steps_per_epoch
                    - state.batch_in_epoch) as f64
                    * per_step;
                let left_steps = opts.max_steps.map_or(f64::INFINITY, |m| {
                    m.saturating_sub(state.step) as f64 * per_step
                });
                let eta = (budget - used).max(0.0).min(left_epochs).min(left_steps);
                eprintln!(
                    "{name}: {} epoch {} batch {}/{steps_per_epoch} step {} loss {mean:.5}{extra_line} lr {lr:.2e} {per_step:.2} s/step",
                    progress_bar(used, eta),
                    state.epoch + 1,
                    state.batch_in_epoch,
                    state.step,
                );
            }
            if last_checkpoint.elapsed() >= opts.checkpoint_every {
                state.elapsed_secs = used();
                save(trainee, &mut state)?;
                last_checkpoint = Instant::now();
            }
        }
        let vt = Instant::now();
        let val = trainee.validate()?;
        val_seconds = vt.elapsed().as_secs_f64();
        state.epoch += 1;
        state.batch_in_epoch = 0;
        state.elapsed_secs = used();
        end_of_epoch(trainee, opts, &mut state, val)?;
        save(trainee, &mut state)?;
        last_checkpoint = Instant::now();
    }
    // Stopped by the budget or a step limit in the middle of an epoch: validate what we have.
    if state.batch_in_epoch > 0 {
        state.epoch += 1;
        state.batch_in_epoch = 0;
        let val = trainee.validate()?;
        state.elapsed_secs = used();
        end_of_epoch(trainee, opts, &mut state, val)?;
    }
    state.elapsed_secs = used();
    state.finished = true;
    save(trainee, &mut state)?;
    if let Some(dir) = opts.assets_dir.as_deref().filter(|d| d.is_dir()) {
        write_card(trainee, &state, opts, dir)?;
    }
    eprintln!(
        "{name}: done: {} steps, {} epochs, {} wall time, best validation loss {:.5}",
        state.step,
        state.epoch,
        format_duration(Duration::from_secs_f64(state.elapsed_secs)),
        state.best_val.unwrap_or(f64::NAN)
    );
    Ok(state)
}

fn write_card(
    trainee: &dyn Trainee,
    state: &LoopState,
    opts: &LoopOptions,
    dir: &std::path::Path,
) -> Result<()> {
    let path = dir.join("CARD.md");
    std::fs::write(&path, trainee.card(state, opts))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Record the validation loss, redraw the loss curve, export the weights when they are the
/// best so far, and rewrite the card.
fn end_of_epoch(
    trainee: &mut dyn Trainee,
    opts: &LoopOptions,
    state: &mut LoopState,
    Measured { loss: val, extra }: Measured,
) -> Result<()> {
    state.val_loss.push((state.step, state.epoch, val));
    let best = state.best_val.is_none_or(|b| val < b);
    if best || trainee.logs_validation(state.epoch) {
        eprintln!(
            "{}: epoch {} validation loss {val:.5}{}{} ({} elapsed)",
            opts.name,
            state.epoch,
            extra_text(trainee.extra_names(), &extra),
            if best { " (best)" } else { "" },
            format_duration(Duration::from_secs_f64(state.elapsed_secs))
        );
    }
    state.val_extra.push(extra);
    let points = |v: &mut dyn Iterator<Item = (usize, f64)>| -> Vec<(f64, f64)> {
        v.map(|(s, l)| (s as f64, l)).collect()
    };
    let train_pts = points(&mut state.train_loss.iter().copied());
    let val_pts = points(&mut state.val_loss.iter().map(|&(s, _, l)| (s, l)));
    let (title, val_name) = trainee.curve_names();
    let extra_curves = trainee.extra_curves(state);
    let png = opts.run_dir.join("loss.png");
    let mut series = vec![
        Series {
            name: trainee.train_curve_name(),
            points: &train_pts,
            color: plotters::style::RGBColor(40, 90, 200),
        },
        Series {
            name: val_name,
            points: &val_pts,
            color: plotters::style::RGBColor(220, 60, 40),
        },
    ];
    const MORE_COLORS: [plotters::style::RGBColor; 3] = [
        plotters::style::RGBColor(60, 170, 80),
        plotters::style::RGBColor(240, 160, 40),
        plotters::style::RGBColor(140, 80, 180),
    ];
    for (i, (name, points)) in extra_curves.iter().enumerate() {
        series.push(Series {
            name,
            points,
            color: MORE_COLORS[i % MORE_COLORS.len()],
        });
    }
    loss_curve(&png, title, "optimizer step", &series)?;
    if best {
        state.best_val = Some(val);
        let config = trainee.config_json();
        export_best(
            trainee.exported(),
            &opts.run_dir,
            opts.assets_dir.as_deref(),
            &config,
        )?;
    }
    if let Some(dir) = export_loss_curve(&png, opts.assets_dir.as_deref())? {
        write_card(trainee, state, opts, dir)?;
    }
    Ok(())
}

/// A tiny run of a trainee, for the trainers' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Run a trainee from `make` for 3 optimizer steps (epochs of 2) in a fresh run folder, then
    /// a new one to 5 steps in the same folder, and check that the second resumed: the steps
    /// go on, the checkpoint and the exported weights are written, and `load` (the model's own
    /// loader) reads the exported folder. Returns both states.
    pub fn runs_and_resumes<T: Trainee>(
        name: &str,
        mut make: impl FnMut() -> T,
        load: impl Fn(&Path) -> Result<()>,
    ) -> (LoopState, LoopState) {
        let dir = std::env::temp_dir().join(format!(
            "bandmate-loop-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        let mut opts = LoopOptions {
            name: name.into(),
            lr: 1e-3,
            warmup: 2,
            budget: Duration::from_secs(3600),
            max_epochs: 100,
            max_steps: Some(3),
            log_every: 1,
            checkpoint_every: Duration::from_secs(3600),
            run_dir: dir.join("run"),
            assets_dir: Some(dir.join("assets")),
            fresh: true,
        };
        let mut first = make();
        assert_eq!(
            first.steps_per_epoch(),
            2,
            "the test data should make epochs of 2"
        );
        let a = run(&mut first, &opts).unwrap();
        assert_eq!(a.step, 3);
        assert_eq!((a.epoch, a.val_loss.len()), (2, 2));
        assert!(a.finished && a.best_val.is_some_and(f64::is_finite));
        let files = CheckpointFiles::in_dir(&opts.run_dir);
        assert!(files.exist());
        opts.fresh = false;
        opts.max_steps = Some(5);
        let b = run(&mut make(), &opts).unwrap();
        assert_eq!(b.step, 5);
        // The third epoch took steps 4 and 5.
        assert_eq!(b.val_loss.len(), 3);
        for (x, y) in b.val_loss.iter().zip(&a.val_loss) {
            // (JSON may change the last bit of a float.)
            assert!(
                x.0 == y.0 && x.1 == y.1 && (x.2 - y.2).abs() < 1e-12,
                "{x:?} {y:?}"
            );
        }
        assert_eq!(b.train_loss.len(), 5);
        assert_eq!(b.val_extra.len(), 3);
        let saved: LoopState =
            serde_json::from_str(&std::fs::read_to_string(&files.state).unwrap()).unwrap();
        assert_eq!(saved.step, 5);
        let assets = dir.join("assets");
        for f in ["model.safetensors", "config.json", "CARD.md", "loss.png"] {
            assert!(assets.join(f).exists(), "{f}");
        }
        assert!(dir.join("run/best.safetensors").exists());
        load(&assets).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        (a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_learning_rate_warms_up_then_decays_to_a_tenth() {
        assert!((learning_rate(1e-3, 10, 0, 0.0) - 1e-4).abs() < 1e-12);
        assert!((learning_rate(1e-3, 10, 10, 0.0) - 1e-3).abs() < 1e-12);
        assert!((learning_rate(1e-3, 10, 500, 1.0) - 1e-4).abs() < 1e-12);
        let mid = learning_rate(1e-3, 10, 500, 0.5);
        assert!((mid - 0.55e-3).abs() < 1e-9);
    }
}
