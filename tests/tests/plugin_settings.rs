//! The plugin's sampling settings on real POP909 test windows, through the worker as the
//! editor sends jobs: each setting changes the result the way its name says, and Repeat makes
//! a fill follow the bars before the hole. Here rather than in the plugin's own tests so that
//! the plugin does not depend on the dataset readers. Needs `../shared/data`.

use std::sync::Arc;

use bandmate::data;
use bandmate::diffusion::RollModel;
use bandmate::music::{Clip, TimeSignature};
use bandmate_plugin::models::RollGenerator;
use bandmate_plugin::worker::{Generator, Job, JobRequest, JobSettings};

/// `request` run to its end on a worker with `generator` alone.
fn run_on_worker(generator: Arc<dyn Generator>, request: JobRequest) -> Result<Clip, String> {
    let mut worker =
        bandmate_plugin::worker::Worker::spawn(move || Arc::from(vec![generator])).unwrap();
    worker.submit(request);
    loop {
        match worker
            .reports()
            .recv_timeout(std::time::Duration::from_secs(120))
            .unwrap()
        {
            bandmate_plugin::worker::WorkerReport::Done { clip, .. } => return Ok(clip),
            bandmate_plugin::worker::WorkerReport::Failed { error, .. } => return Err(error),
            _ => {}
        }
    }
}

/// Four-bar POP909 test windows (the third window of the first 4/4 songs).
fn test_windows(count: usize) -> Vec<Clip> {
    let songs = data::load_cached(
        data::Dataset::Pop909,
        data::Split::Test,
        &data::default_data_root(),
        &data::default_cache_dir(),
    )
    .expect("POP909 test split loads");
    songs
        .iter()
        .filter(|s| {
            s.clip.time_signature == TimeSignature::FOUR_FOUR && s.clip.meter_changes.is_empty()
        })
        .filter_map(|s| {
            bandmate::music::segment::windows(&s.clip, 4, 4)
                .into_iter()
                .nth(2)
        })
        .take(count)
        .collect()
}

#[test]
fn every_sampling_setting_changes_the_result_the_way_its_name_says() {
    bandmate_tests::require_data!("pop909");
    let clips = test_windows(3);
    assert_eq!(clips.len(), 3);
    let embedded: Arc<dyn Generator> = Arc::new(RollGenerator::new(
        "built-in",
        RollModel::embedded().unwrap(),
    ));
    // Notes starting in bars 3–4 that were not there before.
    let generated = |clip: &Clip, out: &Clip| -> Vec<bandmate::music::Note> {
        out.notes
            .iter()
            .filter(|n| n.start >= 32 && !clip.notes.contains(n))
            .copied()
            .collect()
    };
    let fill = |clip: &Clip, settings: JobSettings| -> Clip {
        let request = JobRequest {
            job: Job::Fill {
                clip: clip.clone(),
                mask: bandmate::music::Mask::bars(clip, 2..=3),
            },
            settings,
        };
        run_on_worker(embedded.clone(), request).unwrap()
    };
    let base = |seed: u64| JobSettings {
        steps: 10,
        repeat: 0.0,
        seed,
        ..JobSettings::default()
    };
    let (mut differ_steps, mut dense, mut sparse, mut hot, mut cold) = (0, 0, 0, 0, 0);
    let (mut outside_key_free, mut outside_key_locked, mut outside_range) = (0, 0, 0);
    let d_major = bandmate::music::Key::new(2, bandmate::music::Scale::Major);
    for (i, clip) in clips.iter().enumerate() {
        let seed = i as u64;
        let plain = generated(clip, &fill(clip, base(seed)));
        // Steps: another number of network evaluations, another result.
        let more = generated(
            clip,
            &fill(
                clip,
                JobSettings {
                    steps: 30,
                    ..base(seed)
                },
            ),
        );
        differ_steps += usize::from(more != plain);
        // Density: more notes when denser.
        dense += generated(
            clip,
            &fill(
                clip,
                JobSettings {
                    density: 0.9,
                    ..base(seed)
                },
            ),
        )
        .len();
        sparse += generated(
            clip,
            &fill(
                clip,
                JobSettings {
                    density: 0.1,
                    ..base(seed)
                },
            ),
        )
        .len();
        // Temperature: a hotter sample lets less likely (here: more) notes through.
        hot += generated(
            clip,
            &fill(
                clip,
                JobSettings {
                    temperature: 1.8,
                    ..base(seed)
                },
            ),
        )
        .len();
        cold += generated(
            clip,
            &fill(
                clip,
                JobSettings {
                    temperature: 0.5,
                    ..base(seed)
                },
            ),
        )
        .len();
        // Key: a lock keeps every written note in the chosen key (D major here, whatever
        // the song's key), which the free fill does not.
        outside_key_free += plain.iter().filter(|n| !d_major.contains(n.pitch)).count();
        let locked = fill(
            clip,
            JobSettings {
                key: Some(d_major),
                ..base(seed)
            },
        );
        outside_key_locked += generated(clip, &locked)
            .iter()
            .filter(|n| !d_major.contains(n.pitch))
            .count();
        // Pitch range: nothing written outside it.
        let ranged = fill(
            clip,
            JobSettings {
                pitch_range: Some(60..=72),
                ..base(seed)
            },
        );
        outside_range += generated(clip, &ranged)
            .iter()
            .filter(|n| !(60..=72).contains(&n.pitch))
            .count();
    }
    assert_eq!(differ_steps, clips.len(), "steps changed nothing");
    assert!(dense > sparse, "density 0.9: {dense} notes, 0.1: {sparse}");
    assert!(hot > cold, "temperature 1.8: {hot} notes, 0.5: {cold}");
    assert!(
        outside_key_free > 0 && outside_key_locked == 0,
        "outside D major: {outside_key_free} free, {outside_key_locked} locked"
    );
    assert_eq!(outside_range, 0);

    // Strength: Vary changes more of the masked notes when stronger.
    let changed = |strength: f32| -> usize {
        clips
            .iter()
            .enumerate()
            .map(|(i, clip)| {
                let request = JobRequest {
                    job: Job::Vary {
                        clip: clip.clone(),
                        mask: bandmate::music::Mask::bars(clip, 2..=3),
                    },
                    settings: JobSettings {
                        strength,
                        ..base(i as u64)
                    },
                };
                let out = run_on_worker(embedded.clone(), request).unwrap();
                let before: std::collections::BTreeSet<_> = clip
                    .notes
                    .iter()
                    .filter(|n| n.start >= 32)
                    .copied()
                    .collect();
                let after: std::collections::BTreeSet<_> = out
                    .notes
                    .iter()
                    .filter(|n| n.start >= 32)
                    .copied()
                    .collect();
                before.symmetric_difference(&after).count()
            })
            .sum()
    };
    let (weak, strong) = (changed(0.15), changed(0.9));
    assert!(
        strong > weak,
        "strength 0.9 changed {strong} notes, 0.15 {weak}"
    );
}

#[test]
fn repeat_makes_fills_follow_the_bars_before_the_hole() {
    bandmate_tests::require_data!("pop909");
    // POP909 test windows, bars 3–4 filled by the embedded model at Repeat 1 and 0.
    let clips = test_windows(4);
    assert_eq!(clips.len(), 4);
    let generator: Arc<dyn Generator> = Arc::new(RollGenerator::new(
        "roll diffusion",
        RollModel::embedded().unwrap(),
    ));
    let spb = 16;
    // (step in the 2-bar period, pitch) of the onsets.
    let onsets = |notes: &mut dyn Iterator<Item = &bandmate::music::Note>| {
        notes
            .map(|n| (n.start % (2 * spb), n.pitch))
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (mut close_total, mut fresh_total) = (0.0, 0.0);
    for (i, clip) in clips.iter().enumerate() {
        let mask = bandmate::music::Mask::bars(clip, 2..=3);
        let before = onsets(&mut clip.notes.iter().filter(|n| n.start < 2 * spb));
        let shared = |repeat: f32| {
            let request = JobRequest {
                job: Job::Fill {
                    clip: clip.clone(),
                    mask: mask.clone(),
                },
                settings: JobSettings {
                    repeat,
                    seed: i as u64,
                    ..JobSettings::default()
                },
            };
            let out = run_on_worker(generator.clone(), request).unwrap();
            // Bars 1–2 come back as they were.
            let kept = |c: &Clip| -> Vec<bandmate::music::Note> {
                let mut v: Vec<_> = c
                    .notes
                    .iter()
                    .filter(|n| n.start < 2 * spb)
                    .cloned()
                    .collect();
                v.sort_by_key(|n| (n.start, n.pitch, n.track));
                v
            };
            assert_eq!(kept(&out), kept(clip));
            let generated = onsets(&mut out.notes.iter().filter(|n| n.start >= 2 * spb));
            before.intersection(&generated).count() as f64
                / before.union(&generated).count().max(1) as f64
        };
        let (close, fresh) = (shared(1.0), shared(0.0));
        println!("clip {i}: onsets shared with bars 1-2: repeat 1 {close:.2}, repeat 0 {fresh:.2}");
        close_total += close;
        fresh_total += fresh;
    }
    let n = clips.len() as f64;
    assert!(close_total / n > 0.6, "repeat 1: {}", close_total / n);
    assert!(
        close_total > fresh_total + 0.2 * n,
        "{close_total} {fresh_total}"
    );
}
