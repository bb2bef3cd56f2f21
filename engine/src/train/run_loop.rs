//! One training loop for the models: learning-rate schedule, wall-time budget, checkpoints and
//! resume, validation once per epoch, progress lines, the loss curve, the export of the best
//! weights and the model card. A model plugs in through [`Trainee`]: how to take one optimizer
//! step, how to validate, and what its card says.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use candle_nn::VarMap;
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
}

/// A model being trained by [`run`].
pub trait Trainee {
    /// The record kept in the state; a run resumes only when it is unchanged.
    fn record(&self) -> serde_json::Value;
    /// Optimizer steps in one epoch.
    fn steps_per_epoch(&self) -> usize;
    /// One optimizer step at learning rate `lr` on batch `batch` of epoch `epoch` (global step
    /// `step`, for seeding); returns the training loss.
    fn step(&mut self, epoch: usize, batch: usize, step: usize, lr: f64) -> Result<f64>;
    /// The validation loss of the current weights (fixed windows, noise and masks).
    fn validate(&mut self) -> Result<f64>;
    /// The exported variables.
    fn varmap(&self) -> &VarMap;
    /// The trained variables and their optimizer (for checkpoints).
    fn weights_and_optimizer(&mut self) -> (&mut VarMap, &mut AdamW);
    /// `config.json` of the exported weights.
    fn config_json(&self) -> serde_json::Value;
    /// Title of the loss curve and the validation series' name.
    fn curve_names(&self) -> (&str, &str);
    /// The model card for the weights exported so far.
    fn card(&self, state: &LoopState, opts: &LoopOptions) -> String;
}

/// Train (or resume) `trainee`; progress lines go to stderr.
pub fn run(trainee: &mut dyn Trainee, opts: &LoopOptions) -> Result<LoopState> {
    let name = opts.name.as_str();
    std::fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("cannot create {}", opts.run_dir.display()))?;
    let files = CheckpointFiles::in_dir(&opts.run_dir);
    let mut state = LoopState {
        model: trainee.record(),
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
    let mut step_time = None::<f64>;
    let mut val_seconds = 0.0f64;

    let save = |trainee: &mut dyn Trainee, state: &LoopState| -> Result<()> {
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
            let loss = trainee.step(state.epoch, state.batch_in_epoch, state.step, lr)?;
            if !loss.is_finite() {
                bail!("{name}: training loss became {loss} at step {}", state.step);
            }
            state.step += 1;
            state.batch_in_epoch += 1;
            window_loss.0 += loss;
            window_loss.1 += 1;
            let dt = tick.elapsed().as_secs_f64();
            step_time = Some(step_time.map_or(dt, |s| 0.95 * s + 0.05 * dt));
            if state.step.is_multiple_of(opts.log_every.max(1)) {
                let mean = window_loss.0 / window_loss.1 as f64;
                state.train_loss.push((state.step, mean));
                window_loss = (0.0, 0);
                let used = used();
                let left_epochs = ((opts.max_epochs - state.epoch) * steps_per_epoch
                    - state.batch_in_epoch) as f64
                    * step_time.unwrap_or(0.0);
                let eta = (budget - used).max(0.0).min(left_epochs);
                eprintln!(
                    "{name}: {} epoch {} batch {}/{steps_per_epoch} step {} loss {mean:.5} lr {lr:.2e} {:.2} s/step",
                    progress_bar(used, eta),
                    state.epoch + 1,
                    state.batch_in_epoch,
                    state.step,
                    step_time.unwrap_or(0.0),
                );
            }
            if last_checkpoint.elapsed() >= opts.checkpoint_every {
                state.elapsed_secs = used();
                save(trainee, &state)?;
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
        save(trainee, &state)?;
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
    save(trainee, &state)?;
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
    val: f64,
) -> Result<()> {
    state.val_loss.push((state.step, state.epoch, val));
    let best = state.best_val.is_none_or(|b| val < b);
    eprintln!(
        "{}: epoch {} validation loss {val:.5}{} ({} elapsed)",
        opts.name,
        state.epoch,
        if best { " (best)" } else { "" },
        format_duration(Duration::from_secs_f64(state.elapsed_secs))
    );
    let points = |v: &mut dyn Iterator<Item = (usize, f64)>| -> Vec<(f64, f64)> {
        v.map(|(s, l)| (s as f64, l)).collect()
    };
    let train_pts = points(&mut state.train_loss.iter().copied());
    let val_pts = points(&mut state.val_loss.iter().map(|&(s, _, l)| (s, l)));
    let (title, val_name) = trainee.curve_names();
    let png = opts.run_dir.join("loss.png");
    loss_curve(
        &png,
        title,
        "optimizer step",
        &[
            Series {
                name: "train (mean per log interval)",
                points: &train_pts,
                color: plotters::style::RGBColor(40, 90, 200),
            },
            Series {
                name: val_name,
                points: &val_pts,
                color: plotters::style::RGBColor(220, 60, 40),
            },
        ],
    )?;
    if best {
        state.best_val = Some(val);
        export_best(
            trainee.varmap(),
            &opts.run_dir,
            opts.assets_dir.as_deref(),
            &trainee.config_json(),
        )?;
    }
    if let Some(dir) = export_loss_curve(&png, opts.assets_dir.as_deref())? {
        write_card(trainee, state, opts, dir)?;
    }
    Ok(())
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
