//! `bandmate train band`: train the band player's recurrent multimodal VAE on Nottingham.

use anyhow::{Result, bail};
use bandmate::models::band::Config;
use bandmate::train::band::{AuxWeights, TrainOptions, train};
use std::path::PathBuf;
use std::time::Duration;

use crate::train_args::TrainArgs;

fn load_config(name: &str) -> Result<Config> {
    crate::train_args::load_config_with(
        name,
        Config::preset,
        Config::validate,
        "band model",
        "tiny, small",
    )
}

pub fn run(args: TrainArgs) -> Result<()> {
    if args.bench.is_some() {
        bail!(
            "--bench is for the roll and vae models; time the band model with `cargo xtask bench band`"
        );
    }
    let mut opts = TrainOptions::new(load_config(&args.config)?);
    opts.batch = args.batch.unwrap_or(32);
    if opts.batch == 0 {
        bail!("--batch must be at least 1");
    }
    opts.budget = args.budget.unwrap_or(Duration::from_secs(40 * 60));
    opts.lr = args.lr.unwrap_or(1e-3);
    opts.max_epochs = args.epochs;
    opts.max_steps = args.max_steps;
    opts.hop_bars = args.hop_bars.unwrap_or(2) as usize;
    opts.epoch_steps = Some(args.epoch_steps.unwrap_or(500));
    opts.val_sequences = args.val_windows.unwrap_or(512);
    opts.beta = args.beta;
    opts.max_shift = args.max_shift;
    opts.aux = if args.no_aux {
        AuxWeights::OFF
    } else {
        AuxWeights::DEFAULT
    };
    opts.run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("artifacts/train/band"));
    opts.assets_dir = crate::train_args::export_dir(&args, "band");
    opts.fresh = args.fresh;
    opts.seed = args.seed;
    opts.log_every = args.log_every;
    let report = train(&opts)?;
    println!(
        "trained {} steps in {} epochs; best validation loss {:.4} nats/bar; run folder {}",
        report.state.step,
        report.state.epoch,
        report.state.best_val.unwrap_or(f64::NAN),
        report.run_dir.display()
    );
    Ok(())
}
