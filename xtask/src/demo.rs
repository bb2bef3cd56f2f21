//! `cargo xtask demo [--no-install] [bandmate demo options]`: set up, bundle and install the
//! plugin (CLAP and VST3 into the user's plugin folders), then run the main job on the embedded
//! example clip: fill, harmonize, continue and 8 bars of the band player, each written as a
//! .mid file with one PNG sheet of before/after piano rolls in `artifacts/demo`.

use crate::bundle;
use crate::install;
use crate::shell::{self, Result};

pub fn run(extra: &[String]) -> Result {
    crate::deps::install(crate::deps::DEBIAN_PACKAGES)?;
    let install_plugin = !extra.iter().any(|a| a == "--no-install");
    let extra: Vec<&str> = extra
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--no-install")
        .collect();
    // The plugin and the demo program share one build of the dependencies (the dist profile).
    let bundles = bundle::build(false)?;
    let installed = if install_plugin {
        install::install(&bundles, None)?
    } else {
        Vec::new()
    };
    let mut args = shell::run_bandmate_args(&["--profile", "dist"], &["demo"]);
    args.extend(extra);
    shell::run(&shell::cargo(), &args)?;

    println!("\nThe plugin:");
    for path in &installed {
        println!("  installed {}", path.display());
    }
    if !installed.is_empty() {
        println!("  rescan plugins in your host, then add Bandmate to a MIDI or instrument track");
    }
    println!(
        "  bundles in {}",
        bundles.clap.parent().unwrap_or(&bundles.clap).display()
    );
    println!(
        "  the standalone: {} (with JACK or ALSA; `--backend dummy` without audio)",
        bundles.standalone.display()
    );
    Ok(())
}
