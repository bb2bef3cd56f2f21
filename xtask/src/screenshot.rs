//! `cargo xtask screenshot [--docs]`: the standalone's editor under Xvfb on the dummy audio
//! backend, one picture per step of the README's walkthrough, cropped to the editor's window:
//!
//! - `editor.png`: the example clip with bars 3–4 masked (before Fill mask);
//! - `editor-filled.png`: the same clip after Fill mask (the demo's `example-fill.mid`, made by
//!   `bandmate demo` with its default seed), bars 3–4 still masked.
//!
//! Saved in `target/screenshot/`; `--docs` also copies them to `docs/images/`, where the README
//! shows them. Needs the Debian packages `xvfb` and `imagemagick`; not part of the tests.

use crate::shell::{self, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const DISPLAY: &str = ":97";

/// The pictures: (file name, the clip the demo wrote, the bars masked).
const SHOTS: [(&str, &str, &str); 2] = [
    ("editor.png", "example.mid", "3-4"),
    ("editor-filled.png", "example-fill.mid", "3-4"),
];

pub fn run(args: &[String]) -> Result {
    let docs = match args {
        [] => false,
        [flag] if flag == "--docs" => true,
        other => {
            return Err(format!(
                "usage: cargo xtask screenshot [--docs] (got {other:?})"
            ));
        }
    };
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
    let result = SHOTS
        .iter()
        .try_for_each(|&(png, clip, bars)| shoot(&dir, &dir.join(png), &dir.join(clip), bars));
    let _ = xvfb.kill();
    result?;
    if docs {
        let images = shell::root().join("docs/images");
        for (png, ..) in SHOTS {
            std::fs::copy(dir.join(png), images.join(png))
                .map_err(|e| format!("copy {png} to {}: {e}", images.display()))?;
            println!("screenshot: {}", images.join(png).display());
        }
    }
    Ok(())
}

/// Open `clip` with `bars` masked in the standalone and save its window as `png`.
fn shoot(dir: &Path, png: &Path, clip: &Path, bars: &str) -> Result {
    let standalone = crate::bundle::target_dir().join("debug/bandmate-standalone");
    let mut app = Command::new(&standalone)
        .args(["--backend", "dummy"])
        .current_dir(dir)
        .env("DISPLAY", DISPLAY)
        .env("BANDMATE_OPEN", clip)
        .env("BANDMATE_OPEN_MASK", bars)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", standalone.display()))?;
    std::thread::sleep(Duration::from_secs(15));
    // The whole screen, then cut to the editor (the standalone's window sits at the top left).
    let shot = Command::new("import")
        .args(["-display", DISPLAY, "-window", "root"])
        .args(["-crop", &crop(), "+repage"])
        .arg(png)
        .status();
    let _ = app.kill();
    let _ = app.wait();
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

/// ImageMagick's geometry of the editor's window at its default size.
fn crop() -> String {
    format!("{}x{}+0+0", EDITOR_SIZE.0, EDITOR_SIZE.1)
}

/// The editor's default size in pixels (the default view of `plugin/src/state.rs`).
const EDITOR_SIZE: (u32, u32) = (1100, 720);
