//! The roll model's evaluation (`bandmate eval-roll`) on a few POP909 test windows: every task
//! has the model's, both baselines' and the real music's rows, the baselines are what they claim
//! to be, the shipped model beats random notes on the mean overlapping area of every task, and
//! the real row holds real windows of songs the evaluation does not use.

use bandmate::data::{self, Dataset, Split, default_cache_dir, default_data_root};
use bandmate::diffusion::eval::{
    Method, RollEvalOptions, Task, eval_windows, evaluate_roll, markdown_table, real_windows, wins,
    wins_of,
};
use bandmate::diffusion::{RollModel, RollOptions};
use bandmate::music::TimeSignature;

#[test]
fn the_model_beats_random_notes_on_every_task() {
    bandmate_tests::require_data!("pop909");
    let model = RollModel::embedded().unwrap();
    let opts = RollEvalOptions {
        count: 6,
        seed: 1,
        sampling: RollOptions {
            steps: 10,
            ..RollOptions::default()
        },
        ..RollEvalOptions::default()
    };
    let rows = evaluate_roll(
        &model,
        &default_data_root(),
        &default_cache_dir(),
        &opts,
        |_| {},
    )
    .unwrap();
    assert_eq!(rows.len(), 16);
    // The model and real music of other songs beat random notes on the mean OA of every task.
    for task in Task::ALL {
        let mean_oa = |m: Method| {
            rows.iter()
                .find(|r| r.task == task && r.method == m)
                .and_then(|r| r.region.mean_overlap_area())
                .unwrap()
        };
        for better in [Method::Model, Method::Real] {
            assert!(
                mean_oa(better) > mean_oa(Method::Random),
                "{}: {} {} vs random {}",
                task.name(),
                better.name(),
                mean_oa(better),
                mean_oa(Method::Random)
            );
        }
    }
    let table = markdown_table(&rows);
    assert_eq!(table.lines().count(), 2 + 16);
    assert_eq!(wins(&rows).len(), 4);
    let real_wins = wins_of(&rows, Method::Real);
    assert_eq!(real_wins.len(), 4);
    assert!(real_wins.iter().all(|&(_, total, _, _)| total == 14));
}

#[test]
fn the_real_rows_windows_come_from_the_other_held_out_split() {
    bandmate_tests::require_data!("pop909");
    let load = |split| {
        data::load_cached(
            Dataset::Pop909,
            split,
            &default_data_root(),
            &default_cache_dir(),
        )
        .unwrap()
    };
    let songs = |split| -> std::collections::HashSet<String> {
        load(split).into_iter().map(|s| s.id).collect()
    };
    let (test, valid) = (songs(Split::Test), songs(Split::Valid));
    let real =
        |split| real_windows(&default_data_root(), &default_cache_dir(), split, 20, 0).unwrap();
    // Evaluating on the test split, the real rows are valid songs; on the valid split, test songs.
    for (split, theirs, ours) in [(Split::Test, &valid, &test), (Split::Valid, &test, &valid)] {
        let windows = real(split);
        assert_eq!(windows.len(), 20);
        assert!(
            windows
                .iter()
                .all(|w| theirs.contains(&w.song) && !ours.contains(&w.song))
        );
    }
    let for_test = real(Split::Test);
    // Chosen like the evaluation windows: 4 bars with the previous 4.
    assert!(
        for_test
            .iter()
            .all(|w| w.clip.bars == 4 && w.previous.bars == 4)
    );
}

#[test]
fn evaluation_windows_are_4_4_with_a_previous_window_and_seeded() {
    bandmate_tests::require_data!("pop909");
    let songs = data::load_cached(
        Dataset::Pop909,
        Split::Test,
        &default_data_root(),
        &default_cache_dir(),
    )
    .unwrap();
    let a = eval_windows(&songs, 20, 3);
    let b = eval_windows(&songs, 20, 3);
    assert_eq!(a.len(), 20);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.song, x.first_bar), (&y.song, y.first_bar));
        assert_eq!(x.clip.bars, 4);
        assert_eq!(x.previous.bars, 4);
        assert_eq!(x.with_previous.bars, 8);
        assert_eq!(
            x.with_previous.window(4, 4).notes,
            x.clip.notes,
            "the window follows its previous bars"
        );
        assert_eq!(x.clip.time_signature, TimeSignature::FOUR_FOUR);
        assert!(x.first_bar >= 4 && x.first_bar % 4 == 0);
    }
    let c = eval_windows(&songs, 20, 4);
    assert!(
        a.iter()
            .zip(&c)
            .any(|(x, y)| (&x.song, x.first_bar) != (&y.song, y.first_bar))
    );
}
