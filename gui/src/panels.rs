//! The editor around the roll: model actions and their settings, the worker's progress and
//! errors, tools, snap, tracks, and A/B compare. Buttons produce [`Action`] values; the plugin
//! turns them into worker jobs.

use crate::action::{Action, ModelSettings, Task};
use crate::edit::{Edit, History};
use crate::mask_tool;
use crate::piano_roll::{PianoRoll, RollSettings, Selection, Snap, Tool, track_color};
use bandmate::music::{Clip, Mask, Scale, pitch_name};
use egui::{Color32, RichText, Ui};

/// The first entry of [`EditorState::models`]: the first model that can run the action.
pub const AUTOMATIC_MODEL: &str = "Automatic";

/// The worker's state as the editor shows it.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum JobStatus {
    #[default]
    Idle,
    Running {
        label: String,
        progress: f32,
    },
}

/// Previous and new version of the clip after a model result.
#[derive(Clone, Debug, PartialEq)]
pub struct AbCompare {
    /// The version not shown now.
    pub other: Clip,
    /// Whether the new version (B) is shown.
    pub showing_new: bool,
}

/// Everything the editor edits and shows, owned by the plugin.
#[derive(Clone, Debug)]
pub struct EditorState {
    pub clip: Clip,
    pub mask: Mask,
    pub selection: Selection,
    pub history: History,
    pub roll: RollSettings,
    pub model: ModelSettings,
    /// Model names to choose from.
    pub models: Vec<String>,
    pub vary_strength: f32,
    pub continue_bars: u32,
    pub interpolate_amount: f32,
    pub job: JobStatus,
    /// The last worker error, shown until dismissed.
    pub error: Option<String>,
    pub ab: Option<AbCompare>,
    /// Fit the roll to the clip on the next frame.
    pub fit_requested: bool,
    /// Show the first-run hint above the roll (until "Got it").
    pub show_hint: bool,
}

impl EditorState {
    pub fn new(clip: Clip) -> Self {
        let mask = Mask::empty(clip.steps());
        Self {
            clip,
            mask,
            selection: Selection::new(),
            history: History::default(),
            roll: RollSettings::default(),
            model: ModelSettings::default(),
            models: vec![AUTOMATIC_MODEL.to_owned()],
            vary_strength: 0.5,
            continue_bars: 4,
            interpolate_amount: 0.5,
            job: JobStatus::Idle,
            error: None,
            ab: None,
            fit_requested: true,
            show_hint: true,
        }
    }

    /// Take a model result as one undo step and offer A/B against the previous version.
    pub fn accept_result(&mut self, clip: Clip, label: &str) {
        let previous = self.clip.clone();
        self.history.apply(
            &mut self.clip,
            &mut self.mask,
            label,
            vec![Edit::ReplaceClip(Box::new(clip))],
        );
        if self.mask.steps != self.clip.steps() {
            self.mask = self.mask.resized(self.clip.steps());
        }
        self.selection.clear();
        self.job = JobStatus::Idle;
        self.ab = Some(AbCompare {
            other: previous,
            showing_new: true,
        });
    }

    /// Show the other version of the A/B pair.
    pub fn toggle_ab(&mut self) {
        if let Some(ab) = &mut self.ab {
            std::mem::swap(&mut self.clip, &mut ab.other);
            ab.showing_new = !ab.showing_new;
            self.selection.clear();
        }
    }

    fn run(&self, task: Task) -> Action {
        Action::Run {
            task,
            settings: self.model.clone(),
        }
    }

    /// Change the clip's length to `bars` bars as one undo step: notes starting past the end
    /// are dropped, notes running past it are shortened, and the mask is cut or extended.
    /// Returns whether anything changed (`bars` is clamped to 1..=[`MAX_BARS`]).
    pub fn set_length(&mut self, bars: u32) -> bool {
        let bars = bars.clamp(1, MAX_BARS);
        if bars == self.clip.bars {
            return false;
        }
        let mut clip = self.clip.clone();
        clip.bars = bars;
        let end = clip.steps();
        clip.notes.retain(|n| n.start < end);
        for n in &mut clip.notes {
            n.length = n.length.min(end - n.start).max(1);
        }
        let mask = self.mask.resized(end);
        self.ab = None;
        self.selection.clear();
        self.history.apply(
            &mut self.clip,
            &mut self.mask,
            format!("length {bars} bars"),
            vec![
                Edit::ReplaceClip(Box::new(clip)),
                Edit::SetMask(Box::new(mask)),
            ],
        )
    }

    fn set_mask(&mut self, mask: Mask, label: &str) {
        self.history.apply(
            &mut self.clip,
            &mut self.mask,
            label,
            vec![Edit::SetMask(Box::new(mask))],
        );
    }
}

/// The longest clip the length control allows.
pub const MAX_BARS: u32 = 64;

/// Width of the group names at the left of the toolbar rows, so that the rows line up.
pub const GROUP_WIDTH: f32 = 64.0;

/// The editor's default width in points (the plugin window's default size): every toolbar
/// row fits in it without wrapping.
pub const DEFAULT_WIDTH: f32 = 1100.0;

/// One toolbar row: the group's name (`""` continues the group above), then `add_contents`
/// left to right. Rows never wrap: they are laid out to fit [`DEFAULT_WIDTH`].
pub fn toolbar_row<R>(ui: &mut Ui, group: &str, add_contents: impl FnOnce(&mut Ui) -> R) -> R {
    ui.horizontal(|ui| {
        let height = ui.spacing().interact_size.y;
        let (rect, _) =
            ui.allocate_exact_size(egui::vec2(GROUP_WIDTH, height), egui::Sense::hover());
        if ui.is_rect_visible(rect) && !group.is_empty() {
            ui.painter().text(
                rect.left_center(),
                egui::Align2::LEFT_CENTER,
                group,
                egui::FontId::proportional(13.0),
                ui.visuals().strong_text_color(),
            );
        }
        add_contents(ui)
    })
    .inner
}

/// Loop the whole clip or a range of its bars (1-based on screen, as a DAW numbers bars).
fn loop_controls(ui: &mut Ui, state: &mut EditorState) {
    let bars = state.clip.bars.max(1);
    let mut on = state.roll.loop_bars.is_some();
    if ui
        .checkbox(&mut on, "loop")
        .on_hover_text("Loop only these bars while the host plays (off: the whole clip)")
        .changed()
    {
        state.roll.loop_bars = on.then_some((0, bars.min(4)));
    }
    if let Some((first, count)) = state.roll.loop_bars {
        let (mut from, mut to) = (first + 1, first + count);
        ui.add(egui::DragValue::new(&mut from).range(1..=bars))
            .on_hover_text("First looped bar");
        ui.label("–");
        ui.add(egui::DragValue::new(&mut to).range(1..=bars))
            .on_hover_text("Last looped bar");
        state.roll.loop_bars = Some(loop_range(from, to, bars));
    }
}

/// (first bar 0-based, count) of the 1-based bars `from..=to` (either order) inside `bars`.
pub fn loop_range(from: u32, to: u32, bars: u32) -> (u32, u32) {
    let bars = bars.max(1);
    let (a, b) = (from.min(to).clamp(1, bars), from.max(to).clamp(1, bars));
    (a - 1, b - a + 1)
}

/// The whole editor: the toolbar (edit, generate, tracks), the status and the roll. Returns
/// what the plugin should do. The plugin itself lays out [`toolbar`], a tracks row of its own
/// (with export and import), its band row and [`roll_area`].
pub fn editor_ui(ui: &mut Ui, state: &mut EditorState) -> Vec<Action> {
    let mut actions = toolbar(ui, state);
    toolbar_row(ui, "Tracks", |ui| track_controls(ui, state));
    actions.extend(roll_area(ui, state));
    actions
}

/// The edit and generate groups of the toolbar, three rows: editing tools, the model
/// actions, the sampling settings.
pub fn toolbar(ui: &mut Ui, state: &mut EditorState) -> Vec<Action> {
    let mut actions = Vec::new();
    toolbar_row(ui, "Edit", |ui| edit_controls(ui, state));
    toolbar_row(ui, "Generate", |ui| action_buttons(ui, state, &mut actions));
    toolbar_row(ui, "", |ui| model_controls(ui, state));
    toolbar_row(ui, "", |ui| key_and_range_controls(ui, state));
    actions
}

/// Below the toolbar: the job's progress, errors, the first-run hint, and the roll (which
/// takes the rest of the space and the keyboard shortcuts).
pub fn roll_area(ui: &mut Ui, state: &mut EditorState) -> Vec<Action> {
    let mut actions = Vec::new();
    status(ui, state, &mut actions);
    first_run_hint(ui, state);
    ui.separator();
    let fit = std::mem::take(&mut state.fit_requested);
    let clip_before = state.ab.as_ref().map(|_| state.clip.clone());
    let out = PianoRoll::new(&mut state.clip, &mut state.mask)
        .selection(&mut state.selection)
        .history(&mut state.history)
        .settings(&state.roll)
        .fit(fit)
        .keys_anywhere(true)
        .show(ui);
    // An edit while comparing keeps the version being edited.
    if clip_before.is_some_and(|c| c != state.clip) {
        state.ab = None;
    }
    actions.extend(out.actions);
    actions
}

/// What the first-run hint says.
pub const FIRST_RUN_HINT: &str = "First steps: click the grid to draw notes (or drop a .mid on \
     the window) · drag across the bar numbers, or paint with the Mask tool, to mark what to \
     rewrite · press Fill mask · A/B compares, Ctrl+Z undoes. Hover any control for what it does.";

fn first_run_hint(ui: &mut Ui, state: &mut EditorState) {
    if !state.show_hint {
        return;
    }
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(FIRST_RUN_HINT).color(Color32::from_rgb(150, 200, 255)));
        if ui
            .small_button("Got it")
            .on_hover_text("Hide this hint (it does not come back)")
            .clicked()
        {
            state.show_hint = false;
        }
    });
}

fn edit_controls(ui: &mut Ui, state: &mut EditorState) {
    ui.selectable_value(&mut state.roll.tool, Tool::Notes, "Notes")
        .on_hover_text(
            "Notes tool: click draws a note, drag moves, drag the right edge resizes, \
             right-click deletes, drag on empty grid selects",
        );
    ui.selectable_value(&mut state.roll.tool, Tool::Mask, "Mask")
        .on_hover_text(
            "Mask tool: drag paints the cells the models rewrite (Alt-drag or right-drag \
             erases). Dragging across the bar numbers masks whole bars with either tool",
        );
    egui::ComboBox::from_id_salt("snap")
        .selected_text(format!("snap {}", state.roll.snap.name()))
        .width(72.0)
        .show_ui(ui, |ui| {
            for s in Snap::ALL {
                ui.selectable_value(&mut state.roll.snap, s, s.name());
            }
        })
        .response
        .on_hover_text("Grid for drawing and moving notes, and the length of a drawn note");
    ui.separator();
    if ui
        .add_enabled(state.history.can_undo(), egui::Button::new("Undo"))
        .on_hover_text(match state.history.undo_label() {
            Some(label) => format!("Undo {label} (Ctrl+Z)"),
            None => "Undo (Ctrl+Z)".to_owned(),
        })
        .on_disabled_hover_text("Nothing to undo (Ctrl+Z)")
        .clicked()
    {
        state.history.undo(&mut state.clip, &mut state.mask);
        state.selection.clear();
    }
    if ui
        .add_enabled(state.history.can_redo(), egui::Button::new("Redo"))
        .on_hover_text("Redo (Ctrl+Shift+Z or Ctrl+Y)")
        .on_disabled_hover_text("Nothing to redo (Ctrl+Shift+Z or Ctrl+Y)")
        .clicked()
    {
        state.history.redo(&mut state.clip, &mut state.mask);
        state.selection.clear();
    }
    ui.separator();
    if ui
        .button("Mask selection")
        .on_hover_text("Mask the cells under the selected notes")
        .clicked()
    {
        let m = mask_tool::mask_selection(&state.clip, &state.selection, &state.mask);
        state.set_mask(m, "mask selection");
    }
    if ui
        .button("Clear mask")
        .on_hover_text("Unmask every cell")
        .clicked()
    {
        state.set_mask(Mask::empty(state.clip.steps()), "clear mask");
    }
    if ui
        .button("Invert mask")
        .on_hover_text("Mask what is not masked and unmask what is")
        .clicked()
    {
        let m = state.mask.invert();
        state.set_mask(m, "invert mask");
    }
    ui.separator();
    if ui
        .button("Fit")
        .on_hover_text("Zoom to show the whole clip (F)")
        .clicked()
    {
        state.fit_requested = true;
    }
    let mut bars = state.clip.bars;
    let length = ui
        .add(
            egui::DragValue::new(&mut bars)
                .range(1..=MAX_BARS)
                .prefix("length ")
                .suffix(" bars"),
        )
        .on_hover_text("Clip length in bars (the clip loops over this length)");
    if length.changed() {
        state.set_length(bars);
    }
    loop_controls(ui, state);
}

fn action_buttons(ui: &mut Ui, state: &mut EditorState, actions: &mut Vec<Action>) {
    let idle = state.job == JobStatus::Idle;
    ui.add_enabled_ui(idle, |ui| {
        ui.spacing_mut().slider_width = 56.0;
        let busy = (!idle).then_some(BUSY);
        let unmasked = state.mask.is_empty();
        let fill_needs = "Mask something first: drag across the bar numbers or use the Mask tool";
        if task_button(
            ui,
            "Fill mask",
            "Rewrite the masked cells to fit what is around them",
            busy.or(unmasked.then_some(fill_needs)),
        ) {
            actions.push(state.run(Task::FillMask));
        }
        if task_button(
            ui,
            "Vary",
            "Change the masked cells by the strength beside, keeping their character",
            busy.or(unmasked.then_some("Mask the part to vary first")),
        ) {
            let strength = state.vary_strength;
            actions.push(state.run(Task::Vary { strength }));
        }
        percent_slider(ui, &mut state.vary_strength, |percent| {
            format!("Vary strength {percent:.0}%: 0 keeps the clip, 100% writes new notes")
        });
        let harmonize = "Write a new accompaniment track (Harmony) to the melody and the other \
                         pitched tracks; every track already there stays as it is";
        if task_button(ui, "Harmonize", harmonize, busy) {
            actions.push(state.run(Task::Harmonize));
        }
        if task_button(
            ui,
            "Continue",
            "Append bars that follow on from the clip",
            busy,
        ) {
            let bars = state.continue_bars;
            actions.push(state.run(Task::Continue { bars }));
        }
        ui.add(
            egui::DragValue::new(&mut state.continue_bars)
                .range(1..=32)
                .suffix(" bars"),
        )
        .on_hover_text("How many bars Continue appends")
        .on_disabled_hover_text("How many bars Continue appends");
        let generate =
            "A new clip of this length from nothing (4/4 only); undo brings the old one back";
        if task_button(ui, "Generate", generate, busy) {
            actions.push(state.run(Task::Generate));
        }
        let regenerate = "Rewrite every note of the edit track (chosen in the Tracks row)";
        if task_button(ui, "Regenerate voice", regenerate, busy) {
            let track = state.roll.edit_track;
            actions.push(state.run(Task::RegenerateVoice { track }));
        }
        if task_button(
            ui,
            "Interpolate",
            "Move the melody part of the way from the previous version (A) to this one (B), \
             2 bars at a time (MusicVAE); other tracks stay",
            busy.or(state
                .ab
                .is_none()
                .then_some("Needs two versions: run a model first")),
        ) {
            let amount = state.interpolate_amount;
            actions.push(state.run(Task::Interpolate { amount }));
        }
        percent_slider(ui, &mut state.interpolate_amount, |percent| {
            format!("Interpolate: {percent:.0}% of the way from A to B")
        });
    });
}

/// A slider of `value` from 0 to 1 without its number; hovering it shows `describe` of the
/// value in percent.
/// A 0–100% slider explained by `describe` (also while disabled).
fn percent_slider(ui: &mut Ui, value: &mut f32, describe: impl FnOnce(f32) -> String) {
    let text = describe(*value * 100.0);
    ui.add(egui::Slider::new(value, 0.0..=1.0).show_value(false))
        .on_hover_text(&text)
        .on_disabled_hover_text(text);
}

/// What a model action says while a job runs (they are disabled then).
const BUSY: &str = "A model is working: wait for it or press Cancel";

/// The button `label`, explained by `hover`, disabled while `needs` says what it needs first:
/// whether it was clicked.
fn task_button(ui: &mut Ui, label: &str, hover: &str, needs: Option<&str>) -> bool {
    let button = ui
        .add_enabled(needs.is_none(), egui::Button::new(label))
        .on_hover_text(hover);
    match needs {
        Some(needs) => button.on_disabled_hover_text(needs),
        None => button,
    }
    .clicked()
}

fn model_controls(ui: &mut Ui, state: &mut EditorState) {
    ui.spacing_mut().slider_width = 56.0;
    let m = &mut state.model;
    let name = state.models.get(m.model).cloned().unwrap_or_default();
    egui::ComboBox::from_id_salt("model")
        .selected_text(name)
        .width(72.0)
        .show_ui(ui, |ui| {
            for (i, n) in state.models.iter().enumerate() {
                ui.selectable_value(&mut m.model, i, n);
            }
        })
        .response
        .on_hover_text(
            "Model that runs the actions (the models that loaded: the built-in ones and those \
             in your model folder); Automatic picks the first that can run each action",
        );
    ui.add(
        egui::DragValue::new(&mut m.steps)
            .range(5..=100)
            .prefix("steps "),
    )
    .on_hover_text(format!(
        "Sampling steps: fewer is faster, more can be cleaner ({} by default). A fill, \
         continue or vary over several tracks shares them among the tracks (at least {} each)",
        bandmate::settings::DEFAULT_STEPS,
        bandmate::settings::MIN_PART_STEPS
    ));
    ui.add(egui::Slider::new(&mut m.temperature, 0.1..=2.0).text("temp"))
        .on_hover_text("Temperature: below 1 tamer (the likeliest notes), above 1 wilder");
    ui.add(egui::Slider::new(&mut m.density, 0.0..=1.0).text("density"))
        .on_hover_text(
            "How many notes the model writes: 0 sparse (¼ the odds), 0.5 as trained, 1 dense (4×)",
        );
    ui.add(egui::Slider::new(&mut m.repeat, 0.0..=1.0).text("repeat"))
        .on_hover_text(
            "Fill and Continue: how closely the new bars follow the bars before them \
             (0 fresh, 0.5 the model's setting, 1 close to a copy)",
        );
    ui.add(
        egui::DragValue::new(&mut m.seed)
            .range(0..=9999)
            .prefix("seed "),
    )
    .on_hover_text("Random seed: the same seed, clip and settings give the same result");
    if ui.button("Dice").on_hover_text("New random seed").clicked() {
        m.seed = dice_seed(m.seed);
    }
}

/// The key lock (on/off, tonic, scale, detect from the clip) and the pitch range.
fn key_and_range_controls(ui: &mut Ui, state: &mut EditorState) {
    let detected = state.clip.estimate_key();
    let m = &mut state.model;
    ui.checkbox(&mut m.key_lock, "key lock")
        .on_hover_text("Key lock: generated notes stay in the key chosen on the right");
    egui::ComboBox::from_id_salt("key tonic")
        .selected_text(TONIC_NAMES[m.key.tonic as usize % 12])
        .width(36.0)
        .show_ui(ui, |ui| {
            for (t, name) in TONIC_NAMES.iter().enumerate() {
                ui.selectable_value(&mut m.key.tonic, t as u8, *name);
            }
        })
        .response
        .on_hover_text("Tonic of the key lock's key");
    egui::ComboBox::from_id_salt("key scale")
        .selected_text(m.key.scale.name())
        .width(64.0)
        .show_ui(ui, |ui| {
            for scale in Scale::ALL.into_iter().filter(|s| *s != Scale::Chromatic) {
                ui.selectable_value(&mut m.key.scale, scale, scale.name());
            }
        })
        .response
        .on_hover_text("Scale of the key lock's key");
    if ui
        .add_enabled(detected.is_some(), egui::Button::new("Detect"))
        .on_hover_text("Set the key lock's key to the key estimated from the clip's notes")
        .on_disabled_hover_text("Needs notes in the clip")
        .clicked()
        && let Some(key) = detected
    {
        m.key = key;
    }
    ui.label("pitch")
        .on_hover_text("Pitch range: the models write only between these pitches");
    ui.add(
        egui::DragValue::new(&mut m.pitch_low)
            .range(0..=127)
            .custom_formatter(|v, _| pitch_name(v as u8)),
    )
    .on_hover_text("Lowest pitch the models write");
    ui.add(
        egui::DragValue::new(&mut m.pitch_high)
            .range(0..=127)
            .custom_formatter(|v, _| pitch_name(v as u8)),
    )
    .on_hover_text("Highest pitch the models write");
    if m.pitch_high < m.pitch_low {
        m.pitch_high = m.pitch_low;
    }
}

/// Tonic names, C first.
const TONIC_NAMES: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

/// A new seed from the clock, mixed with the old one (splitmix64).
fn dice_seed(old: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = old ^ nanos.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % 1_000_000
}

/// Each track's visibility and name (a click makes it the edit track), then A/B.
pub fn track_controls(ui: &mut Ui, state: &mut EditorState) {
    for (i, track) in state.clip.tracks.iter().enumerate() {
        let i = i as u16;
        let mut shown = !state.roll.hidden_tracks.contains(&i);
        if ui
            .checkbox(&mut shown, "")
            .on_hover_text(format!("Show {}", track.name))
            .changed()
        {
            if shown {
                state.roll.hidden_tracks.remove(&i);
            } else {
                state.roll.hidden_tracks.insert(i);
            }
        }
        let name = RichText::new(&track.name).color(track_color(i));
        if ui
            .selectable_label(state.roll.edit_track == i, name)
            .on_hover_text(format!(
                "Edit {} ({}): new notes go here, and Regenerate voice rewrites it",
                track.name,
                track.role.name()
            ))
            .clicked()
        {
            state.roll.edit_track = i;
            state.selection.clear();
        }
    }
    if let Some(ab) = &state.ab {
        let text = if ab.showing_new {
            "A/B: B (new)"
        } else {
            "A/B: A (previous)"
        };
        if ui
            .button(text)
            .on_hover_text("Switch between the model's result (B) and the clip before it (A)")
            .clicked()
        {
            state.toggle_ab();
        }
    }
}

fn status(ui: &mut Ui, state: &mut EditorState, actions: &mut Vec<Action>) {
    if let JobStatus::Running { label, progress } = &state.job {
        ui.horizontal(|ui| {
            ui.add(
                egui::ProgressBar::new(*progress)
                    .text(label.as_str())
                    .desired_width(240.0),
            );
            if ui
                .button("Cancel")
                .on_hover_text("Stop the model (the clip stays as it was)")
                .clicked()
            {
                actions.push(Action::Cancel);
            }
        });
    }
    let mut dismiss = false;
    if let Some(error) = &state.error {
        ui.horizontal(|ui| {
            ui.colored_label(Color32::from_rgb(255, 110, 100), format!("Error: {error}"));
            dismiss = ui
                .small_button("Dismiss")
                .on_hover_text("Hide this message")
                .clicked();
        });
    }
    if dismiss {
        state.error = None;
    }
}

/// The controls the last frame drew with their centre above `bottom`: the widgets that take
/// clicks or drags and the keyboard focus (buttons, checkboxes, combo boxes, sliders, number
/// fields; not labels, whose text senses clicks only to be selected), with whether each was
/// enabled. For the tests that hover every control of the toolbar.
pub fn controls_above(ctx: &egui::Context, bottom: f32) -> Vec<(egui::Rect, bool)> {
    ctx.viewport(|v| {
        v.prev_pass
            .widgets
            .layers()
            .flat_map(|(_, widgets)| widgets.iter())
            .filter(|w| w.sense.interactive() && w.sense.is_focusable())
            .filter(|w| w.rect.center().y < bottom)
            .map(|w| (w.rect, w.enabled))
            .collect()
    })
}

/// Whether the last frame showed the tooltip of the widget at `control`, or of the widget it
/// is part of right beside it (a slider's value field shows the slider's tooltip). For the
/// tests that hover every control of the toolbar.
pub fn shows_tooltip_of(ctx: &egui::Context, control: egui::Rect) -> bool {
    let gap = ctx.global_style().spacing.item_spacing.x + 1.0;
    ctx.viewport(|v| {
        let pass = &v.prev_pass;
        pass.tooltips.widget_tooltips.keys().any(|id| {
            pass.widgets
                .get(*id)
                .is_some_and(|w| w.rect.expand2(egui::vec2(gap, 1.0)).intersects(control))
        })
    })
}
