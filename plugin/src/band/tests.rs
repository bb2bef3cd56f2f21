//! The band player with a synthetic musician: a block loop at 48 kHz drives capture, the band
//! session (with a delay standing in for the model's latency) and the band voice, and the test
//! checks on which samples the answers sound.

use super::*;
use crate::capture::{BlockClock, Capture, capture_feed};

const RATE: f64 = 48_000.0;
const TEMPO: f64 = 120.0;
const BLOCK: u32 = 480; // 10 ms

/// Answers with the bar it was given, an octave up, and counts its calls.
struct EchoOctaveUp {
    calls: Arc<AtomicU64>,
    /// Panic on this call (1-based; 0: never), as a broken model would.
    panic_on_call: Arc<AtomicU64>,
    /// The role of the musician's track in each bar heard.
    heard_as: Arc<Mutex<Vec<TrackRole>>>,
}

impl BarPredictor for EchoOctaveUp {
    fn next_bar(&mut self, played: &Clip) -> Result<Clip, String> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if self.panic_on_call.load(Ordering::Relaxed) == call {
            panic!("model exploded");
        }
        self.heard_as
            .lock()
            .unwrap()
            .extend(played.tracks.iter().map(|t| t.role));
        let mut answer = played.clone();
        for n in &mut answer.notes {
            n.pitch += 12;
        }
        Ok(answer)
    }

    fn reset(&mut self) {}

    fn set_roles(&mut self, roles: &[TrackRole]) -> Result<(), String> {
        match roles {
            [TrackRole::Drums, ..] => Err("no drums".into()),
            _ => Ok(()),
        }
    }
}

struct Rig {
    capture: Capture,
    events: Consumer<CaptureEvent>,
    session: BandSession,
    voice: BandVoice,
    stats: Arc<BandStats>,
    controls: Arc<BandControls>,
    calls: Arc<AtomicU64>,
    panic_on_call: Arc<AtomicU64>,
    heard_as: Arc<Mutex<Vec<TrackRole>>>,
    /// Events held back to simulate the model's latency: (block at which to deliver, event).
    delayed: Vec<(usize, CaptureEvent)>,
    recorded: Vec<(f64, f64, u8, u8)>,
}

impl Rig {
    fn new() -> Self {
        let (capture, events) = capture_feed();
        let (to_audio, from_band) = answer_feed();
        let stats = Arc::new(BandStats::default());
        let controls = Arc::new(BandControls::default());
        controls.answer.store(true, Ordering::Relaxed);
        let calls = Arc::new(AtomicU64::new(0));
        let predictor_calls = calls.clone();
        let heard_as = Arc::new(Mutex::new(Vec::new()));
        let predictor_heard_as = heard_as.clone();
        let panic_on_call = Arc::new(AtomicU64::new(0));
        let predictor_panic_on_call = panic_on_call.clone();
        let factory: PredictorFactory = Box::new(move || {
            Ok(Box::new(EchoOctaveUp {
                calls: predictor_calls.clone(),
                panic_on_call: predictor_panic_on_call.clone(),
                heard_as: predictor_heard_as.clone(),
            }) as Box<dyn BarPredictor>)
        });
        Self {
            capture,
            events,
            session: BandSession::new(factory, controls.clone(), stats.clone(), to_audio),
            voice: BandVoice::new(from_band, stats.clone()),
            stats,
            controls,
            calls,
            panic_on_call,
            heard_as,
            delayed: Vec::new(),
            recorded: Vec::new(),
        }
    }

    /// Run block `index` at host beat `beat`; `played` are (sample, pitch, velocity) of the
    /// musician in this block; bar cues reach the band session `latency_blocks` later. Returns
    /// the band voice's events.
    fn block(
        &mut self,
        index: usize,
        beat: Option<f64>,
        played: &[(u32, u8, u8)],
        latency_blocks: usize,
    ) -> Vec<NoteMessage> {
        let clock = beat.map(|beat| BlockClock {
            beat,
            beats_per_sample: TEMPO / 60.0 / RATE,
            samples: BLOCK,
            beats_per_bar: 4.0,
        });
        self.capture
            .set_lookahead_steps(self.controls.lookahead_steps.load(Ordering::Relaxed));
        self.capture.begin_block(clock.as_ref());
        if let Some(c) = &clock {
            for &(sample, pitch, velocity) in played {
                self.capture.note(c, sample, pitch, velocity, 0);
            }
        }
        self.capture.end_block(clock.as_ref());
        while let Ok(event) = self.events.pop() {
            let delay = if matches!(event, CaptureEvent::BarCue { .. }) {
                latency_blocks
            } else {
                0
            };
            self.delayed.push((index + delay, event));
        }
        let due: Vec<_> = self
            .delayed
            .iter()
            .filter(|(at, _)| *at <= index)
            .copied()
            .collect();
        self.delayed.retain(|(at, _)| *at > index);
        for (_, event) in due {
            self.session.handle_guarded(event, &mut self.recorded);
        }
        self.voice.process_block(clock.as_ref()).to_vec()
    }
}

const SAMPLES_PER_BEAT: u32 = 24_000;

/// The musician plays a quarter note on every beat of bars 0–3 (pitches 60, 62, 64, 65 in each
/// bar, an eighth long); returns (absolute sample, message) of the band's output.
fn jam(rig: &mut Rig, latency_blocks: usize, blocks: usize) -> Vec<(u64, NoteMessage)> {
    jam_blocks(rig, latency_blocks, 0..blocks)
}

/// [`jam`] for blocks `from..to` (the transport continues), with a 1-block model.
fn jam_from(rig: &mut Rig, from: usize, to: usize) -> Vec<(u64, NoteMessage)> {
    jam_blocks(rig, 1, from..to)
}

fn jam_blocks(
    rig: &mut Rig,
    latency_blocks: usize,
    blocks: std::ops::Range<usize>,
) -> Vec<(u64, NoteMessage)> {
    let mut out = Vec::new();
    for index in blocks {
        let first = index as u64 * BLOCK as u64;
        let beat = first as f64 / SAMPLES_PER_BEAT as f64;
        let mut played = Vec::new();
        for beat_index in 0..16u64 {
            let on = beat_index * SAMPLES_PER_BEAT as u64;
            let off = on + SAMPLES_PER_BEAT as u64 / 2;
            let pitch = [60, 62, 64, 65][beat_index as usize % 4];
            for (at, velocity) in [(on, 100), (off, 0)] {
                if (first..first + BLOCK as u64).contains(&at) {
                    played.push(((at - first) as u32, pitch, velocity));
                }
            }
        }
        for m in rig.block(index, Some(beat), &played, latency_blocks) {
            out.push((first + m.timing as u64, m));
        }
    }
    out
}

/// (sample, pitch) of the note-ons in `out`.
fn note_ons(out: &[(u64, NoteMessage)]) -> Vec<(u64, u8)> {
    out.iter()
        .filter(|(_, m)| m.on)
        .map(|(s, m)| (*s, m.pitch))
        .collect()
}

/// The echo of the musician's first `beats` beats of bars 0–3, an octave up, one bar later.
fn echoed_beats(beats: u64) -> Vec<(u64, u8)> {
    let mut expected = Vec::new();
    for bar in 1..5u64 {
        for beat in 0..beats {
            let sample = (bar * 4 + beat) * SAMPLES_PER_BEAT as u64;
            expected.push((sample, [72, 74, 76, 77][beat as usize]));
        }
    }
    expected
}

#[test]
fn the_band_player_restarts_after_its_model_panics() {
    let mut rig = Rig::new();
    // The model panics on its second bar (bar 1's answer, due in bar 2). Before, the band
    // player stayed silent for the rest of the session.
    rig.panic_on_call.store(2, Ordering::Relaxed);
    // Bar 2 starts at block 400; bar 1's cue (its last 16th) is answered by then.
    let mut out = jam_blocks(&mut rig, 3, 0..420);
    // The panic reaches the editor as a message (until the next bar is answered).
    let error = rig.stats.last_error().unwrap_or_default();
    assert!(
        error.contains("panicked") && error.contains("model exploded"),
        "{error:?}"
    );
    out.extend(jam_blocks(&mut rig, 3, 420..1_000));
    let in_bar_2 = |s: u64| (8..12).contains(&(s / SAMPLES_PER_BEAT as u64));
    let expected: Vec<_> = echoed_beats(4)
        .into_iter()
        .filter(|&(s, _)| !in_bar_2(s))
        .collect();
    assert_eq!(note_ons(&out), expected);
    assert!(rig.stats.last_error().is_none(), "later bars answered");
}

#[test]
fn answers_start_exactly_on_the_next_downbeat() {
    let mut rig = Rig::new();
    // 5 bars = 20 beats = 480,000 samples = 1,000 blocks; the model takes 3 blocks (30 ms).
    let out = jam(&mut rig, 3, 1_000);
    // Bars 0–3 are answered in bars 1–4: an octave up, on the same beats one bar later.
    // The musician played nothing in bar 4, so its answer (bar 5) is empty.
    let expected = echoed_beats(4);
    assert_eq!(note_ons(&out), expected);
    // Each note ends an eighth later, also sample-exact.
    let offs: Vec<u64> = out.iter().filter(|(_, m)| !m.on).map(|(s, _)| *s).collect();
    let expected_offs: Vec<u64> = expected
        .iter()
        .map(|(s, _)| s + SAMPLES_PER_BEAT as u64 / 2)
        .collect();
    assert_eq!(offs, expected_offs);
    assert_eq!(rig.stats.missed.load(Ordering::Relaxed), 0);
    assert_eq!(rig.calls.load(Ordering::Relaxed), 5);
    assert!(rig.stats.last_error().is_none());
}

#[test]
fn a_late_answer_is_skipped_and_counted_never_played_out_of_time() {
    let mut rig = Rig::new();
    // The cue comes a 16th (125 ms = 12.5 blocks) before the downbeat; 20 blocks is too late.
    let out = jam(&mut rig, 20, 1_000);
    assert!(out.is_empty(), "late answers were played: {out:?}");
    // The cue of bar 4 comes 20 blocks before the end of the run: four answers arrived, late.
    assert_eq!(rig.stats.missed.load(Ordering::Relaxed), 4);
    assert_eq!(rig.stats.answered.load(Ordering::Relaxed), 0);
}

#[test]
fn a_longer_lookahead_gives_a_slow_model_time_but_misses_the_notes_after_the_cue() {
    let mut rig = Rig::new();
    // Half a bar of lookahead: the cue comes at beat 2 of each bar, 2 beats (100 blocks) before
    // the downbeat, so a model taking 20 blocks is on time (it was late with 1/16).
    rig.controls.lookahead_steps.store(8, Ordering::Relaxed);
    let out = jam(&mut rig, 20, 1_000);
    assert_eq!(rig.stats.missed.load(Ordering::Relaxed), 0);
    assert_eq!(rig.stats.answered.load(Ordering::Relaxed), 5);
    // Beats 0–2 of each bar were heard (beat 2 arrives with its cue); beat 3 came too late.
    assert_eq!(note_ons(&out), echoed_beats(3));
}

#[test]
fn the_model_plays_the_chosen_roles_and_hears_the_musician_as_the_other_part() {
    let mut rig = Rig::new();
    jam(&mut rig, 1, 200); // the cue of bar 0 is in block 187
    rig.controls
        .plays
        .store(role_bit(TrackRole::Melody), Ordering::Relaxed);
    jam_from(&mut rig, 200, 400); // the cue of bar 1
    assert_eq!(
        *rig.heard_as.lock().unwrap(),
        vec![TrackRole::Melody, TrackRole::Accompaniment]
    );
    // A role the model does not have: an error for the GUI and no answer.
    rig.controls
        .plays
        .store(role_bit(TrackRole::Drums), Ordering::Relaxed);
    jam_from(&mut rig, 400, 600);
    assert_eq!(rig.calls.load(Ordering::Relaxed), 2);
    assert!(rig.stats.last_error().unwrap().contains("no drums"));
    // Nothing chosen: the band is silent.
    rig.controls.plays.store(0, Ordering::Relaxed);
    jam_from(&mut rig, 600, 800);
    assert_eq!(rig.calls.load(Ordering::Relaxed), 2);
}

#[test]
fn stop_silences_the_band_and_recording_quantizes_what_was_played() {
    let mut rig = Rig::new();
    rig.controls.record.store(true, Ordering::Relaxed);
    // Play into bar 1 (the answer to bar 0 is sounding at sample 96,000 + ...), then stop.
    let out = jam(&mut rig, 1, 210);
    let sounding_before_stop =
        out.iter().filter(|(_, m)| m.on).count() - out.iter().filter(|(_, m)| !m.on).count();
    let stopped = rig.block(210, None, &[], 1);
    assert_eq!(
        stopped.iter().filter(|m| !m.on).count(),
        sounding_before_stop
    );
    assert!(stopped.iter().all(|m| m.timing == 0 && !m.on));
    // Recording: the notes of bar 0 and the started ones of bar 1, on the beat, an eighth long.
    let first: Vec<_> = rig.recorded.iter().take(4).copied().collect();
    assert_eq!(
        first,
        vec![
            (0.0, 0.5, 60, 100),
            (1.0, 1.5, 62, 100),
            (2.0, 2.5, 64, 100),
            (3.0, 3.5, 65, 100)
        ]
    );
}

#[test]
fn the_played_bar_is_quantized_to_sixteenths_with_held_notes_cut_at_the_bar_end() {
    let mut rig = Rig::new();
    let session = &mut rig.session;
    let mut recorded = Vec::new();
    let note = |beat: f64, pitch: u8, velocity: u8| CaptureEvent::Note {
        beat,
        pitch,
        velocity,
        channel: 0,
    };
    // Bar 2 of 4/4 starts at beat 8. A slightly early downbeat, a late 16th, a held note.
    for e in [
        note(7.97, 60, 90),
        note(8.4, 60, 0),
        note(9.26, 67, 80),
        note(9.5, 67, 0),
        note(10.0, 72, 70),
    ] {
        session.handle(e, &mut recorded);
    }
    let bar = session.played_bar(2, 4.0, TrackRole::Melody);
    assert_eq!(bar.steps_per_bar(), 16);
    assert_eq!(
        bar.tracks.len(),
        1,
        "only the musician's track: {:?}",
        bar.tracks
    );
    let notes: Vec<(u32, u8, u32)> = bar
        .notes
        .iter()
        .map(|n| (n.start, n.pitch, n.length))
        .collect();
    assert_eq!(notes, vec![(0, 60, 2), (5, 67, 1), (8, 72, 8)]);
    // A bar with hundreds of notes: the answer carries what one bar can hold.
    for i in 0..600 {
        session.handle(
            note(12.0 + i as f64 / 200.0, (i % 100) as u8, 90),
            &mut recorded,
        );
    }
    assert_eq!(
        session.played_bar(3, 4.0, TrackRole::Melody).notes.len(),
        600
    );
    session.handle(
        CaptureEvent::BarCue {
            bar: 3,
            beats_per_bar: 4.0,
        },
        &mut recorded,
    );
    let answer = rig.voice.incoming.pop().expect("an answer");
    assert_eq!((answer.bar, answer.start), (4, 16.0));
    assert_eq!(answer.notes().len(), MAX_BAR_NOTES);
    assert!(
        answer
            .notes()
            .iter()
            .all(|n| n.start >= 16.0 && n.end <= 20.0)
    );
}

#[test]
fn recorded_notes_land_on_the_grid_modulo_the_clip_on_their_own_track() {
    let mut clip = bandmate::music::example_clip();
    let before = clip.notes.len();
    let steps = clip.steps() as f64;
    let notes = [
        (0.02, 0.51, 60, 100),                          // step 0, an eighth
        (steps / 4.0 + 1.0, steps / 4.0 + 1.1, 64, 0), // second lap, beat 1: step 4, velocity 0 → 1
        (steps / 4.0 - 0.1, steps / 4.0 + 3.0, 67, 90), // rounds to the clip's end → step 0 of lap 2
        (0.0, 0.5, 60, 100),                            // the same note again: not doubled
        (f64::NAN, 1.0, 61, 100),
    ];
    let added = record_into(&mut clip, &notes);
    assert_eq!(added, 3);
    assert_eq!(clip.notes.len(), before + 3);
    let track = clip
        .tracks
        .iter()
        .position(|t| t.name == RECORDED_TRACK)
        .unwrap() as u16;
    let mut recorded: Vec<(u32, u8, u32, u8)> = clip
        .track_notes(track)
        .map(|n| (n.start, n.pitch, n.length, n.velocity))
        .collect();
    recorded.sort();
    assert_eq!(
        recorded,
        vec![(0, 60, 2, 100), (0, 67, 12, 90), (4, 64, 1, 1)]
    );
    // An empty clip becomes four bars.
    let mut empty = Clip::new(0);
    assert_eq!(record_into(&mut empty, &[(3.0, 4.0, 50, 80)]), 1);
    assert_eq!(empty.bars, 4);
}

#[test]
fn the_chord_table_answers_a_c_major_bar_with_a_bar_in_a_chord() {
    let mut predictor = crate::models::chord_table_predictor().unwrap();
    let mut played = Clip::new(1);
    let track = played.add_track(bandmate::music::Track::new("played", TrackRole::Melody, 0));
    for (step, pitch) in [(0, 60), (4, 64), (8, 67), (12, 72)] {
        played.notes.push(Note::new(step, pitch, 4, 90, track));
    }
    let answer = predictor.next_bar(&played).unwrap();
    assert!(!answer.notes.is_empty());
    assert!(answer.notes.iter().all(|n| n.start < 16 && n.end() <= 16));
    let chord = bandmate::band::estimate_chord(&bandmate::band::pitch_class_weights(&answer.notes))
        .unwrap();
    assert!(answer.notes.iter().all(|n| chord.contains(n.pitch)));
    // Silence after a reset: nothing heard yet, nothing played.
    predictor.reset();
    assert!(predictor.next_bar(&Clip::new(1)).unwrap().notes.is_empty());
}

#[test]
fn the_shipped_band_model_accompanies_a_c_major_tune_in_c_major() {
    let mut predictor = crate::models::band_predictor().unwrap();
    let mut in_scale = 0;
    let mut total = 0;
    // Four bars of a C major melody, one bar at a time, as the band thread sends them.
    for bar in [
        [60, 64, 67, 72],
        [65, 69, 72, 69],
        [67, 71, 74, 71],
        [72, 67, 64, 60],
    ] {
        let mut played = Clip::new(1);
        let track = played.add_track(bandmate::music::Track::new("played", TrackRole::Melody, 0));
        for (i, pitch) in bar.into_iter().enumerate() {
            played
                .notes
                .push(Note::new(i as u32 * 4, pitch, 4, 90, track));
        }
        let answer = predictor.next_bar(&played).unwrap();
        assert!(answer.notes.iter().all(|n| n.start < 16 && n.end() <= 16));
        total += answer.notes.len();
        in_scale += answer
            .notes
            .iter()
            .filter(|n| [0, 2, 4, 5, 7, 9, 11].contains(&(n.pitch % 12)))
            .count();
    }
    assert!(total >= 4, "{total} accompaniment notes in 4 bars");
    assert!(
        in_scale * 10 >= total * 9,
        "{in_scale} of {total} accompaniment notes in C major"
    );
    predictor.reset();
}

#[test]
fn dropping_the_band_thread_does_not_wait_for_the_model_load() {
    let (open, gate) = crossbeam_channel::bounded::<()>(0);
    let (loading, load_started) = crossbeam_channel::bounded(1);
    let factory: PredictorFactory = Box::new(move || {
        let _ = loading.send(());
        let _ = gate.recv();
        Err("let go".into())
    });
    let controls = Arc::new(BandControls::default());
    controls.answer.store(true, Ordering::Relaxed);
    let (to_audio, _from_band) = answer_feed();
    let session = BandSession::new(factory, controls, Arc::new(BandStats::default()), to_audio);
    let (mut cues, events) = RingBuffer::new(4);
    cues.push(CaptureEvent::BarCue {
        bar: 0,
        beats_per_bar: 4.0,
    })
    .unwrap();
    let thread = BandThread::spawn(events, session, |_| {}).unwrap();
    load_started
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the first bar loads the model");
    // Before, the drop joined the thread: the host's main thread waited for the load.
    let started = Instant::now();
    drop(thread);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_millis(200),
        "the drop took {took:?}"
    );
    open.send(()).expect("the load was still running");
    // An idle thread is woken by the drop (it sleeps 20 ms between polls when idle).
    let (_cues, events) = RingBuffer::new(4);
    let (to_audio, _from_band) = answer_feed();
    let idle = BandSession::new(
        Box::new(|| Err("unused".into())),
        Arc::new(BandControls::default()),
        Arc::new(BandStats::default()),
        to_audio,
    );
    let thread = BandThread::spawn(events, idle, |_| {}).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let started = Instant::now();
    drop(thread);
    println!("idle band thread drop: {:?}", started.elapsed());
}
