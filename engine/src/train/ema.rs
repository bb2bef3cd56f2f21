//! An exponential moving average of a model's weights (Polyak averaging), the weights a
//! diffusion model is usually sampled with: the optimizer's last steps jitter the raw weights,
//! their average over the last thousand or so steps does not.

use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Var};
use candle_nn::VarMap;

use crate::nn::weights::stored_tensor;

pub struct Ema {
    /// The largest decay; early updates use less (see [`Ema::decay_at`]).
    pub decay: f64,
    /// The averaged weights, under the model's variable names: build a second copy of the
    /// network from this map to evaluate or export them.
    pub shadow: VarMap,
    /// (model variable, its average), sorted by name.
    pairs: Vec<(String, Var, Var)>,
}

impl Ema {
    /// Start the average at the model's current weights.
    pub fn new(model: &VarMap, decay: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&decay) {
            bail!("EMA decay must be in [0, 1), got {decay}");
        }
        let vars = super::adamw::sorted_vars(model)?;
        let shadow = VarMap::new();
        let mut pairs = Vec::with_capacity(vars.len());
        {
            let mut data = shadow
                .data()
                .lock()
                .map_err(|_| anyhow::anyhow!("variable map lock poisoned"))?;
            for (name, var) in vars {
                let copy = Var::from_tensor(&var.as_tensor().copy()?)?;
                data.insert(name.clone(), copy.clone());
                pairs.push((name, var, copy));
            }
        }
        Ok(Self {
            decay,
            shadow,
            pairs,
        })
    }

    /// The decay after `updates` updates: min(decay, (1 + n) / (10 + n)), so that the average
    /// forgets the random initial weights within the first few dozen steps.
    pub fn decay_at(&self, updates: usize) -> f64 {
        let n = updates as f64;
        self.decay.min((1.0 + n) / (10.0 + n))
    }

    /// average ← d · average + (1 − d) · weights, with d = [`Ema::decay_at`]`(updates)`.
    pub fn update(&self, updates: usize) -> Result<()> {
        let d = self.decay_at(updates);
        for (_, weights, average) in &self.pairs {
            let next = ((average.as_tensor() * d)? + (weights.as_tensor() * (1.0 - d))?)?;
            average.set(&next)?;
        }
        Ok(())
    }

    /// Write the averaged weights (safetensors under the model's names).
    pub fn save(&self, path: &Path) -> Result<()> {
        super::run_files::save_weights_atomic(&self.shadow, path)
    }

    /// Read averaged weights written by [`Ema::save`] (a resumed run).
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let map = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .with_context(|| format!("cannot read the weight average {}", path.display()))?;
        for (name, _, average) in &self.pairs {
            let t = stored_tensor(&map, path, name, average.dims())?;
            average.set(&t.to_dtype(DType::F32)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn values(map: &VarMap, name: &str) -> Vec<f32> {
        let tensor = map.data().lock().unwrap()[name].as_tensor().clone();
        tensor.flatten_all().and_then(|t| t.to_vec1()).unwrap()
    }

    #[test]
    fn the_average_follows_the_formula_and_survives_a_save() {
        let dev = Device::Cpu;
        let model = VarMap::new();
        let w = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &dev).unwrap()).unwrap();
        model.data().lock().unwrap().insert("w".into(), w.clone());
        let ema = Ema::new(&model, 0.9).unwrap();
        assert_eq!(values(&ema.shadow, "w"), vec![1.0, -2.0]);
        // Update 0: d = min(0.9, 1/10) = 0.1.
        w.set(&Tensor::new(&[3.0f32, 0.0], &dev).unwrap()).unwrap();
        ema.update(0).unwrap();
        let got = values(&ema.shadow, "w");
        let want = [0.1 * 1.0 + 0.9 * 3.0, 0.1 * -2.0 + 0.9 * 0.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        // Late updates use the full decay.
        assert_eq!(ema.decay_at(1000), 0.9);
        ema.update(1000).unwrap();
        let got2 = values(&ema.shadow, "w");
        assert!((got2[0] - (0.9 * got[0] + 0.1 * 3.0)).abs() < 1e-6);
        // The model's own weights are untouched.
        assert_eq!(values(&model, "w"), vec![3.0, 0.0]);

        let dir = std::env::temp_dir().join(format!("bandmate-ema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ema.safetensors");
        ema.save(&path).unwrap();
        let mut again = Ema::new(&model, 0.9).unwrap();
        again.load(&path).unwrap();
        assert_eq!(values(&again.shadow, "w"), got2);
        // A file of another model is an error, not a silent mix.
        let other = VarMap::new();
        other.data().lock().unwrap().insert(
            "v".into(),
            Var::from_tensor(&Tensor::new(&[1.0f32], &dev).unwrap()).unwrap(),
        );
        assert!(Ema::new(&other, 0.9).unwrap().load(&path).is_err());
        assert!(Ema::new(&model, 1.0).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
