//! Evaluation of the band model on Nottingham (band-player issue): next-bar scores of the live
//! player, the density chosen on the valid split, 16-bar continuations from 4-bar prompts and
//! voice fill, each against simple baselines.

use anyhow::Result;
use std::time::Instant;

use super::player::{BandModel, BandPlayer, PlayOptions, continue_clip, fill_track};
use super::{NextBarScores, estimate_chord, pitch_class_weights, score_next_bar_in_song};
use crate::data::Song;
use crate::metrics::eval::{SET_SUMMARY_COLUMNS, SetSummary};
use crate::music::{Clip, Note, TrackRole};

/// Bars of a prompt and of a whole continuation.
pub const PROMPT_BARS: u32 = 4;
pub const TUNE_BARS: u32 = 16;

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

/// Score the live player on `songs`: it hears bar by bar (the tracks of `heard`, its own
/// answers standing in for the tracks it plays) and answers the accompaniment of the next bar.
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

/// The first [`TUNE_BARS`] bars of every 4/4 tune without meter changes that has a melody and
/// an accompaniment in them.
pub fn tunes(songs: &[Song]) -> Vec<Clip> {
    songs
        .iter()
        .map(|s| &s.clip)
        .filter(|c| c.steps_per_bar() == 16 && c.meter_changes.is_empty() && c.bars >= TUNE_BARS)
        .map(|c| c.window(0, TUNE_BARS))
        .filter(|c| {
            [TrackRole::Melody, TrackRole::Accompaniment]
                .iter()
                .all(|&r| {
                    c.track_with_role(r)
                        .is_some_and(|t| c.track_notes(t).next().is_some())
                })
        })
        .collect()
}

/// One row of the continuation and voice-fill tables.
#[derive(Clone, Debug)]
pub struct SetRow {
    pub task: String,
    pub method: String,
    pub clips: usize,
    /// Against the true parts as a set (Yang–Lerch, Mittal et al.).
    pub summary: SetSummary,
    /// Note-level F1 (same step and pitch) against the true part of the same tune.
    pub f1: f64,
    /// Share of generated notes in the true chord of their bar (from the true accompaniment).
    pub chord_tone_ratio: f64,
}

/// Note-level F1 of `generated` against `truth` (clip by clip, pooled), and the share of
/// generated notes in the true chord of their bar (read from `chords`, one clip per tune).
fn match_scores(generated: &[Clip], truth: &[Clip], chords: &[Clip]) -> (f64, f64) {
    let (mut hits, mut predicted, mut real, mut chord_tones) = (0usize, 0usize, 0usize, 0usize);
    for ((g, t), c) in generated.iter().zip(truth).zip(chords) {
        predicted += g.notes.len();
        real += t.notes.len();
        hits += g
            .notes
            .iter()
            .filter(|n| {
                t.notes
                    .iter()
                    .any(|m| m.start == n.start && m.pitch == n.pitch)
            })
            .count();
        let spb = c.steps_per_bar();
        let bar_chords: Vec<_> = (0..c.bars)
            .map(|b| estimate_chord(&pitch_class_weights(c.window(b, 1).notes.iter())))
            .collect();
        chord_tones += g
            .notes
            .iter()
            .filter(|n| {
                bar_chords
                    .get((n.start / spb) as usize)
                    .copied()
                    .flatten()
                    .is_some_and(|ch| ch.contains(n.pitch))
            })
            .count();
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (p, r) = (ratio(hits, predicted), ratio(hits, real));
    let f1 = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    (f1, ratio(chord_tones, predicted))
}

fn set_row(
    task: &str,
    method: &str,
    generated: &[Clip],
    truth: &[Clip],
    chords: &[Clip],
) -> SetRow {
    let (f1, chord_tone_ratio) = match_scores(generated, truth, chords);
    SetRow {
        task: task.to_string(),
        method: method.to_string(),
        clips: generated.len(),
        summary: SetSummary::compare(truth, generated),
        f1,
        chord_tone_ratio,
    }
}

/// Bars `PROMPT_BARS..TUNE_BARS` of each clip (the continued part), melody and accompaniment.
fn continued_part(clip: &Clip) -> Clip {
    only_roles(
        &clip.window(PROMPT_BARS, TUNE_BARS - PROMPT_BARS),
        &[TrackRole::Melody, TrackRole::Accompaniment],
    )
}

/// 16-bar continuations of 4-bar prompts (both tracks given, both continued), scored on bars
/// 5–16 against the true bars 5–16: the model, the prompt looped, and the prompt's last bar
/// repeated.
pub fn continuation_rows(
    model: &BandModel,
    tunes: &[Clip],
    opts: &PlayOptions,
) -> Result<Vec<SetRow>> {
    let truth: Vec<Clip> = tunes.iter().map(continued_part).collect();
    let chords: Vec<Clip> = truth
        .iter()
        .map(|c| only_roles(c, &[TrackRole::Accompaniment]))
        .collect();
    let mut generated = Vec::with_capacity(tunes.len());
    for tune in tunes {
        let prompt = tune.window(0, PROMPT_BARS);
        let out = continue_clip(model, &prompt, TUNE_BARS - PROMPT_BARS, opts)?;
        generated.push(continued_part(&out));
    }
    let looped = |bars_of_prompt: u32| -> Vec<Clip> {
        tunes
            .iter()
            .map(|tune| {
                let source = tune.window(PROMPT_BARS - bars_of_prompt, bars_of_prompt);
                let mut out = Clip {
                    notes: Vec::new(),
                    bars: TUNE_BARS - PROMPT_BARS,
                    ..source.clone()
                };
                let spb = source.steps_per_bar();
                for k in 0..(TUNE_BARS - PROMPT_BARS).div_ceil(bars_of_prompt) {
                    let offset = k * bars_of_prompt * spb;
                    out.notes.extend(source.notes.iter().map(|n| Note {
                        start: n.start + offset,
                        ..*n
                    }));
                }
                let end = out.steps();
                out.notes.retain(|n| n.start < end);
                only_roles(&out, &[TrackRole::Melody, TrackRole::Accompaniment])
            })
            .collect()
    };
    let task = "continue 4 → 16 bars (bars 5–16)";
    Ok(vec![
        set_row(
            task,
            "RMVAE (both tracks, autoregressive)",
            &generated,
            &truth,
            &chords,
        ),
        set_row(
            task,
            "loop the 4-bar prompt",
            &looped(PROMPT_BARS),
            &truth,
            &chords,
        ),
        set_row(
            task,
            "repeat the prompt's last bar",
            &looped(1),
            &truth,
            &chords,
        ),
    ])
}

/// Regenerate the track of `role` in every tune from the other track (the seed's fill), scored
/// against the true track: the model, and the same track of the tunes `others` (real music
/// that does not belong to these tunes: pass another split, so that the set metrics compare two
/// different sets).
pub fn voice_fill_rows(
    model: &BandModel,
    tunes: &[Clip],
    others: &[Clip],
    role: TrackRole,
    opts: &PlayOptions,
) -> Result<Vec<SetRow>> {
    if others.is_empty() {
        anyhow::bail!("voice fill needs other tunes for its baseline");
    }
    let k = model
        .config()
        .track_of(role)
        .ok_or_else(|| anyhow::anyhow!("the band model has no {} track", role.name()))?;
    let truth: Vec<Clip> = tunes.iter().map(|t| only_roles(t, &[role])).collect();
    let chords: Vec<Clip> = tunes
        .iter()
        .map(|t| only_roles(t, &[TrackRole::Accompaniment]))
        .collect();
    let mut generated = Vec::with_capacity(tunes.len());
    for tune in tunes {
        let both = only_roles(tune, &[TrackRole::Melody, TrackRole::Accompaniment]);
        generated.push(only_roles(&fill_track(model, &both, k, opts)?, &[role]));
    }
    let other: Vec<Clip> = (0..truth.len())
        .map(|i| only_roles(&others[i % others.len()], &[role]))
        .collect();
    let task = format!("fill the {} (16 bars)", role.name());
    Ok(vec![
        set_row(
            &task,
            "RMVAE, from the other track",
            &generated,
            &truth,
            &chords,
        ),
        set_row(
            &task,
            "the same track of another tune (valid split)",
            &other,
            &truth,
            &chords,
        ),
    ])
}

/// The rows as a markdown table.
pub fn table(rows: &[SetRow]) -> String {
    let mut out = format!(
        "| task | method | tunes | {SET_SUMMARY_COLUMNS} | note F1 | chord-tone ratio |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} | {:.3} |\n",
            r.task,
            r.method,
            r.clips,
            r.summary.cells(),
            r.f1,
            r.chord_tone_ratio,
        ));
    }
    out
}
