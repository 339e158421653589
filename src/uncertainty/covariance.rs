//! The covariance of the 120 uncertain inputs and its lower-triangular square root.
//!
//! Model. Each variable v has a standardized forecast error `x_v(t)` that follows a
//! stationary AR(1) with coefficient `rho_v` (the variable's `ar1`):
//! `x_v(t) = rho_v x_v(t-1) + sqrt(1 - rho_v^2) e_v(t)`, with innovations
//! `e(t) ~ N(0, C)` independent over t (C = the 5x5 `correlation`). Writing
//! `a_v = sqrt(1 - rho_v^2)` and unrolling, `x_v(t) = a_v sum_{k>=0} rho_v^k e_v(t-k)`,
//! so for `t >= s`, `h = t - s`:
//!
//! `Cov(x_v(t), x_u(s)) = a_v a_u C_vu sum_{l>=0} rho_v^(l+h) rho_u^l
//!                      = rho_v^h C_vu a_v a_u / (1 - rho_v rho_u)`,
//!
//! and `Var(x_v(t)) = a_v^2 / (1 - rho_v^2) = 1`, so this is the correlation. It is the
//! covariance of a process that exists whenever C is PSD and every `rho_v < 1`, hence PSD
//! by construction; hour 0 already has the stationary distribution. Within one variable
//! it reduces to `rho_v^|t-s|`. The covariance is `Sigma = D R D` with
//! `D = diag(std_fraction_v * forecast_v(t))`.
//!
//! A zero standard deviation (irradiance at night) makes a zero row and column of Sigma:
//! Sigma is then only semidefinite, and [`lower_factor`] handles that.

use nalgebra::DMatrix;

use super::model::{UncertaintyConfig, min_eigenvalue, not_psd, validate_correlation};
use super::{HOURS, INPUTS, VARIABLES, Variable};
use crate::error::{Error, Result, number};

/// Relative size, against its own diagonal entry, below which a Cholesky pivot counts as
/// zero (the column is then zero) and below whose negative a matrix is not PSD. For an
/// exactly singular PSD matrix the dropped column misses at most
/// `sqrt(PIVOT_TOL * m_jj * m_ii)` = 3.2e-6 `sqrt(m_ii m_jj)` of an entry; every other
/// entry, and every zero-variance input, is reproduced to rounding.
pub const PIVOT_TOL: f64 = 1e-11;

/// The correlation between inputs `i` and `j` (flat indices) of the AR(1) model above.
fn input_correlation(cfg: &UncertaintyConfig, i: usize, j: usize) -> f64 {
    let (v, t) = (i / HOURS, i % HOURS);
    let (u, s) = (j / HOURS, j % HOURS);
    // Order the pair so that the first is the later hour: the lag decays with its rho.
    let ((v, t), (u, s)) = if t >= s {
        ((v, t), (u, s))
    } else {
        ((u, s), (v, t))
    };
    let rho_v = cfg.variable(Variable::ALL[v]).ar1;
    let rho_u = cfg.variable(Variable::ALL[u]).ar1;
    let lag = i32::try_from(t - s).unwrap_or(i32::MAX);
    let scale = ((1.0 - rho_v * rho_v) * (1.0 - rho_u * rho_u)).sqrt() / (1.0 - rho_v * rho_u);
    rho_v.powi(lag) * cfg.correlation[v][u] * scale
}

/// The 120x120 correlation matrix R of the inputs (unit diagonal). Checks the config's
/// `correlation` first, so that a matrix that is not PSD is reported against it.
pub fn correlation_matrix(cfg: &UncertaintyConfig) -> Result<DMatrix<f64>> {
    validate_correlation(&cfg.correlation)?;
    Ok(DMatrix::from_fn(INPUTS, INPUTS, |i, j| {
        input_correlation(cfg, i, j)
    }))
}

/// Checks a forecast: [`INPUTS`] values, each finite and >= 0, in the variables' units.
/// Errors name `forecast.<variable>[hour]`.
pub fn check_forecast(forecast: &[f64]) -> Result<()> {
    if forecast.len() != INPUTS {
        return Err(Error::invalid(
            "forecast",
            format!("{} values", forecast.len()),
            format!("{INPUTS} values ({VARIABLES} variables x {HOURS} hours, variable-major)"),
        ));
    }
    for (i, &x) in forecast.iter().enumerate() {
        if !(x >= 0.0 && x.is_finite()) {
            let variable = Variable::ALL[i / HOURS];
            return Err(Error::invalid(
                format!("forecast.{}[{}]", variable.key(), i % HOURS),
                number(x),
                format!("a finite number >= 0 {}", variable.unit()),
            ));
        }
    }
    Ok(())
}

/// The standard deviation of every input, `std_fraction_v * forecast_v(t)`, in the
/// variables' units.
pub fn input_std(cfg: &UncertaintyConfig, forecast: &[f64]) -> Result<Vec<f64>> {
    check_forecast(forecast)?;
    Ok(forecast
        .iter()
        .enumerate()
        .map(|(i, &f)| cfg.variable(Variable::ALL[i / HOURS]).std_fraction * f)
        .collect())
}

/// The 120x120 covariance `Sigma = D R D` of the inputs, in products of their units.
pub fn covariance(cfg: &UncertaintyConfig, forecast: &[f64]) -> Result<DMatrix<f64>> {
    let std = input_std(cfg, forecast)?;
    let mut sigma = correlation_matrix(cfg)?;
    for j in 0..INPUTS {
        for i in 0..INPUTS {
            sigma[(i, j)] *= std[i] * std[j];
        }
    }
    Ok(sigma)
}

/// A lower-triangular L with `L L^T = m` for a symmetric positive semidefinite `m`
/// (Cholesky-Crout, column by column). A pivot at or below `PIVOT_TOL` times its diagonal
/// entry makes a zero column (so zero-variance inputs and singular correlations work); a
/// pivot below `-PIVOT_TOL` times it means `m` is not PSD, reported as
/// [`Error::InvalidInput`] naming `field` and the most negative eigenvalue of `m`.
pub fn lower_factor(m: &DMatrix<f64>, field: &str) -> Result<DMatrix<f64>> {
    let n = m.nrows();
    if m.ncols() != n {
        return Err(Error::invalid(
            field,
            format!("a {}x{} matrix", n, m.ncols()),
            "a square matrix",
        ));
    }
    let mut l = DMatrix::<f64>::zeros(n, n);
    for j in 0..n {
        let diag = m[(j, j)];
        let pivot = diag - (0..j).map(|k| l[(j, k)] * l[(j, k)]).sum::<f64>();
        let tol = PIVOT_TOL * diag.abs();
        if !pivot.is_finite() || pivot < -tol || diag < 0.0 {
            return Err(not_psd(field, min_eigenvalue(m)));
        }
        if pivot <= tol {
            continue;
        }
        let root = pivot.sqrt();
        l[(j, j)] = root;
        for i in j + 1..n {
            let dot: f64 = (0..j).map(|k| l[(i, k)] * l[(j, k)]).sum();
            l[(i, j)] = (m[(i, j)] - dot) / root;
        }
    }
    Ok(l)
}

/// The lower-triangular square root of the input covariance ([`covariance`]).
pub fn covariance_factor(cfg: &UncertaintyConfig, forecast: &[f64]) -> Result<DMatrix<f64>> {
    lower_factor(&covariance(cfg, forecast)?, "uncertainty.correlation")
}

/// The lower-triangular square root of the input correlation ([`correlation_matrix`]):
/// the Gaussian copula's factor.
pub fn correlation_factor(cfg: &UncertaintyConfig) -> Result<DMatrix<f64>> {
    lower_factor(&correlation_matrix(cfg)?, "uncertainty.correlation")
}

#[cfg(test)]
pub(crate) mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::uncertainty::special::inverse_normal_cdf;

    /// A plausible forecast: wind 8 m/s, irradiance zero at night, tidal 2 m/s, loads.
    pub(crate) fn forecast() -> Vec<f64> {
        let mut f = Vec::with_capacity(INPUTS);
        for v in Variable::ALL {
            for h in 0..HOURS {
                let x = h as f64;
                f.push(match v {
                    Variable::Wind => 8.0 + 2.0 * (x / 4.0).sin(),
                    Variable::Irradiance => {
                        if (6..=18).contains(&h) {
                            900.0 * ((x - 6.0) / 12.0 * std::f64::consts::PI).sin()
                        } else {
                            0.0
                        }
                    }
                    Variable::Tidal => 2.0 + 1.5 * (x / 2.0).sin(),
                    Variable::MgLoad => 3.0 + x / 24.0,
                    Variable::SgLoad => 2000.0 + 20.0 * x,
                });
            }
        }
        f
    }

    fn correlated_config() -> UncertaintyConfig {
        let mut cfg = UncertaintyConfig::default();
        for (i, j, x) in [(0, 2, 0.3), (1, 3, -0.2), (3, 4, 0.6), (0, 1, 0.1)] {
            cfg.correlation[i][j] = x;
            cfg.correlation[j][i] = x;
        }
        cfg
    }

    fn max_abs_diff(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
        (a - b).abs().max()
    }

    #[test]
    fn correlation_entries_follow_the_closed_form() {
        let cfg = correlated_config();
        let r = correlation_matrix(&cfg).expect("valid");
        let (rw, rt) = (cfg.wind.ar1, cfg.tidal.ar1);
        // Within a variable: rho^|t-s|.
        assert!((r[(3, 7)] - rw.powi(4)).abs() < 1e-15);
        assert!((r[(7, 3)] - rw.powi(4)).abs() < 1e-15);
        // Wind at hour 5 and tidal at hour 2: the later one (wind) carries the lag.
        let scale = ((1.0 - rw * rw) * (1.0 - rt * rt)).sqrt() / (1.0 - rw * rt);
        let expect = rw.powi(3) * 0.3 * scale;
        let (w5, t2) = (Variable::Wind.input(5), Variable::Tidal.input(2));
        assert!((r[(w5, t2)] - expect).abs() < 1e-15);
        assert!((r[(t2, w5)] - expect).abs() < 1e-15);
        // Tidal later: tidal's rho carries the lag.
        let (w2, t5) = (Variable::Wind.input(2), Variable::Tidal.input(5));
        assert!((r[(t5, w2)] - rt.powi(3) * 0.3 * scale).abs() < 1e-15);
        for i in 0..INPUTS {
            assert_eq!(r[(i, i)], 1.0);
        }
        assert!(min_eigenvalue(&r) > 0.0);
    }

    /// The closed form against a long simulation of the AR(1) process itself: two
    /// variables, rho = (0.8, 0.5), innovation correlation 0.6. With 400 000 steps the
    /// standard error of each sample correlation is below 0.004.
    #[test]
    fn closed_form_matches_a_simulated_ar1_process() {
        let (r0, r1, c) = (0.8_f64, 0.5_f64, 0.6_f64);
        let steps = 400_000;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut uniform = || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let (mut x0, mut x1) = (0.0, 0.0);
        let mut history: Vec<(f64, f64)> = Vec::with_capacity(steps);
        for t in 0..steps + 1000 {
            let z0 = inverse_normal_cdf(uniform());
            let z1 = inverse_normal_cdf(uniform());
            let (e0, e1) = (z0, c * z0 + (1.0 - c * c).sqrt() * z1);
            x0 = r0 * x0 + (1.0 - r0 * r0).sqrt() * e0;
            x1 = r1 * x1 + (1.0 - r1 * r1).sqrt() * e1;
            if t >= 1000 {
                history.push((x0, x1));
            }
        }
        let mut cfg = UncertaintyConfig::default();
        cfg.wind.ar1 = r0;
        cfg.irradiance.ar1 = r1;
        cfg.correlation[0][1] = c;
        cfg.correlation[1][0] = c;
        let r = correlation_matrix(&cfg).expect("valid");
        let n = history.len();
        type Pick<'a> = &'a dyn Fn(&(f64, f64), &(f64, f64)) -> f64;
        let lagged = |lag: usize, pick: Pick<'_>| {
            (lag..n)
                .map(|t| pick(&history[t], &history[t - lag]))
                .sum::<f64>()
                / (n - lag) as f64
        };
        let cases: [(usize, f64, f64); 4] = [
            (0, lagged(0, &|a, _| a.0 * a.1), r[(0, 24)]),
            (
                2,
                lagged(2, &|a, b| a.0 * b.1),
                r[(Variable::Wind.input(5), Variable::Irradiance.input(3))],
            ),
            (
                1,
                lagged(1, &|a, b| a.1 * b.0),
                r[(Variable::Irradiance.input(4), Variable::Wind.input(3))],
            ),
            (3, lagged(3, &|a, b| a.0 * b.0), r[(6, 3)]),
        ];
        for (lag, simulated, closed) in cases {
            assert!(
                (simulated - closed).abs() < 0.015,
                "lag {lag}: {simulated} vs {closed}"
            );
        }
    }

    #[test]
    fn factor_reproduces_the_covariance_with_zero_variance_inputs() {
        let cfg = correlated_config();
        let f = forecast();
        let sigma = covariance(&cfg, &f).expect("valid");
        let l = covariance_factor(&cfg, &f).expect("PSD");
        let scale = sigma.abs().max();
        assert!(max_abs_diff(&(&l * l.transpose()), &sigma) < 1e-12 * scale);
        for i in 0..INPUTS {
            for j in i + 1..INPUTS {
                assert_eq!(l[(i, j)], 0.0, "upper triangle");
            }
        }
        // Night irradiance: zero row and column in both.
        let night = Variable::Irradiance.input(2);
        assert_eq!(f[night], 0.0);
        assert!((0..INPUTS).all(|j| sigma[(night, j)] == 0.0 && l[(night, j)] == 0.0));
        assert!((0..INPUTS).all(|i| l[(i, night)] == 0.0));
        let std = input_std(&cfg, &f).expect("valid");
        assert!((sigma[(0, 0)] - std[0] * std[0]).abs() < 1e-15 * scale);
        assert_eq!(std[0], 0.15 * f[0]);
    }

    #[test]
    fn factor_handles_a_singular_correlation() {
        // Perfectly correlated loads with the same rho: R has rank 4 x 24 + ... < 120.
        let mut cfg = UncertaintyConfig::default();
        cfg.correlation[3][4] = 1.0;
        cfg.correlation[4][3] = 1.0;
        let r = correlation_matrix(&cfg).expect("PSD");
        let l = lower_factor(&r, "uncertainty.correlation").expect("PSD");
        let err = max_abs_diff(&(&l * l.transpose()), &r);
        assert!(err < 1e-9, "{err}");
        // The second load's columns are zero: its rows are the first load's.
        let zero_columns = (0..INPUTS).filter(|&j| l[(j, j)] == 0.0).count();
        assert_eq!(zero_columns, HOURS);
    }

    #[test]
    fn not_psd_is_reported_with_its_eigenvalue() {
        let m = DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 2.0, 1.0]);
        let e = lower_factor(&m, "uncertainty.correlation")
            .expect_err("eigenvalues 3 and -1")
            .to_string();
        assert!(
            e.contains("`uncertainty.correlation`") && e.contains("eigenvalue is -"),
            "{e}"
        );
        assert!((min_eigenvalue(&m) + 1.0).abs() < 1e-14);
        let mut cfg = UncertaintyConfig::default();
        for (i, j, x) in [(0, 1, 0.9), (1, 2, 0.9), (0, 2, -0.9)] {
            cfg.correlation[i][j] = x;
            cfg.correlation[j][i] = x;
        }
        let e = covariance(&cfg, &forecast())
            .expect_err("not PSD")
            .to_string();
        assert!(
            e.contains("uncertainty.correlation") && e.contains("-0.8"),
            "{e}"
        );
    }

    #[test]
    fn forecast_is_checked() {
        let cfg = UncertaintyConfig::default();
        let e = covariance(&cfg, &[1.0; 10]).expect_err("short").to_string();
        assert!(e.contains("10 values"), "{e}");
        let mut f = forecast();
        f[Variable::Tidal.input(4)] = -1.0;
        let e = covariance(&cfg, &f).expect_err("negative").to_string();
        assert!(e.contains("forecast.tidal[4]"), "{e}");
    }
}
