//! The roll model's evaluation (`bandmate eval-roll`) on a few POP909 test windows: every task
//! has the model's, both baselines' and the real music's rows, the baselines are what they claim
//! to be, the shipped model beats random notes on the mean overlapping area of every task, and
//! the real row holds real windows of songs the evaluation does not use.

use bandmate::data::{self, Dataset, Split, default_cache_dir, default_data_root};
use bandmate::diffusion::eval::{
    Method, RollEvalOptions, Task, eval_windows, evaluate_roll, markdown_table, wins, wins_of,
};
use bandmate::diffusion::{RollModel, RollOptions};
use bandmate::music::TimeSignature;

#[test]
fn the_model_beats_random_notes_on_every_task() {
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
    for task in Task::ALL {
        let mean_oa = |m: Method| {
            rows.iter()
                .find(|r| r.task == task && r.method == m)
                .and_then(|r| r.region.mean_overlap_area())
                .unwrap()
        };
        assert!(
            mean_oa(Method::Model) > mean_oa(Method::Random),
            "{}: model {} vs random {}",
            task.name(),
            mean_oa(Method::Model),
            mean_oa(Method::Random)
        );
    }
    let table = markdown_table(&rows);
    assert_eq!(table.lines().count(), 2 + 16);
    assert_eq!(wins(&rows).len(), 4);
    // Real music of other songs: a score for every column, and better than random notes on
    // the mean OA of every task (real music is what the metrics reward).
    assert_eq!(wins_of(&rows, Method::Real).len(), 4);
    for (task, total, _, _) in wins_of(&rows, Method::Real) {
        assert_eq!(total, 14, "{}", task.name());
    }
    for task in Task::ALL {
        let row = |m: Method| {
            rows.iter()
                .find(|r| r.task == task && r.method == m)
                .unwrap()
        };
        let mean_oa = |m: Method| row(m).region.mean_overlap_area().unwrap();
        assert!(
            mean_oa(Method::Real) > mean_oa(Method::Random),
            "{}: real {} vs random {}",
            task.name(),
            mean_oa(Method::Real),
            mean_oa(Method::Random)
        );
    }
}

#[test]
fn the_real_rows_windows_come_from_the_other_held_out_split() {
    let load = |split| {
        data::load_cached(
            Dataset::Pop909,
            split,
            &default_data_root(),
            &default_cache_dir(),
        )
        .unwrap()
    };
    let (test, valid) = (load(Split::Test), load(Split::Valid));
    let test_songs: std::collections::HashSet<&str> = test.iter().map(|s| s.id.as_str()).collect();
    let real = eval_windows(&valid, 20, 0);
    assert_eq!(real.len(), 20);
    assert!(real.iter().all(|w| !test_songs.contains(w.song.as_str())));
}

#[test]
fn evaluation_windows_are_4_4_with_a_previous_window_and_seeded() {
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
