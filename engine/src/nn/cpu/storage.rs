//! Reading and writing f32 CPU tensors for the custom kernels: the data behind a storage, a
//! contiguous view, in-place access, a strided 4-D view, a pointer tasks share, and each
//! thread's reusable scratch buffer.

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor, bail};
use std::borrow::Cow;

/// The f32 data behind a CPU storage.
pub(crate) fn cpu_f32(storage: &CpuStorage) -> Result<&[f32]> {
    match storage {
        CpuStorage::F32(data) => Ok(data),
        other => bail!(
            "expected f32 data on the CPU, got {:?}",
            candle_core::backend::BackendStorage::dtype(other)
        ),
    }
}

/// A contiguous copy (or borrow) of a strided tensor's elements in row-major order.
pub(crate) fn contiguous_f32<'a>(data: &'a [f32], layout: &Layout) -> std::borrow::Cow<'a, [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => std::borrow::Cow::Borrowed(&data[start..end]),
        None => {
            let (dims, strides) = (layout.dims(), layout.stride());
            let count: usize = dims.iter().product();
            let mut index = vec![0usize; dims.len()];
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                out.push(
                    data[layout.start_offset()
                        + index.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>()],
                );
                for axis in (0..dims.len()).rev() {
                    index[axis] += 1;
                    if index[axis] < dims[axis] {
                        break;
                    }
                    index[axis] = 0;
                }
            }
            std::borrow::Cow::Owned(out)
        }
    }
}

/// Whether `t` is an f32 tensor on the CPU (the custom kernels' fast path), outside
/// [`with_candle_ops`]. Every custom kernel is gated by this check, made on the calling thread
/// before the kernel is dispatched; when it fails the kernel's function computes the same
/// thing in candle ops, as on a GPU.
pub(crate) fn on_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32 && !candle_ops_only()
}

thread_local! {
    /// Whether this thread is inside [`with_candle_ops`].
    static CANDLE_OPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every custom CPU kernel replaced by the candle-ops path that other devices
/// (CUDA, Metal) take, on the CPU: for the tests that check that path against the kernels, and
/// for measuring what the kernels are worth. It holds on the calling thread and in the work
/// that it hands to the pool: [`crate::nn::in_pool`], [`crate::nn::on_one_thread`], and the
/// models' batch parts ([`keep_candle_ops`]). The kernels' own threads need not know: every
/// kernel is chosen (or not) on the thread that calls it.
pub fn with_candle_ops<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the flag back even when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            CANDLE_OPS.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CANDLE_OPS.with(|c| c.replace(true)));
    f()
}

/// Whether the calling thread is inside [`with_candle_ops`] (no custom kernel runs).
pub fn candle_ops_only() -> bool {
    CANDLE_OPS.with(std::cell::Cell::get)
}

/// `f`, inside [`with_candle_ops`] when `candle_ops` (the caller's [`candle_ops_only`], carried
/// to another thread).
pub(crate) fn keep_candle_ops<R>(candle_ops: bool, f: impl FnOnce() -> R) -> R {
    if candle_ops { with_candle_ops(f) } else { f() }
}

#[cfg(test)]
thread_local! {
    /// How many custom kernels have run forward on this thread (tests only).
    static KERNEL_RUNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts one custom kernel's forward pass on this thread (tests only).
#[cfg(test)]
pub(crate) fn count_kernel_run() {
    KERNEL_RUNS.with(|c| c.set(c.get() + 1));
}

/// How many custom kernels have run forward on this thread so far (tests only; compare two
/// readings).
#[cfg(test)]
pub(crate) fn kernel_runs() -> usize {
    KERNEL_RUNS.with(std::cell::Cell::get)
}

/// The contiguous f32 elements of a CPU tensor (borrowed when already contiguous).
pub(crate) fn with_cpu_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        bail!("fused op: tensor is not on the CPU")
    };
    let data: Cow<[f32]> = contiguous_f32(cpu_f32(cpu)?, layout);
    f(&data)
}

/// The elements of a contiguous CPU f32 tensor, written in place: the tensor's own storage, so
/// every tensor that shares it sees the change (as with `Var::set`, without a new buffer).
/// Used by the optimizer (`lab`).
#[cfg(feature = "lab")]
pub(crate) fn with_cpu_f32_mut<R>(
    t: &Tensor,
    f: impl FnOnce(&mut [f32]) -> Result<R>,
) -> Result<R> {
    /// Runs `f` once on the storage candle hands to an in-place op.
    struct InPlace<F, R> {
        f: std::cell::Cell<Option<F>>,
        out: std::cell::Cell<Option<Result<R>>>,
    }
    impl<F: FnOnce(&mut [f32]) -> Result<R>, R> candle_core::InplaceOp1 for InPlace<F, R> {
        fn name(&self) -> &'static str {
            "with-cpu-f32-mut"
        }
        fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
            let CpuStorage::F32(data) = storage else {
                bail!("in-place f32 access: the tensor is not f32");
            };
            if !layout.is_contiguous() {
                bail!("in-place f32 access: the tensor is not contiguous");
            }
            let start = layout.start_offset();
            let data = &mut data[start..start + layout.shape().elem_count()];
            let f = self.f.take().expect("an in-place op runs once");
            self.out.set(Some(f(data)));
            Ok(())
        }
    }
    let op = InPlace {
        f: std::cell::Cell::new(Some(f)),
        out: std::cell::Cell::new(None),
    };
    if !t.device().is_cpu() {
        bail!("in-place f32 access: the tensor is not on the CPU");
    }
    t.inplace_op1(&op)?;
    op.out
        .take()
        .unwrap_or_else(|| bail!("in-place f32 access: the op did not run"))
}

/// A read-only 4-D f32 tensor in a flat buffer with element strides.
#[derive(Clone, Copy, Debug)]
pub struct Strided4<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub strides: [usize; 4],
}

impl<'a> Strided4<'a> {
    /// A contiguous `[_, c, h, w]` view.
    pub fn contiguous(data: &'a [f32], c: usize, h: usize, w: usize) -> Self {
        Self {
            data,
            offset: 0,
            strides: [c * h * w, h * w, w, 1],
        }
    }

    pub(crate) fn from_layout(data: &'a [f32], layout: &Layout) -> Result<Self> {
        let &[s0, s1, s2, s3] = layout.stride() else {
            bail!("conv2d: expected a 4-D layout, got {:?}", layout.dims())
        };
        Ok(Self {
            data,
            offset: layout.start_offset(),
            strides: [s0, s1, s2, s3],
        })
    }

    /// Whether an image's positions `h·w + x` are evenly spaced, so gemm can read it as `[c, h·w]`.
    pub(crate) fn rows_flatten(&self, w: usize) -> bool {
        self.strides[2] == w * self.strides[3]
    }
}

/// A raw pointer that tasks writing disjoint regions of one buffer may share.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: every task writes a region no other task touches, and the buffer outlives the tasks.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The element pointer `offset` past the start (a method, so closures capture the wrapper).
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

thread_local! {
    /// Each thread's im2col column buffer, kept between convolutions: a fresh zeroed buffer per
    /// task cost as much as the unrolling itself at batch 1.
    static COLS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// This thread's column buffer with at least `len` elements (taken out, so that a task this
/// thread steals while gemm waits gets its own).
pub(crate) fn take_cols(len: usize) -> Vec<f32> {
    let mut cols = COLS.take();
    if cols.len() < len {
        // im2col overwrites every element it uses, so growing is the only zeroing.
        cols.resize(len, 0.0);
    }
    cols
}

/// Keep the larger of `cols` and the buffer a stolen task may have left.
pub(crate) fn put_back_cols(cols: Vec<f32>) {
    let other = COLS.take();
    COLS.set(if other.len() > cols.len() {
        other
    } else {
        cols
    });
}
