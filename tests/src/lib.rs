//! Shared helpers for the integration tests in `tests/tests/`.

use std::path::PathBuf;

/// `../shared/data` relative to the workspace root, or `BANDMATE_DATA` when set.
pub fn data_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("BANDMATE_DATA") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}
