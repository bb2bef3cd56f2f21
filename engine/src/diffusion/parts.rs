//! The parts of a clip as a parts model sees them: which [`PartRole`] each track plays, and
//! one-voice clean-up for the parts that are lines.

use crate::models::roll::PartRole;
use crate::music::{Clip, Note, TrackRole};

/// The part role of every track of `clip` (`None` for drums): a bass-role track is the bass; the
/// first melody-role track the melody and later ones counter-melodies; an accompaniment-role
/// track named like a second line ("bridge", "counter", "lead 2") a counter-melody, else an
/// accompaniment.
///
/// A clip whose tracks carry no melody role (a MIDI file without track names) gets one by its
/// notes: the highest of the accompaniment tracks that play one line (at least 4 notes, fewer
/// than a tenth starting while another sounds) is the melody, and another such line lying
/// mostly below E3 the bass.
pub fn part_roles(clip: &Clip) -> Vec<Option<PartRole>> {
    let mut roles = declared_roles(clip);
    if roles.contains(&Some(PartRole::Melody)) {
        return roles;
    }
    let lines: Vec<(usize, f64)> = (0..clip.tracks.len())
        .filter(|&t| roles[t] == Some(PartRole::Accompaniment))
        .filter_map(|t| {
            let notes: Vec<&Note> = clip.track_notes(t as u16).collect();
            let overlapping = (0..notes.len())
                .filter(|&i| {
                    let n = notes[i];
                    (0..notes.len())
                        .any(|j| j != i && notes[j].start <= n.start && n.start < notes[j].end())
                })
                .count();
            (notes.len() >= 4 && overlapping * 10 < notes.len()).then(|| {
                let mean = notes.iter().map(|n| n.pitch as f64).sum::<f64>() / notes.len() as f64;
                (t, mean)
            })
        })
        .collect();
    let Some(&(melody, _)) = lines.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
        return roles;
    };
    roles[melody] = Some(PartRole::Melody);
    if !roles.contains(&Some(PartRole::Bass))
        && let Some(&(bass, _)) = lines
            .iter()
            .filter(|&&(t, mean)| t != melody && mean < 52.0)
            .min_by(|a, b| a.1.total_cmp(&b.1))
    {
        roles[bass] = Some(PartRole::Bass);
    }
    roles
}

/// The roles the tracks declare (role and name).
fn declared_roles(clip: &Clip) -> Vec<Option<PartRole>> {
    let mut melody_seen = false;
    clip.tracks
        .iter()
        .map(|t| match t.role {
            TrackRole::Drums => None,
            TrackRole::Bass => Some(PartRole::Bass),
            TrackRole::Melody if !melody_seen => {
                melody_seen = true;
                Some(PartRole::Melody)
            }
            TrackRole::Melody => Some(PartRole::CounterMelody),
            TrackRole::Accompaniment => {
                let name = t.name.to_ascii_lowercase();
                if ["bridge", "counter", "lead 2", "second"]
                    .iter()
                    .any(|k| name.contains(k))
                {
                    Some(PartRole::CounterMelody)
                } else {
                    Some(PartRole::Accompaniment)
                }
            }
        })
        .collect()
}

/// Make `notes` one voice: of notes starting on the same step the highest stays (`lowest`:
/// the lowest, for a bass), and every note ends where the next one starts. Sorted by start.
pub fn one_voice(notes: &mut Vec<Note>, lowest: bool) {
    notes.sort_by_key(|n| (n.start, if lowest { n.pitch } else { u8::MAX - n.pitch }));
    notes.dedup_by_key(|n| n.start);
    for i in 0..notes.len().saturating_sub(1) {
        let next = notes[i + 1].start;
        let n = &mut notes[i];
        if n.end() > next {
            n.length = (next - n.start).max(1);
        }
    }
}

/// Of the notes of one piano-like part, the lowest line (POP909's piano gives its bass this
/// way): a note is a bass note when it is the lowest of the notes starting on its step, lies
/// below `below`, and no lower note of the part is still sounding. Returns (bass, the rest); the
/// bass is one voice.
pub fn split_lowest_line(notes: &[Note], below: u8) -> (Vec<Note>, Vec<Note>) {
    let mut sorted: Vec<Note> = notes.to_vec();
    sorted.sort_by_key(|n| (n.start, n.pitch));
    let mut bass = Vec::new();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i].start;
        let lowest = sorted[i];
        let covered = sorted[..i]
            .iter()
            .any(|m| m.pitch < lowest.pitch && m.end() > start);
        let mut j = i;
        while j < sorted.len() && sorted[j].start == start {
            let n = sorted[j];
            if j == i && lowest.pitch < below && !covered {
                bass.push(n);
            } else {
                rest.push(n);
            }
            j += 1;
        }
        i = j;
    }
    one_voice(&mut bass, true);
    (bass, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::Track;

    #[test]
    fn tracks_get_part_roles() {
        let mut clip = Clip::new(1);
        clip.tracks.clear();
        clip.add_track(Track::new("MELODY", TrackRole::Melody, 0));
        clip.add_track(Track::new("BRIDGE", TrackRole::Accompaniment, 1));
        clip.add_track(Track::new("PIANO", TrackRole::Accompaniment, 2));
        clip.add_track(Track::new("Bass", TrackRole::Bass, 3));
        clip.add_track(Track::new("Drums", TrackRole::Drums, 9));
        clip.add_track(Track::new("Lead", TrackRole::Melody, 4));
        use PartRole::*;
        assert_eq!(
            part_roles(&clip),
            [
                Some(Melody),
                Some(CounterMelody),
                Some(Accompaniment),
                Some(Bass),
                None,
                Some(CounterMelody)
            ]
        );
    }

    #[test]
    fn unnamed_tracks_get_their_roles_from_their_notes() {
        let mut clip = Clip::new(2);
        clip.tracks.clear();
        for c in 0..3 {
            clip.add_track(Track::new(
                format!("Track {}", c + 1),
                TrackRole::Accompaniment,
                c,
            ));
        }
        for i in 0..8u32 {
            clip.notes
                .push(Note::new(i * 4, 72 + (i % 3) as u8, 4, 90, 0)); // a line, high
            clip.notes.push(Note::new(i * 4, 36, 4, 90, 2)); // a line, low
        }
        for bar in 0..2u32 {
            for p in [55, 60, 64] {
                clip.notes.push(Note::new(bar * 16, p, 16, 70, 1)); // chords
            }
        }
        use PartRole::*;
        assert_eq!(
            part_roles(&clip),
            [Some(Melody), Some(Accompaniment), Some(Bass)]
        );
    }

    #[test]
    fn one_voice_keeps_the_top_or_bottom_and_cuts_overlaps() {
        let mut notes = vec![
            Note::new(0, 60, 8, 90, 0),
            Note::new(0, 64, 8, 90, 0),
            Note::new(4, 67, 4, 90, 0),
        ];
        let mut low = notes.clone();
        one_voice(&mut notes, false);
        assert_eq!(
            notes
                .iter()
                .map(|n| (n.start, n.pitch, n.length))
                .collect::<Vec<_>>(),
            [(0, 64, 4), (4, 67, 4)]
        );
        one_voice(&mut low, true);
        assert_eq!(low[0].pitch, 60);
    }

    #[test]
    fn the_lowest_line_of_a_piano_part_is_its_bass() {
        // A root held under a chord, then an arpeggio over it, then a new root.
        let notes = vec![
            Note::new(0, 36, 8, 90, 0),
            Note::new(0, 60, 4, 90, 0),
            Note::new(0, 64, 4, 90, 0),
            Note::new(4, 43, 2, 90, 0), // over the held root: not bass
            Note::new(8, 41, 8, 90, 0),
            Note::new(8, 65, 8, 90, 0),
            Note::new(12, 70, 2, 90, 0), // high: not bass
        ];
        let (bass, rest) = split_lowest_line(&notes, 60);
        assert_eq!(bass.iter().map(|n| n.pitch).collect::<Vec<_>>(), [36, 41]);
        assert_eq!(rest.len(), 5);
    }
}
