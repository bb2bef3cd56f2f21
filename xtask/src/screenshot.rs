//! `cargo xtask screenshot`: the standalone's editor with the example clip and bars 3–4 masked,
//! under Xvfb on the dummy audio backend, saved as `target/screenshot/editor.png` (needs the
//! Debian packages `xvfb` and `imagemagick`; not part of the tests).

use crate::shell::{self, Result};
use std::process::{Command, Stdio};
use std::time::Duration;

const DISPLAY: &str = ":97";

pub fn run() -> Result {
    let cargo = shell::cargo();
    let dir = shell::root().join("target/screenshot");
    let dir_text = dir.to_string_lossy().into_owned();
    shell::run(
        &cargo,
        &shell::run_bandmate_args(&[], &["demo", "--out-dir", &dir_text]),
    )?;
    shell::run(
        &cargo,
        &[
            "build",
            "-p",
            "bandmate-plugin",
            "--bin",
            "bandmate-standalone",
        ],
    )?;
    let mut xvfb = Command::new("Xvfb")
        .args([DISPLAY, "-screen", "0", "1280x800x24"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start Xvfb (apt-get install xvfb): {e}"))?;
    std::thread::sleep(Duration::from_secs(2));
    let standalone = crate::bundle::target_dir().join("debug/bandmate-standalone");
    let mut app = Command::new(&standalone)
        .args(["--backend", "dummy"])
        .env("DISPLAY", DISPLAY)
        .env("BANDMATE_OPEN", dir.join("example.mid"))
        .env("BANDMATE_OPEN_MASK", "3-4")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", standalone.display()))?;
    std::thread::sleep(Duration::from_secs(15));
    let png = dir.join("editor.png");
    let shot = Command::new("import")
        .args(["-display", DISPLAY, "-window", "root"])
        .arg(&png)
        .status();
    let _ = app.kill();
    let _ = xvfb.kill();
    match shot {
        Ok(s) if s.success() => {
            println!("screenshot: {}", png.display());
            Ok(())
        }
        Ok(s) => Err(format!("import failed ({s})")),
        Err(e) => Err(format!(
            "could not run import (apt-get install imagemagick): {e}"
        )),
    }
}
