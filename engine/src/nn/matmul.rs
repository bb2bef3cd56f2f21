//! Matrix products of f32 CPU tensors through the gemm crate, with our own choice of threads,
//! and the [`Linear`] layer built on them.
//!
//! candle's CPU matmul asks `candle_core::utils::get_num_threads` on every call. Unless
//! `RAYON_NUM_THREADS` is set, that parses `/proc/cpuinfo` (slow, and the kernel interrupts
//! every CPU to report its clock), and a plugin inside a host cannot set the
//! variable safely. It also spreads every product, however small, over all threads. Here a
//! product runs on the current rayon pool's threads when it has at least [`PARALLEL_MACS`]
//! multiply-adds, on the calling thread otherwise, and batches of small products (attention
//! heads) run one per task.

use candle_core::{CpuStorage, Layout, Module, Result, Shape, Tensor, bail};
use candle_nn::VarBuilder;
use gemm::Parallelism;
use rayon::prelude::*;

use super::cpu::gemm::{Mat, sgemm};
use super::cpu::op::{F32Op, Forward, Grads, Op, Operand};
use super::cpu::storage::{SharedMut, contiguous_f32, cpu_f32};
use super::cpu::storage::{on_cpu_f32, with_cpu_f32};
use super::huge_pages::uninit_f32;

/// Products with fewer multiply-adds run on one thread: below about a million, the work is
/// short enough that waking a second thread costs more than it saves.
pub const PARALLEL_MACS: usize = 1 << 20;

/// `a · b`: `a` `[..., m, k]`, `b` `[k, n]` (shared by every batch) or `[..., k, n]` with `a`'s
/// batch dimensions; -> `[..., m, n]`. Strided (transposed) inputs need no copy. Anything other
/// than f32 on the CPU, or batch dimensions that cannot be flattened, goes to candle.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(a) && on_cpu_f32(b) && Operands::of(a.layout(), b.layout()).is_ok() {
        return a.apply_op2(b, Op(MatMul));
    }
    a.broadcast_matmul(b)
}

/// `a · b + bias`: `a` `[..., m, k]`, `b` `[k, n]`, `bias` `[n]` added to every row; the
/// bias is written first and the product added onto it (no separate broadcast pass).
pub fn matmul_bias(a: &Tensor, b: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let n = b.dims().last().copied();
    if on_cpu_f32(a)
        && on_cpu_f32(b)
        && on_cpu_f32(bias)
        && b.rank() == 2
        && bias.dims() == [n.unwrap_or(0)]
        && Operands::of(a.layout(), b.layout()).is_ok()
    {
        return a.apply_op3(b, bias, Op(MatMulBias { weight_rows: false }));
    }
    matmul(a, b)?.broadcast_add(bias)
}

/// `x · weightᵀ + bias` for a layer's `weight` `[n, k]` as stored: the op reads it transposed
/// itself, so no transpose node sits between the weight and the product in the graph. Through
/// a `weight.t()` node, candle's backward added the product's contiguous gradient, transposed,
/// onto the weight's zeros: a strided sum over every weight element (a visible share of a band
/// training step in `perf`); here the weight's gradient comes out contiguous `[n, k]`.
pub(crate) fn linear_bias(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let w_t = weight.t()?;
    if on_cpu_f32(x)
        && on_cpu_f32(weight)
        && on_cpu_f32(bias)
        && weight.rank() == 2
        && bias.dims() == [weight.dim(0)?]
        && Operands::of(x.layout(), w_t.layout()).is_ok()
    {
        return x.apply_op3(weight, bias, Op(MatMulBias { weight_rows: true }));
    }
    matmul_bias(x, &w_t, bias)
}

/// Shapes and strides of one product, checked.
#[derive(Clone, Copy, Debug)]
struct Operands {
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    /// (batch stride, row stride, column stride) of each operand; batch stride 0 for a shared
    /// `b`.
    a: (usize, usize, usize),
    b: (usize, usize, usize),
}

/// Batch stride of `dims[..rank-2]` when those dimensions flatten into one (1 when none).
fn batch_stride(layout: &Layout) -> Option<usize> {
    let (dims, strides) = (layout.dims(), layout.stride());
    let r = dims.len();
    if r == 2 {
        return Some(0);
    }
    for i in 0..r - 3 {
        if dims[i + 1] > 1 && strides[i] != strides[i + 1] * dims[i + 1] {
            return None;
        }
    }
    Some(strides[r - 3])
}

impl Operands {
    fn of(a: &Layout, b: &Layout) -> Result<Self> {
        let (ad, bd) = (a.dims(), b.dims());
        let r = ad.len();
        if r < 2 || !(bd.len() == 2 || bd.len() == r) {
            bail!("matmul: shapes {ad:?} and {bd:?} do not multiply");
        }
        let (m, k) = (ad[r - 2], ad[r - 1]);
        let (kb, n) = (bd[bd.len() - 2], bd[bd.len() - 1]);
        if k != kb || (bd.len() == r && bd[..r - 2] != ad[..r - 2]) {
            bail!("matmul: shapes {ad:?} and {bd:?} do not multiply");
        }
        let (Some(a_bs), Some(b_bs)) = (batch_stride(a), batch_stride(b)) else {
            bail!("matmul: batch dimensions of {ad:?} or {bd:?} do not flatten");
        };
        let (sa, sb) = (a.stride(), b.stride());
        Ok(Self {
            batch: ad[..r - 2].iter().product(),
            m,
            k,
            n,
            a: (a_bs, sa[r - 2], sa[r - 1]),
            b: (
                if bd.len() == 2 { 0 } else { b_bs },
                sb[bd.len() - 2],
                sb[bd.len() - 1],
            ),
        })
    }
}

pub(super) fn parallelism(macs: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 && macs >= PARALLEL_MACS && !super::is_serial() {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// `y (+)= a · b` for the checked operands `o` (`y` contiguous `[batch, m, n]`; added to when
/// `accumulate`, else overwritten without being read).
fn run(o: &Operands, a: &[f32], b: &[f32], y: &mut [f32], accumulate: bool) {
    let (m, k, n) = (o.m, o.k, o.n);
    let (a_bs, a_rs, a_cs) = o.a;
    let (b_bs, b_rs, b_cs) = o.b;
    let mat = |data: &[f32], offset: usize, rs: usize, cs: usize| Mat {
        ptr: data[offset..].as_ptr(),
        rs,
        cs,
    };
    if b_bs == 0 && (o.batch == 1 || a_bs == m * a_rs) {
        // A shared `b` and batches that continue `a`'s rows: one (batch·m × k) product.
        let rows = o.batch * m;
        if rows <= FEW_ROWS && a_cs == 1 && b_rs == 1 {
            // A few rows times a layer's transposed weights: dot products of contiguous rows.
            few_rows_product(y, a, a_rs, b, b_cs, (rows, n, k), accumulate);
            return;
        }
        // SAFETY: `y` holds rows × n elements; the operands lie inside their storages.
        unsafe {
            sgemm(
                (rows, n, k),
                y.as_mut_ptr(),
                (n, 1),
                accumulate,
                mat(a, 0, a_rs, a_cs),
                mat(b, 0, b_rs, b_cs),
                parallelism(rows * n * k),
            )
        };
    } else if o.batch >= rayon::current_num_threads() && m * n * k < PARALLEL_MACS {
        // Many small products (attention heads): one per task.
        let y_ptr = SharedMut(y.as_mut_ptr());
        (0..o.batch).into_par_iter().for_each(|i| {
            // SAFETY: product `i` alone writes its m × n block of `y`.
            unsafe {
                sgemm(
                    (m, n, k),
                    y_ptr.at(i * m * n),
                    (n, 1),
                    accumulate,
                    mat(a, i * a_bs, a_rs, a_cs),
                    mat(b, i * b_bs, b_rs, b_cs),
                    Parallelism::None,
                )
            }
        });
    } else {
        let par = parallelism(m * n * k);
        for i in 0..o.batch {
            // SAFETY: as above, one product at a time.
            unsafe {
                sgemm(
                    (m, n, k),
                    y.as_mut_ptr().add(i * m * n),
                    (n, 1),
                    accumulate,
                    mat(a, i * a_bs, a_rs, a_cs),
                    mat(b, i * b_bs, b_rs, b_cs),
                    par,
                )
            }
        }
    }
}

/// Up to this many rows, a product with a column-contiguous `b` (a [`Linear`] layer's
/// transposed weights) skips gemm: gemm packs all of `b` on every call, which for the few rows
/// of batch-1 inference (the latent score network's 8 positions) cost several times the
/// arithmetic (in `perf`, most of a batch-1 score network forward went to gemm's packing).
const FEW_ROWS: usize = 16;

/// Up to this many rows, [`gemm_rows`] also takes the dot-product kernel when the dot products
/// are at least [`LONG_DOT_K`] long: an LSTM part's gradient through time, `dh = dgates · W_hh`
/// (64 rows, k = 4·hidden), where gemm re-packed the weights at every step: with the two
/// kernels alternating in one process, the MusicVAE training step at batch 128 ran faster this
/// way. Shorter dot products (an LSTM forward step's h · W_hhᵀ, k = hidden) ran slower this way
/// (a MusicVAE encode + decode), so they stay with gemm. `cargo xtask bench latent` times both.
const LONG_DOT_ROWS: usize = 128;
const LONG_DOT_K: usize = 512;

/// `y (+)= a · b` for `rows` rows of `a` (row stride `a_rs`, contiguous rows) and `b` given by
/// its columns (column `j` contiguous at `j · b_cs`): each output is the dot product of a row of
/// `a` and a column of `b`. AVX2+FMA kernel where the CPU has it.
fn few_rows_product(
    y: &mut [f32],
    a: &[f32],
    a_rs: usize,
    b: &[f32],
    b_cs: usize,
    rnk: (usize, usize, usize),
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { few_rows_product_avx2(y, a, a_rs, b, b_cs, rnk, accumulate) };
        return;
    }
    few_rows_product_scalar(y, a, a_rs, b, b_cs, rnk, accumulate);
}

fn few_rows_product_scalar(
    y: &mut [f32],
    a: &[f32],
    a_rs: usize,
    b: &[f32],
    b_cs: usize,
    (rows, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    for j in 0..n {
        let w = &b[j * b_cs..][..k];
        for r in 0..rows {
            let v: f32 = a[r * a_rs..][..k].iter().zip(w).map(|(x, w)| x * w).sum();
            let o = &mut y[r * n + j];
            *o = if accumulate { *o + v } else { v };
        }
    }
}

/// [`few_rows_product`] in AVX2: four columns at a time over every row (the four columns, 4·k
/// floats, stay in L1 while the rows pass, so `b` is read from memory once), two rows at a
/// time, one 8-lane FMA accumulator per (row, column); a scalar tail for `k mod 8`. The first
/// row pair prefetches the columns two blocks ahead: without it the loads waited on L3 (the
/// score network's 12.6 MB of weights do not fit in L2), which made a batch-1 forward much
/// slower (`cargo xtask bench latent`).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn few_rows_product_avx2(
    y: &mut [f32],
    a: &[f32],
    a_rs: usize,
    b: &[f32],
    b_cs: usize,
    (rows, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    assert!(
        rows == 0
            || n == 0
            || k == 0
            || ((rows - 1) * a_rs + k <= a.len()
                && (n - 1) * b_cs + k <= b.len()
                && rows * n <= y.len())
    );
    if rows == 0 || n == 0 || k == 0 {
        if !accumulate {
            y[..rows * n].fill(0.0);
        }
        return;
    }
    let body = k / 8 * 8;
    let hsum = |v: __m256| -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    };
    let tail = |r: usize, j: usize| -> f32 {
        a[r * a_rs + body..r * a_rs + k]
            .iter()
            .zip(&b[j * b_cs + body..j * b_cs + k])
            .map(|(x, w)| x * w)
            .sum()
    };
    let mut store = |r: usize, j: usize, v: f32| {
        let o = &mut y[r * n + j];
        *o = if accumulate { *o + v } else { v };
    };
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    let mut j = 0;
    while j < n {
        let cols = (n - j).min(4);
        // Column pointers; a block of fewer than 4 repeats its last column (computed, unused).
        let w: [*const f32; 4] = std::array::from_fn(|c| {
            // SAFETY: column j + min(c, cols − 1) < n lies inside `b` (checked above).
            unsafe { bp.add((j + c.min(cols - 1)) * b_cs) }
        });
        let mut r = 0;
        while r < rows {
            let pair = (rows - r).min(2);
            // SAFETY: rows r and r + pair − 1 < rows lie inside `a` (checked above).
            let x0 = unsafe { ap.add(r * a_rs) };
            let x1 = unsafe { ap.add((r + pair - 1) * a_rs) };
            // SAFETY: every load reads i..i + 8 ≤ body ≤ k elements of a row or column.
            let (acc0, acc1) = unsafe {
                let mut acc0 = [_mm256_setzero_ps(); 4];
                let mut acc1 = [_mm256_setzero_ps(); 4];
                let mut i = 0;
                while i < body {
                    if r == 0 && i % 16 == 0 {
                        // The first row pair brings the columns in from L3; ask for the next
                        // block's line at this offset now (a prefetch never faults).
                        for wc in &w {
                            let next = wc.wrapping_add(8 * b_cs + i);
                            _mm_prefetch::<_MM_HINT_T0>(next.cast::<i8>());
                        }
                    }
                    let xa = _mm256_loadu_ps(x0.add(i));
                    if pair == 2 {
                        let xb = _mm256_loadu_ps(x1.add(i));
                        for c in 0..4 {
                            let wc = _mm256_loadu_ps(w[c].add(i));
                            acc0[c] = _mm256_fmadd_ps(xa, wc, acc0[c]);
                            acc1[c] = _mm256_fmadd_ps(xb, wc, acc1[c]);
                        }
                    } else {
                        // A last single row (batch 1): half the multiply-adds.
                        for c in 0..4 {
                            acc0[c] = _mm256_fmadd_ps(xa, _mm256_loadu_ps(w[c].add(i)), acc0[c]);
                        }
                    }
                    i += 8;
                }
                (acc0, acc1)
            };
            for c in 0..cols {
                store(r, j + c, hsum(acc0[c]) + tail(r, j + c));
                if pair == 2 {
                    store(r + 1, j + c, hsum(acc1[c]) + tail(r + 1, j + c));
                }
            }
            r += pair;
        }
        j += cols;
    }
}

/// The gradients of `a · b` under the upstream gradient `grad`, each only if its operand is
/// tracked: dA = dY · Bᵀ; dB = Aᵀ · dY, summed over the batch when `b` is shared.
fn product_grads(a: &Tensor, b: &Tensor, grad_res: &Tensor) -> Grads<2> {
    let grad_a = if a.track_op() {
        Some(matmul(grad_res, &b.t()?)?)
    } else {
        None
    };
    let grad_b = if !b.track_op() {
        None
    } else if b.rank() == 2 && a.rank() > 2 {
        let k = a.dim(a.rank() - 1)?;
        let n = grad_res.dim(grad_res.rank() - 1)?;
        let a_rows = a.reshape(((), k))?;
        let g_rows = grad_res.reshape(((), n))?;
        Some(matmul(&a_rows.t()?, &g_rows)?)
    } else {
        Some(matmul(&a.t()?, grad_res)?)
    };
    Ok([grad_a, grad_b])
}

/// `a · b` (+ `bias` on every row): the forward pass of [`MatMul`] and [`MatMulBias`].
fn product((a, a_l): Operand, (b, b_l): Operand, bias: Option<Operand>) -> Forward {
    let o = Operands::of(a_l, b_l)?;
    let (a, b) = (
        &cpu_f32(a)?[a_l.start_offset()..],
        &cpu_f32(b)?[b_l.start_offset()..],
    );
    let mut dims = a_l.dims().to_vec();
    *dims.last_mut().expect("rank >= 2") = o.n;
    let mut y = uninit_f32(o.batch * o.m * o.n);
    let accumulate = match bias {
        Some((bias, bias_l)) => {
            if o.b.0 != 0 || bias_l.dims() != [o.n] {
                bail!(
                    "matmul with bias: {:?} · {:?} + {:?} do not fit",
                    a_l.dims(),
                    b_l.dims(),
                    bias_l.dims()
                );
            }
            let bias = contiguous_f32(cpu_f32(bias)?, bias_l);
            if o.n > 0 {
                y.par_chunks_mut(o.n * 64).for_each(|rows| {
                    rows.chunks_mut(o.n)
                        .for_each(|row| row.copy_from_slice(&bias))
                });
            }
            true
        }
        None if o.k == 0 => {
            y.fill(0.0);
            true
        }
        None => false, // gemm writes every element without reading it
    };
    if !y.is_empty() && o.k > 0 {
        run(&o, a, b, &mut y, accumulate);
    }
    Ok((CpuStorage::F32(y), Shape::from(dims)))
}

struct MatMul;

impl F32Op<2> for MatMul {
    const NAME: &'static str = "matmul";

    fn cpu_fwd(&self, [a, b]: [Operand; 2]) -> Forward {
        product(a, b, None)
    }

    fn bwd(&self, [a, b]: [&Tensor; 2], _res: &Tensor, grad_res: &Tensor) -> Grads<2> {
        product_grads(a, b, grad_res)
    }
}

struct MatMulBias {
    /// `b` is a layer's weight `[n, k]`, multiplied transposed.
    weight_rows: bool,
}

impl F32Op<3> for MatMulBias {
    const NAME: &'static str = "matmul-bias";

    fn cpu_fwd(&self, [a, (b, b_l), bias]: [Operand; 3]) -> Forward {
        if self.weight_rows {
            return product(a, (b, &b_l.transpose(0, 1)?), Some(bias));
        }
        product(a, (b, b_l), Some(bias))
    }

    fn bwd(&self, [a, b, bias]: [&Tensor; 3], _res: &Tensor, grad_res: &Tensor) -> Grads<3> {
        let (grad_a, grad_b) = if self.weight_rows {
            // y = a · Wᵀ: dA = dY · W, dW = dYᵀ · A `[n, k]`, contiguous like W.
            let grad_a = a.track_op().then(|| matmul(grad_res, b)).transpose()?;
            let grad_w = if b.track_op() {
                let (k, n) = (b.dim(1)?, b.dim(0)?);
                let a_rows = a.reshape(((), k))?;
                let g_rows = grad_res.reshape(((), n))?;
                Some(matmul(&g_rows.t()?, &a_rows)?)
            } else {
                None
            };
            (grad_a, grad_w)
        } else {
            let [grad_a, grad_b] = product_grads(a, b, grad_res)?;
            (grad_a, grad_b)
        };
        let grad_bias = if bias.track_op() {
            Some(sum_rows(grad_res, bias.dim(0)?)?)
        } else {
            None
        };
        Ok([grad_a, grad_b, grad_bias])
    }
}

/// The sum of the rows of `g` seen as `[rows, n]`: `[n]`, the bias gradient. Candle's sum over
/// the leading dimension folds every column with a stride (a visible share of a score network
/// training step in `perf`); here each row is added onto one accumulator in order.
fn sum_rows(g: &Tensor, n: usize) -> Result<Tensor> {
    if !on_cpu_f32(g) || n == 0 {
        return g.reshape(((), n))?.sum(0);
    }
    let sums = with_cpu_f32(g, |data| {
        let mut acc = vec![0f32; n];
        for row in data.chunks_exact(n) {
            for (a, &x) in acc.iter_mut().zip(row) {
                *a += x;
            }
        }
        Ok(acc)
    })?;
    Tensor::from_vec(sums, n, g.device())
}

/// A fully connected layer with candle's parameters (`weight` `[out, in]`, `bias` `[out]`, the
/// same initialization), computed through [`matmul`].
#[derive(Clone, Debug)]
pub struct Linear {
    inner: candle_nn::Linear,
}

/// [`Linear`] from `in_dim` to `out_dim` features with a bias, at `vb` (as `candle_nn::linear`).
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(Linear {
        inner: candle_nn::linear(in_dim, out_dim, vb)?,
    })
}

impl Linear {
    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.inner.bias()
    }
}

impl Module for Linear {
    /// `[..., in]` -> `[..., out]`
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.inner.bias() {
            Some(bias) => linear_bias(x, self.inner.weight(), bias),
            None => matmul(x, &self.inner.weight().t()?),
        }
    }
}

/// `dst (m×n, contiguous) += lhs (m×k) · rhs (k×n)`, operands given by (row, column) strides.
///
/// # Safety
/// The slices must hold every element the strides address.
pub(crate) unsafe fn gemm_rows(
    dst: &mut [f32],
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
    (m, n, k): (usize, usize, usize),
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm_rows_with(
            parallelism(m * n * k),
            dst,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            (m, n, k),
            true,
        )
    }
}

/// [`gemm_rows`] on the calling thread only, for work already split across the pool; with
/// `accumulate` false `dst` is overwritten (not read) instead of added to.
///
/// # Safety
/// As [`gemm_rows`].
pub(crate) unsafe fn gemm_rows_serial(
    dst: &mut [f32],
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
    mnk: (usize, usize, usize),
    accumulate: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm_rows_with(
            Parallelism::None,
            dst,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            mnk,
            accumulate,
        )
    }
}

/// # Safety
/// As [`gemm_rows`].
#[allow(clippy::too_many_arguments)] // the product's operands, as gemm takes them
unsafe fn gemm_rows_with(
    parallelism: Parallelism,
    dst: &mut [f32],
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    if lhs_cs == 1 && rhs_rs == 1 && (m <= FEW_ROWS || (m <= LONG_DOT_ROWS && k >= LONG_DOT_K)) {
        // A few rows times transposed weights (a GRU step's h · W_hhᵀ at batch 1, or a
        // training part's rows): the dot-product kernel, on this thread.
        few_rows_product(dst, lhs, lhs_rs, rhs, rhs_cs, (m, n, k), accumulate);
        return;
    }
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
            accumulate,
            operand(lhs, lhs_rs, lhs_cs),
            operand(rhs, rhs_rs, rhs_cs),
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_support::{gradients, max_abs_diff};
    use candle_core::{Device, Var};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        crate::nn::test_support::random(shape, seed, 1.0)
    }

    /// Forward and both gradients against candle's `broadcast_matmul`, with `a` and `b` built
    /// from variables by `make_a` / `make_b` (to test strided views).
    fn check(
        a_shape: &[usize],
        b_shape: &[usize],
        make_a: impl Fn(&Tensor) -> Tensor,
        make_b: impl Fn(&Tensor) -> Tensor,
    ) {
        let va = Var::from_tensor(&random(a_shape, 1)).unwrap();
        let vb = Var::from_tensor(&random(b_shape, 2)).unwrap();
        let (a, b) = (make_a(va.as_tensor()), make_b(vb.as_tensor()));
        let ours = matmul(&a, &b).unwrap();
        let reference = a.broadcast_matmul(&b).unwrap();
        let k = a.dim(a.rank() - 1).unwrap() as f32;
        let tolerance = 1e-5 * k.max(1.0);
        assert!(
            max_abs_diff(&ours, &reference) <= tolerance,
            "forward {a_shape:?} x {b_shape:?}"
        );
        let upstream = random(ours.dims(), 3);
        let grads = |y: &Tensor| {
            let g = gradients(y, &upstream, &[va.as_tensor(), vb.as_tensor()]);
            (g[0].clone().unwrap(), g[1].clone().unwrap())
        };
        let (ga, gb) = grads(&ours);
        let (ra, rb) = grads(&reference);
        let tolerance = 1e-5 * (ours.elem_count() as f32).sqrt().max(k);
        assert!(max_abs_diff(&ga, &ra) <= tolerance, "dA {a_shape:?}");
        assert!(max_abs_diff(&gb, &rb) <= tolerance, "dB {b_shape:?}");
    }

    #[test]
    fn products_and_gradients_match_candle() {
        let same = |t: &Tensor| t.clone();
        let t = |t: &Tensor| t.t().unwrap();
        check(&[5, 7], &[7, 3], same, same);
        check(&[5, 7], &[3, 7], same, t); // a Linear's weight, transposed
        check(&[7, 5], &[7, 3], t, same);
        check(&[2, 5, 7], &[7, 3], same, same); // shared b, batches continue a's rows
        check(&[2, 7, 5], &[7, 3], t, same); // shared b, batches do not
        check(&[2, 5, 7], &[2, 7, 3], same, same);
        check(&[2, 3, 4, 5], &[2, 3, 5, 6], same, same); // attention-like, small products
        check(&[2, 3, 5, 4], &[2, 3, 6, 5], t, t);
        check(&[64, 300], &[300, 128], same, same); // above PARALLEL_MACS on two threads
        check(&[1, 0], &[0, 4], same, same);
    }

    #[test]
    fn product_plus_bias_matches_candle() {
        for a_shape in [&[5usize, 7][..], &[2, 5, 7], &[1, 0, 7]] {
            let a = Var::from_tensor(&random(a_shape, 1)).unwrap();
            let b = Var::from_tensor(&random(&[3, 7], 2)).unwrap();
            let bias = Var::from_tensor(&random(&[3], 3)).unwrap();
            let b_t = b.as_tensor().t().unwrap(); // strided, as in a Linear layer
            let ours = matmul_bias(a.as_tensor(), &b_t, bias.as_tensor()).unwrap();
            let reference = a
                .as_tensor()
                .broadcast_matmul(&b_t)
                .unwrap()
                .broadcast_add(bias.as_tensor())
                .unwrap();
            assert!(max_abs_diff(&ours, &reference) < 1e-5, "{a_shape:?}");
            if ours.elem_count() == 0 {
                continue; // candle leaves some gradients of empty products out
            }
            let upstream = random(ours.dims(), 4);
            let grads = |y: &Tensor| {
                gradients(
                    y,
                    &upstream,
                    &[a.as_tensor(), b.as_tensor(), bias.as_tensor()],
                )
            };
            for (ours, reference) in grads(&ours).iter().zip(grads(&reference).iter()) {
                match (ours, reference) {
                    (Some(o), Some(r)) => assert!(max_abs_diff(o, r) < 1e-4, "{a_shape:?}"),
                    (o, r) => assert_eq!(o.is_some(), r.is_some(), "{a_shape:?}"),
                }
            }
        }
    }

    /// Products of a few rows with a Linear's transposed weights take the dot-product kernel
    /// (`few_rows_product`): every tail (columns not a multiple of 4, lengths not a multiple
    /// of 8, an odd row), strided rows, batches, with and without a bias, against candle.
    #[test]
    fn few_rows_products_match_candle() {
        let wide = random(&[16, 300], 9);
        for rows in [1, 2, 3, 8, 16] {
            for n in [1, 4, 5, 9] {
                for k in [1, 8, 13, 256] {
                    let w = random(&[n, k], (rows * 1000 + n * 10 + k) as u64);
                    let bias = random(&[n], 5);
                    // Rows with a stride of 300 (a narrowed view), and contiguous ones.
                    let strided = wide.narrow(0, 0, rows).unwrap().narrow(1, 0, k).unwrap();
                    let contiguous = strided.contiguous().unwrap();
                    for a in [&strided, &contiguous] {
                        let reference = a.matmul(&w.t().unwrap()).unwrap();
                        let ours = matmul(a, &w.t().unwrap()).unwrap();
                        let tolerance = 1e-5 * k as f32;
                        assert!(
                            max_abs_diff(&ours, &reference) <= tolerance,
                            "{rows}x{k}x{n}"
                        );
                        let ours = matmul_bias(a, &w.t().unwrap(), &bias).unwrap();
                        let reference = reference.broadcast_add(&bias).unwrap();
                        assert!(
                            max_abs_diff(&ours, &reference) <= tolerance,
                            "{rows}x{k}x{n} + bias"
                        );
                    }
                }
            }
        }
        // Batches that continue a's rows: 2 × 4 rows in one product.
        let a = random(&[2, 4, 13], 11);
        let w = random(&[5, 13], 12);
        let reference = a.broadcast_matmul(&w.t().unwrap()).unwrap();
        assert!(max_abs_diff(&matmul(&a, &w.t().unwrap()).unwrap(), &reference) < 1e-4);
    }

    /// `gemm_rows` adds onto `dst`, through the few-row kernel (a transposed `rhs`, up to 16
    /// rows) or gemm, the same as a plain triple loop.
    #[test]
    fn gemm_rows_adds_the_product() {
        let values =
            |len: usize, seed: u64| -> Vec<f32> { random(&[len], seed).to_vec1::<f32>().unwrap() };
        for (m, n, k) in [
            (1, 9, 21),
            (5, 9, 21),
            (16, 9, 21),
            (17, 9, 21),
            (64, 9, LONG_DOT_K + 3),
            (LONG_DOT_ROWS + 1, 5, LONG_DOT_K),
        ] {
            let lhs = values(m * k, 1);
            let w = values(n * k, 2); // [n, k]: the rhs is its transpose
            let start = values(m * n, 3);
            for (rhs_strides, at) in [((1, k), k), ((n, 1), 1)] {
                let mut dst = start.clone();
                // SAFETY: every operand holds the elements its strides address.
                unsafe { gemm_rows(&mut dst, &lhs, (k, 1), &w, rhs_strides, (m, n, k)) };
                for r in 0..m {
                    for j in 0..n {
                        let want = start[r * n + j]
                            + (0..k)
                                .map(|i| lhs[r * k + i] * w[i * rhs_strides.0 + j * rhs_strides.1])
                                .sum::<f32>();
                        let got = dst[r * n + j];
                        assert!(
                            (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "m {m}, strides at {at}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let a = random(&[2, 3], 1);
        assert!(matmul(&a, &random(&[4, 5], 2)).is_err());
        assert!(matmul(&random(&[2, 2, 3], 3), &random(&[3, 3, 4], 4)).is_err());
    }

    #[test]
    fn linear_matches_candle_linear() {
        let map = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&map, candle_core::DType::F32, &Device::Cpu);
        let ours = linear(6, 4, vb.pp("layer")).unwrap();
        let reference = candle_nn::Linear::new(ours.weight().clone(), ours.bias().cloned());
        for shape in [&[3usize, 6][..], &[2, 5, 6], &[40, 6]] {
            let x = Var::from_tensor(&random(shape, 7)).unwrap();
            let (y, want) = (
                ours.forward(x.as_tensor()).unwrap(),
                reference.forward(x.as_tensor()).unwrap(),
            );
            let diff = max_abs_diff(&y, &want);
            assert!(diff < 1e-5, "{shape:?}: {diff}");
            // Gradients of the input, the weight (contiguous, as stored) and the bias.
            let upstream = random(y.dims(), 8);
            let wrt = [x.as_tensor(), ours.weight(), ours.bias().unwrap()];
            let (g, r) = (
                gradients(&y, &upstream, &wrt),
                gradients(&want, &upstream, &wrt),
            );
            for (i, (g, r)) in g.iter().zip(&r).enumerate() {
                let (g, r) = (g.as_ref().unwrap(), r.as_ref().unwrap());
                assert!(max_abs_diff(g, r) < 1e-4, "{shape:?}: gradient {i}");
            }
            let dw = gradients(&y, &upstream, &wrt)[1].clone().unwrap();
            assert!(dw.is_contiguous() && dw.dims() == [4, 6]);
        }
    }
}
