//! Fast f32 CPU 2-D convolution, forward and backward, as a candle custom op.
//!
//! Forward: every (image, tile of output positions) unrolls its input patch into a column
//! buffer small enough to stay in L2 (im2col) and multiplies the `[out, in·k·k]` weight matrix
//! with it through `gemm`, writing straight into the output, whose tile was pre-filled with the
//! bias. 1×1 stride-1 unpadded convolutions skip the unrolling and multiply the input directly;
//! stride-1 convolutions with at most [`SMALL_C_OUT`] output channels (a UNet's output layer)
//! skip it too and run as long multiply-adds over zero-padded input rows.
//!
//! 3×3 stride-1 layers with enough channels and positions go to [`super::winograd`] instead.
//!
//! Backward: `grad_weight = Σ grad_out · colsᵀ` (columns recomputed per tile, one partial sum per
//! batch chunk, added in a fixed order so results are deterministic for a given thread count),
//! `grad_bias = Σ grad_out`, and `grad_input` either as a forward convolution of `grad_out` with
//! the flipped, transposed kernel (stride 1) or as `col2im(Wᵀ · grad_out)` (other strides).
//! Gradients of untracked arguments (e.g. the network's input) are not computed.
//!
//! Work is spread over rayon's global pool (`RAYON_NUM_THREADS`), the pool candle's own CPU
//! matmul uses; each gemm then runs single-threaded unless there are fewer tasks than threads.
//! Large results are advised onto huge pages (see [`super::huge_pages`]).

use candle_core::{CpuStorage, Result, Shape, Storage, Tensor, bail};
use rayon::prelude::*;

use super::conv_geometry::ConvGeometry;
use super::cpu::gemm::{Mat, gemm_parallelism, sgemm, sum_of_runs};
use super::cpu::op::{F32Op, Forward, Grads, Op, Operand, contiguous};
use super::cpu::storage::{
    SharedMut, Strided4, contiguous_f32, cpu_f32, on_cpu_f32, put_back_cols, take_cols,
};
use super::huge_pages::{uninit_f32, zeroed_f32};

/// Walks the output positions `[p0, p0 + n)` of one kernel offset `(ki, kj)` row by row, calling
/// `f(segment_start, segment_len, input_row_start_and_first_col)`: `None` for rows that fall
/// into the padding. Each segment is split into padding `[0, a)`, valid `[a, z)`, padding `[z, len)`.
#[inline(always)]
fn for_each_segment(
    g: &ConvGeometry,
    ki: usize,
    kj: usize,
    p0: usize,
    n: usize,
    mut f: impl FnMut(usize, usize, usize, usize, Option<(usize, usize)>),
) {
    let (lo, hi) = g.valid_cols(kj);
    let end = p0 + n;
    let mut p = p0;
    while p < end {
        let (oh, ow0) = (p / g.w_out, p % g.w_out);
        let ow1 = g.w_out.min(ow0 + (end - p));
        let len = ow1 - ow0;
        let ih = (oh * g.stride + ki).wrapping_sub(g.padding);
        let a = lo.clamp(ow0, ow1);
        let z = hi.clamp(a, ow1);
        let valid = (ih < g.h && z > a).then(|| (ih, a * g.stride + kj - g.padding));
        f(p - p0, len, a - ow0, z - ow0, valid);
        p += len;
    }
}

/// Unrolls output positions `[p0, p0 + n)` of image `b` into `cols` (`[k_dim, n]`, row-major).
fn im2col(x: &Strided4, g: &ConvGeometry, b: usize, p0: usize, n: usize, cols: &mut [f32]) {
    let k = g.kernel;
    let [s0, s1, s2, s3] = x.strides;
    let contiguous_rows = g.stride == 1 && s3 == 1;
    for ki in 0..k {
        for kj in 0..k {
            for_each_segment(g, ki, kj, p0, n, |start, len, a, z, valid| {
                for ci in 0..g.c_in {
                    let row = &mut cols[((ci * k + ki) * k + kj) * n..][..n];
                    let seg = &mut row[start..start + len];
                    match valid {
                        None => seg.fill(0.0),
                        Some((ih, iw0)) => {
                            seg[..a].fill(0.0);
                            seg[z..].fill(0.0);
                            let src = x.offset + b * s0 + ci * s1 + ih * s2;
                            let dst = &mut seg[a..z];
                            if contiguous_rows {
                                dst.copy_from_slice(&x.data[src + iw0..src + iw0 + dst.len()]);
                            } else {
                                for (i, d) in dst.iter_mut().enumerate() {
                                    *d = x.data[src + (iw0 + i * g.stride) * s3];
                                }
                            }
                        }
                    }
                }
            });
        }
    }
}

/// The columns `[k_dim, n]` of output positions `[p0, p0 + n)` of image `b` as a gemm operand:
/// the input itself for a `pointwise` convolution (1×1, stride 1, rows that flatten), otherwise
/// unrolled into `cols` by [`im2col`].
fn columns(
    x: &Strided4,
    g: &ConvGeometry,
    b: usize,
    (p0, n): (usize, usize),
    pointwise: bool,
    cols: &mut [f32],
) -> Mat {
    if pointwise {
        let [s0, s1, _, s3] = x.strides;
        return Mat {
            ptr: x.data[x.offset + b * s0 + p0 * s3..].as_ptr(),
            rs: s1,
            cs: s3,
        };
    }
    im2col(x, g, b, p0, n, cols);
    Mat {
        ptr: cols.as_ptr(),
        rs: n,
        cs: 1,
    }
}

/// The sum of `values` in f64, over eight lanes so that it vectorizes (a single f64 chain
/// waits on each add: it showed up in `perf` of a roll training step, for the bias gradients).
fn sum_f64(values: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f64::from(v);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Adds the columns `dcols` (`[k_dim, n]`) of output positions `[p0, p0 + n)` back onto the
/// contiguous input-gradient image `gx` (`[c_in, h, w]`): the adjoint of [`im2col`].
fn col2im_add(dcols: &[f32], g: &ConvGeometry, p0: usize, n: usize, gx: &mut [f32]) {
    let k = g.kernel;
    let plane = g.h * g.w;
    for ki in 0..k {
        for kj in 0..k {
            for_each_segment(g, ki, kj, p0, n, |start, _len, a, z, valid| {
                let Some((ih, iw0)) = valid else { return };
                for ci in 0..g.c_in {
                    let src = &dcols[((ci * k + ki) * k + kj) * n + start..][a..z];
                    let row = &mut gx[ci * plane + ih * g.w..][..g.w];
                    if g.stride == 1 {
                        for (d, s) in row[iw0..iw0 + src.len()].iter_mut().zip(src) {
                            *d += s;
                        }
                    } else {
                        for (i, s) in src.iter().enumerate() {
                            row[iw0 + i * g.stride] += s;
                        }
                    }
                }
            });
        }
    }
}

/// Output channels up to this count skip im2col (stride 1, k > 1): with so few output rows the
/// gemm would spend its time streaming the column buffer, so the small kernels below work on
/// input rows in place instead.
pub const SMALL_C_OUT: usize = 4;

fn uses_small_c_out_kernels(g: &ConvGeometry) -> bool {
    g.c_out <= SMALL_C_OUT && g.stride == 1 && g.kernel > 1
}

/// Compiles `$imp` once per x86 vector extension and calls the best one the CPU has: the crate
/// itself is built for baseline x86-64 (SSE2), which would leave the auto-vectorized loops at
/// a quarter of the machine's vector width.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $imp:ident) => {
        $(#[$meta])*
        $vis unsafe fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) {
                    unsafe { $imp($($arg),*) }
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    unsafe { $imp($($arg),*) }
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    return unsafe { avx2($($arg),*) };
                }
            }
            unsafe { $imp($($arg),*) }
        }
    };
}

/// Rows of output per small-kernel tile: keeps a tile's `c_out` output planes in L1.
fn small_tile_rows(g: &ConvGeometry) -> usize {
    let padded_w = g.w + 2 * g.padding;
    (2048 / padded_w).clamp(1, g.h_out)
}

/// A block of stride-1 output rows `[oh0, oh0 + rows)` of image `b`, for the small-`c_out` kernels.
#[derive(Clone, Copy)]
struct RowTile<'a> {
    x: &'a Strided4<'a>,
    g: &'a ConvGeometry,
    b: usize,
    oh0: usize,
    rows: usize,
}

/// Scratch of the small-`c_out` kernels: zero-padded input rows and `c_out` padded-width planes.
#[derive(Default)]
struct SmallBuffers {
    input: Vec<f32>,
    planes: Vec<f32>,
}

/// Copies the input rows a tile reads into `buf`, zero-padded: per channel a plane of
/// `rows + k − 1` rows of `w + 2·padding` values, then `k` zeros so shifted reads past the last
/// row stay inside the plane. Returns the plane length.
fn pad_input_rows(tile: &RowTile, buf: &mut Vec<f32>) -> usize {
    let &RowTile {
        x,
        g,
        b,
        oh0,
        rows: rows_out,
    } = tile;
    let padded_w = g.w + 2 * g.padding;
    let rows = rows_out + g.kernel - 1;
    let plane = rows * padded_w + g.kernel;
    buf.clear();
    buf.resize(g.c_in * plane, 0.0);
    let [s0, s1, s2, s3] = x.strides;
    for ci in 0..g.c_in {
        for r in 0..rows {
            let ih = (oh0 + r).wrapping_sub(g.padding);
            if ih >= g.h {
                continue;
            }
            let dst = &mut buf[ci * plane + r * padded_w + g.padding..][..g.w];
            let src = x.offset + b * s0 + ci * s1 + ih * s2;
            if s3 == 1 {
                dst.copy_from_slice(&x.data[src..src + g.w]);
            } else {
                dst.iter_mut()
                    .enumerate()
                    .for_each(|(iw, d)| *d = x.data[src + iw * s3]);
            }
        }
    }
    plane
}

simd_dispatch! {
    /// Forward of a tile of output rows for a small `c_out`, written
    /// to `dst` (image `b`'s output, channels `positions()` apart). Output rows are computed
    /// `w + 2·padding` wide so every kernel tap is one long multiply-add over the padded input.
    ///
    /// # Safety
    /// The tile's rows of every channel of `dst` must be valid and not accessed elsewhere.
    unsafe fn small_c_out_forward(tile: &RowTile, weight: &[f32], bias: Option<&[f32]>, buffers: &mut SmallBuffers, dst: *mut f32) => small_c_out_forward_impl
}

#[inline(always)]
unsafe fn small_c_out_forward_impl(
    tile: &RowTile,
    weight: &[f32],
    bias: Option<&[f32]>,
    buffers: &mut SmallBuffers,
    dst: *mut f32,
) {
    let &RowTile {
        g,
        oh0,
        rows: rows_out,
        ..
    } = tile;
    let (k, kd, padded_w) = (g.kernel, g.k_dim(), g.w + 2 * g.padding);
    let SmallBuffers { input, planes: out } = buffers;
    let plane = pad_input_rows(tile, input);
    let len = rows_out * padded_w;
    out.clear();
    for co in 0..g.c_out {
        out.extend(std::iter::repeat_n(bias.map_or(0.0, |bias| bias[co]), len));
    }
    for ci in 0..g.c_in {
        for ki in 0..k {
            for kj in 0..k {
                let taps = &input[ci * plane + ki * padded_w + kj..][..len];
                for (co, out_plane) in out.chunks_exact_mut(len).enumerate() {
                    let w = weight[co * kd + (ci * k + ki) * k + kj];
                    for (o, &v) in out_plane.iter_mut().zip(taps) {
                        *o += w * v;
                    }
                }
            }
        }
    }
    let p = g.positions();
    for (co, out_plane) in out.chunks_exact(len).enumerate() {
        for r in 0..rows_out {
            // SAFETY: the caller owns these rows.
            let row = unsafe {
                std::slice::from_raw_parts_mut(dst.add(co * p + (oh0 + r) * g.w_out), g.w_out)
            };
            row.copy_from_slice(&out_plane[r * padded_w..][..g.w_out]);
        }
    }
}

simd_dispatch! {
    /// Adds the weight gradient of a tile of output rows onto `gw`
    /// (`[c_out, k_dim]`) for a small `c_out`: every tap is one long dot product over the padded
    /// input and `grad_out` (image `b`'s `[c_out, positions()]`) spread to the padded width.
    unsafe fn small_c_out_weight_grad(tile: &RowTile, grad_out: &[f32], buffers: &mut SmallBuffers, gw: &mut [f32]) => small_c_out_weight_grad_impl
}

/// Lanes of the partial dot products: one AVX-512 register.
const LANES: usize = 16;

#[inline(always)]
unsafe fn small_c_out_weight_grad_impl(
    tile: &RowTile,
    grad_out: &[f32],
    buffers: &mut SmallBuffers,
    gw: &mut [f32],
) {
    let &RowTile {
        g,
        oh0,
        rows: rows_out,
        ..
    } = tile;
    let (k, kd, p, padded_w) = (g.kernel, g.k_dim(), g.positions(), g.w + 2 * g.padding);
    let SmallBuffers {
        input,
        planes: grad,
    } = buffers;
    let plane = pad_input_rows(tile, input);
    let len = rows_out * padded_w;
    grad.clear();
    grad.resize(g.c_out * len, 0.0);
    for (co, grad_plane) in grad.chunks_exact_mut(len).enumerate() {
        for r in 0..rows_out {
            grad_plane[r * padded_w..][..g.w_out]
                .copy_from_slice(&grad_out[co * p + (oh0 + r) * g.w_out..][..g.w_out]);
        }
    }
    for ci in 0..g.c_in {
        for ki in 0..k {
            for kj in 0..k {
                let taps = &input[ci * plane + ki * padded_w + kj..][..len];
                let (tap_chunks, tap_tail) = taps.as_chunks::<LANES>();
                for (co, grad_plane) in grad.chunks_exact(len).enumerate() {
                    let (grad_chunks, grad_tail) = grad_plane.as_chunks::<LANES>();
                    let mut lanes = [0f32; LANES];
                    for (ts, gs) in tap_chunks.iter().zip(grad_chunks) {
                        for i in 0..LANES {
                            lanes[i] += ts[i] * gs[i];
                        }
                    }
                    let tail: f32 = tap_tail.iter().zip(grad_tail).map(|(t, g)| t * g).sum();
                    gw[co * kd + (ci * k + ki) * k + kj] += lanes.iter().sum::<f32>() + tail;
                }
            }
        }
    }
}

/// Forward convolution: `weight` is contiguous `[c_out, k_dim]`, `bias` `[c_out]`; returns the
/// contiguous output `[batch, c_out, h_out, w_out]`.
pub fn conv2d_forward(
    x: &Strided4,
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Vec<f32> {
    let (p, kd) = (g.positions(), g.k_dim());
    assert_eq!(weight.len(), g.c_out * kd, "conv2d_forward: weight size");
    assert!(
        bias.is_none_or(|b| b.len() == g.c_out),
        "conv2d_forward: bias size"
    );
    if super::winograd::applies(g) {
        return super::winograd::forward(x, weight, bias, g);
    }
    // Every path below writes every output element (gemm without reading `y` first).
    let mut y = uninit_f32(g.batch * g.c_out * p);
    if uses_small_c_out_kernels(g) {
        let rows = small_tile_rows(g);
        let tiles = g.h_out.div_ceil(rows);
        let y_ptr = SharedMut(y.as_mut_ptr());
        (0..g.batch * tiles).into_par_iter().for_each_init(
            SmallBuffers::default,
            |buffers, task| {
                let (b, oh0) = (task / tiles, task % tiles * rows);
                let tile = RowTile {
                    x,
                    g,
                    b,
                    oh0,
                    rows: rows.min(g.h_out - oh0),
                };
                let dst = y_ptr.at(b * g.c_out * p);
                // SAFETY: task (b, oh0) is the only writer of these output rows of image b.
                unsafe { small_c_out_forward(&tile, weight, bias, buffers, dst) };
            },
        );
        return y;
    }
    let pointwise = g.is_pointwise() && x.rows_flatten(g.w);
    let tile = g.tile_len();
    let tiles = p.div_ceil(tile);
    let tasks = g.batch * tiles;
    let par = gemm_parallelism(tasks);
    let y_ptr = SharedMut(y.as_mut_ptr());
    let lhs = Mat {
        ptr: weight.as_ptr(),
        rs: kd,
        cs: 1,
    };
    (0..tasks).into_par_iter().for_each(|task| {
        let mut cols = if pointwise {
            Vec::new()
        } else {
            take_cols(kd * tile)
        };
        {
            let cols = &mut cols;
            let (b, p0) = (task / tiles, task % tiles * tile);
            let n = tile.min(p - p0);
            // SAFETY: task (b, p0) is the only writer of columns [p0, p0 + n) of image b.
            let dst = y_ptr.at(b * g.c_out * p + p0);
            if let Some(bias) = bias {
                for (co, &value) in bias.iter().enumerate() {
                    unsafe { std::slice::from_raw_parts_mut(dst.add(co * p), n) }.fill(value);
                }
            }
            let rhs = columns(x, g, b, (p0, n), pointwise, cols);
            unsafe { sgemm((g.c_out, n, kd), dst, (p, 1), bias.is_some(), lhs, rhs, par) };
        }
        put_back_cols(cols);
    });
    y
}

/// `grad_weight` (`[c_out, k_dim]`) and `grad_bias` (`[c_out]`), each only if asked for.
/// `grad_out` is contiguous `[batch, c_out, h_out, w_out]`.
pub fn conv2d_weight_bias_grads(
    x: &Strided4,
    grad_out: &[f32],
    g: &ConvGeometry,
    want_weight: bool,
    want_bias: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (p, kd, co) = (g.positions(), g.k_dim(), g.c_out);
    assert_eq!(
        grad_out.len(),
        g.batch * co * p,
        "conv2d_weight_bias_grads: grad_out size"
    );
    if want_weight && super::winograd::applies(g) {
        let (_, gb) = conv2d_weight_bias_grads(x, grad_out, g, false, want_bias);
        return (Some(super::winograd::weight_grad(x, grad_out, g)), gb);
    }
    let pointwise = g.is_pointwise() && x.rows_flatten(g.w);
    let small = uses_small_c_out_kernels(g);
    let tile = g.tile_len();
    // gemm runs fastest when the accumulator is contiguous along its shorter side, so it is
    // kept as `[k_dim, c_out]` when c_out is the shorter one and transposed at the end.
    let transposed = co <= kd && !small;
    let gw_strides = if transposed { (1, co) } else { (kd, 1) };
    let (mut gw, gb) = sum_of_runs(
        g.batch,
        |images, par| {
            let mut gw = if want_weight {
                vec![0f32; co * kd]
            } else {
                Vec::new()
            };
            let mut gb = if want_bias {
                vec![0f64; co]
            } else {
                Vec::new()
            };
            let mut cols = if want_weight && !pointwise && !small {
                vec![0f32; kd * tile]
            } else {
                Vec::new()
            };
            let mut small_buffers = SmallBuffers::default();
            for b in images {
                let gy = &grad_out[b * co * p..(b + 1) * co * p];
                if want_bias {
                    for (acc, row) in gb.iter_mut().zip(gy.chunks_exact(p)) {
                        *acc += sum_f64(row);
                    }
                }
                if !want_weight {
                    continue;
                }
                if small {
                    let rows = small_tile_rows(g);
                    for oh0 in (0..g.h_out).step_by(rows) {
                        let tile = RowTile {
                            x,
                            g,
                            b,
                            oh0,
                            rows: rows.min(g.h_out - oh0),
                        };
                        // SAFETY: slices only; no further precondition.
                        unsafe { small_c_out_weight_grad(&tile, gy, &mut small_buffers, &mut gw) };
                    }
                    continue;
                }
                for p0 in (0..p).step_by(tile) {
                    let n = tile.min(p - p0);
                    // colsᵀ as gemm's rhs `[n, k_dim]`.
                    let rhs = columns(x, g, b, (p0, n), pointwise, &mut cols).t();
                    let lhs = Mat {
                        ptr: gy[p0..].as_ptr(),
                        rs: p,
                        cs: 1,
                    };
                    unsafe {
                        sgemm(
                            (co, kd, n),
                            gw.as_mut_ptr(),
                            gw_strides,
                            true,
                            lhs,
                            rhs,
                            par,
                        )
                    };
                }
            }
            (gw, gb)
        },
        |(gw, gb), (w, b)| {
            gw.iter_mut().zip(&w).for_each(|(acc, v)| *acc += v);
            gb.iter_mut().zip(&b).for_each(|(acc, v)| *acc += v);
        },
    );
    if want_weight && transposed {
        gw = (0..co * kd).map(|i| gw[(i % kd) * co + i / kd]).collect();
    }
    (
        want_weight.then_some(gw),
        want_bias.then(|| gb.into_iter().map(|v| v as f32).collect()),
    )
}

/// `grad_input` (contiguous `[batch, c_in, h, w]`); `weight` is contiguous `[c_out, k_dim]`,
/// `grad_out` contiguous `[batch, c_out, h_out, w_out]`.
pub fn conv2d_input_grad(weight: &[f32], grad_out: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (p, kd, k) = (g.positions(), g.k_dim(), g.kernel);
    assert_eq!(
        grad_out.len(),
        g.batch * g.c_out * p,
        "conv2d_input_grad: grad_out size"
    );
    if g.stride == 1 && g.padding < k {
        // A stride-1 transposed convolution is a convolution with the kernel flipped in space and
        // its channel axes swapped, padded by `k − 1 − padding`.
        let kk = k * k;
        let mut flipped = vec![0f32; weight.len()];
        for co in 0..g.c_out {
            for ci in 0..g.c_in {
                for i in 0..kk {
                    flipped[(ci * g.c_out + co) * kk + kk - 1 - i] =
                        weight[(co * g.c_in + ci) * kk + i];
                }
            }
        }
        let gt = g.transposed();
        let gy = Strided4::contiguous(grad_out, g.c_out, g.h_out, g.w_out);
        return conv2d_forward(&gy, &flipped, None, &gt);
    }
    let plane = g.c_in * g.h * g.w;
    let mut gx = zeroed_f32(g.batch * plane);
    let tile = g.tile_len();
    let par = gemm_parallelism(g.batch);
    let lhs = Mat {
        ptr: weight.as_ptr(),
        rs: 1,
        cs: kd,
    };
    gx.par_chunks_mut(plane).enumerate().for_each_init(
        || vec![0f32; kd * tile],
        |dcols, (b, gx_image)| {
            for p0 in (0..p).step_by(tile) {
                let n = tile.min(p - p0);
                let rhs = Mat {
                    ptr: grad_out[b * g.c_out * p + p0..].as_ptr(),
                    rs: p,
                    cs: 1,
                };
                unsafe {
                    sgemm(
                        (kd, n, g.c_out),
                        dcols.as_mut_ptr(),
                        (n, 1),
                        false,
                        lhs,
                        rhs,
                        par,
                    )
                };
                col2im_add(&dcols[..kd * n], g, p0, n, gx_image);
            }
        },
    );
    gx
}

/// The convolution as a candle op on `(input, weight)` or `(input, weight, bias)`.
#[derive(Clone, Copy, Debug)]
struct FastConv2d {
    stride: usize,
    padding: usize,
}

impl FastConv2d {
    fn forward(&self, (x, x_l): Operand, w: Operand, bias: Option<Operand>) -> Forward {
        let g = ConvGeometry::new(x_l.dims(), w.1.dims(), self.stride, self.padding)?;
        let x = Strided4::from_layout(cpu_f32(x)?, x_l)?;
        let weight = contiguous(w)?;
        let bias = match bias {
            Some(b) => {
                if b.1.dims() != [g.c_out] {
                    bail!(
                        "conv2d: bias has shape {:?}, expected [{}]",
                        b.1.dims(),
                        g.c_out
                    )
                }
                Some(contiguous(b)?)
            }
            None => None,
        };
        let y = conv2d_forward(&x, &weight, bias.as_deref(), &g);
        Ok((
            CpuStorage::F32(y),
            Shape::from((g.batch, g.c_out, g.h_out, g.w_out)),
        ))
    }

    /// Gradients for input, weight and (if `bias` is given) bias, each only if it is tracked.
    fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        grad_out: &Tensor,
    ) -> Grads<3> {
        let g = ConvGeometry::new(x.dims(), w.dims(), self.stride, self.padding)?;
        let want_input = x.track_op();
        let want_weight = w.track_op();
        let want_bias = bias.is_some_and(|b| b.track_op());
        let grad_out = grad_out.contiguous()?;
        let (gy_storage, gy_layout) = grad_out.storage_and_layout();
        let Storage::Cpu(gy_cpu) = &*gy_storage else {
            bail!("fast conv2d: gradient is not on the CPU")
        };
        let gy = contiguous_f32(cpu_f32(gy_cpu)?, gy_layout);
        let device = x.device();

        let grad_input = if want_input {
            let (w_storage, w_layout) = w.storage_and_layout();
            let Storage::Cpu(w_cpu) = &*w_storage else {
                bail!("fast conv2d: weight is not on the CPU")
            };
            let weight = contiguous_f32(cpu_f32(w_cpu)?, w_layout);
            let gx = conv2d_input_grad(&weight, &gy, &g);
            Some(Tensor::from_vec(gx, (g.batch, g.c_in, g.h, g.w), device)?)
        } else {
            None
        };
        let (grad_weight, grad_bias) = if want_weight || want_bias {
            let (x_storage, x_layout) = x.storage_and_layout();
            let Storage::Cpu(x_cpu) = &*x_storage else {
                bail!("fast conv2d: input is not on the CPU")
            };
            let xs = Strided4::from_layout(cpu_f32(x_cpu)?, x_layout)?;
            let (gw, gb) = conv2d_weight_bias_grads(&xs, &gy, &g, want_weight, want_bias);
            let gw = gw
                .map(|v| Tensor::from_vec(v, (g.c_out, g.c_in, g.kernel, g.kernel), device))
                .transpose()?;
            let gb = gb
                .map(|v| Tensor::from_vec(v, g.c_out, device))
                .transpose()?;
            (gw, gb)
        } else {
            (None, None)
        };
        Ok([grad_input, grad_weight, grad_bias])
    }
}

impl F32Op<2> for FastConv2d {
    const NAME: &'static str = "fast-conv2d";

    fn cpu_fwd(&self, [x, w]: [Operand; 2]) -> Forward {
        self.forward(x, w, None)
    }

    fn bwd(&self, [x, w]: [&Tensor; 2], _res: &Tensor, grad_res: &Tensor) -> Grads<2> {
        let [gx, gw, _] = self.backward(x, w, None, grad_res)?;
        Ok([gx, gw])
    }
}

impl F32Op<3> for FastConv2d {
    const NAME: &'static str = "fast-conv2d-bias";

    fn cpu_fwd(&self, [x, w, b]: [Operand; 3]) -> Forward {
        self.forward(x, w, Some(b))
    }

    fn bwd(&self, [x, w, b]: [&Tensor; 3], _res: &Tensor, grad_res: &Tensor) -> Grads<3> {
        self.backward(x, w, Some(b), grad_res)
    }
}

/// Whether [`conv2d`] takes the fast path for these tensors: all f32 on the CPU, square kernel.
pub fn uses_fast_path(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> bool {
    let square = matches!(weight.dims(), &[_, _, kh, kw] if kh == kw);
    on_cpu_f32(x) && on_cpu_f32(weight) && bias.is_none_or(on_cpu_f32) && square
}

/// `[batch, in, h, w]` ⊛ `weight [out, in, k, k]` (+ `bias [out]`) → `[batch, out, h', w']` with
/// zero padding, differentiable. f32 on the CPU runs the fast kernel of this module; anything
/// else (other dtypes, CUDA, Metal, non-square kernels) runs candle's `conv2d`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    if uses_fast_path(x, weight, bias) {
        let op = Op(FastConv2d { stride, padding });
        return match bias {
            Some(bias) => x.apply_op3(weight, bias, op),
            None => x.apply_op2(weight, op),
        };
    }
    candle_conv2d(x, weight, bias, stride, padding)
}

/// The same convolution through candle's own `conv2d` op (and a broadcast bias add).
pub fn candle_conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let y = x.conv2d(weight, padding, stride, 1, 1)?;
    match bias {
        Some(bias) => y.broadcast_add(&bias.reshape((1, bias.dims1()?, 1, 1))?),
        None => Ok(y),
    }
}

#[cfg(test)]
mod tests {
    use super::super::winograd;
    use super::*;
    use crate::nn::test_support::max_abs;
    use candle_core::{DType, Device, Var};
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn the_lane_sum_equals_the_plain_f64_sum() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for len in [0, 1, 7, 8, 9, 63, 4096, 4099] {
            let values: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let plain: f64 = values.iter().map(|&v| f64::from(v)).sum();
            assert!((sum_f64(&values) - plain).abs() < 1e-12, "{len}");
        }
    }

    /// `max |a − b| / max |b|`: the error relative to the reference's scale.
    fn relative_error(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        max_abs(&(a - b).unwrap()) / max_abs(b).max(1e-12)
    }

    /// (batch, c_in, c_out, h, w, kernel, stride, padding)
    type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

    /// Fixed and random cases, incl. batch 1, odd sizes, stride 2, every kernel path.
    fn cases(rng: &mut ChaCha8Rng) -> Vec<Case> {
        let mut cases = vec![
            (1, 1, 1, 1, 1, 1, 1, 0),
            (1, 3, 5, 7, 9, 3, 1, 1),
            (2, 4, 6, 9, 11, 3, 2, 1),
            (3, 5, 4, 8, 10, 4, 2, 1),
            (2, 6, 3, 7, 5, 1, 1, 0),
            (2, 6, 3, 7, 5, 1, 2, 0),
            (1, 2, 64, 16, 22, 3, 1, 1),
            (2, 8, 8, 5, 6, 3, 1, 0),
            (1, 3, 2, 4, 4, 3, 1, 2),
            (2, 16, 8, 64, 88, 3, 1, 1),
            (2, 3, 4, 5, 6, 1, 1, 1),
            (2, 8, 2, 9, 11, 3, 1, 1),
            (1, 5, 3, 6, 7, 4, 1, 2),
            (3, 64, 2, 20, 30, 3, 1, 1),
            (1, 4, 3, 9, 8, 4, 1, 1),
            // Winograd F(2×2, 3×3): even and odd sizes, one pixel, several blocks per image.
            (1, 32, 32, 64, 64, 3, 1, 1),
            (2, 9, 12, 31, 17, 3, 1, 1),
            (1100, 8, 8, 1, 1, 3, 1, 1),
            (40, 16, 24, 3, 9, 3, 1, 1),
            (1, 96, 32, 32, 33, 3, 1, 1),
        ];
        for _ in 0..12 {
            let kernel = [1, 3, 4][rng.random_range(0..3)];
            let padding = rng.random_range(0..2);
            let stride = rng.random_range(1..3);
            let h = rng.random_range(kernel.max(2)..20);
            let w = rng.random_range(kernel.max(2)..20);
            cases.push((
                rng.random_range(1..4),
                rng.random_range(1..10),
                rng.random_range(1..10),
                h,
                w,
                kernel,
                stride,
                padding,
            ));
        }
        cases
    }

    #[test]
    fn forward_matches_candle_conv2d() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut worst = 0f32;
        for (i, (b, ci, co, h, w, k, s, p)) in cases(&mut rng).into_iter().enumerate() {
            let x = random(&mut rng, &[b, ci, h, w]);
            let weight = random(&mut rng, &[co, ci, k, k]);
            let bias = random(&mut rng, &[co]);
            for bias in [None, Some(&bias)] {
                assert!(uses_fast_path(&x, &weight, bias));
                let ours = conv2d(&x, &weight, bias, s, p).unwrap();
                let reference = candle_conv2d(&x, &weight, bias, s, p).unwrap();
                let err = relative_error(&ours, &reference);
                assert!(
                    err < 1e-4,
                    "case {i} {:?}: relative error {err}",
                    (b, ci, co, h, w, k, s, p)
                );
                worst = worst.max(err);
            }
        }
        eprintln!("forward: worst relative error {worst:e}");
    }

    #[test]
    fn the_winograd_cases_take_the_winograd_path() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let winograd_cases = cases(&mut rng)
            .into_iter()
            .filter(|&(b, ci, co, h, w, k, s, p)| {
                winograd::applies(
                    &ConvGeometry::new(&[b, ci, h, w], &[co, ci, k, k], s, p).unwrap(),
                )
            })
            .count();
        assert!(winograd_cases >= 5, "{winograd_cases} Winograd cases");
    }

    #[test]
    fn forward_reads_strided_inputs_and_weights() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        // Input stored as [b, c, w, h] and viewed transposed; weight viewed through a transpose too.
        let x = random(&mut rng, &[2, 3, 11, 7]).transpose(2, 3).unwrap();
        let weight = random(&mut rng, &[3, 5, 3, 3]).transpose(0, 1).unwrap();
        let bias = random(&mut rng, &[10]).narrow(0, 2, 5).unwrap();
        assert!(!x.is_contiguous() && !weight.is_contiguous());
        for (s, p) in [(1, 1), (2, 0), (1, 0)] {
            let ours = conv2d(&x, &weight, Some(&bias), s, p).unwrap();
            let reference = candle_conv2d(&x, &weight, Some(&bias), s, p).unwrap();
            let err = relative_error(&ours, &reference);
            assert!(err < 1e-4, "stride {s} padding {p}: {err}");
        }
        // Winograd, reading a transposed input with a channel slice.
        let wide = random(&mut rng, &[8, 12, 11, 13])
            .transpose(2, 3)
            .unwrap()
            .narrow(1, 1, 10)
            .unwrap();
        let weight_wide = random(&mut rng, &[9, 10, 3, 3]);
        assert!(winograd::applies(
            &ConvGeometry::new(wide.dims(), weight_wide.dims(), 1, 1).unwrap()
        ));
        let err = relative_error(
            &conv2d(&wide, &weight_wide, None, 1, 1).unwrap(),
            &candle_conv2d(&wide, &weight_wide, None, 1, 1).unwrap(),
        );
        assert!(err < 1e-4, "winograd on a transposed channel slice: {err}");
        // Two output channels: the small-c_out kernels, reading the transposed input.
        let small = random(&mut rng, &[2, 3, 3, 3]);
        assert!(uses_small_c_out_kernels(
            &ConvGeometry::new(x.dims(), small.dims(), 1, 1).unwrap()
        ));
        let err = relative_error(
            &conv2d(&x, &small, Some(&bias.narrow(0, 0, 2).unwrap()), 1, 1).unwrap(),
            &candle_conv2d(&x, &small, Some(&bias.narrow(0, 0, 2).unwrap()), 1, 1).unwrap(),
        );
        assert!(err < 1e-4, "small c_out on a transposed input: {err}");
        // A 1×1 kernel over a channel slice: the direct (no im2col) path with a channel stride.
        let x = random(&mut rng, &[2, 8, 6, 5]).narrow(1, 2, 4).unwrap();
        let weight = random(&mut rng, &[3, 4, 1, 1]);
        let err = relative_error(
            &conv2d(&x, &weight, None, 1, 0).unwrap(),
            &candle_conv2d(&x, &weight, None, 1, 0).unwrap(),
        );
        assert!(err < 1e-4, "pointwise on a channel slice: {err}");
    }

    /// Candle's conv2d applied to the explicitly zero-padded input cropped to the rows and columns
    /// the kernel reaches: the same function, but candle 0.11.1's own conv2d backward only works
    /// when `(h + 2p − k) % stride` is the same for height and width, and this form makes it 0.
    fn candle_reference(
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        let g = ConvGeometry::new(x.dims(), weight.dims(), stride, padding)?;
        let x = x
            .pad_with_zeros(2, padding, padding)?
            .pad_with_zeros(3, padding, padding)?;
        let x = x.narrow(2, 0, (g.h_out - 1) * stride + g.kernel)?.narrow(
            3,
            0,
            (g.w_out - 1) * stride + g.kernel,
        )?;
        candle_conv2d(&x, weight, bias, stride, 0)
    }

    #[test]
    fn gradients_match_candle_autograd() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut worst = [0f32; 3];
        for (i, (b, ci, co, h, w, k, s, p)) in cases(&mut rng).into_iter().enumerate() {
            let x = Var::from_tensor(&random(&mut rng, &[b, ci, h, w])).unwrap();
            let weight = Var::from_tensor(&random(&mut rng, &[co, ci, k, k])).unwrap();
            let bias = Var::from_tensor(&random(&mut rng, &[co])).unwrap();
            let ho = (h + 2 * p - k) / s + 1;
            let wo = (w + 2 * p - k) / s + 1;
            // A random linear functional of the output makes every gradient entry distinct.
            let probe = random(&mut rng, &[b, co, ho, wo]);
            let grads_of =
                |f: fn(&Tensor, &Tensor, Option<&Tensor>, usize, usize) -> Result<Tensor>| {
                    let y = f(
                        x.as_tensor(),
                        weight.as_tensor(),
                        Some(bias.as_tensor()),
                        s,
                        p,
                    )
                    .unwrap();
                    let grads = (y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                    [x.as_tensor(), weight.as_tensor(), bias.as_tensor()]
                        .map(|t| grads.get(t).expect("gradient").clone())
                };
            let ours = grads_of(conv2d);
            let reference = grads_of(candle_reference);
            for (j, name) in ["input", "weight", "bias"].iter().enumerate() {
                let err = relative_error(&ours[j], &reference[j]);
                assert!(
                    err < 1e-4,
                    "case {i} {:?}: {name} gradient relative error {err}",
                    (b, ci, co, h, w, k, s, p)
                );
                worst[j] = worst[j].max(err);
            }
        }
        eprintln!(
            "gradients: worst relative error input {:e}, weight {:e}, bias {:e}",
            worst[0], worst[1], worst[2]
        );
    }

    #[test]
    fn gradients_are_skipped_for_untracked_inputs_and_work_without_bias() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x = random(&mut rng, &[2, 3, 8, 9]);
        let weight = Var::from_tensor(&random(&mut rng, &[4, 3, 3, 3])).unwrap();
        let y = conv2d(&x, weight.as_tensor(), None, 2, 1).unwrap();
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&x).is_none());
        let ours = grads.get(weight.as_tensor()).unwrap().clone();
        let y = candle_reference(&x, weight.as_tensor(), None, 2, 1).unwrap();
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let err = relative_error(&ours, grads.get(weight.as_tensor()).unwrap());
        assert!(err < 1e-4, "weight gradient without bias: {err}");
    }

    #[test]
    fn bad_shapes_are_errors_and_other_dtypes_fall_back() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let x = random(&mut rng, &[1, 3, 8, 8]);
        let wrong_channels = random(&mut rng, &[4, 2, 3, 3]);
        let err = conv2d(&x, &wrong_channels, None, 1, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("channel"), "{err}");
        let weight = random(&mut rng, &[4, 3, 3, 3]);
        let wrong_bias = random(&mut rng, &[5]);
        let err = conv2d(&x, &weight, Some(&wrong_bias), 1, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bias"), "{err}");
        let tiny = random(&mut rng, &[1, 3, 2, 2]);
        assert!(conv2d(&tiny, &weight, None, 1, 0).is_err());
        assert!(conv2d(&x, &weight, None, 0, 1).is_err());

        let (x64, w64) = (
            x.to_dtype(DType::F64).unwrap(),
            weight.to_dtype(DType::F64).unwrap(),
        );
        assert!(!uses_fast_path(&x64, &w64, None));
        let y64 = conv2d(&x64, &w64, None, 1, 1)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let err = relative_error(&y64, &conv2d(&x, &weight, None, 1, 1).unwrap());
        assert!(err < 1e-5, "f64 fallback vs f32 fast path: {err}");
    }

    #[test]
    fn training_decreases_the_loss_like_candle_conv2d() {
        type ConvFn = fn(&Tensor, &Tensor, Option<&Tensor>, usize, usize) -> Result<Tensor>;
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let x = random(&mut rng, &[4, 2, 12, 16]);
        let target = random(&mut rng, &[4, 2, 12, 16]);
        let init = [
            random(&mut rng, &[8, 2, 3, 3]),
            random(&mut rng, &[8]),
            random(&mut rng, &[2, 8, 3, 3]),
            random(&mut rng, &[2]),
        ];
        let train = |conv: ConvFn| -> Vec<f32> {
            let vars: Vec<Var> = init
                .iter()
                .map(|t| Var::from_tensor(&t.affine(0.3, 0.0).unwrap()).unwrap())
                .collect();
            let mut opt = AdamW::new(
                vars.clone(),
                ParamsAdamW {
                    lr: 0.01,
                    ..Default::default()
                },
            )
            .unwrap();
            (0..8)
                .map(|_| {
                    let h = conv(&x, vars[0].as_tensor(), Some(vars[1].as_tensor()), 1, 1)
                        .unwrap()
                        .relu()
                        .unwrap();
                    let y = conv(&h, vars[2].as_tensor(), Some(vars[3].as_tensor()), 1, 1).unwrap();
                    let loss = (y - &target).unwrap().sqr().unwrap().mean_all().unwrap();
                    opt.backward_step(&loss).unwrap();
                    loss.to_scalar::<f32>().unwrap()
                })
                .collect()
        };
        let ours = train(conv2d);
        let reference = train(candle_conv2d);
        eprintln!("losses: ours {ours:?}\n        candle {reference:?}");
        assert!(
            ours.last().unwrap() < &(ours[0] * 0.9),
            "loss did not decrease: {ours:?}"
        );
        for (step, (a, b)) in ours.iter().zip(&reference).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs(),
                "step {step}: loss {a} vs candle {b}"
            );
        }
    }
}
