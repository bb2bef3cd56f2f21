//! `cargo xtask bench <what>`: benchmarks.
//!
//! - `plugin`: Bandmate's `process()` through a CLAP host (clack-host) on the release library,
//!   per 512-sample block at 48 kHz with a 64-note clip, p50/p99/max over 100,000 blocks, the
//!   same for a 100,000-note clip at 120 and 60,000 BPM over 10,000 blocks, and the memory of
//!   one and of sixteen instances (`plugin/benches/process.rs`).
//! - `data`: parsing the datasets, loading them from the cache, and the metrics
//!   (`engine/benches/data.rs`).
//! - `editor`: laying out and painting one frame of the editor with a 16-bar, 500-note clip
//!   (`gui/benches/editor.rs`).
//! - `eval`: one task of `bandmate eval-roll` at its defaults (200 windows × 3 seeds, every
//!   row, part-fit and set metrics with bootstrap intervals), wall time (`engine/benches/eval.rs`).
//! - `roll [--compare-torch]`: the roll diffusion model's loading, fill latency and training
//!   throughput (`engine/benches/roll.rs`); with `--compare-torch`, also the same UNet in
//!   PyTorch from a venv this command makes under `target/torch-venv` (CI does not run it).
//! - `latent [--compare-torch]`: the latent diffusion model's loading, 16-bar generation with
//!   each sampler and training step (`engine/benches/latent.rs`); with `--compare-torch`, also
//!   the score network and the MusicVAE in PyTorch from the same venv.
//! - `band [--compare-torch]`: the band player's next-bar latency over 1,000 Nottingham test
//!   bars and its memory (`engine/benches/band.rs`); with `--compare-torch`, also the same model
//!   in PyTorch from the same venv (forward, training step, live next bar).
//! - `roll`, `latent` and `band` take `--rounds N`: the bench runs N times and the command ends
//!   with the median candle and PyTorch times of every comparison row (this machine's speed
//!   drifts by ±20% between runs). `BANDMATE_BENCH_ITERS=n` sets the timed runs per row,
//!   `BANDMATE_BENCH_SPREAD=1` prints each row's run times in order (to tell drift from outliers).
//! - `--compare-torch [--rounds N]` alone (or `all --compare-torch`): the three comparisons for
//!   every shipped model (roll UNet; latent score network, MusicVAE and hierarchical MusicVAE;
//!   band player), N rounds each, then one table of every row's medians and the rows where
//!   candle is slower than PyTorch; it fails if any output differs from PyTorch's by more than
//!   1e-4.

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
        Some("eval") => shell::run(
            &shell::cargo(),
            &["bench", "-p", "bandmate-engine", "--bench", "eval"],
        ),
        Some("data") => shell::run(
            &shell::cargo(),
            &["bench", "-p", "bandmate-engine", "--bench", "data"],
        ),
        Some("roll") => engine_bench_with_torch("roll", args),
        Some("all" | "--compare-torch") if args.iter().any(|a| a == "--compare-torch") => {
            compare_every_model(args)
        }
        _ => Err(format!(
            "usage: cargo xtask bench plugin|data|editor|eval|roll|latent|band [--compare-torch] [--rounds N], or cargo xtask bench --compare-torch [--rounds N] for every model (got {args:?})"
        )),
    }
}

/// Candle and PyTorch milliseconds of one comparison row, one pair per round.
struct ComparisonRow {
    /// "MODEL: label".
    label: String,
    times: Vec<(f64, f64)>,
}

impl ComparisonRow {
    /// Median candle ms, median PyTorch ms, and the lowest and highest speed ratio of a round.
    fn medians(&self) -> (f64, f64, f64, f64) {
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let candle = median(self.times.iter().map(|t| t.0).collect());
        let torch = median(self.times.iter().map(|t| t.1).collect());
        let (low, high) = self
            .times
            .iter()
            .map(|t| t.1 / t.0)
            .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(r), h.max(r)));
        (candle, torch, low, high)
    }

    fn print(&self) {
        let (candle, torch, low, high) = self.medians();
        println!(
            "  {:<46} candle {candle:8.2} ms  torch {torch:8.2} ms  speed ratio candle/torch {:.2} (rounds {low:.2}–{high:.2})",
            self.label,
            torch / candle
        );
    }
}

/// `--rounds N` of `args` (1 without it).
fn rounds(args: &[String]) -> Result<usize> {
    match args.iter().position(|a| a == "--rounds") {
        Some(i) => Ok(args
            .get(i + 1)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .ok_or("--rounds needs a number of runs")?),
        None => Ok(1),
    }
}

/// `cargo bench -p bandmate-engine --bench NAME`, with the PyTorch twin when `args` has
/// `--compare-torch` (then failing if candle and PyTorch outputs differ by more than 1e-4);
/// `--rounds N` runs it N times and ends with the median of every comparison row.
fn engine_bench_with_torch(name: &str, args: &[String]) -> Result<()> {
    let mut env = Vec::new();
    if args.iter().any(|a| a == "--compare-torch") {
        env.push(("BANDMATE_TORCH_PYTHON".to_string(), torch_venv()?));
    }
    let rounds = rounds(args)?;
    if rounds == 1 && env.is_empty() {
        let bench = ["bench", "-p", "bandmate-engine", "--bench", name];
        return shell::run_with_env(&shell::cargo(), &bench, &env);
    }
    let (rows, disagreements) = comparison_rounds(name, rounds, &env)?;
    if rounds > 1 {
        println!("median of {rounds} rounds (each round times candle, then PyTorch):");
        rows.iter().for_each(ComparisonRow::print);
    }
    outputs_agree(&disagreements)
}

/// Every shipped model against its PyTorch twin: the roll, latent and band comparisons, `--rounds
/// N` each, then every row's medians in one table and the rows where candle is slower.
fn compare_every_model(args: &[String]) -> Result<()> {
    let env = vec![("BANDMATE_TORCH_PYTHON".to_string(), torch_venv()?)];
    let rounds = rounds(args)?;
    let mut rows = Vec::new();
    let mut disagreements = Vec::new();
    for name in ["roll", "latent", "band"] {
        let (model_rows, model_disagreements) = comparison_rounds(name, rounds, &env)?;
        rows.extend(model_rows);
        disagreements.extend(model_disagreements);
    }
    println!(
        "every shipped model, median of {rounds} rounds (each round times candle, then PyTorch):"
    );
    rows.iter().for_each(ComparisonRow::print);
    let slower: Vec<&str> = rows
        .iter()
        .filter(|r| {
            let (candle, torch, ..) = r.medians();
            candle > torch
        })
        .map(|r| r.label.as_str())
        .collect();
    if slower.is_empty() {
        println!(
            "candle is at least as fast as PyTorch on all {} rows (medians)",
            rows.len()
        );
    } else {
        println!(
            "candle is slower than PyTorch (medians) on: {}",
            slower.join("; ")
        );
    }
    outputs_agree(&disagreements)
}

/// Ok when no comparison line said the outputs differ by more than 1e-4, else an error naming
/// those lines.
fn outputs_agree(disagreements: &[String]) -> Result<()> {
    if disagreements.is_empty() {
        println!("candle and PyTorch outputs agree within 1e-4 in every comparison");
        Ok(())
    } else {
        Err(format!(
            "candle and PyTorch outputs differ by more than 1e-4: {}",
            disagreements.join("; ")
        ))
    }
}

/// Runs `cargo bench -p bandmate-engine --bench NAME` `rounds` times (its output shown as it
/// goes) and collects the candle and PyTorch times of every comparison row, and the lines
/// where the two disagree by more than 1e-4.
fn comparison_rounds(
    name: &str,
    rounds: usize,
    env: &[(String, String)],
) -> Result<(Vec<ComparisonRow>, Vec<String>)> {
    let mut disagreements = Vec::new();
    let bench = ["bench", "-p", "bandmate-engine", "--bench", name];
    let mut rows: Vec<ComparisonRow> = Vec::new();
    for round in 1..=rounds {
        eprintln!("{name}: round {round} of {rounds}");
        let printed = shell::run_teed_with_env(&shell::cargo(), &bench, env)?;
        // Rows are named by their model's header ("MusicVAE vs torch …") and their label, as
        // two models may have rows of the same label.
        let mut model = String::new();
        for line in printed.lines() {
            if line.contains("NOT within 1e-4") {
                disagreements.push(format!("{name}: {}", line.trim()));
            }
            if let Some((header, _)) = line.split_once(" vs torch ") {
                model = header.trim().to_string();
            }
            let Some((label, candle, torch)) = comparison_row(line) else {
                continue;
            };
            let label = format!("{model}: {label}");
            match rows.iter_mut().find(|r| r.label == label) {
                Some(row) => row.times.push((candle, torch)),
                None => rows.push(ComparisonRow {
                    label,
                    times: vec![(candle, torch)],
                }),
            }
        }
    }
    Ok((rows, disagreements))
}

/// (label, candle ms, PyTorch ms) of a bench's comparison line: `  LABEL  F GFLOP  candle C ms
/// (…)  torch T ms (…)  speed ratio …`.
fn comparison_row(line: &str) -> Option<(String, f64, f64)> {
    if !line.contains("speed ratio candle/torch") {
        return None;
    }
    let before_flops = &line[..line.find(" GFLOP")?];
    let label = before_flops.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    let ms_after = |word: &str| -> Option<f64> {
        let rest = &line[line.find(word)? + word.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    Some((
        label.trim().to_string(),
        ms_after(" candle ")?,
        ms_after(" torch ")?,
    ))
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

#[cfg(test)]
mod tests {
    use super::{ComparisonRow, comparison_row};

    #[test]
    fn a_rows_medians_and_round_ratios() {
        let row = ComparisonRow {
            label: "band: forward".into(),
            times: vec![(10.0, 12.0), (14.0, 11.0), (11.0, 22.0)],
        };
        let (candle, torch, low, high) = row.medians();
        assert_eq!((candle, torch), (11.0, 12.0));
        assert_eq!((low, high), (11.0 / 14.0, 2.0));
    }

    #[test]
    fn reads_a_comparison_row_of_the_benches() {
        let line = "  training step, batch 128   19.730 GFLOP  candle   157.04 ms (125.6 GFLOP/s, 66.1% of peak)  torch   166.54 ms (118.5 GFLOP/s)  speed ratio candle/torch 1.06";
        let (label, candle, torch) = comparison_row(line).unwrap();
        assert_eq!(label, "training step, batch 128");
        assert_eq!((candle, torch), (157.04, 166.54));
        let band = "  forward, batch 32×8         1.002 GFLOP  candle     8.11 ms (123.6 GFLOP/s, 65.1% of peak)  torch     8.59 ms (116.6 GFLOP/s)  speed ratio candle/torch 1.06";
        assert_eq!(comparison_row(band).unwrap().0, "forward, batch 32×8");
        assert!(comparison_row("band: next bar over 1000 test bars: p50 0.252 ms").is_none());
    }
}
