//! `bandmate latent …`: 16-bar melodies from the score-based latent diffusion model over
//! MusicVAE latents: generate, fill bars, continue, eval.

use anyhow::{Context, Result, bail};
use bandmate::latent::eval::{LatentEvalOptions, evaluate_latent};
use bandmate::latent::{
    LatentMelody, LatentModel, SampleOptions, Sampler, apply_windows, default_weights_dir,
    song_windows,
};
use bandmate::midi;
use bandmate::vae::{MelodyVae, windows_to_clip};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

use crate::files::read_clip;

#[derive(Args, Debug)]
pub struct LatentArgs {
    #[command(subcommand)]
    pub command: LatentCommand,
}

#[derive(Subcommand, Debug)]
pub enum LatentCommand {
    /// New melodies of up to 16 bars, one after another in one MIDI file.
    Generate(GenerateArgs),
    /// Regenerate bars of a melody (whole 2-bar windows), keeping the others exactly.
    Fill(FillArgs),
    /// Keep the first bars of a melody and write the rest, up to 16 bars.
    Continue(ContinueArgs),
    /// The evaluation table: the score model's samplers, the VAE prior and the data against the
    /// Nottingham test split, and bar infill.
    Eval(EvalArgs),
}

/// Model folders and sampling options shared by the subcommands.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Score model folder [default: the shipped assets/latent].
    #[arg(long)]
    pub latent: Option<PathBuf>,
    /// MusicVAE folder [default: the shipped assets/vae].
    #[arg(long)]
    pub vae: Option<PathBuf>,
    /// em (Euler–Maruyama), pc (predictor–corrector), ode (probability flow, Heun), rk45
    /// (probability flow, adaptive).
    #[arg(long, default_value = "ode")]
    pub sampler: String,
    /// Steps [default: em 200, pc 100, ode 12; rk45 adapts] (`eval`: of every sampler).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Scale of the starting noise (1 = the model's prior; lower = safer melodies).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The two models a latent command needs.
pub struct Loaded {
    vae: MelodyVae,
    model: LatentModel,
}

impl Loaded {
    pub fn melody(&self) -> LatentMelody<'_> {
        LatentMelody {
            vae: &self.vae,
            model: &self.model,
        }
    }
}

impl ModelArgs {
    pub fn load(&self) -> Result<Loaded> {
        let vae = MelodyVae::load(
            &self
                .vae
                .clone()
                .unwrap_or_else(bandmate::vae::default_weights_dir),
        )?;
        let model = LatentModel::load(&self.latent.clone().unwrap_or_else(default_weights_dir))?;
        Ok(Loaded { vae, model })
    }

    /// What fill and continue start from: the options, the input clip, its melody windows and
    /// the models.
    pub fn start(
        &self,
        input: &Path,
    ) -> Result<(
        SampleOptions,
        bandmate::music::Clip,
        bandmate::latent::SongWindows,
        Loaded,
    )> {
        Ok((
            self.options()?,
            read_clip(input)?,
            windows_of(input)?,
            self.load()?,
        ))
    }

    pub fn options(&self) -> Result<SampleOptions> {
        let sampler = Sampler::parse(&self.sampler).with_context(|| {
            format!(
                "--sampler {}: expected one of {}",
                self.sampler,
                Sampler::NAMES.join(", ")
            )
        })?;
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            bail!("--temperature must be positive");
        }
        Ok(SampleOptions {
            sampler,
            steps: self.steps.unwrap_or(0),
            seed: self.seed,
            temperature: self.temperature,
            ..SampleOptions::default()
        })
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Bars per melody: an even number from 2 to 16.
    #[arg(long, default_value_t = 16)]
    pub bars: u32,
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    #[arg(short, long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug)]
pub struct FillArgs {
    pub input: PathBuf,
    /// Bars to regenerate, 1-based and inclusive (`5-8`); widened to whole 2-bar windows.
    #[arg(long)]
    pub bars: String,
    #[arg(short, long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug)]
pub struct ContinueArgs {
    pub input: PathBuf,
    /// Bars of the input kept as the prompt (rounded down to whole 2-bar windows).
    #[arg(long, default_value_t = 4)]
    pub prompt_bars: u32,
    /// Bars of the result, up to 16.
    #[arg(long, default_value_t = 16)]
    pub bars: u32,
    #[arg(short, long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Melodies per task.
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Sampling seeds: every melody is sampled once per seed.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    /// Samplers to evaluate (comma-separated); the first is the model's row and does the infill.
    #[arg(long, default_value = "ode,em,pc,rk45")]
    pub samplers: String,
    #[command(flatten)]
    pub report: crate::eval_roll::ReportArgs,
    /// Also append the table to this model card (e.g. assets/latent/CARD.md).
    #[arg(long)]
    pub card: Option<PathBuf>,
    /// Nottingham split to compare with and infill: test to report, valid to choose on.
    #[arg(long, default_value = "test")]
    pub split: bandmate::data::Split,
    #[command(flatten)]
    pub model: ModelArgs,
}

fn windows_of(path: &Path) -> Result<bandmate::latent::SongWindows> {
    let clip = read_clip(path)?;
    let song = song_windows(&clip).with_context(|| format!("{}", path.display()))?;
    if song.guessed_track {
        eprintln!(
            "bandmate: {}: no track has the melody role; using track {} (the highest)",
            path.display(),
            song.track + 1
        );
    }
    if song.had_chords {
        eprintln!(
            "bandmate: {}: the melody has chords; the latent model reads its top note",
            path.display()
        );
    }
    Ok(song)
}

fn write(clip: &bandmate::music::Clip, out: &Path) -> Result<()> {
    midi::write_file(clip, out).with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {} ({} bars)", out.display(), clip.bars);
    Ok(())
}

/// `a-b` (1-based, inclusive) as 0-based window flags over `windows` windows.
fn bar_windows(text: &str, windows: usize) -> Result<Vec<bool>> {
    let (a, b) = text
        .split_once('-')
        .map_or((text, text), |(a, b)| (a.trim(), b.trim()));
    let parse = |s: &str| {
        s.parse::<usize>()
            .ok()
            .filter(|&v| v >= 1)
            .with_context(|| format!("--bars {text}: expected bars like 5-8 (1-based)"))
    };
    let (a, b) = (parse(a)?, parse(b)?);
    if b < a {
        bail!("--bars {text}: the range is empty");
    }
    if (a - 1) / 2 >= windows {
        bail!(
            "--bars {text}: the melody has only {} bars (in 2-bar windows)",
            2 * windows
        );
    }
    Ok((0..windows)
        .map(|w| w >= (a - 1) / 2 && w <= (b - 1) / 2)
        .collect())
}

pub fn run(args: LatentArgs) -> Result<()> {
    match args.command {
        LatentCommand::Generate(a) => {
            if a.bars < 2 || a.bars > 16 || a.bars % 2 != 0 {
                bail!("--bars {}: an even number from 2 to 16", a.bars);
            }
            if a.count == 0 {
                bail!("--count must be at least 1");
            }
            let opts = a.model.options()?;
            let models = a.model.load()?;
            let lm = models.melody();
            let songs = lm.generate(a.count, &opts)?;
            let windows: Vec<Vec<u8>> = songs
                .into_iter()
                .flat_map(|s| s.into_iter().take(a.bars as usize / 2))
                .collect();
            write(&windows_to_clip(&windows), &a.out)
        }
        LatentCommand::Fill(a) => {
            let (opts, clip, song, models) = a.model.start(&a.input)?;
            let lm = models.melody();
            let positions = lm.model.config().positions;
            if song.windows.len() > positions {
                eprintln!(
                    "bandmate: {}: the latent model sees 16 bars; bars after 16 are kept as they are",
                    a.input.display()
                );
            }
            let windows: Vec<Vec<u8>> = song.windows.iter().take(positions).cloned().collect();
            let regenerate = bar_windows(&a.bars, windows.len())?;
            let filled = lm.fill(&windows, &regenerate, &opts)?;
            write(
                &apply_windows(&clip, song.track, &filled, &regenerate),
                &a.out,
            )
        }
        LatentCommand::Continue(a) => {
            let (opts, clip, song, models) = a.model.start(&a.input)?;
            let lm = models.melody();
            let prompt_windows = (a.prompt_bars as usize / 2).min(song.windows.len());
            if prompt_windows == 0 {
                bail!(
                    "--prompt-bars {}: at least 2 bars of the input are needed",
                    a.prompt_bars
                );
            }
            let total = a.bars as usize / 2;
            let out = lm.continue_melody(&song.windows[..prompt_windows], total, &opts)?;
            let regenerate: Vec<bool> = (0..total).map(|w| w >= prompt_windows).collect();
            let mut result = apply_windows(&clip, song.track, &out, &regenerate);
            // The continuation replaces whatever the input had after the prompt.
            let end = (total * 32) as u32;
            result.notes.retain(|n| n.start < end);
            result.bars = end.div_ceil(result.steps_per_bar().max(1));
            write(&result, &a.out)
        }
        LatentCommand::Eval(a) => {
            if let Some(done) = a.report.compare() {
                return done;
            }
            let samplers = a
                .samplers
                .split(',')
                .map(|s| {
                    Sampler::parse(s.trim()).with_context(|| format!("--samplers: unknown {s}"))
                })
                .collect::<Result<Vec<_>>>()?;
            let models = a.model.load()?;
            if a.card.is_some() && a.split != bandmate::data::Split::Test {
                bail!(
                    "--card reports the test split; leave it out with --split {}",
                    a.split
                );
            }
            let lm = models.melody();
            let command = format!(
                "bandmate {}",
                std::env::args().skip(1).collect::<Vec<_>>().join(" ")
            );
            let evaluation = evaluate_latent(
                &lm,
                &LatentEvalOptions {
                    count: a.count,
                    seed: a.model.seed,
                    seeds: a.seeds.clone(),
                    samplers,
                    steps: a.model.steps.unwrap_or(0),
                    // (`options` checks it.)
                    temperature: a.model.options()?.temperature,
                    split: a.split,
                    data_root: bandmate::data::default_data_root(),
                    cache_dir: bandmate::data::default_cache_dir(),
                },
                &command,
                |line| eprintln!("latent eval: {line}"),
            )?;
            crate::eval_roll::print_report(&evaluation.report);
            let text = evaluation.report.markdown();
            let outputs: Vec<_> = evaluation
                .outputs
                .iter()
                .map(|(task, cases, rows)| (task.as_str(), cases.as_slice(), rows.as_slice()))
                .collect();
            a.report
                .write("latent eval", &evaluation.report, &outputs)?;
            if let Some(card) = a.card {
                let section = format!(
                    "## Evaluation\n\n{} Nottingham test melodies of 16 bars × {} seeds; only the generated bars are scored (true hole = what the song has there). `{command}`.\n\n{text}",
                    a.count,
                    a.seeds.len()
                );
                crate::files::replace_card_section(&card, "\n## Evaluation", &section)?;
                println!("updated {}", card.display());
            }
            Ok(())
        }
    }
}
