//! The CPU toolkit the custom kernels share: storage access ([`storage`]), candle's custom-op
//! traits in array form ([`op`]), matrix products ([`gemm`]), the AVX2 dispatch ([`dispatch`]),
//! scalar maths ([`math`]) and eight- and sixteen-lane maths ([`simd`]). Kernels import from
//! here, never from each other.

pub mod dispatch;
pub mod gemm;
pub mod math;
pub(crate) mod op;
pub(crate) mod simd;
pub mod storage;
