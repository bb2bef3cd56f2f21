//! The band model loaded for use: the live [`BandPlayer`] (push the bar just played, get the
//! next bar of the tracks the model plays) and the offline tasks continue, fill and redo.

use std::path::{Path, PathBuf};

use crate::nn::gru::GruState;
use anyhow::{Result, anyhow, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::bars::{BarNote, DecodeOptions, bar_tracks, notes_from_probs, render};
use crate::models::band::{BandVae, Config};
use crate::music::{Clip, Key, Note, Track, TrackRole};
use crate::nn::weights::{ModelFiles, debug_loaded_model, model_loaders};

/// A loaded band model.
pub struct BandModel {
    net: BandVae,
    /// Where the weights came from (for messages).
    pub source: String,
}

debug_loaded_model!(BandModel);

impl BandModel {
    /// The shipped weights' folder: `assets/band` of the source tree.
    pub fn shipped_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/band")
    }

    /// The shipped model (`assets/band`); a clear error until it has been trained.
    pub fn shipped() -> Result<Self> {
        Self::load_dir(&Self::shipped_dir())
    }

    model_loaders! {
        load_dir, "band model", "band",
        "train one with `cargo xtask train band`"
    }

    /// A model from its `config.json` and `model.safetensors`.
    pub fn from_files(files: &ModelFiles) -> Result<Self> {
        let cfg: Config = files.config(Config::validate)?;
        Ok(Self {
            net: files.build(|vb| BandVae::new(&cfg, vb))?,
            source: files.source.clone(),
        })
    }

    /// Untrained weights (for tests of shapes and bounds).
    pub fn random(cfg: &Config, seed: u64) -> Result<Self> {
        let device = Device::Cpu;
        device.set_seed(seed).ok();
        let varmap = candle_nn::VarMap::new();
        let net = BandVae::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
        Ok(Self {
            net,
            source: "untrained".into(),
        })
    }

    pub fn config(&self) -> &Config {
        self.net.config()
    }

    pub fn net(&self) -> &BandVae {
        &self.net
    }

    /// Fold one bar (notes per model track, `None` = not heard) into `state`; returns the new
    /// state and the next bar's probabilities per track (`[2, steps, pitches]` flattened).
    pub fn step(
        &self,
        bar: &[Option<Vec<BarNote>>],
        state: &GruState,
    ) -> Result<(GruState, Vec<Vec<f32>>)> {
        let cfg = self.config();
        // The inputs go where the weights are; the probabilities come back to the CPU.
        let device = self.net.device();
        let mut rolls = Vec::with_capacity(cfg.tracks.len());
        let mut present = Vec::with_capacity(cfg.tracks.len());
        for (k, spec) in cfg.tracks.iter().enumerate() {
            let mut roll = vec![0.0f32; cfg.bar_cells(k)];
            if let Some(Some(notes)) = bar.get(k) {
                render(notes, spec, cfg.steps, 0, &mut roll);
                present.push(1.0f32);
            } else {
                present.push(0.0);
            }
            rolls.push(Tensor::from_vec(roll, (1, cfg.bar_cells(k)), device)?);
        }
        let present = Tensor::from_vec(present, (1, cfg.tracks.len()), device)?;
        let z = self.net.posterior(&rolls, &present)?.sample(None)?; // [1, latent]
        let state = self.net.step(&z, state)?;
        let probs = self.predict(&state)?;
        Ok((state, probs))
    }

    /// The next bar's probabilities per track from a state (`[2, steps, pitches]` flattened).
    pub fn predict(&self, state: &GruState) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .net
            .decode(state)?
            .iter()
            .map(|l| candle_nn::ops::sigmoid(l)?.flatten_all()?.to_vec1::<f32>())
            .collect::<candle_core::Result<Vec<_>>>()?)
    }

    pub fn initial_state(&self) -> Result<GruState> {
        Ok(self.net.initial_state(1)?)
    }
}

/// How the player and the tasks turn probabilities into notes.
#[derive(Clone, Debug)]
pub struct PlayOptions {
    /// Odds multiplier of every onset (1: as trained; default [`DEFAULT_DENSITY`]).
    pub density: f32,
    /// Keep the notes in this key.
    pub key: Option<Key>,
    /// At most this many notes per bar and track.
    pub max_notes: usize,
}

/// The decoding density of the shipped model, chosen on the Nottingham valid split by the live
/// player's next-bar F1 (`bandmate band eval`, see `assets/band/CARD.md`).
pub const DEFAULT_DENSITY: f32 = 3.0;

impl Default for PlayOptions {
    fn default() -> Self {
        Self {
            density: DEFAULT_DENSITY,
            key: None,
            max_notes: 24,
        }
    }
}

impl PlayOptions {
    fn decode(&self) -> DecodeOptions {
        DecodeOptions {
            density: self.density,
            key: self.key,
            max_notes: self.max_notes,
        }
    }
}

/// The live band player: push the bar just played (any subset of tracks), get the next bar of
/// the tracks the model plays. What the model played itself is heard again in the next bar
/// unless the musician played that track.
pub struct BandPlayer<'m> {
    model: &'m BandModel,
    /// Model tracks the player answers with (default: every track that is not the melody).
    plays: Vec<usize>,
    pub options: PlayOptions,
    state: GruState,
    /// The notes the player answered last, per model track.
    answered: Vec<Option<Vec<BarNote>>>,
    /// The bar number pushed last (for [`BandPlayer::next_bar_at`]).
    last_bar: Option<i64>,
}

impl<'m> BandPlayer<'m> {
    pub fn new(model: &'m BandModel) -> Result<Self> {
        let cfg = model.config();
        let plays: Vec<usize> = (0..cfg.tracks.len())
            .filter(|&k| cfg.tracks[k].role != TrackRole::Melody)
            .collect();
        Ok(Self {
            model,
            plays,
            options: PlayOptions::default(),
            state: model.initial_state()?,
            answered: vec![None; cfg.tracks.len()],
            last_bar: None,
        })
    }

    /// Let the player answer with these roles (roles the model has no track for are an error).
    pub fn set_roles(&mut self, roles: &[TrackRole]) -> Result<()> {
        let cfg = self.model.config();
        let mut plays = Vec::new();
        for &r in roles {
            let k = cfg
                .track_of(r)
                .ok_or_else(|| anyhow!("the band model has no {} track", r.name()))?;
            if !plays.contains(&k) {
                plays.push(k);
            }
        }
        self.plays = plays;
        Ok(())
    }

    /// Forget the bars so far (transport jump or stop).
    pub fn reset(&mut self) -> Result<()> {
        self.state = self.model.initial_state()?;
        self.answered = vec![None; self.model.config().tracks.len()];
        self.last_bar = None;
        Ok(())
    }

    /// Like [`BandPlayer::next_bar`] for bar number `bar` of the song: the player starts over
    /// when `bar` does not follow the bar pushed before (a jump, backwards or forwards).
    pub fn next_bar_at(&mut self, bar: i64, played: &Clip) -> Result<Clip> {
        if self.last_bar.is_some_and(|b| b.checked_add(1) != Some(bar)) {
            self.reset()?;
        }
        let out = self.next_bar(played)?;
        self.last_bar = Some(bar);
        Ok(out)
    }

    /// `played`: the bar just played (a one-bar clip; its first bar is read, notes of tracks
    /// the model does not know are ignored, at most 256 notes per track). Returns the next
    /// bar as a one-bar clip with one track per track the model plays.
    pub fn next_bar(&mut self, played: &Clip) -> Result<Clip> {
        let cfg = self.model.config();
        let mut heard = bar_tracks(&first_bar(played), cfg);
        for &k in &self.plays {
            if heard[k].is_none() {
                heard[k] = self.answered[k].clone();
            }
        }
        let (state, probs) = self.model.step(&heard, &self.state)?;
        self.state = state;
        let steps = played.steps_per_bar().clamp(1, cfg.steps as u32);
        let mut out = Clip::new(1);
        out.tracks.clear();
        out.time_signature = played.time_signature;
        out.tempo = played.tempo;
        let decode = self.options.decode();
        for &k in &self.plays {
            let spec = &cfg.tracks[k];
            let track = out.add_track(Track::new(spec.name.clone(), spec.role, 1 + k as u8));
            let notes: Vec<Note> = notes_from_probs(&probs[k], spec, cfg.steps, &decode, track)
                .into_iter()
                .filter(|n| n.start < steps)
                .map(|n| Note {
                    length: n.length.min(steps - n.start),
                    ..n
                })
                .collect();
            self.answered[k] = Some(
                notes
                    .iter()
                    .map(|n| (n.start as u8, n.pitch, n.length as u8))
                    .collect(),
            );
            out.notes.extend(notes);
        }
        Ok(out)
    }
}

/// The first bar of `clip` (a bad or empty clip gives an empty bar).
fn first_bar(clip: &Clip) -> Clip {
    if clip.bars <= 1 {
        clip.clone()
    } else {
        clip.window(0, 1)
    }
}

/// The model's tracks of `clip` bar by bar: notes per model track (`None`: the clip has no
/// such track). Errors for meters whose bars are not the model's.
fn clip_bars(model: &BandModel, clip: &Clip) -> Result<Vec<Vec<Option<Vec<BarNote>>>>> {
    let cfg = model.config();
    if clip.steps_per_bar() as usize != cfg.steps || !clip.meter_changes.is_empty() {
        bail!(
            "the band model plays bars of {} steps (4/4); this clip has {}/{}{}",
            cfg.steps,
            clip.time_signature.numerator,
            clip.time_signature.denominator,
            if clip.meter_changes.is_empty() {
                ""
            } else {
                " with meter changes"
            }
        );
    }
    if clip.bars > 4096 {
        bail!("clip of {} bars: at most 4096", clip.bars);
    }
    Ok((0..clip.bars)
        .map(|b| bar_tracks(&clip.window(b, 1), cfg))
        .collect())
}

/// A clip with one track per model track and the given bars.
fn clip_from_bars(model: &BandModel, template: &Clip, bars: &[Vec<Option<Vec<BarNote>>>]) -> Clip {
    let cfg = model.config();
    let mut out = Clip::new(bars.len() as u32);
    out.tracks.clear();
    out.tempo = template.tempo;
    out.time_signature = template.time_signature;
    for (k, spec) in cfg.tracks.iter().enumerate() {
        let channel = template
            .track_with_role(spec.role)
            .and_then(|t| template.tracks.get(t as usize))
            .map_or(k as u8, |t| t.channel);
        out.add_track(Track::new(spec.name.clone(), spec.role, channel));
    }
    for (b, bar) in bars.iter().enumerate() {
        for (k, notes) in bar.iter().enumerate() {
            for &(s, p, l) in notes.iter().flatten() {
                out.notes.push(Note::new(
                    b as u32 * cfg.steps as u32 + s as u32,
                    p,
                    l as u32,
                    90,
                    k as u16,
                ));
            }
        }
    }
    out.sort_notes();
    out
}

fn to_bar_notes(notes: &[Note]) -> Vec<BarNote> {
    notes
        .iter()
        .map(|n| (n.start as u8, n.pitch, n.length as u8))
        .collect()
}

/// Decode every track of one predicted bar.
fn decode_all(model: &BandModel, probs: &[Vec<f32>], opts: &PlayOptions) -> Vec<Vec<BarNote>> {
    let cfg = model.config();
    cfg.tracks
        .iter()
        .enumerate()
        .map(|(k, spec)| {
            to_bar_notes(&notes_from_probs(
                &probs[k],
                spec,
                cfg.steps,
                &opts.decode(),
                k as u16,
            ))
        })
        .collect()
}

/// The seed's generate: the clip's bars, then `bars` more bars of every track, each predicted
/// from all bars before it (the model hears its own bars).
pub fn continue_clip(
    model: &BandModel,
    clip: &Clip,
    bars: u32,
    opts: &PlayOptions,
) -> Result<Clip> {
    if bars == 0 || bars > 1024 {
        bail!("--bars {bars}: 1 to 1024 bars");
    }
    let mut all = clip_bars(model, clip)?;
    let mut state = model.initial_state()?;
    let mut next = None;
    for bar in &all {
        let (s, probs) = model.step(bar, &state)?;
        state = s;
        next = Some(probs);
    }
    let mut next = match next {
        Some(p) => p,
        None => model.predict(&state)?,
    };
    for _ in 0..bars {
        let bar: Vec<Option<Vec<BarNote>>> = decode_all(model, &next, opts)
            .into_iter()
            .map(Some)
            .collect();
        let (s, probs) = model.step(&bar, &state)?;
        state = s;
        next = probs;
        all.push(bar);
    }
    Ok(clip_from_bars(model, clip, &all))
}

/// The seed's fill: regenerate model track `track` of every bar from the bars before it (the
/// other tracks as they are, the regenerated track as generated so far).
pub fn fill_track(
    model: &BandModel,
    clip: &Clip,
    track: usize,
    opts: &PlayOptions,
) -> Result<Clip> {
    let cfg = model.config();
    if track >= cfg.tracks.len() {
        bail!(
            "track {track}: the band model has tracks 0–{} ({})",
            cfg.tracks.len() - 1,
            cfg.tracks
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut all = clip_bars(model, clip)?;
    let mut state = model.initial_state()?;
    let mut probs = model.predict(&state)?;
    // The first bar is predicted from nothing heard: the prior's bar.
    for bar in all.iter_mut() {
        let notes = to_bar_notes(&notes_from_probs(
            &probs[track],
            &cfg.tracks[track],
            cfg.steps,
            &opts.decode(),
            track as u16,
        ));
        bar[track] = Some(notes);
        let (s, p) = model.step(bar, &state)?;
        state = s;
        probs = p;
    }
    Ok(clip_from_bars(model, clip, &all))
}

/// The seed's redo: fill every track in turn (the last track first, the melody last).
pub fn redo(model: &BandModel, clip: &Clip, opts: &PlayOptions) -> Result<Clip> {
    let mut out = clip.clone();
    for k in (0..model.config().tracks.len()).rev() {
        out = fill_track(model, &out, k, opts)?;
    }
    Ok(out)
}
