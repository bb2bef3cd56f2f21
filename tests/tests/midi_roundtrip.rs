//! Import → export → import of every Nottingham and POP909 file gives the same notes.

use std::collections::BTreeMap;
use std::time::Instant;

use bandmate::midi;
use bandmate::music::{Clip, TrackRole};
use bandmate_tests::{data_dir, is_midi, sorted_files};

/// Export `clip`, import it again and compare notes, tracks, meter and tempo.
fn assert_round_trip(name: &str, clip: &Clip) {
    let bytes = midi::write_bytes(clip);
    let mut again = midi::read_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: re-import: {e}"));
    let mut original = clip.clone();
    original.sort_notes();
    again.sort_notes();
    assert_eq!(
        again.notes.len(),
        original.notes.len(),
        "{name}: note count"
    );
    for (a, b) in original.notes.iter().zip(&again.notes) {
        assert_eq!(a, b, "{name}: first differing note");
    }
    assert_eq!(again.tracks, original.tracks, "{name}: tracks");
    assert_eq!(again.time_signature, original.time_signature, "{name}");
    assert_eq!(again.meter_changes, original.meter_changes, "{name}");
    assert_eq!(again.bars, original.bars, "{name}");
    // Tempi go through whole microseconds per quarter note.
    assert!(
        (again.tempo - original.tempo).abs() < 1e-3 * original.tempo,
        "{name}: tempo"
    );
    assert_eq!(
        again.tempo_changes.len(),
        original.tempo_changes.len(),
        "{name}"
    );
}

#[test]
fn every_nottingham_file_round_trips() {
    bandmate_tests::require_data!("nottingham");
    let started = Instant::now();
    let dir = data_dir().join("nottingham/MIDI");
    let files = sorted_files(&dir, is_midi);
    assert!(files.len() >= 1000, "{} Nottingham files", files.len());
    let mut notes = 0;
    let mut meters: BTreeMap<String, usize> = BTreeMap::new();
    for path in &files {
        let clip = midi::read_file(path).unwrap_or_else(|e| panic!("{e}"));
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(!clip.notes.is_empty(), "{name}: no notes");
        assert!(
            clip.notes.iter().all(|n| n.end() <= clip.steps()),
            "{name}: notes beyond bars"
        );
        assert_round_trip(&name, &clip);
        notes += clip.notes.len();
        *meters.entry(clip.time_signature.to_string()).or_default() += 1;
    }
    println!(
        "Nottingham: {} files, {notes} notes round-tripped in {:.1?}; meters {meters:?}",
        files.len(),
        started.elapsed()
    );
    // DATA.md: 4/4 537, 6/8 370, 3/4 60, 2/4 41, other 26.
    assert_eq!(meters.get("4/4"), Some(&537));
    assert_eq!(meters.get("6/8"), Some(&370));
    assert_eq!(meters.get("3/4"), Some(&60));
    assert_eq!(meters.get("2/4"), Some(&41));
}

#[test]
fn every_pop909_song_round_trips_with_its_beats() {
    bandmate_tests::require_data!("pop909");
    let started = Instant::now();
    let dir = data_dir().join("pop909");
    let songs = sorted_files(&dir, |p| p.is_dir());
    assert_eq!(songs.len(), 909);
    let (mut notes, mut onsets_on_beats, mut melody_tracks) = (0usize, 0usize, 0usize);
    // Onsets per beat of the bar in 4/4 songs.
    let mut per_beat = [0usize; 4];
    let mut meters: BTreeMap<String, usize> = BTreeMap::new();
    for song in &songs {
        let id = song.file_name().unwrap().to_string_lossy().to_string();
        let beat_text = std::fs::read_to_string(song.join("beat_midi.txt")).unwrap();
        let beats = midi::parse_beat_file(&beat_text).unwrap_or_else(|e| panic!("{id}: {e}"));
        let bytes = std::fs::read(song.join(format!("{id}.mid"))).unwrap();
        let clip =
            midi::read_bytes_with_beats(&bytes, &beats).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(!clip.notes.is_empty(), "{id}: no notes");
        assert_eq!(clip.time_signature.denominator, 4, "{id}");
        assert_round_trip(&id, &clip);
        notes += clip.notes.len();
        onsets_on_beats += clip.notes.iter().filter(|n| n.start % 4 == 0).count();
        melody_tracks += usize::from(clip.track_with_role(TrackRole::Melody).is_some());
        *meters.entry(clip.time_signature.to_string()).or_default() += 1;
        if clip.time_signature.numerator == 4 {
            for n in clip.notes.iter().filter(|n| n.start % 4 == 0) {
                per_beat[(n.start % 16 / 4) as usize] += 1;
            }
        }
    }
    let on_beat = onsets_on_beats as f64 / notes as f64;
    println!(
        "POP909: {} songs, {notes} notes round-tripped in {:.1?}; {:.1}% of onsets on a beat, \
         {melody_tracks} songs with a melody track; meters {meters:?}; 4/4 onsets on beats 1-4 \
         {per_beat:?}",
        songs.len(),
        started.elapsed(),
        100.0 * on_beat
    );
    // Quarter-note beats are 1 step in 4: beat-aligned quantization puts far more onsets there.
    assert!(on_beat > 0.4, "{on_beat}");
    assert_eq!(melody_tracks, 909);
    // Beat files: column 2 marks every 2nd beat in 880 songs and every 3rd in 29 (3/4).
    assert_eq!(meters.get("4/4"), Some(&880), "{meters:?}");
    assert_eq!(meters.get("3/4"), Some(&29), "{meters:?}");
    // Bars start at downbeats: beat 1 is the busiest beat of the bar, beat 3 the next.
    assert!(
        per_beat[0] > per_beat[1] && per_beat[0] > per_beat[3],
        "{per_beat:?}"
    );
    assert!(
        per_beat[2] > per_beat[1] && per_beat[2] > per_beat[3],
        "{per_beat:?}"
    );
}
