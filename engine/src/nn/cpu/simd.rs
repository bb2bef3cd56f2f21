//! e^x, the logistic sigmoid and tanh on eight f32 lanes with AVX2 and FMA ([`avx2`]) and on
//! sixteen with AVX-512 ([`avx512`]), for kernels that are already compiled for those features ([`super::dispatch::avx2_dispatch`] or
//! `#[target_feature]`). The scalar [`super::math::fast_exp`] vectorizes too, but without FMA
//! contraction and with one division per sigmoid; an LSTM step evaluates five of these per
//! hidden unit, which made the gate arithmetic a sixth of a MusicVAE pass.

/// Whether this CPU runs the [`avx2`] functions (detected once, then a cached load).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether this CPU runs the [`avx512`] functions (AVX-512 F; detected once, then a cached
/// load). Where it does, a core does up to twice the AVX2 arithmetic per cycle (16-lane FMAs
/// instead of 8-lane ones).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// A module of `exp`, `sigmoid` and `tanh` on the vector type `$v`, compiled for `$features`,
/// from that width's intrinsics: the [`avx2`] and [`avx512`] functions are one algorithm with
/// one set of constants.
macro_rules! lane_math {
    (
        $(#[$meta:meta])*
        mod $name:ident: $v:ident, $features:literal, {
            set1: $set1:ident, setzero: $setzero:ident, min: $min:ident, max: $max:ident,
            round: $round:ident, add: $add:ident, sub: $sub:ident, mul: $mul:ident,
            fmadd: $fmadd:ident, fnmadd: $fnmadd:ident, fmsub: $fmsub:ident, rcp: $rcp:ident,
            cvt_i32: $cvt:ident, add_i32: $add_i32:ident, set1_i32: $set1_i32:ident,
            shl_i32: $shl:ident, cast_f32: $cast:ident $(,)?
        }
    ) => {
        $(#[$meta])*
        #[cfg(target_arch = "x86_64")]
        pub(crate) mod $name {
            use std::arch::x86_64::*;

            #[inline]
            #[target_feature(enable = $features)]
            fn splat(v: f32) -> $v {
                $set1(v)
            }

            /// e^x per lane: x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by Cephes' degree-5
            /// polynomial (relative error about 1e-7), 2^n put into the exponent bits; x clamped
            /// to [−87, 88] as in `fast_exp`.
            #[inline]
            #[target_feature(enable = $features)]
            pub(crate) fn exp(x: $v) -> $v {
                let x = $min($max(x, splat(-87.0)), splat(88.0));
                let n = $round::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>($mul(
                    x,
                    splat(std::f32::consts::LOG2_E),
                ));
                // ln 2 in two parts, so that n·LN2_HI is exact.
                let r = $fnmadd(n, splat(0.693_359_4), x);
                let r = $fnmadd(n, splat(-2.121_944_4e-4), r);
                let mut p = splat(1.987_569_1e-4);
                p = $fmadd(p, r, splat(1.398_199_9e-3));
                p = $fmadd(p, r, splat(8.333_452e-3));
                p = $fmadd(p, r, splat(4.166_579_6e-2));
                p = $fmadd(p, r, splat(1.666_666_5e-1));
                p = $fmadd(p, r, splat(0.5));
                // e^r ≈ 1 + r + r²·p
                let e_r = $fmadd(p, $mul(r, r), $add(r, splat(1.0)));
                let pow2 = $cast($shl::<23>($add_i32($cvt(n), $set1_i32(127))));
                $mul(e_r, pow2)
            }

            /// 1 / d for d ≥ 1: the approximate reciprocal refined by one Newton step (without
            /// the division's latency).
            #[inline]
            #[target_feature(enable = $features)]
            fn recip(d: $v) -> $v {
                let r = $rcp(d);
                // r · (2 − d·r)
                $mul(r, $fnmadd(d, r, splat(2.0)))
            }

            /// 1 / (1 + e^−x) per lane.
            #[inline]
            #[target_feature(enable = $features)]
            pub(crate) fn sigmoid(x: $v) -> $v {
                recip($add(splat(1.0), exp($sub($setzero(), x))))
            }

            /// tanh x = 2·sigmoid(2x) − 1 per lane (absolute error below 1e-6).
            #[inline]
            #[target_feature(enable = $features)]
            pub(crate) fn tanh(x: $v) -> $v {
                $fmsub(splat(2.0), sigmoid($add(x, x)), splat(1.0))
            }
        }
    };
}

lane_math! {
    /// Eight lanes with AVX2 and FMA; the reciprocal's estimate has 12 bits, about 2^−22 after
    /// the Newton step.
    mod avx2: __m256, "avx2,fma", {
        set1: _mm256_set1_ps, setzero: _mm256_setzero_ps, min: _mm256_min_ps, max: _mm256_max_ps,
        round: _mm256_round_ps, add: _mm256_add_ps, sub: _mm256_sub_ps, mul: _mm256_mul_ps,
        fmadd: _mm256_fmadd_ps, fnmadd: _mm256_fnmadd_ps, fmsub: _mm256_fmsub_ps,
        rcp: _mm256_rcp_ps, cvt_i32: _mm256_cvtps_epi32, add_i32: _mm256_add_epi32,
        set1_i32: _mm256_set1_epi32, shl_i32: _mm256_slli_epi32, cast_f32: _mm256_castsi256_ps,
    }
}

lane_math! {
    /// Sixteen lanes with AVX-512 F, with the [`avx2`] constants and error bounds (the
    /// reciprocal starts from a 14-bit estimate instead of 12, then the same Newton step).
    mod avx512: __m512, "avx512f", {
        set1: _mm512_set1_ps, setzero: _mm512_setzero_ps, min: _mm512_min_ps, max: _mm512_max_ps,
        round: _mm512_roundscale_ps, add: _mm512_add_ps, sub: _mm512_sub_ps, mul: _mm512_mul_ps,
        fmadd: _mm512_fmadd_ps, fnmadd: _mm512_fnmadd_ps, fmsub: _mm512_fmsub_ps,
        rcp: _mm512_rcp14_ps, cvt_i32: _mm512_cvtps_epi32, add_i32: _mm512_add_epi32,
        set1_i32: _mm512_set1_epi32, shl_i32: _mm512_slli_epi32, cast_f32: _mm512_castsi512_ps,
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::{avx2, avx512};
    use std::arch::x86_64::*;

    /// `f` of every element of `xs`, `L` at a time in the registers `load` and `store` move (the
    /// last group padded with zeros).
    fn in_registers<const L: usize, V>(
        f: unsafe fn(V) -> V,
        load: unsafe fn(*const f32) -> V,
        store: unsafe fn(*mut f32, V),
        xs: &[f32],
    ) -> Vec<f32> {
        xs.chunks(L)
            .flat_map(|c| {
                let mut v = [0f32; L];
                v[..c.len()].copy_from_slice(c);
                let mut out = [0f32; L];
                // SAFETY: the tests are skipped without the functions' CPU features; L floats
                // each way.
                unsafe { store(out.as_mut_ptr(), f(load(v.as_ptr()))) };
                out[..c.len()].to_vec()
            })
            .collect()
    }

    fn lanes(f: unsafe fn(__m256) -> __m256, xs: &[f32]) -> Vec<f32> {
        in_registers::<8, _>(f, _mm256_loadu_ps, _mm256_storeu_ps, xs)
    }

    fn lanes16(f: unsafe fn(__m512) -> __m512, xs: &[f32]) -> Vec<f32> {
        in_registers::<16, _>(f, _mm512_loadu_ps, _mm512_storeu_ps, xs)
    }

    #[test]
    fn exp_sigmoid_and_tanh_match_f64_over_their_range() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let xs: Vec<f32> = (-2000..=2000)
            .map(|i| i as f32 * 0.05)
            .chain([-100.0, -87.5, 88.5, 100.0, 0.0, -0.0, 1e-8])
            .collect();
        let (mut exp_rel, mut sig_abs, mut tanh_abs) = (0f64, 0f64, 0f64);
        for (&x, e) in xs.iter().zip(lanes(avx2::exp, &xs)) {
            let want = (x.clamp(-87.0, 88.0) as f64).exp();
            exp_rel = exp_rel.max(((e as f64 - want) / want).abs());
        }
        for (&x, s) in xs.iter().zip(lanes(avx2::sigmoid, &xs)) {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            sig_abs = sig_abs.max((s as f64 - want).abs());
            assert!((0.0..=1.0).contains(&s), "sigmoid({x}) = {s}");
        }
        for (&x, t) in xs.iter().zip(lanes(avx2::tanh, &xs)) {
            tanh_abs = tanh_abs.max((t as f64 - (x as f64).tanh()).abs());
            assert!(t.abs() <= 1.0, "tanh({x}) = {t}");
        }
        assert!(exp_rel < 5e-7, "exp relative error {exp_rel}");
        assert!(sig_abs < 5e-7, "sigmoid error {sig_abs}");
        assert!(tanh_abs < 1e-6, "tanh error {tanh_abs}");
    }

    #[test]
    fn sixteen_lane_functions_match_f64_and_the_eight_lane_ones() {
        if !(super::has_avx512() && super::has_avx2_fma()) {
            return;
        }
        let xs: Vec<f32> = (-2000..=2000)
            .map(|i| i as f32 * 0.05 + 0.013)
            .chain([-100.0, -87.5, 88.5, 100.0, 0.0, -0.0, 1e-8])
            .collect();
        /// A function on sixteen lanes, on eight, exactly in f64, and its error bound.
        type Case = (
            unsafe fn(__m512) -> __m512,
            unsafe fn(__m256) -> __m256,
            fn(f64) -> f64,
            f64,
        );
        let functions: [Case; 3] = [
            (avx512::exp, avx2::exp, |x| x.clamp(-87.0, 88.0).exp(), 5e-7),
            (
                avx512::sigmoid,
                avx2::sigmoid,
                |x| 1.0 / (1.0 + (-x).exp()),
                5e-7,
            ),
            (avx512::tanh, avx2::tanh, f64::tanh, 1e-6),
        ];
        for (wide, narrow, exact, bound) in functions {
            let (w, n) = (lanes16(wide, &xs), lanes(narrow, &xs));
            for ((&x, w), n) in xs.iter().zip(w).zip(n) {
                let want = exact(x as f64);
                // exp: relative error; sigmoid and tanh: absolute.
                let scale = if want.abs() > 1.0 { want.abs() } else { 1.0 };
                assert!(
                    ((w as f64 - want) / scale).abs() < bound,
                    "{x}: 16 lanes {w}, exact {want}"
                );
                assert!(
                    ((w - n) as f64 / scale).abs() < 2.0 * bound,
                    "{x}: 16 lanes {w}, 8 lanes {n}"
                );
            }
        }
    }
}
