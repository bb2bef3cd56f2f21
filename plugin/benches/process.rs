//! `cargo xtask bench plugin`: the cost of Bandmate's `process()` as a CLAP host sees it, per
//! 512-sample block at 48 kHz while playing a 64-note clip, p50/p99/max over 100,000 blocks,
//! and a 100,000-note clip at 120 and at 60,000 BPM over 10,000 blocks; and the memory of one
//! and of sixteen active instances.
//!
//! Loads the release library cargo builds for this bench (`target/release/libbandmate_plugin.*`).

use bandmate::music::{Clip, Note};
use clack_host::prelude::*;
use std::path::PathBuf;

const RATE: f64 = 48_000.0;
const BLOCK: u32 = 512;
const BLOCKS: usize = 100_000;
const TEMPO: f64 = 120.0;

#[path = "../../tests/support/clap_host.rs"]
mod clap_host;

use clap_host::{Host as BenchHost, Processing, dense_clip_100k, load_state, state_with_clip};

fn library_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), PathBuf::from);
    let name = if cfg!(target_os = "macos") {
        "libbandmate_plugin.dylib"
    } else if cfg!(windows) {
        "bandmate_plugin.dll"
    } else {
        "libbandmate_plugin.so"
    };
    target.join("release").join(name)
}

/// 64 notes over 4 bars: a 16th-note line with chords on the downbeats.
fn clip_64() -> Clip {
    let mut clip = Clip::new(4);
    for step in 0..48u32 {
        clip.notes
            .push(Note::new(step * 4 / 3, 60 + (step % 12) as u8, 1, 90, 0));
    }
    for bar in 0..4u32 {
        for (i, pitch) in [48u8, 52, 55, 59].into_iter().enumerate() {
            clip.notes
                .push(Note::new(bar * 16, pitch + i as u8 % 2, 16, 70, 0));
        }
    }
    assert_eq!(clip.notes.len(), 64);
    clip
}

fn new_instance(entry: &PluginEntry) -> PluginInstance<BenchHost> {
    let mut instance = clap_host::new_instance(entry, "bandmate-bench");
    load_state(&mut instance, &state_with_clip(&clip_64())).expect("loading the clip");
    instance
}

fn config() -> PluginAudioConfiguration {
    PluginAudioConfiguration {
        sample_rate: RATE,
        min_frames_count: BLOCK,
        max_frames_count: BLOCK,
    }
}

/// Resident memory of this process in bytes (Linux), if known.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Times `blocks` blocks (after 1,000 warm-up blocks) of one instance playing `clip` at `tempo`
/// and prints p50/p99/max.
fn time_blocks(entry: &PluginEntry, clip: &Clip, what: &str, tempo: f64, blocks: usize) {
    let mut instance = clap_host::new_instance(entry, "bandmate-bench");
    load_state(&mut instance, &state_with_clip(clip)).expect("loading the clip");
    let mut processing = Processing::start(&mut instance, RATE, BLOCK, BLOCK);
    let mut output_events = EventBuffer::with_capacity(8192);
    let mut times = Vec::with_capacity(blocks);
    let mut events = 0usize;
    for block in 0..blocks + 1000 {
        let transport = clap_host::steady_transport(block as u64 * BLOCK as u64, RATE, tempo);
        output_events.clear();
        let elapsed = processing.block(BLOCK, &transport, &mut output_events);
        if block >= 1000 {
            // The first 1000 blocks warm caches up.
            times.push(elapsed.as_nanos() as u64);
            events += output_events.len() as usize;
        }
    }
    processing.stop(&mut instance);
    times.sort_unstable();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    println!(
        "process(): {blocks} blocks of {BLOCK} samples at {} kHz, {what} at {tempo} BPM, {events} note events",
        RATE / 1000.0
    );
    println!(
        "  p50 {:.2} µs   p99 {:.2} µs   max {:.2} µs   (block lasts {:.0} µs)",
        pct(0.5),
        pct(0.99),
        *times.last().unwrap() as f64 / 1000.0,
        BLOCK as f64 / RATE * 1e6
    );
}

fn main() {
    let path = library_path();
    let entry = clap_host::load_entry(&path);

    time_blocks(&entry, &clip_64(), "64-note clip", TEMPO, BLOCKS);
    // A dense clip costs bounded time per block: at 120 BPM a block holds up to 512 notes; at
    // 60,000 BPM every block holds the whole clip, and the player stops at its note-on cap.
    let dense = dense_clip_100k();
    time_blocks(&entry, &dense, "100,000-note clip", TEMPO, 10_000);
    time_blocks(&entry, &dense, "100,000-note clip", 60_000.0, 10_000);

    // Memory: resident growth for 1 and for 16 active instances.
    let before = resident_bytes();
    let mut one = new_instance(&entry);
    let p1 = one.activate(|_, _| (), config()).expect("activation");
    let after_one = resident_bytes();
    let mut sixteen = Vec::new();
    for _ in 0..16 {
        let mut instance = new_instance(&entry);
        let processor = instance.activate(|_, _| (), config()).expect("activation");
        sixteen.push((instance, processor));
    }
    let after_sixteen = resident_bytes();
    if let (Some(b), Some(a1), Some(a16)) = (before, after_one, after_sixteen) {
        println!(
            "memory: one instance {:.0} KiB, sixteen more {:.0} KiB ({:.0} KiB each)",
            a1.saturating_sub(b) as f64 / 1024.0,
            a16.saturating_sub(a1) as f64 / 1024.0,
            a16.saturating_sub(a1) as f64 / 1024.0 / 16.0
        );
    }
    one.deactivate(p1);
    for (mut instance, processor) in sixteen {
        instance.deactivate(processor);
    }
}
