//! The architecture holds: the editor compiles no model code, the plugin no lab code, and no
//! two modules of a crate import each other (directly or around a circle).
//!
//! Import circles are found on the module tree of each crate: a path `crate::a::b::…` or
//! `super::…` in module `m` (comments and test modules left out) is an edge from `m` to the
//! deepest module it names; an edge between two modules that are not nested in each other is
//! counted between their subtrees under their lowest common ancestor (so `nn::winograd` using
//! `nn::fused` is the edge `winograd → fused` inside `nn`, and `vae` using `train::vae` is
//! `vae → train` at the crate root). A strongly connected group of two or more subtrees of one
//! parent is a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// `cargo tree -p package -e edges` as plain package lines.
fn tree(package: &str, edges: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            package,
            "-e",
            edges,
            "--prefix",
            "none",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

fn has_package(tree: &str, name: &str) -> bool {
    tree.lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn the_editor_compiles_no_model_code() {
    let all = tree("bandmate-gui", "all");
    assert!(has_package(&all, "bandmate-engine"));
    for ml in [
        "candle-core",
        "candle-nn",
        "gemm",
        "plotters",
        "safetensors",
    ] {
        assert!(!has_package(&all, ml), "bandmate-gui depends on {ml}");
    }
}

#[test]
fn the_plugin_compiles_no_lab_code() {
    let all = tree("bandmate-plugin", "all");
    assert!(
        has_package(&all, "candle-core"),
        "the plugin runs the models"
    );
    for lab in ["plotters", "plotters-bitmap"] {
        assert!(!has_package(&all, lab), "bandmate-plugin depends on {lab}");
    }
    // The engine's features as the plugin sees them: models, never lab (the dataset readers,
    // metrics, training and plots).
    let features = tree("bandmate-plugin", "features");
    assert!(features.contains("bandmate-engine feature \"models\""));
    assert!(
        !features.contains("bandmate-engine feature \"lab\""),
        "{features}"
    );
}

/// Module path (`["nn", "winograd"]`) of every source file of the crate rooted at `root_file`.
fn modules(src: &Path, root_file: &str) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("source dir reads") {
            let path = entry.expect("dir entry").path();
            let rel = path
                .strip_prefix(src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                // Binaries under src/bin are crates of their own.
                if !(root_file == "lib.rs" && rel == "bin") {
                    dirs.push(path);
                }
                continue;
            }
            let Some(stem) = rel.strip_suffix(".rs") else {
                continue;
            };
            let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
            if rel == root_file {
                parts.clear();
            } else if parts.last().map(String::as_str) == Some("mod") {
                parts.pop();
            }
            if parts.last().map(String::as_str) == Some("tests") {
                continue;
            }
            out.insert(parts, path);
        }
    }
    out
}

/// The code of a file without comments and without its test module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("source file reads");
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        out.push_str(line.split("//").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// The `crate::…` and `super::…` paths in `code`, split at `::`.
fn paths(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_ident(bytes[i - 1]);
        let rest = &bytes[i..];
        if starts_word && (rest.starts_with(b"crate::") || rest.starts_with(b"super::")) {
            // Paths are ASCII: the slice ends on a character boundary.
            let end = rest
                .iter()
                .position(|&b| !(is_ident(b) || b == b':'))
                .unwrap_or(rest.len());
            out.push(
                code[i..i + end]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
            i += end.max(1);
        } else {
            i += 1;
        }
    }
    out
}

/// Circles between sibling subtrees of the crate whose root file is `src/root_file`.
fn import_circles(src: &Path, root_file: &str) -> Vec<String> {
    let modules = modules(src, root_file);
    // (parent, from child, to child)
    let mut edges: BTreeSet<(Vec<String>, String, String)> = BTreeSet::new();
    for (module, path) in &modules {
        for p in paths(&code(path)) {
            let (mut target, rest): (Vec<String>, &[String]) = if p[0] == "crate" {
                (Vec::new(), &p[1..])
            } else {
                let supers = p.iter().take_while(|s| *s == "super").count();
                let keep = module.len().saturating_sub(supers);
                (module[..keep].to_vec(), &p[supers..])
            };
            for segment in rest {
                target.push(segment.clone());
                if !modules.contains_key(&target) {
                    target.pop();
                    break;
                }
            }
            if target.starts_with(module) || module.starts_with(&target) {
                continue;
            }
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            edges.insert((
                module[..common].to_vec(),
                module[common].clone(),
                target[common].clone(),
            ));
        }
    }
    let mut circles = Vec::new();
    let parents: BTreeSet<&Vec<String>> = edges.iter().map(|(p, _, _)| p).collect();
    for parent in parents {
        let graph: BTreeMap<&str, Vec<&str>> = edges.iter().filter(|(p, _, _)| p == parent).fold(
            BTreeMap::new(),
            |mut g, (_, a, b)| {
                g.entry(a.as_str()).or_default().push(b.as_str());
                g
            },
        );
        // Two children are in one circle when each reaches the other.
        let reach = |from: &str| -> BTreeSet<&str> {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from];
            while let Some(m) = stack.pop() {
                for &n in graph.get(m).map(Vec::as_slice).unwrap_or(&[]) {
                    if seen.insert(n) {
                        stack.push(n);
                    }
                }
            }
            seen
        };
        for &a in graph.keys() {
            let from_a = reach(a);
            if from_a.contains(a) {
                let group: Vec<&str> = from_a
                    .iter()
                    .copied()
                    .filter(|b| reach(b).contains(a))
                    .collect();
                circles.push(format!(
                    "{}: {}",
                    if parent.is_empty() {
                        "crate".to_owned()
                    } else {
                        parent.join("::")
                    },
                    group.join(" ↔ ")
                ));
            }
        }
    }
    circles.sort();
    circles.dedup();
    circles
}

#[test]
fn no_module_imports_a_module_that_imports_it() {
    let root = workspace_root();
    let crates = [
        ("engine/src", "lib.rs"),
        ("engine/src/bin/bandmate", "main.rs"),
        ("gui/src", "lib.rs"),
        ("plugin/src", "lib.rs"),
        ("xtask/src", "main.rs"),
    ];
    let mut found = Vec::new();
    for (dir, root_file) in crates {
        let src = root.join(dir);
        assert!(src.join(root_file).is_file(), "{dir}/{root_file}");
        let modules = modules(&src, root_file);
        assert!(modules.len() > 1, "{dir}: modules found");
        found.extend(
            import_circles(&src, root_file)
                .into_iter()
                .map(|c| format!("{dir} {c}")),
        );
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_circle_finder_sees_a_circle() {
    let dir = std::env::temp_dir().join(format!("bandmate-circles-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("nn")).unwrap();
    std::fs::write(dir.join("lib.rs"), "pub mod nn;\npub mod vae;\n").unwrap();
    std::fs::write(dir.join("nn/mod.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(dir.join("nn/a.rs"), "use super::b::f;\n// crate::vae\n").unwrap();
    std::fs::write(dir.join("nn/b.rs"), "pub fn f() { crate::nn::a::g() }\n").unwrap();
    std::fs::write(dir.join("vae.rs"), "use crate::nn::a;\n").unwrap();
    assert_eq!(import_circles(&dir, "lib.rs"), vec!["nn: a ↔ b".to_owned()]);
    std::fs::write(
        dir.join("nn/a.rs"),
        "use super::b::f;\nuse crate::vae::V;\n",
    )
    .unwrap();
    assert_eq!(
        import_circles(&dir, "lib.rs"),
        vec!["crate: nn ↔ vae".to_owned(), "nn: a ↔ b".to_owned()]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
