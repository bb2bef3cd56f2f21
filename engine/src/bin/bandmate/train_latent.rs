//! `bandmate train latent`: train the latent score model on MusicVAE latents of Nottingham
//! melodies (or time its step).

use anyhow::Result;
use bandmate::models::latent_score::Config;
use bandmate::train::latent::{LatentTrainOptions, time_latent_step, train_latent};

use crate::train_args::{TrainArgs, bench, config_loader, print_trained};

config_loader!(Config, "latent score", "tiny, small");

pub fn run(args: TrainArgs) -> Result<()> {
    let batch = args.batch_or(128)?;
    if let Some(list) = &args.bench {
        return bench(list, load_config, |cfg| {
            let step = time_latent_step(cfg, batch, 5)?;
            Ok(format!(
                ": d_model {} layers {}: train step {:.1} ms ({:.0} sequences/s) at batch {batch}",
                cfg.d_model,
                cfg.layers,
                step * 1e3,
                batch as f64 / step
            ))
        });
    }
    let mut opts = LatentTrainOptions::new(load_config(&args.config)?);
    args.set_run(&mut opts.run, "latent");
    opts.run.max_epochs = args.epochs.max(1) * 100;
    opts.run.log_every = args.log_every.max(50);
    opts.batch = batch;
    opts.max_shift = args.max_shift.min(5);
    if let Some(vae) = args.vae {
        opts.vae_dir = vae;
    }
    opts.seed = args.seed;
    let state = train_latent(&opts)?;
    print_trained(&state, &opts.run.run_dir, 4, "");
    Ok(())
}
