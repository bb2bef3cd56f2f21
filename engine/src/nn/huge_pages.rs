//! Transparent-huge-page advice for large tensor buffers.
//!
//! Every CPU tensor op allocates a fresh result buffer; glibc serves big ones (over 32 MiB at
//! most) with a new `mmap`, whose pages the kernel then faults in and zeroes 4 KiB at a time. On
//! virtual machines that costs as much as the arithmetic: a 46 MB activation takes ~11,000
//! faults. Asking for 2 MiB pages (`madvise(MADV_HUGEPAGE)`) cuts that 512-fold. The kernel may
//! ignore the advice (THP set to `never`); it is a no-op off Linux.

use std::alloc::{GlobalAlloc, Layout, System};

/// Buffers from this size up are advised to use huge pages.
pub const HUGE_PAGE_THRESHOLD_BYTES: usize = 4 << 20;

#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// Advises the kernel to back the whole 2 MiB pages inside `[ptr, ptr + len)` with huge pages.
/// Contents are unchanged; errors (THP unavailable) are ignored.
pub fn advise_huge_pages(ptr: *const u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const MADV_HUGEPAGE: i32 = 14;
        unsafe extern "C" {
            fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
        }
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize).saturating_add(len) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: advice on whole pages inside a live allocation; it never changes contents.
            unsafe { madvise(start as *mut std::ffi::c_void, end - start, MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// A zeroed f32 buffer for a large result, advised to use huge pages before its first touch.
pub(crate) fn zeroed_f32(len: usize) -> Vec<f32> {
    let buffer = vec![0f32; len];
    if std::mem::size_of_val(buffer.as_slice()) >= HUGE_PAGE_THRESHOLD_BYTES {
        advise_huge_pages(
            buffer.as_ptr().cast(),
            std::mem::size_of_val(buffer.as_slice()),
        );
    }
    buffer
}

/// An f32 buffer for a result whose every element the caller writes before anything reads it
/// (a kernel's output): skips [`zeroed_f32`]'s memset, which ran on the calling thread outside
/// the parallel kernels (a visible share of a batch-1 roll UNet evaluation, `cargo xtask bench
/// roll`). Debug builds fill it with NaN, so that an element a kernel forgets to write shows up
/// in the tests against candle.
#[allow(clippy::uninit_vec)] // on purpose: see the SAFETY note
pub(crate) fn uninit_f32(len: usize) -> Vec<f32> {
    if cfg!(debug_assertions) {
        return vec![f32::NAN; len];
    }
    let mut buffer = Vec::<f32>::with_capacity(len);
    // SAFETY: f32 has no invalid bit patterns, and the caller overwrites every element before
    // reading it (candle's `alloc_uninit` does the same for its CPU ops).
    unsafe { buffer.set_len(len) };
    if std::mem::size_of_val(buffer.as_slice()) >= HUGE_PAGE_THRESHOLD_BYTES {
        advise_huge_pages(
            buffer.as_ptr().cast(),
            std::mem::size_of_val(buffer.as_slice()),
        );
    }
    buffer
}

/// The system allocator, advising huge pages for every allocation of at least
/// [`HUGE_PAGE_THRESHOLD_BYTES`]: speeds up all of candle's CPU ops on large tensors, not only
/// the convolutions. Opt in from a binary with
/// `#[global_allocator] static ALLOC: bandmate::nn::HugePageAlloc = bandmate::nn::HugePageAlloc;`
/// (the same effect as running under `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HugePageAlloc;

unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() && layout.size() >= HUGE_PAGE_THRESHOLD_BYTES {
            advise_huge_pages(ptr, layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() && layout.size() >= HUGE_PAGE_THRESHOLD_BYTES {
            advise_huge_pages(ptr, layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() && new_size >= HUGE_PAGE_THRESHOLD_BYTES {
            advise_huge_pages(new, new_size);
        }
        new
    }
}

/// Keeps freed tensor buffers inside the process (glibc: `M_MMAP_THRESHOLD` at its 32 MiB
/// maximum, no trimming of the heap, one arena) so the next op of the same size reuses pages
/// that are already mapped instead of faulting in and zeroing fresh ones, which speeds up a
/// training step of the roll UNet. The single arena matters for the pool threads: each would
/// otherwise allocate from an arena of its own, whose sub-heaps glibc unmaps as soon as they are
/// wholly free whatever the trim threshold, so every pass faulted its buffers in again (`perf`
/// showed a large share of a MusicVAE encode + decode in the kernel zeroing huge pages, and its
/// training step got faster with one arena; `cargo xtask bench latent`). For training and batch
/// tools, not for a plugin inside a host. A no-op elsewhere.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        const M_ARENA_MAX: i32 = -8;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only changes allocator tuning; called before heavy allocation.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
            mallopt(M_ARENA_MAX, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_page_allocator_keeps_contents_and_zeroes() {
        let size = 3 * HUGE_PAGE_THRESHOLD_BYTES + 12_345;
        let layout = Layout::from_size_align(size, 64).unwrap();
        unsafe {
            let zeroed = HugePageAlloc.alloc_zeroed(layout);
            assert!(!zeroed.is_null());
            let bytes = std::slice::from_raw_parts_mut(zeroed, size);
            assert!(bytes.iter().all(|&b| b == 0));
            bytes
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = (i % 251) as u8);
            let grown = HugePageAlloc.realloc(zeroed, layout, 2 * size);
            assert!(!grown.is_null());
            let bytes = std::slice::from_raw_parts(grown, size);
            assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
            HugePageAlloc.dealloc(grown, Layout::from_size_align(2 * size, 64).unwrap());

            let small = Layout::from_size_align(100, 8).unwrap();
            let ptr = HugePageAlloc.alloc(small);
            assert!(!ptr.is_null());
            HugePageAlloc.dealloc(ptr, small);
        }
        let buffer = zeroed_f32(2 << 20);
        assert!(buffer.iter().all(|&v| v == 0.0));
    }
}
