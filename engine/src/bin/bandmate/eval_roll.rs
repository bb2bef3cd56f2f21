//! `bandmate eval-roll`: the roll model against the random and copy baselines on 4-bar windows
//! of the POP909 test split (or the valid split, to tune on) (infill of bars 3–4, harmonization, unconditional samples); see
//! `bandmate::diffusion::eval`.

use anyhow::{Context, Result};
use bandmate::data::{Split, default_cache_dir, default_data_root};
use bandmate::diffusion::eval::{
    Method, RollEvalOptions, Task, evaluate_roll, markdown_table, wins, wins_of,
};
use bandmate::diffusion::{RollOptions, SamplerKind};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalRollArgs {
    /// Windows per task.
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Network evaluations per sample.
    #[arg(long, default_value_t = 25)]
    pub steps: usize,
    #[arg(long, value_enum, default_value = "algorithm1")]
    pub sampler: SamplerKind,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Multiplies the predicted odds of every cell being on (1 = as trained; >1 denser).
    #[arg(long, default_value_t = 1.0)]
    pub density: f32,
    /// Classifier-free guidance weight for every task (default: the model's per-task
    /// calibration; 0 = one pass without guidance).
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Echo strength for the infills (default: the model's calibration; 0 = from noise).
    #[arg(long)]
    pub echo: Option<f32>,
    /// Tasks to run (comma-separated: infill, harmonize, harmonize-after, unconditional).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "infill,harmonize,harmonize-after,unconditional"
    )]
    pub tasks: Vec<Task>,
    /// Lock the model's notes to the key estimated from what it is given (bars 1–2 / the
    /// melody), as the plugin's key lock does.
    #[arg(long)]
    pub key_lock: bool,
    /// Windows from this POP909 split: test to report, valid to tune options on.
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// Model name or folder (default: the embedded model).
    #[arg(long)]
    pub model: Option<String>,
    /// Dataset root (default: BANDMATE_DATA or ../shared/data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Also write every number as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: EvalRollArgs) -> Result<()> {
    let model = crate::roll::load_model(args.model.as_deref())?;
    let opts = RollEvalOptions {
        count: args.count,
        seed: args.seed,
        sampling: RollOptions {
            steps: args.steps,
            sampler: args.sampler,
            density: args.density,
            guidance: args.guidance,
            echo: args.echo,
            ..RollOptions::default()
        },
        tasks: args.tasks,
        split: args.split,
        key_lock: args.key_lock,
    };
    let data = args.data.unwrap_or_else(default_data_root);
    let rows = evaluate_roll(&model, &data, &default_cache_dir(), &opts, |row| {
        eprintln!(
            "eval-roll: {} / {}: mean OA {:.3} ({:.1} s)",
            row.task.name(),
            row.method.name(),
            row.region.mean_overlap_area().unwrap_or(f64::NAN),
            row.seconds
        );
    })?;
    println!("{}", markdown_table(&rows));
    for (task, total, vs_random, vs_copy) in wins(&rows) {
        println!(
            "{}: the model beats random on {vs_random}/{total} scores and copy on {vs_copy}/{total}",
            task.name()
        );
    }
    for (task, total, vs_random, vs_copy) in wins_of(&rows, Method::Real) {
        println!(
            "{}: real music of other songs beats random on {vs_random}/{total} scores and copy on {vs_copy}/{total}",
            task.name()
        );
    }
    if let Some(path) = args.json {
        let json: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "task": r.task.name(),
                    "method": r.method.name(),
                    "scores": r.scores().into_iter().map(|(n, v)| (n.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                    "diatonicity": r.diatonicity,
                    "reference_diatonicity": r.reference_diatonicity,
                    "seconds": r.seconds,
                    "region": r.region.to_json(),
                })
            })
            .collect();
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
