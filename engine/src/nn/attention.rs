//! Multi-head self-attention from a fused query/key/value projection as one op with its own
//! backward pass (the latent score network's attention).
//!
//! In candle ops, attention over `qkv` `[b, l, 3·d]` is a reshape and permute, three copies
//! (queries, keys, values), two batched products, a softmax of five ops and a transpose copy.
//! Backward, each of the three slices pads its gradient with zeros to the full `qkv` size and
//! candle adds the three up. With a few positions (8 latents) each head's products are tiny,
//! so here every batch row's heads are computed in one pass over its `qkv` rows, forward and
//! backward, and the gradient lands in place.

use candle_core::{CpuStorage, D, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::cpu::dispatch::avx2_dispatch;
use super::cpu::op::{F32Op, Forward, Grads, Op, Operand};
use super::cpu::storage::{contiguous_f32, cpu_f32};
use super::cpu::storage::{on_cpu_f32, with_cpu_f32};
use super::huge_pages::uninit_f32;

/// Softmax attention per head: `qkv` `[b, l, 3·d]` (per position the queries, then the keys,
/// then the values, each `heads` heads of `d / heads` features) → `[b, l, d]`, the heads'
/// `softmax(q·kᵀ / √(d / heads))·v` side by side.
pub fn self_attention(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = Dims::of(qkv.dims(), heads)?;
    if on_cpu_f32(qkv) {
        return qkv.apply_op1(Op(SelfAttention { dims }));
    }
    self_attention_by_ops(qkv, heads)
}

/// [`self_attention`] in candle ops (other devices, and the reference in tests).
pub fn self_attention_by_ops(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let Dims { batch, len, d, .. } = Dims::of(qkv.dims(), heads)?;
    let hd = d / heads;
    let qkv = qkv
        .reshape((batch, len, 3, heads, hd))?
        .permute((2, 0, 3, 1, 4))?; // [3, b, h, l, hd]
    let q = qkv.get(0)?.contiguous()?;
    let k = qkv.get(1)?.contiguous()?;
    let v = qkv.get(2)?.contiguous()?;
    let att = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?; // [b, h, l, l]
    let att = candle_nn::ops::softmax(&att, D::Minus1)?;
    att.matmul(&v)? // [b, h, l, hd]
        .transpose(1, 2)?
        .reshape((batch, len, d))
}

#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    len: usize,
    /// Features of the output (a third of `qkv`'s).
    d: usize,
    heads: usize,
}

impl Dims {
    fn of(dims: &[usize], heads: usize) -> Result<Self> {
        let &[batch, len, d3] = dims else {
            bail!("self-attention: expected qkv [batch, positions, 3·d], got {dims:?}");
        };
        if heads == 0 || !d3.is_multiple_of(3 * heads) {
            bail!("self-attention: {d3} qkv features do not split into 3 × {heads} heads");
        }
        Ok(Self {
            batch,
            len,
            d: d3 / 3,
            heads,
        })
    }

    fn head(&self) -> usize {
        self.d / self.heads
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head() as f32).sqrt()
    }

    /// Batch rows per parallel task: one when their work (about `len² · d` multiply-adds each)
    /// is worth a second thread, otherwise the whole batch, which then runs on the calling
    /// thread.
    fn rows_per_task(&self) -> usize {
        if self.batch > 1 && self.batch * self.len * self.len * self.d >= 1 << 16 {
            1
        } else {
            self.batch.max(1)
        }
    }
}

struct SelfAttention {
    dims: Dims,
}

impl F32Op<1> for SelfAttention {
    const NAME: &'static str = "self-attention";

    fn cpu_fwd(&self, [(qkv, layout)]: [Operand; 1]) -> Forward {
        let dims = self.dims;
        let qkv = contiguous_f32(cpu_f32(qkv)?, layout);
        let shape = Shape::from((dims.batch, dims.len, dims.d));
        let mut y = uninit_f32(shape.elem_count());
        if !y.is_empty() {
            let (y_rows, qkv_rows) = (dims.len * dims.d, dims.len * 3 * dims.d);
            y.par_chunks_mut(y_rows)
                .zip(qkv.par_chunks(qkv_rows))
                .with_min_len(dims.rows_per_task())
                .for_each(|(y, qkv)| forward_batch(y, qkv, dims));
        }
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(&self, [qkv]: [&Tensor; 1], _res: &Tensor, grad_res: &Tensor) -> Grads<1> {
        if !qkv.track_op() {
            return Ok([None]);
        }
        let dims = self.dims;
        let grad = with_cpu_f32(qkv, |qkv| {
            with_cpu_f32(grad_res, |gy| {
                let mut gx = uninit_f32(qkv.len());
                if !gx.is_empty() {
                    let (y_rows, qkv_rows) = (dims.len * dims.d, dims.len * 3 * dims.d);
                    gx.par_chunks_mut(qkv_rows)
                        .zip(qkv.par_chunks(qkv_rows))
                        .zip(gy.par_chunks(y_rows))
                        .with_min_len(dims.rows_per_task())
                        .for_each(|((gx, qkv), gy)| backward_batch(gx, qkv, gy, dims));
                }
                Ok(gx)
            })
        })?;
        Ok([Some(Tensor::from_vec(grad, qkv.shape(), qkv.device())?)])
    }
}

/// `Σ a_i·b_i` over eight running sums (so that the compiler keeps them in one vector).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (a, b) in a8.zip(b8) {
        for k in 0..8 {
            sums[k] += a[k] * b[k];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// `y += alpha · x`.
#[inline(always)]
fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// Row `i` of one head's attention probabilities: `p[j] = softmax_j(q_i · k_j · scale)`.
#[inline(always)]
fn probabilities(p: &mut [f32], qkv: &[f32], i: usize, head: usize, dims: Dims) {
    let (hd, row) = (dims.head(), 3 * dims.d);
    let q = &qkv[i * row + head * hd..][..hd];
    let mut max = f32::NEG_INFINITY;
    for (j, p) in p.iter_mut().enumerate() {
        let k = &qkv[j * row + dims.d + head * hd..][..hd];
        *p = dot(q, k) * dims.scale();
        max = max.max(*p);
    }
    let mut sum = 0.0;
    for p in p.iter_mut() {
        *p = (*p - max).exp();
        sum += *p;
    }
    let inv = 1.0 / sum;
    p.iter_mut().for_each(|p| *p *= inv);
}

avx2_dispatch! {
    /// One batch row: `y` `[l, d]` from `qkv` `[l, 3·d]`.
    fn forward_batch(y: &mut [f32], qkv: &[f32], dims: Dims) => forward_batch_imp
}

#[inline(always)]
fn forward_batch_imp(y: &mut [f32], qkv: &[f32], dims: Dims) {
    let (l, d, hd) = (dims.len, dims.d, dims.head());
    let mut p = vec![0f32; l];
    for head in 0..dims.heads {
        for i in 0..l {
            probabilities(&mut p, qkv, i, head, dims);
            let out = &mut y[i * d + head * hd..][..hd];
            out.fill(0.0);
            for (j, &pj) in p.iter().enumerate() {
                axpy(out, pj, &qkv[j * 3 * d + 2 * d + head * hd..][..hd]);
            }
        }
    }
}

avx2_dispatch! {
    /// One batch row's gradient `gx` `[l, 3·d]` from `qkv` `[l, 3·d]` and the output's
    /// gradient `gy` `[l, d]`.
    fn backward_batch(gx: &mut [f32], qkv: &[f32], gy: &[f32], dims: Dims) => backward_batch_imp
}

/// With P the probabilities and O = P·V: dV = Pᵀ·dO, dP = dO·Vᵀ,
/// dS_ij = P_ij·(dP_ij − Σ_k P_ik·dP_ik), dQ = dS·K·scale, dK = dSᵀ·Q·scale.
#[inline(always)]
fn backward_batch_imp(gx: &mut [f32], qkv: &[f32], gy: &[f32], dims: Dims) {
    let (l, d, hd, row) = (dims.len, dims.d, dims.head(), 3 * dims.d);
    gx.fill(0.0);
    let mut p = vec![0f32; l];
    let mut dp = vec![0f32; l];
    for head in 0..dims.heads {
        let (q_at, k_at, v_at) = (head * hd, d + head * hd, 2 * d + head * hd);
        for i in 0..l {
            probabilities(&mut p, qkv, i, head, dims);
            let go = &gy[i * d + head * hd..][..hd];
            for j in 0..l {
                dp[j] = dot(go, &qkv[j * row + v_at..][..hd]);
                axpy(&mut gx[j * row + v_at..][..hd], p[j], go);
            }
            let centre: f32 = p.iter().zip(&dp).map(|(p, dp)| p * dp).sum();
            for j in 0..l {
                let ds = p[j] * (dp[j] - centre) * dims.scale();
                axpy(
                    &mut gx[i * row + q_at..][..hd],
                    ds,
                    &qkv[j * row + k_at..][..hd],
                );
                axpy(
                    &mut gx[j * row + k_at..][..hd],
                    ds,
                    &qkv[i * row + q_at..][..hd],
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{gradients, max_abs_diff};
    use super::*;
    use candle_core::{Device, Var};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        super::super::test_support::random(shape, seed, 2.0)
    }

    #[test]
    fn matches_candle_ops_forward_and_backward() {
        // [batch, positions, 3·d], heads: one head, a head size that is not a multiple of 8,
        // the score network's shape at a parallel batch, one position.
        for (shape, heads) in [
            ([2usize, 5, 3 * 12], 1usize),
            ([3, 8, 3 * 20], 4),
            ([40, 8, 3 * 64], 4),
            ([2, 1, 3 * 16], 2),
        ] {
            let qkv = Var::from_tensor(&random(&shape, 1)).unwrap();
            let ours = self_attention(qkv.as_tensor(), heads).unwrap();
            let reference = self_attention_by_ops(qkv.as_tensor(), heads).unwrap();
            assert_eq!(ours.dims(), reference.dims());
            let diff = max_abs_diff(&ours, &reference);
            assert!(diff < 1e-5, "{shape:?}: outputs differ by {diff}");
            let upstream = random(ours.dims(), 2);
            let ours = gradients(&ours, &upstream, &[qkv.as_tensor()]);
            let reference = gradients(&reference, &upstream, &[qkv.as_tensor()]);
            let diff = max_abs_diff(ours[0].as_ref().unwrap(), reference[0].as_ref().unwrap());
            assert!(diff < 1e-4, "{shape:?}: gradients differ by {diff}");
        }
    }

    #[test]
    fn empty_batches_and_bad_shapes() {
        let empty = Tensor::zeros((0, 8, 12), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(self_attention(&empty, 2).unwrap().dims(), &[0, 8, 4]);
        assert!(self_attention(&random(&[2, 4, 10], 1), 2).is_err());
        assert!(self_attention(&random(&[2, 4, 12], 1), 0).is_err());
        assert!(self_attention(&random(&[4, 12], 1), 2).is_err());
    }
}
