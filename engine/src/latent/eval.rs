//! Evaluation of the latent model (MusicVAE + score-based latent diffusion) on 16-bar
//! Nottingham melodies through the one evaluation library ([`crate::evaluation`]): only what was
//! generated is scored.
//!
//! | task | region | copy row |
//! |---|---|---|
//! | infill bars 5-8 | bars 5–8 (windows 3–4) of a test melody, the other 12 bars given | bars 1–4 repeated |
//! | generate 16 bars | all 16 bars, nothing given | a random 16-bar melody of the train split |
//!
//! Rows: the score model (the first sampler of [`LatentEvalOptions::samplers`]; the others as
//! extra rows for generation), the true hole, real melodies of other songs (the valid split when
//! reporting on test), copy, random notes from the train split's statistics, the **VAE
//! reconstruction** of the true hole (the decoder's ceiling), the VAE prior N(0, I) and a prior
//! fitted to the real latents' mean and spread per dimension (what the score model has to beat
//! by modelling the latents' dependencies). Beyond the library's metrics, each row reports the
//! Fréchet distance between the VAE latents (μ) of its generated 2-bar windows and those of the
//! true holes' windows (generated windows only).

use anyhow::{Result, bail};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

use super::{LatentMelody, SampleOptions, Sampler, window_runs};
use crate::data::{self, Dataset, Split};
use crate::evaluation::random_data::{DataStats, window_seed};
use crate::evaluation::report::{COPY, MODEL, REAL, TRUTH};
use crate::evaluation::{Case, EvalReport, Region, RowOutputs, TaskReport, evaluate_task};
use crate::music::Clip;
use crate::vae::windows_to_clip;

/// Windows of 2 bars in a 16-bar melody, and the windows an infill regenerates.
const POSITIONS: usize = 8;
const INFILL_WINDOWS: [usize; 2] = [2, 3];
const WINDOW_STEPS: u32 = 32;

/// Every non-overlapping 8-window (16-bar) melody of a split, from runs of 4/4 (or 2/4) windows.
pub fn sequences(
    split: Split,
    root: &std::path::Path,
    cache: &std::path::Path,
) -> Result<Vec<Vec<Vec<u8>>>> {
    let songs = data::load_cached(Dataset::Nottingham, split, root, cache)?;
    let mut out = Vec::new();
    for song in &songs {
        let Ok((runs, _)) = window_runs(&song.clip) else {
            continue;
        };
        for run in runs {
            out.extend(run.chunks_exact(8).map(<[Vec<u8>]>::to_vec));
        }
    }
    Ok(out)
}

/// Mean and covariance of row vectors.
#[allow(clippy::needless_range_loop)] // matrix indices read best as indices
fn moments(rows: &[Vec<f32>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let d = rows.first().map_or(0, Vec::len);
    let n = rows.len().max(1) as f64;
    let mut mean = vec![0.0; d];
    for r in rows {
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += v as f64 / n;
        }
    }
    let mut cov = vec![vec![0.0; d]; d];
    for r in rows {
        for i in 0..d {
            let di = r[i] as f64 - mean[i];
            for j in i..d {
                cov[i][j] += di * (r[j] as f64 - mean[j]) / (n - 1.0).max(1.0);
            }
        }
    }
    for i in 0..d {
        for j in 0..i {
            cov[i][j] = cov[j][i];
        }
    }
    (mean, cov)
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix (cyclic Jacobi).
#[allow(clippy::needless_range_loop)]
fn symmetric_eigen(a: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let d = a.len();
    let mut m = a.to_vec();
    let mut v: Vec<Vec<f64>> = (0..d)
        .map(|i| (0..d).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i][j] * m[i][j])
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                if m[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (m[q][q] - m[p][p]) / (2.0 * m[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (mkp, mkq) = (m[k][p], m[k][q]);
                    m[k][p] = c * mkp - s * mkq;
                    m[k][q] = s * mkp + c * mkq;
                }
                for k in 0..d {
                    let (mpk, mqk) = (m[p][k], m[q][k]);
                    m[p][k] = c * mpk - s * mqk;
                    m[q][k] = s * mpk + c * mqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| m[i][i]).collect(), v)
}

/// The symmetric square root of a PSD matrix.
fn sqrt_psd(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let (w, v) = symmetric_eigen(a);
    let d = a.len();
    let mut out = vec![vec![0.0; d]; d];
    for (k, &wk) in w.iter().enumerate() {
        let s = wk.max(0.0).sqrt();
        for i in 0..d {
            for j in 0..d {
                out[i][j] += v[i][k] * s * v[j][k];
            }
        }
    }
    out
}

fn matmul(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let d = a.len();
    (0..d)
        .map(|i| {
            (0..d)
                .map(|j| (0..d).map(|k| a[i][k] * b[k][j]).sum())
                .collect()
        })
        .collect()
}

/// Fréchet distance between Gaussians fitted to two sets of vectors:
/// ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁^½ Σ₂ Σ₁^½)^½).
pub fn frechet_distance(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (m1, s1) = moments(a);
    let (m2, s2) = moments(b);
    let mean_term: f64 = m1.iter().zip(&m2).map(|(x, y)| (x - y).powi(2)).sum();
    let r1 = sqrt_psd(&s1);
    let cross = sqrt_psd(&matmul(&matmul(&r1, &s2), &r1));
    let trace = |m: &[Vec<f64>]| (0..m.len()).map(|i| m[i][i]).sum::<f64>();
    mean_term + trace(&s1) + trace(&s2) - 2.0 * trace(&cross)
}

fn clip_of(sequence: &[Vec<u8>]) -> Clip {
    windows_to_clip(sequence)
}

fn latents(lm: &LatentMelody, windows: &[&[u8]]) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(windows.len());
    for chunk in windows.chunks(512) {
        out.extend(lm.vae.encode(chunk)?);
    }
    Ok(out)
}

/// What [`evaluate_latent`] runs.
#[derive(Clone, Debug)]
pub struct LatentEvalOptions {
    /// Melodies per task.
    pub count: usize,
    /// Chooses the melodies and the bootstrap resamples.
    pub seed: u64,
    /// Sampling seeds of the sampled rows.
    pub seeds: Vec<u64>,
    /// Samplers to evaluate: the first is the model's row (and the only one for the infill).
    pub samplers: Vec<Sampler>,
    /// Steps of every sampler (0: each sampler's default).
    pub steps: usize,
    /// Scale of every sample's starting noise (1: the model's prior).
    pub temperature: f64,
    /// The melodies infilled and compared against: the test split to report, the valid split
    /// to choose models and options on (real melodies then come from the test split).
    pub split: Split,
    pub data_root: std::path::PathBuf,
    pub cache_dir: std::path::PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatentTask {
    Infill,
    Generate,
}

impl LatentTask {
    pub const ALL: [LatentTask; 2] = [LatentTask::Infill, LatentTask::Generate];

    pub fn name(self) -> &'static str {
        match self {
            LatentTask::Infill => "latent: infill bars 5-8",
            LatentTask::Generate => "latent: generate 16 bars",
        }
    }

    /// The steps this task regenerates.
    fn region(self) -> std::ops::Range<u32> {
        match self {
            LatentTask::Infill => {
                INFILL_WINDOWS[0] as u32 * WINDOW_STEPS
                    ..(INFILL_WINDOWS[1] as u32 + 1) * WINDOW_STEPS
            }
            LatentTask::Generate => 0..POSITIONS as u32 * WINDOW_STEPS,
        }
    }

    /// Whether window `w` is generated.
    fn generates(self, w: usize) -> bool {
        self == LatentTask::Generate || INFILL_WINDOWS.contains(&w)
    }
}

/// The case of `task` on a 16-bar melody.
pub fn case(task: LatentTask, id: String, tune: &[Vec<u8>]) -> Case {
    Case {
        id,
        truth: clip_of(tune),
        region: Region {
            steps: task.region(),
            tracks: Some(vec![0]),
        },
    }
}

/// `tune` with the windows `task` generates taken from `replacement` (a whole 8-window sequence
/// or just the generated windows, in order).
fn replaced(task: LatentTask, tune: &[Vec<u8>], replacement: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = tune.to_vec();
    let mut next = 0;
    for (w, slot) in out.iter_mut().enumerate() {
        if task.generates(w) {
            let from = if replacement.len() == tune.len() {
                w
            } else {
                next
            };
            if let Some(r) = replacement.get(from) {
                *slot = r.clone();
            }
            next += 1;
        }
    }
    out
}

/// A 16-bar melody: 8 windows of tokens.
type Sequence = Vec<Vec<u8>>;

/// A row's sequences per seed and melody, before they become clips.
struct SequenceRow {
    name: String,
    sequences: Vec<Vec<Option<Sequence>>>,
    seconds: f64,
}

impl SequenceRow {
    /// A row that does not depend on the sampling seed: one sequence per melody of `tunes`,
    /// `f((i, tune))`.
    fn once(
        name: &str,
        tunes: &[Sequence],
        f: impl FnMut((usize, &Sequence)) -> Option<Sequence>,
    ) -> Self {
        Self {
            name: name.into(),
            sequences: vec![tunes.iter().enumerate().map(f).collect()],
            seconds: 0.0,
        }
    }
}

/// Latents drawn per dimension from the mean and spread of `real` (a diagonal Gaussian).
fn fitted_prior(real: &[Vec<f32>], count: usize, seed: u64) -> Vec<Vec<f32>> {
    let d = real.first().map_or(0, Vec::len);
    let n = real.len().max(2) as f64;
    let mean: Vec<f64> = (0..d)
        .map(|j| real.iter().map(|r| r[j] as f64).sum::<f64>() / n)
        .collect();
    let spread: Vec<f64> = (0..d)
        .map(|j| {
            (real
                .iter()
                .map(|r| (r[j] as f64 - mean[j]).powi(2))
                .sum::<f64>()
                / (n - 1.0))
                .sqrt()
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let noise = crate::nn::random::normal_noise(&mut rng, d);
            (0..d)
                .map(|j| (mean[j] + spread[j] * noise[j] as f64) as f32)
                .collect()
        })
        .collect()
}

/// The windows of `sequence` that `task` generates, in order.
fn generated(task: LatentTask, sequence: &[Vec<u8>]) -> impl Iterator<Item = &[u8]> {
    (0..POSITIONS)
        .filter(move |&w| task.generates(w))
        .map(move |w| sequence[w].as_slice())
}

/// Each of `tunes` with the windows `task` generates taken from `windows`, which holds them for
/// every tune in turn.
fn with_generated_windows(
    task: LatentTask,
    tunes: &[Sequence],
    windows: &[Vec<u8>],
) -> Vec<Option<Sequence>> {
    let per_tune = (0..POSITIONS).filter(|&w| task.generates(w)).count();
    tunes
        .iter()
        .zip(windows.chunks(per_tune))
        .map(|(t, w)| Some(replaced(task, t, w)))
        .collect()
}

/// The melodies an evaluation works on.
struct Melodies {
    /// Infilled and compared against: `count` melodies of the evaluated split.
    tunes: Vec<Sequence>,
    /// Real melodies of other songs: as many of the other split (valid or test).
    others: Vec<Sequence>,
    /// Every melody of the train split.
    train: Vec<Sequence>,
    /// The train split's statistics, for the random row.
    stats: DataStats,
    /// Latents of up to 4000 windows spread over the train split, for the fitted prior.
    train_latents: Vec<Vec<f32>>,
}

impl Melodies {
    fn load(
        lm: &LatentMelody,
        opts: &LatentEvalOptions,
        progress: impl FnOnce(&str),
    ) -> Result<Self> {
        let other_split = if opts.split == Split::Test {
            Split::Valid
        } else {
            Split::Test
        };
        let pick = |set: Vec<Sequence>, seed: u64| {
            let mut set = set;
            set.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            set.truncate(opts.count);
            set
        };
        let tunes = pick(
            sequences(opts.split, &opts.data_root, &opts.cache_dir)?,
            opts.seed,
        );
        let others = pick(
            sequences(other_split, &opts.data_root, &opts.cache_dir)?,
            opts.seed,
        );
        let train = sequences(Split::Train, &opts.data_root, &opts.cache_dir)?;
        if tunes.is_empty() || train.is_empty() {
            bail!(
                "no 16-bar melodies in the Nottingham {} or train split",
                opts.split
            );
        }
        let train_clips: Vec<Clip> = train.iter().map(|s| clip_of(s)).collect();
        let stats = DataStats::fit(&train_clips);
        drop(train_clips);
        let train_windows: Vec<&[u8]> = train.iter().flatten().map(Vec::as_slice).collect();
        let mut stride_pick: Vec<&[u8]> = train_windows
            .iter()
            .step_by(train_windows.len().div_ceil(4000).max(1))
            .copied()
            .collect();
        stride_pick.truncate(4000);
        let train_latents = latents(lm, &stride_pick)?;
        progress(&format!(
            "{} melodies of the {} split, {} of the {other_split} split, {} seeds",
            tunes.len(),
            opts.split,
            others.len(),
            opts.seeds.len()
        ));
        Ok(Self {
            tunes,
            others,
            train,
            stats,
            train_latents,
        })
    }
}

/// One task of the evaluation: its rows, then their scores.
struct TaskRun<'a> {
    lm: &'a LatentMelody<'a>,
    opts: &'a LatentEvalOptions,
    task: LatentTask,
    melodies: &'a Melodies,
}

impl TaskRun<'_> {
    /// The score model's rows: the first sampler's, and for generation one per other sampler.
    fn model_rows(&self, progress: &mut impl FnMut(&str)) -> Result<Vec<SequenceRow>> {
        let (task, opts) = (self.task, self.opts);
        let samplers: &[Sampler] = match task {
            LatentTask::Infill => &opts.samplers[..1],
            LatentTask::Generate => &opts.samplers,
        };
        let mut rows = Vec::new();
        for (k, &sampler) in samplers.iter().enumerate() {
            let started = Instant::now();
            let per_seed = opts
                .seeds
                .iter()
                .map(|&seed| self.sample(sampler, window_seed(seed, 0)))
                .collect::<Result<_>>()?;
            let name = if k == 0 {
                MODEL.to_string()
            } else {
                format!("model, {}", sampler.name())
            };
            rows.push(SequenceRow {
                name,
                sequences: per_seed,
                seconds: started.elapsed().as_secs_f64(),
            });
            progress(&format!(
                "{}: score model, {} ({:.1} s)",
                task.name(),
                sampler.name(),
                started.elapsed().as_secs_f64()
            ));
        }
        Ok(rows)
    }

    /// The score model's sequence for every melody with `sampler`, seeded from `base`.
    fn sample(&self, sampler: Sampler, base: u64) -> Result<Vec<Option<Sequence>>> {
        let tunes = &self.melodies.tunes;
        let sample_opts = |seed: u64| SampleOptions {
            sampler,
            seed,
            steps: self.opts.steps,
            temperature: self.opts.temperature,
            ..SampleOptions::default()
        };
        Ok(match self.task {
            LatentTask::Infill => {
                let regenerate: Vec<bool> =
                    (0..POSITIONS).map(|w| self.task.generates(w)).collect();
                tunes
                    .iter()
                    .enumerate()
                    .map(|(i, tune)| {
                        self.lm
                            .fill(tune, &regenerate, &sample_opts(base.wrapping_add(i as u64)))
                            .map(Some)
                    })
                    .collect::<Result<_>>()?
            }
            LatentTask::Generate => self
                .lm
                .generate(tunes.len(), &sample_opts(base))?
                .into_iter()
                .map(Some)
                .collect(),
        })
    }

    /// The rows of music that needs no model: the true hole, real melodies of other songs and
    /// copy.
    fn reference_rows(&self) -> [SequenceRow; 3] {
        let (task, m) = (self.task, self.melodies);
        let mut rng = ChaCha8Rng::seed_from_u64(self.opts.seed ^ 0xc0b1);
        [
            SequenceRow::once(TRUTH, &m.tunes, |(_, t)| Some(t.clone())),
            SequenceRow::once(REAL, &m.tunes, |(i, t)| {
                m.others.get(i).map(|o| replaced(task, t, o))
            }),
            SequenceRow::once(COPY, &m.tunes, |(_, t)| {
                Some(match task {
                    LatentTask::Infill => replaced(task, t, &t[0..2]),
                    LatentTask::Generate => m.train[rng.random_range(0..m.train.len())].clone(),
                })
            }),
        ]
    }

    /// The rows the VAE decodes: the reconstruction of the true hole (`hole`, the generated
    /// windows of every melody), and the two priors.
    fn decoded_rows(&self, hole: &[&[u8]], started: Instant) -> Result<Vec<SequenceRow>> {
        let (lm, task, tunes) = (self.lm, self.task, &self.melodies.tunes);
        let reconstructed = lm.vae.decode(&latents(lm, hole)?, None, 0)?;
        let mut rows = vec![SequenceRow {
            name: "VAE reconstruction".into(),
            sequences: vec![with_generated_windows(task, tunes, &reconstructed)],
            seconds: started.elapsed().as_secs_f64(),
        }];
        for (name, fitted) in [("VAE prior N(0, I)", false), ("prior fitted to data", true)] {
            let started = Instant::now();
            let mut per_seed = Vec::new();
            for &seed in &self.opts.seeds {
                let n = hole.len();
                let windows = if fitted {
                    let prior = fitted_prior(&self.melodies.train_latents, n, seed ^ 0xf17);
                    lm.vae.decode(&prior, None, 0)?
                } else {
                    lm.vae.sample(n, None, seed ^ 0x9a1)?
                };
                per_seed.push(with_generated_windows(task, tunes, &windows));
            }
            rows.push(SequenceRow {
                name: name.into(),
                sequences: per_seed,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        Ok(rows)
    }

    /// The rows as clips (with the random row after copy) and their scores, each row also with
    /// the Fréchet distance of its generated windows' latents to those of the true hole.
    fn score(
        &self,
        rows: &[SequenceRow],
        hole: &[&[u8]],
    ) -> Result<(TaskReport, Vec<Case>, Vec<RowOutputs>)> {
        let (lm, task, opts, m) = (self.lm, self.task, self.opts, self.melodies);
        let cases: Vec<Case> = m
            .tunes
            .iter()
            .enumerate()
            .map(|(i, t)| case(task, format!("{}:{i}", opts.split), t))
            .collect();
        let mut row_outputs: Vec<RowOutputs> = rows
            .iter()
            .map(|r| RowOutputs {
                name: r.name.clone(),
                outputs: r
                    .sequences
                    .iter()
                    .map(|seed| {
                        seed.iter()
                            .map(|s| s.as_ref().map(|s| clip_of(s)))
                            .collect()
                    })
                    .collect(),
                seconds: r.seconds,
            })
            .collect();
        // The random row has no sequences: notes drawn from the data, inserted after copy.
        let at = row_outputs
            .iter()
            .position(|r| r.name == COPY)
            .map_or(row_outputs.len(), |p| p + 1);
        row_outputs.insert(at, m.stats.row(&cases, &opts.seeds));
        let mut report = evaluate_task(task.name(), &cases, &row_outputs, opts.seed)?;
        let truth_latents = latents(lm, hole)?;
        for row in rows {
            let windows: Vec<&[u8]> = row
                .sequences
                .iter()
                .flatten()
                .flatten()
                .flat_map(|s| generated(task, s))
                .collect();
            let value = frechet_distance(&latents(lm, &windows)?, &truth_latents);
            if let Some(r) = report.rows.iter_mut().find(|r| r.name == row.name) {
                r.extra.push((
                    "Fréchet distance (latents of generated windows)".into(),
                    value,
                ));
            }
        }
        Ok((report, cases, row_outputs))
    }
}

/// The evaluation: one report with both tasks, and each task's cases and rows (for `--listen`).
pub struct LatentEvaluation {
    pub report: EvalReport,
    pub outputs: Vec<(String, Vec<Case>, Vec<RowOutputs>)>,
}

/// Run both tasks; `progress` hears what is done, `command` is recorded in the report.
pub fn evaluate_latent(
    lm: &LatentMelody,
    opts: &LatentEvalOptions,
    command: &str,
    mut progress: impl FnMut(&str),
) -> Result<LatentEvaluation> {
    if opts.count == 0 || opts.seeds.is_empty() || opts.samplers.is_empty() {
        bail!("evaluate at least one melody with one seed and one sampler");
    }
    if opts.split == Split::Train {
        bail!("evaluate on the valid or the test split (the models trained on the train split)");
    }
    let melodies = Melodies::load(lm, opts, &mut progress)?;
    let mut tasks = Vec::new();
    let mut outputs = Vec::new();
    for task in LatentTask::ALL {
        let run = TaskRun {
            lm,
            opts,
            task,
            melodies: &melodies,
        };
        let mut rows = run.model_rows(&mut progress)?;
        rows.extend(run.reference_rows());
        let started = Instant::now();
        let hole: Vec<&[u8]> = melodies
            .tunes
            .iter()
            .flat_map(|t| generated(task, t))
            .collect();
        rows.extend(run.decoded_rows(&hole, started)?);
        let (report, cases, row_outputs) = run.score(&rows, &hole)?;
        progress(&format!("{}: scored", task.name()));
        tasks.push(report);
        outputs.push((task.name().to_string(), cases, row_outputs));
    }
    let report = EvalReport {
        command: command.to_string(),
        split: opts.split.to_string(),
        tasks,
    };
    Ok(LatentEvaluation { report, outputs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frechet_of_a_set_with_itself_is_zero_and_grows_with_a_shift() {
        let a: Vec<Vec<f32>> = (0..200)
            .map(|i| {
                let x = (i as f32 * 0.37).sin();
                vec![x, 0.5 * x + (i as f32 * 1.3).cos(), (i as f32 * 0.11).cos()]
            })
            .collect();
        assert!(frechet_distance(&a, &a).abs() < 1e-6);
        let shifted: Vec<Vec<f32>> = a
            .iter()
            .map(|r| r.iter().map(|v| v + 1.0).collect())
            .collect();
        // Same covariance, means 1 apart in each of 3 dimensions: distance 3.
        assert!((frechet_distance(&a, &shifted) - 3.0).abs() < 1e-6);
        let scaled: Vec<Vec<f32>> = a
            .iter()
            .map(|r| r.iter().map(|v| 2.0 * v).collect())
            .collect();
        // Σ₂ = 4Σ₁: Tr(Σ₁ + 4Σ₁ − 2·2Σ₁) = Tr(Σ₁), means both scaled.
        let (m1, s1) = moments(&a);
        let expect: f64 =
            m1.iter().map(|m| m * m).sum::<f64>() + (0..3).map(|i| s1[i][i]).sum::<f64>();
        assert!((frechet_distance(&a, &scaled) - expect).abs() < 1e-6);
    }
}
