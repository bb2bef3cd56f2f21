//! Winograd F(2×2, 3×3) forward convolution for 3×3, stride-1, padding-1 layers with enough
//! channels (Lavin & Gray 2015): every 2×2 block of outputs comes from a 4×4 input patch with
//! 16 multiplies per input–output channel pair instead of 36, so the GEMM work drops 2.25×.
//!
//! - Weights: `U = G g Gᵀ`, stored as 16 matrices `[16][c_out][c_in]`.
//! - Input: `V = Bᵀ d B` per patch and channel, 16 matrices `[16][c_in][tiles]`.
//! - Products: `M_ξ = U_ξ · V_ξ` for each of the 16 positions ξ, in an AVX2 register-tile
//!   kernel (the gemm crate was much slower on these small products).
//! - Output: `Y = Aᵀ M A` per tile, plus the bias.
//!
//! Work is split into blocks of tile rows of one image, sized so one block's `V` and `M` stay
//! in L2; blocks run in parallel on rayon's pool. Rounding differs from the direct convolution
//! by a few ulps of the inputs' scale (the transforms only add and halve).
//!
//! Backward: the input gradient of a stride-1 convolution is itself a forward convolution (of
//! the output gradient with the flipped kernel), so it lands here too; the weight gradient is
//! [`weight_grad`], the exact gradient of the products above (`dU_ξ = Σ dM_ξ · V_ξᵀ` over the
//! tiles, `dM = A dY Aᵀ`, then `Gᵀ dU G`): 16 multiplies per tile and channel pair where the
//! direct kernel's im2col + GEMM spends 36.

use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

use super::conv_geometry::ConvGeometry;
use super::cpu::dispatch::avx2_dispatch;
use super::cpu::gemm::{Mat, sgemm, sum_of_runs};
use super::cpu::storage::{SharedMut, Strided4, put_back_cols, take_cols};
use super::huge_pages::uninit_f32;

/// Channels (in and out) below which the direct kernels are as fast: the transforms cost
/// O(channels) per tile, the products O(c_in · c_out).
const MIN_CHANNELS: usize = 8;

/// Floats between consecutive ξ matrices beyond their size: one cache line.
const SKEW: usize = 16;

/// Output positions (over the batch) below which the direct kernels win: with few tiles the
/// weight transform and the per-block overheads dominate (at batch 1 the roll UNet's 16×16 and
/// 8×8 levels ran slower than with the direct kernel, its 32×32 and 64×64 levels faster; `cargo
/// bench -p bandmate-engine --bench conv` and `cargo xtask bench roll` compare the two).
const MIN_POSITIONS: usize = 1024;

/// Bytes of one block's transformed input and products: about half a core's L2.
const BLOCK_BUDGET_BYTES: usize = 512 * 1024;

/// Cleared by [`set_enabled`]`(false)`.
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turn the Winograd path on or off for the whole process (on by default): for benchmarks that
/// compare it with the direct kernels on the same model.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether [`forward`] computes this convolution.
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    ENABLED.load(Ordering::Relaxed)
        && g.kernel == 3
        && g.batch * g.h_out * g.w_out >= MIN_POSITIONS
        && g.stride == 1
        && g.padding == 1
        && g.c_in >= MIN_CHANNELS
        && g.c_out >= MIN_CHANNELS
}

/// `U = G g Gᵀ` of every filter: `weight` `[c_out, c_in, 3, 3]` → `[16, c_out, c_in]`.
fn transform_weights(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let pairs = c_out * c_in;
    let mut u = vec![0f32; 16 * pairs];
    let mut first = 0;
    for filters in weight.chunks(9 * FILTER_LANES) {
        let lanes = filters.len() / 9;
        // The filters' taps as [9][lanes], so the arithmetic below runs across filters.
        let mut taps = [[0f32; FILTER_LANES]; 9];
        for (f, filter) in filters.chunks_exact(9).enumerate() {
            for (tap, &value) in filter.iter().enumerate() {
                taps[tap][f] = value;
            }
        }
        let mut out = [[0f32; FILTER_LANES]; 16];
        transform_filters(&taps, &mut out);
        for (xi, values) in out.iter().enumerate() {
            u[xi * pairs + first..][..lanes].copy_from_slice(&values[..lanes]);
        }
        first += lanes;
    }
    u
}

/// Filters transformed together by [`transform_filters`].
const FILTER_LANES: usize = 16;

avx2_dispatch! {
    /// `G g Gᵀ` of [`FILTER_LANES`] filters given tap-major.
    fn transform_filters(taps: &[[f32; FILTER_LANES]; 9], out: &mut [[f32; FILTER_LANES]; 16]) => transform_filters_imp
}

#[inline(always)]
fn transform_filters_imp(taps: &[[f32; FILTER_LANES]; 9], out: &mut [[f32; FILTER_LANES]; 16]) {
    for l in 0..FILTER_LANES {
        let g = |i: usize, j: usize| taps[3 * i + j][l];
        // t = G g: [4, 3], built column by column.
        let columns: [[f32; 4]; 3] = std::array::from_fn(|j| {
            let (g0, g1, g2) = (g(0, j), g(1, j), g(2, j));
            [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2]
        });
        let t: [[f32; 3]; 4] = std::array::from_fn(|i| std::array::from_fn(|j| columns[j][i]));
        // U = t Gᵀ: [4, 4]
        for (i, row) in t.iter().enumerate() {
            out[i * 4][l] = row[0];
            out[i * 4 + 1][l] = 0.5 * (row[0] + row[1] + row[2]);
            out[i * 4 + 2][l] = 0.5 * (row[0] - row[1] + row[2]);
            out[i * 4 + 3][l] = row[2];
        }
    }
}

/// Tiles of 2×2 outputs: `(tile rows, tiles per row)`.
fn tile_grid(g: &ConvGeometry) -> (usize, usize) {
    (g.h_out.div_ceil(2), g.w_out.div_ceil(2))
}

/// Tile rows per block: one block's `V` and `M` within [`BLOCK_BUDGET_BYTES`],
/// and, for a batch smaller than the pool, small enough that every thread gets a block.
fn block_rows(g: &ConvGeometry) -> usize {
    let (tile_rows, tiles_per_row) = tile_grid(g);
    let per_tile = 16 * 4 * (g.c_in + g.c_out);
    let threads = rayon::current_num_threads();
    let shared = if g.batch < threads {
        tile_rows.div_ceil(threads.div_ceil(g.batch))
    } else {
        tile_rows
    };
    (BLOCK_BUDGET_BYTES / (per_tile * tiles_per_row)).clamp(1, shared)
}

/// The 4 zero-padded input rows of one row of patches, split into even and odd columns of the
/// padded row (`even[j]` = input column `2j − 1`, `odd[j]` = column `2j`), `tiles + 1` each.
struct PatchRows {
    even: [Vec<f32>; 4],
    odd: [Vec<f32>; 4],
    /// Scratch: one row of `Bᵀ d`, even and odd columns.
    combined: [Vec<f32>; 2],
}

impl PatchRows {
    fn new(tiles: usize) -> Self {
        Self {
            even: std::array::from_fn(|_| vec![0f32; tiles + 1]),
            odd: std::array::from_fn(|_| vec![0f32; tiles + 1]),
            combined: std::array::from_fn(|_| vec![0f32; tiles + 1]),
        }
    }

    /// Rows 2 and 3 become rows 0 and 1 (the next tile row's first two).
    fn shift_up(&mut self) {
        for rows in [&mut self.even, &mut self.odd] {
            rows.swap(0, 2);
            rows.swap(1, 3);
        }
    }

    /// Row `i` from input row `row` (`None`: padding), read at `data[start + iw · step]`.
    fn load(&mut self, i: usize, row: Option<(&[f32], usize, usize)>, w: usize) {
        let (even, odd) = (&mut self.even[i], &mut self.odd[i]);
        let Some((data, start, step)) = row else {
            even.fill(0.0);
            odd.fill(0.0);
            return;
        };
        // Input column 2j is odd[j]; column 2j + 1 is even[j + 1]; even[0] is the left padding.
        let (n_odd, n_even) = (w.div_ceil(2), w / 2);
        even[0] = 0.0;
        if step == 1 {
            let row = &data[start..start + w];
            for ((pair, o), e) in row
                .chunks_exact(2)
                .zip(odd.iter_mut())
                .zip(even[1..].iter_mut())
            {
                *o = pair[0];
                *e = pair[1];
            }
            if w % 2 == 1 {
                odd[n_odd - 1] = row[w - 1];
            }
        } else {
            for (j, value) in odd[..n_odd].iter_mut().enumerate() {
                *value = data[start + 2 * j * step];
            }
            for (j, value) in even[1..=n_even].iter_mut().enumerate() {
                *value = data[start + (2 * j + 1) * step];
            }
        }
        odd[n_odd..].fill(0.0);
        even[n_even + 1..].fill(0.0);
    }
}

/// The first `len` elements of the four rows `stride` apart at the start of `block`.
#[inline(always)]
fn four_rows(block: &mut [f32], stride: usize, len: usize) -> [&mut [f32]; 4] {
    let (r0, rest) = block.split_at_mut(stride);
    let (r1, rest) = rest.split_at_mut(stride);
    let (r2, r3) = rest.split_at_mut(stride);
    [
        &mut r0[..len],
        &mut r1[..len],
        &mut r2[..len],
        &mut r3[..len],
    ]
}

avx2_dispatch! {
    /// `Bᵀ d B` of one row of patches: writes tile `t` of position ξ to `v[ξ · v_stride + t]`.
    fn input_tile_row(rows: &mut PatchRows, v: &mut [f32], v_stride: usize, tiles: usize) => input_tile_row_imp
}

#[inline(always)]
fn input_tile_row_imp(rows: &mut PatchRows, v: &mut [f32], v_stride: usize, tiles: usize) {
    let len = tiles + 1;
    let [even, odd] = &mut rows.combined;
    let (even, odd) = (&mut even[..len], &mut odd[..len]);
    // Row i of Bᵀ d is rows[p] + sign · rows[q].
    for (i, (p, q, sign)) in [(0, 2, -1f32), (1, 2, 1.), (2, 1, -1.), (1, 3, -1.)]
        .into_iter()
        .enumerate()
    {
        for (out, src) in [(&mut *even, &rows.even), (&mut *odd, &rows.odd)] {
            let (a, b) = (&src[p][..len], &src[q][..len]);
            for x in 0..len {
                out[x] = a[x] + sign * b[x];
            }
        }
        // (Bᵀ d) B: patch t reads padded columns 2t..2t+3 = even[t], odd[t], even[t+1], odd[t+1].
        let [v0, v1, v2, v3] = four_rows(&mut v[i * 4 * v_stride..], v_stride, tiles);
        let (e0, e1, o0, o1) = (&even[..tiles], &even[1..len], &odd[..tiles], &odd[1..len]);
        for t in 0..tiles {
            v0[t] = e0[t] - e1[t];
            v1[t] = o0[t] + e1[t];
            v2[t] = e1[t] - o0[t];
            v3[t] = o0[t] - o1[t];
        }
    }
}

avx2_dispatch! {
    /// `Aᵀ M A + bias` of one row of tiles of one output channel: `m` holds position ξ of tile
    /// `i` at `m[ξ · m_stride + i]`; writes the two output rows (each `2·tiles` long).
    fn output_tile_row(m: &[f32], m_stride: usize, tiles: usize, bias: f32, corners: &mut [f32], top: &mut [f32], bottom: &mut [f32]) => output_tile_row_imp
}

#[inline(always)]
fn output_tile_row_imp(
    m: &[f32],
    m_stride: usize,
    tiles: usize,
    bias: f32,
    corners: &mut [f32],
    top: &mut [f32],
    bottom: &mut [f32],
) {
    let ms: [&[f32]; 16] = std::array::from_fn(|xi| &m[xi * m_stride..][..tiles]);
    // Aᵀ M A, one output corner per quarter of `corners`: top-left, top-right, bottom-left,
    // bottom-right.
    let (tl, rest) = corners.split_at_mut(tiles);
    let (tr, rest) = rest.split_at_mut(tiles);
    let (bl, br) = rest.split_at_mut(tiles);
    let br = &mut br[..tiles];
    for t in 0..tiles {
        // Aᵀ M: [2, 4]
        let mut a0 = [0f32; 4];
        let mut a1 = [0f32; 4];
        for j in 0..4 {
            let (m0, m1, m2, m3) = (ms[j][t], ms[4 + j][t], ms[8 + j][t], ms[12 + j][t]);
            a0[j] = m0 + m1 + m2;
            a1[j] = m1 - m2 - m3;
        }
        tl[t] = a0[0] + a0[1] + a0[2] + bias;
        tr[t] = a0[1] - a0[2] - a0[3] + bias;
        bl[t] = a1[0] + a1[1] + a1[2] + bias;
        br[t] = a1[1] - a1[2] - a1[3] + bias;
    }
    for (t, (top, bottom)) in top
        .chunks_exact_mut(2)
        .zip(bottom.chunks_exact_mut(2))
        .take(tiles)
        .enumerate()
    {
        top[0] = tl[t];
        top[1] = tr[t];
        bottom[0] = bl[t];
        bottom[1] = br[t];
    }
}

/// The 16 products `M_ξ = U_ξ · V_ξ` of one block: `u` `[16, c_out, c_in]`; `V_ξ` `[c_in, n]`
/// at `v[ξ · v_stride..]`, `M_ξ` `[c_out, n]` at `m[ξ · m_stride..]` (`n` a multiple of 8).
struct Products<'a> {
    u: &'a [f32],
    v: &'a [f32],
    v_stride: usize,
    m: SharedMut,
    m_stride: usize,
    c_in: usize,
    c_out: usize,
    n: usize,
}

impl Products<'_> {
    /// Computes `M_ξ` (its rows are written by this call only).
    fn run(&self, xi: usize) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA; the pointers address `u`, `v` and `m` within
            // the shapes above.
            unsafe { self.run_avx2(xi) };
            return;
        }
        self.run_portable(xi);
    }

    /// [`Products::run`] without SIMD: CPUs without AVX2, and the reference in the tests.
    fn run_portable(&self, xi: usize) {
        let (u, v) = (
            &self.u[xi * self.c_out * self.c_in..],
            &self.v[xi * self.v_stride..],
        );
        for k in 0..self.c_out {
            // SAFETY: row k of M_ξ lies inside `m` and belongs to this call.
            let row = unsafe {
                std::slice::from_raw_parts_mut(self.m.at(xi * self.m_stride + k * self.n), self.n)
            };
            row.fill(0.0);
            for c in 0..self.c_in {
                let weight = u[k * self.c_in + c];
                for (out, &value) in row.iter_mut().zip(&v[c * self.n..][..self.n]) {
                    *out += weight * value;
                }
            }
        }
    }

    /// Register tiles of up to [`TILE_ROWS`] output channels × [`TILE_VECTORS`]·8 tiles.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, xi: usize) {
        let u = self.u[xi * self.c_out * self.c_in..].as_ptr();
        let v = self.v[xi * self.v_stride..].as_ptr();
        let m = self.m.at(xi * self.m_stride);
        let (v_rs, m_rs) = (self.n, self.n);
        for j0 in (0..self.n).step_by(8 * TILE_VECTORS) {
            let vectors = ((self.n - j0) / 8).min(TILE_VECTORS);
            for k0 in (0..self.c_out).step_by(TILE_ROWS) {
                let rows = (self.c_out - k0).min(TILE_ROWS);
                // SAFETY: rows k0..k0+rows and columns j0..j0+8·vectors are inside the matrices.
                unsafe {
                    let (u, v, m) = (u.add(k0 * self.c_in), v.add(j0), m.add(k0 * m_rs + j0));
                    let args = (u, self.c_in, v, v_rs, m, m_rs);
                    match (rows, vectors) {
                        (4, 2) => tile::<4, 2>(args),
                        (4, 1) => tile::<4, 1>(args),
                        (3, 2) => tile::<3, 2>(args),
                        (3, 1) => tile::<3, 1>(args),
                        (2, 2) => tile::<2, 2>(args),
                        (2, 1) => tile::<2, 1>(args),
                        (1, 2) => tile::<1, 2>(args),
                        _ => tile::<1, 1>(args),
                    }
                }
            }
        }
    }
}

/// Output channels per register tile of the product kernel.
#[cfg(target_arch = "x86_64")]
const TILE_ROWS: usize = 4;
/// 8-lane vectors of tiles per register tile: 4 × 2 accumulators cover the FMA latency of two
/// pipes; 4 × 3 (plus 3 inputs and a broadcast) would need all 16 registers and LLVM spills one.
#[cfg(target_arch = "x86_64")]
const TILE_VECTORS: usize = 2;

/// `m[r][j] = Σ_c u[r][c] · v[c][j]` for `R` rows and `8·V` columns; arguments are
/// `(u, u_row_stride = depth, v, v_row_stride, m, m_row_stride)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize, const V: usize>(
    (u, depth, v, v_rs, m, m_rs): (*const f32, usize, *const f32, usize, *mut f32, usize),
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    for c in 0..depth {
        // SAFETY (whole block): the caller guarantees the R×depth, depth×8V and R×8V regions.
        unsafe {
            let row = v.add(c * v_rs);
            let mut inputs = [_mm256_setzero_ps(); V];
            for (j, input) in inputs.iter_mut().enumerate() {
                *input = _mm256_loadu_ps(row.add(8 * j));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let weight = _mm256_broadcast_ss(&*u.add(r * depth + c));
                for (acc, &input) in acc.iter_mut().zip(&inputs) {
                    *acc = _mm256_fmadd_ps(weight, input, *acc);
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (j, &value) in acc.iter().enumerate() {
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(m.add(r * m_rs + 8 * j), value) };
        }
    }
}

/// Tile rows `[th0, th0 + rows)` of image `b`, whose `rows · tiles per row` tiles are laid out
/// `n` apart (a multiple of 8, at least that many) in the transformed buffers.
struct Block {
    b: usize,
    th0: usize,
    rows: usize,
    n: usize,
}

/// `V = Bᵀ d B` of every patch of `block`: patch `t` of input channel `ci` at position ξ goes to
/// `v[ξ · v_stride + ci · n + t]`.
fn transform_input_block(
    x: &Strided4,
    g: &ConvGeometry,
    block: &Block,
    v: &mut [f32],
    v_stride: usize,
) {
    let (_, tiles_per_row) = tile_grid(g);
    let [s0, s1, s2, s3] = x.strides;
    let mut patch_rows = PatchRows::new(tiles_per_row);
    for ci in 0..g.c_in {
        let channel = x.offset + block.b * s0 + ci * s1;
        for r in 0..block.rows {
            let th = block.th0 + r;
            // Patch rows overlap by two input rows: the last two of one tile row are the
            // first two of the next.
            let fresh = if r == 0 {
                0
            } else {
                patch_rows.shift_up();
                2
            };
            for i in fresh..4 {
                let ih = (2 * th + i).wrapping_sub(1);
                let row = (ih < g.h).then(|| (x.data, channel + ih * s2, s3));
                patch_rows.load(i, row, g.w);
            }
            let first = ci * block.n + r * tiles_per_row;
            input_tile_row(&mut patch_rows, &mut v[first..], v_stride, tiles_per_row);
        }
    }
}

/// Forward convolution (see the module doc); same contract as
/// [`super::conv_kernel::conv2d_forward`]: `weight` contiguous `[c_out, c_in·9]`, `bias`
/// `[c_out]`, output contiguous `[batch, c_out, h, w]`.
pub(crate) fn forward(
    x: &Strided4,
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Vec<f32> {
    debug_assert!(applies(g));
    let (c_in, c_out) = (g.c_in, g.c_out);
    let u = transform_weights(weight, c_out, c_in); // [16, c_out, c_in]
    let (tile_rows, tiles_per_row) = tile_grid(g);
    let rows_per_block = block_rows(g);
    let blocks_per_image = tile_rows.div_ceil(rows_per_block);
    let tasks = g.batch * blocks_per_image;
    let plane = g.h_out * g.w_out;
    let mut y = uninit_f32(g.batch * c_out * plane); // every tile writes its outputs
    let y_ptr = SharedMut(y.as_mut_ptr());

    (0..tasks).into_par_iter().for_each(|task| {
        let (b, block) = (task / blocks_per_image, task % blocks_per_image);
        let th0 = block * rows_per_block;
        let rows = rows_per_block.min(tile_rows - th0);
        // Tiles in this block, rounded up to whole vectors (the extra columns are never read).
        let n = (rows * tiles_per_row).next_multiple_of(8);
        // ξ-major, each ξ's matrix one cache line further along a 4 KiB page than the last, so
        // the transforms' 16 streams do not all land in the same L1 sets.
        let (v_stride, m_stride) = (c_in * n + SKEW, c_out * n + SKEW);
        let mut scratch = take_cols(16 * (v_stride + m_stride));
        {
            let (v, m) = scratch.split_at_mut(16 * v_stride); // [16, c_in, n], [16, c_out, n]
            transform_input_block(x, g, &Block { b, th0, rows, n }, v, v_stride);
            let products = Products {
                u: &u,
                v,
                v_stride,
                m: SharedMut(m.as_mut_ptr()),
                m_stride,
                c_in,
                c_out,
                n,
            };
            if tasks < rayon::current_num_threads() {
                (0..16).into_par_iter().for_each(|xi| products.run(xi));
            } else {
                (0..16).for_each(|xi| products.run(xi));
            }
            let mut top = vec![0f32; 2 * tiles_per_row];
            let mut bottom = vec![0f32; 2 * tiles_per_row];
            let mut corners = vec![0f32; 4 * tiles_per_row];
            for co in 0..c_out {
                let b_value = bias.map_or(0.0, |bias| bias[co]);
                let out = y_ptr.at((b * c_out + co) * plane);
                for r in 0..rows {
                    let oh = 2 * (th0 + r);
                    let first = co * n + r * tiles_per_row;
                    output_tile_row(
                        &m[first..],
                        m_stride,
                        tiles_per_row,
                        b_value,
                        &mut corners,
                        &mut top,
                        &mut bottom,
                    );
                    for (dy, line) in [(0, &top), (1, &bottom)] {
                        if oh + dy < g.h_out {
                            // SAFETY: output rows [2·th0, 2·(th0 + rows)) of image b belong to
                            // this task alone, and `oh + dy` lies inside the image.
                            let dst = unsafe {
                                std::slice::from_raw_parts_mut(
                                    out.add((oh + dy) * g.w_out),
                                    g.w_out,
                                )
                            };
                            dst.copy_from_slice(&line[..g.w_out]);
                        }
                    }
                }
            }
        }
        put_back_cols(scratch);
    });
    y
}

/// Rows of one row of output-gradient tiles, split into even and odd columns: `[dy(2t, top),
/// dy(2t + 1, top), dy(2t, bottom), dy(2t + 1, bottom)]`, zero past the image's edge.
struct GradRows {
    parts: [Vec<f32>; 4],
}

impl GradRows {
    fn new(tiles: usize) -> Self {
        Self {
            parts: std::array::from_fn(|_| vec![0f32; tiles]),
        }
    }

    /// Loads the two output rows of one tile row (`None`: below the image).
    fn load(&mut self, top: &[f32], bottom: Option<&[f32]>) {
        let [top_even, top_odd, bottom_even, bottom_odd] = &mut self.parts;
        split_columns(top, top_even, top_odd);
        match bottom {
            Some(bottom) => split_columns(bottom, bottom_even, bottom_odd),
            None => {
                bottom_even.fill(0.0);
                bottom_odd.fill(0.0);
            }
        }
    }
}

/// `row[2t]` into `even[t]` and `row[2t + 1]` into `odd[t]`, zero where the row has ended.
fn split_columns(row: &[f32], even: &mut [f32], odd: &mut [f32]) {
    for ((pair, e), o) in row.chunks_exact(2).zip(even.iter_mut()).zip(odd.iter_mut()) {
        *e = pair[0];
        *o = pair[1];
    }
    let whole = row.len() / 2;
    if row.len() % 2 == 1 {
        even[whole] = row[row.len() - 1];
        odd[whole] = 0.0;
        even[whole + 1..].fill(0.0);
        odd[whole + 1..].fill(0.0);
    } else {
        even[whole..].fill(0.0);
        odd[whole..].fill(0.0);
    }
}

avx2_dispatch! {
    /// `A dY Aᵀ` of one row of output-gradient tiles (the adjoint of [`output_tile_row`]'s
    /// `Aᵀ M A`): writes tile `t` of position ξ to `dm[ξ · m_stride + t]`.
    fn grad_tile_row(rows: &GradRows, dm: &mut [f32], m_stride: usize, tiles: usize) => grad_tile_row_imp
}

#[inline(always)]
fn grad_tile_row_imp(rows: &GradRows, dm: &mut [f32], m_stride: usize, tiles: usize) {
    let [y00, y01, y10, y11] = &rows.parts;
    let (y00, y01, y10, y11) = (&y00[..tiles], &y01[..tiles], &y10[..tiles], &y11[..tiles]);
    // Row i of A dY is (a, b) with, for i = 0..4: (y0·), (y0· + y1·), (y0· − y1·), (−y1·);
    // then each row (a, b) becomes (a, a + b, a − b, −b) along the columns.
    for i in 0..4 {
        let [d0, d1, d2, d3] = four_rows(&mut dm[i * 4 * m_stride..], m_stride, tiles);
        for t in 0..tiles {
            let (a, b) = match i {
                0 => (y00[t], y01[t]),
                1 => (y00[t] + y10[t], y01[t] + y11[t]),
                2 => (y00[t] - y10[t], y01[t] - y11[t]),
                _ => (-y10[t], -y11[t]),
            };
            d0[t] = a;
            d1[t] = a + b;
            d2[t] = a - b;
            d3[t] = -b;
        }
    }
}

/// `dg = Gᵀ dU G` of every filter (the adjoint of [`transform_weights`]): `du` `[16, c_out,
/// c_in]` → `[c_out, c_in, 3, 3]`.
fn weight_grads_from_transformed(du: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    // Gᵀ: [3, 4]
    const GT: [[f32; 4]; 3] = [
        [1.0, 0.5, 0.5, 0.0],
        [0.0, 0.5, -0.5, 0.0],
        [0.0, 0.5, 0.5, 1.0],
    ];
    let pairs = c_out * c_in;
    let mut dg = vec![0f32; 9 * pairs];
    for (pair, filter) in dg.chunks_exact_mut(9).enumerate() {
        let d = |i: usize, j: usize| du[(4 * i + j) * pairs + pair];
        for (a, gt_a) in GT.iter().enumerate() {
            // (Gᵀ dU)[a][j]
            let row: [f32; 4] =
                std::array::from_fn(|j| (0..4).map(|i| gt_a[i] * d(i, j)).sum::<f32>());
            for (b, gt_b) in GT.iter().enumerate() {
                filter[3 * a + b] = (0..4).map(|j| row[j] * gt_b[j]).sum();
            }
        }
    }
    dg
}

/// The weight gradient of [`forward`] (`[c_out, c_in·9]`): the gradient of the products,
/// `dU_ξ = Σ_tiles dM_ξ · V_ξᵀ` with `dM = A dY Aᵀ` per output tile, summed over the batch, then
/// `Gᵀ dU G`. 16 products per tile and channel pair instead of the direct kernel's 36 per 2×2
/// outputs. `grad_out` is contiguous `[batch, c_out, h_out, w_out]`. Partial sums are taken
/// over fixed runs of blocks and added in order, so results are deterministic for a given
/// thread count.
pub(crate) fn weight_grad(x: &Strided4, grad_out: &[f32], g: &ConvGeometry) -> Vec<f32> {
    debug_assert!(applies(g));
    let (c_in, c_out) = (g.c_in, g.c_out);
    let (tile_rows, tiles_per_row) = tile_grid(g);
    let rows_per_block = block_rows(g);
    let blocks_per_image = tile_rows.div_ceil(rows_per_block);
    let tasks = g.batch * blocks_per_image;
    let plane = g.h_out * g.w_out;
    let pairs = c_out * c_in;

    let du = sum_of_runs(
        tasks,
        |run, par| {
            let mut du = vec![0f32; 16 * pairs]; // [16, c_out, c_in]
            let mut grad_rows = GradRows::new(tiles_per_row);
            for task in run {
                let (b, block) = (task / blocks_per_image, task % blocks_per_image);
                let th0 = block * rows_per_block;
                let rows = rows_per_block.min(tile_rows - th0);
                let tiles = rows * tiles_per_row;
                let n = tiles.next_multiple_of(8);
                let (v_stride, m_stride) = (c_in * n + SKEW, c_out * n + SKEW);
                let mut scratch = take_cols(16 * (v_stride + m_stride));
                {
                    // [16, c_in, n], [16, c_out, n]
                    let (v, dm) = scratch.split_at_mut(16 * v_stride);
                    transform_input_block(x, g, &Block { b, th0, rows, n }, v, v_stride);
                    for co in 0..c_out {
                        let gy = &grad_out[(b * c_out + co) * plane..][..plane];
                        for r in 0..rows {
                            let oh = 2 * (th0 + r);
                            let line = |row: usize| &gy[row * g.w_out..][..g.w_out];
                            let bottom = (oh + 1 < g.h_out).then(|| line(oh + 1));
                            grad_rows.load(line(oh), bottom);
                            let first = co * n + r * tiles_per_row;
                            grad_tile_row(&grad_rows, &mut dm[first..], m_stride, tiles_per_row);
                        }
                    }
                    for xi in 0..16 {
                        let lhs = Mat {
                            ptr: dm[xi * m_stride..].as_ptr(),
                            rs: n,
                            cs: 1,
                        };
                        let rhs = Mat {
                            ptr: v[xi * v_stride..].as_ptr(),
                            rs: 1,
                            cs: n,
                        };
                        // SAFETY: dM_ξ is [c_out, tiles] with row stride n, V_ξᵀ [tiles, c_in]
                        // with column stride n, both inside `scratch`; dU_ξ is [c_out, c_in].
                        unsafe {
                            sgemm(
                                (c_out, c_in, tiles),
                                du[xi * pairs..].as_mut_ptr(),
                                (c_in, 1),
                                true,
                                lhs,
                                rhs,
                                par,
                            )
                        };
                    }
                }
                put_back_cols(scratch);
            }
            du
        },
        |du, partial| du.iter_mut().zip(&partial).for_each(|(acc, v)| *acc += v),
    );
    weight_grads_from_transformed(&du, c_out, c_in)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn the_avx2_products_match_the_portable_ones() {
        #[cfg(target_arch = "x86_64")]
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            eprintln!("no AVX2+FMA here: the convolution tests cover the portable path");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        // Channel and tile counts that leave remainders of every register-tile size.
        for (c_in, c_out, n) in [(8, 8, 8), (9, 13, 40), (32, 30, 24), (5, 3, 16)] {
            let (v_stride, m_stride) = (c_in * n + SKEW, c_out * n + SKEW);
            let u: Vec<f32> = (0..16 * c_out * c_in)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let v: Vec<f32> = (0..16 * v_stride)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let mut results = [vec![0f32; 16 * m_stride], vec![0f32; 16 * m_stride]];
            for (simd, m) in results.iter_mut().enumerate() {
                let products = Products {
                    u: &u,
                    v: &v,
                    v_stride,
                    m: SharedMut(m.as_mut_ptr()),
                    m_stride,
                    c_in,
                    c_out,
                    n,
                };
                for xi in 0..16 {
                    if simd == 1 {
                        products.run(xi);
                    } else {
                        products.run_portable(xi);
                    }
                }
            }
            let worst = results[0]
                .iter()
                .zip(&results[1])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{c_in}→{c_out}, {n} tiles: max |Δ| {worst}");
        }
    }

    /// `Σ gy · x` over the batch and positions, in f64: the weight gradient by definition.
    fn reference_weight_grad(x: &Strided4, gy: &[f32], g: &ConvGeometry) -> Vec<f64> {
        let [s0, s1, s2, s3] = x.strides;
        let mut dw = vec![0f64; g.c_out * g.c_in * 9];
        for b in 0..g.batch {
            for co in 0..g.c_out {
                for oh in 0..g.h_out {
                    for ow in 0..g.w_out {
                        let dy = f64::from(gy[((b * g.c_out + co) * g.h_out + oh) * g.w_out + ow]);
                        for ci in 0..g.c_in {
                            for (tap, d) in dw[(co * g.c_in + ci) * 9..][..9].iter_mut().enumerate()
                            {
                                let (ih, iw) = (
                                    (oh + tap / 3).wrapping_sub(1),
                                    (ow + tap % 3).wrapping_sub(1),
                                );
                                if ih < g.h && iw < g.w {
                                    let at = x.offset + b * s0 + ci * s1 + ih * s2 + iw * s3;
                                    *d += dy * f64::from(x.data[at]);
                                }
                            }
                        }
                    }
                }
            }
        }
        dw
    }

    #[test]
    fn the_weight_gradient_matches_its_definition() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        // (batch, c_in, c_out, h, w): odd and even sizes, one pixel, several blocks per image,
        // channel counts off the register tiles.
        for (batch, c_in, c_out, h, w) in [
            (2, 8, 8, 31, 17),
            (1, 9, 13, 64, 88),
            (1100, 8, 8, 1, 1),
            (3, 24, 10, 7, 50),
        ] {
            let g = ConvGeometry::new(&[batch, c_in, h, w], &[c_out, c_in, 3, 3], 1, 1).unwrap();
            assert!(applies(&g));
            // The input stored as [batch, c_in, w, h] and read transposed, after an offset.
            let offset = 5;
            let data: Vec<f32> = (0..offset + batch * c_in * h * w)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let x = Strided4 {
                data: &data,
                offset,
                strides: [c_in * h * w, h * w, 1, h],
            };
            let gy: Vec<f32> = (0..batch * c_out * h * w)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let ours = weight_grad(&x, &gy, &g);
            let reference = reference_weight_grad(&x, &gy, &g);
            let scale = reference.iter().fold(0f64, |m, v| m.max(v.abs()));
            let worst = ours
                .iter()
                .zip(&reference)
                .map(|(&a, &b)| (f64::from(a) - b).abs())
                .fold(0f64, f64::max);
            assert!(
                worst <= 1e-5 * scale,
                "{batch}×{c_in}→{c_out} at {h}×{w}: max |Δ| {worst} (scale {scale})"
            );
        }
    }
}
