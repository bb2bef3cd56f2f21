//! `cargo xtask bench band`: the band player's live next-bar prediction on the CPU.
//!
//! - Loading the embedded recurrent multimodal VAE, and the resident memory it adds.
//! - One next-bar answer (`BandPlayer::next_bar`: the played bar's notes in, the next bar's
//!   notes out), p50/p99/max over the first 1,000 bars of the Nottingham test melodies, fed bar
//!   by bar as the plugin's band thread does (melody heard, own accompaniment fed back).
//! - The same for a bar of 300 notes (bounded work on absurd input).

use anyhow::{Context, Result};
use bandmate::band::player::{BandModel, BandPlayer};
use bandmate::data::{Dataset, Split, default_cache_dir, default_data_root, load_cached};
use bandmate::music::{Clip, Note, TrackRole};
use std::time::Instant;

#[path = "support/timing.rs"]
mod timing;
use timing::{percentile, timed};

/// Resident memory of this process in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn main() -> Result<()> {
    // SAFETY: first thing in main, before any other thread exists.
    unsafe { bandmate::nn::set_thread_count_env() };
    let songs = load_cached(
        Dataset::Nottingham,
        Split::Test,
        &default_data_root(),
        &default_cache_dir(),
    )?;
    let before = rss_kib();
    let (model, load_ms) = timed(BandModel::embedded)?;
    let mut player = BandPlayer::new(&model)?;
    println!(
        "band: load the embedded model {load_ms:.1} ms, +{} KiB resident",
        rss_kib().saturating_sub(before)
    );
    let mut times = Vec::with_capacity(1000);
    'songs: for song in &songs {
        player.reset()?;
        let melody = song
            .clip
            .track_with_role(TrackRole::Melody)
            .context("a Nottingham tune without melody")?;
        for bar in 0..song.clip.bars {
            let mut played = song.clip.window(bar, 1);
            played.notes.retain(|n| n.track == melody);
            let tick = Instant::now();
            let answer = player.next_bar(&played)?;
            times.push(tick.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(answer);
            if times.len() == 1000 {
                break 'songs;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "band: next bar over {} test bars: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms (target p99 <= 10 ms)",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
    let mut crowded = Clip::new(1);
    crowded.tracks[0].role = TrackRole::Melody;
    crowded.notes = (0..300)
        .map(|i| Note::new(i % 16, 40 + (i * 7 % 48) as u8, 1, 90, 0))
        .collect();
    let mut heavy = Vec::new();
    for _ in 0..50 {
        let tick = Instant::now();
        std::hint::black_box(player.next_bar(&crowded)?);
        heavy.push(tick.elapsed().as_secs_f64() * 1e3);
    }
    heavy.sort_by(f64::total_cmp);
    println!(
        "band: a bar of 300 notes: p50 {:.3} ms  max {:.3} ms; resident after the run {} KiB",
        percentile(&heavy, 0.5),
        heavy[heavy.len() - 1],
        rss_kib()
    );
    Ok(())
}
