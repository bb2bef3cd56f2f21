//! A GRU layer written for the CPU, like [`super::lstm`]: a sequence is one matmul of all its
//! inputs with the input weights followed by one op for the recurrence, whose steps multiply
//! only `h` by the recurrent weights and do the gate arithmetic in one pass (candle's GRU runs
//! about fifteen candle ops per step, each with its own temporaries and its own backward).
//! The weights keep PyTorch's `nn.GRU` names (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`,
//! `bias_hh_l0`), gate order (r, z, n) and arithmetic, which candle's `GRU` shares:
//!
//! ```text
//! r = σ(x W_irᵀ + b_ir + h W_hrᵀ + b_hr)
//! z = σ(x W_izᵀ + b_iz + h W_hzᵀ + b_hz)
//! n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn))
//! h' = (1 − z) ⊙ n + z ⊙ h
//! ```

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, bail};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::cpu::math::{sigmoid, tanh};
use super::cpu::op::{F32Op, Forward, Grads, Op, Operand, grad_if_tracked};
use super::cpu::storage::{contiguous_f32, cpu_f32};
use super::cpu::storage::{on_cpu_f32, with_cpu_f32};
use super::matmul::gemm_rows;

/// One GRU layer with PyTorch's parameter names, initialized as candle's `GRU` is (Kaiming
/// uniform weights, zero biases).
#[derive(Clone, Debug)]
pub struct GruCell {
    /// `[3·hidden, in]`, `[3·hidden, hidden]`, `[3·hidden]`, `[3·hidden]`: the variables
    /// themselves, read afresh on every pass (the optimizer updates them in place).
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    input: usize,
    hidden: usize,
}

/// The hidden state of a [`GruCell`] between steps: `[batch, hidden]`.
#[derive(Clone, Debug)]
pub struct GruState {
    h: Tensor,
}

impl GruState {
    pub fn new(h: Tensor) -> Self {
        Self { h }
    }

    /// `[batch, hidden]`, also the layer's output.
    pub fn h(&self) -> &Tensor {
        &self.h
    }
}

impl GruCell {
    pub fn new(input: usize, hidden: usize, vb: &VarBuilder) -> Result<Self> {
        let weights = candle_nn::init::DEFAULT_KAIMING_UNIFORM;
        let zero = candle_nn::Init::Const(0.0);
        Ok(Self {
            w_ih: vb.get_with_hints((3 * hidden, input), "weight_ih_l0", weights)?,
            w_hh: vb.get_with_hints((3 * hidden, hidden), "weight_hh_l0", weights)?,
            b_ih: vb.get_with_hints(3 * hidden, "bias_ih_l0", zero)?,
            b_hh: vb.get_with_hints(3 * hidden, "bias_hh_l0", zero)?,
            input,
            hidden,
        })
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The device the weights are on.
    pub fn device(&self) -> &candle_core::Device {
        self.w_hh.device()
    }

    /// Zeros for `batch` sequences.
    pub fn zero_state(&self, batch: usize) -> Result<GruState> {
        Ok(GruState::new(Tensor::zeros(
            (batch, self.hidden),
            self.w_hh.dtype(),
            self.w_hh.device(),
        )?))
    }

    /// The input's share of every step's gates, `bias_ih` included: `xs` `[steps, batch, in]`
    /// -> `[steps, batch, 3·hidden]`, one matmul for the whole sequence.
    pub fn input_gates(&self, xs: &Tensor) -> Result<Tensor> {
        let (_, _, input) = xs.dims3()?;
        if input != self.input {
            bail!("gru: inputs of size {input} for a layer of {}", self.input)
        }
        super::matmul::matmul_bias(xs, &self.w_ih.t()?, &self.b_ih)
    }

    /// Every hidden state of a run over `xs` `[steps, batch, in]` from `state`:
    /// `[steps, batch, hidden]`.
    pub fn sequence(&self, xs: &Tensor, state: &GruState) -> Result<Tensor> {
        self.recurrence(&self.input_gates(xs)?, &state.h)
    }

    /// One step: `x` `[batch, in]`.
    pub fn step(&self, x: &Tensor, state: &GruState) -> Result<GruState> {
        let hs = self.sequence(&x.unsqueeze(0)?, state)?; // [1, batch, hidden]
        Ok(GruState::new(hs.squeeze(0)?))
    }

    /// Every hidden state `[steps, batch, hidden]` from `h0` `[batch, hidden]`, given the
    /// inputs' share of the gates `gx` `[steps, batch, 3·hidden]`: one op with its own backward
    /// (through time) on the CPU, [`GruCell::recurrence_by_ops`] elsewhere.
    pub fn recurrence(&self, gx: &Tensor, h0: &Tensor) -> Result<Tensor> {
        if !(on_cpu_f32(gx) && on_cpu_f32(h0) && on_cpu_f32(&self.w_hh) && on_cpu_f32(&self.b_hh)) {
            return self.recurrence_by_ops(gx, h0);
        }
        // The weights go in as stored (no copy per call: the live player steps one bar at a
        // time); h0 and the recurrent bias, both small, go in as one vector.
        let h0_b = Tensor::cat(&[h0.flatten_all()?, self.b_hh.clone()], 0)?;
        gx.apply_op3(
            &self.w_hh,
            &h0_b,
            Op(GruRecurrence {
                hidden: self.hidden,
                saved: std::sync::Mutex::new(None),
            }),
        )
    }

    /// [`GruCell::recurrence`] in candle ops, step by step, as candle's `GRU` computes it (other
    /// devices; the tests' reference).
    pub fn recurrence_by_ops(&self, gx: &Tensor, h0: &Tensor) -> Result<Tensor> {
        let n = self.hidden;
        let mut h = h0.clone();
        let mut hs = Vec::new();
        for t in 0..gx.dim(0)? {
            let gx = gx.get(t)?; // [batch, 3·hidden]
            let gh = h.matmul(&self.w_hh.t()?)?.broadcast_add(&self.b_hh)?;
            let r = candle_nn::ops::sigmoid(&(gx.narrow(1, 0, n)? + gh.narrow(1, 0, n)?)?)?;
            let z = candle_nn::ops::sigmoid(&(gx.narrow(1, n, n)? + gh.narrow(1, n, n)?)?)?;
            let cand = (gx.narrow(1, 2 * n, n)? + (r * gh.narrow(1, 2 * n, n)?)?)?.tanh()?;
            h = ((&z * &h)? - ((&z - 1.0)? * cand)?)?;
            hs.push(h.clone());
        }
        Tensor::stack(&hs, 0)
    }
}

/// [`GruCell::recurrence`] as one op: inputs `gx` `[steps, batch, 3·hidden]`, `w_hh`
/// `[3·hidden, hidden]` (the recurrent weights as stored), `h0_b` `[batch·hidden + 3·hidden]`
/// (h0, then the recurrent bias); output every h `[steps, batch, hidden]`.
struct GruRecurrence {
    hidden: usize,
    /// Per step and row, for the backward pass: r, z, n and the recurrent share of n's
    /// pre-activation (`h W_hnᵀ + b_hn`), `[steps, batch, 4·hidden]`.
    saved: std::sync::Mutex<Option<Vec<f32>>>,
}

impl GruRecurrence {
    /// (steps, batch), checked against the other shapes.
    fn dims(&self, gx: &Layout, w_hh: &Layout, h0_b: &Layout) -> Result<(usize, usize)> {
        let n = self.hidden;
        let (&[steps, batch, three_n], &[rows, cols], &[len]) =
            (gx.dims(), w_hh.dims(), h0_b.dims())
        else {
            bail!(
                "gru recurrence: expected [steps, batch, 3·hidden], [3·hidden, hidden], [batch·hidden + 3·hidden]"
            )
        };
        if three_n != 3 * n || rows != 3 * n || cols != n || len != (batch + 3) * n {
            bail!(
                "gru recurrence: {:?}, {:?} and {:?} do not fit hidden size {n}",
                gx.dims(),
                w_hh.dims(),
                h0_b.dims()
            )
        }
        Ok((steps, batch))
    }
}

/// One row of a forward step: the new h from the inputs' share `gx` and the recurrent share
/// `gh` of the gates (`[3·hidden]` each) and the old h; keeps r, z, n and `gh`'s n part.
fn unit_row(n: usize, h_new: &mut [f32], keep: &mut [f32], gx: &[f32], gh: &[f32], h_old: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::cpu::simd::has_avx2_fma() {
        // SAFETY: the CPU has the features the kernel is compiled for.
        return unsafe { unit_row_avx2(n, h_new, keep, gx, gh, h_old) };
    }
    unit_row_scalar(0, n, h_new, keep, gx, gh, h_old);
}

/// [`unit_row`] in eight-lane registers, the units past the last multiple of 8 in scalar code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn unit_row_avx2(
    n: usize,
    h_new: &mut [f32],
    keep: &mut [f32],
    gx: &[f32],
    gh: &[f32],
    h_old: &[f32],
) {
    use super::cpu::simd::avx2::{sigmoid, tanh};
    use std::arch::x86_64::*;
    assert!(h_new.len() >= n && keep.len() >= 4 * n && gx.len() >= 3 * n);
    assert!(gh.len() >= 3 * n && h_old.len() >= n);
    let vectors = n / 8 * 8;
    let (ph, pk, px, pg, po) = (
        h_new.as_mut_ptr(),
        keep.as_mut_ptr(),
        gx.as_ptr(),
        gh.as_ptr(),
        h_old.as_ptr(),
    );
    for j in (0..vectors).step_by(8) {
        // SAFETY: j + 8 ≤ n and the slices hold n, 4n, 3n, 3n and n floats (asserted above).
        unsafe {
            let at = |p: *const f32, k: usize| _mm256_loadu_ps(p.add(k * n + j));
            let r = sigmoid(_mm256_add_ps(at(px, 0), at(pg, 0)));
            let z = sigmoid(_mm256_add_ps(at(px, 1), at(pg, 1)));
            let gh_n = at(pg, 2);
            let cand = tanh(_mm256_fmadd_ps(r, gh_n, at(px, 2)));
            // (1 − z)·cand + z·h_old = cand + z·(h_old − cand)
            let h = _mm256_fmadd_ps(z, _mm256_sub_ps(at(po, 0), cand), cand);
            _mm256_storeu_ps(ph.add(j), h);
            _mm256_storeu_ps(pk.add(j), r);
            _mm256_storeu_ps(pk.add(n + j), z);
            _mm256_storeu_ps(pk.add(2 * n + j), cand);
            _mm256_storeu_ps(pk.add(3 * n + j), gh_n);
        }
    }
    unit_row_scalar(vectors, n, h_new, keep, gx, gh, h_old);
}

/// [`unit_row`] for the units `first..n`.
#[inline(always)]
fn unit_row_scalar(
    first: usize,
    n: usize,
    h_new: &mut [f32],
    keep: &mut [f32],
    gx: &[f32],
    gh: &[f32],
    h_old: &[f32],
) {
    for j in first..n {
        let r = sigmoid(gx[j] + gh[j]);
        let z = sigmoid(gx[n + j] + gh[n + j]);
        let cand = tanh(gx[2 * n + j] + r * gh[2 * n + j]);
        h_new[j] = (1.0 - z) * cand + z * h_old[j];
        (keep[j], keep[n + j], keep[2 * n + j], keep[3 * n + j]) = (r, z, cand, gh[2 * n + j]);
    }
}

/// Rows are split between threads only when a step has this much gate arithmetic.
const PARALLEL_CELLS: usize = 1 << 14;

impl F32Op<3> for GruRecurrence {
    const NAME: &'static str = "gru-recurrence";

    fn cpu_fwd(&self, [(gx, gx_l), (w_hh, w_hh_l), (h0_b, h0_b_l)]: [Operand; 3]) -> Forward {
        let (steps, batch) = self.dims(gx_l, w_hh_l, h0_b_l)?;
        let n = self.hidden;
        let gx = contiguous_f32(cpu_f32(gx)?, gx_l);
        let w = contiguous_f32(cpu_f32(w_hh)?, w_hh_l);
        let h0_b = contiguous_f32(cpu_f32(h0_b)?, h0_b_l);
        let (h0, bias) = h0_b.split_at(batch * n);
        let mut h = h0.to_vec();
        let mut hs = vec![0f32; steps * batch * n];
        let mut saved = vec![0f32; steps * batch * 4 * n];
        let mut gh = vec![0f32; batch * 3 * n];
        for t in 0..steps {
            for row in gh.chunks_mut(3 * n) {
                row.copy_from_slice(bias);
            }
            // gh += h · W_hhᵀ. SAFETY: `gh` is [batch, 3n], `h` [batch, n], `w` [3n, n], all
            // contiguous.
            unsafe { gemm_rows(&mut gh, &h, (n, 1), &w, (1, n), (batch, 3 * n, n)) };
            let gx_t = &gx[t * batch * 3 * n..][..batch * 3 * n];
            let h_t = &mut hs[t * batch * n..][..batch * n];
            let saved_t = &mut saved[t * batch * 4 * n..][..batch * 4 * n];
            // Small steps stay in one task on this thread.
            let min_rows = if batch * n >= PARALLEL_CELLS {
                1
            } else {
                batch
            };
            h_t.par_chunks_mut(n)
                .zip(saved_t.par_chunks_mut(4 * n))
                .zip(gx_t.par_chunks(3 * n))
                .zip(gh.par_chunks(3 * n))
                .zip(h.par_chunks(n))
                .with_min_len(min_rows)
                .for_each(|((((h_new, keep), gx), gh), h_old)| {
                    unit_row(n, h_new, keep, gx, gh, h_old)
                });
            h.copy_from_slice(h_t);
        }
        *self.saved.lock().expect("gru recurrence lock") = Some(saved);
        Ok((CpuStorage::F32(hs), Shape::from((steps, batch, n))))
    }

    fn bwd(&self, [gx, w_hh, h0_b]: [&Tensor; 3], res: &Tensor, grad_res: &Tensor) -> Grads<3> {
        let (steps, batch) = self.dims(gx.layout(), w_hh.layout(), h0_b.layout())?;
        let n = self.hidden;
        let saved = self.saved.lock().expect("gru recurrence lock");
        let Some(saved) = saved.as_ref() else {
            bail!("gru recurrence: backward without a forward pass")
        };
        let (ggx, gw, gh0_b) = with_cpu_f32(w_hh, |w| {
            with_cpu_f32(h0_b, |h0_b| {
                with_cpu_f32(res, |hs| {
                    with_cpu_f32(grad_res, |ghs| {
                        let h0 = &h0_b[..batch * n];
                        let mut ggx = vec![0f32; steps * batch * 3 * n];
                        // The recurrent share's gradient per step, [batch, 3n].
                        let mut dgh = vec![0f32; batch * 3 * n];
                        let mut gw = vec![0f32; 3 * n * n];
                        let mut db = vec![0f32; 3 * n];
                        // The gradient reaching h_t from later steps; then h_{t−1}'s.
                        let mut dh_next = vec![0f32; batch * n];
                        let mut dh_prev = vec![0f32; batch * n];
                        for t in (0..steps).rev() {
                            let keep = &saved[t * batch * 4 * n..][..batch * 4 * n];
                            let h_prev = if t > 0 {
                                &hs[(t - 1) * batch * n..][..batch * n]
                            } else {
                                h0
                            };
                            let gh_t = &ghs[t * batch * n..][..batch * n];
                            let dgx = &mut ggx[t * batch * 3 * n..][..batch * 3 * n];
                            for b in 0..batch {
                                let keep = &keep[b * 4 * n..][..4 * n];
                                let dgx = &mut dgx[b * 3 * n..][..3 * n];
                                let dgh = &mut dgh[b * 3 * n..][..3 * n];
                                for j in 0..n {
                                    let (r, z, cand, gh_n) =
                                        (keep[j], keep[n + j], keep[2 * n + j], keep[3 * n + j]);
                                    let dh = gh_t[b * n + j] + dh_next[b * n + j];
                                    let d_cand = dh * (1.0 - z) * (1.0 - cand * cand);
                                    let d_z = dh * (h_prev[b * n + j] - cand) * z * (1.0 - z);
                                    let d_r = d_cand * gh_n * r * (1.0 - r);
                                    (dgx[j], dgx[n + j], dgx[2 * n + j]) = (d_r, d_z, d_cand);
                                    (dgh[j], dgh[n + j], dgh[2 * n + j]) = (d_r, d_z, d_cand * r);
                                    dh_prev[b * n + j] = dh * z;
                                }
                            }
                            // SAFETY: all buffers contiguous with the sizes named.
                            unsafe {
                                // dW_hh += dghᵀ · h_prev.
                                gemm_rows(
                                    &mut gw,
                                    &dgh,
                                    (1, 3 * n),
                                    h_prev,
                                    (n, 1),
                                    (3 * n, n, batch),
                                );
                                // dh_prev += dgh · W_hh.
                                gemm_rows(
                                    &mut dh_prev,
                                    &dgh,
                                    (3 * n, 1),
                                    w,
                                    (n, 1),
                                    (batch, n, 3 * n),
                                );
                            }
                            for row in dgh.chunks(3 * n) {
                                db.iter_mut().zip(row).for_each(|(d, v)| *d += v);
                            }
                            std::mem::swap(&mut dh_next, &mut dh_prev);
                        }
                        dh_next.extend_from_slice(&db);
                        Ok((ggx, gw, dh_next))
                    })
                })
            })
        })?;
        Ok([
            grad_if_tracked(gx, ggx, (steps, batch, 3 * n))?,
            grad_if_tracked(w_hh, gw, (3 * n, n))?,
            grad_if_tracked(h0_b, gh0_b, (batch + 3) * n)?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_support::{gradients, max_abs_diff, random};
    use candle_core::{DType, Device, Var};
    use candle_nn::rnn::{GRUConfig, RNN};

    /// The op gives candle's own `GRU` values (same variables, so the shipped band weights
    /// mean what they meant) and the step-by-step candle ops' gradients for the input gates,
    /// the initial state and all four variables, with a batch large enough to split rows
    /// between threads.
    #[test]
    fn recurrence_matches_candle_gru_forward_and_backward() {
        for (steps, batch, input, hidden) in [(5, 3, 4, 6), (4, 5, 3, 13), (3, 40, 3, 520)] {
            let map = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
            let cell = GruCell::new(input, hidden, &vb).unwrap();
            // Non-zero biases, so that b_hn's place inside r ⊙ (…) is tested.
            for (name, var) in map.data().lock().unwrap().iter() {
                if name.starts_with("bias") {
                    var.set(&random(&[3 * hidden], 9, 0.5)).unwrap();
                }
            }
            let candle_gru = candle_nn::rnn::gru(input, hidden, GRUConfig::default(), vb).unwrap();
            let xs = Var::from_tensor(&random(&[steps, batch, input], 1, 1.5)).unwrap();
            let h0 = Var::from_tensor(&random(&[batch, hidden], 2, 0.8)).unwrap();
            let (xs, h0) = (xs.as_tensor(), h0.as_tensor());

            let ours = cell.sequence(xs, &GruState::new(h0.clone())).unwrap();
            assert_eq!(ours.dims(), &[steps, batch, hidden]);
            let mut state = candle_nn::rnn::GRUState { h: h0.clone() };
            let mut theirs = Vec::new();
            for t in 0..steps {
                state = candle_gru.step(&xs.get(t).unwrap(), &state).unwrap();
                theirs.push(state.h().clone());
            }
            let theirs = Tensor::stack(&theirs, 0).unwrap();
            let diff = max_abs_diff(&ours, &theirs);
            assert!(diff < 1e-5, "values {diff}");

            let gx = Var::from_tensor(&cell.input_gates(xs).unwrap().detach()).unwrap();
            let by_op = cell.recurrence(gx.as_tensor(), h0).unwrap();
            let by_ops = cell.recurrence_by_ops(gx.as_tensor(), h0).unwrap();
            assert!(max_abs_diff(&by_op, &by_ops) < 1e-5);
            let upstream = random(&[steps, batch, hidden], 4, 1.0);
            let vars = map.all_vars();
            let mut wrt = vec![xs, h0, gx.as_tensor()];
            wrt.extend(vars.iter().map(|v| v.as_tensor()));
            for (y, what) in [(&ours, "sequence"), (&by_op, "recurrence")] {
                let reference = if what == "sequence" { &theirs } else { &by_ops };
                let ours = gradients(y, &upstream, &wrt);
                let theirs = gradients(reference, &upstream, &wrt);
                for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                    match (a, b) {
                        (Some(a), Some(b)) => {
                            let diff = max_abs_diff(a, b);
                            assert!(diff < 1e-4, "{what}, gradient {i}: {diff}");
                        }
                        (None, None) => {}
                        _ => panic!("{what}, gradient {i} exists on one side only"),
                    }
                }
            }
        }
    }

    #[test]
    fn step_is_a_sequence_of_one_and_bad_shapes_are_errors() {
        let map = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let cell = GruCell::new(3, 4, &vb).unwrap();
        let x = random(&[2, 3], 5, 1.0);
        let state = GruState::new(random(&[2, 4], 6, 1.0));
        let one = cell.step(&x, &state).unwrap();
        let seq = cell.sequence(&x.unsqueeze(0).unwrap(), &state).unwrap();
        assert!(max_abs_diff(one.h(), &seq.get(0).unwrap()) < 1e-7);
        assert!(cell.step(&random(&[2, 5], 7, 1.0), &state).is_err());
        assert!(
            cell.recurrence(&random(&[2, 2, 12], 8, 1.0), &random(&[3, 4], 9, 1.0))
                .is_err()
        );
    }
}
