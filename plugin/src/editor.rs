//! The plugin's editor: the gui crate's piano roll and panels in a nice-plug-egui window,
//! connected to the instance through the [`Controller`].
//!
//! Every frame: worker reports come in (progress, results as one undo step, errors shown in the
//! editor), clip changes made elsewhere (recording) are taken over, the editor runs, and its
//! edits go back to the session and the audio thread. Nothing here waits on the worker or the
//! audio thread: reports are polled, clips go through the ring buffer.

use crate::band::BandStats;
use crate::controller::Controller;
use crate::params::Mode;
use crate::state::EditorView;
use crate::worker::{Job, JobSettings, WorkerReport};
use bandmate::music::{Clip, Mask};
use bandmate_gui::{Action, EditorState, JobStatus, ModelSettings, Task, editor_ui};
use nice_plug::editor::dpi::{LogicalSize, Size};
use nice_plug_egui::{
    EguiEditor, EguiEditorState, EguiNiceSettings, Frame, NiceEguiApp, RepaintNotifier,
    create_egui_editor,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

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
    /// The clip as last sent to (or taken from) the session.
    synced: Clip,
    synced_mask: Mask,
    /// Label of the running job, for its undo step.
    running: Option<String>,
    /// Where the last export went, or why it failed.
    export_status: Option<String>,
}

impl EditorApp {
    pub fn new(
        controller: Arc<Controller>,
        band: Arc<BandStats>,
        repaint: RepaintNotifier,
    ) -> Self {
        let (clip, mask) = {
            let session = controller.session();
            let mask = session
                .mask
                .clone()
                .unwrap_or_else(|| Mask::empty(session.clip.steps()));
            (session.clip.clone(), mask)
        };
        let mut state = EditorState::new(clip.clone());
        state.mask = mask.clone();
        state.error = controller.session().load_warning.clone();
        Self {
            controller,
            band,
            repaint,
            state,
            synced: clip,
            synced_mask: mask,
            running: None,
            export_status: None,
        }
    }

    /// The editor state (for tests and the screenshot tool).
    pub fn state(&self) -> &EditorState {
        &self.state
    }

    /// Take in worker reports and clip changes made outside the editor.
    pub fn sync_in(&mut self) {
        for report in self.controller.poll() {
            match report {
                WorkerReport::Started { .. } => {}
                WorkerReport::Progress { fraction, .. } => {
                    if let JobStatus::Running { progress, .. } = &mut self.state.job {
                        *progress = fraction;
                    }
                }
                WorkerReport::Done { clip, .. } => {
                    let label = self.running.take().unwrap_or_else(|| "Model".into());
                    self.state.accept_result(clip.clone(), &label);
                    self.synced = clip;
                }
                WorkerReport::Failed { error, .. } => {
                    self.running = None;
                    self.state.job = JobStatus::Idle;
                    self.state.error = Some(error);
                }
                WorkerReport::Cancelled { .. } => {
                    self.running = None;
                    self.state.job = JobStatus::Idle;
                }
            }
        }
        let session_clip = self.controller.session().clip.clone();
        if session_clip != self.synced {
            // Recorded notes (or a state load): one undo step like any other change.
            self.state.accept_result(session_clip.clone(), "Recording");
            self.state.ab = None;
            self.synced = session_clip;
        }
    }

    /// Send the editor's edits to the session and the audio thread.
    pub fn sync_out(&mut self) {
        if self.state.clip != self.synced {
            self.synced = self.state.clip.clone();
            self.controller.set_clip(self.state.clip.clone());
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
                match self.job_for(&task) {
                    Ok(job) => {
                        match self
                            .controller
                            .submit_with(job, job_settings(&settings, &task))
                        {
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
            // Auditioning needs a note path to the host, which the editor does not have yet.
            Action::Audition { .. } => {}
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

    /// Write the clip to the export folder and say where.
    fn export(&mut self) {
        let dir = export_folder();
        let name = format!(
            "bandmate-{}.mid",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        );
        let path = dir.join(name);
        let result = std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))
            .and_then(|()| {
                bandmate::midi::write_file(&self.state.clip, &path).map_err(|e| format!("{e}"))
            });
        self.export_status = Some(match result {
            Ok(()) => format!("exported to {}", path.display()),
            Err(e) => format!("export failed: {e}"),
        });
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            if ui
                .button("Export .mid")
                .on_hover_text(
                    "Write the clip as a MIDI file into the export folder (drag it into the DAW from there)",
                )
                .clicked()
            {
                self.export();
            }
            ui.label("Drop a .mid file here to import it.");
            if let Some(status) = &self.export_status {
                ui.label(egui::RichText::new(status).weak());
            }
        });
        ui.horizontal_wrapped(|ui| {
            let mode = self.controller.params().mode.value();
            let record = self.controller.params().record.value();
            ui.label(format!(
                "Band player: {}",
                if mode == Mode::Band {
                    "on"
                } else {
                    "off (Mode = Band player)"
                }
            ));
            ui.label(format!(
                "answered {}  missed {}  last latency {:.1} ms",
                self.band.answered.load(Relaxed),
                self.band.missed.load(Relaxed),
                self.band.last_latency_us.load(Relaxed) as f64 / 1000.0
            ));
            ui.separator();
            ui.label(format!(
                "Record: {}  ({} notes recorded)",
                if record { "armed" } else { "off" },
                self.band.recorded_notes.load(Relaxed)
            ));
            if let Some(error) = self.band.last_error() {
                ui.colored_label(egui::Color32::from_rgb(230, 120, 80), error);
            }
        });
        ui.separator();
    }
}

/// The editor's settings as worker settings (strength from the Vary task).
fn job_settings(settings: &ModelSettings, task: &Task) -> JobSettings {
    JobSettings {
        density: settings.density,
        strength: match task {
            Task::Vary { strength } => *strength,
            _ => 0.5,
        },
        temperature: settings.temperature,
        key_lock: settings.key_lock.is_some(),
        seed: settings.seed,
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
        self.top_bar(ui);
        for action in editor_ui(ui, &mut self.state) {
            self.act(action);
        }
        self.sync_out();
        // Keep polling while a job runs or the band plays.
        if matches!(self.state.job, JobStatus::Running { .. })
            || self.controller.params().mode.value() == Mode::Band
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
        // A clip changed elsewhere (recording) becomes the editor's clip, undoably.
        let mut recorded = controller.session().clip.clone();
        recorded.notes.push(Note::new(5, 91, 1, 80, 0));
        controller.set_clip(recorded.clone());
        app.sync_in();
        assert_eq!(app.state().clip, recorded);
        assert!(app.state.history.can_undo());
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
}
