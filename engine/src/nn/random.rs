//! Random numbers the samplers and trainers share.

use rand::Rng;

/// `count` standard normal values from `rng` (Box–Muller).
pub fn normal_noise(rng: &mut impl Rng, count: usize) -> Vec<f32> {
    (0..count)
        .map(|_| {
            let u1: f32 = rng.random::<f32>().max(1e-7);
            let u2: f32 = rng.random();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect()
}
