//! The roll model's evaluation (`bandmate eval-roll`) on a few POP909 test windows: every task
//! has the model's and both baselines' rows, the baselines are what they claim to be, and the
//! shipped model beats random notes on the mean overlapping area of every task.

use bandmate::data::{self, Dataset, Split, default_cache_dir, default_data_root};
use bandmate::diffusion::eval::{
    Method, RollEvalOptions, Task, eval_windows, evaluate_roll, markdown_table, wins,
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
    assert_eq!(rows.len(), 12);
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
    assert_eq!(table.lines().count(), 2 + 12);
    assert_eq!(wins(&rows).len(), 4);
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
