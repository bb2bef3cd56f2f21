//! Windows of a dataset's test split for the tests that fill bars 3–4 of four-bar windows
//! (shared through `#[path]`). Needs `../shared/data`.
#![allow(dead_code)]

use bandmate::data::{self, Dataset, Split};
use bandmate::music::{Clip, Note, STEPS_PER_BEAT, TimeSignature};
use std::collections::BTreeSet;

/// The test split of `dataset`, from the dataset cache.
pub fn test_songs(dataset: Dataset) -> Vec<data::Song> {
    data::load_cached(
        dataset,
        Split::Test,
        &data::default_data_root(),
        &data::default_cache_dir(),
    )
    .unwrap_or_else(|e| panic!("the {dataset} test split does not load: {e:#}"))
}

/// The third window of `bars` bars of each 4/4 song of `songs` without meter changes, in order.
pub fn third_windows(songs: &[data::Song], bars: u32) -> impl Iterator<Item = Clip> + '_ {
    songs
        .iter()
        .filter(|s| {
            s.clip.time_signature == TimeSignature::FOUR_FOUR && s.clip.meter_changes.is_empty()
        })
        .filter_map(move |s| {
            bandmate::music::segment::windows(&s.clip, bars, bars)
                .into_iter()
                .nth(2)
        })
}

/// How closely the notes `out` wrote in bars 3–4 repeat bars 1–2 of `clip` (4/4): the Jaccard
/// index of their onsets as (step in the 2-bar period, pitch), 0 to 1.
pub fn onsets_shared_with_bars_1_2(clip: &Clip, out: &Clip) -> f64 {
    let period = 2 * 4 * STEPS_PER_BEAT;
    let onsets = |notes: &mut dyn Iterator<Item = &Note>| -> BTreeSet<(u32, u8)> {
        notes.map(|n| (n.start % period, n.pitch)).collect()
    };
    let before = onsets(&mut clip.notes.iter().filter(|n| n.start < period));
    let generated = onsets(&mut out.notes.iter().filter(|n| n.start >= period));
    before.intersection(&generated).count() as f64 / before.union(&generated).count().max(1) as f64
}

/// The means over `clips` of [`onsets_shared_with_bars_1_2`] for a fill meant to follow bars 1–2
/// and a fresh one: `fill(index, clip, true)` and `fill(index, clip, false)`, printed per clip
/// as `names` (the close one first).
pub fn mean_onsets_shared(
    clips: &[Clip],
    names: [&str; 2],
    fill: impl Fn(usize, &Clip, bool) -> Clip,
) -> (f64, f64) {
    let (mut close_total, mut fresh_total) = (0.0, 0.0);
    for (i, clip) in clips.iter().enumerate() {
        let [close, fresh] =
            [true, false].map(|close| onsets_shared_with_bars_1_2(clip, &fill(i, clip, close)));
        println!(
            "clip {i}: onsets shared with bars 1-2: {} {close:.2}, {} {fresh:.2}",
            names[0], names[1]
        );
        close_total += close;
        fresh_total += fresh;
    }
    let n = clips.len() as f64;
    (close_total / n, fresh_total / n)
}
