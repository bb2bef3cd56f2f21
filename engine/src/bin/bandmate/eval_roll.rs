//! `bandmate eval-roll`: the roll model on 4-bar windows of the POP909 test split (or the valid
//! split, to tune on), task by task, against the true hole, real music of other songs, a copy
//! and random notes from the data; see `bandmate::diffusion::eval` and `bandmate::evaluation`.

use crate::roll::DenoiseArgs;
use anyhow::{Result, bail};
use bandmate::data::{Split, default_cache_dir, default_data_root};
use bandmate::diffusion::eval::{RollEvalOptions, Task, evaluate_roll};
use bandmate::evaluation::report::{self, COPY, RANDOM, REAL};
use bandmate::evaluation::{Case, EvalReport, RowOutputs, TaskOutputs, listen};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalRollArgs {
    #[command(flatten)]
    pub windows: EvalWindowArgs,
    #[command(flatten)]
    pub denoise: DenoiseArgs,
    /// Tasks to run (comma-separated: infill, infill-melody, harmonize, harmonize-after,
    /// unconditional).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "infill,infill-melody,harmonize,harmonize-after,unconditional"
    )]
    pub tasks: Vec<Task>,
    /// Lock the model's notes to the key estimated from what it is given, as the plugin's key
    /// lock does.
    #[arg(long)]
    pub key_lock: bool,
    /// Fill the melody (task infill-melody) with the melody models (MusicVAE + latent
    /// diffusion, embedded weights) instead of the roll model.
    #[arg(long)]
    pub latent_melody: bool,
    /// Windows from this POP909 split: test to report, valid to tune options on.
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// Model name or folder (default: the embedded model).
    #[arg(long)]
    pub model: Option<String>,
    /// Dataset root (default: BANDMATE_DATA or ../shared/data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// How many windows an evaluation scores and how it draws and samples them (`eval-roll`,
/// `band eval`).
#[derive(Args, Debug)]
pub struct EvalWindowArgs {
    /// Windows per task (a task on whole 16-bar tunes takes at most the split's tunes).
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Sampling seeds of the model and of the random row: every window is sampled once per seed
    /// (a model that decodes deterministically runs once).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    /// Chooses the windows and the bootstrap resamples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// What every evaluation command writes: JSON, listening sheets, or a comparison of reports.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Write every row, metric, interval and per-window value as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write MIDI files and a PNG sheet of piano rolls of the first windows here.
    #[arg(long)]
    pub listen: Option<PathBuf>,
    /// Windows in the listening sheet.
    #[arg(long, default_value_t = 8)]
    pub listen_count: usize,
    /// Compare two JSON reports of this command instead of evaluating: per metric "A better",
    /// "B better" or "no difference" (paired bootstrap over the windows both share).
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub compare: Vec<PathBuf>,
    /// The row `--compare` compares.
    #[arg(long, default_value = "model")]
    pub row: String,
}

impl ReportArgs {
    /// `--compare A B` when asked (the command then does nothing else).
    pub fn compare(&self) -> Option<Result<()>> {
        (!self.compare.is_empty()).then(|| compare(&self.compare, &self.row))
    }

    /// Write `--json` and the `--listen` sheets of `outputs` (task, cases, rows); `who`
    /// prefixes the messages.
    pub fn write(
        &self,
        who: &str,
        report: &EvalReport,
        outputs: &[(&str, &[Case], &[RowOutputs])],
    ) -> Result<()> {
        if let Some(path) = &self.json {
            report.write(path)?;
            eprintln!("{who}: wrote {}", path.display());
        }
        if let Some(dir) = &self.listen {
            for (task, cases, rows) in outputs {
                let files = listen::write(dir, task, cases, rows, self.listen_count)?;
                eprintln!("{who}: {task}: {} files in {}", files.len(), dir.display());
            }
        }
        Ok(())
    }

    /// [`ReportArgs::write`] of an evaluation's outputs, each task named by `name`.
    pub fn write_tasks<T: Copy>(
        &self,
        who: &str,
        report: &EvalReport,
        outputs: &[TaskOutputs<T>],
        name: fn(T) -> &'static str,
    ) -> Result<()> {
        let outputs: Vec<_> = outputs
            .iter()
            .map(|t| (name(t.task), t.cases.as_slice(), t.rows.as_slice()))
            .collect();
        self.write(who, report, &outputs)
    }
}

#[derive(Args, Debug)]
pub struct EvalReportArgs {
    /// The JSON report.
    pub report: PathBuf,
    /// Every metric of every part, instead of the summary.
    #[arg(long)]
    pub full: bool,
}

/// `bandmate eval-report FILE [--full]`.
pub fn run_report(args: EvalReportArgs) -> Result<()> {
    let report = EvalReport::read(&args.report)?;
    if args.full {
        println!("Made by `{}` ({} split).\n", report.command, report.split);
        print_report(&report);
    } else {
        print!("{}", report.summary_markdown());
    }
    Ok(())
}

/// `bandmate … --compare A B`: the table of [`report::compare`].
pub fn compare(paths: &[PathBuf], row: &str) -> Result<()> {
    let [a, b] = paths else {
        bail!("--compare takes two reports");
    };
    let (a, b) = (EvalReport::read(a)?, EvalReport::read(b)?);
    print!("{}", report::compare(&a, &b, row)?);
    Ok(())
}

/// Print the report's tables and, per task, the model's verdict counts.
pub fn print_report(report: &EvalReport) {
    println!("{}", report.markdown());
    for task in &report.tasks {
        for other in [REAL, COPY, RANDOM] {
            let counts = task.verdict_counts(other);
            if counts.is_empty() {
                continue;
            }
            let text: Vec<String> = counts.iter().map(|(v, n)| format!("{v} {n}")).collect();
            println!("{}: the model vs {other}: {}", task.task, text.join(", "));
        }
    }
}

pub fn run(args: EvalRollArgs) -> Result<()> {
    if let Some(done) = args.report.compare() {
        return done;
    }
    let model = crate::roll::load_model(args.model.as_deref())?;
    let opts = RollEvalOptions {
        count: args.windows.count,
        seed: args.windows.seed,
        seeds: args.windows.seeds,
        sampling: args.denoise.options(),
        tasks: args.tasks,
        split: args.split,
        key_lock: args.key_lock,
        latent_melody: args.latent_melody,
    };
    let data = args.data.unwrap_or_else(default_data_root);
    let command = format!(
        "bandmate {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let evaluation = evaluate_roll(
        &model,
        &data,
        &default_cache_dir(),
        &opts,
        &command,
        |line| eprintln!("eval-roll: {line}"),
    )?;
    print_report(&evaluation.report);
    args.report.write_tasks(
        "eval-roll",
        &evaluation.report,
        &evaluation.outputs,
        Task::name,
    )
}
