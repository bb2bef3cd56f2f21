//! The tasks on a parts model ([`Config::parts`](crate::models::roll::Config::parts)): every
//! request regenerates chosen tracks, one part after another, each hearing the others, and every
//! generated note lands on the track it was written for.
//!
//! - Order: melody, counter-melodies, bass, accompaniment (the lead first; the accompaniment
//!   last, hearing everything). A part regenerated later in the same request is hidden from
//!   the earlier ones where the mask covers it.
//! - A melody or bass comes back as one voice, inside its register (the pitches of its notes
//!   outside the mask, 3 semitones either side, when it has at least 4 of them).
//! - Tracks outside the request, drums and notes outside the mask come back exactly.
//! - A fill, continuation or variation shares its network evaluations (`RollOptions::steps`)
//!   among the tracks it rewrites ([`crate::settings::steps_per_part`], applied by
//!   [`regenerate`](super::tasks::regenerate)): on the valid split an every-track fill scores
//!   alike at 4 and 12 evaluations per part (docs/experiments/roll.md), and sharing keeps a fill
//!   of three tracks quick. Generate and harmonize, which have less to go on, give every part
//!   the full steps.

use std::ops::RangeInclusive;

use anyhow::{Result, bail};

use super::model::RollModel;
use super::parts::{part_roles, split_lowest_line};
use super::regenerate::{PartTarget, RollOptions, free_channel, regenerate_part};
use crate::models::roll::PartRole;
use crate::music::{Clip, Mask, Note, Track, TrackRole};

/// Widening of a line's register on each side, in semitones.
const REGISTER_MARGIN: u8 = 3;
/// Notes a line needs outside the mask before its register steers what is written.
const REGISTER_NOTES: usize = 4;

/// Generation order of a role (lower first).
fn order(role: PartRole) -> u8 {
    match role {
        PartRole::Melody => 0,
        PartRole::CounterMelody => 1,
        PartRole::Bass => 2,
        PartRole::Accompaniment => 3,
    }
}

/// The tracks `mask` regenerates with their roles, in generation order: `mask.track` alone when
/// set; else every pitched track with a note starting in a masked cell, or every pitched track
/// when none has (an empty region is written for each part).
pub fn targets(clip: &Clip, mask: &Mask) -> Result<Vec<(u16, PartRole)>> {
    let roles = part_roles(clip);
    let role_of = |t: u16| roles.get(t as usize).copied().flatten();
    let mut out: Vec<(u16, PartRole)> = match mask.track {
        Some(t) => {
            let Some(track) = clip.tracks.get(t as usize) else {
                bail!(
                    "the mask names track {} but the clip has {} tracks",
                    t + 1,
                    clip.tracks.len()
                );
            };
            match role_of(t) {
                Some(role) => vec![(t, role)],
                None => bail!(
                    "track {} ('{}') is a drum track; the roll model writes pitched notes",
                    t + 1,
                    track.name
                ),
            }
        }
        None => {
            let pitched: Vec<(u16, PartRole)> = (0..clip.tracks.len() as u16)
                .filter_map(|t| role_of(t).map(|r| (t, r)))
                .collect();
            let touched: Vec<(u16, PartRole)> = pitched
                .iter()
                .copied()
                .filter(|&(t, _)| clip.track_notes(t).any(|n| mask.get(n.start, n.pitch)))
                .collect();
            if touched.is_empty() { pitched } else { touched }
        }
    };
    out.sort_by_key(|&(t, r)| (order(r), t));
    Ok(out)
}

/// The register of line `track`: its notes outside `mask`, widened by [`REGISTER_MARGIN`];
/// `None` with fewer than [`REGISTER_NOTES`] of them.
fn register(clip: &Clip, track: u16, mask: &Mask) -> Option<RangeInclusive<u8>> {
    let pitches: Vec<u8> = clip
        .track_notes(track)
        .filter(|n| !mask.get(n.start, n.pitch))
        .map(|n| n.pitch)
        .collect();
    if pitches.len() < REGISTER_NOTES {
        return None;
    }
    let lo = pitches.iter().min()?.saturating_sub(REGISTER_MARGIN);
    let hi = pitches
        .iter()
        .max()?
        .saturating_add(REGISTER_MARGIN)
        .min(127);
    Some(lo..=hi)
}

/// `opts` for one part: a line's register narrows the pitch range (the user's range wins when
/// the two do not meet).
fn part_options(
    clip: &Clip,
    track: u16,
    role: PartRole,
    mask: &Mask,
    opts: &RollOptions,
) -> RollOptions {
    let reg = role
        .is_line()
        .then(|| register(clip, track, mask))
        .flatten();
    let pitch_range = match (&opts.pitch_range, reg) {
        (Some(user), Some(reg)) => {
            let (lo, hi) = (*user.start().max(reg.start()), *user.end().min(reg.end()));
            Some(if lo <= hi { lo..=hi } else { user.clone() })
        }
        (user, reg) => user.clone().or(reg),
    };
    RollOptions {
        pitch_range,
        ..opts.clone()
    }
}

/// Run `targets` in turn, each pass with `opts.steps` evaluations. An accompaniment in a clip
/// without a bass part is generated as the model learned POP909's piano: its lowest line first
/// (as a bass, on a helper track that holds the track's current lowest line), then the rest
/// hearing it; both land on the accompaniment's track.
pub(super) fn run_targets(
    model: &RollModel,
    clip: &Clip,
    mask: &Mask,
    targets: &[(u16, PartRole)],
    strength: Option<f32>,
    opts: &RollOptions,
) -> Result<Clip> {
    let has_bass = part_roles(clip).contains(&Some(PartRole::Bass));
    let mut out = clip.clone();
    let mut expanded: Vec<(u16, PartRole)> = Vec::new();
    // (helper track, the accompaniment track it belongs to)
    let mut helpers: Vec<(u16, u16)> = Vec::new();
    for &(track, role) in targets {
        if role == PartRole::Accompaniment && !has_bass && helpers.is_empty() {
            let notes: Vec<Note> = out.track_notes(track).copied().collect();
            let (bass, _) = split_lowest_line(&notes, LOWEST_LINE_BELOW);
            let channel = out.tracks[track as usize].channel;
            let helper = out.add_track(Track::new("lowest line", TrackRole::Bass, channel));
            for n in out.notes.iter_mut() {
                if n.track == track
                    && bass
                        .iter()
                        .any(|b| b.start == n.start && b.pitch == n.pitch)
                {
                    n.track = helper;
                }
            }
            expanded.push((helper, PartRole::Bass));
            helpers.push((helper, track));
        }
        expanded.push((track, role));
    }
    expanded.sort_by_key(|&(t, r)| (order(r), t));
    for (k, &(track, role)) in expanded.iter().enumerate() {
        let part = PartTarget {
            track,
            role,
            pending: expanded[k + 1..].iter().map(|&(t, _)| t).collect(),
        };
        let part_opts = RollOptions {
            seed: opts.seed.wrapping_add(7_919 * k as u64),
            ..part_options(&out, track, role, mask, opts)
        };
        out = regenerate_part(model, &out, mask, &part, strength, &part_opts)?;
    }
    // The helper tracks were added last: fold them back, newest first.
    for &(helper, track) in helpers.iter().rev() {
        for n in out.notes.iter_mut() {
            if n.track == helper {
                n.track = track;
            }
        }
        out.tracks.remove(helper as usize);
    }
    out.sort_notes();
    Ok(out)
}

/// A piano-like part's lowest line lies below this pitch (C4), as in the training data.
const LOWEST_LINE_BELOW: u8 = 60;

/// Write an accompaniment to everything else: into `target` (its notes replaced) or a new
/// "Harmony" track; every other track stays exactly as it is.
pub fn harmonize_parts(
    model: &RollModel,
    clip: &Clip,
    target: Option<u16>,
    opts: &RollOptions,
) -> Result<Clip> {
    let roles = part_roles(clip);
    if !clip
        .notes
        .iter()
        .any(|n| roles.get(n.track as usize).copied().flatten().is_some())
    {
        bail!("harmonize: the clip has no pitched notes to harmonize");
    }
    let mut out = clip.clone();
    let track = match target {
        Some(t) => {
            if roles.get(t as usize).copied().flatten().is_none() {
                bail!(
                    "harmonize: track {} is not a pitched track of this clip",
                    t + 1
                );
            }
            t
        }
        None => {
            let channel = free_channel(&out);
            out.add_track(Track::new("Harmony", TrackRole::Accompaniment, channel))
        }
    };
    let mask = Mask::all(out.steps());
    let targets = [(track, PartRole::Accompaniment)];
    run_targets(model, &out, &mask, &targets, None, opts)
}

/// A new clip of `bars` bars of 4/4 at 120 BPM with a melody, a bass and chords, written in
/// that order.
pub fn generate_parts(model: &RollModel, bars: u32, opts: &RollOptions) -> Result<Clip> {
    let mut clip = Clip::new(bars);
    clip.tracks.clear();
    clip.add_track(Track::new("Melody", TrackRole::Melody, 0));
    clip.add_track(Track::new("Chords", TrackRole::Accompaniment, 1));
    clip.add_track(Track::new("Bass", TrackRole::Bass, 2));
    let mask = Mask::all(clip.steps());
    let targets = targets(&clip, &mask)?;
    run_targets(model, &clip, &mask, &targets, None, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::tasks::{StepHook, fill, generate, harmonize, vary};
    use crate::models::roll::Config;
    use crate::music::Note;
    use crate::settings::{MIN_PART_STEPS, steps_per_part};
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::OnceLock;

    /// A small untrained parts model: what these tests check holds whatever the weights.
    fn model() -> &'static RollModel {
        static MODEL: OnceLock<RollModel> = OnceLock::new();
        MODEL.get_or_init(|| RollModel::random(&Config::fast_parts().narrow(), 3).unwrap())
    }

    fn opts(seed: u64) -> RollOptions {
        RollOptions {
            steps: 4,
            seed,
            density: 0.05,
            ..RollOptions::default()
        }
    }

    /// Four bars: a melody, chords, drums.
    fn song() -> Clip {
        let mut clip = Clip::new(4);
        clip.tracks.clear();
        let m = clip.add_track(Track::new("Melody", TrackRole::Melody, 0));
        let c = clip.add_track(Track::new("Chords", TrackRole::Accompaniment, 1));
        let d = clip.add_track(Track::new("Drums", TrackRole::Drums, 9));
        for i in 0..16u32 {
            clip.notes
                .push(Note::new(i * 4, 72 + (i % 5) as u8, 4, 90, m));
            clip.notes.push(Note::new(i * 4, 36, 1, 100, d));
        }
        for bar in 0..4u32 {
            for p in [48, 52, 55] {
                clip.notes.push(Note::new(bar * 16, p, 16, 70, c));
            }
        }
        clip.sort_notes();
        clip
    }

    fn notes_of(clip: &Clip, track: u16) -> BTreeSet<Note> {
        clip.track_notes(track).copied().collect()
    }

    fn max_voices(clip: &Clip, track: u16) -> usize {
        (0..clip.steps())
            .map(|s| {
                clip.track_notes(track)
                    .filter(|n| n.start <= s && s < n.end())
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_fill_over_every_part_writes_each_part_on_its_own_track() {
        let clip = song();
        let mask = Mask::bars(&clip, 2..=3);
        for seed in 0..3 {
            let out = fill(model(), &clip, &mask, &opts(seed)).unwrap();
            assert_eq!(out.tracks, clip.tracks, "no track added or changed");
            assert_eq!(notes_of(&out, 2), notes_of(&clip, 2), "drums untouched");
            // Outside the mask every note is as it was.
            let kept = |c: &Clip| -> BTreeSet<Note> {
                c.notes.iter().filter(|n| n.start < 32).copied().collect()
            };
            assert_eq!(kept(&out), kept(&clip));
            // The melody stays one voice, in its register (72..=76 ± 3).
            assert!(max_voices(&out, 0) <= 1);
            assert!(out.track_notes(0).all(|n| (69..=79).contains(&n.pitch)));
            // Something was written in the hole for the chords, on the chords' track.
            assert!(out.notes.iter().all(|n| (n.track as usize) < 3));
        }
    }

    #[test]
    fn a_fill_of_one_track_changes_only_that_track() {
        let clip = song();
        let mut mask = Mask::bars(&clip, 1..=2);
        mask.track = Some(0);
        let out = fill(model(), &clip, &mask, &opts(1)).unwrap();
        assert_eq!(notes_of(&out, 1), notes_of(&clip, 1));
        assert_eq!(notes_of(&out, 2), notes_of(&clip, 2));
        assert!(max_voices(&out, 0) <= 1);
        let mut mask = Mask::bars(&clip, 1..=2);
        mask.track = Some(1);
        let out = vary(model(), &clip, &mask, 0.5, &opts(2)).unwrap();
        assert_eq!(notes_of(&out, 0), notes_of(&clip, 0));
        // A drum track is refused with a message.
        mask.track = Some(2);
        let err = fill(model(), &clip, &mask, &opts(1)).unwrap_err();
        assert!(format!("{err:#}").contains("drum"), "{err:#}");
    }

    #[test]
    fn harmonize_keeps_every_other_track_exactly() {
        let clip = song();
        let out = harmonize(model(), &clip, None, &opts(4)).unwrap();
        assert_eq!(out.tracks.len(), 4);
        assert_eq!(out.tracks[3].name, "Harmony");
        for t in 0..3 {
            assert_eq!(notes_of(&out, t), notes_of(&clip, t));
        }
        // Into the chords' track: the chords are replaced, the rest kept.
        let out = harmonize(model(), &clip, Some(1), &opts(4)).unwrap();
        assert_eq!(out.tracks, clip.tracks);
        assert_eq!(notes_of(&out, 0), notes_of(&clip, 0));
        assert_eq!(notes_of(&out, 2), notes_of(&clip, 2));
        assert!(harmonize(model(), &clip, Some(2), &opts(4)).is_err());
        let mut drums_only = Clip::new(2);
        drums_only.tracks.clear();
        let d = drums_only.add_track(Track::new("Drums", TrackRole::Drums, 9));
        drums_only.notes.push(Note::new(0, 36, 1, 100, d));
        assert!(harmonize(model(), &drums_only, None, &opts(4)).is_err());
    }

    #[test]
    fn generate_writes_a_melody_chords_and_a_bass() {
        let out = generate(model(), 2, &opts(5)).unwrap();
        let names: Vec<&str> = out.tracks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["Melody", "Chords", "Bass"]);
        assert!(max_voices(&out, 0) <= 1 && max_voices(&out, 2) <= 1);
    }

    #[test]
    fn awkward_clips_give_a_result_or_a_message() {
        // Ten tracks, two melodies, nothing in the region, a part far below the window.
        let mut clip = song();
        for k in 0..7u8 {
            let t = clip.add_track(Track::new(format!("Extra {k}"), TrackRole::Melody, 2 + k));
            clip.notes.push(Note::new(0, 10 + k, 4, 80, t));
        }
        let mask = Mask::bars(&clip, 3..=3);
        let out = fill(model(), &clip, &mask, &opts(6)).unwrap();
        for t in 0..clip.tracks.len() as u16 {
            let before: BTreeSet<Note> = clip
                .track_notes(t)
                .filter(|n| n.start < 48)
                .copied()
                .collect();
            let after: BTreeSet<Note> = out
                .track_notes(t)
                .filter(|n| n.start < 48)
                .copied()
                .collect();
            assert_eq!(before, after, "track {t} changed outside the mask");
        }
        // A mask covering nothing is an error; one covering everything works.
        let empty = Mask::empty(clip.steps());
        assert!(fill(model(), &clip, &empty, &opts(6)).is_err());
        let out = fill(model(), &song(), &Mask::all(clip.steps()), &opts(6)).unwrap();
        assert!(max_voices(&out, 0) <= 1);
        // An empty clip gets a track to write on.
        let out = fill(model(), &Clip::new(2), &Mask::all(32), &opts(6)).unwrap();
        assert_eq!(out.tracks.len(), 1);
    }

    #[test]
    fn a_hole_inside_one_window_runs_one_window() {
        // Bars 3–4 of the melody of an 8-bar clip lie in the 4-bar windows at bars 1 and 3;
        // only the one whose share of the clip (bars 3–4) holds them runs: 4 evaluations.
        let mut clip = song();
        let four: Vec<Note> = clip.notes.clone();
        clip.bars = 8;
        clip.notes.extend(four.iter().map(|n| Note {
            start: n.start + 64,
            ..*n
        }));
        let mut mask = Mask::bars(&clip, 2..=3);
        mask.track = Some(0);
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = calls.clone();
        let opts = RollOptions {
            on_step: Some(StepHook(Arc::new(move |done, planned| {
                seen.lock().unwrap().push((done, planned));
                true
            }))),
            ..opts(3)
        };
        let out = fill(model(), &clip, &mask, &opts).unwrap();
        assert_eq!(*calls.lock().unwrap(), [(1, 4), (2, 4), (3, 4), (4, 4)]);
        // Everything outside bars 3–4 of the melody is as it was.
        let outside = |c: &Clip| -> BTreeSet<Note> {
            c.notes
                .iter()
                .filter(|n| n.track != 0 || !(32..64).contains(&n.start))
                .copied()
                .collect()
        };
        assert_eq!(outside(&out), outside(&clip));
    }

    #[test]
    fn a_request_over_several_tracks_shares_its_steps() {
        assert_eq!(steps_per_part(12, 1), 12);
        assert_eq!(steps_per_part(12, 2), 6);
        assert_eq!(steps_per_part(12, 3), MIN_PART_STEPS);
        assert_eq!(steps_per_part(12, 10), MIN_PART_STEPS);
        assert_eq!(steps_per_part(25, 3), 8);
        assert_eq!(steps_per_part(2, 3), 2, "never more than asked");
        // Melody and chords (no bass: the chords' lowest line, then the rest) over all four
        // bars: three passes of 12 / 2 tracks = 6 evaluations each.
        let clip = song();
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = calls.clone();
        let opts = RollOptions {
            steps: 12,
            on_step: Some(StepHook(Arc::new(move |done, planned| {
                seen.lock().unwrap().push((done, planned));
                true
            }))),
            ..opts(5)
        };
        fill(model(), &clip, &Mask::bars(&clip, 0..=3), &opts).unwrap();
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 18, "{calls:?}");
        assert!(calls.iter().all(|&(_, planned)| planned == 6), "{calls:?}");
    }

    #[test]
    fn targets_come_melody_first_and_skip_drums() {
        let clip = song();
        let t = targets(&clip, &Mask::bars(&clip, 0..=0)).unwrap();
        assert_eq!(t, [(0, PartRole::Melody), (1, PartRole::Accompaniment)]);
    }
}
