//! The mathematics of the uncertainty study (issue 7): the input model, the
//! covariance of the 120 uncertain inputs and its square root, the unscented transform's
//! sigma points (three forms), the MC / scrambled-Sobol / Latin-hypercube samplers with
//! their map to physical inputs, and streaming statistics of the outputs. No I/O outside
//! [`shard`].
//!
//! The uncertain inputs are [`VARIABLES`] = 5 hourly series of [`HOURS`] = 24 values each,
//! in the order of [`Variable::ALL`], flattened variable-major: input `v * 24 + hour`.
//! Every function that takes a forecast takes these [`INPUTS`] = 120 values in that order.
//!
//! - [`model`]: [`UncertaintyConfig`], the scenario's `[uncertainty]` section.
//! - [`covariance`]: the 120x120 correlation and covariance (AR(1) in time, a 5x5
//!   correlation across variables) and a lower-triangular square root that accepts
//!   zero-variance inputs.
//! - [`sigma`]: sigma points and weights (paper, Julier, Van der Merwe) and the
//!   unscented transform of outputs.
//! - [`special`]: the normal, gamma and beta functions the samplers need.
//! - [`sampling`]: MC, QMC (Owen-scrambled Sobol) and LHS samples, each computable alone
//!   from (seed, index), mapped to physical inputs through a Gaussian copula.
//! - [`stats`]: streaming, chunking-independent statistics of many outputs, and the
//!   weighted moments of a UT.
//! - [`shard`]: a study split over a job array's tasks and sealed from their parts (the
//!   one module here that reads and writes files).
//! - [`convergence`]: RMS errors over replications and the sample count at which a
//!   method's error reaches a target (the UT's).

pub mod convergence;
pub mod covariance;
pub mod model;
pub mod sampling;
pub mod shard;
pub mod sigma;
pub mod special;
pub mod stats;
pub mod study;

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
pub use crate::microgrid::HOURS;

pub use model::{Distribution, UncertaintyConfig, VariableUncertainty};

/// Number of uncertain variables (wind, irradiance, tidal, microgrid load, system load).
pub const VARIABLES: usize = 5;

/// Number of uncertain inputs, `VARIABLES * HOURS` = 120 (the `c` of eq. 46-52).
pub const INPUTS: usize = VARIABLES * HOURS;

/// One uncertain hourly variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variable {
    /// Hub-height wind speed, m/s.
    Wind,
    /// Plane-of-array irradiance, W/m^2.
    Irradiance,
    /// Tidal current speed, m/s.
    Tidal,
    /// Microgrid load, MW.
    MgLoad,
    /// Smart-grid system load, MW.
    SgLoad,
}

impl Variable {
    /// All variables in input order (`Variable::ALL[v]` owns inputs `v*24 .. v*24+24`).
    pub const ALL: [Variable; VARIABLES] = [
        Variable::Wind,
        Variable::Irradiance,
        Variable::Tidal,
        Variable::MgLoad,
        Variable::SgLoad,
    ];

    /// The variable's position in [`Variable::ALL`], 0..5.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The variable's key in the `[uncertainty]` section, e.g. `mg_load`.
    pub fn key(self) -> &'static str {
        match self {
            Variable::Wind => "wind",
            Variable::Irradiance => "irradiance",
            Variable::Tidal => "tidal",
            Variable::MgLoad => "mg_load",
            Variable::SgLoad => "sg_load",
        }
    }

    /// The variable's unit, e.g. `m/s`.
    pub fn unit(self) -> &'static str {
        match self {
            Variable::Wind | Variable::Tidal => "m/s",
            Variable::Irradiance => "W/m^2",
            Variable::MgLoad | Variable::SgLoad => "MW",
        }
    }

    /// The flat input index of `hour` (0..24) of this variable.
    pub fn input(self, hour: usize) -> usize {
        self.index() * HOURS + hour
    }
}

/// How the uncertainty is propagated: three unscented-transform forms and three sampling
/// methods. The names (`as_str`) label the study's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// UT as in eq. (46)-(52) of Kavousi-Fard 2021: weight `W0` on the mean point.
    UtPaper,
    /// UT in Julier's kappa form.
    UtJulier,
    /// UT in Van der Merwe's scaled form (alpha, beta, kappa).
    UtMerwe,
    /// Plain Monte Carlo, one ChaCha stream per sample.
    Mc,
    /// Owen-scrambled Sobol points (randomized quasi-Monte Carlo).
    QmcSobol,
    /// Latin hypercube sampling.
    Lhs,
}

impl Method {
    /// All methods, UT forms first.
    pub const ALL: [Method; 6] = [
        Method::UtPaper,
        Method::UtJulier,
        Method::UtMerwe,
        Method::Mc,
        Method::QmcSobol,
        Method::Lhs,
    ];

    /// The method's name: `ut_paper`, `ut_julier`, `ut_merwe`, `mc`, `qmc_sobol`, `lhs`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::UtPaper => "ut_paper",
            Method::UtJulier => "ut_julier",
            Method::UtMerwe => "ut_merwe",
            Method::Mc => "mc",
            Method::QmcSobol => "qmc_sobol",
            Method::Lhs => "lhs",
        }
    }

    /// Whether this is an unscented-transform form (2c+1 deterministic points).
    pub fn is_unscented(self) -> bool {
        matches!(self, Method::UtPaper | Method::UtJulier | Method::UtMerwe)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = Error;

    /// Parses a name given by [`Method::as_str`]; anything else is an
    /// [`Error::InvalidInput`] for the field `uncertainty.method`.
    fn from_str(s: &str) -> Result<Self> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.as_str()).collect();
                Error::invalid("uncertainty.method", format!("`{s}`"), names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.as_str().parse::<Method>().expect("parses"), m);
        }
        assert_eq!(Method::QmcSobol.to_string(), "qmc_sobol");
        let e = "sobol".parse::<Method>().expect_err("unknown").to_string();
        assert!(
            e.contains("uncertainty.method") && e.contains("qmc_sobol"),
            "{e}"
        );
        assert_eq!(Method::ALL.iter().filter(|m| m.is_unscented()).count(), 3);
    }

    #[test]
    fn inputs_are_variable_major() {
        assert_eq!(INPUTS, 120);
        assert_eq!(Variable::Wind.input(0), 0);
        assert_eq!(Variable::Irradiance.input(11), 35);
        assert_eq!(Variable::SgLoad.input(23), 119);
        for (v, var) in Variable::ALL.iter().enumerate() {
            assert_eq!(var.index(), v);
        }
    }
}
