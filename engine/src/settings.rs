//! Generation defaults shared by the models, the editor, the plugin's parameters and the CLI,
//! kept apart from model code so that the editor can show them without compiling the models.

/// Network evaluations of a roll job at default settings: on the valid split 8, 12, 16 and 25
/// steps score alike (docs/experiments/roll.md), and 12 keeps a one-track 4-bar fill under
/// 250 ms.
pub const DEFAULT_STEPS: usize = 12;

/// The fewest network evaluations a part gets when a request shares its steps among tracks.
pub const MIN_PART_STEPS: usize = 4;

/// Network evaluations of each part's pass when a request of `steps` rewrites `tracks` tracks:
/// the steps shared among the tracks, at least [`MIN_PART_STEPS`] each and never more than
/// asked. An accompaniment written as its lowest line and then the rest counts as one track
/// (both passes get the share).
pub fn steps_per_part(steps: usize, tracks: usize) -> usize {
    (steps / tracks.max(1)).max(MIN_PART_STEPS).min(steps)
}
