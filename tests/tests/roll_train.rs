//! Training the roll UNet on POP909 with a weight average (`--ema`): a run stopped after a few
//! steps resumes where it was, keeps both validation losses, and exports the averaged weights,
//! not the raw ones.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bandmate::models::roll::Config;
use bandmate::train::roll::{TrainOptions, ema_decay, raw_val_loss, train};
use bandmate::train::run_loop::LoopState;
use candle_core::{Device, Tensor};

fn weights(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn max_abs_diff(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .map(|(name, x)| {
            let diff = (x - &b[name]).and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>());
            diff.unwrap()
        })
        .fold(0.0, f32::max)
}

#[test]
fn a_run_with_a_weight_average_resumes_and_exports_the_average() {
    bandmate_tests::require_data!("pop909");
    let dir = std::env::temp_dir().join(format!("bandmate-roll-ema-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let cfg = Config {
        channel_mults: vec![1, 2, 2, 2],
        conditioned: true,
        ..Config::small().narrow()
    };
    let mut opts = TrainOptions::new(cfg);
    opts.batch = 4;
    opts.lr = 1e-3;
    opts.warmup = 2;
    opts.epoch_steps = Some(2);
    opts.val_windows = 8;
    opts.max_steps = Some(4);
    opts.budget = Duration::from_secs(3600);
    opts.checkpoint_every = Duration::from_secs(3600);
    opts.run_dir = dir.join("run");
    opts.assets_dir = Some(dir.join("assets"));
    opts.ema = Some(0.99);
    opts.fresh = true;
    let first = train(&opts).expect("first run");
    assert_eq!(first.state.step, 4);
    assert_eq!(ema_decay(&first.state), Some(0.99));

    // Resume for two more steps; the decay comes from the run's state.
    opts.fresh = false;
    opts.ema = None;
    opts.max_steps = Some(6);
    let second = train(&opts).expect("resumed run");
    let state: LoopState =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/state.json")).unwrap())
            .unwrap();
    assert_eq!(second.state.step, 6);
    assert_eq!(state.step, 6);
    assert_eq!(ema_decay(&state), Some(0.99));
    // One validation per epoch of two steps, for the average and for the raw weights.
    assert_eq!(state.val_loss.len(), 3);
    assert_eq!(raw_val_loss(&state).len(), 3);
    for (v, r) in state.val_loss.iter().zip(&raw_val_loss(&state)) {
        assert_eq!(v.0, r.0);
        assert!(v.2.is_finite() && r.1.is_finite() && v.2 > 0.0 && r.1 > 0.0);
    }

    // The average differs from the raw weights; the best export is an average.
    let average = weights(&dir.join("run/ema.safetensors"));
    let raw = weights(&dir.join("run/checkpoint.safetensors"));
    assert!(max_abs_diff(&average, &raw) > 0.0);
    let exported = weights(&dir.join("assets/model.safetensors"));
    let best = weights(&dir.join("run/best.safetensors"));
    assert_eq!(max_abs_diff(&exported, &best), 0.0);
    let best_epoch = state
        .val_loss
        .iter()
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .unwrap();
    if best_epoch.0 == 6 {
        assert_eq!(max_abs_diff(&exported, &average), 0.0);
    }
    assert!(max_abs_diff(&exported, &raw) > 0.0);
    let card = std::fs::read_to_string(dir.join("assets/CARD.md")).unwrap();
    assert!(card.contains("moving average"), "{card}");
    std::fs::remove_dir_all(&dir).ok();
}
