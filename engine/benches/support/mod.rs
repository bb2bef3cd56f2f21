//! What the model benches share (included with `#[path]`): timing ([`timing`]), the test songs
//! ([`songs`]), the PyTorch twins ([`twin`]), and the huge-page allocator.

// Not every bench uses every helper.
#![allow(dead_code)]

pub mod songs;
pub mod timing;
pub mod twin;

/// As in the `bandmate` tool that trains the models.
#[global_allocator]
static ALLOC: bandmate::nn::HugePageAlloc = bandmate::nn::HugePageAlloc;
