//! Evaluation of the roll model on 4-bar windows of the POP909 test split (or the valid split,
//! to tune sampling options on, [`RollEvalOptions::split`]) through the one evaluation library
//! ([`crate::evaluation`]): only what was regenerated is scored, against the true hole, real
//! music of other songs, a copy and random notes drawn from the training data's statistics.
//!
//! | task | region the model regenerates | copy row |
//! |---|---|---|
//! | infill bars 3-4 | bars 3–4 of every track | bars 1–2 repeated |
//! | infill melody bars 3-4 | bars 3–4 of the melody track, the accompaniment given | the melody of bars 1–2 repeated |
//! | harmonize | every track but the melody, 4 bars | the accompaniment of the song's previous 4 bars |
//! | harmonize after 4 bars | every track but the melody in bars 5–8, bars 1–4 given | the accompaniment of bars 1–4 |
//! | unconditional | the whole window, nothing given | a random 4-bar window of the train split |
//!
//! The **real (other songs)** row takes the same region, by role, from windows of the other
//! held-out split; **random (data)** draws each role's notes from POP909 train statistics
//! ([`DataStats`]). The model and the random row run every seed of [`RollEvalOptions::seeds`].
//!
//! Windows: every 4-bar window of a 4/4 song of the split that starts on a multiple of 4 bars
//! after the first 4 (so the previous 4 bars exist) and has melody and accompaniment notes in
//! bars 3–4; a seeded shuffle picks `count` of them.

use anyhow::{Result, bail};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::time::Instant;

use super::model::RollModel;
use super::tasks::{self, RollOptions};
use crate::data::{self, Dataset, Split};
use crate::evaluation::random_data::{DataStats, window_seed};
use crate::evaluation::report::{COPY, MODEL, track_for};
use crate::evaluation::{Case, EvalReport, Region, RowOutputs, parse_task, role_of, seeded_pick};
use crate::latent::{LatentMelody, LatentModel, SampleOptions};
use crate::music::{Clip, Mask, Note, TimeSignature, TrackRole};
use crate::vae::MelodyVae;

/// Bars of one evaluation window, and the bars an infill regenerates (0-based).
pub const WINDOW_BARS: u32 = 4;
const INFILL_BARS: std::ops::RangeInclusive<u32> = 2..=3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Bars 3–4 of every track.
    Infill,
    /// Bars 3–4 of the melody track only, the accompaniment given.
    InfillMelody,
    Harmonize,
    /// Harmonize the window's melody with the song's previous 4 bars (melody and
    /// accompaniment) before it, as a fill of the accompaniment track.
    HarmonizeAfter,
    Unconditional,
}

impl Task {
    pub const ALL: [Task; 5] = [
        Task::Infill,
        Task::InfillMelody,
        Task::Harmonize,
        Task::HarmonizeAfter,
        Task::Unconditional,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Task::Infill => "infill bars 3-4",
            Task::InfillMelody => "infill melody bars 3-4",
            Task::Harmonize => "harmonize",
            Task::HarmonizeAfter => "harmonize after 4 bars",
            Task::Unconditional => "unconditional",
        }
    }
}

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_task(
            s,
            &[
                (&["infill", "fill"], Task::Infill),
                (&["infill-melody", "fill-melody"], Task::InfillMelody),
                (&["harmonize", "harmonise"], Task::Harmonize),
                (&["harmonize-after", "accompany"], Task::HarmonizeAfter),
                (&["unconditional", "generate"], Task::Unconditional),
            ],
        )
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RollEvalOptions {
    /// Windows per task.
    pub count: usize,
    /// Chooses the windows and the bootstrap resamples.
    pub seed: u64,
    /// Sampling seeds of the model and the random row (window `i` of seed `s` samples with
    /// `s * 1_000_003 + i`).
    pub seeds: Vec<u64>,
    pub sampling: RollOptions,
    pub tasks: Vec<Task>,
    /// Where the windows come from: the test split for reporting, the valid split for tuning.
    pub split: Split,
    /// Lock the model's notes to the key estimated from what it is given, as the plugin's key
    /// lock does; unconditional samples have no context and stay unlocked.
    pub key_lock: bool,
    /// The melody infill by the melody models (MusicVAE + latent diffusion, the embedded
    /// weights) instead of the roll model: they hear the melody's own bars, not the
    /// accompaniment. Measures whether a lead line should be routed to them.
    pub latent_melody: bool,
}

impl Default for RollEvalOptions {
    fn default() -> Self {
        Self {
            count: 200,
            seed: 0,
            seeds: vec![0, 1, 2],
            sampling: RollOptions::default(),
            tasks: Task::ALL.to_vec(),
            split: Split::Test,
            key_lock: false,
            latent_melody: false,
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
    role_of(clip, n) == TrackRole::Melody
}

fn is_accompaniment(clip: &Clip, n: &Note) -> bool {
    !matches!(role_of(clip, n), TrackRole::Melody | TrackRole::Drums)
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
        let tail = *INFILL_BARS.start() * spb..(*INFILL_BARS.end() + 1) * spb;
        let mut first = WINDOW_BARS;
        while first + WINDOW_BARS <= clip.bars {
            let window = clip.window(first, WINDOW_BARS);
            let in_tail = |f: fn(&Clip, &Note) -> bool| {
                window
                    .notes
                    .iter()
                    .any(|n| tail.contains(&n.start) && f(&window, n))
            };
            if in_tail(is_melody) && in_tail(is_accompaniment) {
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
    seeded_pick(all, count, seed)
}

/// The windows of the real rows when evaluating on `split`: `count` windows of the other
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

/// The pitched tracks of `clip` that are not the melody.
fn accompaniment_tracks(clip: &Clip) -> Vec<u16> {
    (0..clip.tracks.len() as u16)
        .filter(|&t| {
            let track = &clip.tracks[t as usize];
            track.role != TrackRole::Melody && !track.is_drums()
        })
        .collect()
}

/// The case of `task` on window `w`.
pub fn case(task: Task, w: &EvalWindow) -> Case {
    let spb = w.clip.steps_per_bar();
    let tail = *INFILL_BARS.start() * spb..(*INFILL_BARS.end() + 1) * spb;
    let id = format!("{}:{}", w.song, w.first_bar);
    let (truth, region) = match task {
        Task::Infill => (
            w.clip.clone(),
            Region {
                steps: tail,
                tracks: None,
            },
        ),
        Task::InfillMelody => {
            let melody = w.clip.track_with_role(TrackRole::Melody).unwrap_or(0);
            (
                w.clip.clone(),
                Region {
                    steps: tail,
                    tracks: Some(vec![melody]),
                },
            )
        }
        Task::Harmonize => (
            w.clip.clone(),
            Region {
                steps: 0..w.clip.steps(),
                tracks: Some(accompaniment_tracks(&w.clip)),
            },
        ),
        Task::HarmonizeAfter => (
            w.with_previous.clone(),
            Region {
                steps: WINDOW_BARS * spb..2 * WINDOW_BARS * spb,
                tracks: Some(accompaniment_tracks(&w.with_previous)),
            },
        ),
        Task::Unconditional => (
            w.clip.clone(),
            Region {
                steps: 0..w.clip.steps(),
                tracks: None,
            },
        ),
    };
    Case { id, truth, region }
}

/// The model's output for `case`: it is given the context only.
fn model_output(
    model: &RollModel,
    latent: Option<&LatentMelody>,
    task: Task,
    case: &Case,
    sampling: &RollOptions,
    key_lock: bool,
) -> Result<Clip> {
    let context = case.context();
    if let (Some(lm), Task::InfillMelody) = (latent, task) {
        return latent_melody_fill(lm, &context, &case.region, sampling.seed);
    }
    let mut sampling = sampling.clone();
    if key_lock && task != Task::Unconditional {
        sampling.key = context.estimate_key();
    }
    let spb = context.steps_per_bar();
    let bars = case.region.steps.start / spb..=(case.region.steps.end / spb).saturating_sub(1);
    let out = match task {
        Task::Infill => tasks::fill(model, &context, &Mask::bars(&context, bars), &sampling)?,
        Task::InfillMelody | Task::HarmonizeAfter => {
            let role = if task == Task::InfillMelody {
                TrackRole::Melody
            } else {
                TrackRole::Accompaniment
            };
            let mut mask = Mask::bars(&context, bars);
            // The accompaniment a producer would extend: the track with the most given notes
            // (POP909's piano, not its sparse bridge), so the fill echoes its part.
            mask.track = if role == TrackRole::Accompaniment {
                accompaniment_tracks(&context)
                    .into_iter()
                    .max_by_key(|&t| (context.track_notes(t).count(), std::cmp::Reverse(t)))
            } else {
                track_for(&context, role)
            };
            tasks::fill(model, &context, &mask, &sampling)?
        }
        Task::Harmonize => {
            // Into the window's accompaniment (POP909's piano; its bridge is a second line).
            let roles = super::parts::part_roles(&context);
            let target = accompaniment_tracks(&context)
                .into_iter()
                .find(|&t| roles[t as usize] == Some(crate::models::roll::PartRole::Accompaniment))
                .or_else(|| accompaniment_tracks(&context).into_iter().next());
            tasks::harmonize(model, &context, target, &sampling)?
        }
        Task::Unconditional => tasks::generate(model, WINDOW_BARS, &sampling)?,
    };
    Ok(out)
}

/// The melody models' fill of `region` (whole 2-bar windows of the melody track) in `context`:
/// the melody's 2-bar windows are encoded, the ones in the region regenerated by latent
/// replacement, decoded onto the melody track.
fn latent_melody_fill(
    lm: &LatentMelody,
    context: &Clip,
    region: &Region,
    seed: u64,
) -> Result<Clip> {
    // The windows from the clip's start (a silent melody before the hole is all rests).
    let (track, _, _) = crate::music::melody::melody_track(context)?;
    let (runs, _) = crate::latent::window_runs(context)?;
    let windows = runs.into_iter().next().unwrap_or_default();
    let window = crate::music::melody::WINDOW_STEPS as u32;
    let regenerate: Vec<bool> = (0..windows.len() as u32)
        .map(|w| region.steps.contains(&(w * window)))
        .collect();
    let opts = SampleOptions {
        seed,
        ..SampleOptions::default()
    };
    let windows = lm.fill(&windows, &regenerate, &opts)?;
    Ok(crate::latent::apply_windows(
        context,
        track,
        &windows,
        &regenerate,
    ))
}

/// The copy row's output for `case` (see the module documentation); `train` feeds the
/// unconditional copy.
fn copy_output(
    task: Task,
    case: &Case,
    w: &EvalWindow,
    train: &[Clip],
    rng: &mut ChaCha8Rng,
) -> Clip {
    let shifted = |notes: &mut dyn Iterator<Item = &Note>, by: u32| -> Vec<Note> {
        notes
            .map(|n| Note {
                start: n.start + by,
                ..*n
            })
            .collect()
    };
    let spb = case.truth.steps_per_bar();
    match task {
        Task::Infill | Task::InfillMelody => {
            let tail = case.region.steps.clone();
            let before = tail.start - 2 * spb..tail.start;
            let mut notes = case
                .truth
                .notes
                .iter()
                .filter(|n| before.contains(&n.start))
                .filter(|n| task == Task::Infill || is_melody(&case.truth, n));
            case.with_notes(shifted(&mut notes, 2 * spb))
        }
        Task::Harmonize => {
            let mut notes = w
                .previous
                .notes
                .iter()
                .filter(|n| is_accompaniment(&w.previous, n));
            case.with_notes(shifted(&mut notes, 0))
        }
        Task::HarmonizeAfter => {
            let start = case.region.steps.start;
            let mut notes = case
                .truth
                .notes
                .iter()
                .filter(|n| n.start < start && is_accompaniment(&case.truth, n));
            case.with_notes(shifted(&mut notes, start))
        }
        Task::Unconditional => {
            if train.is_empty() {
                return case.context();
            }
            train[rng.random_range(0..train.len())].clone()
        }
    }
}

/// One task's cases and every row's outputs (for `--listen`).
pub type TaskOutputs = crate::evaluation::TaskOutputs<Task>;

/// The evaluation: the report and what each row wrote.
pub struct RollEvaluation {
    pub report: EvalReport,
    pub outputs: Vec<TaskOutputs>,
}

/// Run the evaluation of `opts.tasks`; `progress` hears what is done. `command` is recorded in
/// the report.
pub fn evaluate_roll(
    model: &RollModel,
    data_root: &Path,
    cache_dir: &Path,
    opts: &RollEvalOptions,
    command: &str,
    mut progress: impl FnMut(&str),
) -> Result<RollEvaluation> {
    if opts.count == 0 || opts.seeds.is_empty() {
        bail!("evaluate at least one window with at least one seed");
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
    let train = data::load_cached(Dataset::Pop909, Split::Train, data_root, cache_dir)?;
    let train_clips: Vec<Clip> = train.into_iter().map(|s| s.clip).collect();
    let stats = DataStats::fit(&train_clips);
    let train_windows: Vec<Clip> = if opts.tasks.contains(&Task::Unconditional) {
        let mut all: Vec<Clip> = train_clips
            .iter()
            .filter(|c| c.time_signature == TimeSignature::FOUR_FOUR)
            .flat_map(|c| crate::music::segment::windows(c, WINDOW_BARS, WINDOW_BARS))
            .collect();
        all.shuffle(&mut ChaCha8Rng::seed_from_u64(opts.seed ^ 0x7ea1));
        all.truncate(20 * opts.count);
        all
    } else {
        Vec::new()
    };
    drop(train_clips);
    let real = real_windows(data_root, cache_dir, opts.split, windows.len(), opts.seed)?;
    let latent = if opts.latent_melody {
        Some((MelodyVae::embedded()?, LatentModel::embedded()?))
    } else {
        None
    };
    progress(&format!(
        "{} windows of the {} split, {} of other songs, {} seeds",
        windows.len(),
        opts.split,
        real.len(),
        opts.seeds.len()
    ));
    let mut report = EvalReport {
        command: command.to_string(),
        split: opts.split.to_string(),
        tasks: Vec::new(),
    };
    let mut outputs = Vec::new();
    for &task in &opts.tasks {
        let cases: Vec<Case> = windows.iter().map(|w| case(task, w)).collect();
        let mut rows = Vec::new();

        let started = Instant::now();
        let mut model_rows = Vec::new();
        for &seed in &opts.seeds {
            let mut per_window = Vec::with_capacity(cases.len());
            for (i, c) in cases.iter().enumerate() {
                let sampling = RollOptions {
                    seed: window_seed(seed, i),
                    ..opts.sampling.clone()
                };
                per_window.push(Some(model_output(
                    model,
                    latent
                        .as_ref()
                        .map(|(vae, score)| LatentMelody { vae, model: score })
                        .as_ref(),
                    task,
                    c,
                    &sampling,
                    opts.key_lock,
                )?));
            }
            model_rows.push(per_window);
        }
        rows.push(RowOutputs {
            name: MODEL.into(),
            outputs: model_rows,
            seconds: started.elapsed().as_secs_f64(),
        });
        progress(&format!(
            "{}: model {:.1} s",
            task.name(),
            started.elapsed().as_secs_f64()
        ));

        rows.push(RowOutputs::truth(&cases));
        rows.push(RowOutputs::other_songs(&cases, |i| {
            let other = real.get(i)?;
            Some(if task == Task::HarmonizeAfter {
                &other.with_previous
            } else {
                &other.clip
            })
        }));
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0xc0b1);
        rows.push(RowOutputs::one_run(
            COPY,
            cases
                .iter()
                .zip(&windows)
                .map(|(c, w)| Some(copy_output(task, c, w, &train_windows, &mut rng)))
                .collect(),
            0.0,
        ));
        rows.push(stats.row(&cases, &opts.seeds));
        report.score_task(task.name(), &cases, &rows, opts.seed, &mut progress)?;
        outputs.push(TaskOutputs { task, cases, rows });
    }
    Ok(RollEvaluation { report, outputs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::part_fit;
    use crate::evaluation::test_music::quarters_over_chords;

    /// 8 bars of a melody (track 0, one note a beat) over a piano (track 1, a chord a bar):
    /// the window is bars 5–8, its previous 4 bars 1–4.
    fn window() -> EvalWindow {
        let clip = quarters_over_chords(
            8,
            ("Piano", TrackRole::Accompaniment),
            |bar, _| 72 + (bar % 5) as u8,
            |bar| [48, 52, 55].map(|p| p + (bar % 3) as u8).to_vec(),
        );
        EvalWindow {
            song: "song".into(),
            first_bar: 4,
            clip: clip.window(4, 4),
            previous: clip.window(0, 4),
            with_previous: clip,
        }
    }

    #[test]
    fn each_task_regenerates_only_its_region() {
        let w = window();
        let context = |t| case(t, &w).context();
        // Infill: bars 3–4 empty on both tracks.
        assert!(context(Task::Infill).notes.iter().all(|n| n.start < 32));
        // Infill melody: the piano of bars 3–4 stays given.
        let c = context(Task::InfillMelody);
        assert!(c.notes.iter().any(|n| n.start >= 32 && n.track == 1));
        assert!(!c.notes.iter().any(|n| n.start >= 32 && n.track == 0));
        // Harmonize: the melody only; after 4 bars: 8 bars with bars 5–8 of the piano missing.
        assert!(context(Task::Harmonize).notes.iter().all(|n| n.track == 0));
        let after = case(Task::HarmonizeAfter, &w);
        assert_eq!(after.truth.bars, 8);
        assert_eq!(after.region.steps, 64..128);
        assert_eq!(after.truth_part().len(), 12);
        assert!(
            after
                .context()
                .notes
                .iter()
                .any(|n| n.track == 1 && n.start < 64)
        );
        assert!(context(Task::Unconditional).notes.is_empty());
    }

    #[test]
    fn the_copy_row_repeats_what_came_before_and_keeps_the_context() {
        let w = window();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for task in [
            Task::Infill,
            Task::InfillMelody,
            Task::Harmonize,
            Task::HarmonizeAfter,
        ] {
            let c = case(task, &w);
            let out = copy_output(task, &c, &w, &[], &mut rng);
            let parts = part_fit::parts(&c.roles());
            let scores = part_fit::score(&c, &out, &parts);
            let get = |name: &str| scores.iter().find(|(n, _)| n == name).unwrap().1;
            assert_eq!(get("all: given notes kept"), Some(1.0), "{}", task.name());
            assert_eq!(get("all: on the right track"), Some(1.0), "{}", task.name());
        }
        // The melody infill's copy is the melody of bars 1–2, moved two bars on.
        let c = case(Task::InfillMelody, &w);
        let generated = c.generated(&copy_output(Task::InfillMelody, &c, &w, &[], &mut rng));
        let bars_1_2: Vec<(u32, u8)> = w
            .clip
            .notes
            .iter()
            .filter(|n| n.track == 0 && n.start < 32)
            .map(|n| (n.start + 32, n.pitch))
            .collect();
        let got: Vec<(u32, u8)> = generated.iter().map(|n| (n.start, n.pitch)).collect();
        assert_eq!(got, bars_1_2);
    }
}
