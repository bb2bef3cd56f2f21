//! AdamW (Loshchilov & Hutter) whose moments can be saved and restored, so that a resumed run
//! continues exactly where it stopped.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::{Tensor, Var, backprop::GradStore};
use candle_nn::VarMap;
use rayon::prelude::*;

use crate::nn::cpu::storage::{on_cpu_f32, with_cpu_f32, with_cpu_f32_mut};
use crate::nn::weights::stored_tensor;

pub struct AdamW {
    /// Variables sorted by name.
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Updates done so far.
    pub step: usize,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// The variables of `varmap` with their names, sorted by name.
pub(crate) fn sorted_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let mut vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map lock poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(vars)
}

impl AdamW {
    pub fn new(varmap: &VarMap, lr: f64, weight_decay: f64) -> Result<Self> {
        let vars = sorted_vars(varmap)?;
        let m = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            vars,
            m,
            v,
            step: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    /// One update from the gradients of `loss`.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.apply(&grads)
    }

    /// One update from the gradients of `Σ_i weights[i] · loss_of(i)`, each part's forward and
    /// backward pass run as its own task on the current rayon pool; returns that weighted loss.
    ///
    /// With the batch cut into `weights.len()` sub-batches and `weights[i]` the share of part
    /// `i`, this is the step of the whole batch (for losses that are means over the batch), with
    /// each core busy on its own sub-batch instead of both cores meeting at every op (which costs
    /// a network of many small ops, like the band model's, more than splitting each op gains).
    pub fn split_backward_step(
        &mut self,
        weights: &[f64],
        loss_of: impl Fn(usize) -> Result<Tensor> + Sync,
    ) -> Result<f64> {
        if weights.is_empty() {
            bail!("a split step needs at least one part");
        }
        // Each part's loss is scaled by its weight before its backward pass, so its gradients
        // come out already weighted (the scale rides along the chain rule for free) and the
        // parts' gradients only need adding.
        // With a part for every pool thread, each part's products stay on its thread.
        let serial = weights.len() >= rayon::current_num_threads();
        let parts: Vec<(f64, GradStore)> = (0..weights.len())
            .into_par_iter()
            .map(|i| {
                let part = || {
                    let loss = loss_of(i)?;
                    let value =
                        f64::from(loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?);
                    let weighted = if weights[i] == 1.0 {
                        loss
                    } else {
                        (loss * weights[i])?
                    };
                    Ok((value * weights[i], weighted.backward()?))
                };
                if serial {
                    crate::nn::serially(part)
                } else {
                    part()
                }
            })
            .collect::<Result<_>>()?;
        let total = parts.iter().map(|(l, _)| l).sum();
        let mut parts = parts.into_iter().map(|(_, g)| g);
        let mut grads = parts.next().expect("at least one part");
        let rest: Vec<GradStore> = parts.collect();
        for (_, var) in &self.vars {
            let t = var.as_tensor();
            let mut sum: Option<Tensor> = grads.remove(t);
            for store in &rest {
                if let Some(g) = store.get(t) {
                    sum = Some(match sum {
                        None => g.clone(),
                        Some(s) => (s + g)?,
                    });
                }
            }
            if let Some(g) = sum {
                grads.insert(t, g);
            }
        }
        self.apply(&grads)?;
        Ok(total)
    }

    fn apply(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let consts = StepConsts {
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            one_minus_beta1: (1.0 - self.beta1) as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            bias_correction1: (1.0 - self.beta1.powi(self.step as i32)) as f32,
            bias_correction2: (1.0 - self.beta2.powi(self.step as i32)) as f32,
            eps: self.eps as f32,
            lr: self.lr as f32,
            decay: (1.0 - self.lr * self.weight_decay) as f32,
        };
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            if !on_cpu_f32(var.as_tensor()) {
                let (param, m, v) =
                    self.step_by_ops(self.step, var.as_tensor(), g, &self.m[i], &self.v[i])?;
                var.set(&param)?;
                self.m[i] = m;
                self.v[i] = v;
                continue;
            }
            // In place: no new buffers to fault in each step, no copy into the variable.
            with_cpu_f32(g, |g| {
                with_cpu_f32_mut(var.as_tensor(), |p| {
                    with_cpu_f32_mut(&self.m[i], |m| {
                        with_cpu_f32_mut(&self.v[i], |v| {
                            if [g.len(), m.len(), v.len()] != [p.len(); 3] {
                                candle_core::bail!(
                                    "AdamW: gradient or moments of another size than the parameters"
                                );
                            }
                            consts.update(p, g, m, v);
                            Ok(())
                        })
                    })
                })
            })?;
        }
        Ok(())
    }

    /// The update of step `step` in candle ops: for tensors off the CPU, and the reference for
    /// the fused loop in tests. Returns the new parameters and moments.
    fn step_by_ops(
        &self,
        step: usize,
        param: &Tensor,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let bc1 = 1.0 - self.beta1.powi(step as i32);
        let bc2 = 1.0 - self.beta2.powi(step as i32);
        let m = ((m * self.beta1)? + (g * (1.0 - self.beta1))?)?;
        let v = ((v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
        let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + self.eps)?)?;
        let decayed = (param * (1.0 - self.lr * self.weight_decay))?;
        Ok(((decayed - (update * self.lr)?)?, m, v))
    }

    /// Write the moments to `path` (safetensors, `m.NAME` and `v.NAME`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            map.insert(format!("m.{name}"), self.m[i].clone());
            map.insert(format!("v.{name}"), self.v[i].clone());
        }
        candle_core::safetensors::save(&map, path)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Read moments written by [`AdamW::save`]; `step` must be restored by the caller.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let device = self
            .vars
            .first()
            .map(|(_, v)| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let map = candle_core::safetensors::load(path, &device)
            .with_context(|| format!("cannot read optimizer state {}", path.display()))?;
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (prefix, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{prefix}.{name}");
                *slot = stored_tensor(&map, path, &key, var.dims())?.clone();
            }
        }
        Ok(())
    }
}

/// One step's constants, in f32 for the element loop.
struct StepConsts {
    beta1: f32,
    beta2: f32,
    /// 1 − β1 and 1 − β2, rounded from f64 (1 − 0.999 in f32 is 5e-5 off).
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    eps: f32,
    lr: f32,
    /// 1 − lr · weight decay.
    decay: f32,
}

/// Tensors at least this long are updated on the rayon pool, in chunks of this many elements.
const PARALLEL_CHUNK: usize = 1 << 16;

impl StepConsts {
    /// One variable's step in place, in one pass over its parameters `p`, gradient `g` and
    /// moments `m`, `v` (all the same length):
    /// m' = β1·m + (1 − β1)·g, v' = β2·v + (1 − β2)·g², p' = decay·p − lr·m̂ / (√v̂ + ε), with
    /// m̂ = m' / (1 − β1^step) and v̂ = v' / (1 − β2^step). Candle's ops take a dozen passes
    /// and temporaries per variable for the same update.
    fn update(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let chunk = |offset: usize, p: &mut [f32], m: &mut [f32], v: &mut [f32]| {
            let g = &g[offset..offset + p.len()];
            for j in 0..p.len() {
                let mj = self.beta1 * m[j] + self.one_minus_beta1 * g[j];
                let vj = self.beta2 * v[j] + self.one_minus_beta2 * (g[j] * g[j]);
                let step =
                    (mj / self.bias_correction1) / ((vj / self.bias_correction2).sqrt() + self.eps);
                p[j] = self.decay * p[j] - self.lr * step;
                m[j] = mj;
                v[j] = vj;
            }
        };
        if p.len() < PARALLEL_CHUNK {
            chunk(0, p, m, v);
        } else {
            p.par_chunks_mut(PARALLEL_CHUNK)
                .zip(m.par_chunks_mut(PARALLEL_CHUNK))
                .zip(v.par_chunks_mut(PARALLEL_CHUNK))
                .enumerate()
                .for_each(|(k, ((p, m), v))| chunk(k * PARALLEL_CHUNK, p, m, v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::Init;

    #[test]
    fn minimizes_a_quadratic() {
        let map = VarMap::new();
        let w = map
            .get((3,), "w", Init::Const(1.0), DType::F32, &Device::Cpu)
            .unwrap();
        let mut opt = AdamW::new(&map, 0.1, 0.0).unwrap();
        for _ in 0..200 {
            let loss = (&w - 3.0).unwrap().sqr().unwrap().sum_all().unwrap();
            opt.backward_step(&loss).unwrap();
        }
        let got = w.to_vec1::<f32>().unwrap();
        assert!(got.iter().all(|x| (x - 3.0).abs() < 0.05), "{got:?}");
    }

    #[test]
    fn a_split_step_equals_the_whole_batch_step() {
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (6, 5), &device).unwrap();
        let y = Tensor::randn(0f32, 1.0, (6, 1), &device).unwrap();
        // Mean squared error of a linear model over `rows` of the batch.
        let loss = |w: &Tensor, b: &Tensor, rows: std::ops::Range<usize>| {
            let xs = x.narrow(0, rows.start, rows.len())?;
            let ys = y.narrow(0, rows.start, rows.len())?;
            (xs.matmul(w)?.broadcast_add(b)? - ys)?.sqr()?.mean_all()
        };
        let model = || {
            let map = VarMap::new();
            let w = map
                .get((5, 1), "w", Init::Const(0.3), DType::F32, &device)
                .unwrap();
            let b = map
                .get((1,), "b", Init::Const(-0.2), DType::F32, &device)
                .unwrap();
            (AdamW::new(&map, 0.05, 0.01).unwrap(), w, b)
        };
        let (mut whole, w1, b1) = model();
        let (mut split, w2, b2) = model();
        for _ in 0..5 {
            let l1 = loss(&w1, &b1, 0..6).unwrap();
            whole.backward_step(&l1).unwrap();
            let l2 = split
                .split_backward_step(&[4.0 / 6.0, 2.0 / 6.0], |i| {
                    Ok(loss(&w2, &b2, if i == 0 { 0..4 } else { 4..6 })?)
                })
                .unwrap();
            let l1 = f64::from(l1.to_scalar::<f32>().unwrap());
            assert!((l1 - l2).abs() < 1e-5, "loss {l1} vs {l2}");
        }
        assert!(max_abs_diff(&w1, &w2) < 1e-5);
        assert!(max_abs_diff(&b1, &b2) < 1e-5);
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        let diff = || -> candle_core::Result<f32> { (a - b)?.abs()?.max_all()?.to_scalar() };
        diff().unwrap()
    }

    #[test]
    fn the_fused_update_matches_the_formula_in_candle_ops() {
        let device = Device::Cpu;
        let map = VarMap::new();
        let init = Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        };
        // One variable updated in parallel chunks (with a short last chunk), one in one pass.
        let big = map
            .get(
                (PARALLEL_CHUNK * 2 + 1000,),
                "big",
                init,
                DType::F32,
                &device,
            )
            .unwrap();
        let small = map.get((3, 5), "small", init, DType::F32, &device).unwrap();
        let mut opt = AdamW::new(&map, 0.01, 0.1).unwrap();
        let mut expected_m = [big.zeros_like().unwrap(), small.zeros_like().unwrap()];
        let mut expected_v = expected_m.clone();
        for step in 1..=3 {
            let target = Tensor::randn(0f32, 1.0, big.dims(), &device).unwrap();
            let weights = Tensor::randn(0f32, 1.0, (5, 3), &device).unwrap();
            // The small variable's gradient comes through a transpose.
            let loss = ((&big - &target).unwrap().sqr().unwrap().sum_all().unwrap()
                + (small.t().unwrap() * &weights).unwrap().sum_all().unwrap())
            .unwrap();
            let grads = loss.backward().unwrap();
            let mut expected = Vec::new();
            for (k, var) in [&big, &small].into_iter().enumerate() {
                let g = grads.get(var).unwrap();
                let (param, m, v) = opt
                    .step_by_ops(step, var, g, &expected_m[k], &expected_v[k])
                    .unwrap();
                expected.push(param);
                expected_m[k] = m;
                expected_v[k] = v;
            }
            opt.apply(&grads).unwrap();
            for (k, var) in [&big, &small].into_iter().enumerate() {
                let diff = max_abs_diff(var, &expected[k]);
                assert!(
                    diff < 1e-6,
                    "step {step}, variable {k}: parameters differ by {diff}"
                );
            }
            // `opt.vars` is sorted by name: "big", then "small".
            for k in 0..2 {
                assert!(max_abs_diff(&opt.m[k], &expected_m[k]) < 1e-6);
                assert!(max_abs_diff(&opt.v[k], &expected_v[k]) < 1e-6);
            }
        }
    }
}
