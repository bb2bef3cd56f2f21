//! The path a GPU build takes, checked on the CPU: each shipped model runs the same input once
//! with the custom CPU kernels and once inside [`with_candle_ops`] (every kernel replaced by
//! the candle ops that CUDA and Metal run), and the outputs agree within [`TOLERANCE`]. A
//! count of the kernels' forward passes on the test's thread shows that the first run used
//! the kernels and the second none.

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::band::player::BandModel;
use crate::diffusion::RollModel;
use crate::latent::LatentModel;
use crate::music::melody::{HOLD, REST};
use crate::nn::cpu::storage::{kernel_runs, with_candle_ops};
use crate::nn::weights::ModelFiles;
use crate::vae::MelodyVae;

/// The largest difference allowed between the two paths' outputs.
const TOLERANCE: f32 = 1e-4;

/// The named outputs of one run, each flattened.
type Outputs = Vec<(&'static str, Vec<f32>)>;

/// Runs `run` with the kernels and then with candle's ops, checks that the first run used
/// kernels and the second none, and that every output agrees within [`TOLERANCE`]; returns
/// the largest difference.
fn kernels_match_candle_ops(model: &str, run: impl Fn() -> candle_core::Result<Outputs>) -> f32 {
    let before = kernel_runs();
    let fast = run().unwrap();
    let fast_kernels = kernel_runs() - before;
    let before = kernel_runs();
    let by_ops = with_candle_ops(&run).unwrap();
    let ops_kernels = kernel_runs() - before;
    assert!(fast_kernels > 0, "{model}: no custom kernel ran");
    assert_eq!(
        ops_kernels, 0,
        "{model}: kernels ran inside with_candle_ops"
    );
    let mut worst = 0f32;
    for ((name, a), (_, b)) in fast.iter().zip(&by_ops) {
        assert_eq!(a.len(), b.len(), "{model} {name}");
        assert!(!a.is_empty(), "{model} {name}");
        assert!(a.iter().chain(b).all(|v| v.is_finite()), "{model} {name}");
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!(
            "{model} {name}: max |kernels - candle ops| = {diff:.3e} (values up to {scale:.2}; \
             {fast_kernels} kernel passes)"
        );
        assert!(diff <= TOLERANCE, "{model} {name}: {diff:e}");
        worst = worst.max(diff);
    }
    worst
}

fn flat(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1()
}

/// `n` cells, each on with probability `density`.
fn sparse_roll(rng: &mut ChaCha8Rng, n: usize, density: f32) -> Vec<f32> {
    (0..n)
        .map(|_| f32::from(rng.random::<f32>() < density))
        .collect()
}

#[test]
fn the_roll_denoiser_runs_the_same_on_candle_ops() {
    let model = RollModel::from_files(&RollModel::embedded_files().on(Device::Cpu)).unwrap();
    let cfg = model.config();
    let plane = cfg.steps * cfg.pitches;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Two windows as the sampler builds them: x_t, the known cells (the first half of the
    // steps), and for a parts model a role: `[2, input channels, steps, pitches]`.
    let mut input = Vec::new();
    for role in [
        crate::models::roll::PartRole::Melody,
        crate::models::roll::PartRole::Accompaniment,
    ] {
        let x_t = sparse_roll(&mut rng, 2 * plane, 0.03);
        let x0 = sparse_roll(&mut rng, 2 * plane, 0.03);
        let free: Vec<bool> = (0..plane)
            .map(|i| i / cfg.pitches >= cfg.steps / 2)
            .collect();
        crate::models::roll::conditioned_input(cfg, &x_t, &x0, Some(&free), &mut input);
        crate::models::roll::part_input(cfg, None, role, &mut input);
    }
    let x = Tensor::from_vec(
        input,
        (2, cfg.input_channels(), cfg.steps, cfg.pitches),
        &Device::Cpu,
    )
    .unwrap();
    let t = Tensor::new(&[12f32, 70.], &Device::Cpu).unwrap();
    kernels_match_candle_ops("roll", || {
        // Logits of x̂_0 `[2, 2, steps, pitches]`.
        Ok(vec![("logits", flat(&model.net().forward(&x, &t)?)?)])
    });
}

#[test]
fn the_band_player_runs_the_same_on_candle_ops() {
    let model = BandModel::from_files(&BandModel::embedded_files().on(Device::Cpu)).unwrap();
    let cfg = model.config().clone();
    let net = model.net();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let tracks = cfg.tracks.len();
    // The live step: one bar of every track `[1, cells_k]` → posterior, GRU state, next-bar
    // logits `[1, cells_k]`.
    let bar: Vec<Tensor> = (0..tracks)
        .map(|k| {
            let cells = cfg.bar_cells(k);
            Tensor::from_vec(sparse_roll(&mut rng, cells, 0.03), (1, cells), &Device::Cpu)
        })
        .collect::<candle_core::Result<_>>()
        .unwrap();
    let present = Tensor::ones((1, tracks), DType::F32, &Device::Cpu).unwrap();
    // A sequence of 4 bars in a batch of 2, the second without its last track:
    // `[2, 4, cells_k]` each, `present` `[2, 4, tracks]`.
    let bars: Vec<Tensor> = (0..tracks)
        .map(|k| {
            let cells = cfg.bar_cells(k);
            Tensor::from_vec(
                sparse_roll(&mut rng, 8 * cells, 0.03),
                (2, 4, cells),
                &Device::Cpu,
            )
        })
        .collect::<candle_core::Result<_>>()
        .unwrap();
    let heard: Vec<f32> = (0..2 * 4 * tracks)
        .map(|i| f32::from(i / (4 * tracks) == 0 || i % tracks != tracks - 1))
        .collect();
    let heard = Tensor::from_vec(heard, (2, 4, tracks), &Device::Cpu).unwrap();
    kernels_match_candle_ops("band", || {
        let state = net.initial_state(1)?;
        let posterior = net.posterior(&bar, &present)?;
        let state = net.step(&posterior.mean, &state)?; // [1, rnn_hidden]
        let mut out: Outputs = vec![
            ("posterior mean", flat(&posterior.mean)?),
            ("state", flat(state.h())?),
        ];
        for logits in net.decode(&state)? {
            out.push(("next-bar logits", flat(&logits)?));
        }
        let (logits, kl) = net.forward(&bars, &heard, None)?;
        for logits in &logits {
            out.push(("sequence logits", flat(logits)?));
        }
        out.push(("sequence KL", flat(&kl)?));
        Ok(out)
    });
}

#[test]
fn the_latent_score_network_runs_the_same_on_candle_ops() {
    let model = LatentModel::from_files(&LatentModel::embedded_files().on(Device::Cpu)).unwrap();
    let cfg = model.config();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    // `[2, positions, z_dim]` standard normal states at times `[2]`.
    let n = 2 * cfg.positions * cfg.z_dim;
    let x = Tensor::from_vec(
        crate::nn::random::normal_noise(&mut rng, n),
        (2, cfg.positions, cfg.z_dim),
        &Device::Cpu,
    )
    .unwrap();
    let t = Tensor::new(&[0.05f32, 0.6], &Device::Cpu).unwrap();
    kernels_match_candle_ops("latent score", || {
        // ε̂ `[2, positions, z_dim]`.
        Ok(vec![("noise", flat(&model.score().forward(&x, &t)?)?)])
    });
}

/// A melody of `steps` tokens: notes of one to four sixteenths, now and then a rest.
fn melody(rng: &mut ChaCha8Rng, steps: usize) -> Vec<u8> {
    let mut tokens = Vec::with_capacity(steps);
    while tokens.len() < steps {
        let length = rng.random_range(1..=4);
        let first = if rng.random::<f32>() < 0.15 {
            REST
        } else {
            rng.random_range(60..80)
        };
        tokens.push(first);
        tokens.extend(std::iter::repeat_n(HOLD, length - 1));
    }
    tokens.truncate(steps);
    tokens
}

/// A MusicVAE's encoder (μ, log σ²) and teacher-forced decoder (logits) on two melodies, and
/// its argmax decoding, with the kernels and with candle's ops.
fn vae_matches(name: &str, vae: &MelodyVae) -> f32 {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let steps = vae.window_steps();
    let windows = [melody(&mut rng, steps), melody(&mut rng, steps)];
    let rows: Vec<&[u8]> = windows.iter().map(Vec::as_slice).collect();
    let net = vae.model();
    let tokens = net.tokens_tensor(&rows, &Device::Cpu).unwrap(); // [2, steps] u32
    let decoded = std::cell::RefCell::new(Vec::new());
    let worst = kernels_match_candle_ops(name, || {
        let (mu, log_var) = net.encode(&tokens)?; // [2, z_dim] each
        let logits = net.decode_teacher_forced(&mu, &tokens)?; // [2, steps, classes]
        decoded.borrow_mut().push(net.decode(&mu, None, &[])?);
        Ok(vec![
            ("mu", flat(&mu)?),
            ("log variance", flat(&log_var)?),
            ("decoder logits", flat(&logits)?),
        ])
    });
    let decoded = decoded.into_inner();
    assert_eq!(
        decoded[0], decoded[1],
        "{name}: the argmax decodings differ"
    );
    worst
}

#[test]
fn the_flat_music_vae_runs_the_same_on_candle_ops() {
    let vae = MelodyVae::from_files(&MelodyVae::embedded_files().on(Device::Cpu)).unwrap();
    assert!(!vae.shape().is_hierarchical());
    vae_matches("MusicVAE 2-bar", &vae);
}

#[test]
fn the_hierarchical_music_vae_runs_the_same_on_candle_ops() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/vae16");
    let files = ModelFiles::from_dir(&dir, "MusicVAE", "assets/vae16 is shipped").unwrap();
    let vae = MelodyVae::from_files(&files.on(Device::Cpu)).unwrap();
    assert!(vae.shape().is_hierarchical());
    vae_matches("MusicVAE 16-bar", &vae);
}

#[test]
fn with_candle_ops_reaches_the_pool_and_ends_with_its_closure() {
    use crate::nn::cpu::storage::candle_ops_only;
    assert!(!candle_ops_only());
    with_candle_ops(|| {
        assert!(candle_ops_only());
        assert!(crate::nn::in_pool(candle_ops_only));
        assert!(crate::nn::on_one_thread(candle_ops_only));
    });
    assert!(!candle_ops_only());
    assert!(!crate::nn::in_pool(candle_ops_only));
    // A panic inside does not leave the switch on.
    let caught = std::panic::catch_unwind(|| {
        with_candle_ops(|| std::panic::resume_unwind(Box::new("inside")))
    });
    assert!(caught.is_err());
    assert!(!candle_ops_only());
}
