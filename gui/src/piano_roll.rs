//! The piano-roll widget: allocate → interact → paint. Zoom and scroll live in egui memory
//! under the widget id ([`View`]); the clip, mask, selection and history are the caller's.
//!
//! Mouse: click on an empty cell draws a note of the snap length on the edit track; click a
//! note selects it (Shift toggles); drag on empty grid is a rubber band; drag a note moves the
//! selection; drag a note's right edge resizes; right-click deletes. Keyboard at the left: click
//! auditions. Ruler: click or drag picks bars for the mask (Shift adds). Velocity lane: drag a
//! stem. Mask tool: drag paints a time × pitch rectangle (Alt or right-drag erases).
//! Wheel (DAW-like, as in Bitwig and Reaper): wheel scrolls pitch, Shift+wheel (or a horizontal
//! wheel) scrolls time, Ctrl+wheel zooms time around the pointer, Ctrl+Shift+wheel zooms pitch.
//! Keys: Delete/Backspace delete, Ctrl+D duplicate, Ctrl+A select all, Ctrl+Z undo,
//! Ctrl+Shift+Z or Ctrl+Y redo, F fits the view to the clip (Cmd instead of Ctrl on macOS).
//! The roll takes them when it has the keyboard focus or is hovered with nothing focused, or,
//! with [`PianoRoll::keys_anywhere`], whenever no text field is being typed into.

use crate::action::Action;
use crate::edit::{Edit, History};
use crate::mask_tool;
use crate::transform::{RollTransform, View};
use bandmate::music::{Clip, Mask, Note};
use egui::{
    Align2, Color32, Event, FontId, IdSalt, Key, Mesh, Modifiers, MouseWheelUnit, PointerButton,
    Pos2, Rect, Response, Sense, Shape, Stroke, StrokeKind, Ui, Vec2, pos2, vec2,
};
use std::collections::BTreeSet;

/// Indices into `clip.notes` of the selected notes.
pub type Selection = BTreeSet<usize>;

/// Width of the keyboard strip at the left.
pub const KEYBOARD_WIDTH: f32 = 44.0;
/// Height of the bar/beat ruler at the top.
pub const RULER_HEIGHT: f32 = 20.0;
/// Height of the velocity lane at the bottom.
pub const VELOCITY_LANE_HEIGHT: f32 = 56.0;
/// Points from a note's right edge that grab it for resizing.
const RESIZE_GRIP: f32 = 5.0;

/// What a grid drag does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Tool {
    /// Draw, select, move, resize notes.
    #[default]
    Notes,
    /// Paint mask rectangles.
    Mask,
}

/// Grid snap for drawing, moving and resizing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Snap {
    #[default]
    Sixteenth,
    Eighth,
    Quarter,
    /// The clip's own resolution (a 16th step), moves keep their offset from the grid.
    Off,
}

impl Snap {
    pub const ALL: [Snap; 4] = [Snap::Sixteenth, Snap::Eighth, Snap::Quarter, Snap::Off];

    /// Snap length in grid steps.
    pub fn steps(self) -> u32 {
        match self {
            Snap::Sixteenth | Snap::Off => 1,
            Snap::Eighth => 2,
            Snap::Quarter => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Snap::Sixteenth => "1/16",
            Snap::Eighth => "1/8",
            Snap::Quarter => "1/4",
            Snap::Off => "off",
        }
    }

    /// `step` rounded down to the snap grid.
    pub fn floor(self, step: u32) -> u32 {
        match self {
            Snap::Off => step,
            s => step / s.steps() * s.steps(),
        }
    }
}

/// Settings of the roll that are not the clip: tool, snap, tracks.
#[derive(Clone, Debug, PartialEq)]
pub struct RollSettings {
    pub tool: Tool,
    pub snap: Snap,
    /// Track new notes go to and the only one whose notes can be picked.
    pub edit_track: u16,
    /// Tracks not drawn.
    pub hidden_tracks: BTreeSet<u16>,
    pub velocity_lane: bool,
    /// Velocity of drawn notes.
    pub draw_velocity: u8,
    /// The bars that loop while the host plays: (first bar, 0-based; number of bars); `None`
    /// loops the whole clip. Drawn on the ruler.
    pub loop_bars: Option<(u32, u32)>,
}

impl Default for RollSettings {
    fn default() -> Self {
        Self {
            tool: Tool::Notes,
            snap: Snap::Sixteenth,
            edit_track: 0,
            hidden_tracks: BTreeSet::new(),
            velocity_lane: true,
            draw_velocity: 100,
            loop_bars: None,
        }
    }
}

/// What [`PianoRoll::show`] returns.
pub struct RollOutput {
    pub response: Response,
    /// Auditions for the host.
    pub actions: Vec<Action>,
    /// Whether the clip, the mask or the selection changed this frame.
    pub changed: bool,
    /// The grid's mapping this frame.
    pub transform: RollTransform,
}

/// The piano-roll widget over a clip and its mask.
pub struct PianoRoll<'a> {
    clip: &'a mut Clip,
    mask: &'a mut Mask,
    selection: Option<&'a mut Selection>,
    history: Option<&'a mut History>,
    settings: RollSettings,
    size: Option<Vec2>,
    fit: bool,
    id_salt: IdSalt,
    keys_anywhere: bool,
}

/// A drag in progress, kept in egui memory between frames.
#[derive(Clone, Debug)]
enum Drag {
    Move {
        origin: Pos2,
        originals: Vec<(usize, Note)>,
    },
    Resize {
        origin: Pos2,
        originals: Vec<(usize, Note)>,
    },
    Rubber {
        origin: Pos2,
    },
    Mask {
        origin: (u32, u8),
        erase: bool,
    },
    Ruler {
        origin_bar: u32,
        add: bool,
    },
    Velocity {
        originals: Vec<(usize, Note)>,
    },
}

/// The sub-rectangles of the widget.
#[derive(Clone, Copy)]
struct Layout {
    ruler: Rect,
    keyboard: Rect,
    grid: Rect,
    lane: Option<Rect>,
}

impl Layout {
    fn new(rect: Rect, lane: bool) -> Self {
        let lane_h = if lane { VELOCITY_LANE_HEIGHT } else { 0.0 };
        let left = rect.left() + KEYBOARD_WIDTH;
        let top = rect.top() + RULER_HEIGHT;
        let bottom = (rect.bottom() - lane_h).max(top + 10.0);
        Self {
            ruler: Rect::from_min_max(pos2(left, rect.top()), pos2(rect.right(), top)),
            keyboard: Rect::from_min_max(pos2(rect.left(), top), pos2(left, bottom)),
            grid: Rect::from_min_max(pos2(left, top), pos2(rect.right(), bottom)),
            lane: lane.then(|| Rect::from_min_max(pos2(left, bottom), rect.right_bottom())),
        }
    }
}

/// Colour of a track's notes.
pub fn track_color(track: u16) -> Color32 {
    const PALETTE: [Color32; 8] = [
        Color32::from_rgb(92, 170, 255),
        Color32::from_rgb(255, 150, 70),
        Color32::from_rgb(110, 210, 120),
        Color32::from_rgb(235, 95, 140),
        Color32::from_rgb(190, 140, 255),
        Color32::from_rgb(240, 210, 80),
        Color32::from_rgb(80, 210, 200),
        Color32::from_rgb(200, 200, 200),
    ];
    PALETTE[track as usize % PALETTE.len()]
}

/// A note's fill: the track colour, darker for softer notes.
fn note_fill(note: &Note) -> Color32 {
    let c = track_color(note.track);
    let k = 0.35 + 0.65 * note.velocity as f32 / 127.0;
    let s = |v: u8| (v as f32 * k) as u8;
    Color32::from_rgb(s(c.r()), s(c.g()), s(c.b()))
}

fn is_black_key(pitch: u8) -> bool {
    matches!(pitch % 12, 1 | 3 | 6 | 8 | 10)
}

/// The view that shows the whole clip (its pitch span, padded) in `grid`.
pub fn fit_view(clip: &Clip, grid: Rect) -> View {
    let (lo, hi) = clip.pitch_span().unwrap_or((60, 72));
    let (lo, hi) = (lo.saturating_sub(3), (hi + 4).min(128));
    let rows = (hi - lo).max(12) as f32;
    View {
        first_step: 0.0,
        top_pitch: (lo as f32 + rows).min(128.0),
        step_width: grid.width() / clip.steps().max(1) as f32,
        row_height: grid.height() / rows,
    }
}

fn clamp_view(view: &mut View, grid: Rect, clip: &Clip) {
    view.step_width = view.step_width.clamp(0.5, 200.0);
    view.row_height = view.row_height.clamp(2.0, 48.0);
    let rows = grid.height() / view.row_height;
    view.top_pitch = view.top_pitch.clamp(rows.min(128.0), 128.0);
    let steps = clip.steps() as f32;
    view.first_step = view.first_step.clamp(-4.0, steps.max(1.0));
}

impl<'a> PianoRoll<'a> {
    pub fn new(clip: &'a mut Clip, mask: &'a mut Mask) -> Self {
        Self {
            clip,
            mask,
            selection: None,
            history: None,
            settings: RollSettings::default(),
            size: None,
            fit: false,
            id_salt: IdSalt::new("bandmate_piano_roll"),
            keys_anywhere: false,
        }
    }

    /// Take the keyboard shortcuts whenever no text field is being typed into, not only when
    /// the roll has the focus or the pointer (the editor's setting: a click on a toolbar
    /// button must not turn Ctrl+Z off).
    pub fn keys_anywhere(mut self, on: bool) -> Self {
        self.keys_anywhere = on;
        self
    }

    /// Keep the selection here (otherwise it lasts one frame).
    pub fn selection(mut self, selection: &'a mut Selection) -> Self {
        self.selection = Some(selection);
        self
    }

    /// Record edits here, and take Ctrl+Z / Ctrl+Shift+Z.
    pub fn history(mut self, history: &'a mut History) -> Self {
        self.history = Some(history);
        self
    }

    pub fn settings(mut self, settings: &RollSettings) -> Self {
        self.settings = settings.clone();
        self
    }

    /// Size of the widget; the available size by default.
    pub fn size(mut self, size: Vec2) -> Self {
        self.size = Some(size);
        self
    }

    /// Fit the view to the clip this frame.
    pub fn fit(mut self, fit: bool) -> Self {
        self.fit = fit;
        self
    }

    pub fn id_salt(mut self, salt: impl egui::AsIdSalt) -> Self {
        self.id_salt = IdSalt::new(salt);
        self
    }

    pub fn show(self, ui: &mut Ui) -> RollOutput {
        let PianoRoll {
            clip,
            mask,
            selection,
            history,
            settings,
            size,
            fit,
            id_salt,
            keys_anywhere,
        } = self;
        let mut local_selection = Selection::new();
        let selection = selection.unwrap_or(&mut local_selection);
        let mut local_history = History::default();
        let history = history.unwrap_or(&mut local_history);
        if mask.steps != clip.steps() {
            *mask = mask.resized(clip.steps());
        }
        selection.retain(|&i| i < clip.notes.len());

        // 1. size and allocate
        let size = size.unwrap_or_else(|| ui.available_size().max(vec2(200.0, 120.0)));
        let (rect, mut response) = ui.allocate_exact_size(size, Sense::click_and_drag());
        let id = response.id.with_salt(id_salt);
        let layout = Layout::new(rect, settings.velocity_lane);
        let view_id = id.with("view");
        let drag_id = id.with("drag");
        let stored: Option<View> = ui.data(|d| d.get_temp(view_id));
        let mut view = match stored {
            Some(v) if !fit => v,
            _ => fit_view(clip, layout.grid),
        };

        // 2. interact
        let mut ctx = Interaction {
            clip,
            mask,
            selection,
            history,
            settings: &settings,
            layout,
            actions: Vec::new(),
            changed: false,
        };
        if response.is_pointer_button_down_on() && !response.has_focus() {
            response.request_focus();
        }
        if response.hovered() {
            ctx.wheel(ui, &mut view);
        }
        clamp_view(&mut view, layout.grid, ctx.clip);
        let t = RollTransform::new(layout.grid, view);
        let mut drag: Option<Drag> = ui.data(|d| d.get_temp(drag_id));
        ctx.pointer(ui, &response, &t, &mut drag);
        let keys_for_us = response.has_focus()
            || (response.hovered() && ui.memory(|m| m.focused().is_none()))
            || (keys_anywhere && !ui.ctx().text_edit_focused());
        if keys_for_us && drag.is_none() && ctx.keys(ui) {
            view = fit_view(ctx.clip, layout.grid);
        }
        ui.data_mut(|d| {
            d.insert_temp(view_id, view);
            match &drag {
                Some(g) => {
                    d.insert_temp(drag_id, g.clone());
                }
                None => {
                    d.remove::<Drag>(drag_id);
                }
            }
        });
        if ctx.changed {
            response.mark_changed();
        }

        // 3. paint
        let transform = RollTransform::new(layout.grid, view);
        if ui.is_rect_visible(rect) {
            let pointer = ui.input(|i| i.pointer.interact_pos());
            paint(ui, &ctx, &transform, drag.as_ref(), pointer);
        }
        RollOutput {
            response,
            actions: ctx.actions,
            changed: ctx.changed,
            transform,
        }
    }
}

struct Interaction<'c> {
    clip: &'c mut Clip,
    mask: &'c mut Mask,
    selection: &'c mut Selection,
    history: &'c mut History,
    settings: &'c RollSettings,
    layout: Layout,
    actions: Vec<Action>,
    changed: bool,
}

impl Interaction<'_> {
    fn visible(&self, note: &Note) -> bool {
        !self.settings.hidden_tracks.contains(&note.track)
    }

    /// Topmost editable note under `pos`, and whether `pos` is on its resize grip.
    fn note_at(&self, t: &RollTransform, pos: Pos2) -> Option<(usize, bool)> {
        self.clip
            .notes
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, n)| n.track == self.settings.edit_track && self.visible(n))
            .find_map(|(i, n)| {
                let r = t.cells_rect(n.start, n.length, n.pitch);
                r.contains(pos)
                    .then(|| (i, pos.x >= r.right() - RESIZE_GRIP.min(r.width() * 0.4)))
            })
    }

    fn commit(&mut self, label: &str, edits: Vec<Edit>) {
        if self.history.apply(self.clip, self.mask, label, edits) {
            self.changed = true;
        }
    }

    fn wheel(&mut self, ui: &Ui, view: &mut View) {
        let grid = self.layout.grid;
        let (events, hover) = ui.input(|i| (i.raw.events.clone(), i.pointer.hover_pos()));
        let anchor = hover.unwrap_or(grid.center());
        for e in events {
            let (delta, mods) = match e {
                Event::MouseWheel {
                    unit,
                    delta,
                    modifiers,
                    ..
                } => {
                    let scale = match unit {
                        MouseWheelUnit::Point => 1.0,
                        MouseWheelUnit::Line => 40.0,
                        MouseWheelUnit::Page => grid.height(),
                    };
                    (delta * scale, modifiers)
                }
                Event::Zoom(factor) => {
                    zoom_time(view, grid, anchor.x, factor);
                    continue;
                }
                _ => continue,
            };
            if mods.command || mods.ctrl {
                let amount = if delta.y != 0.0 { delta.y } else { delta.x };
                let factor = (amount * 0.005).exp();
                if mods.shift {
                    let t = RollTransform::new(grid, *view);
                    let p = t.y_to_pitch(anchor.y);
                    view.row_height *= factor;
                    view.top_pitch = p + (anchor.y - grid.top()) / view.row_height;
                } else {
                    zoom_time(view, grid, anchor.x, factor);
                }
            } else if mods.shift || delta.x != 0.0 {
                let dx = if delta.x != 0.0 { delta.x } else { delta.y };
                view.first_step -= dx / view.step_width;
            } else {
                view.top_pitch += delta.y / view.row_height;
            }
        }
    }

    fn pointer(
        &mut self,
        ui: &Ui,
        response: &Response,
        t: &RollTransform,
        drag: &mut Option<Drag>,
    ) {
        let (origin, current, mods, secondary) = ui.input(|i| {
            (
                i.pointer.press_origin(),
                i.pointer.interact_pos(),
                i.modifiers,
                i.pointer.button_down(PointerButton::Secondary),
            )
        });
        let layout = self.layout;
        let snap = self.settings.snap;

        if response.drag_started() {
            *drag = origin.and_then(|o| self.start_drag(t, o, mods, secondary));
        }
        if let (Some(g), Some(p)) = (drag.as_ref(), current) {
            match g {
                Drag::Move { origin, originals } => {
                    let (ds, dp) = move_delta(t, *origin, p, snap);
                    for &(i, n) in originals {
                        if let Some(slot) = self.clip.notes.get_mut(i) {
                            *slot = moved(n, ds, dp);
                        }
                    }
                }
                Drag::Resize { origin, originals } => {
                    let ds = move_delta(t, *origin, p, snap).0;
                    for &(i, n) in originals {
                        if let Some(slot) = self.clip.notes.get_mut(i) {
                            slot.length = (n.length as i64 + ds).max(1) as u32;
                        }
                    }
                }
                Drag::Velocity { originals } => {
                    if let Some(lane) = layout.lane {
                        let v = velocity_at(lane, p.y);
                        for &(i, _) in originals {
                            if let Some(slot) = self.clip.notes.get_mut(i) {
                                slot.velocity = v;
                            }
                        }
                    }
                }
                Drag::Rubber { .. } | Drag::Mask { .. } | Drag::Ruler { .. } => {}
            }
        }
        if response.drag_stopped() {
            if let (Some(g), Some(p)) = (drag.take(), current) {
                self.finish_drag(t, g, p);
            } else if let Some(g) = drag.take() {
                self.restore(&g);
            }
        }
        if (response.clicked() || response.secondary_clicked())
            && let Some(p) = response.interact_pointer_pos()
        {
            self.click(t, p, mods, response.secondary_clicked());
        }
    }

    fn start_drag(
        &mut self,
        t: &RollTransform,
        o: Pos2,
        mods: Modifiers,
        secondary: bool,
    ) -> Option<Drag> {
        let layout = self.layout;
        if layout.ruler.contains(o) {
            let step = t.x_to_step(o.x).max(0.0) as u32;
            return Some(Drag::Ruler {
                origin_bar: step / self.clip.steps_per_bar(),
                add: mods.shift,
            });
        }
        if layout.lane.is_some_and(|l| l.contains(o)) {
            let i = self.note_near_x(t, o.x)?;
            let originals = if self.selection.contains(&i) {
                self.selected_notes()
            } else {
                vec![(i, self.clip.notes[i])]
            };
            return Some(Drag::Velocity { originals });
        }
        if !layout.grid.contains(o) {
            return None;
        }
        if self.settings.tool == Tool::Mask {
            let cell = t.cell_at(o)?;
            return Some(Drag::Mask {
                origin: cell,
                erase: mods.alt || secondary,
            });
        }
        match self.note_at(t, o) {
            Some((i, grip)) => {
                if !self.selection.contains(&i) {
                    if !mods.shift {
                        self.selection.clear();
                    }
                    self.selection.insert(i);
                    self.changed = true;
                }
                let originals = self.selected_notes();
                Some(if grip {
                    Drag::Resize {
                        origin: o,
                        originals,
                    }
                } else {
                    Drag::Move {
                        origin: o,
                        originals,
                    }
                })
            }
            None => Some(Drag::Rubber { origin: o }),
        }
    }

    fn selected_notes(&self) -> Vec<(usize, Note)> {
        self.selection
            .iter()
            .filter_map(|&i| self.clip.notes.get(i).map(|n| (i, *n)))
            .collect()
    }

    /// Editable note whose start is closest to `x` (within a few points).
    fn note_near_x(&self, t: &RollTransform, x: f32) -> Option<usize> {
        self.clip
            .notes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.track == self.settings.edit_track && self.visible(n))
            .map(|(i, n)| (i, (t.step_to_x(n.start as f32) - x).abs()))
            .filter(|&(_, d)| d <= 6.0)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }

    fn restore(&mut self, g: &Drag) {
        if let Drag::Move { originals, .. }
        | Drag::Resize { originals, .. }
        | Drag::Velocity { originals } = g
        {
            for &(i, n) in originals {
                if let Some(slot) = self.clip.notes.get_mut(i) {
                    *slot = n;
                }
            }
        }
    }

    fn finish_drag(&mut self, t: &RollTransform, g: Drag, p: Pos2) {
        let snap = self.settings.snap;
        // Put the preview back and apply the real edits, so that undo has them.
        self.restore(&g);
        match g {
            Drag::Move { origin, originals } => {
                let (ds, dp) = move_delta(t, origin, p, snap);
                if ds != 0 || dp != 0 {
                    let edits = originals
                        .iter()
                        .map(|&(_, n)| {
                            let m = moved(n, ds, dp);
                            Edit::Move {
                                note: n,
                                to_start: m.start,
                                to_pitch: m.pitch,
                            }
                        })
                        .collect();
                    self.commit("move notes", edits);
                }
            }
            Drag::Resize { origin, originals } => {
                let ds = move_delta(t, origin, p, snap).0;
                if ds != 0 {
                    let edits = originals
                        .iter()
                        .map(|&(_, n)| Edit::Resize {
                            note: n,
                            to_length: (n.length as i64 + ds).max(1) as u32,
                        })
                        .collect();
                    self.commit("resize notes", edits);
                }
            }
            Drag::Velocity { originals } => {
                if let Some(lane) = self.layout.lane {
                    let v = velocity_at(lane, p.y);
                    let edits = originals
                        .iter()
                        .map(|&(_, n)| Edit::SetVelocity {
                            note: n,
                            to_velocity: v,
                        })
                        .collect();
                    self.commit("velocity", edits);
                }
            }
            Drag::Rubber { origin } => {
                let band = Rect::from_two_pos(origin, p);
                self.selection.clear();
                for (i, n) in self.clip.notes.iter().enumerate() {
                    if n.track == self.settings.edit_track
                        && self.visible(n)
                        && band.intersects(t.cells_rect(n.start, n.length, n.pitch))
                    {
                        self.selection.insert(i);
                    }
                }
                self.changed = true;
            }
            Drag::Mask { origin, erase } => {
                let end = clamp_cell(t, p);
                let painted = mask_tool::paint_rect(self.mask, origin, end, !erase);
                self.commit(
                    if erase { "erase mask" } else { "paint mask" },
                    vec![Edit::SetMask(Box::new(painted))],
                );
            }
            Drag::Ruler { origin_bar, add } => {
                let bar = (t.x_to_step(p.x).max(0.0) as u32) / self.clip.steps_per_bar();
                self.mask_bars(origin_bar.min(bar), origin_bar.max(bar), add);
            }
        }
    }

    fn mask_bars(&mut self, first: u32, last: u32, add: bool) {
        let last = last.min(self.clip.bars.saturating_sub(1));
        if first > last {
            return;
        }
        let mut bars = Mask::bars(self.clip, first..=last);
        bars.track = self.mask.track;
        let new = if add { self.mask.union(&bars) } else { bars };
        self.commit("mask bars", vec![Edit::SetMask(Box::new(new))]);
    }

    fn click(&mut self, t: &RollTransform, p: Pos2, mods: Modifiers, secondary: bool) {
        let layout = self.layout;
        if layout.keyboard.contains(p) {
            let pitch = t.y_to_pitch(p.y).floor();
            if (0.0..128.0).contains(&pitch) {
                self.actions.push(Action::Audition {
                    pitch: pitch as u8,
                    velocity: self.settings.draw_velocity,
                });
            }
            return;
        }
        if layout.ruler.contains(p) {
            let bar = (t.x_to_step(p.x).max(0.0) as u32) / self.clip.steps_per_bar();
            self.mask_bars(bar, bar, mods.shift);
            return;
        }
        if !layout.grid.contains(p) {
            return;
        }
        if self.settings.tool == Tool::Mask {
            if let Some(cell) = t.cell_at(p) {
                let painted =
                    mask_tool::paint_rect(self.mask, cell, cell, !(mods.alt || secondary));
                self.commit("paint mask", vec![Edit::SetMask(Box::new(painted))]);
            }
            return;
        }
        match self.note_at(t, p) {
            Some((i, _)) if secondary => {
                let n = self.clip.notes[i];
                self.selection.clear();
                self.commit("delete note", vec![Edit::Delete(n)]);
            }
            Some((i, _)) => {
                if mods.shift {
                    if !self.selection.remove(&i) {
                        self.selection.insert(i);
                    }
                } else {
                    self.selection.clear();
                    self.selection.insert(i);
                }
                self.changed = true;
            }
            None if secondary => {}
            None => {
                let Some((step, pitch)) = t.cell_at(p) else {
                    return;
                };
                let snap = self.settings.snap;
                let start = snap.floor(step);
                if start >= self.clip.steps() {
                    return;
                }
                let note = Note::new(
                    start,
                    pitch,
                    snap.steps(),
                    self.settings.draw_velocity,
                    self.settings.edit_track,
                );
                self.commit("draw note", vec![Edit::Add(note)]);
                self.selection.clear();
                self.selection.insert(self.clip.notes.len() - 1);
            }
        }
    }

    /// Keyboard shortcuts; returns whether the view should fit the clip.
    fn keys(&mut self, ui: &Ui) -> bool {
        let (redo, redo_y, undo, dup, all, del, fit) = ui.input_mut(|i| {
            (
                i.consume_key(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z),
                i.consume_key(Modifiers::COMMAND, Key::Y),
                i.consume_key(Modifiers::COMMAND, Key::Z),
                i.consume_key(Modifiers::COMMAND, Key::D),
                i.consume_key(Modifiers::COMMAND, Key::A),
                i.consume_key(Modifiers::NONE, Key::Delete)
                    | i.consume_key(Modifiers::NONE, Key::Backspace),
                i.consume_key(Modifiers::NONE, Key::F),
            )
        });
        if redo || redo_y {
            if self.history.redo(self.clip, self.mask).is_some() {
                self.selection.clear();
                self.changed = true;
            }
        } else if undo && self.history.undo(self.clip, self.mask).is_some() {
            self.selection.clear();
            self.changed = true;
        }
        if all {
            self.selection.clear();
            for (i, n) in self.clip.notes.iter().enumerate() {
                if n.track == self.settings.edit_track && self.visible(n) {
                    self.selection.insert(i);
                }
            }
            self.changed = true;
        }
        if dup && !self.selection.is_empty() {
            let notes = self.selected_notes();
            let lo = notes.iter().map(|(_, n)| n.start).min().unwrap_or(0);
            let hi = notes.iter().map(|(_, n)| n.end()).max().unwrap_or(0);
            let span = hi - lo;
            let first_new = self.clip.notes.len();
            let edits: Vec<Edit> = notes
                .iter()
                .map(|&(_, n)| {
                    Edit::Add(Note {
                        start: n.start + span,
                        ..n
                    })
                })
                .collect();
            let count = edits.len();
            self.commit("duplicate notes", edits);
            self.selection.clear();
            self.selection.extend(first_new..first_new + count);
        }
        if del && !self.selection.is_empty() {
            let edits = self
                .selected_notes()
                .into_iter()
                .map(|(_, n)| Edit::Delete(n))
                .collect();
            self.selection.clear();
            self.commit("delete notes", edits);
        }
        fit
    }
}

fn zoom_time(view: &mut View, grid: Rect, anchor_x: f32, factor: f32) {
    let t = RollTransform::new(grid, *view);
    let s = t.x_to_step(anchor_x);
    view.step_width = (view.step_width * factor).clamp(0.5, 200.0);
    view.first_step = s - (anchor_x - grid.left()) / view.step_width;
}

/// Drag offset in whole steps (a multiple of the snap unless snap is off) and pitch rows.
fn move_delta(t: &RollTransform, origin: Pos2, p: Pos2, snap: Snap) -> (i64, i64) {
    let ds = (p.x - origin.x) / t.view.step_width;
    let unit = snap.steps() as f32;
    let ds = ((ds / unit).round() * unit) as i64;
    let dp = ((origin.y - p.y) / t.view.row_height).round() as i64;
    (ds, dp)
}

fn moved(n: Note, ds: i64, dp: i64) -> Note {
    Note {
        start: (n.start as i64 + ds).max(0) as u32,
        pitch: (n.pitch as i64 + dp).clamp(0, 127) as u8,
        ..n
    }
}

fn velocity_at(lane: Rect, y: f32) -> u8 {
    let f = ((lane.bottom() - 3.0 - y) / (lane.height() - 6.0)).clamp(0.0, 1.0);
    (1.0 + f * 126.0).round() as u8
}

/// The grid cell under `p`, clamped to the clip's steps and the MIDI range.
fn clamp_cell(t: &RollTransform, p: Pos2) -> (u32, u8) {
    let (s, pitch) = t.from_screen(p);
    (s.max(0.0) as u32, pitch.clamp(0.0, 127.0) as u8)
}

/// A filled rectangle with an outline of `width` inside its edge, as five quads.
fn add_outlined_rect(mesh: &mut Mesh, r: Rect, fill: Color32, width: f32, outline: Color32) {
    mesh.add_colored_rect(r, fill);
    let w = width.min(r.width() / 2.0).min(r.height() / 2.0);
    let (x0, x1, y0, y1) = (r.left(), r.right(), r.top(), r.bottom());
    for edge in [
        Rect::from_min_max(pos2(x0, y0), pos2(x1, y0 + w)),
        Rect::from_min_max(pos2(x0, y1 - w), pos2(x1, y1)),
        Rect::from_min_max(pos2(x0, y0 + w), pos2(x0 + w, y1 - w)),
        Rect::from_min_max(pos2(x1 - w, y0 + w), pos2(x1, y1 - w)),
    ] {
        mesh.add_colored_rect(edge, outline);
    }
}

/// The steps and pitches on screen, and the clip's bar length and end.
#[derive(Clone, Copy)]
struct Visible {
    s_lo: u32,
    s_hi: u32,
    p_lo: u8,
    p_hi: u8,
    spb: u32,
    total: u32,
}

/// Paint the roll: grid, mask and notes, drag feedback, keyboard, ruler and velocity lane.
fn paint(
    ui: &Ui,
    ctx: &Interaction<'_>,
    t: &RollTransform,
    drag: Option<&Drag>,
    pointer: Option<Pos2>,
) {
    let clip = &*ctx.clip;
    let (s_lo, s_hi) = t.visible_steps();
    let (p_lo, p_hi) = t.visible_pitches();
    let v = Visible {
        s_lo,
        s_hi,
        p_lo,
        p_hi,
        spb: clip.steps_per_bar(),
        total: clip.steps(),
    };
    let mut shapes: Vec<Shape> = Vec::with_capacity(1024);
    paint_grid(&mut shapes, ui, ctx, t, v);
    paint_notes(&mut shapes, ctx, t, v);
    paint_drag(&mut shapes, t, drag, pointer);
    ui.painter_at(ctx.layout.grid).extend(shapes);
    paint_keyboard(ui, ctx, t, v);
    paint_ruler(ui, ctx, t, v, drag, pointer);
    paint_velocity_lane(ui, ctx, t, v);
}

/// Background, black-key rows, the mask, step/beat/bar lines and the shade after the clip.
fn paint_grid(
    shapes: &mut Vec<Shape>,
    ui: &Ui,
    ctx: &Interaction<'_>,
    t: &RollTransform,
    v: Visible,
) {
    let grid = ctx.layout.grid;
    let Visible {
        s_lo,
        s_hi,
        p_lo,
        p_hi,
        spb,
        total,
    } = v;
    // Greys for the dark and the light theme.
    let dark = ui.visuals().dark_mode;
    let gray =
        |in_dark: u8, in_light: u8| Color32::from_gray(if dark { in_dark } else { in_light });
    let bg = gray(28, 235);
    let black_row = gray(22, 220);
    let line = gray(45, 205);
    let beat_line = gray(62, 180);
    let bar_line = gray(100, 120);
    shapes.push(Shape::rect_filled(grid, 0.0, bg));
    for p in p_lo..=p_hi {
        let r = t.cells_rect(0, 1, p);
        let row = Rect::from_x_y_ranges(grid.x_range(), r.y_range());
        if is_black_key(p) {
            shapes.push(Shape::rect_filled(row, 0.0, black_row));
        }
        if p % 12 == 0 {
            shapes.push(Shape::hline(
                grid.x_range(),
                row.bottom(),
                Stroke::new(1.0, beat_line),
            ));
        }
    }
    mask_tool::paint_mask(shapes, ctx.mask, t);
    let step_lines = t.view.step_width >= 4.0;
    for s in s_lo..=s_hi.min(total) {
        let x = t.step_to_x(s as f32);
        let color = if s % spb == 0 {
            bar_line
        } else if s % crate::STEPS_PER_BEAT == 0 {
            beat_line
        } else if step_lines {
            line
        } else {
            continue;
        };
        shapes.push(Shape::vline(x, grid.y_range(), Stroke::new(1.0, color)));
    }
    let end_x = t.step_to_x(total as f32);
    if end_x < grid.right() {
        let after = Rect::from_x_y_ranges(end_x.max(grid.left())..=grid.right(), grid.y_range());
        shapes.push(Shape::rect_filled(
            after,
            0.0,
            Color32::from_black_alpha(90),
        ));
    }
}

/// Notes: other tracks dimmed first, the edit track on top.
fn paint_notes(shapes: &mut Vec<Shape>, ctx: &Interaction<'_>, t: &RollTransform, v: Visible) {
    let clip = &*ctx.clip;
    let Visible {
        s_lo,
        s_hi,
        p_lo,
        p_hi,
        ..
    } = v;
    // All of them in one mesh of plain quads (a rounded, anti-aliased rectangle and outline per note tessellated into
    // ~100 triangles each, most of a 500-note frame's time).
    let edit_track = ctx.settings.edit_track;
    let mut notes = Mesh::default();
    for pass_edit in [false, true] {
        for (i, n) in clip.notes.iter().enumerate() {
            if (n.track == edit_track) != pass_edit || !ctx.visible(n) {
                continue;
            }
            if n.end() < s_lo || n.start > s_hi || n.pitch < p_lo || n.pitch > p_hi {
                continue;
            }
            let r = t
                .cells_rect(n.start, n.length, n.pitch)
                .shrink2(vec2(0.5, 0.5));
            let mut fill = note_fill(n);
            if !pass_edit {
                fill = fill.gamma_multiply(0.4);
            }
            let (width, outline) = if ctx.selection.contains(&i) {
                (1.5, Color32::WHITE)
            } else {
                (1.0, Color32::from_black_alpha(120))
            };
            add_outlined_rect(&mut notes, r, fill, width, outline);
        }
    }
    shapes.push(Shape::mesh(notes));
}

/// The rubber band or the mask rectangle being dragged.
fn paint_drag(
    shapes: &mut Vec<Shape>,
    t: &RollTransform,
    drag: Option<&Drag>,
    pointer: Option<Pos2>,
) {
    if let (Some(g), Some(p)) = (drag, pointer) {
        match g {
            Drag::Rubber { origin } => {
                let band = Rect::from_two_pos(*origin, p);
                shapes.push(Shape::rect_filled(band, 0.0, Color32::from_white_alpha(20)));
                shapes.push(Shape::rect_stroke(
                    band,
                    0.0,
                    Stroke::new(1.0, Color32::WHITE),
                    StrokeKind::Inside,
                ));
            }
            Drag::Mask { origin, erase } => {
                let end = clamp_cell(t, p);
                let r = t
                    .cells_rect(
                        origin.0.min(end.0),
                        origin.0.abs_diff(end.0) + 1,
                        origin.1.min(end.1),
                    )
                    .union(t.cells_rect(origin.0.min(end.0), 1, origin.1.max(end.1)));
                let c = if *erase {
                    Color32::RED
                } else {
                    Color32::YELLOW
                };
                shapes.push(Shape::rect_stroke(
                    r,
                    0.0,
                    Stroke::new(1.5, c),
                    StrokeKind::Inside,
                ));
            }
            _ => {}
        }
    }
}

/// The keyboard beside the rows, with C names when rows are tall enough.
fn paint_keyboard(ui: &Ui, ctx: &Interaction<'_>, t: &RollTransform, v: Visible) {
    let Visible { p_lo, p_hi, .. } = v;
    // Keyboard.
    let mut keys: Vec<Shape> = Vec::with_capacity(300);
    let kb = ctx.layout.keyboard;
    keys.push(Shape::rect_filled(kb, 0.0, Color32::from_gray(200)));
    let key_painter = ui.painter_at(kb);
    for p in p_lo..=p_hi {
        let r = t.cells_rect(0, 1, p);
        let key = Rect::from_x_y_ranges(kb.x_range(), r.y_range());
        if is_black_key(p) {
            let k = Rect::from_x_y_ranges(kb.left()..=kb.left() + kb.width() * 0.62, r.y_range());
            keys.push(Shape::rect_filled(k, 0.0, Color32::from_gray(30)));
        } else {
            keys.push(Shape::rect_filled(
                key.shrink2(vec2(0.0, 0.5)),
                0.0,
                Color32::from_gray(240),
            ));
        }
        if p % 12 == 0 && t.view.row_height >= 6.0 {
            keys.push(Shape::hline(
                kb.x_range(),
                key.bottom(),
                Stroke::new(1.0, Color32::from_gray(120)),
            ));
        }
    }
    key_painter.extend(keys);
    if t.view.row_height >= 6.0 {
        for p in (p_lo..=p_hi).filter(|p| p % 12 == 0) {
            let r = t.cells_rect(0, 1, p);
            key_painter.text(
                pos2(kb.right() - 2.0, r.center().y),
                Align2::RIGHT_CENTER,
                bandmate::music::pitch_name(p),
                FontId::proportional(r.height().clamp(7.0, 11.0)),
                Color32::from_gray(40),
            );
        }
    }
}

/// Ruler: bars, beats, the masked bars, the loop and the bar range being picked.
fn paint_ruler(
    ui: &Ui,
    ctx: &Interaction<'_>,
    t: &RollTransform,
    v: Visible,
    drag: Option<&Drag>,
    pointer: Option<Pos2>,
) {
    let clip = &*ctx.clip;
    let Visible {
        s_lo,
        s_hi,
        spb,
        total,
        ..
    } = v;
    let ruler = ctx.layout.ruler;
    let ruler_painter = ui.painter_at(ruler);
    let mut marks: Vec<Shape> = Vec::with_capacity(200);
    marks.push(Shape::rect_filled(ruler, 0.0, Color32::from_gray(50)));
    for s in ctx
        .mask
        .masked_steps()
        .filter(|s| (s_lo..=s_hi).contains(s))
    {
        let r = Rect::from_x_y_ranges(
            t.step_to_x(s as f32)..=t.step_to_x(s as f32 + 1.0),
            ruler.bottom() - 4.0..=ruler.bottom(),
        );
        marks.push(Shape::rect_filled(r, 0.0, Color32::from_rgb(230, 190, 60)));
    }
    if let Some((first, count)) = ctx.settings.loop_bars {
        let r = Rect::from_x_y_ranges(
            t.step_to_x((first * spb) as f32)..=t.step_to_x(((first + count) * spb) as f32),
            ruler.top()..=ruler.top() + 4.0,
        );
        marks.push(Shape::rect_filled(r, 0.0, Color32::from_rgb(90, 200, 120)));
    }
    if let (Some(Drag::Ruler { origin_bar, .. }), Some(p)) = (drag, pointer) {
        let bar = (t.x_to_step(p.x).max(0.0) as u32) / spb;
        let (a, b) = ((*origin_bar).min(bar), (*origin_bar).max(bar) + 1);
        let r = Rect::from_x_y_ranges(
            t.step_to_x((a * spb) as f32)..=t.step_to_x((b * spb) as f32),
            ruler.y_range(),
        );
        marks.push(Shape::rect_filled(
            r,
            0.0,
            Color32::from_rgba_unmultiplied(230, 190, 60, 80),
        ));
    }
    for s in s_lo..=s_hi.min(total) {
        let x = t.step_to_x(s as f32);
        if s % spb == 0 {
            marks.push(Shape::vline(
                x,
                ruler.y_range(),
                Stroke::new(1.0, Color32::from_gray(170)),
            ));
        } else if s % crate::STEPS_PER_BEAT == 0 {
            marks.push(Shape::vline(
                x,
                ruler.bottom() - 6.0..=ruler.bottom(),
                Stroke::new(1.0, Color32::from_gray(120)),
            ));
        }
    }
    ruler_painter.extend(marks);
    let bar_px = spb as f32 * t.view.step_width;
    let label_every = (28.0 / bar_px).ceil().max(1.0) as u32;
    for bar in (s_lo / spb..=s_hi / spb).filter(|b| b % label_every == 0 && *b < clip.bars) {
        ruler_painter.text(
            pos2(t.step_to_x((bar * spb) as f32) + 3.0, ruler.center().y),
            Align2::LEFT_CENTER,
            (bar + 1).to_string(),
            FontId::proportional(11.0),
            Color32::from_gray(220),
        );
    }
}

/// Velocity lane: one stem per note of the edit track.
fn paint_velocity_lane(ui: &Ui, ctx: &Interaction<'_>, t: &RollTransform, v: Visible) {
    let clip = &*ctx.clip;
    let edit_track = ctx.settings.edit_track;
    let Visible { s_lo, s_hi, .. } = v;
    // Velocity lane.
    if let Some(lane) = ctx.layout.lane {
        let mut stems: Vec<Shape> = Vec::with_capacity(clip.notes.len() * 2 + 2);
        stems.push(Shape::rect_filled(lane, 0.0, Color32::from_gray(36)));
        stems.push(Shape::hline(
            lane.x_range(),
            lane.top(),
            Stroke::new(1.0, Color32::from_gray(80)),
        ));
        for (i, n) in clip.notes.iter().enumerate() {
            if n.track != edit_track || !ctx.visible(n) || n.start < s_lo || n.start > s_hi {
                continue;
            }
            let x = t.step_to_x(n.start as f32) + 1.0;
            let f = (n.velocity as f32 - 1.0) / 126.0;
            let top = lane.bottom() - 3.0 - f * (lane.height() - 6.0);
            let c = if ctx.selection.contains(&i) {
                Color32::WHITE
            } else {
                note_fill(n)
            };
            stems.push(Shape::vline(x, top..=lane.bottom(), Stroke::new(2.0, c)));
            stems.push(Shape::circle_filled(pos2(x, top), 2.5, c));
        }
        ui.painter_at(lane).extend(stems);
    }
}
