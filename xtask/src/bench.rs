//! `cargo xtask bench <what>`: benchmarks.
//!
//! - `plugin`: Bandmate's `process()` through a CLAP host (clack-host) on the release library,
//!   per 512-sample block at 48 kHz with a 64-note clip, p50/p99/max over 100,000 blocks, and
//!   the memory of one and of sixteen instances (`plugin/benches/process.rs`).
//! - `data`: parsing the datasets, loading them from the cache, and the metrics
//!   (`engine/benches/data.rs`).

use crate::shell::{self, Result};

pub fn run(args: &[String]) -> Result {
    match args.first().map(String::as_str) {
        Some("plugin") => {
            // The bench loads the release cdylib, which `cargo bench` does not build.
            let cargo = shell::cargo();
            shell::run(
                &cargo,
                &["build", "--release", "-p", "bandmate-plugin", "--lib"],
            )?;
            shell::run(
                &cargo,
                &["bench", "-p", "bandmate-plugin", "--bench", "process"],
            )
        }
        Some("data") => shell::run(
            &shell::cargo(),
            &["bench", "-p", "bandmate-engine", "--bench", "data"],
        ),
        _ => Err(format!(
            "usage: cargo xtask bench plugin|data (got {args:?})"
        )),
    }
}
