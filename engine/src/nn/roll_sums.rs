//! The sums of a bar roll that the band model's auxiliary losses read, as one op with its own
//! backward: per row, the onsets of every step (summed over pitches), the sustain of every pitch
//! class (summed over steps) and the onsets weighted by a per-row pitch weight (the out-of-key
//! pitches). In candle ops these took a dozen narrows, sums, broadcasts and a matmul per track,
//! each with its own backward, for outputs of a few numbers per bar.

use candle_core::{CpuStorage, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::cpu::dispatch::avx2_dispatch;
use super::cpu::math::{fast_exp, fast_ln, sigmoid};
use super::cpu::op::{F32Op, Forward, Grads, Op, Operand};
use super::cpu::storage::{contiguous_f32, cpu_f32};
use super::cpu::storage::{on_cpu_f32, with_cpu_f32};
use super::huge_pages::uninit_f32;

/// `roll` `[n, 2, steps, pitches]` (channel 0 onsets, 1 sustain, values such as probabilities),
/// `pitch_weights` `[n, pitches]` (a constant: no gradient flows to it), the window's lowest
/// MIDI pitch `pitch_lo` -> `[n, steps + 13]`: columns `0..steps` the onsets of each step
/// summed over pitches, `steps..steps + 12` the sustain of each pitch class (C = 0) summed over
/// steps, the last the onsets weighted by `pitch_weights` summed over steps and pitches.
pub fn roll_summaries(roll: &Tensor, pitch_weights: &Tensor, pitch_lo: u8) -> Result<Tensor> {
    let (n, channels, _, pitches) = roll.dims4()?;
    if channels != 2 || pitch_weights.dims() != [n, pitches] {
        bail!(
            "roll summaries: expected [n, 2, steps, pitches] and [n, pitches], got {:?} and {:?}",
            roll.dims(),
            pitch_weights.dims()
        )
    }
    if on_cpu_f32(roll) && on_cpu_f32(pitch_weights) {
        return roll.apply_op2(pitch_weights, Op(RollSums { pitch_lo }));
    }
    roll_summaries_by_ops(roll, pitch_weights, pitch_lo)
}

/// [`roll_summaries`] in candle ops (other devices; the tests' reference).
pub fn roll_summaries_by_ops(
    roll: &Tensor,
    pitch_weights: &Tensor,
    pitch_lo: u8,
) -> Result<Tensor> {
    let (n, _, _, pitches) = roll.dims4()?;
    let onsets = roll.narrow(1, 0, 1)?.squeeze(1)?; // [n, steps, pitches]
    let sustain = roll.narrow(1, 1, 1)?.squeeze(1)?;
    let mut classes = vec![0f32; pitches * 12];
    for p in 0..pitches {
        classes[p * 12 + (pitch_lo as usize + p) % 12] = 1.0;
    }
    let classes = Tensor::from_vec(classes, (pitches, 12), roll.device())?;
    let weighted = onsets
        .broadcast_mul(&pitch_weights.unsqueeze(1)?)?
        .sum(2)?
        .sum_keepdim(1)?; // [n, 1]
    Tensor::cat(
        &[onsets.sum(2)?, sustain.sum(1)?.matmul(&classes)?, weighted],
        1,
    )?
    .reshape((n, ()))
}

/// The band model's per-track loss terms from its logits in one op: [`roll_summaries`] of the
/// cell probabilities σ(`logits`) and, in one more column, each row's binary cross-entropy
/// against `targets` summed over its cells. `logits` and `targets` hold `n · 2 · steps ·
/// pitches` values in any shape (rows of `[2, steps, pitches]`); `pitch_weights` `[n, pitches]`
/// -> `[n, steps + 14]`. Only the logits get a gradient. As candle ops (sigmoid, reshape,
/// summaries, cross-entropy) the logits' gradient passed through five full-size temporaries,
/// each zeroed and added into by candle's backward pass; here it is one buffer.
pub fn logit_summaries(
    logits: &Tensor,
    targets: &Tensor,
    pitch_weights: &Tensor,
    steps: usize,
    pitch_lo: u8,
) -> Result<Tensor> {
    let (n, pitches) = pitch_weights.dims2()?;
    let cells = 2 * steps * pitches;
    if logits.elem_count() != n * cells || targets.shape() != logits.shape() {
        bail!(
            "logit summaries: {n} rows of {cells} cells, got logits {:?} and targets {:?}",
            logits.dims(),
            targets.dims()
        )
    }
    let op = LogitSums { steps, pitch_lo };
    if on_cpu_f32(logits) && on_cpu_f32(targets) && on_cpu_f32(pitch_weights) {
        return logits.apply_op3(targets, pitch_weights, Op(op));
    }
    op.by_ops(logits, targets, pitch_weights)
}

/// [`RollSums::row`] over σ(x) plus the row's cross-entropy against `z`, into `out`
/// (`steps + 14` values); `prob` is scratch of the row's length.
#[inline(always)]
fn logit_row_imp(
    out: &mut [f32],
    prob: &mut [f32],
    x: &[f32],
    z: &[f32],
    w: &[f32],
    steps: usize,
    pitch_lo: u8,
) {
    // e = e^{−|x|}; σ(|x|) = 1 / (1 + e); σ(x) = σ(|x|) for x ≥ 0, else e·σ(|x|);
    // cross-entropy max(x, 0) − x·z + log(1 + e).
    let term = |x: f32, z: f32| {
        let e = fast_exp(-x.abs());
        let s = 1.0 / (1.0 + e);
        let p = if x >= 0.0 { s } else { e * s };
        (p, x.max(0.0) - x * z + fast_ln(1.0 + e))
    };
    // Eight lanes, so that the loop vectorizes.
    let mut acc = [0f32; 8];
    let mut chunks = prob.chunks_exact_mut(8);
    for ((p, x), z) in (&mut chunks).zip(x.chunks_exact(8)).zip(z.chunks_exact(8)) {
        for l in 0..8 {
            let (pl, bce) = term(x[l], z[l]);
            p[l] = pl;
            acc[l] += bce;
        }
    }
    let done = prob.len() / 8 * 8;
    let mut tail = 0f32;
    for j in done..prob.len() {
        let (pl, bce) = term(x[j], z[j]);
        prob[j] = pl;
        tail += bce;
    }
    RollSums { pitch_lo }.row(out, prob, w, steps);
    out[steps + 13] = acc.iter().sum::<f32>() + tail;
}

avx2_dispatch! {
    fn logit_row(
        out: &mut [f32],
        prob: &mut [f32],
        x: &[f32],
        z: &[f32],
        w: &[f32],
        steps: usize,
        pitch_lo: u8,
    ) => logit_row_imp
}

/// `g_x = g_prob · σ'(x) + g_bce · (σ(x) − z)` element by element.
#[inline(always)]
fn logit_row_grad_imp(g_x: &mut [f32], g_prob: &[f32], x: &[f32], z: &[f32], g_bce: f32) {
    for (((g_x, g_prob), &x), &z) in g_x.iter_mut().zip(g_prob).zip(x).zip(z) {
        let prob = sigmoid(x);
        *g_x = g_prob * prob * (1.0 - prob) + g_bce * (prob - z);
    }
}

avx2_dispatch! {
    fn logit_row_grad(g_x: &mut [f32], g_prob: &[f32], x: &[f32], z: &[f32], g_bce: f32) => logit_row_grad_imp
}

struct LogitSums {
    steps: usize,
    pitch_lo: u8,
}

impl LogitSums {
    /// [`logit_summaries`] in candle ops (other devices; the tests' reference).
    fn by_ops(&self, logits: &Tensor, targets: &Tensor, pitch_weights: &Tensor) -> Result<Tensor> {
        let (n, pitches) = pitch_weights.dims2()?;
        let cells = 2 * self.steps * pitches;
        let sums = roll_summaries_by_ops(
            &candle_nn::ops::sigmoid(&logits.reshape((n, 2, self.steps, pitches))?)?,
            pitch_weights,
            self.pitch_lo,
        )?;
        let (x, z) = (logits.reshape((n, cells))?, targets.reshape((n, cells))?);
        let softplus = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
        let bce = ((x.relu()? - (&x * &z)?)? + softplus)?.sum_keepdim(1)?;
        Tensor::cat(&[sums, bce], 1)
    }
}

impl F32Op<3> for LogitSums {
    const NAME: &'static str = "logit-summaries";

    fn cpu_fwd(&self, [(x, x_l), (z, z_l), (w, w_l)]: [Operand; 3]) -> Forward {
        let (n, pitches) = w_l.shape().dims2()?;
        let (x, z, w) = (
            contiguous_f32(cpu_f32(x)?, x_l),
            contiguous_f32(cpu_f32(z)?, z_l),
            contiguous_f32(cpu_f32(w)?, w_l),
        );
        let (steps, cells) = (self.steps, 2 * self.steps * pitches);
        let width = steps + 14;
        let mut out = vec![0f32; n * width];
        out.par_chunks_mut(width).enumerate().for_each_init(
            || vec![0f32; cells],
            |prob, (i, out)| {
                let row = i * cells..(i + 1) * cells;
                let w = &w[i * pitches..][..pitches];
                logit_row(out, prob, &x[row.clone()], &z[row], w, steps, self.pitch_lo);
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((n, width))))
    }

    fn bwd(&self, [x, z, w]: [&Tensor; 3], _res: &Tensor, grad_res: &Tensor) -> Grads<3> {
        let (n, pitches) = w.dims2()?;
        let (steps, plane) = (self.steps, self.steps * pitches);
        let width = steps + 14;
        let g_x = with_cpu_f32(x, |x| {
            with_cpu_f32(z, |z| {
                with_cpu_f32(w, |w| {
                    with_cpu_f32(grad_res, |g| {
                        let mut g_x = uninit_f32(n * 2 * plane);
                        g_x.par_chunks_mut(2 * plane).enumerate().for_each_init(
                            || vec![0f32; 2 * plane],
                            |g_prob, (i, g_x)| {
                                let g = &g[i * width..][..width];
                                let w = &w[i * pitches..][..pitches];
                                let row = i * 2 * plane..(i + 1) * 2 * plane;
                                RollSums {
                                    pitch_lo: self.pitch_lo,
                                }
                                .row_grad(g_prob, g, w, steps);
                                logit_row_grad(
                                    g_x,
                                    g_prob,
                                    &x[row.clone()],
                                    &z[row],
                                    g[steps + 13],
                                );
                            },
                        );
                        Ok(g_x)
                    })
                })
            })
        })?;
        Ok([
            Some(Tensor::from_vec(g_x, x.shape(), x.device())?),
            None,
            None,
        ])
    }
}

struct RollSums {
    pitch_lo: u8,
}

impl RollSums {
    fn class(&self, p: usize) -> usize {
        (self.pitch_lo as usize + p) % 12
    }

    /// One row's `steps + 13` sums into `out` (whose entries from `steps` on start at zero)
    /// from its roll `[2, steps, pitches]` and pitch weights `w`.
    #[inline(always)]
    fn row(&self, out: &mut [f32], roll: &[f32], w: &[f32], steps: usize) {
        let pitches = w.len();
        let plane = steps * pitches;
        let (onsets, sustain) = roll.split_at(plane);
        let mut weighted = 0f32;
        for s in 0..steps {
            let row = &onsets[s * pitches..][..pitches];
            out[s] = row.iter().sum();
            weighted += row.iter().zip(w).map(|(a, b)| a * b).sum::<f32>();
            for (p, v) in sustain[s * pitches..][..pitches].iter().enumerate() {
                out[steps + self.class(p)] += v;
            }
        }
        out[steps + 12] = weighted;
    }

    /// One row's gradient `[2, steps, pitches]` into `g_roll` from the gradient `g` of its sums
    /// (the first `steps + 13` values) and its pitch weights `w`.
    #[inline(always)]
    fn row_grad(&self, g_roll: &mut [f32], g: &[f32], w: &[f32], steps: usize) {
        let pitches = w.len();
        let (g_onsets, g_sustain) = g_roll.split_at_mut(steps * pitches);
        for (s, onsets) in g_onsets.chunks_mut(pitches).enumerate() {
            for (o, w) in onsets.iter_mut().zip(w) {
                *o = g[s] + g[steps + 12] * w;
            }
        }
        for sustain in g_sustain.chunks_mut(pitches) {
            for (p, o) in sustain.iter_mut().enumerate() {
                *o = g[steps + self.class(p)];
            }
        }
    }
}

impl F32Op<2> for RollSums {
    const NAME: &'static str = "roll-summaries";

    fn cpu_fwd(&self, [(roll, roll_l), (w, w_l)]: [Operand; 2]) -> Forward {
        let &[n, _, steps, pitches] = roll_l.dims() else {
            bail!("roll summaries: expected a [n, 2, steps, pitches] roll")
        };
        let roll = contiguous_f32(cpu_f32(roll)?, roll_l);
        let w = contiguous_f32(cpu_f32(w)?, w_l);
        let width = steps + 13;
        let plane = steps * pitches;
        let mut out = vec![0f32; n * width];
        out.par_chunks_mut(width).enumerate().for_each(|(i, out)| {
            let w = &w[i * pitches..][..pitches];
            self.row(out, &roll[i * 2 * plane..][..2 * plane], w, steps);
        });
        Ok((CpuStorage::F32(out), Shape::from((n, width))))
    }

    fn bwd(&self, [roll, w]: [&Tensor; 2], _res: &Tensor, grad_res: &Tensor) -> Grads<2> {
        let (n, _, steps, pitches) = roll.dims4()?;
        let width = steps + 13;
        let plane = steps * pitches;
        let g_roll = with_cpu_f32(w, |w| {
            with_cpu_f32(grad_res, |g| {
                let mut g_roll = vec![0f32; n * 2 * plane];
                g_roll
                    .par_chunks_mut(2 * plane)
                    .enumerate()
                    .for_each(|(i, g_roll)| {
                        let g = &g[i * width..][..width];
                        self.row_grad(g_roll, g, &w[i * pitches..][..pitches], steps);
                    });
                Ok(g_roll)
            })
        })?;
        Ok([
            Some(Tensor::from_vec(g_roll, roll.shape(), roll.device())?),
            None,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_support::{gradients, max_abs_diff, random};
    use candle_core::Var;

    /// Values and the logits' gradient equal the candle ops', with soft targets and a row
    /// length that leaves a tail after the eight-lane blocks.
    #[test]
    fn logit_summaries_match_candle_ops_forward_and_backward() {
        let (n, steps, pitches, pitch_lo) = (6, 4, 7, 50);
        let logits = Var::from_tensor(&random(&[n, 2 * steps * pitches], 4, 6.0)).unwrap();
        let targets = (random(&[n, 2 * steps * pitches], 5, 0.5) + 0.5).unwrap();
        let w = (random(&[n, pitches], 6, 0.5) + 0.5).unwrap();
        let logits = logits.as_tensor();
        let ours = logit_summaries(logits, &targets, &w, steps, pitch_lo).unwrap();
        let theirs = LogitSums { steps, pitch_lo }
            .by_ops(logits, &targets, &w)
            .unwrap();
        assert_eq!(ours.dims(), &[n, steps + 14]);
        assert!(max_abs_diff(&ours, &theirs) < 1e-4);
        let upstream = random(&[n, steps + 14], 7, 1.0);
        let a = gradients(&ours, &upstream, &[logits]);
        let b = gradients(&theirs, &upstream, &[logits]);
        let diff = max_abs_diff(a[0].as_ref().unwrap(), b[0].as_ref().unwrap());
        assert!(diff < 1e-5, "{diff}");
        let wrong = targets.narrow(1, 0, 8).unwrap();
        assert!(logit_summaries(logits, &wrong, &w, steps, pitch_lo).is_err());
    }

    /// Values and the roll's gradient equal the candle ops', for a window not starting on C.
    #[test]
    fn summaries_match_candle_ops_forward_and_backward() {
        let (n, steps, pitches, pitch_lo) = (5, 16, 30, 43);
        let roll =
            Var::from_tensor(&(random(&[n, 2, steps, pitches], 1, 0.5) + 0.5).unwrap()).unwrap();
        let w = (random(&[n, pitches], 2, 0.5) + 0.5).unwrap();
        let roll = roll.as_tensor();
        let ours = roll_summaries(roll, &w, pitch_lo).unwrap();
        let theirs = roll_summaries_by_ops(roll, &w, pitch_lo).unwrap();
        assert_eq!(ours.dims(), &[n, steps + 13]);
        assert!(max_abs_diff(&ours, &theirs) < 1e-4);
        let upstream = random(&[n, steps + 13], 3, 1.0);
        let a = gradients(&ours, &upstream, &[roll]);
        let b = gradients(&theirs, &upstream, &[roll]);
        let diff = max_abs_diff(a[0].as_ref().unwrap(), b[0].as_ref().unwrap());
        assert!(diff < 1e-5, "{diff}");
        // A constant roll gives the same values.
        let constant = roll_summaries(&roll.detach(), &w, pitch_lo).unwrap();
        assert!(max_abs_diff(&constant, &ours) < 1e-7);
        assert!(roll_summaries(roll, &w.narrow(1, 0, 3).unwrap(), pitch_lo).is_err());
    }
}
