//! `bandmate train vae`: train the melody MusicVAE on Nottingham, 2-bar (`--config small`) or
//! 16-bar hierarchical (`--config hier`), or time its training step.

use anyhow::{Result, bail};
use bandmate::train::vae::{VaeTrainOptions, time_vae_step, train_vae};
use bandmate::vae::VaeShape;
use std::path::PathBuf;
use std::time::Duration;

use crate::train_args::TrainArgs;

fn load_config(name: &str) -> Result<VaeShape> {
    crate::train_args::load_config_with(
        name,
        VaeShape::preset,
        VaeShape::validate,
        "MusicVAE",
        "tiny, small, hier-tiny, hier",
    )
}

pub fn run(args: TrainArgs) -> Result<()> {
    let shape = load_config(&args.config)?;
    let hier = shape.is_hierarchical();
    let batch = args.batch.unwrap_or(if hier { 64 } else { 128 });
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(list) = &args.bench {
        for name in list.split(',') {
            let cfg = load_config(name.trim())?;
            let step = time_vae_step(&cfg, batch, 5)?;
            println!(
                "{name} ({}, z {}): train step {:.0} ms ({:.0} sequences/s) at batch {batch}",
                cfg.describe(),
                cfg.z_dim(),
                step * 1e3,
                batch as f64 / step
            );
        }
        return Ok(());
    }
    let mut opts = VaeTrainOptions::new(shape);
    opts.budget = args.budget.unwrap_or(Duration::from_secs(30 * 60));
    opts.batch = batch;
    opts.lr = args.lr.unwrap_or(2e-3);
    opts.max_epochs = args.epochs;
    opts.max_steps = args.max_steps;
    opts.hop_bars = args.hop_bars.unwrap_or(if hier { 2 } else { 1 });
    opts.epoch_steps = args.epoch_steps;
    opts.val_windows = args.val_windows.unwrap_or(if hier { 512 } else { 2048 });
    opts.beta = args.beta;
    opts.free_bits = args.free_bits.unwrap_or(if hier { 64.0 } else { 12.0 });
    opts.kl_anneal_steps = args.kl_anneal_steps;
    opts.max_shift = args.max_shift;
    opts.run_dir = args.run_dir.clone().unwrap_or_else(|| {
        PathBuf::from(if hier {
            "artifacts/train/vae16"
        } else {
            "artifacts/train/vae"
        })
    });
    opts.assets_dir = crate::train_args::export_dir(&args, if hier { "vae16" } else { "vae" });
    opts.fresh = args.fresh;
    opts.seed = args.seed;
    opts.log_every = args.log_every;
    let report = train_vae(&opts)?;
    println!(
        "trained {} steps in {} epochs; best validation loss {:.4}; run folder {}",
        report.state.step,
        report.state.epoch,
        report.state.best_val.unwrap_or(f64::NAN),
        report.run_dir.display()
    );
    Ok(())
}
