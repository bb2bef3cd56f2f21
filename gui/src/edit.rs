//! Edits as values applied to a clip and a mask, and the undo/redo history. No window needed.

use bandmate::music::{Clip, Mask, Note};

/// One edit of the clip or the mask, as the piano roll and the panels produce it.
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
    SetVelocity {
        note: Note,
        to_velocity: u8,
    },
    /// Replace the whole clip (a model result).
    ReplaceClip(Box<Clip>),
    /// Replace the whole mask.
    SetMask(Box<Mask>),
}

impl Edit {
    /// Apply to `clip` (mask edits need [`Edit::apply_to`]); returns the edit that undoes it, or
    /// `None` if the note was not found or the edit is a mask edit.
    pub fn apply(&self, clip: &mut Clip) -> Option<Edit> {
        let find = |clip: &Clip, n: &Note| clip.notes.iter().position(|m| m == n);
        match self {
            Edit::Add(n) => {
                clip.notes.push(*n);
                Some(Edit::Delete(*n))
            }
            Edit::Delete(n) => {
                let i = find(clip, n)?;
                clip.notes.remove(i);
                Some(Edit::Add(*n))
            }
            &Edit::Move {
                note,
                to_start,
                to_pitch,
            } => {
                let i = find(clip, &note)?;
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
            &Edit::Resize { note, to_length } => {
                let i = find(clip, &note)?;
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
            &Edit::SetVelocity { note, to_velocity } => {
                let i = find(clip, &note)?;
                let changed = Note {
                    velocity: to_velocity.clamp(1, 127),
                    ..note
                };
                clip.notes[i] = changed;
                Some(Edit::SetVelocity {
                    note: changed,
                    to_velocity: note.velocity,
                })
            }
            Edit::ReplaceClip(new) => Some(Edit::ReplaceClip(Box::new(std::mem::replace(
                clip,
                (**new).clone(),
            )))),
            Edit::SetMask(_) => None,
        }
    }

    /// Apply to the clip or the mask; returns the edit that undoes it.
    pub fn apply_to(&self, clip: &mut Clip, mask: &mut Mask) -> Option<Edit> {
        match self {
            Edit::SetMask(new) => Some(Edit::SetMask(Box::new(std::mem::replace(
                mask,
                (**new).clone(),
            )))),
            other => other.apply(clip),
        }
    }
}

/// One undoable step: the edits applied in order and their inverses in reverse order.
#[derive(Clone, Debug, PartialEq)]
pub struct UndoStep {
    pub label: String,
    redo: Vec<Edit>,
    undo: Vec<Edit>,
}

/// Undo and redo stacks of [`UndoStep`]s.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    done: Vec<UndoStep>,
    undone: Vec<UndoStep>,
}

impl History {
    /// Apply `edits` as one undo step (edits that do not apply are skipped). Returns whether
    /// anything changed.
    pub fn apply(
        &mut self,
        clip: &mut Clip,
        mask: &mut Mask,
        label: impl Into<String>,
        edits: Vec<Edit>,
    ) -> bool {
        let mut redo = Vec::with_capacity(edits.len());
        let mut undo = Vec::with_capacity(edits.len());
        for e in edits {
            if let Some(inverse) = e.apply_to(clip, mask) {
                undo.push(inverse);
                redo.push(e);
            }
        }
        if redo.is_empty() {
            return false;
        }
        undo.reverse();
        self.done.push(UndoStep {
            label: label.into(),
            redo,
            undo,
        });
        self.undone.clear();
        true
    }

    /// Undo the last step; returns its label.
    pub fn undo(&mut self, clip: &mut Clip, mask: &mut Mask) -> Option<String> {
        move_step(
            &mut self.done,
            &mut self.undone,
            |step| &step.undo,
            clip,
            mask,
        )
    }

    /// Redo the last undone step; returns its label.
    pub fn redo(&mut self, clip: &mut Clip, mask: &mut Mask) -> Option<String> {
        move_step(
            &mut self.undone,
            &mut self.done,
            |step| &step.redo,
            clip,
            mask,
        )
    }

    pub fn can_undo(&self) -> bool {
        !self.done.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.undone.is_empty()
    }

    /// Label of the step [`History::undo`] would undo.
    pub fn undo_label(&self) -> Option<&str> {
        self.done.last().map(|s| s.label.as_str())
    }
}

/// Pops the last step of `from`, applies its `edits` to `clip` and `mask` and pushes it onto
/// `to`; returns its label.
fn move_step(
    from: &mut Vec<UndoStep>,
    to: &mut Vec<UndoStep>,
    edits: fn(&UndoStep) -> &[Edit],
    clip: &mut Clip,
    mask: &mut Mask,
) -> Option<String> {
    let step = from.pop()?;
    for e in edits(&step) {
        e.apply_to(clip, mask);
    }
    let label = step.label.clone();
    to.push(step);
    Some(label)
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
            Edit::SetVelocity {
                note: Note::new(4, 62, 8, 100, 0),
                to_velocity: 50,
            },
        ];
        let mut undo = Vec::new();
        for e in &edits {
            undo.push(e.apply(&mut clip).expect("note exists"));
        }
        assert_eq!(clip.notes, vec![Note::new(4, 62, 8, 50, 0)]);
        for u in undo.iter().rev() {
            u.apply(&mut clip).expect("undo applies");
        }
        assert!(clip.notes.is_empty());
    }

    #[test]
    fn history_undoes_and_redoes_clip_and_mask_steps() {
        let mut clip = Clip::new(2);
        let mut mask = Mask::empty(clip.steps());
        let mut history = History::default();
        let n = Note::new(0, 60, 4, 100, 0);
        assert!(history.apply(&mut clip, &mut mask, "draw", vec![Edit::Add(n)]));
        let painted = Mask::rect(clip.steps(), 0..8, 60..=64);
        history.apply(
            &mut clip,
            &mut mask,
            "paint mask",
            vec![Edit::SetMask(Box::new(painted.clone()))],
        );
        let mut result = clip.clone();
        result.notes.push(Note::new(8, 67, 2, 90, 0));
        history.apply(
            &mut clip,
            &mut mask,
            "fill",
            vec![Edit::ReplaceClip(Box::new(result.clone()))],
        );
        assert_eq!(clip, result);
        assert_eq!(history.undo(&mut clip, &mut mask).as_deref(), Some("fill"));
        assert_eq!(clip.notes, vec![n]);
        assert_eq!(
            history.undo(&mut clip, &mut mask).as_deref(),
            Some("paint mask")
        );
        assert!(mask.is_empty());
        history.redo(&mut clip, &mut mask);
        assert_eq!(mask, painted);
        // a missing note is skipped, so nothing is recorded
        assert!(!history.apply(
            &mut clip,
            &mut mask,
            "x",
            vec![Edit::Delete(Note::new(9, 9, 1, 1, 0))]
        ));
    }
}
