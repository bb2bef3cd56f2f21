//! Bandmate as a plugin. The nice-plug plugin, its parameters, persisted state and the
//! audio-thread scheduler come with the plugin issue; this crate already links the engine and
//! the GUI so the workspace's dependency direction (plugin → gui → engine) is fixed.

pub use bandmate::music::Clip;
pub use bandmate_gui::Edit;
