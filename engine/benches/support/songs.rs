//! The songs the benches run on.

use bandmate::data::{Dataset, Song, Split, default_cache_dir, default_data_root, load_cached};

/// The test split of `dataset`, from the default data folder through the default cache.
pub fn test_songs(dataset: Dataset) -> anyhow::Result<Vec<Song>> {
    load_cached(
        dataset,
        Split::Test,
        &default_data_root(),
        &default_cache_dir(),
    )
}
