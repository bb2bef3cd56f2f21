//! The plugin's editor: the gui crate's piano roll and panels in a nice-plug-egui window,
//! connected to the instance through the [`Controller`].
//!
//! Every frame: worker reports come in (progress, results as one undo step, errors shown in the
//! editor), clip changes made elsewhere (recording) are taken over, the editor runs, and its
//! edits go back to the session and the audio thread. Nothing here waits on the worker or the
//! audio thread: reports are polled, clips go through the ring buffer.

use crate::band::BandStats;
use crate::controller::{Controller, JobReport};
use crate::params::{BandmateParams, KeyScale};
use crate::state::EditorView;
use crate::worker::{Job, JobSettings, WorkerReport};
use bandmate::music::{Clip, Mask, TrackRole};
use bandmate_gui::{
    AbCompare, Action, EditorState, JobStatus, ModelSettings, Task, roll_area, toolbar,
    toolbar_row, track_controls,
};
use nice_plug::context::gui::GuiContext;
use nice_plug::editor::dpi::{LogicalSize, Size};
use nice_plug_egui::{
    EguiEditor, EguiEditorState, EguiNiceSettings, Frame, NiceEguiApp, RepaintNotifier,
    create_egui_editor,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

// Dragging the export out of the editor: an XDND source on Linux, the `drag` crate on Windows
// and macOS (the same interface).
#[cfg(target_os = "linux")]
use crate::drag_out;
#[cfg(any(windows, target_os = "macos"))]
use crate::drag_out_native as drag_out;

/// The editor window of an instance.
pub fn create(controller: Arc<Controller>, band: Arc<BandStats>) -> Option<EguiEditor<EditorApp>> {
    let view = controller.session().view.clamped();
    let size = Size::Logical(LogicalSize::new(view.width as f64, view.height as f64));
    let repaint = RepaintNotifier::new();
    let settings = EguiNiceSettings::new().with_tile("Bandmate");
    let app = EditorApp::new(controller, band, repaint.clone());
    create_egui_editor(
        EguiEditorState::from_size(size, view.zoom),
        repaint,
        settings,
        app,
    )
}

pub struct EditorApp {
    controller: Arc<Controller>,
    band: Arc<BandStats>,
    repaint: RepaintNotifier,
    state: EditorState,
    /// The clip as last sent to (or taken from) the session, and its generation there.
    synced: Clip,
    synced_generation: u64,
    /// The A/B pair holds a job result that was only offered (made from an older clip).
    offered_version: bool,
    synced_mask: Mask,
    /// The loop range last sent to the session.
    synced_loop: Option<(u32, u32)>,
    /// Label of the running job, for its undo step.
    running: Option<String>,
    /// Where the last export went, or why it failed.
    export_status: Option<String>,
    /// What "Export .mid" writes (and "Drag .mid" drags).
    export_scope: ExportScope,
    /// The drag out of the editor under way (Linux: its own thread and X connection).
    #[cfg(any(target_os = "linux", windows, target_os = "macos"))]
    drag: Option<drag_out::DragOut>,
    /// The open "Import .mid" dialog's answer (it runs on its own thread: the editor never
    /// waits for it).
    import_dialog: Option<crossbeam_channel::Receiver<Option<PathBuf>>>,
    /// The host's handle for setting parameters (arm, record), from [`NiceEguiApp::build`].
    gui_context: Option<GuiContext>,
    /// The file whose presence means the first-run hint was dismissed (on this machine).
    hint_marker: Option<PathBuf>,
}

/// Sets parameters from the editor: through the host's setter when there is one, else (no
/// host: tests) on the parameter itself.
struct ParamWriter<'a> {
    setter: Option<nice_plug::context::gui::ParamSetter<'a>>,
}

impl ParamWriter<'_> {
    fn set<P: nice_plug::params::InternalParamMut>(&self, param: &P, value: P::Plain) {
        match &self.setter {
            Some(s) => {
                s.begin_set_parameter(param);
                s.set_parameter(param, value);
                s.end_set_parameter(param);
            }
            // SAFETY: the parameter's value is an atomic; with no host there is no one else to
            // tell about the change.
            None => unsafe {
                param._internal_set_plain_value(value);
            },
        }
    }
}

/// What "Export .mid" writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportScope {
    /// The whole clip, every track.
    Clip,
    /// The track chosen for editing.
    Track,
    /// The selected notes.
    Selection,
}

impl ExportScope {
    const ALL: [ExportScope; 3] = [
        ExportScope::Clip,
        ExportScope::Track,
        ExportScope::Selection,
    ];

    fn name(self) -> &'static str {
        match self {
            ExportScope::Clip => "clip",
            ExportScope::Track => "track",
            ExportScope::Selection => "selection",
        }
    }
}

/// The part of `state`'s clip that `scope` exports (same tracks, tempo and length), or why
/// there is nothing to export.
pub fn export_clip(state: &EditorState, scope: ExportScope) -> Result<Clip, String> {
    let mut clip = state.clip.clone();
    match scope {
        ExportScope::Clip => {}
        ExportScope::Track => {
            let track = state.roll.edit_track;
            clip.notes.retain(|n| n.track == track);
        }
        ExportScope::Selection => {
            clip.notes = state
                .selection
                .iter()
                .filter_map(|&i| state.clip.notes.get(i).copied())
                .collect();
        }
    }
    if clip.notes.is_empty() {
        return Err(format!("the {} has no notes to export", scope.name()));
    }
    Ok(clip)
}

impl EditorApp {
    pub fn new(
        controller: Arc<Controller>,
        band: Arc<BandStats>,
        repaint: RepaintNotifier,
    ) -> Self {
        let (clip, synced_generation) = controller.clip_version();
        let mask = controller
            .session()
            .mask
            .clone()
            .unwrap_or_else(|| Mask::empty(clip.steps()));
        let mut state = EditorState::new(clip.clone());
        state.mask = mask.clone();
        state.error = controller.session().load_warning.clone();
        state.roll.loop_bars = controller.session().loop_bars;
        let synced_loop = state.roll.loop_bars;
        Self {
            controller,
            band,
            repaint,
            state,
            synced: clip,
            synced_generation,
            offered_version: false,
            synced_mask: mask,
            synced_loop,
            running: None,
            export_status: None,
            export_scope: ExportScope::Clip,
            #[cfg(any(target_os = "linux", windows, target_os = "macos"))]
            drag: None,
            import_dialog: None,
            gui_context: None,
            hint_marker: None,
        }
        .with_hint_marker(config_folder().map(|d| d.join("first-run-hint-seen")))
    }

    /// Remember the first-run hint's dismissal in `marker` (shown while the file is absent).
    pub fn with_hint_marker(mut self, marker: Option<PathBuf>) -> Self {
        self.state.show_hint = !marker.as_ref().is_some_and(|m| m.exists());
        self.hint_marker = marker;
        self
    }

    /// The editor state (for tests and the screenshot tool).
    pub fn state(&self) -> &EditorState {
        &self.state
    }

    /// The model selector's entries (automatic, then every model that loaded) and the
    /// settings widgets' values from the parameters: the parameters are the one source of
    /// truth, the widgets show them.
    pub fn read_settings(&mut self) {
        // The list is fixed once the models have loaded: build it once.
        if self.state.models.len() <= 1
            && let Some(names) = crate::models::loaded_generator_names()
        {
            let mut models = vec![bandmate_gui::AUTOMATIC_MODEL.to_owned()];
            models.extend(names);
            self.state.models = models;
        }
        self.state.model = settings_from_params(self.controller.params(), &self.state.models);
        self.state.vary_strength = self.controller.params().strength.value();
    }

    /// Write the settings the widgets changed since `before` into the parameters, each as one
    /// gesture through the host (so it records automation and undo); without a host (tests)
    /// directly.
    pub fn write_settings(&mut self, before: &ModelSettings) {
        let now = self.state.model.clone();
        let params = self.controller.params().clone();
        let strength_changed = (self.state.vary_strength - params.strength.value()).abs() > 1e-6;
        if now == *before && !strength_changed {
            return;
        }
        let setter = self.gui_context.as_ref().map(|c| c.param_setter());
        let w = ParamWriter { setter };
        if strength_changed {
            w.set(&params.strength, self.state.vary_strength);
        }
        if now.model != before.model {
            let name = match now.model {
                0 => String::new(),
                i => self.state.models.get(i).cloned().unwrap_or_default(),
            };
            if let Ok(mut m) = params.model.write() {
                *m = name;
            }
        }
        if now.steps != before.steps {
            w.set(&params.steps, now.steps as i32);
        }
        if now.temperature != before.temperature {
            w.set(&params.temperature, now.temperature);
        }
        if now.density != before.density {
            w.set(&params.density, now.density);
        }
        if now.repeat != before.repeat {
            w.set(&params.repeat, now.repeat);
        }
        if now.seed != before.seed {
            w.set(&params.seed, now.seed.min(9999) as i32);
        }
        if now.key_lock != before.key_lock {
            w.set(&params.key_lock, now.key_lock);
        }
        if now.key.tonic != before.key.tonic {
            w.set(&params.key_tonic, now.key.tonic as i32);
        }
        if now.key.scale != before.key.scale {
            w.set(&params.key_scale, KeyScale::from_scale(now.key.scale));
        }
        if now.pitch_low != before.pitch_low {
            w.set(&params.pitch_low, now.pitch_low as i32);
        }
        if now.pitch_high != before.pitch_high {
            w.set(&params.pitch_high, now.pitch_high as i32);
        }
    }

    /// Take in worker reports and clip changes made outside the editor.
    pub fn sync_in(&mut self) {
        let mut offered = None;
        for report in self.controller.poll() {
            match report {
                JobReport::Worker(WorkerReport::Progress { fraction, .. }) => {
                    if let JobStatus::Running { progress, .. } = &mut self.state.job {
                        *progress = fraction;
                    }
                }
                JobReport::Worker(WorkerReport::Started { .. } | WorkerReport::Done { .. }) => {}
                JobReport::Worker(WorkerReport::Failed { error, .. }) => {
                    self.running = None;
                    self.state.job = JobStatus::Idle;
                    self.state.error = Some(error);
                }
                JobReport::Worker(WorkerReport::Cancelled { .. }) => {
                    self.running = None;
                    self.state.job = JobStatus::Idle;
                }
                JobReport::Applied {
                    clip, generation, ..
                } => {
                    let label = self.running.take().unwrap_or_else(|| "Model".into());
                    self.state.accept_result(clip.clone(), &label);
                    self.offered_version = false;
                    self.synced = clip;
                    self.synced_generation = generation;
                }
                JobReport::Offered { clip, .. } => {
                    let label = self.running.take().unwrap_or_else(|| "Model".into());
                    self.state.job = JobStatus::Idle;
                    offered = Some((clip, label));
                }
            }
        }
        self.take_session_clip();
        // After the newer clip is in: the result becomes the other side of A/B.
        if let Some((clip, label)) = offered {
            self.state.ab = Some(AbCompare {
                other: clip,
                showing_new: false,
            });
            self.offered_version = true;
            self.state.error = Some(format!(
                "{label} was made from an older clip (it changed while the model ran): the \
                 result is kept as version B, press A/B to hear it"
            ));
        }
    }

    /// Take the session's clip if it changed outside the editor (a recording, a state load, an
    /// edit merged into a newer clip): one undo step like any other change.
    fn take_session_clip(&mut self) {
        let Some((clip, generation)) = self.controller.clip_since(self.synced_generation) else {
            return;
        };
        let job = std::mem::take(&mut self.state.job);
        let ab = self.state.ab.take();
        self.state.accept_result(clip.clone(), "Recording");
        // A running job keeps its progress bar; an offered version stays to compare against.
        self.state.job = job;
        self.state.ab = ab.filter(|ab| self.offered_version && !ab.showing_new);
        self.synced = clip;
        self.synced_generation = generation;
    }

    /// Send the editor's edits to the session and the audio thread.
    pub fn sync_out(&mut self) {
        if self.state.clip != self.synced {
            let outcome = self.controller.edit_clip(
                &self.synced,
                self.synced_generation,
                self.state.clip.clone(),
            );
            self.synced = self.state.clip.clone();
            if outcome.exact {
                self.synced_generation = outcome.generation;
            } else {
                // Merged into a newer clip (or repaired): show what the session holds.
                self.take_session_clip();
            }
        }
        if self.state.roll.loop_bars != self.synced_loop {
            self.synced_loop = self.state.roll.loop_bars;
            self.controller.set_loop(self.state.roll.loop_bars);
        }
        if self.state.mask != self.synced_mask {
            self.synced_mask = self.state.mask.clone();
            let mask = (!self.state.mask.is_empty()).then(|| self.state.mask.clone());
            self.controller.set_mask(mask);
        }
    }

    /// Run one action of the editor.
    pub fn act(&mut self, action: Action) {
        match action {
            Action::Run { task, settings } => {
                let label = task.label().to_string();
                // The job is made from the clip the session holds (and its generation).
                self.sync_out();
                match self.job_for(&task) {
                    Ok(job) => {
                        match self.controller.submit_with(
                            job,
                            job_settings(&settings, &task, &self.state.models),
                            self.synced_generation,
                        ) {
                            Ok(_) => {
                                self.running = Some(label.clone());
                                self.state.job = JobStatus::Running {
                                    label,
                                    progress: 0.0,
                                };
                                self.state.error = None;
                            }
                            Err(e) => self.state.error = Some(e),
                        }
                    }
                    Err(e) => self.state.error = Some(e),
                }
            }
            Action::Cancel => {
                self.controller.cancel();
                self.running = None;
                self.state.job = JobStatus::Idle;
            }
            // A dropped click (the ring is full) only loses that click.
            Action::Audition { pitch, velocity } => {
                self.controller.audition(pitch, velocity);
            }
        }
    }

    fn job_for(&self, task: &Task) -> Result<Job, String> {
        let clip = self.state.clip.clone();
        let mask = || -> Result<Mask, String> {
            if self.state.mask.is_empty() {
                Err("paint a mask first (the cells to regenerate)".into())
            } else {
                Ok(self.state.mask.clone())
            }
        };
        Ok(match task {
            Task::FillMask => Job::Fill {
                mask: mask()?,
                clip,
            },
            Task::Vary { .. } => Job::Vary {
                mask: mask()?,
                clip,
            },
            Task::Continue { bars } => Job::Continue { clip, bars: *bars },
            Task::Harmonize => Job::Harmonize { clip },
            Task::Generate => Job::Generate {
                bars: clip.bars,
                time_signature: clip.time_signature,
                tempo: clip.tempo,
            },
            Task::RegenerateVoice { track } => Job::Fill {
                mask: Mask::track(&clip, *track),
                clip,
            },
            Task::Interpolate { amount } => {
                let Some(ab) = &self.state.ab else {
                    return Err("interpolate needs two versions: run a model first (A/B)".into());
                };
                Job::Interpolate {
                    from: ab.other.clone(),
                    to: clip,
                    amount: *amount,
                }
            }
        })
    }

    /// Import a dropped .mid file as the clip (one undo step).
    fn import(&mut self, path: &Path) {
        match bandmate::midi::read_file(path) {
            Ok(clip) => {
                self.state.accept_result(clip, "Import");
                self.state.ab = None;
                self.state.fit_requested = true;
                self.export_status = Some(format!("imported {}", path.display()));
            }
            Err(e) => self.state.error = Some(format!("{e}")),
        }
    }

    /// Open the system's file dialog (through the xdg desktop portal on Linux) on a thread of
    /// its own; [`EditorApp::poll_import_dialog`] takes the answer.
    fn open_import_dialog(&mut self) {
        if self.import_dialog.is_some() {
            return;
        }
        let (sender, receiver) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("bandmate-open-dialog".into())
            .spawn(move || {
                let path = rfd::FileDialog::new()
                    .set_title("Import a MIDI file")
                    .add_filter("MIDI", &["mid", "midi"])
                    .pick_file();
                let _ = sender.send(path);
            });
        match spawned {
            Ok(_) => self.import_dialog = Some(receiver),
            Err(e) => self.state.error = Some(format!("cannot open the file dialog: {e}")),
        }
    }

    /// Import the file chosen in the dialog, if it has answered.
    fn poll_import_dialog(&mut self) {
        let Some(receiver) = &self.import_dialog else {
            return;
        };
        match receiver.try_recv() {
            Ok(Some(path)) => {
                self.import_dialog = None;
                self.import(&path);
            }
            Ok(None) | Err(crossbeam_channel::TryRecvError::Disconnected) => {
                self.import_dialog = None;
                self.export_status = Some(
                    "no file chosen (without a file-dialog portal, drop the .mid onto the editor)"
                        .into(),
                );
            }
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
    }

    /// Write the clip to the export folder and say where.
    fn export(&mut self) {
        let clip = match export_clip(&self.state, self.export_scope) {
            Ok(clip) => clip,
            Err(e) => {
                self.export_status = Some(format!("export failed: {e}"));
                return;
            }
        };
        let dir = export_folder();
        let name = format!(
            "bandmate-{}-{}.mid",
            self.export_scope.name(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        );
        let path = dir.join(name);
        let result = std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))
            .and_then(|()| bandmate::midi::write_file(&clip, &path).map_err(|e| format!("{e}")));
        self.export_status = Some(match result {
            Ok(()) => format!("exported to {}", path.display()),
            Err(e) => format!("export failed: {e}"),
        });
    }

    /// Export and import, at the end of the tracks row.
    fn file_controls(&mut self, ui: &mut egui::Ui) {
        if ui
            .button("Export .mid")
            .on_hover_text(format!(
                "Write the {} as a MIDI file into {} (drag it into the DAW from there)",
                self.export_scope.name(),
                export_folder().display()
            ))
            .clicked()
        {
            self.export();
        }
        egui::ComboBox::from_id_salt("export_scope")
            .selected_text(self.export_scope.name())
            .width(72.0)
            .show_ui(ui, |ui| {
                for scope in ExportScope::ALL {
                    ui.selectable_value(&mut self.export_scope, scope, scope.name());
                }
            })
            .response
            .on_hover_text(
                "What Export .mid writes: the whole clip, the edit track or the selected notes",
            );
        #[cfg(any(target_os = "linux", windows, target_os = "macos"))]
        self.drag_handle(ui);
        if ui
            .add_enabled(
                self.import_dialog.is_none(),
                egui::Button::new("Import .mid…"),
            )
            .on_hover_text("Choose a MIDI file to replace the clip (or drop one onto the editor); undo brings the clip back")
            .clicked()
        {
            self.open_import_dialog();
        }
    }

    /// The toolbar (edit, generate, tracks and file, band), the status lines and the roll.
    pub fn draw(&mut self, ui: &mut egui::Ui) -> Vec<Action> {
        let mut actions = toolbar(ui, &mut self.state);
        toolbar_row(ui, "Tracks", |ui| {
            track_controls(ui, &mut self.state);
            ui.separator();
            self.file_controls(ui);
        });
        toolbar_row(ui, "Band", |ui| self.band_panel(ui));
        if let Some(error) = self.band.last_error.try_lock().ok().and_then(|e| e.clone()) {
            // The band thread holds this lock only to replace the text: skip a frame rather
            // than wait.
            ui.colored_label(
                egui::Color32::from_rgb(230, 120, 80),
                format!("Band player: {error}"),
            );
        }
        ui.horizontal_wrapped(|ui| {
            let device = crate::models::models_device();
            ui.label(
                egui::RichText::new(format!(
                    "Models run on: {}",
                    device.as_deref().unwrap_or("… (loading)")
                ))
                .weak(),
            )
            .on_hover_text(
                "The device the models run on: the CPU, or in a GPU build the GPU when the \
                 machine has one",
            );
            if let Some(status) = &self.export_status {
                ui.separator();
                ui.label(egui::RichText::new(status).weak());
            }
        });
        let hint_before = self.state.show_hint;
        actions.extend(roll_area(ui, &mut self.state));
        if hint_before && !self.state.show_hint {
            remember_hint_seen(self.hint_marker.as_deref());
        }
        actions
    }
}

/// Dragging the export out of the editor into the DAW (Linux: an XDND source, see
/// `crate::drag_out`; Windows and macOS: the `drag` crate, see `crate::drag_out_native`).
#[cfg(any(target_os = "linux", windows, target_os = "macos"))]
impl EditorApp {
    /// The "Drag .mid" handle: a drag that starts on it carries the export as a file.
    fn drag_handle(&mut self, ui: &mut egui::Ui) {
        let response = ui
            .add_enabled(
                self.drag.is_none(),
                egui::Button::new("Drag .mid").sense(egui::Sense::drag()),
            )
            .on_hover_cursor(egui::CursorIcon::Grab)
            .on_hover_text(format!(
                "Drag the {} into the DAW: press here, drag onto a MIDI track and let go \
                 (the file is written to {})",
                self.export_scope.name(),
                drag_folder().display()
            ));
        if response.drag_started() {
            self.start_drag(drag_out::DragConfig::default());
        }
    }

    /// Write the export for a drag and start dragging it from the pointer.
    fn start_drag(&mut self, config: drag_out::DragConfig) {
        if self.drag.is_some() {
            return;
        }
        let started = write_drag_file(&self.state, self.export_scope)
            .and_then(|path| drag_out::start(&path, config));
        match started {
            Ok(drag) => {
                self.export_status = Some(format!(
                    "dragging {}: let go over a MIDI track",
                    drag.file().display()
                ));
                self.drag = Some(drag);
            }
            Err(e) => self.export_status = Some(format!("drag failed: {e}")),
        }
    }

    /// The drag's outcome in the status line, once it has ended.
    fn poll_drag(&mut self) {
        let Some(drag) = &mut self.drag else {
            return;
        };
        if let Some(outcome) = drag.poll() {
            self.export_status = Some(match outcome {
                Ok(outcome) => outcome.message(drag.file()),
                Err(e) => e,
            });
            self.drag = None;
        }
    }

    fn dragging(&self) -> bool {
        self.drag.is_some()
    }
}

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
impl EditorApp {
    fn dragging(&self) -> bool {
        false
    }
}

/// Where drags put their files: `bandmate-drag` in the temporary folder.
#[cfg(any(target_os = "linux", windows, target_os = "macos"))]
pub fn drag_folder() -> PathBuf {
    std::env::temp_dir().join("bandmate-drag")
}

/// Write what `scope` exports of `state` as a new MIDI file in [`drag_folder`] (a new name
/// each time: a DAW may keep referring to the file).
#[cfg(any(target_os = "linux", windows, target_os = "macos"))]
pub fn write_drag_file(state: &EditorState, scope: ExportScope) -> Result<PathBuf, String> {
    let clip = export_clip(state, scope)?;
    let dir = drag_folder();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let path = dir.join(format!("bandmate-{}-{stamp}.mid", scope.name()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    bandmate::midi::write_file(&clip, &path).map_err(|e| format!("{e}"))?;
    Ok(path)
}

impl EditorApp {
    /// Arm, record, the tracks the model plays, lookahead and the band player's counters.
    fn band_panel(&mut self, ui: &mut egui::Ui) {
        let params = self.controller.params().clone();
        let mut armed = params.band.value();
        let mut record = params.record.value();
        let setter = self.gui_context.as_ref().map(|c| c.param_setter());
        ui.add_enabled_ui(setter.is_some(), |ui| {
            if ui
                .checkbox(&mut armed, "arm")
                .on_hover_text(
                    "Answer each bar you play with the next one while the host plays (the host \
                     parameter Band player)",
                )
                .on_disabled_hover_text("Needs the host's parameter access (not in this window)")
                .changed()
                && let Some(setter) = &setter
            {
                setter.begin_set_parameter(&params.band);
                setter.set_parameter(&params.band, armed);
                setter.end_set_parameter(&params.band);
            }
            if ui
                .checkbox(&mut record, "record")
                .on_hover_text(
                    "Record the notes you play into the clip while the host plays (16ths, on a \
                     \"Recorded\" track)",
                )
                .on_disabled_hover_text("Needs the host's parameter access (not in this window)")
                .changed()
                && let Some(setter) = &setter
            {
                setter.begin_set_parameter(&params.record);
                setter.set_parameter(&params.record, record);
                setter.end_set_parameter(&params.record);
            }
        });
        let mut band = self.controller.band_settings();
        let mut changed = false;
        ui.label("model plays:")
            .on_hover_text("The parts the band player writes");
        for role in [TrackRole::Melody, TrackRole::Accompaniment] {
            let mut on = band.plays.contains(&role);
            if ui
                .checkbox(&mut on, role.name())
                .on_hover_text(format!(
                    "The model plays the {}; you play what it does not",
                    role.name()
                ))
                .changed()
            {
                band.plays.retain(|&r| r != role);
                if on {
                    band.plays.push(role);
                }
                changed = true;
            }
        }
        if ui
            .add(
                egui::DragValue::new(&mut band.lookahead_steps)
                    .range(1..=8)
                    .prefix("lookahead ")
                    .suffix("/16"),
            )
            .on_hover_text(
                "How long before the next downbeat the played bar goes to the model: more gives \
                 the model more time, but notes played after it are not heard",
            )
            .changed()
        {
            changed = true;
        }
        if changed {
            self.controller.set_band_settings(band);
        }
        ui.separator();
        ui.label(format!(
            "latency {:.1} ms · {} answered · {} missed · {} recorded",
            self.band.last_latency_us.load(Relaxed) as f64 / 1000.0,
            self.band.answered.load(Relaxed),
            self.band.missed.load(Relaxed),
            self.band.recorded_notes.load(Relaxed),
        ))
        .on_hover_text(
            "The band player's last answer time (model and scheduling), bars answered in time, \
             bars whose answer came too late (not played), notes recorded into the clip",
        );
    }
}

/// The editor's settings as worker settings (strength from the Vary task); `models` are the
/// selector's entries, the first one automatic.
fn job_settings(settings: &ModelSettings, task: &Task, models: &[String]) -> JobSettings {
    JobSettings {
        steps: settings.steps.max(1) as usize,
        density: settings.density,
        strength: match task {
            Task::Vary { strength } => *strength,
            _ => 0.5,
        },
        temperature: settings.temperature,
        repeat: settings.repeat,
        key: settings.key_lock.then_some(settings.key),
        pitch_range: (settings.pitch_low > 0 || settings.pitch_high < 127)
            .then_some(settings.pitch_low.min(settings.pitch_high)..=settings.pitch_high),
        model: match settings.model {
            0 => String::new(),
            i => models.get(i).cloned().unwrap_or_default(),
        },
        seed: settings.seed,
    }
}

/// The editor's model settings as the parameters stand; `models` the selector's entries.
pub fn settings_from_params(p: &BandmateParams, models: &[String]) -> ModelSettings {
    let name = p.model_name();
    ModelSettings {
        model: models
            .iter()
            .position(|m| *m == name)
            .filter(|_| !name.is_empty())
            .unwrap_or(0),
        steps: p.steps.value().max(1) as u32,
        temperature: p.temperature.value(),
        density: p.density.value(),
        repeat: p.repeat.value(),
        seed: p.seed.value().max(0) as u64,
        key_lock: p.key_lock.value(),
        key: bandmate::music::Key::new(
            p.key_tonic.value().clamp(0, 11) as u8,
            p.key_scale.value().scale(),
        ),
        pitch_low: p.pitch_low.value().clamp(0, 127) as u8,
        pitch_high: p.pitch_high.value().clamp(0, 127) as u8,
    }
}

/// Bandmate's settings folder: `BANDMATE_CONFIG`, else `$XDG_CONFIG_HOME/bandmate` or
/// `~/.config/bandmate` (`%APPDATA%\Bandmate` on Windows).
pub fn config_folder() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BANDMATE_CONFIG") {
        return Some(PathBuf::from(dir));
    }
    if cfg!(windows) {
        return std::env::var_os("APPDATA").map(|d| PathBuf::from(d).join("Bandmate"));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(dir).join("bandmate"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config").join("bandmate"))
}

/// Write the marker that keeps the first-run hint hidden in new instances (best effort: a
/// read-only home only brings the hint back next time).
fn remember_hint_seen(marker: Option<&Path>) {
    if let Some(marker) = marker {
        if let Some(dir) = marker.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(marker, "dismissed\n");
    }
}

/// `BANDMATE_EXPORTS`, else `~/Bandmate/exports`, else the temporary folder.
pub fn export_folder() -> PathBuf {
    if let Some(dir) = std::env::var_os("BANDMATE_EXPORTS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
    match home {
        Some(home) => PathBuf::from(home).join("Bandmate").join("exports"),
        None => std::env::temp_dir().join("bandmate-exports"),
    }
}

impl NiceEguiApp for EditorApp {
    fn build(
        &mut self,
        _egui_ctx: egui::Context,
        gui_context: GuiContext,
        _frame: &mut Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.gui_context = Some(gui_context);
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut Frame) {
        self.sync_in();
        let dropped: Vec<PathBuf> = ui.ctx().input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if let Some(path) = dropped.first() {
            self.import(path);
        }
        self.poll_import_dialog();
        #[cfg(any(target_os = "linux", windows, target_os = "macos"))]
        self.poll_drag();
        self.read_settings();
        let before = self.state.model.clone();
        let actions = self.draw(ui);
        self.write_settings(&before);
        for action in actions {
            self.act(action);
        }
        self.sync_out();
        // Keep polling while a job runs or the band plays.
        if matches!(self.state.job, JobStatus::Running { .. })
            || self.import_dialog.is_some()
            || self.dragging()
            || self.controller.params().band.value()
            || self.controller.params().record.value()
        {
            self.repaint.request_repaint();
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(50));
        }
    }

    fn resized(&mut self, new_size: nice_plug_egui::baseview::WindowSize) {
        let mut view = self.controller.session().view;
        view.width = new_size.logical.width as f32;
        view.height = new_size.logical.height as f32;
        self.controller.set_view(view);
    }

    fn zoom_factor_changed(&mut self, zoom_factor: f32) {
        let view = EditorView {
            zoom: zoom_factor,
            ..self.controller.session().view
        };
        self.controller.set_view(view);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip_feed::clip_feed;
    use crate::params::BandmateParams;
    use bandmate::music::{Note, example_clip};
    use std::time::{Duration, Instant};

    fn app() -> (EditorApp, Arc<Controller>) {
        let (sender, _receiver) = clip_feed();
        let controller = Arc::new(Controller::new(Arc::new(BandmateParams::default()), sender));
        controller.set_clip(example_clip());
        let app = EditorApp::new(
            controller.clone(),
            Arc::new(BandStats::default()),
            RepaintNotifier::new(),
        );
        (app, controller)
    }

    #[test]
    fn edits_reach_the_session_and_outside_changes_reach_the_editor() {
        let (mut app, controller) = app();
        assert_eq!(app.state().clip, example_clip());
        // An edit in the editor is saved with the project.
        app.state.clip.notes.push(Note::new(3, 90, 2, 100, 0));
        app.state.mask = Mask::bars(&app.state.clip, 1..=1);
        app.sync_out();
        assert_eq!(controller.session().clip, app.state.clip);
        assert_eq!(controller.session().mask.as_ref(), Some(&app.state.mask));
        // The loop range too.
        app.state.roll.loop_bars = Some(bandmate_gui::panels::loop_range(3, 2, 4));
        app.sync_out();
        assert_eq!(controller.session().loop_bars, Some((1, 2)));
        // A clip changed elsewhere (recording) becomes the editor's clip, undoably.
        let mut recorded = controller.session().clip.clone();
        recorded.notes.push(Note::new(5, 91, 1, 80, 0));
        controller.set_clip(recorded.clone());
        app.sync_in();
        assert_eq!(app.state().clip, recorded);
        assert!(app.state.history.can_undo());
    }

    #[test]
    fn the_settings_widgets_show_and_write_the_host_parameters() {
        let (mut app, controller) = app();
        let params = controller.params().clone();
        app.read_settings();
        assert_eq!(app.state.model, ModelSettings::default());
        // What the widgets change lands in the parameters (saved with the project,
        // automatable), and the job settings follow them.
        let before = app.state.model.clone();
        app.state.models = vec!["Automatic".into(), "built-in".into(), "mine".into()];
        let m = &mut app.state.model;
        m.model = 2;
        m.steps = 40;
        m.temperature = 0.7;
        m.density = 0.8;
        m.repeat = 0.2;
        m.seed = 77;
        m.key_lock = true;
        m.key = bandmate::music::Key::new(9, bandmate::music::Scale::Minor);
        m.pitch_low = 48;
        m.pitch_high = 84;
        app.state.vary_strength = 0.3;
        app.write_settings(&before);
        assert!((params.strength.value() - 0.3).abs() < 1e-4);
        assert_eq!(params.steps.value(), 40);
        assert!((params.temperature.value() - 0.7).abs() < 1e-4);
        assert!((params.density.value() - 0.8).abs() < 1e-4);
        assert!((params.repeat.value() - 0.2).abs() < 1e-4);
        assert_eq!(params.seed.value(), 77);
        assert_eq!(
            params.key(),
            Some(bandmate::music::Key::new(9, bandmate::music::Scale::Minor))
        );
        assert_eq!(params.pitch_range(), Some(48..=84));
        assert_eq!(params.model_name(), "mine");
        let job = controller.settings();
        assert_eq!((job.steps, job.seed, job.model.as_str()), (40, 77, "mine"));
        assert_eq!(job.pitch_range, Some(48..=84));
        // And the widgets show the parameters as they stand (a host automating them).
        let written = app.state.model.clone();
        app.state.model = ModelSettings::default();
        app.read_settings();
        let models = app.state.models.clone();
        assert_eq!(settings_from_params(&params, &models).steps, 40);
        let shown = app.state.model.clone();
        assert_eq!(
            ModelSettings { model: 0, ..shown },
            ModelSettings {
                model: 0,
                ..written
            }
        );
        // The chosen model is selected when it loaded (here it did not: "Automatic" shows).
        let want = models.iter().position(|m| m == "mine").unwrap_or(0);
        assert_eq!(shown.model, want);
    }

    #[test]
    fn a_fill_runs_on_the_worker_and_comes_back_as_one_undo_step() {
        let (mut app, _controller) = app();
        // Without a mask the editor says what to do instead of starting a job.
        app.act(Action::Run {
            task: Task::FillMask,
            settings: ModelSettings::default(),
        });
        assert!(app.state.error.as_deref().unwrap().contains("mask"));
        app.state.mask = Mask::bars(&app.state.clip, 2..=2);
        let before = app.state.clip.clone();
        app.act(Action::Run {
            task: Task::FillMask,
            settings: ModelSettings {
                steps: 10,
                ..ModelSettings::default()
            },
        });
        assert!(matches!(app.state.job, JobStatus::Running { .. }));
        let deadline = Instant::now() + Duration::from_secs(600);
        while matches!(app.state.job, JobStatus::Running { .. }) {
            assert!(Instant::now() < deadline, "no result");
            std::thread::sleep(Duration::from_millis(20));
            app.sync_in();
        }
        assert!(app.state.error.is_none(), "{:?}", app.state.error);
        assert_ne!(app.state.clip, before);
        assert!(app.state.ab.is_some());
        // One undo brings the previous clip back.
        let (clip, mask) = (&mut app.state.clip, &mut app.state.mask);
        assert!(app.state.history.undo(clip, mask).is_some());
        assert_eq!(app.state.clip, before);
    }

    /// The editor on a controller whose jobs run on the gated test model, and its gate.
    fn gated_app() -> (EditorApp, Arc<Controller>, crossbeam_channel::Sender<()>) {
        let (sender, _receiver) = clip_feed();
        let (gated, open) = crate::worker::testing::gated();
        let params = Arc::new(BandmateParams::default());
        let controller = Arc::new(Controller::new(params, sender).with_generators(gated));
        controller.set_clip(example_clip());
        let app = EditorApp::new(
            controller.clone(),
            Arc::new(BandStats::default()),
            RepaintNotifier::new(),
        );
        (app, controller, open)
    }

    fn run(app: &mut EditorApp, task: Task) {
        app.act(Action::Run {
            task,
            settings: ModelSettings::default(),
        });
        assert!(matches!(app.state.job, JobStatus::Running { .. }));
    }

    /// Frames (their sync steps) until the running job ends.
    fn until_idle(app: &mut EditorApp) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(app.state.job, JobStatus::Running { .. }) {
            assert!(Instant::now() < deadline, "the job never ended");
            std::thread::sleep(Duration::from_millis(2));
            app.sync_in();
            app.sync_out();
        }
    }

    #[test]
    fn a_note_recorded_while_a_job_runs_stays_and_the_result_is_offered_as_version_b() {
        let (mut app, controller, open) = gated_app();
        app.state.mask = Mask::bars(&app.state.clip, 1..=1);
        run(&mut app, Task::FillMask);
        // A note recorded while the model runs reaches the editor; the progress bar stays.
        assert_eq!(controller.record(&[(2.0, 2.5, 99, 100)]), 1);
        app.sync_in();
        app.sync_out();
        assert!(matches!(app.state.job, JobStatus::Running { .. }));
        assert!(app.state.clip.notes.iter().any(|n| n.pitch == 99));
        open.send(()).unwrap();
        until_idle(&mut app);
        // Before, the result replaced the clip and the recorded note was gone.
        let session = controller.session().clip.clone();
        assert!(session.notes.iter().any(|n| n.pitch == 99));
        assert_eq!(app.state.clip, session);
        let message = app.state.error.clone().unwrap_or_default();
        assert!(message.contains("made from an older clip"), "{message}");
        let result = example_clip().transposed(12).unwrap();
        let ab = app.state.ab.clone().expect("the result as version B");
        assert_eq!((ab.other, ab.showing_new), (result.clone(), false));
        // A/B to the result makes it the clip.
        app.state.toggle_ab();
        app.sync_out();
        assert_eq!(controller.session().clip, result);
    }

    #[test]
    fn an_edit_in_the_frame_of_a_recording_keeps_both() {
        let (mut app, controller, _open) = gated_app();
        app.state.clip.notes.push(Note::new(6, 97, 2, 100, 0));
        // Recorded after this frame's sync_in, before its sync_out: before, the editor's copy
        // overwrote the recording.
        assert_eq!(controller.record(&[(3.0, 3.5, 98, 100)]), 1);
        app.sync_out();
        for clip in [&app.state.clip, &controller.session().clip] {
            assert!(clip.notes.iter().any(|n| n.pitch == 97));
            assert!(clip.notes.iter().any(|n| n.pitch == 98));
        }
        assert_eq!(app.state.clip, controller.session().clip);
    }

    #[test]
    fn a_model_panic_reaches_the_editor_as_a_message_and_the_next_job_runs() {
        let (mut app, controller, open) = gated_app();
        run(&mut app, Task::Harmonize);
        until_idle(&mut app);
        let error = app.state.error.clone().unwrap_or_default();
        assert!(
            error.contains("gated panicked: harmonizer exploded"),
            "{error}"
        );
        assert_eq!(app.state.clip, example_clip(), "the clip is untouched");
        // The same worker serves the next job.
        app.state.mask = Mask::bars(&app.state.clip, 1..=1);
        open.send(()).unwrap();
        run(&mut app, Task::FillMask);
        assert!(app.state.error.is_none());
        until_idle(&mut app);
        assert!(app.state.error.is_none(), "{:?}", app.state.error);
        assert_eq!(app.state.clip, example_clip().transposed(12).unwrap());
        assert_eq!(controller.session().clip, app.state.clip);
    }

    /// One frame of the whole editor at the default size; returns the laid-out width and the
    /// texts drawn with their rectangles.
    fn frame(
        app: &mut EditorApp,
        ctx: &egui::Context,
        events: Vec<egui::Event>,
    ) -> (f32, Vec<(String, egui::Rect)>) {
        let input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(EditorView::default().width, EditorView::default().height),
            )),
            events,
            ..Default::default()
        };
        let mut width = 0.0;
        let out = ctx.run_ui(input, |ui| {
            for action in app.draw(ui) {
                app.act(action);
            }
            width = ui.min_rect().width();
        });
        let mut texts = Vec::new();
        for clipped in &out.shapes {
            if let egui::epaint::Shape::Text(t) = &clipped.shape {
                let rect = t.galley.rect.translate(t.pos.to_vec2());
                texts.push((t.galley.text().to_owned(), rect));
            }
        }
        out.drop_without_applying_deltas();
        (width, texts)
    }

    fn has(texts: &[(String, egui::Rect)], text: &str) -> bool {
        texts.iter().any(|(t, _)| t == text)
    }

    #[test]
    fn the_whole_toolbar_fits_the_default_window_width() {
        let (mut app, _controller) = app();
        // The widest state: an A/B pair, a loop range, long counters.
        app.state.accept_result(example_clip(), "Fill mask");
        app.state.roll.loop_bars = Some((0, 4));
        app.export_scope = ExportScope::Selection;
        app.band.answered.store(12_345, Relaxed);
        app.band.missed.store(678, Relaxed);
        app.band.recorded_notes.store(9_999, Relaxed);
        app.band.last_latency_us.store(123_456, Relaxed);
        let ctx = egui::Context::default();
        let (width, texts) = frame(&mut app, &ctx, Vec::new());
        let default = EditorView::default().width;
        assert_eq!(default, bandmate_gui::panels::DEFAULT_WIDTH);
        assert!(
            width <= default + 0.5,
            "{width} points wide, more than {default}"
        );
        let rows: Vec<f32> = ["Edit", "Generate", "Tracks", "Band"]
            .iter()
            .map(|g| {
                let (_, r) = texts.iter().find(|(t, _)| t == g).expect("group shown");
                r.center().y
            })
            .collect();
        assert!(rows.windows(2).all(|w| w[0] < w[1]), "{rows:?}");
        // Export sits on the tracks row, the counters on the band row (nothing wrapped).
        for (text, row) in [("Export .mid", 2), ("Import .mid…", 2), ("arm", 3)] {
            let (_, r) = texts.iter().find(|(t, _)| t == text).expect(text);
            assert!((r.center().y - rows[row]).abs() < 4.0, "{text} wrapped");
        }
        #[cfg(target_os = "linux")]
        {
            let (_, r) = texts.iter().find(|(t, _)| t == "Drag .mid").expect("drag");
            assert!((r.center().y - rows[2]).abs() < 4.0, "Drag .mid wrapped");
        }
    }

    /// The controls on the toolbar rows (down to the band row) in the last frame, as egui
    /// registered them: the widgets that take clicks or drags and the keyboard focus (not
    /// labels, whose text senses clicks only to be selected), with whether each is enabled.
    fn toolbar_controls(
        ctx: &egui::Context,
        texts: &[(String, egui::Rect)],
    ) -> Vec<(egui::Rect, bool)> {
        let (_, band) = texts.iter().find(|(t, _)| t == "Band").expect("band row");
        let bottom = band.center().y + ctx.global_style().spacing.interact_size.y / 2.0;
        bandmate_gui::panels::controls_above(ctx, bottom)
    }

    /// Rest the pointer on the middle of `control` until a tooltip shows, then move it away:
    /// whether the widget there (or the widget it is part of: a slider's value field) showed a
    /// tooltip, and the texts the tooltip added (not the control's own).
    fn hover(app: &mut EditorApp, ctx: &egui::Context, control: egui::Rect) -> (bool, Vec<String>) {
        let at = control.center();
        let (_, before) = frame(app, ctx, Vec::new());
        frame(app, ctx, vec![egui::Event::PointerMoved(at)]);
        let mut texts = Vec::new();
        for _ in 0..40 {
            texts = frame(app, ctx, Vec::new()).1;
        }
        let shown = bandmate_gui::panels::shows_tooltip_of(ctx, control);
        let added = texts
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| !before.iter().any(|(b, _)| b == t))
            .collect();
        let away = egui::pos2(2.0, EditorView::default().height - 2.0);
        frame(app, ctx, vec![egui::Event::PointerMoved(away)]);
        for _ in 0..5 {
            frame(app, ctx, Vec::new());
        }
        (shown, added)
    }

    #[test]
    fn every_control_of_the_plugin_toolbar_has_a_tooltip() {
        let (mut app, _controller) = app();
        // An A/B pair and a loop range: every control shown. No host here, so arm and record
        // are disabled (they say why).
        app.state.accept_result(example_clip(), "Fill mask");
        app.state.roll.loop_bars = Some((0, 4));
        let ctx = egui::Context::default();
        let (_, texts) = frame(&mut app, &ctx, Vec::new());
        let controls = toolbar_controls(&ctx, &texts);
        // The plugin's own controls around the gui toolbar, found by their text.
        let (_, band_row) = texts.iter().find(|(t, _)| t == "Band").unwrap();
        let on_band_row = |r: &egui::Rect| (r.center().y - band_row.center().y).abs() < 4.0;
        let control_of = |found: Option<&(String, egui::Rect)>, what: &str| {
            let (_, text) = found.unwrap_or_else(|| panic!("no {what} in {texts:?}"));
            controls
                .iter()
                .find(|(r, _)| r.contains(text.center()))
                .unwrap_or_else(|| panic!("{what} is not a control"))
                .0
        };
        let text = |label: &str| control_of(texts.iter().find(|(t, _)| t == label), label);
        let mut own = vec![
            ("Export .mid", text("Export .mid")),
            ("the export scope", text(ExportScope::Clip.name())),
            ("Import .mid…", text("Import .mid…")),
            ("arm", text("arm")),
            ("record", text("record")),
        ];
        #[cfg(any(target_os = "linux", windows, target_os = "macos"))]
        own.push(("Drag .mid", text("Drag .mid")));
        for role in [TrackRole::Melody, TrackRole::Accompaniment] {
            let found = texts
                .iter()
                .find(|(t, r)| t == role.name() && on_band_row(r));
            own.push(("a part the model plays", control_of(found, role.name())));
        }
        let lookahead = texts.iter().find(|(t, _)| t.starts_with("lookahead "));
        own.push(("lookahead", control_of(lookahead, "lookahead")));
        // Every control of the rows, the gui toolbar's too (each with a tooltip of its own).
        assert!(
            controls.len() > own.len() + 30,
            "{} controls",
            controls.len()
        );
        for (rect, enabled) in controls {
            let name: Vec<&str> = texts
                .iter()
                .filter(|(_, r)| rect.contains(r.center()))
                .map(|(t, _)| t.as_str())
                .collect();
            let (shown, added) = hover(&mut app, &ctx, rect);
            let what = format!("the control {name:?} at {rect:?} (enabled: {enabled})");
            assert!(shown, "hovering {what} shows no tooltip");
            assert!(
                added
                    .iter()
                    .any(|t| t.trim().len() > 3 && !name.contains(&t.as_str())),
                "hovering {what} shows no tooltip text: {added:?}"
            );
            own.retain(|(_, r)| *r != rect);
        }
        assert!(own.is_empty(), "not hovered: {own:?}");
    }

    #[test]
    fn the_status_line_shows_which_device_runs_the_models() {
        let (mut app, _controller) = app();
        let ctx = egui::Context::default();
        // Loaded on this thread here (the editor leaves that to a thread of its own).
        assert!(!crate::models::shared_generators().is_empty());
        let (_, texts) = frame(&mut app, &ctx, Vec::new());
        let device = bandmate::nn::device_name(&bandmate::nn::compute_device());
        let want = format!("Models run on: {device}");
        assert!(has(&texts, &want), "{want} not in {texts:?}");
    }

    #[test]
    fn the_first_run_hint_stays_dismissed_in_new_instances() {
        let dir = std::env::temp_dir().join(format!("bandmate-hint-{}", std::process::id()));
        let marker = dir.join("first-run-hint-seen");
        let _ = std::fs::remove_dir_all(&dir);
        let (first, _controller) = app();
        let mut first = first.with_hint_marker(Some(marker.clone()));
        assert!(first.state.show_hint);
        let ctx = egui::Context::default();
        let (_, texts) = frame(&mut first, &ctx, Vec::new());
        assert!(texts.iter().any(|(t, _)| t.starts_with("First steps")));
        assert!(!marker.exists());
        let (_, at) = texts.iter().find(|(t, _)| t == "Got it").expect("Got it");
        let at = at.center();
        frame(&mut first, &ctx, vec![egui::Event::PointerMoved(at)]);
        for pressed in [true, false] {
            let click = egui::Event::PointerButton {
                pos: at,
                button: egui::PointerButton::Primary,
                pressed,
                modifiers: egui::Modifiers::NONE,
            };
            frame(&mut first, &ctx, vec![click]);
        }
        let (_, texts) = frame(&mut first, &ctx, Vec::new());
        assert!(!texts.iter().any(|(t, _)| t.starts_with("First steps")));
        assert!(marker.exists(), "the dismissal is not remembered");
        // A new instance on this machine starts without the hint.
        let (again, _controller) = app();
        let mut again = again.with_hint_marker(Some(marker.clone()));
        let (_, texts) = frame(&mut again, &ctx, Vec::new());
        assert!(has(&texts, "Edit") && !has(&texts, "Got it"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn export_writes_a_midi_file_that_reads_back() {
        let dir = std::env::temp_dir().join(format!("bandmate-export-{}", std::process::id()));
        // SAFETY: tests in this module do not read the variable concurrently elsewhere.
        unsafe { std::env::set_var("BANDMATE_EXPORTS", &dir) };
        let (mut app, _controller) = app();
        app.export();
        let status = app.export_status.clone().unwrap();
        assert!(status.starts_with("exported to "), "{status}");
        let path = PathBuf::from(status.trim_start_matches("exported to "));
        let back = bandmate::midi::read_file(&path).unwrap();
        assert_eq!(back.notes.len(), example_clip().notes.len());
        app.import(&path);
        assert_eq!(app.state.clip.notes.len(), example_clip().notes.len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_drag_handle_writes_the_export_and_reports_in_the_status_line() {
        let (mut app, _controller) = app();
        let ctx = egui::Context::default();
        let (_, texts) = frame(&mut app, &ctx, Vec::new());
        assert!(has(&texts, "Drag .mid"), "the handle is shown");
        // The file a drag carries: the export, read back.
        app.state.roll.edit_track = 1;
        let path = write_drag_file(&app.state, ExportScope::Track).unwrap();
        assert!(path.starts_with(drag_folder()));
        let back = bandmate::midi::read_file(&path).unwrap();
        let track = export_clip(&app.state, ExportScope::Track).unwrap();
        assert_eq!(back.notes.len(), track.notes.len());
        let _ = std::fs::remove_file(&path);
        // Nothing to drag, or no X server: a message, and the editor goes on.
        app.export_scope = ExportScope::Selection;
        app.start_drag(crate::drag_out::DragConfig::default());
        let status = app.export_status.clone().unwrap();
        assert!(status.contains("no notes"), "{status}");
        assert!(!app.dragging());
        app.export_scope = ExportScope::Clip;
        app.start_drag(crate::drag_out::DragConfig {
            display: Some(":9999".into()),
            ..Default::default()
        });
        assert!(app.dragging());
        let deadline = Instant::now() + Duration::from_secs(10);
        while app.dragging() {
            assert!(Instant::now() < deadline, "the drag never ended");
            std::thread::sleep(Duration::from_millis(5));
            app.poll_drag();
        }
        let status = app.export_status.clone().unwrap();
        assert!(
            status.contains("cannot connect to the X server"),
            "{status}"
        );
    }

    #[test]
    fn a_track_or_the_selection_exports_only_its_notes() {
        let (app, _controller) = app();
        let clip = example_clip();
        let mut state = EditorState::new(clip.clone());
        state.roll.edit_track = 1;
        let track = export_clip(&state, ExportScope::Track).unwrap();
        assert!(!track.notes.is_empty());
        assert!(track.notes.iter().all(|n| n.track == 1));
        assert_eq!(
            track.notes.len(),
            clip.notes.iter().filter(|n| n.track == 1).count()
        );
        assert_eq!((track.bars, track.tempo), (clip.bars, clip.tempo));
        // Nothing selected: a readable refusal, not an empty file.
        let err = export_clip(&state, ExportScope::Selection).unwrap_err();
        assert!(err.contains("selection"), "{err}");
        state.selection.extend([0, 2]);
        let selected = export_clip(&state, ExportScope::Selection).unwrap();
        assert_eq!(selected.notes, vec![clip.notes[0], clip.notes[2]]);
        assert_eq!(export_clip(app.state(), ExportScope::Clip).unwrap(), clip);
    }
}
