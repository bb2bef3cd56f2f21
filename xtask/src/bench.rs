//! `cargo xtask bench <what>`: benchmarks.
//!
//! - `plugin`: Bandmate's `process()` through a CLAP host (clack-host) on the release library,
//!   per 512-sample block at 48 kHz with a 64-note clip, p50/p99/max over 100,000 blocks, and
//!   the memory of one and of sixteen instances (`plugin/benches/process.rs`).
//! - `data`: parsing the datasets, loading them from the cache, and the metrics
//!   (`engine/benches/data.rs`).
//! - `editor`: laying out and painting one frame of the editor with a 16-bar, 500-note clip
//!   (`gui/benches/editor.rs`).
//! - `roll [--compare-torch]`: the roll diffusion model's loading, fill latency and training
//!   throughput (`engine/benches/roll.rs`); with `--compare-torch`, also the same UNet in
//!   PyTorch from a venv this command makes under `target/torch-venv` (CI does not run it).
//! - `latent [--compare-torch]`: the latent diffusion model's loading, 16-bar generation with
//!   each sampler and training step (`engine/benches/latent.rs`); with `--compare-torch`, also
//!   the score network and the MusicVAE in PyTorch from the same venv.
//! - `band [--compare-torch]`: the band player's next-bar latency over 1,000 Nottingham test
//!   bars and its memory (`engine/benches/band.rs`); with `--compare-torch`, also the same model
//!   in PyTorch from the same venv (forward, training step, live next bar).

use crate::shell::{self, Result};

pub fn run(args: &[String]) -> Result {
    match args.first().map(String::as_str) {
        Some("plugin") => {
            // The bench loads the release cdylib, which `cargo bench` does not build.
            let cargo = shell::cargo();
            shell::run(
                &cargo,
                &["build", "--release", "-p", "bandmate-plugin", "--lib"],
            )?;
            shell::run(
                &cargo,
                &["bench", "-p", "bandmate-plugin", "--bench", "process"],
            )
        }
        Some("editor") => shell::run(
            &shell::cargo(),
            &["bench", "-p", "bandmate-gui", "--bench", "editor"],
        ),
        Some("band") => engine_bench_with_torch("band", args),
        Some("latent") => engine_bench_with_torch("latent", args),
        Some("data") => shell::run(
            &shell::cargo(),
            &["bench", "-p", "bandmate-engine", "--bench", "data"],
        ),
        Some("roll") => engine_bench_with_torch("roll", args),
        _ => Err(format!(
            "usage: cargo xtask bench plugin|data|editor|roll|latent|band [--compare-torch] (got {args:?})"
        )),
    }
}

/// `cargo bench -p bandmate-engine --bench NAME`, with the PyTorch twin when `args` has
/// `--compare-torch`.
fn engine_bench_with_torch(name: &str, args: &[String]) -> Result<()> {
    let mut env = Vec::new();
    if args.iter().any(|a| a == "--compare-torch") {
        env.push(("BANDMATE_TORCH_PYTHON".to_string(), torch_venv()?));
    }
    shell::run_with_env(
        &shell::cargo(),
        &["bench", "-p", "bandmate-engine", "--bench", name],
        &env,
    )
}

/// A venv with PyTorch (CPU wheels from PyTorch's index, else PyPI's), safetensors and numpy under
/// `target/torch-venv`, made on first use; returns its python.
fn torch_venv() -> Result<String> {
    let venv = shell::root().join("target/torch-venv");
    let python = venv.join("bin/python").to_string_lossy().into_owned();
    let has_torch = shell::output(&python, &["-c", "import torch, safetensors, numpy"]).is_some();
    if !has_torch {
        if !venv.join("bin/python").exists() {
            shell::run("python3", &["-m", "venv", &venv.to_string_lossy()])?;
        }
        // The CPU-only wheels first; where that index is not reachable, PyPI's default torch
        // (larger: it carries CUDA libraries, unused here).
        let cpu_index = shell::run(
            &python,
            &[
                "-m",
                "pip",
                "install",
                "--quiet",
                "torch",
                "--index-url",
                "https://download.pytorch.org/whl/cpu",
            ],
        );
        if cpu_index.is_err() {
            shell::run(&python, &["-m", "pip", "install", "--quiet", "torch"])?;
        }
        shell::run(
            &python,
            &["-m", "pip", "install", "--quiet", "safetensors", "numpy"],
        )?;
    }
    Ok(python)
}
