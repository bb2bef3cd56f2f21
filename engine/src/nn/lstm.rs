//! An LSTM direction written for the CPU: one matmul of `[x_t, h]` with the stacked weights per
//! step (candle's cell does two matmuls and two bias adds). The weights keep PyTorch's `nn.LSTM`
//! names (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `…_reverse` for the
//! backward direction) and gate order (i, f, g, o).

use candle_core::{IndexOp, Result, Tensor};
use candle_nn::VarBuilder;

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
        let gates = Tensor::cat(&[x, h], 1)?
            .matmul(&self.w_t)?
            .broadcast_add(&self.bias)?; // [batch, 4·hidden]
        let n = self.hidden;
        let sig = candle_nn::ops::sigmoid(&gates)?;
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
}

/// The steps of `[batch, steps, features]` as contiguous `[batch, features]` tensors.
pub fn split_steps(xs: &Tensor) -> Result<Vec<Tensor>> {
    let steps = xs.dim(1)?;
    (0..steps).map(|t| xs.i((.., t))?.contiguous()).collect()
}
