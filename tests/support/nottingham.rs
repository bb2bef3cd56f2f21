//! The Nottingham splits, loaded once per test binary (shared by the model tests through
//! `#[path]`).

use bandmate::data::{self, Dataset, Split};
use std::sync::OnceLock;

/// The train split for `Split::Train`, the test split for anything else.
pub fn songs(split: Split) -> &'static Vec<data::Song> {
    static TEST: OnceLock<Vec<data::Song>> = OnceLock::new();
    static TRAIN: OnceLock<Vec<data::Song>> = OnceLock::new();
    let cell = match split {
        Split::Train => &TRAIN,
        _ => &TEST,
    };
    cell.get_or_init(|| {
        data::load_cached(
            Dataset::Nottingham,
            split,
            &data::default_data_root(),
            &data::default_cache_dir(),
        )
        .expect("Nottingham is under the data root (see DATA.md)")
    })
}
