//! Piano-roll diffusion tasks on POP909 test-split windows: the cells outside the mask come
//! back unchanged, seeds reproduce, controls hold, bad input is an error.
//!
//! Most tests use a small random-init model (the guarantees do not depend on the weights);
//! `shipped_model_beats_the_prior` checks the trained default weights.

use std::sync::OnceLock;

use bandmate::data::{self, Dataset};
use bandmate::diffusion::{self, RollModel, RollOptions, SamplerKind};
use bandmate::models::roll::Config;
use bandmate::music::{Clip, Key, Mask, MeterChange, Note, Scale, TimeSignature, TrackRole};

#[path = "../support/test_windows.rs"]
mod test_windows;

use test_windows::{mean_onsets_shared, test_songs, third_windows};

/// A model with the shipped window (64 steps × 64 pitches) but few channels, seeded weights.
fn model() -> &'static RollModel {
    static MODEL: OnceLock<RollModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let cfg = Config {
            channel_mults: vec![1, 2, 2, 2],
            ..Config::small().narrow()
        };
        RollModel::random(&cfg, 11).expect("random model")
    })
}

/// [`model`] that also reads the known cells (`conditioned`, as the shipped model may).
fn conditioned_model() -> &'static RollModel {
    static MODEL: OnceLock<RollModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let cfg = Config {
            conditioned: true,
            ..model().config().clone()
        };
        RollModel::random(&cfg, 12).expect("random conditioned model")
    })
}

/// 4/4 clips of `bars` bars from the POP909 test split (the third window of the first songs).
fn test_clips(bars: u32, count: usize) -> Vec<Clip> {
    static SONGS: OnceLock<Vec<data::Song>> = OnceLock::new();
    let songs = SONGS.get_or_init(|| test_songs(Dataset::Pop909));
    third_windows(songs, bars).take(count).collect()
}

fn opts(seed: u64) -> RollOptions {
    RollOptions {
        steps: 10,
        seed,
        ..RollOptions::default()
    }
}

/// Notes of `clip` the mask does not cover (they must come back as they are).
fn outside(clip: &Clip, mask: &Mask) -> Vec<Note> {
    let mut v: Vec<Note> = clip
        .notes
        .iter()
        .filter(|n| !mask.covers_note(n))
        .copied()
        .collect();
    v.sort();
    v
}

/// The notes of `out` that `clip` does not have.
fn new_notes<'a>(clip: &'a Clip, out: &'a Clip) -> impl Iterator<Item = &'a Note> {
    out.notes.iter().filter(|n| !clip.notes.contains(n))
}

fn check_fill(clip: &Clip, mask: &Mask, out: &Clip) -> usize {
    let before = outside(clip, mask);
    let mut kept: Vec<Note> = out
        .notes
        .iter()
        .filter(|n| before.contains(n))
        .copied()
        .collect();
    kept.sort();
    assert_eq!(kept, before, "a note outside the mask changed");
    let generated: Vec<&Note> = out.notes.iter().filter(|n| !before.contains(n)).collect();
    for n in &generated {
        assert!(
            mask.get(n.start, n.pitch),
            "generated note {n:?} starts outside the mask"
        );
        assert!((1..=127).contains(&n.velocity));
    }
    generated.len()
}

#[test]
fn fill_keeps_everything_outside_the_mask() {
    bandmate_tests::require_data!("pop909");
    let clips = test_clips(4, 3);
    assert_eq!(clips.len(), 3);
    for (i, clip) in clips.iter().enumerate() {
        let mask = Mask::bars(clip, 2..=3);
        let model = if i % 2 == 0 {
            model()
        } else {
            conditioned_model()
        };
        let out = diffusion::fill(model, clip, &mask, &opts(i as u64)).unwrap();
        let generated = check_fill(clip, &mask, &out);
        println!(
            "clip {i}: {} notes, {} outside bars 3-4 kept, {generated} generated",
            clip.notes.len(),
            outside(clip, &mask).len()
        );
        assert_eq!(out.bars, clip.bars);
    }
}

#[test]
fn an_echoed_fill_varies_the_bars_before_the_hole() {
    bandmate_tests::require_data!("pop909");
    // The shipped weights: a slightly noised echo must come back close to bars 1–2.
    let model = RollModel::embedded().expect("the embedded roll model loads");
    let clips = test_clips(4, 4);
    let (echoed, fresh) = mean_onsets_shared(&clips, ["echo 0.1", "fresh"], |i, clip, echo| {
        let mask = Mask::bars(clip, 2..=3);
        let o = RollOptions {
            echo: Some(if echo { 0.1 } else { 0.0 }),
            ..opts(i as u64)
        };
        let out = diffusion::fill(&model, clip, &mask, &o).unwrap();
        check_fill(clip, &mask, &out);
        out
    });
    assert!(echoed > 0.6, "echo 0.1: {echoed}");
    assert!(echoed > fresh + 0.1);
    // Strengths outside 0..=1 are an error.
    let o = RollOptions {
        echo: Some(1.5),
        ..opts(0)
    };
    let err = diffusion::fill(&model, &clips[0], &Mask::bars(&clips[0], 2..=3), &o).unwrap_err();
    assert!(err.to_string().contains("echo"), "{err}");
}

#[test]
fn guidance_keeps_the_known_notes_and_leans_on_them() {
    bandmate_tests::require_data!("pop909");
    let clip = &test_clips(4, 1)[0];
    let mask = Mask::bars(clip, 2..=3);
    let guided = |w: f32| RollOptions {
        guidance: Some(w),
        ..opts(5)
    };
    let m = conditioned_model();
    let plain = diffusion::fill(m, clip, &mask, &guided(0.0)).unwrap();
    let strong = diffusion::fill(m, clip, &mask, &guided(2.0)).unwrap();
    check_fill(clip, &mask, &strong);
    // The second pass (nothing known) changes the logits, hence the sample.
    assert_ne!(plain, strong);
    // A net that does not read the known cells has nothing to guide with: same result.
    let m = model();
    assert_eq!(
        diffusion::fill(m, clip, &mask, &guided(2.0)).unwrap(),
        diffusion::fill(m, clip, &mask, &guided(0.0)).unwrap()
    );
    // The model's own calibration applies when the caller leaves it unset: the harmonize
    // weight of a conditioned config is used, and an explicit weight overrides it.
    let calibrated = {
        let mut cfg = conditioned_model().config().clone();
        cfg.guidance.harmonize = 2.0;
        // The same seed as `conditioned_model`: the same weights.
        RollModel::random(&cfg, 12).unwrap()
    };
    let by_config = diffusion::harmonize(&calibrated, clip, None, &opts(5)).unwrap();
    let explicit = diffusion::harmonize(conditioned_model(), clip, None, &guided(2.0)).unwrap();
    assert_eq!(by_config, explicit);
    for bad in [-1.0, f32::NAN, 11.0] {
        assert!(diffusion::fill(conditioned_model(), clip, &mask, &guided(bad)).is_err());
    }
}

#[test]
fn pitch_rectangles_and_one_track_keep_the_rest() {
    bandmate_tests::require_data!("pop909");
    let clip = &test_clips(4, 1)[0];
    let rect = Mask::rect(clip.steps(), 8..40, 48..=72);
    for model in [model(), conditioned_model()] {
        let out = diffusion::fill(model, clip, &rect, &opts(3)).unwrap();
        check_fill(clip, &rect, &out);
    }

    let piano = clip
        .tracks
        .iter()
        .position(|t| t.name.to_uppercase().contains("PIANO"))
        .unwrap_or(0) as u16;
    let mut mask = Mask::bars(clip, 1..=2);
    mask.track = Some(piano);
    let out = diffusion::fill(model(), clip, &mask, &opts(4)).unwrap();
    check_fill(clip, &mask, &out);
    let before_other: Vec<&Note> = clip.notes.iter().filter(|n| n.track != piano).collect();
    assert!(
        before_other.iter().all(|n| out.notes.contains(n)),
        "another track changed"
    );
    assert!(new_notes(clip, &out).all(|n| n.track == piano));
    assert_eq!(
        out.tracks.len(),
        clip.tracks.len(),
        "no new track when the mask names one"
    );
}

#[test]
fn long_clips_go_through_overlapping_windows() {
    bandmate_tests::require_data!("pop909");
    let clip = &test_clips(10, 1)[0];
    let mask = Mask::bars(clip, 1..=8);
    let out = diffusion::fill(model(), clip, &mask, &opts(5)).unwrap();
    let generated = check_fill(clip, &mask, &out);
    assert!(generated > 0, "nothing generated over 8 bars");
    let last_generated = new_notes(clip, &out).map(|n| n.start).max().unwrap();
    assert!(
        last_generated >= 7 * 16,
        "the last windows generated nothing (last note at step {last_generated})"
    );
}

#[test]
fn seeds_reproduce_and_differ() {
    bandmate_tests::require_data!("pop909");
    let clip = &test_clips(4, 1)[0];
    let mask = Mask::bars(clip, 2..=3);
    let a = diffusion::fill(model(), clip, &mask, &opts(42)).unwrap();
    let b = diffusion::fill(model(), clip, &mask, &opts(42)).unwrap();
    let c = diffusion::fill(model(), clip, &mask, &opts(43)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.notes, c.notes);
    for kind in [SamplerKind::Algorithm1, SamplerKind::Naive] {
        let o = RollOptions {
            sampler: kind,
            steps: 100,
            ..opts(1)
        };
        let x = diffusion::fill(model(), clip, &mask, &o).unwrap();
        assert_eq!(x, diffusion::fill(model(), clip, &mask, &o).unwrap());
        check_fill(clip, &mask, &x);
    }
}

#[test]
fn continue_harmonize_vary_generate() {
    bandmate_tests::require_data!("pop909");
    let clip = &test_clips(4, 1)[0];
    let cont = diffusion::continue_clip(model(), &clip.window(0, 2), 2, 6, &opts(1)).unwrap();
    assert_eq!(cont.bars, 6);
    let prompt = clip.window(0, 2);
    assert!(
        prompt
            .notes
            .iter()
            .filter(|n| n.start < 32)
            .all(|n| cont.notes.contains(n))
    );

    let harm = diffusion::harmonize(model(), clip, None, &opts(2)).unwrap();
    let melody = clip.track_with_role(TrackRole::Melody).unwrap_or(0);
    let melody_notes: Vec<&Note> = clip.track_notes(melody).collect();
    assert!(
        melody_notes.iter().all(|n| harm.notes.contains(n)),
        "the melody changed"
    );
    let conditioned = diffusion::harmonize(conditioned_model(), clip, None, &opts(2)).unwrap();
    assert!(
        melody_notes.iter().all(|n| conditioned.notes.contains(n)),
        "the melody changed (conditioned model)"
    );
    assert!(harm.notes.iter().all(
        |n| n.track == melody || harm.tracks[n.track as usize].role == TrackRole::Accompaniment
    ));

    let mask = Mask::bars(clip, 1..=2);
    let vary = diffusion::vary(model(), clip, &mask, 0.3, &opts(3)).unwrap();
    check_fill(clip, &mask, &vary);
    assert!(diffusion::vary(model(), clip, &mask, 0.0, &opts(3)).is_err());
    assert!(diffusion::vary(model(), clip, &mask, 1.5, &opts(3)).is_err());

    let generated = diffusion::generate(model(), 2, &opts(4)).unwrap();
    assert_eq!(generated.bars, 2);
    assert!(
        generated
            .notes
            .iter()
            .all(|n| n.end() <= 32 && (32..96).contains(&n.pitch))
    );
}

#[test]
fn key_lock_range_and_density_steer() {
    bandmate_tests::require_data!("pop909");
    let clip = &test_clips(4, 1)[0];
    let mask = Mask::bars(clip, 0..=3);
    let key = Key::new(0, Scale::Major);
    let locked = RollOptions {
        key: Some(key),
        pitch_range: Some(48..=72),
        density: 3.0,
        ..opts(7)
    };
    let out = diffusion::fill(model(), clip, &mask, &locked).unwrap();
    let generated: Vec<&Note> = out
        .notes
        .iter()
        .filter(|n| !clip.notes.contains(n))
        .collect();
    assert!(!generated.is_empty());
    assert!(
        generated
            .iter()
            .all(|n| key.contains(n.pitch) && (48..=72).contains(&n.pitch)),
        "{generated:?}"
    );

    let count = |density: f32| -> usize {
        (0..3)
            .map(|s| {
                let o = RollOptions { density, ..opts(s) };
                let out = diffusion::fill(model(), clip, &mask, &o).unwrap();
                out.notes.iter().filter(|n| !clip.notes.contains(n)).count()
            })
            .sum()
    };
    let (sparse, dense) = (count(0.2), count(5.0));
    println!("generated notes at density 0.2: {sparse}, at 5: {dense}");
    assert!(sparse < dense);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    bandmate_tests::require_data!("pop909");
    let clip = &test_clips(4, 1)[0];
    let m = model();
    let empty = Clip::new(0);
    let err = diffusion::fill(m, &empty, &Mask::all(0), &opts(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
    let err = diffusion::fill(m, clip, &Mask::empty(clip.steps()), &opts(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no cell"), "{err}");
    // Full mask: documented to regenerate everything.
    let full = diffusion::fill(m, clip, &Mask::all(clip.steps()), &opts(0)).unwrap();
    assert!(
        full.notes
            .iter()
            .all(|n| !clip.notes.contains(n) || n.velocity >= 1)
    );
    // Pitches outside the model's window.
    let low = Mask::rect(clip.steps(), 0..64, 0..=10);
    let err = diffusion::fill(m, clip, &low, &opts(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pitch window"), "{err}");
    // 3/4 and a meter change to 6/8.
    let mut waltz = clip.clone();
    waltz.time_signature = TimeSignature::new(3, 4);
    let err = diffusion::fill(m, &waltz, &Mask::all(waltz.steps()), &opts(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("3/4"), "{err}");
    let mut changing = clip.clone();
    changing.meter_changes.push(MeterChange {
        step: 32,
        time_signature: TimeSignature::new(6, 8),
    });
    assert!(diffusion::fill(m, &changing, &Mask::bars(clip, 2..=3), &opts(0)).is_err());
    // Mask of another length, step counts, density.
    assert!(diffusion::fill(m, clip, &Mask::all(clip.steps() + 1), &opts(0)).is_err());
    let all = Mask::all(clip.steps());
    for steps in [0, 101] {
        let o = RollOptions { steps, ..opts(0) };
        assert!(diffusion::fill(m, clip, &all, &o).is_err(), "{steps} steps");
    }
    let silent = RollOptions {
        density: 0.0,
        ..opts(0)
    };
    assert!(
        diffusion::fill(m, clip, &all, &silent).is_err(),
        "density 0"
    );
    assert!(diffusion::generate(m, 0, &opts(0)).is_err());
    assert!(diffusion::continue_clip(m, clip, 4, 4, &opts(0)).is_err());
}

#[test]
fn missing_or_corrupt_weights_are_errors() {
    let dir = std::env::temp_dir().join(format!("bandmate-roll-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = RollModel::load_dir(&dir.join("nowhere"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
    let cfg = serde_json::to_vec(&Config::small()).unwrap();
    std::fs::write(dir.join("config.json"), &cfg).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"definitely not safetensors").unwrap();
    let err = format!("{:#}", RollModel::load_dir(&dir).unwrap_err());
    assert!(err.contains("corrupt"), "{err}");
    std::fs::write(dir.join("config.json"), b"{\"steps\": 64}").unwrap();
    assert!(RollModel::load_dir(&dir).is_err());
    // Weights of another shape.
    let other = serde_json::to_vec(&Config {
        base_channels: 48,
        ..Config::small()
    })
    .unwrap();
    std::fs::write(dir.join("config.json"), &other).unwrap();
    let shipped = RollModel::embedded().unwrap();
    let _ = shipped; // the embedded model itself must load
    std::fs::write(
        dir.join("model.safetensors"),
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../assets/roll/model.safetensors"
        ))
        .unwrap(),
    )
    .unwrap();
    let err = format!("{:#}", RollModel::load_dir(&dir).unwrap_err());
    assert!(err.contains("does not fit"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shipped_model_beats_the_prior() {
    bandmate_tests::require_data!("pop909");
    let model = RollModel::embedded().expect("the embedded roll model loads");
    let cfg = model.config().clone();
    let clips = test_clips(4, 8);
    let plane = cfg.steps * cfg.pitches;
    let mut x0 = Vec::new();
    for clip in &clips {
        let roll = bandmate::music::PianoRoll::from_clip(
            clip,
            cfg.pitch_lo,
            cfg.pitches,
            &Default::default(),
        );
        x0.extend_from_slice(&roll.data);
    }
    let schedule = model.schedule();
    let bce = |p: f32, x: f32| -> f64 {
        let p = p.clamp(1e-6, 1.0 - 1e-6) as f64;
        -(x as f64 * p.ln() + (1.0 - x as f64) * (1.0 - p).ln())
    };
    for t in [10usize, 50, 90] {
        let ts = vec![t; clips.len()];
        let xt = schedule.q_sample_seeded(&x0, plane, &ts, 9 + t as u64);
        let pred = model.predict_x0(&xt, &ts).unwrap();
        let model_loss: f64 =
            pred.iter().zip(&x0).map(|(&p, &x)| bce(p, x)).sum::<f64>() / x0.len() as f64;
        // Baseline: the posterior of a cell knowing only x_t and the prior density.
        let prior_loss: f64 = x0
            .iter()
            .enumerate()
            .map(|(i, &x)| bce(cfg.prior[(i / plane) % 2], x))
            .sum::<f64>()
            / x0.len() as f64;
        println!("t = {t}: model BCE {model_loss:.4}, prior BCE {prior_loss:.4}");
        assert!(
            model_loss < prior_loss,
            "t = {t}: model {model_loss} vs prior {prior_loss}"
        );
    }
}

#[test]
fn the_step_hook_reports_progress_and_cancels() {
    bandmate_tests::require_data!("pop909");
    use std::sync::{Arc, Mutex};
    let m = model();
    // 8 bars: two 4-bar windows with cells to fill, 10 evaluations each.
    let clip = &test_clips(8, 1)[0];
    let mask = Mask::bars(clip, 1..=6);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let hook = diffusion::StepHook::new(move |done, planned| {
        log.lock().unwrap().push((done, planned));
        true
    });
    let with_hook = RollOptions {
        on_step: Some(hook),
        ..opts(3)
    };
    let hooked = diffusion::fill(m, clip, &mask, &with_hook).unwrap();
    // The hook does not change the result.
    assert_eq!(hooked, diffusion::fill(m, clip, &mask, &opts(3)).unwrap());
    let seen = seen.lock().unwrap().clone();
    let planned = seen[0].1;
    assert!(planned >= 10 && planned % 10 == 0, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    assert_eq!(seen.len(), planned.min(seen.len()));

    // Returning false stops the fill after that evaluation with a "cancelled" error.
    let calls = Arc::new(Mutex::new(0));
    let counter = calls.clone();
    let cancelling = RollOptions {
        on_step: Some(diffusion::StepHook::new(move |done, _| {
            *counter.lock().unwrap() += 1;
            done < 3
        })),
        ..opts(3)
    };
    let err = diffusion::fill(m, clip, &mask, &cancelling)
        .unwrap_err()
        .to_string();
    assert!(err.contains(diffusion::CANCELLED), "{err}");
    assert_eq!(*calls.lock().unwrap(), 3);
}
