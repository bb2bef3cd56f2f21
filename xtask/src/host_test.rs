//! `cargo xtask host-test wine|ardour`: the plugin in hosts other than the tests' own.
//!
//! `ardour [--bundle]`: installs Ardour 7 (Debian `ardour`) and runs
//! `tests/tests/ardour_host.rs`, which drives Ardour headless through its Lua session tool: a
//! session with the Bandmate VST3 on a MIDI track, its MIDI out recorded on a second track for 8
//! bars, every note of the clip within 1 ms. The plugin is the debug library (its `process()`
//! aborts on any allocation), or with `--bundle` the shipped `target/bundled/Bandmate.vst3`
//! (built first).
//!
//! `wine`: the Windows build in a Windows host, here under Wine.
//!
//! Builds the Linux and the Windows bundles (`dist`) and the small CLAP host
//! `plugin/examples/clap_smoke.rs` for both, then runs the Linux host on the Linux
//! `Bandmate.clap` and the Windows host (under Wine) on the Windows `Bandmate.clap`: each loads
//! the plugin, activates it, plays the example clip for 1,000 blocks and prints every note
//! event. The two lists must be the same, sample for sample.

use crate::bundle::{self, Platform};
use crate::shell::{self, Result};

const SMOKE: &str = "clap_smoke";

pub fn run(args: &[String]) -> Result {
    match args {
        [host] if host == "wine" => wine(),
        [host] if host == "ardour" => ardour(false),
        [host, flag] if host == "ardour" && flag == "--bundle" => ardour(true),
        _ => Err(format!(
            "usage: cargo xtask host-test wine|ardour [--bundle] (got {args:?})"
        )),
    }
}

/// The smoke host for `platform`, built with the bundles' profile.
fn build_smoke(platform: Platform) -> Result<std::path::PathBuf> {
    let mut args = vec![
        "build",
        "-p",
        "bandmate-plugin",
        "--example",
        SMOKE,
        "--profile",
        "dist",
    ];
    if let Some(triple) = platform.target() {
        args.extend(["--target", triple]);
    }
    shell::run(&shell::cargo(), &args)?;
    let exe = platform
        .profile_dir("dist")
        .join("examples")
        .join(platform.exe(SMOKE));
    if exe.is_file() {
        Ok(exe)
    } else {
        Err(format!("the build did not produce {}", exe.display()))
    }
}

fn ardour(shipped_bundle: bool) -> Result {
    crate::deps::install(crate::deps::DEBIAN_PACKAGES)?;
    crate::deps::install(crate::deps::ARDOUR_PACKAGES)?;
    let mut env = vec![("BANDMATE_ARDOUR_REQUIRED".to_string(), "1".to_string())];
    if shipped_bundle {
        let bundles = bundle::build_for(Platform::Host, false)?;
        env.push((
            "BANDMATE_VST3".to_string(),
            bundles.vst3.to_string_lossy().into_owned(),
        ));
    }
    shell::run_with_env(
        &shell::cargo(),
        &[
            "test",
            "-p",
            "bandmate-tests",
            "--test",
            "ardour_host",
            "--",
            "--nocapture",
        ],
        &env,
    )
}

fn wine() -> Result {
    crate::deps::install(crate::deps::DEBIAN_PACKAGES)?;
    crate::deps::windows()?;
    let linux = bundle::build_for(Platform::Host, false)?;
    let windows = bundle::build_for(Platform::Windows, false)?;
    let linux_host = build_smoke(Platform::Host)?;
    let windows_host = build_smoke(Platform::Windows)?;
    if let Some(dir) = windows_host.parent() {
        wine_prng_shim(dir)?;
    }

    let on_linux = shell::output_of(
        &linux_host.to_string_lossy(),
        &[&linux.clap.to_string_lossy()],
        &[],
    )?;
    // A prefix of our own under target/, quiet, without a display.
    let prefix = bundle::target_dir().join("wine-prefix");
    let env = [
        (
            "WINEPREFIX".to_string(),
            prefix.to_string_lossy().into_owned(),
        ),
        ("WINEDEBUG".to_string(), "-all".to_string()),
        ("DISPLAY".to_string(), String::new()),
    ];
    let on_windows = shell::output_of(
        &wine_command(),
        &[
            &windows_host.to_string_lossy(),
            &windows.clap.to_string_lossy(),
        ],
        &env,
    )?;
    let lines = |s: &str| s.lines().map(str::trim).filter(|l| !l.is_empty()).count();
    let note_ons = on_linux.lines().filter(|l| l.contains(" on ")).count();
    if note_ons == 0 {
        return Err("the Linux build played no note: nothing to compare".into());
    }
    let first_difference = on_linux
        .lines()
        .zip(on_windows.lines())
        .position(|(a, b)| a.trim() != b.trim());
    if first_difference.is_some() || lines(&on_linux) != lines(&on_windows) {
        return Err(format!(
            "the Windows build under Wine played other notes than the Linux build: {} events vs \
             {}, first difference at event {:?}",
            lines(&on_windows),
            lines(&on_linux),
            first_difference
        ));
    }
    println!(
        "host-test wine: the Windows Bandmate.clap under Wine loaded, activated and played {} \
         note events ({note_ons} note-ons) in 1,000 blocks, the same as the Linux build",
        lines(&on_linux)
    );
    for path in [&windows.clap, &windows.vst3, &windows.standalone] {
        println!("  {}", path.display());
    }
    Ok(())
}

/// Rust's standard library for Windows draws its random numbers (hash-map seeds) from
/// `ProcessPrng` in `bcryptprimitives.dll`, which every Windows since 8 has but Debian 12's Wine
/// (8.0) lacks, so no Rust program or DLL loads there. For the test only, a one-function
/// `bcryptprimitives.dll` (`ProcessPrng` on advapi32's `RtlGenRandom`), built with MinGW, goes
/// next to the test host, where Windows looks for a DLL's imports first. The plugin itself is
/// unchanged.
const PRNG_SHIM_C: &str = r#"#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
"#;

/// Build the `bcryptprimitives.dll` shim ([`PRNG_SHIM_C`]) into `dir`.
fn wine_prng_shim(dir: &std::path::Path) -> Result {
    let source = dir.join("bcryptprimitives.c");
    std::fs::write(&source, PRNG_SHIM_C)
        .map_err(|e| format!("cannot write {}: {e}", source.display()))?;
    let dll = dir.join("bcryptprimitives.dll");
    shell::run(
        "x86_64-w64-mingw32-gcc",
        &[
            "-shared",
            "-O2",
            "-o",
            &dll.to_string_lossy(),
            &source.to_string_lossy(),
            "-ladvapi32",
        ],
    )
}

/// Wine's launcher: `wine` where the `wine` package is installed, else Debian's `wine64` package's
/// own (`/usr/lib/wine/wine64`, which is all `cargo xtask deps --windows` installs).
fn wine_command() -> String {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("wine").is_file()));
    if on_path {
        "wine".to_string()
    } else {
        "/usr/lib/wine/wine64".to_string()
    }
}
