//! `bandmate weights DIR... [--to f16|bf16|f32] [--out DIR]`: show or change the float type a
//! model folder's `model.safetensors` is stored in (the loaders read any of them as f32).

use anyhow::{Context, Result, bail};
use bandmate::nn::weights::{convert_file, parse_dtype, stored_types};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct WeightsArgs {
    /// Model folders (config.json, model.safetensors), e.g. assets/roll.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Store the float tensors in this type (f16, bf16 or f32), same names and shapes; without
    /// it, only show what each file holds.
    #[arg(long)]
    pub to: Option<String>,
    /// Shorthand for `--to f16`.
    #[arg(long, conflicts_with = "to")]
    pub to_f16: bool,
    /// Write the converted folder (config.json copied) here instead of rewriting the file in
    /// place (one model folder only).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: WeightsArgs) -> Result<()> {
    let to = match (&args.to, args.to_f16) {
        (Some(name), _) => Some(parse_dtype(name)?),
        (None, true) => Some(candle_core::DType::F16),
        (None, false) => None,
    };
    if args.out.is_some() && args.dirs.len() != 1 {
        bail!("--out takes one model folder");
    }
    for dir in &args.dirs {
        let path = dir.join("model.safetensors");
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let types = stored_types(&bytes, &path.display().to_string())?;
        let shown: Vec<String> = types
            .iter()
            .map(|(d, n)| format!("{} {:.2} MB", d.as_str(), *n as f64 / 1e6))
            .collect();
        println!(
            "{}: {} ({})",
            path.display(),
            mb(bytes.len()),
            shown.join(", ")
        );
        let Some(dtype) = to else { continue };
        let out_dir = args.out.as_ref().unwrap_or(dir);
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        if out_dir != dir {
            for file in ["config.json", "table.json"] {
                if dir.join(file).is_file() {
                    std::fs::copy(dir.join(file), out_dir.join(file))
                        .with_context(|| format!("cannot copy {file} to {}", out_dir.display()))?;
                }
            }
        }
        let out = out_dir.join("model.safetensors");
        let r = convert_file(&path, &out, dtype)?;
        println!(
            "  -> {} as {}: {} ({} tensors, {} values; largest change {:.2e} absolute, {:.2e} \
             relative; {} values flushed to zero, {} overflowed)",
            out.display(),
            dtype.as_str(),
            mb(r.bytes_after),
            r.tensors,
            r.values,
            r.max_abs_error,
            r.max_rel_error,
            r.flushed_to_zero,
            r.overflowed
        );
        if r.overflowed > 0 {
            eprintln!(
                "  warning: {} values are too large for {}: they are now infinite",
                r.overflowed,
                dtype.as_str()
            );
        }
    }
    Ok(())
}

fn mb(bytes: usize) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}
