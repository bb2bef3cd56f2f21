//! The scheduler against a simulated host (`tests/support/host_timeline.rs`, shared with the
//! CLAP host tests): the host advances its position sample by sample in exact integer units,
//! and a per-sample reference computed from that exact timeline says where every note-on and
//! note-off belongs. The scheduler only sees what a real host reports per block (f64 beats,
//! tempo, loop).

use super::*;
use bandmate::music::{Note, Track, TrackRole};

#[path = "../../../tests/support/host_timeline.rs"]
mod host_timeline;

use host_timeline::{NoteEvent, Scenario, SimulatedHost, first_difference, reference, sorted};

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

/// Drive `player` through `scenario` in blocks of `block` samples; returns the host timeline
/// and every event with its absolute sample.
fn run_host(
    scenario: &Scenario,
    block: u32,
    player: &mut Player,
    options: PlayOptions,
) -> (Vec<host_timeline::HostSample>, Vec<(u64, NoteMessage)>) {
    let mut host = SimulatedHost::new(scenario, block);
    let mut events = Vec::new();
    for b in host.by_ref() {
        let transport = HostTransport {
            sample_rate: scenario.rate as f64,
            playing: b.playing,
            tempo: Some(b.bpm as f64),
            pos_beats: Some(b.beats),
            loop_beats: scenario.loop_beats.map(|(a, b)| (a as f64, b as f64)),
        };
        for e in player.process_block(&transport, b.len, options) {
            assert!(
                e.timing < b.len,
                "timing {} outside a block of {}",
                e.timing,
                b.len
            );
            events.push((b.start + e.timing as u64, *e));
        }
    }
    (host.timeline, events)
}

/// `events` as sorted [`NoteEvent`]s, to compare with the [`reference`].
fn note_events(events: &[(u64, NoteMessage)]) -> Vec<NoteEvent> {
    sorted(
        events
            .iter()
            .map(|&(s, e)| (s, e.on, e.channel, e.pitch, e.velocity))
            .collect(),
    )
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
            let got = note_events(&events);
            assert!(
                expected.len() >= min_events,
                "scenario too short: {}",
                expected.len()
            );
            if let Some(difference) = first_difference(&got, &expected) {
                panic!("{rate} Hz, block {block}: {difference}");
            }
            let ons = got.iter().filter(|e| e.1).count();
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
            tempo_change: Some((1.3, 90)),
            loop_beats: Some((2, 7)),
            stop_at: Some(7.1),
            restart: Some((7.6, 3)),
            ..Scenario::steady(rate, 120, 9.0)
        },
        24,
    );
}

#[test]
fn a_seek_while_playing_ends_sounding_notes_and_plays_from_the_new_position() {
    check(
        |rate| Scenario {
            seek: Some((1.7, 1)),
            ..Scenario::steady(rate, 133, 3.5)
        },
        16,
    );
}

#[test]
fn the_reference_puts_known_notes_on_exact_samples() {
    // 120 BPM at 48 kHz: a 16th is 6000 samples. Step 2 → 12000, its note-off (1 step) → 18000.
    let clip = test_clip();
    let scenario = Scenario::steady(48_000, 120, 1.5);
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
        tempo_change: Some((0.5, 97)),
        loop_beats: Some((1, 5)),
        stop_at: Some(2.0),
        restart: Some((2.2, 0)),
        ..Scenario::steady(44_100, 120, 3.0)
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
