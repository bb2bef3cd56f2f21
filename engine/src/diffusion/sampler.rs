//! Reverse processes for the binomial diffusion, conditioned on known cells.
//!
//! Algorithm 1 of Atassi (2023): keep x_T; at each step predict x̂_0, draw the cells where x_T
//! and x̂_0 disagree (δ = x_T ⊕ x̂_0) into a mask with probability δ·(1 − ᾱ_{t'}), t' the next
//! (lower) step, and set x_{t'} = x_T where the mask is 1 and x̂_0 where it is 0. Marginally
//! x_{t'} ~ q(x_{t'} | x̂_0) (a cell keeps its x_T value with probability 1 − ᾱ_{t'}), while the
//! shared x_T keeps successive steps coherent. The naive sampler draws x_{t'} ~ q(x_{t'} | x̂_0)
//! afresh at every step.
//!
//! Conditioning: at every step the known cells of x̂_0 are replaced by their true values before
//! the update, so known cells follow the forward process from the same x_T; the returned roll
//! holds the known cells exactly. A conditioned network also reads the known cells' clean
//! values and where they are at every step, and with guidance a second pass without them
//! sharpens what the known cells say. Any subsequence of 1..=T steps works (evenly spaced).

use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::binomial::BinomialSchedule;
use crate::models::roll::{OtherParts, PartRole, RollUnet, part_input};

/// Which reverse process to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    /// The seed's Algorithm 1 (shared x_T).
    #[default]
    Algorithm1,
    /// x_{t−1} ~ q(x_{t−1} | x̂_0), drawn independently at every step.
    Naive,
}

impl std::str::FromStr for SamplerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "algorithm1" | "alg1" | "atassi" => Ok(Self::Algorithm1),
            "naive" => Ok(Self::Naive),
            other => Err(format!("unknown sampler '{other}' (algorithm1, naive)")),
        }
    }
}

/// One window to sample, in the model's `[2, steps, pitches]` layout.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowProblem {
    /// Known values (and, for a variation, the starting content of the free cells).
    pub x0: Vec<f32>,
    /// `[steps, pitches]`: cells to generate (both channels); the others are known.
    pub free: Vec<bool>,
    /// `[steps, pitches]`: free cells that may turn on (key lock, pitch range); free cells not
    /// allowed stay off.
    pub allowed: Vec<bool>,
    /// For a parts model ([`crate::models::roll::Config::parts`]): the part's role and the
    /// clip's other parts; `None` for a merged-roll model.
    pub part: Option<PartProblem>,
}

/// The part a parts model generates in a window, and what it hears of the others.
#[derive(Clone, Debug, PartialEq)]
pub struct PartProblem {
    pub role: PartRole,
    pub others: OtherParts,
}

/// How to run the reverse process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerOptions {
    pub kind: SamplerKind,
    /// Network evaluations from the start step down to 0 (1..=start step, spaced evenly).
    pub steps: usize,
    /// Start step: T for a fresh sample, s·T for a variation that starts from the content.
    pub start: usize,
    /// Multiplies the predicted odds of every cell being on (1 = as trained; >1 denser).
    pub density: f32,
    /// Classifier-free guidance weight w for a conditioned net: logits `cond + w·(cond −
    /// uncond)`, the second pass reading no known cells (twice the network work). 0 = one pass;
    /// ignored by a net that does not read the known cells.
    pub guidance: f32,
    /// Divides the logits before each draw: below 1 the model's likeliest cells win more
    /// often (tamer), above 1 less likely cells come through (wilder); 1 = as trained.
    pub temperature: f32,
    pub seed: u64,
}

/// The error text of a sampling run stopped by its hook.
pub const CANCELLED: &str = "cancelled";

/// The timesteps visited, from `start` down, `count` of them, evenly spaced; ends with 0.
pub fn timesteps(start: usize, count: usize) -> Vec<usize> {
    let count = count.clamp(1, start.max(1));
    let mut ts: Vec<usize> = (0..=count)
        .rev()
        .map(|i| (i * start + count / 2) / count)
        .collect();
    ts.dedup();
    ts
}

/// Sample every problem (batched through the network); problem `i` uses seed `seed + i`.
/// Returns binary rolls `[2, steps, pitches]`, the known cells equal to `x0`.
pub fn sample(
    net: &RollUnet,
    schedule: &BinomialSchedule,
    problems: &[WindowProblem],
    opts: &SamplerOptions,
) -> candle_core::Result<Vec<Vec<f32>>> {
    sample_with_hook(net, schedule, problems, opts, &mut |_| true)
}

/// [`sample`], calling `after_step(evaluations done)` after every network evaluation; when it
/// returns `false` sampling stops with an error saying it was cancelled.
pub fn sample_with_hook(
    net: &RollUnet,
    schedule: &BinomialSchedule,
    problems: &[WindowProblem],
    opts: &SamplerOptions,
    after_step: &mut dyn FnMut(usize) -> bool,
) -> candle_core::Result<Vec<Vec<f32>>> {
    let cfg = net.config();
    let (steps, pitches) = (cfg.steps, cfg.pitches);
    let plane = steps * pitches;
    let n = problems.len();
    for p in problems {
        if p.x0.len() != 2 * plane || p.free.len() != plane || p.allowed.len() != plane {
            candle_core::bail!(
                "sampler: a window problem does not match the model's {steps}×{pitches} roll"
            );
        }
        if let Some(part) = &p.part
            && (part.others.roll.len() != 2 * plane || part.others.known.len() != plane)
        {
            candle_core::bail!(
                "sampler: the other parts of a window do not match the model's {steps}×{pitches} roll"
            );
        }
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let start = opts.start.clamp(1, schedule.steps());
    let ts = timesteps(start, opts.steps);
    let bias = opts.density.max(1e-6).ln();
    let inv_temperature = if opts.temperature.is_finite() && opts.temperature > 0.0 {
        1.0 / opts.temperature
    } else {
        1.0
    };
    let mut rngs: Vec<ChaCha8Rng> = (0..n)
        .map(|i| ChaCha8Rng::seed_from_u64(opts.seed.wrapping_add(i as u64)))
        .collect();
    // Cell is generated and may be on / is forced off / is known.
    let is_free = |p: &WindowProblem, i: usize| p.free[i % plane];
    let may_be_on = |p: &WindowProblem, i: usize| !p.free[i % plane] || p.allowed[i % plane];

    // x_T ~ B(p), with forbidden cells off.
    let x_t_prior: Vec<Vec<f32>> = problems
        .iter()
        .zip(rngs.iter_mut())
        .map(|(p, rng)| {
            let mut x = schedule.prior_sample(plane, rng);
            for (i, v) in x.iter_mut().enumerate() {
                if !may_be_on(p, i) {
                    *v = 0.0;
                }
            }
            x
        })
        .collect();
    // x at the start step: forward process from x0 (the free cells' own content for a variation,
    // which for a fresh sample at t = T is all x_T anyway).
    let mut x: Vec<Vec<f32>> = problems
        .iter()
        .zip(&x_t_prior)
        .zip(rngs.iter_mut())
        .map(|((p, xt), rng)| {
            let keep = schedule.noise_level(start);
            (0..2 * plane)
                .map(|i| {
                    let x0 = if may_be_on(p, i) { p.x0[i] } else { 0.0 };
                    if x0 != xt[i] && rng.random::<f32>() < keep {
                        xt[i]
                    } else {
                        x0
                    }
                })
                .collect()
        })
        .collect();

    // The inputs go where the weights are; the logits come back to the CPU (`to_vec1`).
    let device = net.device();
    let mut last_x0 = x.clone();
    // The network input `[n, input channels, steps, pitches]`: x_t, and for a conditioned net
    // the known cells, which stay as they are; each step writes only its x_t planes.
    // With guidance, `n` more windows follow that read nothing known (batch `2n`).
    let channels = cfg.input_channels();
    let guided = cfg.conditioned && opts.guidance > 0.0;
    let batch = if guided { 2 * n } else { n };
    let mut input_buf = Vec::with_capacity(batch * channels * plane);
    let role = |p: &WindowProblem| p.part.as_ref().map_or(PartRole::Accompaniment, |q| q.role);
    for (xb, p) in x.iter().zip(problems) {
        crate::models::roll::conditioned_input(cfg, xb, &p.x0, Some(&p.free), &mut input_buf);
        part_input(
            cfg,
            p.part.as_ref().map(|q| &q.others),
            role(p),
            &mut input_buf,
        );
    }
    if guided {
        for (xb, p) in x.iter().zip(problems) {
            crate::models::roll::conditioned_input(cfg, xb, &p.x0, None, &mut input_buf);
            part_input(cfg, None, role(p), &mut input_buf);
        }
    }
    for (done, w) in ts.windows(2).enumerate() {
        if done > 0 && !after_step(done) {
            candle_core::bail!("{CANCELLED}");
        }
        let (t, next) = (w[0], w[1]);
        for (b, xb) in x.iter().cycle().take(batch).enumerate() {
            input_buf[b * channels * plane..][..2 * plane].copy_from_slice(xb);
        }
        let input = Tensor::from_slice(&input_buf, (batch, channels, steps, pitches), device)?;
        let tt = Tensor::from_vec(vec![t as f32; batch], batch, device)?;
        // [batch, 2, steps, pitches] flat
        let mut out = crate::nn::in_pool(|| net.forward(&input, &tt))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        // The guided logits overwrite the conditioned half in place.
        let (logits, uncond) = out.split_at_mut(n * 2 * plane);
        if guided {
            let w = opts.guidance;
            for (c, u) in logits.iter_mut().zip(&*uncond) {
                *c += w * (*c - u);
            }
        }
        let logits = &*logits;
        let noise = schedule.noise_level(next);
        for (b, p) in problems.iter().enumerate() {
            let rng = &mut rngs[b];
            let xt_prior = &x_t_prior[b];
            let out = &mut x[b];
            let est = &mut last_x0[b];
            for i in 0..2 * plane {
                let hat = if !is_free(p, i) {
                    p.x0[i]
                } else if !may_be_on(p, i) {
                    0.0
                } else {
                    let logit = logits[b * 2 * plane + i] * inv_temperature;
                    let prob = 1.0 / (1.0 + (-(logit + bias)).exp());
                    if rng.random::<f32>() < prob { 1.0 } else { 0.0 }
                };
                est[i] = hat;
                out[i] = match opts.kind {
                    SamplerKind::Algorithm1 => {
                        if hat != xt_prior[i] && rng.random::<f32>() < noise {
                            xt_prior[i]
                        } else {
                            hat
                        }
                    }
                    SamplerKind::Naive => {
                        let channel = i / plane;
                        let q = (1.0 - noise) * hat + noise * schedule.prior[channel];
                        let v = if rng.random::<f32>() < q { 1.0 } else { 0.0 };
                        if may_be_on(p, i) { v } else { 0.0 }
                    }
                };
            }
        }
    }
    if !after_step(ts.len() - 1) {
        candle_core::bail!("{CANCELLED}");
    }
    // The last update went to t = 0 (no noise): x̂_0 of the last step, known cells exact.
    Ok(last_x0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timesteps_are_evenly_spaced_and_end_at_zero() {
        assert_eq!(timesteps(100, 4), vec![100, 75, 50, 25, 0]);
        assert_eq!(timesteps(100, 100).len(), 101);
        assert_eq!(timesteps(10, 50), (0..=10).rev().collect::<Vec<_>>());
        assert_eq!(timesteps(30, 1), vec![30, 0]);
    }
}
