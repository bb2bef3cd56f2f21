//! The whole editor (toolbar, status, hint and roll) at its default size in a headless egui
//! context: the toolbar rows fit without wrapping, buttons are found by their text on screen
//! and clicked, and the keyboard shortcuts work wherever the pointer is.

use bandmate::music::{Clip, Mask, Note, example_clip};
use bandmate_gui::panels::{DEFAULT_WIDTH, FIRST_RUN_HINT};
use bandmate_gui::{EditorState, editor_ui};
use egui::epaint::Shape;
use egui::{Context, Event, Key, Modifiers, PointerButton, Pos2, RawInput, Rect, pos2, vec2};

#[path = "support/input.rs"]
mod input;

const HEIGHT: f32 = 720.0;

struct Harness {
    ctx: Context,
    time: f64,
    state: EditorState,
    /// Each text drawn in the last frame, with its rectangle.
    texts: Vec<(String, Rect)>,
    /// Width of everything the editor laid out in the last frame.
    used_width: f32,
}

fn collect_texts(shape: &Shape, out: &mut Vec<(String, Rect)>) {
    match shape {
        Shape::Text(t) => out.push((
            t.galley.text().to_owned(),
            t.galley.rect.translate(t.pos.to_vec2()),
        )),
        Shape::Vec(shapes) => shapes.iter().for_each(|s| collect_texts(s, out)),
        _ => {}
    }
}

impl Harness {
    fn new(state: EditorState) -> Self {
        let mut h = Self {
            ctx: Context::default(),
            time: 0.0,
            state,
            texts: Vec::new(),
            used_width: 0.0,
        };
        h.frame(Vec::new());
        h
    }

    fn frame(&mut self, events: Vec<Event>) {
        self.time += 1.0 / 60.0;
        let input = RawInput {
            screen_rect: Some(Rect::from_min_size(Pos2::ZERO, vec2(DEFAULT_WIDTH, HEIGHT))),
            time: Some(self.time),
            events,
            ..Default::default()
        };
        let mut used_width = 0.0;
        let out = self.ctx.run_ui(input, |ui| {
            editor_ui(ui, &mut self.state);
            used_width = ui.min_rect().width();
        });
        self.texts.clear();
        for clipped in &out.shapes {
            collect_texts(&clipped.shape, &mut self.texts);
        }
        out.drop_without_applying_deltas();
        self.used_width = used_width;
    }

    /// Where the text `label` was drawn (the first match).
    fn find(&self, label: &str) -> Option<Rect> {
        self.texts
            .iter()
            .find(|(text, _)| text == label)
            .map(|(_, rect)| *rect)
    }

    /// Where the control `label` was drawn: the last match (a group's name comes first).
    fn find_control(&self, label: &str) -> Option<Rect> {
        self.texts
            .iter()
            .rev()
            .find(|(text, _)| text == label)
            .map(|(_, rect)| *rect)
    }

    fn click_text(&mut self, label: &str) {
        let at = self
            .find_control(label)
            .unwrap_or_else(|| panic!("no '{label}' on screen: {:?}", self.texts))
            .center();
        self.click(at);
    }

    fn click(&mut self, pos: Pos2) {
        self.frame(vec![Event::PointerMoved(pos)]);
        for pressed in [true, false] {
            self.frame(vec![Event::PointerButton {
                pos,
                button: PointerButton::Primary,
                pressed,
                modifiers: Modifiers::NONE,
            }]);
        }
        self.frame(Vec::new());
    }

    fn key(&mut self, key: Key, modifiers: Modifiers) {
        for events in input::key_press(key, modifiers) {
            self.frame(events);
        }
    }
}

const CTRL: Modifiers = Modifiers::COMMAND;
const CTRL_SHIFT: Modifiers = Modifiers {
    shift: true,
    ..Modifiers::COMMAND
};

/// The widest state the toolbar has: three tracks, an A/B pair, a loop range, key lock.
fn busy_state() -> EditorState {
    let mut state = EditorState::new(example_clip());
    let mut other = state.clip.clone();
    other.add_track(bandmate::music::Track::new(
        "Recorded",
        bandmate::music::TrackRole::Melody,
        2,
    ));
    state.accept_result(other, "Fill mask");
    state.mask = Mask::bars(&state.clip, 3..=4);
    state.roll.loop_bars = Some((1, 2));
    state.model.key_lock = true;
    state.model.key = bandmate::music::Key::new(6, bandmate::music::Scale::HarmonicMinor);
    state.model.seed = 9_999;
    state
}

#[test]
fn the_toolbar_fits_the_default_width_in_grouped_rows() {
    let h = Harness::new(busy_state());
    assert!(
        h.used_width <= DEFAULT_WIDTH + 0.5,
        "the editor is {} points wide, more than {DEFAULT_WIDTH}",
        h.used_width
    );
    // One row per group, in order, each name at the left edge.
    let rows: Vec<Rect> = ["Edit", "Generate", "Tracks"]
        .iter()
        .map(|g| h.find(g).unwrap_or_else(|| panic!("no group '{g}'")))
        .collect();
    assert!(rows.iter().all(|r| r.left() < 10.0));
    assert!(rows.windows(2).all(|w| w[0].bottom() <= w[1].top()));
    // The buttons of a group share its row: no wrapping onto a second line.
    for (label, group) in [
        ("Invert mask", 0),
        ("Fill mask", 1),
        ("Interpolate", 1),
        ("Recorded", 2),
        ("A/B: B (new)", 2),
    ] {
        let r = h
            .find_control(label)
            .unwrap_or_else(|| panic!("no '{label}'"));
        let row = rows[group];
        assert!(
            (r.center().y - row.center().y).abs() < 4.0,
            "'{label}' is not on the row of group {group}"
        );
    }
}

#[test]
fn every_toolbar_control_has_a_tooltip() {
    // Hovering each button shows a tooltip with text of its own.
    let mut h = Harness::new(busy_state());
    for label in [
        "Notes",
        "Mask",
        "Undo",
        "Mask selection",
        "Clear mask",
        "Invert mask",
        "Fit",
        "Fill mask",
        "Vary",
        "Harmonize",
        "Continue",
        "Generate",
        "Regenerate voice",
        "Interpolate",
        "Dice",
        "key lock",
        "Melody",
        "A/B: B (new)",
    ] {
        let at = h
            .find_control(label)
            .unwrap_or_else(|| panic!("no '{label}'"))
            .center();
        let before: Vec<String> = h.texts.iter().map(|(t, _)| t.clone()).collect();
        // Tooltips show after the pointer rests a moment.
        h.frame(vec![Event::PointerMoved(at)]);
        for _ in 0..40 {
            h.frame(Vec::new());
        }
        let new_text = h
            .texts
            .iter()
            .any(|(t, _)| t.len() > 3 && !before.contains(t));
        assert!(new_text, "hovering '{label}' shows no tooltip");
        h.frame(vec![Event::PointerMoved(pos2(
            DEFAULT_WIDTH - 2.0,
            HEIGHT - 2.0,
        ))]);
        for _ in 0..5 {
            h.frame(Vec::new());
        }
    }
}

#[test]
fn shortcuts_work_after_a_click_on_the_toolbar() {
    let mut clip = Clip::new(2);
    clip.notes = vec![Note::new(0, 60, 2, 100, 0), Note::new(4, 64, 2, 100, 0)];
    let mut h = Harness::new(EditorState::new(clip));
    // A toolbar button takes the click (and with it, maybe, the keyboard focus).
    h.click_text("Clear mask");
    h.click_text("Notes");

    h.key(Key::A, CTRL);
    assert_eq!(h.state.selection.len(), 2, "Ctrl+A selects all");
    h.key(Key::D, CTRL);
    assert_eq!(h.state.clip.notes.len(), 4, "Ctrl+D duplicates");
    let mut added: Vec<Note> = h.state.clip.notes[2..].to_vec();
    added.sort();
    assert_eq!(
        added,
        vec![Note::new(6, 60, 2, 100, 0), Note::new(10, 64, 2, 100, 0)]
    );
    h.key(Key::Delete, Modifiers::NONE);
    assert_eq!(h.state.clip.notes.len(), 2, "Delete removes the selection");
    h.key(Key::Z, CTRL);
    assert_eq!(h.state.clip.notes.len(), 4, "Ctrl+Z undoes the delete");
    h.key(Key::Z, CTRL);
    assert_eq!(h.state.clip.notes.len(), 2, "Ctrl+Z undoes the duplicate");
    h.key(Key::Z, CTRL_SHIFT);
    assert_eq!(h.state.clip.notes.len(), 4, "Ctrl+Shift+Z redoes");
    h.key(Key::Y, CTRL);
    assert_eq!(h.state.clip.notes.len(), 2, "Ctrl+Y redoes");
    // The Undo button undoes the same history.
    h.click_text("Undo");
    assert_eq!(h.state.clip.notes.len(), 4);
}

#[test]
fn shortcuts_leave_a_number_being_typed_alone() {
    let mut clip = Clip::new(2);
    clip.notes = vec![Note::new(0, 60, 2, 100, 0)];
    let mut h = Harness::new(EditorState::new(clip));
    h.key(Key::A, CTRL);
    assert_eq!(h.state.selection.len(), 1);
    // A click on the seed turns it into a text field: Backspace edits the number there.
    h.click_text("seed ");
    h.key(Key::Backspace, Modifiers::NONE);
    assert_eq!(
        h.state.clip.notes.len(),
        1,
        "Backspace in a text field deleted a note"
    );
}

#[test]
fn the_first_run_hint_shows_until_got_it() {
    let mut h = Harness::new(EditorState::new(example_clip()));
    let hint_shown = |h: &Harness| h.texts.iter().any(|(t, _)| t.starts_with("First steps"));
    assert!(FIRST_RUN_HINT.starts_with("First steps"));
    assert!(hint_shown(&h));
    h.click_text("Got it");
    assert!(!h.state.show_hint);
    assert!(!hint_shown(&h));
}
