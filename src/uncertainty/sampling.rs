//! Input samples for MC, QMC and LHS, each computable alone from (seed, index), and the
//! map from standard normals to physical inputs; plus the UT's sigma points in physical
//! units.
//!
//! Every sample `i` is a function of (seed, i) only (and of the total N for LHS): never
//! of thread count, chunking or the samples drawn before it.
//! - MC: uniforms from the ChaCha8 stream `i` of the key `seed_from_u64(seed)` (the
//!   sweep planner's construction), 120 draws in input order.
//! - QMC: Owen-scrambled Sobol points of `sobol_burley` (Burley 2020), dimension d =
//!   input d, at most 2^16 points, scramble seed folded from `seed`. The crate returns f32
//!   (23 bits); we compute its 32-bit integer the same way (`sobol_burley::parts`) and
//!   take the midpoint of its 2^-32 cell, so u stays in (0, 1) and Phi^-1(u) within
//!   +-6.3.
//! - LHS: in dimension d, sample i falls in stratum `pi_d(i)` of N equal strata, where
//!   `pi_d` is a keyed bijection of [0, N) (a 4-round Feistel network on the next even
//!   power of two, cycle-walked into [0, N)), so sample i needs no table; the position
//!   inside the stratum is a uniform from ChaCha8 stream i of a second key.
//!
//! Uniforms become independent standard normals by [`inverse_normal_cdf`], are
//! correlated by the lower factor of the input CORRELATION (a Gaussian copula:
//! `y = L_R z`), and each `y_i ~ N(0, 1)` is mapped to its marginal:
//! - `normal`: `forecast + std * y`, clipped to `[0, upper_bound]`;
//! - `weibull` (wind): the Weibull with mean = forecast and std = `std_fraction *
//!   forecast`: the shape k solves `Gamma(1+2/k) / Gamma(1+1/k)^2 = 1 + std_fraction^2`
//!   (one k for all hours, since the coefficient of variation is `std_fraction`), the
//!   scale is `forecast / Gamma(1 + 1/k)`; `x = lambda (-ln(1 - Phi(y)))^(1/k)`, then
//!   clipped at `upper_bound`;
//! - `beta` (irradiance): the Beta on `[0, upper_bound]` with that mean and std (method of
//!   moments: with `m = forecast / upper_bound`, `nu = (1 - m) / (std_fraction^2 m) - 1`,
//!   `a = m nu`, `b = (1 - m) nu`; `nu <= 0` is an error), `x = upper_bound I^-1(Phi(y))`.
//!
//! A zero forecast or a zero `std_fraction` gives exactly the forecast. Clipping (and, for
//! LHS, the copula's mixing of stratified z) means the samples' moments are those of the
//! clipped model, not exactly forecast and std; that gap is part of what the study
//! measures.
//!
//! LHS stratifies the independent normals z; once the copula mixes them (AR(1) in time
//! makes R non-diagonal even with an identity `correlation`) the physical inputs are not
//! exactly stratified.

use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::covariance::{check_forecast, correlation_factor, covariance_factor};
use super::model::{Distribution, UncertaintyConfig};
use super::sigma::{SigmaForm, SigmaWeights, sigma_points};
use super::special::{
    beta_inc, inverse_beta_inc, inverse_normal_cdf, normal_cdf, weibull_quantile_sf,
    weibull_scale_for_mean, weibull_shape_for_cv,
};
use super::{HOURS, INPUTS, Method, Variable};
use crate::error::{Error, Result, number};

/// Most QMC samples: `sobol_burley` supports sample indices below 2^16.
pub const MAX_SOBOL_SAMPLES: u64 = 1 << 16;

/// Salt of the LHS jitter key, so that LHS and MC under one seed do not share uniforms.
const LHS_JITTER_SALT: u64 = 0x4c48_535f_6a69_7474;
/// Salt of the LHS permutation keys.
const LHS_PERMUTATION_SALT: u64 = 0x4c48_535f_7065_726d;

/// SplitMix64's finalizer: a bijective 64-bit mixer (Steele, Lea & Flood 2014).
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform in (0, 1) from 53 random bits: the midpoint of its 2^-53 cell.
fn open_unit(bits: u64) -> f64 {
    ((bits >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// MC uniforms of sample `index`: ChaCha8 stream `index` of `seed`, in input order.
pub fn mc_uniforms(seed: u64, index: u64, out: &mut [f64]) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    for u in out.iter_mut() {
        *u = open_unit(rng.next_u64());
    }
}

/// The 32-bit Owen-scrambled Sobol integer of `sobol_burley::sample(index, dimension,
/// seed)` (that function keeps its top 23 bits).
pub fn sobol_bits(index: u32, dimension: u32, seed: u32) -> u32 {
    use sobol_burley::parts::{hash, owen_scramble_rev, sobol_rev};
    let shuffled = owen_scramble_rev(index.reverse_bits(), hash(seed ^ 0x79c6_8e4a));
    let sobol = sobol_rev(shuffled, dimension);
    let scramble = {
        let seed = seed.wrapping_mul(0x9c8f_2d3b);
        let set = dimension >> 2;
        set ^ seed ^ [0x912f_69ba, 0x174f_18ab, 0x691e_72ca, 0xb40c_c1b8][dimension as usize & 0b11]
    };
    owen_scramble_rev(sobol, hash(scramble)).reverse_bits()
}

/// The Sobol scramble seed of a config seed (its two halves XORed).
pub fn sobol_seed(seed: u64) -> u32 {
    (seed ^ (seed >> 32)) as u32
}

/// QMC uniforms of sample `index` (< 2^16): dimension d of the scrambled Sobol point, the
/// midpoint of its 2^-32 cell. At most [`sobol_burley::NUM_DIMENSIONS`] (256) values.
pub fn sobol_uniforms(seed: u64, index: u64, out: &mut [f64]) -> Result<()> {
    if index >= MAX_SOBOL_SAMPLES {
        return Err(Error::invalid(
            "sample index (qmc_sobol)",
            index,
            format!("below {MAX_SOBOL_SAMPLES} (sobol_burley's sequence length)"),
        ));
    }
    if out.len() > sobol_burley::NUM_DIMENSIONS as usize {
        return Err(Error::invalid(
            "dimensions (qmc_sobol)",
            out.len(),
            format!("at most {}", sobol_burley::NUM_DIMENSIONS),
        ));
    }
    let s = sobol_seed(seed);
    for (d, u) in out.iter_mut().enumerate() {
        let bits = sobol_bits(index as u32, d as u32, s);
        *u = (f64::from(bits) + 0.5) * (1.0 / 4_294_967_296.0);
    }
    Ok(())
}

/// The LHS stratum of sample `index` in dimension `dimension` among `n` samples: a
/// keyed bijection of [0, n) (4-round balanced Feistel on 2^(2h) >= n, cycle-walked).
/// `index < n` is required (else `index` itself is returned).
pub fn lhs_stratum(seed: u64, dimension: u64, index: u64, n: u64) -> u64 {
    if index >= n {
        return index;
    }
    let key = mix64(seed ^ mix64(LHS_PERMUTATION_SALT.wrapping_add(dimension)));
    let bits = (64 - (n - 1).leading_zeros()).max(2);
    let half = bits.div_ceil(2);
    let mask = (1u64 << half) - 1;
    let mut x = index;
    loop {
        let (mut left, mut right) = (x >> half, x & mask);
        for round in 0..4u64 {
            let f = mix64(right ^ key.wrapping_add(round.wrapping_mul(0x9e37_79b9))) & mask;
            (left, right) = (right, left ^ f);
        }
        x = (left << half) | right;
        // Cycle walking: the cycle through `index` returns into [0, n) (index is in it).
        if x < n {
            return x;
        }
    }
}

/// LHS uniforms of sample `index` of `n`: `(stratum + jitter) / n` per dimension.
pub fn lhs_uniforms(seed: u64, index: u64, n: u64, out: &mut [f64]) -> Result<()> {
    if index >= n {
        return Err(Error::invalid(
            "sample index (lhs)",
            index,
            format!("below the number of samples, {n}"),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ LHS_JITTER_SALT);
    rng.set_stream(index);
    for (d, u) in out.iter_mut().enumerate() {
        let stratum = lhs_stratum(seed, d as u64, index, n);
        *u = (stratum as f64 + open_unit(rng.next_u64())) / n as f64;
    }
    Ok(())
}

/// How one input's standard normal becomes its physical value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Marginal {
    /// Certain input: always this value.
    Fixed(f64),
    /// Normal, clipped to [0, max].
    Normal { mean: f64, std: f64, max: f64 },
    /// Weibull with shape k and scale lambda, clipped at max.
    Weibull { k: f64, lambda: f64, max: f64 },
    /// `max` times a Beta(a, b).
    Beta { a: f64, b: f64, max: f64 },
}

impl Marginal {
    fn apply(self, y: f64) -> f64 {
        match self {
            Marginal::Fixed(x) => x,
            Marginal::Normal { mean, std, max } => std.mul_add(y, mean).clamp(0.0, max),
            Marginal::Weibull { k, lambda, max } => {
                weibull_quantile_sf(normal_cdf(-y), k, lambda).clamp(0.0, max)
            }
            Marginal::Beta { a, b, max } => max * inverse_beta_inc(a, b, normal_cdf(y)),
        }
    }
}

/// The marginal of every input for a sampling method (the UT's are always normal).
fn marginals(cfg: &UncertaintyConfig, forecast: &[f64]) -> Result<Vec<Marginal>> {
    let mut out = Vec::with_capacity(INPUTS);
    for variable in Variable::ALL {
        let vu = cfg.variable(variable);
        let max = vu.clip_max(variable);
        let sf = vu.std_fraction;
        let shape = match vu.distribution {
            Distribution::Weibull if sf > 0.0 => {
                Some(weibull_shape_for_cv(sf).ok_or_else(|| {
                    Error::invalid(
                        format!("uncertainty.{}.std_fraction", variable.key()),
                        number(sf),
                        "a fraction in [1e-3, 1] for a weibull marginal",
                    )
                })?)
            }
            _ => None,
        };
        for hour in 0..HOURS {
            let mean = forecast[variable.input(hour)];
            if mean == 0.0 || sf == 0.0 {
                out.push(Marginal::Fixed(mean));
                continue;
            }
            out.push(match vu.distribution {
                Distribution::Normal => Marginal::Normal {
                    mean,
                    std: sf * mean,
                    max,
                },
                Distribution::Weibull => {
                    let k = shape.unwrap_or(1.0);
                    Marginal::Weibull {
                        k,
                        lambda: weibull_scale_for_mean(mean, k),
                        max,
                    }
                }
                Distribution::Beta => {
                    let m = mean / max;
                    let nu = (1.0 - m) / (sf * sf * m) - 1.0;
                    if !(nu > 0.0 && max.is_finite()) {
                        return Err(Error::invalid(
                            format!("uncertainty.{}.std_fraction", variable.key()),
                            number(sf),
                            format!(
                                "small enough for a beta on [0, {}] {} at hour {hour} \
                                 (forecast {}): std_fraction^2 < (1 - m) / m with m = {}",
                                number(max),
                                variable.unit(),
                                number(mean),
                                number(m)
                            ),
                        ));
                    }
                    Marginal::Beta {
                        a: m * nu,
                        b: (1.0 - m) * nu,
                        max,
                    }
                }
            });
        }
    }
    Ok(out)
}

/// Draws physical input vectors for MC, QMC or LHS: `sample_into(i, ..)` depends only on
/// the config, the forecast, `n_total` (LHS) and i. Holds the 120x120 copula factor
/// (packed, 58 KB); drawing allocates nothing.
#[derive(Debug, Clone)]
pub struct InputSampler {
    method: Method,
    seed: u64,
    n_total: u64,
    marginals: Vec<Marginal>,
    /// Lower factor of the input correlation, packed by rows (row i: entries 0..=i).
    copula: Vec<f64>,
}

impl InputSampler {
    /// A sampler for `method` (mc, qmc_sobol or lhs) of `n_total` samples (>= 1; at most
    /// 2^16 for qmc_sobol) around `forecast` (120 values). Validates the config, the
    /// forecast, and each Beta marginal's feasibility.
    pub fn new(
        cfg: &UncertaintyConfig,
        method: Method,
        forecast: &[f64],
        n_total: u64,
    ) -> Result<Self> {
        if method.is_unscented() {
            return Err(Error::invalid(
                "uncertainty.method",
                method.as_str(),
                "mc, qmc_sobol or lhs for an input sampler (the UT uses sigma_inputs)",
            ));
        }
        let limit = if method == Method::QmcSobol {
            MAX_SOBOL_SAMPLES
        } else {
            u64::MAX
        };
        if !(1..=limit).contains(&n_total) {
            return Err(Error::invalid(
                "uncertainty.samples",
                n_total,
                format!("1..={limit} for {}", method.as_str()),
            ));
        }
        cfg.validate()?;
        check_forecast(forecast)?;
        let factor = correlation_factor(cfg)?;
        let mut copula = Vec::with_capacity(INPUTS * (INPUTS + 1) / 2);
        for i in 0..INPUTS {
            copula.extend((0..=i).map(|j| factor[(i, j)]));
        }
        Ok(InputSampler {
            method,
            seed: cfg.seed,
            n_total,
            marginals: marginals(cfg, forecast)?,
            copula,
        })
    }

    /// The sampling method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The number of samples N the sampler was built for.
    pub fn n_total(&self) -> u64 {
        self.n_total
    }

    /// The independent standard normals z of sample `index` (< N), before the copula.
    pub fn standard_normals(&self, index: u64, z: &mut [f64; INPUTS]) -> Result<()> {
        if index >= self.n_total {
            return Err(Error::invalid(
                "sample index",
                index,
                format!("below the number of samples, {}", self.n_total),
            ));
        }
        match self.method {
            Method::QmcSobol => sobol_uniforms(self.seed, index, z)?,
            Method::Lhs => lhs_uniforms(self.seed, index, self.n_total, z)?,
            _ => mc_uniforms(self.seed, index, z),
        }
        for x in z.iter_mut() {
            *x = inverse_normal_cdf(*x);
        }
        Ok(())
    }

    /// The correlated standard normals `y = L_R z` of sample `index` (each N(0, 1), with
    /// the inputs' correlation R).
    pub fn correlated_normals(&self, index: u64, y: &mut [f64; INPUTS]) -> Result<()> {
        self.standard_normals(index, y)?;
        // In place from the last row up: row i reads z_0..z_i, not yet overwritten.
        for i in (0..INPUTS).rev() {
            let row = &self.copula[i * (i + 1) / 2..][..=i];
            y[i] = row.iter().zip(&y[..=i]).map(|(l, z)| l * z).sum();
        }
        Ok(())
    }

    /// Sample `index` (< N) as physical inputs (variable-major, the variables' units).
    pub fn sample_into(&self, index: u64, out: &mut [f64; INPUTS]) -> Result<()> {
        self.correlated_normals(index, out)?;
        for (x, m) in out.iter_mut().zip(&self.marginals) {
            *x = m.apply(*x);
        }
        Ok(())
    }

    /// Sample `index` (< N) as physical inputs.
    pub fn sample(&self, index: u64) -> Result<[f64; INPUTS]> {
        let mut out = [0.0; INPUTS];
        self.sample_into(index, &mut out)?;
        Ok(out)
    }

    /// Samples `indices`, in order, drawn in parallel on the rayon pool: each is a pure
    /// function of its index, so the values do not depend on the thread count. On an
    /// out-of-range index, the error of the first one.
    pub fn samples(&self, indices: std::ops::Range<u64>) -> Result<Vec<[f64; INPUTS]>> {
        use rayon::prelude::*;
        if indices.start < indices.end && indices.end > self.n_total {
            // The first index out of range, and its error.
            let first = indices.start.max(self.n_total);
            return Err(self.sample(first).expect_err("an index >= N is refused"));
        }
        indices.into_par_iter().map(|i| self.sample(i)).collect()
    }
}

/// The UT's sigma points as physical inputs, with their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct SigmaInputs {
    /// The 2c+1 = 241 input vectors (variable-major, the variables' units), clipped.
    pub points: Vec<[f64; INPUTS]>,
    /// Their spread and weights.
    pub weights: SigmaWeights,
    /// How many coordinates were clipped to 0 or the upper bound.
    pub clipped: usize,
}

/// The sigma points of `form` around `forecast` with the normal model's covariance,
/// `x = forecast +- spread * L_k` (L: [`covariance_factor`]), each coordinate clipped to
/// `[0, upper_bound]`. Clipping moves the points, so the UT's propagated mean and
/// covariance are no longer exact even for linear outputs; `clipped` counts how often.
pub fn sigma_inputs(
    cfg: &UncertaintyConfig,
    form: &SigmaForm,
    forecast: &[f64],
) -> Result<SigmaInputs> {
    cfg.validate()?;
    let factor: DMatrix<f64> = covariance_factor(cfg, forecast)?;
    let sp = sigma_points(form, forecast, &factor)?;
    let mut clipped = 0;
    let points = sp
        .points
        .iter()
        .map(|p| {
            let mut x = [0.0; INPUTS];
            for (i, (out, &v)) in x.iter_mut().zip(p).enumerate() {
                let variable = Variable::ALL[i / HOURS];
                let max = cfg.variable(variable).clip_max(variable);
                *out = v.clamp(0.0, max);
                clipped += usize::from(*out != v);
            }
            x
        })
        .collect();
    Ok(SigmaInputs {
        points,
        weights: sp.weights,
        clipped,
    })
}

/// The CDF at `x` of input `input`'s Beta marginal for `forecast` (irradiance with the
/// `beta` distribution), for tests of the marginal; `None` for other marginals.
pub fn beta_marginal_cdf(
    cfg: &UncertaintyConfig,
    forecast: &[f64],
    input: usize,
    x: f64,
) -> Result<Option<f64>> {
    check_forecast(forecast)?;
    Ok(match marginals(cfg, forecast)?.get(input) {
        Some(Marginal::Beta { a, b, max }) => Some(beta_inc(*a, *b, x / max)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use rayon::prelude::*;

    use super::*;
    use crate::uncertainty::covariance::correlation_matrix;
    use crate::uncertainty::covariance::tests::forecast;
    use crate::uncertainty::special::weibull_shape_for_cv;

    fn sampler(method: Method, n: u64) -> InputSampler {
        InputSampler::new(&UncertaintyConfig::default(), method, &forecast(), n).expect("valid")
    }

    /// Sample i is a function of (seed, i): the same serially, in parallel chunks of any
    /// size, in reverse order, and from a sampler built for another N (MC, QMC).
    #[test]
    fn samples_do_not_depend_on_order_chunking_or_threads() {
        for method in [Method::Mc, Method::QmcSobol, Method::Lhs] {
            let s = sampler(method, 64);
            let serial: Vec<[f64; INPUTS]> =
                (0..64).map(|i| s.sample(i).expect("in range")).collect();
            for chunk in [1, 7, 64] {
                let parallel: Vec<[f64; INPUTS]> = (0..64u64)
                    .collect::<Vec<_>>()
                    .par_chunks(chunk)
                    .flat_map_iter(|c| c.iter().map(|&i| s.sample(i).expect("in range")))
                    .collect();
                assert_eq!(parallel, serial, "{method} chunk {chunk}");
            }
            let reversed: Vec<[f64; INPUTS]> = (0..64)
                .rev()
                .map(|i| s.sample(i).expect("in range"))
                .collect();
            assert!(reversed.iter().rev().eq(serial.iter()));
            if method != Method::Lhs {
                assert_eq!(
                    sampler(method, 1000).sample(17).expect("in range"),
                    serial[17]
                );
            }
            assert_ne!(serial[0], serial[1]);
            assert!(s.sample(64).is_err());
            // `samples` draws a range in parallel, in order, on pools of any size.
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("pool");
                let drawn = pool.install(|| s.samples(5..64)).expect("in range");
                assert_eq!(drawn, serial[5..], "{method} on {threads} threads");
            }
            assert_eq!(
                s.samples(64..64).expect("empty"),
                Vec::<[f64; INPUTS]>::new()
            );
            let msg = |r: Result<Vec<[f64; INPUTS]>>| r.expect_err("out of range").to_string();
            assert_eq!(
                msg(s.samples(60..70)),
                s.sample(64).unwrap_err().to_string()
            );
            assert_eq!(
                msg(s.samples(66..70)),
                s.sample(66).unwrap_err().to_string()
            );
        }
        let mut cfg = UncertaintyConfig::default();
        cfg.seed += 1;
        let other = InputSampler::new(&cfg, Method::Mc, &forecast(), 64).expect("valid");
        assert_ne!(
            other.sample(0).expect("in range"),
            sampler(Method::Mc, 64).sample(0).expect("in range")
        );
    }

    #[test]
    fn sobol_bits_extend_the_crates_f32_sample() {
        for d in [0u32, 1, 5, 119, 255] {
            for i in [0u32, 1, 2, 100, 65535] {
                for seed in [0u32, 12345] {
                    let bits = sobol_bits(i, d, seed);
                    let crate_value = sobol_burley::sample(i, d, seed);
                    assert_eq!((bits >> 9) as f32 / (1u32 << 23) as f32, crate_value);
                }
            }
        }
        let mut u = [0.0; INPUTS];
        assert!(sobol_uniforms(1, MAX_SOBOL_SAMPLES, &mut u).is_err());
        assert!(
            InputSampler::new(
                &UncertaintyConfig::default(),
                Method::QmcSobol,
                &forecast(),
                MAX_SOBOL_SAMPLES + 1
            )
            .is_err()
        );
    }

    /// A scrambled Sobol sequence of N = 2^m points puts exactly one point in each of the
    /// N equal intervals of every dimension.
    #[test]
    fn sobol_points_are_stratified_in_every_dimension() {
        let n = 256usize;
        let mut seen = vec![vec![false; n]; INPUTS];
        let mut u = [0.0; INPUTS];
        for i in 0..n as u64 {
            sobol_uniforms(2021, i, &mut u).expect("in range");
            for (d, &x) in u.iter().enumerate() {
                assert!(x > 0.0 && x < 1.0);
                let cell = (x * n as f64) as usize;
                assert!(!seen[d][cell], "dimension {d} cell {cell} twice");
                seen[d][cell] = true;
            }
        }
    }

    #[test]
    fn lhs_strata_are_permutations() {
        for n in [1u64, 2, 3, 7, 10, 100, 1000] {
            for d in 0..6 {
                let mut hit = vec![false; n as usize];
                for i in 0..n {
                    let s = lhs_stratum(99, d, i, n);
                    assert!(s < n && !hit[s as usize], "n={n} d={d}");
                    hit[s as usize] = true;
                }
            }
        }
        // Different dimensions, different permutations.
        let p0: Vec<u64> = (0..100).map(|i| lhs_stratum(99, 0, i, 100)).collect();
        let p1: Vec<u64> = (0..100).map(|i| lhs_stratum(99, 1, i, 100)).collect();
        assert_ne!(p0, p1);
        assert_ne!(p0, (0..100).collect::<Vec<_>>());
        // Uniforms fall in their stratum.
        let mut u = [0.0; INPUTS];
        for i in 0..50 {
            lhs_uniforms(99, i, 50, &mut u).expect("in range");
            for (d, &x) in u.iter().enumerate() {
                assert_eq!((x * 50.0) as u64, lhs_stratum(99, d as u64, i, 50));
            }
        }
        assert!(lhs_uniforms(99, 50, 50, &mut u).is_err());
    }

    #[test]
    fn normal_marginal_is_forecast_plus_std_times_the_copula_normal() {
        let cfg = UncertaintyConfig::default();
        let f = forecast();
        let s = sampler(Method::Mc, 10);
        let mut y = [0.0; INPUTS];
        s.correlated_normals(3, &mut y).expect("in range");
        let x = s.sample(3).expect("in range");
        for i in 0..INPUTS {
            let v = Variable::ALL[i / HOURS];
            let vu = cfg.variable(v);
            let expect = (f[i] + vu.std_fraction * f[i] * y[i]).clamp(0.0, vu.clip_max(v));
            assert!((x[i] - expect).abs() <= 1e-12 * f[i].max(1.0), "input {i}");
        }
        // Night irradiance is exactly zero for every method.
        let night = Variable::Irradiance.input(0);
        for method in [Method::Mc, Method::QmcSobol, Method::Lhs] {
            assert_eq!(sampler(method, 8).sample(5).expect("in range")[night], 0.0);
        }
    }

    /// With R the correlation of y = L_R z, the 4096 QMC samples' correlations of a few
    /// pairs are within 0.06 of R (the sampling error is ~1/sqrt(4096) = 0.016).
    #[test]
    fn copula_reproduces_the_input_correlation() {
        let mut cfg = UncertaintyConfig::default();
        cfg.correlation[0][4] = 0.5;
        cfg.correlation[4][0] = 0.5;
        let s = InputSampler::new(&cfg, Method::QmcSobol, &forecast(), 4096).expect("valid");
        let r = correlation_matrix(&cfg).expect("valid");
        let pairs = [
            (0, 1),
            (0, 5),
            (3, Variable::SgLoad.input(3)),
            (30, 31),
            (0, 0),
        ];
        let mut sums = [0.0; 5];
        let mut y = [0.0; INPUTS];
        for i in 0..4096 {
            s.correlated_normals(i, &mut y).expect("in range");
            for (acc, &(a, b)) in sums.iter_mut().zip(&pairs) {
                *acc += y[a] * y[b];
            }
        }
        for (acc, &(a, b)) in sums.iter().zip(&pairs) {
            let got = acc / 4096.0;
            assert!(
                (got - r[(a, b)]).abs() < 0.06,
                "({a},{b}): {got} vs {}",
                r[(a, b)]
            );
        }
    }

    /// `integral g(y) phi(y) dy` over [-9, 9] by composite Simpson with 20 000 panels.
    fn normal_expectation(g: impl Fn(f64) -> f64) -> f64 {
        let (a, b, n) = (-9.0, 9.0, 20_000);
        let h = (b - a) / n as f64;
        let phi = |y: f64| (-0.5 * y * y).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let mut s = g(a) * phi(a) + g(b) * phi(b);
        for k in 1..n {
            let y = a + k as f64 * h;
            s += if k % 2 == 1 { 4.0 } else { 2.0 } * g(y) * phi(y);
        }
        s * h / 3.0
    }

    /// The Weibull and Beta marginals have mean = forecast and std = std_fraction *
    /// forecast (checked by quadrature of the transform against the normal density).
    #[test]
    fn weibull_and_beta_marginals_match_forecast_mean_and_std() {
        let mut cfg = UncertaintyConfig::default();
        cfg.wind.distribution = Distribution::Weibull;
        cfg.irradiance.distribution = Distribution::Beta;
        let f = forecast();
        let m = marginals(&cfg, &f).expect("feasible");
        for input in [
            Variable::Wind.input(3),
            Variable::Irradiance.input(9),
            Variable::Irradiance.input(7),
        ] {
            let v = Variable::ALL[input / HOURS];
            let marginal = m[input];
            assert!(matches!(
                marginal,
                Marginal::Weibull { .. } | Marginal::Beta { .. }
            ));
            let mean = normal_expectation(|y| marginal.apply(y));
            let second = normal_expectation(|y| marginal.apply(y).powi(2));
            let std = (second - mean * mean).sqrt();
            let want_std = cfg.variable(v).std_fraction * f[input];
            assert!(
                (mean - f[input]).abs() < 1e-7 * f[input],
                "{input}: mean {mean} vs {}",
                f[input]
            );
            assert!(
                (std - want_std).abs() < 1e-6 * want_std,
                "{input}: std {std} vs {want_std}"
            );
        }
        // The Weibull's median is lambda (ln 2)^(1/k).
        if let Marginal::Weibull { k, lambda, .. } = m[Variable::Wind.input(3)] {
            assert!((k - weibull_shape_for_cv(0.15).expect("in range")).abs() < 1e-12);
            assert!(
                (Marginal::Weibull {
                    k,
                    lambda,
                    max: 100.0
                }
                .apply(0.0)
                    - lambda * 2f64.ln().powf(1.0 / k))
                .abs()
                    < 1e-12
            );
        }
        assert_eq!(m[Variable::Irradiance.input(0)], Marginal::Fixed(0.0));
        let cdf =
            beta_marginal_cdf(&cfg, &f, Variable::Irradiance.input(12), 1500.0).expect("valid");
        assert_eq!(cdf, Some(1.0));
    }

    #[test]
    fn infeasible_beta_is_an_error() {
        let mut cfg = UncertaintyConfig::default();
        cfg.irradiance.distribution = Distribution::Beta;
        cfg.irradiance.std_fraction = 0.5;
        let mut f = forecast();
        f[Variable::Irradiance.input(12)] = 1400.0;
        let e = InputSampler::new(&cfg, Method::Mc, &f, 10)
            .expect_err("infeasible")
            .to_string();
        assert!(
            e.contains("uncertainty.irradiance.std_fraction") && e.contains("hour 12"),
            "{e}"
        );
        assert!(InputSampler::new(&cfg, Method::UtMerwe, &f, 10).is_err());
    }

    #[test]
    fn sigma_inputs_are_clipped_sigma_points() {
        let cfg = UncertaintyConfig::default();
        let f = forecast();
        let form = SigmaForm::from_config(Method::UtMerwe, &cfg, INPUTS).expect("UT");
        let si = sigma_inputs(&cfg, &form, &f).expect("valid");
        assert_eq!(si.points.len(), 2 * INPUTS + 1);
        assert_eq!(si.points[0].as_slice(), f.as_slice());
        // sqrt(120) = 11 standard deviations: wind at 15 % goes negative and is clipped.
        assert!(si.clipped > 0);
        for p in &si.points {
            assert!(p.iter().all(|&x| x >= 0.0));
            assert_eq!(p[Variable::Irradiance.input(2)], 0.0);
        }
        // The paper's default W0 = 1 - c/3 has spread sqrt(3): nothing reaches 0 at these
        // standard deviations (max 25 % x sqrt 3 < 1).
        let paper = SigmaForm::from_config(Method::UtPaper, &cfg, INPUTS).expect("UT");
        let si = sigma_inputs(&cfg, &paper, &f).expect("valid");
        assert!((si.weights.spread - 3f64.sqrt()).abs() < 1e-14);
        assert_eq!(si.clipped, 0);
    }

    /// Kolmogorov-Smirnov on the Weibull and Beta marginals with 200 000 MC samples
    /// (critical value at the 1 % level 1.628 / sqrt N). Slow (about a minute in release):
    /// `cargo test --release --lib uncertainty::sampling -- --ignored`.
    #[test]
    #[ignore]
    fn ks_marginals_large_n() {
        let mut cfg = UncertaintyConfig::default();
        cfg.wind.distribution = Distribution::Weibull;
        cfg.irradiance.distribution = Distribution::Beta;
        let f = forecast();
        let n = 200_000u64;
        let s = InputSampler::new(&cfg, Method::Mc, &f, n).expect("valid");
        let (wi, ii) = (Variable::Wind.input(5), Variable::Irradiance.input(10));
        let (mut wind, mut irr) = (Vec::new(), Vec::new());
        let mut x = [0.0; INPUTS];
        for i in 0..n {
            s.sample_into(i, &mut x).expect("in range");
            wind.push(x[wi]);
            irr.push(x[ii]);
        }
        let Marginal::Weibull { k, lambda, .. } = marginals(&cfg, &f).expect("valid")[wi] else {
            panic!("weibull expected")
        };
        let weibull_cdf = |v: f64| 1.0 - (-(v / lambda).powf(k)).exp();
        let beta_cdf = |v: f64| {
            beta_marginal_cdf(&cfg, &f, ii, v)
                .expect("valid")
                .expect("beta")
        };
        for (mut data, cdf) in [
            (wind, &weibull_cdf as &dyn Fn(f64) -> f64),
            (irr, &beta_cdf),
        ] {
            let d = ks_statistic(&mut data, cdf);
            assert!(d < 1.628 / (n as f64).sqrt(), "KS D = {d}");
        }
    }

    /// The Kolmogorov-Smirnov statistic of `data` (sorted in place) against a continuous
    /// `cdf`.
    fn ks_statistic(data: &mut [f64], cdf: &dyn Fn(f64) -> f64) -> f64 {
        data.sort_by(f64::total_cmp);
        let nf = data.len() as f64;
        data.iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = cdf(v);
                (c - i as f64 / nf)
                    .abs()
                    .max(((i + 1) as f64 / nf - c).abs())
            })
            .fold(0.0, f64::max)
    }

    /// Kolmogorov-Smirnov of every input's correlated normal `y = L_R z` against N(0, 1),
    /// for MC, QMC and LHS at N = 65 536 (QMC's cap): the copula must leave each of the 120
    /// marginals standard normal, whatever the method's z. All 120 at once, so the 1 %
    /// level is Bonferroni-corrected: D < sqrt(ln(2 x 120 / 0.01) / 2) / sqrt(N) = 2.25 /
    /// sqrt(N). (QMC's and LHS's points are not independent; their marginals fit better
    /// than an iid sample's, so the iid bound is conservative for them.) Statistical, so
    /// apart from the quick suite: `cargo test --release --lib uncertainty::sampling --
    /// --ignored`.
    #[test]
    #[ignore]
    fn ks_copula_normals_every_method() {
        let n = MAX_SOBOL_SAMPLES;
        let critical = ((240.0f64 / 0.01).ln() / 2.0).sqrt() / (n as f64).sqrt();
        for method in [Method::Mc, Method::QmcSobol, Method::Lhs] {
            let s = sampler(method, n);
            let mut columns: Vec<Vec<f64>> = (0..INPUTS)
                .map(|_| Vec::with_capacity(n as usize))
                .collect();
            let mut y = [0.0; INPUTS];
            for i in 0..n {
                s.correlated_normals(i, &mut y).expect("in range");
                for (c, &v) in columns.iter_mut().zip(&y) {
                    c.push(v);
                }
            }
            let worst = columns
                .iter_mut()
                .map(|c| ks_statistic(c, &normal_cdf))
                .fold(0.0, f64::max);
            eprintln!("{method}: largest KS D over 120 inputs {worst:.5} (critical {critical:.5})");
            assert!(worst < critical, "{method}: KS D = {worst} >= {critical}");
        }
    }
}
