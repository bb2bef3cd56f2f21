//! An LSTM direction written for the CPU: one matmul of `[x_t, h]` with the stacked weights per
//! step (candle's cell does two matmuls and two bias adds). The weights keep PyTorch's `nn.LSTM`
//! names (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `…_reverse` for the
//! backward direction) and gate order (i, f, g, o).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::conv_kernel::{Mat, contiguous_f32, cpu_f32, sgemm};
use super::fused::{on_cpu_f32, sigmoid, with_cpu_f32};
use super::matmul::parallelism;

/// One LSTM direction with PyTorch's parameter names and gate order (i, f, g, o).
#[derive(Clone, Debug)]
pub struct LstmCell {
    /// `[4·hidden, in]`, `[4·hidden, hidden]`, `[4·hidden]`, `[4·hidden]`: the variables
    /// themselves (anything derived from them must be recomputed on every pass, since the
    /// optimizer updates the variables in place).
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    hidden: usize,
}

/// The weights of one pass of an [`LstmCell`].
pub struct LstmWeights {
    /// `[in + hidden, 4·hidden]`: transposed `weight_ih` stacked over transposed `weight_hh`,
    /// so that a step is one matmul of `[x_t, h]`.
    w_t: Tensor,
    /// `[4·hidden]`: `bias_ih + bias_hh`.
    bias: Tensor,
    hidden: usize,
}

impl LstmCell {
    pub fn new(input: usize, hidden: usize, suffix: &str, vb: &VarBuilder) -> Result<Self> {
        let bound = 1.0 / (hidden as f64).sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Self {
            w_ih: vb.get_with_hints((4 * hidden, input), &format!("weight_ih_l0{suffix}"), init)?,
            w_hh: vb.get_with_hints(
                (4 * hidden, hidden),
                &format!("weight_hh_l0{suffix}"),
                init,
            )?,
            b_ih: vb.get_with_hints(4 * hidden, &format!("bias_ih_l0{suffix}"), init)?,
            b_hh: vb.get_with_hints(4 * hidden, &format!("bias_hh_l0{suffix}"), init)?,
            hidden,
        })
    }

    /// The stacked weights for one pass over a sequence.
    pub fn weights(&self) -> Result<LstmWeights> {
        Ok(LstmWeights {
            w_t: Tensor::cat(&[self.w_ih.t()?, self.w_hh.t()?], 0)?.contiguous()?,
            bias: (&self.b_ih + &self.b_hh)?,
            hidden: self.hidden,
        })
    }
}

impl LstmWeights {
    /// One step from the input `x` `[batch, in]` (a constant: slicing a projected sequence
    /// instead would make every step's gradient a full-sequence tensor); returns (h, c).
    pub fn step(&self, x: &Tensor, h: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
        // [batch, 4·hidden]
        let gates = super::matmul::matmul_bias(&Tensor::cat(&[x, h], 1)?, &self.w_t, &self.bias)?;
        let n = self.hidden;
        if on_cpu_f32(&gates) && on_cpu_f32(c) {
            let hc = gates.apply_op2(c, LstmGates { hidden: n })?; // [batch, 2·hidden]
            return Ok((hc.narrow(1, 0, n)?, hc.narrow(1, n, n)?));
        }
        lstm_gates_reference(&gates, c, n)
    }
}

impl LstmWeights {
    /// Every hidden state of a run over `xs` `[steps, batch, in]` from `h0`, `c0`
    /// `[batch, hidden]`, as `[steps, batch, hidden]`: one op with its own backward
    /// (backpropagation through time), where [`LstmWeights::step`] records about ten candle
    /// ops per step (and their zero-padded gradients) on the autograd graph.
    pub fn sequence(&self, xs: &Tensor, h0: &Tensor, c0: &Tensor) -> Result<Tensor> {
        let n = self.hidden;
        if !(on_cpu_f32(xs) && on_cpu_f32(h0) && on_cpu_f32(c0) && on_cpu_f32(&self.w_t)) {
            let (mut h, mut c) = (h0.clone(), c0.clone());
            let mut hs = Vec::new();
            for t in 0..xs.dim(0)? {
                (h, c) = self.step(&xs.get(t)?, &h, &c)?;
                hs.push(h.clone());
            }
            return Tensor::stack(&hs, 0);
        }
        let hc0 = Tensor::cat(&[h0, c0], 1)?; // [batch, 2·hidden]
        let wb = Tensor::cat(&[&self.w_t, &self.bias.unsqueeze(0)?], 0)?; // [in + hidden + 1, 4·hidden]
        xs.apply_op3(
            &hc0,
            &wb,
            LstmSequence {
                hidden: n,
                saved: std::sync::Mutex::new(None),
            },
        )
    }
}

/// [`LstmWeights::sequence`] as one op: inputs `xs` `[steps, batch, in]`, `hc0`
/// `[batch, 2·hidden]` (h0 then c0), `wb` `[in + hidden + 1, 4·hidden]` (the stacked weights
/// with the bias as the last row); output every h `[steps, batch, hidden]`.
struct LstmSequence {
    hidden: usize,
    /// The forward pass's gate activations `[steps, batch, 4·hidden]` and cells
    /// `[steps, batch, hidden]`, for the backward pass.
    saved: std::sync::Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

/// Sizes of one sequence run, checked.
struct SequenceDims {
    steps: usize,
    batch: usize,
    input: usize,
}

impl LstmSequence {
    fn dims(&self, xs: &Layout, hc0: &Layout, wb: &Layout) -> Result<SequenceDims> {
        let n = self.hidden;
        let (&[steps, batch, input], &[b2, two_n], &[rows, four_n]) =
            (xs.dims(), hc0.dims(), wb.dims())
        else {
            bail!("lstm sequence: expected [steps, batch, in], [batch, 2·hidden], [rows, 4·hidden]")
        };
        if b2 != batch || two_n != 2 * n || four_n != 4 * n || rows != input + n + 1 {
            bail!(
                "lstm sequence: {:?}, {:?} and {:?} do not fit hidden size {n}",
                xs.dims(),
                hc0.dims(),
                wb.dims()
            )
        }
        Ok(SequenceDims {
            steps,
            batch,
            input,
        })
    }
}

/// `[x_t, h]` rows of one step: `[batch, in + hidden]`.
fn step_inputs(inp: &mut [f32], x_t: &[f32], h: &[f32], input: usize, n: usize) {
    for (b, row) in inp.chunks_mut(input + n).enumerate() {
        row[..input].copy_from_slice(&x_t[b * input..][..input]);
        row[input..].copy_from_slice(&h[b * n..][..n]);
    }
}

impl CustomOp3 for LstmSequence {
    fn name(&self) -> &'static str {
        "lstm-sequence"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_l: &Layout,
        hc0: &CpuStorage,
        hc0_l: &Layout,
        wb: &CpuStorage,
        wb_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let SequenceDims {
            steps,
            batch,
            input,
        } = self.dims(xs_l, hc0_l, wb_l)?;
        let n = self.hidden;
        let k = input + n;
        let xs = contiguous_f32(cpu_f32(xs)?, xs_l);
        let hc0 = contiguous_f32(cpu_f32(hc0)?, hc0_l);
        let wb = contiguous_f32(cpu_f32(wb)?, wb_l);
        let (w, bias) = wb.split_at(k * 4 * n);
        let mut hs = vec![0f32; steps * batch * n];
        let mut acts = vec![0f32; steps * batch * 4 * n];
        let mut cells = vec![0f32; steps * batch * n];
        let mut inp = vec![0f32; batch * k];
        let (mut h, mut c): (Vec<f32>, Vec<f32>) = (
            hc0.chunks(2 * n).flat_map(|r| r[..n].to_vec()).collect(),
            hc0.chunks(2 * n).flat_map(|r| r[n..].to_vec()).collect(),
        );
        for t in 0..steps {
            step_inputs(
                &mut inp,
                &xs[t * batch * input..][..batch * input],
                &h,
                input,
                n,
            );
            let gates = &mut acts[t * batch * 4 * n..][..batch * 4 * n];
            gates
                .chunks_mut(4 * n)
                .for_each(|row| row.copy_from_slice(bias));
            // SAFETY: `gates` is [batch, 4n], `inp` [batch, k], `w` [k, 4n], all contiguous.
            unsafe { gemm_rows(gates, &inp, (k, 1), w, (4 * n, 1), (batch, 4 * n, k)) };
            let cell = &mut cells[t * batch * n..][..batch * n];
            let h_t = &mut hs[t * batch * n..][..batch * n];
            gates
                .par_chunks_mut(4 * n)
                .zip(cell.par_chunks_mut(n))
                .zip(h_t.par_chunks_mut(n))
                .zip(c.par_chunks(n))
                .for_each(|(((a, c_new), h_new), c_old)| {
                    for j in 0..n {
                        let (i, f, g, o) = activations(a, n, j);
                        c_new[j] = f * c_old[j] + i * g;
                        h_new[j] = o * tanh(c_new[j]);
                        (a[j], a[n + j], a[2 * n + j], a[3 * n + j]) = (i, f, g, o);
                    }
                });
            h.copy_from_slice(h_t);
            c.copy_from_slice(cell);
        }
        *self.saved.lock().expect("lstm sequence lock") = Some((acts, cells));
        Ok((CpuStorage::F32(hs), Shape::from((steps, batch, n))))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        hc0: &Tensor,
        wb: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let SequenceDims {
            steps,
            batch,
            input,
        } = self.dims(xs.layout(), hc0.layout(), wb.layout())?;
        let n = self.hidden;
        let k = input + n;
        let saved = self.saved.lock().expect("lstm sequence lock");
        let Some((acts, cells)) = saved.as_ref() else {
            bail!("lstm sequence: backward without a forward pass")
        };
        let (gx, ghc0, gwb) = with_cpu_f32(xs, |xs| {
            with_cpu_f32(hc0, |hc0| {
                with_cpu_f32(wb, |wb| {
                    with_cpu_f32(res, |hs| {
                        with_cpu_f32(grad_res, |ghs| {
                            let w = &wb[..k * 4 * n];
                            let mut gx = vec![0f32; steps * batch * input];
                            let mut gwb = vec![0f32; (k + 1) * 4 * n];
                            let (mut dh, mut dc) = (vec![0f32; batch * n], vec![0f32; batch * n]);
                            let mut dgates = vec![0f32; batch * 4 * n];
                            let mut inp = vec![0f32; batch * k];
                            let mut dinp = vec![0f32; batch * k];
                            let h0: Vec<f32> =
                                hc0.chunks(2 * n).flat_map(|r| r[..n].to_vec()).collect();
                            let c0: Vec<f32> =
                                hc0.chunks(2 * n).flat_map(|r| r[n..].to_vec()).collect();
                            for t in (0..steps).rev() {
                                let a = &acts[t * batch * 4 * n..][..batch * 4 * n];
                                let c_t = &cells[t * batch * n..][..batch * n];
                                let c_prev = if t > 0 {
                                    &cells[(t - 1) * batch * n..][..batch * n]
                                } else {
                                    &c0[..]
                                };
                                let h_prev = if t > 0 {
                                    &hs[(t - 1) * batch * n..][..batch * n]
                                } else {
                                    &h0[..]
                                };
                                let gh_t = &ghs[t * batch * n..][..batch * n];
                                dgates
                                    .par_chunks_mut(4 * n)
                                    .zip(dc.par_chunks_mut(n))
                                    .enumerate()
                                    .for_each(|(b, (dg, dc))| {
                                        let a = &a[b * 4 * n..][..4 * n];
                                        for j in 0..n {
                                            let (i, f, g, o) =
                                                (a[j], a[n + j], a[2 * n + j], a[3 * n + j]);
                                            let tc = tanh(c_t[b * n + j]);
                                            let dh = gh_t[b * n + j] + dh[b * n + j];
                                            let dcell = dc[j] + dh * o * (1.0 - tc * tc);
                                            dg[j] = dcell * g * i * (1.0 - i);
                                            dg[n + j] = dcell * c_prev[b * n + j] * f * (1.0 - f);
                                            dg[2 * n + j] = dcell * i * (1.0 - g * g);
                                            dg[3 * n + j] = dh * tc * o * (1.0 - o);
                                            dc[j] = dcell * f;
                                        }
                                    });
                                step_inputs(
                                    &mut inp,
                                    &xs[t * batch * input..][..batch * input],
                                    h_prev,
                                    input,
                                    n,
                                );
                                // dW += [x_t, h]ᵀ · dgates; d bias += Σ_rows dgates.
                                // SAFETY: all buffers contiguous with the sizes named.
                                unsafe {
                                    gemm_rows(
                                        &mut gwb[..k * 4 * n],
                                        &inp,
                                        (1, k),
                                        &dgates,
                                        (4 * n, 1),
                                        (k, 4 * n, batch),
                                    )
                                };
                                let gb = &mut gwb[k * 4 * n..];
                                for row in dgates.chunks(4 * n) {
                                    gb.iter_mut().zip(row).for_each(|(s, v)| *s += v);
                                }
                                // d[x_t, h] = dgates · Wᵀ.
                                dinp.fill(0.0);
                                // SAFETY: as above.
                                unsafe {
                                    gemm_rows(
                                        &mut dinp,
                                        &dgates,
                                        (4 * n, 1),
                                        w,
                                        (1, 4 * n),
                                        (batch, k, 4 * n),
                                    )
                                };
                                let gx_t = &mut gx[t * batch * input..][..batch * input];
                                for (b, row) in dinp.chunks(k).enumerate() {
                                    gx_t[b * input..][..input].copy_from_slice(&row[..input]);
                                    dh[b * n..][..n].copy_from_slice(&row[input..]);
                                }
                            }
                            let ghc0: Vec<f32> = dh
                                .chunks(n)
                                .zip(dc.chunks(n))
                                .flat_map(|(h, c)| h.iter().chain(c).copied())
                                .collect();
                            Ok((gx, ghc0, gwb))
                        })
                    })
                })
            })
        })?;
        let device = xs.device();
        Ok((
            xs.track_op()
                .then(|| Tensor::from_vec(gx, (steps, batch, input), device))
                .transpose()?,
            hc0.track_op()
                .then(|| Tensor::from_vec(ghc0, (batch, 2 * n), device))
                .transpose()?,
            wb.track_op()
                .then(|| Tensor::from_vec(gwb, (k + 1, 4 * n), device))
                .transpose()?,
        ))
    }
}

/// `dst (m×n, contiguous) += lhs (m×k) · rhs (k×n)`, operands given by (row, column) strides.
///
/// # Safety
/// The slices must hold every element the strides address.
unsafe fn gemm_rows(
    dst: &mut [f32],
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    (m, n, k): (usize, usize, usize),
) {
    let operand = |data: &[f32], rs, cs| Mat {
        ptr: data.as_ptr(),
        rs,
        cs,
    };
    // SAFETY: forwarded from the caller; `dst` is contiguous m×n.
    unsafe {
        sgemm(
            (m, n, k),
            dst.as_mut_ptr(),
            (n, 1),
            true,
            operand(lhs, lhs_rs, lhs_cs),
            operand(rhs, rhs_rs, rhs_cs),
            parallelism(m * n * k),
        )
    }
}

/// The gate arithmetic of one step in candle ops: `gates` `[batch, 4·hidden]` (i, f, g, o
/// pre-activations), `c` `[batch, hidden]`; returns (h, c).
pub fn lstm_gates_reference(gates: &Tensor, c: &Tensor, n: usize) -> Result<(Tensor, Tensor)> {
    let sig = candle_nn::ops::sigmoid(gates)?;
    let (i, f, o) = (
        sig.narrow(1, 0, n)?,
        sig.narrow(1, n, n)?,
        sig.narrow(1, 3 * n, n)?,
    );
    let g = gates.narrow(1, 2 * n, n)?.tanh()?;
    let c = ((f * c)? + (i * g)?)?;
    let h = (o * c.tanh()?)?;
    Ok((h, c))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// The gate arithmetic of [`lstm_gates_reference`] as one op, (gates, c) to [h, new c]
/// `[batch, 2·hidden]`: candle spends about ten full-size temporaries (and as many passes) on
/// it, for a step whose matmul is small.
struct LstmGates {
    hidden: usize,
}

/// Activations of one row: (i, f, g, o) at unit `j`.
#[inline(always)]
fn activations(gates: &[f32], n: usize, j: usize) -> (f32, f32, f32, f32) {
    (
        sigmoid(gates[j]),
        sigmoid(gates[n + j]),
        tanh(gates[2 * n + j]),
        sigmoid(gates[3 * n + j]),
    )
}

impl CustomOp2 for LstmGates {
    fn name(&self) -> &'static str {
        "lstm-gates"
    }

    fn cpu_fwd(
        &self,
        gates: &CpuStorage,
        gates_l: &Layout,
        c: &CpuStorage,
        c_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = self.hidden;
        let (&[batch, four_n], &[batch_c, n_c]) = (gates_l.dims(), c_l.dims()) else {
            bail!("lstm gates: expected [batch, 4·hidden] and [batch, hidden] tensors")
        };
        if four_n != 4 * n || batch_c != batch || n_c != n {
            bail!(
                "lstm gates: gates {:?} and cell {:?} do not fit hidden size {n}",
                gates_l.dims(),
                c_l.dims()
            )
        }
        let gates = contiguous_f32(cpu_f32(gates)?, gates_l);
        let c = contiguous_f32(cpu_f32(c)?, c_l);
        let mut out = vec![0f32; batch * 2 * n];
        out.par_chunks_mut(2 * n)
            .zip(gates.par_chunks(4 * n))
            .zip(c.par_chunks(n))
            .for_each(|((out, gates), c)| {
                let (h_out, c_out) = out.split_at_mut(n);
                for j in 0..n {
                    let (i, f, g, o) = activations(gates, n, j);
                    let c_new = f * c[j] + i * g;
                    c_out[j] = c_new;
                    h_out[j] = o * tanh(c_new);
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((batch, 2 * n))))
    }

    fn bwd(
        &self,
        gates: &Tensor,
        c: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = self.hidden;
        let batch = gates.dim(0)?;
        let (g_gates, g_c) = with_cpu_f32(gates, |gates| {
            with_cpu_f32(c, |c| {
                with_cpu_f32(res, |hc| {
                    with_cpu_f32(grad_res, |grad| {
                        let mut g_gates = vec![0f32; batch * 4 * n];
                        let mut g_c = vec![0f32; batch * n];
                        g_gates
                            .par_chunks_mut(4 * n)
                            .zip(g_c.par_chunks_mut(n))
                            .enumerate()
                            .for_each(|(b, (g_gates, g_c))| {
                                let gates = &gates[b * 4 * n..][..4 * n];
                                let c = &c[b * n..][..n];
                                let c_new = &hc[b * 2 * n + n..][..n];
                                let (gh, gc) = grad[b * 2 * n..][..2 * n].split_at(n);
                                for j in 0..n {
                                    let (i, f, g, o) = activations(gates, n, j);
                                    let t = tanh(c_new[j]);
                                    // The loss reaches the new cell through h = o·tanh(c)
                                    // and directly.
                                    let dc = gc[j] + gh[j] * o * (1.0 - t * t);
                                    g_gates[j] = dc * g * i * (1.0 - i);
                                    g_gates[n + j] = dc * c[j] * f * (1.0 - f);
                                    g_gates[2 * n + j] = dc * i * (1.0 - g * g);
                                    g_gates[3 * n + j] = gh[j] * t * o * (1.0 - o);
                                    g_c[j] = dc * f;
                                }
                            });
                        Ok((g_gates, g_c))
                    })
                })
            })
        })?;
        let dev = gates.device();
        Ok((
            gates
                .track_op()
                .then(|| Tensor::from_vec(g_gates, (batch, 4 * n), dev))
                .transpose()?,
            c.track_op()
                .then(|| Tensor::from_vec(g_c, (batch, n), dev))
                .transpose()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_support::random;
    use candle_core::Var;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// The fused gates give candle's values and gradients, through h and the cell, over two
    /// steps so that the first cell's gradient flows back through the second step.
    #[test]
    fn sequence_matches_the_steps_forward_and_backward() {
        use candle_core::{DType, Device, Var};
        let (steps, batch, input, hidden) = (5, 3, 4, 6);
        let map = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let cell = LstmCell::new(input, hidden, "", &vb).unwrap();
        let xs = Var::from_tensor(&random(&[steps, batch, input], 1, 1.5)).unwrap();
        let h0 = Var::from_tensor(&random(&[batch, hidden], 2, 0.8)).unwrap();
        let c0 = Var::from_tensor(&random(&[batch, hidden], 3, 0.8)).unwrap();
        let weights = cell.weights().unwrap();
        let ours = weights
            .sequence(xs.as_tensor(), h0.as_tensor(), c0.as_tensor())
            .unwrap();
        let (mut h, mut c) = (h0.as_tensor().clone(), c0.as_tensor().clone());
        let mut hs = Vec::new();
        for t in 0..steps {
            (h, c) = weights
                .step(&xs.as_tensor().get(t).unwrap(), &h, &c)
                .unwrap();
            hs.push(h.clone());
        }
        let reference = Tensor::stack(&hs, 0).unwrap();
        assert_eq!(ours.dims(), &[steps, batch, hidden]);
        assert!(max_abs_diff(&ours, &reference) < 1e-5);
        let upstream = random(&[steps, batch, hidden], 4, 1.0);
        let vars = map.all_vars();
        let mut wrt = vec![xs.as_tensor(), h0.as_tensor(), c0.as_tensor()];
        wrt.extend(vars.iter().map(|v| v.as_tensor()));
        let grads = |y: &Tensor| -> Vec<Tensor> {
            let g = crate::nn::test_support::gradients(y, &upstream, &wrt);
            g.into_iter().map(|g| g.expect("a gradient")).collect()
        };
        for (i, (a, b)) in grads(&ours).iter().zip(grads(&reference)).enumerate() {
            let diff = max_abs_diff(a, &b);
            assert!(diff < 1e-4, "gradient {i}: {diff}");
        }
    }

    #[test]
    fn fused_gates_match_candle_forward_and_backward() {
        let (batch, n) = (5, 7);
        let gates = [
            Var::from_tensor(&random(&[batch, 4 * n], 1, 4.0)).unwrap(),
            Var::from_tensor(&random(&[batch, 4 * n], 2, 4.0)).unwrap(),
        ];
        let c0 = Var::from_tensor(&random(&[batch, n], 3, 2.0)).unwrap();
        let upstream = (random(&[batch, n], 4, 1.0), random(&[batch, n], 5, 1.0));
        let run = |fused: bool| {
            let step = |g: &Tensor, c: &Tensor| {
                if fused {
                    let hc = g.apply_op2(c, LstmGates { hidden: n }).unwrap();
                    (hc.narrow(1, 0, n).unwrap(), hc.narrow(1, n, n).unwrap())
                } else {
                    lstm_gates_reference(g, c, n).unwrap()
                }
            };
            let (h1, c1) = step(gates[0].as_tensor(), c0.as_tensor());
            let (h2, c2) = step(gates[1].as_tensor(), &c1);
            let loss = ((&h1 * &upstream.0).unwrap().sum_all().unwrap()
                + (&h2 * &upstream.1).unwrap().sum_all().unwrap())
            .unwrap()
            .add(&(&c2 * &upstream.0).unwrap().sum_all().unwrap())
            .unwrap();
            (h2, c2, loss.backward().unwrap())
        };
        let (hf, cf, gf) = run(true);
        let (hr, cr, gr) = run(false);
        assert!(max_abs_diff(&hf, &hr) < 1e-6);
        assert!(max_abs_diff(&cf, &cr) < 1e-6);
        for v in [gates[0].as_tensor(), gates[1].as_tensor(), c0.as_tensor()] {
            let d = max_abs_diff(gf.get(v).unwrap(), gr.get(v).unwrap());
            assert!(d < 1e-5, "gradient differs by {d}");
        }
    }
}
