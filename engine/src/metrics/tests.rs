//! Tests of `evaluate` and `plot_histograms` on synthetic sets and on Nottingham tunes.

use super::*;
use crate::music::{Clip, Note, Track, TrackRole};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

/// An 8-bar melody on the C major scale: stepwise walks, 8th and quarter notes, over a bass line.
fn scale_melody(rng: &mut ChaCha8Rng) -> Clip {
    const C_MAJOR: [u8; 7] = [0, 2, 4, 5, 7, 9, 11];
    let mut clip = Clip::new(8);
    clip.tracks = vec![
        Track::new("Melody", TrackRole::Melody, 0),
        Track::new("Bass", TrackRole::Bass, 1),
    ];
    let mut degree: i32 = rng.random_range(7..14);
    let mut step = 0;
    while step < 128 {
        let length = if rng.random_bool(0.7) { 2 } else { 4 };
        let pitch = 48 + 12 * (degree / 7) as u8 + C_MAJOR[(degree % 7) as usize];
        clip.notes
            .push(Note::new(step, pitch, length.min(128 - step), 90, 0));
        degree = (degree + if rng.random_bool(0.5) { 1 } else { -1 }).clamp(7, 20);
        step += length;
    }
    for bar in 0..8 {
        let root = [36, 41, 43, 36][bar as usize % 4];
        clip.notes.push(Note::new(bar * 16, root, 16, 80, 1));
    }
    clip.sort_notes();
    clip
}

/// Random chromatic notes anywhere on the 16th grid, random lengths, over 8 bars.
fn random_notes(rng: &mut ChaCha8Rng) -> Clip {
    let mut clip = Clip::new(8);
    for _ in 0..rng.random_range(20..60) {
        let start = rng.random_range(0..124);
        let length = rng.random_range(1..(128 - start).min(16));
        clip.notes
            .push(Note::new(start, rng.random_range(30..100), length, 90, 0));
    }
    clip.sort_notes();
    clip
}

/// 16 bars of 8th notes; every 2 bars the melody moves to a random register (±2 semitones).
fn register_jumps(rng: &mut ChaCha8Rng) -> Clip {
    let mut clip = Clip::new(16);
    for segment in 0..8 {
        let center: u8 = rng.random_range(36..96);
        for i in 0..16 {
            let pitch = center + rng.random_range(0..5) - 2;
            clip.notes
                .push(Note::new(segment * 32 + i * 2, pitch, 2, 90, 0));
        }
    }
    clip
}

fn set_of(n: usize, seed: u64, make: fn(&mut ChaCha8Rng) -> Clip) -> Vec<Clip> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| make(&mut rng)).collect()
}

fn assert_matches_itself(report: &Report) {
    for f in &report.features {
        let oa = f.overlap_area.expect("OA defined");
        assert!(oa >= 0.999, "{}: OA {oa}", f.feature.name());
        assert!(
            f.kl_divergence.unwrap() < 1e-3,
            "{}: KL {:?}",
            f.feature.name(),
            f.kl_divergence
        );
        assert!(f.overlap_area_generated.unwrap() >= 0.999);
    }
    let ss = &report.self_similarity;
    for scores in [ss.pitch.unwrap(), ss.duration.unwrap()] {
        assert_eq!((scores.consistency, scores.variance), (1.0, 1.0));
    }
    for row in report.rhythm_melody.rows() {
        assert_eq!(row.abs_difference, Some(0.0), "{}", row.name);
    }
}

#[test]
fn a_set_against_itself_scores_one_everywhere() {
    let mut set = set_of(20, 1, scale_melody);
    set.extend(set_of(20, 2, random_notes));
    let report = evaluate(&set, &set, &EvalOptions::default());
    assert_eq!(report.identical_pairs_skipped, 40);
    assert_matches_itself(&report);
    println!("{}", report.to_table());
}

#[test]
fn sub_sampling_picks_the_same_clips_of_equal_sets() {
    let set = set_of(120, 3, random_notes);
    let opts = EvalOptions {
        max_clips: 30,
        seed: 9,
    };
    let report = evaluate(&set, &set, &opts);
    assert_eq!(report.reference_clips_for_distances, 30);
    assert_eq!(report.features[0].intra_reference.count, 30 * 29);
    assert_matches_itself(&report);
}

#[test]
fn random_notes_against_scale_melodies_score_low() {
    let scales = set_of(40, 4, scale_melody);
    let randoms = set_of(40, 5, random_notes);
    let report = evaluate(&scales, &randoms, &EvalOptions::default());
    println!("{}", report.to_table());
    for feature in [
        Feature::PitchClassHistogram,
        Feature::PitchClassTransitionMatrix,
        Feature::AvgPitchInterval,
        Feature::NoteLengthHistogram,
        Feature::PitchRange,
    ] {
        let oa = report.feature(feature).unwrap().overlap_area.unwrap();
        assert!(oa < 0.5, "{}: OA {oa}", feature.name());
    }
    assert!(report.mean_overlap_area().unwrap() < 0.5);
    assert_eq!(report.identical_pairs_skipped, 0);
    let rm = &report.rhythm_melody;
    assert_eq!(rm.reference.diatonicity, Some(1.0));
    assert!(rm.generated.diatonicity.unwrap() < 0.8);
    // Scale melodies move on the 8th grid; random onsets land on odd 16ths about half the time.
    assert_eq!(rm.reference.sixteenth_share, Some(0.0));
    assert!(rm.generated.sixteenth_share.unwrap() > 0.35);
    let pitch = report.self_similarity.pitch.unwrap();
    assert!(pitch.consistency < 1.0);
}

#[test]
fn empty_and_tiny_sets_give_undefined_metrics_without_panicking() {
    let report = evaluate(&[], &[], &EvalOptions::default());
    assert!(report.features.iter().all(|f| f.overlap_area.is_none()));
    assert!(report.self_similarity.pitch.is_none());
    let json = report.to_json();
    assert!(json["yang_lerch"]["mean_overlap_area"].is_null());
    assert!(!report.to_table().is_empty());

    let one = vec![Clip::new(4)];
    let report = evaluate(&one, &one, &EvalOptions::default());
    assert!(report.features[0].overlap_area.is_none());
    assert_eq!(report.rhythm_melody.reference.diatonicity, None);
}

#[test]
fn report_json_has_every_section() {
    let scales = set_of(10, 6, scale_melody);
    let randoms = set_of(12, 7, random_notes);
    let json = evaluate(&scales, &randoms, &EvalOptions::default()).to_json();
    assert_eq!(json["clips"]["generated"], 12);
    let features = json["yang_lerch"]["features"].as_object().unwrap();
    assert_eq!(features.len(), Feature::ALL.len());
    assert!(
        features["pitch_class_histogram"]["overlap_area"]
            .as_f64()
            .unwrap()
            < 1.0
    );
    assert_eq!(
        features["pitch_class_histogram"]["reference"]["mean"]
            .as_array()
            .unwrap()
            .len(),
        12
    );
    assert!(json["mittal_self_similarity"]["pitch"]["consistency"].is_number());
    assert_eq!(
        json["rhythm_melody"]["stats"]["diatonicity"]["reference"],
        1.0
    );
}

#[test]
fn plot_rejects_bad_paths() {
    let set = set_of(3, 8, scale_melody);
    let err = plot_histograms(&set, &set, std::path::Path::new("/nonexistent-dir/x.png"));
    assert!(err.unwrap_err().to_string().contains("does not exist"));
    let err = plot_histograms(&set, &set, &std::env::temp_dir().join("x.svg"));
    assert!(err.unwrap_err().to_string().contains("PNG"));
    assert!(plot_histograms(&[], &[], &std::env::temp_dir().join("x.png")).is_err());
}

/// Up to `n` Nottingham files of `split`, in the order of splits.json.
fn nottingham_files(split: &str, n: usize) -> Vec<PathBuf> {
    let root = crate::data::default_data_root().join("nottingham");
    let splits_path = root.join("splits.json");
    let text = std::fs::read_to_string(&splits_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the Nottingham data is needed)",
            splits_path.display()
        )
    });
    let splits: serde_json::Value = serde_json::from_str(&text).unwrap();
    splits[split]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no '{split}' list", splits_path.display()))
        .iter()
        .take(n)
        .map(|name| root.join("MIDI").join(name.as_str().unwrap()))
        .collect()
}

fn read(files: &[PathBuf]) -> Vec<Clip> {
    files
        .iter()
        .map(|f| crate::midi::read_file(f).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

#[test]
fn nottingham_tunes_resemble_each_other_and_not_random_notes() {
    if !crate::data::have_datasets(&["nottingham"]) {
        return;
    }
    let test = read(&nottingham_files("test", 30));
    let valid = read(&nottingham_files("valid", 30));
    assert_eq!((test.len(), valid.len()), (30, 30));
    let started = std::time::Instant::now();
    let itself = evaluate(&test, &test, &EvalOptions::default());
    assert_matches_itself(&itself);
    let lowest = itself
        .features
        .iter()
        .filter_map(|f| f.overlap_area)
        .fold(1.0, f64::min);
    println!("Nottingham test against itself: lowest OA {lowest}");

    let other_tunes = evaluate(&test, &valid, &EvalOptions::default());
    let random = evaluate(
        &test,
        &set_of(30, 10, random_notes),
        &EvalOptions::default(),
    );
    let elapsed = started.elapsed();
    println!("Nottingham test vs valid:\n{}", other_tunes.to_table());
    println!("Nottingham test vs random notes:\n{}", random.to_table());
    println!("three evaluations in {elapsed:?}");

    let tunes_oa = other_tunes.mean_overlap_area().unwrap();
    let random_oa = random.mean_overlap_area().unwrap();
    assert!(tunes_oa > 0.7, "test vs valid mean OA {tunes_oa}");
    assert!(
        random_oa < tunes_oa - 0.3,
        "random {random_oa} vs tunes {tunes_oa}"
    );
    let rm = &other_tunes.rhythm_melody;
    assert!(rm.reference.diatonicity.unwrap() > 0.9);
    assert!(rm.generated.diatonicity.unwrap() > 0.9);
    assert!(random.rhythm_melody.generated.diatonicity.unwrap() < 0.8);
    let pitch = other_tunes.self_similarity.pitch.unwrap();
    assert!(pitch.consistency > 0.8, "{pitch:?}");
    // Random notes are as self-similar as the tunes (their statistics do not drift), but a
    // melody that leaps to a new register every 2 bars is not.
    let jumps = evaluate(
        &test,
        &set_of(30, 11, register_jumps),
        &EvalOptions::default(),
    );
    let jumps_pitch = jumps.self_similarity.pitch.unwrap();
    println!("Nottingham test vs register jumps: pitch {jumps_pitch:?}");
    assert!(jumps_pitch.consistency < 0.8, "{jumps_pitch:?}");

    let png = std::env::temp_dir().join("bandmate-metrics-nottingham.png");
    plot_histograms(&test, &valid, &png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        png.display()
    );
}
