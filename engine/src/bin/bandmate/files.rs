//! Reading MIDI files and folders of them for the subcommands.

use anyhow::{Context, Result, bail};
use bandmate::midi;
use bandmate::music::Clip;
use std::path::{Path, PathBuf};

/// Read one MIDI file. A performance-timed file with a POP909-style `beat_midi.txt` beside it
/// is quantized by that beat list.
pub fn read_clip(path: &Path) -> Result<Clip> {
    let beats_path = path.with_file_name("beat_midi.txt");
    if beats_path.is_file() {
        let text = std::fs::read_to_string(&beats_path)
            .with_context(|| format!("{}", beats_path.display()))?;
        let beats =
            midi::parse_beat_file(&text).with_context(|| format!("{}", beats_path.display()))?;
        let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        return midi::read_bytes_with_beats(&bytes, &beats)
            .with_context(|| format!("{}", path.display()));
    }
    Ok(midi::read_file(path)?)
}

/// Rewrite the model card `path` from its first `marker` on (to its end) as `section`, after a
/// blank line; what stands before the marker is kept (all of it without one).
pub fn replace_card_section(path: &Path, marker: &str, section: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let head = text.split(marker).next().unwrap_or_default().trim_end();
    std::fs::write(path, format!("{head}\n\n{section}"))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The .mid/.midi files of `dir` (see [`collect`]), sorted; with `split`, only those listed
/// under that key in the nearest `splits.json` in `dir` or a parent (entries are file names or
/// song folder names).
pub fn midi_files(dir: &Path, split: Option<&str>) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("{}: not a folder", dir.display());
    }
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    if let Some(split) = split {
        let names = split_names(dir, split)?;
        files.retain(|f| {
            let file_name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let stem = f.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
            let parent = f
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            names
                .iter()
                .any(|n| n == file_name || n == stem || n == parent)
        });
    }
    if files.is_empty() {
        bail!(
            "{}: no MIDI files{}",
            dir.display(),
            split
                .map(|s| format!(" in split '{s}'"))
                .unwrap_or_default()
        );
    }
    Ok(files)
}

/// Read every file; files that fail are reported on stderr and skipped.
pub fn read_clips(files: &[PathBuf]) -> Result<Vec<Clip>> {
    let mut clips = Vec::with_capacity(files.len());
    let mut failed = 0;
    for f in files {
        match read_clip(f) {
            Ok(c) => clips.push(c),
            Err(e) => {
                failed += 1;
                eprintln!("bandmate: skipping {e:#}");
            }
        }
    }
    if clips.is_empty() {
        bail!("none of the {} files could be read", files.len());
    }
    if failed > 0 {
        eprintln!("bandmate: read {} files, skipped {failed}", clips.len());
    }
    Ok(clips)
}

/// The MIDI files directly in `dir`; only a folder without any looks into its subfolders
/// (so `nottingham/MIDI` does not also take its `melody/` and `chords/` copies, while
/// `pop909/` finds `NNN/NNN.mid`).
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut subfolders = Vec::new();
    let before = out.len();
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            subfolders.push(path);
        } else if is_midi(&path) {
            out.push(path);
        }
    }
    if out.len() == before {
        for sub in subfolders {
            collect(&sub, out)?;
        }
    }
    Ok(())
}

fn is_midi(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("mid") || e.eq_ignore_ascii_case("midi"))
}

fn split_names(dir: &Path, split: &str) -> Result<Vec<String>> {
    let splits_file = dir
        .ancestors()
        .take(3)
        .map(|d| d.join("splits.json"))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "--split {split}: no splits.json in {} or its parents",
                dir.display()
            )
        })?;
    let text = std::fs::read_to_string(&splits_file)
        .with_context(|| format!("{}", splits_file.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}", splits_file.display()))?;
    let list = json
        .get(split)
        .and_then(|v| v.as_array())
        .with_context(|| {
            format!(
                "{}: no split '{split}' (has: {})",
                splits_file.display(),
                json.as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            )
        })?;
    Ok(list
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect())
}
