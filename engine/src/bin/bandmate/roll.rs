//! `bandmate fill | vary | continue | harmonize | generate`: the piano-roll diffusion model.

use crate::args::{OutputArgs, RegionArgs, Timings};
use anyhow::{Context, Result, bail};
use bandmate::diffusion::{self, RollModel, RollOptions, SamplerKind};
use bandmate::midi;
use bandmate::music::{Clip, Key, parse_pitch_range};
use clap::Args;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// The denoising options that `eval-roll` shares with the roll subcommands.
#[derive(Args, Debug, Clone)]
pub struct DenoiseArgs {
    /// Network evaluations, 5 to 100 (fewer is faster, more is cleaner). fill, continue and
    /// vary share them among the tracks they rewrite (at least 4 each); harmonize and generate
    /// give each part all of them.
    #[arg(long, default_value_t = bandmate::settings::DEFAULT_STEPS)]
    pub steps: usize,
    /// Reverse process: `algorithm1` (the seed's, shared x_T) or `naive`.
    #[arg(long, default_value = "algorithm1")]
    pub sampler: SamplerKind,
    /// Note density: multiplies the odds of every cell being on (0.5 sparser, 2 denser; 1 = as
    /// trained).
    #[arg(long, default_value_t = 1.0)]
    pub density: f32,
    /// How hard the result leans on the given notes (classifier-free guidance weight; 0 = off,
    /// twice the work otherwise). Default: the model's calibration per task.
    #[arg(long)]
    pub guidance: Option<f32>,
    /// fill, continue and the infills of `eval-roll`: start from the bars before the region,
    /// noised to this strength (0 = from noise, 1 = nearly all noise). Default: the model's
    /// calibration.
    #[arg(long)]
    pub echo: Option<f32>,
}

impl DenoiseArgs {
    /// These options; the rest (seed, key lock, pitch range, temperature) at their defaults.
    pub fn options(&self) -> RollOptions {
        RollOptions {
            steps: self.steps,
            sampler: self.sampler,
            density: self.density,
            guidance: self.guidance,
            echo: self.echo,
            ..RollOptions::default()
        }
    }
}

/// Sampling and steering options of every roll subcommand.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    #[command(flatten)]
    pub denoise: DenoiseArgs,
    /// Key lock: generated notes stay in this scale, e.g. `C major`, `A minor`, `F# dorian`.
    #[arg(long, value_parser = Key::parse)]
    pub key: Option<Key>,
    /// Generated notes stay in this pitch range: `C2-C5` or `36-72`.
    #[arg(long, value_parser = parse_pitch_range)]
    pub range: Option<RangeInclusive<u8>>,
    /// Sampling temperature: below 1 tamer (the model's likeliest notes), above 1 wilder.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
}

impl SamplingArgs {
    fn options(&self, seed: u64) -> RollOptions {
        RollOptions {
            seed,
            key: self.key,
            pitch_range: self.range.clone(),
            temperature: self.temperature,
            ..self.denoise.options()
        }
    }
}

/// What every subcommand on an input clip takes: the clip, how to sample, where to write.
#[derive(Args, Debug)]
pub struct EditArgs {
    /// Input MIDI file.
    pub input: PathBuf,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct FillArgs {
    #[command(flatten)]
    pub region: RegionArgs,
    #[command(flatten)]
    pub edit: EditArgs,
}

#[derive(Args, Debug)]
pub struct VaryArgs {
    /// How far from the original: 0.1 keeps most of it, 1 is a fresh fill.
    #[arg(long, default_value_t = 0.5)]
    pub strength: f32,
    #[command(flatten)]
    pub region: RegionArgs,
    #[command(flatten)]
    pub edit: EditArgs,
}

#[derive(Args, Debug)]
pub struct ContinueArgs {
    /// Bars of the input kept as the prompt (default: all of them).
    #[arg(long)]
    pub prompt: Option<u32>,
    /// Length of the result in bars (default: the prompt plus 4).
    #[arg(long)]
    pub length: Option<u32>,
    #[command(flatten)]
    pub edit: EditArgs,
}

#[derive(Args, Debug)]
pub struct HarmonizeArgs {
    /// The track the accompaniment is written into, its notes replaced (1-based; default: a
    /// new "Harmony" track). Every other track is kept as it is.
    #[arg(long)]
    pub into: Option<u16>,
    #[command(flatten)]
    pub edit: EditArgs,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Length in bars.
    #[arg(long, default_value_t = 4)]
    pub length: u32,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The model `--model` names: a folder with config.json and model.safetensors, a folder
/// `assets/NAME`, or (by default) the weights built into the binary.
pub fn load_model(name: Option<&str>) -> Result<RollModel> {
    let Some(name) = name else {
        return RollModel::embedded();
    };
    let direct = Path::new(name);
    if direct.is_dir() {
        return RollModel::load_dir(direct);
    }
    let in_assets = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("assets")
        .join(name);
    if in_assets.is_dir() {
        return RollModel::load_dir(&in_assets);
    }
    bail!("--model {name}: no such folder (nor assets/{name})")
}

/// A subcommand on an input clip: load the model and the clip (errors name the file already),
/// `sample` the result (timing the sampling itself) and [`finish`] with it.
fn edit(
    task: &str,
    args: &EditArgs,
    sample: impl FnOnce(&RollModel, &Clip, &RollOptions, &mut Timings) -> Result<Clip>,
) -> Result<()> {
    let mut timings = Timings::default();
    let output = &args.output;
    let model = timings.time("load_model", || load_model(output.model.as_deref()))?;
    let clip = timings.time("read", || crate::files::read_clip(&args.input))?;
    let opts = args.sampling.options(output.seed);
    let out = sample(&model, &clip, &opts, &mut timings)?;
    finish(
        task,
        Some(&args.input),
        Some(&clip),
        &out,
        output,
        &mut timings,
        &model,
    )
}

/// Write the result and print a summary.
fn finish(
    task: &str,
    input: Option<&Path>,
    before: Option<&Clip>,
    after: &Clip,
    output: &OutputArgs,
    timings: &mut Timings,
    model: &RollModel,
) -> Result<()> {
    let out = match (&output.out, input) {
        (Some(p), _) => p.clone(),
        (None, Some(i)) => {
            let stem = i.file_stem().and_then(|s| s.to_str()).unwrap_or("clip");
            i.with_file_name(format!("{stem}-{task}.mid"))
        }
        (None, None) => PathBuf::from(format!("{task}.mid")),
    };
    timings
        .time("write", || midi::write_file(after, &out))
        .with_context(|| format!("cannot write {}", out.display()))?;
    let kept = before.map_or(0, |b| {
        b.notes.iter().filter(|n| after.notes.contains(n)).count()
    });
    let new = after.notes.len() - kept.min(after.notes.len());
    if output.json {
        let summary = serde_json::json!({
            "task": task,
            "output": out.display().to_string(),
            "model": model.source,
            "bars": after.bars,
            "notes_before": before.map_or(0, |b| b.notes.len()),
            "notes_kept": kept,
            "notes_generated": new,
            "timings_ms": timings.to_json(),
        });
        println!("{summary}");
    } else {
        println!(
            "{task}: wrote {} ({} bars, {kept} notes kept, {new} generated)",
            out.display(),
            after.bars
        );
    }
    Ok(())
}

pub fn run_fill(args: FillArgs) -> Result<()> {
    edit("fill", &args.edit, |model, clip, opts, timings| {
        let mask = args.region.mask(clip)?;
        timings.time("sample", || diffusion::fill(model, clip, &mask, opts))
    })
}

pub fn run_vary(args: VaryArgs) -> Result<()> {
    edit("vary", &args.edit, |model, clip, opts, timings| {
        let mask = args.region.mask(clip)?;
        timings.time("sample", || {
            diffusion::vary(model, clip, &mask, args.strength, opts)
        })
    })
}

pub fn run_continue(args: ContinueArgs) -> Result<()> {
    edit("continue", &args.edit, |model, clip, opts, timings| {
        let prompt = args.prompt.unwrap_or(clip.bars);
        let length = args.length.unwrap_or(prompt + 4);
        timings.time("sample", || {
            diffusion::continue_clip(model, clip, prompt, length, opts)
        })
    })
}

pub fn run_harmonize(args: HarmonizeArgs) -> Result<()> {
    edit("harmonize", &args.edit, |model, clip, opts, timings| {
        let into = match args.into {
            Some(0) => bail!("--into 0: tracks are numbered from 1"),
            Some(t) => Some(t - 1),
            None => None,
        };
        timings.time("sample", || diffusion::harmonize(model, clip, into, opts))
    })
}

pub fn run_generate(args: GenerateArgs) -> Result<()> {
    let mut timings = Timings::default();
    let model = timings.time("load_model", || load_model(args.output.model.as_deref()))?;
    let opts = args.sampling.options(args.output.seed);
    let out = timings.time("sample", || diffusion::generate(&model, args.length, &opts))?;
    finish(
        "generate",
        None,
        None,
        &out,
        &args.output,
        &mut timings,
        &model,
    )
}
