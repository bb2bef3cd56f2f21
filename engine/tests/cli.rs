//! The `bandmate` program as a user runs it: real data, bad input, exit codes and messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bandmate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bandmate"))
        .args(args)
        .output()
        .expect("bandmate runs")
}

/// `bandmate args`, which must succeed (else the test fails with its stderr).
fn bandmate_ok(args: &[&str]) -> Output {
    let out = bandmate(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A new scratch folder for one test (`tag` tells the tests apart).
fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bandmate-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn data() -> PathBuf {
    bandmate::data::default_data_root()
}

/// Whether the Nottingham data is there; if not, the calling test should return (it is skipped,
/// with a message, or fails with `BANDMATE_REQUIRE_DATA=1`).
fn have_nottingham() -> bool {
    bandmate::data::have_datasets(&["nottingham"])
}

/// The example clip (melody and chords, 8 bars), written as `example.mid` in `dir`: a real
/// file that needs no dataset.
fn example_file(dir: &Path) -> PathBuf {
    let path = dir.join("example.mid");
    bandmate::midi::write_file(&bandmate::music::example_clip(), &path).unwrap();
    path
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A failure must be one line on stderr naming the file, a non-zero exit, and no panic.
fn assert_clean_failure(out: &Output, file: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{} should fail", file.display());
    assert!(!stderr.contains("panicked"), "{}: {stderr}", file.display());
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&*file.to_string_lossy()),
        "names the file: {stderr}"
    );
}

#[test]
fn bad_files_give_one_line_errors() {
    let dir = scratch_dir("bad");
    let real = std::fs::read(example_file(&dir)).unwrap();
    let mut huge = b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk".to_vec();
    huge.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
    huge.resize(50 * 1024 * 1024, 0x90);
    let mut smpte = real.clone();
    smpte[12] = 0xE7; // division: -25 fps SMPTE
    smpte[13] = 40;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.mid", Vec::new()),
        ("text.mid", b"this is not a MIDI file at all".to_vec()),
        ("truncated.mid", real[..real.len() / 3].to_vec()),
        ("header_only.mid", real[..14].to_vec()),
        (
            "zero_tracks.mid",
            b"MThd\x00\x00\x00\x06\x00\x01\x00\x00\x00\x60".to_vec(),
        ),
        ("smpte.mid", smpte),
        ("huge.mid", huge),
    ];
    for (name, bytes) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = bandmate(&["info", path.to_str().unwrap()]);
        // A header-only or zero-track file may be read as an empty clip or refused; both are
        // fine as long as nothing panics. Everything else must be refused cleanly.
        if out.status.success() {
            assert!(
                matches!(name, "header_only.mid" | "zero_tracks.mid"),
                "{name} was accepted"
            );
            continue;
        }
        assert_clean_failure(&out, &path);
    }
    let missing = dir.join("missing.mid");
    assert_clean_failure(&bandmate(&["info", missing.to_str().unwrap()]), &missing);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_regression_input_is_handled_without_a_panic() {
    let dir = workspace().join("tests/regressions/midi");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "mid") {
            let out = bandmate(&["info", path.to_str().unwrap()]);
            if !out.status.success() {
                assert_clean_failure(&out, &path);
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "found {checked} regression files");
}

/// `bandmate eval --json` of the Nottingham test split against `split`.
fn eval_nottingham_test_against(split: &str) -> serde_json::Value {
    let dir = data().join("nottingham/MIDI");
    let dir = dir.to_str().unwrap();
    let out = bandmate_ok(&[
        "eval",
        "--reference",
        dir,
        "--reference-split",
        "test",
        "--generated",
        dir,
        "--generated-split",
        split,
        "--json",
    ]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn eval_of_the_nottingham_test_split_against_itself_is_perfect() {
    if !have_nottingham() {
        return;
    }
    let report = eval_nottingham_test_against("test");
    assert_eq!(report["reference"]["clips"], 104);
    let features = report["yang_lerch"]["features"].as_object().unwrap();
    assert_eq!(features.len(), 8);
    for (name, f) in features {
        let oa = f["overlap_area"].as_f64().unwrap();
        assert!(oa > 0.999, "{name}: OA {oa}");
    }
    for part in ["pitch", "duration"] {
        for measure in ["consistency", "variance"] {
            assert_eq!(
                report["mittal_self_similarity"][part][measure].as_f64(),
                Some(1.0),
                "{part} {measure}"
            );
        }
    }
}

#[test]
fn eval_against_the_train_split_is_close_but_not_identical() {
    if !have_nottingham() {
        return;
    }
    let report = eval_nottingham_test_against("train");
    assert_eq!(report["generated"]["clips"], 827);
    let oas: Vec<f64> = report["yang_lerch"]["features"]
        .as_object()
        .unwrap()
        .values()
        .map(|f| f["overlap_area"].as_f64().unwrap())
        .collect();
    let mean = oas.iter().sum::<f64>() / oas.len() as f64;
    println!("Nottingham train vs test: mean OA {mean:.3}, per feature {oas:.3?}");
    assert!(mean > 0.85 && mean < 0.999, "mean OA {mean}");
}

#[test]
fn roundtrip_of_a_nottingham_tune_is_identical() {
    if !have_nottingham() {
        return;
    }
    let dir = scratch_dir("rt");
    let input = data().join("nottingham/MIDI/reelsa-c10.mid");
    let output = dir.join("out.mid");
    let out = bandmate_ok(&[
        "roundtrip",
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["identical"], true);
    assert!(summary["notes"].as_u64().unwrap() > 50);

    let info = bandmate(&["info", output.to_str().unwrap(), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["notes"], summary["notes"]);
    assert_eq!(info["time_signature"], "4/4");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn demo_runs_every_model() {
    let dir = scratch_dir("demo");
    let demo = bandmate_ok(&["demo", "--out-dir", dir.to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&demo.stdout);
    assert!(printed.contains("identical on the grid"));
    assert!(dir.join("example.mid").is_file());
    // The models ran: each result is a MIDI file with the example's notes and new ones, and
    // the before/after sheet is a PNG.
    let example = bandmate::music::example_clip();
    for (task, grows) in [
        ("fill", false),
        ("harmonize", true),
        ("continue", false),
        ("band", true),
    ] {
        let path = dir.join(format!("example-{task}.mid"));
        let result = bandmate::midi::read_file(&path).unwrap();
        assert!(!result.notes.is_empty(), "{task}: no notes");
        assert!(
            printed.contains(&format!("example-{task}.mid")),
            "{printed}"
        );
        if grows {
            // A new accompaniment track beside the melody.
            assert_eq!(result.tracks.len(), 2, "{task}: {:?}", result.tracks);
        } else {
            assert_eq!(result.tracks.len(), example.tracks.len(), "{task}");
        }
    }
    let png = std::fs::read(dir.join("example-sheet.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fill_of_one_track_keeps_every_other_track_and_the_melody_one_voice() {
    let dir = scratch_dir("fill");
    let input = example_file(&dir);
    let output = dir.join("fill.mid");
    bandmate_ok(&[
        "fill",
        input.to_str().unwrap(),
        "--bars",
        "3-4",
        "--track",
        "1",
        "--steps",
        "15",
        "--out",
        output.to_str().unwrap(),
    ]);
    let before = bandmate::midi::read_file(&input).unwrap();
    let after = bandmate::midi::read_file(&output).unwrap();
    assert_eq!(after.tracks.len(), before.tracks.len());
    let notes = |c: &bandmate::music::Clip, t: u16| -> Vec<(u32, u8, u32)> {
        let mut v: Vec<_> = c
            .track_notes(t)
            .map(|n| (n.start, n.pitch, n.length))
            .collect();
        v.sort();
        v
    };
    // Track 2 (the chords) comes back exactly; track 1 (the melody) is one voice in bars 3–4.
    assert_eq!(notes(&after, 1), notes(&before, 1));
    let melody: Vec<(u32, u8, u32)> = notes(&after, 0)
        .into_iter()
        .filter(|n| (32..64).contains(&n.0))
        .collect();
    assert!(!melody.is_empty());
    for pair in melody.windows(2) {
        assert!(
            pair[0].0 + pair[0].2 <= pair[1].0,
            "overlapping melody notes {pair:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
