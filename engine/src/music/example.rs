//! A small original clip (written for Bandmate, free to use) for demos and as the plugin's
//! first clip: 8 bars in C major, a melody over I–vi–IV–V chords, 100 BPM.

use super::clip::{Clip, Note, Track, TrackRole};

/// The example clip: track 0 melody, track 1 chords.
pub fn example_clip() -> Clip {
    let mut clip = Clip::new(8);
    clip.tempo = 100.0;
    clip.tracks = vec![
        Track::new("Melody", TrackRole::Melody, 0),
        Track::new("Chords", TrackRole::Accompaniment, 1),
    ];
    // (start step within the bar, pitch, length) per bar; two 4-bar phrases.
    let melody: [&[(u32, u8, u32)]; 8] = [
        &[(0, 72, 4), (4, 76, 2), (6, 74, 2), (8, 72, 4), (12, 67, 4)],
        &[(0, 69, 6), (6, 72, 2), (8, 76, 4), (12, 74, 4)],
        &[(0, 72, 2), (2, 69, 2), (4, 65, 4), (8, 69, 4), (12, 72, 4)],
        &[(0, 71, 8), (8, 74, 4), (12, 67, 4)],
        &[(0, 72, 4), (4, 76, 2), (6, 79, 2), (8, 77, 4), (12, 76, 4)],
        &[(0, 76, 2), (2, 74, 2), (4, 72, 4), (8, 69, 8)],
        &[(0, 65, 4), (4, 69, 4), (8, 72, 2), (10, 74, 2), (12, 72, 4)],
        &[(0, 71, 4), (4, 74, 4), (8, 72, 8)],
    ];
    let chords: [[u8; 3]; 4] = [[48, 52, 55], [45, 48, 52], [41, 45, 48], [43, 47, 50]];
    for (bar, notes) in melody.iter().enumerate() {
        let offset = bar as u32 * 16;
        for (i, &(start, pitch, length)) in notes.iter().enumerate() {
            let velocity = if start % 8 == 0 { 100 } else { 84 } - (i as u8 % 2) * 4;
            clip.notes
                .push(Note::new(offset + start, pitch, length, velocity, 0));
        }
        for half in 0..2 {
            for &pitch in &chords[bar % 4] {
                clip.notes
                    .push(Note::new(offset + half * 8, pitch, 8, 72, 1));
            }
        }
    }
    clip.sort_notes();
    clip
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::Key;

    #[test]
    fn the_example_is_in_c_major_and_fills_its_bars() {
        let clip = example_clip();
        assert_eq!(clip.steps(), 128);
        assert!(clip.notes.iter().all(|n| n.end() <= clip.steps()));
        let key = Key::parse("C").unwrap();
        assert!(clip.notes.iter().all(|n| key.contains(n.pitch)));
        // Every bar of the melody is filled from its first to its last step.
        for bar in 0..8 {
            let covered = clip
                .bar_steps(bar)
                .filter(|&s| clip.track_notes(0).any(|n| n.covers(s)))
                .count();
            assert_eq!(covered, 16, "bar {bar}");
        }
    }
}
