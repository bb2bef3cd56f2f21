//! Score-based latent diffusion over MusicVAE latents: the four samplers draw from the right
//! distribution when given the exact score of Gaussian data; the shipped score model denoises
//! real latents, beats the VAE prior on the Fréchet distance to the test split, fills and
//! continues melodies while keeping the given bars exactly; bad input is a clear error.

use std::sync::OnceLock;

use bandmate::data::Split;
use bandmate::latent::eval::{frechet_distance, sequences};
use bandmate::latent::sampler::sample_with;
use bandmate::latent::{
    Known, LatentMelody, LatentModel, SampleOptions, Sampler, Start, VpSde, apply_windows,
    song_windows,
};
use bandmate::models::latent_score::{Config, standardize};
use bandmate::music::melody::{HOLD, REST, WINDOW_STEPS};
use bandmate::music::{Clip, Note, TimeSignature, Track, TrackRole};
use bandmate::nn::random::normal_noise;
use bandmate::train::latent::dsm_loss;
use bandmate::vae::MelodyVae;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[path = "../support/nottingham.rs"]
mod nottingham;
use nottingham::songs;

const SDE: VpSde = VpSde {
    beta_min: 0.1,
    beta_max: 20.0,
};

/// Means and standard deviations of independent Gaussian data per dimension.
const MEAN: [f32; 3] = [0.5, -1.0, 0.0];
const STD: [f32; 3] = [0.3, 1.0, 2.0];

/// The exact ε̂(x, t) = σ(x − m·a)/(m²b² + σ²) of that data.
fn exact_noise(x: &[f32], t: f64) -> anyhow::Result<Vec<f32>> {
    let (m, s) = (SDE.mean_coef(t) as f32, SDE.sigma(t) as f32);
    Ok(x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let d = i % 3;
            s * (v - m * MEAN[d]) / (m * m * STD[d] * STD[d] + s * s)
        })
        .collect())
}

fn column_stats(values: &[f32], dims: usize, d: usize) -> (f32, f32) {
    let col: Vec<f32> = values.iter().skip(d).step_by(dims).copied().collect();
    let n = col.len() as f32;
    let mean = col.iter().sum::<f32>() / n;
    let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
    (mean, var.sqrt())
}

#[test]
fn every_sampler_draws_gaussian_data_from_its_exact_score() {
    // 300 sequences of 8 × 63 values: as many dimensions as the real model's sequences, which
    // the Langevin corrector's step size (from the norms of noise and score) is meant for.
    let shape = (300, 8, 63);
    for name in Sampler::NAMES {
        let sampler = Sampler::parse(name).unwrap();
        let opts = SampleOptions {
            sampler,
            seed: 7,
            ..SampleOptions::default()
        };
        let out = sample_with(&mut exact_noise, SDE, shape, None, &Start::Prior, &opts).unwrap();
        for d in 0..3 {
            let (mean, std) = column_stats(&out.values, 3, d);
            assert!(
                (mean - MEAN[d]).abs() < 0.06 * STD[d].max(1.0),
                "{name}: dim {d} mean {mean} vs {}",
                MEAN[d]
            );
            assert!(
                (std / STD[d] - 1.0).abs() < 0.08,
                "{name}: dim {d} std {std} vs {}",
                STD[d]
            );
        }
        let expected = match sampler {
            Sampler::EulerMaruyama => Some(200),
            Sampler::PredictorCorrector { .. } => Some(200),
            Sampler::OdeHeun => Some(2 * sampler.default_steps()),
            Sampler::OdeRk45 { .. } => None,
        };
        if let Some(e) = expected {
            assert_eq!(out.evaluations, e, "{name}");
        } else {
            assert!(
                (10..400).contains(&out.evaluations),
                "rk45: {}",
                out.evaluations
            );
        }
    }
}

#[test]
fn known_positions_come_back_exactly_and_the_others_still_follow_the_data() {
    let shape = (200, 2, 96);
    let values: Vec<f32> = (0..200 * 2 * 96).map(|i| (i % 7) as f32 * 0.25).collect();
    let known = Known {
        values: values.clone(),
        known: vec![true, false],
    };
    for name in Sampler::NAMES {
        let opts = SampleOptions {
            sampler: Sampler::parse(name).unwrap(),
            seed: 3,
            ..SampleOptions::default()
        };
        let out = sample_with(
            &mut exact_noise,
            SDE,
            shape,
            Some(&known),
            &Start::Prior,
            &opts,
        )
        .unwrap();
        let mut free = Vec::new();
        for b in 0..200 {
            let (start, mid, end) = (b * 192, b * 192 + 96, (b + 1) * 192);
            assert_eq!(out.values[start..mid], values[start..mid], "{name}");
            free.extend_from_slice(&out.values[mid..end]);
        }
        let (mean, std) = column_stats(&free, 3, 2);
        assert!(
            mean.abs() < 0.15 && (std / 2.0 - 1.0).abs() < 0.1,
            "{name}: {mean} {std}"
        );
    }
}

#[test]
fn a_refinement_from_small_t_stays_near_its_start() {
    // Diffused to t0 = 0.05 and brought back, a sample of the data moves only a little.
    let shape = (500, 1, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let start: Vec<f32> = normal_noise(&mut rng, 1500)
        .into_iter()
        .enumerate()
        .map(|(i, e)| MEAN[i % 3] + STD[i % 3] * e)
        .collect();
    let opts = SampleOptions::default();
    let out = sample_with(
        &mut exact_noise,
        SDE,
        shape,
        None,
        &Start::From {
            values: start.clone(),
            t0: 0.05,
        },
        &opts,
    )
    .unwrap();
    let moved: f32 = out
        .values
        .iter()
        .zip(&start)
        .enumerate()
        .map(|(i, (a, b))| ((a - b) / STD[i % 3]).abs())
        .sum::<f32>()
        / 1500.0;
    assert!(moved < 0.35, "mean move {moved} data standard deviations");
}

struct Shipped {
    vae: MelodyVae,
    model: LatentModel,
}

fn shipped() -> &'static Shipped {
    static S: OnceLock<Shipped> = OnceLock::new();
    S.get_or_init(|| Shipped {
        vae: MelodyVae::load(&bandmate::vae::default_weights_dir()).expect("assets/vae"),
        model: LatentModel::load(&bandmate::latent::default_weights_dir()).expect("assets/latent"),
    })
}

fn melody() -> LatentMelody<'static> {
    let s = shipped();
    LatentMelody {
        vae: &s.vae,
        model: &s.model,
    }
}

fn test_sequences() -> &'static Vec<Vec<Vec<u8>>> {
    static T: OnceLock<Vec<Vec<Vec<u8>>>> = OnceLock::new();
    T.get_or_init(|| {
        sequences(
            Split::Test,
            &bandmate::data::default_data_root(),
            &bandmate::data::default_cache_dir(),
        )
        .unwrap()
    })
}

fn is_valid_window(w: &[u8]) -> bool {
    w.len() == WINDOW_STEPS && w[0] != HOLD && w.iter().all(|&t| t <= HOLD)
}

#[test]
fn the_shipped_score_model_denoises_test_latents_better_than_an_untrained_one() {
    bandmate_tests::require_data!("nottingham");
    let lm = melody();
    let cfg = lm.model.config().clone();
    let seqs: Vec<&Vec<Vec<u8>>> = test_sequences().iter().take(64).collect();
    let windows: Vec<&[u8]> = seqs
        .iter()
        .flat_map(|s| s.iter().map(Vec::as_slice))
        .collect();
    let mu: Vec<f32> = lm
        .vae
        .encode(&windows)
        .unwrap()
        .into_iter()
        .flatten()
        .collect();
    let x0 = Tensor::from_vec(mu, (seqs.len(), cfg.positions, cfg.z_dim), &Device::Cpu).unwrap();
    let x0 = standardize(&cfg, &x0).unwrap();
    let fresh = LatentModel::random(&cfg).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for t in [0.1f32, 0.5, 0.9] {
        let ts = vec![t; seqs.len()];
        let noise = normal_noise(&mut rng, seqs.len() * cfg.positions * cfg.z_dim);
        let trained = dsm_loss(lm.model.score(), &x0, &ts, &noise).unwrap();
        let untrained = dsm_loss(fresh.score(), &x0, &ts, &noise).unwrap();
        let (a, b) = (
            trained.to_scalar::<f32>().unwrap(),
            untrained.to_scalar::<f32>().unwrap(),
        );
        // Predicting ε = 0 scores 1.0.
        assert!(a < 0.9 && a < b, "t {t}: trained {a}, untrained {b}");
    }
}

#[test]
fn generated_melodies_are_closer_to_the_test_split_than_vae_prior_samples() {
    bandmate_tests::require_data!("nottingham");
    let lm = melody();
    let count = 40;
    let prior = lm.prior_sequences(count, 11).unwrap();
    let encode = |set: &[Vec<Vec<u8>>]| {
        let windows: Vec<&[u8]> = set.iter().flatten().map(Vec::as_slice).collect();
        lm.vae.encode(&windows).unwrap()
    };
    let reference: Vec<Vec<Vec<u8>>> = test_sequences().iter().take(120).cloned().collect();
    let test_latents = encode(&reference);
    let fd_prior = frechet_distance(&encode(&prior), &test_latents);
    let diatonic = |set: &[Vec<Vec<u8>>]| {
        let clips: Vec<Clip> = set
            .iter()
            .map(|s| bandmate::vae::windows_to_clip(s))
            .collect();
        bandmate::metrics::rhythm::rhythm_melody_stats(&clips)
            .diatonicity
            .unwrap()
    };
    // The stochastic sampler lands closer to the test melodies' latents than the VAE prior.
    let pc = SampleOptions {
        sampler: Sampler::parse("pc").unwrap(),
        seed: 11,
        ..SampleOptions::default()
    };
    let generated = lm.generate(count, &pc).unwrap();
    assert_eq!(generated.len(), count);
    assert!(generated.iter().all(|s| s.len() == 8));
    assert!(generated.iter().flatten().all(|w| is_valid_window(w)));
    let fd_model = frechet_distance(&encode(&generated), &test_latents);
    assert!(
        fd_model < fd_prior,
        "Fréchet distance to the test latents: score model (pc) {fd_model:.2}, VAE prior {fd_prior:.2}"
    );
    // The default ODE sampler writes far more diatonic tunes than the prior (0.94 vs 0.77 in
    // the card's table; the test split: 0.98).
    let ode = SampleOptions {
        seed: 11,
        ..SampleOptions::default()
    };
    let generated = lm.generate(count, &ode).unwrap();
    let (d_model, d_prior) = (diatonic(&generated), diatonic(&prior));
    assert!(
        d_model > d_prior + 0.08,
        "diatonicity: ODE {d_model:.3}, prior {d_prior:.3}"
    );
    // Same seed, same melodies.
    assert_eq!(lm.generate(2, &ode).unwrap(), lm.generate(2, &ode).unwrap());
}

#[test]
fn fill_and_continue_keep_the_given_bars_of_a_real_tune() {
    bandmate_tests::require_data!("nottingham");
    let lm = melody();
    let song = songs(Split::Test)
        .iter()
        .find(|s| {
            s.clip.time_signature == TimeSignature::FOUR_FOUR
                && song_windows(&s.clip).is_ok_and(|w| w.windows.len() >= 8)
                && s.clip.tracks.len() >= 2
        })
        .expect("a 16-bar 4/4 test tune with chords");
    let windows = song_windows(&song.clip).unwrap();
    let first8: Vec<Vec<u8>> = windows.windows[..8].to_vec();
    let regenerate: Vec<bool> = (0..8).map(|w| w == 2 || w == 3).collect();
    let opts = SampleOptions {
        sampler: Sampler::parse("pc").unwrap(),
        seed: 2,
        ..SampleOptions::default()
    };
    let filled = lm.fill(&first8, &regenerate, &opts).unwrap();
    for w in 0..8 {
        assert!(is_valid_window(&filled[w]));
        if !regenerate[w] {
            assert_eq!(filled[w], first8[w], "window {w} changed");
        }
    }
    // In the clip: bars 5-8 of the melody are new, everything else is the same notes.
    let out = apply_windows(&song.clip, windows.track, &filled, &regenerate);
    let outside = |c: &Clip| -> Vec<Note> {
        c.notes
            .iter()
            .filter(|n| n.track != windows.track || !(64..128).contains(&n.start))
            .map(|n| Note {
                length: if n.track == windows.track && n.start < 64 {
                    n.length.min(64 - n.start)
                } else {
                    n.length
                },
                ..*n
            })
            .collect()
    };
    assert_eq!(outside(&out), outside(&song.clip));
    let generated: Vec<&Note> = out
        .notes
        .iter()
        .filter(|n| n.track == windows.track && (64..128).contains(&n.start))
        .collect();
    if filled[2..4].iter().flatten().any(|&t| t < REST) {
        assert!(!generated.is_empty());
        // Velocities follow the tune, not a constant default.
        let tune_velocity = song.clip.notes[0].velocity;
        assert!(
            generated
                .iter()
                .all(|n| n.velocity.abs_diff(tune_velocity) <= 30)
        );
    }

    let continued = lm.continue_melody(&first8[..2], 8, &opts).unwrap();
    assert_eq!(continued.len(), 8);
    assert_eq!(continued[..2], first8[..2]);
    assert!(continued.iter().all(|w| is_valid_window(w)));
}

#[test]
fn a_refined_interpolation_keeps_both_ends() {
    bandmate_tests::require_data!("nottingham");
    let lm = melody();
    let seqs = test_sequences();
    let (a, b) = (&seqs[0][0], &seqs[1][0]);
    let plain = lm.vae.interpolate(a, b, 6).unwrap();
    let refined = lm
        .interpolate(a, b, 6, Some(0.3), &SampleOptions::default())
        .unwrap();
    assert_eq!(refined.len(), 6);
    assert_eq!(refined[0], plain[0]);
    assert_eq!(refined[5], plain[5]);
    assert!(refined.iter().all(|w| is_valid_window(w)));
}

#[test]
fn bad_input_gives_clear_errors() {
    let lm = melody();
    // A waltz.
    let mut waltz = Clip::new(8);
    waltz.time_signature = TimeSignature::new(3, 4);
    waltz.tracks = vec![Track::new("Melody", TrackRole::Melody, 0)];
    waltz.notes = (0..24).map(|i| Note::new(i * 4, 67, 4, 90, 0)).collect();
    let e = song_windows(&waltz).unwrap_err().to_string();
    assert!(e.contains("3/4") && e.contains("4/4"), "{e}");
    // One bar only.
    let mut short = Clip::new(1);
    short.notes = vec![Note::new(0, 60, 4, 90, 0)];
    assert!(song_windows(&short).is_err());
    // No notes at all.
    assert!(song_windows(&Clip::new(4)).is_err());
    // Too many windows, mismatched flags, a continuation that adds nothing.
    let w = vec![vec![REST; WINDOW_STEPS]; 9];
    assert!(lm.fill(&w, &[true; 9], &SampleOptions::default()).is_err());
    assert!(
        lm.fill(&w[..4], &[true; 3], &SampleOptions::default())
            .is_err()
    );
    let e = lm
        .continue_melody(&w[..4], 4, &SampleOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("continue"), "{e}");
    // Missing weights.
    let e = LatentModel::load(std::path::Path::new("/nonexistent/latent"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no latent score weights"), "{e}");
    // A config that does not fit the VAE.
    let other = LatentModel::random(&Config::tiny()).unwrap();
    let bad = LatentMelody {
        vae: lm.vae,
        model: &other,
    };
    let e = bad
        .generate(1, &SampleOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("latents"), "{e}");
}

#[test]
fn the_latent_evaluation_scores_only_the_generated_bars_of_every_row() {
    bandmate_tests::require_data!("nottingham");
    use bandmate::evaluation::report::{COPY, MODEL, RANDOM, REAL, TRUTH};
    use bandmate::latent::eval::{LatentEvalOptions, evaluate_latent};
    let evaluation = evaluate_latent(
        &melody(),
        &LatentEvalOptions {
            count: 6,
            seed: 0,
            seeds: vec![0],
            samplers: vec![Sampler::OdeHeun],
            steps: 6,
            temperature: 1.0,
            split: Split::Test,
            data_root: bandmate::data::default_data_root(),
            cache_dir: bandmate::data::default_cache_dir(),
        },
        "test",
        |_| {},
    )
    .unwrap();
    let tasks = &evaluation.report.tasks;
    assert_eq!(tasks.len(), 2);
    for task in tasks {
        let names = bandmate_tests::row_names(task);
        assert_eq!(
            names,
            [
                MODEL,
                TRUTH,
                REAL,
                COPY,
                RANDOM,
                "VAE reconstruction",
                "VAE prior N(0, I)",
                "prior fitted to data"
            ],
            "{}",
            task.task
        );
        let value =
            |row: &str, metric: &str| task.value(row, metric).and_then(|m| m.interval.value);
        assert_eq!(value(TRUTH, "all: density ratio"), Some(1.0));
        // A melody stays one voice in every row (the VAE writes monophonic windows).
        for row in [MODEL, "VAE reconstruction", "prior fitted to data"] {
            assert_eq!(
                value(row, "melody: voices (max)"),
                Some(1.0),
                "{}: {row}",
                task.task
            );
        }
        // Fréchet distance of the true hole to itself is 0; a prior's is larger.
        let frechet = |row: &str| {
            task.rows
                .iter()
                .find(|r| r.name == row)
                .and_then(|r| r.extra.first())
                .map(|e| e.1)
                .unwrap()
        };
        assert!(frechet(TRUTH).abs() < 1e-6);
        assert!(frechet("VAE prior N(0, I)") > frechet(TRUTH));
    }
    // The infill keeps the given 12 bars exactly.
    let infill = &tasks[0];
    assert_eq!(
        infill
            .value(MODEL, "all: given notes kept")
            .and_then(|m| m.interval.value),
        Some(1.0)
    );
    assert!(infill.markdown().contains("Fréchet distance"));
}
