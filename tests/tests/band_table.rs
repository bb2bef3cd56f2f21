//! The band player's chord table: fitted on the Nottingham train split it is exactly the table
//! shipped in `assets/band/table.json`, and its next-bar answers on the test split land on chord
//! tones far more often than random pitches would.

use bandmate::band::eval::score_next_bar;
use bandmate::band::{ChordBandPlayer, ChordTable};
use bandmate::data::{Dataset, Split, default_cache_dir, default_data_root, load_cached};

#[test]
fn the_shipped_table_is_the_fit_on_the_train_split_and_answers_in_the_chord() {
    bandmate_tests::require_data!("nottingham");
    let (root, cache) = (default_data_root(), default_cache_dir());
    let train = load_cached(Dataset::Nottingham, Split::Train, &root, &cache).unwrap();
    let fitted = ChordTable::fit(&train, 16).unwrap();
    assert!(fitted.bars > 10_000, "{} bars", fitted.bars);
    assert_eq!(fitted, ChordTable::embedded().unwrap());

    let test = load_cached(Dataset::Nottingham, Split::Test, &root, &cache).unwrap();
    let mut player = ChordBandPlayer::new(fitted);
    let scores = score_next_bar(&test, |melody, _| {
        player.reset();
        player.next_bar(melody).notes
    });
    assert!(scores.bars > 1000);
    // A random pitch class is in a given triad 3 times in 12.
    assert!(scores.chord_tone_ratio > 0.4, "{scores:?}");
    assert!(scores.f1 > 0.2, "{scores:?}");
}
