//! Helpers shared by the kernel tests that compare our ops with candle's.

use candle_core::Tensor;

/// The gradients of `sum(y · upstream)` with respect to each of `wrt` (`None` where candle's
/// backward pass leaves one out).
pub fn gradients(y: &Tensor, upstream: &Tensor, wrt: &[&Tensor]) -> Vec<Option<Tensor>> {
    let grads = (y * upstream)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    wrt.iter().map(|v| grads.get(v).cloned()).collect()
}

/// The largest absolute difference between two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    a.iter()
        .zip(&b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// The largest absolute element of `t`: an error's size, or whether a gradient is non-zero.
pub fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A tensor of `shape` with elements uniform in `[-scale, scale)`, from a seeded ChaCha8.
pub fn random(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    Tensor::from_vec(data, shape, &candle_core::Device::Cpu).unwrap()
}
