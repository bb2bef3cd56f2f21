//! `bandmate train roll`: train the piano-roll diffusion model (or time its training step).

use crate::train_args::{TrainArgs, TrainModel, bench, config_loader, export_dir, print_trained};
use anyhow::Result;
use bandmate::models::roll::Config;
use bandmate::train::roll::{TrainOptions, time_step, train};

config_loader!(Config, "roll model", "tiny, small, base");

pub fn run(args: TrainArgs) -> Result<()> {
    if let TrainModel::Vae = args.model {
        return crate::train_vae::run(args);
    }
    if let TrainModel::Band = args.model {
        return crate::train_band::run(args);
    }
    if let TrainModel::Latent = args.model {
        return crate::train_latent::run(args);
    }
    let batch = args.batch_or(16)?;
    if let TrainModel::Parts = args.model {
        return run_parts(args, batch);
    }
    if let Some(list) = &args.bench {
        return bench(list, load_config, |cfg| {
            let (fwd, step) = time_step(cfg, batch, 3)?;
            Ok(format!(
                ": base {} mults {:?} res {}: forward {:.0} ms, train step {:.0} ms ({:.1} samples/s) at batch {}",
                cfg.base_channels,
                cfg.channel_mults,
                cfg.res_blocks,
                fwd * 1e3,
                step * 1e3,
                batch as f64 / step,
                batch
            ))
        });
    }
    let mut opts = TrainOptions::new(load_config(&args.config)?);
    args.set_run(&mut opts.run, "roll");
    opts.batch = batch;
    opts.hop_bars = args.hop_bars.unwrap_or(2);
    opts.epoch_steps = args.epoch_steps;
    opts.val_windows = args.val_windows.unwrap_or(512);
    opts.seed = args.seed;
    opts.ema = args.ema;
    let report = train(&opts)?;
    print_trained(&report.state, &report.run_dir, 5, "");
    Ok(())
}

fn run_parts(args: TrainArgs, batch: usize) -> Result<()> {
    use bandmate::train::parts::{PartsOptions, train};
    let name = if args.config == "small" {
        "fast-parts"
    } else {
        args.config.as_str()
    };
    let mut opts = PartsOptions::new(load_config(name)?);
    args.set_run(&mut opts.run, "parts");
    if args.ship {
        // It ships as the default roll model.
        opts.run.assets_dir = export_dir(&args, "roll");
    }
    opts.batch = batch;
    opts.hop_bars = args.hop_bars.unwrap_or(2);
    if let Some(n) = args.epoch_steps {
        opts.epoch_steps = n;
    }
    if let Some(n) = args.val_windows {
        opts.val_examples = n;
    }
    opts.init = args.init.clone();
    opts.seed = args.seed;
    let state = train(&opts)?;
    print_trained(&state, &opts.run.run_dir, 5, "");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::PathBuf;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        train: TrainArgs,
    }

    fn export(args: &[&str], folder: &str) -> Option<PathBuf> {
        let cli = Cli::try_parse_from(std::iter::once("train").chain(args.iter().copied()))
            .expect("arguments parse");
        export_dir(&cli.train, folder)
    }

    #[test]
    fn training_exports_to_artifacts_unless_told_to_ship() {
        assert_eq!(export(&["roll"], "roll"), Some("artifacts/roll".into()));
        assert_eq!(export(&["vae"], "vae16"), Some("artifacts/vae16".into()));
        assert_eq!(
            export(&["band", "--ship"], "band"),
            Some("assets/band".into())
        );
        assert_eq!(
            export(&["latent", "--assets", "/tmp/x"], "latent"),
            Some("/tmp/x".into())
        );
        assert_eq!(export(&["roll", "--no-assets"], "roll"), None);
        // Contradictions are refused, not resolved silently.
        assert!(Cli::try_parse_from(["train", "roll", "--ship", "--no-assets"]).is_err());
        assert!(Cli::try_parse_from(["train", "roll", "--ship", "--assets", "a"]).is_err());
    }
}
