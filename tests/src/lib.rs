//! Shared helpers for the integration tests in `tests/tests/`.

use bandmate::evaluation::{EvalReport, TaskReport};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `../shared/data` relative to the workspace root, or `BANDMATE_DATA` when set.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BANDMATE_DATA").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// Whether the datasets `parts` (folders of the data folder: `nottingham`, `pop909`, `jsb`,
/// `bl2012`, `groove`) are there. When one is missing the calling test should return at once
/// ([`require_data!`]): this says which test is skipped and why, straight to the terminal
/// (`cargo test` shows it without `--nocapture`). With `BANDMATE_REQUIRE_DATA=1` a missing
/// dataset fails the test instead, for machines that must run every test.
pub fn have_data(parts: &[&str]) -> bool {
    let root = data_dir();
    let missing: Vec<&str> = parts
        .iter()
        .copied()
        .filter(|p| !root.join(p).is_dir())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let message = format!(
        "skipped {test}: it needs the dataset{} {} in {} (not found; set BANDMATE_DATA to the \
         data folder, see the README's \"Datasets\")",
        if missing.len() > 1 { "s" } else { "" },
        missing.join(", "),
        root.display()
    );
    if std::env::var_os("BANDMATE_REQUIRE_DATA").is_some_and(|v| v != "0" && !v.is_empty()) {
        panic!("{message} (BANDMATE_REQUIRE_DATA is set)");
    }
    // Not through eprintln!: the test harness would hide it for a passing test.
    let _ = writeln!(std::io::stderr().lock(), "{message}");
    false
}

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
