//! Data-path benchmark: loading datasets from MIDI and from the cache, and the metrics.
//! Run with `cargo xtask bench data` (release profile). Reads `../shared/data` (or
//! `BANDMATE_DATA`); the cache goes to a temporary folder so the numbers include a cold build.

use bandmate::data::{Dataset, Split, default_data_root, load, load_cached};
use bandmate::metrics::{EvalOptions, evaluate};
use std::time::Instant;

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let root = default_data_root();
    let cache = std::env::temp_dir().join(format!("bandmate-bench-cache-{}", std::process::id()));
    println!("data: {}", root.display());

    for dataset in [Dataset::Nottingham, Dataset::Pop909] {
        let start = Instant::now();
        let mut notes = 0;
        for split in [Split::Train, Split::Valid, Split::Test] {
            notes += load(dataset, split, &root)?
                .iter()
                .map(|s| s.clip.notes.len())
                .sum::<usize>();
        }
        println!(
            "{:<12} parse MIDI (all splits):  {:>8.1} ms  ({notes} notes)",
            dataset.to_string(),
            start.elapsed().as_secs_f64() * 1e3
        );
        for split in [Split::Train, Split::Valid, Split::Test] {
            load_cached(dataset, split, &root, &cache)?; // builds the cache
        }
        let mut times = Vec::new();
        for _ in 0..10 {
            let start = Instant::now();
            for split in [Split::Train, Split::Valid, Split::Test] {
                load_cached(dataset, split, &root, &cache)?;
            }
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{:<12} load from cache (all splits): p50 {:>6.1} ms  max {:>6.1} ms  (10 runs)",
            dataset.to_string(),
            percentile(&times, 0.5),
            times[times.len() - 1]
        );
    }

    let test: Vec<_> = load_cached(Dataset::Nottingham, Split::Test, &root, &cache)?
        .into_iter()
        .map(|s| s.clip)
        .collect();
    let train: Vec<_> = load_cached(Dataset::Nottingham, Split::Train, &root, &cache)?
        .into_iter()
        .map(|s| s.clip)
        .collect();
    let start = Instant::now();
    let report = evaluate(&test, &train, &EvalOptions::default());
    println!(
        "metrics: Nottingham test ({}) vs train ({}): {:.1} ms, mean OA {:.3}",
        test.len(),
        train.len(),
        start.elapsed().as_secs_f64() * 1e3,
        report.mean_overlap_area().unwrap_or(f64::NAN)
    );
    std::fs::remove_dir_all(&cache)?;
    Ok(())
}
