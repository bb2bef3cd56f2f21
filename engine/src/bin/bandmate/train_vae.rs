//! `bandmate train vae`: train the 2-bar melody MusicVAE on Nottingham (or time its step).

use anyhow::{Result, bail};
use bandmate::models::music_vae::Config;
use bandmate::train::vae::{VaeTrainOptions, time_vae_step, train_vae};
use std::path::PathBuf;
use std::time::Duration;

use crate::train::TrainArgs;

fn load_config(name: &str) -> Result<Config> {
    crate::train::load_config_with(
        name,
        Config::preset,
        Config::validate,
        "MusicVAE",
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
            let step = time_vae_step(&cfg, batch, 5)?;
            println!(
                "{name}: encoder {} decoder {} z {}: train step {:.0} ms ({:.0} sequences/s) at batch {batch}",
                cfg.encoder_hidden,
                cfg.decoder_hidden,
                cfg.z_dim,
                step * 1e3,
                batch as f64 / step
            );
        }
        return Ok(());
    }
    let mut opts = VaeTrainOptions::new(load_config(&args.config)?);
    opts.budget = args.budget.unwrap_or(Duration::from_secs(30 * 60));
    opts.batch = batch;
    opts.lr = args.lr.unwrap_or(2e-3);
    opts.max_epochs = args.epochs;
    opts.max_steps = args.max_steps;
    opts.hop_bars = args.hop_bars.unwrap_or(1);
    opts.epoch_steps = args.epoch_steps;
    opts.val_windows = args.val_windows.unwrap_or(2048);
    opts.beta = args.beta;
    opts.free_bits = args.free_bits;
    opts.kl_anneal_steps = args.kl_anneal_steps;
    opts.max_shift = args.max_shift;
    opts.run_dir = args
        .run_dir
        .unwrap_or_else(|| PathBuf::from("artifacts/train/vae"));
    opts.assets_dir =
        (!args.no_assets).then(|| args.assets.unwrap_or_else(|| PathBuf::from("assets/vae")));
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
