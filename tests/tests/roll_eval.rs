//! The roll model's evaluation (`bandmate eval-roll`) on a few POP909 test windows: every task
//! has every row, each row scores only what it generated, the true hole and the copy keep the
//! context, real music of other songs comes from the other held-out split, and the report
//! survives JSON and compares with itself as "no difference".

use bandmate::data::{self, Dataset, Split, default_cache_dir, default_data_root};
use bandmate::diffusion::eval::{RollEvalOptions, Task, eval_windows, evaluate_roll, real_windows};
use bandmate::diffusion::{RollModel, RollOptions};
use bandmate::evaluation::report::{self, COPY, MODEL, RANDOM, REAL, TRUTH};
use bandmate::music::TimeSignature;

#[test]
fn every_task_scores_every_row_on_the_generated_part() {
    bandmate_tests::require_data!("pop909");
    let model = RollModel::embedded().unwrap();
    let opts = RollEvalOptions {
        count: 6,
        seed: 1,
        seeds: vec![0, 1],
        sampling: RollOptions {
            steps: 8,
            ..RollOptions::default()
        },
        ..RollEvalOptions::default()
    };
    let evaluation = evaluate_roll(
        &model,
        &default_data_root(),
        &default_cache_dir(),
        &opts,
        "test",
        |_| {},
    )
    .unwrap();
    let report = &evaluation.report;
    assert_eq!(report.tasks.len(), Task::ALL.len());
    for task in &report.tasks {
        let names = bandmate_tests::row_names(task);
        assert_eq!(names, [MODEL, TRUTH, REAL, COPY, RANDOM], "{}", task.task);
        assert_eq!(task.windows.len(), 6);
        assert_eq!(task.seeds, 2);
        let value = |row: &str, metric: &str| bandmate_tests::metric_value(task, row, metric);
        // The true hole is its own density and keeps every given note.
        assert_eq!(value(TRUTH, "all: density ratio"), 1.0, "{}", task.task);
        // Every task but the unconditional one is given notes, which the true hole keeps.
        if task.task != Task::Unconditional.name() {
            assert_eq!(value(TRUTH, "all: given notes kept"), 1.0, "{}", task.task);
            assert_eq!(value(COPY, "all: given notes kept"), 1.0, "{}", task.task);
            assert_eq!(value(RANDOM, "all: given notes kept"), 1.0, "{}", task.task);
        }
        // The true hole against itself overlaps most on the set metrics.
        let oa = value(TRUTH, "set: mean OA");
        assert!(oa > 0.8, "{}: true hole mean OA {oa}", task.task);
        // Intervals hold their values, and the model's verdicts cover every other row.
        for row in &task.rows {
            for m in &row.metrics {
                if let (Some(v), Some(lo), Some(hi)) =
                    (m.interval.value, m.interval.lo, m.interval.hi)
                {
                    assert!(
                        lo <= v + 1e-9 && v <= hi + 1e-9,
                        "{}: {v} not in [{lo}, {hi}]",
                        task.task
                    );
                }
            }
        }
        assert!(task.rows[0].metrics.iter().all(|m| m.verdicts.len() == 4));
        assert!(task.markdown().contains("| all: voices (mean) |"));
    }
    // The melody infill regenerates the melody only: the accompaniment stays given.
    let melody = report
        .tasks
        .iter()
        .find(|t| t.task == Task::InfillMelody.name())
        .unwrap();
    assert!(
        melody
            .metrics
            .iter()
            .any(|m| m.name == "melody: leap from last given note")
    );
    assert!(
        !melody
            .metrics
            .iter()
            .any(|m| m.name.starts_with("accompaniment:"))
    );

    // The README's summary keeps the part-fit metrics of every generated note and the verdicts.
    let summary = report.summary_markdown();
    assert!(summary.contains("| all: voices (mean) |") && summary.contains("| set: mean OA |"));
    assert!(!summary.contains("| set: OA pitch_count |"));
    assert_eq!(
        summary.matches("Every metric, the model vs copy").count(),
        Task::ALL.len()
    );
    // JSON round trip, and a report compared with itself has no difference anywhere.
    let back = bandmate_tests::report_through_json(report, "roll-eval");
    let table = report::compare(report, &back, MODEL).unwrap();
    assert!(
        !table.contains("A better") && !table.contains("B better"),
        "{table}"
    );
    assert!(table.contains("no difference"));
    // The listening sheet: one MIDI file per window and row, and the PNG.
    let dir = std::env::temp_dir().join(format!("bandmate-roll-eval-{}", std::process::id()));
    let first = &evaluation.outputs[0];
    let files =
        bandmate::evaluation::listen::write(&dir, first.task.name(), &first.cases, &first.rows, 2)
            .unwrap();
    assert_eq!(
        files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "mid"))
            .count(),
        2 * 5
    );
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "png"))
    );
    for file in &files {
        assert!(std::fs::metadata(file).unwrap().len() > 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
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
