//! Every shell-out of xtask goes through here.

use std::path::PathBuf;
use std::process::Command;

pub type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root (xtask lives one folder below it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent folder")
        .to_path_buf()
}

/// Run `program args...` in the workspace root, echoing it; an error if it fails.
pub fn run(program: &str, args: &[&str]) -> Result {
    run_with_env(program, args, &[])
}

/// `program args...` with extra environment variables in the workspace root, echoed.
fn command(program: &str, args: &[&str], env: &[(String, String)]) -> Command {
    eprintln!("$ {program} {}", args.join(" "));
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(root());
    command
}

/// [`run`] with extra environment variables.
pub fn run_with_env(program: &str, args: &[&str], env: &[(String, String)]) -> Result {
    let status = command(program, args, env)
        .status()
        .map_err(|e| format!("could not start {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed ({status})", args.join(" ")))
    }
}

/// [`run_with_env`], also returning what the program printed on stdout (passed through as it
/// comes).
pub fn run_teed_with_env(program: &str, args: &[&str], env: &[(String, String)]) -> Result<String> {
    use std::io::{BufRead, BufReader};
    let mut child = command(program, args, env)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start {program}: {e}"))?;
    let mut printed = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|e| format!("reading {program}'s output: {e}"))?;
            println!("{line}");
            printed.push_str(&line);
            printed.push('\n');
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    if status.success() {
        Ok(printed)
    } else {
        Err(format!("{program} {} failed ({status})", args.join(" ")))
    }
}

/// Run `program args...` with extra environment variables in the workspace root, echoed, and
/// return its stdout (stderr passes through); an error if it fails.
pub fn output_of(program: &str, args: &[&str], env: &[(String, String)]) -> Result<String> {
    let out = command(program, args, env)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("could not start {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed ({})",
            args.join(" "),
            out.status
        ))
    }
}

/// Run and capture stdout; `None` if the program is missing or fails.
pub fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The arguments of `cargo run` for the engine's `bandmate` program: cargo's `build` options
/// (a profile), then `args` for the program.
pub fn run_bandmate_args<'a>(build: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["run"];
    all.extend(build);
    all.extend(["-p", "bandmate-engine", "--bin", "bandmate", "--"]);
    all.extend(args);
    all
}

/// `cargo` as invoked by the user (the `CARGO` variable cargo sets), else `cargo`.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}
