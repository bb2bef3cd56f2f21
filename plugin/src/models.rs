//! The models the worker runs, as [`Generator`]s: the piano-roll diffusion (engine
//! `diffusion::tasks`) with its embedded default weights, plus any roll model in the user's
//! model folder.

use crate::worker::{Generator, Job, JobControl, JobKind, JobRequest, JobSettings};
use bandmate::diffusion::{self, RollModel, RollOptions, StepHook};
use bandmate::music::{Clip, Key, TimeSignature};
use std::path::PathBuf;
use std::sync::Arc;

/// Network evaluations per sample (the engine's recommended default).
const SAMPLER_STEPS: usize = 25;

/// The piano-roll diffusion model: fill, continue, harmonize, vary, generate.
pub struct RollGenerator {
    name: String,
    model: RollModel,
}

impl RollGenerator {
    pub fn new(name: impl Into<String>, model: RollModel) -> Self {
        Self {
            name: name.into(),
            model,
        }
    }
}

/// The engine's sampling options for `settings` on `clip`. Density 0–1 maps to the odds
/// multiplier 1/4–4 (0.5 → 1, as trained); key lock keeps generated notes in the clip's key.
/// The roll sampler has no temperature; it ignores that setting.
pub fn roll_options(settings: &JobSettings, clip: Option<&Clip>) -> RollOptions {
    let key = if settings.key_lock {
        clip.and_then(estimate_key)
    } else {
        None
    };
    RollOptions {
        steps: SAMPLER_STEPS,
        seed: settings.seed,
        key,
        density: 4f32.powf(2.0 * settings.density.clamp(0.0, 1.0) - 1.0),
        ..RollOptions::default()
    }
}

/// The key of the clip's pitched notes, weighted by length.
fn estimate_key(clip: &Clip) -> Option<Key> {
    let mut weights = [0.0f64; 12];
    for n in &clip.notes {
        if !clip
            .tracks
            .get(n.track as usize)
            .is_some_and(|t| t.is_drums())
        {
            weights[n.pitch as usize % 12] += n.length as f64;
        }
    }
    Key::estimate(&weights)
}

impl Generator for RollGenerator {
    fn name(&self) -> &str {
        &self.name
    }

    fn can_run(&self, kind: JobKind) -> bool {
        matches!(
            kind,
            JobKind::Fill
                | JobKind::Continue
                | JobKind::Harmonize
                | JobKind::Vary
                | JobKind::Generate
        )
    }

    fn run(&self, request: &JobRequest, control: &JobControl) -> Result<Clip, String> {
        control.progress(0.0);
        let s = &request.settings;
        let model = &self.model;
        // Progress after every network evaluation; a newer job stops this one between two.
        let hook_control = control.clone();
        let hook = StepHook::new(move |done, planned| {
            hook_control.progress(done as f32 / planned.max(1) as f32);
            !hook_control.cancelled()
        });
        let roll_options = |settings: &JobSettings, clip: Option<&Clip>| RollOptions {
            on_step: Some(hook.clone()),
            ..roll_options(settings, clip)
        };
        let result = match &request.job {
            Job::Fill { clip, mask } => {
                diffusion::fill(model, clip, mask, &roll_options(s, Some(clip)))
            }
            Job::Vary { clip, mask } => {
                let strength = s.strength.clamp(0.01, 1.0);
                diffusion::vary(model, clip, mask, strength, &roll_options(s, Some(clip)))
            }
            Job::Continue { clip, bars } => {
                let opts = roll_options(s, Some(clip));
                diffusion::continue_clip(model, clip, clip.bars, clip.bars + bars, &opts)
            }
            Job::Harmonize { clip } => {
                diffusion::harmonize(model, clip, None, &roll_options(s, Some(clip)))
            }
            Job::Generate {
                bars,
                time_signature,
                tempo,
            } => {
                if *time_signature != TimeSignature::FOUR_FOUR {
                    return Err(format!(
                        "{}: generates 4/4 only, not {time_signature}",
                        self.name
                    ));
                }
                diffusion::generate(model, *bars, &roll_options(s, None)).map(|mut clip| {
                    clip.tempo = *tempo;
                    clip
                })
            }
            other => return Err(format!("{} cannot run {}", self.name, other.kind().name())),
        };
        control.progress(1.0);
        result.map_err(|e| format!("{}: {e:#}", self.name))
    }
}

/// The user's model folder: `BANDMATE_MODELS` if set, else `~/.bandmate/models`
/// (`%APPDATA%\Bandmate\models` on Windows). Each sub-folder holding `config.json` and
/// `model.safetensors` is one roll model.
pub fn user_model_folder() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BANDMATE_MODELS") {
        return Some(PathBuf::from(dir));
    }
    if cfg!(windows) {
        std::env::var_os("APPDATA").map(|d| PathBuf::from(d).join("Bandmate").join("models"))
    } else {
        std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".bandmate").join("models"))
    }
}

/// The user's models in name order (so that they take precedence), then the embedded default.
/// Models that fail to load are left out with a warning in the log.
pub fn load_generators() -> Vec<Arc<dyn Generator>> {
    let mut out: Vec<Arc<dyn Generator>> = Vec::new();
    let mut dirs: Vec<PathBuf> = user_model_folder()
        .and_then(|folder| std::fs::read_dir(folder).ok())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").is_file() && p.join("model.safetensors").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir
            .file_name()
            .map_or_else(|| "user model".into(), |n| n.to_string_lossy().into_owned());
        match RollModel::load_dir(&dir) {
            Ok(model) => out.push(Arc::new(RollGenerator::new(name, model))),
            Err(e) => nice_plug::nice_warn!("skipping the model in {}: {e:#}", dir.display()),
        }
    }
    match RollModel::embedded() {
        Ok(model) => out.push(Arc::new(RollGenerator::new("roll diffusion", model))),
        Err(e) => nice_plug::nice_warn!("the embedded roll model did not load: {e:#}"),
    }
    out
}

/// Makes the band player's next-bar predictor (called on the band thread when the first bar is
/// due): the chord-table accompanist embedded in the engine (`bandmate::band`).
pub fn band_predictor() -> Result<Box<dyn crate::band::BarPredictor>, String> {
    let table = bandmate::band::ChordTable::embedded().map_err(|e| format!("{e:#}"))?;
    Ok(Box::new(ChordPredictor(
        bandmate::band::ChordBandPlayer::new(table),
    )))
}

struct ChordPredictor(bandmate::band::ChordBandPlayer);

impl crate::band::BarPredictor for ChordPredictor {
    fn next_bar(&mut self, played: &Clip) -> Result<Clip, String> {
        Ok(self.0.next_bar(played))
    }

    fn reset(&mut self) {
        self.0.reset();
    }
}
