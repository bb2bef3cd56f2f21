//! 2-D convolution layer with PyTorch's weight layout (`weight: [out, in, k, k]`, `bias: [out]`).
//!
//! Models use this type instead of `candle_nn::Conv2d`: on the CPU in f32 it runs the fast
//! im2col + gemm kernel of [`super::conv_kernel`] (forward and backward); elsewhere candle's own.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::conv_kernel::conv2d;

/// A square-kernel convolution with stride and zero padding.
#[derive(Clone, Debug)]
pub struct Conv2d {
    inner: candle_nn::Conv2d,
}

impl Conv2d {
    /// Weights at `vb.pp("weight")` `[out, in, kernel, kernel]` and `vb.pp("bias")` `[out]`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let cfg = candle_nn::Conv2dConfig {
            padding,
            stride,
            ..Default::default()
        };
        Ok(Self {
            inner: candle_nn::conv2d(in_channels, out_channels, kernel, cfg, vb)?,
        })
    }

    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.inner.bias()
    }

    pub fn stride(&self) -> usize {
        self.inner.config().stride
    }

    pub fn padding(&self) -> usize {
        self.inner.config().padding
    }
}

impl Module for Conv2d {
    /// `[batch, in, h, w]` -> `[batch, out, h', w']`
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, self.weight(), self.bias(), self.stride(), self.padding())
    }
}
