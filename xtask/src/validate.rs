//! `cargo xtask validate [--debug] [--fuzz DURATION]`: bundle the plugin, then run the
//! free-audio clap-validator on `target/bundled/Bandmate.clap` (`validate`, then, with
//! `--fuzz`, its fuzzer for that long, e.g. `10m`).
//!
//! The validator is built outside the project: `$CLAP_VALIDATOR` if set (a built binary), else a
//! clone of <https://github.com/free-audio/clap-validator> in `/tmp/clap-validator` (cloned if
//! missing), built there with its own target folder. Nothing of it enters this repository.

use crate::bundle;
use crate::shell::{self, Result};
use std::path::{Path, PathBuf};

const REPOSITORY: &str = "https://github.com/free-audio/clap-validator";
const CHECKOUT: &str = "/tmp/clap-validator";

pub fn run(args: &[String]) -> Result {
    let usage = "usage: cargo xtask validate [--debug] [--fuzz DURATION]";
    let mut debug = false;
    let mut fuzz: Option<&str> = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--debug" => debug = true,
            "--fuzz" => fuzz = Some(rest.next().ok_or(usage)?.as_str()),
            other => return Err(format!("{usage} (got '{other}')")),
        }
    }
    let validator = validator()?;
    let validator = validator
        .to_str()
        .ok_or("the validator's path is not UTF-8")?;
    let bundles = bundle::build(debug)?;
    let clap = bundles
        .clap
        .to_str()
        .ok_or("the bundle's path is not UTF-8")?;
    shell::run(validator, &["validate", clap])?;
    if let Some(duration) = fuzz {
        shell::run(validator, &["fuzz", "-d", duration, clap])?;
    }
    Ok(())
}

/// The validator's binary: `$CLAP_VALIDATOR`, or built in [`CHECKOUT`].
fn validator() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CLAP_VALIDATOR") {
        return Ok(PathBuf::from(path));
    }
    let checkout = Path::new(CHECKOUT);
    if !checkout.join("Cargo.toml").is_file() {
        shell::run("git", &["clone", "--depth", "1", REPOSITORY, CHECKOUT])?;
    }
    let manifest = checkout.join("Cargo.toml");
    let target = checkout.join("target");
    shell::run_with_env(
        &shell::cargo(),
        &[
            "build",
            "--release",
            "-p",
            "clap-validator",
            "--manifest-path",
            manifest
                .to_str()
                .ok_or("the checkout's path is not UTF-8")?,
        ],
        &[(
            "CARGO_TARGET_DIR".to_string(),
            target.to_string_lossy().into_owned(),
        )],
    )?;
    Ok(target.join("release").join(if cfg!(windows) {
        "clap-validator.exe"
    } else {
        "clap-validator"
    }))
}
