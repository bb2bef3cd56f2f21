//! Score-based latent diffusion over MusicVAE latents (Mittal et al. 2021): a song's melody is a
//! sequence of 2-bar windows, each encoded by the 2-bar MusicVAE ([`crate::vae::MelodyVae`]) to
//! its latent mean; the score network ([`crate::models::latent_score`]) learns the distribution
//! of sequences of 8 latents (16 bars); the samplers of [`sampler`] generate new sequences, fill
//! chosen windows (latent replacement), continue a prompt, or refine an interpolation. The
//! latents are decoded by the VAE (argmax: the melodies are monophonic). Evaluation: [`eval`].

#[cfg(feature = "lab")]
pub mod eval;
pub mod sampler;

use std::path::PathBuf;

use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::models::latent_score::{Config, LatentScore, standardize, unstandardize};
use crate::models::music_vae::slerp;
use crate::music::melody::{REST, WINDOW_STEPS, melody_track, tokenize, top_line};
use crate::music::segment::{WindowOptions, windows_with};
use crate::music::{Clip, Note, TimeSignature};
use crate::nn::weights::{ModelFiles, model_loaders};
use crate::vae::MelodyVae;
pub use sampler::{Known, SampleOptions, Sampled, Sampler, Start, VpSde};

/// Where the shipped weights live, relative to the workspace root.
pub fn default_weights_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/latent")
}

/// The score network with its weights.
pub struct LatentModel {
    score: LatentScore,
    varmap: VarMap,
}

impl LatentModel {
    model_loaders! {
        load, "latent score", "latent",
        "train them with `cargo xtask train latent` or pass --latent"
    }

    /// A model from its `config.json` and `model.safetensors`.
    pub fn from_files(files: &ModelFiles) -> Result<Self> {
        files.load_with_varmap(Config::validate, Self::random_on, Self::varmap)
    }

    /// Fresh weights on the CPU (for training and tests).
    pub fn random(cfg: &Config) -> Result<Self> {
        Self::random_on(cfg, &Device::Cpu)
    }

    /// Fresh weights on `device`.
    pub fn random_on(cfg: &Config, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let score = LatentScore::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        Ok(Self { score, varmap })
    }

    pub fn score(&self) -> &LatentScore {
        &self.score
    }

    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    pub fn config(&self) -> &Config {
        self.score.config()
    }
}

/// A clip's melody as consecutive 2-bar windows.
#[derive(Clone, Debug)]
pub struct SongWindows {
    /// Tokens of each window (32 steps each; a silent window is all rests).
    pub windows: Vec<Vec<u8>>,
    /// The melody track (0-based).
    pub track: u16,
    /// Some window had chords; the top note was kept.
    pub had_chords: bool,
    /// No track has the melody role: the highest track was taken.
    pub guessed_track: bool,
}

/// The runs of consecutive 2-bar windows of `clip`'s melody in 4/4 (or four bars of 2/4), from
/// the clip's start; a bar of another meter ends a run. Notes are cut at window ends.
pub fn window_runs(clip: &Clip) -> Result<(Vec<Vec<Vec<u8>>>, bool)> {
    let (_, melody, _) = melody_track(clip)?;
    let mut only = clip.clone();
    only.notes = melody;
    let mut runs = Vec::new();
    let mut had_chords = false;
    for (bars, meter) in [(2, TimeSignature::FOUR_FOUR), (4, TimeSignature::new(2, 4))] {
        let mut run: Vec<Vec<u8>> = Vec::new();
        for w in windows_with(
            &only,
            WindowOptions {
                bars,
                hop_bars: bars,
                keep_empty: true,
            },
        ) {
            if w.time_signature != meter {
                if !run.is_empty() {
                    runs.push(std::mem::take(&mut run));
                }
                continue;
            }
            let (line, chords) = top_line(&w.notes);
            had_chords |= chords;
            run.push(tokenize(&line, WINDOW_STEPS)?);
        }
        if !run.is_empty() {
            runs.push(run);
        }
    }
    Ok((runs, had_chords))
}

/// The melody of `clip` from its start as 2-bar windows (the first run of [`window_runs`]).
/// Errors (never panics) when the clip has no pitched notes, starts in a meter other than 4/4 or
/// 2/4, or is shorter than 2 bars.
pub fn song_windows(clip: &Clip) -> Result<SongWindows> {
    let (track, _, guessed) = melody_track(clip)?;
    let (runs, had_chords) = window_runs(clip)?;
    let starts_at_zero = clip.time_signature == TimeSignature::FOUR_FOUR
        || clip.time_signature == TimeSignature::new(2, 4);
    let Some(windows) = runs.into_iter().next().filter(|_| starts_at_zero) else {
        bail!(
            "the clip is in {}/{} or shorter than 2 bars; the latent model takes melodies in 4/4 (or 2/4) from 2 bars up",
            clip.time_signature.numerator,
            clip.time_signature.denominator
        );
    };
    if windows.iter().all(|w| w.iter().all(|&t| t == REST)) {
        bail!("the melody is silent");
    }
    Ok(SongWindows {
        windows,
        track,
        had_chords,
        guessed_track: guessed,
    })
}

/// `clip` with the melody track's notes in the windows marked `replace` swapped for the notes
/// of `windows` (notes from earlier windows that reach into a replaced window are cut there).
/// Windows past the clip's end extend it.
pub fn apply_windows(clip: &Clip, track: u16, windows: &[Vec<u8>], replace: &[bool]) -> Clip {
    let mut out = clip.clone();
    let window = WINDOW_STEPS as u32;
    let replaced = |step: u32| {
        let w = (step / window) as usize;
        replace.get(w).copied().unwrap_or(false)
    };
    out.notes.retain(|n| n.track != track || !replaced(n.start));
    for n in out.notes.iter_mut().filter(|n| n.track == track) {
        // Cut at the first replaced window the note reaches.
        let first = n.start / window + 1;
        let last = (n.end().saturating_sub(1)) / window;
        if let Some(w) = (first..=last).find(|&w| replaced(w * window)) {
            n.length = (w * window - n.start).max(1);
        }
    }
    let context: Vec<Note> = out.notes.clone();
    let mut generated = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        if !replace.get(i).copied().unwrap_or(false) {
            continue;
        }
        let offset = i as u32 * window;
        generated.extend(
            crate::music::melody::detokenize(w, crate::music::PLAIN_VELOCITY)
                .into_iter()
                .map(|n| Note {
                    start: n.start + offset,
                    track,
                    ..n
                }),
        );
    }
    crate::music::velocity::assign_velocities(&context, &mut generated, track, out.steps_per_bar());
    out.notes.extend(generated);
    let steps_needed = windows.len() as u32 * window;
    let bar = out.time_signature.steps_per_bar().max(1);
    if out.steps() < steps_needed {
        out.bars = steps_needed.div_ceil(bar);
    }
    out.sort_notes();
    out
}

/// The VAE and the score model together.
pub struct LatentMelody<'a> {
    pub vae: &'a MelodyVae,
    pub model: &'a LatentModel,
}

impl LatentMelody<'_> {
    fn positions(&self) -> usize {
        self.model.config().positions
    }

    fn check(&self) -> Result<()> {
        if self.vae.window_steps() != WINDOW_STEPS {
            bail!(
                "the latent model works on 2-bar MusicVAE latents; this VAE reads {} sixteenths",
                self.vae.window_steps()
            );
        }
        let (vz, lz) = (self.vae.z_dim(), self.model.config().z_dim);
        if vz != lz {
            bail!("the latent model works on {lz}-dimensional latents, the VAE gives {vz}");
        }
        Ok(())
    }

    /// Standardized latents of windows, flat `[n, z]`.
    fn encode(&self, windows: &[Vec<u8>]) -> Result<Vec<f32>> {
        let refs: Vec<&[u8]> = windows.iter().map(Vec::as_slice).collect();
        let mu = self.vae.encode(&refs)?;
        let z = self.model.config().z_dim;
        let flat: Vec<f32> = mu.into_iter().flatten().collect();
        let t = Tensor::from_vec(flat, (windows.len(), z), &Device::Cpu)?;
        Ok(standardize(self.model.config(), &t)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }

    /// Windows (argmax decoding) of standardized latents, flat `[n, z]`.
    fn decode(&self, values: &[f32]) -> Result<Vec<Vec<u8>>> {
        let z = self.model.config().z_dim;
        let t = Tensor::from_slice(values, (values.len() / z, z), &Device::Cpu)?;
        let raw = unstandardize(self.model.config(), &t)?.to_vec2::<f32>()?;
        let mut windows = self.vae.decode(&raw, None, 0)?;
        windows
            .iter_mut()
            .for_each(|w| crate::music::melody::clean_holds(w));
        Ok(windows)
    }

    /// The score model's sample, decoded: one `Vec` of windows per sequence.
    fn run(
        &self,
        batch: usize,
        known: Option<&Known>,
        start: &Start,
        opts: &SampleOptions,
    ) -> Result<(Vec<Vec<Vec<u8>>>, usize)> {
        self.check()?;
        let sample_and_decode = || -> Result<(usize, Vec<Vec<u8>>)> {
            let Sampled {
                values,
                evaluations,
            } = sampler::sample(self.model.score(), batch, known, start, opts)?;
            Ok((evaluations, self.decode(&values)?))
        };
        // One melody at a time is a chain of small ops: faster on one thread.
        let (evaluations, windows) = if batch <= 2 {
            crate::nn::on_one_thread(sample_and_decode)?
        } else {
            sample_and_decode()?
        };
        Ok((
            windows
                .chunks(self.positions())
                .map(<[Vec<u8>]>::to_vec)
                .collect(),
            evaluations,
        ))
    }

    /// `count` new 16-bar melodies (8 windows each).
    pub fn generate(&self, count: usize, opts: &SampleOptions) -> Result<Vec<Vec<Vec<u8>>>> {
        Ok(self.run(count, None, &Start::Prior, opts)?.0)
    }

    /// Regenerate the windows of `windows` marked in `regenerate`, keeping the others exactly
    /// (latent replacement). Up to 8 windows; fewer are padded with generated windows at the
    /// end, which are dropped again. Returns the windows, the kept ones unchanged.
    pub fn fill(
        &self,
        windows: &[Vec<u8>],
        regenerate: &[bool],
        opts: &SampleOptions,
    ) -> Result<Vec<Vec<u8>>> {
        let l = self.positions();
        if windows.is_empty() || windows.len() > l {
            bail!(
                "the latent model fills 1 to {l} windows of 2 bars ({} bars), got {}",
                2 * l,
                windows.len()
            );
        }
        if regenerate.len() != windows.len() {
            bail!("one regenerate flag per window");
        }
        if !regenerate.iter().any(|&r| r) {
            return Ok(windows.to_vec());
        }
        let z = self.model.config().z_dim;
        let mut values = vec![0.0f32; l * z];
        let encoded = self.encode(windows)?;
        values[..encoded.len()].copy_from_slice(&encoded);
        let known: Vec<bool> = (0..l)
            .map(|p| p < windows.len() && !regenerate[p])
            .collect();
        let (mut out, _) = self.run(1, Some(&Known { values, known }), &Start::Prior, opts)?;
        let mut generated = out.remove(0);
        generated.truncate(windows.len());
        Ok(generated
            .into_iter()
            .zip(windows)
            .zip(regenerate)
            .map(|((g, w), &r)| if r { g } else { w.clone() })
            .collect())
    }

    /// `prompt` (1 to 7 windows) followed by generated windows up to `total` (≤ 8).
    pub fn continue_melody(
        &self,
        prompt: &[Vec<u8>],
        total: usize,
        opts: &SampleOptions,
    ) -> Result<Vec<Vec<u8>>> {
        let l = self.positions();
        if prompt.is_empty() || total <= prompt.len() || total > l {
            bail!(
                "continue: the prompt has {} windows of 2 bars; the total must be more than that and at most {l} ({} bars), got {total}",
                prompt.len(),
                2 * l
            );
        }
        let mut windows = prompt.to_vec();
        windows.resize(total, vec![REST; WINDOW_STEPS]);
        let regenerate: Vec<bool> = (0..total).map(|i| i >= prompt.len()).collect();
        self.fill(&windows, &regenerate, opts)
    }

    /// `steps` windows from `a` to `b` (spherical interpolation of the VAE latents). With
    /// `refine = Some(t0)`, each run of up to 8 interpolants is diffused to t0 and brought back
    /// by the score model with both ends held, so that the path sounds like one song.
    pub fn interpolate(
        &self,
        a: &[u8],
        b: &[u8],
        steps: usize,
        refine: Option<f64>,
        opts: &SampleOptions,
    ) -> Result<Vec<Vec<u8>>> {
        let Some(t0) = refine else {
            return self.vae.interpolate(a, b, steps);
        };
        self.check()?;
        if steps < 2 {
            bail!("interpolation needs at least 2 steps (the two ends), got {steps}");
        }
        let cfg = self.model.config();
        let (l, z) = (cfg.positions, cfg.z_dim);
        let ends = self.vae.encode(&[a, b])?;
        let path: Vec<Vec<f32>> = (0..steps)
            .map(|i| slerp(&ends[0], &ends[1], i as f32 / (steps - 1) as f32))
            .collect();
        let flat: Vec<f32> = path.iter().flatten().copied().collect();
        let standardized = standardize(cfg, &Tensor::from_vec(flat, (steps, z), &Device::Cpu)?)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut out = Vec::with_capacity(steps);
        for (chunk_index, chunk) in standardized.chunks(l * z).enumerate() {
            let n = chunk.len() / z;
            let mut values = chunk.to_vec();
            values.resize(l * z, 0.0);
            // Hold the path's first and last latents; pad positions past `n` are free.
            let known: Vec<bool> = (0..l).map(|p| p == 0 || p + 1 == n).collect();
            let mut start = values.clone();
            for p in n..l {
                let last = (n - 1) * z;
                let copy: Vec<f32> = start[last..last + z].to_vec();
                start[p * z..(p + 1) * z].copy_from_slice(&copy);
            }
            let opts = SampleOptions {
                seed: opts.seed.wrapping_add(chunk_index as u64),
                ..*opts
            };
            let sampled = sampler::sample(
                self.model.score(),
                1,
                Some(&Known {
                    values: values.clone(),
                    known,
                }),
                &Start::From { values: start, t0 },
                &opts,
            )?;
            out.extend(self.decode(&sampled.values[..n * z])?);
        }
        // The ends are the reconstructions of a and b, as in the plain interpolation.
        Ok(out)
    }

    /// `count` sequences of 8 windows from the VAE prior N(0, I), without the score model (the
    /// baseline the score model must beat).
    pub fn prior_sequences(&self, count: usize, seed: u64) -> Result<Vec<Vec<Vec<u8>>>> {
        let l = self.positions();
        let mut windows = self.vae.sample(count * l, None, seed)?;
        windows
            .iter_mut()
            .for_each(|w| crate::music::melody::clean_holds(w));
        Ok(windows.chunks(l).map(<[Vec<u8>]>::to_vec).collect())
    }
}
