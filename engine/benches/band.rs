//! `cargo xtask bench band`: the band player's live next-bar prediction on the CPU.
//!
//! - Loading the embedded recurrent multimodal VAE, and the resident memory it adds.
//! - One next-bar answer (`BandPlayer::next_bar`: the played bar's notes in, the next bar's
//!   notes out), p50/p99/max over the first 1,000 bars of the Nottingham test melodies, fed bar
//!   by bar as the plugin's band thread does (melody heard, own accompaniment fed back).
//! - The same for a bar of 300 notes (bounded work on absurd input).
//! - With `BANDMATE_TORCH_PYTHON` set (the xtask does it for `--compare-torch`, after making a
//!   venv with PyTorch under `target/torch-venv`): the same model in PyTorch
//!   (`xtask/torch/band_vae.py`) with our weights on the same batch of 32 Nottingham test
//!   sequences of 8 bars (some tracks missing, so that the product of experts varies): the
//!   next-bar logits and KL (within 1e-4), the training forward pass, one AdamW step of the
//!   training loss (with the scale, rhythm and harmony terms; in candle one sub-batch per pool
//!   thread, as `bandmate train band` runs it) and one live next-bar answer at
//!   batch 1, with the candle/PyTorch ratios and GFLOP/s, and the loss after the timed steps in
//!   both.

use anyhow::{Context, Result, bail};
use bandmate::band::player::{BandModel, BandPlayer};
use bandmate::data::{Dataset, Song};
use bandmate::models::band::BandVae;
use bandmate::music::{Clip, Note, TrackRole};
use bandmate::nn::pool_parts;
use bandmate::nn::random::normal_noise;
use bandmate::train::adamw::AdamW;
use bandmate::train::band::{AuxWeights, Batch, TrainOptions, batch_loss, make_batch, sequences};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

#[path = "support/mod.rs"]
mod support;
use support::songs::test_songs;
use support::timing::{percentile, timed};
use support::twin::{Twin, median_ms, scalar, training_scalars};

/// Timed runs per comparison (the live answer runs 10× as many); the twin takes the same.
const TORCH_ITERS: usize = 10;
/// The training batch and sequence length (`bandmate train band`'s defaults).
const TORCH_BATCH: usize = 32;
const SEQ_BARS: usize = 8;

/// Resident memory of this process in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn main() -> Result<()> {
    // SAFETY: first thing in main, before any other thread exists.
    unsafe { bandmate::nn::set_thread_count_env() };
    bandmate::nn::keep_freed_memory();
    let songs = test_songs(Dataset::Nottingham)?;
    let before = rss_kib();
    let (model, load_ms) = timed(BandModel::embedded)?;
    let mut player = BandPlayer::new(&model)?;
    println!(
        "band: load the embedded model {load_ms:.1} ms, +{} KiB resident",
        rss_kib().saturating_sub(before)
    );
    let mut times = Vec::with_capacity(1000);
    'songs: for song in &songs {
        player.reset()?;
        let melody = song
            .clip
            .track_with_role(TrackRole::Melody)
            .context("a Nottingham tune without melody")?;
        for bar in 0..song.clip.bars {
            let mut played = song.clip.window(bar, 1);
            played.notes.retain(|n| n.track == melody);
            let tick = Instant::now();
            let answer = player.next_bar(&played)?;
            times.push(tick.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(answer);
            if times.len() == 1000 {
                break 'songs;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "band: next bar over {} test bars: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms (target p99 <= 10 ms)",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
    let mut crowded = Clip::new(1);
    crowded.tracks[0].role = TrackRole::Melody;
    crowded.notes = (0..300)
        .map(|i| Note::new(i % 16, 40 + (i * 7 % 48) as u8, 1, 90, 0))
        .collect();
    let mut heavy = Vec::new();
    for _ in 0..50 {
        let tick = Instant::now();
        std::hint::black_box(player.next_bar(&crowded)?);
        heavy.push(tick.elapsed().as_secs_f64() * 1e3);
    }
    heavy.sort_by(f64::total_cmp);
    println!(
        "band: a bar of 300 notes: p50 {:.3} ms  max {:.3} ms; resident after the run {} KiB",
        percentile(&heavy, 0.5),
        heavy[heavy.len() - 1],
        rss_kib()
    );
    if let Some(twin) = Twin::from_env(TORCH_ITERS) {
        compare_torch(&twin, &model, &songs)?;
    }
    Ok(())
}

/// The band model in candle and in PyTorch on one training batch of test sequences.
fn compare_torch(twin: &Twin, model: &BandModel, songs: &[Song]) -> Result<()> {
    let net = model.net();
    let cfg = net.config();
    let device = Device::Cpu;
    let all = sequences(songs, cfg, SEQ_BARS, SEQ_BARS);
    if all.len() < TORCH_BATCH {
        bail!("only {} test sequences of {SEQ_BARS} bars", all.len());
    }
    let seqs: Vec<_> = all.iter().take(TORCH_BATCH).collect();
    let tracks = cfg.tracks.len();
    // Every fifth (sequence, bar, track) is missing.
    let present: Vec<Vec<Vec<bool>>> = (0..TORCH_BATCH)
        .map(|i| {
            (0..SEQ_BARS)
                .map(|t| (0..tracks).map(|k| (i + t + k) % 5 != 0).collect())
                .collect()
        })
        .collect();
    let batch = make_batch(&seqs, &[0; TORCH_BATCH], &present, cfg, &device)?;
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let eps = Tensor::from_vec(
        normal_noise(&mut rng, TORCH_BATCH * SEQ_BARS * cfg.latent),
        (TORCH_BATCH, SEQ_BARS, cfg.latent),
        &device,
    )?;
    let opts = TrainOptions::new(cfg.clone());
    let aux = AuxWeights::DEFAULT;
    let (logits, kl) = net.forward(&batch.inputs, &batch.present, None)?;
    let loss = batch_loss(net, &batch, Some(&eps), opts.beta, aux)?
        .total
        .to_scalar::<f32>()?;
    // On a pool thread, as training runs them (`train::band::train_step`).
    let forward = median_ms(twin.iterations, || {
        bandmate::nn::in_pool(|| net.forward(&batch.inputs, &batch.present, Some(&eps)))?;
        Ok(())
    })?;
    // One live answer: the first sequence's first bar heard, one GRU step, the decoders.
    let live_bars: Vec<Tensor> = batch
        .inputs
        .iter()
        .map(|x| x.get(0)?.narrow(0, 0, 1))
        .collect::<candle_core::Result<_>>()?; // [1, cells] each
    let live_present = batch.present.get(0)?.narrow(0, 0, 1)?; // [1, tracks]
    let state = net.initial_state(1)?;
    let live = median_ms(10 * twin.iterations, || {
        let z = net.posterior(&live_bars, &live_present)?.sample(None)?;
        net.decode(&net.step(&z, &state)?)?;
        Ok(())
    })?;
    // Training changes the weights: train a second copy.
    let mut varmap = VarMap::new();
    let trained = BandVae::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
    varmap.load(BandModel::shipped_dir().join("model.safetensors"))?;
    let mut opt = AdamW::new(&varmap, opts.lr, opts.weight_decay)?;
    // As `train::band::train_step` runs it: one sub-batch per pool thread.
    let (ranges, weights) = pool_parts(TORCH_BATCH, 4);
    let parts: Vec<(Batch, Tensor)> = ranges
        .iter()
        .map(|r| {
            let sub = make_batch(
                &seqs[r.clone()],
                &[0; TORCH_BATCH][r.clone()],
                &present[r.clone()],
                cfg,
                &device,
            )?;
            Ok((sub, eps.narrow(0, r.start, r.len())?))
        })
        .collect::<Result<_>>()?;
    let step = median_ms(twin.iterations, || {
        bandmate::nn::in_pool(|| {
            opt.split_backward_step(&weights, |i| {
                let (sub, eps) = &parts[i];
                Ok(batch_loss(&trained, sub, Some(eps), opts.beta, aux)?.total)
            })
        })?;
        Ok(())
    })?;
    let loss_after = batch_loss(&trained, &batch, Some(&eps), opts.beta, aux)?
        .total
        .to_scalar::<f32>()?;

    let mut io: Vec<(String, Tensor)> = Vec::new();
    for (k, logits) in logits.into_iter().enumerate() {
        io.push((format!("inputs_{k}"), batch.inputs[k].clone()));
        io.push((format!("targets_{k}"), batch.targets[k].clone()));
        io.push((format!("out_of_key_{k}"), batch.out_of_key[k].clone()));
        io.push((format!("logits_{k}"), logits));
    }
    io.extend([
        ("present".to_string(), batch.present.clone()),
        ("eps".to_string(), eps),
        ("kl".to_string(), kl),
        ("beta".to_string(), scalar(opts.beta)?),
        (
            "aux".to_string(),
            Tensor::new(
                &[aux.scale as f32, aux.rhythm as f32, aux.harmony as f32],
                &device,
            )?,
        ),
    ]);
    let scalars = training_scalars(loss, opts.lr, opts.weight_decay)?;
    io.extend(scalars.map(|(k, v)| (k.to_string(), v)));
    let torch = twin.run("band_vae.py", &BandModel::shipped_dir(), "band", io)?;
    torch.heading(
        "band model",
        &format!(
            "same weights and batch ({TORCH_BATCH} Nottingham test sequences of {SEQ_BARS} bars)"
        ),
    );
    let flops = torch.number("forward_flops");
    let forward_row = format!("forward, batch {TORCH_BATCH}×{SEQ_BARS}");
    torch.row(&forward_row, flops, forward, "forward_ms");
    torch.training_row("training step", flops, step);
    let live_flops = torch.number("live_flops");
    torch.row("live next bar, batch 1", live_flops, live, "live_ms");
    println!(
        "  same outputs: logits max |Δ| = {}, KL {}; {}",
        torch.diff("max_abs_diff_logits"),
        torch.diff("max_abs_diff_kl"),
        torch.loss(loss, 6)
    );
    torch.trained(loss_after);
    Ok(())
}
