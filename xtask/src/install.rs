//! `cargo xtask install [--debug] [--to DIR]`: bundle, then copy `Bandmate.clap` and
//! `Bandmate.vst3` into the user's plugin folders (or both into `DIR`).

use crate::bundle::{self, PLUGIN_NAME};
use crate::shell::Result;
use std::path::PathBuf;

pub fn run(args: &[String]) -> Result {
    let mut debug = false;
    let mut to: Option<PathBuf> = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--debug" => debug = true,
            "--to" => to = Some(rest.next().ok_or("--to needs a folder")?.into()),
            other => {
                return Err(format!(
                    "usage: cargo xtask install [--debug] [--to DIR] (got '{other}')"
                ));
            }
        }
    }
    let bundles = bundle::build(debug)?;
    for dest in install(&bundles, to)? {
        println!("installed {}", dest.display());
    }
    eprintln!("{PLUGIN_NAME}: rescan plugins in your host to pick up the new version");
    Ok(())
}

/// Copy the CLAP and VST3 bundles into the user's plugin folders (or both into `to`); returns
/// where they went.
pub fn install(bundles: &bundle::Bundles, to: Option<PathBuf>) -> Result<Vec<PathBuf>> {
    let (clap_dir, vst3_dir) = match to {
        Some(dir) => (dir.clone(), dir),
        None => user_plugin_folders()?,
    };
    let mut installed = Vec::new();
    for (bundle, dir) in [(&bundles.clap, &clap_dir), (&bundles.vst3, &vst3_dir)] {
        let name = bundle
            .file_name()
            .ok_or_else(|| format!("{} has no file name", bundle.display()))?;
        let dest = dir.join(name);
        bundle::remove(&dest)?;
        bundle::copy_tree(bundle, &dest)?;
        installed.push(dest);
    }
    Ok(installed)
}

/// The per-user CLAP and VST3 folders hosts scan on this platform.
fn user_plugin_folders() -> Result<(PathBuf, PathBuf)> {
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .ok_or(format!("{name} is not set"))
    };
    if cfg!(target_os = "macos") {
        let plugins = var("HOME")?.join("Library/Audio/Plug-Ins");
        Ok((plugins.join("CLAP"), plugins.join("VST3")))
    } else if cfg!(windows) {
        let common = var("LOCALAPPDATA")?.join("Programs").join("Common");
        Ok((common.join("CLAP"), common.join("VST3")))
    } else {
        let home = var("HOME")?;
        Ok((home.join(".clap"), home.join(".vst3")))
    }
}
