//! Bandmate's piano-roll editor in egui. This crate holds no audio code and no plugin code:
//! the plugin shows [`editor_ui`] over an [`EditorState`] and runs the [`Action`]s it returns.
//!
//! - [`action`]: what the editor asks of the plugin (tasks, their settings).
//! - [`edit`]: edits as values and the undo history, applied without a window.
//! - [`transform`]: (step, pitch) ⇄ screen.
//! - [`piano_roll`]: the widget (see its docs for the mouse, wheel and key bindings).
//! - [`mask_tool`]: painting and drawing masks.
//! - [`panels`]: the toolbar (edit, generate, tracks rows with a tooltip on every control),
//!   model settings, progress, errors, A/B, the first-run hint.

pub mod action;
pub mod edit;
pub mod mask_tool;
pub mod panels;
pub mod piano_roll;
pub mod transform;

pub use action::{Action, ModelSettings, Task};
pub use bandmate::music::STEPS_PER_BEAT;
pub use edit::{Edit, History, UndoStep};
pub use panels::{
    AUTOMATIC_MODEL, AbCompare, EditorState, JobStatus, editor_ui, roll_area, toolbar, toolbar_row,
    track_controls,
};
pub use piano_roll::{PianoRoll, RollOutput, RollSettings, Selection, Snap, Tool};
pub use transform::{RollTransform, View};
