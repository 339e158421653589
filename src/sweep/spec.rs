//! The sweep file: a base scenario, a seed and the parameters to vary, read from TOML and
//! validated in one place. Every error names the field (`parameters.rci.kappa.values[2]`),
//! the value and the allowed range.
//!
//! ```toml
//! seed = 42                 # ChaCha seed of the uniform draws
//! runs_per_part = 4096      # rows of `runs` per Parquet part (default 4096)
//! samples = 100             # uniform draws per grid point (default 1)
//! base_config = "../default.toml"   # or an inline [base] scenario table
//!
//! [parameters]
//! load_scale = { uniform = [0.9, 1.05] }
//! rci.step_rule = { values = ["constant", "newton"] }
//! rci.kappa = { values = [0.001, 0.002] }
//! pcc_bus = { values = [7, 8] }
//! ```
//!
//! An attack sweep adds one false-data injection per run ([`crate::attack`]), swept like
//! every other parameter (`attack.variable`, `attack.agent`, `attack.hour` and
//! `attack.size` are required once any `attack.*` is given):
//!
//! ```toml
//! [parameters]
//! attack.variable = { values = ["price", "chi"] }
//! attack.agent = { values = [1] }            # 0 = the smart grid, 1 = the microgrid
//! attack.hour = { values = [10] }            # the one attacked hour, 0..=23
//! attack.first_iteration = { values = [0, 5] }
//! attack.duration = { values = [0] }         # 0 (or absent): to the end
//! attack.size = { uniform = [-20.0, 20.0] }  # c, in the variable's unit
//! attack.shape = { values = ["constant", "sign"] }
//! attack.defence = { values = ["undefended", "defended"] }
//! ```
//!
//! and, at the top level, `ledger_sample = 100`: the defended runs its ledger oracle
//! replays ([`crate::sweep::oracle`]; 0 for none).
//!
//! `run_hours = false` at the top level writes the `runs` table alone, without the
//! per-hour `run_hours` table (24 rows a run, most of a sweep's bytes and of its writing
//! time). The `runs` files are the same bytes either way; `verify` then checks everything
//! but the settlement chains, which need the hours. Not with attacks: the ledger oracle
//! reads the attacked hours.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::attack::{self, AttackShape, AttackVariable, Defence};
use crate::error::{Error, Result};
use crate::rci::{RciSettings, StepRule};
use crate::scenario::Scenario;

/// Default rows of the `runs` table per Parquet part.
pub const DEFAULT_RUNS_PER_PART: u64 = 4096;
/// Most runs one sweep may plan (grid points x samples).
pub const MAX_TOTAL_RUNS: u64 = 100_000_000;
/// Most runs in one part: bounds the host memory of a part's records (24 per run).
pub const MAX_RUNS_PER_PART: u64 = 1 << 20;
/// Most Parquet parts one sweep may write (per table).
pub const MAX_PARTS: u64 = 1_000_000;
/// Largest factor `load_scale`, `renewable_scale` and `mg_load_scale` may take.
pub const MAX_SCALE: f64 = 10.0;

/// A real-valued sweep parameter: exactly one of a grid or a uniform draw.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealParam {
    /// Grid values, each a point of the cartesian product; distinct, non-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f64>>,
    /// `[lo, hi]`: each run draws one value uniformly in `[lo, hi)`; exactly two values,
    /// `lo < hi` (read as a list so that a third value is refused, not dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uniform: Option<Vec<f64>>,
    /// `parameters.load_scale` drawn uniformly only: answer the smart grid's curves from a
    /// load table over `[lo, hi]` built once per pcc bus ([`crate::grid::load_table`]),
    /// within this many MW of the exact curves, instead of building each run's own
    /// network-exact curves; `(0, MAX_TABLE_TOL_MW]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_tol_mw: Option<f64>,
}

impl RealParam {
    /// The least value a run takes: the smallest grid value or the draw's lower bound.
    pub fn least(&self) -> Option<f64> {
        match (&self.values, &self.uniform) {
            (Some(v), _) => v.iter().copied().reduce(f64::min),
            (None, Some(u)) => u.first().copied(),
            (None, None) => None,
        }
    }
}

/// Largest `parameters.load_scale.table_tol_mw`, MW.
pub const MAX_TABLE_TOL_MW: f64 = 10.0;

/// An integer sweep parameter: exactly one of a grid or a uniform draw.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntParam {
    /// Grid values; distinct, non-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<u32>>,
    /// `[lo, hi]`: each run draws one integer uniformly in `lo..=hi`; exactly two values,
    /// `lo < hi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uniform: Option<Vec<u32>>,
}

/// A grid-only sweep parameter (categorical values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridParam<T> {
    /// Grid values; distinct, non-empty.
    pub values: Vec<T>,
}

/// The RCI settings a sweep may vary (`[parameters.rci]` or `rci.kappa = ...`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RciParameters {
    /// Consensus weight chi of eq. (31)-(32), (0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi: Option<RealParam>,
    /// Innovation step kappa, ($/MWh) per MW, > 0 (used by `constant`/`diminishing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kappa: Option<RealParam>,
    /// Dual step xi of eq. (33)-(36), ($/MWh) per MW, > 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xi: Option<RealParam>,
    /// Innovation step rule: `constant`, `diminishing` or `newton` (grid only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_rule: Option<GridParam<StepRule>>,
    /// Price stop tolerance of eq. (43), $/MWh, > 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_tol: Option<RealParam>,
    /// Power stop tolerance of eq. (44), MW, > 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_tol: Option<RealParam>,
    /// Trade-balance stop tolerance, MW, > 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance_tol: Option<RealParam>,
    /// Iteration cap, 1..=10000000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<IntParam>,
}

/// The parameters a sweep varies; an absent one keeps the base scenario's value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Parameters {
    /// External bus number of the microgrid's PCC (grid only; one Market and one hive
    /// partition per bus).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcc_bus: Option<GridParam<usize>>,
    /// Factor on the base scenario's system load (on top of `base.load.scale`), (0, 10].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_scale: Option<RealParam>,
    /// Factor on the microgrid renewables' available power, [0, 10].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewable_scale: Option<RealParam>,
    /// Factor on the microgrid's load, [0, 10].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mg_load_scale: Option<RealParam>,
    /// RCI settings.
    pub rci: RciParameters,
    /// One false-data injection per run ([`crate::attack`]); absent: no attack.
    #[serde(skip_serializing_if = "AttackParameters::is_none")]
    pub attack: AttackParameters,
}

/// The attack a sweep run carries (`[parameters.attack]` or `attack.size = ...`): one slot
/// on one hour, seeded from the run ([`crate::sweep::plan`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttackParameters {
    /// The altered value: `chi`, `price`, `power`, `dual_upper`, `dual_lower`, `slope`,
    /// `gap`, `stealthy_price` (grid only; required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variable: Option<GridParam<AttackVariable>>,
    /// The target agent, 0 = the smart grid, 1 = the microgrid (required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<IntParam>,
    /// The attacked hour, 0..=23 (required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hour: Option<IntParam>,
    /// First attacked message iteration, 0..=10000000 (default 0: the starting messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_iteration: Option<IntParam>,
    /// Attacked iterations, 0..=10000000; 0 (the default): to the end of the negotiation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<IntParam>,
    /// The size of `c`, in the variable's unit, [-1e9, 1e9] (required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<RealParam>,
    /// How `c` evolves: `constant` (default), `ramp`, `uniform`, `sign` (grid only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape: Option<GridParam<AttackShape>>,
    /// `undefended` (default) or `defended` (grid only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defence: Option<GridParam<Defence>>,
}

impl AttackParameters {
    /// Whether any `attack.*` parameter is given (the sweep is an attack sweep).
    pub fn any(&self) -> bool {
        *self != AttackParameters::default()
    }

    /// No `attack.*` parameter (a sweep without attacks serializes as it always did).
    fn is_none(&self) -> bool {
        !self.any()
    }
}

fn default_runs_per_part() -> u64 {
    DEFAULT_RUNS_PER_PART
}

fn default_samples() -> u64 {
    1
}

/// The TOML file as written (before the base is resolved).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    seed: u64,
    // Counts may be written `1e5` (`crate::input::de_count`).
    #[serde(
        default = "default_runs_per_part",
        deserialize_with = "crate::input::de_count"
    )]
    runs_per_part: u64,
    #[serde(
        default = "default_samples",
        deserialize_with = "crate::input::de_count"
    )]
    samples: u64,
    base: Option<Scenario>,
    base_config: Option<PathBuf>,
    #[serde(default)]
    parameters: Parameters,
    #[serde(default, deserialize_with = "crate::input::de_count_opt")]
    ledger_sample: Option<u64>,
    #[serde(default = "yes")]
    run_hours: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A parsed and validated sweep. Its serialized form (JSON) is the sweep's identity: a
/// resumed sweep must have the same one.
/// It reads back from that JSON (`finalize` plans a sharded sweep from its `sweep.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSpec {
    /// Seed of every run's ChaCha stream (run `i` uses stream `i`).
    pub seed: u64,
    /// Runs per Parquet part, 1..=2^20.
    pub runs_per_part: u64,
    /// Uniform draws per grid point, >= 1 (1 when no parameter is drawn).
    pub samples: u64,
    /// The base scenario every run starts from (`base`, `base_config` or the default).
    pub base: Scenario,
    /// The parameters varied.
    pub parameters: Parameters,
    /// An attack sweep's defended runs replayed through the ledger by its oracle
    /// ([`crate::sweep::oracle`]), 0..=1000000; absent: 100 (0: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_sample: Option<u64>,
    /// Whether the sweep writes the per-hour `run_hours` table beside `runs` (default
    /// true; serialized only when false, so a default sweep's identity is unchanged).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub run_hours: bool,
    /// The file the spec was read from, for messages and the manifest.
    #[serde(skip)]
    pub source: PathBuf,
    /// The TOML text as given, kept for the manifest.
    #[serde(skip)]
    pub text: String,
}

impl SweepSpec {
    /// Reads a sweep from a TOML file; `base_config` is resolved relative to its directory.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::input::read_text(path, "sweep file")?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates a sweep from TOML text; `path` labels errors and anchors a
    /// relative `base_config`. Checks that need the grid case (bus numbers, load limits)
    /// happen in [`SweepSpec::plan`].
    pub fn from_toml(text: &str, path: &Path) -> Result<Self> {
        let file: SweepFile =
            toml::from_str(text).map_err(|e| Error::toml("sweep", path, text, &e))?;
        let base = match (file.base, &file.base_config) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "base_config",
                    "given together with [base]",
                    "one of `base` (inline table) or `base_config` (path), not both",
                ));
            }
            (Some(mut b), None) => {
                b.anchor_case_file(path);
                let raw: toml::Table =
                    toml::from_str(text).map_err(|e| Error::toml("sweep", path, text, &e))?;
                let empty = toml::Table::new();
                let base = raw.get("base").and_then(|v| v.as_table()).unwrap_or(&empty);
                b.complete_from(base, path)?;
                b
            }
            (None, Some(p)) => {
                let p = if p.is_relative() {
                    path.parent().unwrap_or(Path::new("")).join(p)
                } else {
                    p.clone()
                };
                Scenario::from_toml(&crate::input::read_text(&p, "base_config")?, &p)?
            }
            (None, None) => Scenario::default(),
        };
        let spec = SweepSpec {
            seed: file.seed,
            runs_per_part: file.runs_per_part,
            samples: file.samples,
            base,
            parameters: file.parameters,
            ledger_sample: file.ledger_sample,
            run_hours: file.run_hours,
            source: path.to_path_buf(),
            text: text.to_string(),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// The load table a drawn `parameters.load_scale` asks for: its scale range `(lo, hi)`
    /// and `table_tol_mw`; `None` when the runs build their own exact curves.
    pub fn load_table(&self) -> Option<((f64, f64), f64)> {
        let p = self.parameters.load_scale.as_ref()?;
        match (p.uniform.as_deref(), p.table_tol_mw) {
            (Some(&[lo, hi]), Some(tol)) => Some(((lo, hi), tol)),
            _ => None,
        }
    }

    /// The base RCI settings with each stop tolerance the sweep varies replaced by the
    /// smallest value its runs take (the least grid value or the draw's lower bound), so
    /// that [`RciSettings::tolerances_below_f32`] says whether any run is too tight for an
    /// f32 kernel.
    pub fn tightest_rci(&self) -> RciSettings {
        let mut s = self.base.rci.clone();
        let p = &self.parameters.rci;
        for (param, value) in [
            (&p.price_tol, &mut s.price_tol),
            (&p.power_tol, &mut s.power_tol),
            (&p.balance_tol, &mut s.balance_tol),
        ] {
            if let Some(least) = param.as_ref().and_then(RealParam::least) {
                *value = least;
            }
        }
        s
    }

    /// Validates everything that does not need the grid case.
    pub fn validate(&self) -> Result<()> {
        self.base
            .validate_settings()
            .map_err(|e| e.with_field_prefix("base."))?;
        if !self.base.attack.is_empty() {
            return Err(Error::invalid(
                "base.attack",
                format!("{} [[base.attack]] tables", self.base.attack.len()),
                "none: a sweep's attacks are attack.* parameters (see experiments/sweeps/attack_map.toml)",
            ));
        }
        if self.parameters.pcc_bus.is_some() && !self.base.microgrid.enabled {
            return Err(Error::invalid(
                "parameters.pcc_bus",
                "a grid of PCC buses",
                "absent while base.microgrid.enabled = false (with no microgrid there is no \
                 PCC to move)",
            ));
        }
        let a = &self.parameters.attack;
        if a.any() && !self.base.microgrid.enabled {
            return Err(Error::invalid(
                "parameters.attack",
                "attack.* parameters",
                format!(
                    "absent while base.microgrid.enabled = false ({})",
                    crate::attack::ONE_AGENT
                ),
            ));
        }
        if a.any() {
            for (field, given) in [
                ("parameters.attack.variable", a.variable.is_some()),
                ("parameters.attack.agent", a.agent.is_some()),
                ("parameters.attack.hour", a.hour.is_some()),
                ("parameters.attack.size", a.size.is_some()),
            ] {
                if !given {
                    return Err(Error::invalid(
                        field,
                        "absent",
                        "given whenever any attack.* parameter is (values = [...])",
                    ));
                }
            }
        }
        if a.any() && !self.run_hours {
            return Err(Error::invalid(
                "run_hours",
                false,
                "true (or absent) in an attack sweep: its ledger oracle reads the attacked \
                 hours from run_hours",
            ));
        }
        if let Some(n) = self.ledger_sample {
            if !a.any() {
                return Err(Error::invalid(
                    "ledger_sample",
                    n,
                    "absent in a sweep without attack.* parameters (the oracle replays attacked runs)",
                ));
            }
            if n > crate::sweep::oracle::MAX_LEDGER_SAMPLE {
                return Err(Error::invalid(
                    "ledger_sample",
                    n,
                    format!("0..={}", crate::sweep::oracle::MAX_LEDGER_SAMPLE),
                ));
            }
        }
        if !(1..=MAX_RUNS_PER_PART).contains(&self.runs_per_part) {
            return Err(Error::invalid(
                "runs_per_part",
                self.runs_per_part,
                format!("1..={MAX_RUNS_PER_PART}"),
            ));
        }
        let dims = self.dimensions()?;
        let any_uniform = dims.iter().any(|d| !d.axis.is_grid());
        if self.samples == 0 || (!any_uniform && self.samples != 1) {
            let allowed = if any_uniform {
                ">= 1"
            } else {
                "1 (no parameter has `uniform`, so more samples would repeat identical runs)"
            };
            return Err(Error::invalid("samples", self.samples, allowed));
        }
        let total = self.total_runs_of(&dims)?;
        let parts = self.parts_upper_bound(&dims, total);
        if parts > MAX_PARTS {
            return Err(Error::invalid(
                "runs_per_part",
                self.runs_per_part,
                format!(
                    "large enough that the {total} runs fit in <= {MAX_PARTS} parts \
                     (this gives {parts})"
                ),
            ));
        }
        Ok(())
    }

    /// Number of runs: the product of the grid sizes times `samples`.
    pub fn total_runs(&self) -> Result<u64> {
        self.total_runs_of(&self.dimensions()?)
    }

    fn total_runs_of(&self, dims: &[Dimension]) -> Result<u64> {
        let mut total = self.samples;
        for d in dims {
            total = total.saturating_mul(d.axis.grid_len() as u64);
        }
        if total > MAX_TOTAL_RUNS {
            let sizes: Vec<String> = dims
                .iter()
                .filter(|d| d.axis.is_grid())
                .map(|d| format!("{} {}", d.field, d.axis.grid_len()))
                .collect();
            return Err(Error::invalid(
                "parameters",
                format!(
                    "{} runs (grid sizes: {}; samples {})",
                    if total == u64::MAX {
                        "more than 2^64".to_string()
                    } else {
                        total.to_string()
                    },
                    sizes.join(", "),
                    self.samples
                ),
                format!("<= {MAX_TOTAL_RUNS} runs in one sweep; split it into several sweeps"),
            ));
        }
        Ok(total)
    }

    /// Parts over all pcc buses, counting a partial last part per bus.
    fn parts_upper_bound(&self, dims: &[Dimension], total: u64) -> u64 {
        let buses = dims
            .iter()
            .find(|d| d.target == Target::PccBus)
            .map_or(1, |d| d.axis.grid_len() as u64);
        let per_bus = total / buses.max(1);
        buses * per_bus.div_ceil(self.runs_per_part)
    }

    /// The swept dimensions in their fixed order (pcc bus outermost, the last grid
    /// dimension fastest), each validated.
    pub(crate) fn dimensions(&self) -> Result<Vec<Dimension>> {
        let p = &self.parameters;
        let mut dims = Vec::new();
        if let Some(g) = &p.pcc_bus {
            let field = "parameters.pcc_bus";
            check_grid(field, &g.values)?;
            dims.push(Dimension {
                target: Target::PccBus,
                field,
                axis: Axis::Grid(g.values.iter().map(|&b| Value::Bus(b)).collect()),
            });
        }
        let real = [
            (Target::LoadScale, "parameters.load_scale", &p.load_scale),
            (
                Target::RenewableScale,
                "parameters.renewable_scale",
                &p.renewable_scale,
            ),
            (
                Target::MgLoadScale,
                "parameters.mg_load_scale",
                &p.mg_load_scale,
            ),
            (Target::Chi, "parameters.rci.chi", &p.rci.chi),
            (Target::Kappa, "parameters.rci.kappa", &p.rci.kappa),
            (Target::Xi, "parameters.rci.xi", &p.rci.xi),
        ];
        for (target, field, param) in real {
            if let Some(param) = param {
                dims.push(self.real_dimension(target, field, param)?);
            }
        }
        if let Some(g) = &p.rci.step_rule {
            let field = "parameters.rci.step_rule";
            check_grid(field, &g.values)?;
            dims.push(Dimension {
                target: Target::StepRule,
                field,
                axis: Axis::Grid(g.values.iter().map(|&r| Value::StepRule(r)).collect()),
            });
        }
        let tols = [
            (
                Target::PriceTol,
                "parameters.rci.price_tol",
                &p.rci.price_tol,
            ),
            (
                Target::PowerTol,
                "parameters.rci.power_tol",
                &p.rci.power_tol,
            ),
            (
                Target::BalanceTol,
                "parameters.rci.balance_tol",
                &p.rci.balance_tol,
            ),
        ];
        for (target, field, param) in tols {
            if let Some(param) = param {
                dims.push(self.real_dimension(target, field, param)?);
            }
        }
        if let Some(param) = &p.rci.max_iterations {
            dims.push(self.int_dimension(param)?);
        }
        self.attack_dimensions(&mut dims)?;
        Ok(dims)
    }

    /// The `attack.*` dimensions, after every other one (in the order of
    /// [`AttackParameters`]' fields).
    fn attack_dimensions(&self, dims: &mut Vec<Dimension>) -> Result<()> {
        let a = &self.parameters.attack;
        if let Some(g) = &a.variable {
            let field = "parameters.attack.variable";
            check_grid(&format!("{field}.values"), &g.values)?;
            dims.push(Dimension {
                target: Target::AttackVariable,
                field,
                axis: Axis::Grid(g.values.iter().map(|&v| Value::Variable(v)).collect()),
            });
        }
        let agents: u32 = if self.base.microgrid.enabled { 2 } else { 1 };
        let ints = [
            (
                Target::AttackAgent,
                "parameters.attack.agent",
                &a.agent,
                agents - 1,
                "(0 = the smart grid, 1 = the microgrid, when enabled)",
            ),
            (
                Target::AttackHour,
                "parameters.attack.hour",
                &a.hour,
                23,
                "(an hour of the day)",
            ),
            (
                Target::AttackFirst,
                "parameters.attack.first_iteration",
                &a.first_iteration,
                attack::MAX_ITERATION,
                "(a message iteration, 0 = the starting messages)",
            ),
            (
                Target::AttackDuration,
                "parameters.attack.duration",
                &a.duration,
                attack::MAX_ITERATION,
                "(iterations; 0 = to the end of the negotiation)",
            ),
        ];
        for (target, field, param, max, what) in ints {
            let Some(param) = param else { continue };
            let check = |sub: String, v: u32| {
                if v <= max {
                    Ok(())
                } else {
                    Err(Error::invalid(sub, v, format!("0..={max} {what}")))
                }
            };
            let axis = match (&param.values, &param.uniform) {
                (Some(values), None) => {
                    check_grid(&format!("{field}.values"), values)?;
                    for (k, &v) in values.iter().enumerate() {
                        check(format!("{field}.values[{k}]"), v)?;
                    }
                    Axis::Grid(values.iter().map(|&v| Value::U32(v)).collect())
                }
                (None, Some(bounds)) => {
                    for (k, &v) in bounds.iter().enumerate().take(2) {
                        check(format!("{field}.uniform[{k}]"), v)?;
                    }
                    let [lo, hi] = uniform_pair(field, bounds)?;
                    Axis::UniformInt(lo, hi)
                }
                _ => return Err(one_of(field)),
            };
            dims.push(Dimension {
                target,
                field,
                axis,
            });
        }
        if let Some(param) = &a.size {
            dims.push(self.real_dimension(Target::AttackSize, "parameters.attack.size", param)?);
        }
        if let Some(g) = &a.shape {
            let field = "parameters.attack.shape";
            check_grid(&format!("{field}.values"), &g.values)?;
            dims.push(Dimension {
                target: Target::AttackShape,
                field,
                axis: Axis::Grid(g.values.iter().map(|&v| Value::Shape(v)).collect()),
            });
        }
        if let Some(g) = &a.defence {
            let field = "parameters.attack.defence";
            check_grid(&format!("{field}.values"), &g.values)?;
            dims.push(Dimension {
                target: Target::AttackDefence,
                field,
                axis: Axis::Grid(g.values.iter().map(|&v| Value::Defence(v)).collect()),
            });
        }
        Ok(())
    }

    fn real_dimension(
        &self,
        target: Target,
        field: &'static str,
        param: &RealParam,
    ) -> Result<Dimension> {
        if let Some(tol) = param.table_tol_mw {
            let sub = format!("{field}.table_tol_mw");
            if target != Target::LoadScale {
                return Err(Error::invalid(
                    sub,
                    crate::error::number(tol),
                    "absent: only parameters.load_scale reads a load table",
                ));
            }
            if param.uniform.is_none() {
                return Err(Error::invalid(
                    sub,
                    crate::error::number(tol),
                    "absent unless load_scale is drawn uniformly (a grid builds each \
                     value's exact curves once)",
                ));
            }
            if !(tol.is_finite() && tol > 0.0 && tol <= MAX_TABLE_TOL_MW) {
                return Err(Error::invalid(
                    sub,
                    crate::error::number(tol),
                    format!("(0, {MAX_TABLE_TOL_MW}] MW"),
                ));
            }
        }
        let axis = match (&param.values, &param.uniform) {
            (Some(values), None) => {
                check_grid(&format!("{field}.values"), values)?;
                for (k, &v) in values.iter().enumerate() {
                    self.check_value(target, v)
                        .map_err(|e| e.with_field(&format!("{field}.values[{k}]")))?;
                }
                Axis::Grid(values.iter().map(|&v| Value::F64(v)).collect())
            }
            (None, Some(bounds)) => {
                for (k, &v) in bounds.iter().enumerate().take(2) {
                    self.check_value(target, v)
                        .map_err(|e| e.with_field(&format!("{field}.uniform[{k}]")))?;
                }
                let [lo, hi] = uniform_pair(field, bounds)?;
                Axis::Uniform(lo, hi)
            }
            _ => return Err(one_of(field)),
        };
        Ok(Dimension {
            target,
            field,
            axis,
        })
    }

    fn int_dimension(&self, param: &IntParam) -> Result<Dimension> {
        let field = "parameters.rci.max_iterations";
        let check = |sub: String, v: u32| {
            let mut rci = self.base.rci.clone();
            rci.max_iterations = v;
            rci.validate().map_err(|e| e.with_field(&sub))
        };
        let axis = match (&param.values, &param.uniform) {
            (Some(values), None) => {
                check_grid(&format!("{field}.values"), values)?;
                for (k, &v) in values.iter().enumerate() {
                    check(format!("{field}.values[{k}]"), v)?;
                }
                Axis::Grid(values.iter().map(|&v| Value::U32(v)).collect())
            }
            (None, Some(bounds)) => {
                for (k, &v) in bounds.iter().enumerate().take(2) {
                    check(format!("{field}.uniform[{k}]"), v)?;
                }
                let [lo, hi] = uniform_pair(field, bounds)?;
                Axis::UniformInt(lo, hi)
            }
            _ => return Err(one_of(field)),
        };
        Ok(Dimension {
            target: Target::MaxIterations,
            field,
            axis,
        })
    }

    /// Checks one value of a real parameter; the caller renames the field. The allowed
    /// sets are intervals, so checking both bounds of a uniform range checks every draw.
    fn check_value(&self, target: Target, v: f64) -> Result<()> {
        let scale = |zero_ok: bool| {
            let ok = v.is_finite() && v <= MAX_SCALE && (v > 0.0 || (zero_ok && v == 0.0));
            if ok {
                Ok(())
            } else {
                let lo = if zero_ok { "[0" } else { "(0" };
                Err(Error::invalid(
                    "",
                    crate::error::number(v),
                    format!("{lo}, {MAX_SCALE}] (factor)"),
                ))
            }
        };
        let mut rci = self.base.rci.clone();
        match target {
            Target::AttackSize => {
                return crate::error::Bounds::closed(
                    -attack::MAX_SIZE,
                    attack::MAX_SIZE,
                    "(the variable's unit)",
                )
                .check("", v);
            }
            Target::LoadScale => return scale(false),
            Target::RenewableScale | Target::MgLoadScale => return scale(true),
            Target::Chi => rci.chi = v,
            Target::Kappa => rci.kappa = v,
            Target::Xi => rci.xi = v,
            Target::PriceTol => rci.price_tol = v,
            Target::PowerTol => rci.power_tol = v,
            Target::BalanceTol => rci.balance_tol = v,
            _ => {}
        }
        // The base settings are valid (checked first), so a failure is this value's.
        rci.validate()
    }
}

/// A `uniform = [lo, hi]` range: exactly two values with `lo < hi` (the values themselves
/// are checked first). A single value is a grid of one (`values = [x]`), not a draw.
fn uniform_pair<T: Copy + PartialOrd + std::fmt::Debug>(
    field: &str,
    bounds: &[T],
) -> Result<[T; 2]> {
    match bounds {
        &[lo, hi] if lo < hi => Ok([lo, hi]),
        _ => Err(Error::invalid(
            format!("{field}.uniform"),
            format!("{bounds:?}"),
            "exactly two values [lo, hi] with lo < hi (for one value use `values = [x]`)",
        )),
    }
}

fn one_of(field: &str) -> Error {
    Error::invalid(
        field,
        "neither or both of `values` and `uniform`",
        "exactly one of `values = [...]` or `uniform = [lo, hi]`",
    )
}

/// A grid must be non-empty and its values distinct (duplicates would repeat runs, and
/// two equal pcc buses would write the same partition).
fn check_grid<T: std::fmt::Debug>(field: &str, values: &[T]) -> Result<()> {
    if values.is_empty() {
        return Err(Error::invalid(field, "[]", "at least one value"));
    }
    let mut seen = HashSet::new();
    for v in values {
        if !seen.insert(format!("{v:?}")) {
            return Err(Error::invalid(
                field,
                format!("{v:?} (repeated)"),
                "distinct values",
            ));
        }
    }
    Ok(())
}

/// What a dimension sets in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    PccBus,
    LoadScale,
    RenewableScale,
    MgLoadScale,
    Chi,
    Kappa,
    Xi,
    StepRule,
    PriceTol,
    PowerTol,
    BalanceTol,
    MaxIterations,
    AttackVariable,
    AttackAgent,
    AttackHour,
    AttackFirst,
    AttackDuration,
    AttackSize,
    AttackShape,
    AttackDefence,
}

/// One value a dimension can take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    F64(f64),
    U32(u32),
    StepRule(StepRule),
    Bus(usize),
    Variable(AttackVariable),
    Shape(AttackShape),
    Defence(Defence),
}

/// How a dimension varies.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Axis {
    Grid(Vec<Value>),
    Uniform(f64, f64),
    UniformInt(u32, u32),
}

impl Axis {
    pub(crate) fn is_grid(&self) -> bool {
        matches!(self, Axis::Grid(_))
    }

    /// Points this axis contributes to the cartesian product (1 for a draw).
    pub(crate) fn grid_len(&self) -> usize {
        match self {
            Axis::Grid(v) => v.len(),
            _ => 1,
        }
    }
}

/// One swept parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dimension {
    pub(crate) target: Target,
    pub(crate) field: &'static str,
    pub(crate) axis: Axis,
}

/// The attack of one sweep run (before it becomes an engine slot).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunAttack {
    /// The altered value.
    pub variable: AttackVariable,
    /// The target agent.
    pub agent: u32,
    /// The attacked hour.
    pub hour: u32,
    /// First attacked message iteration.
    pub first_iteration: u32,
    /// Attacked iterations; 0: to the end.
    pub duration: u32,
    /// The size of `c`.
    pub size: f64,
    /// How `c` evolves.
    pub shape: AttackShape,
    /// Whether the ledger defends the messages.
    pub defence: Defence,
}

impl Default for RunAttack {
    fn default() -> Self {
        RunAttack {
            variable: AttackVariable::Price,
            agent: 0,
            hour: 0,
            first_iteration: 0,
            duration: 0,
            size: 0.0,
            shape: AttackShape::Constant,
            defence: Defence::Undefended,
        }
    }
}

/// Sets `value` into the run's settings.
pub(crate) fn apply(
    target: Target,
    value: Value,
    rci: &mut RciSettings,
    scales: &mut [f64; 3],
    pcc_bus: &mut usize,
    attack: &mut RunAttack,
) {
    match (target, value) {
        (Target::AttackVariable, Value::Variable(v)) => attack.variable = v,
        (Target::AttackAgent, Value::U32(v)) => attack.agent = v,
        (Target::AttackHour, Value::U32(v)) => attack.hour = v,
        (Target::AttackFirst, Value::U32(v)) => attack.first_iteration = v,
        (Target::AttackDuration, Value::U32(v)) => attack.duration = v,
        (Target::AttackSize, Value::F64(v)) => attack.size = v,
        (Target::AttackShape, Value::Shape(v)) => attack.shape = v,
        (Target::AttackDefence, Value::Defence(v)) => attack.defence = v,
        (Target::PccBus, Value::Bus(b)) => *pcc_bus = b,
        (Target::LoadScale, Value::F64(v)) => scales[0] = v,
        (Target::RenewableScale, Value::F64(v)) => scales[1] = v,
        (Target::MgLoadScale, Value::F64(v)) => scales[2] = v,
        (Target::Chi, Value::F64(v)) => rci.chi = v,
        (Target::Kappa, Value::F64(v)) => rci.kappa = v,
        (Target::Xi, Value::F64(v)) => rci.xi = v,
        (Target::StepRule, Value::StepRule(r)) => rci.step_rule = r,
        (Target::PriceTol, Value::F64(v)) => rci.price_tol = v,
        (Target::PowerTol, Value::F64(v)) => rci.power_tol = v,
        (Target::BalanceTol, Value::F64(v)) => rci.balance_tol = v,
        (Target::MaxIterations, Value::U32(v)) => rci.max_iterations = v,
        // Dimensions are built with matching (target, value) pairs only.
        _ => debug_assert!(false, "mismatched sweep value {value:?} for {target:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SweepSpec> {
        SweepSpec::from_toml(text, Path::new("test.toml"))
    }

    /// An inline `[base]` is completed like a scenario file: its season's weather, and its
    /// `[base.timeseries]` file, relative to the sweep file.
    #[test]
    fn inline_base_gets_its_season_and_its_timeseries() {
        use crate::data::rts79::Season;
        use crate::microgrid::Weather;
        let summer = parse("seed = 1\n[base.load]\nweek = 25\n").unwrap();
        assert_eq!(
            summer.base.microgrid.weather,
            Weather::for_season(Season::Summer)
        );
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from("tidal_current_ms\n");
        for h in 0..24 {
            csv.push_str(&format!("{}\n", h as f64 * 0.1));
        }
        std::fs::write(dir.path().join("tide.csv"), csv).unwrap();
        let sweep = dir.path().join("sweep.toml");
        let spec = SweepSpec::from_toml(
            "seed = 1\n[base.timeseries]\nfile = \"tide.csv\"\n[base.microgrid.weather]\n\
             wind_speed_ms = [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, \
             5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]\n",
            &sweep,
        )
        .unwrap();
        let w = &spec.base.microgrid.weather;
        assert_eq!(w.tidal_current_ms[23], 2.3000000000000003);
        assert_eq!(w.wind_speed_ms, vec![5.0; 24], "a given series stays");
        assert_eq!(w.irradiance_wm2, Weather::default().irradiance_wm2);
        assert!(spec.base.timeseries.is_none());
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::InvalidInput { field, .. } => field,
            other => panic!("not an InvalidInput: {other}"),
        }
    }

    #[test]
    fn minimal_sweep_has_defaults() {
        let s = parse("seed = 1").unwrap();
        assert_eq!(s.runs_per_part, DEFAULT_RUNS_PER_PART);
        assert_eq!(s.samples, 1);
        assert_eq!(s.base, Scenario::default());
        assert_eq!(s.total_runs().unwrap(), 1);
    }

    #[test]
    fn dotted_and_table_spellings_agree() {
        let a = parse("seed = 1\n[parameters]\nrci.kappa = { values = [1, 2] }").unwrap();
        let b = parse("seed = 1\n[parameters.rci.kappa]\nvalues = [1.0, 2.0]").unwrap();
        assert_eq!(a.parameters, b.parameters);
        assert_eq!(a.total_runs().unwrap(), 2);
    }

    #[test]
    fn counts_the_cartesian_product() {
        let s = parse(
            "seed = 1\nsamples = 10\n[parameters]\nload_scale = { uniform = [0.9, 1.0] }\n\
             rci.kappa = { values = [0.001, 0.002, 0.003] }\n\
             rci.step_rule = { values = [\"constant\", \"newton\"] }",
        )
        .unwrap();
        assert_eq!(s.total_runs().unwrap(), 60);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "seed = 1\n[parameters]\nload_scale = { uniform = [1.1, 0.9] }",
                "parameters.load_scale.uniform",
            ),
            (
                "seed = 1\n[parameters]\nrenewable_scale = { values = [1.0, nan] }",
                "parameters.renewable_scale.values[1]",
            ),
            (
                "seed = 1\n[parameters]\nrci.kappa = { values = [] }",
                "parameters.rci.kappa.values",
            ),
            (
                "seed = 1\n[parameters]\nrci.chi = { uniform = [0.5, 1.5] }",
                "parameters.rci.chi.uniform[1]",
            ),
            (
                "seed = 1\n[parameters]\nrci.xi = { values = [1.0], uniform = [1.0, 2.0] }",
                "parameters.rci.xi",
            ),
            (
                "seed = 1\n[parameters]\nrci.max_iterations = { values = [0] }",
                "parameters.rci.max_iterations.values[0]",
            ),
            (
                "seed = 1\n[parameters]\npcc_bus = { values = [7, 7] }",
                "parameters.pcc_bus",
            ),
            (
                "seed = 1\n[parameters]\nload_scale = { uniform = [0.5, 1.0, 1.5] }",
                "parameters.load_scale.uniform",
            ),
            (
                "seed = 1\n[parameters]\nload_scale = { uniform = [1.0, 1.0] }",
                "parameters.load_scale.uniform",
            ),
            (
                "seed = 1\n[parameters]\nrci.max_iterations = { uniform = [9] }",
                "parameters.rci.max_iterations.uniform",
            ),
            (
                "seed = 1\n[base.microgrid]\nenabled = false\n[parameters]\npcc_bus = { values = [7] }",
                "parameters.pcc_bus",
            ),
            ("seed = 1\nruns_per_part = 0", "runs_per_part"),
            ("seed = 1\nsamples = 3", "samples"),
            ("seed = 1\n[base.rci]\nchi = 3.0", "base.rci.chi"),
            (
                "seed = 1\nsamples = 1000000\n[parameters]\nload_scale = { uniform = [1, 1.1] }\n\
                 rci.kappa = { values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, \
                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, \
                 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, \
                 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, \
                 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, \
                 97, 98, 99, 100, 101] }",
                "parameters",
            ),
        ];
        for (text, field) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(field_of(e), field, "{text}");
        }
    }

    /// A varied stop tolerance counts with its least value (grid or draw); one not varied
    /// keeps the base's.
    #[test]
    fn the_tightest_rci_takes_each_varied_tolerance_at_its_least() {
        let spec = parse(
            "seed = 1\nsamples = 2\n[base.rci]\nprice_tol = 1e-3\ndual_tol = 2e-3\npower_tol = 0.5\n\
             balance_tol = 0.25\n[parameters]\nrci.price_tol = { values = [0.1, 1e-4, 0.01] }\n\
             rci.power_tol = { uniform = [0.02, 0.3] }\n",
        )
        .unwrap();
        let t = spec.tightest_rci();
        assert_eq!(
            (t.price_tol, t.dual_tol, t.power_tol, t.balance_tol),
            (1e-4, 2e-3, 0.02, 0.25)
        );
        assert_eq!(t.tolerances_below_f32(), [("price_tol", 1e-4)]);
        assert_eq!(
            parse("seed = 1\n").unwrap().tightest_rci(),
            RciSettings::default()
        );
    }

    /// Counts may be written in scientific notation, as the command line takes them; a
    /// count that is not a whole number is refused with the key and the value named.
    #[test]
    fn counts_take_scientific_notation_and_refuse_fractions() {
        let sweep = |[samples, per_part, ledger, iterations]: [&str; 4]| {
            parse(&format!(
                "seed = 1\nsamples = {samples}\nruns_per_part = {per_part}\n\
                 ledger_sample = {ledger}\n[base.rci]\nmax_iterations = {iterations}\n\
                 [parameters]\nattack.variable = {{ values = [\"price\"] }}\n\
                 attack.agent = {{ values = [1] }}\nattack.hour = {{ values = [10] }}\n\
                 attack.size = {{ uniform = [0.1, 1.0] }}\n\
                 attack.defence = {{ values = [\"defended\"] }}"
            ))
            .unwrap()
        };
        let s = sweep(["1e2", "2.048e3", "5e1", "4e2"]);
        assert_eq!(
            (s.samples, s.runs_per_part, s.ledger_sample),
            (100, 2048, Some(50))
        );
        assert_eq!(s.base.rci.max_iterations, 400);
        // The same sweep with integers has the same identity (its JSON; the text differs).
        let ints = sweep(["100", "2048", "50", "400"]);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            serde_json::to_string(&ints).unwrap()
        );
        for (text, key, value) in [
            ("seed = 1\nsamples = 2.5", "samples", "2.5"),
            ("seed = 1\nruns_per_part = -1e3", "runs_per_part", "-1000"),
            ("seed = 1\nledger_sample = 1e17", "ledger_sample", "2^53"),
            ("seed = 1\nsamples = nan", "samples", "NaN"),
            (
                "seed = 1\n[base.rci]\nmax_iterations = 1e10",
                "max_iterations",
                "10000000000",
            ),
            (
                "seed = 1\n[base.rci]\nmax_iterations = -3",
                "max_iterations",
                "-3",
            ),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(key) && e.contains(value), "{text}: {e}");
        }
        // In range of the type but not of the field: the range check names it.
        let e = parse("seed = 1\n[base.rci]\nmax_iterations = 2e7").expect_err("above 1e7");
        assert_eq!(field_of(e), "base.rci.max_iterations");
    }

    #[test]
    fn parse_errors_name_the_key() {
        for (text, needle) in [
            ("seed = 1\nsede = 2", "sede"),
            (
                "seed = 1\n[parameters]\nload_scael = { values = [1] }",
                "load_scael",
            ),
            (
                "seed = 1\n[parameters]\nload_scale = { normal = [1, 0.1] }",
                "normal",
            ),
            (
                "seed = 1\n[parameters]\npcc_bus = { uniform = [1, 2] }",
                "uniform",
            ),
            (
                "seed = 1\n[parameters]\nrci.step_rule = { values = [\"bisect\"] }",
                "bisect",
            ),
            ("runs_per_part = 5", "seed"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(matches!(e, Error::Scenario { .. }), "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
            // Named as the sweep file it is, not as a scenario.
            assert!(e.to_string().starts_with("sweep "), "{text}: {e}");
        }
    }
}
