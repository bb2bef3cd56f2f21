//! A small CLAP host that loads a Bandmate `.clap`, plays the embedded example clip for 1,000
//! blocks of 512 samples at 48 kHz and 120 BPM, and prints every note event it sends, one per
//! line (`sample on|off channel key velocity`). Built for Linux and for Windows, it lets
//! `cargo xtask host-test wine` check that the Windows build plays the same notes under Wine
//! as the Linux build does here.
//!
//! `cargo run -p bandmate-plugin --example clap_smoke -- path/to/Bandmate.clap`

#[path = "../../tests/support/clap_host.rs"]
mod clap_host;

use std::path::PathBuf;

fn main() {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: clap_smoke path/to/Bandmate.clap");
        std::process::exit(2);
    };
    let clip = bandmate::music::example_clip();
    let played = clap_host::play_steady(&path, &clip, 48_000.0, 512, 1_000, 120.0);
    for (sample, on, channel, key, velocity) in &played {
        let kind = if *on { "on" } else { "off" };
        println!("{sample} {kind} {channel} {key} {velocity}");
    }
    eprintln!(
        "clap_smoke: {} note events from {} in 1,000 blocks",
        played.len(),
        path.display()
    );
}
