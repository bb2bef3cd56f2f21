//! candle's custom-op traits in the form the f32 CPU kernels write them: the inputs of either
//! pass come as one array (each forward operand one `(storage, layout)` pair) and the
//! gradients go back as one array. [`Op`] makes candle's `CustomOp1/2/3` of an [`F32Op`] of
//! one, two or three inputs.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use std::borrow::Cow;

use super::storage::{contiguous_f32, cpu_f32};

/// One input of a forward pass: its CPU storage and its layout in that storage.
pub(crate) type Operand<'a> = (&'a CpuStorage, &'a Layout);

/// The result of a forward pass: the output's storage and shape.
pub(crate) type Forward = Result<(CpuStorage, Shape)>;

/// The gradients of an op's `N` inputs, `None` for an input that needs none.
pub(crate) type Grads<const N: usize> = Result<[Option<Tensor>; N]>;

/// An op on `N` f32 CPU tensors with its own forward and backward pass.
pub(crate) trait F32Op<const N: usize>: Send + Sync {
    /// The op's name in candle's graph.
    const NAME: &'static str;

    /// The output of the inputs.
    fn cpu_fwd(&self, inputs: [Operand; N]) -> Forward;

    /// The inputs' gradients, from the forward pass's output `res` and its gradient `grad_res`.
    fn bwd(&self, inputs: [&Tensor; N], res: &Tensor, grad_res: &Tensor) -> Grads<N>;
}

/// An [`F32Op`] as candle's custom op of as many inputs: `x.apply_op2(y, Op(op))`.
pub(crate) struct Op<T>(pub T);

impl<T: F32Op<1>> CustomOp1 for Op<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Forward {
        #[cfg(test)]
        super::storage::count_kernel_run();
        self.0.cpu_fwd([(s1, l1)])
    }

    fn bwd(&self, t1: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let [g1] = self.0.bwd([t1], res, grad_res)?;
        Ok(g1)
    }
}

impl<T: F32Op<2>> CustomOp2 for Op<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Forward {
        #[cfg(test)]
        super::storage::count_kernel_run();
        self.0.cpu_fwd([(s1, l1), (s2, l2)])
    }

    fn bwd(
        &self,
        t1: &Tensor,
        t2: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [g1, g2] = self.0.bwd([t1, t2], res, grad_res)?;
        Ok((g1, g2))
    }
}

impl<T: F32Op<3>> CustomOp3 for Op<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Forward {
        #[cfg(test)]
        super::storage::count_kernel_run();
        self.0.cpu_fwd([(s1, l1), (s2, l2), (s3, l3)])
    }

    fn bwd(
        &self,
        t1: &Tensor,
        t2: &Tensor,
        t3: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [g1, g2, g3] = self.0.bwd([t1, t2, t3], res, grad_res)?;
        Ok((g1, g2, g3))
    }
}

/// An operand's f32 elements in row-major order (borrowed when contiguous).
pub(crate) fn contiguous((storage, layout): Operand) -> Result<Cow<[f32]>> {
    Ok(contiguous_f32(cpu_f32(storage)?, layout))
}

/// The gradient of `input` made of `data` in `shape`, when `input` needs one (is tracked).
pub(crate) fn grad_if_tracked(
    input: &Tensor,
    data: Vec<f32>,
    shape: impl Into<Shape>,
) -> Result<Option<Tensor>> {
    input
        .track_op()
        .then(|| Tensor::from_vec(data, shape, input.device()))
        .transpose()
}
