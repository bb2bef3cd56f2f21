//! The binomial forward process of Atassi (2023) on two-channel binary piano rolls:
//! q(x_t | x_0) = B(ᾱ_t x_0 + (1 − ᾱ_t) p), with p the data's mean cell density per channel.
//!
//! Rolls are flat `[2, steps, pitches]` slices (channel-major, as [`crate::music::PianoRoll`]),
//! or batches of them laid end to end.

use rand::Rng;

/// ᾱ_t for t = 0..=T on a cosine schedule (Nichol & Dhariwal 2021): ᾱ_0 = 1, ᾱ_T = 0, so x_T is
/// pure prior noise B(p).
#[derive(Clone, Debug, PartialEq)]
pub struct BinomialSchedule {
    alpha_bar: Vec<f32>,
    /// Prior p per channel (onset, sustain).
    pub prior: [f32; 2],
}

impl BinomialSchedule {
    pub fn new(steps: usize, prior: [f32; 2]) -> Self {
        let steps = steps.max(1);
        let s = 0.008f64;
        let f = |t: usize| {
            ((t as f64 / steps as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        let f0 = f(0);
        let mut alpha_bar: Vec<f32> = (0..=steps)
            .map(|t| (f(t) / f0).clamp(0.0, 1.0) as f32)
            .collect();
        alpha_bar[0] = 1.0;
        alpha_bar[steps] = 0.0;
        Self { alpha_bar, prior }
    }

    /// T.
    pub fn steps(&self) -> usize {
        self.alpha_bar.len() - 1
    }

    /// ᾱ_t: the share of x_0 kept at step t (t clamped to 0..=T).
    pub fn alpha_bar(&self, t: usize) -> f32 {
        self.alpha_bar[t.min(self.steps())]
    }

    /// 1 − ᾱ_t: the share of cells redrawn from the prior by step t.
    pub fn noise_level(&self, t: usize) -> f32 {
        1.0 - self.alpha_bar(t)
    }

    /// Probability that a cell of `channel` is on in x_t given its value `x0` (0 or 1).
    pub fn q_probability(&self, x0: f32, channel: usize, t: usize) -> f32 {
        let a = self.alpha_bar(t);
        a * x0 + (1.0 - a) * self.prior[channel]
    }

    /// Draw x_t ~ q(x_t | x_0) for a batch of rolls of `plane` cells per channel; `t[i]` is the
    /// step of roll `i`. `x0.len()` must be `t.len() * 2 * plane`.
    pub fn q_sample(&self, x0: &[f32], plane: usize, t: &[usize], rng: &mut impl Rng) -> Vec<f32> {
        assert_eq!(
            x0.len(),
            t.len() * 2 * plane,
            "q_sample: batch and roll size disagree"
        );
        let mut out = Vec::with_capacity(x0.len());
        for (i, cell) in x0.iter().enumerate() {
            let roll = i / (2 * plane);
            let channel = (i / plane) % 2;
            let p = self.q_probability(*cell, channel, t[roll]);
            out.push(if rng.random::<f32>() < p { 1.0 } else { 0.0 });
        }
        out
    }

    /// [`BinomialSchedule::q_sample`] with a ChaCha8 generator seeded by `seed`.
    pub fn q_sample_seeded(&self, x0: &[f32], plane: usize, t: &[usize], seed: u64) -> Vec<f32> {
        use rand::SeedableRng;
        self.q_sample(
            x0,
            plane,
            t,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        )
    }

    /// Draw x_T ~ B(p) for one roll of `plane` cells per channel.
    pub fn prior_sample(&self, plane: usize, rng: &mut impl Rng) -> Vec<f32> {
        (0..2 * plane)
            .map(|i| {
                if rng.random::<f32>() < self.prior[i / plane] {
                    1.0
                } else {
                    0.0
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn schedule_goes_from_data_to_prior() {
        let s = BinomialSchedule::new(100, [0.02, 0.08]);
        assert_eq!(s.steps(), 100);
        assert_eq!(s.alpha_bar(0), 1.0);
        assert_eq!(s.alpha_bar(100), 0.0);
        assert!((1..=100).all(|t| s.alpha_bar(t) <= s.alpha_bar(t - 1)));
        assert_eq!(s.q_probability(1.0, 0, 0), 1.0);
        assert!((s.q_probability(1.0, 1, 100) - 0.08).abs() < 1e-7);
    }

    #[test]
    fn noisy_rolls_have_the_expected_density() {
        let s = BinomialSchedule::new(100, [0.1, 0.3]);
        let plane = 10_000;
        let x0: Vec<f32> = (0..2 * plane)
            .map(|i| if i % 4 == 0 { 1.0 } else { 0.0 })
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let xt = s.q_sample(&x0, plane, &[50], &mut rng);
        let a = s.alpha_bar(50);
        for c in 0..2 {
            let want = a * 0.25 + (1.0 - a) * s.prior[c];
            let got = xt[c * plane..(c + 1) * plane].iter().sum::<f32>() / plane as f32;
            assert!((got - want).abs() < 0.015, "channel {c}: {got} vs {want}");
        }
    }
}
