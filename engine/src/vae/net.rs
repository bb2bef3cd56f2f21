//! The two MusicVAE shapes behind one type: the flat 2-bar model ([`MusicVae`]) and the
//! hierarchical 16-bar model ([`HierVae`]). Training, evaluation and the tools dispatch here.

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::models::hier_vae::{HierConfig, HierVae};
use crate::models::music_vae::{Config, MusicVae, Vae, VaeOutput};

/// A MusicVAE shape, as stored in `config.json` (the hierarchical fields tell them apart).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VaeShape {
    Hierarchical(HierConfig),
    Flat(Config),
}

impl VaeShape {
    /// `small`/`tiny` (flat 2-bar), `hier`/`hier-tiny` (hierarchical 16-bar).
    pub fn preset(name: &str) -> Option<Self> {
        Config::preset(name)
            .map(Self::Flat)
            .or_else(|| HierConfig::preset(name).map(Self::Hierarchical))
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            Self::Flat(c) => c.validate(),
            Self::Hierarchical(c) => c.validate(),
        }
    }

    /// Tokens (16ths) per sequence.
    pub fn steps(&self) -> usize {
        match self {
            Self::Flat(c) => c.steps,
            Self::Hierarchical(c) => c.steps(),
        }
    }

    /// Bars of 4/4 per sequence.
    pub fn bars(&self) -> u32 {
        (self.steps() / 16) as u32
    }

    pub fn z_dim(&self) -> usize {
        match self {
            Self::Flat(c) => c.z_dim,
            Self::Hierarchical(c) => c.z_dim,
        }
    }

    pub fn is_hierarchical(&self) -> bool {
        matches!(self, Self::Hierarchical(_))
    }

    /// "2-bar melody" or "16-bar melody, hierarchical".
    pub fn describe(&self) -> String {
        match self {
            Self::Flat(_) => format!("{}-bar melody", self.bars()),
            Self::Hierarchical(_) => format!("{}-bar melody, hierarchical", self.bars()),
        }
    }
}

/// A MusicVAE network of either shape.
#[derive(Clone, Debug)]
pub enum VaeNet {
    Flat(MusicVae),
    Hierarchical(HierVae),
}

impl VaeNet {
    pub fn new(shape: &VaeShape, vb: VarBuilder) -> Result<Self> {
        Ok(match shape {
            VaeShape::Flat(c) => Self::Flat(MusicVae::new(c, vb)?),
            VaeShape::Hierarchical(c) => Self::Hierarchical(HierVae::new(c, vb)?),
        })
    }

    pub fn shape(&self) -> VaeShape {
        match self {
            Self::Flat(m) => VaeShape::Flat(m.config().clone()),
            Self::Hierarchical(m) => VaeShape::Hierarchical(m.config().clone()),
        }
    }

    pub fn steps(&self) -> usize {
        match self {
            Self::Flat(m) => m.config().steps,
            Self::Hierarchical(m) => m.config().steps(),
        }
    }

    pub fn z_dim(&self) -> usize {
        match self {
            Self::Flat(m) => m.config().z_dim,
            Self::Hierarchical(m) => m.config().z_dim,
        }
    }

    /// The network of either shape, through what both share.
    fn net(&self) -> &dyn Vae {
        match self {
            Self::Flat(m) => m,
            Self::Hierarchical(m) => m,
        }
    }

    /// μ and log σ² (`[batch, z_dim]`) of `[batch, steps]` u32 tokens.
    pub fn encode(&self, tokens: &Tensor) -> Result<(Tensor, Tensor)> {
        self.net().encode(tokens)
    }

    /// Teacher-forced logits `[batch, steps, classes]`.
    pub fn decode_teacher_forced(&self, z: &Tensor, tokens: &Tensor) -> Result<Tensor> {
        self.net().decode_teacher_forced(z, tokens)
    }

    pub fn forward(&self, tokens: &Tensor, noise: Option<&Tensor>) -> Result<VaeOutput> {
        self.net().forward(tokens, noise)
    }

    /// Autoregressive decoding (argmax, or sampled with `uniforms`, `steps · batch` values).
    pub fn decode(
        &self,
        z: &Tensor,
        temperature: Option<f64>,
        uniforms: &[f32],
    ) -> Result<Vec<Vec<u8>>> {
        self.net().decode(z, temperature, uniforms)
    }

    pub fn tokens_tensor(&self, windows: &[&[u8]], device: &Device) -> Result<Tensor> {
        self.net().tokens_tensor(windows, device)
    }
}
