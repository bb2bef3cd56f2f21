//! Synthetic egui input shared by the headless GUI tests (included with `#[path]`).

use egui::{Event, Key, Modifiers};

/// The events of two frames that press and release `key` with `modifiers` held: the modifiers
/// and the key down, then the key up and the modifiers let go.
pub fn key_press(key: Key, modifiers: Modifiers) -> [Vec<Event>; 2] {
    let ev = |pressed| Event::Key {
        key,
        physical_key: Some(key),
        pressed,
        repeat: false,
        modifiers,
    };
    [
        vec![Event::ModifiersChanged(modifiers), ev(true)],
        vec![ev(false), Event::ModifiersChanged(Modifiers::NONE)],
    ]
}
