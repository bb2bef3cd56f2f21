//! The plugin's sampling settings on real POP909 test windows, through the worker as the
//! editor sends jobs: each setting changes the result the way its name says, and Repeat makes
//! a fill follow the bars before the hole. Here rather than in the plugin's own tests so that
//! the plugin does not depend on the dataset readers. Needs `../shared/data`.

use std::sync::Arc;
use std::time::Duration;

use bandmate::data;
use bandmate::diffusion::RollModel;
use bandmate::music::Clip;
use bandmate_plugin::models::RollGenerator;
use bandmate_plugin::worker::{Generator, Job, JobRequest, JobSettings, Worker};

#[path = "../support/test_windows.rs"]
mod windows;

use windows::{mean_onsets_shared, test_songs, third_windows};

/// `request` run to its end on a worker with `generator` alone.
fn run_on_worker(generator: Arc<dyn Generator>, request: JobRequest) -> Result<Clip, String> {
    let mut worker = Worker::spawn(move || Arc::from(vec![generator])).unwrap();
    worker.run_to_end(request, Duration::from_secs(120)).result
}

/// `count` four-bar POP909 test windows (the third window of the first 4/4 songs), and the
/// embedded roll model as the generator `name`.
fn windows_and_embedded_model(count: usize, name: &str) -> (Vec<Clip>, Arc<dyn Generator>) {
    let songs = test_songs(data::Dataset::Pop909);
    let clips: Vec<Clip> = third_windows(&songs, 4).take(count).collect();
    assert_eq!(clips.len(), count);
    let generator = RollGenerator::new(name, RollModel::embedded().unwrap());
    (clips, Arc::new(generator))
}

#[test]
fn every_sampling_setting_changes_the_result_the_way_its_name_says() {
    bandmate_tests::require_data!("pop909");
    let (clips, embedded) = windows_and_embedded_model(3, "built-in");
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
                let bars_3_4 = |c: &Clip| -> std::collections::BTreeSet<_> {
                    c.notes.iter().filter(|n| n.start >= 32).copied().collect()
                };
                bars_3_4(clip).symmetric_difference(&bars_3_4(&out)).count()
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
    let (clips, generator) = windows_and_embedded_model(4, "roll diffusion");
    let names = ["repeat 1", "repeat 0"];
    let (close, fresh) = mean_onsets_shared(&clips, names, |i, clip, close| {
        let request = JobRequest {
            job: Job::Fill {
                clip: clip.clone(),
                mask: bandmate::music::Mask::bars(clip, 2..=3),
            },
            settings: JobSettings {
                repeat: if close { 1.0 } else { 0.0 },
                seed: i as u64,
                ..JobSettings::default()
            },
        };
        let out = run_on_worker(generator.clone(), request).unwrap();
        // Bars 1–2 come back as they were.
        let kept = |c: &Clip| -> Vec<bandmate::music::Note> {
            let mut v: Vec<_> = c.notes.iter().filter(|n| n.start < 32).cloned().collect();
            v.sort_by_key(|n| (n.start, n.pitch, n.track));
            v
        };
        assert_eq!(kept(&out), kept(clip));
        out
    });
    assert!(close > 0.6, "repeat 1: {close}");
    assert!(close > fresh + 0.2, "{close} {fresh}");
}
