//! `cargo xtask demo`: set up, build and run the demo on the embedded example.

use crate::shell::{self, Result};

pub fn run(extra: &[String]) -> Result {
    crate::deps::run()?;
    let mut args = vec![
        "run",
        "--release",
        "-p",
        "bandmate-engine",
        "--bin",
        "bandmate",
        "--",
        "demo",
    ];
    args.extend(extra.iter().map(String::as_str));
    shell::run(&shell::cargo(), &args)
}
