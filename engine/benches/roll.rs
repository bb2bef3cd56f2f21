//! `cargo xtask bench roll [--compare-torch]`: the roll diffusion model's speed.
//!
//! - Model loading (the embedded default and `assets/roll` from disk).
//! - One 4-bar fill of bars 3–4 of a POP909 test window (every track, and the melody track
//!   alone) at the default steps (`DEFAULT_STEPS`), 25 and 100 network evaluations,
//!   p50/p95 (after one warm-up run), with the model's echo calibration and from noise. A fill
//!   of every track shares the steps among its tracks (`steps_per_part`).
//! - The UNet forward at batch 1 and 16 with and without the Winograd 3×3 kernel, alternating.
//! - Training throughput: one AdamW step of the shipped config at batch 16 (random rolls).
//! - With `BANDMATE_TORCH_PYTHON` set (the xtask does it for `--compare-torch`, after making a
//!   venv with PyTorch from PyPI): the same UNet in PyTorch (`xtask/torch/roll_unet.py`) with our
//!   weights on the same input at batch 16, the candle/PyTorch ratios, GFLOP/s, the share of the
//!   machine's peak (`support/twin.rs`'s `PEAK_GFLOPS`), and whether both give the same x̂_0
//!   within 1e-4.

use anyhow::{Context, Result};
use bandmate::data::Dataset;
use bandmate::diffusion::eval::eval_windows;
use bandmate::diffusion::part_tasks::targets;
use bandmate::diffusion::{RollModel, RollOptions, fill};
use bandmate::music::{Clip, Mask};
use bandmate::settings::{DEFAULT_STEPS, steps_per_part};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

#[path = "support/mod.rs"]
mod support;
use support::songs::test_songs;
use support::timing::{percentile, timed};
use support::twin::{Twin, median_ms};

const TORCH_BATCH: usize = 16;

fn main() -> Result<()> {
    // SAFETY: first thing in main, before any other thread exists.
    unsafe { bandmate::nn::set_thread_count_env() };
    bandmate::nn::keep_freed_memory();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let assets = root.join("assets/roll");
    let (_, embedded_ms) = timed(RollModel::embedded)?;
    let (model, disk_ms) = timed(|| RollModel::load_dir(&assets))?;
    println!(
        "roll: load the embedded model {embedded_ms:.1} ms, assets/roll from disk {disk_ms:.1} ms"
    );
    println!("roll: config {}", serde_json::to_string(model.config())?);

    let songs = test_songs(Dataset::Pop909)?;
    let window = eval_windows(&songs, 1, 0)
        .pop()
        .context("no POP909 test window")?;
    let mask = Mask::bars(&window.clip, 2..=3);
    // The model's calibration echoes bars 1–2 at a strength drawn per seed from
    // `echo.fill_range` (else `echo.fill`; that share of the steps runs the network); from
    // noise (echo 0) every one of the steps runs it.
    for (steps, runs, echo) in [
        (DEFAULT_STEPS, 20usize, None),
        (DEFAULT_STEPS, 20, Some(0.0)),
        (25, 10, None),
        (100, 4, None),
    ] {
        let opts = RollOptions {
            steps,
            echo,
            ..RollOptions::default()
        };
        let (p50, p95) = fill_times(&model, &window.clip, &mask, &opts, runs)?;
        let tracks = targets(&window.clip, &mask)?.len();
        println!(
            "roll: fill bars 3-4 of every track ({tracks}) of a 4-bar window, {steps:>3} steps ({} per part), {:<12} p50 {p50:7.1} ms  p95 {p95:7.1} ms  ({runs} runs)",
            steps_per_part(steps, tracks),
            match (echo, model.config().echo.fill_range) {
                (Some(_), _) => "from noise:".to_string(),
                (None, Some([lowest, highest])) => format!("echo {lowest}–{highest}:"),
                (None, None) => format!("echo {}:", model.config().echo.fill),
            },
        );
    }

    // One part: the melody track's bars 3–4 (a parts model writes each track in its own pass,
    // so a fill over every track of this 3-track window costs a pass per part).
    if let Some(melody) = window
        .clip
        .track_with_role(bandmate::music::TrackRole::Melody)
    {
        let mut one = mask.clone();
        one.track = Some(melody);
        let (p50, p95) = fill_times(&model, &window.clip, &one, &RollOptions::default(), 20)?;
        println!(
            "roll: fill bars 3-4 of the melody track only, {DEFAULT_STEPS} steps (default): p50 {p50:7.1} ms  p95 {p95:7.1} ms  (20 runs)"
        );
    }

    // The same default fill on a one-thread pool (what the latent sampler does for one melody).
    let (p50, p95) = bandmate::nn::on_one_thread(|| {
        fill_times(&model, &window.clip, &mask, &RollOptions::default(), 20)
    })?;
    println!(
        "roll: the same {DEFAULT_STEPS}-step fill on one thread: p50 {p50:7.1} ms  p95 {p95:7.1} ms  (20 runs)"
    );

    compare_winograd(&model)?;

    let (forward_s, step_s) = bandmate::train::roll::time_step(model.config(), TORCH_BATCH, 3)?;
    println!(
        "roll: training step at batch {TORCH_BATCH}: {:.0} ms ({:.1} samples/s); forward {:.0} ms",
        step_s * 1e3,
        TORCH_BATCH as f64 / step_s,
        forward_s * 1e3
    );

    if let Some(twin) = Twin::from_env(5) {
        compare_torch(&twin, &model, &assets, step_s)?;
    }
    Ok(())
}

/// The p50 and p95 wall time (ms) of `runs` fills of `mask` in `clip` with `opts` at seeds 0,
/// 1, …, after one warm-up fill.
fn fill_times(
    model: &RollModel,
    clip: &Clip,
    mask: &Mask,
    opts: &RollOptions,
    runs: usize,
) -> Result<(f64, f64)> {
    fill(model, clip, mask, opts)?; // warm-up
    let mut times = Vec::with_capacity(runs);
    for seed in 0..runs as u64 {
        let opts = RollOptions {
            seed,
            ..opts.clone()
        };
        times.push(timed(|| fill(model, clip, mask, &opts))?.1);
    }
    times.sort_by(f64::total_cmp);
    Ok((percentile(&times, 0.5), percentile(&times, 0.95)))
}

/// The UNet forward at batch 1 and 16 with the Winograd 3×3 kernel and with the direct
/// (im2col) kernels only, alternating in one process (best of each, since this shared machine's
/// speed drifts between runs).
fn compare_winograd(model: &RollModel) -> Result<()> {
    let cfg = model.config();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for (batch, runs) in [(1usize, 10usize), (TORCH_BATCH, 2)] {
        // x_t (and random known cells for a conditioned model).
        let channels = cfg.input_channels();
        let cells = batch * channels * cfg.steps * cfg.pitches;
        let roll: Vec<f32> = (0..cells)
            .map(|_| f32::from(rng.random_bool(0.05)))
            .collect();
        let x = Tensor::from_vec(
            roll,
            (batch, channels, cfg.steps, cfg.pitches),
            &Device::Cpu,
        )?;
        let t = Tensor::from_vec(vec![50f32; batch], batch, &Device::Cpu)?;
        let mut best = [f64::MAX; 2];
        for round in 0..10 {
            let direct = round % 2;
            bandmate::nn::winograd::set_enabled(direct == 0);
            for _ in 0..runs {
                let ms = timed(|| Ok(model.net().forward(&x, &t)?))?.1;
                best[direct] = best[direct].min(ms);
            }
        }
        bandmate::nn::winograd::set_enabled(true);
        println!(
            "roll: UNet forward at batch {batch:>2}: Winograd {:6.1} ms, direct kernels only {:6.1} ms ({:.2}x)",
            best[0],
            best[1],
            best[1] / best[0]
        );
    }
    Ok(())
}

/// Write one batch and candle's logits, run the PyTorch twin on them, print the comparison.
fn compare_torch(
    twin: &Twin,
    model: &RollModel,
    assets: &std::path::Path,
    candle_step_s: f64,
) -> Result<()> {
    let cfg = model.config();
    let dev = Device::Cpu;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let shape = |channels: usize| (TORCH_BATCH, channels, cfg.steps, cfg.pitches);
    let binary = |rng: &mut rand_chacha::ChaCha8Rng, channels: usize, p: f32| {
        let cells = TORCH_BATCH * channels * cfg.steps * cfg.pitches;
        let v: Vec<f32> = (0..cells)
            .map(|_| f32::from(rng.random::<f32>() < p))
            .collect();
        Tensor::from_vec(v, shape(channels), &dev)
    };
    // The network input: x_t, and random known cells for a conditioned model.
    let x_t = binary(&mut rng, cfg.input_channels(), 0.05)?;
    let x0 = binary(&mut rng, 2, 0.03)?;
    let t: Vec<f32> = (0..TORCH_BATCH)
        .map(|_| rng.random_range(1..=cfg.diffusion_steps) as f32)
        .collect();
    let t = Tensor::from_vec(t, TORCH_BATCH, &dev)?;
    let logits = model.net().forward(&x_t, &t)?;
    // Inference with the shipped weights, timed as the twin times its own (median after a
    // warm-up run, no gradients kept).
    let forward_ms = median_ms(twin.iterations, || {
        model.net().forward(&x_t, &t)?;
        Ok(())
    })?;
    let io = vec![("x_t", x_t), ("t", t), ("x0", x0), ("logits", logits)];
    let torch = twin.run("roll_unet.py", assets, "roll", io)?;
    let flops = torch.number("forward_flops");
    torch.heading(
        "roll UNet",
        &format!(
            "batch {TORCH_BATCH}, {:.2} GFLOP per forward (direct convolution)",
            flops / 1e9
        ),
    );
    torch.row("forward", flops, forward_ms, "forward_ms");
    torch.training_row("training step", flops, candle_step_s * 1e3);
    println!(
        "  same x̂_0: max |Δp| = {}, max |Δlogit| = {:.2e}",
        torch.diff("max_abs_diff_x0"),
        torch.number("max_abs_diff_logits")
    );
    Ok(())
}
