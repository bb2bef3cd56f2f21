//! Recurrent multimodal VAE with a product of experts over tracks (after Vignal, "Generating new
//! music with deep probabilistic models"): the band player's model.
//!
//! Every bar of every track is a two-channel roll `[2, steps, pitches]` (channel 0 onsets,
//! 1 sustain) in that track's own pitch window. Per bar:
//! 1. each present track's encoder gives a Gaussian expert q_k(z | bar_k);
//! 2. the product of the present experts and the prior expert N(0, I) is the posterior over the
//!    bar's latent z (any subset of tracks may be missing; none present gives the prior);
//! 3. a GRU runs over the bars' z;
//! 4. from its state after bar t, each track's decoder gives the logits of bar t + 1.

use crate::nn::gru::{GruCell, GruState};
use crate::nn::sparse_linear::sparse_input_linear;
use crate::nn::{Linear, linear};
use candle_core::{D, Result, Tensor, bail};
use candle_nn::{Module, VarBuilder};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::music::TrackRole;

/// One track the model hears and plays, with its pitch window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackSpec {
    pub name: String,
    pub role: TrackRole,
    /// Lowest MIDI pitch of the window.
    pub pitch_lo: u8,
    /// Number of pitches in the window.
    pub pitches: usize,
}

impl TrackSpec {
    /// Whether `pitch` lies in the window.
    pub fn holds(&self, pitch: u8) -> bool {
        pitch >= self.pitch_lo && (pitch as usize) < self.pitch_lo as usize + self.pitches
    }
}

/// Shapes of the network (stored as `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Grid steps of one bar (16: 4/4 in 16th notes).
    pub steps: usize,
    pub tracks: Vec<TrackSpec>,
    /// Hidden units of every bar encoder.
    pub encoder_hidden: usize,
    /// Size of the latent z of a bar.
    pub latent: usize,
    /// Hidden units of the GRU over bars.
    pub rnn_hidden: usize,
    /// Hidden units of every bar decoder.
    pub decoder_hidden: usize,
}

super::presets!(Config { "small" => small, "tiny" => tiny });

impl Config {
    /// Nottingham (melody + chords). Melody 48–95 and accompaniment 36–83 hold all but a few
    /// hundredths of a percent of the train split's notes (see the training log).
    pub fn small() -> Self {
        Self {
            steps: 16,
            tracks: vec![
                TrackSpec {
                    name: "melody".into(),
                    role: TrackRole::Melody,
                    pitch_lo: 48,
                    pitches: 48,
                },
                TrackSpec {
                    name: "accompaniment".into(),
                    role: TrackRole::Accompaniment,
                    pitch_lo: 36,
                    pitches: 48,
                },
            ],
            encoder_hidden: 256,
            latent: 32,
            rnn_hidden: 256,
            decoder_hidden: 256,
        }
    }

    /// For tests and smoke runs.
    pub fn tiny() -> Self {
        Self {
            encoder_hidden: 32,
            latent: 8,
            rnn_hidden: 32,
            decoder_hidden: 32,
            ..Self::small()
        }
    }

    /// Cells of one bar of `track`: 2 × steps × pitches.
    pub fn bar_cells(&self, track: usize) -> usize {
        2 * self.steps * self.tracks[track].pitches
    }

    /// The track index that plays `role`, if any.
    pub fn track_of(&self, role: TrackRole) -> Option<usize> {
        self.tracks.iter().position(|t| t.role == role)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.steps == 0 || self.steps > 64 {
            return Err(format!("steps {} must be 1–64", self.steps));
        }
        if self.tracks.is_empty() {
            return Err("a band model needs at least one track".into());
        }
        for t in &self.tracks {
            if t.pitches == 0 || t.pitch_lo as usize + t.pitches > 128 {
                return Err(format!(
                    "track {}: pitches {}+{} leave 0–127",
                    t.name, t.pitch_lo, t.pitches
                ));
            }
        }
        if [
            self.encoder_hidden,
            self.latent,
            self.rnn_hidden,
            self.decoder_hidden,
        ]
        .contains(&0)
        {
            return Err("layer sizes must be positive".into());
        }
        Ok(())
    }
}

/// [`BandVae::forward`] gives a pool thread a part of the batch only when each part holds at
/// least this many sequences (a training step's parts, already one per thread, stay whole).
const PART_SEQUENCES: usize = 16;

/// A track's bar encoder: roll → Gaussian expert (mean, log-variance).
struct BarEncoder {
    hidden: Linear,
    out: Linear,
    latent: usize,
}

impl BarEncoder {
    fn new(cells: usize, cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            hidden: linear(cells, cfg.encoder_hidden, vb.pp("hidden"))?,
            out: linear(cfg.encoder_hidden, 2 * cfg.latent, vb.pp("out"))?,
            latent: cfg.latent,
        })
    }

    /// `[n, cells]` → (mean, log-variance), each `[n, latent]`.
    fn forward(&self, bars: &Tensor) -> Result<(Tensor, Tensor)> {
        // A bar's roll has a few dozen of its cells on: only their weight rows are added.
        let h = match self.hidden.bias() {
            Some(bias) => sparse_input_linear(bars, self.hidden.weight(), bias)?,
            None => self.hidden.forward(bars)?,
        }
        .relu()?;
        let out = self.out.forward(&h)?; // [n, 2 * latent]
        let mean = out.narrow(1, 0, self.latent)?;
        // Bounded so that the experts' precisions stay finite.
        let logvar = out
            .narrow(1, self.latent, self.latent)?
            .clamp(-8f32, 8f32)?;
        Ok((mean, logvar))
    }
}

/// A track's bar decoder: GRU state → logits of the next bar.
struct BarDecoder {
    hidden: Linear,
    out: Linear,
}

impl BarDecoder {
    fn new(cells: usize, cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            hidden: linear(cfg.rnn_hidden, cfg.decoder_hidden, vb.pp("hidden"))?,
            out: linear(cfg.decoder_hidden, cells, vb.pp("out"))?,
        })
    }

    /// `[n, rnn_hidden]` → `[n, cells]` logits.
    fn forward(&self, h: &Tensor) -> Result<Tensor> {
        self.out.forward(&self.hidden.forward(h)?.relu()?)
    }
}

/// The posterior of a bar's latent: product of the present experts and the prior.
#[derive(Clone, Debug)]
pub struct Posterior {
    /// `[n, latent]`
    pub mean: Tensor,
    /// `[n, latent]`
    pub logvar: Tensor,
}

impl Posterior {
    /// KL(posterior ‖ N(0, I)) summed over the latent: `[n]`.
    pub fn kl(&self) -> Result<Tensor> {
        let var = self.logvar.exp()?;
        ((self.mean.sqr()? + var)? - 1.0 - &self.logvar)?.sum(D::Minus1)? * 0.5
    }

    /// mean + σ·ε for `eps` of the same shape (`None`: the mean).
    pub fn sample(&self, eps: Option<&Tensor>) -> Result<Tensor> {
        match eps {
            Some(e) => &self.mean + (self.logvar.affine(0.5, 0.0)?.exp()? * e)?,
            None => Ok(self.mean.clone()),
        }
    }
}

/// The recurrent multimodal VAE. Weight names: `encoders.{k}.{hidden,out}`, `rnn.*` (PyTorch's
/// and candle's GRU: `weight_ih_l0`, …), `decoders.{k}.{hidden,out}`.
pub struct BandVae {
    cfg: Config,
    encoders: Vec<BarEncoder>,
    rnn: GruCell,
    decoders: Vec<BarDecoder>,
}

impl BandVae {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        if let Err(e) = cfg.validate() {
            bail!("band model config: {e}");
        }
        let mut encoders = Vec::new();
        let mut decoders = Vec::new();
        for k in 0..cfg.tracks.len() {
            let cells = cfg.bar_cells(k);
            encoders.push(BarEncoder::new(cells, cfg, vb.pp(format!("encoders.{k}")))?);
            decoders.push(BarDecoder::new(cells, cfg, vb.pp(format!("decoders.{k}")))?);
        }
        let rnn = GruCell::new(cfg.latent, cfg.rnn_hidden, &vb.pp("rnn"))?;
        Ok(Self {
            cfg: cfg.clone(),
            encoders,
            rnn,
            decoders,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The device the weights are on, where the inputs go.
    pub fn device(&self) -> &candle_core::Device {
        self.rnn.device()
    }

    /// Product of experts. `bars[k]`: `[n, cells_k]` rolls of track k; `present`: `[n, tracks]`
    /// with 1 where track k was heard, 0 where it is missing (its expert is left out).
    pub fn posterior(&self, bars: &[Tensor], present: &Tensor) -> Result<Posterior> {
        if bars.len() != self.encoders.len() {
            bail!(
                "{} tracks given, the model has {}",
                bars.len(),
                self.encoders.len()
            );
        }
        // The prior expert N(0, I): precision 1, mean 0.
        let mut precision_sum: Option<Tensor> = None;
        let mut weighted_mean: Option<Tensor> = None;
        for (k, (enc, bar)) in self.encoders.iter().zip(bars).enumerate() {
            let (mean, logvar) = enc.forward(bar)?; // [n, latent]
            let mask = present.narrow(1, k, 1)?; // [n, 1]
            let precision = logvar.neg()?.exp()?.broadcast_mul(&mask)?;
            let pm = (&precision * &mean)?;
            precision_sum = Some(match precision_sum {
                None => precision,
                Some(s) => (s + precision)?,
            });
            weighted_mean = Some(match weighted_mean {
                None => pm,
                Some(s) => (s + pm)?,
            });
        }
        let total = (precision_sum.expect("at least one track") + 1.0)?; // [n, latent]
        let mean = (weighted_mean.expect("at least one track") / &total)?;
        let logvar = total.log()?.neg()?;
        Ok(Posterior { mean, logvar })
    }

    /// Training forward over sequences. `bars[k]`: `[batch, seq, cells_k]`; `present`:
    /// `[batch, seq, tracks]`; `eps`: `[batch, seq, latent]` noise (`None`: posterior means).
    /// Returns the next-bar logits per track (`[batch, seq, cells_k]`, position t predicts bar
    /// t + 1) and the KL of every bar's posterior (`[batch, seq]`).
    ///
    /// A batch big enough to share is cut into one part of whole sequences per pool thread
    /// ([`crate::nn::pool_parts`]), each run through the network alone, and the outputs joined:
    /// every product then stays on one thread (no hand-over between the threads at each layer,
    /// and a part's GRU rows fit the few-row kernel).
    pub fn forward(
        &self,
        bars: &[Tensor],
        present: &Tensor,
        eps: Option<&Tensor>,
    ) -> Result<(Vec<Tensor>, Tensor)> {
        let batch = present.dim(0)?;
        let (ranges, _) = crate::nn::pool_parts(batch, PART_SEQUENCES);
        if ranges.len() < 2 {
            return self.forward_whole(bars, present, eps);
        }
        // Inside `with_candle_ops`, the pool threads take the candle ops too.
        let candle_ops = crate::nn::cpu::storage::candle_ops_only();
        let parts: Vec<(Vec<Tensor>, Tensor)> = ranges
            .into_par_iter()
            .map(|r| {
                let (start, len) = (r.start, r.len());
                let bars: Vec<Tensor> = bars
                    .iter()
                    .map(|b| b.narrow(0, start, len))
                    .collect::<Result<_>>()?;
                let eps = eps.map(|e| e.narrow(0, start, len)).transpose()?;
                crate::nn::cpu::storage::keep_candle_ops(candle_ops, || {
                    self.forward_whole(&bars, &present.narrow(0, start, len)?, eps.as_ref())
                })
            })
            .collect::<Result<_>>()?;
        let logits = (0..self.decoders.len())
            .map(|k| Tensor::cat(&parts.iter().map(|p| &p.0[k]).collect::<Vec<_>>(), 0))
            .collect::<Result<_>>()?;
        let kl = Tensor::cat(&parts.iter().map(|p| &p.1).collect::<Vec<_>>(), 0)?;
        Ok((logits, kl))
    }

    /// [`BandVae::forward`] on the whole batch at once.
    fn forward_whole(
        &self,
        bars: &[Tensor],
        present: &Tensor,
        eps: Option<&Tensor>,
    ) -> Result<(Vec<Tensor>, Tensor)> {
        let (batch, seq, tracks) = present.dims3()?;
        let flat: Vec<Tensor> = bars
            .iter()
            .map(|b| {
                let cells = b.dim(2)?;
                b.reshape((batch * seq, cells))
            })
            .collect::<Result<_>>()?;
        let post = self.posterior(&flat, &present.reshape((batch * seq, tracks))?)?;
        let eps = eps
            .map(|e| e.reshape((batch * seq, self.cfg.latent)))
            .transpose()?;
        let z = post
            .sample(eps.as_ref())?
            .reshape((batch, seq, self.cfg.latent))?
            .transpose(0, 1)?
            .contiguous()?; // [seq, batch, latent]
        let h = self.rnn.sequence(&z, &self.rnn.zero_state(batch)?)?; // [seq, batch, rnn_hidden]
        let h = h
            .transpose(0, 1)?
            .reshape((batch * seq, self.cfg.rnn_hidden))?;
        let logits = self
            .decoders
            .iter()
            .map(|d| {
                let out = d.forward(&h)?;
                let cells = out.dim(1)?;
                out.reshape((batch, seq, cells))
            })
            .collect::<Result<_>>()?;
        let kl = post.kl()?.reshape((batch, seq))?;
        Ok((logits, kl))
    }

    /// The GRU state before any bar, for `batch` sequences.
    pub fn initial_state(&self, batch: usize) -> Result<GruState> {
        self.rnn.zero_state(batch)
    }

    /// One bar of the live loop: fold the bar's latent `z` (`[n, latent]`) into the state.
    pub fn step(&self, z: &Tensor, state: &GruState) -> Result<GruState> {
        self.rnn.step(z, state)
    }

    /// Next-bar logits of every track from a GRU state: `[n, cells_k]` each.
    pub fn decode(&self, state: &GruState) -> Result<Vec<Tensor>> {
        self.decoders.iter().map(|d| d.forward(state.h())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_support::{max_abs, max_abs_diff};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// The tiny model with fresh weights (the map holds them).
    fn tiny_model(dev: &Device) -> (Config, VarMap, BandVae) {
        let cfg = Config::tiny();
        let vm = VarMap::new();
        let model = BandVae::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, dev)).unwrap();
        (cfg, vm, model)
    }

    #[test]
    fn shapes_and_missing_tracks() {
        let dev = Device::Cpu;
        let (cfg, _vm, model) = tiny_model(&dev);
        let bars: Vec<Tensor> = (0..2)
            .map(|k| Tensor::ones((3, 4, cfg.bar_cells(k)), DType::F32, &dev).unwrap())
            .collect();
        let present = Tensor::zeros((3, 4, 2), DType::F32, &dev).unwrap();
        let (logits, kl) = model.forward(&bars, &present, None).unwrap();
        assert_eq!(logits[0].dims(), &[3, 4, cfg.bar_cells(0)]);
        assert_eq!(kl.dims(), &[3, 4]);
        // No track present: the posterior is the prior, KL 0.
        let kl: Vec<f32> = kl.flatten_all().unwrap().to_vec1().unwrap();
        assert!(kl.iter().all(|v| v.abs() < 1e-5), "{kl:?}");
    }

    #[test]
    fn a_batch_cut_between_threads_gives_the_whole_batch_outputs_and_gradients() {
        let dev = Device::Cpu;
        let (cfg, vm, model) = tiny_model(&dev);
        let (batch, seq) = (2 * PART_SEQUENCES + 3, 3);
        let bars: Vec<Tensor> = (0..2)
            .map(|k| {
                Tensor::rand(0f32, 1f32, (batch, seq, cfg.bar_cells(k)), &dev)
                    .unwrap()
                    .ge(0.9)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
            })
            .collect();
        let present = Tensor::rand(0f32, 1f32, (batch, seq, 2), &dev)
            .unwrap()
            .ge(0.2)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let eps = Tensor::randn(0f32, 1f32, (batch, seq, cfg.latent), &dev).unwrap();
        let loss = |(logits, kl): (Vec<Tensor>, Tensor)| {
            let l = (logits[0].sqr().unwrap().sum_all().unwrap() + logits[1].sum_all().unwrap())
                .unwrap();
            (l + kl.sum_all().unwrap()).unwrap()
        };
        let whole = model.forward_whole(&bars, &present, Some(&eps)).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let cut = pool.install(|| model.forward(&bars, &present, Some(&eps)).unwrap());
        for (a, b) in whole
            .0
            .iter()
            .chain([&whole.1])
            .zip(cut.0.iter().chain([&cut.1]))
        {
            assert!(max_abs_diff(a, b) < 1e-5);
        }
        let (g_whole, g_cut) = (
            loss(whole).backward().unwrap(),
            loss(cut).backward().unwrap(),
        );
        for var in vm.all_vars() {
            let (a, b) = (g_whole.get(&var).unwrap(), g_cut.get(&var).unwrap());
            assert!(max_abs_diff(a, b) <= 1e-4 * max_abs(a).max(1.0));
        }
    }
}
