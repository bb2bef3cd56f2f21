//! `cargo xtask bundle [--debug] [--windows]`: build the plugin and lay out
//! `target/bundled/Bandmate.clap`, `Bandmate.vst3` and the standalone `bandmate-standalone` for
//! this platform, or with `--windows` `target/bundled/windows/` for 64-bit Windows
//! (cross-compiled with MinGW-w64; `cargo xtask deps --windows` installs the target and linker).
//!
//! The `dist` profile by default (the release build without debug info, so the bundles stay
//! small); `--debug` bundles a debug build, whose `process()` aborts on any
//! allocation (nice-plug's `assert_process_allocs`), for the host-level tests.

use crate::deps::WINDOWS_TARGET;
use crate::shell::{self, Result};
use std::fs;
use std::path::{Path, PathBuf};

pub const PLUGIN_NAME: &str = "Bandmate";
const PACKAGE: &str = "bandmate-plugin";
const LIB_NAME: &str = "bandmate_plugin";
const STANDALONE: &str = "bandmate-standalone";

/// Where the bundles went.
pub struct Bundles {
    pub clap: PathBuf,
    pub vst3: PathBuf,
    pub standalone: PathBuf,
}

/// Whom the bundles are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// The machine xtask runs on.
    Host,
    /// 64-bit Windows, cross-compiled with MinGW-w64.
    Windows,
}

impl Platform {
    fn os(self) -> &'static str {
        match self {
            Platform::Host => std::env::consts::OS,
            Platform::Windows => "windows",
        }
    }

    fn arch(self) -> &'static str {
        match self {
            Platform::Host => std::env::consts::ARCH,
            Platform::Windows => "x86_64",
        }
    }

    /// `--target` for cargo, if not the host.
    pub fn target(self) -> Option<&'static str> {
        match self {
            Platform::Host => None,
            Platform::Windows => Some(WINDOWS_TARGET),
        }
    }

    /// Where cargo puts the build of `profile` (`debug`, `dist`).
    pub fn profile_dir(self, profile: &str) -> PathBuf {
        let target = target_dir();
        match self.target() {
            None => target.join(profile),
            Some(triple) => target.join(triple).join(profile),
        }
    }

    /// The file name of executable `name`.
    pub fn exe(self, name: &str) -> String {
        if self.os() == "windows" {
            format!("{name}.exe")
        } else {
            name.to_string()
        }
    }

    fn library_file_name(self) -> String {
        match self.os() {
            "macos" => format!("lib{LIB_NAME}.dylib"),
            "windows" => format!("{LIB_NAME}.dll"),
            _ => format!("lib{LIB_NAME}.so"),
        }
    }
}

pub fn run(args: &[String]) -> Result {
    let (mut debug, mut platform) = (false, Platform::Host);
    for arg in args {
        match arg.as_str() {
            "--debug" => debug = true,
            "--windows" => platform = Platform::Windows,
            _ => {
                return Err(format!(
                    "usage: cargo xtask bundle [--debug] [--windows] (got {args:?})"
                ));
            }
        }
    }
    if platform == Platform::Windows {
        crate::deps::windows()?;
    }
    let bundles = build_for(platform, debug)?;
    for path in [&bundles.clap, &bundles.vst3, &bundles.standalone] {
        println!("{}", path.display());
    }
    Ok(())
}

/// Build the plugin and the standalone for this machine, then bundle them.
pub fn build(debug: bool) -> Result<Bundles> {
    build_for(Platform::Host, debug)
}

/// Build the plugin and the standalone for `platform`, then bundle them (in
/// `target/bundled/` for the host, `target/bundled/windows/` for Windows).
pub fn build_for(platform: Platform, debug: bool) -> Result<Bundles> {
    let mut options = Vec::new();
    if !debug {
        options.extend(["--profile", "dist"]);
    }
    if let Some(triple) = platform.target() {
        options.extend(["--target", triple]);
    }
    let both = ["build", "-p", PACKAGE, "--lib", "--bin", STANDALONE];
    shell::run(&shell::cargo(), &[&both[..], &options].concat())?;
    // rustc skips LTO for a crate built as an rlib too (the standalone links the plugin's
    // library), and MinGW's linker then keeps most of the dead code: the Windows plugin came
    // out at 40 MB instead of 28. There the library is built again alone as a cdylib, with the
    // profile's LTO, over the first one. (Not on Linux, where the linker drops the dead code
    // itself — 29.1 MB either way — and the two builds would undo each other's cache: ~4
    // minutes each time.)
    if platform.os() == "windows" && !debug {
        let cdylib = ["rustc", "-p", PACKAGE, "--lib", "--crate-type", "cdylib"];
        shell::run(&shell::cargo(), &[&cdylib[..], &options].concat())?;
    }
    let profile_dir = platform.profile_dir(if debug { "debug" } else { "dist" });
    let mut bundled = target_dir().join("bundled");
    if platform != Platform::Host {
        bundled = bundled.join(platform.os());
    }
    fs::create_dir_all(&bundled).map_err(|e| format!("creating {}: {e}", bundled.display()))?;

    let library = profile_dir.join(platform.library_file_name());
    if !library.is_file() {
        return Err(format!("the build did not produce {}", library.display()));
    }
    let clap = bundled.join(format!("{PLUGIN_NAME}.clap"));
    let vst3 = bundled.join(format!("{PLUGIN_NAME}.vst3"));
    bundle_clap(platform, &library, &clap)?;
    bundle_vst3(platform, &library, &vst3)?;
    let exe = platform.exe(STANDALONE);
    let standalone = bundled.join(&exe);
    copy(&profile_dir.join(&exe), &standalone)?;
    Ok(Bundles {
        clap,
        vst3,
        standalone,
    })
}

/// `CARGO_TARGET_DIR` if set, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                shell::root().join(dir)
            }
        }
        None => shell::root().join("target"),
    }
}

/// CLAP: the library itself under the bundle's name (a macOS bundle folder on macOS).
fn bundle_clap(platform: Platform, library: &Path, clap: &Path) -> Result {
    remove(clap)?;
    if platform.os() == "macos" {
        mac_bundle(library, clap, "BNDL")
    } else {
        copy(library, clap)
    }
}

/// VST3: `Name.vst3/Contents/<arch>-<os>/Name.<ext>` (a macOS bundle on macOS).
fn bundle_vst3(platform: Platform, library: &Path, vst3: &Path) -> Result {
    remove(vst3)?;
    if platform.os() == "macos" {
        return mac_bundle(library, vst3, "BNDL");
    }
    let arch = platform.arch();
    let (folder, ext) = if platform.os() == "windows" {
        (format!("{arch}-win"), "vst3")
    } else {
        (format!("{arch}-linux"), "so")
    };
    let dest = vst3
        .join("Contents")
        .join(folder)
        .join(format!("{PLUGIN_NAME}.{ext}"));
    copy(library, &dest)
}

fn mac_bundle(library: &Path, bundle: &Path, package_type: &str) -> Result {
    let contents = bundle.join("Contents");
    copy(library, &contents.join("MacOS").join(PLUGIN_NAME))?;
    let version = env!("CARGO_PKG_VERSION");
    let plist = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>CFBundleExecutable</key><string>{PLUGIN_NAME}</string>
  <key>CFBundleIdentifier</key><string>org.bandmate.bandmate</string>
  <key>CFBundleName</key><string>{PLUGIN_NAME}</string>
  <key>CFBundlePackageType</key><string>{package_type}</string>
  <key>CFBundleShortVersionString</key><string>{version}</string>
  <key>CFBundleVersion</key><string>{version}</string>
  <key>NSHighResolutionCapable</key><true/>
</dict>
</plist>
"#
    );
    write(&contents.join("Info.plist"), plist.as_bytes())?;
    write(
        &contents.join("PkgInfo"),
        format!("{package_type}????").as_bytes(),
    )
}

fn copy(from: &Path, to: &Path) -> Result {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    // Replace rather than overwrite in place: a host may have the old library mapped.
    remove(to)?;
    fs::copy(from, to)
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))?;
    Ok(())
}

fn write(path: &Path, data: &[u8]) -> Result {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    fs::write(path, data).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Remove a file or folder if it exists.
pub fn remove(path: &Path) -> Result {
    let result = match fs::symlink_metadata(path) {
        Err(_) => return Ok(()),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    };
    result.map_err(|e| format!("removing {}: {e}", path.display()))
}

/// Copy a file or a folder tree.
pub fn copy_tree(from: &Path, to: &Path) -> Result {
    if from.is_dir() {
        fs::create_dir_all(to).map_err(|e| format!("creating {}: {e}", to.display()))?;
        let entries = fs::read_dir(from).map_err(|e| format!("reading {}: {e}", from.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("reading {}: {e}", from.display()))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        copy(from, to)
    }
}
