//! Parts stay parts, with the shipped model on held-out songs: a fill of a melody stays one
//! voice in its range; a fill over melody and chords gives a melody back on the melody track
//! and chords on the chord track; harmonize keeps the melody and every other track exactly.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use bandmate::data::Dataset;
use bandmate::diffusion::{self, RollModel, RollOptions};
use bandmate::music::{Clip, Mask, Note, TrackRole};

#[path = "../support/test_windows.rs"]
mod test_windows;

use test_windows::{test_songs, third_windows};

fn model() -> &'static RollModel {
    static MODEL: OnceLock<RollModel> = OnceLock::new();
    MODEL.get_or_init(|| RollModel::embedded().expect("the embedded roll model loads"))
}

/// The third 4-bar window of the first `count` 4/4 songs of a test split that have a melody
/// and another pitched track sounding in bars 3–4.
fn windows(dataset: Dataset, count: usize) -> Vec<Clip> {
    let songs = test_songs(dataset);
    third_windows(&songs, 4)
        .filter(|c| {
            let melody = c.track_with_role(TrackRole::Melody);
            melody.is_some_and(|m| c.track_notes(m).any(|n| n.start >= 32))
                && c.notes
                    .iter()
                    .any(|n| Some(n.track) != melody && n.start >= 32)
        })
        .take(count)
        .collect()
}

fn opts(seed: u64) -> RollOptions {
    RollOptions {
        steps: 15,
        seed,
        ..RollOptions::default()
    }
}

fn notes_of(clip: &Clip, track: u16) -> BTreeSet<Note> {
    clip.track_notes(track).copied().collect()
}

fn max_voices(notes: &[Note]) -> usize {
    notes
        .iter()
        .map(|a| {
            notes
                .iter()
                .filter(|b| b.start <= a.start && a.start < b.end())
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn a_melody_fill_stays_one_voice_in_its_range() {
    bandmate_tests::require_data!("pop909", "nottingham");
    let mut clips = windows(Dataset::Pop909, 4);
    clips.extend(windows(Dataset::Nottingham, 4));
    assert_eq!(clips.len(), 8);
    let mut written = 0;
    for (i, clip) in clips.iter().enumerate() {
        let melody = clip.track_with_role(TrackRole::Melody).unwrap();
        let mut mask = Mask::bars(clip, 2..=3);
        mask.track = Some(melody);
        let out = diffusion::fill(model(), clip, &mask, &opts(i as u64)).unwrap();
        assert_eq!(out.tracks, clip.tracks);
        for t in (0..clip.tracks.len() as u16).filter(|&t| t != melody) {
            assert_eq!(notes_of(&out, t), notes_of(clip, t), "track {t} changed");
        }
        let given: Vec<u8> = clip
            .track_notes(melody)
            .filter(|n| n.start < 32)
            .map(|n| n.pitch)
            .collect();
        let (lo, hi) = (
            given.iter().min().unwrap().saturating_sub(3),
            given.iter().max().unwrap() + 3,
        );
        let new: Vec<Note> = out
            .track_notes(melody)
            .filter(|n| n.start >= 32)
            .copied()
            .collect();
        assert!(max_voices(&new) <= 1, "window {i}: the melody has chords");
        if given.len() >= 4 {
            assert!(
                new.iter().all(|n| (lo..=hi).contains(&n.pitch)),
                "window {i}: a melody note outside {lo}–{hi}"
            );
        }
        written += new.len();
    }
    assert!(
        written >= 8,
        "only {written} melody notes written in 8 windows"
    );
}

#[test]
fn a_fill_over_melody_and_chords_gives_each_part_back_on_its_track() {
    bandmate_tests::require_data!("nottingham");
    let clips = windows(Dataset::Nottingham, 6);
    assert_eq!(clips.len(), 6);
    let (mut melody_notes, mut chord_notes) = (0, 0);
    for (i, clip) in clips.iter().enumerate() {
        let melody = clip.track_with_role(TrackRole::Melody).unwrap();
        let chords = (0..clip.tracks.len() as u16)
            .find(|&t| t != melody)
            .unwrap();
        let mask = Mask::bars(clip, 2..=3);
        let out = diffusion::fill(model(), clip, &mask, &opts(10 + i as u64)).unwrap();
        assert_eq!(out.tracks, clip.tracks, "no new track");
        let hole = |t: u16| -> Vec<Note> {
            out.track_notes(t)
                .filter(|n| n.start >= 32)
                .copied()
                .collect()
        };
        let (m, c) = (hole(melody), hole(chords));
        assert!(max_voices(&m) <= 1, "window {i}: the melody has chords");
        // The chords part keeps its texture: below the melody on average.
        if !m.is_empty() && !c.is_empty() {
            let mean = |v: &[Note]| v.iter().map(|n| n.pitch as f64).sum::<f64>() / v.len() as f64;
            assert!(mean(&c) < mean(&m), "window {i}: chords above the melody");
        }
        melody_notes += m.len();
        chord_notes += c.len();
    }
    assert!(
        melody_notes >= 6 && chord_notes >= 6,
        "{melody_notes} melody, {chord_notes} chord notes"
    );
}

#[test]
fn harmonize_keeps_the_melody_and_every_other_track() {
    bandmate_tests::require_data!("pop909");
    for (i, clip) in windows(Dataset::Pop909, 3).iter().enumerate() {
        let out = diffusion::harmonize(model(), clip, None, &opts(20 + i as u64)).unwrap();
        assert_eq!(out.tracks.len(), clip.tracks.len() + 1);
        assert_eq!(&out.tracks[..clip.tracks.len()], &clip.tracks[..]);
        for t in 0..clip.tracks.len() as u16 {
            assert_eq!(notes_of(&out, t), notes_of(clip, t), "track {t} changed");
        }
        let new = clip.tracks.len() as u16;
        assert_eq!(out.tracks[new as usize].role, TrackRole::Accompaniment);
        assert!(
            out.track_notes(new).count() >= 4,
            "window {i}: no accompaniment written"
        );
    }
}
