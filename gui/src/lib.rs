//! The piano-roll editor's widgets (egui). This crate holds no audio code.
//!
//! For now: the editing logic the widget will drive, as values applied to a clip, so that undo
//! and tests need no window.

use bandmate::music::{Clip, Note};

/// One edit of the clip, as the piano roll produces it.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    Add(Note),
    Delete(Note),
    Move {
        note: Note,
        to_start: u32,
        to_pitch: u8,
    },
    Resize {
        note: Note,
        to_length: u32,
    },
}

impl Edit {
    /// Apply to `clip`; returns the edit that undoes it, or `None` if the note was not found.
    pub fn apply(&self, clip: &mut Clip) -> Option<Edit> {
        match *self {
            Edit::Add(n) => {
                clip.notes.push(n);
                Some(Edit::Delete(n))
            }
            Edit::Delete(n) => {
                let i = clip.notes.iter().position(|m| *m == n)?;
                clip.notes.remove(i);
                Some(Edit::Add(n))
            }
            Edit::Move {
                note,
                to_start,
                to_pitch,
            } => {
                let i = clip.notes.iter().position(|m| *m == note)?;
                let moved = Note {
                    start: to_start,
                    pitch: to_pitch.min(127),
                    ..note
                };
                clip.notes[i] = moved;
                Some(Edit::Move {
                    note: moved,
                    to_start: note.start,
                    to_pitch: note.pitch,
                })
            }
            Edit::Resize { note, to_length } => {
                let i = clip.notes.iter().position(|m| *m == note)?;
                let resized = Note {
                    length: to_length.max(1),
                    ..note
                };
                clip.notes[i] = resized;
                Some(Edit::Resize {
                    note: resized,
                    to_length: note.length,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_edit_undoes() {
        let mut clip = Clip::new(1);
        let n = Note::new(0, 60, 4, 100, 0);
        let edits = [
            Edit::Add(n),
            Edit::Move {
                note: n,
                to_start: 4,
                to_pitch: 62,
            },
            Edit::Resize {
                note: Note {
                    start: 4,
                    pitch: 62,
                    ..n
                },
                to_length: 8,
            },
        ];
        let mut undo = Vec::new();
        for e in &edits {
            undo.push(e.apply(&mut clip).expect("note exists"));
        }
        assert_eq!(clip.notes, vec![Note::new(4, 62, 8, 100, 0)]);
        for u in undo.iter().rev() {
            u.apply(&mut clip).expect("undo applies");
        }
        assert!(clip.notes.is_empty());
    }
}
