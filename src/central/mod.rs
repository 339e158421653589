//! Centralized references, solved with a QP solver (model-notes erratum 5):
//! - [`hourly_reference`]: the same-information per-hour clearing (the battery follows the
//!   microgrid's own plan, as in the hourly market). This is the exact target of the
//!   consensus: the gap between the two must go to zero.
//! - [`horizon_reference`]: the full 24-h co-optimization of smart grid and microgrid
//!   (battery dynamics, ramps and curtailment coupled across hours), the efficiency bound
//!   of an hourly market. Its advantage over the hourly market is reported, never hidden.

pub mod qp;

use crate::error::Result;
use crate::market::Market;
use crate::microgrid::HOURS;
use qp::{Qp, Terms};

/// One hour of a centralized solution.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceHour {
    /// PCC price on the smart-grid side: the dual of the exchange balance, $/MWh.
    pub price: f64,
    /// Power from the smart grid to the microgrid, MW (> 0: the microgrid buys).
    pub exchange_mw: f64,
    /// Smart-grid operating cost incl. no-load costs, $/h.
    pub smart_grid_cost: f64,
    /// Microgrid operating cost (renewables and battery throughput), $/h.
    pub microgrid_cost: f64,
    /// Battery power, MW (> 0 discharging).
    pub battery_mw: f64,
    /// Lines at their rating, `from-to`.
    pub binding_lines: Vec<String>,
    /// Output of each committed unit, MW, in [`crate::grid::SmartGrid::units`] order.
    pub generator_mw: Vec<f64>,
    /// Locational marginal price at every bus, $/MWh, in case bus order.
    pub bus_prices: Vec<f64>,
    /// Loads, injections, flows and line duals of the smart grid's network.
    pub network: NetworkState,
}

/// The smart grid's network in one solution: what a MATPOWER user reads from `rundcopf`
/// besides the LMPs and the dispatch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkState {
    /// Load at every bus (its share of the system load plus its shunt conductance), MW,
    /// in case bus order.
    pub bus_load_mw: Vec<f64>,
    /// Net injection into the network at every bus: its units minus its load, plus the
    /// microgrid's export at the PCC, MW.
    pub bus_injection_mw: Vec<f64>,
    /// Flow of every in-service branch from its from-bus to its to-bus (phase shifters
    /// included), MW, in [`crate::grid::network::DcNetwork::branches`] order.
    pub branch_flow_mw: Vec<f64>,
    /// Shadow price of every rated line's flow limit (the cost one more MW of rating would
    /// save, >= 0; 0 unless the line binds), $/MWh, in [`crate::grid::SmartGrid::lines`]
    /// order.
    pub line_shadow_price: Vec<f64>,
}

impl ReferenceHour {
    /// Total operating cost of the hour, $/h.
    pub fn total_cost(&self) -> f64 {
        self.smart_grid_cost + self.microgrid_cost
    }
}

/// The smart grid's elements as the network tables name them: the index spaces of a
/// [`ReferenceHour`]'s vectors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GridLayout {
    /// External bus ids, in case bus order ([`ReferenceHour::bus_prices`]).
    pub bus_ids: Vec<usize>,
    /// The PCC's bus id.
    pub pcc_bus: usize,
    /// Every in-service branch ([`NetworkState::branch_flow_mw`]).
    pub branches: Vec<BranchInfo>,
    /// The branch of each rated line ([`NetworkState::line_shadow_price`]).
    pub line_branch: Vec<usize>,
    /// The committed units ([`ReferenceHour::generator_mw`]).
    pub units: Vec<crate::grid::Unit>,
}

/// One in-service branch of a [`GridLayout`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BranchInfo {
    /// From-bus id.
    pub from_id: usize,
    /// To-bus id.
    pub to_id: usize,
    /// Its row in the case's `mpc.branch`, 1-based as MATPOWER counts.
    pub case_row: usize,
    /// Its rating (RATE_A), MW; `None`: unlimited.
    pub rate_mw: Option<f64>,
}

impl GridLayout {
    /// The layout of `market`'s smart grid.
    pub fn of(market: &Market) -> Self {
        let g = &market.grid;
        let mut rate = vec![None; g.network.branches().len()];
        for l in &g.lines {
            rate[l.branch] = Some(l.limit_mw);
        }
        GridLayout {
            bus_ids: g.bus_ids.clone(),
            pcc_bus: g.bus_ids[market.pcc],
            branches: g
                .network
                .branches()
                .iter()
                .zip(rate)
                .map(|(b, rate_mw)| BranchInfo {
                    from_id: g.bus_ids[b.from],
                    to_id: g.bus_ids[b.to],
                    case_row: b.case_row + 1,
                    rate_mw,
                })
                .collect(),
            line_branch: g.lines.iter().map(|l| l.branch).collect(),
            units: g.units.clone(),
        }
    }
}

/// Variables of the microgrid in one hour of a QP.
struct MicrogridVars {
    export: usize,
    renewables: Vec<usize>,
    /// (charge, discharge) when the battery is a decision.
    battery: Option<(usize, usize)>,
}

/// Adds one hour of the microgrid: renewables with curtailment, the tie line and, when
/// `battery_fixed` is `None`, a free battery. Returns its variables.
fn add_microgrid_hour(
    qp: &mut Qp,
    market: &Market,
    hour: usize,
    battery_fixed: Option<f64>,
) -> MicrogridVars {
    let mg = &market.microgrid;
    let tie = mg.tie_capacity_mw;
    let export = qp.var(0.0, 0.0, -tie, tie);
    let renewables: Vec<usize> = mg
        .units(hour)
        .iter()
        .map(|u| qp.var(u.c2, u.c1, u.pmin, u.pmax))
        .collect();
    // eq. (24): export = renewables + battery - load.
    let mut terms: Terms = vec![(export, 1.0)];
    terms.extend(renewables.iter().map(|&v| (v, -1.0)));
    let load = mg.hourly[hour].load_mw;
    let battery = match battery_fixed {
        Some(b) => {
            qp.eq(terms, b - load);
            None
        }
        None => {
            let bat = &mg.config.battery;
            let ch = qp.var(0.0, bat.cost_per_mwh, 0.0, bat.max_charge_mw);
            let dis = qp.var(0.0, bat.cost_per_mwh, 0.0, bat.max_discharge_mw);
            terms.push((ch, 1.0));
            terms.push((dis, -1.0));
            qp.eq(terms, -load);
            Some((ch, dis))
        }
    };
    MicrogridVars {
        export,
        renewables,
        battery,
    }
}

/// The microgrid's side of a solved hour.
enum MicrogridSide<'a> {
    /// Its variables in the QP.
    Vars(&'a MicrogridVars),
    /// No microgrid in the QP: a fixed export at the PCC, MW (0: none).
    Fixed(f64),
}
use MicrogridSide::{Fixed, Vars};

fn summarize_hour(
    market: &Market,
    hour: usize,
    sol: &qp::QpSolution,
    rows: &crate::grid::HourRows,
    side: MicrogridSide<'_>,
    battery_mw: f64,
) -> ReferenceHour {
    let g = &market.grid;
    let outputs: Vec<f64> = rows.gen_vars.iter().map(|&v| sol.x[v]).collect();
    let smart_grid_cost: f64 = g.units.iter().zip(&outputs).map(|(u, &p)| u.cost(p)).sum();
    let (export, microgrid_cost) = match side {
        Vars(mv) => {
            let units = market.microgrid.units(hour);
            let ren: f64 = units
                .iter()
                .zip(&mv.renewables)
                .map(|(u, &v)| u.cost(sol.x[v]))
                .sum();
            (
                sol.x[mv.export],
                ren + market.microgrid.config.battery.cost_per_mwh * battery_mw.abs(),
            )
        }
        Fixed(export) => (export, 0.0),
    };
    let loads = market.bus_loads(hour);
    let injections = g.injections(&outputs, &loads, market.pcc, export);
    let flows = g.flows(&injections);
    ReferenceHour {
        price: g.lmp(sol, rows, market.pcc),
        exchange_mw: -export,
        smart_grid_cost,
        microgrid_cost,
        battery_mw,
        binding_lines: g.binding_lines(&flows, 1e-4),
        bus_prices: (0..g.bus_ids.len()).map(|b| g.lmp(sol, rows, b)).collect(),
        generator_mw: outputs,
        network: NetworkState {
            branch_flow_mw: g.network.flows(&injections),
            line_shadow_price: rows
                .line_rows
                .iter()
                .map(|&(up, dn)| -(sol.sensitivity(up) + sol.sensitivity(dn)))
                .collect(),
            bus_load_mw: loads,
            bus_injection_mw: injections,
        },
    }
}

/// The smart grid's own optimal dispatch of hour `hour` with `exchange_mw` fixed at the
/// PCC (> 0: sent to the microgrid): the network behind a market outcome, such as the
/// consensus of the P2P negotiation. Its price is the LMP at the PCC; its microgrid side
/// is empty (cost 0, battery 0).
pub fn network_at_exchange(
    market: &Market,
    hour: usize,
    exchange_mw: f64,
) -> Result<ReferenceHour> {
    let mut qp = Qp::default();
    let rows = market.grid.add_hour(
        &mut qp,
        &market.bus_loads(hour),
        market.pcc,
        &Vec::new(),
        exchange_mw,
    );
    let sol = qp.solve(&format!("smart grid at the market's exchange, hour {hour}"))?;
    Ok(summarize_hour(
        market,
        hour,
        &sol,
        &rows,
        Fixed(-exchange_mw),
        0.0,
    ))
}

/// The same-information hourly clearing: each hour alone, battery at its planned power.
pub fn hourly_reference(market: &Market, hour: usize) -> Result<ReferenceHour> {
    let mut qp = Qp::default();
    let enabled = market.microgrid.config.enabled;
    let battery_mw = if enabled {
        market.microgrid.battery_plan[hour]
    } else {
        0.0
    };
    let mv = enabled.then(|| add_microgrid_hour(&mut qp, market, hour, Some(battery_mw)));
    let inj: Terms = mv.iter().map(|m| (m.export, 1.0)).collect();
    let rows = market
        .grid
        .add_hour(&mut qp, &market.bus_loads(hour), market.pcc, &inj, 0.0);
    let sol = qp.solve(&format!("hourly reference, hour {hour}"))?;
    let side = mv.as_ref().map_or(Fixed(0.0), Vars);
    Ok(summarize_hour(market, hour, &sol, &rows, side, battery_mw))
}

/// The 24-h co-optimization: all hours at once, battery and ramps coupled.
pub fn horizon_reference(market: &Market) -> Result<Vec<ReferenceHour>> {
    let mut qp = Qp::default();
    let enabled = market.microgrid.config.enabled;
    let bat = &market.microgrid.config.battery;
    let (soc_lo, soc_hi) = bat.soc_bounds_mwh();
    let mut hours = Vec::with_capacity(HOURS);
    let mut prev_soc: Option<usize> = None;
    for h in 0..HOURS {
        let mv = enabled.then(|| add_microgrid_hour(&mut qp, market, h, None));
        let inj: Terms = mv.iter().map(|m| (m.export, 1.0)).collect();
        let rows = market
            .grid
            .add_hour(&mut qp, &market.bus_loads(h), market.pcc, &inj, 0.0);
        if let Some((ch, dis)) = mv.as_ref().and_then(|m| m.battery) {
            // Corrected eq. (25)-(26): soc_h = soc_{h-1} + eta_ch ch - dis / eta_dis.
            let soc = qp.var(0.0, 0.0, soc_lo, soc_hi);
            let mut t: Terms = vec![
                (soc, 1.0),
                (ch, -bat.charge_efficiency),
                (dis, 1.0 / bat.discharge_efficiency),
            ];
            let rhs = match prev_soc {
                Some(p) => {
                    t.push((p, -1.0));
                    0.0
                }
                None => bat.initial_soc_mwh(),
            };
            qp.eq(t, rhs);
            prev_soc = Some(soc);
        }
        if let Some((_, prev_rows, _)) = hours.last() {
            let prev_rows: &crate::grid::HourRows = prev_rows;
            for (i, u) in market.grid.units.iter().enumerate() {
                if u.ramp_mw.is_finite() {
                    let (a, b) = (rows.gen_vars[i], prev_rows.gen_vars[i]);
                    qp.le(vec![(a, 1.0), (b, -1.0)], u.ramp_mw);
                    qp.le(vec![(b, 1.0), (a, -1.0)], u.ramp_mw);
                }
            }
        }
        hours.push((h, rows, mv));
    }
    // The day ends with at least the energy it started with, so the co-optimization cannot
    // borrow from tomorrow.
    if let Some(last) = prev_soc {
        qp.le(vec![(last, -1.0)], -bat.initial_soc_mwh());
    }
    let sol = qp.solve("24-h co-optimization")?;
    Ok(hours
        .iter()
        .map(|(h, rows, mv)| {
            let battery_mw = mv
                .as_ref()
                .and_then(|m| m.battery)
                .map_or(0.0, |(ch, dis)| sol.x[dis] - sol.x[ch]);
            let side = mv.as_ref().map_or(Fixed(0.0), Vars);
            summarize_hour(market, *h, &sol, rows, side, battery_mw)
        })
        .collect())
}

/// The microgrid's own battery plan for the hourly market: with no smart-grid data, it
/// flattens its net exchange, `min sum_h (load - renewables - battery)^2 + throughput cost`,
/// and ends the day at least as full as it started.
pub fn self_schedule_battery(market: &Market) -> Result<[f64; HOURS]> {
    let mg = &market.microgrid;
    let bat = &mg.config.battery;
    let (soc_lo, soc_hi) = bat.soc_bounds_mwh();
    let mut qp = Qp::default();
    let mut vars = Vec::with_capacity(HOURS);
    let mut prev: Option<usize> = None;
    for h in 0..HOURS {
        let hm = &mg.hourly[h];
        let net = qp.var(1.0, 0.0, f64::NEG_INFINITY, f64::INFINITY);
        let ch = qp.var(0.0, bat.cost_per_mwh, 0.0, bat.max_charge_mw);
        let dis = qp.var(0.0, bat.cost_per_mwh, 0.0, bat.max_discharge_mw);
        let available = hm.wind_mw + hm.pv_mw + hm.tidal_mw;
        qp.eq(
            vec![(net, 1.0), (ch, -1.0), (dis, 1.0)],
            hm.load_mw - available,
        );
        let soc = qp.var(0.0, 0.0, soc_lo, soc_hi);
        let mut t: Terms = vec![
            (soc, 1.0),
            (ch, -bat.charge_efficiency),
            (dis, 1.0 / bat.discharge_efficiency),
        ];
        let rhs = match prev {
            Some(p) => {
                t.push((p, -1.0));
                0.0
            }
            None => bat.initial_soc_mwh(),
        };
        qp.eq(t, rhs);
        prev = Some(soc);
        vars.push((ch, dis));
    }
    if let Some(last) = prev {
        qp.le(vec![(last, -1.0)], -bat.initial_soc_mwh());
    }
    let sol = qp.solve("microgrid battery self-schedule")?;
    let mut plan = [0.0; HOURS];
    for (h, &(ch, dis)) in vars.iter().enumerate() {
        // Interior-point solutions carry ~1e-9 noise; snap it so the plan is feasible exactly.
        let p = sol.x[dis] - sol.x[ch];
        plan[h] = if p.abs() < 1e-7 { 0.0 } else { p };
    }
    Ok(plan)
}
