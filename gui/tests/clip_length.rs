//! The clip-length control's logic: shortening and lengthening a clip in bars as one undo step.

use bandmate::music::{Mask, example_clip};
use bandmate_gui::EditorState;
use bandmate_gui::panels::MAX_BARS;

#[test]
fn shortening_drops_and_trims_notes_and_cuts_the_mask_and_undo_restores_both() {
    let clip = example_clip();
    let mut state = EditorState::new(clip.clone());
    // Bars 3–8 (0-based 2..=7) masked.
    state.mask = Mask::bars(&clip, 2..=7);
    let mask_before = state.mask.clone();
    assert!(state.set_length(4));
    let end = state.clip.steps();
    assert_eq!(state.clip.bars, 4);
    assert_eq!(end, 4 * clip.steps_per_bar());
    assert_eq!(state.mask.steps, end);
    // Every note lies inside the four bars; the ones that started there are all kept.
    assert!(state.clip.notes.iter().all(|n| n.start + n.length <= end));
    let starting_inside = clip.notes.iter().filter(|n| n.start < end).count();
    assert!(
        starting_inside < clip.notes.len(),
        "the example clip has notes after bar 4"
    );
    assert_eq!(state.clip.notes.len(), starting_inside);
    // The mask over bars 3–4 survives the cut, bars 1–2 stay unmasked.
    assert!(state.mask.get(2 * clip.steps_per_bar(), 60));
    assert!(state.mask.get(end - 1, 60));
    assert!(!state.mask.get(2 * clip.steps_per_bar() - 1, 60));
    // One undo brings the whole clip and the mask back.
    assert!(
        state
            .history
            .undo(&mut state.clip, &mut state.mask)
            .is_some()
    );
    assert_eq!(state.clip, clip);
    assert_eq!(state.mask, mask_before);
}

#[test]
fn lengthening_keeps_every_note_and_clamps_to_the_limit() {
    let clip = example_clip();
    let mut state = EditorState::new(clip.clone());
    assert!(!state.set_length(clip.bars), "same length is no edit");
    assert!(!state.history.can_undo());
    assert!(state.set_length(10_000));
    assert_eq!(state.clip.bars, MAX_BARS);
    assert_eq!(state.clip.notes, clip.notes);
    assert_eq!(state.mask.steps, state.clip.steps());
    assert!(state.mask.is_empty());
}

#[test]
fn the_loop_range_is_whole_bars_inside_the_clip_in_either_order() {
    use bandmate_gui::panels::loop_range;
    // Bars 3–4 of an 8-bar clip: first bar 2 (0-based), 2 bars.
    assert_eq!(loop_range(3, 4, 8), (2, 2));
    assert_eq!(loop_range(4, 3, 8), (2, 2));
    // Past the end: cut to the clip; one bar at least.
    assert_eq!(loop_range(6, 20, 8), (5, 3));
    assert_eq!(loop_range(0, 0, 8), (0, 1));
    assert_eq!(loop_range(5, 5, 0), (0, 1));
}
