//! The editor around the roll: model actions and their settings, the worker's progress and
//! errors, tools, snap, tracks, and A/B compare. Buttons produce [`Action`] values; the plugin
//! turns them into worker jobs.

use crate::edit::{Edit, History};
use crate::mask_tool;
use crate::piano_roll::{PianoRoll, RollSettings, Selection, Snap, Tool, track_color};
use bandmate::music::{Clip, Key, Mask, Scale, pitch_name};
use egui::{Color32, RichText, Ui};

/// What a model is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Task {
    /// Regenerate the masked cells.
    FillMask,
    /// Append `bars` bars.
    Continue { bars: u32 },
    /// Accompaniment under the melody.
    Harmonize,
    /// Change the masked cells by `strength` (0–1).
    Vary { strength: f32 },
    /// A new clip of the current length.
    Generate,
    /// Regenerate one track.
    RegenerateVoice { track: u16 },
    /// `amount` (0–1) of the way from the previous version (A) to the current clip (B).
    Interpolate { amount: f32 },
}

impl Task {
    pub fn label(&self) -> &'static str {
        match self {
            Task::FillMask => "Fill mask",
            Task::Continue { .. } => "Continue",
            Task::Harmonize => "Harmonize",
            Task::Vary { .. } => "Vary",
            Task::Generate => "Generate",
            Task::RegenerateVoice { .. } => "Regenerate voice",
            Task::Interpolate { .. } => "Interpolate",
        }
    }
}

/// Sampling settings sent with every task.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSettings {
    /// Index into [`EditorState::models`].
    pub model: usize,
    /// Sampling (denoising) steps.
    pub steps: u32,
    /// Sampling temperature (or threshold, for threshold samplers).
    pub temperature: f32,
    /// Target note density, 0–1.
    pub density: f32,
    /// How closely Fill and Continue follow the bars before the hole, 0 (fresh material) to 1
    /// (close to a copy); 0.5 is the model's own setting.
    pub repeat: f32,
    pub seed: u64,
    /// Keep generated notes in this key.
    pub key_lock: Option<Key>,
    pub pitch_low: u8,
    pub pitch_high: u8,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            model: 0,
            steps: 32,
            temperature: 1.0,
            density: 0.5,
            repeat: 0.5,
            seed: 1,
            key_lock: None,
            pitch_low: 36,
            pitch_high: 96,
        }
    }
}

/// What the editor asks of the plugin.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Play a note through the host (keyboard click).
    Audition { pitch: u8, velocity: u8 },
    /// Run a model on the current clip and mask.
    Run { task: Task, settings: ModelSettings },
    /// Cancel the running job.
    Cancel,
}

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
            models: vec!["default".to_owned()],
            vary_strength: 0.5,
            continue_bars: 4,
            interpolate_amount: 0.5,
            job: JobStatus::Idle,
            error: None,
            ab: None,
            fit_requested: true,
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

/// Loop the whole clip or a range of its bars (1-based on screen, as a DAW numbers bars).
fn loop_controls(ui: &mut Ui, state: &mut EditorState) {
    let bars = state.clip.bars.max(1);
    let mut on = state.roll.loop_bars.is_some();
    if ui
        .checkbox(&mut on, "loop bars")
        .on_hover_text("Loop only these bars while the host plays (off: the whole clip)")
        .changed()
    {
        state.roll.loop_bars = on.then_some((0, bars.min(4)));
    }
    if let Some((first, count)) = state.roll.loop_bars {
        let (mut from, mut to) = (first + 1, first + count);
        ui.add(egui::DragValue::new(&mut from).range(1..=bars));
        ui.label("–");
        ui.add(egui::DragValue::new(&mut to).range(1..=bars));
        state.roll.loop_bars = Some(loop_range(from, to, bars));
    }
}

/// (first bar 0-based, count) of the 1-based bars `from..=to` (either order) inside `bars`.
pub fn loop_range(from: u32, to: u32, bars: u32) -> (u32, u32) {
    let bars = bars.max(1);
    let (a, b) = (from.min(to).clamp(1, bars), from.max(to).clamp(1, bars));
    (a - 1, b - a + 1)
}

/// The whole editor: controls on top, the roll below. Returns what the plugin should do.
pub fn editor_ui(ui: &mut Ui, state: &mut EditorState) -> Vec<Action> {
    let mut actions = Vec::new();
    ui.horizontal_wrapped(|ui| action_buttons(ui, state, &mut actions));
    ui.horizontal_wrapped(|ui| model_controls(ui, state));
    ui.horizontal_wrapped(|ui| roll_controls(ui, state));
    status(ui, state, &mut actions);
    ui.separator();
    let fit = std::mem::take(&mut state.fit_requested);
    let clip_before = state.ab.as_ref().map(|_| state.clip.clone());
    let out = PianoRoll::new(&mut state.clip, &mut state.mask)
        .selection(&mut state.selection)
        .history(&mut state.history)
        .settings(&state.roll)
        .fit(fit)
        .show(ui);
    // An edit while comparing keeps the version being edited.
    if clip_before.is_some_and(|c| c != state.clip) {
        state.ab = None;
    }
    actions.extend(out.actions);
    actions
}

fn action_buttons(ui: &mut Ui, state: &mut EditorState, actions: &mut Vec<Action>) {
    let idle = state.job == JobStatus::Idle;
    ui.add_enabled_ui(idle, |ui| {
        if ui
            .add_enabled(!state.mask.is_empty(), egui::Button::new("Fill mask"))
            .clicked()
        {
            actions.push(state.run(Task::FillMask));
        }
        if ui.button("Continue").clicked() {
            actions.push(state.run(Task::Continue {
                bars: state.continue_bars,
            }));
        }
        ui.add(
            egui::DragValue::new(&mut state.continue_bars)
                .range(1..=32)
                .suffix(" bars"),
        );
        if ui.button("Harmonize").clicked() {
            actions.push(state.run(Task::Harmonize));
        }
        if ui.button("Vary").clicked() {
            actions.push(state.run(Task::Vary {
                strength: state.vary_strength,
            }));
        }
        ui.add(egui::Slider::new(&mut state.vary_strength, 0.0..=1.0).text("strength"));
        if ui.button("Generate").clicked() {
            actions.push(state.run(Task::Generate));
        }
        if ui.button("Regenerate voice").clicked() {
            actions.push(state.run(Task::RegenerateVoice {
                track: state.roll.edit_track,
            }));
        }
        if ui
            .add_enabled(state.ab.is_some(), egui::Button::new("Interpolate"))
            .clicked()
        {
            actions.push(state.run(Task::Interpolate {
                amount: state.interpolate_amount,
            }));
        }
        ui.add(egui::Slider::new(&mut state.interpolate_amount, 0.0..=1.0).text("A to B"));
    });
}

fn model_controls(ui: &mut Ui, state: &mut EditorState) {
    // Three sliders share this row with the pitch range: narrower than egui's 100 points, so
    // the row fits the editor's default width.
    ui.spacing_mut().slider_width = 64.0;
    let m = &mut state.model;
    let name = state.models.get(m.model).cloned().unwrap_or_default();
    egui::ComboBox::from_label("model")
        .selected_text(name)
        .show_ui(ui, |ui| {
            for (i, n) in state.models.iter().enumerate() {
                ui.selectable_value(&mut m.model, i, n);
            }
        });
    ui.add(
        egui::DragValue::new(&mut m.steps)
            .range(1..=1000)
            .prefix("steps "),
    );
    ui.add(egui::Slider::new(&mut m.temperature, 0.05..=2.0).text("temperature"));
    ui.add(egui::Slider::new(&mut m.density, 0.0..=1.0).text("density"));
    ui.add(egui::Slider::new(&mut m.repeat, 0.0..=1.0).text("repeat"))
        .on_hover_text(
            "Fill and Continue: how closely the new bars follow the bars before them \
             (0 fresh, 0.5 the model's setting, 1 close to a copy)",
        );
    ui.add(egui::DragValue::new(&mut m.seed).prefix("seed "));
    if ui.button("Dice").on_hover_text("New random seed").clicked() {
        m.seed = dice_seed(m.seed);
    }
    let mut locked = m.key_lock.is_some();
    if ui.checkbox(&mut locked, "key lock").changed() {
        m.key_lock = locked.then(|| Key::new(0, Scale::Major));
    }
    if let Some(key) = &mut m.key_lock {
        egui::ComboBox::from_id_salt("key_tonic")
            .selected_text(bandmate::music::key::PITCH_CLASS_NAMES[key.tonic as usize])
            .show_ui(ui, |ui| {
                for (i, n) in bandmate::music::key::PITCH_CLASS_NAMES.iter().enumerate() {
                    ui.selectable_value(&mut key.tonic, i as u8, *n);
                }
            });
        egui::ComboBox::from_id_salt("key_scale")
            .selected_text(key.scale.name())
            .show_ui(ui, |ui| {
                for s in Scale::ALL {
                    ui.selectable_value(&mut key.scale, s, s.name());
                }
            });
    }
    ui.label("pitch");
    ui.add(
        egui::DragValue::new(&mut m.pitch_low)
            .range(0..=127)
            .custom_formatter(|v, _| pitch_name(v as u8)),
    );
    ui.add(
        egui::DragValue::new(&mut m.pitch_high)
            .range(0..=127)
            .custom_formatter(|v, _| pitch_name(v as u8)),
    );
    if m.pitch_high < m.pitch_low {
        m.pitch_high = m.pitch_low;
    }
}

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

fn roll_controls(ui: &mut Ui, state: &mut EditorState) {
    ui.selectable_value(&mut state.roll.tool, Tool::Notes, "Notes");
    ui.selectable_value(&mut state.roll.tool, Tool::Mask, "Mask");
    egui::ComboBox::from_label("snap")
        .selected_text(state.roll.snap.name())
        .show_ui(ui, |ui| {
            for s in Snap::ALL {
                ui.selectable_value(&mut state.roll.snap, s, s.name());
            }
        });
    if ui.button("Mask selection").clicked() {
        let m = mask_tool::mask_selection(&state.clip, &state.selection, &state.mask);
        state.set_mask(m, "mask selection");
    }
    if ui.button("Clear mask").clicked() {
        state.set_mask(Mask::empty(state.clip.steps()), "clear mask");
    }
    if ui.button("Invert mask").clicked() {
        let m = state.mask.invert();
        state.set_mask(m, "invert mask");
    }
    if ui.button("Fit").clicked() {
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
    if ui
        .add_enabled(state.history.can_undo(), egui::Button::new("Undo"))
        .clicked()
    {
        state.history.undo(&mut state.clip, &mut state.mask);
        state.selection.clear();
    }
    if ui
        .add_enabled(state.history.can_redo(), egui::Button::new("Redo"))
        .clicked()
    {
        state.history.redo(&mut state.clip, &mut state.mask);
        state.selection.clear();
    }
    if let Some(ab) = &state.ab {
        let text = if ab.showing_new {
            "B (new)"
        } else {
            "A (previous)"
        };
        if ui.button(format!("A/B: {text}")).clicked() {
            state.toggle_ab();
        }
    }
    ui.separator();
    for (i, track) in state.clip.tracks.iter().enumerate() {
        let i = i as u16;
        let mut shown = !state.roll.hidden_tracks.contains(&i);
        if ui
            .checkbox(&mut shown, "")
            .on_hover_text("Show track")
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
            .clicked()
        {
            state.roll.edit_track = i;
            state.selection.clear();
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
            if ui.button("Cancel").clicked() {
                actions.push(Action::Cancel);
            }
        });
    }
    let mut dismiss = false;
    if let Some(error) = &state.error {
        ui.horizontal(|ui| {
            ui.colored_label(Color32::from_rgb(255, 110, 100), format!("Error: {error}"));
            dismiss = ui.small_button("Dismiss").clicked();
        });
    }
    if dismiss {
        state.error = None;
    }
}
