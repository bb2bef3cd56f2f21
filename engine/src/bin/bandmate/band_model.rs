//! `bandmate band`: the band player's recurrent multimodal VAE: continue, fill, redo, and the
//! next-bar evaluation on the Nottingham test split against the baselines.

use anyhow::{Context, Result, bail};
use bandmate::band::eval::{
    choose_density, continuation_rows, score_player, table, tunes, voice_fill_rows,
};
use bandmate::band::player::{BandModel, PlayOptions, continue_clip, fill_track, redo};
use bandmate::data::{Dataset, Split, default_cache_dir, default_data_root, load_cached};
use bandmate::midi;
use bandmate::music::{Clip, Key, TrackRole};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

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
    /// The evaluation on Nottingham: the decoding density chosen on the valid split, then on
    /// the test split next-bar scores against the baselines, 16-bar continuations from 4-bar
    /// prompts and voice fill; with `--card`, the tables are written into the model folder's
    /// CARD.md.
    Eval {
        /// Dataset root (default: BANDMATE_DATA or ../shared/data).
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long)]
        card: bool,
        /// Densities tried on the valid split (the best next-bar F1 is used on the test split).
        #[arg(long, value_delimiter = ',', default_value = "1,1.5,2,3,4")]
        densities: Vec<f32>,
        /// A second model folder to compare (e.g. the ablation): its rows are added.
        #[arg(long)]
        compare: Option<PathBuf>,
        /// How the compared model's rows are named.
        #[arg(long, default_value = "the compared model")]
        compare_label: String,
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
        BandTask::Eval {
            data,
            card,
            densities,
            compare,
            compare_label,
            play,
        } => {
            if densities.is_empty() || densities.iter().any(|d| !(d.is_finite() && *d > 0.0)) {
                bail!("--densities: positive numbers, e.g. 1,1.5,2,3");
            }
            let req = EvalRequest {
                data,
                card_dir: card.then_some(args.model.unwrap_or_else(BandModel::shipped_dir)),
                densities,
                compare: compare.map(|d| (d, compare_label)),
            };
            eval(&model, req, &play.options()?)
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// What `bandmate band eval` is asked for.
struct EvalRequest {
    data: Option<PathBuf>,
    card_dir: Option<PathBuf>,
    densities: Vec<f32>,
    /// A second model folder and how its rows are named.
    compare: Option<(PathBuf, String)>,
}

fn eval(model: &BandModel, req: EvalRequest, base: &PlayOptions) -> Result<()> {
    let root = req.data.unwrap_or_else(default_data_root);
    let cache = default_cache_dir();
    let train = load_cached(Dataset::Nottingham, Split::Train, &root, &cache)?;
    let valid = load_cached(Dataset::Nottingham, Split::Valid, &root, &cache)?;
    let test = load_cached(Dataset::Nottingham, Split::Test, &root, &cache)?;
    let compare = req
        .compare
        .as_ref()
        .map(|(d, label)| BandModel::load_dir(d).map(|m| (d.clone(), label.clone(), m)))
        .transpose()?;

    // The decoding density is chosen on the valid split, for the live use (melody heard).
    let (density, density_rows) = choose_density(model, &valid, &req.densities, base)?;
    let opts = PlayOptions {
        density,
        ..base.clone()
    };
    let density_md = [
        "| density | bars | precision | recall | F1 | chord-tone ratio |".to_string(),
        "|---|---|---|---|---|---|".to_string(),
    ]
    .into_iter()
    .chain(
        density_rows
            .iter()
            .map(|(d, s)| crate::band::row(&format!("{d}"), s)),
    )
    .collect::<Vec<_>>()
    .join("\n");
    println!("density on the valid split (live use):\n{density_md}\nchosen: {density}\n");

    let both = [TrackRole::Melody, TrackRole::Accompaniment];
    let (full, mut times) = score_player(model, &test, &both, &opts)?;
    let (melody_only, more) = score_player(model, &test, &[TrackRole::Melody], &opts)?;
    times.extend(more);
    let mut next_rows = vec![
        crate::band::row(
            "RMVAE, hears melody + accompaniment of every bar so far",
            &full,
        ),
        crate::band::row(
            "RMVAE, hears the melody only (its own accompaniment fed back, live use)",
            &melody_only,
        ),
    ];
    if let Some((_, label, m)) = &compare {
        next_rows.push(crate::band::row(
            &format!("RMVAE {label}, hears both"),
            &score_player(m, &test, &both, &opts)?.0,
        ));
        next_rows.push(crate::band::row(
            &format!("RMVAE {label}, hears the melody only"),
            &score_player(m, &test, &[TrackRole::Melody], &opts)?.0,
        ));
    }
    let (repeat, frequent) = crate::band::baselines(&train, &test);
    next_rows.push(crate::band::row(
        "repeat the last accompaniment bar",
        &repeat,
    ));
    next_rows.push(crate::band::row(
        "most frequent training bar for the last bar's chord",
        &frequent,
    ));
    times.sort_by(f64::total_cmp);
    let next_md = [
        "| predictor | bars | precision | recall | F1 | chord-tone ratio |".to_string(),
        "|---|---|---|---|---|---|".to_string(),
    ]
    .into_iter()
    .chain(next_rows)
    .collect::<Vec<_>>()
    .join("\n");
    let timing = format!(
        "One next-bar answer of the live player (`BandPlayer::next_bar`, notes in → notes out, \
         one thread) over the {} bars pushed in this evaluation: p50 {:.3} ms, p99 {:.3} ms, \
         max {:.3} ms.",
        times.len(),
        percentile(&times, 0.5) * 1e3,
        percentile(&times, 0.99) * 1e3,
        times.last().copied().unwrap_or(f64::NAN) * 1e3
    );
    println!("{next_md}\n\n{timing}\n");

    // 16-bar continuations and voice fill on the test tunes.
    let test_tunes = tunes(&test);
    let valid_tunes = tunes(&valid);
    let mut set_rows = continuation_rows(model, &test_tunes, &opts)?;
    for role in [TrackRole::Accompaniment, TrackRole::Melody] {
        set_rows.extend(voice_fill_rows(
            model,
            &test_tunes,
            &valid_tunes,
            role,
            &opts,
        )?);
    }
    if let Some((_, label, m)) = &compare {
        let mut rows = continuation_rows(m, &test_tunes, &opts)?;
        rows.truncate(1);
        for role in [TrackRole::Accompaniment, TrackRole::Melody] {
            rows.extend(
                voice_fill_rows(m, &test_tunes, &valid_tunes, role, &opts)?
                    .into_iter()
                    .take(1),
            );
        }
        for r in &mut rows {
            r.method = format!("RMVAE {label}");
        }
        set_rows.extend(rows);
    }
    let sets_md = table(&set_rows);
    println!("{sets_md}");

    if let Some(dir) = req.card_dir {
        let path = dir.join("CARD.md");
        let card = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let marker = "\n## Evaluation";
        let head = card.split(marker).next().unwrap_or(&card).trim_end();
        let compare_note = compare.as_ref().map_or(String::new(), |(d, label, _)| {
            format!(
                "\"RMVAE {label}\" is the model in `{}` (not shipped), for comparison.\n\n",
                d.display()
            )
        });
        let section = format!(
            "{head}\n{marker}\n\n\
             Produced by `bandmate band eval --card{compare_arg}` on Nottingham.\n\n\
             ### Decoding density (valid split)\n\n\
             Onsets whose odds × density pass 1 are played (at most 24 per bar{key}). The density\n\
             is chosen on the valid split by the live player's next-bar F1 (melody heard, its own\n\
             accompaniment fed back); the test split below only reports.\n\n\
             {density_md}\n\nChosen: {density}.\n\n\
             ### Next bar (test split)\n\n\
             Every bar after the first of the 4/4 tunes with an accompaniment; a note counts as a\n\
             hit with the same step and pitch; chord-tone ratio: share of predicted notes in the\n\
             true chord of the bar. Both baselines are given the true accompaniment of the\n\
             previous bar.\n\n\
             {compare_note}{next_md}\n\n{timing}\n\n\
             ### 16-bar continuation and voice fill (test split)\n\n\
             The first 16 bars of the {tunes} test tunes in 4/4 with both tracks. Continuation:\n\
             the model hears bars 1–4 of both tracks and writes bars 5–16 of both, scored on bars\n\
             5–16 against the true bars 5–16. Voice fill: one track regenerated bar by bar from\n\
             the other (the seed's fill), scored against the true track. Mean OA: Yang–Lerch\n\
             overlapping area against the true parts; consistency and variance: Mittal et al.\n\
             (4-bar windows, 2-bar hop); note F1: same step and pitch as the true part of the same\n\
             tune; chord-tone ratio: share of notes in the chord of the true accompaniment's bar.\n\n\
             {sets_md}",
            compare_arg = compare.as_ref().map_or(String::new(), |(d, label, _)| {
                format!(" --compare {} --compare-label \"{label}\"", d.display())
            }),
            key = opts
                .key
                .map_or(String::new(), |k| format!(", key lock {k:?}")),
            tunes = test_tunes.len(),
        );
        std::fs::write(&path, section)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote the tables into {}", path.display());
    }
    Ok(())
}
