//! Bandmate as a host sees it: the CLAP library loaded with clack-host, activated at 44.1, 48 and
//! 96 kHz with blocks of 1 to 4096 samples, driven by a simulated transport. Every note-on and
//! note-off must land on the exact sample an exact model of the host timeline puts it on, through
//! a tempo change, a loop and a stop. Also: state save/restore, corrupt state, 16 instances.
//!
//! The library is the debug build of `bandmate-plugin`, which the test builds first with
//! `cargo build -p bandmate-plugin --lib`: its `process()` aborts on any allocation (nice-plug's
//! `assert_process_allocs`). `BANDMATE_CLAP=path` tests another build instead, such as
//! `target/bundled/Bandmate.clap` after `cargo xtask bundle`.

use bandmate::music::{Clip, Note, Track, TrackRole};
use clack_host::events::UnknownEvent;
use clack_host::events::io::{OutputEventBuffer, TryPushError};
use clack_host::prelude::*;
use std::path::PathBuf;

#[path = "../support/clap_host.rs"]
mod clap_host;
#[path = "../support/host_timeline.rs"]
mod host_timeline;
#[path = "../support/plugin_library.rs"]
mod plugin_library;

use clap_host::{
    Host as TestHost, Played, Processing, Transport, load_state, save_state, state_with_clip,
    state_with_session_field,
};
use host_timeline::{HostSample, Scenario, SimulatedHost, first_difference, reference, sorted};

fn library_path() -> PathBuf {
    if let Some(path) = std::env::var_os("BANDMATE_CLAP") {
        return PathBuf::from(path);
    }
    plugin_library::debug_library()
}

fn load_entry() -> PluginEntry {
    clap_host::load_entry(&library_path())
}

fn new_instance(entry: &PluginEntry) -> PluginInstance<TestHost> {
    clap_host::new_instance(entry, "bandmate-tests")
}

/// The clip every timing test plays: 2 bars on two channels, with short and long notes, a note
/// cut at the clip end and a same-key retrigger.
fn test_clip(transpose: u8) -> Clip {
    let mut clip = Clip::new(2);
    clip.add_track(Track::new("Bass", TrackRole::Bass, 3));
    clip.notes = vec![
        Note::new(0, 60 + transpose, 16, 100, 0),
        Note::new(2, 64 + transpose, 1, 90, 0),
        Note::new(4, 67 + transpose, 8, 80, 0),
        Note::new(8, 60 + transpose, 2, 70, 0),
        Note::new(12, 72 + transpose, 3, 110, 0),
        Note::new(16, 36 + transpose, 12, 127, 1),
        Note::new(20, 64 + transpose, 2, 60, 0),
        Note::new(29, 71 + transpose, 10, 50, 0),
        Note::new(31, 43 + transpose, 1, 40, 1),
    ];
    clip
}

/// Process `scenario` in blocks of `block` samples; returns the exact host timeline and the
/// events the plugin sent.
fn drive(
    instance: &mut PluginInstance<TestHost>,
    scenario: Scenario,
    block: u32,
) -> (Vec<HostSample>, Vec<Played>) {
    let rate = scenario.rate as f64;
    let mut processing = Processing::start(instance, rate, 1, block);
    let mut output_events = EventBuffer::with_capacity(4096);
    let mut host = SimulatedHost::new(&scenario, block);
    let mut played = Vec::new();
    for b in host.by_ref() {
        let transport = Transport {
            playing: b.playing,
            beats: b.beats,
            seconds: b.start as f64 / rate,
            tempo: b.bpm as f64,
            tempo_inc: 0.0,
            loop_beats: scenario.loop_beats,
        };
        output_events.clear();
        processing.block(b.len, &transport.event(), &mut output_events);
        assert!(processing.silent(b.len), "silent output");
        let mut last_time = 0;
        for event in output_events.iter() {
            let time = event.header().time();
            assert!(time < b.len, "event at {time} in a block of {}", b.len);
            assert!(time >= last_time, "events are sorted");
            last_time = time;
        }
        clap_host::collect_notes(&output_events, b.start, &mut played);
    }
    processing.stop(instance);
    (host.timeline, played)
}

/// The first note-on of a run; whatever comes before it must be note-offs at sample 0 (of notes
/// the previous run left sounding when it deactivated).
fn first_note_on(played: &[Played]) -> Option<Played> {
    let first = played.iter().position(|e| e.1);
    let before = &played[..first.unwrap_or(played.len())];
    assert!(before.iter().all(|e| e.0 == 0 && !e.1), "{before:?}");
    first.map(|i| played[i])
}

/// A tempo change, a loop, a stop and a restart in 6 seconds at `rate`.
fn scenario(rate: u32) -> Scenario {
    Scenario {
        tempo_change: Some((1.3, 90)),
        loop_beats: Some((2, 7)),
        stop_at: Some(4.6),
        restart: Some((5.0, 3)),
        ..Scenario::steady(rate, 120, 6.0)
    }
}

/// The events of a new run of `instance` over the first `seconds` of [`scenario`] at 48 kHz.
fn play_from_start(instance: &mut PluginInstance<TestHost>, seconds: f64) -> Vec<Played> {
    let scenario = Scenario {
        seconds,
        ..scenario(48_000)
    };
    drive(instance, scenario, 512).1
}

#[test]
fn every_note_lands_on_its_exact_sample_at_every_rate_and_block_size() {
    let entry = load_entry();
    let clip = test_clip(0);
    for rate in [44_100, 48_000, 96_000] {
        let mut instance = new_instance(&entry);
        load_state(&mut instance, &state_with_clip(&clip)).expect("loading the clip");
        // Notes still sounding when a run deactivates end at the next run's first sample.
        let mut left_sounding: Vec<Played> = Vec::new();
        for block in [1, 5, 64, 480, 512, 1023, 4096] {
            let (timeline, played) = drive(&mut instance, scenario(rate), block);
            let mut expected = reference(&clip, rate, &timeline);
            expected.append(&mut left_sounding);
            let expected = sorted(expected);
            let got = sorted(played);
            let mut sounding = std::collections::BTreeSet::new();
            for &(_, on, channel, key, _) in &got {
                if on {
                    sounding.insert((channel, key));
                } else {
                    sounding.remove(&(channel, key));
                }
            }
            left_sounding = sounding
                .into_iter()
                .map(|(channel, key)| (0, false, channel, key, 0))
                .collect();
            assert!(expected.len() > 15, "{} events expected", expected.len());
            if let Some(difference) = first_difference(&got, &expected) {
                panic!("{rate} Hz, block {block}: {difference}");
            }
        }
    }
}

#[test]
fn state_round_trips_and_corrupt_state_loads_as_the_default_session() {
    let entry = load_entry();
    let clip = test_clip(2);
    let mut first = new_instance(&entry);
    load_state(&mut first, &state_with_clip(&clip)).unwrap();
    let saved = save_state(&mut first);
    let mut second = new_instance(&entry);
    load_state(&mut second, &saved).unwrap();
    assert_eq!(
        save_state(&mut second),
        saved,
        "save → load → save is stable"
    );
    let state: serde_json::Value = serde_json::from_slice(&saved[8..]).unwrap();
    let session: serde_json::Value =
        serde_json::from_str(state["fields"]["session"].as_str().unwrap()).unwrap();
    assert_eq!(session["version"], 1);
    assert_eq!(
        serde_json::from_value::<Clip>(session["clip"].clone()).unwrap(),
        clip
    );

    // The restored instance plays the clip: its first note at sample 0.
    let played = play_from_start(&mut second, 0.5);
    assert_eq!(first_note_on(&played), Some((0, true, 0, 62, 100)));

    // Unreadable bytes: the host is told the load failed; the instance keeps its clip.
    assert!(load_state(&mut second, b"\x00\x01garbage").is_err());
    let played = play_from_start(&mut second, 0.5);
    assert_eq!(first_note_on(&played), Some((0, true, 0, 62, 100)));

    // A damaged session inside valid state loads as the default (empty) session.
    for field in ["{\"version\":1,\"clip\":", "{\"version\":99}", "[]"] {
        load_state(&mut second, &state_with_session_field(field)).unwrap();
        let played = play_from_start(&mut second, 1.0);
        assert_eq!(first_note_on(&played), None, "{field}: {played:?}");
        load_state(&mut second, &saved).unwrap();
    }
}

#[test]
fn sixteen_instances_play_their_own_clips_side_by_side() {
    let entry = load_entry();
    let mut instances: Vec<_> = (0..16u8)
        .map(|i| {
            let mut instance = new_instance(&entry);
            load_state(&mut instance, &state_with_clip(&test_clip(i))).unwrap();
            instance
        })
        .collect();
    // Activated on the main thread as a host does, then each instance processes on its own
    // audio thread, all at the same time: every thread waits for all sixteen before its first
    // block.
    let rigs: Vec<_> = instances
        .iter_mut()
        .map(|instance| Rig::start(instance, 44_100.0, 256))
        .collect();
    let ready = std::sync::Barrier::new(16);
    let finished: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = rigs
            .into_iter()
            .map(|mut rig| {
                let ready = &ready;
                scope.spawn(move || {
                    ready.wait();
                    let mut events = Vec::new();
                    for _ in 0..60 {
                        events.extend(rig.block(256, 120.0, 0.0, true));
                    }
                    (rig, events)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    for (i, ((rig, events), instance)) in finished.into_iter().zip(&mut instances).enumerate() {
        rig.stop(instance);
        assert_eq!(events[0], (0, true, 0, 60 + i as u8), "instance {i}");
        let own = test_clip(i as u8);
        assert!(
            events
                .iter()
                .filter(|e| e.1)
                .all(|e| own.notes.iter().any(|n| n.pitch == e.3)),
            "instance {i} plays only its own clip"
        );
    }
}

/// An activated, processing instance driven block by block (for tests that act between blocks:
/// state loads, resets, deactivation).
struct Rig {
    processing: Processing,
    output_events: HostQueue,
    rate: f64,
    /// Host position at the next block's first sample.
    beat: f64,
}

impl Rig {
    fn start(instance: &mut PluginInstance<TestHost>, rate: f64, max_block: u32) -> Self {
        Self {
            processing: Processing::start(instance, rate, 1, max_block),
            output_events: HostQueue {
                events: EventBuffer::with_capacity(8192),
                room: u32::MAX,
                refused: 0,
            },
            rate,
            beat: 0.0,
        }
    }

    /// One block of `n` samples: the tempo starts at `bpm` and changes by `tempo_inc` BPM per
    /// sample (CLAP's in-block ramp); returns (timing, on, channel, key) of the events sent.
    fn block(
        &mut self,
        n: u32,
        bpm: f64,
        tempo_inc: f64,
        playing: bool,
    ) -> Vec<(u32, bool, u8, u8)> {
        let transport = Transport {
            playing,
            beats: self.beat,
            tempo: bpm,
            tempo_inc,
            ..Transport::default()
        };
        self.output_events.events.clear();
        self.processing
            .block(n, &transport.event(), &mut self.output_events);
        if playing {
            for k in 0..n {
                self.beat += (bpm + tempo_inc * k as f64) / 60.0 / self.rate;
            }
        }
        let mut played = Vec::new();
        clap_host::collect_notes(&self.output_events.events, 0, &mut played);
        played
            .into_iter()
            .map(|(time, on, channel, key, _)| {
                assert!(time < n.max(1) as u64, "event at {time} in a block of {n}");
                (time as u32, on, channel, key)
            })
            .collect()
    }

    fn stop(self, instance: &mut PluginInstance<TestHost>) {
        self.processing.stop(instance);
    }
}

/// The host's output event queue: it takes `room` events per block and refuses the rest (a
/// host whose queue is full).
struct HostQueue {
    events: EventBuffer,
    room: u32,
    refused: usize,
}

impl OutputEventBuffer for HostQueue {
    fn try_push(&mut self, event: &UnknownEvent) -> Result<(), TryPushError> {
        if self.events.len() >= self.room {
            self.refused += 1;
            return Err(TryPushError::new());
        }
        self.events.push(event);
        Ok(())
    }
}

/// A host's voices: a second note-on of a sounding key fails (that note would never end);
/// note-offs end keys.
#[derive(Default)]
struct Voices(std::collections::BTreeSet<(u8, u8)>);

impl Voices {
    fn hear(&mut self, events: &[(u32, bool, u8, u8)]) {
        for &(_, on, channel, key) in events {
            if on {
                assert!(
                    self.0.insert((channel, key)),
                    "a second note-on of channel {channel} key {key} while it sounds"
                );
            } else {
                self.0.remove(&(channel, key));
            }
        }
    }
}

#[test]
fn a_state_loaded_while_playing_is_heard_from_the_next_block() {
    let entry = load_entry();
    let mut instance = new_instance(&entry);
    load_state(&mut instance, &state_with_clip(&test_clip(0))).unwrap();
    let mut rig = Rig::start(&mut instance, 48_000.0, 512);
    let first = rig.block(512, 120.0, 0.0, true);
    assert!(first.contains(&(0, true, 0, 60)), "{first:?}");
    // The host loads another project's state while the plugin plays: before, the old clip kept
    // playing (no `activate` follows a load).
    load_state(&mut instance, &state_with_clip(&test_clip(5))).unwrap();
    let mut events = Vec::new();
    for _ in 0..200 {
        events.extend(rig.block(512, 120.0, 0.0, true));
    }
    assert_eq!(
        events.first(),
        Some(&(0, false, 0, 60)),
        "the old note ends at once"
    );
    assert!(events.iter().any(|&(_, on, _, key)| on && key == 65));
    assert!(
        !events.iter().any(|&(_, on, _, key)| on && key == 60),
        "nothing of the old clip plays"
    );
    rig.stop(&mut instance);
}

#[test]
fn reset_deactivation_and_stop_end_every_note_even_with_100_000_notes_and_tempo_ramps() {
    // 100,000 notes: 128 pitches × 4 channels on 196 steps, dense and overlapping.
    let clip = clap_host::dense_clip_100k();
    let entry = load_entry();
    let mut instance = new_instance(&entry);
    load_state(&mut instance, &state_with_clip(&clip)).unwrap();
    let mut voices = Voices::default();
    for round in 0..3 {
        let mut rig = Rig::start(&mut instance, 44_100.0, 4096);
        // A tempo ramp inside each block, blocks of changing size.
        let mut bpm = 90.0;
        for b in 0..60u32 {
            let n = [64, 4096, 333, 1][b as usize % 4];
            let inc = 0.01;
            voices.hear(&rig.block(n, bpm, inc, true));
            bpm += inc * n as f64;
        }
        assert!(!voices.0.is_empty(), "notes sound mid-clip");
        match round {
            // The host resets mid-note: the offs come with the next block.
            0 => rig.processing.processor.reset(),
            // Deactivated mid-note, then activated again: the offs come with the first block.
            1 => {
                rig.stop(&mut instance);
                rig = Rig::start(&mut instance, 44_100.0, 4096);
            }
            // A plain stop.
            _ => {}
        }
        voices.hear(&rig.block(64, bpm, 0.0, round != 2));
        if round == 2 {
            assert!(
                voices.0.is_empty(),
                "{} notes never ended after the stop",
                voices.0.len()
            );
        } else {
            // Notes that start in this very block may sound; none of those before.
            let stopped = rig.block(64, bpm, 0.0, false);
            voices.hear(&stopped);
            assert!(voices.0.is_empty(), "{} notes never ended", voices.0.len());
        }
        rig.stop(&mut instance);
    }
}

#[test]
fn hostile_and_damaged_states_load_repaired_or_as_defaults_and_play_without_stuck_notes() {
    let entry = load_entry();
    let mut instance = new_instance(&entry);
    let saved: serde_json::Value = serde_json::json!({
        "version": 1,
        "clip": test_clip(0),
        "mask": { "steps": 32, "cells": vec![false; 32 * 128], "track": null },
    });
    // Values that once crashed the host or the editor, then random mutations of a real state.
    let mut cases: Vec<serde_json::Value> = Vec::new();
    for (path, value) in [
        ("/clip/time_signature/denominator", serde_json::json!(0)),
        ("/clip/time_signature/numerator", serde_json::json!(0)),
        ("/clip/tempo", serde_json::json!(0.0)),
        ("/clip/tempo", serde_json::json!(-120.0)),
        ("/clip/bars", serde_json::json!(0)),
        ("/clip/bars", serde_json::json!(4_000_000_000u32)),
        ("/clip/notes/0/length", serde_json::json!(4_294_967_295u32)),
        ("/clip/notes/0/start", serde_json::json!(4_294_967_295u32)),
        ("/clip/notes/0/pitch", serde_json::json!(200)),
        ("/clip/notes/0/velocity", serde_json::json!(0)),
        ("/clip/notes/0/track", serde_json::json!(9)),
        ("/clip/tracks", serde_json::json!([])),
        ("/mask/cells", serde_json::json!([true])),
        ("/mask/steps", serde_json::json!(4_294_967_295u32)),
    ] {
        let mut case = saved.clone();
        *case.pointer_mut(path).unwrap() = value;
        cases.push(case);
    }
    // Deterministic mutations: each sets one number of the state to a hostile value.
    let hostile = [0.0, -1.0, 1e300, 255.0, 65_535.0, 4_294_967_295.0];
    let mut numbers = Vec::new();
    fn walk(v: &serde_json::Value, path: String, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Number(_) => out.push(path),
            serde_json::Value::Array(a) if a.len() < 64 => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, format!("{path}/{i}"), out);
                }
            }
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    walk(x, format!("{path}/{k}"), out);
                }
            }
            _ => {}
        }
    }
    walk(&saved, String::new(), &mut numbers);
    for path in &numbers {
        for value in hostile {
            let mut case = saved.clone();
            *case.pointer_mut(path).unwrap() = serde_json::json!(value);
            cases.push(case);
        }
    }
    assert!(cases.len() > 300, "{} cases", cases.len());
    for (i, case) in cases.iter().enumerate() {
        load_state(&mut instance, &state_with_session_field(&case.to_string()))
            .unwrap_or_else(|e| panic!("case {i}: {e}"));
        // Save → load gives the same state: what loads, reopens.
        let again = save_state(&mut instance);
        load_state(&mut instance, &again).unwrap();
        assert_eq!(save_state(&mut instance), again, "case {i}: {case}");
        let mut rig = Rig::start(&mut instance, 48_000.0, 1024);
        let mut voices = Voices::default();
        for _ in 0..8 {
            voices.hear(&rig.block(1024, 500.0, 0.0, true));
        }
        voices.hear(&rig.block(1024, 500.0, 0.0, false));
        assert!(voices.0.is_empty(), "case {i}: stuck notes");
        rig.stop(&mut instance);
    }
}

#[test]
fn a_full_host_queue_loses_no_note_off() {
    // Chords of eight notes on every 16th: far more events per block than the queue takes.
    let mut clip = Clip::new(2);
    for step in 0..32 {
        for voice in 0..8u8 {
            clip.notes.push(Note::new(
                step,
                48 + voice * 3 + (step % 4) as u8,
                1 + step % 3,
                100,
                0,
            ));
        }
    }
    let entry = load_entry();
    let mut instance = new_instance(&entry);
    load_state(&mut instance, &state_with_clip(&clip)).unwrap();
    let mut rig = Rig::start(&mut instance, 48_000.0, 512);
    let mut voices = Voices::default();
    let mut sent = 0;
    // The host takes 0 to 4 events per block while it plays, then while it stops.
    for b in 0..400u32 {
        rig.output_events.room = b % 5;
        let events = rig.block(512, 240.0, 0.0, b < 300);
        sent += events.len();
        voices.hear(&events);
    }
    assert!(
        rig.output_events.refused > 1000,
        "{} refused",
        rig.output_events.refused
    );
    assert!(sent > 200, "{sent} events taken");
    println!(
        "a full host queue: {} events refused, {sent} taken",
        rig.output_events.refused
    );
    // The queue frees: every note that went out ends, none is lost.
    rig.output_events.room = u32::MAX;
    for _ in 0..4 {
        voices.hear(&rig.block(512, 240.0, 0.0, false));
    }
    assert!(
        voices.0.is_empty(),
        "{} notes never ended: {:?}",
        voices.0.len(),
        voices.0
    );
    rig.stop(&mut instance);
}

#[test]
fn ten_thousand_random_mutations_of_a_real_state_load_while_playing_without_stuck_notes() {
    use rand::{Rng, SeedableRng};
    let entry = load_entry();
    let mut instance = new_instance(&entry);
    // A real state, as the plugin saves it: a clip, a mask, a loop, band settings.
    let session = serde_json::json!({
        "version": 1,
        "clip": test_clip(0),
        "mask": { "steps": 32, "cells": vec![false; 32 * 128], "track": null },
        "loop_bars": [0, 2],
    });
    load_state(
        &mut instance,
        &state_with_session_field(&session.to_string()),
    )
    .unwrap();
    let real = save_state(&mut instance);
    let outer: serde_json::Value = serde_json::from_slice(&real[8..]).unwrap();
    let inner: serde_json::Value =
        serde_json::from_str(outer["fields"]["session"].as_str().unwrap()).unwrap();
    assert_eq!(inner["loop_bars"], serde_json::json!([0, 2]), "{inner}");
    // Every leaf of the session, for field changes.
    fn leaves(v: &serde_json::Value, path: String, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Array(a) => {
                // Long arrays (the mask's cells): a few of their elements.
                for i in (0..a.len()).step_by(a.len().div_ceil(16).max(1)) {
                    leaves(&a[i], format!("{path}/{i}"), out);
                }
                out.push(path);
            }
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    leaves(x, format!("{path}/{k}"), out);
                }
                out.push(path);
            }
            _ => out.push(path),
        }
    }
    let mut paths = Vec::new();
    leaves(&inner, String::new(), &mut paths);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(36);
    let hostile = |rng: &mut rand_chacha::ChaCha8Rng| -> serde_json::Value {
        match rng.random_range(0..10) {
            0 => serde_json::json!(rng.random::<u32>()),
            1 => serde_json::json!(-rng.random_range(0..1_000_000i64)),
            2 => serde_json::json!(rng.random::<f64>() * 1e12),
            3 => serde_json::json!(rng.random_range(0..300)),
            4 => serde_json::json!(u64::MAX),
            5 => serde_json::json!("x"),
            6 => serde_json::Value::Null,
            7 => serde_json::json!([]),
            8 => serde_json::json!({}),
            _ => serde_json::json!(true),
        }
    };
    let with_session = |session: &serde_json::Value| state_with_session_field(&session.to_string());
    let mut rig = Rig::start(&mut instance, 48_000.0, 512);
    let mut voices = Voices::default();
    let (mut loaded, mut refused, mut note_ons) = (0, 0, 0);
    let cases = 10_000;
    for case in 0..cases {
        let bytes = match case % 5 {
            // Byte flips anywhere in the state (its length header too).
            0 => {
                let mut b = real.clone();
                for _ in 0..rng.random_range(1..5) {
                    let i = rng.random_range(0..b.len());
                    b[i] ^= 1 << rng.random_range(0..8);
                }
                b
            }
            // Truncated.
            1 => real[..rng.random_range(0..real.len())].to_vec(),
            // The session's text with a byte changed (still a valid outer state).
            2 => {
                let mut text = outer["fields"]["session"]
                    .as_str()
                    .unwrap()
                    .as_bytes()
                    .to_vec();
                let i = rng.random_range(0..text.len());
                text[i] = b" 0123456789-.e,:{}[]\"\\x"[rng.random_range(0..22)];
                state_with_session_field(&String::from_utf8_lossy(&text))
            }
            // One to three fields of the session set to hostile values.
            3 => {
                let mut v = inner.clone();
                for _ in 0..rng.random_range(1..4) {
                    let path = &paths[rng.random_range(0..paths.len())];
                    let value = hostile(&mut rng);
                    if let Some(slot) = v.pointer_mut(path) {
                        *slot = value;
                    }
                }
                with_session(&v)
            }
            // A field removed, or notes duplicated and shifted.
            _ => {
                let mut v = inner.clone();
                let path = &paths[rng.random_range(0..paths.len())];
                if let Some((parent, key)) = path.rsplit_once('/')
                    && let Some(serde_json::Value::Object(o)) = v.pointer_mut(parent)
                {
                    o.remove(key);
                } else if let Some(serde_json::Value::Array(notes)) = v.pointer_mut("/clip/notes") {
                    let copies: Vec<_> = notes.clone();
                    for mut n in copies {
                        n["start"] = serde_json::json!(rng.random_range(0..40));
                        notes.push(n);
                    }
                }
                with_session(&v)
            }
        };
        // Loaded while the plugin plays (no activate after it).
        match load_state(&mut instance, &bytes) {
            Ok(()) => loaded += 1,
            Err(_) => refused += 1,
        }
        for _ in 0..3 {
            let events = rig.block(512, 960.0, 0.0, true);
            note_ons += events.iter().filter(|e| e.1).count();
            voices.hear(&events);
        }
        if case % 8 == 7 {
            voices.hear(&rig.block(512, 960.0, 0.0, false));
            assert!(
                voices.0.is_empty(),
                "case {case}: stuck notes {:?}",
                voices.0
            );
        }
    }
    println!("{cases} mutated states: {loaded} loaded, {refused} refused, {note_ons} note-ons");
    assert_eq!(loaded + refused, cases);
    assert!(loaded > cases / 2, "{loaded} loaded");
    assert!(
        note_ons > 1000,
        "the plugin kept playing: {note_ons} note-ons"
    );
    // The real state still loads and plays after all that.
    load_state(&mut instance, &real).unwrap();
    let mut heard = Vec::new();
    for _ in 0..200 {
        heard.extend(rig.block(512, 120.0, 0.0, true));
    }
    assert!(heard.iter().any(|e| e.1), "plays after the mutations");
    rig.stop(&mut instance);
}
