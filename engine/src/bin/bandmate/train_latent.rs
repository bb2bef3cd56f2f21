//! `bandmate train latent`: train the latent score model on MusicVAE latents of Nottingham
//! melodies (or time its step).

use anyhow::{Result, bail};
use bandmate::models::latent_score::Config;
use bandmate::train::latent::{LatentTrainOptions, time_latent_step, train_latent};
use std::path::PathBuf;
use std::time::Duration;

use crate::train_args::TrainArgs;

fn load_config(name: &str) -> Result<Config> {
    crate::train_args::load_config_with(
        name,
        Config::preset,
        Config::validate,
        "latent score",
        "tiny, small",
    )
}

pub fn run(args: TrainArgs) -> Result<()> {
    let batch = args.batch.unwrap_or(128);
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(list) = &args.bench {
        for name in list.split(',') {
            let cfg = load_config(name.trim())?;
            let step = time_latent_step(&cfg, batch, 5)?;
            println!(
                "{name}: d_model {} layers {}: train step {:.1} ms ({:.0} sequences/s) at batch {batch}",
                cfg.d_model,
                cfg.layers,
                step * 1e3,
                batch as f64 / step
            );
        }
        return Ok(());
    }
    let mut opts = LatentTrainOptions::new(load_config(&args.config)?);
    opts.budget = args.budget.unwrap_or(Duration::from_secs(30 * 60));
    opts.batch = batch;
    opts.lr = args.lr.unwrap_or(5e-4);
    opts.max_epochs = args.epochs.max(1) * 100;
    opts.max_steps = args.max_steps;
    opts.max_shift = args.max_shift.min(5);
    opts.run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("artifacts/train/latent"));
    opts.assets_dir = crate::train_args::export_dir(&args, "latent");
    if let Some(vae) = args.vae {
        opts.vae_dir = vae;
    }
    opts.fresh = args.fresh;
    opts.seed = args.seed;
    opts.log_every = args.log_every.max(50);
    let state = train_latent(&opts)?;
    println!(
        "trained {} steps in {} epochs; best validation loss {:.4}; run folder {}",
        state.step,
        state.epoch,
        state.best_val.unwrap_or(f64::NAN),
        opts.run_dir.display()
    );
    Ok(())
}
