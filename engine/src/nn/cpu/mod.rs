//! The CPU toolkit the custom kernels share: storage access ([`storage`]), matrix products
//! ([`gemm`]), the AVX2 dispatch ([`dispatch`]) scalar maths ([`math`]) and eight- and sixteen-lane maths ([`simd`]). Kernels import from
//! here, never from each other.

pub mod dispatch;
pub mod gemm;
pub mod math;
pub(crate) mod simd;
pub mod storage;
