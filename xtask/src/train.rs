//! `cargo xtask train roll [ARGS]`: build the release `bandmate` and run `bandmate train roll`
//! (POP909 train split, checkpoints in artifacts/train/roll, resumed when present; the best
//! weights go to assets/roll). Extra arguments are passed on, e.g. `--budget 95m --fresh`.

use crate::shell::{self, Result};

pub fn run(extra: &[String]) -> Result {
    match extra.first().map(String::as_str) {
        Some("roll") => {}
        Some(other) => return Err(format!("train: unknown model '{other}' (roll)")),
        None => return Err(
            "usage: cargo xtask train roll [--budget 95m] [--config tiny|small|base] [--fresh] ..."
                .into(),
        ),
    }
    let mut args = vec![
        "run",
        "--release",
        "-p",
        "bandmate-engine",
        "--bin",
        "bandmate",
        "--",
        "train",
    ];
    args.extend(extra.iter().map(String::as_str));
    shell::run(&shell::cargo(), &args)
}
