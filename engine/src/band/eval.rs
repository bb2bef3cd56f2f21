//! Evaluation of the band model on Nottingham through the one evaluation library
//! ([`crate::evaluation`]): only what the model wrote is scored, against the true hole, real
//! music of other songs, a copy and random notes drawn from the training data's statistics.
//!
//! | task | window | region the model writes | copy row |
//! |---|---|---|---|
//! | next bar (live) | 8 bars of a song | the chords of bar 8 | the chords of bar 7 |
//! | continue 4 → 16 bars | the first 16 bars of a tune | bars 5–16 of both tracks | the 4-bar prompt looped |
//! | fill the chords | the first 16 bars of a tune | the chords track, every bar | the melody an octave lower on the chords track |
//!
//! **Next bar**: the live player ([`BandPlayer`]) starts at the window's first bar and hears
//! bars 1–7 one at a time (melody and chords: what every row is given), then answers bar 8's
//! chords. A second model row, **model, melody only (live)**, hears only the melody and its
//! own answers fed back (the plugin's band player while you play the melody). Every answer is
//! timed ([`BandEvaluation::answer_seconds`]). **Continue**: [`continue_clip`] on bars 1–4 of
//! both tracks. **Fill**: [`fill_track`] of the chords track from the melody.
//!
//! The **real (other songs)** row takes the same region, by role, from windows of the other
//! held-out split (valid for test, test for valid); **random (data)** draws each role's notes
//! from Nottingham train statistics ([`DataStats`]) once per seed. The band model decodes
//! deterministically (the posterior mean, onsets whose odds × density pass 1), so its rows are
//! one run; the sampling seeds apply to the random row.
//!
//! Windows: next bar: every bar 8 or later of a 4/4 song (no meter change, both tracks) whose
//! chords track has notes in that bar, 8 bars ending there, a seeded shuffle picks `count`;
//! continue and fill: the first 16 bars of each such tune ([`tunes`]), the first `count`.

use anyhow::{Result, bail};
use std::time::Instant;

use super::chord_table::{estimate_chord, is_role, pitch_class_weights};
use super::player::{BandModel, BandPlayer, PlayOptions, continue_clip, fill_track};
use crate::data::Song;
use crate::evaluation::random_data::DataStats;
use crate::evaluation::report::{COPY, MODEL, track_for};
use crate::evaluation::{Case, EvalReport, Region, RowOutputs, parse_task, role_of, seeded_pick};
use crate::music::{Clip, Note, TrackRole};

/// Bars of a prompt and of a whole continuation.
pub const PROMPT_BARS: u32 = 4;
pub const TUNE_BARS: u32 = 16;
/// Bars of a next-bar window: the answered bar is the last.
pub const NEXT_BAR_WINDOW: u32 = 8;

/// The second model row of the next-bar task.
pub const LIVE: &str = "model, melody only (live)";

const BOTH: [TrackRole; 2] = [TrackRole::Melody, TrackRole::Accompaniment];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    NextBar,
    Continue,
    FillChords,
}

impl Task {
    pub const ALL: [Task; 3] = [Task::NextBar, Task::Continue, Task::FillChords];

    pub fn name(self) -> &'static str {
        match self {
            Task::NextBar => "next bar (live)",
            Task::Continue => "continue 4 to 16 bars",
            Task::FillChords => "fill the chords",
        }
    }
}

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_task(
            s,
            &[
                (&["next-bar", "next", "live"], Task::NextBar),
                (&["continue"], Task::Continue),
                (&["fill-chords", "fill"], Task::FillChords),
            ],
        )
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BandEvalOptions {
    /// Windows per task (continue and fill have one per tune: at most the split's tunes).
    pub count: usize,
    /// Chooses the next-bar windows and the bootstrap resamples.
    pub seed: u64,
    /// Seeds of the random row (window `i` of seed `s` samples with `s * 1_000_003 + i`).
    pub seeds: Vec<u64>,
    pub play: PlayOptions,
    pub tasks: Vec<Task>,
}

impl Default for BandEvalOptions {
    fn default() -> Self {
        Self {
            count: 200,
            seed: 0,
            seeds: vec![0, 1, 2],
            play: PlayOptions::default(),
            tasks: Task::ALL.to_vec(),
        }
    }
}

/// `clip` with only the tracks of `roles` (notes re-numbered).
pub fn only_roles(clip: &Clip, roles: &[TrackRole]) -> Clip {
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

fn plays_in_four_four(clip: &Clip) -> bool {
    clip.steps_per_bar() == 16 && clip.meter_changes.is_empty()
}

fn has_both_parts(clip: &Clip) -> bool {
    BOTH.iter().all(|&r| {
        clip.track_with_role(r)
            .is_some_and(|t| clip.track_notes(t).next().is_some())
    })
}

/// The first [`TUNE_BARS`] bars of every 4/4 tune without meter changes that has a melody and
/// an accompaniment in them.
pub fn tunes(songs: &[Song]) -> Vec<Clip> {
    tune_windows(songs).into_iter().map(|(_, c)| c).collect()
}

/// [`tunes`] with their song ids, melody and accompaniment only.
pub fn tune_windows(songs: &[Song]) -> Vec<(String, Clip)> {
    songs
        .iter()
        .filter(|s| plays_in_four_four(&s.clip) && s.clip.bars >= TUNE_BARS)
        .map(|s| {
            (
                s.id.clone(),
                only_roles(&s.clip.window(0, TUNE_BARS), &BOTH),
            )
        })
        .filter(|(_, c)| has_both_parts(c))
        .collect()
}

/// A next-bar window: 8 bars of a song, melody and accompaniment, the last bar answered.
#[derive(Clone, Debug)]
pub struct BarWindow {
    pub song: String,
    pub first_bar: u32,
    pub clip: Clip,
}

/// The next-bar windows of `songs` (see the module documentation), `count` of them.
pub fn next_bar_windows(songs: &[Song], count: usize, seed: u64) -> Vec<BarWindow> {
    let mut all = Vec::new();
    for song in songs {
        let clip = &song.clip;
        if !plays_in_four_four(clip) || clip.bars < NEXT_BAR_WINDOW {
            continue;
        }
        let both = only_roles(clip, &BOTH);
        let Some(chords) = both.track_with_role(TrackRole::Accompaniment) else {
            continue;
        };
        if both.track_with_role(TrackRole::Melody).is_none() {
            continue;
        }
        for last in NEXT_BAR_WINDOW - 1..clip.bars {
            let range = last * 16..(last + 1) * 16;
            if both.track_notes(chords).any(|n| range.contains(&n.start)) {
                let first_bar = last + 1 - NEXT_BAR_WINDOW;
                all.push(BarWindow {
                    song: song.id.clone(),
                    first_bar,
                    clip: both.window(first_bar, NEXT_BAR_WINDOW),
                });
            }
        }
    }
    seeded_pick(all, count, seed)
}

fn chords_track(clip: &Clip) -> u16 {
    clip.track_with_role(TrackRole::Accompaniment).unwrap_or(1)
}

/// The next-bar case of a window: the chords of its last bar.
pub fn next_bar_case(w: &BarWindow) -> Case {
    let spb = w.clip.steps_per_bar();
    Case {
        id: format!("{}:{}", w.song, w.first_bar),
        region: Region {
            steps: (NEXT_BAR_WINDOW - 1) * spb..NEXT_BAR_WINDOW * spb,
            tracks: Some(vec![chords_track(&w.clip)]),
        },
        truth: w.clip.clone(),
    }
}

/// The continue or fill case of a tune (`task` is not [`Task::NextBar`]).
pub fn tune_case(task: Task, id: &str, tune: &Clip) -> Case {
    let spb = tune.steps_per_bar();
    let region = match task {
        Task::FillChords => Region {
            steps: 0..tune.steps(),
            tracks: Some(vec![chords_track(tune)]),
        },
        _ => Region {
            steps: PROMPT_BARS * spb..tune.steps(),
            tracks: None,
        },
    };
    Case {
        id: format!("{id}:0"),
        truth: tune.clone(),
        region,
    }
}

/// The notes of `out` (a clip on the model's tracks) in `case`'s region, moved onto `case`'s
/// tracks by role and added to the context.
fn on_case_tracks(case: &Case, out: &Clip) -> Clip {
    let notes = out
        .notes
        .iter()
        .filter(|n| case.region.steps.contains(&n.start))
        .filter_map(|n| {
            let track = track_for(&case.truth, role_of(out, n))?;
            let note = Note { track, ..*n };
            case.region.covers(&note).then_some(note)
        });
    case.with_notes(notes)
}

/// What the live player answers for a next-bar case: it starts at the window's first bar,
/// hears bars 1–7 (the tracks of `heard`; its own answers stand in for the chords when it does
/// not hear them) and answers bar 8. Pushes the time of every answer to `times`.
fn player_output(
    player: &mut BandPlayer,
    case: &Case,
    heard: &[TrackRole],
    times: &mut Vec<f64>,
) -> Result<Clip> {
    player.reset()?;
    let context = case.context();
    let mut answer = Clip::new(1);
    for bar in 0..NEXT_BAR_WINDOW - 1 {
        let played = only_roles(&context.window(bar, 1), heard);
        let tick = Instant::now();
        answer = player.next_bar(&played)?;
        times.push(tick.elapsed().as_secs_f64());
    }
    let offset = case.region.steps.start;
    let mut placed = answer.clone();
    placed.bars = case.truth.bars;
    placed.notes = answer
        .notes
        .iter()
        .map(|n| Note {
            start: n.start + offset,
            ..*n
        })
        .collect();
    Ok(on_case_tracks(case, &placed))
}

/// The model's output for a continue or fill case.
fn tune_output(model: &BandModel, task: Task, case: &Case, opts: &PlayOptions) -> Result<Clip> {
    let context = case.context();
    let out = match task {
        Task::Continue => continue_clip(
            model,
            &context.window(0, PROMPT_BARS),
            TUNE_BARS - PROMPT_BARS,
            opts,
        )?,
        Task::FillChords => {
            let k = model
                .config()
                .track_of(TrackRole::Accompaniment)
                .ok_or_else(|| anyhow::anyhow!("the band model has no accompaniment track"))?;
            fill_track(model, &context, k, opts)?
        }
        Task::NextBar => bail!("the next bar is the live player's"),
    };
    Ok(on_case_tracks(case, &out))
}

/// The copy row's output for `case` (see the module documentation).
pub fn copy_output(task: Task, case: &Case) -> Clip {
    let spb = case.truth.steps_per_bar();
    let start = case.region.steps.start;
    let given = &case.truth.notes;
    let notes: Vec<Note> = match task {
        Task::NextBar => given
            .iter()
            .filter(|n| n.start + spb >= start && n.start < start)
            .filter(|n| {
                case.region
                    .tracks
                    .as_ref()
                    .is_some_and(|t| t.contains(&n.track))
            })
            .map(|n| Note {
                start: n.start + spb,
                ..*n
            })
            .collect(),
        Task::Continue => (1..TUNE_BARS / PROMPT_BARS)
            .flat_map(|k| {
                given.iter().filter(|n| n.start < start).map(move |n| Note {
                    start: n.start + k * start,
                    ..*n
                })
            })
            .filter(|n| n.start < case.region.steps.end)
            .collect(),
        Task::FillChords => {
            let chords = chords_track(&case.truth);
            given
                .iter()
                .filter(|n| role_of(&case.truth, n) == TrackRole::Melody)
                .map(|n| Note {
                    pitch: n.pitch.saturating_sub(12),
                    track: chords,
                    ..*n
                })
                .collect()
        }
    };
    case.with_notes(notes)
}

/// The songs an evaluation reads.
pub struct BandEvalData<'a> {
    /// The evaluated split (test to report, valid to tune).
    pub songs: &'a [Song],
    /// Songs of another split, for the real (other songs) row.
    pub others: &'a [Song],
    /// The train split, for the random row's statistics.
    pub train: &'a [Song],
    /// The evaluated split's name, recorded in the report.
    pub split: String,
}

/// One task's cases and every row's outputs (for `--listen`).
pub type TaskOutputs = crate::evaluation::TaskOutputs<Task>;

/// The evaluation: the report, what each row wrote and the live player's answer times.
pub struct BandEvaluation {
    pub report: EvalReport,
    pub outputs: Vec<TaskOutputs>,
    /// Seconds of every `BandPlayer::next_bar` call of the next-bar task.
    pub answer_seconds: Vec<f64>,
}

/// Run the evaluation of `opts.tasks` on `data`; `compare` adds the rows of another model,
/// named `model <label>`, after the model rows; `progress` hears what is done; `command` is
/// recorded in the report.
pub fn evaluate_band(
    model: &BandModel,
    compare: Option<(&str, &BandModel)>,
    data: &BandEvalData,
    opts: &BandEvalOptions,
    command: &str,
    mut progress: impl FnMut(&str),
) -> Result<BandEvaluation> {
    if opts.count == 0 || opts.seeds.is_empty() {
        bail!("evaluate at least one window with at least one seed");
    }
    let train_clips: Vec<Clip> = data
        .train
        .iter()
        .map(|s| only_roles(&s.clip, &BOTH))
        .collect();
    let stats = DataStats::fit(&train_clips);
    drop(train_clips);
    let mut report = EvalReport::new(command, &data.split);
    let mut outputs = Vec::new();
    let mut answer_seconds = Vec::new();
    let mut models = vec![(MODEL.to_string(), model)];
    if let Some((label, other)) = compare {
        models.push((format!("{MODEL} {label}"), other));
    }
    for &task in &opts.tasks {
        let (cases, real): (Vec<Case>, Vec<Case>) = if task == Task::NextBar {
            let windows = next_bar_windows(data.songs, opts.count, opts.seed);
            let real = next_bar_windows(data.others, windows.len(), opts.seed);
            (
                windows.iter().map(next_bar_case).collect(),
                real.iter().map(next_bar_case).collect(),
            )
        } else {
            let case_of = |(id, tune): (String, Clip)| tune_case(task, &id, &tune);
            let mut tunes = tune_windows(data.songs);
            tunes.truncate(opts.count);
            let mut others = tune_windows(data.others);
            others.truncate(tunes.len());
            (
                tunes.into_iter().map(case_of).collect(),
                others.into_iter().map(case_of).collect(),
            )
        };
        if cases.is_empty() {
            bail!("{}: the split has no window to evaluate on", task.name());
        }
        progress(&format!(
            "{}: {} windows, {} of other songs",
            task.name(),
            cases.len(),
            real.len()
        ));
        let mut rows = Vec::new();
        for (m, (name, net)) in models.iter().enumerate() {
            let started = Instant::now();
            let mut model_outputs = Vec::with_capacity(cases.len());
            let mut live = Vec::new();
            if task == Task::NextBar {
                let mut player = BandPlayer::new(net)?;
                player.options = opts.play.clone();
                let mut times = Vec::new();
                for c in &cases {
                    model_outputs.push(Some(player_output(&mut player, c, &BOTH, &mut times)?));
                }
                let both_seconds = started.elapsed().as_secs_f64();
                rows.push(RowOutputs::one_run(name, model_outputs, both_seconds));
                let started = Instant::now();
                for c in &cases {
                    live.push(Some(player_output(
                        &mut player,
                        c,
                        &[TrackRole::Melody],
                        &mut times,
                    )?));
                }
                let name = if m == 0 {
                    LIVE.to_string()
                } else {
                    format!("{name}, melody only (live)")
                };
                rows.push(RowOutputs::one_run(
                    &name,
                    live,
                    started.elapsed().as_secs_f64(),
                ));
                if m == 0 {
                    answer_seconds.extend(times);
                }
            } else {
                for c in &cases {
                    model_outputs.push(Some(tune_output(net, task, c, &opts.play)?));
                }
                rows.push(RowOutputs::one_run(
                    name,
                    model_outputs,
                    started.elapsed().as_secs_f64(),
                ));
            }
            progress(&format!(
                "{}: {name} {:.1} s",
                task.name(),
                started.elapsed().as_secs_f64()
            ));
        }
        rows.push(RowOutputs::truth(&cases));
        rows.push(RowOutputs::other_songs(&cases, |i| {
            real.get(i).map(|c| &c.truth)
        }));
        rows.push(RowOutputs::one_run(
            COPY,
            cases.iter().map(|c| Some(copy_output(task, c))).collect(),
            0.0,
        ));
        rows.push(stats.row(&cases, &opts.seeds));
        report.score_task(task.name(), &cases, &rows, opts.seed, &mut progress)?;
        outputs.push(TaskOutputs { task, cases, rows });
    }
    Ok(BandEvaluation {
        report,
        outputs,
        answer_seconds,
    })
}

/// Score the live player on `songs` with the next-bar F1 of [`score_next_bar_in_song`]: it
/// hears every song from its start, bar by bar (the tracks of `heard`, its own answers
/// standing in for the tracks it plays), and answers the accompaniment of the next bar.
/// Returns the scores and the time of every answer in seconds.
pub fn score_player(
    model: &BandModel,
    songs: &[Song],
    heard: &[TrackRole],
    opts: &PlayOptions,
) -> Result<(NextBarScores, Vec<f64>)> {
    let mut player = BandPlayer::new(model)?;
    player.options = opts.clone();
    let mut song: *const Clip = std::ptr::null();
    let mut fed = 0u32;
    let mut last: Vec<Note> = Vec::new();
    let mut times = Vec::new();
    let mut failure = None;
    let scores = score_next_bar_in_song(songs, |clip, _, _, bar| {
        if !std::ptr::eq(song, clip) {
            song = clip;
            fed = 0;
            if let Err(e) = player.reset() {
                failure.get_or_insert(e);
            }
        }
        while fed < bar {
            let played = only_roles(&clip.window(fed, 1), heard);
            let tick = Instant::now();
            last = match player.next_bar(&played) {
                Ok(c) => c.notes,
                Err(e) => {
                    failure.get_or_insert(e);
                    Vec::new()
                }
            };
            times.push(tick.elapsed().as_secs_f64());
            fed += 1;
        }
        last.clone()
    });
    match failure {
        Some(e) => Err(e),
        None => Ok((scores, times)),
    }
}

/// The live player's F1 (melody heard, its own accompaniment fed back) at each density, and the
/// density with the best F1. Meant for the valid split: the test split only reports.
pub fn choose_density(
    model: &BandModel,
    songs: &[Song],
    densities: &[f32],
    base: &PlayOptions,
) -> Result<(f32, Vec<(f32, NextBarScores)>)> {
    let mut rows = Vec::new();
    for &density in densities {
        let opts = PlayOptions {
            density,
            ..base.clone()
        };
        let (scores, _) = score_player(model, songs, &[TrackRole::Melody], &opts)?;
        rows.push((density, scores));
    }
    let best = rows
        .iter()
        .max_by(|a, b| a.1.f1.total_cmp(&b.1.f1))
        .map_or(base.density, |r| r.0);
    Ok((best, rows))
}

/// Next-bar accompaniment scores over a set of songs .
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NextBarScores {
    pub bars: usize,
    /// Note-level (same step and pitch) precision, recall and F1 against the true next bar.
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Share of predicted notes whose pitch class belongs to the true chord of that bar.
    pub chord_tone_ratio: f64,
}

/// Score next-bar predictions on every bar (after the first) of the 4/4 songs with a melody
/// and an accompaniment: `predict(melody of the previous bar, accompaniment of the previous bar)`
/// gives the accompaniment notes of the bar.
pub fn score_next_bar(
    songs: &[Song],
    mut predict: impl FnMut(&Clip, &[Note]) -> Vec<Note>,
) -> NextBarScores {
    score_next_bar_in_song(songs, |_, prev_melody, prev_acc, _| {
        predict(prev_melody, prev_acc)
    })
}

/// [`score_next_bar`] for predictors with a memory: `predict(song clip, melody of the previous
/// bar, accompaniment of the previous bar, index of the bar to predict)` is called for the
/// scored bars of each song in order (bars without a true accompaniment are skipped; the
/// predictor may read the song's bars before the one it predicts).
pub fn score_next_bar_in_song(
    songs: &[Song],
    mut predict: impl FnMut(&Clip, &Clip, &[Note], u32) -> Vec<Note>,
) -> NextBarScores {
    let (mut hits, mut predicted, mut truth, mut chord_tones, mut bars) = (0, 0, 0, 0, 0);
    for song in songs {
        let clip = &song.clip;
        if clip.steps_per_bar() != 16 || !clip.meter_changes.is_empty() {
            continue;
        }
        let split = |w: &Clip| -> (Clip, Vec<Note>) {
            let mut melody = w.clone();
            melody.notes.retain(|n| is_role(w, n, TrackRole::Melody));
            let acc = w
                .notes
                .iter()
                .filter(|n| is_role(w, n, TrackRole::Accompaniment))
                .copied()
                .collect();
            (melody, acc)
        };
        for bar in 1..clip.bars {
            let (prev_melody, prev_acc) = split(&clip.window(bar - 1, 1));
            let (_, true_acc) = split(&clip.window(bar, 1));
            if true_acc.is_empty() {
                continue;
            }
            bars += 1;
            let guess = predict(clip, &prev_melody, &prev_acc, bar);
            let chord = estimate_chord(&pitch_class_weights(true_acc.iter()));
            predicted += guess.len();
            truth += true_acc.len();
            hits += guess
                .iter()
                .filter(|g| {
                    true_acc
                        .iter()
                        .any(|t| t.start == g.start && t.pitch == g.pitch)
                })
                .count();
            chord_tones += guess
                .iter()
                .filter(|g| chord.is_some_and(|c| c.contains(g.pitch)))
                .count();
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (precision, recall) = (ratio(hits, predicted), ratio(hits, truth));
    NextBarScores {
        bars,
        precision,
        recall,
        f1: if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        },
        chord_tone_ratio: ratio(chord_tones, predicted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::part_fit;
    use crate::evaluation::test_music::quarters_over_chords;
    use crate::music::Track;

    /// A song of `bars` bars: a melody note a beat (track 0) over a chord a bar (track 1),
    /// bar `b`'s chord on root 48 + b % 3; bar 9 has no chord.
    fn song(bars: u32) -> Song {
        let clip = quarters_over_chords(
            bars,
            ("Chords", TrackRole::Accompaniment),
            |_, beat| 72 + beat as u8,
            |bar| match bar {
                9 => Vec::new(),
                _ => [0, 4, 7].map(|p| 48 + (bar % 3) as u8 + p).to_vec(),
            },
        );
        Song::new("tune", clip)
    }

    #[test]
    fn next_bar_cases_ask_for_the_chords_of_the_last_bar_and_the_copy_repeats_bar_7() {
        let songs = [song(12)];
        let windows = next_bar_windows(&songs, 100, 0);
        // Bars 8–12 end a window, but bar 10 (index 9) has no chord to answer.
        let mut firsts: Vec<u32> = windows.iter().map(|w| w.first_bar).collect();
        firsts.sort();
        assert_eq!(firsts, [0, 1, 3, 4]);
        let w = windows.iter().find(|w| w.first_bar == 1).unwrap();
        let case = next_bar_case(w);
        assert_eq!(case.id, "tune:1");
        assert_eq!(case.truth.bars, NEXT_BAR_WINDOW);
        assert_eq!(case.region.steps, 112..128);
        assert_eq!(case.roles(), vec![TrackRole::Accompaniment]);
        // The hole is bar 9's triad (root 48 + 8 % 3); bar 8's melody stays given.
        let hole: Vec<u8> = case.truth_part().iter().map(|n| n.pitch).collect();
        assert_eq!(hole, [50, 54, 57]);
        let context = case.context();
        assert_eq!(context.notes.len(), 8 * 4 + 7 * 3);
        assert!(context.notes.iter().any(|n| n.start >= 112 && n.track == 0));
        // The copy is bar 8's triad (root 48 + 7 % 3) moved one bar on, the context kept.
        let copy = copy_output(Task::NextBar, &case);
        let copied: Vec<(u32, u8)> = case
            .generated(&copy)
            .iter()
            .map(|n| (n.start, n.pitch))
            .collect();
        assert_eq!(copied, [(112, 49), (112, 53), (112, 56)]);
        let scores = part_fit::score(&case, &copy, &part_fit::parts(&case.roles()));
        let get = |name: &str| scores.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(get("all: given notes kept"), Some(1.0));
        assert_eq!(get("all: density ratio"), Some(1.0));
    }

    #[test]
    fn tune_cases_regenerate_their_region_and_the_copies_keep_the_context() {
        let songs = [song(20)];
        let tunes = tune_windows(&songs);
        assert_eq!(tunes.len(), 1);
        let (id, tune) = &tunes[0];
        assert_eq!(tune.bars, TUNE_BARS);
        let cont = tune_case(Task::Continue, id, tune);
        assert_eq!(cont.region.steps, 64..256);
        assert!(cont.context().notes.iter().all(|n| n.start < 64));
        assert_eq!(
            cont.roles(),
            vec![TrackRole::Melody, TrackRole::Accompaniment]
        );
        // The looped prompt: bars 1–4 three times over.
        let looped = cont.generated(&copy_output(Task::Continue, &cont));
        assert_eq!(looped.len(), 3 * (cont.context().notes.len()));
        assert!(looped.iter().all(|n| (64..256).contains(&n.start)));
        let fill = tune_case(Task::FillChords, id, tune);
        assert!(fill.context().notes.iter().all(|n| n.track == 0));
        assert_eq!(fill.truth_part().len(), 15 * 3);
        let doubled = fill.generated(&copy_output(Task::FillChords, &fill));
        assert_eq!(doubled.len(), 16 * 4);
        assert!(doubled.iter().all(|n| n.track == 1 && n.pitch < 72));
        // A model's clip on its own track order lands on the case's tracks, region only.
        let mut out = Clip::new(TUNE_BARS);
        out.tracks = vec![
            Track::new("chords", TrackRole::Accompaniment, 1),
            Track::new("melody", TrackRole::Melody, 0),
        ];
        out.notes = vec![Note::new(0, 50, 4, 90, 0), Note::new(0, 70, 4, 90, 1)];
        let placed = fill.generated(&on_case_tracks(&fill, &out));
        assert_eq!(placed.len(), 1);
        assert_eq!((placed[0].pitch, placed[0].track), (50, 1));
    }
}
