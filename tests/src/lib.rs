//! Shared helpers for the integration tests in `tests/tests/`.

use std::io::Write;
use std::path::PathBuf;

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
