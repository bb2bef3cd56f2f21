//! Unit tests on synthetic files built with midly (and a few by hand).

use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use super::*;
use crate::music::{Clip, Note, TimeSignature, Track, TrackRole};

type Event = (u32, TrackEventKind<'static>);

fn on(channel: u8, key: u8, vel: u8) -> TrackEventKind<'static> {
    TrackEventKind::Midi {
        channel: u4::new(channel),
        message: MidiMessage::NoteOn {
            key: u7::new(key),
            vel: u7::new(vel),
        },
    }
}

fn off(channel: u8, key: u8) -> TrackEventKind<'static> {
    TrackEventKind::Midi {
        channel: u4::new(channel),
        message: MidiMessage::NoteOff {
            key: u7::new(key),
            vel: u7::new(64),
        },
    }
}

fn name(text: &'static str) -> TrackEventKind<'static> {
    TrackEventKind::Meta(MetaMessage::TrackName(text.as_bytes()))
}

fn tempo(bpm: f64) -> TrackEventKind<'static> {
    TrackEventKind::Meta(MetaMessage::Tempo(u24::new((60e6 / bpm).round() as u32)))
}

fn meter(numerator: u8, power: u8) -> TrackEventKind<'static> {
    TrackEventKind::Meta(MetaMessage::TimeSignature(numerator, power, 24, 8))
}

/// A format-0 SMF of one track of `events`.
fn single_track(ppq: u16, events: Vec<Event>) -> Vec<u8> {
    smf(Format::SingleTrack, ppq, vec![events])
}

/// A format-0 SMF of one quarter-note middle C.
fn one_quarter_note(ppq: u16) -> Vec<u8> {
    single_track(ppq, vec![(0, on(0, 60, 100)), (ppq as u32, off(0, 60))])
}

/// An SMF from tracks of (absolute tick, event); each track gets an end-of-track event.
fn smf(format: Format, ppq: u16, tracks: Vec<Vec<Event>>) -> Vec<u8> {
    let mut file = Smf::new(Header::new(format, Timing::Metrical(u15::new(ppq))));
    for mut events in tracks {
        events.sort_by_key(|e| e.0);
        let mut now = 0;
        let mut track: Vec<TrackEvent> = events
            .into_iter()
            .map(|(tick, kind)| {
                let delta = u28::new(tick - now);
                now = tick;
                TrackEvent { delta, kind }
            })
            .collect();
        track.push(TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
        });
        file.tracks.push(track);
    }
    let mut bytes = Vec::new();
    file.write_std(&mut bytes).unwrap();
    bytes
}

/// A header chunk followed by one hand-written MTrk chunk.
fn raw_smf(format: u16, division: u16, track: &[u8]) -> Vec<u8> {
    let mut bytes = b"MThd\0\0\0\x06".to_vec();
    bytes.extend_from_slice(&format.to_be_bytes());
    bytes.extend_from_slice(&1u16.to_be_bytes());
    bytes.extend_from_slice(&division.to_be_bytes());
    bytes.extend_from_slice(b"MTrk");
    bytes.extend_from_slice(&(track.len() as u32).to_be_bytes());
    bytes.extend_from_slice(track);
    bytes
}

fn spans(clip: &Clip) -> Vec<(u32, u8, u32)> {
    clip.notes
        .iter()
        .map(|n| (n.start, n.pitch, n.length))
        .collect()
}

#[test]
fn running_status_and_velocity_zero_note_offs() {
    // PPQ 4 (one tick per step): C4 for 2 steps then E4 for 1 step, all after a single 0x90.
    let track = [
        0x00, 0x90, 60, 100, // note-on C4
        0x02, 60, 0, // running status: note-on velocity 0 = note-off
        0x00, 64, 90, // running status: note-on E4
        0x01, 64, 0, // note-off
        0x00, 0xFF, 0x2F, 0x00,
    ];
    let clip = read_bytes(&raw_smf(0, 4, &track)).unwrap();
    assert_eq!(spans(&clip), [(0, 60, 2), (2, 64, 1)]);
    assert_eq!(clip.notes[1].velocity, 90);
    assert_eq!(
        clip.tracks,
        [Track::new("Track 1", TrackRole::Accompaniment, 0)]
    );
}

#[test]
fn overlapping_notes_of_one_key_pair_first_in_first_out() {
    let ppq = 480;
    let events = vec![
        (0, on(0, 60, 100)),
        (240, on(0, 60, 80)), // second C4 while the first still sounds
        (480, off(0, 60)),    // ends the first (oldest) one
        (960, off(0, 60)),
        (960, off(0, 61)), // note-off without a note: ignored
    ];
    let clip = read_bytes(&single_track(ppq, events)).unwrap();
    assert_eq!(
        clip.notes,
        [Note::new(0, 60, 4, 100, 0), Note::new(2, 60, 6, 80, 0)]
    );
    // Export keeps the order, so the round trip is exact.
    assert_eq!(read_bytes(&write_bytes(&clip)).unwrap().notes, clip.notes);
}

#[test]
fn unterminated_notes_end_at_the_end_of_their_track() {
    let melody = vec![
        (0, name("Melody")),
        (0, on(0, 72, 100)),
        (1920, tempo(120.0)),
    ];
    let chords = vec![(0, on(1, 48, 70)), (960, on(1, 52, 70)), (960, off(1, 48))];
    let clip = read_bytes(&smf(Format::Parallel, 480, vec![melody, chords])).unwrap();
    // Melody ends at tick 1920 (its last event), chords at 960 (so E3 gets 1 step).
    assert_eq!(spans(&clip), [(0, 48, 8), (0, 72, 16), (8, 52, 1)]);
    assert_eq!(clip.tracks[0], Track::new("Melody", TrackRole::Melody, 0));
    assert_eq!(clip.tracks[1].name, "Track 2");
    assert_eq!(clip.bars, 1);
}

#[test]
fn any_ppq_gives_the_same_grid() {
    // Bar 1: quarter, eighth, two 16ths, a slightly early and a slightly late note.
    let at = |ppq: u32, beats: f64| (beats * ppq as f64).round() as u32;
    let mut clips = Vec::new();
    for ppq in [96u16, 480, 960, 32767] {
        let p = ppq as u32;
        let events = vec![
            (0, on(0, 60, 100)),
            (at(p, 1.0), off(0, 60)),
            (at(p, 1.0), on(0, 62, 100)),
            (at(p, 1.5), off(0, 62)),
            (at(p, 1.5), on(0, 64, 100)),
            (at(p, 1.75), off(0, 64)),
            (at(p, 1.97), on(0, 65, 100)),  // 0.12 step early → step 8
            (at(p, 2.3), off(0, 65)),       // 1.2 steps after → length 1
            (at(p, 3.125), on(0, 67, 100)), // half a step late → rounds to step 13 (halves up)
            (at(p, 3.2), off(0, 67)),       // shorter than a step: at least 1
        ];
        clips.push(read_bytes(&single_track(ppq, events)).unwrap());
    }
    assert_eq!(
        spans(&clips[0]),
        [(0, 60, 4), (4, 62, 2), (6, 64, 1), (8, 65, 1), (13, 67, 1)]
    );
    for clip in &clips[1..] {
        assert_eq!(clip.notes, clips[0].notes);
    }
}

#[test]
fn tempo_and_meter_maps_become_changes() {
    let conductor = vec![
        (0, tempo(100.0)),
        (0, meter(3, 2)),
        (1440, meter(3, 2)), // repeat: dropped
        (1440, tempo(90.0)),
        (2880, meter(6, 3)),
        (2880, tempo(120.0)),
        (2880, tempo(125.0)),  // same step: the last one wins
        (96_000, tempo(60.0)), // after the last note: dropped
    ];
    let notes = vec![(0, on(0, 60, 90)), (4000, off(0, 60))];
    let clip = read_bytes(&smf(Format::Parallel, 480, vec![conductor, notes])).unwrap();
    assert_eq!(clip.tempo, 100.0);
    assert_eq!(clip.time_signature, TimeSignature::new(3, 4));
    let tempi: Vec<(u32, f64)> = clip
        .tempo_changes
        .iter()
        .map(|c| (c.step, c.bpm.round()))
        .collect();
    assert_eq!(tempi, [(12, 90.0), (24, 125.0)]);
    assert_eq!(clip.meter_changes.len(), 1);
    assert_eq!(clip.meter_changes[0].step, 24);
    assert_eq!(
        clip.meter_changes[0].time_signature,
        TimeSignature::new(6, 8)
    );
    // 4000 ticks = 33.3 steps → 33, in 12-step bars of the first meter: 3 bars.
    assert_eq!(clip.bars, 3);
    let again = read_bytes(&write_bytes(&clip)).unwrap();
    assert_eq!(again.tempo_changes, clip.tempo_changes);
    assert_eq!(again.meter_changes, clip.meter_changes);
}

#[test]
fn type_0_channels_split_into_tracks_and_drums_stay_drums() {
    let events = vec![
        (0, on(0, 72, 100)),
        (0, on(9, 36, 110)),
        (0, on(1, 40, 90)),
        (240, off(9, 36)),
        (480, off(0, 72)),
        (480, off(1, 40)),
    ];
    let clip = read_bytes(&single_track(480, events)).unwrap();
    let expected = [
        Track::new("Channel 1", TrackRole::Accompaniment, 0),
        Track::new("Channel 2", TrackRole::Accompaniment, 1),
        Track::new("Channel 10", TrackRole::Drums, 9),
    ];
    assert_eq!(clip.tracks, expected);
    assert_eq!(
        clip.notes,
        [
            Note::new(0, 36, 2, 110, 2),
            Note::new(0, 40, 4, 90, 1),
            Note::new(0, 72, 4, 100, 0)
        ]
    );
    let again = read_bytes(&write_bytes(&clip)).unwrap();
    assert_eq!(again.tracks, expected);
    assert_eq!(again.notes, clip.notes);
    assert!(again.tracks[2].is_drums());
}

#[test]
fn a_named_track_with_several_channels_keeps_its_name() {
    let events = vec![(0, name("Keys")), (0, on(0, 60, 100)), (0, on(3, 48, 100))];
    let clip = read_bytes(&smf(Format::Parallel, 480, vec![events])).unwrap();
    let names: Vec<&str> = clip.tracks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Keys (channel 1)", "Keys (channel 4)"]);
}

#[test]
fn type_2_tracks_play_one_after_another() {
    let first = vec![(0, on(0, 60, 100)), (960, off(0, 60))];
    let second = vec![(0, on(0, 62, 100)), (480, off(0, 62))];
    let clip = read_bytes(&smf(Format::Sequential, 480, vec![first, second])).unwrap();
    assert_eq!(spans(&clip), [(0, 60, 8), (8, 62, 4)]);
}

#[test]
fn export_writes_type_1_with_a_conductor_track() {
    let mut clip = Clip::new(2);
    clip.tempo = 90.0;
    clip.time_signature = TimeSignature::new(3, 4);
    clip.tracks = vec![
        Track::new("Lead", TrackRole::Melody, 2),
        Track::new("Kit", TrackRole::Drums, 9),
    ];
    clip.notes = vec![
        Note::new(0, 67, 4, 100, 0),
        Note::new(4, 67, 4, 100, 0), // starts where the previous one ends
        Note::new(0, 36, 1, 120, 1),
    ];
    let bytes = write_bytes(&clip);
    let smf = Smf::parse(&bytes).unwrap();
    assert_eq!(smf.header.format, Format::Parallel);
    assert_eq!(smf.header.timing, Timing::Metrical(u15::new(480)));
    assert_eq!(smf.tracks.len(), 3);
    let kinds: Vec<_> = smf.tracks[0].iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&TrackEventKind::Meta(MetaMessage::Tempo(u24::new(666_667)))));
    assert!(
        kinds.contains(&TrackEventKind::Meta(MetaMessage::TimeSignature(
            3, 2, 24, 8
        )))
    );
    // Lead: name, on 67 @0, off 67 @480 before on 67 @480, off @960, end of track @2880.
    let lead: Vec<(u32, TrackEventKind)> = smf.tracks[1]
        .iter()
        .map(|e| (e.delta.as_int(), e.kind))
        .collect();
    assert_eq!(
        lead,
        [
            (0, name("Lead")),
            (0, on(2, 67, 100)),
            (480, off(2, 67)),
            (0, on(2, 67, 100)),
            (480, off(2, 67)),
            (1920, TrackEventKind::Meta(MetaMessage::EndOfTrack)),
        ]
    );
    assert_eq!(smf.tracks[2][1].kind, on(9, 36, 120));
}

#[test]
fn notes_of_missing_tracks_are_exported_to_extra_tracks() {
    let mut clip = Clip::new(1);
    clip.notes = vec![Note::new(0, 60, 2, 100, 0), Note::new(2, 64, 2, 100, 2)];
    let again = read_bytes(&write_bytes(&clip)).unwrap();
    assert_eq!(again.notes.len(), 2);
    let names: Vec<&str> = again.tracks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Piano", "Track 3"]);
}

#[test]
fn beats_map_performance_time_to_the_grid_with_a_pickup_bar() {
    // 100 BPM file (0.6 s per quarter at PPQ 480); the performance drifts: beats every 0.5 s
    // from 1.0 s, downbeats every 4 beats from the beat at 1.5 s.
    let beats: Vec<BeatMark> = (0..16)
        .map(|i| BeatMark {
            time_s: 1.0 + 0.5 * i as f64,
            downbeat: i % 4 == 1,
        })
        .collect();
    let tick = |seconds: f64| (seconds / 0.6 * 480.0).round() as u32;
    let events = vec![
        (0, tempo(100.0)),
        (tick(1.0), on(0, 67, 90)), // beat 0: the pickup, one beat before the downbeat
        (tick(1.5), off(0, 67)),
        (tick(1.5), on(0, 72, 100)), // beat 1: first downbeat
        (tick(2.625), off(0, 72)),   // beat 3.25
        (tick(0.0), on(0, 48, 80)),  // 2 beats before the first beat (extrapolated)
        (tick(0.25), off(0, 48)),
    ];
    let bytes = single_track(480, events);
    let clip = read_bytes_with_beats(&bytes, &beats).unwrap();
    // The first downbeat starts bar 2 (step 16); the pickup bar holds the earlier notes.
    assert_eq!(spans(&clip), [(4, 48, 2), (12, 67, 4), (16, 72, 9)]);
    assert_eq!(clip.time_signature, TimeSignature::FOUR_FOUR);
    assert!((clip.tempo - 120.0).abs() < 1e-9);
    assert!(clip.tempo_changes.is_empty());
    // Without notes before the downbeat, it is step 0.
    let events = vec![
        (0, tempo(100.0)),
        (tick(1.5), on(0, 72, 100)),
        (tick(2.0), off(0, 72)),
    ];
    let clip = read_bytes_with_beats(&single_track(480, events), &beats).unwrap();
    assert_eq!(spans(&clip), [(0, 72, 4)]);
    assert!(read_bytes_with_beats(&bytes, &beats[..1]).is_err());
}

#[test]
fn bad_input_gives_clear_errors() {
    let good = one_quarter_note(480);
    let message = |bytes: &[u8]| read_bytes(bytes).unwrap_err().to_string();
    assert_eq!(message(&[]), "empty file");
    assert!(message(b"RIFF....WAVEfmt ").contains("not a Standard MIDI File"));
    assert!(message(b"%PDF-1.4 hello").contains("not a Standard MIDI File"));
    for cut in [5, 13, 20, good.len() - 3] {
        let err = message(&good[..cut]);
        assert!(
            err.starts_with("truncated MIDI file"),
            "cut at {cut}: {err}"
        );
    }
    let mut no_tracks = good[..14].to_vec();
    no_tracks[11] = 0;
    assert_eq!(message(&no_tracks), "MIDI file has no tracks");
    let smpte = raw_smf(1, 0xE728, &[0x00, 0xFF, 0x2F, 0x00]); // -25 fps, 40 ticks per frame
    assert_eq!(
        message(&smpte),
        "SMPTE timecode timing (25 frames/s, 40 ticks/frame) is not supported; only ticks per \
         quarter note"
    );
    assert!(message(&raw_smf(1, 0, &[0x00, 0xFF, 0x2F, 0x00])).contains("zero ticks"));
    assert!(message(&raw_smf(3, 96, &[0x00, 0xFF, 0x2F, 0x00])).contains("unknown SMF format 3"));
    // A status byte cut short inside the track (the chunk length itself is right).
    let err = message(&raw_smf(0, 96, &[0x00, 0x90, 60]));
    assert!(err.contains("unreadable event at byte 0"), "{err}");
    let err = message(&raw_smf(0, 96, &[0x00, 0xFF, 0x58, 0x04, 0, 2, 24, 8]));
    assert!(err.contains("invalid time signature 0/2^2"), "{err}");
    for error in [message(&good[..20]), message(&smpte)] {
        assert!(!error.contains('\n'));
    }
}

#[test]
fn absurd_ticks_are_rejected_instead_of_allocating() {
    // A note at tick 2^28 - 1 plus another delta of 2^28 - 1 at PPQ 1: 2^31 steps.
    let big = (1 << 28) - 1;
    let events = vec![
        (0, on(0, 60, 100)),
        (big, on(0, 62, 100)),
        (big * 2, off(0, 62)),
    ];
    let err = read_bytes(&single_track(1, events))
        .unwrap_err()
        .to_string();
    assert!(err.contains("beyond the 10000-bar limit"), "{err}");
    // 10,000 bars exactly is fine.
    let events = vec![(0, on(0, 60, 100)), (40_000 * 4, off(0, 60))];
    let clip = read_bytes(&single_track(4, events)).unwrap();
    assert_eq!(clip.bars, MAX_BARS);
    let events = vec![(0, on(0, 60, 100)), (40_000 * 4 + 1, off(0, 60))];
    assert!(read_bytes(&single_track(4, events)).is_err());
}

#[test]
fn huge_files_are_rejected_by_size() {
    let mut bytes = single_track(480, vec![(0, on(0, 60, 100))]);
    bytes.resize(50 * 1024 * 1024, 0);
    let started = std::time::Instant::now();
    let err = read_bytes(&bytes).unwrap_err().to_string();
    assert!(started.elapsed().as_millis() < 100);
    assert_eq!(
        err,
        "file is 52428800 bytes, more than the 16777216-byte limit for MIDI files"
    );
}

#[test]
fn file_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("bandmate-midi-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("not-midi.mid");
    std::fs::write(&path, b"hello").unwrap();
    let err = read_file(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&path.display().to_string()) && err.contains("not a Standard MIDI File"),
        "{err}"
    );
    let missing = read_file(&dir.join("missing.mid")).unwrap_err().to_string();
    assert!(
        missing.contains("missing.mid") && missing.contains("I/O error"),
        "{missing}"
    );
    // A 50 MB file is rejected from its size, before it is read.
    let huge = dir.join("huge.mid");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(50_000_000)
        .unwrap();
    let started = std::time::Instant::now();
    let err = read_file(&huge).unwrap_err().to_string();
    assert!(started.elapsed().as_millis() < 100);
    assert!(
        err.contains("huge.mid: file is 50000000 bytes, more than the 16777216-byte limit"),
        "{err}"
    );
    let clip = crate::music::example_clip();
    let out = dir.join("example.mid");
    write_file(&clip, &out).unwrap();
    let mut again = read_file(&out).unwrap();
    again.sort_notes();
    assert_eq!(again.notes, clip.notes);
    assert_eq!(again.tempo, clip.tempo);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_near_the_size_limit_imports_in_bounded_time() {
    // 2.7 million one-step notes in 10,000 bars: 16 chords of 17 notes per bar, PPQ 4,
    // written with running status (3 bytes per event).
    let mut track = vec![0x00, 0x90, 0, 0]; // status byte, then dummy note-on/off of key 0
    track.extend_from_slice(&[0x00, 0, 0]);
    for _step in 0..160_000u32 {
        for key in 40..57u8 {
            track.extend_from_slice(&[0x00, key, 100]);
        }
        for (i, key) in (40..57u8).enumerate() {
            track.extend_from_slice(&[u8::from(i == 0), key, 0]);
        }
    }
    track.extend_from_slice(&[0x00, 0xFF, 0x2F, 0x00]);
    let bytes = raw_smf(0, 4, &track);
    assert!(bytes.len() as u64 <= MAX_FILE_BYTES, "{}", bytes.len());
    let started = std::time::Instant::now();
    let clip = read_bytes(&bytes).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(clip.notes.len(), 160_000 * 17);
    assert_eq!(clip.bars, MAX_BARS);
    assert!(elapsed.as_secs() < 10, "{elapsed:?}");
}

#[test]
fn riff_rmid_wrappers_are_unwrapped() {
    let inner = one_quarter_note(96);
    let mut riff = b"RIFF".to_vec();
    riff.extend_from_slice(&(inner.len() as u32 + 20).to_le_bytes());
    riff.extend_from_slice(b"RMIDLIST\x01\0\0\0x\0data"); // an odd-sized chunk, padded
    riff.extend_from_slice(&(inner.len() as u32).to_le_bytes());
    riff.extend_from_slice(&inner);
    assert_eq!(spans(&read_bytes(&riff).unwrap()), [(0, 60, 4)]);
    let err = read_bytes(&riff[..riff.len() - 4]).unwrap_err().to_string();
    assert!(err.contains("RIFF data chunk is cut short"), "{err}");
}
