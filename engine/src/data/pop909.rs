//! POP909 (`pop909/NNN/`): pop songs arranged for piano, split by song id in
//! `pop909/splits.json`.
//!
//! `NNN.mid` is performance-timed; it is quantized to the 16th grid with the beat times of
//! `beat_midi.txt`. Tracks keep their names and get the roles `MELODY` → melody, `BRIDGE`
//! (the secondary melody / counter-line) → accompaniment, `PIANO` → accompaniment. The key is
//! the entry of `key_audio.txt` lasting longest.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Song, Split, index_then, parallel_map, read_text, split_names};
use crate::music::{Key, TrackRole};

/// Song ids (`001`…`909`) of `split`, from `pop909/splits.json`.
pub fn split_ids(data_root: &Path, split: Split) -> Result<Vec<String>> {
    split_names(data_root, "pop909", "POP909", split)
}

/// `splits.json` and each song's MIDI, beat and key files.
pub fn source_files(data_root: &Path, split: Split) -> Result<Vec<PathBuf>> {
    let dir = data_root.join("pop909");
    let ids = split_ids(data_root, split)?;
    Ok(index_then(
        dir.join("splits.json"),
        ids.iter().flat_map(|id| {
            let song = dir.join(id);
            [
                song.join(format!("{id}.mid")),
                song.join("beat_midi.txt"),
                song.join("key_audio.txt"),
            ]
        }),
    ))
}

/// The songs of `split`, ids = folder names (`001`).
pub fn load(data_root: &Path, split: Split) -> Result<Vec<Song>> {
    let dir = data_root.join("pop909");
    let ids = split_ids(data_root, split)?;
    parallel_map(&ids, |id| load_song(&dir.join(id)))
}

/// One song folder (`pop909/NNN`).
pub fn load_song(song_dir: &Path) -> Result<Song> {
    let id = song_dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let midi_path = song_dir.join(format!("{id}.mid"));
    let beat_path = song_dir.join("beat_midi.txt");
    let bytes = std::fs::read(&midi_path)
        .with_context(|| format!("cannot read {}", midi_path.display()))?;
    let beats =
        crate::midi::parse_beat_file(&read_text(&beat_path)?).map_err(|e| e.in_file(&beat_path))?;
    let clip = crate::midi::read_bytes_with_beats(&bytes, &beats);
    let mut clip = clip.map_err(|e| e.in_file(&midi_path))?;
    for track in &mut clip.tracks {
        track.role = match track.name.trim().to_ascii_uppercase().as_str() {
            "MELODY" => TrackRole::Melody,
            "BRIDGE" | "PIANO" => TrackRole::Accompaniment,
            _ => TrackRole::guess(&track.name, track.channel),
        };
    }
    clip.sort_notes();
    let key_path = song_dir.join("key_audio.txt");
    let key = if key_path.exists() {
        longest_key(&read_text(&key_path)?)
            .with_context(|| format!("bad key file {}", key_path.display()))?
    } else {
        None
    };
    Ok(Song {
        key,
        ..Song::new(id, clip)
    })
}

/// The key lasting longest in a `key_audio.txt` (lines `start_s end_s key`), `None` if empty.
pub fn longest_key(text: &str) -> Result<Option<Key>> {
    let mut durations: Vec<(Key, f64)> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let [start, end, key] = fields[..] else {
            bail!(
                "line {}: expected 'start end key', got '{line}'",
                number + 1
            );
        };
        let parse_time = |t: &str| {
            t.parse::<f64>()
                .with_context(|| format!("line {}: '{t}' is not a time in seconds", number + 1))
        };
        let duration = parse_time(end)? - parse_time(start)?;
        let key = Key::parse(key).map_err(|e| anyhow::anyhow!("line {}: {e}", number + 1))?;
        match durations.iter_mut().find(|(k, _)| *k == key) {
            Some((_, total)) => *total += duration,
            None => durations.push((key, duration)),
        }
    }
    Ok(durations
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(key, _)| key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::Scale;

    #[test]
    fn picks_the_longest_key() {
        let text = "0.5\t10.0\tGb:maj\n10.0\t40.0\tEb:min\n40.0\t50.0\tGb:maj\n";
        assert_eq!(longest_key(text).unwrap(), Some(Key::new(3, Scale::Minor)));
        assert_eq!(longest_key("").unwrap(), None);
        assert!(longest_key("1.0 x C:maj").is_err());
    }
}
