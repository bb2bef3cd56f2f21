//! `cargo xtask cuda [check|build] [CARGO ARGS...]`: the GPU build (`--features cuda`) of the
//! plugin (its CLAP/VST3 library and standalone) and the engine (library and the `bandmate`
//! program), on a machine that needs neither a GPU nor a CUDA toolkit nor an NVIDIA driver.
//! `check` (the default) type-checks it, `build` also links it; further arguments go to cargo
//! (e.g. `-j 1`, `--release`).
//!
//! 1. The toolkit: NVIDIA's CUDA 13.0 wheels from PyPI (nvcc, cicc, the headers, cudart, nvrtc,
//!    cuBLAS, cuRAND, CCCL; about 700 MB of downloads, 1.2 GB installed) in a venv under
//!    `target/cuda-venv`, installed once. They all land in one prefix,
//!    `site-packages/nvidia/cu13/{bin,include,lib,nvvm}`, which serves as `CUDA_HOME`. The cu12
//!    wheels have no `nvcc`, so there is no CUDA 12 route from PyPI.
//! 2. The link folder `target/cuda-venv/link/lib` (`CUDA_ROOT`, a second link-search root of
//!    cudarc): the unversioned names the linker asks for (`libcublas.so` → the wheel's
//!    `libcublas.so.13`, …) and a stub `libcuda.so`. The driver library is in no wheel: the stub
//!    has every `cu…` entry point of the wheel's `cuda.h`, each returning
//!    `CUDA_ERROR_NO_DEVICE`, and the soname `libcuda.so.1`, so the programs built here load the
//!    real driver on a GPU machine. **The stub is only for linking: it must never be on
//!    `LD_LIBRARY_PATH` of a GPU machine** (it would hide the real driver, and every model would
//!    run on the CPU). To run a CUDA build there: `LD_LIBRARY_PATH=<cu13>/lib` (CUDA 13 needs an
//!    NVIDIA driver R580 or newer).
//! 3. `nice -n 19 cargo check|build -p bandmate-plugin -p bandmate-engine --features cuda` with
//!    its own target folder `target/cuda` (the CPU build in `target` stays valid), `PATH` and
//!    `NVCC` with the wheel's nvcc, `CUDA_HOME`, `CUDA_ROOT`, `CUDARC_CUDA_VERSION=13000` and
//!    `CUDA_COMPUTE_CAP` (80 unless set: the GPU's compute capability times ten, at least 75 for
//!    CUDA 13; `nvidia-smi --query-gpu=compute_cap --format=csv,noheader` tells it). The first
//!    run of each of check and build compiles candle's 26 CUDA kernel files with nvcc (about
//!    12 minutes on two cores).

use crate::shell::{self, Result};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The pinned wheels. `crt` and `nvvm` are named so that they are pinned too (else nvcc pulls
/// the newest ones, which do not match it); 13.0 because cudarc 0.19 knows CUDA up to 13.4.
pub const WHEELS: &str = "cuda-toolkit[nvcc,crt,nvvm,cudart,nvrtc,cublas,curand,cccl]==13.0.2";

/// What `nvcc --version` says for the pinned wheels.
const NVCC_RELEASE: &str = "release 13.0,";

/// cudarc's name for the toolkit version (`CUDARC_CUDA_VERSION`).
const CUDARC_CUDA_VERSION: &str = "13000";

/// The compute capability built for when `CUDA_COMPUTE_CAP` is not set: Ampere (A100, RTX 30xx);
/// its PTX also runs on later GPUs (candle's `moe` kernels, compiled to machine code, only on
/// 8.x).
const DEFAULT_COMPUTE_CAP: u32 = 80;

/// The oldest compute capability CUDA 13's nvcc compiles for (Turing).
const MIN_COMPUTE_CAP: u32 = 75;

/// The unversioned names the linker looks for, and the wheels' files they point to (in
/// `<cu13>/lib`).
const LINK_NAMES: &[(&str, &str)] = &[
    ("libcudart.so", "libcudart.so.13"),
    ("libnvrtc.so", "libnvrtc.so.13"),
    ("libcublas.so", "libcublas.so.13"),
    ("libcublasLt.so", "libcublasLt.so.13"),
    ("libcurand.so", "libcurand.so.10"),
];

/// What `cargo xtask cuda` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `cargo check`: the build scripts (nvcc) and type checking, no linking.
    Check,
    /// `cargo build`: also links the libraries and programs.
    Build,
}

impl Mode {
    fn cargo_command(self) -> &'static str {
        match self {
            Mode::Check => "check",
            Mode::Build => "build",
        }
    }
}

const USAGE: &str = "usage: cargo xtask cuda [check|build] [CARGO ARGS...]";

pub fn run(args: &[String]) -> Result {
    let (mode, cargo_extra) = parse_args(args)?;
    let compute_cap = compute_cap(std::env::var("CUDA_COMPUTE_CAP").ok().as_deref())?;
    let venv = shell::root().join("target/cuda-venv");
    let cu13 = toolkit(&venv)?;
    let link = link_folder(&venv, &cu13)?;
    let target_dir = shell::root().join("target/cuda");
    let env = cargo_env(
        &cu13,
        &link,
        &target_dir,
        compute_cap,
        &std::env::var("PATH").unwrap_or_default(),
    );
    let cargo = shell::cargo();
    let args = cargo_args(&cargo, mode, cargo_extra);
    shell::run_with_env("nice", &args, &env)?;
    let profile = profile_folder(cargo_extra);
    match mode {
        Mode::Check => eprintln!(
            "xtask: the CUDA build checks (compute capability {compute_cap}; \
             `cargo xtask cuda build` links it)"
        ),
        Mode::Build => eprintln!(
            "xtask: the CUDA build (compute capability {compute_cap}) is in {}: \
             libbandmate_plugin.so, bandmate-standalone, bandmate.\n\
             On a GPU machine (NVIDIA driver R580+) run them with LD_LIBRARY_PATH={}/lib; \
             never with {} on it (the stub driver there is only for linking).",
            target_dir.join(profile).display(),
            cu13.display(),
            link.join("lib").display(),
        ),
    }
    Ok(())
}

/// `[check|build] [CARGO ARGS...]`: the mode (check when the first argument is not one) and the
/// arguments passed on to cargo.
fn parse_args(args: &[String]) -> Result<(Mode, &[String])> {
    match args.first().map(String::as_str) {
        None => Ok((Mode::Check, args)),
        Some("check") => Ok((Mode::Check, &args[1..])),
        Some("build") => Ok((Mode::Build, &args[1..])),
        Some(flag) if flag.starts_with('-') => Ok((Mode::Check, args)),
        Some(other) => Err(format!("cuda: unknown mode '{other}'\n{USAGE}")),
    }
}

/// The folder of `target/cuda` that cargo builds into with the arguments `extra`: `debug`,
/// `release`, or the profile `--profile` names (`dev` and `test` build into `debug`).
fn profile_folder(extra: &[String]) -> &str {
    let mut profile = "dev";
    for (i, arg) in extra.iter().enumerate() {
        if arg == "--release" || arg == "-r" {
            profile = "release";
        } else if let Some(name) = arg.strip_prefix("--profile=") {
            profile = name;
        } else if arg == "--profile"
            && let Some(name) = extra.get(i + 1)
        {
            profile = name;
        }
    }
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
}

/// The compute capability to build for: `CUDA_COMPUTE_CAP` as the user set it (`86` for 8.6),
/// else [`DEFAULT_COMPUTE_CAP`].
fn compute_cap(from_env: Option<&str>) -> Result<u32> {
    let Some(text) = from_env.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(DEFAULT_COMPUTE_CAP);
    };
    let cap: u32 = text.parse().map_err(|_| {
        format!(
            "CUDA_COMPUTE_CAP={text}: expected the compute capability times ten, e.g. 86 for 8.6"
        )
    })?;
    if !(MIN_COMPUTE_CAP..1000).contains(&cap) {
        return Err(format!(
            "CUDA_COMPUTE_CAP={text}: CUDA 13 builds for compute capability {MIN_COMPUTE_CAP} \
             (7.5) and newer, written times ten (86 for 8.6)"
        ));
    }
    Ok(cap)
}

/// `nice -n 19 cargo <check|build> -p bandmate-plugin -p bandmate-engine --features cuda
/// <extra>`: the arguments of `nice`.
fn cargo_args<'a>(cargo: &'a str, mode: Mode, extra: &'a [String]) -> Vec<&'a str> {
    let mut args = vec![
        "-n",
        "19",
        cargo,
        mode.cargo_command(),
        "-p",
        "bandmate-plugin",
        "-p",
        "bandmate-engine",
        "--features",
        "cuda",
    ];
    args.extend(extra.iter().map(String::as_str));
    args
}

/// The environment of the CUDA build: the wheels' toolkit in `cu13`, the link folder `link`
/// (holding `lib/`), the build's own `target_dir`, and `path` (the user's `PATH`) after the
/// toolkit's `bin`.
fn cargo_env(
    cu13: &Path,
    link: &Path,
    target_dir: &Path,
    compute_cap: u32,
    path: &str,
) -> Vec<(String, String)> {
    let bin = cu13.join("bin");
    let path = if path.is_empty() {
        bin.display().to_string()
    } else {
        format!("{}:{path}", bin.display())
    };
    [
        ("CARGO_TARGET_DIR", target_dir.display().to_string()),
        // cudarc runs `nvcc --version` from PATH; candle-kernels takes $NVCC first.
        ("PATH", path),
        ("NVCC", bin.join("nvcc").display().to_string()),
        ("CUDA_HOME", cu13.display().to_string()),
        ("CUDA_ROOT", link.display().to_string()),
        ("CUDARC_CUDA_VERSION", CUDARC_CUDA_VERSION.to_string()),
        ("CUDA_COMPUTE_CAP", compute_cap.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The wheels' CUDA prefix (`…/site-packages/nvidia/cu13`) in the venv `venv`, made and
/// installed first when it is missing or incomplete.
fn toolkit(venv: &Path) -> Result<PathBuf> {
    let python = venv.join("bin/python");
    let python_text = python.display().to_string();
    if let Some(cu13) = installed_toolkit(&python_text) {
        return Ok(cu13);
    }
    if !python.exists() {
        shell::run("python3", &["-m", "venv", &venv.display().to_string()]).map_err(|e| {
            format!("{e} (on Debian the venv module is in the package python3-venv)")
        })?;
    }
    eprintln!(
        "xtask: installing NVIDIA's CUDA 13.0 wheels (about 700 MB) into {}",
        venv.display()
    );
    shell::run(
        &python_text,
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            WHEELS,
        ],
    )?;
    installed_toolkit(&python_text).ok_or_else(|| {
        format!(
            "{WHEELS} is installed in {} but its nvcc or libraries are missing",
            venv.display()
        )
    })
}

/// The CUDA prefix of the wheels `python` has, if they are all there: nvcc of the pinned
/// release, the headers (`cuda.h`, CCCL's) and every library [`LINK_NAMES`] points to.
fn installed_toolkit(python: &str) -> Option<PathBuf> {
    let prefix = shell::output(
        python,
        &[
            "-c",
            "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13'))",
        ],
    )?;
    let cu13 = PathBuf::from(prefix.trim());
    let nvcc = cu13.join("bin/nvcc").display().to_string();
    let release = shell::output(&nvcc, &["--version"])?;
    let complete = release.contains(NVCC_RELEASE)
        && cu13.join("include/cuda.h").is_file()
        && cu13.join("include/cccl/cub/cub.cuh").is_file()
        && LINK_NAMES
            .iter()
            .all(|(_, file)| cu13.join("lib").join(file).is_file());
    complete.then_some(cu13)
}

/// The link folder `venv/link` (its `lib/` holds the unversioned library names and the stub
/// driver, see the module's notes), made or brought up to date; returns it (`CUDA_ROOT`).
fn link_folder(venv: &Path, cu13: &Path) -> Result<PathBuf> {
    let link = venv.join("link");
    let lib = link.join("lib");
    fs::create_dir_all(&lib).map_err(|e| format!("creating {}: {e}", lib.display()))?;
    for (name, file) in LINK_NAMES {
        let at = lib.join(name);
        let to = cu13.join("lib").join(file);
        if fs::read_link(&at).is_ok_and(|old| old == to) {
            continue;
        }
        if at.symlink_metadata().is_ok() {
            fs::remove_file(&at).map_err(|e| format!("removing {}: {e}", at.display()))?;
        }
        std::os::unix::fs::symlink(&to, &at)
            .map_err(|e| format!("linking {} -> {}: {e}", at.display(), to.display()))?;
    }

    let header_path = cu13.join("include/cuda.h");
    let header = fs::read_to_string(&header_path)
        .map_err(|e| format!("reading {}: {e}", header_path.display()))?;
    let entry_points = driver_entry_points(&header);
    // The 13.0 header declares about 550; far fewer means the header's format changed.
    if entry_points.len() < 300 || !entry_points.contains("cuInit") {
        return Err(format!(
            "{} declares only {} driver entry points: not the cuda.h this stub expects",
            header_path.display(),
            entry_points.len()
        ));
    }
    let source = stub_source(&entry_points);
    let source_path = link.join("cuda_stub.c");
    let stub = lib.join("libcuda.so");
    if stub.is_file() && fs::read_to_string(&source_path).is_ok_and(|old| old == source) {
        return Ok(link);
    }
    fs::write(&source_path, &source)
        .map_err(|e| format!("writing {}: {e}", source_path.display()))?;
    shell::run(
        "cc",
        &[
            "-shared",
            "-fPIC",
            "-O1",
            "-Wl,-soname,libcuda.so.1",
            "-o",
            &stub.display().to_string(),
            &source_path.display().to_string(),
        ],
    )?;
    Ok(link)
}

/// The driver API's entry points `cuda.h` declares: every `CUDAAPI cu…(` (as
/// `CUresult CUDAAPI cuInit(unsigned int Flags);`), and both names of every
/// `#define cuCtxCreate cuCtxCreate_v4` (the header's versioned names, which the library
/// exports besides the old ones).
fn driver_entry_points(header: &str) -> BTreeSet<&str> {
    const MARK: &str = "CUDAAPI";
    let mut names = BTreeSet::new();
    let mut rest = header;
    while let Some(at) = rest.find(MARK) {
        rest = &rest[at + MARK.len()..];
        let name_start = rest.trim_start();
        if name_start.len() == rest.len() {
            continue; // `CUDAAPIx`: not the macro
        }
        let end = name_start
            .find(|c: char| !is_word_char(c))
            .unwrap_or(name_start.len());
        let name = &name_start[..end];
        if is_driver_name(name) && name_start[end..].trim_start().starts_with('(') {
            names.insert(name);
        }
    }
    for line in header.lines() {
        let Some(alias) = line.strip_prefix("#define") else {
            continue;
        };
        if !alias.starts_with(char::is_whitespace) {
            continue;
        }
        let words: Vec<&str> = alias.split_whitespace().collect();
        if let [from, to] = words[..]
            && is_driver_name(from)
            && is_driver_name(to)
        {
            names.insert(from);
            names.insert(to);
        }
    }
    names
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `cu` and at least one more identifier character, nothing else.
fn is_driver_name(word: &str) -> bool {
    word.len() > 2 && word.starts_with("cu") && word.chars().all(is_word_char)
}

/// The C source of the stub `libcuda.so`: each of `entry_points` returns
/// `CUDA_ERROR_NO_DEVICE` (100) whatever its arguments.
fn stub_source(entry_points: &BTreeSet<&str>) -> String {
    let mut source = String::from(
        "/* Generated by `cargo xtask cuda` from the CUDA wheel's cuda.h: a stub of the NVIDIA\n\
         \x20* driver library, only for linking on a machine without it. Every entry point\n\
         \x20* returns CUDA_ERROR_NO_DEVICE (100). Never put it on LD_LIBRARY_PATH of a machine\n\
         \x20* with an NVIDIA GPU: it would hide the real libcuda.so.1. */\n",
    );
    for name in entry_points {
        source.push_str(&format!("int {name}(void) {{ return 100; }}\n"));
    }
    source
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of CUDA 13.0's `cuda.h`, with the traps around them.
    const HEADER: &str = r#"
#define CUDAAPI
#define cuDeviceTotalMem                    cuDeviceTotalMem_v2
#define cuCtxCreate                         cuCtxCreate_v4
#define cuMemcpy                            __CUDA_API_PTDS(cuMemcpy)
#define CUDA_VERSION 13000
    #define cuNotAtLineStart cuNotAtLineStart_v2
typedef void (CUDA_CB *CUhostFn)(void *userData);
/**
 * \brief Initialize the CUDA driver API
 * ...
 */
CUresult CUDAAPI cuInit(unsigned int Flags);
CUresult CUDAAPI cuDriverGetVersion(int *driverVersion);
CUresult CUDAAPI cuDeviceTotalMem(size_t *bytes, CUdevice dev);
CUresult CUDAAPI
    cuMemAlloc (CUdeviceptr *dptr, size_t bytesize);
CUresult CUDAAPI cuGetErrorString(CUresult error, const char **pStr);
CUresult CUDAAPIcuGlued(void);
CUresult CUDAAPI CUnotDriver(void);
CUresult CUDAAPI cuNoParen;
"#;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_every_entry_point_and_versioned_name_of_cuda_h() {
        let names: Vec<&str> = driver_entry_points(HEADER).into_iter().collect();
        assert_eq!(
            names,
            [
                "cuCtxCreate",
                "cuCtxCreate_v4",
                "cuDeviceTotalMem",
                "cuDeviceTotalMem_v2",
                "cuDriverGetVersion",
                "cuGetErrorString",
                "cuInit",
                "cuMemAlloc",
            ]
        );
    }

    #[test]
    fn the_stub_returns_no_device_from_every_entry_point() {
        let source = stub_source(&driver_entry_points(HEADER));
        let functions: Vec<&str> = source.lines().filter(|l| l.starts_with("int ")).collect();
        assert_eq!(functions.len(), 8);
        assert!(functions.contains(&"int cuInit(void) { return 100; }"));
        assert!(functions.contains(&"int cuCtxCreate_v4(void) { return 100; }"));
        assert!(source.starts_with("/*") && source.contains("LD_LIBRARY_PATH"));
    }

    #[test]
    fn the_mode_comes_first_and_the_rest_goes_to_cargo() {
        let none: [String; 0] = [];
        assert_eq!(parse_args(&none).unwrap(), (Mode::Check, &none[..]));
        let args = strings(&["build", "-j", "1"]);
        assert_eq!(parse_args(&args).unwrap(), (Mode::Build, &args[1..]));
        let args = strings(&["check"]);
        assert_eq!(parse_args(&args).unwrap(), (Mode::Check, &args[1..]));
        let args = strings(&["--release"]);
        assert_eq!(parse_args(&args).unwrap(), (Mode::Check, &args[..]));
        assert!(parse_args(&strings(&["test"])).is_err());

        let extra = strings(&["-j", "1"]);
        assert_eq!(
            cargo_args("cargo", Mode::Build, &extra),
            [
                "-n",
                "19",
                "cargo",
                "build",
                "-p",
                "bandmate-plugin",
                "-p",
                "bandmate-engine",
                "--features",
                "cuda",
                "-j",
                "1"
            ]
        );
    }

    #[test]
    fn the_summary_names_the_profiles_folder() {
        assert_eq!(profile_folder(&strings(&["-j", "1"])), "debug");
        assert_eq!(profile_folder(&strings(&["--release"])), "release");
        assert_eq!(profile_folder(&strings(&["-r", "-j", "1"])), "release");
        assert_eq!(profile_folder(&strings(&["--profile", "dist"])), "dist");
        assert_eq!(profile_folder(&strings(&["--profile=dev"])), "debug");
    }

    #[test]
    fn the_compute_capability_is_the_users_or_80() {
        assert_eq!(compute_cap(None).unwrap(), 80);
        assert_eq!(compute_cap(Some("")).unwrap(), 80);
        assert_eq!(compute_cap(Some("86")).unwrap(), 86);
        assert_eq!(compute_cap(Some(" 120 ")).unwrap(), 120);
        assert!(compute_cap(Some("8.6")).is_err());
        assert!(compute_cap(Some("61")).is_err());
        assert!(compute_cap(Some("sm_80")).is_err());
    }

    #[test]
    fn the_build_finds_the_wheels_toolkit_first() {
        let env = cargo_env(
            Path::new("/v/nvidia/cu13"),
            Path::new("/v/link"),
            Path::new("/w/target/cuda"),
            86,
            "/usr/bin:/bin",
        );
        let get = |key: &str| {
            env.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .unwrap()
        };
        assert_eq!(get("PATH"), "/v/nvidia/cu13/bin:/usr/bin:/bin");
        assert_eq!(get("NVCC"), "/v/nvidia/cu13/bin/nvcc");
        assert_eq!(get("CUDA_HOME"), "/v/nvidia/cu13");
        assert_eq!(get("CUDA_ROOT"), "/v/link");
        assert_eq!(get("CUDA_COMPUTE_CAP"), "86");
        assert_eq!(get("CUDARC_CUDA_VERSION"), "13000");
        assert_eq!(get("CARGO_TARGET_DIR"), "/w/target/cuda");
    }
}
