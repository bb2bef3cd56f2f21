//! Matrix products through the `gemm` crate, and sums of parallel runs of tasks in a fixed order.

use gemm::Parallelism;
use rayon::prelude::*;

/// A gemm operand: element `(i, j)` lives at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    pub(crate) ptr: *const f32,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}
// SAFETY: a `Mat` only ever points into buffers that outlive the parallel section reading them.
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

impl Mat {
    /// The transpose: the same elements, rows and columns swapped.
    pub(crate) fn t(self) -> Self {
        Self {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`, `dst` element `(i, j)` at `dst + i·dst_rs + j·dst_cs`.
///
/// # Safety
/// Every element addressed through `dst`, `lhs` and `rhs` must be valid, and `dst` must not be
/// written by anyone else during the call.
pub(crate) unsafe fn sgemm(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    par: Parallelism,
) {
    let alpha = if accumulate { 1.0 } else { 0.0 };
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.ptr,
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.ptr,
            rhs.cs as isize,
            rhs.rs as isize,
            alpha,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Gemm parallelism for `tasks` independent tasks: inside gemm only when tasks can't fill the pool.
pub(crate) fn gemm_parallelism(tasks: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if tasks < threads && !crate::nn::is_serial() {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// A sum over `tasks` independent tasks: they are cut into at most four runs per thread, each
/// run's partial result is `work(run's task range, gemm parallelism for that many runs)`, and
/// the partial results are added into the first in order, so the sum is deterministic for a
/// given thread count. `tasks` must be at least 1.
pub(crate) fn sum_of_runs<T: Send>(
    tasks: usize,
    work: impl Fn(std::ops::Range<usize>, Parallelism) -> T + Sync + Send,
    add: impl Fn(&mut T, T),
) -> T {
    let runs = tasks.min(4 * rayon::current_num_threads()).max(1);
    let run_len = tasks.div_ceil(runs);
    let runs = tasks.div_ceil(run_len);
    let par = gemm_parallelism(runs);
    let partials: Vec<T> = (0..runs)
        .into_par_iter()
        .map(|run| work(run * run_len..((run + 1) * run_len).min(tasks), par))
        .collect();
    let mut partials = partials.into_iter();
    let mut sum = partials.next().expect("at least one task");
    for partial in partials {
        add(&mut sum, partial);
    }
    sum
}
