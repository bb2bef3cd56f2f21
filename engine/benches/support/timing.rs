//! Timing helpers shared by the benches.

use std::time::Instant;

/// The `q` quantile (0–1) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The result of `f` and its wall time in milliseconds.
pub fn timed<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, f64)> {
    let start = Instant::now();
    let out = f()?;
    Ok((out, start.elapsed().as_secs_f64() * 1e3))
}
