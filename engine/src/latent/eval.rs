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
use crate::evaluation::{Case, EvalReport, Region, RowOutputs, evaluate_task};
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
    sequences: Vec<Vec<Option<Vec<Vec<u8>>>>>,
    seconds: f64,
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
    let other_split = if opts.split == Split::Test {
        Split::Valid
    } else {
        Split::Test
    };
    let pick = |set: Vec<Vec<Vec<u8>>>, seed: u64| {
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

    let mut report = EvalReport {
        command: command.to_string(),
        split: opts.split.to_string(),
        tasks: Vec::new(),
    };
    let mut outputs = Vec::new();
    for task in LatentTask::ALL {
        let generated_windows = (0..POSITIONS).filter(|&w| task.generates(w)).count();
        let mut rows: Vec<SequenceRow> = Vec::new();
        let sample_opts = |sampler: Sampler, seed: u64| SampleOptions {
            sampler,
            seed,
            steps: opts.steps,
            temperature: opts.temperature,
            ..SampleOptions::default()
        };
        let samplers: &[Sampler] = match task {
            LatentTask::Infill => &opts.samplers[..1],
            LatentTask::Generate => &opts.samplers,
        };
        for (k, &sampler) in samplers.iter().enumerate() {
            let started = Instant::now();
            let mut per_seed = Vec::new();
            for &seed in &opts.seeds {
                let base = window_seed(seed, 0);
                let out: Vec<Option<Vec<Vec<u8>>>> = match task {
                    LatentTask::Infill => {
                        let regenerate: Vec<bool> =
                            (0..POSITIONS).map(|w| task.generates(w)).collect();
                        tunes
                            .iter()
                            .enumerate()
                            .map(|(i, tune)| {
                                lm.fill(
                                    tune,
                                    &regenerate,
                                    &sample_opts(sampler, base.wrapping_add(i as u64)),
                                )
                                .map(Some)
                            })
                            .collect::<Result<_>>()?
                    }
                    LatentTask::Generate => lm
                        .generate(tunes.len(), &sample_opts(sampler, base))?
                        .into_iter()
                        .map(Some)
                        .collect(),
                };
                per_seed.push(out);
            }
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
        let once = |f: &mut dyn FnMut(usize, &Sequence) -> Option<Sequence>| {
            vec![
                tunes
                    .iter()
                    .enumerate()
                    .map(|(i, t)| f(i, t))
                    .collect::<Vec<_>>(),
            ]
        };
        rows.push(SequenceRow {
            name: TRUTH.into(),
            sequences: once(&mut |_, t| Some(t.clone())),
            seconds: 0.0,
        });
        rows.push(SequenceRow {
            name: REAL.into(),
            sequences: once(&mut |i, t| others.get(i).map(|o| replaced(task, t, o))),
            seconds: 0.0,
        });
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0xc0b1);
        rows.push(SequenceRow {
            name: COPY.into(),
            sequences: once(&mut |_, t| {
                Some(match task {
                    LatentTask::Infill => replaced(task, t, &t[0..2]),
                    LatentTask::Generate => train[rng.random_range(0..train.len())].clone(),
                })
            }),
            seconds: 0.0,
        });
        // Decoded rows: the reconstruction of the true hole, and the two priors.
        let started = Instant::now();
        let hole: Vec<&[u8]> = tunes
            .iter()
            .flat_map(|t| {
                (0..POSITIONS)
                    .filter(|&w| task.generates(w))
                    .map(move |w| t[w].as_slice())
            })
            .collect();
        let reconstructed = lm.vae.decode(&latents(lm, &hole)?, None, 0)?;
        rows.push(SequenceRow {
            name: "VAE reconstruction".into(),
            sequences: once(&mut |i, t| {
                Some(replaced(
                    task,
                    t,
                    &reconstructed[i * generated_windows..(i + 1) * generated_windows],
                ))
            }),
            seconds: started.elapsed().as_secs_f64(),
        });
        for (name, fitted) in [("VAE prior N(0, I)", false), ("prior fitted to data", true)] {
            let started = Instant::now();
            let mut per_seed = Vec::new();
            for &seed in &opts.seeds {
                let n = tunes.len() * generated_windows;
                let windows = if fitted {
                    lm.vae
                        .decode(&fitted_prior(&train_latents, n, seed ^ 0xf17), None, 0)?
                } else {
                    lm.vae.sample(n, None, seed ^ 0x9a1)?
                };
                per_seed.push(
                    tunes
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            Some(replaced(
                                task,
                                t,
                                &windows[i * generated_windows..(i + 1) * generated_windows],
                            ))
                        })
                        .collect(),
                );
            }
            rows.push(SequenceRow {
                name: name.into(),
                sequences: per_seed,
                seconds: started.elapsed().as_secs_f64(),
            });
        }

        let cases: Vec<Case> = tunes
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
        row_outputs.insert(at, stats.row(&cases, &opts.seeds));
        let mut task_report = evaluate_task(task.name(), &cases, &row_outputs, opts.seed)?;
        // Fréchet distance of each row's generated windows' latents to the true holes'.
        let truth_latents = latents(lm, &hole)?;
        for row in &rows {
            let windows: Vec<&[u8]> = row
                .sequences
                .iter()
                .flatten()
                .flatten()
                .flat_map(|s| {
                    (0..POSITIONS)
                        .filter(|&w| task.generates(w))
                        .map(move |w| s[w].as_slice())
                })
                .collect();
            let value = frechet_distance(&latents(lm, &windows)?, &truth_latents);
            if let Some(r) = task_report.rows.iter_mut().find(|r| r.name == row.name) {
                r.extra.push((
                    "Fréchet distance (latents of generated windows)".into(),
                    value,
                ));
            }
        }
        progress(&format!("{}: scored", task.name()));
        report.tasks.push(task_report);
        outputs.push((task.name().to_string(), cases, row_outputs));
    }
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
