//! `cargo xtask bench latent`: the latent diffusion model's speed on the CPU.
//!
//! - Loading the MusicVAE and the score model from `assets/`.
//! - Generating one 16-bar melody (8 latents, sampled, then decoded by the VAE) with each
//!   sampler at its default steps, p50/p95 (after one warm-up run), and the share spent in the
//!   VAE decoder.
//! - One training step of the score network at batch 128.

use anyhow::Result;
use bandmate::latent::{LatentMelody, LatentModel, SampleOptions, Sampler, default_weights_dir};
use bandmate::vae::MelodyVae;

#[path = "support/timing.rs"]
mod timing;
use timing::{percentile, timed};

#[global_allocator]
static ALLOC: bandmate::nn::HugePageAlloc = bandmate::nn::HugePageAlloc;

fn main() -> Result<()> {
    bandmate::nn::keep_freed_memory();
    let (vae, vae_ms) = timed(|| MelodyVae::load(&bandmate::vae::default_weights_dir()))?;
    let (model, model_ms) = timed(|| LatentModel::load(&default_weights_dir()))?;
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
    Ok(())
}
