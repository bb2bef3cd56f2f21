//! Clip-level tasks on top of the roll diffusion: fill any mask, continue, harmonize, vary,
//! generate.
//!
//! Guarantees and documented behaviour:
//! - Notes whose first cell is outside the mask (or on another track than `mask.track`) come
//!   back exactly unchanged; generated notes only start in masked cells.
//! - Clips longer than the model's 4-bar window are sampled window by window (hop 2 bars);
//!   each window commits its first half and the next window sees it as context.
//!   Clips shorter than 4 bars are padded with free cells that are generated and dropped.
//! - The model's pitch window (32–95 for the shipped model) is moved by whole octaves to hold
//!   most of the clip's notes; masked cells outside it are left as they are, and a mask with no
//!   cell inside it is an error.
//! - Only 4/4 clips: other meters are an error (the model was trained on 4/4 bars of 16 steps).
//! - A fill or continuation may start from the bars just before the free region, repeated
//!   across it and noised to step `echo · T` ([`RollOptions::echo`], the model's
//!   calibration by default), and is denoised from there like a variation; with no bars or no
//!   notes before the region it starts from noise.
//! - Generated notes go to `mask.track` when set, else to the clip's only pitched track, else to
//!   a new "Generated" track; their velocities follow the surrounding notes.

use anyhow::{Result, bail};

use super::model::RollModel;
use super::part_tasks;
use super::regenerate::free_channel;
use super::regenerate::regenerate_window_by_window;
pub use super::regenerate::{PartTarget, RollOptions, StepHook, regenerate_part};
use crate::models::roll::Config;
use crate::music::{Clip, Mask, Track, TrackRole};

/// The engine of every task: regenerate the masked cells, fresh (`strength` None) or as a
/// variation of the current content. A parts model regenerates every target track in turn
/// ([`part_tasks::targets`]: melody first; seeds differ per part; the steps shared among the
/// tracks, [`crate::settings::steps_per_part`]; a clip with no pitched track gets a "Generated"
/// track); any other model samples the merged roll window by window.
pub fn regenerate(
    model: &RollModel,
    clip: &Clip,
    mask: &Mask,
    strength: Option<f32>,
    opts: &RollOptions,
) -> Result<Clip> {
    if !model.config().parts {
        return regenerate_window_by_window(model, clip, mask, None, strength, opts);
    }
    let mut clip = clip.clone();
    if !clip.tracks.iter().any(|t| t.role != TrackRole::Drums) {
        let channel = free_channel(&clip);
        clip.add_track(Track::new("Generated", TrackRole::Accompaniment, channel));
    }
    let targets = part_tasks::targets(&clip, mask)?;
    let opts = RollOptions {
        steps: crate::settings::steps_per_part(opts.steps, targets.len()),
        ..opts.clone()
    };
    part_tasks::run_targets(model, &clip, mask, &targets, strength, &opts)
}

/// Regenerate the masked cells of `clip`.
///
/// A fill of one track under other tracks' notes (an accompaniment written to a given melody
/// after the bars before it) takes the harmonization's density and guidance, and the
/// accompaniment's echo ([`fill_echo`]).
pub fn fill(model: &RollModel, clip: &Clip, mask: &Mask, opts: &RollOptions) -> Result<Clip> {
    let cfg = model.config();
    let (density, guidance) = if accompanies(clip, mask) {
        (cfg.density.harmonize, cfg.guidance.harmonize)
    } else {
        (cfg.density.fill, cfg.guidance.fill)
    };
    let opts = calibrated(
        opts,
        density,
        guidance,
        fill_echo(cfg, clip, mask, opts.seed),
    );
    regenerate(model, clip, mask, None, &opts)
}

/// The calibrated echo strength of [`fill`] on `clip` and `mask` with sampling seed `seed`: the
/// accompaniment's when the mask is one track under other tracks' notes, else the fill's
/// ([`EchoCalibration::fill_for`](crate::models::roll::EchoCalibration::fill_for)).
pub fn fill_echo(cfg: &Config, clip: &Clip, mask: &Mask, seed: u64) -> f32 {
    if accompanies(clip, mask) {
        cfg.echo.accompaniment()
    } else {
        cfg.echo.fill_for(seed)
    }
}

/// Whether `mask` rewrites one track while another pitched track sounds in a masked step.
fn accompanies(clip: &Clip, mask: &Mask) -> bool {
    let Some(target) = mask.track else {
        return false;
    };
    let masked: Vec<u32> = mask.masked_steps().collect();
    clip.notes.iter().any(|n| {
        n.track != target
            && clip
                .tracks
                .get(n.track as usize)
                .is_some_and(|t| !t.is_drums())
            && masked
                .iter()
                .any(|&s| s >= n.start && s < n.start + n.length)
    })
}

/// `opts` with the density multiplied by a task's calibration factor, and the task's
/// guidance weight and echo strength unless the caller chose them.
fn calibrated(opts: &RollOptions, factor: f32, guidance: f32, echo: f32) -> RollOptions {
    RollOptions {
        density: opts.density * factor,
        guidance: Some(opts.guidance.unwrap_or(guidance)),
        echo: Some(opts.echo.unwrap_or(echo)),
        ..opts.clone()
    }
}

/// A variation of the masked part: start from the clip's own notes noised to step
/// `strength · T` (0 < strength ≤ 1; 1 is a fresh fill) and denoise.
pub fn vary(
    model: &RollModel,
    clip: &Clip,
    mask: &Mask,
    strength: f32,
    opts: &RollOptions,
) -> Result<Clip> {
    if !(strength > 0.0 && strength <= 1.0) {
        bail!("vary: strength {strength} must be in (0, 1]");
    }
    let cfg = model.config();
    let opts = calibrated(opts, cfg.density.fill, cfg.guidance.fill, 0.0);
    regenerate(model, clip, mask, Some(strength), &opts)
}

/// Keep the first `prompt_bars` bars and rewrite bars `prompt_bars..total_bars` (the clip grows
/// to `total_bars` when shorter; bars after `total_bars` of a longer clip stay as context).
pub fn continue_clip(
    model: &RollModel,
    clip: &Clip,
    prompt_bars: u32,
    total_bars: u32,
    opts: &RollOptions,
) -> Result<Clip> {
    if prompt_bars == 0 {
        bail!("continue: the prompt needs at least one bar");
    }
    if total_bars <= prompt_bars {
        bail!(
            "continue: {total_bars} bars in total leaves nothing after the {prompt_bars}-bar prompt"
        );
    }
    if prompt_bars > clip.bars {
        bail!(
            "continue: the prompt of {prompt_bars} bars is longer than the clip ({} bars)",
            clip.bars
        );
    }
    let mut grown = clip.clone();
    grown.bars = total_bars.max(clip.bars);
    let mask = Mask::bars(&grown, prompt_bars..=total_bars - 1);
    let cfg = model.config();
    let opts = calibrated(
        opts,
        cfg.density.fill,
        cfg.guidance.fill,
        cfg.echo.fill_for(opts.seed),
    );
    let mut out = regenerate(model, &grown, &mask, None, &opts)?;
    out.bars = total_bars.max(clip.bars);
    Ok(out)
}

/// Write an accompaniment to everything in the clip: into track `target` (its notes replaced)
/// or a new "Harmony" track. Every other track stays exactly as it is.
pub fn harmonize(
    model: &RollModel,
    clip: &Clip,
    target: Option<u16>,
    opts: &RollOptions,
) -> Result<Clip> {
    let cfg = model.config();
    // A harmonization has no accompaniment before it to echo.
    let opts = calibrated(opts, cfg.density.harmonize, cfg.guidance.harmonize, 0.0);
    if cfg.parts {
        return part_tasks::harmonize_parts(model, clip, target, &opts);
    }
    if !clip.notes.iter().any(|n| {
        clip.tracks
            .get(n.track as usize)
            .is_some_and(|t| !t.is_drums())
    }) {
        bail!("harmonize: the clip has no pitched notes to harmonize");
    }
    let mut base = clip.clone();
    let target = match target {
        Some(t) => t,
        None => {
            let channel = free_channel(clip);
            base.add_track(Track::new("Harmony", TrackRole::Accompaniment, channel))
        }
    };
    let mut mask = Mask::all(base.steps());
    mask.track = Some(target);
    regenerate(model, &base, &mask, None, &opts)
}

/// A new clip of `bars` bars of 4/4 at 120 BPM: on one piano track, or for a parts model a
/// melody, chords and a bass.
pub fn generate(model: &RollModel, bars: u32, opts: &RollOptions) -> Result<Clip> {
    if bars == 0 {
        bail!("generate: ask for at least one bar");
    }
    let clip = Clip::new(bars);
    let mask = Mask::all(clip.steps());
    // Nothing is known: guidance would change nothing.
    let opts = calibrated(opts, model.config().density.generate, 0.0, 0.0);
    if model.config().parts {
        return part_tasks::generate_parts(model, bars, &opts);
    }
    regenerate(model, &clip, &mask, None, &opts)
}

#[cfg(test)]
mod tests {
    use super::super::regenerate::{echo_content, octave_shift};
    use super::*;
    use crate::music::Note;

    fn melody_clip(pitches: &[u8]) -> Clip {
        let mut clip = Clip::new(4);
        let track = clip.add_track(Track::new("Melody", TrackRole::Melody, 0));
        for (i, &p) in pitches.iter().enumerate() {
            clip.notes.push(Note::new(i as u32 * 2, p, 2, 90, track));
        }
        clip
    }

    /// `echo_content` on 4 bars of 16 steps × 4 pitches (lowest 60) with these free steps.
    fn echo_of(notes: &[Note], free_steps: std::ops::Range<usize>) -> Option<Vec<f32>> {
        let (len, pitches) = (64usize, 4usize);
        let plane = len * pitches;
        let free: Vec<bool> = (0..plane)
            .map(|i| free_steps.contains(&(i / pitches)))
            .collect();
        let draw = |roll: &mut [f32], n: &Note| {
            let o = (n.pitch - 60) as usize;
            roll[n.start as usize * pitches + o] = 1.0;
            for s in n.start..n.end() {
                roll[plane + s as usize * pitches + o] = 1.0;
            }
        };
        echo_content(notes.iter(), &free, len, pitches, 16, &draw)
    }

    #[test]
    fn a_fill_of_one_track_under_another_tracks_notes_is_an_accompaniment() {
        let mut clip = melody_clip(&[60, 62, 64, 65]); // steps 0–7
        let melody = clip.track_with_role(TrackRole::Melody).unwrap();
        let accompaniment =
            clip.add_track(Track::new("Accompaniment", TrackRole::Accompaniment, 1));
        let on_track = |bars, track| {
            let mut mask = Mask::bars(&clip, bars);
            mask.track = track;
            mask
        };
        assert!(accompanies(&clip, &on_track(0..=0, Some(accompaniment))));
        // Every track rewritten, the hole after the melody, or the melody's own track.
        assert!(!accompanies(&clip, &on_track(0..=0, None)));
        assert!(!accompanies(&clip, &on_track(1..=3, Some(accompaniment))));
        assert!(!accompanies(&clip, &on_track(0..=3, Some(melody))));
        // The accompaniment takes its own echo strength; an older config has only the fill's.
        let mut cfg = crate::models::roll::Config::fast();
        cfg.echo.fill = 0.7;
        cfg.echo.accompaniment = Some(0.3);
        assert_eq!(
            fill_echo(&cfg, &clip, &on_track(0..=0, Some(accompaniment)), 0),
            0.3
        );
        assert_eq!(fill_echo(&cfg, &clip, &on_track(0..=0, None), 0), 0.7);
        // With a range, a fill of every track draws its strength from it; an accompaniment
        // keeps its own.
        cfg.echo.fill_range = Some([0.4, 1.0]);
        for seed in 0..20 {
            let e = fill_echo(&cfg, &clip, &on_track(0..=0, None), seed);
            assert!((0.4..1.0).contains(&e) && e == cfg.echo.fill_for(seed));
            assert_eq!(
                fill_echo(&cfg, &clip, &on_track(0..=0, Some(accompaniment)), seed),
                0.3
            );
        }
        cfg.echo.fill_range = None;
        cfg.echo.accompaniment = None;
        assert_eq!(
            fill_echo(&cfg, &clip, &on_track(0..=0, Some(accompaniment)), 0),
            0.7
        );
    }

    #[test]
    fn an_echo_repeats_the_bars_before_the_hole_across_it() {
        let pitches = 4;
        let onset = |c: &[f32], step: usize, o: usize| c[step * pitches + o];
        let sustain = |c: &[f32], step: usize, o: usize| c[64 * pitches + step * pitches + o];
        // Bars 3–4 free: bars 1–2 echoed once (a note in bar 1, one in bar 2).
        let notes = [Note::new(2, 61, 3, 90, 0), Note::new(20, 63, 1, 90, 0)];
        let c = echo_of(&notes, 32..64).unwrap();
        assert_eq!(onset(&c, 34, 1), 1.0);
        assert_eq!(
            (sustain(&c, 34, 1), sustain(&c, 36, 1), sustain(&c, 37, 1)),
            (1.0, 1.0, 0.0)
        );
        assert_eq!(onset(&c, 52, 3), 1.0);
        assert_eq!(c.iter().filter(|&&x| x > 0.0).count(), 2 + 4);
        // Bars 2–4 free after one bar: that bar repeats three times.
        let c = echo_of(&notes[..1], 16..64).unwrap();
        for bar in 1..4 {
            assert_eq!(onset(&c, bar * 16 + 2, 1), 1.0);
        }
        // A hole inside a bar echoes the whole bar before: step 40 of bar 3 takes step 24.
        let c = echo_of(&[Note::new(24, 60, 1, 90, 0)], 40..41).unwrap();
        assert_eq!(onset(&c, 40, 0), 1.0);
        // Nothing before the hole, or nothing on its free cells: no echo.
        assert!(echo_of(&notes, 0..64).is_none());
        assert!(echo_of(&[], 32..64).is_none());
        assert!(echo_of(&[Note::new(0, 60, 1, 90, 0)], 33..64).is_none());
    }

    #[test]
    fn the_window_moves_by_an_octave_only_when_many_notes_leave_it() {
        // Window 32..=95. A melody whose 2 top notes of 30 leave it stays where it is (the
        // model places what it writes by absolute pitch).
        let mut pitches: Vec<u8> = (0..28).map(|i| 70 + (i % 20) as u8).collect();
        pitches.extend([97, 98]);
        assert_eq!(octave_shift(&melody_clip(&pitches), 32, 64), 0);
        // Half of them above: one octave down (the window one octave up).
        let high: Vec<u8> = (0..30).map(|i| 85 + (i % 20) as u8).collect();
        assert_eq!(octave_shift(&melody_clip(&high), 32, 64), -1);
        // All far below: up by two octaves (the most the MIDI range leaves: window 8..=71).
        let low: Vec<u8> = (0..30).map(|i| 12 + (i % 10) as u8).collect();
        assert_eq!(octave_shift(&melody_clip(&low), 32, 64), 2);
        assert_eq!(octave_shift(&Clip::new(2), 32, 64), 0);
    }
}
