//! Evaluation of the roll model on the POP909 test split (issue: piano-roll diffusion): 4-bar
//! windows, three tasks, the model against two baselines. Sampling options are tuned on the
//! valid split instead ([`RollEvalOptions::split`]), so the test split only reports.
//!
//! | task | what is generated | "random" baseline | "copy" baseline |
//! |---|---|---|---|
//! | infill | bars 3–4, bars 1–2 given | notes at the data's density in bars 3–4 | bars 1–2 copied into 3–4 |
//! | harmonize | everything but the melody | notes at the data's density under the melody | the accompaniment of the song's previous 4 bars under this melody |
//! | unconditional | a whole 4-bar window | notes at the data's density | a random window of the *train* split (a memorizing model) |
//!
//! A fourth row, **real**, is what a model that writes real music would score: the same part
//! of real 4-bar windows of songs the evaluation does not use (the other held-out split's
//! windows, chosen the same way), run through the same metrics. Every score is a comparison of
//! sets (Yang & Lerch's distance distributions, Mittal's set statistics, the set's
//! diatonicity), so a model whose outputs were real music would land there. It marks what the
//! baselines' scores mean: the copy baseline hands over real music too.
//!
//! Metrics, each set against the ground truth of the same windows (the test windows themselves
//! for unconditional samples):
//! - Yang & Lerch's overlapping area per feature on the generated part only (bars 3–4, the
//!   accompaniment, the whole window), with every pitched note of that part on one track, for
//!   the model, the baselines and the ground truth alike. The model writes one merged roll (it
//!   was trained on all tracks merged), while POP909 splits each song into melody, bridge and
//!   piano tracks; two features read tracks (the average pitch interval and the pitch-class
//!   transitions between consecutive notes of a track), so per-track they measured which track
//!   a note lands on rather than the music, and rewarded the copy baseline for keeping the
//!   original tracks;
//! - Mittal et al.'s consistency and variance and the diatonicity on the whole 4-bar clips
//!   (context plus generated part): Mittal's windows are shrunk to 2 bars with a 1-bar hop,
//!   since a 4-bar clip holds only one of the paper's 4-bar windows.
//!
//! Windows: every 4-bar window of a 4/4 song of the split that starts on a multiple of 4 bars after the
//! first 4 (so the previous 4 bars exist) and has notes in its melody and in bars 3–4; a seeded
//! shuffle picks `count` of them.

use anyhow::{Result, bail};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

use super::model::RollModel;
use super::tasks::{self, RollOptions};
use crate::data::{self, Dataset, Split};
use crate::metrics::mittal::{self, SelfSimilarityComparison};
use crate::metrics::rhythm::rhythm_melody_stats;
use crate::metrics::{EvalOptions, Report, evaluate};
use crate::music::{Clip, Mask, Note, TimeSignature, TrackRole};

/// Bars of one evaluation window, and the bars an infill regenerates (0-based).
pub const WINDOW_BARS: u32 = 4;
const INFILL_BARS: std::ops::RangeInclusive<u32> = 2..=3;
/// Mittal's windows on 4-bar clips: 2 bars, 1-bar hop.
const MITTAL_WINDOW_BARS: usize = 2;
const MITTAL_HOP_BARS: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Infill,
    Harmonize,
    /// Harmonize the window's melody with the song's previous 4 bars (melody and
    /// accompaniment) before it, as a fill of the accompaniment track: what the copy baseline
    /// of [`Task::Harmonize`] knows, given to the model too.
    HarmonizeAfter,
    Unconditional,
}

impl Task {
    pub const ALL: [Task; 4] = [
        Task::Infill,
        Task::Harmonize,
        Task::HarmonizeAfter,
        Task::Unconditional,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Task::Infill => "infill bars 3-4",
            Task::Harmonize => "harmonize",
            Task::HarmonizeAfter => "harmonize after 4 bars",
            Task::Unconditional => "unconditional",
        }
    }
}

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "infill" | "fill" => Ok(Task::Infill),
            "harmonize" | "harmonise" => Ok(Task::Harmonize),
            "harmonize-after" | "accompany" => Ok(Task::HarmonizeAfter),
            "unconditional" | "generate" => Ok(Task::Unconditional),
            other => Err(format!(
                "unknown task '{other}' (infill, harmonize, harmonize-after, unconditional)"
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Model,
    Random,
    Copy,
    /// Real windows of other songs (see the module documentation).
    Real,
}

impl Method {
    pub const ALL: [Method; 4] = [Method::Model, Method::Random, Method::Copy, Method::Real];

    pub fn name(self) -> &'static str {
        match self {
            Method::Model => "model",
            Method::Random => "random",
            Method::Copy => "copy",
            Method::Real => "real (other songs)",
        }
    }
}

/// One row of the evaluation table.
#[derive(Clone, Debug)]
pub struct RollEvalRow {
    pub task: Task,
    pub method: Method,
    /// The generated part against the ground truth's (Yang & Lerch OA and the rest).
    pub region: Report,
    /// Whole clips: Mittal's self-similarity (2-bar windows, 1-bar hop).
    pub self_similarity: SelfSimilarityComparison,
    /// Diatonicity of the whole generated clips and of the ground truth.
    pub diatonicity: Option<f64>,
    pub reference_diatonicity: Option<f64>,
    /// Wall time of producing the set (the model's sampling time for `Model`).
    pub seconds: f64,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RollEvalOptions {
    /// Windows per task.
    pub count: usize,
    pub seed: u64,
    pub sampling: RollOptions,
    pub tasks: Vec<Task>,
    /// Where the windows come from: the test split for reporting, the valid split for tuning
    /// sampling options (such as the density) without looking at the test split.
    pub split: Split,
    /// Lock the model's notes to the key estimated from what it is given (bars 1–2 for an
    /// infill, the melody for a harmonization), as the plugin's key lock does; unconditional
    /// samples have no context and stay unlocked.
    pub key_lock: bool,
}

impl Default for RollEvalOptions {
    fn default() -> Self {
        Self {
            count: 100,
            seed: 0,
            sampling: RollOptions::default(),
            tasks: Task::ALL.to_vec(),
            split: Split::Test,
            key_lock: false,
        }
    }
}

/// A test window with the song's previous 4 bars.
#[derive(Clone, Debug)]
pub struct EvalWindow {
    pub song: String,
    pub first_bar: u32,
    pub clip: Clip,
    pub previous: Clip,
    /// The previous 4 bars and this window: 8 bars.
    pub with_previous: Clip,
}

fn is_melody(clip: &Clip, n: &Note) -> bool {
    clip.tracks
        .get(n.track as usize)
        .is_some_and(|t| t.role == TrackRole::Melody)
}

/// The evaluation windows of `songs` (one split; see the module documentation), `count` of them.
pub fn eval_windows(songs: &[data::Song], count: usize, seed: u64) -> Vec<EvalWindow> {
    let mut all = Vec::new();
    for song in songs {
        let clip = &song.clip;
        if clip.time_signature != TimeSignature::FOUR_FOUR || !clip.meter_changes.is_empty() {
            continue;
        }
        let spb = clip.steps_per_bar();
        let mut first = WINDOW_BARS;
        while first + WINDOW_BARS <= clip.bars {
            let window = clip.window(first, WINDOW_BARS);
            let has_melody = window.notes.iter().any(|n| is_melody(&window, n));
            let tail = (*INFILL_BARS.start() * spb, (*INFILL_BARS.end() + 1) * spb);
            let has_tail = window
                .notes
                .iter()
                .any(|n| n.start >= tail.0 && n.start < tail.1);
            if has_melody && has_tail {
                all.push(EvalWindow {
                    song: song.id.clone(),
                    first_bar: first,
                    previous: clip.window(first - WINDOW_BARS, WINDOW_BARS),
                    with_previous: clip.window(first - WINDOW_BARS, 2 * WINDOW_BARS),
                    clip: window,
                });
            }
            first += WINDOW_BARS;
        }
    }
    all.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    all.truncate(count);
    all
}

/// The windows of the `real` rows when evaluating on `split`: `count` windows of the other
/// held-out split (valid for test, test for valid), songs the evaluation does not use, chosen
/// like [`eval_windows`].
pub fn real_windows(
    data_root: &Path,
    cache_dir: &Path,
    split: Split,
    count: usize,
    seed: u64,
) -> Result<Vec<EvalWindow>> {
    let other = if split == Split::Test {
        Split::Valid
    } else {
        Split::Test
    };
    let songs = data::load_cached(Dataset::Pop909, other, data_root, cache_dir)?;
    Ok(eval_windows(&songs, count, seed))
}

/// Random notes in `steps` × the model's pitch window at the training data's density: each cell
/// starts a note with the onset density, lengths geometric with the mean the sustain density
/// implies. Notes go to `track`, velocity 80.
fn random_notes(
    model: &RollModel,
    steps: std::ops::Range<u32>,
    track: u16,
    rng: &mut ChaCha8Rng,
) -> Vec<Note> {
    let cfg = model.config();
    let (onset, sustain) = (cfg.prior[0] as f64, cfg.prior[1] as f64);
    let mean_length = (sustain / onset.max(1e-6)).max(1.0);
    let mut notes = Vec::new();
    for step in steps.clone() {
        for pitch in cfg.pitch_lo as u32..cfg.pitch_lo as u32 + cfg.pitches as u32 {
            if rng.random::<f64>() < onset {
                let mut length = 1;
                while rng.random::<f64>() > 1.0 / mean_length && step + length < steps.end {
                    length += 1;
                }
                notes.push(Note::new(step, pitch.min(127) as u8, length, 80, track));
            }
        }
    }
    notes
}

/// The accompaniment track of `clip` (first non-melody pitched track), or a new one.
fn accompaniment_track(clip: &mut Clip) -> u16 {
    match clip
        .tracks
        .iter()
        .position(|t| t.role != TrackRole::Melody && !t.is_drums())
    {
        Some(t) => t as u16,
        None => clip.add_track(crate::music::Track::new(
            "Accompaniment",
            TrackRole::Accompaniment,
            1,
        )),
    }
}

/// The part of a clip a task generates: bars 3–4 for infill, the non-melody notes for
/// harmonize, everything for unconditional.
fn generated_part(task: Task, clip: &Clip) -> Clip {
    match task {
        Task::Infill => clip.window(*INFILL_BARS.start(), INFILL_BARS.clone().count() as u32),
        Task::Harmonize | Task::HarmonizeAfter => {
            let mut out = clip.clone();
            out.notes.retain(|n| !is_melody(clip, n));
            out
        }
        Task::Unconditional => clip.clone(),
    }
}

/// `clip` with every pitched note moved to the first pitched track (drum notes stay), as the
/// roll model sees it.
fn one_pitched_track(mut clip: Clip) -> Clip {
    let pitched = |t: &u16| clip.tracks.get(*t as usize).is_some_and(|t| !t.is_drums());
    if let Some(first) = (0..clip.tracks.len() as u16).find(|t| pitched(t)) {
        let moved: Vec<bool> = clip.notes.iter().map(|n| pitched(&n.track)).collect();
        for (note, moved) in clip.notes.iter_mut().zip(moved) {
            if moved {
                note.track = first;
            }
        }
    }
    clip
}

/// Produce the set of whole clips for one task and method.
fn produce(
    model: &RollModel,
    task: Task,
    method: Method,
    windows: &[EvalWindow],
    train_windows: &[Clip],
    real_windows: &[EvalWindow],
    opts: &RollEvalOptions,
) -> Result<Vec<Clip>> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0xe7a1);
    let mut out = Vec::with_capacity(windows.len());
    for (i, w) in windows.iter().enumerate() {
        let clip = &w.clip;
        let spb = clip.steps_per_bar();
        let tail = *INFILL_BARS.start() * spb..(*INFILL_BARS.end() + 1) * spb;
        let mut sampling = RollOptions {
            seed: opts.seed.wrapping_add(i as u64),
            ..opts.sampling.clone()
        };
        if opts.key_lock && method == Method::Model {
            let mut given = clip.clone();
            match task {
                Task::Infill => given.notes.retain(|n| n.start < tail.start),
                Task::Harmonize | Task::HarmonizeAfter => {
                    given.notes.retain(|n| is_melody(clip, n))
                }
                Task::Unconditional => given.notes.clear(),
            }
            sampling.key = given.estimate_key();
        }
        let produced = match (task, method) {
            (Task::Infill, Method::Model) => {
                tasks::fill(model, clip, &Mask::bars(clip, INFILL_BARS), &sampling)?
            }
            (Task::Infill, Method::Random) => {
                let mut c = clip.clone();
                c.notes.retain(|n| n.start < tail.start);
                let track = accompaniment_track(&mut c);
                c.notes
                    .extend(random_notes(model, tail.clone(), track, &mut rng));
                c
            }
            (Task::Infill, Method::Copy) => {
                let mut c = clip.clone();
                c.notes.retain(|n| n.start < tail.start);
                let copied: Vec<Note> = clip
                    .window(0, 2)
                    .notes
                    .iter()
                    .map(|n| Note {
                        start: n.start + tail.start,
                        ..*n
                    })
                    .collect();
                c.notes.extend(copied);
                c
            }
            (Task::Harmonize, Method::Model) => tasks::harmonize(model, clip, None, &sampling)?,
            (Task::HarmonizeAfter, Method::Model) => {
                // Every accompaniment note on one track; the window's own ones go.
                let mut c = w.with_previous.clone();
                let track = accompaniment_track(&mut c);
                let pitched_accompaniment = |c: &Clip, n: &Note| {
                    !is_melody(c, n)
                        && c.tracks
                            .get(n.track as usize)
                            .is_some_and(|t| !t.is_drums())
                };
                let moved: Vec<bool> = c
                    .notes
                    .iter()
                    .map(|n| pitched_accompaniment(&c, n))
                    .collect();
                for (n, moved) in c.notes.iter_mut().zip(moved) {
                    if moved {
                        n.track = track;
                    }
                }
                let start = WINDOW_BARS * spb;
                c.notes.retain(|n| n.start < start || n.track != track);
                let mut mask = Mask::bars(&c, WINDOW_BARS..=2 * WINDOW_BARS - 1);
                mask.track = Some(track);
                tasks::fill(model, &c, &mask, &sampling)?.window(WINDOW_BARS, WINDOW_BARS)
            }
            (Task::Harmonize | Task::HarmonizeAfter, Method::Random) => {
                let mut c = clip.clone();
                c.notes.retain(|n| is_melody(clip, n));
                let track = accompaniment_track(&mut c);
                c.notes
                    .extend(random_notes(model, 0..clip.steps(), track, &mut rng));
                c
            }
            (Task::Harmonize | Task::HarmonizeAfter, Method::Copy) => {
                let mut c = clip.clone();
                c.notes.retain(|n| is_melody(clip, n));
                c.notes.extend(
                    w.previous
                        .notes
                        .iter()
                        .filter(|n| !is_melody(&w.previous, n)),
                );
                c
            }
            (Task::Unconditional, Method::Model) => tasks::generate(model, WINDOW_BARS, &sampling)?,
            (Task::Unconditional, Method::Random) => {
                let mut c = Clip::new(WINDOW_BARS);
                let track = accompaniment_track(&mut c);
                c.notes = random_notes(model, 0..c.steps(), track, &mut rng);
                c
            }
            (Task::Unconditional, Method::Copy) => {
                if train_windows.is_empty() {
                    bail!("no training windows to copy from");
                }
                train_windows[rng.random_range(0..train_windows.len())].clone()
            }
            (_, Method::Real) => {
                // As many as the other split holds (a short split gives a smaller set).
                let Some(real) = real_windows.get(i) else {
                    break;
                };
                real.clip.clone()
            }
        };
        let mut produced = produced;
        produced.sort_notes();
        out.push(produced);
    }
    Ok(out)
}

/// Run the evaluation: for each task, the model and both baselines against the ground truth.
/// `progress` hears each finished row.
pub fn evaluate_roll(
    model: &RollModel,
    data_root: &Path,
    cache_dir: &Path,
    opts: &RollEvalOptions,
    mut progress: impl FnMut(&RollEvalRow),
) -> Result<Vec<RollEvalRow>> {
    if opts.count == 0 {
        bail!("evaluate at least one window");
    }
    if opts.split == Split::Train {
        bail!("evaluate on the valid or the test split (the model trained on the train split)");
    }
    let songs = data::load_cached(Dataset::Pop909, opts.split, data_root, cache_dir)?;
    let windows = eval_windows(&songs, opts.count, opts.seed);
    if windows.is_empty() {
        bail!(
            "the POP909 {} split has no 4/4 window to evaluate on",
            opts.split
        );
    }
    let train_windows: Vec<Clip> = if opts.tasks.contains(&Task::Unconditional) {
        let train = data::load_cached(Dataset::Pop909, Split::Train, data_root, cache_dir)?;
        let mut all: Vec<Clip> = train
            .iter()
            .filter(|s| s.clip.time_signature == TimeSignature::FOUR_FOUR)
            .flat_map(|s| data::windows(&s.clip, WINDOW_BARS, WINDOW_BARS))
            .collect();
        all.shuffle(&mut ChaCha8Rng::seed_from_u64(opts.seed ^ 0x7ea1));
        all.truncate(20 * opts.count);
        all
    } else {
        Vec::new()
    };
    let real_windows = real_windows(data_root, cache_dir, opts.split, windows.len(), opts.seed)?;
    let metrics = EvalOptions {
        seed: opts.seed,
        ..EvalOptions::default()
    };
    let truth: Vec<Clip> = windows.iter().map(|w| w.clip.clone()).collect();
    let reference_diatonicity = rhythm_melody_stats(&truth).diatonicity;
    let mut rows = Vec::new();
    for &task in &opts.tasks {
        let truth_parts: Vec<Clip> = truth
            .iter()
            .map(|c| one_pitched_track(generated_part(task, c)))
            .collect();
        for method in Method::ALL {
            let started = std::time::Instant::now();
            let clips = produce(
                model,
                task,
                method,
                &windows,
                &train_windows,
                &real_windows,
                opts,
            )?;
            let seconds = started.elapsed().as_secs_f64();
            let parts: Vec<Clip> = clips
                .iter()
                .map(|c| one_pitched_track(generated_part(task, c)))
                .collect();
            let row = RollEvalRow {
                task,
                method,
                region: evaluate(&truth_parts, &parts, &metrics),
                self_similarity: mittal::compare_with(
                    &truth,
                    &clips,
                    MITTAL_WINDOW_BARS,
                    MITTAL_HOP_BARS,
                ),
                diatonicity: rhythm_melody_stats(&clips).diatonicity,
                reference_diatonicity,
                seconds,
            };
            progress(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

fn cell(x: Option<f64>) -> String {
    x.filter(|x| x.is_finite())
        .map_or("-".into(), |x| format!("{x:.3}"))
}

impl RollEvalRow {
    /// The scores the table reports, in its column order (higher is better for every one but
    /// diatonicity, where closer to the data's is better).
    pub fn scores(&self) -> Vec<(&'static str, Option<f64>)> {
        let mut out: Vec<(&'static str, Option<f64>)> = self
            .region
            .features
            .iter()
            .map(|f| (f.feature.name(), f.overlap_area))
            .collect();
        out.push(("mean OA", self.region.mean_overlap_area()));
        let ss = &self.self_similarity;
        out.push(("cons. pitch", ss.pitch.map(|s| s.consistency)));
        out.push(("var. pitch", ss.pitch.map(|s| s.variance)));
        out.push(("cons. dur.", ss.duration.map(|s| s.consistency)));
        out.push(("var. dur.", ss.duration.map(|s| s.variance)));
        out
    }
}

/// A markdown table of the rows (one line per task and method).
pub fn markdown_table(rows: &[RollEvalRow]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let names: Vec<&str> = first.scores().iter().map(|(n, _)| *n).collect();
    let mut out = format!(
        "| task | method | {} | diatonicity (data {}) | seconds |\n|---|---|{}---|---|\n",
        names.join(" | "),
        cell(first.reference_diatonicity),
        "---|".repeat(names.len())
    );
    for row in rows {
        let values: Vec<String> = row.scores().iter().map(|(_, v)| cell(*v)).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} |\n",
            row.task.name(),
            row.method.name(),
            values.join(" | "),
            cell(row.diatonicity),
            row.seconds
        ));
    }
    out
}

/// Per task: on how many scores the model beats each baseline (diatonicity counted as closer to
/// the data's), as (task, scores, beats random, beats copy).
pub fn wins(rows: &[RollEvalRow]) -> Vec<(Task, usize, usize, usize)> {
    wins_of(rows, Method::Model)
}

/// [`wins`] for the rows of `method` (the real music's, to see what the counts can be).
pub fn wins_of(rows: &[RollEvalRow], method: Method) -> Vec<(Task, usize, usize, usize)> {
    let mut out = Vec::new();
    for task in Task::ALL {
        let find = |m: Method| rows.iter().find(|r| r.task == task && r.method == m);
        let (Some(model), Some(random), Some(copy)) =
            (find(method), find(Method::Random), find(Method::Copy))
        else {
            continue;
        };
        let beats = |other: &RollEvalRow| -> (usize, usize) {
            let mut total = 0;
            let mut won = 0;
            for ((_, a), (_, b)) in model.scores().iter().zip(other.scores()) {
                if let (Some(a), Some(b)) = (a, b) {
                    total += 1;
                    won += usize::from(*a > b);
                }
            }
            if let (Some(a), Some(b), Some(r)) = (
                model.diatonicity,
                other.diatonicity,
                model.reference_diatonicity,
            ) {
                total += 1;
                won += usize::from((a - r).abs() < (b - r).abs());
            }
            (total, won)
        };
        let (total, vs_random) = beats(random);
        let (_, vs_copy) = beats(copy);
        out.push((task, total, vs_random, vs_copy));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::features::ClipFeatures;
    use crate::music::Track;

    #[test]
    fn one_pitched_track_merges_pitched_notes_and_keeps_drums() {
        let mut clip = Clip::new(1);
        clip.tracks = vec![
            Track::new("Drums", TrackRole::Drums, 9),
            Track::new("Melody", TrackRole::Melody, 0),
            Track::new("Piano", TrackRole::Accompaniment, 1),
        ];
        // Melody 72 → 74, piano 48 → 50: two-semitone steps within each track.
        clip.notes = vec![
            Note::new(0, 36, 1, 100, 0),
            Note::new(0, 72, 4, 90, 1),
            Note::new(4, 74, 4, 90, 1),
            Note::new(0, 48, 4, 70, 2),
            Note::new(4, 50, 4, 70, 2),
        ];
        assert_eq!(ClipFeatures::of(&clip).avg_pitch_interval, 2.0);
        let merged = one_pitched_track(clip.clone());
        let tracks: Vec<u16> = merged.notes.iter().map(|n| n.track).collect();
        assert_eq!(tracks, vec![0, 1, 1, 1, 1]);
        assert_eq!(merged.tracks, clip.tracks);
        // Sorted by (start, pitch): 48, 72, 50, 74 → steps of 24, 22, 24.
        let merged_interval = ClipFeatures::of(&merged).avg_pitch_interval;
        assert!(
            (merged_interval - 70.0 / 3.0).abs() < 1e-9,
            "{merged_interval}"
        );
    }
}
