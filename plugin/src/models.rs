//! The models the worker runs, as [`Generator`]s: the piano-roll diffusion (engine
//! `diffusion::tasks`) with its embedded default weights, plus any roll model in the user's
//! model folder; the melody MusicVAE with the latent score model for Interpolate; and the band
//! player's predictor.

use crate::worker::{Generator, GeneratorList, Job, JobControl, JobKind, JobRequest, JobSettings};
use bandmate::band::player::{BandModel, BandPlayer};
use bandmate::diffusion::{self, RollModel, RollOptions, StepHook};
use bandmate::latent::{LatentMelody, LatentModel, SampleOptions, apply_windows, song_windows};
use bandmate::music::{Clip, TimeSignature, TrackRole};
use bandmate::vae::MelodyVae;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

static GENERATORS: OnceLock<GeneratorList> = OnceLock::new();

/// The names of the shared generators once they have loaded (`None` before: the editor shows
/// "Automatic" alone until then, and starts the load on a thread of its own).
pub fn loaded_generator_names() -> Option<Vec<String>> {
    match GENERATORS.get() {
        Some(list) => Some(list.iter().map(|g| g.name().to_owned()).collect()),
        None => {
            static LOADING: std::sync::Once = std::sync::Once::new();
            LOADING.call_once(|| {
                let _ = std::thread::Builder::new()
                    .name("bandmate-model-load".into())
                    .spawn(|| {
                        let _ = std::panic::catch_unwind(shared_generators);
                    });
            });
            None
        }
    }
}

/// Which device runs the models ("CPU", or in a GPU build "CUDA GPU 0" or "Metal GPU"), once
/// the shared generators have loaded (`None` before: choosing a GPU can take a moment, which
/// the editor's thread must not wait for). Every model loads onto that device.
pub fn models_device() -> Option<String> {
    GENERATORS
        .get()
        .map(|_| bandmate::nn::device_name(&bandmate::nn::compute_device()))
}

/// The generators every instance shares, loaded once per process on first use (by a worker
/// thread, never while a host scans plugins): see [`load_generators`]. The band
/// player's bars run on its own thread ([`crate::band`]), not here.
pub fn shared_generators() -> Arc<[Arc<dyn Generator>]> {
    GENERATORS
        .get_or_init(|| Arc::from(crate::models::load_generators()))
        .clone()
}

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

/// Echo strength of the most faithful Repeat (1): the bars before the hole, noised to step
/// 0.05·T, come back nearly as they were.
const CLOSEST_ECHO: f32 = 0.05;

/// The engine's sampling options for `settings`, for a model whose fills echo the bars before
/// the hole at `echo_calibration` (`diffusion::fill_echo` of the job, else
/// `Config::echo.fill_for` the job's seed). Steps, temperature, key and pitch range pass
/// through; density 0–1 maps to the odds multiplier 1/4–4 (0.5 → 1, as trained); Repeat sets
/// the echo strength ([`echo_strength`]).
pub fn roll_options(settings: &JobSettings, echo_calibration: f32) -> RollOptions {
    RollOptions {
        steps: settings.steps.clamp(1, 100),
        seed: settings.seed,
        key: settings.key,
        pitch_range: settings.pitch_range.clone(),
        density: 4f32.powf(2.0 * settings.density.clamp(0.0, 1.0) - 1.0),
        temperature: if settings.temperature.is_finite() && settings.temperature > 0.0 {
            settings.temperature
        } else {
            1.0
        },
        echo: Some(echo_strength(settings.repeat, echo_calibration)),
        ..RollOptions::default()
    }
}

/// The echo strength (the engine's `RollOptions::echo`, 0 = off) for Repeat 0–1: how closely
/// Fill and Continue follow the bars before the hole. 0 writes fresh material (from noise),
/// 0.5 is the model's calibration `calibrated` (chosen on the valid split; a model without
/// one counts as fresh there), 1 stays close to a copy ([`CLOSEST_ECHO`]); linear in between,
/// so the strength falls as Repeat rises.
pub fn echo_strength(repeat: f32, calibrated: f32) -> f32 {
    let repeat = if repeat.is_finite() {
        repeat.clamp(0.0, 1.0)
    } else {
        0.5
    };
    // Strength 1 noises the echo away entirely: the same start as no echo.
    let middle = if calibrated > 0.0 && calibrated < 1.0 {
        calibrated
    } else {
        1.0
    };
    let strength = if repeat <= 0.5 {
        1.0 + (middle - 1.0) * repeat / 0.5
    } else {
        middle + (CLOSEST_ECHO - middle) * (repeat - 0.5) / 0.5
    };
    if strength >= 1.0 { 0.0 } else { strength }
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
        // Repeat's middle: the model's echo for this job (an accompaniment's for a one-track
        // fill under other tracks' notes).
        let echo_calibration = match &request.job {
            Job::Fill { clip, mask } => diffusion::fill_echo(model.config(), clip, mask, s.seed),
            _ => model.config().echo.fill_for(s.seed),
        };
        let options = |settings: &JobSettings| RollOptions {
            on_step: Some(hook.clone()),
            ..roll_options(settings, echo_calibration)
        };
        let result = match &request.job {
            Job::Fill { clip, mask } => diffusion::fill(model, clip, mask, &options(s)),
            Job::Vary { clip, mask } => {
                let strength = s.strength.clamp(0.01, 1.0);
                diffusion::vary(model, clip, mask, strength, &options(s))
            }
            Job::Continue { clip, bars } => {
                let opts = options(s);
                diffusion::continue_clip(model, clip, clip.bars, clip.bars + bars, &opts)
            }
            Job::Harmonize { clip } => diffusion::harmonize(model, clip, None, &options(s)),
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
                diffusion::generate(model, *bars, &options(s)).map(|mut clip| {
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
        // A user's model must not take the others down, not even by panicking.
        let loaded = std::panic::catch_unwind(|| RollModel::load_dir(&dir));
        match loaded {
            Ok(Ok(model)) => out.push(Arc::new(RollGenerator::new(name, model))),
            Ok(Err(e)) => nice_plug::nice_warn!("skipping the model in {}: {e:#}", dir.display()),
            Err(_) => nice_plug::nice_warn!(
                "skipping the model in {}: loading it panicked",
                dir.display()
            ),
        }
    }
    match RollModel::embedded() {
        Ok(model) => out.push(Arc::new(RollGenerator::new("roll diffusion", model))),
        Err(e) => nice_plug::nice_warn!("the embedded roll model did not load: {e:#}"),
    }
    match MelodyGenerator::embedded() {
        Ok(generator) => out.push(Arc::new(generator)),
        Err(e) => nice_plug::nice_warn!("the embedded melody models did not load: {e:#}"),
    }
    out
}

/// Makes the band player's next-bar predictor (called on the band thread when the first bar is
/// due): the recurrent multimodal VAE embedded in the engine (`assets/band`, loaded once per
/// process and shared), or the chord-table accompanist (`bandmate::band`) if it cannot load.
pub fn band_predictor() -> Result<Box<dyn crate::band::BarPredictor>, String> {
    static MODEL: OnceLock<Result<BandModel, String>> = OnceLock::new();
    match MODEL.get_or_init(|| BandModel::embedded().map_err(|e| format!("{e:#}"))) {
        Ok(model) => {
            let player = BandPlayer::new(model).map_err(|e| format!("{e:#}"))?;
            Ok(Box::new(RmvaePredictor(player)))
        }
        Err(e) => {
            nice_plug::nice_warn!("the band model did not load ({e}); using the chord table");
            chord_table_predictor()
        }
    }
}

/// The chord-table accompanist: the band player's fallback.
pub fn chord_table_predictor() -> Result<Box<dyn crate::band::BarPredictor>, String> {
    let table = bandmate::band::ChordTable::embedded().map_err(|e| format!("{e:#}"))?;
    Ok(Box::new(ChordPredictor(
        bandmate::band::ChordBandPlayer::new(table),
    )))
}

struct RmvaePredictor(BandPlayer<'static>);

impl crate::band::BarPredictor for RmvaePredictor {
    fn next_bar(&mut self, played: &Clip) -> Result<Clip, String> {
        self.0
            .next_bar(played)
            .map_err(|e| format!("band model: {e:#}"))
    }

    fn reset(&mut self) {
        // Only fails if the model cannot build a zero state, which loading already did.
        let _ = self.0.reset();
    }

    fn set_roles(&mut self, roles: &[TrackRole]) -> Result<(), String> {
        self.0.set_roles(roles).map_err(|e| format!("{e:#}"))
    }
}

struct ChordPredictor(bandmate::band::ChordBandPlayer);

impl crate::band::BarPredictor for ChordPredictor {
    fn next_bar(&mut self, played: &Clip) -> Result<Clip, String> {
        Ok(self.0.next_bar(played))
    }

    fn reset(&mut self) {
        self.0.reset();
    }

    fn set_roles(&mut self, roles: &[TrackRole]) -> Result<(), String> {
        match roles {
            [TrackRole::Accompaniment] => Ok(()),
            _ => Err("the chord-table band player only plays the accompaniment".into()),
        }
    }
}

/// The MusicVAE and the latent score model (embedded, `assets/vae` and `assets/latent`):
/// interpolation between two versions of a clip's melody.
pub struct MelodyGenerator {
    vae: MelodyVae,
    latent: LatentModel,
}

impl MelodyGenerator {
    pub fn embedded() -> anyhow::Result<Self> {
        Ok(Self {
            vae: MelodyVae::embedded()?,
            latent: LatentModel::embedded()?,
        })
    }
}

impl Generator for MelodyGenerator {
    fn name(&self) -> &str {
        "melody VAE + latent diffusion"
    }

    fn can_run(&self, kind: JobKind) -> bool {
        kind == JobKind::Interpolate
    }

    fn run(&self, request: &JobRequest, control: &JobControl) -> Result<Clip, String> {
        let Job::Interpolate { from, to, amount } = &request.job else {
            return Err(format!(
                "{} cannot run {}",
                self.name(),
                request.job.kind().name()
            ));
        };
        control.progress(0.0);
        let lm = LatentMelody {
            vae: &self.vae,
            model: &self.latent,
        };
        let opts = SampleOptions {
            seed: request.settings.seed,
            ..SampleOptions::default()
        };
        // Progress after each window; a newer job or a drop stops it between two.
        let mut step = |fraction| {
            control.progress(fraction);
            !control.cancelled()
        };
        interpolate_clips(&lm, from, to, *amount, &opts, &mut step)
            .map_err(|e| format!("interpolate: {e:#}"))
    }
}

/// `from` with its melody moved `amount` (0–1) of the way to `to`'s, window by window (2 bars):
/// the spherical interpolation of the two MusicVAE latents of each window, decoded; where only
/// `from` has a window it stays. Other tracks stay as in `from`. After each window
/// `step(fraction done)` is asked whether to go on: `false` stops with an error (cancelled).
pub fn interpolate_clips(
    lm: &LatentMelody,
    from: &Clip,
    to: &Clip,
    amount: f32,
    opts: &SampleOptions,
    step: &mut dyn FnMut(f32) -> bool,
) -> anyhow::Result<Clip> {
    let a = song_windows(from)?;
    let b = song_windows(to)?;
    let amount = amount.clamp(0.0, 1.0);
    let shared = a.windows.len().min(b.windows.len());
    let mut windows = a.windows.clone();
    let mut replace = vec![false; windows.len()];
    // 0 and 1 are the two versions themselves (not their reconstructions); between them, the
    // nearest of 9 interpolants.
    let index = (amount * 10.0).round() as usize;
    for w in 0..shared {
        if !step(w as f32 / shared as f32) {
            anyhow::bail!("cancelled");
        }
        if a.windows[w] == b.windows[w] || index == 0 {
            continue;
        }
        windows[w] = if index == 10 {
            b.windows[w].clone()
        } else {
            lm.interpolate(&a.windows[w], &b.windows[w], 11, None, opts)?[index].clone()
        };
        replace[w] = true;
    }
    if !replace.contains(&true) {
        return Ok(from.clone());
    }
    Ok(apply_windows(from, a.track, &windows, &replace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandmate::music::{Note, Track, TrackRole};
    use std::time::Duration;

    /// A 4-bar tune: a melody from `pitches` (one note per quarter) over a held C chord.
    fn tune(pitches: &[u8]) -> Clip {
        let mut clip = Clip::new(4);
        clip.tracks = vec![
            Track::new("Melody", TrackRole::Melody, 0),
            Track::new("Chords", TrackRole::Accompaniment, 1),
        ];
        for (i, &p) in pitches.iter().cycle().take(16).enumerate() {
            clip.notes.push(Note::new(i as u32 * 4, p, 4, 96, 0));
        }
        for bar in 0..4 {
            for p in [48, 52, 55] {
                clip.notes.push(Note::new(bar * 16, p, 16, 70, 1));
            }
        }
        clip
    }

    /// `request` run to its end on a worker with `generator` alone.
    fn run_on_worker(generator: Arc<dyn Generator>, request: JobRequest) -> Result<Clip, String> {
        let mut worker = crate::worker::Worker::spawn(move || Arc::from(vec![generator])).unwrap();
        worker.run_to_end(request, Duration::from_secs(120)).result
    }

    #[test]
    fn repeat_maps_onto_the_echo_strength() {
        // 0 fresh (no echo), 0.5 the model's calibration, 1 close to a copy.
        assert_eq!(echo_strength(0.0, 0.3), 0.0);
        assert!((echo_strength(0.5, 0.3) - 0.3).abs() < 1e-6);
        assert!((echo_strength(1.0, 0.3) - CLOSEST_ECHO).abs() < 1e-6);
        // The strength falls as Repeat rises (less noise over the echoed bars).
        let strengths: Vec<f32> = (1..=20)
            .map(|i| echo_strength(i as f32 / 20.0, 0.3))
            .collect();
        assert!(strengths.windows(2).all(|w| w[1] < w[0]), "{strengths:?}");
        assert!(strengths.iter().all(|&e| e > 0.0 && e < 1.0));
        // A model without an echo calibration writes fresh fills at 0.5 and echoes above it.
        assert_eq!(echo_strength(0.5, 0.0), 0.0);
        assert!((echo_strength(1.0, 0.0) - CLOSEST_ECHO).abs() < 1e-6);
        // Out-of-range or broken values stay valid strengths.
        assert_eq!(echo_strength(-3.0, 0.3), 0.0);
        assert!((echo_strength(7.0, 0.3) - CLOSEST_ECHO).abs() < 1e-6);
        assert!((echo_strength(f32::NAN, 0.3) - 0.3).abs() < 1e-6);
    }

    #[test]
    fn interpolation_runs_from_one_melody_to_the_other_and_keeps_the_chords() {
        let generator = MelodyGenerator::embedded().unwrap();
        let lm = LatentMelody {
            vae: &generator.vae,
            model: &generator.latent,
        };
        let a = tune(&[60, 62, 64, 65, 67, 65, 64, 62]);
        let b = tune(&[72, 67, 64, 67, 72, 76, 79, 76]);
        let opts = SampleOptions::default();
        assert_eq!(
            interpolate_clips(&lm, &a, &b, 0.0, &opts, &mut |_| true).unwrap(),
            a
        );
        let melody = |c: &Clip, track: u16| -> Vec<(u32, u8)> {
            let mut v: Vec<(u32, u8)> = c.track_notes(track).map(|n| (n.start, n.pitch)).collect();
            v.sort();
            v
        };
        let end = interpolate_clips(&lm, &a, &b, 1.0, &opts, &mut |_| true).unwrap();
        assert_eq!(melody(&end, 0), melody(&b, 0));
        let middle = interpolate_clips(&lm, &a, &b, 0.5, &opts, &mut |_| true).unwrap();
        assert_eq!(melody(&middle, 1), melody(&a, 1), "the chords stay");
        assert!(!melody(&middle, 0).is_empty());
        assert!(middle.track_notes(0).all(|n| n.start < 64 && n.end() <= 64));
        // Through the worker, as the editor's Interpolate button sends it.
        let request = JobRequest {
            job: Job::Interpolate {
                from: a.clone(),
                to: b.clone(),
                amount: 0.5,
            },
            settings: JobSettings::default(),
        };
        let shared: Arc<dyn Generator> = Arc::new(MelodyGenerator::embedded().unwrap());
        assert_eq!(run_on_worker(shared, request).unwrap(), middle);
        // A waltz cannot be interpolated: a clear error.
        let mut waltz = a.clone();
        waltz.time_signature = TimeSignature::new(3, 4);
        let e = interpolate_clips(&lm, &waltz, &b, 0.5, &opts, &mut |_| true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3/4"), "{e}");
        // Cancel is asked before each window: a newer job or a drop stops it between two.
        let mut asked = 0;
        let e = interpolate_clips(&lm, &a, &b, 0.5, &opts, &mut |_| {
            asked += 1;
            false
        })
        .unwrap_err();
        assert_eq!((e.to_string(), asked), ("cancelled".to_string(), 1));
    }

    #[test]
    fn the_chosen_model_runs_the_job() {
        let clip = tune(&[60, 62, 64, 65]);
        let cfg = RollModel::embedded().unwrap().config().clone();
        let generators: Vec<Arc<dyn Generator>> = vec![
            Arc::new(RollGenerator::new(
                "built-in",
                RollModel::embedded().unwrap(),
            )),
            Arc::new(RollGenerator::new(
                "untrained",
                RollModel::random(&cfg, 9).unwrap(),
            )),
        ];
        let run = |model: &str| -> (String, Clip) {
            let list = generators.clone();
            let mut worker = crate::worker::Worker::spawn(move || Arc::from(list)).unwrap();
            let request = JobRequest {
                job: Job::Fill {
                    clip: clip.clone(),
                    mask: bandmate::music::Mask::bars(&clip, 2..=3),
                },
                settings: JobSettings {
                    steps: 8,
                    model: model.to_owned(),
                    ..JobSettings::default()
                },
            };
            let outcome = worker.run_to_end(request, Duration::from_secs(120));
            (outcome.generator, outcome.result.unwrap())
        };
        let (auto_name, auto) = run("");
        let (chosen_name, chosen) = run("untrained");
        let (unknown_name, _) = run("no such model");
        assert_eq!(auto_name, "built-in");
        assert_eq!(chosen_name, "untrained");
        assert_eq!(
            unknown_name, "built-in",
            "an unknown name falls back to the first"
        );
        assert_ne!(auto, chosen);
    }
}
