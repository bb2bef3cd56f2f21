//! `bandmate band`: the band player's recurrent multimodal VAE: continue, fill, redo, and the
//! next-bar evaluation on the Nottingham test split against the baselines.

use anyhow::{Context, Result, bail};
use bandmate::band::player::{BandModel, BandPlayer, PlayOptions, continue_clip, fill_track, redo};
use bandmate::band::{NextBarScores, score_next_bar_in_song};
use bandmate::data::{Dataset, Split, default_cache_dir, default_data_root, load_cached};
use bandmate::midi;
use bandmate::music::{Clip, Key, Note, TrackRole};
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
    /// Odds multiplier of the onsets (1: as trained, 2: more notes).
    #[arg(long, default_value_t = 1.0)]
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

#[derive(Subcommand, Debug)]
pub enum BandTask {
    /// Keep the clip and write `--bars` more bars of every track after it.
    Continue {
        input: PathBuf,
        #[arg(long, default_value_t = 8)]
        bars: u32,
        #[arg(long, short)]
        out: PathBuf,
        #[command(flatten)]
        play: PlayArgs,
    },
    /// Regenerate one track (by the model's track number: 0 melody, 1 accompaniment).
    Fill {
        input: PathBuf,
        #[arg(long)]
        track: usize,
        #[arg(long, short)]
        out: PathBuf,
        #[command(flatten)]
        play: PlayArgs,
    },
    /// Regenerate every track in turn.
    Redo {
        input: PathBuf,
        #[arg(long, short)]
        out: PathBuf,
        #[command(flatten)]
        play: PlayArgs,
    },
    /// Next-bar accompaniment on the Nottingham test split against the baselines; with
    /// `--card`, the table is written into the model folder's CARD.md.
    Eval {
        /// Dataset root (default: BANDMATE_DATA or ../shared/data).
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long)]
        card: bool,
        #[command(flatten)]
        play: PlayArgs,
    },
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
    let model = load_model(args.model.as_deref())?;
    match args.task {
        BandTask::Continue {
            input,
            bars,
            out,
            play,
        } => {
            let clip = crate::files::read_clip(&input)?;
            write(&continue_clip(&model, &clip, bars, &play.options()?)?, &out)
        }
        BandTask::Fill {
            input,
            track,
            out,
            play,
        } => {
            let clip = crate::files::read_clip(&input)?;
            write(&fill_track(&model, &clip, track, &play.options()?)?, &out)
        }
        BandTask::Redo { input, out, play } => {
            let clip = crate::files::read_clip(&input)?;
            write(&redo(&model, &clip, &play.options()?)?, &out)
        }
        BandTask::Eval { data, card, play } => eval(
            &model,
            data,
            card.then_some(args.model.unwrap_or_else(BandModel::shipped_dir)),
            &play.options()?,
        ),
    }
}

/// `clip` with only the tracks of `roles` (notes re-numbered).
fn only_roles(clip: &Clip, roles: &[TrackRole]) -> Clip {
    let mut out = Clip {
        notes: Vec::new(),
        tracks: Vec::new(),
        ..clip.clone()
    };
    for (i, t) in clip.tracks.iter().enumerate() {
        if roles.contains(&t.role) {
            let k = out.add_track(t.clone());
            out.notes.extend(
                clip.notes
                    .iter()
                    .filter(|n| n.track as usize == i)
                    .map(|n| Note { track: k, ..*n }),
            );
        }
    }
    out
}

/// Score the player on `songs`: it hears bar by bar (the tracks of `heard`) and answers the
/// accompaniment of the next bar. Returns the scores and the per-bar answer times (seconds).
fn score_player(
    model: &BandModel,
    songs: &[bandmate::data::Song],
    heard: &[TrackRole],
    opts: &PlayOptions,
) -> Result<(NextBarScores, Vec<f64>)> {
    let mut player = BandPlayer::new(model)?;
    player.options = opts.clone();
    let mut song: *const Clip = std::ptr::null();
    let mut fed = 0u32;
    let mut last: Vec<Note> = Vec::new();
    let mut times = Vec::new();
    let scores = score_next_bar_in_song(songs, |clip, _, _, bar| {
        if !std::ptr::eq(song, clip) {
            song = clip;
            fed = 0;
            player.reset().ok();
        }
        while fed < bar {
            let played = only_roles(&clip.window(fed, 1), heard);
            let tick = Instant::now();
            last = player
                .next_bar(&played)
                .map(|c| c.notes)
                .unwrap_or_default();
            times.push(tick.elapsed().as_secs_f64());
            fed += 1;
        }
        last.clone()
    });
    Ok((scores, times))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn eval(
    model: &BandModel,
    data: Option<PathBuf>,
    card_dir: Option<PathBuf>,
    opts: &PlayOptions,
) -> Result<()> {
    let root = data.unwrap_or_else(default_data_root);
    let cache = default_cache_dir();
    let train = load_cached(Dataset::Nottingham, Split::Train, &root, &cache)?;
    let test = load_cached(Dataset::Nottingham, Split::Test, &root, &cache)?;
    let (full, mut times) = score_player(
        model,
        &test,
        &[TrackRole::Melody, TrackRole::Accompaniment],
        opts,
    )?;
    let (melody_only, more) = score_player(model, &test, &[TrackRole::Melody], opts)?;
    times.extend(more);
    let (repeat, frequent) = crate::band::baselines(&train, &test);
    times.sort_by(f64::total_cmp);
    let table_md = [
        "| predictor | bars | precision | recall | F1 | chord-tone ratio |".to_string(),
        "|---|---|---|---|---|---|".to_string(),
        crate::band::row(
            "RMVAE, hears melody + accompaniment of every bar so far",
            &full,
        ),
        crate::band::row(
            "RMVAE, hears the melody only (its own accompaniment fed back, live use)",
            &melody_only,
        ),
        crate::band::row("repeat the last accompaniment bar", &repeat),
        crate::band::row(
            "most frequent training bar for the last bar's chord",
            &frequent,
        ),
    ]
    .join("\n");
    let timing = format!(
        "One next-bar answer of the live player (`BandPlayer::next_bar`, notes in → notes out, \
         one thread of a busy 2-core CPU) over the {} bars pushed in this evaluation: p50 {:.3} \
         ms, p99 {:.3} ms, max {:.3} ms.",
        times.len(),
        percentile(&times, 0.5) * 1e3,
        percentile(&times, 0.99) * 1e3,
        times.last().copied().unwrap_or(f64::NAN) * 1e3
    );
    println!("{table_md}\n\n{timing}");
    if let Some(dir) = card_dir {
        let path = dir.join("CARD.md");
        let card = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let marker = "\n## Evaluation";
        let head = card.split(marker).next().unwrap_or(&card).trim_end();
        let section = format!(
            "{head}\n{marker}\n\n\
             Next-bar accompaniment on the Nottingham test split (`bandmate band eval --card`):\n\
             every bar after the first of the 4/4 tunes with an accompaniment; a note counts as\n\
             a hit with the same step and pitch; chord-tone ratio: share of predicted notes in\n\
             the true chord of the bar. Both baselines are given the true accompaniment of the\n\
             previous bar. Decoding: onsets whose odds × density pass 1 (density {density}), at\n\
             most 24 per bar{key}.\n\n\
             {table_md}\n\n{timing}\n",
            density = opts.density,
            key = opts
                .key
                .map_or(String::new(), |k| format!(", key lock {k:?}")),
        );
        std::fs::write(&path, section)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote the table into {}", path.display());
    }
    Ok(())
}
