//! The Groove MIDI Dataset (`groove/`): drum performances, split by the `split` column of
//! `groove/info.csv` (`train` / `validation` / `test`).
//!
//! The MIDI import quantizes each file to 16ths by its own tempo map; every track becomes a
//! drums track. The song's style is the `style` column (e.g. `funk/groove1`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Song, Split, index_then, parallel_map, read_text, require_dir};
use crate::music::TrackRole;

/// One row of `info.csv` that this reader uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrooveEntry {
    /// `drummer1/eval_session/1`.
    pub id: String,
    /// `funk/groove1`.
    pub style: String,
    /// Path of the MIDI file relative to `groove/`.
    pub midi_filename: String,
    pub split: Split,
}

/// The rows of `groove/info.csv` in `split`.
pub fn entries(data_root: &Path, split: Split) -> Result<Vec<GrooveEntry>> {
    let dir = data_root.join("groove");
    require_dir(&dir, "Groove")?;
    let path = dir.join("info.csv");
    let text = read_text(&path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("{} has no '{name}' column", path.display()))
    };
    let (id_col, style_col, file_col, split_col) = (
        column("id")?,
        column("style")?,
        column("midi_filename")?,
        column("split")?,
    );
    let mut out = Vec::new();
    for (number, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != header.len() {
            bail!(
                "{} line {}: {} fields, the header has {}",
                path.display(),
                number + 2,
                fields.len(),
                header.len()
            );
        }
        let row_split: Split = fields[split_col]
            .parse()
            .map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), number + 2))?;
        if row_split == split {
            out.push(GrooveEntry {
                id: fields[id_col].to_string(),
                style: fields[style_col].to_string(),
                midi_filename: fields[file_col].to_string(),
                split: row_split,
            });
        }
    }
    Ok(out)
}

/// `info.csv` and the MIDI files of `split`.
pub fn source_files(data_root: &Path, split: Split) -> Result<Vec<PathBuf>> {
    let dir = data_root.join("groove");
    let entries = entries(data_root, split)?;
    Ok(index_then(
        dir.join("info.csv"),
        entries.iter().map(|e| dir.join(&e.midi_filename)),
    ))
}

/// The performances of `split`, ids from `info.csv` (`drummer1/eval_session/1`).
pub fn load(data_root: &Path, split: Split) -> Result<Vec<Song>> {
    let dir = data_root.join("groove");
    let entries = entries(data_root, split)?;
    parallel_map(&entries, |entry| {
        let path = dir.join(&entry.midi_filename);
        let mut clip = crate::midi::read_file(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for track in &mut clip.tracks {
            track.role = TrackRole::Drums;
        }
        clip.sort_notes();
        Ok(Song {
            style: Some(entry.style.clone()),
            ..Song::new(entry.id.clone(), clip)
        })
    })
}
