//! The sums of a bar roll that the band model's auxiliary losses read, as one op with its own
//! backward: per row, the onsets of every step (summed over pitches), the sustain of every pitch
//! class (summed over steps) and the onsets weighted by a per-row pitch weight (the out-of-key
//! pitches). In candle ops these took a dozen narrows, sums, broadcasts and a matmul per track,
//! each with its own backward, for outputs of a few numbers per bar.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::conv_kernel::{contiguous_f32, cpu_f32};
use super::fused::{on_cpu_f32, with_cpu_f32};

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
        return roll.apply_op2(pitch_weights, RollSums { pitch_lo });
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

struct RollSums {
    pitch_lo: u8,
}

impl RollSums {
    fn class(&self, p: usize) -> usize {
        (self.pitch_lo as usize + p) % 12
    }
}

impl CustomOp2 for RollSums {
    fn name(&self) -> &'static str {
        "roll-summaries"
    }

    fn cpu_fwd(
        &self,
        roll: &CpuStorage,
        roll_l: &Layout,
        w: &CpuStorage,
        w_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let &[n, _, steps, pitches] = roll_l.dims() else {
            bail!("roll summaries: expected a [n, 2, steps, pitches] roll")
        };
        let roll = contiguous_f32(cpu_f32(roll)?, roll_l);
        let w = contiguous_f32(cpu_f32(w)?, w_l);
        let width = steps + 13;
        let plane = steps * pitches;
        let mut out = vec![0f32; n * width];
        out.par_chunks_mut(width).enumerate().for_each(|(i, out)| {
            let onsets = &roll[i * 2 * plane..][..plane];
            let sustain = &roll[i * 2 * plane + plane..][..plane];
            let w = &w[i * pitches..][..pitches];
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
        });
        Ok((CpuStorage::F32(out), Shape::from((n, width))))
    }

    fn bwd(
        &self,
        roll: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
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
                        let w = &w[i * pitches..][..pitches];
                        let (g_onsets, g_sustain) = g_roll.split_at_mut(plane);
                        for s in 0..steps {
                            for p in 0..pitches {
                                g_onsets[s * pitches + p] = g[s] + g[steps + 12] * w[p];
                                g_sustain[s * pitches + p] = g[steps + self.class(p)];
                            }
                        }
                    });
                Ok(g_roll)
            })
        })?;
        Ok((
            Some(Tensor::from_vec(g_roll, roll.shape(), roll.device())?),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_support::{gradients, max_abs_diff, random};
    use candle_core::Var;

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
