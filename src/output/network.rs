//! The network tables of a day (issue 12, item 1): what a MATPOWER, pandapower or PyPSA
//! user reads after a DC-OPF, for each of three solutions of every hour:
//! - `hourly_ref`: the same-information hourly clearing ([`crate::central::hourly_reference`]);
//! - `horizon_ref`: the 24-h co-optimization ([`crate::central::horizon_reference`]);
//! - `consensus`: the smart grid's own optimal dispatch at the negotiated exchange
//!   ([`crate::central::network_at_exchange`]), the network behind the P2P outcome.
//!
//! Long format, one row per (solution, hour, element):
//! - `network_buses`: every bus's LMP, load and net injection;
//! - `network_branches`: every in-service branch's flow, rating, loading, whether it binds
//!   and the shadow price of its limit;
//! - `network_units`: every committed unit's dispatch, cost, marginal cost, limits and the
//!   dual of whichever limit it sits at.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::integers::{INT, int_array};
use super::tables::HOUR_DESCRIPTION;
use crate::central::ReferenceHour;
use crate::error::{Error, Result};
use crate::market::{DayResult, HourResult};

/// The solutions of every hour, in table order, with how each is read from an hour.
pub const SOLUTIONS: [&str; 3] = ["hourly_ref", "horizon_ref", "consensus"];

/// `None`: the hour has no such solution (the consensus of an hour whose negotiation
/// ended at an exchange the grid cannot deliver).
fn solution<'a>(h: &'a HourResult, name: &str) -> Option<&'a ReferenceHour> {
    match name {
        "hourly_ref" => Some(&h.hourly_reference),
        "horizon_ref" => Some(&h.horizon_reference),
        _ => h.consensus_network.as_ref(),
    }
}

/// A line binds when its flow is within this of its rating, MW (as `binding_lines`).
pub const BINDING_TOL_MW: f64 = 1e-4;

/// A unit sits at a limit when within this of it, MW: the lines' rule
/// ([`BINDING_TOL_MW`]). The QP leaves a unit held at a limit a few 1e-6 MW inside it, so
/// a tighter rule reported 0 for units whose LMP and marginal cost differ.
const AT_LIMIT_TOL_MW: f64 = BINDING_TOL_MW;

fn field(name: &str, data_type: DataType, nullable: bool, unit: &str, description: &str) -> Field {
    Field::new(name, data_type, nullable).with_metadata(HashMap::from([
        ("unit".to_string(), unit.to_string()),
        ("description".to_string(), description.to_string()),
    ]))
}

/// The leading columns of every network table: solution and hour.
fn keys() -> Vec<Field> {
    vec![
        field(
            "solution",
            DataType::Utf8,
            false,
            "",
            "hourly_ref (hourly clearing), horizon_ref (24-h co-optimization) or consensus \
             (the smart grid's dispatch at the P2P exchange)",
        ),
        field("hour", INT, false, "h", HOUR_DESCRIPTION),
    ]
}

/// Schema of `network_buses`.
pub fn buses_schema() -> SchemaRef {
    let mut f = keys();
    f.extend([
        field("bus", INT, false, "", "bus number (BUS_I)"),
        field(
            "lmp",
            DataType::Float64,
            false,
            "$/MWh",
            "locational marginal price: the cost of one more MW of load at the bus",
        ),
        field(
            "load_mw",
            DataType::Float64,
            false,
            "MW",
            "load: the bus's share of the system load plus its shunt conductance",
        ),
        field(
            "injection_mw",
            DataType::Float64,
            false,
            "MW",
            "net injection into the network: units minus load, plus the microgrid's export \
             at the PCC",
        ),
    ]);
    Arc::new(Schema::new(f))
}

/// Schema of `network_branches`.
pub fn branches_schema() -> SchemaRef {
    let mut f = keys();
    f.extend([
        field("from_bus", INT, false, "", "from-bus number (F_BUS)"),
        field("to_bus", INT, false, "", "to-bus number (T_BUS)"),
        field(
            "branch_row",
            INT,
            false,
            "",
            "the branch's row in the case's mpc.branch, 1-based",
        ),
        field(
            "flow_mw",
            DataType::Float64,
            false,
            "MW",
            "DC flow from the from-bus to the to-bus (phase shifters included)",
        ),
        field(
            "rate_a_mw",
            DataType::Float64,
            true,
            "MW",
            "rating RATE_A; null: unlimited",
        ),
        field(
            "loading_pct",
            DataType::Float64,
            true,
            "%",
            "|flow| / RATE_A; null: unlimited",
        ),
        field(
            "shadow_price",
            DataType::Float64,
            true,
            "$/MWh",
            "dual of the flow limit: the cost one more MW of rating would save (0 unless \
             binding); null: unlimited",
        ),
        field(
            "binding",
            DataType::Boolean,
            false,
            "",
            "|flow| within 1e-4 MW of RATE_A",
        ),
    ]);
    Arc::new(Schema::new(f))
}

/// Schema of `network_units`.
pub fn units_schema() -> SchemaRef {
    let mut f = keys();
    f.extend([
        field(
            "unit",
            INT,
            false,
            "",
            "committed unit, 0-based, in the case's mpc.gen order (units out of service \
             skipped)",
        ),
        field("bus", INT, false, "", "its bus number"),
        field("dispatch_mw", DataType::Float64, false, "MW", "output"),
        field(
            "cost",
            DataType::Float64,
            false,
            "$/h",
            "operating cost c2 P^2 + c1 P + c0",
        ),
        field(
            "marginal_cost",
            DataType::Float64,
            false,
            "$/MWh",
            "2 c2 P + c1",
        ),
        field("pmin_mw", DataType::Float64, false, "MW", "minimum output"),
        field("pmax_mw", DataType::Float64, false, "MW", "maximum output"),
        field(
            "limit_dual",
            DataType::Float64,
            false,
            "$/MWh",
            "LMP at its bus minus its marginal cost: > 0 held at PMAX, < 0 held at PMIN \
             (within 1e-4 MW of it), 0 between (the dual of the binding output limit)",
        ),
    ]);
    Arc::new(Schema::new(f))
}

/// Columns collected row by row.
#[derive(Default)]
struct Rows {
    solution: Vec<&'static str>,
    hour: Vec<usize>,
    ints: Vec<Vec<usize>>,
    floats: Vec<Vec<Option<f64>>>,
    flags: Vec<bool>,
}

impl Rows {
    fn push(&mut self, s: &'static str, hour: usize, ints: &[usize], floats: &[Option<f64>]) {
        self.solution.push(s);
        self.hour.push(hour);
        self.ints.resize(ints.len(), Vec::new());
        self.floats.resize(floats.len(), Vec::new());
        for (c, &v) in self.ints.iter_mut().zip(ints) {
            c.push(v);
        }
        for (c, &v) in self.floats.iter_mut().zip(floats) {
            c.push(v);
        }
    }

    /// The table of `schema`: keys, the integer columns, the float columns, then the flags
    /// (when any were pushed).
    fn table(self, name: &str, schema: SchemaRef) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.solution)),
            int_array(name, self.hour)?,
        ];
        for c in self.ints {
            columns.push(int_array(name, c)?);
        }
        for c in self.floats {
            columns.push(Arc::new(Float64Array::from(c)));
        }
        if !self.flags.is_empty() {
            columns.push(Arc::new(BooleanArray::from(self.flags)));
        }
        RecordBatch::try_new(schema, columns).map_err(|e| Error::Output {
            context: format!("{name} table"),
            message: e.to_string(),
        })
    }
}

/// Every solution of every hour, in table order (an hour without a consensus network has
/// no `consensus` rows).
fn solutions(day: &DayResult) -> impl Iterator<Item = (&'static str, usize, &ReferenceHour)> {
    SOLUTIONS.into_iter().flat_map(move |s| {
        day.hours
            .iter()
            .filter_map(move |h| solution(h, s).map(|r| (s, h.hour, r)))
    })
}

/// `network_buses` of a day.
pub fn buses_table(day: &DayResult) -> Result<RecordBatch> {
    let mut rows = Rows::default();
    for (s, hour, r) in solutions(day) {
        for (b, &id) in day.layout.bus_ids.iter().enumerate() {
            let at = |v: &[f64]| v.get(b).copied();
            rows.push(
                s,
                hour,
                &[id],
                &[
                    at(&r.bus_prices),
                    at(&r.network.bus_load_mw),
                    at(&r.network.bus_injection_mw),
                ],
            );
        }
    }
    rows.table("network_buses", buses_schema())
}

/// `network_branches` of a day.
pub fn branches_table(day: &DayResult) -> Result<RecordBatch> {
    let layout = &day.layout;
    let mut dual_of = vec![None; layout.branches.len()];
    let mut rows = Rows::default();
    for (s, hour, r) in solutions(day) {
        dual_of.iter_mut().for_each(|d| *d = None);
        for (&k, &d) in layout.line_branch.iter().zip(&r.network.line_shadow_price) {
            dual_of[k] = Some(d);
        }
        for (k, b) in layout.branches.iter().enumerate() {
            let flow = r.network.branch_flow_mw.get(k).copied();
            let loading = flow.zip(b.rate_mw).map(|(f, rate)| 100.0 * f.abs() / rate);
            let binding = flow
                .zip(b.rate_mw)
                .is_some_and(|(f, rate)| f.abs() >= rate - BINDING_TOL_MW);
            rows.flags.push(binding);
            rows.push(
                s,
                hour,
                &[b.from_id, b.to_id, b.case_row],
                &[flow, b.rate_mw, loading, dual_of[k]],
            );
        }
    }
    rows.table("network_branches", branches_schema())
}

/// `network_units` of a day.
pub fn units_table(day: &DayResult) -> Result<RecordBatch> {
    let layout = &day.layout;
    let mut rows = Rows::default();
    for (s, hour, r) in solutions(day) {
        for (k, u) in layout.units.iter().enumerate() {
            let p = r.generator_mw.get(k).copied().unwrap_or(f64::NAN);
            let marginal = 2.0 * u.c2 * p + u.c1;
            let lmp = r.bus_prices.get(u.bus).copied().unwrap_or(f64::NAN);
            // The dual of a one-sided limit has its sign (MATPOWER's MU_PMAX, MU_PMIN >= 0):
            // a unit near a limit whose LMP leans the other way is not held by it.
            let gap = lmp - marginal;
            let dual = match (p >= u.pmax - AT_LIMIT_TOL_MW, p <= u.pmin + AT_LIMIT_TOL_MW) {
                (true, true) => gap,
                (true, false) => gap.max(0.0),
                (false, true) => gap.min(0.0),
                (false, false) => 0.0,
            };
            rows.push(
                s,
                hour,
                &[k, layout.bus_ids[u.bus]],
                &[
                    Some(p),
                    Some(u.cost(p)),
                    Some(marginal),
                    Some(u.pmin),
                    Some(u.pmax),
                    Some(dual),
                ],
            );
        }
    }
    rows.table("network_units", units_schema())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_support::day;
    use arrow::array::{Array, Int64Array};

    fn f64s(t: &RecordBatch, name: &str) -> Vec<Option<f64>> {
        let c = t.column_by_name(name).unwrap();
        let a = c.as_any().downcast_ref::<Float64Array>().unwrap();
        (0..a.len())
            .map(|i| (!a.is_null(i)).then(|| a.value(i)))
            .collect()
    }

    fn ints(t: &RecordBatch, name: &str) -> Vec<i64> {
        let c = t.column_by_name(name).unwrap();
        c.as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    #[test]
    fn every_solution_hour_and_element_has_a_row() {
        let d = day(false);
        let (b, br, u) = (
            buses_table(&d).unwrap(),
            branches_table(&d).unwrap(),
            units_table(&d).unwrap(),
        );
        assert_eq!(b.num_rows(), 3 * 3 * 3);
        assert_eq!(br.num_rows(), 3 * 3 * 2);
        assert_eq!(u.num_rows(), 3 * 3);
        assert_eq!(ints(&b, "bus")[..3], [101, 102, 103]);
        // Hour 0's hourly reference: LMP 15 everywhere, the rated line binding at its dual.
        assert_eq!(f64s(&b, "lmp")[0], Some(15.0));
        assert_eq!(ints(&br, "from_bus")[..2], [101, 102]);
        assert_eq!(f64s(&br, "rate_a_mw")[..2], [Some(900.0), None]);
        assert_eq!(f64s(&br, "shadow_price")[..2], [Some(2.5), None]);
        assert_eq!(f64s(&br, "loading_pct")[1], None);
        let flow = f64s(&br, "flow_mw")[0].unwrap();
        assert_eq!(
            f64s(&br, "loading_pct")[0],
            Some(100.0 * flow.abs() / 900.0)
        );
        // The unit: 2 c2 P + c1 and its cost at the reference's dispatch.
        let p = f64s(&u, "dispatch_mw")[0].unwrap();
        assert_eq!(f64s(&u, "marginal_cost")[0], Some(0.02 * p + 20.0));
        assert_eq!(f64s(&u, "cost")[0], Some((0.01 * p + 20.0) * p + 100.0));
        let sol = t_strings(&u, "solution");
        assert_eq!(
            (sol[0].as_str(), sol[3].as_str(), sol[6].as_str()),
            ("hourly_ref", "horizon_ref", "consensus")
        );
    }

    fn t_strings(t: &RecordBatch, name: &str) -> Vec<String> {
        let c = t.column_by_name(name).unwrap();
        let a = c.as_any().downcast_ref::<StringArray>().unwrap();
        (0..a.len()).map(|i| a.value(i).to_string()).collect()
    }
}
