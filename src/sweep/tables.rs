//! The two Arrow tables of a sweep part: `runs` (one row per run: its parameters and
//! day-level results) and `run_hours` (one row per run and hour).
//!
//! Both schemas are fixed: every sweepable parameter has a column whether it was swept or
//! not (an unswept one holds the base value), so datasets of different sweeps share one
//! schema. `pcc_bus` is not a column: it is the hive partition (`pcc_bus=7/`). Counts and
//! indices are signed 64-bit columns ([`crate::output::integers`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use rayon::prelude::*;

use crate::engine::{BatchOutputs, HourRecord, RunSummary};
use crate::error::{Error, Result};
use crate::ledger::{Hash, settlement_head};
use crate::output::integers::{INT, int_array};
use crate::rci::StepRule;
use crate::sweep::plan::PlannedRun;

/// Schema-level metadata key naming the engine that computed a file (`cpu-f64`,
/// `gpu-f32`, `gpu-f64`).
pub const ENGINE_KEY: &str = "p2pmarket.engine";

/// A non-null field with `unit` and `description` metadata (as in the run's tables).
fn field(name: &str, data_type: DataType, unit: &str, description: &str) -> Field {
    Field::new(name, data_type, false).with_metadata(HashMap::from([
        ("unit".to_string(), unit.to_string()),
        ("description".to_string(), description.to_string()),
    ]))
}

/// `(name, type, unit, description)` of every `runs` column, in order.
const RUNS_COLUMNS: [(&str, DataType, &str, &str); 27] = [
    (
        "run",
        INT,
        "",
        "global run index, grid_point * samples + sample",
    ),
    ("part", INT, "", "part number within the pcc_bus partition"),
    (
        "grid_point",
        INT,
        "",
        "index of the grid point in the cartesian product",
    ),
    (
        "sample",
        INT,
        "",
        "index of the uniform draw at the grid point",
    ),
    (
        "load_scale",
        DataType::Float64,
        "",
        "factor on the base system load",
    ),
    (
        "renewable_scale",
        DataType::Float64,
        "",
        "factor on the microgrid renewables",
    ),
    (
        "mg_load_scale",
        DataType::Float64,
        "",
        "factor on the microgrid load",
    ),
    (
        "rci_chi",
        DataType::Float64,
        "",
        "consensus weight chi, eq. (31)-(32)",
    ),
    (
        "rci_kappa",
        DataType::Float64,
        "($/MWh)/MW",
        "innovation step kappa",
    ),
    (
        "rci_xi",
        DataType::Float64,
        "($/MWh)/MW",
        "dual step xi, eq. (33)-(36)",
    ),
    (
        "rci_step_rule",
        DataType::Utf8,
        "",
        "innovation step rule: constant, diminishing or newton",
    ),
    (
        "rci_price_tol",
        DataType::Float64,
        "$/MWh",
        "price stop tolerance, eq. (43)",
    ),
    (
        "rci_power_tol",
        DataType::Float64,
        "MW",
        "power stop tolerance, eq. (44)",
    ),
    (
        "rci_balance_tol",
        DataType::Float64,
        "MW",
        "trade-balance stop tolerance",
    ),
    ("rci_max_iterations", INT, "", "iteration cap"),
    (
        "converged_hours",
        INT,
        "h",
        "hours whose negotiation met every stop rule",
    ),
    ("iterations_max", INT, "", "most RCI iterations of any hour"),
    (
        "iterations_mean",
        DataType::Float64,
        "",
        "RCI iterations, mean over the hours",
    ),
    (
        "price_mean",
        DataType::Float64,
        "$/MWh",
        "market price, mean over the hours",
    ),
    (
        "price_min",
        DataType::Float64,
        "$/MWh",
        "lowest hourly market price",
    ),
    (
        "price_max",
        DataType::Float64,
        "$/MWh",
        "highest hourly market price",
    ),
    (
        "exchange_mwh",
        DataType::Float64,
        "MWh",
        "net energy smart grid -> microgrid over the day",
    ),
    (
        "smart_grid_cost",
        DataType::Float64,
        "$",
        "smart grid's P2P operating cost over the day",
    ),
    (
        "microgrid_cost",
        DataType::Float64,
        "$",
        "microgrid's P2P operating cost over the day",
    ),
    (
        "p2p_total_cost",
        DataType::Float64,
        "$",
        "smart_grid_cost + microgrid_cost",
    ),
    (
        "max_abs_balance",
        DataType::Float64,
        "MW",
        "largest final trade imbalance |sum of exports| of any hour",
    ),
    (
        "settlement_head",
        DataType::Utf8,
        "",
        "SHA-256 head of the run's hourly settlement chain over its run_hours price and \
         exchange_mw (ledger::chain), 64 lower-case hex digits",
    ),
];

/// `(name, type, unit, description)` of the columns an attack sweep's `runs` table adds
/// after [`RUNS_COLUMNS`]: the run's attack, then its outcome in the attacked hour against
/// the attack-free twin (the same run without the attack).
const ATTACK_COLUMNS: [(&str, DataType, &str, &str); 18] = [
    (
        "attack_variable",
        DataType::Utf8,
        "",
        "attacked value: chi, price, power, dual_upper, dual_lower, slope or gap",
    ),
    (
        "attack_agent",
        INT,
        "",
        "target agent: 0 = the smart grid, 1 = the microgrid",
    ),
    ("attack_hour", INT, "h", "the attacked hour"),
    (
        "attack_first_iteration",
        INT,
        "",
        "first attacked message iteration",
    ),
    (
        "attack_duration",
        INT,
        "",
        "attacked iterations; 0 = to the end of the negotiation",
    ),
    (
        "attack_size",
        DataType::Float64,
        "unit of the variable",
        "size of the injected c",
    ),
    (
        "attack_shape",
        DataType::Utf8,
        "",
        "how c evolves: constant, ramp, uniform or sign",
    ),
    (
        "attack_defence",
        DataType::Utf8,
        "",
        "undefended or defended (the ledger rejects every altered message)",
    ),
    (
        "attack_converged",
        DataType::Boolean,
        "",
        "the attacked hour's negotiation met every stop rule",
    ),
    (
        "attack_iterations",
        INT,
        "",
        "RCI iterations of the attacked hour",
    ),
    (
        "attack_tampered",
        INT,
        "",
        "messages of the attacked hour the attack altered (at least one bit)",
    ),
    (
        "attack_rejected",
        INT,
        "",
        "altered messages the ledger rejected (all when defended, none otherwise)",
    ),
    (
        "free_iterations",
        INT,
        "",
        "RCI iterations of the attacked hour without the attack",
    ),
    (
        "free_converged",
        DataType::Boolean,
        "",
        "the attacked hour converged without the attack",
    ),
    (
        "deviation",
        DataType::Float64,
        "$/MWh or MW",
        "max of |price - price_free| and, over agents, |power - power_free| in the attacked \
         hour (price: the market price); +inf when a value is not finite",
    ),
    (
        "deviation_rel",
        DataType::Float64,
        "",
        "the same maximum with each term divided by max(|free value|, 1)",
    ),
    (
        "price_bias",
        DataType::Float64,
        "$/MWh",
        "market price minus the attack-free market price, attacked hour",
    ),
    (
        "money_moved",
        DataType::Float64,
        "$/h",
        "price x exchange_mw minus the attack-free price x exchange_mw, attacked hour",
    ),
];

/// `(name, type, unit, description)` of every `run_hours` column, in order.
const RUN_HOURS_COLUMNS: [(&str, DataType, &str, &str); 12] = [
    ("run", INT, "", "global run index"),
    ("hour", INT, "h", "hour of the day, 0..24"),
    (
        "price",
        DataType::Float64,
        "$/MWh",
        "market price: mean of the agents' local prices",
    ),
    (
        "exchange_mw",
        DataType::Float64,
        "MW",
        "exchange smart grid -> microgrid (> 0: the microgrid buys)",
    ),
    (
        "smart_grid_cost",
        DataType::Float64,
        "$/h",
        "smart grid's P2P operating cost",
    ),
    (
        "microgrid_cost",
        DataType::Float64,
        "$/h",
        "microgrid's P2P operating cost (0 when disabled)",
    ),
    ("iterations", INT, "", "RCI iterations performed"),
    (
        "converged",
        DataType::Boolean,
        "",
        "every stop rule held before the iteration cap",
    ),
    (
        "residual_price",
        DataType::Float64,
        "$/MWh",
        "final max price change (eq. 43)",
    ),
    (
        "residual_power",
        DataType::Float64,
        "MW",
        "final max power change (eq. 44)",
    ),
    (
        "residual_dual",
        DataType::Float64,
        "$/MWh",
        "final max dual change (eq. 45)",
    ),
    (
        "residual_balance",
        DataType::Float64,
        "MW",
        "final trade imbalance |sum of exports|",
    ),
];

fn schema_of(columns: &[(&str, DataType, &str, &str)]) -> Schema {
    Schema::new(
        columns
            .iter()
            .map(|(n, t, u, d)| field(n, t.clone(), u, d))
            .collect::<Vec<_>>(),
    )
}

/// Schema of the `runs` table (without the engine metadata a written file carries).
pub fn runs_schema() -> SchemaRef {
    Arc::new(schema_of(&RUNS_COLUMNS))
}

/// Schema of an attack sweep's `runs` table: [`runs_schema`]'s columns, then the attack
/// columns (see [`AttackFigures`]).
pub fn attack_runs_schema() -> SchemaRef {
    let columns: Vec<_> = RUNS_COLUMNS
        .iter()
        .chain(&ATTACK_COLUMNS)
        .cloned()
        .collect();
    Arc::new(schema_of(&columns))
}

/// The `runs` schema of a sweep with (`attacks`) or without attacks.
pub fn runs_schema_for(attacks: bool) -> SchemaRef {
    if attacks {
        attack_runs_schema()
    } else {
        runs_schema()
    }
}

/// Schema of the `run_hours` table (without the engine metadata a written file carries).
pub fn run_hours_schema() -> SchemaRef {
    Arc::new(schema_of(&RUN_HOURS_COLUMNS))
}

fn with_engine(schema: SchemaRef, engine: &str) -> SchemaRef {
    let meta = HashMap::from([(ENGINE_KEY.to_string(), engine.to_string())]);
    Arc::new(schema.as_ref().clone().with_metadata(meta))
}

/// The name `rci_step_rule` holds (the TOML spelling).
pub fn step_rule_name(rule: StepRule) -> &'static str {
    match rule {
        StepRule::Constant => "constant",
        StepRule::Diminishing => "diminishing",
        StepRule::Newton => "newton",
    }
}

fn output_err(context: &str) -> impl Fn(arrow::error::ArrowError) -> Error + '_ {
    move |e| Error::Output {
        context: context.to_string(),
        message: e.to_string(),
    }
}

/// The `runs` table's name in errors.
const RUNS: &str = "runs table";
/// The `run_hours` table's name in errors.
const RUN_HOURS: &str = "run_hours table";

fn f64s(v: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(v))
}

/// Day-level figures of one run, reduced over the hours in hour order.
struct DayFigures {
    converged_hours: u32,
    iterations_max: u32,
    iterations_mean: f64,
    price_mean: f64,
    price_min: f64,
    price_max: f64,
    exchange_mwh: f64,
    smart_grid_cost: f64,
    microgrid_cost: f64,
    max_abs_balance: f64,
}

/// A run's [`RunSummary`] over its `hours` hours (the engine's reduction, which a device
/// can also compute) as the `runs` table's columns.
fn day_figures(s: &RunSummary, hours: usize) -> DayFigures {
    let n = hours.max(1) as f64;
    DayFigures {
        converged_hours: s.converged_hours,
        iterations_max: s.iterations_max,
        iterations_mean: f64::from(s.iterations) / n,
        price_mean: s.price_sum / n,
        price_min: s.price_min,
        price_max: s.price_max,
        // One-hour steps: MW summed over hours is MWh.
        exchange_mwh: s.exchange_mwh,
        smart_grid_cost: s.agent_cost[0],
        microgrid_cost: s.agent_cost[1],
        max_abs_balance: s.max_abs_balance,
    }
}

/// The outcome of an attacked run in its attacked hour, against its attack-free twin (the
/// values of the attack columns after the parameters).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttackFigures {
    /// The attacked hour converged.
    pub converged: bool,
    /// Its iterations.
    pub iterations: u32,
    /// Messages altered.
    pub tampered: u32,
    /// Altered messages rejected.
    pub rejected: u32,
    /// The twin's iterations in that hour.
    pub free_iterations: u32,
    /// The twin converged in that hour.
    pub free_converged: bool,
    /// max(|price - price_free|, max over agents |power - power_free|); +inf when a value
    /// is not finite.
    pub deviation: f64,
    /// The same with each term relative to max(|free value|, 1).
    pub deviation_rel: f64,
    /// price - price_free, $/MWh.
    pub price_bias: f64,
    /// price x exchange - price_free x exchange_free, $/h.
    pub money_moved: f64,
}

impl AttackFigures {
    /// The figures of the attacked hour's record `attacked` against the twin's `free`, for
    /// `agents` agents.
    pub fn of(attacked: &HourRecord, free: &HourRecord, agents: usize) -> Self {
        let terms = std::iter::once((attacked.price, free.price)).chain(
            attacked.agent_power[..agents]
                .iter()
                .copied()
                .zip(free.agent_power[..agents].iter().copied()),
        );
        let (mut deviation, mut deviation_rel) = (0.0_f64, 0.0_f64);
        for (x, x_free) in terms {
            let d = (x - x_free).abs();
            // `f64::max` would drop a NaN: a diverged value is an infinite deviation.
            if !d.is_finite() {
                (deviation, deviation_rel) = (f64::INFINITY, f64::INFINITY);
                break;
            }
            deviation = deviation.max(d);
            deviation_rel = deviation_rel.max(d / x_free.abs().max(1.0));
        }
        AttackFigures {
            converged: attacked.converged,
            iterations: attacked.iterations,
            tampered: attacked.tampered,
            rejected: attacked.rejected,
            free_iterations: free.iterations,
            free_converged: free.converged,
            deviation,
            deviation_rel,
            price_bias: attacked.price - free.price,
            money_moved: attacked.price * attacked.exchange_mw - free.price * free.exchange_mw,
        }
    }
}

/// The name of an attack shape (the TOML spelling).
pub fn shape_name(shape: crate::attack::AttackShape) -> &'static str {
    use crate::attack::AttackShape;
    match shape {
        AttackShape::Constant => "constant",
        AttackShape::Ramp => "ramp",
        AttackShape::Uniform => "uniform",
        AttackShape::Sign => "sign",
    }
}

/// The name of a defence mode (the TOML spelling).
pub fn defence_name(defence: crate::attack::Defence) -> &'static str {
    match defence {
        crate::attack::Defence::Undefended => "undefended",
        crate::attack::Defence::Defended => "defended",
    }
}

/// What a part's `runs` rows need of its engine outputs: each run's [`RunSummary`] and
/// settlement head ([`settlement_head`]), reduced from the hour records on the host
/// ([`RunResults::of_records`]) or on the device
/// ([`crate::engine::GpuContext::run_summaries_with_heads`]); either gives the same rows.
#[derive(Debug, Clone, Default)]
pub struct RunResults {
    /// Hours per run.
    pub hours: usize,
    /// One summary per run, in run order.
    pub summaries: Vec<RunSummary>,
    /// One settlement head per run, in run order.
    pub heads: Vec<Hash>,
}

impl RunResults {
    /// The results of `runs` from their hour records: `runs[k]` is batch run `k` of
    /// `outputs`.
    pub fn of_records(runs: &[PlannedRun], outputs: &BatchOutputs) -> Result<Self> {
        check_sizes(runs, outputs)?;
        let h = outputs.hours;
        let hours = |k: usize| &outputs.records[k * h..(k + 1) * h];
        // In parallel (in run order): 49 SHA-256 blocks per run would otherwise be a serial
        // step between two parallel batches.
        let heads = (0..runs.len())
            .into_par_iter()
            .map(|k| {
                settlement_head(
                    runs[k].run,
                    hours(k).iter().map(|x| (x.price, x.exchange_mw)),
                )
            })
            .collect();
        Ok(RunResults {
            hours: h,
            summaries: (0..runs.len()).map(|k| RunSummary::of(hours(k))).collect(),
            heads,
        })
    }
}

/// The `runs` rows of one part: `runs[k]` is batch run `k` of `outputs`; an attack
/// sweep's rows carry `attacks[k]`, the figures of run `k` (see [`attack_runs_schema`]).
pub fn runs_table(
    part: u32,
    runs: &[PlannedRun],
    outputs: &BatchOutputs,
    engine: &str,
    attacks: Option<&[AttackFigures]>,
) -> Result<RecordBatch> {
    runs_table_of(
        part,
        runs,
        &RunResults::of_records(runs, outputs)?,
        engine,
        attacks,
    )
}

/// The `runs` rows of one part from its runs' results: `results` holds run `k`'s summary
/// and head at `k`.
pub fn runs_table_of(
    part: u32,
    runs: &[PlannedRun],
    results: &RunResults,
    engine: &str,
    attacks: Option<&[AttackFigures]>,
) -> Result<RecordBatch> {
    if results.summaries.len() != runs.len() || results.heads.len() != runs.len() {
        return Err(Error::Output {
            context: "sweep part".into(),
            message: format!(
                "{} summaries and {} heads for {} runs",
                results.summaries.len(),
                results.heads.len(),
                runs.len()
            ),
        });
    }
    let days: Vec<DayFigures> = results
        .summaries
        .iter()
        .map(|s| day_figures(s, results.hours))
        .collect();
    let heads = results.heads.iter().map(hex::encode);
    let v = |g: fn(&PlannedRun) -> f64| f64s(runs.iter().map(g));
    let d = |g: fn(&DayFigures) -> f64| f64s(days.iter().map(g));
    let mut arrays: Vec<ArrayRef> = vec![
        int_array(RUNS, runs.iter().map(|r| r.run))?,
        int_array(RUNS, runs.iter().map(|_| part))?,
        int_array(RUNS, runs.iter().map(|r| r.grid_point))?,
        int_array(RUNS, runs.iter().map(|r| r.sample))?,
        v(|r| r.values.load_scale),
        v(|r| r.values.renewable_scale),
        v(|r| r.values.mg_load_scale),
        v(|r| r.values.rci.chi),
        v(|r| r.values.rci.kappa),
        v(|r| r.values.rci.xi),
        Arc::new(StringArray::from_iter_values(
            runs.iter().map(|r| step_rule_name(r.values.rci.step_rule)),
        )),
        v(|r| r.values.rci.price_tol),
        v(|r| r.values.rci.power_tol),
        v(|r| r.values.rci.balance_tol),
        int_array(RUNS, runs.iter().map(|r| r.values.rci.max_iterations))?,
        int_array(RUNS, days.iter().map(|f| f.converged_hours))?,
        int_array(RUNS, days.iter().map(|f| f.iterations_max))?,
        d(|f| f.iterations_mean),
        d(|f| f.price_mean),
        d(|f| f.price_min),
        d(|f| f.price_max),
        d(|f| f.exchange_mwh),
        d(|f| f.smart_grid_cost),
        d(|f| f.microgrid_cost),
        d(|f| f.smart_grid_cost + f.microgrid_cost),
        d(|f| f.max_abs_balance),
        Arc::new(StringArray::from_iter_values(heads)),
    ];
    let Some(figures) = attacks else {
        return RecordBatch::try_new(with_engine(runs_schema(), engine), arrays)
            .map_err(output_err(RUNS));
    };
    let params: Vec<crate::sweep::spec::RunAttack> = runs
        .iter()
        .map(|r| r.values.attack.map(|(a, _)| a))
        .collect::<Option<_>>()
        .filter(|p: &Vec<_>| p.len() == figures.len())
        .ok_or_else(|| Error::Output {
            context: RUNS.into(),
            message: "an attack sweep's part without an attack or its figures for every run".into(),
        })?;
    let a = |g: fn(&AttackFigures) -> f64| f64s(figures.iter().map(g));
    let bools = |g: fn(&AttackFigures) -> bool| -> ArrayRef {
        Arc::new(BooleanArray::from(
            figures.iter().map(g).collect::<Vec<bool>>(),
        ))
    };
    arrays.extend([
        Arc::new(StringArray::from_iter_values(
            params.iter().map(|p| p.variable.name()),
        )) as ArrayRef,
        int_array(RUNS, params.iter().map(|p| p.agent))?,
        int_array(RUNS, params.iter().map(|p| p.hour))?,
        int_array(RUNS, params.iter().map(|p| p.first_iteration))?,
        int_array(RUNS, params.iter().map(|p| p.duration))?,
        f64s(params.iter().map(|p| p.size)),
        Arc::new(StringArray::from_iter_values(
            params.iter().map(|p| shape_name(p.shape)),
        )),
        Arc::new(StringArray::from_iter_values(
            params.iter().map(|p| defence_name(p.defence)),
        )),
        bools(|f| f.converged),
        int_array(RUNS, figures.iter().map(|f| f.iterations))?,
        int_array(RUNS, figures.iter().map(|f| f.tampered))?,
        int_array(RUNS, figures.iter().map(|f| f.rejected))?,
        int_array(RUNS, figures.iter().map(|f| f.free_iterations))?,
        bools(|f| f.free_converged),
        a(|f| f.deviation),
        a(|f| f.deviation_rel),
        a(|f| f.price_bias),
        a(|f| f.money_moved),
    ]);
    RecordBatch::try_new(with_engine(attack_runs_schema(), engine), arrays)
        .map_err(output_err(RUNS))
}

/// The `run_hours` rows of one part, ordered by (run, hour). A part holds a million
/// rows or more, and each column is a pass over the hour records: the columns are built
/// in parallel (each is the same array whatever the thread count).
pub fn run_hours_table(
    runs: &[PlannedRun],
    outputs: &BatchOutputs,
    engine: &str,
) -> Result<RecordBatch> {
    check_sizes(runs, outputs)?;
    let h = outputs.hours;
    let recs = &outputs.records;
    let r = |g: fn(&HourRecord) -> f64| -> Column<'_> {
        Box::new(move || Ok(f64s(recs.iter().map(g))))
    };
    let columns: Vec<Column<'_>> = vec![
        Box::new(|| {
            int_array(
                RUN_HOURS,
                runs.iter().flat_map(|run| std::iter::repeat_n(run.run, h)),
            )
        }),
        Box::new(|| int_array(RUN_HOURS, (0..recs.len()).map(|k| k % h))),
        r(|x| x.price),
        r(|x| x.exchange_mw),
        r(|x| x.agent_cost[0]),
        r(|x| x.agent_cost[1]),
        Box::new(|| int_array(RUN_HOURS, recs.iter().map(|x| x.iterations))),
        Box::new(|| {
            Ok(Arc::new(BooleanArray::from(
                recs.iter().map(|x| x.converged).collect::<Vec<bool>>(),
            )) as ArrayRef)
        }),
        r(|x| x.residuals.price_change),
        r(|x| x.residuals.power_change),
        r(|x| x.residuals.dual_change),
        r(|x| x.residuals.balance),
    ];
    let arrays = columns
        .into_par_iter()
        .map(|build| build())
        .collect::<Result<Vec<ArrayRef>>>()?;
    RecordBatch::try_new(with_engine(run_hours_schema(), engine), arrays)
        .map_err(output_err(RUN_HOURS))
}

/// Builds one column of a table (see [`run_hours_table`]).
type Column<'a> = Box<dyn Fn() -> Result<ArrayRef> + Send + Sync + 'a>;

fn check_sizes(runs: &[PlannedRun], outputs: &BatchOutputs) -> Result<()> {
    if outputs.records.len() != runs.len() * outputs.hours {
        return Err(Error::Output {
            context: "sweep part".into(),
            message: format!(
                "the backend returned {} records for {} runs x {} hours",
                outputs.records.len(),
                runs.len(),
                outputs.hours
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_have_unique_documented_columns() {
        for schema in [runs_schema(), attack_runs_schema(), run_hours_schema()] {
            let mut names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n);
            assert!(!names.contains(&"pcc_bus"), "pcc_bus is the hive partition");
            for f in schema.fields() {
                assert!(!f.is_nullable());
                assert!(
                    !f.data_type().is_unsigned_integer(),
                    "{} is {}: readers subtract counts and indices",
                    f.name(),
                    f.data_type()
                );
                assert!(!f.metadata()["description"].is_empty(), "{}", f.name());
            }
        }
    }
}
