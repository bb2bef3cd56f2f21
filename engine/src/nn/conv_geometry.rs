//! The shapes of a 2-D convolution, shared by the direct kernels ([`super::conv_kernel`]) and the
//! Winograd kernel ([`super::winograd`]).

use candle_core::{Result, bail};

/// Column-buffer bytes per tile: with gemm's packed panels this stays inside a core's L2.
const COLS_BUDGET_BYTES: usize = 256 * 1024;

/// Shapes of one convolution: input `[batch, c_in, h, w]`, weight `[c_out, c_in, kernel, kernel]`,
/// output `[batch, c_out, h_out, w_out]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub h_out: usize,
    pub w_out: usize,
}

impl ConvGeometry {
    /// Checks that the input and weight dims fit together and computes the output size.
    pub fn new(input: &[usize], weight: &[usize], stride: usize, padding: usize) -> Result<Self> {
        let (&[batch, c_in, h, w], &[c_out, c_in_w, kh, kw]) = (input, weight) else {
            bail!(
                "conv2d: expected a 4-D input and a 4-D weight, got input {input:?} and weight {weight:?}"
            )
        };
        if c_in != c_in_w {
            bail!("conv2d: input has {c_in} channels but the weight {weight:?} expects {c_in_w}")
        }
        if kh != kw || kh == 0 {
            bail!("conv2d: only square, non-empty kernels are supported, got {kh}x{kw}")
        }
        if stride == 0 {
            bail!("conv2d: stride must be at least 1")
        }
        if batch == 0 || c_in == 0 || c_out == 0 {
            bail!("conv2d: empty input {input:?} or weight {weight:?}")
        }
        if h + 2 * padding < kh || w + 2 * padding < kw {
            bail!(
                "conv2d: input {h}x{w} with padding {padding} is smaller than the {kh}x{kw} kernel"
            )
        }
        let h_out = (h + 2 * padding - kh) / stride + 1;
        let w_out = (w + 2 * padding - kw) / stride + 1;
        Ok(Self {
            batch,
            c_in,
            h,
            w,
            c_out,
            kernel: kh,
            stride,
            padding,
            h_out,
            w_out,
        })
    }

    /// Rows of the unrolled input (and columns of the weight matrix): `c_in · k · k`.
    pub fn k_dim(&self) -> usize {
        self.c_in * self.kernel * self.kernel
    }

    /// Output positions per image and channel: `h_out · w_out`.
    pub fn positions(&self) -> usize {
        self.h_out * self.w_out
    }

    /// Multiply-adds ×2 of the forward pass.
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.c_out * self.positions()) as f64 * self.k_dim() as f64
    }

    pub(crate) fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == 0
    }

    /// Output positions per tile: whole output rows when they fit the column budget.
    pub(crate) fn tile_len(&self) -> usize {
        let budget = (COLS_BUDGET_BYTES / (4 * self.k_dim())).max(64);
        let n = if self.w_out <= budget {
            budget / self.w_out * self.w_out
        } else {
            budget / 16 * 16
        };
        n.clamp(1, self.positions())
    }

    /// Output columns `[lo, hi)` whose input column `ow·stride + kj − padding` lies inside the image.
    pub(crate) fn valid_cols(&self, kj: usize) -> (usize, usize) {
        let lo = if kj >= self.padding {
            0
        } else {
            (self.padding - kj).div_ceil(self.stride)
        };
        let hi = if self.w + self.padding > kj {
            (self.w - 1 + self.padding - kj) / self.stride + 1
        } else {
            0
        };
        let hi = hi.min(self.w_out);
        (lo.min(hi), hi)
    }

    /// The geometry of `grad_input` computed as a stride-1 convolution of `grad_out`.
    pub(crate) fn transposed(&self) -> Self {
        Self {
            c_in: self.c_out,
            h: self.h_out,
            w: self.w_out,
            c_out: self.c_in,
            padding: self.kernel - 1 - self.padding,
            h_out: self.h,
            w_out: self.w,
            ..*self
        }
    }
}
