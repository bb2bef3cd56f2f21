//! MusicVAE for 2-bar melodies (Roberts et al. 2018, the flat "mel_2bar" model), small enough
//! for a 2-core CPU.
//!
//! - Encoder: a bidirectional LSTM over the 32 one-hot tokens; the last forward and the first
//!   backward hidden states, concatenated, give μ and log σ² of q(z | x) by two linear maps.
//! - Decoder: an autoregressive LSTM over the 32 steps. Its initial (h, c) is `tanh(W z + b)`,
//!   and every input is the previous token (one-hot; zeros at step 0) concatenated with z.
//!   Training uses teacher forcing; sampling feeds back its own argmax (or sampled) tokens.
//!
//! The LSTM cells are [`crate::nn::lstm`]'s (PyTorch's weight names and gate order); the
//! one-hot inputs of the encoder and the teacher-forced decoder are row lookups of the input
//! weights, and each step multiplies only `h`.
//! Tokens: see [`crate::music::melody`].

use crate::nn::{Linear, linear};
use candle_core::{D, DType, Device, Module, Result, Tensor, bail};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::music::melody::{CLASSES, WINDOW_STEPS};
use crate::nn::lstm::{LstmCell, SequenceInput, bidirectional_ends};

/// Shapes of the network (stored as `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Steps per sequence (16ths): 32 = 2 bars of 4/4.
    pub steps: usize,
    /// Token classes: 128 pitches, rest, hold.
    pub classes: usize,
    /// Hidden units of each encoder direction.
    pub encoder_hidden: usize,
    /// Hidden units of the decoder LSTM.
    pub decoder_hidden: usize,
    /// Latent dimensions.
    pub z_dim: usize,
}

super::presets!(Config { "small" => small, "tiny" => tiny });

impl Config {
    /// The shipped shape, small enough to train on one core (release, `RAYON_NUM_THREADS=1`; a
    /// second thread only adds spin-waiting at these matrix sizes). `bandmate train vae --bench
    /// small` and `cargo xtask bench latent` time its training step.
    pub fn small() -> Self {
        Self {
            steps: WINDOW_STEPS,
            classes: CLASSES,
            encoder_hidden: 192,
            decoder_hidden: 256,
            z_dim: 64,
        }
    }

    /// For tests.
    pub fn tiny() -> Self {
        Self {
            encoder_hidden: 32,
            decoder_hidden: 48,
            z_dim: 8,
            ..Self::small()
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.steps != WINDOW_STEPS || self.classes != CLASSES {
            return Err(format!(
                "MusicVAE config: steps {} and classes {} must be {WINDOW_STEPS} and {CLASSES}",
                self.steps, self.classes
            ));
        }
        if self.encoder_hidden == 0 || self.decoder_hidden == 0 || self.z_dim == 0 {
            return Err("MusicVAE config: hidden sizes and z_dim must be positive".into());
        }
        Ok(())
    }
}

/// Encoder, latent heads and decoder.
#[derive(Clone, Debug)]
pub struct MusicVae {
    cfg: Config,
    encoder_fwd: LstmCell,
    encoder_bwd: LstmCell,
    mu: Linear,
    log_var: Linear,
    decoder_init: Linear,
    decoder: LstmCell,
    output: Linear,
}

/// The output of a teacher-forced pass.
pub struct VaeOutput {
    /// `[batch, steps, classes]`.
    pub logits: Tensor,
    /// `[batch, z_dim]`.
    pub mu: Tensor,
    /// `[batch, z_dim]`.
    pub log_var: Tensor,
}

/// What the flat ([`MusicVae`]) and the hierarchical ([`super::hier_vae::HierVae`]) MusicVAE
/// share; [`crate::vae::VaeNet`] holds either and calls it through this.
pub trait Vae {
    /// μ and log σ² (`[batch, z_dim]` each) of `[batch, steps]` u32 tokens.
    fn encode(&self, tokens: &Tensor) -> Result<(Tensor, Tensor)>;

    /// Teacher-forced logits `[batch, steps, classes]` of the decoder given z `[batch, z_dim]`
    /// and the target tokens `[batch, steps]` (u32).
    fn decode_teacher_forced(&self, z: &Tensor, tokens: &Tensor) -> Result<Tensor>;

    /// Autoregressive decoding of z `[batch, z_dim]` into `[batch, steps]` tokens. With
    /// `temperature` `None` each step takes the argmax; otherwise it samples from
    /// softmax(logits / temperature) with the uniforms `uniforms` (`steps · batch` values in
    /// [0, 1), step-major), so that sampling is seeded by the
    /// caller.
    fn decode(
        &self,
        z: &Tensor,
        temperature: Option<f64>,
        uniforms: &[f32],
    ) -> Result<Vec<Vec<u8>>>;

    /// Tokens `[batch][steps]` as a u32 tensor `[batch, steps]`, checking lengths and classes.
    fn tokens_tensor(&self, windows: &[&[u8]], device: &Device) -> Result<Tensor>;

    /// Encode with the reparameterization trick (`noise`: `[batch, z_dim]` standard normal, or
    /// `None` to use μ) and decode teacher-forced.
    fn forward(&self, tokens: &Tensor, noise: Option<&Tensor>) -> Result<VaeOutput> {
        let (mu, log_var) = self.encode(tokens)?;
        let z = reparameterize(&mu, &log_var, noise)?;
        let logits = self.decode_teacher_forced(&z, tokens)?;
        Ok(VaeOutput {
            logits,
            mu,
            log_var,
        })
    }
}

impl MusicVae {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        if let Err(e) = cfg.validate() {
            bail!("{e}");
        }
        let enc = vb.pp("encoder");
        let encoder_fwd = LstmCell::new(cfg.classes, cfg.encoder_hidden, "", &enc)?;
        let encoder_bwd = LstmCell::new(cfg.classes, cfg.encoder_hidden, "_reverse", &enc)?;
        let mu = linear(2 * cfg.encoder_hidden, cfg.z_dim, vb.pp("mu"))?;
        let log_var = linear(2 * cfg.encoder_hidden, cfg.z_dim, vb.pp("log_var"))?;
        let decoder_init = linear(cfg.z_dim, 2 * cfg.decoder_hidden, vb.pp("decoder_init"))?;
        let decoder = LstmCell::new(
            cfg.classes + cfg.z_dim,
            cfg.decoder_hidden,
            "",
            &vb.pp("decoder"),
        )?;
        let output = linear(cfg.decoder_hidden, cfg.classes, vb.pp("output"))?;
        Ok(Self {
            cfg: cfg.clone(),
            encoder_fwd,
            encoder_bwd,
            mu,
            log_var,
            decoder_init,
            decoder,
            output,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// One-hot `[batch, steps, classes]` of `[batch, steps]` u32 tokens.
    pub fn one_hot(&self, tokens: &Tensor) -> Result<Tensor> {
        one_hot(tokens, self.cfg.classes)
    }

    /// Decoder (h, c) at step 0 from z `[batch, z_dim]`.
    fn initial_state(&self, z: &Tensor) -> Result<(Tensor, Tensor)> {
        let hc = self.decoder_init.forward(z)?.tanh()?; // [batch, 2·H]
        let n = self.cfg.decoder_hidden;
        Ok((hc.narrow(1, 0, n)?, hc.narrow(1, n, n)?))
    }
}

impl Vae for MusicVae {
    fn encode(&self, tokens: &Tensor) -> Result<(Tensor, Tensor)> {
        let ts = tokens.t()?.contiguous()?; // [steps, batch]
        let input = SequenceInput::Tokens(&ts, self.cfg.classes);
        let h = bidirectional_ends(&self.encoder_fwd, &self.encoder_bwd, input)?; // [batch, 2·H]
        Ok((self.mu.forward(&h)?, self.log_var.forward(&h)?))
    }

    fn decode_teacher_forced(&self, z: &Tensor, tokens: &Tensor) -> Result<Tensor> {
        let (b, steps) = tokens.dims2()?;
        let classes = self.cfg.classes;
        // The previous token at every step; `classes` (an all-zero input) at the first.
        let start = Tensor::full(classes as u32, (1, b), tokens.device())?;
        let previous = Tensor::cat(&[&start, &tokens.t()?.narrow(0, 0, steps - 1)?], 0)?; // [steps, batch]
        let cell = self.decoder.weights()?;
        // The input is [one-hot previous token, z]: a row lookup plus z's share, once.
        let gx = cell.one_hot_gates(&previous.contiguous()?, classes, Some(z))?; // [steps, batch, 4·H]
        let (h, c) = self.initial_state(z)?;
        let hs = cell.recurrence(&gx, &h, &c)?; // [steps, batch, H]
        let hs = hs.transpose(0, 1)?.contiguous()?; // [batch, steps, H]
        self.output.forward(&hs) // [batch, steps, classes]
    }

    fn decode(
        &self,
        z: &Tensor,
        temperature: Option<f64>,
        uniforms: &[f32],
    ) -> Result<Vec<Vec<u8>>> {
        let (b, _) = z.dims2()?;
        let steps = self.cfg.steps;
        check_uniforms(temperature, uniforms, b * steps)?;
        let (mut h, mut c) = self.initial_state(z)?;
        let cell = self.decoder.weights()?;
        let mut previous = Tensor::zeros((b, self.cfg.classes), DType::F32, z.device())?;
        let mut out = vec![Vec::with_capacity(steps); b];
        for t in 0..steps {
            let input = Tensor::cat(&[&previous, z], 1)?; // [batch, classes + z]
            (h, c) = cell.step(&input, &h, &c)?;
            let logits = self.output.forward(&h)?; // [batch, classes]
            previous = emit_tokens(&logits, temperature, uniforms.get(t * b..), &mut out)?;
        }
        Ok(out)
    }

    fn tokens_tensor(&self, windows: &[&[u8]], device: &Device) -> Result<Tensor> {
        tokens_tensor(windows, self.cfg.steps, self.cfg.classes, device)
    }
}

/// Fails unless a sampled decoding (`temperature` given) has a uniform for each of its `draws`.
pub(crate) fn check_uniforms(
    temperature: Option<f64>,
    uniforms: &[f32],
    draws: usize,
) -> Result<()> {
    if temperature.is_some() && uniforms.len() < draws {
        bail!("decode: {} uniforms for {draws} draws", uniforms.len());
    }
    Ok(())
}

/// One-hot `[batch, steps, classes]` of `[batch, steps]` u32 tokens.
pub(crate) fn one_hot(tokens: &Tensor, classes: usize) -> Result<Tensor> {
    let (b, t) = tokens.dims2()?;
    let ids = Tensor::arange(0u32, classes as u32, tokens.device())?.reshape((1, 1, classes))?;
    tokens
        .unsqueeze(2)?
        .broadcast_as((b, t, classes))?
        .eq(&ids.broadcast_as((b, t, classes))?)?
        .to_dtype(DType::F32)
}

/// z = μ + σ·ε with `noise` ε `[batch, z_dim]`, or μ without noise.
pub(crate) fn reparameterize(
    mu: &Tensor,
    log_var: &Tensor,
    noise: Option<&Tensor>,
) -> Result<Tensor> {
    match noise {
        Some(eps) => mu + (log_var.affine(0.5, 0.0)?.exp()? * eps)?,
        None => Ok(mu.clone()),
    }
}

/// The tokens of one decoding step from `logits` `[batch, classes]`: the argmax, or drawn from
/// softmax(logits / temperature) with one uniform per row from `uniforms`.
pub(crate) fn choose_tokens(
    logits: &Tensor,
    temperature: Option<f64>,
    uniforms: Option<&[f32]>,
) -> Result<Vec<u32>> {
    let Some(temp) = temperature else {
        return logits.argmax(D::Minus1)?.to_vec1::<u32>();
    };
    let probs = candle_nn::ops::softmax_last_dim(&(logits / temp.max(1e-3))?)?.to_vec2::<f32>()?;
    let uniforms = uniforms.unwrap_or_default();
    if uniforms.len() < probs.len() {
        bail!(
            "decode: {} uniforms for {} draws",
            uniforms.len(),
            probs.len()
        );
    }
    Ok(probs
        .iter()
        .zip(uniforms)
        .map(|(p, &u)| draw(p, u))
        .collect())
}

/// One autoregressive step's output: the tokens chosen from `logits` `[batch, classes]` (see
/// [`choose_tokens`]) appended to `out`, and returned one-hot `[batch, classes]` as the next
/// step's input.
pub(crate) fn emit_tokens(
    logits: &Tensor,
    temperature: Option<f64>,
    uniforms: Option<&[f32]>,
    out: &mut [Vec<u8>],
) -> Result<Tensor> {
    let (b, classes) = logits.dims2()?;
    let chosen = choose_tokens(logits, temperature, uniforms)?;
    for (seq, &tok) in out.iter_mut().zip(&chosen) {
        seq.push(tok as u8);
    }
    let ids = Tensor::from_vec(chosen, (b, 1), logits.device())?;
    one_hot(&ids, classes)?.squeeze(1)
}

/// Tokens `[batch][steps]` as a u32 tensor `[batch, steps]`, checking lengths and classes.
pub(crate) fn tokens_tensor(
    windows: &[&[u8]],
    steps: usize,
    classes: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut flat = Vec::with_capacity(windows.len() * steps);
    for w in windows {
        if w.len() != steps {
            bail!("a window has {} tokens, the model takes {steps}", w.len());
        }
        if let Some(&bad) = w.iter().find(|&&t| t as usize >= classes) {
            bail!("token {bad} is not one of the {classes} classes");
        }
        flat.extend(w.iter().map(|&t| t as u32));
    }
    Tensor::from_vec(flat, (windows.len(), steps), device)
}

/// Index drawn from the distribution `p` with the uniform `u`.
fn draw(p: &[f32], u: f32) -> u32 {
    let mut acc = 0.0;
    for (i, &pi) in p.iter().enumerate() {
        acc += pi;
        if u < acc {
            return i as u32;
        }
    }
    (p.len() - 1) as u32
}

/// Mean over the batch of KL(q(z|x) ‖ N(0, I)), summed over z: `[]`.
pub fn kl_divergence(mu: &Tensor, log_var: &Tensor) -> Result<Tensor> {
    // ½ Σ (μ² + σ² − 1 − log σ²)
    let per = ((mu.sqr()? + log_var.exp()?)? - log_var)?.affine(0.5, -0.5)?;
    per.sum(1)?.mean_all()
}

/// Mean over the batch of the summed cross-entropy over steps (nats per sequence): `[]`.
/// `logits`: `[batch, steps, classes]`, `tokens`: `[batch, steps]` u32.
pub fn reconstruction_loss(logits: &Tensor, tokens: &Tensor) -> Result<Tensor> {
    let (b, t, k) = logits.dims3()?;
    let ce = candle_nn::loss::cross_entropy(&logits.reshape((b * t, k))?, &tokens.flatten_all()?)?;
    ce.affine(t as f64, 0.0)
}

/// Spherical interpolation between `a` and `b` (`[z_dim]` each) at `t` in [0, 1]; linear when
/// they are (anti)parallel.
pub fn slerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cos = (dot / (na * nb).max(1e-12)).clamp(-1.0, 1.0);
    let omega = cos.acos();
    if omega.sin().abs() < 1e-4 {
        return a.iter().zip(b).map(|(x, y)| x + t * (y - x)).collect();
    }
    let (wa, wb) = (
        ((1.0 - t) * omega).sin() / omega.sin(),
        (t * omega).sin() / omega.sin(),
    );
    a.iter().zip(b).map(|(x, y)| wa * x + wb * y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    #[test]
    fn shapes_and_slerp() {
        let cfg = Config::tiny();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let vae = MusicVae::new(&cfg, vb).unwrap();
        let w: Vec<u8> = (0..32).map(|i| if i % 4 == 0 { 60 } else { 129 }).collect();
        let tokens = vae.tokens_tensor(&[&w, &w], &Device::Cpu).unwrap();
        let out = vae.forward(&tokens, None).unwrap();
        assert_eq!(out.logits.dims(), &[2, 32, CLASSES]);
        assert_eq!(out.mu.dims(), &[2, cfg.z_dim]);
        let decoded = vae.decode(&out.mu, None, &[]).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].len(), 32);
        let a = [1.0, 0.0];
        let b = [0.0, 1.0];
        let mid = slerp(&a, &b, 0.5);
        assert!((mid[0] - 0.5f32.sqrt()).abs() < 1e-5 && (mid[1] - mid[0]).abs() < 1e-6);
        assert_eq!(slerp(&a, &b, 0.0), a.to_vec());
        assert!(vae.tokens_tensor(&[&w[..10]], &Device::Cpu).is_err());
    }
}
