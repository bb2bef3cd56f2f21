//! `bandmate band`: the band player's recurrent multimodal VAE: continue, fill, redo, and its
//! evaluation on Nottingham through the evaluation library (`bandmate::band::eval`).

use anyhow::{Context, Result, bail};
use bandmate::band::eval::{BandEvalData, BandEvalOptions, Task, choose_density, evaluate_band};
use bandmate::band::player::{BandModel, PlayOptions, continue_clip, fill_track, redo};
use bandmate::data::{Dataset, Split, default_cache_dir, default_data_root, load_cached};
use bandmate::evaluation::report::{COPY, RANDOM, REAL};
use bandmate::midi;
use bandmate::music::{Clip, Key};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BandArgs {
    /// Model folder (config.json, model.safetensors) [default: assets/band].
    #[arg(long, global = true)]
    pub model: Option<PathBuf>,
    #[command(subcommand)]
    pub task: BandTask,
}

#[derive(Args, Debug, Clone)]
pub struct PlayArgs {
    /// Odds multiplier of the onsets (1: as trained, more: more notes; the default was chosen
    /// on the valid split).
    #[arg(long, default_value_t = bandmate::band::player::DEFAULT_DENSITY)]
    pub density: f32,
    /// Keep the generated notes in this key (e.g. `C`, `A minor`).
    #[arg(long)]
    pub key: Option<String>,
}

impl PlayArgs {
    fn options(&self) -> Result<PlayOptions> {
        if !(self.density.is_finite() && self.density > 0.0) {
            bail!("--density {} must be a positive number", self.density);
        }
        Ok(PlayOptions {
            density: self.density,
            key: self
                .key
                .as_deref()
                .map(Key::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--key: {e}"))?,
            ..PlayOptions::default()
        })
    }
}

/// The clip a playing task reads, where it writes the result, and how it plays.
#[derive(Args, Debug)]
pub struct ClipArgs {
    input: PathBuf,
    #[arg(long, short)]
    out: PathBuf,
    #[command(flatten)]
    play: PlayArgs,
}

impl ClipArgs {
    /// Read the input clip, `play` on it with the options, and write the result.
    fn play(&self, play: impl FnOnce(&Clip, &PlayOptions) -> Result<Clip>) -> Result<()> {
        let clip = crate::files::read_clip(&self.input)?;
        write(&play(&clip, &self.play.options()?)?, &self.out)
    }
}

#[derive(Subcommand, Debug)]
pub enum BandTask {
    /// Keep the clip and write `--bars` more bars of every track after it.
    Continue {
        #[arg(long, default_value_t = 8)]
        bars: u32,
        #[command(flatten)]
        clip: ClipArgs,
    },
    /// Regenerate one track (by the model's track number: 0 melody, 1 accompaniment).
    Fill {
        #[arg(long)]
        track: usize,
        #[command(flatten)]
        clip: ClipArgs,
    },
    /// Regenerate every track in turn.
    Redo {
        #[command(flatten)]
        clip: ClipArgs,
    },
    /// The evaluation on Nottingham: the decoding density chosen on the valid split (the live
    /// player's next-bar F1), then on the test split the next bar (live player), 16-bar
    /// continuations from 4-bar prompts and the chords filled under the melody, against the
    /// true hole, real music of other songs, a copy and random notes from the data (see
    /// `bandmate::band::eval`); with `--card`, the tables are written into the model folder's
    /// CARD.md.
    Eval(Box<EvalArgs>),
}

fn load_model(dir: Option<&Path>) -> Result<BandModel> {
    match dir {
        Some(d) => BandModel::load_dir(d),
        None => BandModel::shipped(),
    }
}

fn write(clip: &Clip, out: &Path) -> Result<()> {
    midi::write_file(clip, out).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "wrote {} ({} bars, {} notes)",
        out.display(),
        clip.bars,
        clip.notes.len()
    );
    Ok(())
}

pub fn run(args: BandArgs) -> Result<()> {
    if let BandTask::Eval(e) = &args.task
        && let Some(done) = e.report.compare()
    {
        return done;
    }
    let model = load_model(args.model.as_deref())?;
    match args.task {
        BandTask::Continue { bars, clip } => {
            clip.play(|c, opts| continue_clip(&model, c, bars, opts))
        }
        BandTask::Fill { track, clip } => clip.play(|c, opts| fill_track(&model, c, track, opts)),
        BandTask::Redo { clip } => clip.play(|c, opts| redo(&model, c, opts)),
        BandTask::Eval(eval_args) => {
            let card_dir = eval_args
                .card
                .then(|| args.model.clone().unwrap_or_else(BandModel::shipped_dir));
            eval(&model, *eval_args, card_dir)
        }
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Dataset root (default: BANDMATE_DATA or ../shared/data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Write the evaluation into the model folder's CARD.md (from "## Evaluation" on).
    #[arg(long)]
    pub card: bool,
    /// Densities tried on the valid split (the best next-bar F1 of the live player is used on
    /// the evaluated split).
    #[arg(long, value_delimiter = ',', default_value = "1,1.5,2,3,4")]
    pub densities: Vec<f32>,
    #[command(flatten)]
    pub windows: crate::eval_roll::EvalWindowArgs,
    /// Tasks to run (comma-separated: next-bar, continue, fill-chords).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "next-bar,continue,fill-chords"
    )]
    pub tasks: Vec<Task>,
    /// Windows from this Nottingham split: test to report, valid to tune options on (the real
    /// row then reads the other one).
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// A second model folder (e.g. an ablation): its rows, "model LABEL", are added.
    #[arg(long)]
    pub compare_model: Option<PathBuf>,
    /// How the second model's rows are named.
    #[arg(long, default_value = "compared")]
    pub compare_label: String,
    #[command(flatten)]
    pub report: crate::eval_roll::ReportArgs,
    #[command(flatten)]
    pub play: PlayArgs,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn eval(model: &BandModel, args: EvalArgs, card_dir: Option<PathBuf>) -> Result<()> {
    if args.densities.is_empty() || args.densities.iter().any(|d| !(d.is_finite() && *d > 0.0)) {
        bail!("--densities: positive numbers, e.g. 1,1.5,2,3");
    }
    if args.split == Split::Train {
        bail!("evaluate on the valid or the test split (the model trained on the train split)");
    }
    let started = Instant::now();
    let root = args.data.clone().unwrap_or_else(default_data_root);
    let cache = default_cache_dir();
    let train = load_cached(Dataset::Nottingham, Split::Train, &root, &cache)?;
    let valid = load_cached(Dataset::Nottingham, Split::Valid, &root, &cache)?;
    let test = load_cached(Dataset::Nottingham, Split::Test, &root, &cache)?;
    let (songs, others) = if args.split == Split::Test {
        (&test, &valid)
    } else {
        (&valid, &test)
    };
    let compare = args
        .compare_model
        .as_ref()
        .map(|d| BandModel::load_dir(d))
        .transpose()?;

    // The decoding density is chosen on the valid split, for the live use (melody heard).
    let base = args.play.options()?;
    let (density, density_rows) = choose_density(model, &valid, &args.densities, &base)?;
    let density_md = [
        "| density | bars | precision | recall | F1 | chord-tone ratio |".to_string(),
        "|---|---|---|---|---|---|".to_string(),
    ]
    .into_iter()
    .chain(
        density_rows
            .iter()
            .map(|(d, s)| crate::band_table::row(&format!("{d}"), s)),
    )
    .collect::<Vec<_>>()
    .join("\n");
    println!("density on the valid split (live use):\n{density_md}\nchosen: {density}\n");

    let opts = BandEvalOptions {
        count: args.windows.count,
        seed: args.windows.seed,
        seeds: args.windows.seeds.clone(),
        play: PlayOptions {
            density,
            ..base.clone()
        },
        tasks: args.tasks.clone(),
    };
    let command = format!(
        "bandmate {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let data = BandEvalData {
        songs,
        others,
        train: &train,
        split: args.split.to_string(),
    };
    let evaluation = evaluate_band(
        model,
        compare.as_ref().map(|m| (args.compare_label.as_str(), m)),
        &data,
        &opts,
        &command,
        |line| eprintln!("band eval: {line}"),
    )?;
    crate::eval_roll::print_report(&evaluation.report);
    let mut times = evaluation.answer_seconds.clone();
    times.sort_by(f64::total_cmp);
    let timing = if times.is_empty() {
        String::new()
    } else {
        format!(
            "One next-bar answer of the live player (`BandPlayer::next_bar`, notes in → notes \
             out, one thread) over the {} bars pushed in the next-bar task: p50 {:.3} ms, p99 \
             {:.3} ms, max {:.3} ms.",
            times.len(),
            percentile(&times, 0.5) * 1e3,
            percentile(&times, 0.99) * 1e3,
            times.last().copied().unwrap_or(f64::NAN) * 1e3
        )
    };
    println!("\n{timing}");
    eprintln!("band eval: {:.1} s in all", started.elapsed().as_secs_f64());
    args.report.write_tasks(
        "band eval",
        &evaluation.report,
        &evaluation.outputs,
        Task::name,
    )?;

    if let Some(dir) = card_dir {
        let path = dir.join("CARD.md");
        let compare_note = args.compare_model.as_ref().map_or(String::new(), |d| {
            format!(
                "\"model {}\" is the model in `{}` (not shipped), for comparison.\n\n",
                args.compare_label,
                d.display()
            )
        });
        let verdicts: String = evaluation
            .report
            .tasks
            .iter()
            .flat_map(|task| {
                [REAL, COPY, RANDOM].into_iter().filter_map(move |other| {
                    let counts = task.verdict_counts(other);
                    (!counts.is_empty()).then(|| {
                        let text: Vec<String> =
                            counts.iter().map(|(v, n)| format!("{v} {n}")).collect();
                        format!(
                            "- {}: the model vs {other}: {}\n",
                            task.task,
                            text.join(", ")
                        )
                    })
                })
            })
            .collect();
        let section = format!(
            "## Evaluation\n\n\
             Produced by `{command}` on Nottingham.\n\n\
             ### Decoding density (valid split)\n\n\
             Onsets whose odds × density pass 1 are played (at most 24 per bar{key}). The density\n\
             is chosen on the valid split by the live player's next-bar F1 (melody heard, its own\n\
             accompaniment fed back; a note counts as a hit with the same step and pitch); the\n\
             {split} split below only reports.\n\n\
             {density_md}\n\nChosen: {density}.\n\n\
             ### Next bar, continuation and chord fill ({split} split)\n\n\
             On the evaluation library (`engine/src/evaluation`, `engine/src/band/eval.rs`): only\n\
             what a row wrote in the region is scored (part-fit metrics per role, Yang–Lerch and\n\
             Mittal et al. set metrics on the generated parts), with bootstrap 95% intervals over\n\
             windows and paired verdicts of the model against each other row. **Next bar**: 8-bar\n\
             windows; the live player starts at the window, hears bars 1–7 and answers the chords\n\
             of bar 8 (\"model\" hears melody and chords, \"{live}\" the melody and its own\n\
             answers); copy: the chords of bar 7. **Continue**: the first 16 bars of a tune,\n\
             bars 1–4 given, bars 5–16 of both tracks written; copy: the prompt looped.\n\
             **Fill the chords**: the chords of the first 16 bars under the given melody; copy: the\n\
             melody an octave lower on the chords track. Real (other songs): the same region of\n\
             the other held-out split; random (data): notes drawn from Nottingham train\n\
             statistics. The model decodes deterministically (one run); the random row runs every\n\
             seed.\n\n\
             {compare_note}{tables}\n{verdicts}\n{timing}\n",
            key = opts
                .play
                .key
                .map_or(String::new(), |k| format!(", key lock {k:?}")),
            split = args.split,
            live = bandmate::band::eval::LIVE,
            tables = evaluation.report.markdown(),
        );
        crate::files::replace_card_section(&path, "\n## Evaluation", &section)?;
        println!("wrote the tables into {}", path.display());
    }
    Ok(())
}
