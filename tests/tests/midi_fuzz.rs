//! Fuzzing `midi::read_bytes` and `midi::read_bytes_with_beats`: random bytes, mutations of real
//! Nottingham files, of synthetic files and of files near the 16 MiB limit, and random beat lists.
//! Every input must give `Ok` or a clean `Err`, in bounded time; every `Ok` clip must pass the
//! validation every clip obeys unchanged and survive an export → import round trip; and each
//! fuzzer's mix of outcomes is asserted, so that a fuzzer that stops reaching the importer's
//! interesting paths fails.
//!
//! A panicking or slow input is saved under `$CARGO_TARGET_TMPDIR/midi-fuzz-failures/`; copy it to
//! `tests/regressions/midi/` so that `regression_files_import_cleanly` keeps checking it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bandmate::midi;
use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{FileFailurePersistence, TestRunner};

/// Slowest acceptable import of one (≤ 64 KiB) fuzz input; typical imports take microseconds.
const MAX_CASE_TIME: Duration = Duration::from_secs(2);

/// A fixed seed keeps CI reproducible; `BANDMATE_FUZZ_RANDOM=1` explores new inputs.
fn config(cases: u32) -> ProptestConfig {
    let rng_seed = if std::env::var_os("BANDMATE_FUZZ_RANDOM").is_some() {
        proptest::test_runner::RngSeed::Random
    } else {
        proptest::test_runner::RngSeed::Fixed(0x0BA2_D3A7)
    };
    ProptestConfig {
        cases,
        rng_seed,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

/// Import `bytes` and check the result; on a panic or a slow import, save the input.
/// Returns the outcome: "Ok" or the error variant.
fn check_import(bytes: &[u8]) -> Result<&'static str, TestCaseError> {
    check_result(bytes, MAX_CASE_TIME, midi::read_bytes)
}

/// [`check_import`] for any import function and time limit.
fn check_result(
    bytes: &[u8],
    max_time: Duration,
    import: impl Fn(&[u8]) -> Result<bandmate::music::Clip, midi::MidiError>,
) -> Result<&'static str, TestCaseError> {
    let started = Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| import(bytes)));
    let elapsed = started.elapsed();
    let Ok(result) = result else {
        let path = save_failure(bytes, "panic");
        return Err(TestCaseError::fail(format!(
            "read_bytes panicked; input saved to {}",
            path.display()
        )));
    };
    if elapsed > max_time {
        let path = save_failure(bytes, "slow");
        return Err(TestCaseError::fail(format!(
            "read_bytes took {elapsed:?}; input saved to {}",
            path.display()
        )));
    }
    match result {
        Err(e) => {
            let message = e.to_string();
            prop_assert!(
                !message.is_empty() && !message.contains('\n'),
                "{message:?}"
            );
            return Ok(error_kind(&e));
        }
        Ok(clip) => {
            prop_assert!(clip.bars >= 1 && clip.bars <= midi::MAX_BARS);
            // What imports obeys the limits of every clip: it can be saved and reopened.
            let repairs = clip.clone().sanitize();
            prop_assert!(repairs.is_empty(), "{repairs:?}");
            for note in &clip.notes {
                prop_assert!(note.length >= 1 && note.end() <= clip.steps(), "{note:?}");
                prop_assert!((note.track as usize) < clip.tracks.len());
            }
            let again = midi::read_bytes(&midi::write_bytes(&clip));
            prop_assert!(again.is_ok(), "re-import failed: {:?}", again.err());
            let mut again = again.unwrap();
            again.sort_notes();
            prop_assert_eq!(&again.notes, &clip.notes);
        }
    }
    Ok("Ok")
}

fn error_kind(error: &midi::MidiError) -> &'static str {
    use midi::MidiError::*;
    match error {
        File { .. } => "File",
        Io(_) => "Io",
        Empty => "Empty",
        TooLarge { .. } => "TooLarge",
        NotMidi => "NotMidi",
        Truncated(_) => "Truncated",
        Malformed(_) => "Malformed",
        NoTracks => "NoTracks",
        SmpteTiming { .. } => "SmpteTiming",
        TooLong { .. } => "TooLong",
        TooManyTracks { .. } => "TooManyTracks",
        BeatFile { .. } => "BeatFile",
        Beats(_) => "Beats",
    }
}

fn save_failure(bytes: &[u8], kind: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("midi-fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let hash = bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    let path = dir.join(format!("{kind}-{hash:016x}.mid"));
    let _ = std::fs::write(&path, bytes);
    path
}

/// Every Nottingham file, read once.
fn nottingham() -> &'static [Vec<u8>] {
    static FILES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = bandmate_tests::data_dir().join("nottingham/MIDI");
        let paths = bandmate_tests::sorted_files(&dir, bandmate_tests::is_midi);
        paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
    })
}

/// One edit of a file.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    /// Set the length field of a chunk (chosen among the chunks found) to a nearby or random value.
    ChunkLength(Index, i64, bool, u32),
    /// Overwrite header fields: format, track count, division.
    Header(Option<u16>, Option<u16>, Option<u16>),
    /// Insert a maximal delta time (0x0FFFFFFF ticks) and a note-on.
    LongDelta(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        2 => (any::<Index>(), -4i64..=4, any::<bool>(), any::<u32>())
            .prop_map(|(i, d, random, v)| Mutation::ChunkLength(i, d, random, v)),
        1 => (
            prop::option::of(0u16..4),
            prop::option::of(prop_oneof![Just(0u16), 1u16..4, Just(u16::MAX)]),
            prop::option::of(prop_oneof![Just(0u16), Just(1), Just(32767), Just(0x8000), Just(0xE728), any::<u16>()]),
        )
            .prop_map(|(f, t, d)| Mutation::Header(f, t, d)),
        1 => any::<Index>().prop_map(Mutation::LongDelta),
    ]
}

/// `counts` mutations, and whether to repair the chunk lengths after them (3 times in 4).
fn mutations(counts: std::ops::Range<usize>) -> impl Strategy<Value = (Vec<Mutation>, bool)> {
    (
        prop::collection::vec(mutation(), counts),
        prop::bool::weighted(0.75),
    )
}

/// Set every MTrk chunk's length to reach the next "MTrk" tag (or the end of the file), so that
/// inserted or deleted bytes reach the event parser instead of failing the chunk structure.
fn repair_chunk_lengths(bytes: &mut [u8]) {
    let tags: Vec<usize> = (14..bytes.len().saturating_sub(7))
        .filter(|&p| &bytes[p..p + 4] == b"MTrk")
        .collect();
    for (i, &tag) in tags.iter().enumerate() {
        let end = tags.get(i + 1).copied().unwrap_or(bytes.len());
        let len = end.saturating_sub(tag + 8) as u32; // "MTrk" may recur inside a header
        bytes[tag + 4..tag + 8].copy_from_slice(&len.to_be_bytes());
    }
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len();
    let at = |i: &Index| if len == 0 { 0 } else { i.index(len) };
    match mutation {
        Mutation::FlipBit(i, bit) if len > 0 => bytes[at(i)] ^= 1 << bit,
        Mutation::SetByte(i, b) if len > 0 => bytes[at(i)] = *b,
        Mutation::Truncate(i) => bytes.truncate(at(i)),
        Mutation::Insert(i, new) => {
            let pos = at(i);
            bytes.splice(pos..pos, new.iter().copied());
        }
        Mutation::Delete(i, n) if len > 0 => {
            let pos = at(i);
            bytes.drain(pos..(pos + n).min(len));
        }
        Mutation::ChunkLength(i, delta, random, value) => {
            let chunks: Vec<usize> = (0..len.saturating_sub(7))
                .filter(|&p| &bytes[p..p + 4] == b"MTrk" || &bytes[p..p + 4] == b"MThd")
                .collect();
            if chunks.is_empty() {
                return;
            }
            let field = chunks[i.index(chunks.len())] + 4;
            let old = u32::from_be_bytes(bytes[field..field + 4].try_into().unwrap());
            let new = if *random {
                *value
            } else {
                (old as i64 + delta).clamp(0, u32::MAX as i64) as u32
            };
            bytes[field..field + 4].copy_from_slice(&new.to_be_bytes());
        }
        Mutation::Header(format, tracks, division) if len >= 14 => {
            for (value, at) in [(format, 8), (tracks, 10), (division, 12)] {
                if let Some(v) = value {
                    bytes[at..at + 2].copy_from_slice(&v.to_be_bytes());
                }
            }
        }
        Mutation::LongDelta(i) => {
            let pos = at(i);
            bytes.splice(pos..pos, [0xFF, 0xFF, 0xFF, 0x7F, 0x90, 60, 100]);
        }
        _ => {}
    }
}

/// `bytes` with `mutations` applied in order, then the chunk lengths repaired if `repair`.
fn mutated(mut bytes: Vec<u8>, mutations: &[Mutation], repair: bool) -> Vec<u8> {
    for m in mutations {
        apply(&mut bytes, m);
    }
    if repair {
        repair_chunk_lengths(&mut bytes);
    }
    bytes
}

/// A random track event of a synthetic file.
fn event() -> impl Strategy<Value = TrackEventKind<'static>> {
    let channel = prop_oneof![3 => 0u8..4, 1 => Just(9u8), 1 => 0u8..16];
    let key = 36u8..96;
    prop_oneof![
        6 => (channel.clone(), key.clone(), 0u8..128).prop_map(|(c, k, v)| TrackEventKind::Midi {
            channel: u4::new(c),
            message: MidiMessage::NoteOn { key: u7::new(k), vel: u7::new(v) },
        }),
        4 => (channel, key).prop_map(|(c, k)| TrackEventKind::Midi {
            channel: u4::new(c),
            message: MidiMessage::NoteOff { key: u7::new(k), vel: u7::new(0) },
        }),
        1 => (1u32..0xFF_FFFF).prop_map(|us| TrackEventKind::Meta(MetaMessage::Tempo(u24::new(us)))),
        1 => prop_oneof![9 => (1u8..13, 0u8..5), 1 => (0u8..20, 0u8..9)]
            .prop_map(|(n, d)| TrackEventKind::Meta(MetaMessage::TimeSignature(n, d, 24, 8))),
        1 => prop::sample::select(vec!["Melody", "Bass", "Drums", "", "Piano"])
            .prop_map(|n| TrackEventKind::Meta(MetaMessage::TrackName(n.as_bytes()))),
        1 => Just(TrackEventKind::SysEx(&[0x7E, 0x7F, 0x09, 0x01, 0xF7])),
    ]
}

/// Delta times: mostly small, sometimes huge.
fn delta() -> impl Strategy<Value = u32> {
    prop_oneof![160 => 0u32..500, 40 => 0u32..20_000, 1 => 0u32..(1 << 28)]
}

/// A synthetic SMF: random format, PPQ and tracks of random events.
fn synthetic_file() -> impl Strategy<Value = Vec<u8>> {
    let ppq = prop_oneof![
        Just(1u16),
        Just(96),
        Just(480),
        Just(960),
        Just(32767),
        1u16..32768
    ];
    let track = prop::collection::vec((delta(), event()), 0..40);
    (0u8..3, ppq, prop::collection::vec(track, 1..5)).prop_map(|(format, ppq, tracks)| {
        let format = [Format::SingleTrack, Format::Parallel, Format::Sequential][format as usize];
        let mut smf = Smf::new(Header::new(format, Timing::Metrical(u15::new(ppq))));
        for events in tracks {
            let mut track: Vec<TrackEvent> = events
                .into_iter()
                .map(|(d, kind)| TrackEvent {
                    delta: u28::new(d),
                    kind,
                })
                .collect();
            track.push(TrackEvent {
                delta: u28::new(0),
                kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
            });
            smf.tracks.push(track);
        }
        let mut bytes = Vec::new();
        smf.write_std(&mut bytes).expect("writing to a Vec");
        bytes
    })
}

/// Run `cases` cases of `strategy` through `check`, print the count, outcomes and time, and
/// return the outcomes (how many cases gave `Ok`, how many each error).
fn fuzz<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<&'static str, TestCaseError>,
) -> BTreeMap<&'static str, u32> {
    let started = Instant::now();
    let mut runner = TestRunner::new(config(cases));
    let outcomes = RefCell::new(BTreeMap::<&str, u32>::new());
    let result = runner.run(&strategy, |input| {
        *outcomes.borrow_mut().entry(check(input)?).or_default() += 1;
        Ok(())
    });
    let outcomes = outcomes.into_inner();
    let run: u32 = outcomes.values().sum();
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    println!(
        "{name}: {run} cases in {:.1?}: {outcomes:?}",
        started.elapsed()
    );
    assert!(run >= cases);
    outcomes
}

/// The share of cases with `outcome`.
fn share(outcomes: &BTreeMap<&str, u32>, outcome: &str) -> f64 {
    let run: u32 = outcomes.values().sum();
    outcomes.get(outcome).copied().unwrap_or(0) as f64 / run.max(1) as f64
}

#[test]
fn random_bytes() {
    let outcomes = fuzz(
        "random bytes",
        30_000,
        prop::collection::vec(any::<u8>(), 0..256),
        |bytes| check_import(&bytes),
    );
    // Without a header nothing imports: every case is refused as not MIDI (or empty).
    assert_eq!(share(&outcomes, "Ok"), 0.0, "{outcomes:?}");
    assert!(
        share(&outcomes, "NotMidi") + share(&outcomes, "Empty") == 1.0,
        "{outcomes:?}"
    );
}

#[test]
fn random_bytes_after_a_valid_header() {
    let division = prop_oneof![Just(480u16), Just(1), Just(32767), any::<u16>()];
    let strategy = (
        division,
        0u16..4,
        prop::collection::vec(any::<u8>(), 0..256),
    );
    let outcomes = fuzz(
        "random bytes after a header",
        20_000,
        strategy,
        |(division, tracks, body)| {
            let mut bytes = b"MThd\0\0\0\x06\0\x01".to_vec();
            bytes.extend_from_slice(&tracks.to_be_bytes());
            bytes.extend_from_slice(&division.to_be_bytes());
            // Mostly a plausible track chunk header, then random events.
            if body.first().is_some_and(|b| b % 4 != 0) {
                bytes.extend_from_slice(b"MTrk");
                bytes.extend_from_slice(&(body.len() as u32 - 1).to_be_bytes());
                bytes.extend_from_slice(&body[1..]);
            } else {
                bytes.extend_from_slice(&body);
            }
            check_import(&bytes)
        },
    );
    // Past the header, the event parser's refusals and some clean imports.
    assert!(share(&outcomes, "Ok") > 0.0, "{outcomes:?}");
    assert!(
        share(&outcomes, "Malformed") + share(&outcomes, "Truncated") > 0.1,
        "{outcomes:?}"
    );
    assert!(outcomes.len() >= 4, "{outcomes:?}");
}

#[test]
fn mutated_nottingham_files() {
    bandmate_tests::require_data!("nottingham");
    let files = nottingham();
    let strategy = (any::<Index>(), mutations(1..4));
    let outcomes = fuzz(
        "mutated Nottingham files",
        60_000,
        strategy,
        |(file, (mutations, repair))| {
            let bytes = mutated(files[file.index(files.len())].clone(), &mutations, repair);
            check_import(&bytes)
        },
    );
    // A good share of mutated real files still import (about a quarter with the fixed seed),
    // and the refusals reach most of the importer's checks.
    assert!(share(&outcomes, "Ok") > 0.15, "{outcomes:?}");
    assert!(outcomes.len() >= 6, "{outcomes:?}");
}

#[test]
fn mutated_synthetic_files() {
    let strategy = (synthetic_file(), mutations(0..3));
    let outcomes = fuzz(
        "mutated synthetic files",
        50_000,
        strategy,
        |(bytes, (mutations, repair))| check_import(&mutated(bytes, &mutations, repair)),
    );
    assert!(share(&outcomes, "Ok") > 0.3, "{outcomes:?}");
    assert!(share(&outcomes, "Ok") < 0.99, "{outcomes:?}");
}

/// A file just under the 16 MiB limit: `notes` chords of 17 one-step notes at PPQ 4, with
/// running status, padded with a text event to `MAX_FILE_BYTES - slack` bytes.
fn file_near_the_size_limit(slack: usize) -> Vec<u8> {
    let mut track = vec![0x00, 0x90, 40, 100, 0x01, 40, 0];
    for step in 0..20_000u32 {
        for key in 40..57u8 {
            track.extend_from_slice(&[0x00, key, 100]);
        }
        for (i, key) in (40..57u8).enumerate() {
            track.extend_from_slice(&[u8::from(i == 0) * (1 + (step % 3) as u8), key, 0]);
        }
    }
    let header_and_end = 14 + 8 + 4;
    // A text meta event (FF 01, 4-byte variable length) fills the rest.
    let fill = midi::MAX_FILE_BYTES as usize - slack - header_and_end - track.len() - 6;
    track.extend_from_slice(&[0x00, 0xFF, 0x01]);
    let len = (fill - 1) as u32;
    track.extend_from_slice(&[
        0x80 | (len >> 21) as u8 & 0x7F,
        0x80 | (len >> 14) as u8 & 0x7F,
        0x80 | (len >> 7) as u8 & 0x7F,
        len as u8 & 0x7F,
    ]);
    track.resize(track.len() + fill - 1, b'x');
    track.extend_from_slice(&[0x00, 0xFF, 0x2F, 0x00]);
    let mut bytes = b"MThd\0\0\0\x06\0\0\0\x01\0\x04MTrk".to_vec();
    bytes.extend_from_slice(&(track.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&track);
    bytes
}

#[test]
fn mutated_files_near_the_size_limit() {
    let base = file_near_the_size_limit(0);
    assert_eq!(base.len() as u64, midi::MAX_FILE_BYTES);
    // One byte over the limit is refused cleanly.
    let mut over = base.clone();
    over.push(0);
    assert_eq!(check_import(&over).unwrap(), "TooLarge");
    // Mutations anywhere, mostly inside the notes. The limit is a hang detector: an import of
    // 16 MiB takes well under a second in the test profile.
    let strategy = (prop::collection::vec(mutation(), 1..3), prop::bool::ANY);
    let outcomes = fuzz(
        "mutated files near the size limit",
        24,
        strategy,
        |(mutations, repair)| {
            let mut bytes = mutated(base.clone(), &mutations, repair);
            bytes.truncate(midi::MAX_FILE_BYTES as usize);
            check_result(&bytes, Duration::from_secs(60), midi::read_bytes)
        },
    );
    assert!(share(&outcomes, "Ok") > 0.0, "{outcomes:?}");
}

#[test]
fn read_bytes_with_beats_takes_random_beat_lists() {
    bandmate_tests::require_data!("nottingham");
    let files = nottingham();
    let beat = (0.0f64..1.0, any::<bool>());
    let strategy = (
        any::<Index>(),
        prop::collection::vec(beat, 0..64),
        prop_oneof![
            Just(0.0),
            Just(f64::NAN),
            Just(-1.0),
            Just(1e300),
            0.0f64..100.0
        ],
    );
    let outcomes = fuzz(
        "read_bytes_with_beats",
        3_000,
        strategy,
        |(file, gaps, odd)| {
            // Increasing times from random gaps, sometimes one odd value among them.
            let mut time = 0.0;
            let mut beats: Vec<midi::BeatMark> = gaps
                .iter()
                .map(|&(gap, downbeat)| {
                    time += gap;
                    midi::BeatMark {
                        time_s: time,
                        downbeat,
                    }
                })
                .collect();
            if let Some(first) = beats.first_mut()
                && odd != 0.0
            {
                first.time_s = odd;
            }
            let bytes = &files[file.index(files.len())];
            check_result(bytes, MAX_CASE_TIME, |b| {
                midi::read_bytes_with_beats(b, &beats)
            })
        },
    );
    // About 40% import with the fixed seed; the rest are refused beat lists (or too long).
    assert!(share(&outcomes, "Ok") > 0.2, "{outcomes:?}");
    assert!(share(&outcomes, "Beats") > 0.2, "{outcomes:?}");
}

/// Inputs that once crashed, hung or were otherwise interesting: each gives `Ok` or a clean `Err`.
#[test]
fn regression_files_import_cleanly() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("regressions/midi");
    let paths = bandmate_tests::sorted_files(&dir, bandmate_tests::is_midi);
    assert!(
        !paths.is_empty(),
        "no regression files in {}",
        dir.display()
    );
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        let started = Instant::now();
        let result = midi::read_bytes(&bytes);
        assert!(
            started.elapsed() < MAX_CASE_TIME,
            "{}: {:?}",
            path.display(),
            started.elapsed()
        );
        if let Ok(clip) = &result {
            assert!(clip.bars <= midi::MAX_BARS);
        }
        let outcome = result.as_ref().map(|c| format!("{} notes", c.notes.len()));
        println!(
            "{}: {}",
            path.file_name().unwrap().to_string_lossy(),
            match outcome {
                Ok(ok) => ok,
                Err(e) => e.to_string(),
            }
        );
    }
    println!("{} regression files imported cleanly", paths.len());
}
