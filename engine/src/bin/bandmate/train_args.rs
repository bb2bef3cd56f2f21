//! The options of `bandmate train` (every model) and what they share: where a run exports,
//! how `--config` is read.

use anyhow::{Context, Result, bail};
use bandmate::train::parse_duration;
use bandmate::train::run_loop::{LoopOptions, LoopState};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TrainModel {
    /// The piano-roll diffusion UNet (POP909).
    Roll,
    /// The 2-bar melody MusicVAE (Nottingham); see `bandmate train vae --help` for the
    /// defaults that differ (run folder, export folder, batch, lr).
    Vae,
    /// The band player's recurrent multimodal VAE with a product of experts (Nottingham
    /// melody + chords); defaults: run folder artifacts/train/band, export artifacts/band, batch 32,
    /// lr 1e-3, budget 40m.
    Band,
    /// The latent score model over 2-bar MusicVAE latents (Nottingham melodies, 16 bars);
    /// defaults: run folder artifacts/train/latent, export artifacts/latent, batch 128, lr 5e-4,
    /// budget 30m, transpositions ±5.
    Latent,
    /// The parts model: roll diffusion generating one part beside the others (POP909 +
    /// Nottingham); defaults: config fast-parts, run folder artifacts/train/parts, export
    /// artifacts/parts, batch 16, lr 1e-3, budget 60m, 500 batches per epoch.
    Parts,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Which model to train.
    #[arg(value_enum)]
    pub model: TrainModel,
    /// Model shape: a preset (roll: `tiny`, `small`, `fast`, `fast-cond`, `base`; vae: `tiny`,
    /// `small`) or a config.json file.
    #[arg(long, default_value = "small")]
    pub config: String,
    /// Wall-time budget, counting time before a resume: `95m`, `1h30m`, `45s`
    /// [default: roll 90m, vae 30m].
    #[arg(long, value_parser = parse_duration)]
    pub budget: Option<Duration>,
    /// [default: roll 16, vae 128]
    #[arg(long)]
    pub batch: Option<usize>,
    /// [default: 2e-3]
    #[arg(long)]
    pub lr: Option<f64>,
    /// Stop after this many epochs.
    #[arg(long, default_value_t = 1000)]
    pub epochs: usize,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Bars between the starts of training windows [default: roll 2, vae 1].
    #[arg(long)]
    pub hop_bars: Option<u32>,
    /// At most this many batches per epoch (a fresh random subset of windows each epoch).
    #[arg(long)]
    pub epoch_steps: Option<usize>,
    /// Validation windows from the valid split [default: roll 512, vae 2048].
    #[arg(long)]
    pub val_windows: Option<usize>,
    /// Checkpoints, state, loss curve (resumed when it holds a run)
    /// [default: artifacts/train/<model>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Where the best weights, config, card and loss curve are exported
    /// [default: artifacts/<model>; with --ship, the shipped assets/<model>].
    #[arg(long, conflicts_with = "ship")]
    pub assets: Option<PathBuf>,
    /// Export into the shipped assets/<model> folder, replacing the weights and the card that
    /// the plugin and the `bandmate` program embed (only when the new model is to ship).
    #[arg(long)]
    pub ship: bool,
    /// Do not export at all (the run folder only).
    #[arg(long, conflicts_with_all = ["assets", "ship"])]
    pub no_assets: bool,
    /// Start over even when the run folder holds a checkpoint.
    #[arg(long)]
    pub fresh: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Progress line every N steps.
    #[arg(long, default_value_t = 25)]
    pub log_every: usize,
    /// vae: largest β of the KL term (annealed from 0).
    #[arg(long, default_value_t = 0.2)]
    pub beta: f64,
    /// vae: free bits λ in nats per sequence (the KL term is β·max(KL, λ)) [default: 12 for
    /// the 2-bar model, 64 for the 16-bar hierarchical one].
    #[arg(long)]
    pub free_bits: Option<f64>,
    /// vae: optimizer steps over which β rises from 0 to --beta.
    #[arg(long, default_value_t = 3000)]
    pub kl_anneal_steps: usize,
    /// vae: largest random transposition in semitones.
    #[arg(long, default_value_t = 6)]
    pub max_shift: i32,
    /// latent: the MusicVAE whose latents are modelled [default: assets/vae].
    #[arg(long)]
    pub vae: Option<PathBuf>,
    /// roll: keep an exponential moving average of the weights with this decay (e.g. 0.999)
    /// and validate and export it instead of the raw weights.
    #[arg(long)]
    pub ema: Option<f64>,
    /// parts: start from these merged-roll weights (e.g. assets/roll/model.safetensors).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// band: train without the scale, rhythm and harmony losses (the ablation).
    #[arg(long)]
    pub no_aux: bool,
    /// Instead of training, time forward passes and training steps of these presets or config
    /// files (comma-separated) on random rolls.
    #[arg(long)]
    pub bench: Option<String>,
}

impl TrainArgs {
    /// `--batch`, else `default`; at least 1.
    pub fn batch_or(&self, default: usize) -> Result<usize> {
        let batch = self.batch.unwrap_or(default);
        if batch == 0 {
            bail!("--batch must be at least 1");
        }
        Ok(batch)
    }

    /// The loop options every model takes from the command line: `--budget` and `--lr` when
    /// given (else the trainer's defaults), `--epochs`, `--max-steps`, `--log-every`,
    /// `--fresh`, the run folder (`--run-dir`, else `artifacts/train/<folder>`) and where the
    /// run exports ([`export_dir`] of `folder`).
    pub fn set_run(&self, run: &mut LoopOptions, folder: &str) {
        if let Some(budget) = self.budget {
            run.budget = budget;
        }
        if let Some(lr) = self.lr {
            run.lr = lr;
        }
        run.max_epochs = self.epochs;
        run.max_steps = self.max_steps;
        run.log_every = self.log_every;
        run.fresh = self.fresh;
        run.run_dir = self
            .run_dir
            .clone()
            .unwrap_or_else(|| Path::new("artifacts/train").join(folder));
        run.assets_dir = export_dir(self, folder);
    }
}

/// `--bench LIST`: for each preset or config file of the comma-separated list, `load` it
/// and print what `time` measures of it (a line after its name).
pub fn bench<C>(
    list: &str,
    load: fn(&str) -> Result<C>,
    mut time: impl FnMut(&C) -> Result<String>,
) -> Result<()> {
    for name in list.split(',') {
        let cfg = load(name.trim())?;
        println!("{name}{}", time(&cfg)?);
    }
    Ok(())
}

/// The last line of a training run: its steps and epochs, the best validation loss with
/// `decimals` digits and `unit`, and the run folder.
pub fn print_trained(state: &LoopState, run_dir: &Path, decimals: usize, unit: &str) {
    println!(
        "trained {} steps in {} epochs; best validation loss {:.*}{unit}; run folder {}",
        state.step,
        state.epoch,
        decimals,
        state.best_val.unwrap_or(f64::NAN),
        run_dir.display()
    );
}

/// Where a run exports its best weights, config, card and loss curve: `--assets DIR` if given,
/// the shipped `assets/<folder>` with `--ship`, nothing with `--no-assets`, else
/// `artifacts/<folder>` (so that a training run never replaces the shipped weights unless
/// told to).
pub fn export_dir(args: &TrainArgs, folder: &str) -> Option<PathBuf> {
    if args.no_assets {
        return None;
    }
    Some(match (&args.assets, args.ship) {
        (Some(dir), _) => dir.clone(),
        (None, true) => PathBuf::from("assets").join(folder),
        (None, false) => PathBuf::from("artifacts").join(folder),
    })
}

/// `--config NAME`: a preset of the model (`preset`) or a config.json file (`what` names the
/// model in errors, `presets` lists the preset names).
pub fn load_config_with<C: serde::de::DeserializeOwned>(
    name: &str,
    preset: fn(&str) -> Option<C>,
    validate: fn(&C) -> std::result::Result<(), String>,
    what: &str,
    presets: &str,
) -> Result<C> {
    if let Some(cfg) = preset(name) {
        return Ok(cfg);
    }
    let text = std::fs::read_to_string(name).with_context(|| {
        format!("--config {name}: not a preset ({presets}) nor a readable file")
    })?;
    let cfg: C =
        serde_json::from_str(&text).with_context(|| format!("{name} is not a {what} config"))?;
    validate(&cfg).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    Ok(cfg)
}

/// Defines `fn load_config(name: &str) -> Result<$config>` for a trainer: `--config NAME` as a
/// preset of `$config` or a config.json file ([`load_config_with`], `$what` and `$presets`
/// as there).
macro_rules! config_loader {
    ($config:ty, $what:literal, $presets:literal) => {
        fn load_config(name: &str) -> anyhow::Result<$config> {
            $crate::train_args::load_config_with(
                name,
                <$config>::preset,
                <$config>::validate,
                $what,
                $presets,
            )
        }
    };
}
pub(crate) use config_loader;
