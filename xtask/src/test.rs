//! `cargo xtask test`: set up, then every check CI runs.

use crate::shell::{self, Result};

pub fn run(extra: &[String]) -> Result {
    crate::deps::install(crate::deps::DEBIAN_PACKAGES)?;
    // The plugin in a real DAW (tests/tests/ardour_host.rs), which otherwise skips.
    crate::deps::install(crate::deps::ARDOUR_PACKAGES)?;
    let cargo = shell::cargo();
    shell::run(&cargo, &["fmt", "--all", "--", "--check"])?;
    shell::run(
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    let mut args = vec!["test", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    shell::run(&cargo, &args)
}
