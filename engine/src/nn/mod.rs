//! Neural-network building blocks shared by the models, tuned for the CPU.

pub mod conv;
pub mod conv_kernel;
pub mod fused;
pub mod huge_pages;

pub use conv::Conv2d;
pub use conv_kernel::{ConvGeometry, candle_conv2d, conv2d};
pub use fused::{GroupNormSilu, add_channel_bias, upsample_nearest2x};
pub use huge_pages::{HugePageAlloc, keep_freed_memory};
