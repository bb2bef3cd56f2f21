//! Training the parts model: the roll UNet with [`Config::parts`], which generates one part of a
//! clip (melody, counter-melody, accompaniment or bass) given that part's known cells and the
//! other parts apart from it.
//!
//! Data: POP909 (MELODY → melody, BRIDGE → counter-melody, PIANO → accompaniment, with the
//! piano's lowest line as the bass, [`split_lowest_line`]) and Nottingham (melody, chords →
//! accompaniment), 4-bar 4/4 windows. Every example draws a target part among the window's
//! parts, a task-like region of it to generate (all of it, a run of bars, the bars to the end,
//! or short spans), which other parts it hears (each dropped with some chance, all of them now
//! and then) and whether the others are hidden in the region too (a fill over several parts,
//! generated one part after another). The loss is the mean BCE of x̂_0 of the target part.
//! The run goes through the shared loop ([`super::run_loop`]); it can start from the merged-roll
//! model's weights (`init`), the new input channels starting at zero.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::adamw::AdamW;
use super::format_duration;
use super::roll::train_step;
use super::run_loop::{
    EpochOrder, LoopOptions, LoopState, Measured, Trainee, new_model, run, step_rng,
    steps_per_epoch,
};
use crate::data::{self, Dataset, Song, Split};
use crate::diffusion::binomial::BinomialSchedule;
use crate::diffusion::parts::{part_roles, split_lowest_line};
use crate::models::roll::{Config, OtherParts, PartRole, RollUnet, conditioned_input, part_input};
use crate::music::{Note, TimeSignature};

/// Notes of one part in a window: `(start step, MIDI pitch, length)`.
pub type PartNotes = Vec<(u16, u8, u16)>;

/// One training window: its parts with their roles (a role may appear twice, e.g. two
/// counter-melodies).
#[derive(Clone, Debug, PartialEq)]
pub struct PartWindow {
    pub parts: Vec<(PartRole, PartNotes)>,
}

/// The piano part's lowest line below this pitch is the bass (C4).
const BASS_BELOW: u8 = 60;

/// The parts of every 4/4 window of `cfg.steps` steps of `songs`, starting every `hop_bars`
/// bars; an accompaniment track named PIANO gives its lowest line as the bass.
pub fn part_windows(songs: &[Song], cfg: &Config, hop_bars: u32) -> Result<Vec<PartWindow>> {
    let mut out = Vec::new();
    for w in super::roll::four_four_windows(songs, cfg.steps, hop_bars, "parts model")? {
        let roles = part_roles(&w);
        let mut parts = Vec::new();
        for (t, role) in roles.iter().enumerate() {
            let Some(role) = *role else { continue };
            let notes: Vec<Note> = w.track_notes(t as u16).copied().collect();
            let compact = |ns: &[Note]| -> PartNotes {
                ns.iter()
                    .map(|n| {
                        (
                            n.start as u16,
                            n.pitch,
                            n.length.min(u16::MAX as u32) as u16,
                        )
                    })
                    .collect()
            };
            if role == PartRole::Accompaniment && w.tracks[t].name.eq_ignore_ascii_case("piano") {
                let (bass, rest) = split_lowest_line(&notes, BASS_BELOW);
                parts.push((PartRole::Accompaniment, compact(&rest)));
                parts.push((PartRole::Bass, compact(&bass)));
            } else {
                parts.push((role, compact(&notes)));
            }
        }
        parts.retain(|(_, notes)| !notes.is_empty());
        if !parts.is_empty() {
            out.push(PartWindow { parts });
        }
    }
    Ok(out)
}

/// One example: the target part's clean roll, its free cells, what it hears of the others.
#[derive(Clone, Debug)]
pub struct PartExample {
    /// `[2, steps, pitches]`
    pub x0: Vec<f32>,
    /// `[steps, pitches]`
    pub free: Vec<bool>,
    pub role: PartRole,
    pub others: OtherParts,
}

fn draw_notes(
    notes: &PartNotes,
    cfg: &Config,
    shift: i32,
    keep: impl Fn(u16) -> bool,
    out: &mut [f32],
) {
    let plane = cfg.steps * cfg.pitches;
    for &(start, pitch, len) in notes {
        let o = pitch as i32 + shift - cfg.pitch_lo as i32;
        if o < 0 || o >= cfg.pitches as i32 || start as usize >= cfg.steps || !keep(start) {
            continue;
        }
        let (o, s0) = (o as usize, start as usize);
        out[s0 * cfg.pitches + o] = 1.0;
        for s in s0..(s0 + len.max(1) as usize).min(cfg.steps) {
            out[plane + s * cfg.pitches + o] = 1.0;
        }
    }
}

/// Draw one example from `w` (see the module docs for the mix).
pub fn draw_example(
    w: &PartWindow,
    cfg: &Config,
    max_shift: i32,
    rng: &mut impl Rng,
) -> PartExample {
    let (steps, pitches) = (cfg.steps, cfg.pitches);
    let plane = steps * pitches;
    let spb = TimeSignature::FOUR_FOUR.steps_per_bar() as usize;
    let bars = steps / spb;
    // Transposition keeping every note in the window.
    let (lo, hi) = w
        .parts
        .iter()
        .flat_map(|(_, ns)| ns.iter().map(|n| n.1))
        .fold((u8::MAX, 0u8), |(a, b), p| (a.min(p), b.max(p)));
    let shift = if lo > hi {
        0
    } else {
        let a = (cfg.pitch_lo as i32 - lo as i32).max(-max_shift);
        let b = (cfg.pitch_lo as i32 + pitches as i32 - 1 - hi as i32).min(max_shift);
        if a > b { 0 } else { rng.random_range(a..=b) }
    };
    let target = rng.random_range(0..w.parts.len());
    let (role, target_notes) = &w.parts[target];

    // The region (steps) of the target to generate.
    let mut region = vec![false; steps];
    let u: f32 = rng.random();
    if u < 0.2 {
        region.fill(true);
    } else if u < 0.6 {
        let first = rng.random_range(0..bars);
        let last = rng.random_range(first..bars);
        region[first * spb..(last + 1) * spb].fill(true);
    } else if u < 0.8 {
        let first = rng.random_range(1..bars);
        region[first * spb..].fill(true);
    } else {
        for _ in 0..rng.random_range(1..=3) {
            let len = rng.random_range(2..=2 * spb);
            let a = rng.random_range(0..=steps - len);
            region[a..a + len].fill(true);
        }
    }
    let in_region = |s: u16| region.get(s as usize).copied().unwrap_or(false);

    let mut x0 = vec![0.0f32; 2 * plane];
    draw_notes(target_notes, cfg, shift, |_| true, &mut x0);
    // Known: the target's notes starting outside the region (all their cells); the rest of the
    // region is free, cells outside it known (as they are).
    let mut known_target = vec![0.0f32; 2 * plane];
    draw_notes(
        target_notes,
        cfg,
        shift,
        |s| !in_region(s),
        &mut known_target,
    );
    let free: Vec<bool> = (0..plane)
        .map(|i| region[i / pitches] && known_target[plane + i] < 0.5 && known_target[i] < 0.5)
        .collect();

    // The others: all dropped 10% of the time, else each 15%; hidden in the region 30%.
    let drop_all = rng.random::<f32>() < 0.1;
    let hide_region = rng.random::<f32>() < 0.3;
    let mut roll = vec![0.0f32; 2 * plane];
    for (k, (_, notes)) in w.parts.iter().enumerate() {
        if k == target || drop_all || rng.random::<f32>() < 0.15 {
            continue;
        }
        draw_notes(
            notes,
            cfg,
            shift,
            |s| !(hide_region && in_region(s)),
            &mut roll,
        );
    }
    let known: Vec<bool> = (0..plane)
        .map(|i| !(hide_region && region[i / pitches]) || roll[plane + i] > 0.5)
        .collect();
    PartExample {
        x0,
        free,
        role: *role,
        others: OtherParts { roll, known },
    }
}

/// The network inputs, targets and times of a batch of examples.
fn batch_tensors(
    examples: &[PartExample],
    ts: &[usize],
    cfg: &Config,
    schedule: &BinomialSchedule,
    rng: &mut impl Rng,
) -> Result<(Tensor, Tensor, Tensor)> {
    let plane = cfg.steps * cfg.pitches;
    let n = examples.len();
    let x0: Vec<f32> = examples.iter().flat_map(|e| e.x0.iter().copied()).collect();
    let xt = schedule.q_sample(&x0, plane, ts, rng);
    let mut input = Vec::with_capacity(n * cfg.input_channels() * plane);
    for (i, e) in examples.iter().enumerate() {
        let r = i * 2 * plane..(i + 1) * 2 * plane;
        conditioned_input(cfg, &xt[r.clone()], &x0[r], Some(&e.free), &mut input);
        part_input(cfg, Some(&e.others), e.role, &mut input);
    }
    let dev = Device::Cpu;
    Ok((
        Tensor::from_vec(
            input,
            (n, cfg.input_channels(), cfg.steps, cfg.pitches),
            &dev,
        )?,
        Tensor::from_vec(ts.iter().map(|&t| t as f32).collect::<Vec<_>>(), n, &dev)?,
        Tensor::from_vec(x0, (n, 2, cfg.steps, cfg.pitches), &dev)?,
    ))
}

/// Mean cell density (onset, sustain) of one part of a window, averaged over every part.
pub fn part_density(windows: &[PartWindow], cfg: &Config) -> [f32; 2] {
    let plane = cfg.steps * cfg.pitches;
    let mut buf = vec![0.0f32; 2 * plane];
    let (mut on, mut parts) = ([0f64; 2], 0usize);
    for w in windows {
        for (_, notes) in &w.parts {
            buf.fill(0.0);
            draw_notes(notes, cfg, 0, |_| true, &mut buf);
            on[0] += buf[..plane].iter().map(|&v| v as f64).sum::<f64>();
            on[1] += buf[plane..].iter().map(|&v| v as f64).sum::<f64>();
            parts += 1;
        }
    }
    let cells = (parts.max(1) * plane) as f64;
    [(on[0] / cells) as f32, (on[1] / cells) as f32]
}

/// Everything a parts training run needs.
#[derive(Clone, Debug)]
pub struct PartsOptions {
    /// Model shape (`parts` is set); its prior is replaced by the data's part density.
    pub config: Config,
    pub batch: usize,
    pub weight_decay: f64,
    pub hop_bars: u32,
    pub max_shift: i32,
    /// Batches per epoch (each epoch a fresh random subset), so validation comes often.
    pub epoch_steps: usize,
    pub val_examples: usize,
    /// Start from these merged-roll weights (`model.safetensors` of a conditioned roll model of
    /// the same shape); the parts channels start at zero.
    pub init: Option<PathBuf>,
    pub data_root: PathBuf,
    pub cache_dir: PathBuf,
    pub seed: u64,
    pub run: LoopOptions,
}

impl PartsOptions {
    pub fn new(config: Config) -> Self {
        Self {
            config: Config {
                parts: true,
                conditioned: true,
                ..config
            },
            batch: 16,
            weight_decay: 0.01,
            hop_bars: 2,
            max_shift: 6,
            epoch_steps: 500,
            val_examples: 512,
            init: None,
            data_root: data::default_data_root(),
            cache_dir: data::default_cache_dir(),
            seed: 0,
            run: LoopOptions::new("parts", 1e-3, "60m"),
        }
    }
}

struct PartsTrainee {
    opts: PartsOptions,
    cfg: Config,
    schedule: BinomialSchedule,
    train: Vec<PartWindow>,
    /// Sizes of the data, per dataset, for the card.
    sources: Vec<(String, usize)>,
    val: Vec<PartExample>,
    val_ts: Vec<usize>,
    varmap: VarMap,
    net: RollUnet,
    opt: AdamW,
    order: EpochOrder,
}

impl PartsTrainee {
    /// The trainee for `train` windows, validated on examples drawn once from `val` windows
    /// (fixed seed); the prior becomes the training parts' density.
    fn new(
        opts: &PartsOptions,
        mut cfg: Config,
        train_windows: Vec<PartWindow>,
        mut val_windows: Vec<PartWindow>,
        sources: Vec<(String, usize)>,
    ) -> Result<Self> {
        cfg.prior = part_density(&train_windows, &cfg);
        let mut rng = ChaCha8Rng::seed_from_u64(0x7A11);
        val_windows.shuffle(&mut rng);
        let val: Vec<PartExample> = val_windows
            .iter()
            .take(opts.val_examples)
            .map(|w| draw_example(w, &cfg, 0, &mut rng))
            .collect();
        let val_ts: Vec<usize> = (0..val.len())
            .map(|i| 1 + i * cfg.diffusion_steps / val.len().max(1))
            .collect();
        eprintln!(
            "parts: {} train windows ({sources:?}), {} validation examples, prior {:?}",
            train_windows.len(),
            val.len(),
            cfg.prior
        );
        let (varmap, net, opt) = new_model("parts", opts.run.lr, opts.weight_decay, |vb| {
            RollUnet::new(&cfg, vb)
        })?;
        if let Some(init) = &opts.init {
            warm_start(&varmap, init)?;
        }
        Ok(PartsTrainee {
            opts: opts.clone(),
            schedule: BinomialSchedule::new(cfg.diffusion_steps, cfg.prior),
            cfg,
            train: train_windows,
            sources,
            val,
            val_ts,
            varmap,
            net,
            opt,
            order: EpochOrder::default(),
        })
    }
}

impl Trainee for PartsTrainee {
    fn record(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.cfg,
            "train_windows": self.train.len(),
            "val_examples": self.val.len(),
            "batch": self.opts.batch,
        })
    }

    fn steps_per_epoch(&self) -> usize {
        steps_per_epoch(
            self.train.len(),
            self.opts.batch,
            Some(self.opts.epoch_steps),
        )
    }

    fn step(&mut self, epoch: usize, batch: usize, step: usize, lr: f64) -> Result<Measured> {
        let b = self.opts.batch;
        let idx = self
            .order
            .batch(self.train.len(), self.opts.seed, epoch, batch, b)?;
        let mut rng = step_rng(self.opts.seed, step);
        let examples: Vec<PartExample> = idx
            .iter()
            .map(|&i| draw_example(&self.train[i], &self.cfg, self.opts.max_shift, &mut rng))
            .collect();
        let ts: Vec<usize> = (0..b)
            .map(|_| rng.random_range(1..=self.cfg.diffusion_steps))
            .collect();
        let (input, t, x0) = batch_tensors(&examples, &ts, &self.cfg, &self.schedule, &mut rng)?;
        self.opt.lr = lr;
        train_step(&self.net, &mut self.opt, &input, &t, &x0).map(Into::into)
    }

    fn validate(&mut self) -> Result<Measured> {
        let mut rng = ChaCha8Rng::seed_from_u64(0x005E_ED0F);
        let b = self.opts.batch.max(1);
        let mut total = 0.0;
        for (chunk, ts) in self.val.chunks(b).zip(self.val_ts.chunks(b)) {
            let (input, t, x0) = batch_tensors(chunk, ts, &self.cfg, &self.schedule, &mut rng)?;
            let logits = crate::nn::in_pool(|| self.net.forward(&input, &t))?;
            let loss = super::roll::bce_with_logits(&logits, &x0)?.to_scalar::<f32>()? as f64;
            total += loss * chunk.len() as f64;
        }
        Ok((total / self.val.len().max(1) as f64).into())
    }

    fn weights_and_optimizer(&mut self) -> (&mut VarMap, &mut AdamW) {
        (&mut self.varmap, &mut self.opt)
    }

    fn curve_names(&self) -> (&str, &str) {
        (
            "Parts model: BCE of the target part's x̂_0",
            "validation (POP909 + Nottingham valid, task-like masks)",
        )
    }

    fn card(&self, state: &LoopState, opts: &LoopOptions) -> String {
        let cfg = &self.cfg;
        let data: Vec<String> = self
            .sources
            .iter()
            .map(|(d, n)| format!("{d} {n} windows"))
            .collect();
        let val_rows: String = state
            .val_loss
            .iter()
            .map(|&(step, epoch, l)| format!("| {epoch} | {step} | {l:.5} |\n"))
            .collect();
        format!(
            "# Parts model (roll diffusion that knows parts)\n\n\
             Binomial diffusion on two-channel piano rolls (Atassi 2023) that generates one part\n\
             of a clip — melody, counter-melody, accompaniment or bass — given that part's known\n\
             cells and the other parts apart from it. Network: `engine/src/models/roll.rs` with\n\
             `parts`; training: `engine/src/train/parts.rs`.\n\n\
             - Status: {status}\n\
             - Data (train split): {data}; 4-bar 4/4 windows, hop {hop} bars, transposed within\n  \
               ±{shift} semitones. POP909 MELODY → melody, BRIDGE → counter-melody, PIANO →\n  \
               accompaniment and its lowest line below C4 → bass; Nottingham melody and chords.\n\
             - Examples: a target part, a region of it (20% all, 40% a run of bars, 20% the bars\n  \
               to the end, 20% short spans), the other parts heard (all dropped 10%, each 15%),\n  \
               hidden in the region 30%.\n\
             {shape}\
             - Training: AdamW lr {lr} (warm-up {warm}, cosine to lr/10), batch {batch},\n  \
               {steps_done} steps in {wall} on a 2-core CPU{init}, seed {seed}.\n\
             - Best validation loss: {best:.5}\n\n\
             | epoch | step | validation loss |\n|---|---|---|\n{val_rows}\n\
             Loss curve: `loss.png`. Reproduce: `cargo xtask train parts`.\n",
            status = if state.finished {
                "finished"
            } else {
                "training in progress"
            },
            data = data.join(", "),
            hop = self.opts.hop_bars,
            shift = self.opts.max_shift,
            shape = super::roll::shape_lines(cfg, "one part's cells"),
            lr = opts.lr,
            warm = opts.warmup,
            batch = self.opts.batch,
            steps_done = state.step,
            wall = format_duration(Duration::from_secs_f64(state.elapsed_secs)),
            init = if self.opts.init.is_some() {
                ", started from the merged-roll model's weights"
            } else {
                ""
            },
            seed = self.opts.seed,
            best = state.best_val.unwrap_or(f64::NAN),
        )
    }
}

/// Copy the merged-roll weights in `path` into `varmap` (same names): equal shapes are copied;
/// the first layer takes the old input channels and keeps the parts channels at zero.
fn warm_start(varmap: &VarMap, path: &std::path::Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    // In f32 whatever the file stores (the shipped weights may be f16).
    let old = crate::nn::weights::load_f32(&bytes, &path.display().to_string())?;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("varmap lock poisoned"))?;
    let mut copied = 0;
    for (name, var) in data.iter() {
        let Some(w) = old.get(name) else { continue };
        if w.dims() == var.dims() {
            var.set(w)?;
            copied += 1;
        } else if name == "conv_in.weight" {
            // [c0, old inputs, 3, 3] into [c0, new inputs, 3, 3].
            let (c0, cin, kh, kw) = var.dims4()?;
            let old_in = w.dim(1)?;
            let zeros = Tensor::zeros((c0, cin - old_in, kh, kw), DType::F32, &Device::Cpu)?;
            var.set(&Tensor::cat(&[w, &zeros], 1)?)?;
            copied += 1;
        }
    }
    eprintln!(
        "parts: {copied} of {} tensors from {}",
        data.len(),
        path.display()
    );
    Ok(())
}

/// Train (or resume) the parts model.
pub fn train(opts: &PartsOptions) -> Result<LoopState> {
    let cfg = opts.config.clone();
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("parts model config: {e}"))?;
    let load = |d: Dataset, s: Split| data::load_cached(d, s, &opts.data_root, &opts.cache_dir);
    let bars = (cfg.steps / 16) as u32;
    let mut train_windows = Vec::new();
    let mut val_windows = Vec::new();
    let mut sources = Vec::new();
    for d in [Dataset::Pop909, Dataset::Nottingham] {
        let t = part_windows(&load(d, Split::Train)?, &cfg, opts.hop_bars)?;
        sources.push((d.name(), t.len()));
        train_windows.extend(t);
        val_windows.extend(part_windows(&load(d, Split::Valid)?, &cfg, bars)?);
    }
    if train_windows.is_empty() || val_windows.is_empty() {
        bail!(
            "no 4/4 windows in POP909 or Nottingham under {}",
            opts.data_root.display()
        );
    }
    let mut trainee = PartsTrainee::new(opts, cfg, train_windows, val_windows, sources)?;
    run(&mut trainee, &opts.run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> PartWindow {
        PartWindow {
            parts: vec![
                (
                    PartRole::Melody,
                    vec![(0, 72, 4), (16, 74, 4), (32, 76, 8), (48, 77, 4)],
                ),
                (
                    PartRole::Accompaniment,
                    vec![(0, 60, 16), (0, 64, 16), (32, 62, 16)],
                ),
                (PartRole::Bass, vec![(0, 40, 16), (32, 43, 16)]),
            ],
        }
    }

    #[test]
    fn examples_hold_the_target_part_and_hear_the_others_apart() {
        let cfg = Config::fast_parts();
        let plane = cfg.steps * cfg.pitches;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut roles = std::collections::HashSet::new();
        for _ in 0..200 {
            let e = draw_example(&window(), &cfg, 0, &mut rng);
            roles.insert(e.role);
            let w = window();
            let target = &w.parts.iter().find(|p| p.0 == e.role).unwrap().1;
            // The clean roll is exactly the target part's onsets.
            let onsets = e.x0[..plane].iter().filter(|&&v| v > 0.5).count();
            assert_eq!(onsets, target.len());
            // Known cells of the target never hold its other parts' notes, and the others'
            // roll never holds the target's own notes.
            for &(s, p, _) in target {
                let i = s as usize * cfg.pitches + (p - cfg.pitch_lo) as usize;
                let other_has = window()
                    .parts
                    .iter()
                    .filter(|q| q.0 != e.role)
                    .any(|q| q.1.iter().any(|n| n.0 == s && n.1 == p));
                if !other_has {
                    assert_eq!(e.others.roll[i], 0.0);
                }
            }
            assert!(e.free.iter().any(|&f| f));
        }
        assert_eq!(roles.len(), 3);
    }

    #[test]
    fn a_tiny_run_resumes_and_exports_weights_that_load() {
        let cfg = Config {
            channel_mults: vec![1, 2],
            ..Config::fast_parts().narrow()
        };
        let mut opts = PartsOptions::new(cfg.clone());
        opts.batch = 2;
        opts.val_examples = 3;
        let (a, b) = crate::train::run_loop::testing::runs_and_resumes(
            "parts",
            || {
                let sources = vec![("test".to_string(), 4)];
                PartsTrainee::new(
                    &opts,
                    cfg.clone(),
                    vec![window(); 4],
                    vec![window(); 3],
                    sources,
                )
                .unwrap()
            },
            |dir| {
                let model = crate::diffusion::model::RollModel::load_dir(dir)?;
                anyhow::ensure!(model.config().parts, "exported without parts");
                Ok(())
            },
        );
        assert!(b.val_loss.len() > a.val_loss.len());
    }

    #[test]
    fn the_input_has_every_channel_of_a_parts_model() {
        let cfg = Config::fast_parts();
        let schedule = BinomialSchedule::new(cfg.diffusion_steps, [0.02, 0.05]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let e = draw_example(&window(), &cfg, 0, &mut rng);
        let (input, t, x0) =
            batch_tensors(&[e.clone(), e], &[10, 90], &cfg, &schedule, &mut rng).unwrap();
        assert_eq!(input.dims(), &[2, 12, cfg.steps, cfg.pitches]);
        assert_eq!(t.dims(), &[2]);
        assert_eq!(x0.dims(), &[2, 2, cfg.steps, cfg.pitches]);
    }
}
