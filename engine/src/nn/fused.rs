//! Fused f32 CPU ops for the UNets, as candle custom ops with their own backward passes.
//!
//! candle builds GroupNorm out of about a dozen tensor ops, each allocating a full-size result,
//! and the backward of every broadcast (a per-channel bias, the timestep embedding, nearest
//! upsampling) is a strided `sum_keepdim` that runs single-threaded; together they took most of
//! a training step of the roll UNet. Here each is one pass over the data, parallel over
//! (image, group) or (image, channel) planes, deterministic for a given thread count:
//! - [`GroupNormSilu`]: `silu(group_norm(x))`, the pre-activation of every residual block;
//! - [`add_channel_bias`]: `x [b, c, h, w] + v [b, c]` broadcast over the plane;
//! - [`upsample_nearest2x`]: nearest-neighbour ×2 upsampling;
//! - [`cat_channels`]: the skip connections' concatenation along the channels.
//!
//! Anything other than f32 on the CPU runs the same maths through candle's own ops.

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Tensor, bail};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

use super::cpu::dispatch::avx2_dispatch;
use super::cpu::math::sigmoid;
use super::cpu::op::{F32Op, Forward, Grads, Op, Operand, grad_if_tracked};
use super::cpu::storage::{contiguous_f32, cpu_f32, on_cpu_f32, with_cpu_f32};
use super::huge_pages::uninit_f32;

fn dims4(layout: &Layout, op: &str) -> Result<(usize, usize, usize, usize)> {
    match layout.dims() {
        &[b, c, h, w] => Ok((b, c, h, w)),
        other => bail!("{op}: expected a [batch, channels, h, w] tensor, got {other:?}"),
    }
}

/// `y = silu(x · scale + shift)` over one channel's plane.
fn scale_shift_silu(y: &mut [f32], x: &[f32], scale: f32, shift: f32) {
    #[cfg(target_arch = "x86_64")]
    if super::cpu::simd::has_avx2_fma() {
        // SAFETY: the CPU has the features the kernel is compiled for.
        return unsafe { scale_shift_silu_avx2(y, x, scale, shift) };
    }
    scale_shift_silu_imp(y, x, scale, shift);
}

/// [`scale_shift_silu`] in eight-lane registers ([`super::cpu::simd::avx2`]), the elements
/// past the last multiple of 8 in scalar code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scale_shift_silu_avx2(y: &mut [f32], x: &[f32], scale: f32, shift: f32) {
    use super::cpu::simd::avx2::sigmoid;
    use std::arch::x86_64::*;
    let len = y.len().min(x.len());
    let vectors = len / 8 * 8;
    let (scale8, shift8) = (_mm256_set1_ps(scale), _mm256_set1_ps(shift));
    for j in (0..vectors).step_by(8) {
        // SAFETY: j + 8 ≤ len, within both slices.
        unsafe {
            let z = _mm256_fmadd_ps(_mm256_loadu_ps(x.as_ptr().add(j)), scale8, shift8);
            _mm256_storeu_ps(y.as_mut_ptr().add(j), _mm256_mul_ps(z, sigmoid(z)));
        }
    }
    scale_shift_silu_imp(&mut y[vectors..len], &x[vectors..len], scale, shift);
}

#[inline(always)]
fn scale_shift_silu_imp(y: &mut [f32], x: &[f32], scale: f32, shift: f32) {
    for (y, &x) in y.iter_mut().zip(x) {
        let z = x * scale + shift;
        *y = z * sigmoid(z);
    }
}

avx2_dispatch! {
    /// Σ x and Σ (x − center)² of a slice, in 16 f32 lanes per block of 1,024 elements and
    /// f64 across blocks (vectorizes, unlike one serial f64 sum).
    fn sums(x: &[f32], center: f32) -> (f64, f64) => sums_imp
}

#[inline(always)]
fn sums_imp(x: &[f32], center: f32) -> (f64, f64) {
    const LANES: usize = 16;
    let (mut total, mut total_sq) = (0f64, 0f64);
    for block in x.chunks(1024) {
        let (mut sum, mut sum_sq) = ([0f32; LANES], [0f32; LANES]);
        let mut chunks = block.chunks_exact(LANES);
        for chunk in &mut chunks {
            for i in 0..LANES {
                let d = chunk[i] - center;
                sum[i] += chunk[i];
                sum_sq[i] += d * d;
            }
        }
        for &v in chunks.remainder() {
            let d = v - center;
            total += v as f64;
            total_sq += (d * d) as f64;
        }
        total += sum.iter().map(|&v| v as f64).sum::<f64>();
        total_sq += sum_sq.iter().map(|&v| v as f64).sum::<f64>();
    }
    (total, total_sq)
}

/// One channel plane's normalization: `z = γ·(x − mean)·inv_std + β`.
#[derive(Clone, Copy)]
struct PlaneNorm {
    mean: f32,
    inv_std: f32,
    gamma: f32,
    beta: f32,
}

/// `dz = dy · silu'(z)` of one element (`x̂` and `z` as in [`PlaneNorm`]).
#[inline(always)]
fn silu_grad(x: f32, gy: f32, n: PlaneNorm) -> (f32, f32) {
    let xhat = (x - n.mean) * n.inv_std;
    let z = n.gamma * xhat + n.beta;
    let s = sigmoid(z);
    (gy * s * (1.0 + z * (1.0 - s)), xhat)
}

avx2_dispatch! {
    /// (Σ dz·x̂, Σ dz) over one channel plane, in 16 f32 lanes (vectorizes, unlike one serial
    /// sum).
    fn silu_grad_sums(x: &[f32], gy: &[f32], n: PlaneNorm) -> (f32, f32) => silu_grad_sums_imp
}

#[inline(always)]
fn silu_grad_sums_imp(x: &[f32], gy: &[f32], n: PlaneNorm) -> (f32, f32) {
    const LANES: usize = 16;
    let (mut dz_xhat, mut dz_sum) = ([0f32; LANES], [0f32; LANES]);
    let (xs, gys) = (x.chunks_exact(LANES), gy.chunks_exact(LANES));
    let (x_rest, gy_rest) = (xs.remainder(), gys.remainder());
    for (x, gy) in xs.zip(gys) {
        for i in 0..LANES {
            let (dz, xhat) = silu_grad(x[i], gy[i], n);
            dz_xhat[i] += dz * xhat;
            dz_sum[i] += dz;
        }
    }
    for (&x, &gy) in x_rest.iter().zip(gy_rest) {
        let (dz, xhat) = silu_grad(x, gy, n);
        dz_xhat[0] += dz * xhat;
        dz_sum[0] += dz;
    }
    (dz_xhat.iter().sum(), dz_sum.iter().sum())
}

avx2_dispatch! {
    /// `gx = inv_std·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))` over one channel plane, `dx̂ = dz·γ`.
    fn silu_grad_input(gx: &mut [f32], x: &[f32], gy: &[f32], n: PlaneNorm, means: (f32, f32)) => silu_grad_input_imp
}

#[inline(always)]
fn silu_grad_input_imp(
    gx: &mut [f32],
    x: &[f32],
    gy: &[f32],
    n: PlaneNorm,
    (mean_dxhat, mean_dxhat_xhat): (f32, f32),
) {
    for ((&x, &gy), gx) in x.iter().zip(gy).zip(gx.iter_mut()) {
        let (dz, xhat) = silu_grad(x, gy, n);
        *gx = n.inv_std * (dz * n.gamma - mean_dxhat - xhat * mean_dxhat_xhat);
    }
}

/// GroupNorm followed by SiLU, with PyTorch's parameter names (`weight`, `bias`, one per
/// channel) so weights are interchangeable with `candle_nn::group_norm` and `torch.nn.GroupNorm`.
#[derive(Clone, Debug)]
pub struct GroupNormSilu {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNormSilu {
    /// Loads (or, training, creates: weight 1, bias 0) the parameters at `vb`.
    pub fn new(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            bail!("group norm: {channels} channels do not split into {groups} groups")
        }
        Ok(Self {
            weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
            groups,
            eps,
        })
    }

    /// `[batch, channels, h, w]` → same shape.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if on_cpu_f32(x) && on_cpu_f32(&self.weight) && on_cpu_f32(&self.bias) {
            let op = GroupNormSiluOp {
                groups: self.groups,
                eps: self.eps as f32,
            };
            return x.apply_op3(&self.weight, &self.bias, Op(op));
        }
        self.reference_forward(x)
    }

    /// The same maths through candle's own ops (any device and dtype; the tests' reference).
    pub fn reference_forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let xg = x.reshape((b, self.groups, (c / self.groups) * h * w))?;
        let mean = xg.mean_keepdim(2)?;
        let centred = xg.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(2)?;
        let normed = centred
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .reshape((b, c, h, w))?;
        normed
            .broadcast_mul(&self.weight.reshape((1, c, 1, 1))?)?
            .broadcast_add(&self.bias.reshape((1, c, 1, 1))?)?
            .silu()
    }
}

struct GroupNormSiluOp {
    groups: usize,
    eps: f32,
}

/// Mean and 1/σ of one group's elements (biased variance, as PyTorch).
fn group_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f64;
    // One pass: squares taken around the first element, so a large common offset does not
    // cancel; var = E[(x − c)²] − (E[x] − c)².
    let center = x.first().copied().unwrap_or(0.0);
    let (sum, sum_sq) = sums(x, center);
    let mean = sum / n;
    let var = (sum_sq / n - (mean - center as f64).powi(2)).max(0.0);
    (mean as f32, 1.0 / (var as f32 + eps).sqrt())
}

impl GroupNormSiluOp {
    fn check(&self, x: &Layout, weight: &Layout, bias: &Layout) -> Result<(usize, usize, usize)> {
        let (b, c, h, w) = dims4(x, "group norm")?;
        if !c.is_multiple_of(self.groups) || weight.dims() != [c] || bias.dims() != [c] {
            bail!(
                "group norm: input {:?}, weight {:?}, bias {:?} do not fit {} groups",
                x.dims(),
                weight.dims(),
                bias.dims(),
                self.groups
            )
        }
        Ok((b, c, h * w))
    }
}

impl F32Op<3> for GroupNormSiluOp {
    const NAME: &'static str = "group-norm-silu";

    fn cpu_fwd(&self, [(x, x_l), (weight, weight_l), (bias, bias_l)]: [Operand; 3]) -> Forward {
        let (_, c, plane) = self.check(x_l, weight_l, bias_l)?;
        let x = contiguous_f32(cpu_f32(x)?, x_l);
        let gamma = contiguous_f32(cpu_f32(weight)?, weight_l);
        let beta = contiguous_f32(cpu_f32(bias)?, bias_l);
        let per_group = c / self.groups;
        let group_len = per_group * plane;
        let mut y = uninit_f32(x.len()); // every group writes its planes
        y.par_chunks_mut(group_len)
            .zip(x.par_chunks(group_len))
            .enumerate()
            .for_each(|(i, (y, x))| {
                let (mean, inv_std) = group_stats(x, self.eps);
                let c0 = (i % self.groups) * per_group;
                for (k, (y, x)) in y.chunks_mut(plane).zip(x.chunks(plane)).enumerate() {
                    let scale = gamma[c0 + k] * inv_std;
                    let shift = beta[c0 + k] - mean * scale;
                    scale_shift_silu(y, x, scale, shift);
                }
            });
        Ok((CpuStorage::F32(y), x_l.shape().clone()))
    }

    fn bwd(&self, [x, weight, bias]: [&Tensor; 3], _res: &Tensor, grad_res: &Tensor) -> Grads<3> {
        let (b, c, h, w) = x.dims4()?;
        let plane = h * w;
        let per_group = c / self.groups;
        let group_len = per_group * plane;
        let want_x = x.track_op();
        let (gx, partials) = with_cpu_f32(x, |xs| {
            with_cpu_f32(weight, |gamma| {
                with_cpu_f32(bias, |beta| {
                    with_cpu_f32(grad_res, |gy| {
                        // Every group writes its part of `gx`.
                        let mut gx = uninit_f32(if want_x { xs.len() } else { 0 });
                        // Per (image, channel): Σ dz·x̂ and Σ dz.
                        let mut partials = vec![(0f32, 0f32); b * c];
                        let tasks = xs
                            .par_chunks(group_len)
                            .zip(gy.par_chunks(group_len))
                            .zip(partials.par_chunks_mut(per_group))
                            .enumerate();
                        let backward_group =
                            |i: usize,
                             x: &[f32],
                             gy: &[f32],
                             partials: &mut [(f32, f32)],
                             gx: Option<&mut [f32]>| {
                                let (mean, inv_std) = group_stats(x, self.eps);
                                let c0 = (i % self.groups) * per_group;
                                // Σ dx̂ and Σ dx̂·x̂ over the group, dx̂ = dz·γ.
                                let (mut sum_dxhat, mut sum_dxhat_xhat) = (0f64, 0f64);
                                for (k, ((x, gy), part)) in x
                                    .chunks(plane)
                                    .zip(gy.chunks(plane))
                                    .zip(partials.iter_mut())
                                    .enumerate()
                                {
                                    let norm = PlaneNorm {
                                        mean,
                                        inv_std,
                                        gamma: gamma[c0 + k],
                                        beta: beta[c0 + k],
                                    };
                                    let (s_dz_xhat, s_dz) = silu_grad_sums(x, gy, norm);
                                    *part = (s_dz_xhat, s_dz);
                                    sum_dxhat += (s_dz * norm.gamma) as f64;
                                    sum_dxhat_xhat += (s_dz_xhat * norm.gamma) as f64;
                                }
                                let Some(gx) = gx else { return };
                                let n = group_len as f64;
                                let (mean_dxhat, mean_dxhat_xhat) =
                                    ((sum_dxhat / n) as f32, (sum_dxhat_xhat / n) as f32);
                                for (k, ((x, gy), gx)) in x
                                    .chunks(plane)
                                    .zip(gy.chunks(plane))
                                    .zip(gx.chunks_mut(plane))
                                    .enumerate()
                                {
                                    let norm = PlaneNorm {
                                        mean,
                                        inv_std,
                                        gamma: gamma[c0 + k],
                                        beta: beta[c0 + k],
                                    };
                                    silu_grad_input(gx, x, gy, norm, (mean_dxhat, mean_dxhat_xhat));
                                }
                            };
                        if want_x {
                            tasks.zip(gx.par_chunks_mut(group_len)).for_each(
                                |((i, ((x, gy), part)), gx)| {
                                    backward_group(i, x, gy, part, Some(gx))
                                },
                            );
                        } else {
                            tasks.for_each(|(i, ((x, gy), part))| {
                                backward_group(i, x, gy, part, None)
                            });
                        }
                        Ok((gx, partials))
                    })
                })
            })
        })?;
        let grad_x = grad_if_tracked(x, gx, (b, c, h, w))?;
        // Sum the per-image partials in a fixed order.
        let (mut d_gamma, mut d_beta) = (vec![0f32; c], vec![0f32; c]);
        for image in partials.chunks(c) {
            for (k, &(dg, db)) in image.iter().enumerate() {
                d_gamma[k] += dg;
                d_beta[k] += db;
            }
        }
        let grad_weight = grad_if_tracked(weight, d_gamma, c)?;
        let grad_bias = grad_if_tracked(bias, d_beta, c)?;
        Ok([grad_x, grad_weight, grad_bias])
    }
}

/// `x [batch, c, h, w] + v [batch, c]`, `v` broadcast over each channel's plane (a timestep
/// embedding projected per channel).
pub fn add_channel_bias(x: &Tensor, v: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(x) && on_cpu_f32(v) {
        return x.apply_op2(v, Op(AddChannelBias));
    }
    x.broadcast_add(&v.unsqueeze(2)?.unsqueeze(3)?)
}

struct AddChannelBias;

impl F32Op<2> for AddChannelBias {
    const NAME: &'static str = "add-channel-bias";

    fn cpu_fwd(&self, [(x, x_l), (v, v_l)]: [Operand; 2]) -> Forward {
        let (b, c, h, w) = dims4(x_l, "add channel bias")?;
        if v_l.dims() != [b, c] {
            bail!(
                "add channel bias: input {:?} needs a [{b}, {c}] bias, got {:?}",
                x_l.dims(),
                v_l.dims()
            )
        }
        let x = contiguous_f32(cpu_f32(x)?, x_l);
        let v = contiguous_f32(cpu_f32(v)?, v_l);
        // Written in the parallel pass (copying `x` first ran on the calling thread alone).
        let mut y = uninit_f32(x.len());
        y.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w))
            .zip(v.par_iter())
            .for_each(|((y, x), &v)| y.iter_mut().zip(x).for_each(|(y, x)| *y = x + v));
        Ok((CpuStorage::F32(y), x_l.shape().clone()))
    }

    fn bwd(&self, [x, v]: [&Tensor; 2], _res: &Tensor, grad_res: &Tensor) -> Grads<2> {
        let (b, c, h, w) = x.dims4()?;
        let grad_v = if v.track_op() {
            let sums = with_cpu_f32(grad_res, |gy| {
                Ok(gy
                    .par_chunks(h * w)
                    .map(|plane| plane.iter().sum::<f32>())
                    .collect::<Vec<f32>>())
            })?;
            Some(Tensor::from_vec(sums, (b, c), x.device())?)
        } else {
            None
        };
        Ok([x.track_op().then(|| grad_res.clone()), grad_v])
    }
}

/// `x + y` for two tensors of one shape (a residual connection), in rayon's pool: candle's own
/// add runs large tensors on a second pool of spinning threads, which then compete with rayon's
/// for the cores between ops.
pub fn add_same(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(x) && on_cpu_f32(y) && x.dims() == y.dims() {
        return x.apply_op2(y, Op(AddSame));
    }
    x + y
}

struct AddSame;

impl F32Op<2> for AddSame {
    const NAME: &'static str = "add-same";

    fn cpu_fwd(&self, [(x, x_l), (y, y_l)]: [Operand; 2]) -> Forward {
        if x_l.dims() != y_l.dims() {
            bail!("add: shapes {:?} and {:?} differ", x_l.dims(), y_l.dims())
        }
        let x = contiguous_f32(cpu_f32(x)?, x_l);
        let y = contiguous_f32(cpu_f32(y)?, y_l);
        // Written in the parallel pass (copying `x` first ran on the calling thread alone).
        let mut out = uninit_f32(x.len());
        out.par_chunks_mut(ELEMENTWISE_CHUNK)
            .zip(x.par_chunks(ELEMENTWISE_CHUNK))
            .zip(y.par_chunks(ELEMENTWISE_CHUNK))
            .for_each(|((o, x), y)| {
                o.iter_mut()
                    .zip(x.iter().zip(y))
                    .for_each(|(o, (x, y))| *o = x + y)
            });
        Ok((CpuStorage::F32(out), x_l.shape().clone()))
    }

    fn bwd(&self, [x, y]: [&Tensor; 2], _res: &Tensor, grad_res: &Tensor) -> Grads<2> {
        Ok([
            x.track_op().then(|| grad_res.clone()),
            y.track_op().then(|| grad_res.clone()),
        ])
    }
}

/// `[x, y]` along the channel axis (`[b, cx, h, w]`, `[b, cy, h, w]` -> `[b, cx + cy, h, w]`), the
/// UNet's skip connections: candle's `cat` copies on the calling thread alone; here each
/// (image, input) block is one parallel task.
pub fn cat_channels(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(x) && on_cpu_f32(y) {
        return x.apply_op2(y, Op(CatChannels));
    }
    Tensor::cat(&[x, y], 1)
}

struct CatChannels;

impl F32Op<2> for CatChannels {
    const NAME: &'static str = "cat-channels";

    fn cpu_fwd(&self, [(x, x_l), (y, y_l)]: [Operand; 2]) -> Forward {
        let (b, cx, h, w) = dims4(x_l, "cat channels")?;
        let (by, cy, hy, wy) = dims4(y_l, "cat channels")?;
        if (b, h, w) != (by, hy, wy) {
            bail!(
                "cat channels: shapes {:?} and {:?} differ outside the channels",
                x_l.dims(),
                y_l.dims()
            )
        }
        let x = contiguous_f32(cpu_f32(x)?, x_l);
        let y = contiguous_f32(cpu_f32(y)?, y_l);
        let (x_len, y_len) = (cx * h * w, cy * h * w);
        let mut out = uninit_f32(b * (x_len + y_len));
        // Blocks alternate x block, y block per image; every element is copied once.
        let sources: Vec<&[f32]> = (0..b)
            .flat_map(|i| [&x[i * x_len..][..x_len], &y[i * y_len..][..y_len]])
            .collect();
        let mut targets = Vec::with_capacity(2 * b);
        let mut rest = out.as_mut_slice();
        for _ in 0..b {
            let (tx, r) = rest.split_at_mut(x_len);
            let (ty, r) = r.split_at_mut(y_len);
            targets.extend([tx, ty]);
            rest = r;
        }
        targets
            .into_par_iter()
            .zip(sources)
            .for_each(|(t, s)| t.copy_from_slice(s));
        Ok((CpuStorage::F32(out), Shape::from((b, cx + cy, h, w))))
    }

    fn bwd(&self, [x, y]: [&Tensor; 2], _res: &Tensor, grad_res: &Tensor) -> Grads<2> {
        let cx = x.dim(1)?;
        let cy = y.dim(1)?;
        Ok([
            x.track_op()
                .then(|| grad_res.narrow(1, 0, cx))
                .transpose()?,
            y.track_op()
                .then(|| grad_res.narrow(1, cx, cy))
                .transpose()?,
        ])
    }
}

/// GELU with the tanh approximation (candle's `gelu`, PyTorch's `approximate="tanh"`):
/// `x·σ(2u)`, `u = √(2/π)·(x + 0.044715·x³)`, since `(1 + tanh u)/2 = σ(2u)`. One vectorized
/// pass forward and one backward, where candle's backward builds about a dozen temporaries.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(x) {
        return x.apply_op1(Op(Gelu));
    }
    x.gelu()
}

const GELU_K: f32 = 0.797_884_6; // √(2/π)
const GELU_C: f32 = 0.044_715;

/// `y = gelu(x)` (tanh form) over a slice.
fn gelu_slice(y: &mut [f32], x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::cpu::simd::has_avx2_fma() {
        // SAFETY: the CPU has the features the kernel is compiled for.
        return unsafe { gelu_slice_avx2(y, x) };
    }
    gelu_slice_imp(y, x);
}

/// [`gelu_slice`] in eight-lane registers, the elements past the last multiple of 8 in scalar
/// code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_slice_avx2(y: &mut [f32], x: &[f32]) {
    use super::cpu::simd::avx2::sigmoid;
    use std::arch::x86_64::*;
    let len = y.len().min(x.len());
    let vectors = len / 8 * 8;
    for j in (0..vectors).step_by(8) {
        // SAFETY: j + 8 ≤ len, within both slices.
        unsafe {
            let x8 = _mm256_loadu_ps(x.as_ptr().add(j));
            // 2u = 2K·x·(1 + C·x²)
            let x2 = _mm256_mul_ps(x8, x8);
            let inner = _mm256_fmadd_ps(_mm256_set1_ps(GELU_C), x2, _mm256_set1_ps(1.0));
            let two_u = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(2.0 * GELU_K), x8), inner);
            _mm256_storeu_ps(y.as_mut_ptr().add(j), _mm256_mul_ps(x8, sigmoid(two_u)));
        }
    }
    gelu_slice_imp(&mut y[vectors..len], &x[vectors..len]);
}

#[inline(always)]
fn gelu_slice_imp(y: &mut [f32], x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        let u = GELU_K * (x + GELU_C * x * x * x);
        *y = x * sigmoid(2.0 * u);
    }
}

avx2_dispatch! {
    /// `gx = gy · d gelu(x)/dx`.
    fn gelu_grad_slice(gx: &mut [f32], x: &[f32], gy: &[f32]) => gelu_grad_slice_imp
}

#[inline(always)]
fn gelu_grad_slice_imp(gx: &mut [f32], x: &[f32], gy: &[f32]) {
    for ((gx, &x), &gy) in gx.iter_mut().zip(x).zip(gy) {
        let u = GELU_K * (x + GELU_C * x * x * x);
        let s = sigmoid(2.0 * u);
        let du = GELU_K * (1.0 + 3.0 * GELU_C * x * x);
        *gx = gy * (s + x * s * (1.0 - s) * 2.0 * du);
    }
}

/// Elements per parallel task of the elementwise ops.
const ELEMENTWISE_CHUNK: usize = 16 * 1024;

struct Gelu;

impl F32Op<1> for Gelu {
    const NAME: &'static str = "gelu-tanh";

    fn cpu_fwd(&self, [(x, x_l)]: [Operand; 1]) -> Forward {
        let x = contiguous_f32(cpu_f32(x)?, x_l);
        let mut y = uninit_f32(x.len());
        y.par_chunks_mut(ELEMENTWISE_CHUNK)
            .zip(x.par_chunks(ELEMENTWISE_CHUNK))
            .for_each(|(y, x)| gelu_slice(y, x));
        Ok((CpuStorage::F32(y), x_l.shape().clone()))
    }

    fn bwd(&self, [x]: [&Tensor; 1], _res: &Tensor, grad_res: &Tensor) -> Grads<1> {
        if !x.track_op() {
            return Ok([None]);
        }
        let gx = with_cpu_f32(x, |xs| {
            with_cpu_f32(grad_res, |gy| {
                let mut gx = vec![0f32; xs.len()];
                gx.par_chunks_mut(ELEMENTWISE_CHUNK)
                    .zip(xs.par_chunks(ELEMENTWISE_CHUNK))
                    .zip(gy.par_chunks(ELEMENTWISE_CHUNK))
                    .for_each(|((gx, x), gy)| gelu_grad_slice(gx, x, gy));
                Ok(gx)
            })
        })?;
        Ok([Some(Tensor::from_vec(gx, x.shape(), x.device())?)])
    }
}

/// Layer normalization over the last dimension, `(x − μ)/√(σ² + eps)·weight + bias`, with a
/// backward pass (candle's fused `layer_norm` has none, and its composite form costs about ten
/// full-size temporaries each way). Rows run in parallel; the weight and bias gradients are
/// summed over fixed row blocks in a fixed order, so results do not depend on the thread count.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    if on_cpu_f32(x) && on_cpu_f32(weight) && on_cpu_f32(bias) {
        return x.apply_op3(weight, bias, Op(LayerNorm { eps }));
    }
    let mean = x.mean_keepdim(candle_core::D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(candle_core::D::Minus1)?;
    centered
        .broadcast_div(&(var + eps as f64)?.sqrt()?)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)
}

struct LayerNorm {
    eps: f32,
}

/// Rows per block of the weight and bias gradient sums.
const LAYER_NORM_ROWS: usize = 64;

/// Mean and 1/σ of one row.
fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl F32Op<3> for LayerNorm {
    const NAME: &'static str = "layer-norm";

    fn cpu_fwd(&self, [(x, x_l), (weight, weight_l), (bias, bias_l)]: [Operand; 3]) -> Forward {
        let d = *x_l.dims().last().unwrap_or(&0);
        if d == 0 || weight_l.dims() != [d] || bias_l.dims() != [d] {
            bail!(
                "layer norm: input {:?} needs a weight and a bias of [{d}], got {:?} and {:?}",
                x_l.dims(),
                weight_l.dims(),
                bias_l.dims()
            )
        }
        let x = contiguous_f32(cpu_f32(x)?, x_l);
        let gamma = contiguous_f32(cpu_f32(weight)?, weight_l);
        let beta = contiguous_f32(cpu_f32(bias)?, bias_l);
        let mut y = uninit_f32(x.len());
        y.par_chunks_mut(d * LAYER_NORM_ROWS)
            .zip(x.par_chunks(d * LAYER_NORM_ROWS))
            .for_each(|(y, x)| {
                for (y, x) in y.chunks_mut(d).zip(x.chunks(d)) {
                    let (mean, inv) = row_stats(x, self.eps);
                    for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(&*gamma).zip(&*beta) {
                        *y = (x - mean) * inv * g + b;
                    }
                }
            });
        Ok((CpuStorage::F32(y), x_l.shape().clone()))
    }

    fn bwd(&self, [x, weight, _bias]: [&Tensor; 3], _res: &Tensor, grad_res: &Tensor) -> Grads<3> {
        let d = x.dim(candle_core::D::Minus1)?;
        let want_x = x.track_op();
        let (gx, partials) = with_cpu_f32(x, |xs| {
            with_cpu_f32(weight, |gamma| {
                with_cpu_f32(grad_res, |gy| {
                    let mut gx = vec![0f32; if want_x { xs.len() } else { 0 }];
                    let block = d * LAYER_NORM_ROWS;
                    let blocks = xs.len().div_ceil(block);
                    // Per block: Σ gy·x̂ (weight) and Σ gy (bias) over its rows.
                    let mut partials = vec![0f32; blocks * 2 * d];
                    let rows_of = |b: usize,
                                   xs: &[f32],
                                   gy: &[f32],
                                   part: &mut [f32],
                                   mut gx: Option<&mut [f32]>| {
                        let (g_w, g_b) = part.split_at_mut(d);
                        let lo = b * block;
                        let hi = (lo + block).min(xs.len());
                        for (r, (x, gy)) in
                            xs[lo..hi].chunks(d).zip(gy[lo..hi].chunks(d)).enumerate()
                        {
                            let (mean, inv) = row_stats(x, self.eps);
                            let (mut s_dxhat, mut s_dxhat_xhat) = (0f32, 0f32);
                            for j in 0..d {
                                let xhat = (x[j] - mean) * inv;
                                g_w[j] += gy[j] * xhat;
                                g_b[j] += gy[j];
                                let dxhat = gy[j] * gamma[j];
                                s_dxhat += dxhat;
                                s_dxhat_xhat += dxhat * xhat;
                            }
                            if let Some(gx) = gx.as_deref_mut() {
                                let (m1, m2) = (s_dxhat / d as f32, s_dxhat_xhat / d as f32);
                                let gx = &mut gx[r * d..(r + 1) * d];
                                for j in 0..d {
                                    let xhat = (x[j] - mean) * inv;
                                    gx[j] = inv * (gy[j] * gamma[j] - m1 - xhat * m2);
                                }
                            }
                        }
                    };
                    if want_x {
                        partials
                            .par_chunks_mut(2 * d)
                            .zip(gx.par_chunks_mut(block))
                            .enumerate()
                            .for_each(|(b, (part, gx))| rows_of(b, xs, gy, part, Some(gx)));
                    } else {
                        partials
                            .par_chunks_mut(2 * d)
                            .enumerate()
                            .for_each(|(b, part)| rows_of(b, xs, gy, part, None));
                    }
                    Ok((gx, partials))
                })
            })
        })?;
        let mut g_w = vec![0f32; d];
        let mut g_b = vec![0f32; d];
        for part in partials.chunks(2 * d) {
            for j in 0..d {
                g_w[j] += part[j];
                g_b[j] += part[d + j];
            }
        }
        let dev = x.device();
        Ok([
            want_x
                .then(|| Tensor::from_vec(gx, x.shape(), dev))
                .transpose()?,
            grad_if_tracked(weight, g_w, d)?,
            Some(Tensor::from_vec(g_b, d, dev)?),
        ])
    }
}

/// Nearest-neighbour upsampling ×2: `[b, c, h, w]` → `[b, c, 2h, 2w]` (the values of candle's
/// `upsample_nearest2d(2h, 2w)`; the backward sums each 2×2 block).
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(x) {
        return x.apply_op1(Op(UpsampleNearest2x));
    }
    let (b, c, h, w) = x.dims4()?;
    x.reshape((b, c, h, 1, w, 1))?
        .broadcast_as((b, c, h, 2, w, 2))?
        .contiguous()?
        .reshape((b, c, 2 * h, 2 * w))
}

struct UpsampleNearest2x;

impl F32Op<1> for UpsampleNearest2x {
    const NAME: &'static str = "upsample-nearest-2x";

    fn cpu_fwd(&self, [(x, x_l)]: [Operand; 1]) -> Forward {
        let (b, c, h, w) = dims4(x_l, "upsample")?;
        let x = contiguous_f32(cpu_f32(x)?, x_l);
        let mut y = uninit_f32(x.len() * 4);
        y.par_chunks_mut(4 * w)
            .zip(x.par_chunks(w))
            .for_each(|(rows, x)| {
                let (top, bottom) = rows.split_at_mut(2 * w);
                for (pair, &v) in top.chunks_exact_mut(2).zip(x) {
                    pair.fill(v);
                }
                bottom.copy_from_slice(top);
            });
        Ok((CpuStorage::F32(y), Shape::from((b, c, 2 * h, 2 * w))))
    }

    fn bwd(&self, [x]: [&Tensor; 1], _res: &Tensor, grad_res: &Tensor) -> Grads<1> {
        if !x.track_op() {
            return Ok([None]);
        }
        let (b, c, h, w) = x.dims4()?;
        let gx = with_cpu_f32(grad_res, |gy| {
            let mut gx = vec![0f32; b * c * h * w];
            gx.par_chunks_mut(w)
                .zip(gy.par_chunks(4 * w))
                .for_each(|(gx, rows)| {
                    let (top, bottom) = rows.split_at(2 * w);
                    for (j, gx) in gx.iter_mut().enumerate() {
                        *gx = top[2 * j] + top[2 * j + 1] + bottom[2 * j] + bottom[2 * j + 1];
                    }
                });
            Ok(gx)
        })?;
        Ok([Some(Tensor::from_vec(gx, (b, c, h, w), x.device())?)])
    }
}

/// Mean binary cross-entropy of `logits` against 0/1 (or soft) `target` of the same shape,
/// `mean(max(x, 0) − x·z + log(1 + e^{−|x|}))`, as one pass with its own backward
/// (`(σ(x) − z)/N` for the logits, `−x/N` for the target); candle ops take eight full-size
/// temporaries forward and as many backward. Partial sums run over fixed blocks in f64, so the
/// result does not depend on the thread count.
pub fn bce_with_logits_mean(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(logits) && on_cpu_f32(target) && logits.shape() == target.shape() {
        return logits.apply_op2(target, Op(BceWithLogitsMean));
    }
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((logits.relu()? - (logits * target)?)? + softplus)?.mean_all()
}

struct BceWithLogitsMean;

avx2_dispatch! {
    fn bce_sum_slice(x: &[f32], z: &[f32]) -> f32 => bce_sum_slice_imp
}

#[inline(always)]
fn bce_sum_slice_imp(x: &[f32], z: &[f32]) -> f32 {
    // Eight lanes, so that the loop vectorizes.
    let mut acc = [0f32; 8];
    let (xc, zc) = (x.chunks_exact(8), z.chunks_exact(8));
    let (xr, zr) = (xc.remainder(), zc.remainder());
    for (x, z) in xc.zip(zc) {
        for l in 0..8 {
            acc[l] += bce_term(x[l], z[l]);
        }
    }
    let tail: f32 = xr.iter().zip(zr).map(|(&x, &z)| bce_term(x, z)).sum();
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn bce_term(x: f32, z: f32) -> f32 {
    // log(1 + e^{−|x|}) = −log σ(|x|)
    x.max(0.0) - x * z - sigmoid(x.abs()).ln()
}

impl F32Op<2> for BceWithLogitsMean {
    const NAME: &'static str = "bce-with-logits-mean";

    fn cpu_fwd(&self, [(x, x_l), (z, z_l)]: [Operand; 2]) -> Forward {
        let x = contiguous_f32(cpu_f32(x)?, x_l);
        let z = contiguous_f32(cpu_f32(z)?, z_l);
        if x.is_empty() {
            bail!("bce with logits: empty tensors have no mean")
        }
        let sum: f64 = x
            .par_chunks(ELEMENTWISE_CHUNK)
            .zip(z.par_chunks(ELEMENTWISE_CHUNK))
            .map(|(x, z)| f64::from(bce_sum_slice(x, z)))
            .collect::<Vec<f64>>()
            .iter()
            .sum();
        Ok((
            CpuStorage::F32(vec![(sum / x.len() as f64) as f32]),
            Shape::from(()),
        ))
    }

    fn bwd(&self, [x, z]: [&Tensor; 2], _res: &Tensor, grad_res: &Tensor) -> Grads<2> {
        let g = grad_res.to_dtype(DType::F32)?.to_scalar::<f32>()? / x.elem_count() as f32;
        let gx = if x.track_op() {
            let gx = with_cpu_f32(x, |xs| {
                with_cpu_f32(z, |zs| {
                    let mut gx = uninit_f32(xs.len());
                    gx.par_chunks_mut(ELEMENTWISE_CHUNK)
                        .zip(xs.par_chunks(ELEMENTWISE_CHUNK))
                        .zip(zs.par_chunks(ELEMENTWISE_CHUNK))
                        .for_each(|((gx, x), z)| bce_grad_slice(gx, x, z, g));
                    Ok(gx)
                })
            })?;
            Some(Tensor::from_vec(gx, x.shape(), x.device())?)
        } else {
            None
        };
        let gz = if z.track_op() {
            Some((x * f64::from(-g))?)
        } else {
            None
        };
        Ok([gx, gz])
    }
}

avx2_dispatch! {
    /// `gx = g · (σ(x) − z)`.
    fn bce_grad_slice(gx: &mut [f32], x: &[f32], z: &[f32], g: f32) => bce_grad_slice_imp
}

#[inline(always)]
fn bce_grad_slice_imp(gx: &mut [f32], x: &[f32], z: &[f32], g: f32) {
    for ((gx, &x), &z) in gx.iter_mut().zip(x).zip(z) {
        *gx = g * (sigmoid(x) - z);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use candle_nn::VarMap;

    fn random(shape: &[usize], seed: u64) -> Tensor {
        super::super::test_support::random(shape, seed, 2.0)
    }

    fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        let (a, b) = (
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(&b)
            .map(|(a, b)| (a - b).abs() / scale)
            .fold(0.0, f32::max)
    }

    /// The largest relative difference between the gradients of `fused` and `reference` with
    /// respect to each of `wrt`, under the same random upstream gradient.
    fn max_grad_diff(fused: Tensor, reference: Tensor, wrt: &[&Tensor]) -> f32 {
        let upstream = random(fused.dims(), 99);
        let grads = |y: Tensor| {
            (y * &upstream)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let (gf, gr) = (grads(fused), grads(reference));
        wrt.iter()
            .map(|t| max_rel_diff(gf.get(t).unwrap(), gr.get(t).unwrap()))
            .fold(0.0, f32::max)
    }

    /// The fused mean BCE gives candle's composite value and gradients (logits and soft
    /// targets), over sizes below and above one parallel block, with large logits.
    #[test]
    fn bce_with_logits_mean_matches_candle_forward_and_backward() {
        for (shape, scale) in [(vec![3usize, 5], 2.0f32), (vec![4, 2, 64, 130], 30.0)] {
            let x =
                Var::from_tensor(&super::super::test_support::random(&shape, 1, scale)).unwrap();
            // Soft targets in [0, 1) in even cells, hard 0/1 in odd ones.
            let soft = ((random(&shape, 2) / 4.0).unwrap() + 0.5).unwrap();
            let z: Vec<f32> = soft
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, &v)| if i % 2 == 0 { v } else { v.round() })
                .collect();
            let z = Var::from_tensor(&Tensor::from_vec(z, shape.as_slice(), &Device::Cpu).unwrap())
                .unwrap();
            let (x, z) = (x.as_tensor(), z.as_tensor());
            let fused = bce_with_logits_mean(x, z).unwrap();
            let softplus = (x.abs().unwrap().neg().unwrap().exp().unwrap() + 1.0)
                .unwrap()
                .log()
                .unwrap();
            let reference = ((x.relu().unwrap() - (x * z).unwrap()).unwrap() + softplus)
                .unwrap()
                .mean_all()
                .unwrap();
            assert!(fused.dims().is_empty());
            assert!(max_rel_diff(&fused, &reference) < 1e-5);
            assert!(max_grad_diff(fused, reference, &[x, z]) < 1e-5);
        }
    }

    /// Forward values and the gradients of x, weight and bias under a random upstream gradient
    /// agree with candle's composite ops.
    #[test]
    fn group_norm_silu_matches_candle_forward_and_backward() {
        for (shape, groups) in [
            ([2usize, 8, 5, 7], 4usize),
            ([3, 16, 8, 8], 4),
            ([1, 6, 3, 4], 6),
        ] {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let norm = GroupNormSilu::new(groups, shape[1], 1e-5, vb).unwrap();
            // Non-trivial affine parameters.
            for (name, var) in varmap.data().lock().unwrap().iter() {
                let seed = if name == "weight" { 3 } else { 4 };
                var.set(&random(&[shape[1]], seed)).unwrap();
            }
            let x = Var::from_tensor(&random(&shape, 1)).unwrap();
            let fused = norm.forward(x.as_tensor()).unwrap();
            let reference = norm.reference_forward(x.as_tensor()).unwrap();
            assert!(max_rel_diff(&fused, &reference) < 1e-5);
            let diff = max_grad_diff(fused, reference, &[x.as_tensor(), &norm.weight, &norm.bias]);
            assert!(
                diff < 1e-4,
                "{shape:?}/{groups}: gradient differs by {diff}"
            );
        }
    }

    #[test]
    fn lane_sums_match_a_plain_sum() {
        let x: Vec<f32> = (0..5_003)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.1)
            .collect();
        let (sum, sum_sq) = sums(&x, 0.3);
        let plain: f64 = x.iter().map(|&v| v as f64).sum();
        let plain_sq: f64 = x.iter().map(|&v| (v as f64 - 0.3).powi(2)).sum();
        assert!((sum - plain).abs() < 1e-3, "{sum} vs {plain}");
        assert!(
            (sum_sq - plain_sq).abs() / plain_sq < 1e-6,
            "{sum_sq} vs {plain_sq}"
        );
    }

    #[test]
    fn channel_bias_matches_broadcast_add() {
        let x = Var::from_tensor(&random(&[2, 3, 4, 5], 1)).unwrap();
        let v = Var::from_tensor(&random(&[2, 3], 2)).unwrap();
        let fused = add_channel_bias(x.as_tensor(), v.as_tensor()).unwrap();
        let reference = x
            .broadcast_add(&v.unsqueeze(2).unwrap().unsqueeze(3).unwrap())
            .unwrap();
        assert!(max_rel_diff(&fused, &reference) < 1e-6);
        assert!(max_grad_diff(fused, reference, &[x.as_tensor(), v.as_tensor()]) < 1e-5);
    }

    #[test]
    fn add_same_matches_candle_add() {
        let x = Var::from_tensor(&random(&[2, 3, 40, 50], 1)).unwrap();
        let y = Var::from_tensor(&random(&[2, 3, 40, 50], 2)).unwrap();
        let fused = add_same(x.as_tensor(), y.as_tensor()).unwrap();
        let reference = (x.as_tensor() + y.as_tensor()).unwrap();
        assert!(max_rel_diff(&fused, &reference) == 0.0);
        assert!(max_grad_diff(fused, reference, &[x.as_tensor(), y.as_tensor()]) == 0.0);
    }

    #[test]
    fn cat_channels_matches_candle_cat() {
        for (batch, cx, cy) in [(1, 3, 5), (3, 4, 2)] {
            let x = Var::from_tensor(&random(&[batch, cx, 6, 7], 1)).unwrap();
            let y = Var::from_tensor(&random(&[batch, cy, 6, 7], 2)).unwrap();
            let fused = cat_channels(x.as_tensor(), y.as_tensor()).unwrap();
            let reference = Tensor::cat(&[x.as_tensor(), y.as_tensor()], 1).unwrap();
            assert_eq!(fused.dims(), reference.dims());
            assert!(max_rel_diff(&fused, &reference) == 0.0);
            assert!(max_grad_diff(fused, reference, &[x.as_tensor(), y.as_tensor()]) == 0.0);
        }
        let no_channels = random(&[2, 0, 6, 7], 5);
        let both = cat_channels(&no_channels, &random(&[2, 3, 6, 7], 6)).unwrap();
        assert_eq!(both.dims(), &[2, 3, 6, 7]);
        let values = both.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
        let wrong = random(&[1, 2, 6, 8], 3);
        assert!(cat_channels(&random(&[1, 2, 6, 7], 4), &wrong).is_err());
    }

    #[test]
    fn gelu_matches_candle_forward_and_backward() {
        let x = Var::from_tensor(&random(&[3, 5, 40], 1)).unwrap();
        let x4 = (x.as_tensor() * 3.0).unwrap();
        let fused = gelu(&x4).unwrap();
        let reference = x4.gelu().unwrap();
        assert!(max_rel_diff(&fused, &reference) < 1e-6);
        let diff = max_grad_diff(fused, reference, &[x.as_tensor()]);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn layer_norm_matches_candle_forward_and_backward() {
        for shape in [[2usize, 3, 16], [1, 130, 24]] {
            let d = shape[2];
            let x = Var::from_tensor(&random(&shape, 1)).unwrap();
            let w = Var::from_tensor(&random(&[d], 2)).unwrap();
            let b = Var::from_tensor(&random(&[d], 3)).unwrap();
            let (x, w, b) = (x.as_tensor(), w.as_tensor(), b.as_tensor());
            let fused = layer_norm(x, w, b, 1e-5).unwrap();
            let mean = x.mean_keepdim(candle_core::D::Minus1).unwrap();
            let centered = x.broadcast_sub(&mean).unwrap();
            let var = centered
                .sqr()
                .unwrap()
                .mean_keepdim(candle_core::D::Minus1)
                .unwrap();
            let reference = centered
                .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
                .unwrap()
                .broadcast_mul(w)
                .unwrap()
                .broadcast_add(b)
                .unwrap();
            assert!(max_rel_diff(&fused, &reference) < 1e-5);
            let diff = max_grad_diff(fused, reference, &[x, w, b]);
            assert!(diff < 1e-4, "{shape:?}: gradient differs by {diff}");
        }
    }

    #[test]
    fn upsampling_matches_candle_forward_and_backward() {
        let x = Var::from_tensor(&random(&[2, 3, 4, 5], 1)).unwrap();
        let fused = upsample_nearest2x(x.as_tensor()).unwrap();
        let reference = x.upsample_nearest2d(8, 10).unwrap();
        assert!(max_rel_diff(&fused, &reference) == 0.0);
        let diff = max_grad_diff(fused, reference, &[x.as_tensor()]);
        assert!(diff < 1e-5, "{diff}");
    }
}
