//! Transposition augmentation.

use std::ops::RangeInclusive;

use super::Song;
use crate::music::Key;

/// Transposed copies of `song` for each shift in `semitones`, skipping shifts that would move
/// a pitched note out of `pitch_window` (use `0..=127` for the whole MIDI range).
///
/// Drum tracks are never transposed, so a song without pitched notes yields only its shift 0
/// (when `semitones` contains 0). Copies other than shift 0 get the id `"{id}{shift:+}"`
/// (e.g. `001+3`, `001-2`) and a transposed key.
pub fn transpositions<'a>(
    song: &'a Song,
    semitones: RangeInclusive<i32>,
    pitch_window: RangeInclusive<u8>,
) -> impl Iterator<Item = Song> + 'a {
    let span = song.clip.pitch_span();
    semitones.filter_map(move |shift| {
        let Some((low, high)) = span else {
            return (shift == 0).then(|| song.clone());
        };
        let (low, high) = (low as i32 + shift, high as i32 + shift);
        if low < *pitch_window.start() as i32 || high > *pitch_window.end() as i32 {
            return None;
        }
        if shift == 0 {
            return Some(song.clone());
        }
        let clip = song.clip.transposed(shift)?;
        Some(Song {
            id: format!("{}{shift:+}", song.id),
            clip,
            key: song
                .key
                .map(|k| Key::new((k.tonic as i32 + shift).rem_euclid(12) as u8, k.scale)),
            style: song.style.clone(),
        })
    })
}

/// All transposed copies of all `songs` (see [`transpositions`]), song by song.
pub fn transpose_all(
    songs: &[Song],
    semitones: RangeInclusive<i32>,
    pitch_window: RangeInclusive<u8>,
) -> Vec<Song> {
    songs
        .iter()
        .flat_map(|song| transpositions(song, semitones.clone(), pitch_window.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::{Clip, Note, Scale, Track, TrackRole};

    #[test]
    fn skips_shifts_leaving_the_window_and_keeps_drums() {
        let mut clip = Clip::new(1);
        clip.add_track(Track::new("Drums", TrackRole::Drums, 9));
        clip.notes.push(Note::new(0, 60, 4, 100, 0));
        clip.notes.push(Note::new(0, 72, 4, 100, 0));
        clip.notes.push(Note::new(0, 36, 1, 100, 1));
        let mut song = Song::new("x", clip);
        song.key = Some(Key::new(0, Scale::Major));
        let out: Vec<Song> = transpositions(&song, -3..=3, 58..=74).collect();
        let ids: Vec<&str> = out.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["x-2", "x-1", "x", "x+1", "x+2"]);
        let up = &out[4];
        assert_eq!(up.key, Some(Key::new(2, Scale::Major)));
        let pitches: Vec<u8> = up.clip.notes.iter().map(|n| n.pitch).collect();
        assert_eq!(pitches, [62, 74, 36]);
    }
}
