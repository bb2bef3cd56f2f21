//! `bandmate train roll`: train the piano-roll diffusion model (or time its training step).

use anyhow::{Context, Result, bail};
use bandmate::models::roll::Config;
use bandmate::train::parse_duration;
use bandmate::train::roll::{TrainOptions, time_step, train};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TrainModel {
    /// The piano-roll diffusion UNet (POP909).
    Roll,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Which model to train.
    #[arg(value_enum)]
    pub model: TrainModel,
    /// Model shape: a preset (`tiny`, `small`, `base`) or a config.json file.
    #[arg(long, default_value = "small")]
    pub config: String,
    /// Wall-time budget, counting time before a resume: `95m`, `1h30m`, `45s`.
    #[arg(long, default_value = "90m", value_parser = parse_duration)]
    pub budget: Duration,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Stop after this many epochs.
    #[arg(long, default_value_t = 1000)]
    pub epochs: usize,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Bars between the starts of training windows.
    #[arg(long, default_value_t = 2)]
    pub hop_bars: u32,
    /// At most this many batches per epoch (a fresh random subset of windows each epoch).
    #[arg(long)]
    pub epoch_steps: Option<usize>,
    /// Validation windows from the POP909 valid split.
    #[arg(long, default_value_t = 512)]
    pub val_windows: usize,
    /// Checkpoints, state, loss curve (resumed when it holds a run).
    #[arg(long, default_value = "artifacts/train/roll")]
    pub run_dir: PathBuf,
    /// Where the best weights, config, card and loss curve are exported.
    #[arg(long, default_value = "assets/roll")]
    pub assets: PathBuf,
    /// Do not export to the assets folder.
    #[arg(long)]
    pub no_assets: bool,
    /// Start over even when the run folder holds a checkpoint.
    #[arg(long)]
    pub fresh: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Progress line every N steps.
    #[arg(long, default_value_t = 25)]
    pub log_every: usize,
    /// Instead of training, time forward passes and training steps of these presets or config
    /// files (comma-separated) on random rolls.
    #[arg(long)]
    pub bench: Option<String>,
}

fn load_config(name: &str) -> Result<Config> {
    if let Some(cfg) = Config::preset(name) {
        return Ok(cfg);
    }
    let text = std::fs::read_to_string(name).with_context(|| {
        format!("--config {name}: not a preset (tiny, small, base) nor a readable file")
    })?;
    let cfg: Config = serde_json::from_str(&text)
        .with_context(|| format!("{name} is not a roll model config"))?;
    cfg.validate().map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    Ok(cfg)
}

pub fn run(args: TrainArgs) -> Result<()> {
    let TrainModel::Roll = args.model;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(list) = &args.bench {
        for name in list.split(',') {
            let cfg = load_config(name.trim())?;
            let (fwd, step) = time_step(&cfg, args.batch, 3)?;
            println!(
                "{name}: base {} mults {:?} res {}: forward {:.0} ms, train step {:.0} ms ({:.1} samples/s) at batch {}",
                cfg.base_channels,
                cfg.channel_mults,
                cfg.res_blocks,
                fwd * 1e3,
                step * 1e3,
                args.batch as f64 / step,
                args.batch
            );
        }
        return Ok(());
    }
    let mut opts = TrainOptions::new(load_config(&args.config)?);
    opts.budget = args.budget;
    opts.batch = args.batch;
    opts.lr = args.lr;
    opts.max_epochs = args.epochs;
    opts.max_steps = args.max_steps;
    opts.hop_bars = args.hop_bars;
    opts.epoch_steps = args.epoch_steps;
    opts.val_windows = args.val_windows;
    opts.run_dir = args.run_dir;
    opts.assets_dir = (!args.no_assets).then_some(args.assets);
    opts.fresh = args.fresh;
    opts.seed = args.seed;
    opts.log_every = args.log_every;
    let report = train(&opts)?;
    println!(
        "trained {} steps in {} epochs; best validation loss {:.5}; run folder {}",
        report.state.step,
        report.state.epoch,
        report.state.best_val.unwrap_or(f64::NAN),
        report.run_dir.display()
    );
    Ok(())
}
