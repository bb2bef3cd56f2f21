//! Hierarchical MusicVAE for 16-bar melodies (Roberts et al. 2018, the "hierarchical decoder"),
//! scaled down for a 2-core CPU.
//!
//! - Encoder (hierarchical, so that no LSTM runs over all 256 steps): a bidirectional bar LSTM
//!   reads each bar's 16 tokens (all bars of the batch at once), its last forward and first
//!   backward states summarise the bar; a bidirectional song LSTM reads the 16 bar summaries and
//!   its end states give μ and log σ² of q(z | x).
//! - Decoder: the conductor LSTM starts from `tanh(W z + b)`, takes z at each of its 16 steps
//!   and emits one embedding per bar; the bar decoder LSTM starts each bar from
//!   `tanh(W e_bar + b)` and plays its 16 steps autoregressively with `[previous token, e_bar]`
//!   as input (the previous token runs on across bar lines). Teacher forcing decodes all bars at
//!   once; sampling plays the bars one after another.
//!
//! Tokens as the flat model: 130 classes (128 note-ons, rest, hold), [`crate::music::melody`].

use crate::nn::{Linear, linear};
use candle_core::{DType, Device, Module, Result, Tensor, bail};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::music_vae::{Vae, check_uniforms, emit_tokens, tokens_tensor};
use crate::music::melody::CLASSES;
use crate::nn::lstm::{LstmCell, SequenceInput, bidirectional_ends};

/// Shapes of the network (stored as `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HierConfig {
    /// Bars per sequence (4/4).
    pub bars: usize,
    /// 16ths per bar.
    pub steps_per_bar: usize,
    /// Token classes: 128 pitches, rest, hold.
    pub classes: usize,
    /// Hidden units of each direction of the bar encoder.
    pub bar_encoder_hidden: usize,
    /// Hidden units of each direction of the song encoder (over bar summaries).
    pub encoder_hidden: usize,
    pub z_dim: usize,
    pub conductor_hidden: usize,
    /// Size of the conductor's per-bar embedding.
    pub bar_embedding: usize,
    pub decoder_hidden: usize,
}

super::presets!(HierConfig { "hier" | "hier-small" => small, "hier-tiny" => tiny });

impl HierConfig {
    /// The shipped shape.
    pub fn small() -> Self {
        Self {
            bars: 16,
            steps_per_bar: 16,
            classes: CLASSES,
            bar_encoder_hidden: 128,
            encoder_hidden: 192,
            z_dim: 128,
            conductor_hidden: 256,
            bar_embedding: 128,
            decoder_hidden: 256,
        }
    }

    /// For tests.
    pub fn tiny() -> Self {
        Self {
            bar_encoder_hidden: 16,
            encoder_hidden: 24,
            z_dim: 8,
            conductor_hidden: 24,
            bar_embedding: 16,
            decoder_hidden: 32,
            ..Self::small()
        }
    }

    /// Tokens per sequence.
    pub fn steps(&self) -> usize {
        self.bars * self.steps_per_bar
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.classes != CLASSES || self.steps_per_bar != 16 {
            return Err(format!(
                "hierarchical MusicVAE config: classes {} and steps_per_bar {} must be {CLASSES} and 16",
                self.classes, self.steps_per_bar
            ));
        }
        let sizes = [
            self.bars,
            self.bar_encoder_hidden,
            self.encoder_hidden,
            self.z_dim,
            self.conductor_hidden,
            self.bar_embedding,
            self.decoder_hidden,
        ];
        if sizes.contains(&0) || self.bars > 64 {
            return Err("hierarchical MusicVAE config: sizes must be positive, bars ≤ 64".into());
        }
        Ok(())
    }
}

/// Encoders, latent heads, conductor and bar decoder.
#[derive(Clone, Debug)]
pub struct HierVae {
    cfg: HierConfig,
    bar_encoder_fwd: LstmCell,
    bar_encoder_bwd: LstmCell,
    encoder_fwd: LstmCell,
    encoder_bwd: LstmCell,
    mu: Linear,
    log_var: Linear,
    conductor_init: Linear,
    conductor: LstmCell,
    conductor_out: Linear,
    decoder_init: Linear,
    decoder: LstmCell,
    output: Linear,
}

/// (h, c) from `tanh(layer(x))`, split in halves of `hidden`.
fn init_state(layer: &Linear, x: &Tensor, hidden: usize) -> Result<(Tensor, Tensor)> {
    let hc = layer.forward(x)?.tanh()?; // [batch, 2·hidden]
    Ok((hc.narrow(1, 0, hidden)?, hc.narrow(1, hidden, hidden)?))
}

impl HierVae {
    pub fn new(cfg: &HierConfig, vb: VarBuilder) -> Result<Self> {
        if let Err(e) = cfg.validate() {
            bail!("{e}");
        }
        let c = cfg;
        let bar_enc = vb.pp("bar_encoder");
        let enc = vb.pp("encoder");
        Ok(Self {
            bar_encoder_fwd: LstmCell::new(c.classes, c.bar_encoder_hidden, "", &bar_enc)?,
            bar_encoder_bwd: LstmCell::new(c.classes, c.bar_encoder_hidden, "_reverse", &bar_enc)?,
            encoder_fwd: LstmCell::new(2 * c.bar_encoder_hidden, c.encoder_hidden, "", &enc)?,
            encoder_bwd: LstmCell::new(
                2 * c.bar_encoder_hidden,
                c.encoder_hidden,
                "_reverse",
                &enc,
            )?,
            mu: linear(2 * c.encoder_hidden, c.z_dim, vb.pp("mu"))?,
            log_var: linear(2 * c.encoder_hidden, c.z_dim, vb.pp("log_var"))?,
            conductor_init: linear(c.z_dim, 2 * c.conductor_hidden, vb.pp("conductor_init"))?,
            conductor: LstmCell::new(c.z_dim, c.conductor_hidden, "", &vb.pp("conductor"))?,
            conductor_out: linear(c.conductor_hidden, c.bar_embedding, vb.pp("conductor_out"))?,
            decoder_init: linear(c.bar_embedding, 2 * c.decoder_hidden, vb.pp("decoder_init"))?,
            decoder: LstmCell::new(
                c.classes + c.bar_embedding,
                c.decoder_hidden,
                "",
                &vb.pp("decoder"),
            )?,
            output: linear(c.decoder_hidden, c.classes, vb.pp("output"))?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &HierConfig {
        &self.cfg
    }

    /// The conductor's bar embeddings of z `[batch, z_dim]`: `[batch, bars, bar_embedding]`.
    fn conduct(&self, z: &Tensor) -> Result<Tensor> {
        let (h, c) = init_state(&self.conductor_init, z, self.cfg.conductor_hidden)?;
        let cell = self.conductor.weights()?;
        let (b, z_dim) = z.dims2()?;
        let zs = z
            .unsqueeze(0)?
            .broadcast_as((self.cfg.bars, b, z_dim))?
            .contiguous()?; // [bars, batch, z]
        let hs = cell.sequence(&zs, &h, &c)?.transpose(0, 1)?.contiguous()?; // [batch, bars, H]
        self.conductor_out.forward(&hs)?.tanh()
    }
}

impl Vae for HierVae {
    /// μ and log σ² (`[batch, z_dim]` each) of `[batch, bars·16]` u32 tokens.
    fn encode(&self, tokens: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = &self.cfg;
        let (b, _) = tokens.dims2()?;
        let ts = tokens
            .reshape((b * c.bars, c.steps_per_bar))?
            .t()?
            .contiguous()?; // [16, batch·bars]
        let bars = bidirectional_ends(
            &self.bar_encoder_fwd,
            &self.bar_encoder_bwd,
            SequenceInput::Tokens(&ts, c.classes),
        )? // [batch·bars, 2·Hb]
        .reshape((b, c.bars, 2 * c.bar_encoder_hidden))?
        .transpose(0, 1)?
        .contiguous()?; // [bars, batch, 2·Hb]
        let h = bidirectional_ends(
            &self.encoder_fwd,
            &self.encoder_bwd,
            SequenceInput::Dense(&bars),
        )?; // [batch, 2·H]
        Ok((self.mu.forward(&h)?, self.log_var.forward(&h)?))
    }

    /// Teacher-forced logits `[batch, bars·16, classes]` given z and the target tokens.
    fn decode_teacher_forced(&self, z: &Tensor, tokens: &Tensor) -> Result<Tensor> {
        let c = &self.cfg;
        let (b, steps) = tokens.dims2()?;
        let (rows, e) = (b * c.bars, c.bar_embedding);
        let embeddings = self.conduct(z)?.reshape((rows, e))?; // [batch·bars, E]
        // The previous token at every step (`classes`, an all-zero input, at the first), each
        // bar a row: [16, batch·bars].
        let start = Tensor::full(c.classes as u32, (b, 1), tokens.device())?;
        let previous = Tensor::cat(&[&start, &tokens.narrow(1, 0, steps - 1)?], 1)?
            .reshape((rows, c.steps_per_bar))?
            .t()?
            .contiguous()?;
        let cell = self.decoder.weights()?;
        // The input is [one-hot previous token, the bar's embedding].
        let gx = cell.one_hot_gates(&previous, c.classes, Some(&embeddings))?; // [16, rows, 4·H]
        let (h, cs) = init_state(&self.decoder_init, &embeddings, c.decoder_hidden)?;
        let hs = cell.recurrence(&gx, &h, &cs)?; // [16, rows, H]
        let hs = hs.transpose(0, 1)?.contiguous()?; // [rows, 16, H]
        self.output.forward(&hs)?.reshape((b, steps, c.classes))
    }

    /// Autoregressive decoding of z `[batch, z_dim]` into `[batch, bars·16]` tokens: argmax, or
    /// sampled at `temperature` with `uniforms` (`steps · batch` values, step-major).
    fn decode(
        &self,
        z: &Tensor,
        temperature: Option<f64>,
        uniforms: &[f32],
    ) -> Result<Vec<Vec<u8>>> {
        let c = &self.cfg;
        let (b, _) = z.dims2()?;
        let steps = c.steps();
        check_uniforms(temperature, uniforms, b * steps)?;
        let embeddings = self.conduct(z)?; // [batch, bars, E]
        let cell = self.decoder.weights()?;
        let mut previous = Tensor::zeros((b, c.classes), DType::F32, z.device())?;
        let mut out = vec![Vec::with_capacity(steps); b];
        for bar in 0..c.bars {
            let e = embeddings.narrow(1, bar, 1)?.squeeze(1)?.contiguous()?; // [batch, E]
            let (mut h, mut cs) = init_state(&self.decoder_init, &e, c.decoder_hidden)?;
            for s in 0..c.steps_per_bar {
                let t = bar * c.steps_per_bar + s;
                let input = Tensor::cat(&[&previous, &e], 1)?;
                (h, cs) = cell.step(&input, &h, &cs)?;
                let logits = self.output.forward(&h)?; // [batch, classes]
                previous = emit_tokens(&logits, temperature, uniforms.get(t * b..), &mut out)?;
            }
        }
        Ok(out)
    }

    /// Tokens `[batch][steps]` as a u32 tensor, checking lengths and classes.
    fn tokens_tensor(&self, windows: &[&[u8]], device: &Device) -> Result<Tensor> {
        tokens_tensor(windows, self.cfg.steps(), self.cfg.classes, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    #[test]
    fn shapes_and_teacher_forcing_matches_free_running_on_its_own_output() {
        let cfg = HierConfig {
            bars: 3,
            ..HierConfig::tiny()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let vae = HierVae::new(&cfg, vb).unwrap();
        let w: Vec<u8> = (0..48)
            .map(|i| if i % 4 == 0 { 60 + (i / 4) as u8 } else { 129 })
            .collect();
        let tokens = vae.tokens_tensor(&[&w, &w], &Device::Cpu).unwrap();
        let out = vae.forward(&tokens, None).unwrap();
        assert_eq!(out.logits.dims(), &[2, 48, CLASSES]);
        assert_eq!(out.mu.dims(), &[2, cfg.z_dim]);
        // The argmax decoding, fed back teacher-forced, gives the same argmax at every step:
        // the two decoders agree on how bars follow each other.
        let decoded = vae.decode(&out.mu, None, &[]).unwrap();
        assert_eq!(decoded[0].len(), 48);
        let again = vae.tokens_tensor(&[&decoded[0]], &Device::Cpu).unwrap();
        let logits = vae
            .decode_teacher_forced(&out.mu.narrow(0, 0, 1).unwrap(), &again)
            .unwrap();
        let argmax: Vec<u32> = logits
            .argmax(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let expected: Vec<u32> = decoded[0].iter().map(|&t| t as u32).collect();
        assert_eq!(argmax, expected);
        assert!(vae.tokens_tensor(&[&w[..10]], &Device::Cpu).is_err());
    }
}
