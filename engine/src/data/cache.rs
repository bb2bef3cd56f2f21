//! The preprocessed-dataset cache: one binary file per dataset split, so that training never
//! re-parses MIDI or JSON.
//!
//! File layout (all integers little-endian, strings as `u16` byte length + UTF-8):
//!
//! ```text
//! magic "BMCACHE\0" | format version u32 | dataset name str | split u8 | fingerprint u64
//! song count u32 | songs | checksum u64 of every byte before it
//! song:  id str | key tonic u8 (255 = none), scale u8 | style flag u8 [+ str]
//!        tempo f64 | meter numerator u8, denominator u8 | bars u32
//!        tempo changes u32 × (step u32, bpm f64) | meter changes u32 × (step u32, num u8, den u8)
//!        tracks u16 × (name str, role u8, channel u8)
//!        notes u32 × (start u32, length u32, pitch u8, velocity u8, track u16)  — 12 bytes each
//! ```
//!
//! The fingerprint hashes the reader version and the listing of the split's source files
//! (path relative to the data root, size, modification time). A missing, stale, truncated,
//! corrupt or old-format file is rebuilt from the sources; reading never panics.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};

use super::{Dataset, Song, Split, load, source_files, workspace_root};
use crate::music::{
    Clip, Key, MeterChange, Note, Scale, TempoChange, TimeSignature, Track, TrackRole,
};

/// First bytes of every cache file.
pub const MAGIC: [u8; 8] = *b"BMCACHE\0";
/// Version of the binary layout; files of another version are rebuilt.
pub const FORMAT_VERSION: u32 = 1;
/// Version of what the readers produce (dataset readers and MIDI import). Bump it when their
/// output changes so that existing caches are rebuilt.
pub const READER_VERSION: u32 = 1;

/// File extension of cache files.
pub const EXTENSION: &str = "bmc";

const NOTE_BYTES: usize = 12;

/// How [`load_cached_with_status`] got its songs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Read from a valid, up-to-date cache file.
    Hit,
    /// No cache file yet: built from the sources.
    Missing,
    /// The sources changed since the file was written: rebuilt.
    Stale,
    /// The file was unreadable, truncated, corrupt or of another format: rebuilt.
    Invalid(String),
}

/// `$BANDMATE_CACHE` when set, else `cache/` in the workspace root (ignored by git).
pub fn default_cache_dir() -> PathBuf {
    match std::env::var_os("BANDMATE_CACHE").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("cache"),
    }
}

/// Where the cache of one dataset split lives: `<cache_dir>/<dataset>-<split>.bmc`.
pub fn cache_file_path(dataset: Dataset, split: Split, cache_dir: &Path) -> PathBuf {
    cache_dir.join(format!("{}-{}.{EXTENSION}", dataset.name(), split.name()))
}

/// One split of a dataset, from the cache when it is up to date, else parsed from the sources
/// and written to the cache.
pub fn load_cached(
    dataset: Dataset,
    split: Split,
    data_root: &Path,
    cache_dir: &Path,
) -> Result<Vec<Song>> {
    load_cached_with_status(dataset, split, data_root, cache_dir).map(|(songs, _)| songs)
}

/// [`load_cached`], also telling whether the cache was used or why it was rebuilt.
pub fn load_cached_with_status(
    dataset: Dataset,
    split: Split,
    data_root: &Path,
    cache_dir: &Path,
) -> Result<(Vec<Song>, CacheStatus)> {
    let fingerprint = source_fingerprint(dataset, split, data_root)?;
    let path = cache_file_path(dataset, split, cache_dir);
    let status = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => CacheStatus::Missing,
        Err(e) => CacheStatus::Invalid(format!("cannot read {}: {e}", path.display())),
        Ok(bytes) => match decode(&bytes, dataset, split) {
            Ok((stored, songs)) if stored == fingerprint => return Ok((songs, CacheStatus::Hit)),
            Ok(_) => CacheStatus::Stale,
            Err(problem) => CacheStatus::Invalid(format!("{}: {problem}", path.display())),
        },
    };
    let songs = load(dataset, split, data_root)?;
    write_cache_file(&path, dataset, split, fingerprint, &songs)?;
    Ok((songs, status))
}

/// Hash of the reader version and the listing (relative path, size, mtime) of the sources.
pub fn source_fingerprint(dataset: Dataset, split: Split, data_root: &Path) -> Result<u64> {
    let mut hash = Fnv64::new();
    hash.write(&READER_VERSION.to_le_bytes());
    hash.write(dataset.name().as_bytes());
    hash.write(split.name().as_bytes());
    for file in source_files(dataset, split, data_root)? {
        let meta =
            std::fs::metadata(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let relative = file.strip_prefix(data_root).unwrap_or(&file);
        hash.write(relative.to_string_lossy().as_bytes());
        hash.write(&[0]);
        hash.write(&meta.len().to_le_bytes());
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        hash.write(&mtime.to_le_bytes());
    }
    Ok(hash.finish())
}

/// Write `songs` as the cache of `dataset`/`split` (atomically: temporary file, then rename).
pub fn write_cache_file(
    path: &Path,
    dataset: Dataset,
    split: Split,
    fingerprint: u64,
    songs: &[Song],
) -> Result<()> {
    let bytes = encode(dataset, split, fingerprint, songs)
        .with_context(|| format!("cannot encode the cache {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the cache folder {}", dir.display()))?;
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let temp = path.with_extension(format!(
        "{EXTENSION}.tmp{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&temp, &bytes).with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| {
        let _ = std::fs::remove_file(&temp);
        format!("cannot move {} to {}", temp.display(), path.display())
    })
}

/// Read a cache file written for `dataset`/`split`: its fingerprint and songs.
pub fn read_cache_file(path: &Path, dataset: Dataset, split: Split) -> Result<(u64, Vec<Song>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode(&bytes, dataset, split)
        .map_err(|problem| anyhow::anyhow!("{}: {problem}", path.display()))
}

fn split_code(split: Split) -> u8 {
    match split {
        Split::Train => 0,
        Split::Valid => 1,
        Split::Test => 2,
    }
}

fn role_code(role: TrackRole) -> u8 {
    match role {
        TrackRole::Melody => 0,
        TrackRole::Accompaniment => 1,
        TrackRole::Bass => 2,
        TrackRole::Drums => 3,
    }
}

fn role_from_code(code: u8) -> Option<TrackRole> {
    [
        TrackRole::Melody,
        TrackRole::Accompaniment,
        TrackRole::Bass,
        TrackRole::Drums,
    ]
    .get(code as usize)
    .copied()
}

fn encode(dataset: Dataset, split: Split, fingerprint: u64, songs: &[Song]) -> Result<Vec<u8>> {
    let notes: usize = songs.iter().map(|s| s.clip.notes.len()).sum();
    let mut w = Writer(Vec::with_capacity(
        64 + songs.len() * 128 + notes * NOTE_BYTES,
    ));
    w.0.extend_from_slice(&MAGIC);
    w.u32(FORMAT_VERSION);
    w.str(&dataset.name())?;
    w.u8(split_code(split));
    w.u64(fingerprint);
    w.u32(count(songs.len(), "songs")?);
    for song in songs {
        let clip = &song.clip;
        w.str(&song.id)?;
        match song.key {
            Some(key) => {
                let scale = Scale::ALL.iter().position(|s| *s == key.scale).unwrap_or(0);
                w.u8(key.tonic);
                w.u8(scale as u8);
            }
            None => {
                w.u8(u8::MAX);
                w.u8(0);
            }
        }
        match &song.style {
            Some(style) => {
                w.u8(1);
                w.str(style)?;
            }
            None => w.u8(0),
        }
        w.f64(clip.tempo);
        w.u8(clip.time_signature.numerator);
        w.u8(clip.time_signature.denominator);
        w.u32(clip.bars);
        w.u32(count(clip.tempo_changes.len(), "tempo changes")?);
        for t in &clip.tempo_changes {
            w.u32(t.step);
            w.f64(t.bpm);
        }
        w.u32(count(clip.meter_changes.len(), "meter changes")?);
        for m in &clip.meter_changes {
            w.u32(m.step);
            w.u8(m.time_signature.numerator);
            w.u8(m.time_signature.denominator);
        }
        let tracks = u16::try_from(clip.tracks.len()).context("more than 65535 tracks")?;
        w.u16(tracks);
        for t in &clip.tracks {
            w.str(&t.name)?;
            w.u8(role_code(t.role));
            w.u8(t.channel);
        }
        w.u32(count(clip.notes.len(), "notes")?);
        for n in &clip.notes {
            w.u32(n.start);
            w.u32(n.length);
            w.u8(n.pitch);
            w.u8(n.velocity);
            w.u16(n.track);
        }
    }
    let sum = checksum(&w.0);
    w.u64(sum);
    Ok(w.0)
}

fn count(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).with_context(|| format!("too many {what}: {n}"))
}

fn decode(bytes: &[u8], dataset: Dataset, split: Split) -> Result<(u64, Vec<Song>), String> {
    if bytes.len() < MAGIC.len() + 4 + 8 || bytes[..MAGIC.len()] != MAGIC {
        return Err("not a Bandmate cache file".into());
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    let mut r = Reader {
        bytes: body,
        pos: MAGIC.len(),
    };
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, expected {FORMAT_VERSION}"
        ));
    }
    let stored_sum = u64::from_le_bytes(tail.try_into().expect("8 bytes"));
    if checksum(body) != stored_sum {
        return Err("checksum mismatch (truncated or corrupt)".into());
    }
    let name = r.str()?;
    if name != dataset.name() || r.u8()? != split_code(split) {
        return Err(format!(
            "holds {name}, not {}-{}",
            dataset.name(),
            split.name()
        ));
    }
    let fingerprint = r.u64()?;
    let song_count = r.len(1)?;
    let mut songs = Vec::with_capacity(song_count);
    for index in 0..song_count {
        songs.push(decode_song(&mut r).map_err(|e| format!("song {index}: {e}"))?);
    }
    if r.pos != body.len() {
        return Err(format!(
            "{} unexpected bytes after the last song",
            body.len() - r.pos
        ));
    }
    Ok((fingerprint, songs))
}

fn decode_song(r: &mut Reader) -> Result<Song, String> {
    let id = r.str()?;
    let (tonic, scale) = (r.u8()?, r.u8()?);
    let key = match tonic {
        u8::MAX => None,
        0..12 => Some(Key::new(
            tonic,
            *Scale::ALL.get(scale as usize).ok_or("bad scale")?,
        )),
        _ => return Err(format!("bad key tonic {tonic}")),
    };
    let style = match r.u8()? {
        0 => None,
        1 => Some(r.str()?),
        flag => return Err(format!("bad style flag {flag}")),
    };
    let tempo = r.f64()?;
    let time_signature = r.meter()?;
    let bars = r.u32()?;
    let tempo_changes = r.changes(12, Reader::f64, |step, bpm| TempoChange { step, bpm })?;
    let meter_changes = r.changes(6, Reader::meter, |step, time_signature| MeterChange {
        step,
        time_signature,
    })?;
    let track_count = r.u16()? as usize;
    let mut tracks = Vec::with_capacity(track_count);
    for _ in 0..track_count {
        let name = r.str()?;
        let role = role_from_code(r.u8()?).ok_or("bad track role")?;
        let channel = r.u8()?;
        if channel > 15 {
            return Err(format!("bad MIDI channel {channel}"));
        }
        tracks.push(Track {
            name,
            role,
            channel,
        });
    }
    let note_count = r.len(NOTE_BYTES)?;
    let records = r.take(note_count * NOTE_BYTES)?;
    let mut notes = Vec::with_capacity(note_count);
    for rec in records.chunks_exact(NOTE_BYTES) {
        let note = Note {
            start: u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]),
            length: u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]),
            pitch: rec[8],
            velocity: rec[9],
            track: u16::from_le_bytes([rec[10], rec[11]]),
        };
        if note.pitch > 127
            || note.velocity > 127
            || note.length == 0
            || note.track as usize >= track_count
        {
            return Err(format!("bad note {note:?}"));
        }
        notes.push(note);
    }
    let clip = Clip {
        notes,
        tracks,
        tempo,
        time_signature,
        bars,
        tempo_changes,
        meter_changes,
    };
    Ok(Song {
        id,
        clip,
        key,
        style,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    fn str(&mut self, s: &str) -> Result<()> {
        let len = u16::try_from(s.len())
            .with_context(|| format!("string too long: {} bytes", s.len()))?;
        self.u16(len);
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or("truncated")?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }
    fn f64(&mut self) -> Result<f64, String> {
        self.u64().map(f64::from_bits)
    }
    fn str(&mut self) -> Result<String, String> {
        let len = self.u16()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "string is not UTF-8".to_string())
    }
    fn meter(&mut self) -> Result<TimeSignature, String> {
        let (numerator, denominator) = (self.u8()?, self.u8()?);
        if numerator == 0 || denominator == 0 {
            return Err(format!("bad meter {numerator}/{denominator}"));
        }
        Ok(TimeSignature {
            numerator,
            denominator,
        })
    }
    /// A `u32` count of records of at least `record_bytes` each, checked against the bytes left
    /// so that a corrupt count cannot trigger a huge allocation.
    fn len(&mut self, record_bytes: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(record_bytes) > self.bytes.len() - self.pos {
            return Err("truncated (count larger than the file)".into());
        }
        Ok(n)
    }
    /// A [`Reader::len`] count of changes of `record_bytes` each: a `u32` step and a value read
    /// by `value`, made one by `make(step, value)`.
    fn changes<V, C>(
        &mut self,
        record_bytes: usize,
        value: impl Fn(&mut Self) -> Result<V, String>,
        make: impl Fn(u32, V) -> C,
    ) -> Result<Vec<C>, String> {
        (0..self.len(record_bytes)?)
            .map(|_| Ok(make(self.u32()?, value(self)?)))
            .collect()
    }
}

/// Checksum of the cache body: a word-wise multiply-rotate hash (any change of one 8-byte word
/// changes the result).
fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        h = (h.rotate_left(23) ^ w).wrapping_mul(K);
    }
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h.rotate_left(23) ^ u64::from_le_bytes(last)).wrapping_mul(K);
    h ^ (h >> 29)
}

/// FNV-1a, 64 bits (for the small source listing).
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_songs() -> Vec<Song> {
        let mut clip = Clip::new(2);
        clip.add_track(Track::new("Drums", TrackRole::Drums, 9));
        clip.notes.push(Note::new(0, 60, 4, 100, 0));
        clip.notes.push(Note::new(3, 36, 1, 127, 1));
        clip.tempo = 97.25;
        clip.tempo_changes.push(TempoChange {
            step: 16,
            bpm: 101.5,
        });
        clip.meter_changes.push(MeterChange {
            step: 16,
            time_signature: TimeSignature::new(6, 8),
        });
        let mut a = Song::new("a", clip);
        a.key = Some(Key::new(6, Scale::Minor));
        a.style = Some("funk/groove1".into());
        vec![a, Song::new("b", Clip::new(1))]
    }

    #[test]
    fn round_trips_exactly() {
        let songs = sample_songs();
        let bytes = encode(Dataset::Groove, Split::Valid, 42, &songs).unwrap();
        let (fingerprint, back) = decode(&bytes, Dataset::Groove, Split::Valid).unwrap();
        assert_eq!(fingerprint, 42);
        assert_eq!(back, songs);
    }

    #[test]
    fn rejects_every_truncation_and_byte_flip_without_panicking() {
        let bytes = encode(Dataset::Groove, Split::Train, 7, &sample_songs()).unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len], Dataset::Groove, Split::Train).is_err(),
                "length {len}"
            );
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5a;
            assert!(
                decode(&bad, Dataset::Groove, Split::Train).is_err(),
                "flip at {i}"
            );
        }
        assert!(decode(&bytes, Dataset::Groove, Split::Test).is_err());
        assert!(decode(&bytes, Dataset::Jsb, Split::Train).is_err());
    }
}
