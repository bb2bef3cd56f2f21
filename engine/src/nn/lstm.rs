//! An LSTM direction written for the CPU: one matmul of `[x_t, h]` with the stacked weights per
//! step (candle's cell does two matmuls and two bias adds). The weights keep PyTorch's `nn.LSTM`
//! names (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `…_reverse` for the
//! backward direction) and gate order (i, f, g, o).

use candle_core::{CpuStorage, CustomOp2, IndexOp, Layout, Result, Shape, Tensor, bail};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::conv_kernel::{contiguous_f32, cpu_f32};
use super::fused::{on_cpu_f32, sigmoid, with_cpu_f32};

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

/// The steps of `[batch, steps, features]` as contiguous `[batch, features]` tensors.
pub fn split_steps(xs: &Tensor) -> Result<Vec<Tensor>> {
    let steps = xs.dim(1)?;
    (0..steps).map(|t| xs.i((.., t))?.contiguous()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};

    fn random(shape: &[usize], seed: u64, scale: f32) -> Tensor {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

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
