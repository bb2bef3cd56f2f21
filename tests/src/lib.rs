//! Shared helpers for the integration tests in `tests/tests/`.

use bandmate::evaluation::{EvalReport, TaskReport};
use std::path::{Path, PathBuf};

/// The data folder the tests read: [`bandmate::data::default_data_root`] (`BANDMATE_DATA` when
/// set, else `../shared/data` beside the workspace).
pub fn data_dir() -> PathBuf {
    bandmate::data::default_data_root()
}

/// Whether the datasets `parts` (`nottingham`, `pop909`, `jsb`, `bl2012`, `groove`) are in
/// [`data_dir`]; when one is missing it says which test is skipped (or, with
/// `BANDMATE_REQUIRE_DATA=1`, fails the test). Use it through [`require_data!`].
pub use bandmate::data::have_datasets as have_data;

/// Return from the calling test (skip it, with a message) unless the datasets are there:
/// `require_data!("nottingham");` as a test's first line. See [`have_data`].
#[macro_export]
macro_rules! require_data {
    ($($part:expr),+ $(,)?) => {
        if !$crate::have_data(&[$($part),+]) {
            return;
        }
    };
}

/// The entries of `dir` that `keep` accepts, sorted; panics when `dir` does not read.
pub fn sorted_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| keep(p))
        .collect();
    files.sort();
    files
}

/// Whether `path` names a `.mid` file.
pub fn is_midi(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "mid")
}

/// `report` written as `name`.json in a temporary folder (removed again) and read back; checks
/// that every task comes back.
pub fn report_through_json(report: &EvalReport, name: &str) -> EvalReport {
    let dir = std::env::temp_dir().join(format!("bandmate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.json"));
    report.write(&path).unwrap();
    let back = EvalReport::read(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(back.tasks.len(), report.tasks.len());
    back
}

/// The names of `task`'s rows, in order.
pub fn row_names(task: &TaskReport) -> Vec<&str> {
    task.rows.iter().map(|r| r.name.as_str()).collect()
}

/// The value of `metric` in row `row` of `task`; panics when it has none.
pub fn metric_value(task: &TaskReport, row: &str, metric: &str) -> f64 {
    task.value(row, metric)
        .and_then(|m| m.interval.value)
        .unwrap_or_else(|| panic!("{}: {row} has no {metric}", task.task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_dataset_is_reported_and_present_ones_are_not() {
        // Runs with the real data folder or without it: only the names decide here.
        let present = have_data(&["nottingham"]) == data_dir().join("nottingham").is_dir();
        assert!(present);
        if std::env::var_os("BANDMATE_REQUIRE_DATA").is_none() {
            assert!(!have_data(&["no-such-dataset"]));
        }
    }
}
