//! The uncertainty model: the scenario's `[uncertainty]` section and its validation.
//!
//! Each variable's hourly value is its forecast plus an error whose standard deviation is
//! `std_fraction` times that hour's forecast (so a zero forecast, irradiance at night, is
//! certain). The standardized errors are AR(1) in time with coefficient `ar1` and
//! correlated across variables by `correlation` (see [`super::covariance`]). The
//! unscented transform always uses the normal marginal; MC, QMC and LHS may give wind a
//! Weibull and irradiance a Beta marginal with the same mean and standard deviation,
//! joined by a Gaussian copula (see [`super::sampling`]).
//!
//! Physical values are clipped to `[0, upper_bound]`. The defaults for the bounds are the
//! validation maxima of [`crate::microgrid`]; loads have no upper bound by default.

use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};

use super::{INPUTS, VARIABLES, Variable};
use crate::error::{Bounds, Error, Result, number};
use crate::microgrid::components::{MAX_IRRADIANCE_WM2, MAX_TIDAL_SPEED_MS, MAX_WIND_SPEED_MS};
use crate::scenario::MAX_SYSTEM_LOAD_MW;

/// Smallest nonzero `std_fraction` of a Weibull variable: below it the shape k (about
/// 1.28 / std_fraction) exceeds ~1300 and the gamma-ratio root find loses digits.
pub const MIN_WEIBULL_STD_FRACTION: f64 = 1e-3;

/// Tolerance on the smallest eigenvalue of `correlation`: a matrix whose smallest
/// eigenvalue is below `-CORRELATION_EIGEN_TOL` is not a correlation matrix.
pub const CORRELATION_EIGEN_TOL: f64 = 1e-12;

/// A variable's marginal distribution in MC / QMC / LHS sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// Normal with mean = forecast and std = `std_fraction * forecast`, clipped to
    /// `[0, upper_bound]`. Allowed for every variable; the only one the UT uses.
    #[default]
    Normal,
    /// Weibull with the same mean and standard deviation (wind only).
    Weibull,
    /// Beta on `[0, upper_bound]` with the same mean and standard deviation (irradiance
    /// only); a forecast whose std is too large for a Beta there is an error.
    Beta,
}

impl Distribution {
    /// The name used in the scenario, e.g. `weibull`.
    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::Normal => "normal",
            Distribution::Weibull => "weibull",
            Distribution::Beta => "beta",
        }
    }
}

/// The uncertainty of one hourly variable. A variable's table, when a scenario gives one,
/// must name `std_fraction` and `ar1` (their defaults differ by variable, so a half-given
/// table would silently mix two models); `distribution` defaults to `normal` and
/// `upper_bound` to the variable's physical maximum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableUncertainty {
    /// Standard deviation of the forecast error as a fraction of the hour's forecast,
    /// dimensionless, [0, 1] (0: the variable is certain).
    pub std_fraction: f64,
    /// Marginal distribution for MC / QMC / LHS: `normal` for every variable, `weibull`
    /// for wind, `beta` for irradiance. Default `normal`.
    #[serde(default)]
    pub distribution: Distribution,
    /// Correlation of the standardized error between consecutive hours (AR(1)
    /// coefficient), dimensionless, [0, 1).
    pub ar1: f64,
    /// Physical maximum to which samples are clipped, in the variable's unit: wind
    /// (0, 100] m/s, irradiance (0, 1500] W/m^2 (also the top of the Beta marginal's
    /// support), tidal (0, 20] m/s, loads (0, 1e6] MW. Absent: the variable's
    /// validation maximum in [`crate::microgrid`] (wind 100 m/s, irradiance 1500 W/m^2,
    /// tidal 20 m/s); loads are then unbounded above. Every sample is also clipped at 0.
    #[serde(default)]
    pub upper_bound: Option<f64>,
}

impl VariableUncertainty {
    /// The default uncertainty of `variable`. The standard deviations are illustrative
    /// values inside the ranges reported for day-ahead forecasts; the AR(1) coefficients are
    /// illustrative (hourly forecast errors are strongly persistent); see the fields of
    /// [`UncertaintyConfig`] for the sources.
    pub fn default_for(variable: Variable) -> Self {
        let (std_fraction, ar1) = match variable {
            Variable::Wind => (0.15, 0.8),
            Variable::Irradiance => (0.25, 0.7),
            Variable::Tidal => (0.08, 0.9),
            Variable::MgLoad => (0.05, 0.9),
            Variable::SgLoad => (0.03, 0.9),
        };
        VariableUncertainty {
            std_fraction,
            distribution: Distribution::Normal,
            ar1,
            upper_bound: None,
        }
    }

    /// The largest `upper_bound` allowed for `variable`, in its unit.
    pub fn max_upper_bound(variable: Variable) -> f64 {
        match variable {
            Variable::Wind => MAX_WIND_SPEED_MS,
            Variable::Irradiance => MAX_IRRADIANCE_WM2,
            Variable::Tidal => MAX_TIDAL_SPEED_MS,
            Variable::MgLoad | Variable::SgLoad => MAX_SYSTEM_LOAD_MW,
        }
    }

    /// The upper clip of `variable`'s samples, in its unit: `upper_bound`, else the
    /// physical maximum of wind, irradiance and tidal, and `+inf` for loads.
    pub fn clip_max(&self, variable: Variable) -> f64 {
        self.upper_bound.unwrap_or(match variable {
            Variable::Wind => MAX_WIND_SPEED_MS,
            Variable::Irradiance => MAX_IRRADIANCE_WM2,
            Variable::Tidal => MAX_TIDAL_SPEED_MS,
            Variable::MgLoad | Variable::SgLoad => f64::INFINITY,
        })
    }

    /// Checks every field for `variable`; errors name `uncertainty.<key>.<field>`.
    pub fn validate(&self, variable: Variable) -> Result<()> {
        let prefix = format!("uncertainty.{}", variable.key());
        Bounds::closed(0.0, 1.0, "(fraction of the forecast)")
            .check(&format!("{prefix}.std_fraction"), self.std_fraction)?;
        let allowed = match variable {
            Variable::Wind => "normal or weibull",
            Variable::Irradiance => "normal or beta",
            _ => "normal",
        };
        let ok = matches!(
            (variable, self.distribution),
            (_, Distribution::Normal)
                | (Variable::Wind, Distribution::Weibull)
                | (Variable::Irradiance, Distribution::Beta)
        );
        if !ok {
            return Err(Error::invalid(
                format!("{prefix}.distribution"),
                self.distribution.as_str(),
                allowed,
            ));
        }
        if self.distribution == Distribution::Weibull
            && self.std_fraction != 0.0
            && self.std_fraction < MIN_WEIBULL_STD_FRACTION
        {
            return Err(Error::invalid(
                format!("{prefix}.std_fraction"),
                number(self.std_fraction),
                format!(
                    "0 or a fraction in [{MIN_WEIBULL_STD_FRACTION}, 1] for a weibull marginal"
                ),
            ));
        }
        if !(self.ar1 >= 0.0 && self.ar1 < 1.0) {
            return Err(Error::invalid(
                format!("{prefix}.ar1"),
                number(self.ar1),
                "a finite number in [0, 1)",
            ));
        }
        if let Some(max) = self.upper_bound {
            Bounds::above(0.0, Self::max_upper_bound(variable), variable.unit())
                .check(&format!("{prefix}.upper_bound"), max)?;
        }
        Ok(())
    }
}

macro_rules! variable_default {
    ($name:ident, $variable:expr) => {
        fn $name() -> VariableUncertainty {
            VariableUncertainty::default_for($variable)
        }
    };
}
variable_default!(default_wind, Variable::Wind);
variable_default!(default_irradiance, Variable::Irradiance);
variable_default!(default_tidal, Variable::Tidal);
variable_default!(default_mg_load, Variable::MgLoad);
variable_default!(default_sg_load, Variable::SgLoad);

/// The `[uncertainty]` section of a scenario. `Default` is a complete, valid model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UncertaintyConfig {
    /// Wind speed. Default std 15 % of the forecast (illustrative, within the 10-20 %
    /// typical of day-ahead hub-height wind-speed forecasts, Giebel et al. 2011, "The
    /// state of the art in short-term prediction of wind power", ANEMOS.plus), AR(1)
    /// 0.8 (illustrative), bound 100 m/s.
    #[serde(default = "default_wind")]
    pub wind: VariableUncertainty,
    /// Irradiance. Default std 25 % of the forecast (illustrative, within the 20-40 %
    /// relative RMSE of day-ahead irradiance forecasts, Lorenz et al. 2009, IEEE JSTARS
    /// 2(1)), AR(1) 0.7 (illustrative), bound 1500 W/m^2.
    #[serde(default = "default_irradiance")]
    pub irradiance: VariableUncertainty,
    /// Tidal current speed. Default std 8 % (illustrative: tidal currents follow harmonic
    /// predictions, weather adds a few per cent), AR(1) 0.9 (illustrative), bound 20 m/s.
    #[serde(default = "default_tidal")]
    pub tidal: VariableUncertainty,
    /// Microgrid load. Default std 5 % (illustrative: the upper end of the 2-5 % of
    /// day-ahead load forecasts, since a small aggregate is noisier), AR(1) 0.9
    /// (illustrative), unbounded above.
    #[serde(default = "default_mg_load")]
    pub mg_load: VariableUncertainty,
    /// Smart-grid system load. Default std 3 % (day-ahead system-load MAPE is 1-3 %,
    /// Hong & Fan 2016, Int. J. Forecasting 32(3); illustrative), AR(1) 0.9
    /// (illustrative), unbounded above.
    #[serde(default = "default_sg_load")]
    pub sg_load: VariableUncertainty,
    /// Correlation across variables of the AR(1) innovations, in the order wind,
    /// irradiance, tidal, mg_load, sg_load: symmetric, unit diagonal, entries in [-1, 1],
    /// positive semidefinite. Default identity (illustrative: no cross-correlation).
    pub correlation: [[f64; VARIABLES]; VARIABLES],
    /// Seed of every random stream (MC, LHS jitter and permutations, Sobol scrambling).
    pub seed: u64,
    /// Weight W0 of the mean sigma point in the paper's form (eq. 46-49), dimensionless,
    /// [-1e3, 1); absent: `1 - c/3`, which puts the other points at sqrt(3) standard
    /// deviations and matches the normal's kurtosis (Julier & Uhlmann 1997).
    pub ut_w0: Option<f64>,
    /// Julier's kappa, dimensionless, (-c, 1e6] with c = 120; default 0 (no weight on the
    /// mean point, points at sqrt(c) standard deviations).
    pub julier_kappa: f64,
    /// Van der Merwe's spread alpha, dimensionless, (0, 10]; default 1.
    pub merwe_alpha: f64,
    /// Van der Merwe's beta (prior knowledge of the distribution; 2 is optimal for a
    /// normal), dimensionless, [0, 10]; default 2.
    pub merwe_beta: f64,
    /// Van der Merwe's kappa, dimensionless, (-c, 1e6] with c = 120; default 0
    /// (alpha = 1, beta = 2, kappa = 0 keep all mean weights non-negative).
    pub merwe_kappa: f64,
    /// Prices x, $/MWh, at which the sampling methods report P(price > x) for every hour
    /// and for the day's mean price (`tails.parquet`); finite, at most
    /// [`MAX_PRICE_THRESHOLDS`]. Default none: the thresholds relative to the forecast
    /// day's price of each hour are always reported.
    pub price_thresholds: Vec<f64>,
}

/// Most entries of [`UncertaintyConfig::price_thresholds`].
pub const MAX_PRICE_THRESHOLDS: usize = 16;

impl Default for UncertaintyConfig {
    fn default() -> Self {
        let mut correlation = [[0.0; VARIABLES]; VARIABLES];
        for (v, row) in correlation.iter_mut().enumerate() {
            row[v] = 1.0;
        }
        UncertaintyConfig {
            wind: default_wind(),
            irradiance: default_irradiance(),
            tidal: default_tidal(),
            mg_load: default_mg_load(),
            sg_load: default_sg_load(),
            correlation,
            seed: 2021,
            ut_w0: None,
            julier_kappa: 0.0,
            merwe_alpha: 1.0,
            merwe_beta: 2.0,
            merwe_kappa: 0.0,
            price_thresholds: Vec::new(),
        }
    }
}

impl UncertaintyConfig {
    /// The settings of `variable`.
    pub fn variable(&self, variable: Variable) -> &VariableUncertainty {
        match variable {
            Variable::Wind => &self.wind,
            Variable::Irradiance => &self.irradiance,
            Variable::Tidal => &self.tidal,
            Variable::MgLoad => &self.mg_load,
            Variable::SgLoad => &self.sg_load,
        }
    }

    /// The paper form's W0 for `c` inputs: `ut_w0`, or `1 - c/3` when absent.
    pub fn paper_w0(&self, c: usize) -> f64 {
        self.ut_w0.unwrap_or(1.0 - c as f64 / 3.0)
    }

    /// Checks every field; each error names its path (`uncertainty.wind.std_fraction`,
    /// `uncertainty.correlation[1][2]`), the value and the allowed range.
    pub fn validate(&self) -> Result<()> {
        for variable in Variable::ALL {
            self.variable(variable).validate(variable)?;
        }
        validate_correlation(&self.correlation)?;
        if let Some(w0) = self.ut_w0
            && !(-1e3..1.0).contains(&w0)
        {
            return Err(Error::invalid(
                "uncertainty.ut_w0",
                number(w0),
                "a finite number in [-1e3, 1)",
            ));
        }
        let c = INPUTS as f64;
        let kappa = Bounds::above(-c, 1e6, "");
        kappa.check("uncertainty.julier_kappa", self.julier_kappa)?;
        Bounds::above(0.0, 10.0, "").check("uncertainty.merwe_alpha", self.merwe_alpha)?;
        Bounds::closed(0.0, 10.0, "").check("uncertainty.merwe_beta", self.merwe_beta)?;
        kappa.check("uncertainty.merwe_kappa", self.merwe_kappa)?;
        if self.price_thresholds.len() > MAX_PRICE_THRESHOLDS {
            return Err(Error::invalid(
                "uncertainty.price_thresholds",
                format!("{} thresholds", self.price_thresholds.len()),
                format!("at most {MAX_PRICE_THRESHOLDS}"),
            ));
        }
        for (k, &x) in self.price_thresholds.iter().enumerate() {
            if !x.is_finite() {
                return Err(Error::invalid(
                    format!("uncertainty.price_thresholds[{k}]"),
                    number(x),
                    "a finite price, $/MWh",
                ));
            }
        }
        Ok(())
    }
}

/// Checks a cross-variable correlation matrix: entries in [-1, 1], unit diagonal, exact
/// symmetry, and positive semidefinite (smallest eigenvalue >= -1e-12). Errors name
/// `uncertainty.correlation[i][j]` or, for a matrix that is not PSD,
/// `uncertainty.correlation` with its most negative eigenvalue.
pub fn validate_correlation(c: &[[f64; VARIABLES]; VARIABLES]) -> Result<()> {
    for (i, row) in c.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            let field = format!("uncertainty.correlation[{i}][{j}]");
            if i == j {
                if x != 1.0 {
                    return Err(Error::invalid(field, number(x), "1 (unit diagonal)"));
                }
                continue;
            }
            Bounds::closed(-1.0, 1.0, "").check(&field, x)?;
            if x != c[j][i] {
                return Err(Error::invalid(
                    field,
                    number(x),
                    format!(
                        "equal to uncertainty.correlation[{j}][{i}] = {} (symmetric)",
                        number(c[j][i])
                    ),
                ));
            }
        }
    }
    let m = DMatrix::from_fn(VARIABLES, VARIABLES, |i, j| c[i][j]);
    let min = min_eigenvalue(&m);
    if min < -CORRELATION_EIGEN_TOL {
        return Err(not_psd("uncertainty.correlation", min));
    }
    Ok(())
}

/// The smallest eigenvalue of a symmetric matrix.
pub fn min_eigenvalue(m: &DMatrix<f64>) -> f64 {
    SymmetricEigen::new(m.clone())
        .eigenvalues
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
}

/// The error for a matrix that is not positive semidefinite.
pub(crate) fn not_psd(field: &str, min_eigenvalue: f64) -> Error {
    Error::invalid(
        field,
        format!(
            "a matrix whose most negative eigenvalue is {}",
            number(min_eigenvalue)
        ),
        "a positive semidefinite correlation matrix (every eigenvalue >= 0)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(cfg: &UncertaintyConfig) -> String {
        cfg.validate().expect_err("invalid").to_string()
    }

    #[test]
    fn defaults_are_valid_and_physical() {
        let cfg = UncertaintyConfig::default();
        cfg.validate().expect("defaults valid");
        assert_eq!(cfg.wind.clip_max(Variable::Wind), 100.0);
        assert_eq!(cfg.irradiance.clip_max(Variable::Irradiance), 1500.0);
        assert_eq!(cfg.tidal.clip_max(Variable::Tidal), 20.0);
        assert_eq!(cfg.sg_load.clip_max(Variable::SgLoad), f64::INFINITY);
        assert_eq!(cfg.wind.std_fraction, 0.15);
        assert_eq!(cfg.paper_w0(120), -39.0);
        assert_eq!(cfg.paper_w0(3), 0.0);
    }

    #[test]
    fn toml_section_parses_with_partial_tables() {
        let cfg: UncertaintyConfig = toml::from_str(
            "seed = 7\n[wind]\nstd_fraction = 0.2\ndistribution = \"weibull\"\nar1 = 0.5\n\
             upper_bound = 40.0\n",
        )
        .expect("parses");
        assert_eq!(cfg.seed, 7);
        assert_eq!(cfg.wind.distribution, Distribution::Weibull);
        assert_eq!(cfg.wind.upper_bound, Some(40.0));
        assert_eq!(cfg.tidal, VariableUncertainty::default_for(Variable::Tidal));
        cfg.validate().expect("valid");
        let unknown = toml::from_str::<UncertaintyConfig>("[wind]\nstd = 0.2\n");
        assert!(unknown.is_err());
        // A variable table must name std_fraction and ar1; the rest have defaults.
        let partial = toml::from_str::<UncertaintyConfig>("[wind]\nstd_fraction = 0.2\n");
        assert!(partial.is_err());
        let short: UncertaintyConfig =
            toml::from_str("[tidal]\nstd_fraction = 0.1\nar1 = 0.0\n").expect("parses");
        assert_eq!(short.tidal.distribution, Distribution::Normal);
        assert_eq!(short.tidal.clip_max(Variable::Tidal), 20.0);
    }

    #[test]
    fn every_field_is_checked_with_its_path() {
        let mut cfg = UncertaintyConfig::default();
        cfg.wind.std_fraction = -0.1;
        assert!(message(&cfg).contains("`uncertainty.wind.std_fraction`: -0.1"));

        let mut cfg = UncertaintyConfig::default();
        cfg.tidal.distribution = Distribution::Weibull;
        let e = message(&cfg);
        assert!(
            e.contains("uncertainty.tidal.distribution") && e.contains("weibull"),
            "{e}"
        );

        let mut cfg = UncertaintyConfig::default();
        cfg.wind.distribution = Distribution::Beta;
        assert!(message(&cfg).contains("normal or weibull"));

        let mut cfg = UncertaintyConfig::default();
        cfg.wind.distribution = Distribution::Weibull;
        cfg.wind.std_fraction = 1e-4;
        assert!(message(&cfg).contains("uncertainty.wind.std_fraction"));

        let mut cfg = UncertaintyConfig::default();
        cfg.mg_load.ar1 = 1.0;
        assert!(message(&cfg).contains("uncertainty.mg_load.ar1"));

        let mut cfg = UncertaintyConfig::default();
        cfg.irradiance.upper_bound = Some(2000.0);
        let e = message(&cfg);
        assert!(
            e.contains("uncertainty.irradiance.upper_bound") && e.contains("1500"),
            "{e}"
        );

        let mut cfg = UncertaintyConfig::default();
        cfg.sg_load.upper_bound = Some(0.0);
        assert!(message(&cfg).contains("uncertainty.sg_load.upper_bound"));

        let cfg = UncertaintyConfig {
            ut_w0: Some(1.0),
            ..UncertaintyConfig::default()
        };
        assert!(message(&cfg).contains("uncertainty.ut_w0"));

        let cfg = UncertaintyConfig {
            julier_kappa: -120.0,
            ..UncertaintyConfig::default()
        };
        assert!(message(&cfg).contains("uncertainty.julier_kappa"));

        let cfg = UncertaintyConfig {
            price_thresholds: vec![50.0, f64::NAN],
            ..UncertaintyConfig::default()
        };
        assert!(message(&cfg).contains("uncertainty.price_thresholds[1]"));
        let cfg = UncertaintyConfig {
            price_thresholds: vec![50.0; MAX_PRICE_THRESHOLDS + 1],
            ..UncertaintyConfig::default()
        };
        assert!(message(&cfg).contains("uncertainty.price_thresholds"));

        let cfg = UncertaintyConfig {
            merwe_alpha: 0.0,
            ..UncertaintyConfig::default()
        };
        assert!(message(&cfg).contains("uncertainty.merwe_alpha"));

        let cfg = UncertaintyConfig {
            merwe_beta: f64::NAN,
            ..UncertaintyConfig::default()
        };
        assert!(message(&cfg).contains("uncertainty.merwe_beta"));

        let cfg = UncertaintyConfig {
            merwe_kappa: f64::INFINITY,
            ..UncertaintyConfig::default()
        };
        assert!(message(&cfg).contains("uncertainty.merwe_kappa"));
    }

    #[test]
    fn correlation_is_checked_entry_by_entry() {
        let mut cfg = UncertaintyConfig::default();
        cfg.correlation[1][2] = 0.5;
        let e = message(&cfg);
        assert!(
            e.contains("uncertainty.correlation[1][2]") && e.contains("symmetric"),
            "{e}"
        );

        let mut cfg = UncertaintyConfig::default();
        cfg.correlation[3][3] = 0.9;
        assert!(message(&cfg).contains("uncertainty.correlation[3][3]"));

        let mut cfg = UncertaintyConfig::default();
        cfg.correlation[0][4] = 1.5;
        cfg.correlation[4][0] = 1.5;
        assert!(message(&cfg).contains("uncertainty.correlation[0][4]"));

        // Pairwise valid, jointly impossible: 0-1 and 1-2 strongly positive, 0-2 strongly
        // negative. Eigenvalues of [[1,.9,-.9],[.9,1,.9],[-.9,.9,1]]: 1 - 0.9 - ... the
        // smallest is 1 - 1.8 = -0.8 (eigenvector (1,-1,1)/sqrt 3).
        let mut cfg = UncertaintyConfig::default();
        for (i, j, x) in [(0, 1, 0.9), (1, 2, 0.9), (0, 2, -0.9)] {
            cfg.correlation[i][j] = x;
            cfg.correlation[j][i] = x;
        }
        let e = message(&cfg);
        assert!(
            e.contains("`uncertainty.correlation`") && e.contains("-0.8"),
            "{e}"
        );

        // A singular (perfect) correlation is PSD and accepted.
        let mut cfg = UncertaintyConfig::default();
        cfg.correlation[3][4] = 1.0;
        cfg.correlation[4][3] = 1.0;
        cfg.validate().expect("singular but PSD");
    }
}
