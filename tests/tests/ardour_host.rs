//! Bandmate in a real DAW: Ardour 7, driven headless by its Lua session tool (`ardour7-lua`,
//! Dummy backend, 48 kHz, 120 BPM). A new session gets a MIDI track with the Bandmate VST3 and a
//! second MIDI track that records the plugin's MIDI output; the project is saved, the example
//! clip is put into the plugin's saved state (as when a producer reopens a project), the session
//! is reopened and records 8 bars while the transport plays. The recorded .mid must hold the
//! clip's 8 bars: every note-on and note-off of the clip, within 1 ms of where 120 BPM puts it.
//!
//! `cargo xtask host-test ardour` installs Ardour (Debian `ardour`) and runs this test with
//! `BANDMATE_ARDOUR_REQUIRED=1`; without Ardour on the machine the test says so and passes.
//! The plugin is the debug library (its `process()` aborts on any allocation), or the bundle
//! `BANDMATE_VST3=path/to/Bandmate.vst3` names.

use bandmate::music::{Clip, example_clip};
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../support/clap_host.rs"]
mod clap_host;
#[path = "../support/plugin_library.rs"]
mod plugin_library;

const LUA_SCRIPT: &str = include_str!("../support/ardour_session.lua");
const SESSION: &str = "bandmate";
const RATE: f64 = 48_000.0;
const TEMPO: f64 = 120.0;
const BARS: u32 = 8;
/// Allowed distance between a recorded event and the clip's, in seconds.
const TOLERANCE_S: f64 = 0.001;

/// Ardour's Lua session tool and the folder of its libraries and helpers.
struct Ardour {
    lua: PathBuf,
    libraries: PathBuf,
}

impl Ardour {
    /// The newest `ardourN-lua` on the PATH (7 or 8), with `/usr/lib/ardourN`.
    fn find() -> Option<Self> {
        let path = std::env::var_os("PATH")?;
        for version in [8, 7] {
            for dir in std::env::split_paths(&path) {
                let lua = dir.join(format!("ardour{version}-lua"));
                let libraries = PathBuf::from(format!("/usr/lib/ardour{version}"));
                if lua.is_file() && libraries.is_dir() {
                    return Some(Self { lua, libraries });
                }
            }
        }
        None
    }

    /// Run the Lua script's `step` in `home` (Ardour's config and plugin cache) and return its
    /// `bandmate:` lines; a line that reports an error fails the test.
    fn run_step(&self, step: &str, home: &Path, vst3_dir: &Path, session_dir: &Path) -> String {
        let script = home.join("bandmate_session.lua");
        std::fs::write(&script, LUA_SCRIPT).unwrap();
        let seconds = f64::from(BARS) * 4.0 * 60.0 / TEMPO + 1.0;
        let output = Command::new(&self.lua)
            .arg(&script)
            .env("HOME", home)
            .env("VST3_PATH", vst3_dir)
            .env("BANDMATE_ARDOUR_DIR", session_dir)
            .env("BANDMATE_ARDOUR_NAME", SESSION)
            .env("BANDMATE_ARDOUR_STEP", step)
            .env("BANDMATE_ARDOUR_SECONDS", seconds.to_string())
            .output()
            .expect("running ardour's Lua session tool");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let ours: String = stdout
            .lines()
            .filter(|l| l.starts_with("bandmate:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            !ours.contains("bandmate: error")
                && ours.contains(if step == "create" {
                    "bandmate: created"
                } else {
                    "bandmate: saved"
                }),
            "ardour step {step} failed (exit {:?}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        ours
    }

    /// Index the bundles in `vst3_dir` into the plugin cache under `home`, as Ardour's plugin
    /// manager does before it lists a new plugin.
    fn scan(&self, home: &Path, bundle: &Path) {
        let status = Command::new(self.libraries.join("ardour-vst3-scanner"))
            .arg("-q")
            .arg(bundle)
            .env("HOME", home)
            .env("LD_LIBRARY_PATH", &self.libraries)
            .status()
            .expect("running ardour-vst3-scanner");
        assert!(status.success(), "ardour-vst3-scanner failed on {bundle:?}");
    }
}

/// A VST3 bundle of the plugin in `dir`: the one `BANDMATE_VST3` names, or the debug library in
/// a bundle of its own.
fn vst3_bundle(dir: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("BANDMATE_VST3") {
        return PathBuf::from(path);
    }
    let bundle = dir.join("Bandmate.vst3");
    let binary_dir = bundle.join("Contents").join("x86_64-linux");
    std::fs::create_dir_all(&binary_dir).unwrap();
    let binary = binary_dir.join("Bandmate.so");
    std::fs::copy(plugin_library::debug_library(), &binary).unwrap();
    // Ardour loads a plugin from its cache only when the cache is newer than the module, and
    // its scanner stamps the cache in whole seconds: a module copied within the same second
    // would look updated since its scan (and is then not listed).
    let a_minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&binary)
        .and_then(|f| f.set_modified(a_minute_ago))
        .unwrap();
    bundle
}

/// Ardour keeps a VST3 plugin's state as a `.vstpreset` image in the session file's `<chunk>`
/// (base64): the header ("VST3", version, the class ID, the offset of the chunk list), the
/// component state (nice-plug's JSON), and the list of its chunks ("Comp", "Cont"). Replace the
/// component state with `state`.
fn with_component_state(chunk_base64: &str, state: &[u8]) -> String {
    let old = base64::decode(chunk_base64.trim()).expect("the chunk is base64");
    assert!(
        old.len() >= 48 && &old[..4] == b"VST3",
        "not a VST3 preset chunk"
    );
    let class_id = &old[8..40];
    let start = 48u64;
    let list = start + state.len() as u64;
    let mut image = Vec::new();
    image.extend_from_slice(b"VST3");
    image.extend_from_slice(&1u32.to_le_bytes());
    image.extend_from_slice(class_id);
    image.extend_from_slice(&list.to_le_bytes());
    image.extend_from_slice(state);
    image.extend_from_slice(b"List");
    image.extend_from_slice(&2u32.to_le_bytes());
    for (id, offset, size) in [(b"Comp", start, state.len() as u64), (b"Cont", list, 0)] {
        image.extend_from_slice(id);
        image.extend_from_slice(&offset.to_le_bytes());
        image.extend_from_slice(&size.to_le_bytes());
    }
    base64::encode(&image)
}

/// Put `clip` into the saved state of the session's (only) Bandmate instance.
fn put_clip_into_session(session_file: &Path, clip: &Clip) {
    let xml = std::fs::read_to_string(session_file).unwrap();
    let open = xml
        .find("<chunk>")
        .expect("the session holds Bandmate's state")
        + "<chunk>".len();
    let close = open + xml[open..].find("</chunk>").unwrap();
    let chunk = with_component_state(&xml[open..close], &clap_host::state_json_with_clip(clip));
    std::fs::write(
        session_file,
        format!("{}{}{}", &xml[..open], chunk, &xml[close..]),
    )
    .unwrap();
}

/// One note event in seconds from the start of the recording: (time, on, key).
type Event = (f64, bool, u8);

/// The note events of the first `BARS` bars of `clip` played at `TEMPO`.
fn expected_events(clip: &Clip) -> Vec<Event> {
    let step_s = 60.0 / TEMPO / 4.0;
    let end_step = BARS * 16;
    let mut events = Vec::new();
    for note in clip.notes.iter().filter(|n| n.start < end_step) {
        events.push((f64::from(note.start) * step_s, true, note.pitch));
        let end = (note.start + note.length).min(end_step);
        events.push((f64::from(end) * step_s, false, note.pitch));
    }
    events.sort_by(|a, b| a.partial_cmp(b).unwrap());
    events
}

/// The note events of a recorded standard MIDI file, in seconds (its tempo map; 120 BPM if it
/// has none).
fn recorded_events(bytes: &[u8]) -> Vec<Event> {
    let smf = midly::Smf::parse(bytes).expect("Ardour wrote a readable .mid");
    let midly::Timing::Metrical(ticks_per_beat) = smf.header.timing else {
        panic!("a timecode-based .mid")
    };
    let ticks_per_beat = f64::from(ticks_per_beat.as_int());
    let mut events = Vec::new();
    for track in &smf.tracks {
        let (mut tick, mut seconds, mut beat_s) = (0u64, 0.0f64, 60.0 / TEMPO);
        for event in track {
            let delta = u64::from(event.delta.as_int());
            tick += delta;
            seconds += delta as f64 / ticks_per_beat * beat_s;
            match event.kind {
                midly::TrackEventKind::Meta(midly::MetaMessage::Tempo(us)) => {
                    beat_s = f64::from(us.as_int()) / 1e6;
                }
                midly::TrackEventKind::Midi { message, .. } => match message {
                    midly::MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                        events.push((seconds, true, key.as_int()))
                    }
                    midly::MidiMessage::NoteOn { key, .. }
                    | midly::MidiMessage::NoteOff { key, .. } => {
                        events.push((seconds, false, key.as_int()))
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        let _ = tick;
    }
    events.sort_by(|a, b| a.partial_cmp(b).unwrap());
    events
}

#[test]
fn ardour_records_the_clip_from_the_vst3_in_time() {
    let Some(ardour) = Ardour::find() else {
        assert!(
            std::env::var_os("BANDMATE_ARDOUR_REQUIRED").is_none(),
            "BANDMATE_ARDOUR_REQUIRED is set but no ardour7-lua or ardour8-lua is on the PATH"
        );
        eprintln!(
            "skipped: Ardour's Lua session tool (ardour7-lua) is not installed; `cargo xtask host-test ardour` installs it and runs this test"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("bandmate-ardour-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let home = dir.join("home");
    let vst3_dir = dir.join("vst3");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&vst3_dir).unwrap();
    let bundle = vst3_bundle(&vst3_dir);
    let vst3_dir = bundle.parent().unwrap().to_path_buf();
    ardour.scan(&home, &bundle);

    let session_dir = dir.join(SESSION);
    let created = ardour.run_step("create", &home, &vst3_dir, &session_dir);
    eprintln!("{created}");
    let clip = example_clip();
    put_clip_into_session(&session_dir.join(format!("{SESSION}.ardour")), &clip);
    let recorded = ardour.run_step("record", &home, &vst3_dir, &session_dir);
    eprintln!("{recorded}");

    let midi_dir = session_dir
        .join("interchange")
        .join(SESSION)
        .join("midifiles");
    let files: Vec<PathBuf> = std::fs::read_dir(&midi_dir)
        .unwrap_or_else(|e| panic!("{midi_dir:?}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mid"))
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one recording expected in {midi_dir:?}: {files:?}"
    );
    let got = recorded_events(&std::fs::read(&files[0]).unwrap());
    let want = expected_events(&clip);

    let mut worst = 0.0f64;
    let mut unmatched = Vec::new();
    let mut used = vec![false; got.len()];
    for &(time, on, key) in &want {
        let found = got.iter().enumerate().position(|(i, &(t, o, k))| {
            !used[i] && o == on && k == key && (t - time).abs() <= TOLERANCE_S
        });
        match found {
            Some(i) => {
                used[i] = true;
                worst = worst.max((got[i].0 - time).abs());
            }
            None => unmatched.push((time, on, key)),
        }
    }
    let extra: Vec<Event> = got
        .iter()
        .zip(&used)
        .filter(|&(&(t, _, _), used)| {
            !used && t < f64::from(BARS) * 4.0 * 60.0 / TEMPO - TOLERANCE_S
        })
        .map(|(e, _)| *e)
        .collect();
    eprintln!(
        "ardour: {} of {} clip events recorded within {:.3} ms (worst {:.3} ms at {RATE} Hz), {} extra before bar {}",
        want.len() - unmatched.len(),
        want.len(),
        TOLERANCE_S * 1e3,
        worst * 1e3,
        extra.len(),
        BARS + 1
    );
    assert!(
        unmatched.is_empty(),
        "clip events missing from Ardour's recording (first 10): {:?}\nrecorded (first 20): {:?}",
        &unmatched[..unmatched.len().min(10)],
        &got[..got.len().min(20)]
    );
    assert!(extra.is_empty(), "events the clip does not have: {extra:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
