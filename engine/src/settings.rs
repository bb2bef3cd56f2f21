//! Generation defaults shared by the models, the editor, the plugin's parameters and the CLI,
//! kept apart from model code so that the editor can show them without compiling the models.

/// Network evaluations of a roll job at default settings: on the valid split 8, 12, 16 and 25
/// steps score alike (docs/experiments/roll.md), and 12 keeps a one-track 4-bar fill under
/// 250 ms.
pub const DEFAULT_STEPS: usize = 12;
