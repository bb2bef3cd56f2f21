//! `cargo xtask bench latent [--compare-torch]`: the latent diffusion model's speed on the CPU.
//!
//! - Loading the MusicVAE and the score model from `assets/`.
//! - Generating one 16-bar melody (8 latents, sampled, then decoded by the VAE) with each
//!   sampler at its default steps, p50/p95 (after one warm-up run), and the share spent in the
//!   VAE decoder.
//! - One training step of the score network at batch 128.
//! - With `BANDMATE_TORCH_PYTHON` set (the xtask does it for `--compare-torch`, after making a
//!   venv with PyTorch under `target/torch-venv`): the same networks in PyTorch with our weights
//!   on the same inputs (Nottingham test melodies), the candle/PyTorch ratios, GFLOP/s (matmul
//!   flops; a training step counts 3 forward passes), the share of the machine's peak
//!   (`support/twin.rs`'s `PEAK_GFLOPS`), and whether both give the same outputs within 1e-4:
//!   - the score network (`xtask/torch/latent_score.py`): ε̂ and the forward time at batch 1
//!     (what the samplers run) and at batch 128, and one AdamW step of the denoising score
//!     matching loss at batch 128;
//!   - the flat MusicVAE (`xtask/torch/music_vae.py`): the encoder's μ and the teacher-forced
//!     decoder logits (z = μ) of 128 windows and the time of both, one AdamW step of the VAE
//!     loss at batch 128, and the argmax decoding of 8 latents (16 bars, the plugin's case),
//!     whose tokens must be equal;
//!   - the hierarchical 16-bar MusicVAE (`assets/vae16`, the same script) likewise at its
//!     training batch of 64, decoding 1 latent (16 bars);
//!   - for all, the loss of the training batch before and after the timed AdamW steps in each,
//!     which agree when both compute the same gradients.

use anyhow::{Result, bail};
use bandmate::data::Dataset;
use bandmate::data::melody_windows_of;
use bandmate::latent::{
    LatentMelody, LatentModel, SampleOptions, Sampler, VpSde, default_weights_dir,
};
use bandmate::models::latent_score::standardize;
use bandmate::nn::random::normal_noise;
use bandmate::train::adamw::AdamW;
use bandmate::train::latent::{LatentTrainOptions, dsm_loss, dsm_step};
use bandmate::train::vae::{VaeTrainOptions, batch_loss};
use bandmate::vae::{MelodyVae, VaeNet};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

#[path = "support/mod.rs"]
mod support;
use support::songs::test_songs;
use support::timing::{percentile, timed};
use support::twin::{Twin, median_ms, scalar, training_scalars, within};

/// The training batch of both comparisons.
const TORCH_BATCH: usize = 128;
/// Timed runs per comparison (the median after one warm-up run; the batch-1 forward pass and
/// the argmax decoding run 5× as many). The PyTorch twins take the same number.
const TORCH_ITERS: usize = 10;
/// Latents the plugin decodes at once: 8 × 2 bars.
const DECODE_LATENTS: usize = 8;
/// The hierarchical MusicVAE's training batch (`bandmate train vae --config hier`), and what its
/// argmax decoding compares: one latent is 16 bars.
const HIER_BATCH: usize = 64;
const HIER_DECODE_LATENTS: usize = 1;
/// Its free bits λ (the trainer's default for the hierarchical model).
const HIER_FREE_BITS: f64 = 64.0;

fn main() -> Result<()> {
    // SAFETY: first thing in main, before any other thread exists.
    unsafe { bandmate::nn::set_thread_count_env() };
    bandmate::nn::keep_freed_memory();
    let (vae_dir, score_dir) = (bandmate::vae::default_weights_dir(), default_weights_dir());
    let (vae, vae_ms) = timed(|| MelodyVae::load(&vae_dir))?;
    let (model, model_ms) = timed(|| LatentModel::load(&score_dir))?;
    println!("latent: load the MusicVAE {vae_ms:.1} ms, the score model {model_ms:.1} ms");
    let lm = LatentMelody {
        vae: &vae,
        model: &model,
    };
    let z = vec![vec![0.0f32; vae.z_dim()]; model.config().positions];
    let mut decode_times = Vec::new();
    for _ in 0..10 {
        decode_times.push(timed(|| vae.decode(&z, None, 0))?.1);
    }
    decode_times.sort_by(f64::total_cmp);
    println!(
        "latent: VAE argmax decode of 8 latents (16 bars): p50 {:.1} ms",
        percentile(&decode_times, 0.5)
    );
    for name in Sampler::NAMES {
        let sampler = Sampler::parse(name).expect("a known sampler");
        let opts = SampleOptions {
            sampler,
            ..SampleOptions::default()
        };
        lm.generate(1, &opts)?; // warm-up
        let runs = 20;
        let mut times = Vec::with_capacity(runs);
        for seed in 0..runs as u64 {
            let opts = SampleOptions { seed, ..opts };
            times.push(timed(|| lm.generate(1, &opts))?.1);
        }
        times.sort_by(f64::total_cmp);
        let steps = match sampler.default_steps() {
            0 => "adaptive".to_string(),
            s => format!("{s} steps"),
        };
        println!(
            "latent: generate 16 bars, {name:>4} ({steps:>9}): p50 {:7.1} ms  p95 {:7.1} ms  ({runs} runs)",
            percentile(&times, 0.5),
            percentile(&times, 0.95)
        );
    }
    let step = bandmate::train::latent::time_latent_step(model.config(), 128, 5)?;
    println!(
        "latent: training step at batch 128: {:.1} ms ({:.0} sequences/s)",
        step * 1e3,
        128.0 / step
    );

    if let Some(twin) = Twin::from_env(TORCH_ITERS) {
        let windows = test_windows(&vae, TORCH_BATCH * model.config().positions)?;
        compare_score(&twin, &model, &score_dir, &vae, &windows)?;
        compare_vae(&twin, &vae, &vae_dir, &windows[..TORCH_BATCH])?;
        // The hierarchical 16-bar MusicVAE at its training batch.
        let vae16_dir = vae_dir.with_file_name("vae16");
        let vae16 = MelodyVae::load(&vae16_dir)?;
        let windows16 = test_windows(&vae16, HIER_BATCH)?;
        compare_vae(&twin, &vae16, &vae16_dir, &windows16)?;
    }
    Ok(())
}

/// The first `count` melody windows of the Nottingham test split in the VAE's length, hop one
/// window (so that runs of 8 follow each other in a song), repeated if there are fewer.
fn test_windows(vae: &MelodyVae, count: usize) -> Result<Vec<Vec<u8>>> {
    let songs = test_songs(Dataset::Nottingham)?;
    let bars = vae.shape().bars();
    let windows = melody_windows_of(&songs, bars, bars)?;
    if windows.is_empty() {
        bail!("no {bars}-bar melody windows in the Nottingham test split");
    }
    Ok((0..count)
        .map(|i| windows.window(i % windows.len()).to_vec())
        .collect())
}

/// The score network in candle and in PyTorch: the noisy standardized latents of 128 runs of 8
/// test windows at random t, at batch 1 (the first sequence) and 128, and a training step.
fn compare_score(
    twin: &Twin,
    model: &LatentModel,
    model_dir: &Path,
    vae: &MelodyVae,
    windows: &[Vec<u8>],
) -> Result<()> {
    let cfg = model.config();
    let (b, l, z) = (TORCH_BATCH, cfg.positions, cfg.z_dim);
    let dev = Device::Cpu;
    let refs: Vec<&[u8]> = windows.iter().map(Vec::as_slice).collect();
    let latents: Vec<f32> = vae.encode(&refs)?.into_iter().flatten().collect();
    let x0 = standardize(cfg, &Tensor::from_vec(latents, (b, l, z), &dev)?)?;
    let opts = LatentTrainOptions::new(cfg.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let t: Vec<f32> = (0..b)
        .map(|_| rng.random_range(opts.eps as f32..1.0))
        .collect();
    let noise = normal_noise(&mut rng, b * l * z);
    // The network's input as the training loss makes it: x_t = m(t)·x0 + σ(t)·ε.
    let sde = VpSde {
        beta_min: cfg.beta_min,
        beta_max: cfg.beta_max,
    };
    let per_sequence = |f: fn(&VpSde, f64) -> f64| -> Result<Tensor> {
        let v: Vec<f32> = t.iter().map(|&t| f(&sde, f64::from(t)) as f32).collect();
        Ok(Tensor::from_vec(v, (b, 1, 1), &dev)?)
    };
    let eps = Tensor::from_slice(&noise, (b, l, z), &dev)?;
    let x_t = (x0.broadcast_mul(&per_sequence(VpSde::mean_coef)?)?
        + eps.broadcast_mul(&per_sequence(VpSde::sigma)?)?)?;
    let times = Tensor::from_slice(&t, b, &dev)?;
    let (x_1, t_1) = (x_t.narrow(0, 0, 1)?, times.narrow(0, 0, 1)?);
    let net = model.score();
    let eps_hat = net.forward(&x_t, &times)?;
    let eps_hat_1 = net.forward(&x_1, &t_1)?;
    let loss = dsm_loss(net, &x0, &t, &noise)?.to_scalar::<f32>()?;
    // Batch 1 on one thread, as the samplers run it (`nn::on_one_thread`).
    let forward_1 = median_ms(5 * twin.iterations, || {
        bandmate::nn::on_one_thread(|| net.forward(&x_1, &t_1))?;
        Ok(())
    })?;
    // Batches on a pool thread, as training runs them.
    let forward = median_ms(twin.iterations, || {
        bandmate::nn::in_pool(|| net.forward(&x_t, &times))?;
        Ok(())
    })?;
    // Training changes the weights: train a second copy.
    let trained = LatentModel::load(model_dir)?;
    let mut opt = AdamW::new(trained.varmap(), opts.lr, opts.weight_decay)?;
    let step = median_ms(twin.iterations, || {
        dsm_step(trained.score(), &mut opt, &x0, &t, &noise)?;
        Ok(())
    })?;
    let loss_after = dsm_loss(trained.score(), &x0, &t, &noise)?.to_scalar::<f32>()?;

    let mut io = vec![
        ("x_t", x_t),
        ("t", times),
        ("eps_hat", eps_hat),
        ("eps_hat_1", eps_hat_1),
        ("x0", x0),
        ("noise", eps),
    ];
    io.extend(training_scalars(loss, opts.lr, opts.weight_decay)?);
    let torch = twin.run("latent_score.py", model_dir, "score", io)?;
    torch.heading(
        "latent score",
        "same weights and inputs (noisy latents of Nottingham test melodies)",
    );
    let flops = torch.number("forward_flops");
    let flops_1 = torch.number("forward_1_flops");
    torch.row("forward, batch 1", flops_1, forward_1, "forward_1_ms");
    torch.row(&format!("forward, batch {b}"), flops, forward, "forward_ms");
    torch.training_row(&format!("training step, batch {b}"), flops, step);
    let (diff_1, diff) = (torch.number("max_abs_diff_1"), torch.number("max_abs_diff"));
    println!(
        "  same ε̂: max |Δ| = {diff_1:.2e} at batch 1 ({}), {diff:.2e} at batch {b} ({}); {}",
        within(diff_1),
        within(diff),
        torch.loss(loss, 6)
    );
    torch.trained(loss_after);
    Ok(())
}

/// A MusicVAE (flat or hierarchical) in candle and in PyTorch on test windows: μ and the
/// teacher-forced logits (z = μ), a training step, and the argmax decoding of the first
/// windows' μ (16 bars: 8 flat latents, 1 hierarchical).
fn compare_vae(twin: &Twin, vae: &MelodyVae, model_dir: &Path, windows: &[Vec<u8>]) -> Result<()> {
    let net = vae.model();
    let hierarchical = matches!(net, VaeNet::Hierarchical(_));
    let (name, latents) = if hierarchical {
        ("hierarchical MusicVAE", HIER_DECODE_LATENTS)
    } else {
        ("MusicVAE", DECODE_LATENTS)
    };
    let dev = Device::Cpu;
    let (b, z_dim) = (windows.len(), vae.z_dim());
    let refs: Vec<&[u8]> = windows.iter().map(Vec::as_slice).collect();
    let tokens = net.tokens_tensor(&refs, &dev)?;
    let mut opts = VaeTrainOptions::new(vae.shape());
    if hierarchical {
        opts.free_bits = HIER_FREE_BITS;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let noise = Tensor::from_vec(normal_noise(&mut rng, b * z_dim), (b, z_dim), &dev)?;
    let (mu, _) = net.encode(&tokens)?;
    let logits = net.decode_teacher_forced(&mu, &tokens)?;
    let loss = batch_loss(net, &tokens, Some(&noise), opts.beta, opts.free_bits)?
        .loss
        .to_scalar::<f32>()?;
    // 16 bars of a test song: what the plugin decodes after sampling.
    let z8 = mu.narrow(0, 0, latents)?;
    let decoded = net.decode(&z8, None, &[])?;
    // Batches on a pool thread, as training runs them.
    let forward = median_ms(twin.iterations, || {
        bandmate::nn::in_pool(|| -> Result<()> {
            let (mu, _) = net.encode(&tokens)?;
            net.decode_teacher_forced(&mu, &tokens)?;
            Ok(())
        })
    })?;
    let decode = median_ms(5 * twin.iterations, || {
        net.decode(&z8, None, &[])?;
        Ok(())
    })?;
    // Training changes the weights: train a second copy.
    let trained = MelodyVae::load(model_dir)?;
    let mut opt = AdamW::new(trained.varmap(), opts.lr, opts.weight_decay)?;
    let step = median_ms(twin.iterations, || {
        bandmate::nn::in_pool(|| {
            let terms = batch_loss(
                trained.model(),
                &tokens,
                Some(&noise),
                opts.beta,
                opts.free_bits,
            )?;
            opt.backward_step(&terms.loss)
        })
    })?;
    let loss_after = batch_loss(
        trained.model(),
        &tokens,
        Some(&noise),
        opts.beta,
        opts.free_bits,
    )?
    .loss
    .to_scalar::<f32>()?;

    let steps = vae.window_steps();
    let flat: Vec<i64> = decoded.iter().flatten().map(|&t| i64::from(t)).collect();
    let decoded = Tensor::from_vec(flat, (latents, steps), &dev)?;
    let mut io = vec![
        ("tokens", tokens.to_dtype(DType::I64)?),
        ("noise", noise),
        ("mu", mu),
        ("logits", logits),
        ("z8", z8),
        ("decoded8", decoded),
        ("beta", scalar(opts.beta)?),
        ("free_bits", scalar(opts.free_bits)?),
    ];
    io.extend(training_scalars(loss, opts.lr, opts.weight_decay)?);
    let file = if hierarchical { "vae16" } else { "vae" };
    let torch = twin.run("music_vae.py", model_dir, file, io)?;
    let setup = format!("same weights, {b} Nottingham test windows, z = μ");
    torch.heading(name, &setup);
    let flops = torch.number("forward_flops");
    torch.row(
        &format!("encode + decode, batch {b}"),
        flops,
        forward,
        "forward_ms",
    );
    torch.training_row(&format!("training step, batch {b}"), flops, step);
    let decode_row = format!("argmax decode, {latents} latent(s)");
    torch.row(
        &decode_row,
        torch.number("decode_flops"),
        decode,
        "decode_ms",
    );
    let (same, total) = (torch.number("same_tokens"), torch.number("tokens"));
    println!(
        "  same μ: max |Δ| = {}; same logits: max |Δ| = {}; {}; argmax tokens: {same} of {total} equal{}",
        torch.diff("max_abs_diff_mu"),
        torch.diff("max_abs_diff_logits"),
        torch.loss(loss, 4),
        if same == total { "" } else { " (NOT equal)" }
    );
    torch.trained(loss_after);
    Ok(())
}
