//! Running a PyTorch twin of one of our models (`xtask/torch/*.py`) and printing the
//! comparison.

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::timing::{percentile, timed};

/// The f32 peak (GFLOP/s) that the rows' `% of peak` refer to: the one measured on the two-core
/// machine the benchmarks were first run on (the conv bench uses the same).
pub const PEAK_GFLOPS: f64 = 190.0;

/// Where the PyTorch twins run: the venv's python, the workspace root, and how many timed runs
/// each measurement takes (the twin gets the same number).
pub struct Twin {
    pub python: PathBuf,
    pub root: PathBuf,
    pub iterations: usize,
}

impl Twin {
    /// The twin of `BANDMATE_TORCH_PYTHON` (set by `cargo xtask bench … --compare-torch`), if set.
    /// `BANDMATE_BENCH_ITERS` replaces the default number of timed runs `iterations` (more
    /// runs give steadier medians on a machine whose speed drifts).
    pub fn from_env(iterations: usize) -> Option<Self> {
        let iterations = std::env::var("BANDMATE_BENCH_ITERS")
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(iterations);
        std::env::var_os("BANDMATE_TORCH_PYTHON").map(|python| Self {
            python: PathBuf::from(python),
            root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
            iterations,
        })
    }

    /// Write `io` to `target/bench-twins/{name}.safetensors`, run `xtask/torch/{script}` on the
    /// model in `model_dir` and that file, and return the one JSON object it prints.
    pub fn run<S: Into<String>>(
        &self,
        script: &str,
        model_dir: &Path,
        name: &str,
        io: Vec<(S, Tensor)>,
    ) -> Result<Answer> {
        let dir = self.root.join("target/bench-twins");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.safetensors"));
        let tensors: HashMap<String, Tensor> = io.into_iter().map(|(k, v)| (k.into(), v)).collect();
        candle_core::safetensors::save(&tensors, &path)?;
        let out = std::process::Command::new(&self.python)
            .arg(self.root.join("xtask/torch").join(script))
            .arg(model_dir)
            .arg(&path)
            .arg(self.iterations.to_string())
            .output()
            .with_context(|| format!("cannot run {}", self.python.display()))?;
        if !out.status.success() {
            bail!(
                "the PyTorch twin {script} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let json = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "unexpected output of {script}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        Ok(Answer {
            json,
            iterations: self.iterations,
        })
    }
}

/// A twin's JSON answer (its timings, flops and differences from our outputs), and the comparison
/// lines printed from it.
pub struct Answer {
    pub json: serde_json::Value,
    /// Timed runs of each measurement, on both sides.
    iterations: usize,
}

impl Answer {
    /// A number of the answer (NaN when missing).
    pub fn number(&self, key: &str) -> f64 {
        number(&self.json, key)
    }

    /// The heading of the comparison: `{what} vs torch {version} ({threads} threads), {setup}:`.
    pub fn heading(&self, what: &str, setup: &str) {
        println!(
            "{what} vs torch {} ({} threads), {setup}:",
            self.json["torch"], self.json["threads"]
        );
    }

    /// A [`print_row`] against the twin's time `torch_ms_key`.
    pub fn row(&self, what: &str, flops: f64, candle_ms: f64, torch_ms_key: &str) {
        print_row(what, flops, candle_ms, self.number(torch_ms_key));
    }

    /// The row of a training step (three forward passes' work, `forward_flops`).
    pub fn training_row(&self, what: &str, forward_flops: f64, candle_ms: f64) {
        self.row(what, 3.0 * forward_flops, candle_ms, "train_step_ms");
    }

    /// The twin's maximal difference `key` from our output, and whether it is within 1e-4.
    pub fn diff(&self, key: &str) -> String {
        let diff = self.number(key);
        format!("{diff:.2e} ({})", within(diff))
    }

    /// Both losses of the batch (before training) with `precision` decimals, and their difference.
    pub fn loss(&self, candle: f32, precision: usize) -> String {
        let torch = self.number("loss");
        format!(
            "loss candle {candle:.precision$}, torch {torch:.precision$} (|Δ| {:.1e})",
            (f64::from(candle) - torch).abs()
        )
    }

    /// [`print_trained`]: the losses after the warm-up and the timed training steps.
    pub fn trained(&self, candle: f32) {
        print_trained(self.iterations + 1, candle, self.number("loss_after_steps"));
    }
}

/// Median wall time (ms) of `iterations` runs of `f` after one warm-up run, as the twins time;
/// `BANDMATE_BENCH_SPREAD=1` prints every run's time to stderr.
pub fn median_ms(iterations: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        times.push(timed(&mut f)?.1);
    }
    if std::env::var_os("BANDMATE_BENCH_SPREAD").is_some() {
        eprintln!("  (times in run order, ms: {times:.1?})");
    }
    times.sort_by(f64::total_cmp);
    Ok(percentile(&times, 0.5))
}

/// `[1]`, for a scalar in the exchange file.
pub fn scalar(value: f64) -> Result<Tensor> {
    Ok(Tensor::new(&[value as f32], &Device::Cpu)?)
}

/// The exchange file's entries every training comparison has: our loss of the batch before
/// training, and the optimizer's learning rate and weight decay.
pub fn training_scalars(
    loss: f32,
    lr: f64,
    weight_decay: f64,
) -> Result<[(&'static str, Tensor); 3]> {
    Ok([
        ("loss", scalar(f64::from(loss))?),
        ("lr", scalar(lr)?),
        ("weight_decay", scalar(weight_decay)?),
    ])
}

/// A number of the twin's JSON (NaN when missing).
pub fn number(json: &serde_json::Value, key: &str) -> f64 {
    json[key].as_f64().unwrap_or(f64::NAN)
}

pub fn within(diff: f64) -> &'static str {
    if diff <= 1e-4 {
        "within 1e-4"
    } else {
        "NOT within 1e-4"
    }
}

/// One comparison line: `flops` of work done in `candle_ms` and in `torch_ms`.
pub fn print_row(what: &str, flops: f64, candle_ms: f64, torch_ms: f64) {
    let gflops = |ms: f64| flops / (ms / 1e3) / 1e9;
    println!(
        "  {what:<26} {:6.3} GFLOP  candle {candle_ms:8.2} ms ({:5.1} GFLOP/s, {:4.1}% of peak)  torch {torch_ms:8.2} ms ({:5.1} GFLOP/s)  speed ratio candle/torch {:.2}",
        flops / 1e9,
        gflops(candle_ms),
        100.0 * gflops(candle_ms) / PEAK_GFLOPS,
        gflops(torch_ms),
        torch_ms / candle_ms
    );
}

/// The loss of the training batch after the timed steps (the warm-up and the timed runs) in
/// both: the same descent when both train the same network.
pub fn print_trained(steps: usize, candle: f32, torch: f64) {
    println!(
        "  after {steps} AdamW steps on that batch: loss candle {candle:.6}, torch {torch:.6} (|Δ| {:.1e})",
        (f64::from(candle) - torch).abs()
    );
}
