//! [`RollModel`]: the roll UNet with its weights and diffusion schedule, ready to sample.

use anyhow::{Result, anyhow, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::binomial::BinomialSchedule;
use super::sampler::{SamplerOptions, WindowProblem, sample};
use crate::models::roll::{Config, RollUnet};
use crate::nn::weights::{ModelFiles, debug_loaded_model, model_loaders};

/// A loaded piano-roll diffusion model.
pub struct RollModel {
    net: RollUnet,
    schedule: BinomialSchedule,
    /// Where the weights came from (for messages).
    pub source: String,
}

debug_loaded_model!(RollModel);

impl RollModel {
    model_loaders! {
        load_dir, "roll model", "roll",
        "train one with `cargo xtask train roll`"
    }

    /// A model from its `config.json` and `model.safetensors`.
    pub fn from_files(files: &ModelFiles) -> Result<Self> {
        let cfg: Config = files.config(Config::validate)?;
        let net = files.build(|vb| RollUnet::new(&cfg, vb))?;
        Ok(Self {
            schedule: BinomialSchedule::new(cfg.diffusion_steps, cfg.prior),
            net,
            source: files.source.clone(),
        })
    }

    /// An untrained model with weights drawn from `seed` (for tests and benchmarks).
    pub fn random(cfg: &Config, seed: u64) -> Result<Self> {
        cfg.validate()
            .map_err(|e| anyhow!("roll model config: {e}"))?;
        let map = VarMap::new();
        let net = RollUnet::new(cfg, VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu))?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let data = map
            .data()
            .lock()
            .map_err(|_| anyhow!("variable map lock poisoned"))?;
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let var = &data[name];
            let dims = var.dims().to_vec();
            let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
            let values: Vec<f32> = if name.ends_with("norm1.weight")
                || name.ends_with("norm2.weight")
                || name.ends_with("norm_out.weight")
            {
                vec![1.0; var.elem_count()]
            } else {
                let a = (1.0 / fan_in as f32).sqrt();
                (0..var.elem_count())
                    .map(|_| rng.random_range(-a..a))
                    .collect()
            };
            var.set(&Tensor::from_vec(values, dims, &Device::Cpu)?)?;
        }
        drop(data);
        Ok(Self {
            schedule: BinomialSchedule::new(cfg.diffusion_steps, cfg.prior),
            net,
            source: format!("random (seed {seed})"),
        })
    }

    pub fn config(&self) -> &Config {
        self.net.config()
    }

    pub fn schedule(&self) -> &BinomialSchedule {
        &self.schedule
    }

    pub fn net(&self) -> &RollUnet {
        &self.net
    }

    /// p(x_0 = 1 | x_t) per cell for a batch of flat `[2, steps, pitches]` rolls `x_t`, one step
    /// each in `t`, with no cell known.
    pub fn predict_x0(&self, x_t: &[f32], t: &[usize]) -> Result<Vec<f32>> {
        let cfg = self.config();
        let per = 2 * cfg.steps * cfg.pitches;
        if x_t.len() != per * t.len() {
            bail!(
                "predict_x0: {} values for {} rolls of {per}",
                x_t.len(),
                t.len()
            );
        }
        let dev = self.net.device();
        // Nothing known: a conditioned net gets empty known-cell channels.
        let mut input = Vec::with_capacity(t.len() * cfg.input_channels() * per / 2);
        for roll in x_t.chunks(per) {
            crate::models::roll::conditioned_input(cfg, roll, roll, None, &mut input);
            crate::models::roll::part_input(
                cfg,
                None,
                crate::models::roll::PartRole::Accompaniment,
                &mut input,
            );
        }
        let x = Tensor::from_vec(
            input,
            (t.len(), cfg.input_channels(), cfg.steps, cfg.pitches),
            dev,
        )?;
        let tt = Tensor::from_vec(
            t.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            t.len(),
            dev,
        )?;
        Ok(candle_nn::ops::sigmoid(&self.net.forward(&x, &tt)?)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }

    /// Run the reverse process on window problems (see [`super::sampler::sample`]).
    pub fn sample(
        &self,
        problems: &[WindowProblem],
        opts: &SamplerOptions,
    ) -> Result<Vec<Vec<f32>>> {
        Ok(sample(&self.net, &self.schedule, problems, opts)?)
    }

    /// [`RollModel::sample`] with a hook after every network evaluation (see
    /// [`super::sampler::sample_with_hook`]).
    pub fn sample_with_hook(
        &self,
        problems: &[WindowProblem],
        opts: &SamplerOptions,
        after_step: &mut dyn FnMut(usize) -> bool,
    ) -> Result<Vec<Vec<f32>>> {
        Ok(super::sampler::sample_with_hook(
            &self.net,
            &self.schedule,
            problems,
            opts,
            after_step,
        )?)
    }
}
