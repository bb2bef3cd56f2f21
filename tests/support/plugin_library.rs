//! The plugin's debug library, built once per test binary: `cargo build -p bandmate-plugin --lib`
//! (cargo builds only the rlib of a dependency, so the tests build the cdylib themselves). Its
//! `process()` aborts on any allocation (nice-plug's `assert_process_allocs`).

use std::path::PathBuf;
use std::sync::OnceLock;

/// The debug cdylib's path, as cargo reports it (built on first use).
pub fn debug_library() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build).clone()
}

fn build() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "build",
            "-p",
            "bandmate-plugin",
            "--lib",
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running cargo build");
    assert!(
        output.status.success(),
        "cargo build -p bandmate-plugin --lib failed"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let library = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "bandmate_plugin")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .find(|f| {
            matches!(
                f.extension().and_then(|e| e.to_str()),
                Some("so" | "dylib" | "dll")
            )
        });
    library.expect("cargo reported no cdylib for bandmate-plugin")
}
