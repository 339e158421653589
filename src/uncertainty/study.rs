//! The uncertainty study (issue 7): every sample (or UT sigma point) is one realized market
//! day evaluated by the batch engine, and its outcomes are reduced to statistics per
//! method, quantity and hour. This module ties the pure parts together; the CLI writes
//! its [`StudyResult`] (`p2pmarket uncertainty`).
//!
//! - The 120 inputs of a sample become one run's [`HourlyInputs`]: wind speed, irradiance
//!   and tidal current through the unit models, the microgrid's load, and the smart grid's
//!   system load through a [`LoadTable`] (no curve rebuild per sample; a load outside the
//!   table is flagged and counted, never extrapolated).
//! - The microgrid's battery plan is the day-ahead plan made on the forecast, kept in every
//!   sample (see [`HourlyInputs`]).
//! - MC, QMC and LHS samples are drawn and evaluated in chunks of [`CHUNK_RUNS`] and
//!   reduced in sample order, so host memory does not grow with N and the statistics do
//!   not depend on the chunking, the thread count or the backend's chunking.
//! - Each (sample, hour) is also checked against the exact clearing of its own offer curves
//!   (the crossing of the two curves within the tie limits): quantity
//!   `clearing_error_mw`.

use std::time::Instant;

use rayon::prelude::*;

use crate::engine::batch::{MAX_UNITS, UNSET_UNIT};
use crate::engine::gpu::{GpuContext, Precision};
use crate::engine::{
    BackendChoice, Batch, CurveCache, HourRecord, HourlyInputs, RunSpec, run_batch,
};
use crate::error::{Error, Result, number};
use crate::grid::load_table::LoadTable;
use crate::market::Market;
use crate::microgrid::HOURS;
use crate::offer::{CurveView, OfferCurve};
use crate::uncertainty::sampling::{InputSampler, sigma_inputs};
use crate::uncertainty::sigma::{SigmaForm, SigmaWeights};
use crate::uncertainty::stats::{Accumulator, OutputSpec, Z_95, weighted_moments};
use crate::uncertainty::{INPUTS, Method, UncertaintyConfig, Variable};

/// Samples per engine batch: small enough that a batch's host memory stays a few MB.
pub const CHUNK_RUNS: usize = 4096;
/// Samples whose outputs set the quantile histograms' ranges (the first ones, in order).
pub const PILOT_SAMPLES: usize = 1024;
/// Histogram bins per output.
pub const BINS: usize = 4096;
/// Up to this many samples the quantiles are exact (sorted values).
pub const EXACT_LIMIT: usize = 20_000;
/// Largest export difference between the table's blend and an exact curve the study
/// builds its load table for, MW.
pub const TABLE_TOL_MW: f64 = 0.01;
/// Most levels of the load table per hour.
pub const TABLE_MAX_LEVELS: usize = 400;
/// Standard deviations of the system load the load table covers on each side.
pub const TABLE_SIGMAS: f64 = 4.0;
/// The quantiles reported, as probabilities.
pub const QUANTILES: [f64; 5] = [0.05, 0.25, 0.5, 0.75, 0.95];

/// Tail thresholds relative to the forecast day: the sampling methods report
/// P(price > (1 + r) p) for each r, p being the forecast day's price of the same hour (of
/// the day's mean price for the day).
pub const TAIL_RELATIVE: [f64; 3] = [0.0, 0.1, 0.25];
/// The quantities whose sampled histograms a study keeps at its [`StudyResult::histogram_hours`]
/// (and for the day).
pub const HISTOGRAM_QUANTITIES: [&str; 3] = ["price", "exchange_mw", "total_cost"];

/// The quantities reported per hour and for the day.
pub const QUANTITIES: [&str; 9] = [
    "exchange_mw",
    "price",
    "sg_cost",
    "mg_cost",
    "total_cost",
    "wind_mw",
    "pv_mw",
    "tidal_mw",
    "clearing_error_mw",
];
/// Outputs per sample: each quantity per hour, then per day.
pub const OUTPUTS: usize = QUANTITIES.len() * (HOURS + 1);

/// How a study runs.
#[derive(Debug, Clone)]
pub struct StudyOptions {
    /// Methods, in the order they run.
    pub methods: Vec<Method>,
    /// Samples N of each sampling method (the UT takes 2c+1 = 241 runs).
    pub samples: u64,
    /// Backend of the engine.
    pub backend: BackendChoice,
    /// Kernel precision on a GPU.
    pub precision: Precision,
}

/// One row of the statistics table.
#[derive(Debug, Clone, PartialEq)]
pub struct StatRow {
    /// Method name (`ut_paper`, ..., `lhs`).
    pub method: &'static str,
    /// Quantity name ([`QUANTITIES`]).
    pub quantity: &'static str,
    /// Hour 0..24, `None` for the whole day.
    pub hour: Option<u32>,
    /// Runs the statistic is over (2c+1 for the UT; finite samples for the others).
    pub runs: u64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation (`None`: a UT with a negative weighted variance).
    pub std: Option<f64>,
    /// The [`QUANTILES`] (sampling methods only).
    pub quantiles: Option<[f64; 5]>,
    /// 95 % confidence interval of the mean (sampling methods only).
    pub ci95: Option<(f64, f64)>,
    /// Half-width of the standard deviation's 95 % interval (sampling methods only; see
    /// [`crate::uncertainty::stats::OutputSummary::std_half_width`]).
    pub std_half_width: Option<f64>,
}

/// One tail probability P(price > threshold) of a sampling method.
#[derive(Debug, Clone, PartialEq)]
pub struct TailRow {
    /// Method name (`mc`, `qmc_sobol`, `lhs`).
    pub method: &'static str,
    /// Hour 0..24, `None` for the day's mean price.
    pub hour: Option<u32>,
    /// The threshold x, $/MWh.
    pub threshold: f64,
    /// `Some(r)` when x = (1 + r) times the forecast day's price ([`TAIL_RELATIVE`]),
    /// `None` for a threshold of [`UncertaintyConfig::price_thresholds`].
    pub relative: Option<f64>,
    /// Samples the probability is over.
    pub runs: u64,
    /// The fraction of samples with price > x.
    pub probability: f64,
    /// Wilson's 95 % interval of the probability.
    pub ci95: (f64, f64),
}

/// The histogram of one output of a sampling method (the accumulator's, see
/// [`Accumulator::histogram`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramRow {
    /// Method name.
    pub method: &'static str,
    /// Quantity name ([`HISTOGRAM_QUANTITIES`]).
    pub quantity: &'static str,
    /// Hour, `None` for the day.
    pub hour: Option<u32>,
    /// Lower end of the bins, in the quantity's unit.
    pub lo: f64,
    /// Upper end of the bins.
    pub hi: f64,
    /// Underflow, [`BINS`] equal bins on [lo, hi], overflow; they sum to the samples.
    pub counts: Vec<u64>,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

/// Wilson's 95 % score interval of a binomial proportion `k / n` (n > 0).
pub fn wilson_interval(k: u64, n: u64) -> (f64, f64) {
    let all = k == n;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = Z_95 * Z_95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z_95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At k = 0 (k = n) the end is 0 (1) exactly; the formula leaves a rounding residue.
    let lo = if k == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if all { 1.0 } else { (centre + half).min(1.0) };
    (lo, hi)
}

/// What one method cost and met.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MethodReport {
    /// Method name.
    pub method: &'static str,
    /// Runs evaluated.
    pub runs: u64,
    /// Runs left out of the statistics because a value was not finite (diverged).
    pub diverged_runs: u64,
    /// (run, hour) pairs that did not converge within the iteration cap.
    pub unconverged_hours: u64,
    /// (run, hour) pairs whose system load lay outside the load table.
    pub sg_load_out_of_range_hours: u64,
    /// Input coordinates clipped to their physical range (UT sigma points only).
    pub clipped_inputs: u64,
    /// Seconds spent drawing inputs and building batches on the host.
    pub host_s: f64,
    /// Seconds spent in the engine.
    pub engine_s: f64,
    /// Seconds spent reducing outputs.
    pub reduce_s: f64,
    /// The engine's device.
    pub adapter: String,
}

impl MethodReport {
    /// A report of nothing yet.
    pub(crate) fn new(method: &'static str) -> Self {
        MethodReport {
            method,
            runs: 0,
            diverged_runs: 0,
            unconverged_hours: 0,
            sg_load_out_of_range_hours: 0,
            clipped_inputs: 0,
            host_s: 0.0,
            engine_s: 0.0,
            reduce_s: 0.0,
            adapter: String::new(),
        }
    }

    /// Counts one run: whether its outputs were finite, and its flagged hours.
    pub(crate) fn add_run(&mut self, finite: bool, unconverged: u32, out_of_range: u32) {
        self.runs += 1;
        self.diverged_runs += u64::from(!finite);
        self.unconverged_hours += u64::from(unconverged);
        self.sg_load_out_of_range_hours += u64::from(out_of_range);
    }
}

/// A study's statistics and reports.
#[derive(Debug, Clone)]
pub struct StudyResult {
    /// One row per method x quantity x hour (and day).
    pub rows: Vec<StatRow>,
    /// One report per method.
    pub methods: Vec<MethodReport>,
    /// Load-table levels over all hours (0: no system-load uncertainty, no table).
    pub table_levels: usize,
    /// The table's scale range.
    pub table_range: Option<(f64, f64)>,
    /// The table's measured export error bound, MW.
    pub table_export_error_mw: Option<f64>,
    /// Seconds to build the table.
    pub table_s: f64,
    /// The forecast day's outputs (every input at its forecast), one per quantity and hour
    /// (see [`StudyResult::forecast`]).
    pub forecast_outputs: Vec<f64>,
    /// Tail probabilities of the price, sampling methods only.
    pub tails: Vec<TailRow>,
    /// Histograms of [`HISTOGRAM_QUANTITIES`] at [`Self::histogram_hours`] and for the
    /// day, sampling methods only.
    pub histograms: Vec<HistogramRow>,
    /// The hours with the forecast's largest and smallest system load (peak, night).
    pub histogram_hours: [u32; 2],
}

impl StudyResult {
    /// The forecast day's value of `quantity` at `hour` (`None`: the day).
    pub fn forecast(&self, quantity: &str, hour: Option<u32>) -> Option<f64> {
        let q = QUANTITIES.iter().position(|&n| n == quantity)?;
        let h = hour.map_or(HOURS, |h| h as usize).min(HOURS);
        self.forecast_outputs.get(q * (HOURS + 1) + h).copied()
    }
}

/// What a study builds once and reuses for every call of [`run_prepared`] with the same
/// market and system-load spread: the load table and the curve cache.
pub struct PreparedStudy {
    table: Option<LoadTable>,
    table_s: f64,
    sg_std: f64,
    cache: CurveCache,
}

/// A load-table build's error in the user's terms. The table's range and size follow from
/// `uncertainty.sg_load.std_fraction` (its range is [`TABLE_SIGMAS`] standard deviations
/// each side), so a range the smart grid cannot serve, or one needing more than
/// [`TABLE_MAX_LEVELS`] levels, names that field, with the largest spread the market
/// serves ([`crate::grid::load_table::servable_scales`], found only on this path).
fn table_error(market: &Market, sg_std: f64, (lo, hi): (f64, f64), e: Error) -> Error {
    let Error::InvalidInput { field, allowed, .. } = e else {
        return e;
    };
    let span = format!(
        "the load table spans {TABLE_SIGMAS} standard deviations of the system load each \
         side, load scales {lo}..={hi}"
    );
    let allowed = if field == "scale_range" {
        let servable = match crate::grid::load_table::servable_scales(market, (lo, hi)) {
            // The whole range trades: the build failed for another reason, given above.
            Ok(Some((a, b))) if a <= lo && b >= hi => String::new(),
            Ok(Some((a, b))) => {
                // The range's low end is clamped at 0.05 (`PreparedStudy::new`), so a
                // market served down to there never limits the spread from below.
                let below = if a <= 0.05 {
                    f64::INFINITY
                } else {
                    (1.0 - a) / TABLE_SIGMAS
                };
                let max_std = ((b - 1.0) / TABLE_SIGMAS).min(below);
                format!(
                    "; this market is served at load scales {a:.4}..={b:.4} (to 1e-4), so \
                     std_fraction <= {:.4}",
                    (max_std * 1e4).floor() / 1e4
                )
            }
            Ok(None) => "; the base day's loads themselves cannot be served".into(),
            Err(e) => format!("; the servable scales could not be found: {e}"),
        };
        format!("a spread the smart grid can serve: {span}, and {allowed}{servable}")
    } else {
        format!(
            "a spread whose load table fits {TABLE_MAX_LEVELS} levels an hour: {span}, and {allowed}"
        )
    };
    Error::InvalidInput {
        field: "uncertainty.sg_load.std_fraction".into(),
        value: number(sg_std),
        allowed,
    }
}

impl PreparedStudy {
    /// Builds the load table of `market` for `cfg`'s system-load spread (none when it is 0).
    pub fn new(market: &Market, cfg: &UncertaintyConfig) -> Result<Self> {
        cfg.validate()?;
        let sg_std = cfg.sg_load.std_fraction;
        let t = Instant::now();
        let table = if sg_std > 0.0 {
            let range = (
                (1.0 - TABLE_SIGMAS * sg_std).max(0.05),
                1.0 + TABLE_SIGMAS * sg_std,
            );
            Some(
                LoadTable::build(market, range, TABLE_TOL_MW, TABLE_MAX_LEVELS)
                    .map_err(|e| table_error(market, sg_std, range, e))?,
            )
        } else {
            None
        };
        Ok(PreparedStudy {
            table,
            table_s: t.elapsed().as_secs_f64(),
            sg_std,
            cache: CurveCache::default(),
        })
    }
}

impl PreparedStudy {
    /// Refuses `cfg` unless it has the system-load spread this study was prepared for.
    pub(crate) fn check(&self, cfg: &UncertaintyConfig) -> Result<()> {
        cfg.validate()?;
        if cfg.sg_load.std_fraction != self.sg_std {
            return Err(Error::invalid(
                "uncertainty.sg_load.std_fraction",
                number(cfg.sg_load.std_fraction),
                format!(
                    "{} (the spread the study's load table was built for)",
                    number(self.sg_std)
                ),
            ));
        }
        Ok(())
    }

    /// An engine evaluating runs of `market` with this study's table and curve cache, its
    /// report named `name`.
    pub(crate) fn engine<'a>(
        &'a mut self,
        market: &'a Market,
        opts: &'a StudyOptions,
        gpu: Option<&'a GpuContext>,
        name: &'static str,
    ) -> Engine<'a> {
        Engine {
            market,
            table: self.table.as_ref(),
            cache: &mut self.cache,
            opts,
            gpu,
            with_sg: self.sg_std > 0.0,
            report: MethodReport::new(name),
        }
    }

    /// What the study says of its load table.
    pub fn table_info(&self) -> TableInfo {
        TableInfo {
            levels: self.table.as_ref().map_or(0, |t| t.levels_total()),
            range: self.table.as_ref().map(|t| t.scale_range()),
            export_error_mw: self.table.as_ref().map(|t| t.export_error_mw()),
            build_s: self.table_s,
        }
    }

    fn result(
        &self,
        reference: Reference,
        tables: Tables,
        methods: Vec<MethodReport>,
    ) -> StudyResult {
        study_result(reference, tables, methods, self.table_info())
    }
}

/// The 120 forecast inputs of `market` (variable-major, see [`Variable`]).
pub fn forecast_inputs(market: &Market) -> [f64; INPUTS] {
    let w = &market.microgrid.config.weather;
    let mut x = [0.0; INPUTS];
    for h in 0..HOURS {
        let at = |s: &[f64]| s.get(h).copied().unwrap_or(0.0);
        x[Variable::Wind.input(h)] = at(&w.wind_speed_ms);
        x[Variable::Irradiance.input(h)] = at(&w.irradiance_wm2);
        x[Variable::Tidal.input(h)] = at(&w.tidal_current_ms);
        x[Variable::MgLoad.input(h)] = market.microgrid.hourly[h].load_mw;
        x[Variable::SgLoad.input(h)] = market.system_load_mw[h];
    }
    x
}

/// One sample's inputs as a run of the engine.
fn run_spec(market: &Market, x: &[f64; INPUTS], with_sg: bool) -> RunSpec {
    let series = |v: Variable| -> [f64; HOURS] { std::array::from_fn(|h| x[v.input(h)]) };
    let hourly = HourlyInputs::from_weather(
        &market.microgrid.config,
        &series(Variable::Wind),
        &series(Variable::Irradiance),
        &series(Variable::Tidal),
        series(Variable::MgLoad),
        with_sg.then(|| series(Variable::SgLoad)),
    );
    RunSpec {
        rci: market.rci.clone(),
        hourly: Some(Box::new(hourly)),
        ..RunSpec::default()
    }
}

/// The exchange (agent 0's export) at the exact clearing of two offer curves within the
/// agents' trade limits: the price where their exports sum to zero, found by bisection
/// (the sum is non-decreasing in price).
pub fn clearing_exchange(sg: CurveView<'_>, mg: CurveView<'_>, lo: f64, hi: f64) -> f64 {
    clearing_by(sg, mg, lo, hi, |ab| narrow_clearing(sg, mg, lo, hi, ab))
}

/// The clearing bisection of [`clearing_exchange`]: at most [`BISECTION_STEPS`] halvings
/// of `(a, b)`, short at `a` and not short at `b`, each kept by the balance's sign at its
/// midpoint, until the ends are adjacent prices. Bitwise the plain bisection on
/// `export_at`, with fewer curve evaluations.
fn narrow_clearing(
    sg: CurveView<'_>,
    mg: CurveView<'_>,
    lo: f64,
    hi: f64,
    (mut a, mut b): (f64, f64),
) -> (f64, f64) {
    // Each curve's count of breakpoints at or below a and b (bounds at first: 0 and
    // all) confines the search of every midpoint to the bracket's breakpoints; the
    // exports, and so every step, are bitwise those of `export_at`.
    let (mut sg_ab, mut mg_ab) = ((0, sg.len()), (0, mg.len()));
    for left in (1..=BISECTION_STEPS).rev() {
        if sg_ab.0 == sg_ab.1 && mg_ab.0 == mg_ab.1 {
            // No breakpoint of either curve in (a, b]: the balance there is one
            // monotone formula, so where it stops being short decides every step left.
            let balance = |m: f64| {
                sg.export_at_count(m, sg_ab.0).clamp(lo, hi)
                    + mg.export_at_count(m, mg_ab.0).clamp(lo, hi)
            };
            let not_short = first_not_short(a, b, balance);
            return bisect_by_boundary(a, b, not_short, left);
        }
        let m = 0.5 * (a + b);
        if m <= a || m >= b {
            break;
        }
        let cs = sg.count_at_or_below(m, sg_ab.0..sg_ab.1);
        let cm = mg.count_at_or_below(m, mg_ab.0..mg_ab.1);
        let balance =
            sg.export_at_count(m, cs).clamp(lo, hi) + mg.export_at_count(m, cm).clamp(lo, hi);
        if balance < 0.0 {
            a = m;
            (sg_ab.0, mg_ab.0) = (cs, cm);
        } else {
            b = m;
            (sg_ab.1, mg_ab.1) = (cs, cm);
        }
    }
    (a, b)
}

/// The clearing bisection's most halvings.
const BISECTION_STEPS: usize = 200;

/// `x`'s place in the order of the doubles (`-0.0` just below `0.0`), as an integer.
fn order_key(x: f64) -> u64 {
    let u = x.to_bits();
    if u >> 63 == 1 { !u } else { u | (1 << 63) }
}

/// The double at place `k` of [`order_key`].
fn from_order_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// The place ([`order_key`]) of the first double in `(a, b]` where the non-decreasing
/// `balance` is not short (`>= 0`), given `balance(a) < 0 <= balance(b)`: a secant guess,
/// then a galloping and a binary search over the doubles around it. Only the signs of
/// `balance` at doubles decide it, so rounding in the guess costs evaluations, never bits.
fn first_not_short(a: f64, b: f64, balance: impl Fn(f64) -> f64) -> u64 {
    // Invariant: short at `lo`, not short at `hi`.
    let (mut lo, mut hi) = (order_key(a), order_key(b));
    let (fa, fb) = (balance(a), balance(b));
    let guess = a + (b - a) * (-fa / (fb - fa));
    if guess > a && guess < b {
        let g = order_key(guess);
        let short = |k: u64| balance(from_order_key(k)) < 0.0;
        let mut step = 1u64;
        if short(g) {
            lo = g;
            while hi - lo > 1 {
                let k = lo.saturating_add(step).min(hi - 1);
                if short(k) {
                    lo = k;
                } else {
                    hi = k;
                    break;
                }
                step = step.saturating_mul(2);
            }
        } else {
            hi = g;
            while hi - lo > 1 {
                let k = hi.saturating_sub(step).max(lo + 1);
                if short(k) {
                    lo = k;
                    break;
                }
                hi = k;
                step = step.saturating_mul(2);
            }
        }
    }
    while hi - lo > 1 {
        let k = lo + (hi - lo) / 2;
        if balance(from_order_key(k)) < 0.0 {
            lo = k;
        } else {
            hi = k;
        }
    }
    hi
}

/// The bisection of `(a, b)` for at most `steps` halvings when the balance is short exactly
/// below the double at place `not_short` ([`first_not_short`]): each midpoint's sign is its
/// place against that one, so no curve is evaluated. Returns the narrowed bracket.
///
/// The halvings need not be made one by one. While a double lies strictly between the
/// ends, the midpoint `0.5 * (a + b)` is the double nearest to the exact midpoint (the
/// sum is rounded once, and halving it is exact, or the sum is exact and the halving
/// rounds once), which is strictly between the ends: so the bisection stops exactly at
/// adjacent doubles, and those are the two around `not_short`, whatever the path. Where
/// the ends lie in one evenly spaced stretch of doubles ([`halvings_to_adjacent`]) the
/// number of halvings that takes is bounded, and when the bound fits in the halvings left
/// the result is known without them. Elsewhere (ends of different signs or binades, or
/// near zero, where the cap may end the search first) the bisection halves one step and
/// looks again.
fn bisect_by_boundary(mut a: f64, mut b: f64, not_short: u64, steps: usize) -> (f64, f64) {
    for left in (1..=steps).rev() {
        if halvings_to_adjacent(a, b).is_some_and(|k| k <= left) {
            debug_assert!(order_key(a) < not_short && not_short <= order_key(b));
            return (from_order_key(not_short - 1), from_order_key(not_short));
        }
        match halve_by_boundary(a, b, not_short) {
            Some(ab) => (a, b) = ab,
            None => break,
        }
    }
    (a, b)
}

/// One halving of [`bisect_by_boundary`]: the half of `(a, b)` that holds the boundary,
/// or `None` when `a` and `b` are adjacent doubles (the midpoint is one of them).
fn halve_by_boundary(a: f64, b: f64, not_short: u64) -> Option<(f64, f64)> {
    let m = 0.5 * (a + b);
    if m <= a || m >= b {
        None
    } else if order_key(m) < not_short {
        Some((m, b))
    } else {
        Some((a, m))
    }
}

/// An upper bound on the halvings of `(a, b)`, `a < b`, that reach adjacent doubles, when
/// every double of `[a, b]` is one spacing `s` from the next: both ends of one sign,
/// normal, of one binade (or the larger at the top of the smaller's binade), and far
/// from overflow. Each midpoint is then a multiple of `s` strictly inside, so a halving
/// keeps at most `ceil(d / 2)` of the `d` spacings between the ends, and `ceil(log2 d)`
/// halvings reach one spacing whatever the boundary. `None` elsewhere.
fn halvings_to_adjacent(a: f64, b: f64) -> Option<usize> {
    let (small, large) = if a > 0.0 && a < b {
        (a, b)
    } else if b < 0.0 && a < b {
        (-b, -a)
    } else {
        return None;
    };
    let (lo, hi) = (small.to_bits(), large.to_bits());
    let (binade_lo, binade_hi) = (lo >> 52, hi >> 52);
    // Subnormals (binade 0) are spaced otherwise; above 2^1000 a sum of the ends could
    // overflow.
    if binade_lo == 0 || binade_hi >= 1023 + 1000 {
        return None;
    }
    let at_top = binade_hi == binade_lo + 1 && hi & ((1 << 52) - 1) == 0;
    if binade_hi != binade_lo && !at_top {
        return None;
    }
    // The spacings between the ends (positive doubles of one spacing are consecutive
    // integers as bits), and the ceiling of its base-2 logarithm.
    let spacings = hi - lo;
    Some((u64::BITS - (spacings - 1).leading_zeros()) as usize)
}

/// [`clearing_exchange`] with the bisection `narrow`, which takes a price bracket whose
/// balance is short at its low end and not short at its high end, and returns the
/// bracket narrowed to adjacent prices (or as far as it goes).
fn clearing_by(
    sg: CurveView<'_>,
    mg: CurveView<'_>,
    lo: f64,
    hi: f64,
    narrow: impl FnOnce((f64, f64)) -> (f64, f64),
) -> f64 {
    let balance = |p: f64| sg.export_at(p).clamp(lo, hi) + mg.export_at(p).clamp(lo, hi);
    let first = |c: &CurveView<'_>| c.prices.first().copied().unwrap_or(0.0);
    let last = |c: &CurveView<'_>| c.prices.last().copied().unwrap_or(0.0);
    let (a, b) = (
        first(&sg).min(first(&mg)) - 1.0,
        last(&sg).max(last(&mg)) + 1.0,
    );
    if balance(a) >= 0.0 {
        return sg.export_at(a).clamp(lo, hi);
    }
    if balance(b) <= 0.0 {
        return sg.export_at(b).clamp(lo, hi);
    }
    let (a, b) = narrow((a, b));
    // Where the balance jumps across zero (a flat-price stretch of one curve), the
    // exchange is what the other curve takes at that price.
    let m = 0.5 * (a + b);
    let (sa, sb) = (sg.export_at(a).clamp(lo, hi), sg.export_at(b).clamp(lo, hi));
    let (ma, mb) = (mg.export_at(a).clamp(lo, hi), mg.export_at(b).clamp(lo, hi));
    if (sb - sa).abs() > (mb - ma).abs() {
        (-mg.export_at(m).clamp(lo, hi)).clamp(sa, sb)
    } else {
        sg.export_at(m).clamp(lo, hi)
    }
}

/// The reported outputs of one run (all [`QUANTITIES`] per hour, then per day) from its
/// records; `None` when a value is not finite.
fn run_outputs(
    batch: &Batch,
    run: usize,
    records: &[HourRecord],
    scratch: &mut [OfferCurve; 2],
    out: &mut [f64; OUTPUTS],
) -> Result<Option<()>> {
    let q = QUANTITIES.len();
    let mut day = [0.0; QUANTITIES.len()];
    for (h, rec) in records.iter().enumerate() {
        let mut v = [0.0; QUANTITIES.len()];
        v[0] = rec.exchange_mw;
        v[1] = rec.price;
        v[2] = rec.agent_cost[0];
        if batch.agents() > 1 {
            v[3] = rec.agent_cost[1];
            // The renewables' dispatch at the microgrid's final export: each unit's output
            // at the price where its curve gives that export.
            let mut units = [UNSET_UNIT; MAX_UNITS];
            let (count, _, _) = batch.scaled_units_into(run, h, 1, &mut units);
            let [a, b] = scratch;
            let mg = batch.curve(run, h, 1, b)?;
            let price = mg.price_at_export(rec.agent_power[1]);
            for (k, u) in units[..count].iter().enumerate().take(3) {
                v[5 + k] = u.output_at(price);
            }
            let sg = batch.curve(run, h, 0, a)?;
            let s = batch.slot(run, h, 0);
            let exact = clearing_exchange(sg, mg, s.min_export, s.max_export);
            v[8] = rec.exchange_mw - exact;
        }
        v[4] = v[2] + v[3];
        for k in 0..q {
            out[k * (HOURS + 1) + h] = v[k];
        }
        for k in 0..q {
            day[k] += v[k];
        }
    }
    // Day values: energies and costs summed, the price averaged, the clearing error the
    // largest of the hours.
    day[1] /= HOURS as f64;
    day[8] = (0..HOURS)
        .map(|h| out[8 * (HOURS + 1) + h].abs())
        .fold(0.0, f64::max);
    for k in 0..q {
        out[k * (HOURS + 1) + HOURS] = day[k];
    }
    Ok(out.iter().all(|v| v.is_finite()).then_some(()))
}

/// Runs a study of `market` under `cfg`: the load table when the system load is
/// uncertain, then each method in turn.
pub fn run_study(
    market: &Market,
    cfg: &UncertaintyConfig,
    opts: &StudyOptions,
    gpu: Option<&GpuContext>,
) -> Result<StudyResult> {
    run_study_with(market, cfg, opts, gpu, &mut |_| {})
}

/// What a study is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StudyProgress {
    /// Building the load table (none when the system load is certain).
    Table,
    /// `done` of `total` runs of `method` evaluated.
    Runs {
        /// The method (`forecast` for the forecast day).
        method: &'static str,
        /// Runs evaluated so far.
        done: u64,
        /// Runs of the method.
        total: u64,
    },
}

/// [`run_study`], telling `progress` what it is doing.
pub fn run_study_with(
    market: &Market,
    cfg: &UncertaintyConfig,
    opts: &StudyOptions,
    gpu: Option<&GpuContext>,
    progress: &mut dyn FnMut(StudyProgress),
) -> Result<StudyResult> {
    if cfg.sg_load.std_fraction > 0.0 {
        progress(StudyProgress::Table);
    }
    let mut prepared = PreparedStudy::new(market, cfg)?;
    prepared_study(&mut prepared, market, cfg, opts, gpu, progress)
}

/// Runs each method of `opts` on a [`PreparedStudy`] of the same `market`: repeated
/// studies (other seeds, other N) pay for the load table once. `cfg` must have the
/// system-load spread the study was prepared for.
pub fn run_prepared(
    prepared: &mut PreparedStudy,
    market: &Market,
    cfg: &UncertaintyConfig,
    opts: &StudyOptions,
    gpu: Option<&GpuContext>,
) -> Result<StudyResult> {
    prepared_study(prepared, market, cfg, opts, gpu, &mut |_| {})
}

fn prepared_study(
    prepared: &mut PreparedStudy,
    market: &Market,
    cfg: &UncertaintyConfig,
    opts: &StudyOptions,
    gpu: Option<&GpuContext>,
    progress: &mut dyn FnMut(StudyProgress),
) -> Result<StudyResult> {
    prepared.check(cfg)?;
    let forecast = forecast_inputs(market);
    // The forecast day through the same engine: the deterministic reference of the
    // figures and the anchor of the relative tail thresholds.
    let mut engine = prepared.engine(market, opts, gpu, "forecast");
    let forecast_outputs = forecast_day(&mut engine, &forecast)?;
    let reference = Reference::new(cfg, &forecast, forecast_outputs);
    let mut tables = Tables::default();
    let mut methods = Vec::new();
    for &method in &opts.methods {
        let mut engine = prepared.engine(market, opts, gpu, method.as_str());
        let mut reduction = Reduction::new(method, cfg, &forecast, &reference)?;
        let name = method.as_str();
        if let Some(sigma) = reduction.sigma.take() {
            engine.report.clipped_inputs = sigma.clipped as u64;
            engine.report.host_s += sigma.host_s;
            let total = sigma.points.len() as u64;
            progress(StudyProgress::Runs {
                method: name,
                done: 0,
                total,
            });
            engine.evaluate(&sigma.points, &mut |_, run| reduction.push(run.outputs))?;
            progress(StudyProgress::Runs {
                method: name,
                done: total,
                total,
            });
        } else {
            let sampler = InputSampler::new(cfg, method, &forecast, opts.samples)?;
            let mut start = 0u64;
            progress(StudyProgress::Runs {
                method: name,
                done: 0,
                total: opts.samples,
            });
            while start < opts.samples {
                let end = (start + CHUNK_RUNS as u64).min(opts.samples);
                let t = Instant::now();
                let points = sampler.samples(start..end)?;
                engine.report.host_s += t.elapsed().as_secs_f64();
                engine.evaluate(&points, &mut |_, run| reduction.push(run.outputs))?;
                start = end;
                progress(StudyProgress::Runs {
                    method: name,
                    done: end,
                    total: opts.samples,
                });
            }
        }
        let t = Instant::now();
        reduction.finish(&reference, &mut tables)?;
        engine.report.reduce_s += t.elapsed().as_secs_f64();
        methods.push(engine.report);
    }
    Ok(prepared.result(reference, tables, methods))
}

/// The forecast day's outputs, evaluated by `engine`.
fn forecast_day(engine: &mut Engine<'_>, forecast: &[f64; INPUTS]) -> Result<Vec<f64>> {
    let mut values = None;
    engine.evaluate(&[*forecast], &mut |_, run| {
        values = run.outputs.map(|o| o.to_vec());
        Ok(())
    })?;
    values.ok_or_else(forecast_diverged)
}

/// The error of a forecast day whose outputs are not finite.
pub(crate) fn forecast_diverged() -> Error {
    Error::Solver {
        problem: "uncertainty study, forecast day".into(),
        message: "the forecast day diverged".into(),
    }
}

/// What every method's statistics are reduced against: the forecast day's outputs (the
/// anchor of the relative tail thresholds), the histogram hours and each output's tail
/// thresholds.
pub(crate) struct Reference {
    forecast_outputs: Vec<f64>,
    histogram_hours: [u32; 2],
    thresholds: Vec<Vec<f64>>,
}

impl Reference {
    /// The reference of a study with the forecast inputs `forecast` and the forecast day's
    /// outputs `forecast_outputs` ([`OUTPUTS`] values).
    pub(crate) fn new(
        cfg: &UncertaintyConfig,
        forecast: &[f64; INPUTS],
        forecast_outputs: Vec<f64>,
    ) -> Self {
        let sg_load = |h: usize| forecast[Variable::SgLoad.input(h)];
        let by_load = |a: &usize, b: &usize| sg_load(*a).total_cmp(&sg_load(*b));
        let peak = (0..HOURS).max_by(by_load).unwrap_or(0) as u32;
        let night = (0..HOURS).min_by(by_load).unwrap_or(0) as u32;
        // Thresholds per price output: the relative ones, then the configured ones.
        let thresholds = output_names()
            .enumerate()
            .map(|(o, (quantity, _))| {
                if quantity != "price" {
                    return Vec::new();
                }
                let p = forecast_outputs[o];
                TAIL_RELATIVE
                    .iter()
                    .map(|r| (1.0 + r) * p)
                    .chain(cfg.price_thresholds.iter().copied())
                    .collect()
            })
            .collect();
        Reference {
            forecast_outputs,
            histogram_hours: [peak, night],
            thresholds,
        }
    }
}

/// The rows a study's methods produce.
#[derive(Default)]
pub(crate) struct Tables {
    rows: Vec<StatRow>,
    tails: Vec<TailRow>,
    histograms: Vec<HistogramRow>,
}

/// The UT's sigma points of a [`Reduction`], until they are evaluated.
pub(crate) struct Sigma {
    pub(crate) points: Vec<[f64; INPUTS]>,
    pub(crate) clipped: usize,
    /// Seconds it took to compute them.
    pub(crate) host_s: f64,
}

/// One method's statistics, fed its runs' outputs in sample order (`None`: a run that
/// diverged). The same reduction serves a study run in one process and one sealed from a
/// job array's parts, so both give the same bits.
pub(crate) struct Reduction {
    method: Method,
    kind: ReductionKind,
    /// The UT's sigma points (taken by whoever evaluates them).
    pub(crate) sigma: Option<Sigma>,
}

enum ReductionKind {
    /// Every sigma point's outputs, weighted at the end.
    Unscented {
        weights: SigmaWeights,
        points: usize,
        values: Vec<[f64; OUTPUTS]>,
    },
    /// The first [`PILOT_SAMPLES`] finite runs are held until they set the histograms'
    /// ranges, then the runs go into the accumulator in sample order, [`CHUNK_RUNS`] at a
    /// time (`pending`), which spreads them over the pool by output.
    Sampling {
        acc: Option<Accumulator>,
        pilot: Vec<[f64; OUTPUTS]>,
        pending: Vec<f64>,
        thresholds: Vec<Vec<f64>>,
    },
}

impl Reduction {
    /// A reduction of `method` around the forecast inputs `forecast`; a UT form computes its
    /// sigma points ([`Self::sigma`]).
    pub(crate) fn new(
        method: Method,
        cfg: &UncertaintyConfig,
        forecast: &[f64; INPUTS],
        reference: &Reference,
    ) -> Result<Self> {
        if method.is_unscented() {
            let t = Instant::now();
            let form = SigmaForm::from_config(method, cfg, INPUTS)?;
            let sigma = sigma_inputs(cfg, &form, forecast)?;
            let points = sigma.points.len();
            Ok(Reduction {
                method,
                kind: ReductionKind::Unscented {
                    weights: sigma.weights,
                    points,
                    values: Vec::with_capacity(points),
                },
                sigma: Some(Sigma {
                    points: sigma.points,
                    clipped: sigma.clipped,
                    host_s: t.elapsed().as_secs_f64(),
                }),
            })
        } else {
            Ok(Reduction {
                method,
                kind: ReductionKind::Sampling {
                    acc: None,
                    pilot: Vec::new(),
                    pending: Vec::new(),
                    thresholds: reference.thresholds.clone(),
                },
                sigma: None,
            })
        }
    }

    /// Adds the next run's outputs (`None`: it diverged, and is left out).
    pub(crate) fn push(&mut self, outputs: Option<&[f64; OUTPUTS]>) -> Result<()> {
        let Some(out) = outputs else { return Ok(()) };
        match &mut self.kind {
            ReductionKind::Unscented { values, .. } => values.push(*out),
            ReductionKind::Sampling {
                acc: Some(a),
                pending,
                ..
            } => {
                pending.extend_from_slice(out);
                if pending.len() >= CHUNK_RUNS * OUTPUTS {
                    a.push_rows(a.count(), pending)?;
                    pending.clear();
                }
            }
            ReductionKind::Sampling {
                acc,
                pilot,
                thresholds,
                ..
            } => {
                pilot.push(*out);
                if pilot.len() == PILOT_SAMPLES {
                    *acc = Some(accumulator(pilot, thresholds)?);
                }
            }
        }
        Ok(())
    }

    /// The method's rows, added to `tables`.
    pub(crate) fn finish(self, reference: &Reference, tables: &mut Tables) -> Result<()> {
        let method = self.method.as_str();
        match self.kind {
            ReductionKind::Unscented {
                weights,
                points,
                values,
            } => {
                if values.len() != points {
                    return Err(Error::Solver {
                        problem: format!("uncertainty study, {method}"),
                        message: format!(
                            "{} of {points} sigma points diverged: the UT needs every point",
                            points - values.len(),
                        ),
                    });
                }
                let mut column = vec![0.0; values.len()];
                for (o, (quantity, hour)) in output_names().enumerate() {
                    for (c, v) in column.iter_mut().zip(&values) {
                        *c = v[o];
                    }
                    let m = weighted_moments(&column, &weights)?;
                    tables.rows.push(StatRow {
                        method,
                        quantity,
                        hour,
                        runs: values.len() as u64,
                        mean: m.mean,
                        std: m.std(),
                        quantiles: None,
                        ci95: None,
                        std_half_width: None,
                    });
                }
                Ok(())
            }
            ReductionKind::Sampling {
                acc,
                mut pilot,
                pending,
                thresholds,
            } => {
                let acc = match acc {
                    Some(mut a) => {
                        a.push_rows(a.count(), &pending)?;
                        a
                    }
                    None if pilot.is_empty() => {
                        return Err(Error::Solver {
                            problem: format!("uncertainty study, {method}"),
                            message: "every sample diverged".into(),
                        });
                    }
                    None => accumulator(&mut pilot, &thresholds)?,
                };
                sampling_rows(method, &acc, reference, tables);
                Ok(())
            }
        }
    }
}

/// The statistics, tails and histograms of a sampling method from its accumulator.
fn sampling_rows(
    method: &'static str,
    acc: &Accumulator,
    reference: &Reference,
    tables: &mut Tables,
) {
    for (o, (quantity, hour)) in output_names().enumerate() {
        let wanted = HISTOGRAM_QUANTITIES.contains(&quantity)
            && hour.is_none_or(|h| reference.histogram_hours.contains(&h));
        if let (true, Some((lo, hi, counts)), Some(s)) = (wanted, acc.histogram(o), acc.summary(o))
        {
            tables.histograms.push(HistogramRow {
                method,
                quantity,
                hour,
                lo,
                hi,
                counts: counts.to_vec(),
                min: s.min,
                max: s.max,
            });
        }
        if quantity != "price" {
            continue;
        }
        let (Some(s), Some(levels)) = (acc.summary(o), acc.thresholds(o)) else {
            continue;
        };
        for (k, (&threshold, &(_, probability))) in levels.iter().zip(&s.exceedance).enumerate() {
            let exceed = (probability * s.count as f64).round() as u64;
            tables.tails.push(TailRow {
                method,
                hour,
                threshold,
                relative: TAIL_RELATIVE.get(k).copied(),
                runs: s.count,
                probability,
                ci95: wilson_interval(exceed, s.count),
            });
        }
    }
    for (o, (quantity, hour)) in output_names().enumerate() {
        let Some(s) = acc.summary(o) else { continue };
        let mut q = [0.0; 5];
        for (v, &p) in q.iter_mut().zip(&QUANTILES) {
            *v = acc.quantile(o, p).map_or(f64::NAN, |x| x.value);
        }
        tables.rows.push(StatRow {
            method,
            quantity,
            hour,
            runs: s.count,
            mean: s.mean,
            std: s.std,
            quantiles: Some(q),
            ci95: s.ci95,
            std_half_width: s.std_half_width,
        });
    }
}

/// A study's result from its reference, its methods' rows and reports, and the load table
/// described by `table` (levels, scale range, export error bound, seconds to build).
pub(crate) fn study_result(
    reference: Reference,
    tables: Tables,
    methods: Vec<MethodReport>,
    table: TableInfo,
) -> StudyResult {
    StudyResult {
        rows: tables.rows,
        methods,
        table_levels: table.levels,
        table_range: table.range,
        table_export_error_mw: table.export_error_mw,
        table_s: table.build_s,
        forecast_outputs: reference.forecast_outputs,
        tails: tables.tails,
        histograms: tables.histograms,
        histogram_hours: reference.histogram_hours,
    }
}

/// What a study says of its load table.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct TableInfo {
    /// Levels over all hours (0: no system-load uncertainty, no table).
    pub levels: usize,
    /// The table's scale range.
    pub range: Option<(f64, f64)>,
    /// Its measured export error bound, MW.
    pub export_error_mw: Option<f64>,
    /// Seconds it took to build.
    pub build_s: f64,
}

/// The position of (`quantity`, `hour`) among a sample's outputs ([`sample_outputs`]);
/// `hour` `None` is the day.
pub fn output_index(quantity: &str, hour: Option<u32>) -> Option<usize> {
    let q = QUANTITIES.iter().position(|&n| n == quantity)?;
    let h = match hour {
        Some(h) if (h as usize) < HOURS => h as usize,
        Some(_) => return None,
        None => HOURS,
    };
    Some(q * (HOURS + 1) + h)
}

/// The outputs of samples `indices` of the sampling method `method` with N = `opts.samples`
/// (every [`QUANTITIES`] per hour, then per day; see [`output_index`]), as (sample index,
/// values) in index order, diverged samples left out: the per-sample values a study's
/// statistics reduce.
pub fn sample_outputs(
    prepared: &mut PreparedStudy,
    market: &Market,
    cfg: &UncertaintyConfig,
    opts: &StudyOptions,
    method: Method,
    indices: std::ops::Range<u64>,
    gpu: Option<&GpuContext>,
) -> Result<Vec<(u64, Vec<f64>)>> {
    prepared.check(cfg)?;
    if method.is_unscented() {
        return Err(Error::invalid(
            "method",
            method.as_str(),
            "a sampling method (mc, qmc_sobol, lhs)",
        ));
    }
    let sampler = InputSampler::new(cfg, method, &forecast_inputs(market), opts.samples)?;
    let points = sampler.samples(indices.clone())?;
    let mut engine = prepared.engine(market, opts, gpu, method.as_str());
    let mut out = Vec::with_capacity(points.len());
    engine.evaluate(&points, &mut |k, run| {
        if let Some(values) = run.outputs {
            out.push((indices.start + k as u64, values.to_vec()));
        }
        Ok(())
    })?;
    Ok(out)
}

/// One run of a part of a sharded study ([`crate::uncertainty::shard`]): the sample index
/// within its method and what the engine made of it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PartRow {
    pub(crate) sample: u64,
    /// `None`: the run diverged.
    pub(crate) outputs: Option<[f64; OUTPUTS]>,
    pub(crate) unconverged_hours: u32,
    pub(crate) sg_load_out_of_range_hours: u32,
}

/// Evaluates one part of a sharded study: the forecast day (`method` `None`), every sigma
/// point of a UT form, or samples `range` of a sampling method with N = `opts.samples`.
/// Returns its rows in sample order and the engine's report.
pub(crate) fn evaluate_part(
    prepared: &mut PreparedStudy,
    market: &Market,
    cfg: &UncertaintyConfig,
    opts: &StudyOptions,
    gpu: Option<&GpuContext>,
    method: Option<Method>,
    range: std::ops::Range<u64>,
) -> Result<(Vec<PartRow>, MethodReport)> {
    prepared.check(cfg)?;
    let forecast = forecast_inputs(market);
    let t = Instant::now();
    let (points, clipped) = match method {
        None => (vec![forecast], 0),
        Some(m) if m.is_unscented() => {
            let form = SigmaForm::from_config(m, cfg, INPUTS)?;
            let sigma = sigma_inputs(cfg, &form, &forecast)?;
            (sigma.points, sigma.clipped)
        }
        Some(m) => {
            let sampler = InputSampler::new(cfg, m, &forecast, opts.samples)?;
            let points = sampler.samples(range.clone())?;
            (points, 0)
        }
    };
    let host_s = t.elapsed().as_secs_f64();
    let name = method.map_or("forecast", Method::as_str);
    let mut engine = prepared.engine(market, opts, gpu, name);
    engine.report.host_s += host_s;
    engine.report.clipped_inputs = clipped as u64;
    let first = if method.is_some_and(|m| !m.is_unscented()) {
        range.start
    } else {
        0
    };
    let mut rows = Vec::with_capacity(points.len());
    engine.evaluate(&points, &mut |k, run| {
        rows.push(PartRow {
            sample: first + k as u64,
            outputs: run.outputs.copied(),
            unconverged_hours: run.unconverged_hours,
            sg_load_out_of_range_hours: run.sg_load_out_of_range_hours,
        });
        Ok(())
    })?;
    Ok((rows, engine.report))
}

/// The (quantity, hour) of every output, in the order of a run's outputs.
pub(crate) fn output_names() -> impl Iterator<Item = (&'static str, Option<u32>)> {
    QUANTITIES
        .iter()
        .flat_map(|&q| (0..=HOURS).map(move |h| (q, (h < HOURS).then_some(h as u32))))
}

/// An accumulator whose histogram ranges cover the pilot samples with a margin of a
/// quarter of their range on each side (values beyond go to the overflow bins, and the
/// quantiles say so in their error bound), holding the pilot samples, which it takes.
/// `thresholds[o]` are output o's exceedance thresholds.
fn accumulator(pilot: &mut Vec<[f64; OUTPUTS]>, thresholds: &[Vec<f64>]) -> Result<Accumulator> {
    let specs = (0..OUTPUTS)
        .map(|o| {
            let (lo, hi) = pilot
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| {
                    (l.min(p[o]), h.max(p[o]))
                });
            let pad = 0.25 * (hi - lo) + 1e-9 * lo.abs().max(hi.abs()).max(1.0);
            OutputSpec {
                lo: lo - pad,
                hi: hi + pad,
                thresholds: thresholds[o].clone(),
            }
        })
        .collect();
    let mut acc = Accumulator::new(specs, BINS, EXACT_LIMIT)?;
    for p in pilot.drain(..) {
        acc.push(acc.count(), &p)?;
    }
    Ok(acc)
}

/// What the engine made of one run.
pub(crate) struct RunOutcome<'a> {
    /// Its outputs (every [`QUANTITIES`] per hour, then per day); `None` when a value was
    /// not finite (the run diverged).
    pub(crate) outputs: Option<&'a [f64; OUTPUTS]>,
    /// Its hours that did not converge within the iteration cap.
    pub(crate) unconverged_hours: u32,
    /// Its hours whose system load lay outside the load table.
    pub(crate) sg_load_out_of_range_hours: u32,
}

/// What [`Engine::evaluate`] counts of a run besides its outputs, before it hands them on.
struct RunCounts {
    /// Every output is finite.
    finite: bool,
    unconverged_hours: u32,
    sg_load_out_of_range_hours: u32,
}

/// Evaluates input vectors on the engine, chunk by chunk, handing each run's outcome to a
/// callback in input order.
pub(crate) struct Engine<'a> {
    market: &'a Market,
    table: Option<&'a LoadTable>,
    cache: &'a mut CurveCache,
    opts: &'a StudyOptions,
    gpu: Option<&'a GpuContext>,
    with_sg: bool,
    pub(crate) report: MethodReport,
}

impl Engine<'_> {
    pub(crate) fn evaluate(
        &mut self,
        points: &[[f64; INPUTS]],
        on_run: &mut dyn FnMut(usize, RunOutcome<'_>) -> Result<()>,
    ) -> Result<()> {
        for (c, chunk) in points.chunks(CHUNK_RUNS).enumerate() {
            let t = Instant::now();
            let runs: Vec<RunSpec> = chunk
                .iter()
                .map(|x| run_spec(self.market, x, self.with_sg))
                .collect();
            let batch = match self.table {
                Some(table) => {
                    Batch::from_market_with_table(self.market, &runs, self.cache, table)?
                }
                None => Batch::from_market_cached(self.market, &runs, self.cache)?,
            };
            self.report.host_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let out = run_batch(&batch, self.opts.backend, self.opts.precision, self.gpu)?;
            self.report.engine_s += t.elapsed().as_secs_f64();
            self.report.adapter = out.adapter.name.clone();
            let t = Instant::now();
            // Each run's outputs are a pure function of its records (the exact clearing
            // of its curves dominates), computed in parallel into one buffer and handed on
            // in run order, so the statistics and any error do not depend on the thread
            // count.
            let mut values = vec![0.0; batch.runs() * OUTPUTS];
            let counts: Vec<Result<RunCounts>> = values
                .par_chunks_mut(OUTPUTS)
                .enumerate()
                .map_init(
                    || [OfferCurve::fixed(0.0, 0.0), OfferCurve::fixed(0.0, 0.0)],
                    |scratch, (run, out_row)| {
                        let records = &out.records[run * HOURS..(run + 1) * HOURS];
                        let row: &mut [f64; OUTPUTS] =
                            out_row.try_into().expect("rows of OUTPUTS values");
                        let finite = run_outputs(&batch, run, records, scratch, row)?;
                        Ok(RunCounts {
                            finite: finite.is_some(),
                            unconverged_hours: records.iter().filter(|r| !r.converged).count()
                                as u32,
                            sg_load_out_of_range_hours: (0..HOURS)
                                .filter(|&h| batch.sg_load_out_of_range(run, h))
                                .count()
                                as u32,
                        })
                    },
                )
                .collect();
            for (run, (v, row)) in counts.into_iter().zip(values.chunks(OUTPUTS)).enumerate() {
                let v = v?;
                self.report
                    .add_run(v.finite, v.unconverged_hours, v.sg_load_out_of_range_hours);
                let outcome = RunOutcome {
                    outputs: v
                        .finite
                        .then(|| row.try_into().expect("rows of OUTPUTS values")),
                    unconverged_hours: v.unconverged_hours,
                    sg_load_out_of_range_hours: v.sg_load_out_of_range_hours,
                };
                on_run(c * CHUNK_RUNS + run, outcome)?;
            }
            self.report.reduce_s += t.elapsed().as_secs_f64();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offer::QuadraticUnit;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The plain bisection `clearing_exchange` ran before it confined each midpoint's
    /// search to the bracket's breakpoints: every export from `export_at`.
    fn plain_clearing(sg: CurveView<'_>, mg: CurveView<'_>, lo: f64, hi: f64) -> f64 {
        clearing_by(sg, mg, lo, hi, |ab| plain_narrow(sg, mg, lo, hi, ab))
    }

    /// The plain bisection: 200 halvings at most, `export_at` at every midpoint.
    fn plain_narrow(
        sg: CurveView<'_>,
        mg: CurveView<'_>,
        lo: f64,
        hi: f64,
        (mut a, mut b): (f64, f64),
    ) -> (f64, f64) {
        let balance = |p: f64| sg.export_at(p).clamp(lo, hi) + mg.export_at(p).clamp(lo, hi);
        for _ in 0..200 {
            let m = 0.5 * (a + b);
            if m <= a || m >= b {
                break;
            }
            if balance(m) < 0.0 {
                a = m;
            } else {
                b = m;
            }
        }
        (a, b)
    }

    /// [`clearing_exchange`], asserting that its bracket is bitwise the plain bisection's
    /// (the exchange alone can hide a difference: near zero price an export does not
    /// resolve the last halvings).
    fn checked_clearing(sg: CurveView<'_>, mg: CurveView<'_>, lo: f64, hi: f64) -> f64 {
        clearing_by(sg, mg, lo, hi, |ab| {
            let (fast, plain) = (
                narrow_clearing(sg, mg, lo, hi, ab),
                plain_narrow(sg, mg, lo, hi, ab),
            );
            assert_eq!(
                (fast.0.to_bits(), fast.1.to_bits()),
                (plain.0.to_bits(), plain.1.to_bits()),
                "bracket from {ab:?}: {fast:?} != {plain:?}"
            );
            fast
        })
    }

    /// Uniform on [lo, hi).
    fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// A random unit curve: 1 to 12 quadratic units, some nearly linear (steep,
    /// near-flat-price stretches) and some sharing a marginal cost, plus a fixed export.
    fn random_curve(rng: &mut ChaCha8Rng, fixed: f64) -> OfferCurve {
        let count = 1 + (rng.next_u64() % 12) as usize;
        let units: Vec<QuadraticUnit> = (0..count)
            .map(|_| {
                let pmin = uniform(rng, 0.0, 20.0);
                QuadraticUnit {
                    c2: if uniform(rng, 0.0, 1.0) < 0.3 {
                        1e-6
                    } else {
                        uniform(rng, 0.001, 0.5)
                    },
                    c1: uniform(rng, 0.0, 60.0).round(),
                    c0: 0.0,
                    pmin,
                    pmax: pmin + uniform(rng, 0.0, 150.0),
                }
            })
            .collect();
        OfferCurve::from_units(&units, fixed, 0.0).unwrap()
    }

    #[test]
    fn clearing_by_bracketed_search_is_the_plain_bisection() {
        // A hand case: supply x = p on [0, 100], a fixed 50 MW demand: clears at 50 MW.
        let sg = OfferCurve::new(vec![0.0, 100.0], vec![0.0, 100.0], vec![0.0, 5000.0]).unwrap();
        let mg = OfferCurve::fixed(-50.0, 0.0);
        let x = clearing_exchange(sg.view(), mg.view(), -1e3, 1e3);
        assert!((x - 50.0).abs() < 1e-9, "{x}");
        // A demand that meets a jump of the supply (two breakpoints at one price): the
        // exchange is what the demand takes there.
        let sg = OfferCurve::new(
            vec![0.0, 30.0, 30.0, 60.0],
            vec![0.0, 10.0, 80.0, 90.0],
            vec![0.0, 150.0, 2250.0, 2700.0],
        )
        .unwrap();
        let x = clearing_exchange(sg.view(), mg.view(), -1e3, 1e3);
        assert_eq!(x, 50.0);
        // Random pairs, limits inside and outside the curves' range: bitwise the plain
        // bisection.
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        for case in 0..3000 {
            let fixed = uniform(&mut rng, -50.0, 0.0);
            let sg = random_curve(&mut rng, fixed);
            let fixed = -uniform(&mut rng, 0.0, 600.0);
            let mg = random_curve(&mut rng, fixed);
            let (lo, hi) = if case % 3 == 0 {
                (-1e4, 1e4)
            } else {
                let lo = -uniform(&mut rng, 0.0, 400.0);
                (lo, lo + uniform(&mut rng, 0.0, 800.0))
            };
            let got = checked_clearing(sg.view(), mg.view(), lo, hi);
            let want = plain_clearing(sg.view(), mg.view(), lo, hi);
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "case {case}: {got} != {want}"
            );
        }
        // Clearings at prices down to 1e-300 $/MWh inside one segment of both curves: a
        // supply whose segment starts just below zero price (so that it resolves prices that
        // small) and a flat demand whose breakpoints are far away. The bracket loses its
        // breakpoints after a few halvings, and the doubles near zero are so fine that the
        // 200-halving cap, not adjacent prices, ends the search there.
        for case in 0..2000 {
            let start = -10f64.powf(uniform(&mut rng, -300.0, -1.0));
            let top = 10f64.powf(uniform(&mut rng, -1.0, 2.0));
            let sg = OfferCurve::new(
                vec![start, top],
                vec![0.0, 10f64.powf(uniform(&mut rng, -2.0, 2.0))],
                vec![0.0, 1.0],
            )
            .unwrap();
            let demand = 10f64.powf(uniform(&mut rng, -300.0, 0.0));
            let mg =
                OfferCurve::new(vec![-1e4, 1e4], vec![-demand, -demand], vec![0.0, 0.0]).unwrap();
            let (lo, hi) = if case % 2 == 0 {
                (-1e4, 1e4)
            } else {
                (-1e4, 0.5 * demand)
            };
            let got = checked_clearing(sg.view(), mg.view(), lo, hi);
            let want = plain_clearing(sg.view(), mg.view(), lo, hi);
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "near zero, case {case}: {got} != {want}"
            );
        }
    }

    /// [`bisect_by_boundary`] as first written: every halving made.
    fn bisect_by_boundary_plain(
        mut a: f64,
        mut b: f64,
        not_short: u64,
        steps: usize,
    ) -> (f64, f64) {
        for _ in 0..steps {
            match halve_by_boundary(a, b, not_short) {
                Some(ab) => (a, b) = ab,
                None => break,
            }
        }
        (a, b)
    }

    #[test]
    fn bisection_by_boundary_skips_its_halvings_bit_for_bit() {
        // Hand cases: in [1, 2] the doubles are 2^-52 apart, so 52 halvings reach any
        // boundary; 51 do not, and then the halvings are made.
        let one = order_key(1.0);
        let at = |k: u64| from_order_key(k);
        assert_eq!(halvings_to_adjacent(1.0, 2.0), Some(52));
        assert_eq!(halvings_to_adjacent(-2.0, -1.0), Some(52));
        assert_eq!(halvings_to_adjacent(1.0, at(one + 1)), Some(0));
        assert_eq!(halvings_to_adjacent(1.0, at(one + 5)), Some(3));
        assert_eq!(halvings_to_adjacent(1.0, 2.5), None);
        assert_eq!(halvings_to_adjacent(-1.0, 1.0), None);
        assert_eq!(halvings_to_adjacent(0.0, 1.0), None);
        assert_eq!(halvings_to_adjacent(f64::MIN_POSITIVE / 2.0, 1.0), None);
        assert_eq!(halvings_to_adjacent(1.0, f64::INFINITY), None);
        assert_eq!(halvings_to_adjacent(2.0, 1.0), None);
        let b = one + 12_345;
        assert_eq!(bisect_by_boundary(1.0, 2.0, b, 52), (at(b - 1), at(b)));
        assert_eq!(
            bisect_by_boundary(1.0, 2.0, b, 51),
            bisect_by_boundary_plain(1.0, 2.0, b, 51)
        );
        assert_ne!(
            bisect_by_boundary_plain(1.0, 2.0, b, 51),
            (at(b - 1), at(b))
        );

        // Random brackets of every kind: within a binade, across several, of either sign,
        // around zero, among subnormals, near overflow; boundaries anywhere inside; caps
        // from none to more than needed.
        let mut rng = ChaCha8Rng::seed_from_u64(23);
        let mut skipped = 0;
        let mut capped = 0;
        for case in 0..200_000 {
            let magnitude = |rng: &mut ChaCha8Rng| match rng.next_u64() % 4 {
                0 => uniform(rng, 0.5, 2.0),
                1 => 2f64.powi((rng.next_u64() % 80) as i32 - 40) * uniform(rng, 1.0, 2.0),
                2 => f64::from_bits(rng.next_u64() >> 1),
                _ => f64::from_bits(rng.next_u64() % (1 << 54)),
            };
            let x = magnitude(&mut rng);
            let y = match rng.next_u64() % 4 {
                // A few doubles away, or within a factor of two, or anywhere.
                0 => from_order_key(order_key(x) + 1 + rng.next_u64() % 1000),
                1 => x * uniform(&mut rng, 1.0, 2.0),
                2 => 2.0 * x,
                _ => magnitude(&mut rng),
            };
            let (x, y) = match rng.next_u64() % 3 {
                0 => (x, y),
                1 => (-x, -y),
                _ => (-x, y),
            };
            let (a, b) = (x.min(y), x.max(y));
            if !(a < b && a.is_finite() && b.is_finite()) {
                continue;
            }
            let (ka, kb) = (order_key(a), order_key(b));
            let not_short = ka + 1 + rng.next_u64() % (kb - ka);
            let steps = (rng.next_u64() % 201) as usize;
            let got = bisect_by_boundary(a, b, not_short, steps);
            let want = bisect_by_boundary_plain(a, b, not_short, steps);
            assert_eq!(
                (got.0.to_bits(), got.1.to_bits()),
                (want.0.to_bits(), want.1.to_bits()),
                "case {case}: ({a:e}, {b:e}) at {not_short}, {steps} halvings"
            );
            let adjacent = (from_order_key(not_short - 1), from_order_key(not_short));
            if halvings_to_adjacent(a, b).is_some_and(|k| k <= steps) {
                skipped += 1;
            } else if want != adjacent {
                capped += 1;
            }
        }
        // Both paths are exercised: brackets answered without their halvings, and
        // brackets the cap left wider than two adjacent doubles.
        assert!(skipped > 40_000, "{skipped} skipped from the start");
        assert!(capped > 10_000, "{capped} left wide by the cap");
    }

    #[test]
    fn wilson_interval_matches_known_values() {
        // 0 of 10: the upper end is z^2 / (n + z^2); 5 of 10: statsmodels'
        // proportion_confint(5, 10, method="wilson") = (0.236593..., 0.763406...).
        let (lo, hi) = wilson_interval(0, 10);
        assert_eq!(lo, 0.0);
        assert!((hi - Z_95 * Z_95 / (10.0 + Z_95 * Z_95)).abs() < 1e-15);
        let (lo, hi) = wilson_interval(5, 10);
        assert!((lo - 0.236593090512564).abs() < 1e-14, "{lo}");
        assert!((hi - 0.7634069094874361).abs() < 1e-14, "{hi}");
        let (lo, hi) = wilson_interval(10, 10);
        assert!((lo - 0.7224672001371107).abs() < 1e-14 && hi == 1.0);
    }

    #[test]
    fn output_index_follows_the_output_order() {
        let names: Vec<_> = output_names().collect();
        for (o, (q, h)) in names.iter().enumerate() {
            assert_eq!(output_index(q, *h), Some(o));
        }
        assert_eq!(names.len(), OUTPUTS);
        assert_eq!(output_index("price", Some(24)), None);
        assert_eq!(output_index("nothing", None), None);
    }
}
