//! `cargo xtask deps [--windows]`: install the Debian packages the workspace needs to build (the
//! plugin's GUI and standalone need the X11/GL/ALSA/JACK headers), only those that are missing;
//! with `--windows` also what the Windows cross-build and its Wine test need (the Rust target
//! `x86_64-pc-windows-gnu`, MinGW-w64, Wine).

use crate::shell::{self, Result};

/// The Rust target of the Windows build (`cargo xtask bundle --windows`).
pub const WINDOWS_TARGET: &str = "x86_64-pc-windows-gnu";

pub const DEBIAN_PACKAGES: &[&str] = &[
    "pkg-config",
    "libasound2-dev",
    "libjack-jackd2-dev",
    "libx11-xcb-dev",
    "libxcb1-dev",
    "libxcursor-dev",
    "libgl-dev",
    "libxkbcommon-dev",
    "libxrandr-dev",
    "xvfb",
];

/// What the test in a real DAW adds (`cargo xtask host-test ardour`, also run by `cargo xtask
/// test`): Ardour 7 and its headless Lua session tool `ardour7-lua`.
pub const ARDOUR_PACKAGES: &[&str] = &["ardour"];

/// What the Windows build (MinGW-w64 linker) and its smoke test (Wine) add.
pub const WINDOWS_PACKAGES: &[&str] = &["gcc-mingw-w64-x86-64", "wine64"];

pub fn run(args: &[String]) -> Result {
    match args {
        [] => install(DEBIAN_PACKAGES),
        [flag] if flag == "--windows" => {
            install(DEBIAN_PACKAGES)?;
            windows()
        }
        _ => Err(format!(
            "usage: cargo xtask deps [--windows] (got {args:?})"
        )),
    }
}

/// The Rust target and the packages of the Windows cross-build and its Wine test.
pub fn windows() -> Result {
    install(WINDOWS_PACKAGES)?;
    let installed = shell::output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed.lines().any(|t| t.trim() == WINDOWS_TARGET) {
        return Ok(());
    }
    shell::run("rustup", &["target", "add", WINDOWS_TARGET])
}

/// Install the `packages` that are missing.
pub fn install(packages: &[&str]) -> Result {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        eprintln!("xtask: system packages present");
        return Ok(());
    }
    if shell::output("dpkg-query", &["--version"]).is_none() {
        return Err(format!(
            "not a Debian system: install the equivalents of {} by hand",
            missing.join(" ")
        ));
    }
    let root = shell::output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0");
    let (program, prefix): (&str, &[&str]) = if root {
        ("apt-get", &[])
    } else {
        ("sudo", &["apt-get"])
    };
    let with = |args: &[&str]| -> Vec<String> {
        prefix.iter().chain(args).map(|s| s.to_string()).collect()
    };
    let update = with(&["update", "-qq"]);
    shell::run(
        program,
        &update.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let mut install = with(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.extend(missing.iter().map(|s| s.to_string()));
    shell::run(
        program,
        &install.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

fn installed(package: &str) -> bool {
    shell::output("dpkg-query", &["-W", "-f=${Status}", package])
        .is_some_and(|s| s.contains("install ok installed"))
}
