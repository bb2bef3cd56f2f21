//! A linear layer whose input is mostly zeros: the band model's bar encoders read two-channel
//! rolls of one bar (1,536 cells, of which a melody bar turns on a few dozen). Only the rows of
//! the transposed weight that meet a non-zero input are added, where a dense product multiplies
//! every cell. On the band model this makes the forward pass and, most of all, the live
//! player's next bar faster; a training step gains less, since each step also transposes the
//! weights twice. `cargo xtask bench band` times the live answer, the forward pass and the
//! training step.
//!
//! Forward: `y = x · Wᵀ + b` for `x` `[rows, in]`, `W` `[out, in]` (as stored), `b` `[out]`.
//! Backward: `dW = dYᵀ · x` over the non-zero inputs, `db = Σ_rows dY`, and `dx = dY · W`
//! (dense, only when `x` itself needs a gradient).

use candle_core::{CpuStorage, Result, Shape, Tensor};

use super::cpu::op::{F32Op, Forward, Grads, Op, Operand};
use super::cpu::storage::{contiguous_f32, cpu_f32};
use super::cpu::storage::{on_cpu_f32, with_cpu_f32};
use super::huge_pages::uninit_f32;

/// Above this share of non-zero inputs the dense product is faster.
const MAX_DENSITY: f32 = 0.15;

/// `x · weightᵀ + bias` for an `x` `[rows, in]` that is mostly zeros; the layer's dense product
/// ([`super::matmul::linear_bias`], which also reports shapes that do not fit) when it is not,
/// or off the CPU, or not f32.
pub fn sparse_input_linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let fits = on_cpu_f32(x)
        && on_cpu_f32(weight)
        && on_cpu_f32(bias)
        && x.rank() == 2
        && weight.rank() == 2
        && x.dim(1)? == weight.dim(1)?
        && bias.dims() == [weight.dim(0)?];
    if !fits {
        return super::matmul::linear_bias(x, weight, bias);
    }
    let nonzero = with_cpu_f32(x, |v| Ok(v.iter().filter(|&&e| e != 0.0).count()))?;
    if nonzero as f32 > MAX_DENSITY * x.elem_count().max(1) as f32 {
        return super::matmul::linear_bias(x, weight, bias);
    }
    x.apply_op3(weight, bias, Op(SparseInputLinear))
}

struct SparseInputLinear;

/// `w` `[out, in]` as `[in, out]`: sixteen rows of `w` read side by side (sixteen sequential
/// streams), each step writing one 64-byte line of the result.
fn transpose(w: &[f32], out: usize, input: usize) -> Vec<f32> {
    const BLOCK: usize = 16;
    assert_eq!(w.len(), out * input);
    // Every element is written below.
    let mut t = uninit_f32(w.len());
    for o0 in (0..out).step_by(BLOCK) {
        let rows = (out - o0).min(BLOCK);
        let src: Vec<&[f32]> = (o0..o0 + rows).map(|o| &w[o * input..][..input]).collect();
        for (i, dst) in t.chunks_mut(out).enumerate() {
            let dst = &mut dst[o0..o0 + rows];
            for (d, row) in dst.iter_mut().zip(&src) {
                *d = row[i];
            }
        }
    }
    t
}

/// Up to this many rows the forward pass reads the stored weights by gathering (no transposed
/// copy): the live player's one bar at a time.
const GATHER_ROWS: usize = 4;

/// `dst += a · src`, element by element (the compiler vectorizes it).
#[inline(always)]
fn axpy(dst: &mut [f32], a: f32, src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += a * s);
}

impl F32Op<3> for SparseInputLinear {
    const NAME: &'static str = "sparse-input-linear";

    fn cpu_fwd(&self, [(x, x_l), (w, w_l), (b, b_l)]: [Operand; 3]) -> Forward {
        let (rows, input) = x_l.shape().dims2()?;
        let (out, _) = w_l.shape().dims2()?;
        let x = contiguous_f32(cpu_f32(x)?, x_l);
        let w = contiguous_f32(cpu_f32(w)?, w_l);
        let b = contiguous_f32(cpu_f32(b)?, b_l);
        let mut y = vec![0f32; rows * out];
        if rows <= GATHER_ROWS {
            for (y_row, x_row) in y.chunks_mut(out).zip(x.chunks(input)) {
                let on: Vec<(usize, f32)> = x_row
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| **v != 0.0)
                    .map(|(i, v)| (i, *v))
                    .collect();
                for ((y, w_row), b) in y_row.iter_mut().zip(w.chunks(input)).zip(b.iter()) {
                    *y = b + on.iter().map(|&(i, v)| v * w_row[i]).sum::<f32>();
                }
            }
            return Ok((CpuStorage::F32(y), Shape::from((rows, out))));
        }
        let w_t = transpose(&w, out, input); // [in, out]
        for (y_row, x_row) in y.chunks_mut(out).zip(x.chunks(input)) {
            y_row.copy_from_slice(&b);
            for (i, &v) in x_row.iter().enumerate() {
                if v != 0.0 {
                    axpy(y_row, v, &w_t[i * out..][..out]);
                }
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }

    fn bwd(&self, [x, w, b]: [&Tensor; 3], _res: &Tensor, grad_res: &Tensor) -> Grads<3> {
        let (out, input) = w.dims2()?;
        let grad_x = if x.track_op() {
            Some(grad_res.matmul(w)?)
        } else {
            None
        };
        let grad_w = if w.track_op() {
            let dw_t = with_cpu_f32(x, |x| {
                with_cpu_f32(grad_res, |g| {
                    let mut dw_t = vec![0f32; input * out]; // [in, out]
                    for (x_row, g_row) in x.chunks(input).zip(g.chunks(out)) {
                        for (i, &v) in x_row.iter().enumerate() {
                            if v != 0.0 {
                                axpy(&mut dw_t[i * out..][..out], v, g_row);
                            }
                        }
                    }
                    Ok(dw_t)
                })
            })?;
            Some(Tensor::from_vec(
                transpose(&dw_t, input, out),
                (out, input),
                w.device(),
            )?)
        } else {
            None
        };
        let grad_b = if b.track_op() {
            Some(grad_res.sum(0)?)
        } else {
            None
        };
        Ok([grad_x, grad_w, grad_b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_support::{gradients, max_abs_diff};
    use candle_core::{DType, Device, Var};

    /// A `[rows, cols]` roll-like input: about `density` of the cells on (1), a few 0.5.
    fn sparse(rows: usize, cols: usize, density: f32, seed: u32) -> Tensor {
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| {
                let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761) >> 8;
                let u = h as f32 / (1u32 << 24) as f32;
                if u < density * 0.8 {
                    1.0
                } else if u < density {
                    0.5
                } else {
                    0.0
                }
            })
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn matches_the_dense_layer_forward_and_backward() {
        let dev = Device::Cpu;
        for (rows, input, out, density) in [
            (7, 70, 33, 0.05),
            (1, 40, 8, 0.1),
            (GATHER_ROWS, 40, 17, 0.1),
            (5, 30, 9, 0.0),
        ] {
            let x = Var::from_tensor(&sparse(rows, input, density, 3)).unwrap();
            let w = Var::randn(0f32, 1f32, (out, input), &dev).unwrap();
            let b = Var::randn(0f32, 1f32, out, &dev).unwrap();
            let up = Tensor::randn(0f32, 1f32, (rows, out), &dev).unwrap();
            let ours = x.apply_op3(&w, &b, Op(SparseInputLinear)).unwrap();
            let want = x
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            assert!(max_abs_diff(&ours, &want) < 1e-4);
            let wrt = [x.as_tensor(), w.as_tensor(), b.as_tensor()];
            let g_ours = gradients(&ours, &up, &wrt);
            let g_want = gradients(&want, &up, &wrt);
            for (a, e) in g_ours.iter().zip(&g_want) {
                let (a, e) = (a.as_ref().unwrap(), e.as_ref().unwrap());
                assert!(max_abs_diff(a, e) < 1e-4, "{:?}", e.dims());
            }
        }
    }

    #[test]
    fn dense_inputs_and_bad_shapes_take_the_other_paths() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1f32, (6, 10), &dev).unwrap();
        let b = Tensor::randn(0f32, 1f32, 6, &dev).unwrap();
        for x in [sparse(4, 10, 0.05, 1), sparse(4, 10, 0.9, 2)] {
            let want = x
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            assert!(max_abs_diff(&sparse_input_linear(&x, &w, &b).unwrap(), &want) < 1e-4);
        }
        let f64_x = sparse(4, 10, 0.05, 1).to_dtype(DType::F64).unwrap();
        let (w64, b64) = (
            w.to_dtype(DType::F64).unwrap(),
            b.to_dtype(DType::F64).unwrap(),
        );
        assert!(sparse_input_linear(&f64_x, &w64, &b64).is_ok());
        assert!(sparse_input_linear(&sparse(4, 9, 0.05, 1), &w, &b).is_err());
    }
}
