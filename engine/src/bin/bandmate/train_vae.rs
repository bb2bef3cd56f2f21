//! `bandmate train vae`: train the melody MusicVAE on Nottingham, 2-bar (`--config small`) or
//! 16-bar hierarchical (`--config hier`), or time its training step.

use anyhow::Result;
use bandmate::train::vae::{VaeTrainOptions, time_vae_step, train_vae};
use bandmate::vae::VaeShape;

use crate::train_args::{TrainArgs, bench, config_loader, print_trained};

config_loader!(VaeShape, "MusicVAE", "tiny, small, hier-tiny, hier");

pub fn run(args: TrainArgs) -> Result<()> {
    let shape = load_config(&args.config)?;
    let hier = shape.is_hierarchical();
    let batch = args.batch_or(if hier { 64 } else { 128 })?;
    if let Some(list) = &args.bench {
        return bench(list, load_config, |cfg| {
            let step = time_vae_step(cfg, batch, 5)?;
            Ok(format!(
                " ({}, z {}): train step {:.0} ms ({:.0} sequences/s) at batch {batch}",
                cfg.describe(),
                cfg.z_dim(),
                step * 1e3,
                batch as f64 / step
            ))
        });
    }
    let mut opts = VaeTrainOptions::new(shape);
    args.set_run(&mut opts.run, if hier { "vae16" } else { "vae" });
    opts.batch = batch;
    opts.hop_bars = args.hop_bars.unwrap_or(if hier { 2 } else { 1 });
    opts.epoch_steps = args.epoch_steps;
    opts.val_windows = args.val_windows.unwrap_or(if hier { 512 } else { 2048 });
    opts.beta = args.beta;
    opts.free_bits = args.free_bits.unwrap_or(if hier { 64.0 } else { 12.0 });
    opts.kl_anneal_steps = args.kl_anneal_steps;
    opts.max_shift = args.max_shift;
    opts.seed = args.seed;
    let report = train_vae(&opts)?;
    print_trained(&report.state, &report.run_dir, 4, "");
    Ok(())
}
