//! Neural-network building blocks shared by the models, tuned for the CPU; on another device
//! (a GPU build, [`device`]) each falls back to the candle ops it replaces.

pub mod attention;
pub mod conv;
pub mod conv_geometry;
pub mod conv_kernel;
pub mod cpu;
pub mod device;
pub mod fused;
pub mod gru;
pub mod huge_pages;
pub mod lstm;
pub mod matmul;
pub mod random;
pub mod roll_sums;
pub mod sparse_linear;
#[cfg(test)]
pub(crate) mod test_support;
pub mod weights;
pub mod winograd;

pub use attention::self_attention;
pub use conv::Conv2d;
pub use conv_geometry::ConvGeometry;
pub use conv_kernel::{candle_conv2d, conv2d};
pub use cpu::storage::with_candle_ops;
pub use device::{compute_device, device_name};
pub use fused::{
    GroupNormSilu, add_channel_bias, add_same, cat_channels, gelu, layer_norm, upsample_nearest2x,
};
pub use huge_pages::{HugePageAlloc, keep_freed_memory};
pub use matmul::{Linear, linear, matmul};

/// Sets `RAYON_NUM_THREADS` to the machine's logical CPU count (rayon's own default) and
/// `CANDLE_NUM_THREADS` to 1, unless they are set already.
///
/// - Candle asks for its thread count on every CPU matmul, and without `RAYON_NUM_THREADS` it
///   parses `/proc/cpuinfo` each time (slow, and the kernel interrupts every CPU to report its
///   clock), which added up over the latent samplers' many small products (`cargo xtask bench
///   latent`). Our own [`matmul()`] no longer asks, so this now matters only for candle's
///   remaining ops.
/// - Candle runs elementwise ops of 64 Ki elements or more on its own pool of spinning threads
///   (`candle-bp-*`), beside rayon's pool that runs all our kernels. With one candle thread
///   those ops run inline on the calling thread. On an idle machine that changes little (the
///   MusicVAE training step, `bandmate train vae --bench small`, gains a little, and the spin
///   waits no longer burn a large share of the CPU samples), but while another job uses the
///   cores the two pools fight, and the training step became much faster with one candle
///   thread.
///
/// # Safety
/// Changes the environment: call it first thing in `main`, while the process has one thread.
/// Not for a plugin inside a host, whose other threads may read the environment concurrently.
pub unsafe fn set_thread_count_env() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: the caller guarantees no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: as above.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

/// A batch of `n` items cut into one contiguous part per thread of the current rayon pool (fewer
/// when a part would hold under `min_part` items), with each part's share of the batch: the
/// parts and weights of [`crate::train::adamw::AdamW::split_backward_step`].
///
/// `BANDMATE_SPLIT=0` in the environment keeps every batch whole (read once per process), for
/// measuring what the split is worth.
pub fn pool_parts(n: usize, min_part: usize) -> (Vec<std::ops::Range<usize>>, Vec<f64>) {
    static SPLIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let split = *SPLIT.get_or_init(|| std::env::var_os("BANDMATE_SPLIT").is_none_or(|v| v != "0"));
    let threads = if split {
        rayon::current_num_threads()
    } else {
        1
    };
    let parts = threads.min(n / min_part.max(1)).clamp(1, n.max(1));
    let ranges: Vec<_> = (0..parts)
        .map(|i| i * n / parts..(i + 1) * n / parts)
        .collect();
    let weights = ranges
        .iter()
        .map(|r| r.len() as f64 / n.max(1) as f64)
        .collect();
    (ranges, weights)
}

/// Run `f` on a worker thread of the current rayon pool (inline when the caller is one already).
/// A parallel op called from outside the pool injects its job and then sleeps until a worker has
/// finished it, so every op of a network costs two thread wake-ups; from inside the pool the
/// caller takes part in the work and the other worker steals its share. The roll sampler runs
/// each UNet evaluation this way, which made a fill clearly faster (alternating runs of
/// `cargo xtask bench roll`, together with the uninitialized kernel outputs).
///
/// `BANDMATE_IN_POOL=0` in the environment runs `f` on the calling thread instead (read once per
/// process), for measuring what the hop is worth.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static HOP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let hop = *HOP.get_or_init(|| std::env::var_os("BANDMATE_IN_POOL").is_none_or(|v| v != "0"));
    if hop {
        // Inside `with_candle_ops`, the pool thread takes the candle ops too.
        let candle_ops = cpu::storage::candle_ops_only();
        rayon::scope(|_| cpu::storage::keep_candle_ops(candle_ops, f))
    } else {
        f()
    }
}

thread_local! {
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with every matrix product on the calling thread: for one part of a batch that each
/// pool thread runs alone while the others run theirs ([`pool_parts`]), where a product split
/// between the threads would only make the busy threads wait for each other at every product
/// (`perf` on the latent score network's training step showed a visible share of it in the gemm
/// crate's thread hand-over). Elementwise kernels still split, so a thread that finishes its
/// part early helps.
pub fn serially<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the flag back even when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    f()
}

/// Whether the calling thread is inside [`serially`].
pub(crate) fn is_serial() -> bool {
    SERIAL.with(std::cell::Cell::get)
}

/// Run `f` on a one-thread rayon pool (made once per process). Batch-1 inference is a long
/// chain of small ops, where spreading each over two threads costs more in wake-ups than it
/// gains (the latent sampler's 16-bar melody, `cargo xtask bench latent`); [`matmul()`] and our
/// kernels size their work by the current pool, so they stay on this thread. Falls back to the
/// caller's pool if the thread cannot be made.
pub fn on_one_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "bandmate-one-thread".into())
            .build()
            .ok()
    });
    match pool {
        Some(pool) => {
            // Inside `with_candle_ops`, the pool thread takes the candle ops too.
            let candle_ops = cpu::storage::candle_ops_only();
            pool.install(|| cpu::storage::keep_candle_ops(candle_ops, f))
        }
        None => f(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pool_parts_cover_the_batch_in_order() {
        let (ranges, weights) = super::pool_parts(33, 4);
        let threads = rayon::current_num_threads().min(8);
        assert_eq!(ranges.len(), threads);
        assert_eq!(ranges.first().unwrap().start, 0);
        assert_eq!(ranges.last().unwrap().end, 33);
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Too small to split.
        assert_eq!(super::pool_parts(3, 4).0, vec![0..3]);
    }
}
