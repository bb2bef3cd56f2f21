//! The whole editor (toolbar, status, hint and roll) at its default size in a headless egui
//! context: the toolbar rows fit without wrapping, buttons are found by their text on screen
//! and clicked, and the keyboard shortcuts work wherever the pointer is.

use bandmate::music::{Clip, Mask, Note, example_clip};
use bandmate_gui::panels::{DEFAULT_WIDTH, FIRST_RUN_HINT, JobStatus};
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

/// A control (interactive widget) of the last frame.
#[derive(Clone, Copy, Debug)]
struct Control {
    rect: Rect,
    enabled: bool,
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

    /// Every control of the toolbar rows in the last frame, as egui registered it: the widgets
    /// that take clicks or drags and the keyboard focus (buttons, checkboxes, combo boxes,
    /// sliders, number fields; not labels, whose text senses clicks only to be selected), enabled
    /// or not, row by row from the left.
    fn toolbar_controls(&self) -> Vec<Control> {
        let tracks = self.find("Tracks").expect("no Tracks row");
        let bottom = tracks.center().y + self.ctx.global_style().spacing.interact_size.y / 2.0;
        let mut controls: Vec<Control> = bandmate_gui::panels::controls_above(&self.ctx, bottom)
            .into_iter()
            .map(|(rect, enabled)| Control { rect, enabled })
            .collect();
        controls.sort_by(|a, b| {
            let key = |c: &Control| ((c.rect.center().y / 4.0).round(), c.rect.left());
            key(a).partial_cmp(&key(b)).unwrap()
        });
        controls
    }

    /// The texts drawn inside `rect` (a control's own label or value).
    fn texts_in(&self, rect: Rect) -> Vec<String> {
        self.texts
            .iter()
            .filter(|(_, r)| rect.contains(r.center()))
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The toolbar control `at` points to.
    fn locate(&self, at: At) -> Control {
        let controls = self.toolbar_controls();
        let text = |pred: &dyn Fn(&str) -> bool| {
            self.texts
                .iter()
                .rev()
                .find(|(t, r)| pred(t) && controls.iter().any(|c| c.rect.contains(r.center())))
                .or_else(|| self.texts.iter().find(|(t, _)| pred(t)))
                .map(|(_, r)| *r)
                .unwrap_or_else(|| panic!("no {at:?} on screen: {:?}", self.texts))
        };
        let containing = |r: Rect| {
            controls
                .iter()
                .find(|c| c.rect.contains(r.center()))
                .copied()
                .unwrap_or_else(|| panic!("{at:?} is not on a control"))
        };
        match at {
            At::Text(label) => containing(text(&|t| t == label)),
            At::Prefix(prefix) => containing(text(&|t| t.starts_with(prefix))),
            At::Beside(label, n) => {
                let anchor = text(&|t| t == label);
                let row: Vec<&Control> = controls
                    .iter()
                    .filter(|c| (c.rect.center().y - anchor.center().y).abs() < 4.0)
                    .collect();
                let found = if n > 0 {
                    row.iter()
                        .filter(|c| c.rect.left() >= anchor.right() - 1.0)
                        .nth(n as usize - 1)
                } else {
                    row.iter()
                        .rev()
                        .filter(|c| c.rect.right() <= anchor.left() + 1.0)
                        .nth((-n) as usize - 1)
                };
                **found.unwrap_or_else(|| panic!("no control {n} beside '{label}'"))
            }
        }
    }

    /// Rest the pointer on the middle of `control` until its tooltip shows, and check that it
    /// does: a tooltip of the widget under the pointer (or of the widget it is part of), with
    /// text that was not on screen before (so not the control's own label). Then move the
    /// pointer off the toolbar.
    fn assert_tooltip(&mut self, what: &str, control: Control) {
        let at = control.rect.center();
        let before: Vec<String> = self.texts.iter().map(|(t, _)| t.clone()).collect();
        let own = self.texts_in(control.rect);
        // Tooltips show after the pointer rests a moment.
        self.frame(vec![Event::PointerMoved(at)]);
        for _ in 0..40 {
            self.frame(Vec::new());
        }
        assert!(
            bandmate_gui::panels::shows_tooltip_of(&self.ctx, control.rect),
            "hovering {what} shows no tooltip of its own"
        );
        let tooltip: Vec<&String> = self
            .texts
            .iter()
            .map(|(t, _)| t)
            .filter(|t| !before.contains(t) && !own.contains(t))
            .collect();
        assert!(
            tooltip.iter().any(|t| t.trim().len() > 3),
            "hovering {what} shows no tooltip text ({tooltip:?})"
        );
        self.frame(vec![Event::PointerMoved(pos2(
            DEFAULT_WIDTH - 2.0,
            HEIGHT - 2.0,
        ))]);
        for _ in 0..5 {
            self.frame(Vec::new());
        }
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

/// A toolbar control in the explicit list: where to find it on screen.
#[derive(Clone, Copy, Debug)]
enum At {
    /// The control showing exactly this text.
    Text(&'static str),
    /// The control whose text starts so (a number field, a slider's value).
    Prefix(&'static str),
    /// The `n`-th control to the right (`n > 0`) or left (`n < 0`) on the row of this text.
    Beside(&'static str, i32),
}

#[test]
fn every_toolbar_control_has_a_tooltip() {
    // Each control of the toolbar, named: hovering it shows a tooltip with text of its own.
    // The widest state: a loop range, an A/B pair, three tracks (only Redo is disabled here:
    // it shows why).
    let mut h = Harness::new(busy_state());
    let controls = [
        // Edit row.
        At::Text("Notes"),
        At::Text("Mask"),
        At::Text("snap 1/16"),
        At::Text("Undo"),
        At::Text("Redo"),
        At::Text("Mask selection"),
        At::Text("Clear mask"),
        At::Text("Invert mask"),
        At::Text("Fit"),
        At::Prefix("length "),
        At::Text("loop"),
        At::Beside("loop", 1),
        At::Beside("loop", 2),
        // Generate row: the actions, the Vary and Interpolate sliders (no text of their own),
        // the bars Continue appends.
        At::Text("Fill mask"),
        At::Text("Vary"),
        At::Beside("Vary", 1),
        At::Text("Harmonize"),
        At::Text("Continue"),
        At::Beside("Continue", 1),
        At::Text("Generate"),
        At::Text("Regenerate voice"),
        At::Text("Interpolate"),
        At::Beside("Interpolate", 1),
        // The model and its sampling settings.
        At::Text(bandmate_gui::panels::AUTOMATIC_MODEL),
        At::Prefix("steps "),
        // The temp, density and repeat sliders, each with its value field.
        At::Beside("temp", -2),
        At::Beside("temp", -1),
        At::Beside("density", -2),
        At::Beside("density", -1),
        At::Beside("repeat", -2),
        At::Beside("repeat", -1),
        At::Prefix("seed "),
        At::Text("Dice"),
        // Key lock and pitch range.
        At::Text("key lock"),
        At::Text("F#"),
        At::Text("harmonic minor"),
        At::Text("Detect"),
        At::Beside("pitch", 1),
        At::Beside("pitch", 2),
        // Tracks row: a track's visibility, its name, A/B.
        At::Beside("Melody", -1),
        At::Text("Melody"),
        At::Text("A/B: B (new)"),
    ];
    let all = h.toolbar_controls();
    for at in controls {
        let control = h.locate(at);
        assert!(
            all.iter().any(|c| c.rect == control.rect),
            "{at:?} is not a control of the toolbar"
        );
        h.assert_tooltip(&format!("{at:?}"), control);
    }
    // Redo enabled (after an undo) explains itself too.
    h.click_text("Undo");
    let redo = h.locate(At::Text("Redo"));
    assert!(redo.enabled);
    h.assert_tooltip("Redo (enabled)", redo);
}

#[test]
fn every_interactive_toolbar_widget_has_a_tooltip() {
    // Every control egui registered in the toolbar rows (buttons, checkboxes, combo boxes,
    // sliders, number fields), enabled or not, without naming them: a control added later is
    // covered too. Four states between them enable and disable every control that the clip,
    // the mask, the undo history and a running job (which disables the model actions) can.
    let empty = EditorState::new(Clip::new(2));
    let mut undone = Harness::new(busy_state());
    undone.click_text("Undo");
    let mut running = busy_state();
    running.job = JobStatus::Running {
        label: "Fill mask".into(),
        progress: 0.5,
    };
    for (name, mut h) in [
        ("busy", Harness::new(busy_state())),
        ("after an undo", undone),
        ("empty clip", Harness::new(empty)),
        ("a job running", Harness::new(running)),
    ] {
        let controls = h.toolbar_controls();
        // None went unseen: the smallest state (one track, no loop range, no A/B) has 39.
        assert!(
            controls.len() >= 39,
            "{name}: only {} controls found",
            controls.len()
        );
        for control in controls {
            let what = format!(
                "{name}: the control {:?} at {:?}",
                h.texts_in(control.rect),
                control.rect
            );
            h.assert_tooltip(&what, control);
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
