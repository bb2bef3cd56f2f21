//! The piano roll driven by synthetic pointer and key input through a headless egui context.

use bandmate::music::{Clip, Mask, Note};
use bandmate_gui::piano_roll::{KEYBOARD_WIDTH, RULER_HEIGHT};
use bandmate_gui::{Action, History, PianoRoll, RollSettings, RollTransform, Selection, Tool};
use egui::{
    Context, Event, Key, Modifiers, MouseWheelSource, MouseWheelUnit, PointerButton, Pos2,
    RawInput, Rect, TouchPhase, pos2, vec2,
};

#[path = "support/input.rs"]
mod input;

struct Harness {
    ctx: Context,
    time: f64,
    clip: Clip,
    mask: Mask,
    selection: Selection,
    history: History,
    settings: RollSettings,
    transform: Option<RollTransform>,
    actions: Vec<Action>,
}

impl Harness {
    fn new(clip: Clip) -> Self {
        let mask = Mask::empty(clip.steps());
        let mut h = Self {
            ctx: Context::default(),
            time: 0.0,
            clip,
            mask,
            selection: Selection::new(),
            history: History::default(),
            settings: RollSettings::default(),
            transform: None,
            actions: Vec::new(),
        };
        h.frame(Vec::new());
        h
    }

    fn frame(&mut self, events: Vec<Event>) {
        self.time += 1.0 / 60.0;
        let input = RawInput {
            screen_rect: Some(Rect::from_min_size(Pos2::ZERO, vec2(800.0, 600.0))),
            time: Some(self.time),
            events,
            ..Default::default()
        };
        let mut transform = None;
        let mut actions = Vec::new();
        let out = self.ctx.run_ui(input, |ui| {
            let o = PianoRoll::new(&mut self.clip, &mut self.mask)
                .selection(&mut self.selection)
                .history(&mut self.history)
                .settings(&self.settings)
                .size(vec2(800.0, 600.0))
                .show(ui);
            transform = Some(o.transform);
            actions = o.actions;
        });
        out.drop_without_applying_deltas();
        self.transform = transform;
        self.actions.extend(actions);
    }

    fn t(&self) -> RollTransform {
        self.transform.expect("a frame ran")
    }

    /// Centre of cell (step, pitch).
    fn cell(&self, step: u32, pitch: u8) -> Pos2 {
        self.t().cells_rect(step, 1, pitch).center()
    }

    fn button(&mut self, pos: Pos2, pressed: bool, modifiers: Modifiers) {
        self.frame(vec![
            Event::PointerMoved(pos),
            Event::PointerButton {
                pos,
                button: PointerButton::Primary,
                pressed,
                modifiers,
            },
        ]);
    }

    fn click(&mut self, pos: Pos2, modifiers: Modifiers) {
        self.frame(vec![
            Event::ModifiersChanged(modifiers),
            Event::PointerMoved(pos),
        ]);
        self.button(pos, true, modifiers);
        self.button(pos, false, modifiers);
        self.frame(vec![Event::ModifiersChanged(Modifiers::NONE)]);
    }

    fn drag(&mut self, from: Pos2, to: Pos2, modifiers: Modifiers) {
        self.frame(vec![
            Event::ModifiersChanged(modifiers),
            Event::PointerMoved(from),
        ]);
        self.button(from, true, modifiers);
        for k in 1..=6 {
            let p = from + (to - from) * (k as f32 / 6.0);
            self.frame(vec![Event::PointerMoved(p)]);
        }
        self.button(to, false, modifiers);
        self.frame(vec![Event::ModifiersChanged(Modifiers::NONE)]);
    }

    fn key(&mut self, key: Key, modifiers: Modifiers) {
        for events in input::key_press(key, modifiers) {
            self.frame(events);
        }
    }

    fn wheel(&mut self, at: Pos2, delta_y: f32, modifiers: Modifiers) {
        self.frame(vec![
            Event::PointerMoved(at),
            Event::ModifiersChanged(modifiers),
            Event::MouseWheel {
                unit: MouseWheelUnit::Point,
                delta: vec2(0.0, delta_y),
                phase: TouchPhase::Move,
                source: MouseWheelSource::Wheel,
                modifiers,
            },
        ]);
        self.frame(vec![Event::ModifiersChanged(Modifiers::NONE)]);
    }
}

const CTRL: Modifiers = Modifiers {
    alt: false,
    ctrl: true,
    shift: false,
    mac_cmd: false,
    command: true,
};
const CTRL_SHIFT: Modifiers = Modifiers {
    shift: true,
    ..CTRL
};

#[test]
fn draw_move_resize_delete_and_undo_a_note() {
    let mut h = Harness::new(Clip::new(2));
    h.click(h.cell(4, 64), Modifiers::NONE);
    assert_eq!(h.clip.notes, vec![Note::new(4, 64, 1, 100, 0)]);

    h.drag(h.cell(4, 64), h.cell(8, 66), Modifiers::NONE);
    assert_eq!(h.clip.notes, vec![Note::new(8, 66, 1, 100, 0)]);

    let edge = h.t().cells_rect(8, 1, 66).right_center() - vec2(2.0, 0.0);
    let to = edge + vec2(3.0 * h.t().view.step_width, 0.0);
    h.drag(edge, to, Modifiers::NONE);
    assert_eq!(h.clip.notes, vec![Note::new(8, 66, 4, 100, 0)]);

    h.click(h.cell(9, 66), Modifiers::NONE); // select it
    h.key(Key::Delete, Modifiers::NONE);
    assert!(h.clip.notes.is_empty());

    h.key(Key::Z, CTRL);
    assert_eq!(h.clip.notes, vec![Note::new(8, 66, 4, 100, 0)]);
    h.key(Key::Z, CTRL);
    assert_eq!(h.clip.notes, vec![Note::new(8, 66, 1, 100, 0)]);
    h.key(Key::Z, CTRL);
    h.key(Key::Z, CTRL);
    assert!(h.clip.notes.is_empty());
    h.key(Key::Z, CTRL_SHIFT);
    assert_eq!(h.clip.notes, vec![Note::new(4, 64, 1, 100, 0)]);
}

#[test]
fn snap_sets_the_length_and_grid_of_drawn_notes() {
    let mut h = Harness::new(Clip::new(2));
    h.settings.snap = bandmate_gui::Snap::Quarter;
    h.click(h.cell(6, 60), Modifiers::NONE);
    assert_eq!(h.clip.notes, vec![Note::new(4, 60, 4, 100, 0)]);
}

#[test]
fn rubber_band_selects_and_ctrl_d_duplicates() {
    let mut clip = Clip::new(2);
    clip.notes = vec![
        Note::new(0, 62, 2, 90, 0),
        Note::new(2, 64, 2, 80, 0),
        Note::new(12, 70, 2, 80, 0),
    ];
    let mut h = Harness::new(clip);
    let from = h.t().cells_rect(0, 1, 66).left_top() + vec2(1.0, -3.0);
    let to = h.cell(5, 61);
    h.drag(from, to, Modifiers::NONE);
    assert_eq!(h.selection, Selection::from([0, 1]));
    h.key(Key::D, CTRL);
    let mut notes = h.clip.notes.clone();
    notes.sort();
    assert_eq!(
        notes,
        vec![
            Note::new(0, 62, 2, 90, 0),
            Note::new(2, 64, 2, 80, 0),
            Note::new(4, 62, 2, 90, 0),
            Note::new(6, 64, 2, 80, 0),
            Note::new(12, 70, 2, 80, 0),
        ]
    );
    assert_eq!(h.selection, Selection::from([3, 4]));
    // shift-click adds the far note to the selection, Delete removes all three
    h.click(h.cell(12, 70), Modifiers::SHIFT);
    assert_eq!(h.selection.len(), 3);
    h.key(Key::Backspace, Modifiers::NONE);
    assert_eq!(h.clip.notes.len(), 2);
}

#[test]
fn mask_tool_paints_a_rectangle_and_undo_clears_it() {
    let mut h = Harness::new(Clip::new(2));
    h.settings.tool = Tool::Mask;
    h.drag(h.cell(2, 60), h.cell(5, 62), Modifiers::NONE);
    assert_eq!(h.mask.count(), 4 * 3);
    assert!(h.mask.get(2, 60) && h.mask.get(5, 62) && !h.mask.get(6, 62) && !h.mask.get(2, 63));
    // Alt-drag erases part of it
    h.drag(h.cell(2, 60), h.cell(3, 62), Modifiers::ALT);
    assert_eq!(h.mask.count(), 2 * 3);
    h.key(Key::Z, CTRL);
    assert_eq!(h.mask.count(), 4 * 3);
    h.key(Key::Z, CTRL);
    assert!(h.mask.is_empty());
    assert!(h.clip.notes.is_empty());
}

#[test]
fn ruler_drag_masks_bars_and_keyboard_click_auditions() {
    let mut h = Harness::new(Clip::new(4));
    let t = h.t();
    let y = RULER_HEIGHT / 2.0;
    h.drag(
        pos2(t.step_to_x(17.0), y),
        pos2(t.step_to_x(40.0), y),
        Modifiers::NONE,
    );
    assert_eq!(h.mask, Mask::bars(&h.clip, 1..=2));

    let key_y = t.cells_rect(0, 1, 67).center().y;
    h.click(pos2(KEYBOARD_WIDTH / 2.0, key_y), Modifiers::NONE);
    assert_eq!(
        h.actions,
        vec![Action::Audition {
            pitch: 67,
            velocity: 100
        }]
    );
}

#[test]
fn wheel_scrolls_pitch_and_ctrl_wheel_zooms_time() {
    let mut h = Harness::new(Clip::new(4));
    let before = h.t().view;
    let at = h.cell(16, 64);
    h.wheel(at, -40.0, Modifiers::NONE);
    let scrolled = h.t().view;
    assert!(scrolled.top_pitch < before.top_pitch);
    assert_eq!(scrolled.step_width, before.step_width);
    let step_under = h.t().x_to_step(at.x);
    h.wheel(at, 100.0, CTRL);
    let zoomed = h.t().view;
    assert!(zoomed.step_width > before.step_width * 1.3);
    // the step under the pointer stays put
    assert!((h.t().x_to_step(at.x) - step_under).abs() < 0.01);
    h.wheel(at, -30.0, Modifiers::SHIFT);
    assert!(h.t().view.first_step > zoomed.first_step);
}
