//! An LSTM direction written for the CPU. A sequence is one matmul of all its inputs with the
//! input weights (or, for one-hot inputs, a row lookup) followed by one op for the recurrence,
//! whose steps multiply only `h` by the recurrent weights; a single step is one matmul of
//! `[x_t, h]` with the stacked weights (candle's cell does two matmuls and two bias adds). The
//! weights keep PyTorch's `nn.LSTM` names (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`,
//! `bias_hh_l0`, `…_reverse` for the backward direction) and gate order (i, f, g, o).

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, bail};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::cpu::dispatch::avx2_dispatch;
use super::cpu::math::{sigmoid, tanh};
use super::cpu::op::{F32Op, Forward, Grads, Op, Operand, grad_if_tracked};
use super::cpu::storage::{contiguous_f32, cpu_f32};
use super::cpu::storage::{on_cpu_f32, with_cpu_f32};
use super::huge_pages::uninit_f32;
use super::matmul::gemm_rows_serial;

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
    input: usize,
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
            input: self.w_ih.dim(1)?,
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
            let hc = gates.apply_op2(c, Op(LstmGates { hidden: n }))?; // [batch, 2·hidden]
            return Ok((hc.narrow(1, 0, n)?, hc.narrow(1, n, n)?));
        }
        lstm_gates_reference(&gates, c, n)
    }

    /// The input's share of every step's gates, bias included: `xs` `[steps, batch, in]` ->
    /// `[steps, batch, 4·hidden]`, one matmul for the whole sequence.
    pub fn input_gates(&self, xs: &Tensor) -> Result<Tensor> {
        let (_, _, input) = xs.dims3()?;
        if input != self.input {
            bail!("lstm: inputs of size {input} for a cell of {}", self.input)
        }
        super::matmul::matmul_bias(xs, &self.w_t.narrow(0, 0, input)?, &self.bias)
    }

    /// [`LstmWeights::input_gates`] of one-hot inputs, without building them: `tokens`
    /// `[steps, batch]` (u32 below `classes`, or `classes` itself for an all-zero input such as
    /// a decoder's first step) select rows of the first `classes` input weights. The remaining
    /// `in − classes` inputs are `rest` `[batch, in − classes]`, the same at every step (a
    /// decoder's z), or absent when the input is only the one-hot part.
    pub fn one_hot_gates(
        &self,
        tokens: &Tensor,
        classes: usize,
        rest: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (steps, batch) = tokens.dims2()?;
        let four_n = 4 * self.hidden;
        let Some(extra) = self.input.checked_sub(classes) else {
            bail!(
                "lstm: {classes} classes for a cell of {} inputs",
                self.input
            )
        };
        let per_sequence = match rest {
            Some(rest) => {
                if rest.dims() != [batch, extra] {
                    bail!(
                        "lstm: the constant input is {:?}, not [{batch}, {extra}]",
                        rest.dims()
                    )
                }
                let w_rest = self.w_t.narrow(0, classes, extra)?; // [in − classes, 4·hidden]
                super::matmul::matmul_bias(rest, &w_rest, &self.bias)? // [batch, 4·hidden]
            }
            None if extra == 0 => self.bias.unsqueeze(0)?,
            None => bail!("lstm: {extra} inputs besides the one-hot part are missing"),
        };
        if batch > 0 && on_cpu_f32(&self.w_t) && on_cpu_f32(&per_sequence) {
            let ids = tokens.flatten_all()?.to_vec1::<u32>()?;
            if let Some(bad) = ids.iter().find(|&&id| id as usize > classes) {
                bail!("lstm: token {bad} of {classes} classes")
            }
            return self.w_t.apply_op2(
                &per_sequence,
                Op(OneHotGates {
                    ids,
                    classes,
                    batch,
                }),
            );
        }
        let zero_row = Tensor::zeros((1, four_n), self.w_t.dtype(), self.w_t.device())?;
        let table = Tensor::cat(&[&self.w_t.narrow(0, 0, classes)?, &zero_row], 0)?; // [classes + 1, 4·hidden]
        table
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((steps, batch, four_n))?
            .broadcast_add(&per_sequence) // [steps, batch, 4·hidden]
    }

    /// Every hidden state of a run over `xs` `[steps, batch, in]` from `h0`, `c0`
    /// `[batch, hidden]`, as `[steps, batch, hidden]`.
    pub fn sequence(&self, xs: &Tensor, h0: &Tensor, c0: &Tensor) -> Result<Tensor> {
        self.recurrence(&self.input_gates(xs)?, h0, c0)
    }

    /// Every hidden state `[steps, batch, hidden]` from `h0`, `c0` `[batch, hidden]`, given the
    /// inputs' share of the gates `gx` `[steps, batch, 4·hidden]` ([`LstmWeights::input_gates`]
    /// or [`LstmWeights::one_hot_gates`]): one op with its own backward (backpropagation
    /// through time) whose steps multiply only `h` by the recurrent weights, where
    /// [`LstmWeights::recurrence_by_ops`] records about ten candle ops per step.
    pub fn recurrence(&self, gx: &Tensor, h0: &Tensor, c0: &Tensor) -> Result<Tensor> {
        let w_hh = self.w_t.narrow(0, self.input, self.hidden)?; // [hidden, 4·hidden]
        if !(on_cpu_f32(gx) && on_cpu_f32(h0) && on_cpu_f32(c0) && on_cpu_f32(&w_hh)) {
            return self.recurrence_by_ops(gx, h0, c0);
        }
        let hc0 = Tensor::cat(&[h0, c0], 1)?; // [batch, 2·hidden]
        gx.apply_op3(
            &hc0,
            &w_hh,
            Op(LstmRecurrence {
                hidden: self.hidden,
                saved: std::sync::Mutex::new(None),
            }),
        )
    }

    /// [`LstmWeights::recurrence`] in candle ops, step by step (other devices; the tests'
    /// reference).
    pub fn recurrence_by_ops(&self, gx: &Tensor, h0: &Tensor, c0: &Tensor) -> Result<Tensor> {
        let w_hh = self.w_t.narrow(0, self.input, self.hidden)?;
        let (mut h, mut c) = (h0.clone(), c0.clone());
        let mut hs = Vec::new();
        for t in 0..gx.dim(0)? {
            let gates = (gx.get(t)? + h.matmul(&w_hh)?)?; // [batch, 4·hidden]
            (h, c) = lstm_gates_reference(&gates, &c, self.hidden)?;
            hs.push(h.clone());
        }
        Tensor::stack(&hs, 0)
    }
}

/// [`LstmWeights::one_hot_gates`] as one op: inputs the stacked weights `w_t`
/// `[in + hidden, 4·hidden]` (only the first `classes` rows are read) and the per-sequence
/// share (bias included) `[batch or 1, 4·hidden]`; output `[steps, batch, 4·hidden]`. In candle
/// ops the broadcast add and the sum that is its backward took a quarter of a MusicVAE training
/// step.
struct OneHotGates {
    /// Tokens `[steps · batch]`, step-major; `classes` is the all-zero input.
    ids: Vec<u32>,
    classes: usize,
    batch: usize,
}

impl OneHotGates {
    /// (rows of `w_t`, 4·hidden, rows of the per-sequence share), checked.
    fn dims(&self, w_l: &Layout, per_l: &Layout) -> Result<(usize, usize, usize)> {
        let (&[rows, width], &[per_rows, per_width]) = (w_l.dims(), per_l.dims()) else {
            bail!("one-hot gates: expected [in + hidden, 4·hidden] and [batch, 4·hidden]")
        };
        if per_width != width
            || !(per_rows == 1 || per_rows == self.batch)
            || rows < self.classes
            || !self.ids.len().is_multiple_of(self.batch.max(1))
        {
            bail!(
                "one-hot gates: weights {:?}, per-sequence share {:?}, {} tokens in rows of {}",
                w_l.dims(),
                per_l.dims(),
                self.ids.len(),
                self.batch
            )
        }
        Ok((rows, width, per_rows))
    }
}

impl F32Op<2> for OneHotGates {
    const NAME: &'static str = "lstm-one-hot-gates";

    fn cpu_fwd(&self, [(w, w_l), (per, per_l)]: [Operand; 2]) -> Forward {
        let (_, width, per_rows) = self.dims(w_l, per_l)?;
        let w = contiguous_f32(cpu_f32(w)?, w_l);
        let per = contiguous_f32(cpu_f32(per)?, per_l);
        // Every row is written below (zeroing first was a tenth of a MusicVAE encode).
        let mut out = uninit_f32(self.ids.len() * width);
        out.par_chunks_mut(width)
            .zip(self.ids.par_iter())
            .enumerate()
            .for_each(|(row, (out, &id))| {
                let shared = &per[(row % self.batch) % per_rows * width..][..width];
                let id = id as usize;
                if id < self.classes {
                    let w_row = &w[id * width..][..width];
                    for ((o, a), b) in out.iter_mut().zip(w_row).zip(shared) {
                        *o = a + b;
                    }
                } else {
                    out.copy_from_slice(shared);
                }
            });
        let steps = self.ids.len() / self.batch;
        Ok((
            CpuStorage::F32(out),
            Shape::from((steps, self.batch, width)),
        ))
    }

    fn bwd(&self, [w, per]: [&Tensor; 2], _res: &Tensor, grad_res: &Tensor) -> Grads<2> {
        let (rows, width, per_rows) = self.dims(w.layout(), per.layout())?;
        let (gw, gper) = with_cpu_f32(grad_res, |g| {
            // Each token's row of the weights gathers the gradients of the cells it fed; the
            // per-sequence share gathers its sequence's (or everything, when shared).
            let mut gw = vec![0f32; rows * width];
            let mut gper = vec![0f32; per_rows * width];
            for (row, (g, &id)) in g.chunks(width).zip(&self.ids).enumerate() {
                let id = id as usize;
                if id < self.classes {
                    let dst = &mut gw[id * width..][..width];
                    dst.iter_mut().zip(g).for_each(|(d, v)| *d += v);
                }
                let dst = &mut gper[(row % self.batch) % per_rows * width..][..width];
                dst.iter_mut().zip(g).for_each(|(d, v)| *d += v);
            }
            Ok((gw, gper))
        })?;
        Ok([
            grad_if_tracked(w, gw, (rows, width))?,
            grad_if_tracked(per, gper, (per_rows, width))?,
        ])
    }
}

/// A time-major sequence fed to an LSTM.
#[derive(Clone, Copy)]
pub enum SequenceInput<'a> {
    /// `[steps, batch, in]`.
    Dense(&'a Tensor),
    /// One-hot tokens `[steps, batch]` (u32) of this many classes (the cell's whole input).
    Tokens(&'a Tensor, usize),
}

/// A bidirectional LSTM's summary of a sequence: the forward direction's last hidden state and
/// the backward direction's (after reading the sequence from its end), concatenated:
/// `[batch, 2·hidden]`, both directions starting from zeros.
pub fn bidirectional_ends(fwd: &LstmCell, bwd: &LstmCell, input: SequenceInput) -> Result<Tensor> {
    let (SequenceInput::Dense(x) | SequenceInput::Tokens(x, _)) = input;
    let (steps, batch) = (x.dim(0)?, x.dim(1)?);
    if steps == 0 {
        bail!("lstm: an empty sequence has no last state")
    }
    let reversed: Vec<u32> = (0..steps as u32).rev().collect();
    let reversed = Tensor::from_vec(reversed, steps, x.device())?;
    let last_state = |cell: &LstmCell, reverse: bool| -> Result<Tensor> {
        let x = if reverse {
            x.index_select(&reversed, 0)?
        } else {
            x.clone()
        };
        let w = cell.weights()?;
        let gx = match input {
            SequenceInput::Dense(_) => w.input_gates(&x)?,
            SequenceInput::Tokens(_, classes) => w.one_hot_gates(&x, classes, None)?,
        }; // [steps, batch, 4·hidden]
        let zeros = Tensor::zeros((batch, cell.hidden), gx.dtype(), gx.device())?;
        w.recurrence(&gx, &zeros, &zeros)?.get(steps - 1) // [batch, hidden]
    };
    // A batch that the recurrence would cut between the pool threads runs the two directions
    // side by side instead, each whole on its thread: one meeting instead of two, and each
    // step's product has twice the rows to spread gemm's packing of the weights over.
    let (forward, backward) = if row_parts(batch).len() >= 2 {
        // Inside `with_candle_ops`, a pool thread that takes a direction takes the candle ops.
        use super::cpu::storage::{candle_ops_only, keep_candle_ops};
        let candle_ops = candle_ops_only();
        rayon::join(
            || keep_candle_ops(candle_ops, || super::serially(|| last_state(fwd, false))),
            || keep_candle_ops(candle_ops, || super::serially(|| last_state(bwd, true))),
        )
    } else {
        (last_state(fwd, false), last_state(bwd, true))
    };
    Tensor::cat(&[forward?, backward?], 1)
}

/// [`LstmWeights::recurrence`] as one op: inputs `gx` `[steps, batch, 4·hidden]`, `hc0`
/// `[batch, 2·hidden]` (h0 then c0), `w_hh` `[hidden, 4·hidden]` (transposed recurrent
/// weights); output every h `[steps, batch, hidden]`.
struct LstmRecurrence {
    hidden: usize,
    /// The forward pass's gate activations `[steps, batch, 4·hidden]` and cells
    /// `[steps, batch, hidden]`, for the backward pass.
    saved: std::sync::Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

impl LstmRecurrence {
    /// (steps, batch), checked against the other shapes.
    fn dims(&self, gx: &Layout, hc0: &Layout, w_hh: &Layout) -> Result<(usize, usize)> {
        let n = self.hidden;
        let (&[steps, batch, four_n], &[b2, two_n], &[rows, four_n2]) =
            (gx.dims(), hc0.dims(), w_hh.dims())
        else {
            bail!(
                "lstm recurrence: expected [steps, batch, 4·hidden], [batch, 2·hidden], [hidden, 4·hidden]"
            )
        };
        if b2 != batch || two_n != 2 * n || four_n != 4 * n || four_n2 != 4 * n || rows != n {
            bail!(
                "lstm recurrence: {:?}, {:?} and {:?} do not fit hidden size {n}",
                gx.dims(),
                hc0.dims(),
                w_hh.dims()
            )
        }
        Ok((steps, batch))
    }
}

/// (h0, c0) `[batch, hidden]` each from `[batch, 2·hidden]` rows.
fn split_state(hc0: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
    (
        hc0.chunks(2 * n).flat_map(|r| r[..n].to_vec()).collect(),
        hc0.chunks(2 * n).flat_map(|r| r[n..].to_vec()).collect(),
    )
}

impl F32Op<3> for LstmRecurrence {
    const NAME: &'static str = "lstm-recurrence";

    fn cpu_fwd(&self, [(gx, gx_l), (hc0, hc0_l), (w_hh, w_hh_l)]: [Operand; 3]) -> Forward {
        let (steps, batch) = self.dims(gx_l, hc0_l, w_hh_l)?;
        let n = self.hidden;
        let hc0 = contiguous_f32(cpu_f32(hc0)?, hc0_l);
        let w = contiguous_f32(cpu_f32(w_hh)?, w_hh_l);
        let gx = contiguous_f32(cpu_f32(gx)?, gx_l);
        // Each step writes h · W_hh into the gates, and the gate kernel adds the inputs' share
        // as it reads them and leaves the activations there; h and c are read from the
        // previous step's rows. Every element of the three buffers is written.
        let mut acts = uninit_f32(steps * batch * 4 * n);
        let mut hs = uninit_f32(steps * batch * n);
        let mut cells = uninit_f32(steps * batch * n);
        let parts = row_parts(batch);
        let (h0, c0) = split_state(&hc0, n);
        split_rows(&mut acts, steps, batch, 4 * n, &parts)
            .into_par_iter()
            .zip(split_rows(&mut hs, steps, batch, n, &parts))
            .zip(split_rows(&mut cells, steps, batch, n, &parts))
            .zip(&parts)
            .for_each(|(((mut acts, mut hs), mut cells), rows)| {
                let m = rows.len();
                let (h0, c0) = (
                    &h0[rows.start * n..rows.end * n],
                    &c0[rows.start * n..rows.end * n],
                );
                for t in 0..steps {
                    let (hs_done, hs_rest) = hs.split_at_mut(t);
                    let (cells_done, cells_rest) = cells.split_at_mut(t);
                    let (h_prev, c_prev): (&[f32], &[f32]) = match t {
                        0 => (h0, c0),
                        _ => (&*hs_done[t - 1], &*cells_done[t - 1]),
                    };
                    let gates = &mut *acts[t];
                    let first = (t * batch + rows.start) * 4 * n;
                    let gx = &gx[first..first + m * 4 * n];
                    // SAFETY: `gates` is [m, 4n], `h_prev` [m, n], `w` [n, 4n], all contiguous.
                    unsafe {
                        gemm_rows_serial(
                            gates,
                            h_prev,
                            (n, 1),
                            &w,
                            (4 * n, 1),
                            (m, 4 * n, n),
                            false,
                        )
                    };
                    for ((((a, gx), c_new), h_new), c_old) in gates
                        .chunks_mut(4 * n)
                        .zip(gx.chunks(4 * n))
                        .zip(cells_rest[0].chunks_mut(n))
                        .zip(hs_rest[0].chunks_mut(n))
                        .zip(c_prev.chunks(n))
                    {
                        gate_row(a, Some(gx), c_new, h_new, c_old);
                    }
                }
            });
        *self.saved.lock().expect("lstm recurrence lock") = Some((acts, cells));
        Ok((CpuStorage::F32(hs), Shape::from((steps, batch, n))))
    }

    fn bwd(&self, [gx, hc0, w_hh]: [&Tensor; 3], res: &Tensor, grad_res: &Tensor) -> Grads<3> {
        let (steps, batch) = self.dims(gx.layout(), hc0.layout(), w_hh.layout())?;
        let n = self.hidden;
        let saved = self.saved.lock().expect("lstm recurrence lock");
        let Some((acts, cells)) = saved.as_ref() else {
            bail!("lstm recurrence: backward without a forward pass")
        };
        let (ggx, ghc0, gw) = with_cpu_f32(hc0, |hc0| {
            with_cpu_f32(w_hh, |w| {
                with_cpu_f32(res, |hs| {
                    with_cpu_f32(grad_res, |ghs| {
                        // The gates' gradients are the inputs' share's.
                        let mut ggx = vec![0f32; steps * batch * 4 * n];
                        let (h0, c0) = split_state(hc0, n);
                        let parts = row_parts(batch);
                        // Each part of the rows runs back through time on its own thread: its
                        // share of dW_hh, and its rows' dh and dc at step 0.
                        let per_part: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> =
                            split_rows(&mut ggx, steps, batch, 4 * n, &parts)
                                .into_par_iter()
                                .zip(&parts)
                                .map(|(mut ggx, rows)| {
                                    let m = rows.len();
                                    // Rows `rows` of step t of a [steps, batch, width] buffer.
                                    fn rows_at(
                                        buf: &[f32],
                                        first_row: usize,
                                        m: usize,
                                        width: usize,
                                    ) -> &[f32] {
                                        &buf[first_row * width..][..m * width]
                                    }
                                    let at = |buf, t: usize, width| {
                                        rows_at(buf, t * batch + rows.start, m, width)
                                    };
                                    let mut gw = vec![0f32; n * 4 * n];
                                    let (mut dh, mut dc) = (vec![0f32; m * n], vec![0f32; m * n]);
                                    let (h0, c0) = (
                                        &h0[rows.start * n..rows.end * n],
                                        &c0[rows.start * n..rows.end * n],
                                    );
                                    for t in (0..steps).rev() {
                                        let a = at(acts, t, 4 * n);
                                        let c_t = at(cells, t, n);
                                        let c_prev = if t > 0 { at(cells, t - 1, n) } else { c0 };
                                        let h_prev = if t > 0 { at(hs, t - 1, n) } else { h0 };
                                        let gh_t = at(ghs, t, n);
                                        let dgates = &mut *ggx[t];
                                        for (b, (dg, dc)) in dgates
                                            .chunks_mut(4 * n)
                                            .zip(dc.chunks_mut(n))
                                            .enumerate()
                                        {
                                            let row = b * n..(b + 1) * n;
                                            gate_row_gradients(
                                                dg,
                                                dc,
                                                &a[b * 4 * n..][..4 * n],
                                                &c_t[row.clone()],
                                                &c_prev[row.clone()],
                                                &gh_t[row.clone()],
                                                &dh[row],
                                            );
                                        }
                                        let dgates = &*dgates;
                                        // SAFETY: all buffers contiguous with the sizes named.
                                        unsafe {
                                            // dW_hh += h_prevᵀ · dgates.
                                            gemm_rows_serial(
                                                &mut gw,
                                                h_prev,
                                                (1, n),
                                                dgates,
                                                (4 * n, 1),
                                                (n, 4 * n, m),
                                                true,
                                            );
                                            // dh_prev = dgates · W_hhᵀ.
                                            gemm_rows_serial(
                                                &mut dh,
                                                dgates,
                                                (4 * n, 1),
                                                w,
                                                (1, 4 * n),
                                                (m, n, 4 * n),
                                                false,
                                            );
                                        }
                                    }
                                    (gw, dh, dc)
                                })
                                .collect();
                        let mut gw = vec![0f32; n * 4 * n];
                        let mut ghc0 = Vec::with_capacity(batch * 2 * n);
                        for (part_gw, dh, dc) in &per_part {
                            gw.iter_mut().zip(part_gw).for_each(|(g, p)| *g += p);
                            for (h, c) in dh.chunks(n).zip(dc.chunks(n)) {
                                ghc0.extend_from_slice(h);
                                ghc0.extend_from_slice(c);
                            }
                        }
                        Ok((ggx, ghc0, gw))
                    })
                })
            })
        })?;
        Ok([
            grad_if_tracked(gx, ggx, (steps, batch, 4 * n))?,
            grad_if_tracked(hc0, ghc0, (batch, 2 * n))?,
            grad_if_tracked(w_hh, gw, (n, 4 * n))?,
        ])
    }
}

/// One row of a step: the pre-activations `a` `[4·hidden]` (i, f, g, o), plus the inputs'
/// share `gx` `[4·hidden]` when given (a recurrence's product of h alone), become the
/// activations; `c_new = f·c_old + i·g`, `h_new = o·tanh(c_new)`.
fn gate_row(
    a: &mut [f32],
    gx: Option<&[f32]>,
    c_new: &mut [f32],
    h_new: &mut [f32],
    c_old: &[f32],
) {
    let n = c_old.len();
    assert!(
        a.len() >= 4 * n
            && c_new.len() >= n
            && h_new.len() >= n
            && gx.is_none_or(|gx| gx.len() >= 4 * n)
    );
    #[cfg(target_arch = "x86_64")]
    {
        if super::cpu::simd::has_avx512() {
            // SAFETY: the CPU has the features the kernel is compiled for; lengths asserted.
            return unsafe { gate_row_avx512(a, gx, c_new, h_new, c_old, 0) };
        }
        if super::cpu::simd::has_avx2_fma() {
            // SAFETY: as above.
            return unsafe { gate_row_avx2(a, gx, c_new, h_new, c_old, 0) };
        }
    }
    gate_row_scalar(a, gx, c_new, h_new, c_old, 0);
}

/// A vector version of [`gate_row`] for the units from `first` on: whole registers of
/// `$lanes` units through the `$math` module's sigmoid and tanh, the rest handed to `$rest`
/// (the next narrower kernel, or the scalar code).
macro_rules! gate_row_kernel {
    ($(#[$meta:meta])* $name:ident, $features:literal, $lanes:literal, $math:ident,
     $load:ident, $store:ident, $add:ident, $mul:ident, $fmadd:ident, $rest:ident) => {
        $(#[$meta])*
        ///
        /// # Safety
        /// The CPU must have the kernel's features; `a` and `gx` hold 4n floats, the others n.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(
            a: &mut [f32],
            gx: Option<&[f32]>,
            c_new: &mut [f32],
            h_new: &mut [f32],
            c_old: &[f32],
            first: usize,
        ) {
            use super::cpu::simd::$math::{sigmoid, tanh};
            use std::arch::x86_64::*;
            let n = c_old.len();
            let vectors = first + (n - first) / $lanes * $lanes;
            let (pa, pc, ph, pold) = (
                a.as_mut_ptr(),
                c_new.as_mut_ptr(),
                h_new.as_mut_ptr(),
                c_old.as_ptr(),
            );
            let px = gx.map(<[f32]>::as_ptr);
            for j in (first..vectors).step_by($lanes) {
                // SAFETY: j + lanes ≤ n and the slices hold 4n, 4n, n, n and n floats.
                unsafe {
                    let pre = |g: usize| {
                        let v = $load(pa.add(g * n + j));
                        match px {
                            Some(px) => $add(v, $load(px.add(g * n + j))),
                            None => v,
                        }
                    };
                    let i = sigmoid(pre(0));
                    let f = sigmoid(pre(1));
                    let g = tanh(pre(2));
                    let o = sigmoid(pre(3));
                    $store(pa.add(j), i);
                    $store(pa.add(n + j), f);
                    $store(pa.add(2 * n + j), g);
                    $store(pa.add(3 * n + j), o);
                    let c = $fmadd(f, $load(pold.add(j)), $mul(i, g));
                    $store(pc.add(j), c);
                    $store(ph.add(j), $mul(o, tanh(c)));
                }
            }
            // SAFETY: the narrower kernel needs a subset of this one's features.
            #[allow(unused_unsafe)]
            unsafe {
                $rest(a, gx, c_new, h_new, c_old, vectors)
            };
        }
    };
}

gate_row_kernel!(
    /// [`gate_row`] in sixteen-lane registers ([`super::cpu::simd::avx512`]).
    gate_row_avx512, "avx512f,avx2,fma", 16, avx512,
    _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, _mm512_mul_ps, _mm512_fmadd_ps,
    gate_row_avx2
);

gate_row_kernel!(
    /// [`gate_row`] in eight-lane registers ([`super::cpu::simd::avx2`]).
    gate_row_avx2, "avx2,fma", 8, avx2,
    _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, _mm256_mul_ps, _mm256_fmadd_ps,
    gate_row_scalar
);

/// [`gate_row`] for the units from `first` on.
fn gate_row_scalar(
    a: &mut [f32],
    gx: Option<&[f32]>,
    c_new: &mut [f32],
    h_new: &mut [f32],
    c_old: &[f32],
    first: usize,
) {
    let n = c_old.len();
    for j in first..n {
        if let Some(gx) = gx {
            for g in 0..4 {
                a[g * n + j] += gx[g * n + j];
            }
        }
        let (i, f, g, o) = activations(a, n, j);
        (a[j], a[n + j], a[2 * n + j], a[3 * n + j]) = (i, f, g, o);
        c_new[j] = f * c_old[j] + i * g;
        h_new[j] = o * tanh(c_new[j]);
    }
}

avx2_dispatch! {
    /// One row of a step back through time: the gates' gradients `dg` `[4·hidden]` from the
    /// activations `a`, the cells `c_t` and `c_prev`, the output's gradient `gh` plus the next
    /// step's `dh`; `dc` holds the next step's cell gradient on entry and this step's on exit.
    fn gate_row_gradients(
        dg: &mut [f32],
        dc: &mut [f32],
        a: &[f32],
        c_t: &[f32],
        c_prev: &[f32],
        gh: &[f32],
        dh: &[f32],
    ) => gate_row_gradients_imp
}

#[inline(always)]
fn gate_row_gradients_imp(
    dg: &mut [f32],
    dc: &mut [f32],
    a: &[f32],
    c_t: &[f32],
    c_prev: &[f32],
    gh: &[f32],
    dh: &[f32],
) {
    let n = dc.len();
    let (di_s, rest) = dg.split_at_mut(n);
    let (df_s, rest) = rest.split_at_mut(n);
    let (dg_s, do_s) = rest.split_at_mut(n);
    let (i_s, f_s, g_s, o_s) = (&a[..n], &a[n..2 * n], &a[2 * n..3 * n], &a[3 * n..4 * n]);
    let (c_t, c_prev, gh, dh) = (&c_t[..n], &c_prev[..n], &gh[..n], &dh[..n]);
    for (j, ((((di, df), dgg), d_o), dc)) in di_s
        .iter_mut()
        .zip(df_s.iter_mut())
        .zip(dg_s.iter_mut())
        .zip(&mut do_s[..n])
        .zip(dc.iter_mut())
        .enumerate()
    {
        let ([gi, gf, gg, go], dc_prev) = unit_gradients(
            (i_s[j], f_s[j], g_s[j], o_s[j]),
            tanh(c_t[j]),
            c_prev[j],
            gh[j] + dh[j],
            *dc,
        );
        (*di, *df, *dgg, *d_o, *dc) = (gi, gf, gg, go, dc_prev);
    }
}

/// Consecutive row ranges of a batch, one per pool thread (at least [`MIN_PART_ROWS`] rows
/// each): an LSTM's rows are independent through time, so each part runs every step on its
/// own thread instead of all threads meeting at every step's product and gate arithmetic. Inside
/// [`super::serially`] the whole batch is one part.
fn row_parts(batch: usize) -> Vec<std::ops::Range<usize>> {
    if super::is_serial() {
        return std::iter::once(0..batch).collect();
    }
    super::pool_parts(batch, MIN_PART_ROWS).0
}

/// Below this many rows a part's products are too small to be worth a thread.
const MIN_PART_ROWS: usize = 16;

/// A `[steps, batch, width]` buffer cut into, per part of `parts` (consecutive row ranges
/// covering the batch), that part's rows at every step: `[part][step]` -> `[rows, width]`.
fn split_rows<'a>(
    buf: &'a mut [f32],
    steps: usize,
    batch: usize,
    width: usize,
    parts: &[std::ops::Range<usize>],
) -> Vec<Vec<&'a mut [f32]>> {
    if batch * width == 0 {
        // Nothing to cut (an empty batch): every part gets an empty slice per step.
        return parts
            .iter()
            .map(|_| (0..steps).map(|_| <&mut [f32]>::default()).collect())
            .collect();
    }
    let mut out: Vec<Vec<&mut [f32]>> = parts.iter().map(|_| Vec::new()).collect();
    for step in buf.chunks_mut(batch * width) {
        let mut rest = step;
        for (part, rows) in out.iter_mut().zip(parts) {
            let (head, tail) = rest.split_at_mut(rows.len() * width);
            part.push(head);
            rest = tail;
        }
    }
    out
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

/// One unit's backward step: the gradients of its gate pre-activations (i, f, g, o) and of the
/// previous cell, from the activations, tanh of the new cell, the previous cell, and the
/// gradients reaching h and (directly) the new cell; the loss reaches the new cell through
/// h = o·tanh(c) and directly.
#[inline(always)]
fn unit_gradients(
    (i, f, g, o): (f32, f32, f32, f32),
    tanh_c: f32,
    c_prev: f32,
    dh: f32,
    dc_new: f32,
) -> ([f32; 4], f32) {
    let dcell = dc_new + dh * o * (1.0 - tanh_c * tanh_c);
    (
        [
            dcell * g * i * (1.0 - i),
            dcell * c_prev * f * (1.0 - f),
            dcell * i * (1.0 - g * g),
            dh * tanh_c * o * (1.0 - o),
        ],
        dcell * f,
    )
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

impl F32Op<2> for LstmGates {
    const NAME: &'static str = "lstm-gates";

    fn cpu_fwd(&self, [(gates, gates_l), (c, c_l)]: [Operand; 2]) -> Forward {
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
            .for_each_init(
                || vec![0f32; 4 * n],
                |acts, ((out, gates), c)| {
                    let (h_out, c_out) = out.split_at_mut(n);
                    acts.copy_from_slice(gates);
                    gate_row(acts, None, c_out, h_out, c);
                },
            );
        Ok((CpuStorage::F32(out), Shape::from((batch, 2 * n))))
    }

    fn bwd(&self, [gates, c]: [&Tensor; 2], res: &Tensor, grad_res: &Tensor) -> Grads<2> {
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
                                    let ([di, df, dg, d_o], dc_prev) = unit_gradients(
                                        (i, f, g, o),
                                        tanh(c_new[j]),
                                        c[j],
                                        gh[j],
                                        gc[j],
                                    );
                                    (g_gates[j], g_gates[n + j], g_gates[2 * n + j]) = (di, df, dg);
                                    g_gates[3 * n + j] = d_o;
                                    g_c[j] = dc_prev;
                                }
                            });
                        Ok((g_gates, g_c))
                    })
                })
            })
        })?;
        Ok([
            grad_if_tracked(gates, g_gates, (batch, 4 * n))?,
            grad_if_tracked(c, g_c, (batch, n))?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_support::{max_abs, random};
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

    /// The recurrence op gives the step-by-step candle ops' values and gradients (input
    /// gates, initial state and recurrent weights), with a batch large enough to be split
    /// between threads.
    #[test]
    fn recurrence_op_matches_candle_ops_forward_and_backward() {
        // One part of rows, and three parts (16, 17, 17 rows) on a three-thread pool, each
        // running every step on its own thread.
        recurrence_matches(9);
        // An empty batch gives empty states, forward and back.
        recurrence_matches(0);
        rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| {
                assert_eq!(row_parts(50), vec![0..16, 16..33, 33..50]);
                recurrence_matches(50)
            });
    }

    fn recurrence_matches(batch: usize) {
        use candle_core::{DType, Device};
        // 29 units: a sixteen-lane block of the gate kernel (where the CPU has AVX-512), an
        // eight-lane block and a scalar tail.
        let (steps, input, hidden) = (4, 3, 29);
        let map = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let weights = LstmCell::new(input, hidden, "", &vb)
            .unwrap()
            .weights()
            .unwrap();
        let gx = Var::from_tensor(&random(&[steps, batch, 4 * hidden], 1, 2.0)).unwrap();
        let h0 = Var::from_tensor(&random(&[batch, hidden], 2, 0.8)).unwrap();
        let c0 = Var::from_tensor(&random(&[batch, hidden], 3, 0.8)).unwrap();
        let (gx, h0, c0) = (gx.as_tensor(), h0.as_tensor(), c0.as_tensor());
        let ours = weights.recurrence(gx, h0, c0).unwrap();
        assert_eq!(ours.dims(), &[steps, batch, hidden]);
        if batch == 0 {
            // (candle's own matmul fails on an empty batch, so no reference.)
            let upstream = random(&[steps, batch, hidden], 4, 1.0);
            let grads = crate::nn::test_support::gradients(&ours, &upstream, &[gx, h0, c0]);
            assert_eq!(grads[0].as_ref().unwrap().dims(), gx.dims());
            return;
        }
        let reference = weights.recurrence_by_ops(gx, h0, c0).unwrap();
        assert!(max_abs_diff(&ours, &reference) < 1e-5);
        let upstream = random(&[steps, batch, hidden], 4, 1.0);
        let vars = map.all_vars();
        let mut wrt = vec![gx, h0, c0];
        wrt.extend(vars.iter().map(|v| v.as_tensor()));
        let grads = |y: &Tensor| crate::nn::test_support::gradients(y, &upstream, &wrt);
        for (i, (a, b)) in grads(&ours).iter().zip(grads(&reference)).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) => {
                    let diff = max_abs_diff(a, &b);
                    assert!(diff < 1e-4, "gradient {i}: {diff}");
                }
                // The input weights do not take part in the recurrence.
                (None, None) => assert!(i >= 3),
                _ => panic!("gradient {i} exists on one side only"),
            }
        }
    }

    /// Gates looked up from tokens (with the all-zero start token, and with and without a
    /// constant extra input) equal the matmul of the one-hot inputs, forward and backward.
    #[test]
    fn one_hot_gates_match_the_matmul_of_one_hot_inputs() {
        use candle_core::{DType, Device};
        let (steps, batch, classes, hidden) = (3, 4, 5, 3);
        for extra in [0, 2] {
            let map = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
            let cell = LstmCell::new(classes + extra, hidden, "", &vb).unwrap();
            let rest = Var::from_tensor(&random(&[batch, extra], 5, 1.0)).unwrap();
            let rest = (extra > 0).then_some(rest.as_tensor());
            // Token `classes` is the all-zero input.
            let ids: Vec<u32> = (0..steps * batch)
                .map(|i| (i * 7 % (classes + 1)) as u32)
                .collect();
            let tokens = Tensor::from_vec(ids.clone(), (steps, batch), &Device::Cpu).unwrap();
            let one_hot: Vec<f32> = ids
                .iter()
                .flat_map(|&id| (0..classes).map(move |c| f32::from(c == id as usize)))
                .collect();
            let one_hot = Tensor::from_vec(one_hot, (steps, batch, classes), &Device::Cpu).unwrap();
            // The dense inputs, with the constant input taking part in the graph.
            let xs = match rest {
                Some(rest) => Tensor::cat(
                    &[
                        one_hot,
                        rest.unsqueeze(0)
                            .unwrap()
                            .broadcast_as((steps, batch, extra))
                            .unwrap()
                            .contiguous()
                            .unwrap(),
                    ],
                    2,
                )
                .unwrap(),
                None => one_hot,
            };
            let upstream = random(&[steps, batch, 4 * hidden], 6, 1.0);
            let vars = map.all_vars();
            let mut wrt: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
            wrt.extend(rest);
            let weights = cell.weights().unwrap();
            let looked_up = weights.one_hot_gates(&tokens, classes, rest).unwrap();
            let multiplied = weights.input_gates(&xs).unwrap();
            assert_eq!(looked_up.dims(), &[steps, batch, 4 * hidden]);
            assert!(max_abs_diff(&looked_up, &multiplied) < 1e-6);
            let grads = |y: &Tensor| crate::nn::test_support::gradients(y, &upstream, &wrt);
            for (i, (a, b)) in grads(&looked_up).iter().zip(grads(&multiplied)).enumerate() {
                match (a, b) {
                    (Some(a), Some(b)) => {
                        let diff = max_abs_diff(a, &b);
                        assert!(diff < 1e-5, "extra {extra}, gradient {i}: {diff}");
                    }
                    (a, b) => panic!(
                        "extra {extra}, gradient {i}: {} vs {}",
                        a.is_some(),
                        b.is_some()
                    ),
                }
            }
            // Bad shapes and tokens are errors.
            assert!(
                weights
                    .one_hot_gates(
                        &tokens,
                        classes,
                        if extra > 0 { None } else { Some(&upstream) }
                    )
                    .is_err()
            );
            assert!(
                weights
                    .one_hot_gates(&tokens, classes + extra + 1, None)
                    .is_err()
            );
            let past_the_end =
                Tensor::full(classes as u32 + 1, (steps, batch), &Device::Cpu).unwrap();
            assert!(weights.one_hot_gates(&past_the_end, classes, rest).is_err());
        }
    }

    #[test]
    fn both_directions_side_by_side_equal_one_after_the_other() {
        use candle_core::{DType, Device};
        // 40 sequences: on a two-thread pool the recurrence would cut them in two parts, so the
        // directions run side by side, each whole; inside `serially`, one after the other.
        let (steps, batch, classes, hidden) = (6, 40, 9, 21);
        let map = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let fwd = LstmCell::new(classes, hidden, "", &vb).unwrap();
        let bwd = LstmCell::new(classes, hidden, "_reverse", &vb).unwrap();
        let ids: Vec<u32> = (0..steps * batch)
            .map(|i| (i * 5 % classes) as u32)
            .collect();
        let tokens = Tensor::from_vec(ids, (steps, batch), &Device::Cpu).unwrap();
        let input = SequenceInput::Tokens(&tokens, classes);
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
            .install(|| {
                assert_eq!(row_parts(batch).len(), 2);
                let side_by_side = bidirectional_ends(&fwd, &bwd, input).unwrap();
                let serial = crate::nn::serially(|| bidirectional_ends(&fwd, &bwd, input)).unwrap();
                assert_eq!(side_by_side.dims(), &[batch, 2 * hidden]);
                assert!(max_abs_diff(&side_by_side, &serial) < 1e-6);
                // The gradients of both directions' weights arrive through the side-by-side run.
                let loss = side_by_side.sqr().unwrap().sum_all().unwrap();
                let grads = loss.backward().unwrap();
                for var in map.all_vars() {
                    let g = grads
                        .get(var.as_tensor())
                        .expect("every weight has a gradient");
                    assert!(max_abs(g) > 0.0);
                }
            });
    }

    #[test]
    fn fused_gates_match_candle_forward_and_backward() {
        // 27 units: a sixteen-lane block of the gate kernel (where the CPU has AVX-512), an
        // eight-lane block and a scalar tail.
        let (batch, n) = (5, 27);
        let gates = [
            Var::from_tensor(&random(&[batch, 4 * n], 1, 4.0)).unwrap(),
            Var::from_tensor(&random(&[batch, 4 * n], 2, 4.0)).unwrap(),
        ];
        let c0 = Var::from_tensor(&random(&[batch, n], 3, 2.0)).unwrap();
        let upstream = (random(&[batch, n], 4, 1.0), random(&[batch, n], 5, 1.0));
        let run = |fused: bool| {
            let step = |g: &Tensor, c: &Tensor| {
                if fused {
                    let hc = g.apply_op2(c, Op(LstmGates { hidden: n })).unwrap();
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
