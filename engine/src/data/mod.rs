//! Dataset readers for `../shared/data`, augmentation, windowing and the preprocessed cache.
//!
//! Every reader returns the songs of one split in the order of the split's listing. Grid
//! conversions of the frame-based datasets:
//! - JSB (`Jsb16thSeparated.json`): one frame per 16th, four voices; a run of frames with the
//!   same pitch in a voice becomes one note (the data does not tell held from repeated notes).
//! - JSB polyphonic (`jsb-chorales-16th.json`) and bl2012: a run of consecutive frames that
//!   contain a pitch becomes one note; bl2012 frames are quarter notes (4 steps each).
//! - Meter and tempo are not in the frame data: those clips are 4/4 at 120 BPM.
//!
//! Training code should go through [`load_cached`] (one binary file per split under
//! [`default_cache_dir`]), then [`transpose_all`] and [`crate::music::segment::windows`].

pub mod augment;
pub mod bl2012;
pub mod cache;
mod frames;
pub mod groove;
pub mod jsb;
pub mod nottingham;
pub mod pop909;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::music::melody::{MelodyWindows, clip_windows_of};
use crate::music::{Clip, Key};

pub use augment::{transpose_all, transpositions};
pub use cache::{
    CacheStatus, cache_file_path, default_cache_dir, load_cached, load_cached_with_status,
};

/// The 2-bar melody windows of every song (see [`crate::music::melody::clip_windows`]).
pub fn melody_windows(songs: &[Song], hop_bars: u32) -> Result<MelodyWindows> {
    melody_windows_of(songs, 2, hop_bars)
}

/// The `bars`-bar melody windows of every song (see [`clip_windows_of`]).
pub fn melody_windows_of(songs: &[Song], bars: u32, hop_bars: u32) -> Result<MelodyWindows> {
    let mut out = MelodyWindows::empty(16 * bars.max(1) as usize);
    for song in songs {
        out.append(clip_windows_of(&song.clip, bars, hop_bars)?);
    }
    Ok(out)
}

/// One of the standard splits. Train on `Train`, tune on `Valid`, report on `Test`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    /// `train`, `valid` or `test` (the keys of the JSON split files).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "valid" | "validation" | "val" => Ok(Split::Valid),
            "test" => Ok(Split::Test),
            other => Err(format!("unknown split '{other}' (train, valid, test)")),
        }
    }
}

/// The four benchmarks of Boulanger-Lewandowski et al. (2012) in `bl2012/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bl2012Set {
    JsbChorales,
    Nottingham,
    MuseData,
    PianoMidi,
}

impl Bl2012Set {
    pub const ALL: [Bl2012Set; 4] = [
        Bl2012Set::JsbChorales,
        Bl2012Set::Nottingham,
        Bl2012Set::MuseData,
        Bl2012Set::PianoMidi,
    ];

    /// File name inside `bl2012/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Bl2012Set::JsbChorales => "JSB_Chorales.json",
            Bl2012Set::Nottingham => "Nottingham.json",
            Bl2012Set::MuseData => "MuseData.json",
            Bl2012Set::PianoMidi => "Piano_midi.json",
        }
    }

    /// Short lowercase name: `jsb`, `nottingham`, `musedata`, `piano-midi`.
    pub fn name(self) -> &'static str {
        match self {
            Bl2012Set::JsbChorales => "jsb",
            Bl2012Set::Nottingham => "nottingham",
            Bl2012Set::MuseData => "musedata",
            Bl2012Set::PianoMidi => "piano-midi",
        }
    }
}

/// A dataset in the data folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dataset {
    /// Folk tunes, melody + chords (`nottingham/MIDI/*.mid`).
    Nottingham,
    /// Pop piano arrangements: melody, bridge, piano (`pop909/NNN/NNN.mid`).
    Pop909,
    /// Bach chorales as four voices S/A/T/B (`jsb/Jsb16thSeparated.json`).
    Jsb,
    /// Bach chorales as one polyphonic track (`jsb/jsb-chorales-16th.json`).
    JsbPolyphonic,
    /// A 2012 polyphonic benchmark, one frame per quarter note (`bl2012/*.json`).
    Bl2012(Bl2012Set),
    /// Groove MIDI drum performances (`groove/`).
    Groove,
}

impl Dataset {
    pub const ALL: [Dataset; 9] = [
        Dataset::Nottingham,
        Dataset::Pop909,
        Dataset::Jsb,
        Dataset::JsbPolyphonic,
        Dataset::Bl2012(Bl2012Set::JsbChorales),
        Dataset::Bl2012(Bl2012Set::Nottingham),
        Dataset::Bl2012(Bl2012Set::MuseData),
        Dataset::Bl2012(Bl2012Set::PianoMidi),
        Dataset::Groove,
    ];

    /// Name used in cache file names and on the command line, e.g. `pop909`, `bl2012-jsb`.
    pub fn name(self) -> String {
        match self {
            Dataset::Nottingham => "nottingham".into(),
            Dataset::Pop909 => "pop909".into(),
            Dataset::Jsb => "jsb".into(),
            Dataset::JsbPolyphonic => "jsb-poly".into(),
            Dataset::Bl2012(set) => format!("bl2012-{}", set.name()),
            Dataset::Groove => "groove".into(),
        }
    }
}

impl std::fmt::Display for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::str::FromStr for Dataset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let wanted = s.trim().to_ascii_lowercase();
        Dataset::ALL
            .into_iter()
            .find(|d| d.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<String> = Dataset::ALL.iter().map(|d| d.name()).collect();
                format!("unknown dataset '{s}' (one of {})", names.join(", "))
            })
    }
}

/// One piece of a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Song {
    /// Identifier within the dataset: file stem (`ashover1`), POP909 song id (`001`), Groove
    /// id (`drummer1/eval_session/1`) or `split/index` for the JSON datasets (`train/007`).
    pub id: String,
    pub clip: Clip,
    /// The key when the dataset gives one (POP909: the longest entry of `key_audio.txt`).
    pub key: Option<Key>,
    /// Style when the dataset gives one (Groove: `funk/groove1`).
    pub style: Option<String>,
}

impl Song {
    pub fn new(id: impl Into<String>, clip: Clip) -> Self {
        Self {
            id: id.into(),
            clip,
            key: None,
            style: None,
        }
    }
}

/// Read one split of `dataset` from `data_root` (the `shared/data` folder), parsing the sources.
pub fn load(dataset: Dataset, split: Split, data_root: &Path) -> Result<Vec<Song>> {
    match dataset {
        Dataset::Nottingham => nottingham::load(data_root, split),
        Dataset::Pop909 => pop909::load(data_root, split),
        Dataset::Jsb => jsb::load_voices(data_root, split),
        Dataset::JsbPolyphonic => jsb::load_polyphonic(data_root, split),
        Dataset::Bl2012(set) => bl2012::load(data_root, set, split),
        Dataset::Groove => groove::load(data_root, split),
    }
}

/// The files `load(dataset, split, data_root)` reads (for the cache fingerprint).
pub fn source_files(dataset: Dataset, split: Split, data_root: &Path) -> Result<Vec<PathBuf>> {
    match dataset {
        Dataset::Nottingham => nottingham::source_files(data_root, split),
        Dataset::Pop909 => pop909::source_files(data_root, split),
        Dataset::Jsb => Ok(vec![jsb::voices_path(data_root)]),
        Dataset::JsbPolyphonic => Ok(vec![jsb::polyphonic_path(data_root)]),
        Dataset::Bl2012(set) => Ok(vec![bl2012::path(data_root, set)]),
        Dataset::Groove => groove::source_files(data_root, split),
    }
}

/// The data folder: `$BANDMATE_DATA` when set, else `../shared/data` relative to the current
/// directory, else `../shared/data` relative to the workspace this crate was built in.
pub fn default_data_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("BANDMATE_DATA").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let relative = Path::new("..").join("shared").join("data");
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            let candidate = dir.join(&relative);
            if candidate.is_dir() {
                return candidate;
            }
        }
    }
    workspace_root().join(relative)
}

/// Whether the datasets `parts` (folders of [`default_data_root`]: `nottingham`, `pop909`,
/// `jsb`, `bl2012`, `groove`) are there, for the tests that read them: when one is missing the
/// test should return at once (skip). This says which test is skipped and why, straight to the
/// terminal (`cargo test` shows it without `--nocapture`). With `BANDMATE_REQUIRE_DATA=1` a
/// missing dataset panics instead (fails the test), for machines that must run every test.
pub fn have_datasets(parts: &[&str]) -> bool {
    use std::io::Write;
    let root = default_data_root();
    let missing: Vec<&str> = parts
        .iter()
        .copied()
        .filter(|p| !root.join(p).is_dir())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let message = format!(
        "skipped {test}: it needs the dataset{} {} in {} (not found; set BANDMATE_DATA to the \
         data folder, see the README's \"Datasets\")",
        if missing.len() > 1 { "s" } else { "" },
        missing.join(", "),
        root.display()
    );
    if std::env::var_os("BANDMATE_REQUIRE_DATA").is_some_and(|v| v != "0" && !v.is_empty()) {
        panic!("{message} (BANDMATE_REQUIRE_DATA is set)");
    }
    // Not through eprintln!: the test harness would hide it for a passing test.
    let _ = writeln!(std::io::stderr().lock(), "{message}");
    false
}

/// The workspace root this crate was compiled in.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Fail with a clear message when `dir` is not a folder.
pub(crate) fn require_dir(dir: &Path, what: &str) -> Result<()> {
    if !dir.is_dir() {
        bail!(
            "{what} folder {} not found (set BANDMATE_DATA to the shared data folder)",
            dir.display()
        );
    }
    Ok(())
}

/// Read a whole text file, naming it in the error.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Parse JSON, naming the file in the error.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text(path)?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON of the expected shape", path.display()))
}

/// The entry `split.name()` of the `{"train", "valid", "test"}` JSON file `path`, after checking
/// that the dataset folder `dir` (named `what` in the error) exists.
pub(crate) fn read_split<T: serde::de::DeserializeOwned>(
    dir: &Path,
    what: &str,
    path: &Path,
    split: Split,
) -> Result<T> {
    require_dir(dir, what)?;
    let all: std::collections::HashMap<String, T> = parse_json(path)?;
    take_split(all, split, path)
}

/// The names listed for `split` in `<data_root>/<folder>/splits.json` (the dataset named `what`
/// in errors).
pub(crate) fn split_names(
    data_root: &Path,
    folder: &str,
    what: &str,
    split: Split,
) -> Result<Vec<String>> {
    let dir = data_root.join(folder);
    read_split(&dir, what, &dir.join("splits.json"), split)
}

/// The files a split's cache depends on: the dataset's index file first, then `files`.
pub(crate) fn index_then(index: PathBuf, files: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    std::iter::once(index).chain(files).collect()
}

/// The entry `split.name()` of a `{"train", "valid", "test"}` JSON object.
pub(crate) fn take_split<T>(
    mut by_split: std::collections::HashMap<String, T>,
    split: Split,
    path: &Path,
) -> Result<T> {
    by_split
        .remove(split.name())
        .with_context(|| format!("{} has no '{}' entry", path.display(), split.name()))
}

/// Map `items` with `f` on up to two threads, keeping the order; the first error wins.
pub(crate) fn parallel_map<T, R, F>(items: &[T], f: F) -> Result<Vec<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync,
{
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 2);
    if threads == 1 || items.len() < 8 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    let parts: Vec<Result<Vec<R>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Result<Vec<R>>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!("a dataset reader thread panicked")),
            })
            .collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}
