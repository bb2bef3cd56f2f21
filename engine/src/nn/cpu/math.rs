//! Scalar e^x, ln x, sigmoid and tanh in plain arithmetic the compiler vectorizes.

/// e^x for f32 in plain arithmetic the compiler vectorizes (libm's `expf` is one call per
/// element): x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by its degree-6 Taylor polynomial
/// (relative error below 2e-7), 2^n put into the exponent bits. Inputs are clamped to
/// [−87, 88], so the result stays a normal float (e^−87 ≈ 1.6e−38).
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n·LN2_HI is exact for |n| < 256.
    const LN2_HI: f32 = 0.693_359_4; // 0.693359375: 9 significant bits
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n_int + 127) as u32) << 23)
}

#[inline(always)]
pub(crate) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-z))
}

/// ln v for a normal positive f32 in plain arithmetic the compiler vectorizes (libm's `logf` is
/// one call per element): v = m·2^e with m in [√½, √2), ln m by Cephes' `logf` polynomial in
/// m − 1 (relative error about 1e-7), plus e·ln 2.
#[inline(always)]
pub(crate) fn fast_ln(v: f32) -> f32 {
    const SQRT2: f32 = std::f32::consts::SQRT_2;
    let bits = v.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 127;
    let mantissa = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // [1, 2)
    let high = mantissa > SQRT2;
    let m = if high { mantissa * 0.5 } else { mantissa };
    let e = (exponent + i32::from(high)) as f32;
    let x = m - 1.0;
    let z = x * x;
    let mut y = 7.037_683_6e-2;
    y = y * x - 1.151_461e-1;
    y = y * x + 1.167_699_9e-1;
    y = y * x - 1.242_014_1e-1;
    y = y * x + 1.424_932_3e-1;
    y = y * x - 1.666_805_8e-1;
    y = y * x + 2.000_071_4e-1;
    y = y * x - 2.499_999_4e-1;
    y = y * x + 3.333_333e-1;
    y = y * x * z;
    // ln 2 in two parts, as in `fast_exp`.
    y += e * -2.121_944_4e-4;
    y -= 0.5 * z;
    x + y + e * 0.693_359_4
}

#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate_over_the_float_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let (got, want) = (fast_exp(x) as f64, (x as f64).exp());
            worst = worst.max((got - want).abs() / want);
            x += 0.001_7;
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(fast_exp(-1000.0), fast_exp(-87.0));
        assert!(fast_exp(1000.0).is_finite());
        assert!(fast_exp(f32::NAN).is_nan());
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn fast_ln_is_accurate_from_the_smallest_normal_float_up() {
        let mut worst = 0f64;
        let mut v = f32::MIN_POSITIVE;
        while v < 1e30 {
            let (got, want) = (f64::from(fast_ln(v)), f64::from(v).ln());
            // Relative, except near v = 1 where ln v crosses zero.
            worst = worst.max((got - want).abs() / want.abs().max(1.0));
            v *= 1.000_37;
        }
        assert!(worst < 3e-7, "error {worst}");
        for v in [0.5f32, 0.999_999, 1.0, 1.000_001, 2.0] {
            let err = (f64::from(fast_ln(v)) - f64::from(v).ln()).abs();
            assert!(err < 1e-7, "ln {v}: off by {err}");
        }
    }
}
