//! `cargo xtask <command>`: the project's tasks around the code.

mod bench;
mod bundle;
mod cuda;
mod demo;
mod deps;
mod host_test;
mod install;
mod screenshot;
mod shell;
mod test;
mod train;
mod validate;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  deps    install the Debian packages the build needs (only the missing ones) [--windows: also
          the Rust target x86_64-pc-windows-gnu, MinGW-w64 and Wine]
  demo    deps, bundle and install the plugin, run fill/harmonize/continue/band on the example [--no-install]
  test    deps, then every test: fmt check, clippy, cargo test --workspace
  train   train parts|roll|vae|latent|band: train a model (resumes; writes artifacts/<model>)
  bundle  build target/bundled/Bandmate.clap, Bandmate.vst3 and the standalone [--debug]
          [--windows: for 64-bit Windows, in target/bundled/windows/]
  host-test wine  the Windows bundle and a small CLAP host under Wine play the same notes as
          the Linux ones
  host-test ardour  Ardour 7 (headless, Lua) records the VST3's MIDI out: the clip within 1 ms
          [--bundle: the shipped target/bundled/Bandmate.vst3 instead of the debug library]
  install bundle, then copy the plugins into the user's plugin folders [--debug] [--to DIR]
  bench   bench plugin|data|editor|roll|latent|band [--compare-torch] [--rounds N], or
          bench --compare-torch [--rounds N] (every model against PyTorch): benchmarks
  screenshot  the standalone's editor under Xvfb, before and after Fill mask:
              target/screenshot/editor.png, editor-filled.png [--docs: also to docs/images/]
  validate    bundle, then clap-validator validate (built in /tmp/clap-validator) [--debug]
              [--fuzz DURATION]
  cuda    [check|build] [CARGO ARGS]: the plugin and engine with --features cuda in target/cuda,
          with nvcc and CUDA 13 from PyPI's NVIDIA wheels in target/cuda-venv (no GPU needed;
          CUDA_COMPUTE_CAP, default 80, picks the GPU generation)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("deps") => deps::run(&args[1..]),
        Some("host-test") => host_test::run(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("test") => test::run(&args[1..]),
        Some("train") => train::run(&args[1..]),
        Some("bundle") => bundle::run(&args[1..]),
        Some("install") => install::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("screenshot") => screenshot::run(&args[1..]),
        Some("validate") => validate::run(&args[1..]),
        Some("cuda") => cuda::run(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command '{other}'\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
