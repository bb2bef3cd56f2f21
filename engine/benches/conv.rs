//! CPU convolution benchmark: candle's built-in conv2d vs `bandmate::nn::conv2d`, plus a matmul
//! for reference. Run with `cargo bench -p bandmate-engine --bench conv` (release profile).
//! `RAYON_NUM_THREADS` sets the thread count, `CONV_BENCH_REPS` the timed repetitions (default 5),
//! `CONV_BENCH_FILTER` a substring the benchmark labels must contain (e.g. `bandmate`), and
//! `CONV_BENCH_HUGE_PAGES=0` turns off the huge-page allocator (`bandmate::nn::HugePageAlloc`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bandmate::nn::conv_kernel::{conv2d_input_grad, conv2d_weight_bias_grads};
use bandmate::nn::cpu::storage::Strided4;
use bandmate::nn::{ConvGeometry, HugePageAlloc, candle_conv2d, conv2d};
use candle_core::{Device, Result, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

/// The peak the percentages refer to (GFLOP/s, f32; as `support/twin.rs`'s).
const PEAK_GFLOPS: f64 = 190.0;

/// `HugePageAlloc` or the plain system allocator, chosen at startup.
struct SwitchableAlloc;

static HUGE_PAGES: AtomicBool = AtomicBool::new(true);

unsafe impl GlobalAlloc for SwitchableAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if HUGE_PAGES.load(Ordering::Relaxed) {
            unsafe { HugePageAlloc.alloc(layout) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if HUGE_PAGES.load(Ordering::Relaxed) {
            unsafe { HugePageAlloc.alloc_zeroed(layout) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if HUGE_PAGES.load(Ordering::Relaxed) {
            unsafe { HugePageAlloc.realloc(ptr, layout, new_size) }
        } else {
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOC: SwitchableAlloc = SwitchableAlloc;

type ConvFn = fn(&Tensor, &Tensor, Option<&Tensor>, usize, usize) -> Result<Tensor>;

fn selected(label: &str) -> bool {
    std::env::var("CONV_BENCH_FILTER").map_or(true, |filter| label.contains(&filter))
}

/// The two convolutions compared.
const CONVS: [(&str, ConvFn); 2] = [("candle", candle_conv2d), ("bandmate", conv2d)];

/// `(label, convolution)` of each of [`CONVS`] whose label `"{what} ({name})"` is selected.
fn selected_convs(what: &str) -> impl Iterator<Item = (String, ConvFn)> {
    CONVS
        .into_iter()
        .map(move |(name, conv)| (format!("{what} ({name})"), conv))
        .filter(|(label, _)| selected(label))
}

/// Best and median wall time of `reps` runs of `f` after one warm-up run.
fn time(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[0], times[times.len() / 2]))
}

fn report(what: &str, flops: f64, (best, median): (f64, f64)) {
    let gflops = flops / best / 1e9;
    println!(
        "{what:<44} best {:>8.1} ms  median {:>8.1} ms  {gflops:>6.1} GFLOP/s  {:>5.1}% of {PEAK_GFLOPS} peak",
        best * 1e3,
        median * 1e3,
        100.0 * gflops / PEAK_GFLOPS
    );
}

/// 2→64→64→2 3×3 convolutions with ReLUs, MSE to a target, one AdamW step.
struct TrainStep {
    vars: Vec<Var>,
    opt: AdamW,
    input: Tensor,
    target: Tensor,
}

impl TrainStep {
    const CHANNELS: [usize; 4] = [2, 64, 64, 2];

    fn new(batch: usize, h: usize, w: usize) -> Result<Self> {
        let dev = Device::Cpu;
        let mut vars = Vec::new();
        for pair in Self::CHANNELS.windows(2) {
            let bound = 1.0 / ((pair[0] * 9) as f64).sqrt();
            vars.push(Var::rand(
                -bound as f32,
                bound as f32,
                (pair[1], pair[0], 3, 3),
                &dev,
            )?);
            vars.push(Var::rand(-bound as f32, bound as f32, pair[1], &dev)?);
        }
        let opt = AdamW::new(
            vars.clone(),
            ParamsAdamW {
                lr: 1e-3,
                ..Default::default()
            },
        )?;
        let input = Tensor::randn(0f32, 1.0, (batch, 2, h, w), &dev)?;
        let target = Tensor::randn(0f32, 1.0, (batch, 2, h, w), &dev)?;
        Ok(Self {
            vars,
            opt,
            input,
            target,
        })
    }

    fn step(&mut self, conv: ConvFn) -> Result<f32> {
        let mut x = self.input.clone();
        for (layer, pair) in self.vars.chunks(2).enumerate() {
            x = conv(&x, pair[0].as_tensor(), Some(pair[1].as_tensor()), 1, 1)?;
            if layer + 1 < self.vars.len() / 2 {
                x = x.relu()?;
            }
        }
        let loss = (x - &self.target)?.sqr()?.mean_all()?;
        self.opt.backward_step(&loss)?;
        loss.to_scalar::<f32>()
    }

    /// Forward + backward FLOPs of the convolutions (3× forward).
    fn flops(batch: usize, h: usize, w: usize) -> f64 {
        Self::CHANNELS
            .windows(2)
            .map(|pair| {
                3.0 * ConvGeometry::new(&[batch, pair[0], h, w], &[pair[1], pair[0], 3, 3], 1, 1)
                    .unwrap()
                    .flops()
            })
            .sum()
    }
}

fn main() -> Result<()> {
    // SAFETY: first thing in main, before any other thread exists.
    unsafe { bandmate::nn::set_thread_count_env() };
    let reps: usize = std::env::var("CONV_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    HUGE_PAGES.store(
        std::env::var("CONV_BENCH_HUGE_PAGES").map_or(true, |v| v != "0"),
        Ordering::Relaxed,
    );
    let dev = Device::Cpu;
    println!(
        "threads: rayon {}, candle {}; avx512f {}; huge-page allocator {}; {reps} timed reps each",
        rayon::current_num_threads(),
        candle_core::utils::get_num_threads(),
        cfg!(target_arch = "x86_64") && std::arch::is_x86_feature_detected!("avx512f"),
        HUGE_PAGES.load(Ordering::Relaxed),
    );

    let n = 1024;
    let a = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
    if selected("matmul 1024³ (candle)") {
        report(
            "matmul 1024³ (candle)",
            2.0 * (n * n * n) as f64,
            time(reps * 4, || a.matmul(&b).map(|_| ()))?,
        );
    }

    let (batch, c, h, w) = (32, 64, 64, 88);
    let x = Tensor::randn(0f32, 1.0, (batch, c, h, w), &dev)?;
    let weight = (Tensor::randn(0f32, 1.0, (c, c, 3, 3), &dev)? / 24.0)?;
    let bias = Tensor::randn(0f32, 1.0, c, &dev)?;
    let geometry = ConvGeometry::new(x.dims(), weight.dims(), 1, 1)?;
    let flops = geometry.flops();
    for (label, conv) in selected_convs("conv fwd 3x3 64->64 64x88 b32") {
        report(
            &label,
            flops,
            time(reps, || conv(&x, &weight, Some(&bias), 1, 1).map(|_| ()))?,
        );
    }

    // The kernel's backward pieces alone, on plain buffers.
    let x_data = x.flatten_all()?.to_vec1::<f32>()?;
    let w_data = weight.flatten_all()?.to_vec1::<f32>()?;
    let gy_data = Tensor::randn(0f32, 1.0, (batch, c, h, w), &dev)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let x_view = Strided4::contiguous(&x_data, c, h, w);
    // The weight gradient by Winograd products, and by im2col + GEMM (the direct kernels).
    for (label, winograd) in [
        ("kernel bwd weight+bias (bandmate)", true),
        ("kernel bwd weight+bias (bandmate, direct)", false),
    ] {
        if !selected(label) {
            continue;
        }
        bandmate::nn::winograd::set_enabled(winograd);
        let run = || {
            conv2d_weight_bias_grads(&x_view, &gy_data, &geometry, true, true);
            Ok(())
        };
        report(label, flops, time(reps, run)?);
        bandmate::nn::winograd::set_enabled(true);
    }
    // The same on the roll UNet's levels (batch 16, 64 steps × 64 pitches at the top).
    for (c, h, w) in [(24, 64, 64), (48, 32, 32), (96, 16, 16), (96, 8, 8)] {
        let label = format!("kernel bwd weight 3x3 {c}->{c} {h}x{w} b16");
        if !selected(&label) {
            continue;
        }
        let batch = 16;
        let x_data: Vec<f32> = (0..batch * c * h * w)
            .map(|i| ((i * 7919) % 1000) as f32 / 1e3)
            .collect();
        let gy_data: Vec<f32> = (0..batch * c * h * w)
            .map(|i| ((i * 104729) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let x_view = Strided4::contiguous(&x_data, c, h, w);
        let geometry = ConvGeometry::new(&[batch, c, h, w], &[c, c, 3, 3], 1, 1)?;
        for (kind, winograd) in [("winograd", true), ("direct", false)] {
            bandmate::nn::winograd::set_enabled(winograd);
            let run = || {
                conv2d_weight_bias_grads(&x_view, &gy_data, &geometry, true, false);
                Ok(())
            };
            report(
                &format!("{label} ({kind})"),
                geometry.flops(),
                time(reps * 4, run)?,
            );
        }
        bandmate::nn::winograd::set_enabled(true);
    }
    // The forward on the levels where Winograd applies at batch 1 (a fill's network runs).
    for (c, h, w) in [(24, 64, 64), (48, 32, 32)] {
        let label = format!("fwd 3x3 {c}->{c} {h}x{w} b1");
        if !selected(&label) {
            continue;
        }
        let x = Tensor::randn(0f32, 1.0, (1, c, h, w), &dev)?;
        let weight = Tensor::randn(0f32, 0.1, (c, c, 3, 3), &dev)?;
        let bias = Tensor::randn(0f32, 0.1, c, &dev)?;
        let geometry = ConvGeometry::new(&[1, c, h, w], &[c, c, 3, 3], 1, 1)?;
        for (kind, winograd) in [("winograd", true), ("direct", false)] {
            bandmate::nn::winograd::set_enabled(winograd);
            report(
                &format!("{label} ({kind})"),
                geometry.flops(),
                time(reps * 20, || {
                    conv2d(&x, &weight, Some(&bias), 1, 1).map(|_| ())
                })?,
            );
        }
        bandmate::nn::winograd::set_enabled(true);
    }
    if selected("kernel bwd input (bandmate)") {
        let run = || {
            conv2d_input_grad(&w_data, &gy_data, &geometry);
            Ok(())
        };
        report("kernel bwd input (bandmate)", flops, time(reps, run)?);
    }

    let xv = Var::from_tensor(&x)?;
    let wv = Var::from_tensor(&weight)?;
    let bv = Var::from_tensor(&bias)?;
    let probe = Tensor::randn(0f32, 1.0, (batch, c, h, w), &dev)?;
    for (label, conv) in selected_convs("conv fwd+bwd 3x3 64->64 64x88 b32") {
        let run = || {
            let y = conv(xv.as_tensor(), wv.as_tensor(), Some(bv.as_tensor()), 1, 1)?;
            (y * &probe)?.sum_all()?.backward().map(|_| ())
        };
        report(&label, 3.0 * flops, time(reps, run)?);
    }

    let train_flops = TrainStep::flops(batch, h, w);
    for (label, conv) in selected_convs("train step 2-64-64-2 AdamW b32") {
        let mut step = TrainStep::new(batch, h, w)?;
        let first = step.step(conv)?;
        report(
            &label,
            train_flops,
            time(reps, || step.step(conv).map(|_| ()))?,
        );
        let last = step.step(conv)?;
        println!(
            "{:<44} loss {first:.4} -> {last:.4} over {} steps",
            "",
            reps + 2
        );
    }
    Ok(())
}
