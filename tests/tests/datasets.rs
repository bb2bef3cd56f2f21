//! Dataset readers, augmentation, windows and the cache, on the real data in `../shared/data`.
//!
//! Run with `--nocapture` to see the counts per dataset and split and the cache timings.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use bandmate::data::{
    self, Bl2012Set, CacheStatus, Dataset, Song, Split, cache, load, load_cached_with_status,
    transpose_all, transpositions,
};
use bandmate::music::segment::{WindowOptions, windows, windows_with};
use bandmate::music::{Clip, STEPS_PER_BEAT, TrackRole};

fn root() -> PathBuf {
    data::default_data_root()
}

/// The three splits of a dataset, loaded once per test process, by dataset name.
type LoadedSplits = std::sync::Mutex<BTreeMap<String, &'static [Vec<Song>; 3]>>;

/// Every split of `dataset`, parsed once per test process.
fn splits(dataset: Dataset) -> &'static [Vec<Song>; 3] {
    static LOADED: OnceLock<LoadedSplits> = OnceLock::new();
    let map = LOADED.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(dataset.name()).or_insert_with(|| {
        let loaded = Split::ALL.map(|split| {
            load(dataset, split, &root())
                .unwrap_or_else(|e| panic!("{dataset} {split} does not load: {e:#}"))
        });
        Box::leak(Box::new(loaded))
    })
}

/// Print songs, notes and bars per split, check the counts and that split ids are disjoint.
fn check_counts(dataset: Dataset, expected: [usize; 3]) -> &'static [Vec<Song>; 3] {
    let loaded = splits(dataset);
    for (split, songs) in Split::ALL.iter().zip(loaded) {
        let notes: usize = songs.iter().map(|s| s.clip.notes.len()).sum();
        let bars: u64 = songs.iter().map(|s| s.clip.bars as u64).sum();
        println!(
            "{dataset:>18} {split:>5}: {:>4} songs {notes:>8} notes {bars:>6} bars",
            songs.len()
        );
    }
    let counts = loaded.each_ref().map(Vec::len);
    assert_eq!(counts, expected, "{dataset}: songs per train/valid/test");
    let mut seen = HashSet::new();
    for songs in loaded {
        for song in songs {
            assert!(
                seen.insert(song.id.clone()),
                "{dataset}: id {} twice",
                song.id
            );
        }
    }
    loaded
}

/// The name and role of every track of `clip`, in order.
fn roles(clip: &Clip) -> Vec<(&str, TrackRole)> {
    clip.tracks
        .iter()
        .map(|t| (t.name.as_str(), t.role))
        .collect()
}

/// Check that every clip is well formed: notes inside the clip and on existing tracks.
fn check_clips(dataset: Dataset, songs: &[Vec<Song>; 3]) {
    for song in songs.iter().flatten() {
        let clip = &song.clip;
        assert!(!clip.notes.is_empty(), "{dataset} {}: no notes", song.id);
        let steps = clip.steps();
        for n in &clip.notes {
            assert!(n.pitch <= 127 && n.length >= 1 && (1..=127).contains(&n.velocity));
            assert!(
                (n.track as usize) < clip.tracks.len(),
                "{dataset} {}",
                song.id
            );
            if clip.meter_changes.is_empty() {
                assert!(
                    n.end() <= steps,
                    "{dataset} {}: {n:?} after the clip end",
                    song.id
                );
            }
        }
    }
}

#[test]
fn nottingham_loads_melody_and_chords_for_every_split() {
    bandmate_tests::require_data!("nottingham");
    let loaded = check_counts(Dataset::Nottingham, [827, 103, 104]);
    check_clips(Dataset::Nottingham, loaded);
    let mut meters: BTreeMap<String, usize> = BTreeMap::new();
    let mut without_chords = Vec::new();
    let (mut melody_notes, mut melody_stacked) = (0, 0);
    let mut polyphonic_melodies = Vec::new();
    for song in loaded.iter().flatten() {
        let clip = &song.clip;
        assert_eq!(
            roles(clip),
            [
                ("Melody", TrackRole::Melody),
                ("Chords", TrackRole::Accompaniment)
            ]
        );
        *meters.entry(clip.time_signature.to_string()).or_default() += 1;
        let melody: Vec<_> = clip.track_notes(0).collect();
        assert!(!melody.is_empty(), "{}: empty melody", song.id);
        // The melody is (nearly) monophonic: count notes starting with another melody note.
        let starts: HashSet<u32> = melody.iter().map(|n| n.start).collect();
        melody_notes += melody.len();
        melody_stacked += melody.len() - starts.len();
        if starts.len() < melody.len() {
            polyphonic_melodies.push(song.id.clone());
        }
        if clip.track_notes(1).next().is_none() {
            without_chords.push(song.id.clone());
        } else {
            // Chords lie below the melody on average.
            let mean = |t: u16| {
                let pitches: Vec<f64> = clip.track_notes(t).map(|n| n.pitch as f64).collect();
                pitches.iter().sum::<f64>() / pitches.len() as f64
            };
            assert!(mean(1) < mean(0), "{}: chords above the melody", song.id);
        }
    }
    println!("Nottingham meters: {meters:?}; tunes without chords: {without_chords:?}");
    println!(
        "Nottingham: {melody_stacked} of {melody_notes} melody notes start together with \
         another, in {} tunes: {polyphonic_melodies:?}",
        polyphonic_melodies.len()
    );
    assert!(
        melody_stacked * 100 < melody_notes,
        "melodies are not monophonic"
    );
    // DATA.md: 4/4 537, 6/8 370, 3/4 60, 2/4 41, other 26.
    assert_eq!(meters["4/4"], 537);
    assert_eq!(meters["6/8"], 370);
    assert_eq!(meters["3/4"], 60);
    assert_eq!(meters["2/4"], 41);
}

#[test]
fn pop909_loads_on_the_beat_grid_with_keys() {
    bandmate_tests::require_data!("pop909");
    let loaded = check_counts(Dataset::Pop909, [727, 91, 91]);
    check_clips(Dataset::Pop909, loaded);
    let mut first_bars = Vec::new();
    let mut onsets_in_beat = [0usize; STEPS_PER_BEAT as usize];
    for song in loaded.iter().flatten() {
        let clip = &song.clip;
        let roles = roles(clip);
        let expected = [
            ("MELODY", TrackRole::Melody),
            ("BRIDGE", TrackRole::Accompaniment),
            ("PIANO", TrackRole::Accompaniment),
        ];
        assert!(
            roles.iter().all(|r| expected.contains(r)),
            "{}: tracks {roles:?}",
            song.id
        );
        assert!(song.key.is_some(), "{}: no key", song.id);
        let first = clip.notes.iter().map(|n| n.start).min().unwrap_or(0);
        first_bars.push(first / clip.steps_per_bar());
        let melody = clip
            .track_with_role(TrackRole::Melody)
            .expect("a melody track");
        for n in clip.track_notes(melody) {
            onsets_in_beat[(n.start % STEPS_PER_BEAT) as usize] += 1;
        }
    }
    // Song 001 is in G♭ major and its notes start in the first bar.
    let song001 = loaded[0].iter().find(|s| s.id == "001").expect("song 001");
    assert_eq!(song001.key.map(|k| k.to_string()), Some("F# major".into()));
    assert_eq!(first_bars[0], 0);
    first_bars.sort_unstable();
    let in_bar_0 = first_bars.iter().filter(|&&b| b == 0).count() as f64 / first_bars.len() as f64;
    let total: usize = onsets_in_beat.iter().sum();
    let share = |count: usize| count as f64 / total as f64;
    let on_eighths = share(onsets_in_beat[0] + onsets_in_beat[2]);
    println!(
        "POP909: {:.1}% of songs start in bar 0 (latest first bar {}); melody onsets per 16th \
         of the beat {:?} → {:.1}% on 8ths, {:.1}% on beats",
        100.0 * in_bar_0,
        first_bars.last().unwrap_or(&0),
        onsets_in_beat,
        100.0 * on_eighths,
        100.0 * share(onsets_in_beat[0])
    );
    assert!(
        in_bar_0 > 0.75,
        "only {in_bar_0:.2} of the songs start in bar 0"
    );
    assert!(first_bars[first_bars.len() / 2] == 0);
    // A misaligned grid would spread onsets evenly over the four 16ths of a beat.
    assert!(
        on_eighths > 0.7,
        "only {on_eighths:.2} of melody onsets on 8ths"
    );
    assert!(share(onsets_in_beat[0]) > 0.4);
    assert!(share(onsets_in_beat[1]).max(share(onsets_in_beat[3])) < 0.15);
}

/// Number of sequences per split and frames per sequence of a `{"train","valid","test"}` JSON
/// file of sequences of frames, by counting brackets (the test does not trust the reader).
fn json_frame_counts(path: &Path) -> BTreeMap<String, Vec<usize>> {
    let text = std::fs::read_to_string(path).expect("readable JSON");
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let (mut depth, mut key, mut in_string, mut string) = (0, String::new(), false, String::new());
    for c in text.chars() {
        if in_string {
            if c == '"' {
                in_string = false;
                if depth == 1 {
                    key = std::mem::take(&mut string);
                }
            } else {
                string.push(c);
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => {
                depth += 1;
                if depth == 3 {
                    out.entry(key.clone()).or_default().push(0);
                } else if depth == 4 {
                    *out.get_mut(&key)
                        .and_then(|v| v.last_mut())
                        .expect("a sequence") += 1;
                }
            }
            '}' | ']' => depth -= 1,
            _ => {}
        }
    }
    out
}

fn check_against_json(dataset: Dataset, path: &Path, steps_per_frame: u32) {
    let frames = json_frame_counts(path);
    let expected = Split::ALL.map(|s| frames[s.name()].len());
    let loaded = check_counts(dataset, expected);
    check_clips(dataset, loaded);
    for (split, songs) in Split::ALL.iter().zip(loaded) {
        for (song, &count) in songs.iter().zip(&frames[split.name()]) {
            let steps = count as u32 * steps_per_frame;
            assert_eq!(song.clip.bars, steps.div_ceil(16), "{dataset} {}", song.id);
            let end = song.clip.notes.iter().map(|n| n.end()).max().unwrap_or(0);
            assert!(
                end <= steps,
                "{dataset} {}: notes beyond the frames",
                song.id
            );
        }
    }
}

#[test]
fn jsb_loads_four_voices_and_the_polyphonic_form() {
    bandmate_tests::require_data!("jsb");
    let path = root().join("jsb/Jsb16thSeparated.json");
    check_against_json(Dataset::Jsb, &path, 1);
    let loaded = splits(Dataset::Jsb);
    assert_eq!(loaded.each_ref().map(Vec::len), [229, 76, 77]);
    for song in loaded.iter().flatten() {
        let clip = &song.clip;
        assert_eq!(
            roles(clip),
            [
                ("Soprano", TrackRole::Melody),
                ("Alto", TrackRole::Accompaniment),
                ("Tenor", TrackRole::Accompaniment),
                ("Bass", TrackRole::Bass),
            ]
        );
        // Each voice is monophonic, and held pitches are merged: a voice never has a note
        // followed directly by one of the same pitch.
        for voice in 0..4u16 {
            let mut notes: Vec<_> = clip.track_notes(voice).collect();
            notes.sort_by_key(|n| n.start);
            assert!(!notes.is_empty(), "{}: voice {voice} is silent", song.id);
            for pair in notes.windows(2) {
                assert!(
                    pair[0].end() <= pair[1].start,
                    "{}: voice {voice} overlaps",
                    song.id
                );
                assert!(
                    pair[0].end() < pair[1].start || pair[0].pitch != pair[1].pitch,
                    "{}: voice {voice} has an unmerged run",
                    song.id
                );
            }
        }
        let mean = |t: u16| {
            let p: Vec<f64> = clip.track_notes(t).map(|n| n.pitch as f64).collect();
            p.iter().sum::<f64>() / p.len() as f64
        };
        assert!(
            mean(0) > mean(1) && mean(1) > mean(2) && mean(2) > mean(3),
            "{}",
            song.id
        );
    }
    check_against_json(
        Dataset::JsbPolyphonic,
        &root().join("jsb/jsb-chorales-16th.json"),
        1,
    );
}

#[test]
fn bl2012_loads_the_standard_splits_one_frame_per_quarter() {
    bandmate_tests::require_data!("bl2012");
    for set in Bl2012Set::ALL {
        let path = root().join("bl2012").join(set.file_name());
        check_against_json(Dataset::Bl2012(set), &path, STEPS_PER_BEAT);
        for song in splits(Dataset::Bl2012(set)).iter().flatten() {
            for n in &song.clip.notes {
                assert!(n.start % 4 == 0 && n.length % 4 == 0 && (21..=108).contains(&n.pitch));
            }
        }
    }
    // The published split sizes.
    let sizes = |set| splits(Dataset::Bl2012(set)).each_ref().map(Vec::len);
    assert_eq!(sizes(Bl2012Set::JsbChorales), [229, 76, 77]);
    assert_eq!(sizes(Bl2012Set::Nottingham), [694, 173, 170]);
    assert_eq!(sizes(Bl2012Set::MuseData), [524, 135, 124]);
    assert_eq!(sizes(Bl2012Set::PianoMidi), [87, 12, 25]);
}

#[test]
fn groove_loads_drum_performances_per_info_csv() {
    bandmate_tests::require_data!("groove");
    let csv = std::fs::read_to_string(root().join("groove/info.csv")).expect("info.csv");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let expected = ["train", "validation", "test"]
        .map(|s| rows.iter().filter(|r| r[col("split")] == s).count());
    let loaded = check_counts(Dataset::Groove, expected);
    check_clips(Dataset::Groove, loaded);
    let bpm_of: BTreeMap<&str, f64> = rows
        .iter()
        .map(|r| (r[col("id")], r[col("bpm")].parse().unwrap()))
        .collect();
    for song in loaded.iter().flatten() {
        assert!(
            song.clip
                .tracks
                .iter()
                .all(|t| t.role == TrackRole::Drums && t.is_drums())
        );
        assert!(song.style.as_deref().is_some_and(|s| !s.is_empty()));
        let bpm = bpm_of[song.id.as_str()];
        assert!(
            (song.clip.tempo - bpm).abs() < 1.0,
            "{}: tempo {} vs info.csv {bpm}",
            song.id,
            song.clip.tempo
        );
    }
}

#[test]
fn transposition_keeps_pitches_in_the_window() {
    bandmate_tests::require_data!("nottingham", "pop909");
    let songs: Vec<Song> = splits(Dataset::Nottingham)[1]
        .iter()
        .chain(&splits(Dataset::Pop909)[1])
        .cloned()
        .collect();
    let window = 36..=96;
    let copies = transpose_all(&songs, -6..=6, window.clone());
    println!(
        "transposition: {} songs → {} copies within pitches {window:?}",
        songs.len(),
        copies.len()
    );
    assert!(copies.len() > songs.len() * 3 && copies.len() <= songs.len() * 13);
    let ids: HashSet<&str> = copies.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), copies.len(), "transposed ids are unique");
    for copy in &copies {
        assert!(
            copy.clip.notes.iter().all(|n| window.contains(&n.pitch)),
            "{}",
            copy.id
        );
    }
    let original = &songs[0];
    let out: Vec<Song> = transpositions(original, -6..=6, 0..=127).collect();
    assert_eq!(out.len(), 13);
    assert_eq!(out[6], *original);
    for (shift, copy) in (-6..=6).zip(&out) {
        for (a, b) in original.clip.notes.iter().zip(&copy.clip.notes) {
            assert_eq!(b.pitch as i32, a.pitch as i32 + shift);
            assert_eq!((a.start, a.length, a.track), (b.start, b.length, b.track));
        }
    }
    // Drums are never transposed: only the identity is kept.
    let drums = &splits(Dataset::Groove)[1][0];
    let kept: Vec<Song> = transpositions(drums, -3..=3, 0..=127).collect();
    assert_eq!(kept, vec![drums.clone()]);
}

#[test]
fn windows_have_the_requested_length() {
    bandmate_tests::require_data!("nottingham", "pop909");
    let mut made = 0;
    for song in splits(Dataset::Pop909)[1]
        .iter()
        .chain(&splits(Dataset::Nottingham)[1])
    {
        let all = windows_with(
            &song.clip,
            WindowOptions {
                bars: 8,
                hop_bars: 4,
                keep_empty: true,
            },
        );
        let kept = windows(&song.clip, 8, 4);
        assert!(kept.len() <= all.len());
        assert!(kept.iter().all(|w| !w.notes.is_empty()));
        if song.clip.meter_changes.is_empty() {
            assert_eq!(all.len() as u32, song.clip.bars.saturating_sub(8) / 4 + 1);
        }
        for w in &all {
            assert_eq!(w.bars, 8);
            let steps = 8 * w.time_signature.steps_per_bar();
            assert_eq!(w.steps(), steps);
            assert!(w.notes.iter().all(|n| n.end() <= steps));
            assert!(w.tempo_changes.is_empty() && w.meter_changes.is_empty());
        }
        // Without meter changes the first window is the clip's first 8 bars.
        if song.clip.meter_changes.is_empty() && song.clip.bars >= 8 {
            let mut first = song.clip.window(0, 8);
            first.sort_notes();
            assert_eq!(all[0], first, "{}", song.id);
        }
        made += kept.len();
    }
    println!("windows: {made} non-empty 8-bar windows (hop 4) from the valid splits");
    assert!(made > 1000);
}

/// A fresh folder under the test target folder.
fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bandmate-datasets-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary folder");
    dir
}

#[test]
fn cache_round_trips_every_dataset_exactly() {
    bandmate_tests::require_data!("nottingham", "pop909", "jsb", "bl2012", "groove");
    let cache_dir = temp_dir("cache");
    let data_root = root();
    for dataset in Dataset::ALL {
        for (split, parsed) in Split::ALL.iter().zip(splits(dataset)) {
            // The first load builds the cache, the second reads it.
            for (what, expected) in [
                ("built", CacheStatus::Missing),
                ("cached", CacheStatus::Hit),
            ] {
                let (loaded, status) =
                    load_cached_with_status(dataset, *split, &data_root, &cache_dir).unwrap();
                assert_eq!(status, expected, "{dataset} {split}");
                assert!(
                    loaded == *parsed,
                    "{dataset} {split}: {what} differs from parsed"
                );
            }
        }
    }
    // All of POP909 from the cache.
    let start = Instant::now();
    let mut songs = 0;
    for split in Split::ALL {
        let (loaded, status) =
            load_cached_with_status(Dataset::Pop909, split, &data_root, &cache_dir).unwrap();
        assert_eq!(status, CacheStatus::Hit);
        songs += loaded.len();
    }
    let elapsed = start.elapsed();
    let bytes: u64 = Split::ALL
        .iter()
        .map(|&s| {
            let path = data::cache_file_path(Dataset::Pop909, s, &cache_dir);
            std::fs::metadata(path).unwrap().len()
        })
        .sum();
    println!(
        "cache: all of POP909 ({songs} songs) loads in {:.1} ms from {:.1} MB of cache files \
         ({} profile)",
        elapsed.as_secs_f64() * 1e3,
        bytes as f64 / 1e6,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for dataset in Dataset::ALL {
        let size: u64 = Split::ALL
            .iter()
            .map(|&s| {
                std::fs::metadata(data::cache_file_path(dataset, s, &cache_dir))
                    .map_or(0, |m| m.len())
            })
            .sum();
        println!("cache: {dataset:>18} {:>8.1} kB", size as f64 / 1e3);
    }
    std::fs::remove_dir_all(&cache_dir).ok();
}

#[test]
fn corrupt_old_and_stale_caches_are_rebuilt() {
    bandmate_tests::require_data!("jsb");
    // A private copy of the JSB folder, so that the test can change a source file.
    let dir = temp_dir("stale");
    let (data_root, cache_dir) = (dir.join("data"), dir.join("cache"));
    std::fs::create_dir_all(data_root.join("jsb")).unwrap();
    for file in ["Jsb16thSeparated.json", "jsb-chorales-16th.json"] {
        std::fs::copy(
            root().join("jsb").join(file),
            data_root.join("jsb").join(file),
        )
        .unwrap();
    }
    let (dataset, split) = (Dataset::Jsb, Split::Valid);
    let expected = &splits(dataset)[1];
    let load = || load_cached_with_status(dataset, split, &data_root, &cache_dir).unwrap();
    let (songs, status) = load();
    assert_eq!((status, &songs), (CacheStatus::Missing, expected));
    assert_eq!(load().1, CacheStatus::Hit);

    let path = data::cache_file_path(dataset, split, &cache_dir);
    let good = std::fs::read(&path).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x10;
    let mut newer = good.clone();
    newer[8..12].copy_from_slice(&(cache::FORMAT_VERSION + 1).to_le_bytes());
    let corruptions: [(&str, Vec<u8>); 5] = [
        ("truncated", good[..good.len() / 3].to_vec()),
        ("flipped byte", flipped),
        ("other format version", newer),
        ("garbage", b"not a cache at all".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in corruptions {
        std::fs::write(&path, bytes).unwrap();
        let (songs, status) = load();
        assert!(
            matches!(status, CacheStatus::Invalid(_)),
            "{what}: {status:?}"
        );
        println!("{what}: {status:?}");
        assert_eq!(&songs, expected, "{what}");
        assert_eq!(load().1, CacheStatus::Hit, "{what}: rebuilt file is valid");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            good,
            "{what}: rebuilt file is identical"
        );
    }

    // A changed source makes the cache stale.
    let source = data_root.join("jsb/Jsb16thSeparated.json");
    let mut text = std::fs::read_to_string(&source).unwrap();
    text.push('\n');
    std::fs::write(&source, text).unwrap();
    let (songs, status) = load();
    assert_eq!((status, &songs), (CacheStatus::Stale, expected));
    assert_eq!(load().1, CacheStatus::Hit);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn missing_or_broken_sources_are_clear_errors() {
    let dir = temp_dir("errors");
    fn message<E: std::fmt::Display>(result: Result<Vec<Song>, E>) -> String {
        match result {
            Ok(songs) => panic!("expected an error, got {} songs", songs.len()),
            Err(e) => format!("{e:#}"),
        }
    }

    let missing = dir.join("no-such-folder");
    let text = message(load(Dataset::Pop909, Split::Train, &missing));
    assert!(
        text.contains(&missing.join("pop909").display().to_string()),
        "{text}"
    );

    std::fs::create_dir_all(dir.join("nottingham/MIDI")).unwrap();
    let splits_json = dir.join("nottingham/splits.json");
    let text = message(load(Dataset::Nottingham, Split::Train, &dir));
    assert!(text.contains(&splits_json.display().to_string()), "{text}");

    std::fs::write(
        &splits_json,
        r#"{"train": ["bad.mid"], "valid": [], "test": []}"#,
    )
    .unwrap();
    std::fs::write(dir.join("nottingham/MIDI/bad.mid"), b"MThd garbage").unwrap();
    let text = message(load(Dataset::Nottingham, Split::Train, &dir));
    assert!(text.contains("bad.mid"), "{text}");
    println!("errors name the file: {text}");

    std::fs::write(&splits_json, r#"{"train": []}"#).unwrap();
    let text = message(load(Dataset::Nottingham, Split::Test, &dir));
    assert!(
        text.contains("'test'") && text.contains("splits.json"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
