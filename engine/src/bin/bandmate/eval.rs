//! `bandmate eval --reference DIR --generated DIR [--json] [--plot FILE.png]`

use crate::args::Timings;
use crate::files::{midi_files, read_clips};
use anyhow::Result;
use bandmate::metrics::{self, EvalOptions};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct EvalArgs {
    /// Folder of reference MIDI files (searched recursively).
    #[arg(long)]
    pub reference: PathBuf,
    /// Folder of generated MIDI files (searched recursively).
    #[arg(long)]
    pub generated: PathBuf,
    /// Only the reference files listed under this key of the nearest splits.json (train, valid, test).
    #[arg(long)]
    pub reference_split: Option<String>,
    /// Only the generated files listed under this key of the nearest splits.json.
    #[arg(long)]
    pub generated_split: Option<String>,
    /// Most clips per set used for the pairwise distances (a seeded sample).
    #[arg(long, default_value_t = 200)]
    pub max_clips: usize,
    /// Seed of that sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also draw the histograms of both sets side by side into this PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let mut timings = Timings::default();
    let mut read_set = |name, dir: &Path, split: &Option<String>| {
        timings.time(name, || read_clips(&midi_files(dir, split.as_deref())?))
    };
    let reference = read_set("read_reference", &args.reference, &args.reference_split)?;
    let generated = read_set("read_generated", &args.generated, &args.generated_split)?;
    let opts = EvalOptions {
        max_clips: args.max_clips,
        seed: args.seed,
    };
    let report = timings.time("metrics", || {
        metrics::evaluate(&reference, &generated, &opts)
    });
    if let Some(plot) = &args.plot {
        timings.time("plot", || {
            metrics::plot_histograms(&reference, &generated, plot)
        })?;
    }
    if args.json {
        let mut json = report.to_json();
        json["reference"] = serde_json::json!({"folder": args.reference.display().to_string(), "split": args.reference_split, "clips": reference.len()});
        json["generated"] = serde_json::json!({"folder": args.generated.display().to_string(), "split": args.generated_split, "clips": generated.len()});
        json["timings_ms"] = timings.to_json();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "reference: {} clips from {}",
            reference.len(),
            args.reference.display()
        );
        println!(
            "generated: {} clips from {}",
            generated.len(),
            args.generated.display()
        );
        println!("{}", report.to_table());
        if let Some(plot) = &args.plot {
            println!("histograms: {}", plot.display());
        }
    }
    Ok(())
}
