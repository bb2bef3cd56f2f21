//! The scheduler against a simulated host. The host advances its position sample by sample in
//! exact integer units (1 unit = 1/(60·rate) beat, so a sample at `t` BPM is `t` units), and a
//! per-sample reference computed from that exact timeline says where every note-on and note-off
//! belongs. The scheduler only sees what a real host reports per block (f64 beats, tempo, loop).

use super::*;
use bandmate::music::{Note, Track, TrackRole};

/// 2 bars of 4/4 on two tracks: short and long notes, a note cut at the clip end, a same-key
/// retrigger, and a second MIDI channel.
fn test_clip() -> Clip {
    let mut clip = Clip::new(2);
    clip.tempo = 100.0;
    clip.add_track(Track::new("Bass", TrackRole::Bass, 3));
    clip.notes = vec![
        Note::new(0, 60, 16, 100, 0), // whole bar, retriggered at step 8
        Note::new(2, 64, 1, 90, 0),
        Note::new(4, 67, 8, 80, 0),
        Note::new(8, 60, 2, 70, 0),
        Note::new(12, 72, 3, 110, 0),
        Note::new(16, 36, 12, 127, 1), // longer than any block
        Note::new(20, 64, 2, 60, 0),
        Note::new(29, 71, 10, 50, 0), // cut at the clip end (step 32)
        Note::new(31, 43, 1, 40, 1),
    ];
    clip
}

/// What the simulated host does, in seconds; changes take effect at the first block boundary at
/// or after their time, as in hosts that report one tempo per block.
#[derive(Clone, Debug)]
struct Scenario {
    rate: u32,
    start_bpm: i64,
    tempo_change: Option<(f64, i64)>,
    /// Loop range in whole beats.
    loop_beats: Option<(i64, i64)>,
    stop_at: Option<f64>,
    /// Start again at this time from this beat.
    restart: Option<(f64, i64)>,
    /// Seek while playing: at this time jump to this beat.
    seek: Option<(f64, i64)>,
    seconds: f64,
}

/// One sample of the host's exact timeline.
#[derive(Clone, Copy, Debug)]
struct HostSample {
    playing: bool,
    /// Position in units of 1/(60·rate) beat.
    units: i64,
    /// Units per sample (the tempo in BPM).
    step: i64,
    /// The position did not follow from the previous sample (start, loop wrap, seek).
    discontinuous: bool,
}

/// Drive `player` through `scenario` in blocks of `block` samples; returns the host timeline
/// and every event with its absolute sample.
fn run_host(
    scenario: &Scenario,
    block: u32,
    player: &mut Player,
    options: PlayOptions,
) -> (Vec<HostSample>, Vec<(u64, NoteMessage)>) {
    let rate = scenario.rate as i64;
    let units_per_beat = 60 * rate;
    let total = (scenario.seconds * rate as f64) as u64;
    let at = |seconds: f64| (seconds * rate as f64).round() as u64;
    let mut timeline = Vec::with_capacity(total as usize);
    let mut events = Vec::new();
    let (mut bpm, mut units, mut playing) = (scenario.start_bpm, 0i64, true);
    let mut fresh = true;
    let (mut tempo_done, mut stop_done, mut restart_done, mut seek_done) =
        (false, false, false, false);
    let mut sample = 0u64;
    while sample < total {
        if let Some((t, new_bpm)) = scenario.tempo_change
            && !tempo_done
            && sample >= at(t)
        {
            bpm = new_bpm;
            tempo_done = true;
        }
        if let Some(t) = scenario.stop_at
            && !stop_done
            && sample >= at(t)
        {
            playing = false;
            stop_done = true;
        }
        if let Some((t, beat)) = scenario.restart
            && !restart_done
            && sample >= at(t)
        {
            playing = true;
            units = beat * units_per_beat;
            fresh = true;
            restart_done = true;
        }
        if let Some((t, beat)) = scenario.seek
            && !seek_done
            && sample >= at(t)
        {
            units = beat * units_per_beat;
            fresh = true;
            seek_done = true;
        }
        let n = (block as u64).min(total - sample) as u32;
        let transport = HostTransport {
            sample_rate: scenario.rate as f64,
            playing,
            tempo: Some(bpm as f64),
            pos_beats: Some(units as f64 / units_per_beat as f64),
            loop_beats: scenario.loop_beats.map(|(a, b)| (a as f64, b as f64)),
        };
        for e in player.process_block(&transport, n, options) {
            assert!(e.timing < n, "timing {} outside a block of {n}", e.timing);
            events.push((sample + e.timing as u64, *e));
        }
        for _ in 0..n {
            let mut discontinuous = std::mem::take(&mut fresh);
            if playing
                && let Some((ls, le)) = scenario.loop_beats
                && units >= le * units_per_beat
            {
                units = ls * units_per_beat + (units - le * units_per_beat);
                discontinuous = true;
            }
            timeline.push(HostSample {
                playing,
                units,
                step: bpm,
                discontinuous,
            });
            if playing {
                units += bpm;
            }
        }
        sample += n as u64;
    }
    (timeline, events)
}

/// Where every event belongs, from the exact timeline: a note fires at the first sample whose
/// position reaches it; everything sounding stops at a stop, loop wrap or seek.
fn reference(clip: &Clip, rate: u32, timeline: &[HostSample]) -> Vec<(u64, NoteMessage)> {
    let units_per_step = 15 * rate as i64; // 60·rate / 4 steps per beat
    let clip_units = clip.steps() as i64 * units_per_step;
    let mut notes: Vec<_> = clip
        .notes
        .iter()
        .filter(|n| n.start < clip.steps())
        .collect();
    notes.sort_by_key(|n| (n.start, n.pitch));
    let mut sounding: Vec<(u8, u8, i64)> = Vec::new(); // channel, pitch, off units
    let mut out = Vec::new();
    let off = |s: u64, ch: u8, p: u8| {
        (
            s,
            NoteMessage {
                timing: 0,
                on: false,
                channel: ch,
                pitch: p,
                velocity: 0,
            },
        )
    };
    let mut was_playing = false;
    for (s, h) in timeline.iter().enumerate() {
        let s = s as u64;
        if !h.playing {
            if was_playing {
                out.extend(sounding.drain(..).map(|(c, p, _)| off(s, c, p)));
            }
            was_playing = false;
            continue;
        }
        let fresh = h.discontinuous || !was_playing;
        if fresh {
            out.extend(sounding.drain(..).map(|(c, p, _)| off(s, c, p)));
        }
        let prev = if fresh {
            h.units - h.step
        } else {
            timeline[s as usize - 1].units
        };
        was_playing = true;
        let first_lap = prev.div_euclid(clip_units);
        let last_lap = h.units.div_euclid(clip_units);
        for lap in first_lap..=last_lap {
            for n in &notes {
                let start = lap * clip_units + n.start as i64 * units_per_step;
                if start > prev && start <= h.units {
                    let ch = clip.tracks[n.track as usize].channel;
                    if let Some(i) = sounding
                        .iter()
                        .position(|&(c, p, _)| (c, p) == (ch, n.pitch))
                    {
                        sounding.remove(i);
                        out.push(off(s, ch, n.pitch));
                    }
                    let end = n.end().min(clip.steps()) as i64 * units_per_step;
                    sounding.push((ch, n.pitch, lap * clip_units + end));
                    out.push((
                        s,
                        NoteMessage {
                            timing: 0,
                            on: true,
                            channel: ch,
                            pitch: n.pitch,
                            velocity: n.velocity,
                        },
                    ));
                }
            }
        }
        let (due, rest): (Vec<_>, Vec<_>) = sounding.drain(..).partition(|&(_, _, o)| o <= h.units);
        sounding = rest;
        out.extend(due.into_iter().map(|(c, p, _)| off(s, c, p)));
    }
    normalize(out)
}

/// Sort by absolute sample and drop the in-block timing so two event lists compare directly.
fn normalize(mut events: Vec<(u64, NoteMessage)>) -> Vec<(u64, NoteMessage)> {
    for (_, e) in &mut events {
        e.timing = 0;
    }
    events.sort_by_key(|&(s, e)| (s, e.on, e.channel, e.pitch));
    events
}

const BLOCK_SIZES: [u32; 12] = [1, 2, 3, 7, 64, 100, 441, 512, 1000, 1024, 2049, 4096];
const RATES: [u32; 3] = [44_100, 48_000, 96_000];

fn check(scenario_for_rate: impl Fn(u32) -> Scenario, min_events: usize) {
    let clip = test_clip();
    for rate in RATES {
        let scenario = scenario_for_rate(rate);
        for block in BLOCK_SIZES {
            let mut player = Player::new();
            player.swap_clip(Box::new(PlayerClip::from_clip(&clip)));
            let (timeline, events) =
                run_host(&scenario, block, &mut player, PlayOptions::default());
            let expected = reference(&clip, rate, &timeline);
            let got = normalize(events);
            assert!(
                expected.len() >= min_events,
                "scenario too short: {}",
                expected.len()
            );
            if got != expected {
                let first = got.iter().zip(&expected).position(|(a, b)| a != b);
                panic!(
                    "{rate} Hz, block {block}: {} events, expected {}; first difference at {first:?}: got {:?}, expected {:?}",
                    got.len(),
                    expected.len(),
                    first.map(|i| got[i]),
                    first.map(|i| expected[i]),
                );
            }
            let ons = got.iter().filter(|(_, e)| e.on).count();
            assert_eq!(
                ons - (got.len() - ons),
                player.sounding_count(),
                "every other note-on has its note-off"
            );
        }
    }
}

#[test]
fn plays_in_time_through_a_tempo_change_a_loop_and_a_stop() {
    check(
        |rate| Scenario {
            rate,
            start_bpm: 120,
            tempo_change: Some((1.3, 90)),
            loop_beats: Some((2, 7)),
            stop_at: Some(7.1),
            restart: Some((7.6, 3)),
            seek: None,
            seconds: 9.0,
        },
        24,
    );
}

#[test]
fn a_seek_while_playing_ends_sounding_notes_and_plays_from_the_new_position() {
    check(
        |rate| Scenario {
            rate,
            start_bpm: 133,
            tempo_change: None,
            loop_beats: None,
            stop_at: None,
            restart: None,
            seek: Some((1.7, 1)),
            seconds: 3.5,
        },
        16,
    );
}

#[test]
fn the_reference_puts_known_notes_on_exact_samples() {
    // 120 BPM at 48 kHz: a 16th is 6000 samples. Step 2 → 12000, its note-off (1 step) → 18000.
    let clip = test_clip();
    let scenario = Scenario {
        rate: 48_000,
        start_bpm: 120,
        tempo_change: None,
        loop_beats: None,
        stop_at: None,
        restart: None,
        seek: None,
        seconds: 1.5,
    };
    let mut player = Player::new();
    player.swap_clip(Box::new(PlayerClip::from_clip(&clip)));
    let (_, events) = run_host(&scenario, 512, &mut player, PlayOptions::default());
    let e64: Vec<u64> = events
        .iter()
        .filter(|(_, e)| e.pitch == 64 && e.channel == 0)
        .map(|&(s, _)| s)
        .collect();
    assert_eq!(e64, vec![12_000, 18_000]);
    let retrigger: Vec<(u64, bool)> = events
        .iter()
        .filter(|(_, e)| e.pitch == 60)
        .map(|&(s, e)| (s, e.on))
        .collect();
    assert_eq!(
        retrigger,
        vec![(0, true), (48_000, false), (48_000, true), (60_000, false)]
    );
}

#[test]
fn free_running_without_host_position_uses_the_host_or_clip_tempo() {
    let clip = test_clip(); // 100 BPM: 44100·60/100/4 = 6615 samples a step
    let mut player = Player::new();
    player.swap_clip(Box::new(PlayerClip::from_clip(&clip)));
    let transport = HostTransport::new(44_100.0);
    let mut events = Vec::new();
    for block in 0..200u64 {
        for e in player.process_block(&transport, 256, PlayOptions::default()) {
            events.push((block * 256 + e.timing as u64, *e));
        }
    }
    let first_e4 = events
        .iter()
        .find(|(_, e)| e.on && e.pitch == 64)
        .unwrap()
        .0;
    assert_eq!(first_e4, 2 * 6615);
    // With a host tempo but no position, the host tempo wins: 150 BPM → 4410 samples a step.
    player.reset();
    let transport = HostTransport {
        tempo: Some(150.0),
        ..transport
    };
    let mut first = None;
    for block in 0..100u64 {
        for e in player.process_block(&transport, 256, PlayOptions::default()) {
            if e.on && e.pitch == 64 && first.is_none() {
                first = Some(block * 256 + e.timing as u64);
            }
        }
    }
    assert_eq!(first, Some(2 * 4410));
}

#[test]
fn output_channel_and_velocity_scale_apply_to_every_note() {
    let clip = test_clip();
    let mut player = Player::new();
    player.swap_clip(Box::new(PlayerClip::from_clip(&clip)));
    let transport = HostTransport {
        playing: true,
        tempo: Some(120.0),
        pos_beats: Some(4.0), // bar 2: the bass note at step 16 starts at sample 0
        ..HostTransport::new(48_000.0)
    };
    let options = PlayOptions {
        channel: Some(5),
        velocity_scale: 0.5,
    };
    let events = player.process_block(&transport, 64, options).to_vec();
    assert_eq!(
        events,
        vec![NoteMessage {
            timing: 0,
            on: true,
            channel: 5,
            pitch: 36,
            velocity: 64,
        }]
    );
    // Stopping ends it on the same channel it started on.
    let stopped = HostTransport {
        playing: false,
        ..transport
    };
    let events = player.process_block(&stopped, 64, options).to_vec();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].on, events[0].channel, events[0].pitch),
        (false, 5, 36)
    );
}

#[test]
fn a_new_clip_ends_sounding_notes_and_plays_its_own_notes() {
    let mut player = Player::new();
    player.swap_clip(Box::new(PlayerClip::from_clip(&test_clip())));
    let mut transport = HostTransport {
        playing: true,
        tempo: Some(120.0),
        pos_beats: Some(0.0),
        ..HostTransport::new(48_000.0)
    };
    let first = player
        .process_block(&transport, 480, PlayOptions::default())
        .to_vec();
    assert!(first.iter().any(|e| e.on && e.pitch == 60));
    let mut other = Clip::new(2);
    other.notes.push(Note::new(1, 50, 1, 100, 0));
    let old = player.swap_clip(Box::new(PlayerClip::from_clip(&other)));
    assert_eq!(old.notes().len(), test_clip().notes.len());
    let mut events = Vec::new();
    for block in 1..400u64 {
        transport.pos_beats = Some(block as f64 * 480.0 / 24_000.0);
        for e in player.process_block(&transport, 480, PlayOptions::default()) {
            events.push((block * 480 + e.timing as u64, e.on, e.pitch));
        }
    }
    // C4 from the old clip ends where the new clip arrives; D3 of the new clip plays at step 1.
    assert_eq!(events[0], (480, false, 60));
    assert!(events.contains(&(6_000, true, 50)));
    assert!(!events.iter().any(|&(_, on, p)| on && p != 50));
}

/// What a host's voice table makes of the events, in the order it gets them: a second note-on
/// of a sounding key (a note that will never end) fails; returns the keys still sounding.
fn host_voices(events: &[NoteMessage], sounding: &mut std::collections::BTreeSet<(u8, u8)>) {
    for e in events {
        if e.on {
            assert!(
                sounding.insert((e.channel, e.pitch)),
                "a second note-on of channel {} pitch {} while it sounds, in {events:?}",
                e.channel,
                e.pitch
            );
        } else {
            sounding.remove(&(e.channel, e.pitch));
        }
    }
}

#[test]
fn a_hundred_thousand_notes_in_one_block_all_end_and_cost_bounded_work() {
    // 16 tracks × 128 pitches × 49 steps = 100,352 notes, all in each block at this tempo, and
    // all on one channel: keys collide at the same sample and between samples.
    let mut clip = Clip::new(4);
    clip.tracks.clear();
    for channel in 0..16 {
        clip.add_track(Track::new(
            format!("T{channel}"),
            TrackRole::Accompaniment,
            channel,
        ));
    }
    for step in 0..49 {
        for track in 0..16u16 {
            for pitch in 0..128u8 {
                clip.notes
                    .push(Note::new(step, pitch, 1 + step % 5, 100, track));
            }
        }
    }
    assert_eq!(clip.notes.len(), 100_352);
    for options in [
        PlayOptions::default(),
        PlayOptions {
            channel: Some(0),
            velocity_scale: 1.0,
        },
    ] {
        let mut player = Player::new();
        player.swap_clip(Box::new(PlayerClip::from_clip(&clip)));
        let mut voices = std::collections::BTreeSet::new();
        let rate = 44_100.0;
        for (tempo, samples) in [(60_000.0, 4096), (120.0, 512), (2.0e7, 64)] {
            let mut beat = 0.0;
            for _ in 0..20 {
                let transport = HostTransport {
                    playing: true,
                    tempo: Some(tempo),
                    pos_beats: Some(beat),
                    ..HostTransport::new(rate)
                };
                let events = player.process_block(&transport, samples, options);
                assert!(events.len() <= MAX_EVENTS_PER_BLOCK);
                host_voices(events, &mut voices);
                beat += samples as f64 * tempo / 60.0 / rate;
            }
        }
        assert!(player.stats().dropped_note_ons > 0, "the cap was reached");
        // Every block holds all 100,352 notes; it looks at no more than the note-on cap plus the
        // sounding notes (checked once for their offs, once when all end).
        let visited = player.stats().most_notes_visited;
        assert!(visited >= MAX_NOTE_ONS_PER_BLOCK as u64, "{visited}");
        assert!(
            visited <= (MAX_NOTE_ONS_PER_BLOCK + 2 * MAX_SOUNDING) as u64,
            "one block looked at {visited} notes"
        );
        let stopped = HostTransport {
            playing: false,
            pos_beats: Some(0.0),
            ..HostTransport::new(rate)
        };
        host_voices(player.process_block(&stopped, 64, options), &mut voices);
        assert!(voices.is_empty(), "{} notes never ended", voices.len());
        assert_eq!(player.sounding_count(), 0);
    }
}

/// One block at the start of the clip with a whole-bar C4 sounding, then `interrupt`, then a
/// block whose events come back.
fn interrupted(interrupt: impl FnOnce(&mut Player), options: PlayOptions) -> Vec<NoteMessage> {
    let mut player = Player::new();
    player.swap_clip(Box::new(PlayerClip::from_clip(&test_clip())));
    let transport = HostTransport {
        playing: true,
        tempo: Some(120.0),
        pos_beats: Some(0.0),
        ..HostTransport::new(48_000.0)
    };
    let first = player.process_block(&transport, 480, PlayOptions::default());
    assert!(first.iter().any(|e| e.on && e.pitch == 60));
    interrupt(&mut player);
    // The host carries on from where it was.
    let next = HostTransport {
        pos_beats: Some(0.02),
        ..transport
    };
    player.process_block(&next, 480, options).to_vec()
}

#[test]
fn reset_and_deactivation_end_sounding_notes_at_the_next_block() {
    // Before, `reset` forgot the sounding notes: their note-offs never came.
    let events = interrupted(Player::reset, PlayOptions::default());
    assert_eq!(
        events.first().map(|e| (e.timing, e.on, e.pitch)),
        Some((0, false, 60)),
        "{events:?}"
    );
}

#[test]
fn a_new_output_channel_ends_notes_sounding_on_the_old_one() {
    let events = interrupted(
        |_| {},
        PlayOptions {
            channel: Some(6),
            velocity_scale: 1.0,
        },
    );
    assert_eq!(
        events.first().map(|e| (e.timing, e.on, e.channel, e.pitch)),
        Some((0, false, 0, 60)),
        "{events:?}"
    );
}

#[test]
fn a_tempo_ramp_inside_blocks_is_followed_without_false_jumps() {
    // The host's tempo rises from 60 to 240 BPM over two seconds, sample by sample (CLAP
    // `tempo_inc`); each block reports its first sample's tempo and exact position. Before, the
    // one-sample tolerance read every block as a jump: notes cut, onsets doubled or missed.
    let rate = 48_000.0;
    let mut clip = Clip::new(4);
    clip.notes = (0..64)
        .map(|s| Note::new(s, 60 + (s % 12) as u8, 1, 100, 0))
        .collect();
    for block in [64u32, 512, 1024, 4096] {
        let mut player = Player::new();
        player.swap_clip(Box::new(PlayerClip::from_clip(&clip)));
        let (mut beat, mut sample) = (0.0f64, 0u64);
        let mut ons = 0;
        let mut voices = std::collections::BTreeSet::new();
        let total = 2 * 48_000;
        while sample < total {
            let tempo = |k: u64| 60.0 + 180.0 * (k as f64 / total as f64).min(1.0);
            let transport = HostTransport {
                playing: true,
                tempo: Some(tempo(sample)),
                pos_beats: Some(beat),
                ..HostTransport::new(rate)
            };
            let events = player.process_block(&transport, block, PlayOptions::default());
            ons += events.iter().filter(|e| e.on).count();
            host_voices(events, &mut voices);
            for k in sample..sample + block as u64 {
                beat += tempo(k) / 60.0 / rate;
            }
            sample += block as u64;
        }
        assert_eq!(player.stats().jumps, 0, "block {block}");
        // Every step the host passed started its note once (4 steps per beat, from step 0).
        let steps_passed = (beat * 4.0).floor() as usize + 1;
        assert!(
            ons.abs_diff(steps_passed) <= 1,
            "block {block}: {ons} note-ons, {steps_passed} steps"
        );
    }
}

#[test]
fn scheduling_allocates_nothing() {
    let clip = test_clip();
    let scenario = Scenario {
        rate: 44_100,
        start_bpm: 120,
        tempo_change: Some((0.5, 97)),
        loop_beats: Some((1, 5)),
        stop_at: Some(2.0),
        restart: Some((2.2, 0)),
        seek: None,
        seconds: 3.0,
    };
    let mut player = Player::new();
    player.swap_clip(Box::new(PlayerClip::from_clip(&clip)));
    // Run the whole scenario once to learn the host's transports, then replay them with
    // allocation forbidden (the global allocator nice-plug installs aborts on any allocation).
    let mut transports = Vec::new();
    let mut units = 0.0;
    let mut playing = true;
    for block in 0..(3 * 44_100 / 333) {
        let t = block as f64 * 333.0 / 44_100.0;
        if (2.0..2.2).contains(&t) {
            playing = false;
        } else if t >= 2.2 && !playing {
            playing = true;
            units = 0.0;
        }
        transports.push(HostTransport {
            sample_rate: 44_100.0,
            playing,
            tempo: Some(if t < 0.5 { 120.0 } else { 97.0 }),
            pos_beats: Some(units),
            loop_beats: scenario.loop_beats.map(|(a, b)| (a as f64, b as f64)),
        });
        if playing {
            units += 333.0 * if t < 0.5 { 120.0 } else { 97.0 } / 60.0 / 44_100.0;
        }
    }
    let mut count = 0usize;
    nice_assert_no_alloc::assert_no_alloc(|| {
        for t in &transports {
            count += player.process_block(t, 333, PlayOptions::default()).len();
        }
    });
    assert!(count > 10, "{count} events");
}
