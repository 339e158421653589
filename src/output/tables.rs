//! Arrow tables of a day: one row per hour (`hourly`), one row per kept iterate
//! (`trajectories`), and the total cost along the iterations (Fig. 9 of the paper).
//!
//! Every column is described once, in a column spec that produces both the schema and the
//! array, so the two cannot drift apart. Each field carries `unit` and `description`
//! metadata, which also travel into the Parquet files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, ListBuilder, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::market::{AGENT_NAMES, DayResult, HourResult};
use crate::rci::TrajectoryPoint;

/// How a column's values are read from an hour.
/// Reads a list of names of an hour.
type NamesOf = dyn Fn(&HourResult) -> Vec<String>;

enum Getter {
    F64(Box<dyn Fn(&HourResult) -> f64>),
    /// A count or index, written as a signed 64-bit integer (readers subtract them).
    Int(Box<dyn Fn(&HourResult) -> u32>),
    Bool(Box<dyn Fn(&HourResult) -> bool>),
    /// A list of names; an empty list for none.
    Names(Box<NamesOf>),
}

/// One column of the hourly table: name, unit, description and how to read it.
struct Column {
    name: String,
    unit: &'static str,
    description: String,
    get: Getter,
}

impl Column {
    fn f64(
        name: impl Into<String>,
        unit: &'static str,
        description: impl Into<String>,
        get: impl Fn(&HourResult) -> f64 + 'static,
    ) -> Self {
        Column {
            name: name.into(),
            unit,
            description: description.into(),
            get: Getter::F64(Box::new(get)),
        }
    }

    fn data_type(&self) -> DataType {
        match self.get {
            Getter::F64(_) => DataType::Float64,
            Getter::Int(_) => DataType::Int64,
            Getter::Bool(_) => DataType::Boolean,
            Getter::Names(_) => names_type(),
        }
    }

    fn field(&self) -> Field {
        field(&self.name, self.data_type(), self.unit, &self.description)
    }

    fn array(&self, hours: &[HourResult]) -> ArrayRef {
        match &self.get {
            Getter::F64(g) => Arc::new(Float64Array::from_iter_values(hours.iter().map(g))),
            Getter::Int(g) => Arc::new(Int64Array::from_iter_values(
                hours.iter().map(|h| i64::from(g(h))),
            )),
            Getter::Bool(g) => Arc::new(BooleanArray::from(
                hours.iter().map(g).collect::<Vec<bool>>(),
            )),
            Getter::Names(g) => {
                let mut b = ListBuilder::new(StringBuilder::new())
                    .with_field(Arc::new(Field::new("item", DataType::Utf8, false)));
                for h in hours {
                    for name in g(h) {
                        b.values().append_value(name);
                    }
                    b.append(true);
                }
                Arc::new(b.finish())
            }
        }
    }
}

/// The hour convention of every table: hour `h` is the market hour from `h:00` to
/// `h+1:00`, numbered 0..=23 (as in MATPOWER-style hourly studies and the figures).
pub const HOUR_DESCRIPTION: &str = "market hour 0..=23: hour h runs from h:00 to h+1:00";

/// The type of a list-of-names column: a list of non-null strings.
fn names_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, false)))
}

/// A non-null field with `unit` and `description` metadata.
fn field(name: &str, data_type: DataType, unit: &str, description: &str) -> Field {
    Field::new(name, data_type, false).with_metadata(HashMap::from([
        ("unit".to_string(), unit.to_string()),
        ("description".to_string(), description.to_string()),
    ]))
}

/// P2P exchange deviation from the hourly reference, % of max(|reference|, 1 MW) (the
/// same definition as `Summary::max_power_deviation_pct`).
fn power_deviation_pct(h: &HourResult) -> f64 {
    let r = h.hourly_reference.exchange_mw;
    100.0 * (h.p2p.exchange_mw - r).abs() / r.abs().max(1.0)
}

/// The hourly table's columns, in order.
fn hourly_columns() -> Vec<Column> {
    let mut cols = vec![
        Column {
            name: "hour".into(),
            unit: "h",
            description: HOUR_DESCRIPTION.into(),
            get: Getter::Int(Box::new(|h| h.hour as u32)),
        },
        Column::f64("system_load_mw", "MW", "smart-grid system load", |h| {
            h.system_load_mw
        }),
        Column::f64("price", "$/MWh", "P2P market price", |h| h.p2p.price),
        Column::f64(
            "exchange_mw",
            "MW",
            "P2P exchange smart grid -> microgrid (> 0: the microgrid buys)",
            |h| h.p2p.exchange_mw,
        ),
    ];
    for (a, name) in AGENT_NAMES.iter().enumerate() {
        // A disabled microgrid has no agent: its cost is 0, not a missing value, so the
        // columns stay non-null and sums over them stay meaningful.
        cols.push(Column::f64(
            format!("{name}_cost"),
            "$/h",
            format!("{name}'s P2P operating cost"),
            move |h| h.p2p.agent_costs.get(a).copied().unwrap_or(0.0),
        ));
    }
    cols.extend([
        Column {
            name: "converged".into(),
            unit: "",
            description: "the negotiation met every stop rule before the iteration cap".into(),
            get: Getter::Bool(Box::new(|h| h.p2p.outcome.converged)),
        },
        Column {
            name: "iterations".into(),
            unit: "",
            description: "RCI iterations performed".into(),
            get: Getter::Int(Box::new(|h| h.p2p.outcome.iterations)),
        },
        Column::f64(
            "residual_price",
            "$/MWh",
            "final max price change (eq. 43)",
            |h| h.p2p.outcome.residuals.price_change,
        ),
        Column::f64(
            "residual_power",
            "MW",
            "final max power change (eq. 44)",
            |h| h.p2p.outcome.residuals.power_change,
        ),
        Column::f64(
            "residual_dual",
            "$/MWh",
            "final max dual change (eq. 45)",
            |h| h.p2p.outcome.residuals.dual_change,
        ),
        Column::f64(
            "residual_balance",
            "MW",
            "final trade imbalance |sum of exports|",
            |h| h.p2p.outcome.residuals.balance,
        ),
        Column::f64(
            "hourly_ref_price",
            "$/MWh",
            "hourly reference: PCC price",
            |h| h.hourly_reference.price,
        ),
        Column::f64(
            "hourly_ref_exchange_mw",
            "MW",
            "hourly reference: exchange smart grid -> microgrid",
            |h| h.hourly_reference.exchange_mw,
        ),
        Column::f64(
            "hourly_ref_smart_grid_cost",
            "$/h",
            "hourly reference: smart-grid cost",
            |h| h.hourly_reference.smart_grid_cost,
        ),
        Column::f64(
            "hourly_ref_microgrid_cost",
            "$/h",
            "hourly reference: microgrid cost",
            |h| h.hourly_reference.microgrid_cost,
        ),
        Column {
            name: "hourly_ref_binding_lines".into(),
            unit: "",
            description: "hourly reference: lines at their rating, `from-to` bus numbers; empty: none".into(),
            get: Getter::Names(Box::new(|h| h.hourly_reference.binding_lines.clone())),
        },
        Column::f64(
            "horizon_ref_price",
            "$/MWh",
            "24-h co-optimization: PCC price",
            |h| h.horizon_reference.price,
        ),
        Column::f64(
            "horizon_ref_exchange_mw",
            "MW",
            "24-h co-optimization: exchange smart grid -> microgrid",
            |h| h.horizon_reference.exchange_mw,
        ),
        Column::f64(
            "horizon_ref_smart_grid_cost",
            "$/h",
            "24-h co-optimization: smart-grid cost",
            |h| h.horizon_reference.smart_grid_cost,
        ),
        Column::f64(
            "horizon_ref_microgrid_cost",
            "$/h",
            "24-h co-optimization: microgrid cost",
            |h| h.horizon_reference.microgrid_cost,
        ),
        Column::f64(
            "horizon_ref_battery_mw",
            "MW",
            "24-h co-optimization: battery power (> 0 discharging)",
            |h| h.horizon_reference.battery_mw,
        ),
        Column {
            name: "horizon_ref_binding_lines".into(),
            unit: "",
            description:
                "24-h co-optimization: lines at their rating, `from-to` bus numbers; empty: none"
                    .into(),
            get: Getter::Names(Box::new(|h| h.horizon_reference.binding_lines.clone())),
        },
        Column::f64(
            "battery_plan_mw",
            "MW",
            "battery plan of the hourly market (> 0 discharging)",
            |h| h.hourly_reference.battery_mw,
        ),
        Column::f64(
            "power_deviation_pct",
            "%",
            "|P2P exchange - hourly reference| / max(|reference|, 1 MW)",
            power_deviation_pct,
        ),
        Column {
            name: "attacked".into(),
            unit: "",
            description: "an [[attack]] hit this hour".into(),
            get: Getter::Bool(Box::new(|h| h.attack_free.is_some())),
        },
        Column {
            name: "tampered".into(),
            unit: "",
            description: "messages the attacks altered (agent x iteration)".into(),
            get: Getter::Int(Box::new(|h| h.p2p.outcome.tampered)),
        },
        Column {
            name: "rejected".into(),
            unit: "",
            description: "altered messages the ledger rejected (defended)".into(),
            get: Getter::Int(Box::new(|h| h.p2p.outcome.rejected)),
        },
        Column {
            name: "attack_free_converged".into(),
            unit: "",
            description: "the attack-free negotiation met every stop rule (this row's own \
                          flag when the hour was not attacked)"
                .into(),
            get: Getter::Bool(Box::new(|h| {
                h.attack_free
                    .as_ref()
                    .map_or(h.p2p.outcome.converged, |f| f.converged)
            })),
        },
        Column::f64(
            "attack_free_price",
            "$/MWh",
            "market price of the attack-free negotiation (this row's price when the hour was not attacked)",
            |h| h.attack_free.as_ref().map_or(h.p2p.price, |f| f.price),
        ),
        Column::f64(
            "attack_free_exchange_mw",
            "MW",
            "exchange of the attack-free negotiation (this row's exchange when the hour was not attacked)",
            |h| h.attack_free.as_ref().map_or(h.p2p.exchange_mw, |f| f.exchange_mw),
        ),
        Column::f64(
            "attack_deviation",
            "",
            "largest |x - x_free| / max(|x_free|, 1) over the price and the agents' exports",
            |h| h.attack_deviation(),
        ),
        Column::f64(
            "price_bias",
            "$/MWh",
            "price minus the attack-free price",
            |h| h.price_bias(),
        ),
        Column::f64(
            "money_moved",
            "$/h",
            "the microgrid's payment (price x exchange) minus the attack-free payment",
            |h| h.money_moved(),
        ),
    ]);
    cols
}

/// Schema of [`hourly_table`]: every column non-null, with `unit`/`description` metadata.
pub fn hourly_schema() -> SchemaRef {
    Arc::new(Schema::new(
        hourly_columns()
            .iter()
            .map(Column::field)
            .collect::<Vec<_>>(),
    ))
}

/// Schema of [`trajectory_table`]: every column non-null, with `unit`/`description` metadata.
pub fn trajectory_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("hour", DataType::Int64, "h", HOUR_DESCRIPTION),
        field(
            "iteration",
            DataType::Int64,
            "",
            "iteration number, 0 = the starting point",
        ),
        field("agent", DataType::Utf8, "", "agent name"),
        field(
            "price",
            DataType::Float64,
            "$/MWh",
            "the agent's local price lambda_i",
        ),
        field(
            "power_mw",
            DataType::Float64,
            "MW",
            "the agent's export P_i (> 0 supplies the market)",
        ),
        field(
            "dual_upper",
            DataType::Float64,
            "$/MWh",
            "upper-limit dual H_up",
        ),
        field(
            "dual_lower",
            DataType::Float64,
            "$/MWh",
            "lower-limit dual H_lo",
        ),
    ]))
}

/// Wraps an Arrow error as an [`Error::Output`] for `context`.
fn arrow_err(context: &str) -> impl Fn(arrow::error::ArrowError) -> Error + '_ {
    move |e| Error::Output {
        context: context.to_string(),
        message: e.to_string(),
    }
}

/// One row per hour of the day: the P2P result, convergence figures and both references
/// (see [`hourly_schema`] for the columns and their units).
pub fn hourly_table(day: &DayResult) -> Result<RecordBatch> {
    let cols = hourly_columns();
    let schema = Arc::new(Schema::new(
        cols.iter().map(Column::field).collect::<Vec<_>>(),
    ));
    let arrays = cols.iter().map(|c| c.array(&day.hours)).collect();
    RecordBatch::try_new(schema, arrays).map_err(arrow_err("hourly table"))
}

/// One row per (hour, iteration, agent) of the kept trajectories; zero rows (same schema)
/// when none were kept.
pub fn trajectory_table(day: &DayResult) -> Result<RecordBatch> {
    let n: usize = day
        .hours
        .iter()
        .map(|h| h.p2p.outcome.trajectory.len())
        .sum();
    let mut hour = Vec::with_capacity(n);
    let mut iteration = Vec::with_capacity(n);
    let mut agent = Vec::with_capacity(n);
    let (mut price, mut power) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut upper, mut lower) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for h in &day.hours {
        for p in &h.p2p.outcome.trajectory {
            let name = AGENT_NAMES
                .get(p.agent as usize)
                .ok_or_else(|| Error::Output {
                    context: "trajectory table".into(),
                    message: format!("hour {}: agent index {} has no name", h.hour, p.agent),
                })?;
            hour.push(h.hour as i64);
            iteration.push(i64::from(p.iteration));
            agent.push(*name);
            price.push(p.state.price);
            power.push(p.state.power);
            upper.push(p.state.dual_upper);
            lower.push(p.state.dual_lower);
        }
    }
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(hour)),
        Arc::new(Int64Array::from(iteration)),
        Arc::new(StringArray::from(agent)),
        Arc::new(Float64Array::from(price)),
        Arc::new(Float64Array::from(power)),
        Arc::new(Float64Array::from(upper)),
        Arc::new(Float64Array::from(lower)),
    ];
    RecordBatch::try_new(trajectory_schema(), arrays).map_err(arrow_err("trajectory table"))
}

/// The points of a trajectory grouped by iteration (consecutive points with the same
/// iteration number, as the negotiation records them).
pub(crate) fn iteration_chunks(
    trajectory: &[TrajectoryPoint],
) -> impl Iterator<Item = (u32, &[TrajectoryPoint])> {
    trajectory
        .chunk_by(|a, b| a.iteration == b.iteration)
        .map(|c| (c[0].iteration, c))
}

/// Total operating cost of an hour's agents at each kept iteration, $/h.
fn hour_cost_by_iteration(h: &HourResult) -> BTreeMap<u32, f64> {
    if h.p2p.outcome.trajectory.is_empty() {
        // No trajectory kept for this hour: it contributes its final state throughout.
        let cost = h
            .curves
            .iter()
            .zip(&h.p2p.outcome.agents)
            .map(|(c, a)| c.cost_at_export(a.power))
            .sum();
        return BTreeMap::from([(0, cost)]);
    }
    iteration_chunks(&h.p2p.outcome.trajectory)
        .map(|(k, points)| {
            let cost = points
                .iter()
                .filter_map(|p| {
                    let curve = h.curves.get(p.agent as usize)?;
                    Some(curve.cost_at_export(p.state.power))
                })
                .sum();
            (k, cost)
        })
        .collect()
}

/// Total cost of the day, $ (sum over hours and agents of `cost_at_export(power)`), at each
/// iteration number recorded in any hour's trajectory (Fig. 9 of the paper). An hour that
/// stopped earlier keeps its final state. Empty when no trajectories were kept.
pub fn cost_by_iteration(day: &DayResult) -> Vec<(u32, f64)> {
    if day
        .hours
        .iter()
        .all(|h| h.p2p.outcome.trajectory.is_empty())
    {
        return Vec::new();
    }
    let per_hour: Vec<BTreeMap<u32, f64>> = day.hours.iter().map(hour_cost_by_iteration).collect();
    // The union of iteration numbers: 0..=max when trajectories are dense, and no
    // made-up points when they are not.
    let iterations: BTreeSet<u32> = per_hour.iter().flat_map(|m| m.keys().copied()).collect();
    iterations
        .into_iter()
        .map(|k| {
            let total = per_hour
                .iter()
                .map(|m| {
                    // The latest state at or before k; the starting point before it starts.
                    m.range(..=k)
                        .next_back()
                        .or_else(|| m.iter().next())
                        .map_or(0.0, |(_, &c)| c)
                })
                .sum();
            (k, total)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_support::day;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};

    const HOURLY_COLUMNS: [&str; 34] = [
        "hour",
        "system_load_mw",
        "price",
        "exchange_mw",
        "smart_grid_cost",
        "microgrid_cost",
        "converged",
        "iterations",
        "residual_price",
        "residual_power",
        "residual_dual",
        "residual_balance",
        "hourly_ref_price",
        "hourly_ref_exchange_mw",
        "hourly_ref_smart_grid_cost",
        "hourly_ref_microgrid_cost",
        "hourly_ref_binding_lines",
        "horizon_ref_price",
        "horizon_ref_exchange_mw",
        "horizon_ref_smart_grid_cost",
        "horizon_ref_microgrid_cost",
        "horizon_ref_battery_mw",
        "horizon_ref_binding_lines",
        "battery_plan_mw",
        "power_deviation_pct",
        "attacked",
        "tampered",
        "rejected",
        "attack_free_converged",
        "attack_free_price",
        "attack_free_exchange_mw",
        "attack_deviation",
        "price_bias",
        "money_moved",
    ];

    fn f64_col<'a>(batch: &'a RecordBatch, name: &str) -> &'a arrow::array::Float64Array {
        batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("column {name}"))
            .as_primitive::<Float64Type>()
    }

    #[test]
    fn hourly_table_has_one_row_per_hour_and_exact_columns() {
        let d = day(true);
        let t = hourly_table(&d).unwrap();
        assert_eq!(t.num_rows(), 3);
        let names: Vec<&str> = t
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, HOURLY_COLUMNS.to_vec());
        assert_eq!(t.schema(), hourly_schema());
        for f in t.schema_ref().fields() {
            assert!(!f.is_nullable(), "{} nullable", f.name());
            assert!(
                f.metadata().contains_key("unit"),
                "{} has no unit",
                f.name()
            );
        }
        for c in t.columns() {
            assert_eq!(c.null_count(), 0);
        }
    }

    #[test]
    fn hourly_table_values() {
        let d = day(true);
        let t = hourly_table(&d).unwrap();
        let hour = t
            .column_by_name("hour")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(hour.values().to_vec(), vec![0, 1, 2]);
        let iters = t
            .column_by_name("iterations")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(iters.values().to_vec(), vec![2, 3, 7]);
        let conv = t.column_by_name("converged").unwrap().as_boolean();
        assert_eq!(
            conv.iter().collect::<Vec<_>>(),
            vec![Some(true), Some(true), Some(false)]
        );
        // Hour 0 ends at 5 MW: smart grid 0.5*25 + 50 = 62.5, microgrid 95^2 = 9025.
        assert_eq!(f64_col(&t, "smart_grid_cost").value(0), 62.5);
        assert_eq!(f64_col(&t, "microgrid_cost").value(0), 9025.0);
        // Hour 2 has no microgrid: its cost column is 0, not null.
        assert_eq!(f64_col(&t, "microgrid_cost").value(2), 0.0);
        assert_eq!(f64_col(&t, "smart_grid_cost").value(2), 22.0);
        assert_eq!(f64_col(&t, "exchange_mw").value(1), 10.0);
        assert_eq!(f64_col(&t, "residual_dual").value(0), 3e-8);
        assert_eq!(f64_col(&t, "battery_plan_mw").value(1), 1.5);
        assert_eq!(f64_col(&t, "horizon_ref_exchange_mw").value(1), 9.0);
        // Hour 1: |10 - 11| / 11 * 100; hour 2: |0 - 0| / max(0, 1).
        let dev = f64_col(&t, "power_deviation_pct");
        assert!((dev.value(1) - 100.0 / 11.0).abs() < 1e-12);
        assert_eq!(dev.value(2), 0.0);
        let names = |col: &str, row: usize| -> Vec<String> {
            let list = t.column_by_name(col).unwrap().as_list::<i32>();
            assert!(!list.is_null(row));
            let v = list.value(row);
            v.as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect()
        };
        assert_eq!(names("hourly_ref_binding_lines", 0), ["101-102", "103-124"]);
        assert!(names("horizon_ref_binding_lines", 0).is_empty());
        assert_eq!(names("horizon_ref_binding_lines", 2), ["115-121"]);
    }

    #[test]
    fn trajectory_table_rows_and_schema() {
        let d = day(true);
        let t = trajectory_table(&d).unwrap();
        let expected: usize = d.hours.iter().map(|h| h.p2p.outcome.trajectory.len()).sum();
        assert_eq!(expected, 14);
        assert_eq!(t.num_rows(), expected);
        assert_eq!(t.schema(), trajectory_schema());
        let agent = t.column_by_name("agent").unwrap().as_string::<i32>();
        assert_eq!(agent.value(0), "smart_grid");
        assert_eq!(agent.value(1), "microgrid");
        let hour = t
            .column_by_name("hour")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(hour.value(13), 1);
        let it = t
            .column_by_name("iteration")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(it.value(13), 3);
        assert_eq!(f64_col(&t, "power_mw").value(13), -10.0);
        assert_eq!(f64_col(&t, "dual_lower").value(12), 1.0);
    }

    #[test]
    fn trajectory_table_empty_without_trajectories() {
        let t = trajectory_table(&day(false)).unwrap();
        assert_eq!(t.num_rows(), 0);
        assert_eq!(t.schema(), trajectory_schema());
    }

    #[test]
    fn trajectory_table_rejects_unknown_agent() {
        let mut d = day(true);
        d.hours[0].p2p.outcome.trajectory[0].agent = 9;
        assert!(matches!(trajectory_table(&d), Err(Error::Output { .. })));
    }

    #[test]
    fn cost_by_iteration_hand_checked() {
        // Hour 0 (stops after 2): 10000, 48 + 9216, 62.5 + 9025, then kept.
        // Hour 1 (stops after 3): 10000, 22 + 9604, 78 + 8836, 150 + 8100.
        // Hour 2 (no trajectory): its final state, 0.5*4 + 20 = 22, throughout.
        let c = cost_by_iteration(&day(true));
        let expected = [
            (0, 10000.0 + 10000.0 + 22.0),
            (1, 9264.0 + 9626.0 + 22.0),
            (2, 9087.5 + 8914.0 + 22.0),
            (3, 9087.5 + 8250.0 + 22.0),
        ];
        assert_eq!(c.len(), expected.len());
        for ((k, v), (ek, ev)) in c.iter().zip(expected) {
            assert_eq!(*k, ek);
            assert!((v - ev).abs() < 1e-9, "iteration {k}: {v} vs {ev}");
        }
    }

    #[test]
    fn cost_by_iteration_empty_without_trajectories() {
        assert!(cost_by_iteration(&day(false)).is_empty());
    }
}
