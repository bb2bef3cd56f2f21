//! `bandmate train band`: train the band player's recurrent multimodal VAE on Nottingham.

use anyhow::{Result, bail};
use bandmate::models::band::Config;
use bandmate::train::band::{AuxWeights, TrainOptions, train};

use crate::train_args::{TrainArgs, config_loader, print_trained};

config_loader!(Config, "band model", "tiny, small");

pub fn run(args: TrainArgs) -> Result<()> {
    if args.bench.is_some() {
        bail!(
            "--bench is for the roll and vae models; time the band model with `cargo xtask bench band`"
        );
    }
    let mut opts = TrainOptions::new(load_config(&args.config)?);
    opts.batch = args.batch_or(32)?;
    args.set_run(&mut opts.run, "band");
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
    opts.seed = args.seed;
    let report = train(&opts)?;
    print_trained(&report.state, &report.run_dir, 4, " nats/bar");
    Ok(())
}
