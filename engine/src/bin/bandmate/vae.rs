//! `bandmate vae …` (sample, encode, reconstruct, accuracy) and `bandmate interpolate`: the
//! melody MusicVAE (2-bar, or 16-bar hierarchical with `--weights assets/vae16`).

use anyhow::{Context, Result, bail};
use bandmate::data::{self, Dataset, Split};
use bandmate::midi;
use bandmate::music::melody::MelodyWindows;
use bandmate::vae::eval::{accuracy_table, paper_numbers, reconstruction_accuracy};
use bandmate::vae::{MelodyVae, default_weights_dir, first_window_of, windows_to_clip};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

use crate::files::read_clip;

#[derive(Args, Debug)]
pub struct VaeArgs {
    #[command(subcommand)]
    pub command: VaeCommand,
}

#[derive(Subcommand, Debug)]
pub enum VaeCommand {
    /// Melodies from the prior z ~ N(0, I), written one after another into one MIDI file.
    Sample(SampleArgs),
    /// Print the latent μ of the first bars (the model's length) of a MIDI file's melody.
    Encode(EncodeArgs),
    /// Encode the first bars (the model's length) of a melody and decode them again (argmax).
    Reconstruct(ReconstructArgs),
    /// Reconstruction accuracy (teacher-forced and sampled) on a Nottingham split, next to the
    /// MusicVAE paper's numbers.
    Accuracy(AccuracyArgs),
}

#[derive(Args, Debug, Clone)]
pub struct WeightsArg {
    /// Folder with config.json and model.safetensors [default: the shipped assets/vae; the
    /// 16-bar hierarchical model is assets/vae16].
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

impl WeightsArg {
    fn load(&self) -> Result<MelodyVae> {
        MelodyVae::load(&self.weights.clone().unwrap_or_else(default_weights_dir))
    }
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Bars per melody: the model's length (2, or 16 with --weights assets/vae16).
    #[arg(long)]
    pub bars: Option<u32>,
    /// Melodies to draw.
    #[arg(long, default_value_t = 4)]
    pub count: usize,
    /// Sampling temperature of the decoder; 0 decodes by argmax.
    #[arg(long, default_value_t = 0.5)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output MIDI file.
    #[arg(short, long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub weights: WeightsArg,
}

#[derive(Args, Debug)]
pub struct EncodeArgs {
    pub input: PathBuf,
    #[command(flatten)]
    pub weights: WeightsArg,
}

#[derive(Args, Debug)]
pub struct ReconstructArgs {
    pub input: PathBuf,
    #[arg(short, long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub weights: WeightsArg,
}

#[derive(Args, Debug)]
pub struct AccuracyArgs {
    /// Nottingham split (train, valid, test).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Windows per batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Also rewrite the accuracy section of this model card (e.g. assets/vae/CARD.md).
    #[arg(long)]
    pub card: Option<PathBuf>,
    #[command(flatten)]
    pub weights: WeightsArg,
}

#[derive(Args, Debug)]
pub struct InterpolateArgs {
    /// The first melody (its first 2 bars of 4/4 are used).
    pub a: PathBuf,
    /// The second melody.
    pub b: PathBuf,
    /// Melodies from A to B, both ends included (at least 2).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Output MIDI file: the steps one after another, 2 bars each.
    #[arg(short, long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub weights: WeightsArg,
    /// Refine the path with the latent score model: diffuse it to this time (0..1, e.g. 0.3)
    /// and bring it back with both ends held, so the steps sound like one song.
    #[arg(long)]
    pub refine: Option<f64>,
    /// Score model folder for --refine [default: the shipped assets/latent].
    #[arg(long)]
    pub latent: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn melody_of(path: &Path, steps: usize) -> Result<Vec<u8>> {
    let clip = read_clip(path)?;
    let window = first_window_of(&clip, steps).with_context(|| format!("{}", path.display()))?;
    if let Some(track) = window.guessed_track {
        eprintln!(
            "bandmate: {}: no track has the melody role; using track {} (the highest)",
            path.display(),
            track + 1
        );
    }
    if window.had_chords {
        eprintln!(
            "bandmate: {}: the melody has chords in its first {} bars; using the top note",
            path.display(),
            steps / 16
        );
    }
    Ok(window.tokens)
}

fn write(windows: &[Vec<u8>], out: &Path) -> Result<()> {
    midi::write_file(&windows_to_clip(windows), out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    let steps: usize = windows.iter().map(Vec::len).sum();
    println!("wrote {} ({} bars)", out.display(), steps / 16);
    Ok(())
}

pub fn run(args: VaeArgs) -> Result<()> {
    match args.command {
        VaeCommand::Sample(a) => {
            let vae = a.weights.load()?;
            let model_bars = vae.window_steps() / 16;
            if let Some(bars) = a.bars
                && bars as usize != model_bars
            {
                bail!(
                    "--bars {bars}: this MusicVAE writes {model_bars} bars (assets/vae: 2 bars, assets/vae16: 16 bars, hierarchical)"
                );
            }
            if a.count == 0 {
                bail!("--count must be at least 1");
            }
            if !(a.temperature >= 0.0 && a.temperature.is_finite()) {
                bail!("--temperature must be 0 (argmax) or positive");
            }
            let temperature = (a.temperature > 0.0).then_some(a.temperature);
            write(&vae.sample(a.count, temperature, a.seed)?, &a.out)
        }
        VaeCommand::Encode(a) => {
            let vae = a.weights.load()?;
            let z = vae.encode(&[&melody_of(&a.input, vae.window_steps())?])?;
            let text: Vec<String> = z[0].iter().map(|v| format!("{v:.4}")).collect();
            println!("{}", text.join(" "));
            Ok(())
        }
        VaeCommand::Reconstruct(a) => {
            let vae = a.weights.load()?;
            let tokens = melody_of(&a.input, vae.window_steps())?;
            let z = vae.encode(&[&tokens])?;
            let decoded = vae.decode(&z, None, 0)?;
            let same = decoded[0]
                .iter()
                .zip(&tokens)
                .filter(|(x, y)| x == y)
                .count();
            println!("{same} of {} tokens reconstructed", tokens.len());
            write(&decoded, &a.out)
        }
        VaeCommand::Accuracy(a) => {
            let split = match a.split.as_str() {
                "train" => Split::Train,
                "valid" => Split::Valid,
                "test" => Split::Test,
                other => bail!("--split {other}: expected train, valid or test"),
            };
            let vae = a.weights.load()?;
            let songs = data::load_cached(
                Dataset::Nottingham,
                split,
                &data::default_data_root(),
                &data::default_cache_dir(),
            )?;
            let bars = (vae.window_steps() / 16) as u32;
            let windows: MelodyWindows = data::melody_windows_of(&songs, bars, 2)?;
            let acc = reconstruction_accuracy(&vae, &windows, a.batch)?;
            let (ptf, ps, paper_model) = paper_numbers(bars);
            println!(
                "Nottingham {} split, {} windows of {bars} bars (hop 2 bars, 4/4 and paired 2/4 only)",
                a.split, acc.windows
            );
            println!("                      teacher-forced  sampled");
            println!(
                "this MusicVAE         {:.3}           {:.3}",
                acc.teacher_forced, acc.sampled
            );
            println!(
                "MusicVAE paper        {ptf:.3}           {ps:.3}   ({paper_model}; Lakh MIDI melodies, a far larger model: the data differ)"
            );
            if let Some(card) = a.card {
                let table =
                    accuracy_table(&acc, &format!("Nottingham {}", a.split), vae.window_steps());
                crate::files::replace_card_section(&card, "## Reconstruction accuracy", &table)?;
                println!("updated {}", card.display());
            }
            Ok(())
        }
    }
}

pub fn run_interpolate(a: InterpolateArgs) -> Result<()> {
    let vae = a.weights.load()?;
    let steps = vae.window_steps();
    let (ta, tb) = (melody_of(&a.a, steps)?, melody_of(&a.b, steps)?);
    let Some(t0) = a.refine else {
        return write(&vae.interpolate(&ta, &tb, a.steps)?, &a.out);
    };
    if !(t0 > 0.01 && t0 <= 1.0) {
        bail!("--refine {t0}: a diffusion time in (0.01, 1]");
    }
    let model = bandmate::latent::LatentModel::load(
        &a.latent
            .clone()
            .unwrap_or_else(bandmate::latent::default_weights_dir),
    )?;
    let lm = bandmate::latent::LatentMelody {
        vae: &vae,
        model: &model,
    };
    let opts = bandmate::latent::SampleOptions {
        seed: a.seed,
        ..Default::default()
    };
    write(&lm.interpolate(&ta, &tb, a.steps, Some(t0), &opts)?, &a.out)
}
