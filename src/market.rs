//! A validated market (smart grid + microgrid + 24-h loads) and its P2P day: offer curves,
//! the RCI negotiation of every hour, and the comparison with the centralized references.

use std::time::Instant;

use rayon::prelude::*;

use crate::attack::{AttackSlot, Defence, HourAttacks};
use crate::central::{self, ReferenceHour};
use crate::error::{Error, Result};
use crate::grid::SmartGrid;
use crate::grid::curve::{CurveSeeds, export_range, smart_grid_curve_seeded};
use crate::microgrid::{BatteryPlan, HOURS, HourlyMicrogrid, Microgrid};
use crate::offer::{OfferCurve, QuadraticUnit};
use crate::rci::{self, Agent, HourOutcome, RciSettings};
use crate::scenario::Scenario;

/// Names of the agents, in the order of every per-agent array.
pub const AGENT_NAMES: [&str; 2] = ["smart_grid", "microgrid"];

/// The microgrid as the market sees it.
#[derive(Debug, Clone)]
pub struct MicrogridModel {
    /// The configuration it was built from.
    pub config: Microgrid,
    /// tie capacity, MW (mirrors `config.tie_capacity_mw`).
    pub tie_capacity_mw: f64,
    /// Available renewables and load per hour.
    pub hourly: [HourlyMicrogrid; HOURS],
    /// Battery power per hour for the hourly market, MW (> 0 discharging).
    pub battery_plan: [f64; HOURS],
    /// Quadratic cost of the renewables' curtailment model, $/MW^2h (erratum 2 floor).
    pub linear_cost_c2: f64,
}

impl MicrogridModel {
    /// The dispatchable (curtailable) renewable units of an hour: wind, PV, tidal.
    pub fn units(&self, hour: usize) -> [QuadraticUnit; 3] {
        let h = &self.hourly[hour];
        let c = &self.config;
        let unit = |c1: f64, avail: f64| QuadraticUnit {
            c2: self.linear_cost_c2,
            c1,
            c0: 0.0,
            pmin: 0.0,
            pmax: avail,
        };
        [
            unit(c.wind.cost_per_mwh, h.wind_mw),
            unit(c.pv.cost_per_mwh, h.pv_mw),
            unit(c.tidal.cost_per_mwh, h.tidal_mw),
        ]
    }

    /// The microgrid's offer curve for an hour: renewables' supply plus the battery plan
    /// minus the load, with the battery's throughput cost.
    pub fn curve(&self, hour: usize) -> Result<OfferCurve> {
        let battery = self.battery_plan[hour];
        OfferCurve::from_units(
            &self.units(hour),
            battery - self.hourly[hour].load_mw,
            self.config.battery.cost_per_mwh * battery.abs(),
        )
    }
}

/// The system load of every hour must lie between the committed units' total minimum
/// output and their capacity (each widened by the tie when the microgrid is on). The error
/// names the field the user wrote: `load.hourly_mw[h]` for explicit loads, `load.scale`
/// (with the whole allowed range of scales) for the RTS-79 profile.
fn check_system_load(scenario: &Scenario, load_mw: &[f64; HOURS], grid: &SmartGrid) -> Result<()> {
    let mg = &scenario.microgrid;
    // The microgrid can at most relieve the smart grid by its tie capacity.
    let relief = if mg.enabled { mg.tie_capacity_mw } else { 0.0 };
    let (cap, min_out) = (grid.capacity_mw(), grid.min_output_mw());
    let (hi, lo) = (cap + relief, min_out - relief);
    let limits = format!(
        "the committed units' minimum output {min_out:.1} MW and capacity {cap:.1} MW \
         (+/- tie {relief:.1} MW)"
    );
    let Some(bad) = load_mw.iter().position(|&l| !(l >= lo && l <= hi)) else {
        return Ok(());
    };
    let scale = scenario.load.scale;
    let load = load_mw[bad];
    match &scenario.load.hourly_mw {
        Some(v) => Err(Error::invalid(
            format!("load.hourly_mw[{bad}]"),
            format!("{} MW", crate::error::compact(v[bad])),
            format!(
                "{:.3}..={:.3} MW: hour {bad}'s system load ({} MW x load.scale {scale} = \
                 {load:.3} MW) must lie between {limits}",
                lo.max(0.0) / scale,
                hi / scale,
                crate::error::compact(v[bad])
            ),
        )),
        None => {
            // The allowed scales: every hour's unscaled profile load times the scale must
            // stay within the limits.
            let (mut s_lo, mut s_hi) = (0.0_f64, f64::INFINITY);
            for &l in load_mw {
                let base = l / scale;
                if base > 0.0 {
                    s_lo = s_lo.max(lo / base);
                    s_hi = s_hi.min(hi / base);
                }
            }
            Err(Error::invalid(
                "load.scale",
                scale,
                format!(
                    "{s_lo:.4}..={s_hi:.4} for this case and load.week {} / load.day {:?}: \
                     hour {bad}'s system load {load:.3} MW must lie between {limits}",
                    scenario.load.week, scenario.load.day
                ),
            ))
        }
    }
}

/// A validated market, ready to run.
#[derive(Debug, Clone)]
pub struct Market {
    /// The smart grid.
    pub grid: SmartGrid,
    /// System load per hour, MW.
    pub system_load_mw: [f64; HOURS],
    /// The microgrid (present even when disabled, so its settings stay inspectable).
    pub microgrid: MicrogridModel,
    /// Bus index of the PCC, where the hour's price is read. With the microgrid disabled
    /// (zero export) `pcc_bus` when it names a bus of the case, otherwise the case's
    /// reference bus.
    pub pcc: usize,
    /// RCI settings.
    pub rci: RciSettings,
    /// The scenario's attacks as engine slots (seeded by each attack's `seed`).
    pub attacks: Vec<AttackSlot>,
    /// Whether the ledger defends the messages against them.
    pub defence: Defence,
    /// The exports the smart grid can deliver at the PCC, per hour, for the system load
    /// they were computed with (a clone with other loads recomputes them).
    export_ranges: Vec<ExportRange>,
}

/// The smart grid's feasible exports at the PCC for one hour's system load.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ExportRange {
    system_load_mw: f64,
    range: (f64, f64),
}

impl Market {
    /// Builds and validates a market from a scenario. Every bad input is an
    /// [`Error::InvalidInput`] (or a case/scenario error) naming the field.
    pub fn from_scenario(scenario: &Scenario) -> Result<Self> {
        scenario.validate_settings()?;
        scenario
            .rci
            .validate_for_agents(if scenario.microgrid.enabled { 2 } else { 1 })?;
        let case = scenario.load_case()?;
        let mg = &scenario.microgrid;
        // The microgrid's own fields were checked by `validate_settings`; what needs the
        // case is its PCC: a bus that exists and is not isolated (type 4: MATPOWER drops
        // such a bus, so nothing could flow through it).
        if let Some(bus) = case
            .buses
            .iter()
            .find(|b| b.id == mg.pcc_bus && b.kind == 4)
            && mg.enabled
        {
            return Err(Error::invalid(
                "microgrid.pcc_bus",
                bus.id,
                format!(
                    "a bus that is not isolated: bus {} is type 4 (isolated) in {}",
                    bus.id, case.source_name
                ),
            ));
        }
        let pcc_buses: Vec<usize> = case
            .buses
            .iter()
            .filter(|b| b.kind != 4)
            .map(|b| b.id)
            .collect();
        mg.validate_pcc(&pcc_buses)?;
        // Isolated buses carry nothing in service (the reader refuses that); MATPOWER
        // drops them, and so does the market's network.
        let case = case.without_isolated();
        let grid = SmartGrid::from_case(&case, scenario.grid.linear_cost_c2)?;
        let system_load_mw = scenario.system_load_mw(&case)?;
        // With no microgrid there is no PCC: its export is zero every hour, and the bus
        // only says where the hour's price is read. `pcc_bus` still picks it when it is a
        // bus of the case (as before); otherwise the reference bus, which always exists.
        let pcc = match grid.bus_index(mg.pcc_bus) {
            Some(index) if pcc_buses.contains(&mg.pcc_bus) => index,
            _ if !mg.enabled => case.reference_bus(),
            _ => {
                return Err(Error::invalid(
                    "microgrid.pcc_bus",
                    mg.pcc_bus,
                    crate::microgrid::components::describe_bus_ids(&pcc_buses),
                ));
            }
        };
        check_system_load(scenario, &system_load_mw, &grid)?;
        let mut microgrid = MicrogridModel {
            config: mg.clone(),
            tie_capacity_mw: mg.tie_capacity_mw,
            hourly: mg.hourly(),
            battery_plan: [0.0; HOURS],
            linear_cost_c2: scenario.grid.linear_cost_c2,
        };
        let mut market = Market {
            grid,
            system_load_mw,
            microgrid: microgrid.clone(),
            pcc,
            rci: scenario.rci.clone(),
            attacks: scenario
                .attack
                .iter()
                .enumerate()
                .map(|(i, a)| a.slot(i, 0))
                .collect(),
            defence: scenario.defence,
            export_ranges: Vec::new(),
        };
        if mg.enabled {
            microgrid.battery_plan = match &mg.battery_plan {
                BatteryPlan::Idle => [0.0; HOURS],
                BatteryPlan::Explicit(v) => {
                    let mut p = [0.0; HOURS];
                    p.copy_from_slice(v);
                    p
                }
                BatteryPlan::SelfSchedule => central::self_schedule_battery(&market)?,
            };
            for h in 0..HOURS {
                let hm = &microgrid.hourly[h];
                let need =
                    hm.load_mw - microgrid.battery_plan[h] - (hm.wind_mw + hm.pv_mw + hm.tidal_mw);
                if need > mg.tie_capacity_mw {
                    return Err(Error::invalid(
                        "microgrid.tie_capacity_mw",
                        mg.tie_capacity_mw,
                        format!(">= {need:.3} MW, the microgrid's shortfall at hour {h}"),
                    ));
                }
                if -(hm.load_mw - microgrid.battery_plan[h]) > mg.tie_capacity_mw {
                    return Err(Error::invalid(
                        "microgrid.tie_capacity_mw",
                        mg.tie_capacity_mw,
                        format!(">= the battery's forced export at hour {h}"),
                    ));
                }
                // The smart grid must be able to serve its own load plus the microgrid's
                // shortfall, and absorb the battery's forced export above its units'
                // minimum output; otherwise the day's references are infeasible, an
                // error that names no field.
                let (load, cap, min_out) = (
                    market.system_load_mw[h],
                    market.grid.capacity_mw(),
                    market.grid.min_output_mw(),
                );
                if load + need > cap {
                    return Err(Error::invalid(
                        "microgrid.load.peak_mw",
                        mg.load.peak_mw,
                        format!(
                            "a peak the smart grid can serve: at hour {h} the microgrid needs \
                             {need:.3} MW beyond its renewables and battery, but the committed \
                             capacity {cap:.1} MW leaves {:.3} MW above the system load \
                             {load:.3} MW",
                            cap - load
                        ),
                    ));
                }
                let forced_export = microgrid.battery_plan[h] - hm.load_mw;
                if load - forced_export < min_out {
                    return Err(Error::invalid(
                        "microgrid.battery_plan",
                        format!("{:.3} MW at hour {h}", microgrid.battery_plan[h]),
                        format!(
                            "a discharge the smart grid can absorb: the forced export \
                             {forced_export:.3} MW would take it below its units' minimum \
                             output {min_out:.1} MW (system load {load:.3} MW)"
                        ),
                    ));
                }
            }
        }
        market.microgrid = microgrid;
        market.export_ranges = market.exchange_ranges(scenario)?;
        Ok(market)
    }

    /// The smart grid's feasible exports at the PCC of every hour, checked against what
    /// the market needs: with the microgrid, some exchange it can make (its load minus its
    /// renewables and battery plan, within the tie); without it, no exchange at all. A bus
    /// or load the network cannot serve is bad input, named with the hour and the limits.
    fn exchange_ranges(&self, scenario: &Scenario) -> Result<Vec<ExportRange>> {
        let tie = self.microgrid.tie_capacity_mw;
        let enabled = self.microgrid.config.enabled;
        let bus = self.grid.bus_ids[self.pcc];
        let ranges: Vec<Result<ExportRange>> = (0..HOURS)
            .into_par_iter()
            .map(|h| {
                let label = format!("hour {h}");
                let range = export_range(&self.grid, &self.bus_loads(h), self.pcc, -tie, tie, &label)?;
                if !enabled {
                    return match range {
                        Some(r) if r.0 <= 1e-6 && r.1 >= -1e-6 => Ok(ExportRange {
                            system_load_mw: self.system_load_mw[h],
                            range: r,
                        }),
                        _ => Err(self.unservable_load(scenario, h, None)),
                    };
                }
                let hm = &self.microgrid.hourly[h];
                let fixed = hm.load_mw - self.microgrid.battery_plan[h];
                let renewables = hm.wind_mw + hm.pv_mw + hm.tidal_mw;
                // What the microgrid can take from the grid (> 0) or give to it (< 0).
                let (need_lo, need_hi) = ((fixed - renewables).max(-tie), fixed.min(tie));
                match range {
                    Some((lo, hi)) if lo <= need_hi + 1e-6 && hi >= need_lo - 1e-6 => Ok(ExportRange {
                        system_load_mw: self.system_load_mw[h],
                        range: (lo, hi),
                    }),
                    Some((lo, hi)) => Err(Error::invalid(
                        "microgrid.pcc_bus",
                        bus,
                        format!(
                            "a bus whose network can carry the microgrid's exchange: at hour {h} the grid can deliver between {lo:.3} and {hi:.3} MW at bus {bus} (negative: it takes power) within its unit and line limits, but the microgrid needs between {need_lo:.3} and {need_hi:.3} MW (its load minus its renewables and battery plan, within the tie)"
                        ),
                    )),
                    // Not even a zero exchange is feasible: the network cannot serve its
                    // own load, wherever the microgrid connects, unless an exchange at
                    // this bus could relieve it, and none within the tie does.
                    None => Err(self.unservable_load(scenario, h, Some((bus, tie)))),
                }
            })
            .collect();
        // The first failing hour is reported, whatever the threads' order.
        crate::error::in_order(ranges)
    }

    /// The error of an hour whose system load no dispatch of the committed units can serve
    /// within their limits and the line ratings (with `pcc`, `(bus, tie)`: at any exchange
    /// within the tie at that bus either). It names the load's field with its value.
    fn unservable_load(&self, scenario: &Scenario, h: usize, pcc: Option<(usize, f64)>) -> Error {
        let value = match &scenario.load.hourly_mw {
            Some(v) => format!("{} MW", crate::error::compact(v[h])),
            None => crate::error::compact(scenario.load.scale),
        };
        let shunts = self.grid.shunt_load_total_mw();
        let shunts = if shunts != 0.0 {
            format!(" plus the shunt conductances' {shunts:.3} MW")
        } else {
            String::new()
        };
        // A shifter's fixed flow can make a load unservable that the case serves without
        // it: name them (a few, and the count of the rest) with MATPOWER's Pfinj.
        const SHOWN: usize = 4;
        let shifters = self.grid.phase_shifters();
        let shifters = match shifters.len() {
            0 => String::new(),
            n => {
                let mut listed: Vec<String> = shifters
                    .iter()
                    .take(SHOWN)
                    .map(|(row, mw)| format!("{row} (Pfinj {mw:.3} MW)"))
                    .collect();
                if n > SHOWN {
                    listed.push(format!("{} more", n - SHOWN));
                }
                let (s, its) = if n == 1 { ("", "its") } else { ("s", "their") };
                format!(
                    ", with the phase shifter{s} of mpc.branch row{s} {} at {its} fixed \
                     angle{s}",
                    listed.join(", ")
                )
            }
        };
        let exchange = pcc.map_or(String::new(), |(bus, tie)| {
            format!(", nor with any exchange within the tie (+-{tie} MW) at the PCC, bus {bus}")
        });
        Error::invalid(
            load_field(scenario, h),
            value,
            format!(
                "a load the network can serve: at hour {h} no dispatch of the committed units \
                 meets the system load {:.3} MW{shunts} within their limits and the line \
                 ratings{shifters}{exchange}",
                self.system_load_mw[h]
            ),
        )
    }

    /// Bus loads of an hour, MW.
    pub fn bus_loads(&self, hour: usize) -> Vec<f64> {
        self.grid.bus_loads(self.system_load_mw[hour])
    }

    /// The agents' offer curves for an hour, in [`AGENT_NAMES`] order (one agent when the
    /// microgrid is disabled). The smart grid's curve spans the tie capacity.
    pub fn curves(&self, hour: usize) -> Result<Vec<OfferCurve>> {
        let sg = self.smart_grid_curve(hour, &[])?.0;
        if self.microgrid.config.enabled {
            Ok(vec![sg, self.microgrid.curve(hour)?])
        } else {
            Ok(vec![sg])
        }
    }

    /// The smart grid's curve of `hour` (as [`Market::curves`] builds it), its walk seeded
    /// first from `seeds` (curves of the same hour at other loads, see
    /// [`smart_grid_curve_seeded`]), with its own seeds.
    pub(crate) fn smart_grid_curve(
        &self,
        hour: usize,
        seeds: &[&CurveSeeds],
    ) -> Result<(OfferCurve, CurveSeeds)> {
        let tie = self.microgrid.tie_capacity_mw;
        let label = format!("hour {hour}");
        let loads = self.bus_loads(hour);
        let range = match self.export_ranges.get(hour) {
            Some(r) if r.system_load_mw.to_bits() == self.system_load_mw[hour].to_bits() => r.range,
            _ => {
                export_range(&self.grid, &loads, self.pcc, -tie, tie, &label)?.ok_or_else(|| {
                    Error::Solver {
                        problem: format!(
                            "smart-grid offer curve at bus {}, {label}",
                            self.grid.bus_ids[self.pcc]
                        ),
                        message: format!(
                            "no export within +-{tie} MW is feasible (system load {:.3} MW)",
                            self.system_load_mw[hour]
                        ),
                    }
                })?
            }
        };
        smart_grid_curve_seeded(&self.grid, &loads, self.pcc, range, &label, seeds)
    }

    /// Whether the smart grid can deliver some export within the tie capacity at `hour`
    /// with a system load of `load_mw`: the export range's two LPs ([`export_range`]),
    /// which every curve of the hour needs. Errors are the solver's.
    pub(crate) fn can_trade_at(&self, hour: usize, load_mw: f64) -> Result<bool> {
        let tie = self.microgrid.tie_capacity_mw;
        let loads = self.grid.bus_loads(load_mw);
        let label = format!("hour {hour}");
        Ok(export_range(&self.grid, &loads, self.pcc, -tie, tie, &label)?.is_some())
    }

    /// Trade limits of each agent (the P_min/P_max of eq. 33-36): the tie capacity.
    pub fn agent_limits(&self) -> (f64, f64) {
        (
            -self.microgrid.tie_capacity_mw,
            self.microgrid.tie_capacity_mw,
        )
    }

    /// The scenario's attacks on hour `hour`, with its defence.
    pub fn hour_attacks(&self, hour: usize) -> HourAttacks<'_> {
        HourAttacks::new(&self.attacks, hour as u32, self.defence)
    }

    /// Whether any attack hits hour `hour`.
    pub fn is_attacked(&self, hour: usize) -> bool {
        self.hour_attacks(hour).any()
    }

    /// Negotiates hour `hour` over given curves under the scenario's attacks on it.
    pub fn negotiate_hour(
        &self,
        hour: usize,
        curves: &[OfferCurve],
        keep_trajectory: bool,
    ) -> HourOutcome {
        rci::negotiate_attacked(
            &self.rci_agents(curves),
            &self.rci,
            &self.hour_attacks(hour),
            keep_trajectory,
        )
    }

    /// The RCI agents of an hour's curves, with the tie's trade limits.
    pub fn rci_agents<'a>(&self, curves: &'a [OfferCurve]) -> Vec<Agent<'a>> {
        let (lo, hi) = self.agent_limits();
        curves
            .iter()
            .map(|c| Agent {
                curve: c.view(),
                min_export: lo,
                max_export: hi,
            })
            .collect()
    }

    /// Negotiates one hour over given curves, without attacks.
    pub fn negotiate(&self, curves: &[OfferCurve], keep_trajectory: bool) -> HourOutcome {
        rci::negotiate(&self.rci_agents(curves), &self.rci, keep_trajectory)
    }
}

/// The attack-free negotiation of an attacked hour (the CPU reference), what an attack's
/// effect is measured against.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AttackFree {
    /// The attack-free negotiation met its stop rules.
    pub converged: bool,
    /// Its iterations.
    pub iterations: u32,
    /// Its market price, $/MWh.
    pub price: f64,
    /// Its exchange smart grid -> microgrid, MW.
    pub exchange_mw: f64,
    /// Each agent's final export, MW.
    pub agent_powers: Vec<f64>,
}

impl HourResult {
    /// The market price minus the attack-free one, $/MWh (0 for an hour not attacked).
    pub fn price_bias(&self) -> f64 {
        self.attack_free
            .as_ref()
            .map_or(0.0, |f| self.p2p.price - f.price)
    }

    /// Money moved by the attack, $/h: the microgrid's payment to the smart grid (price x
    /// exchange) minus the attack-free payment (0 for an hour not attacked).
    pub fn money_moved(&self) -> f64 {
        self.attack_free.as_ref().map_or(0.0, |f| {
            self.p2p.price * self.p2p.exchange_mw - f.price * f.exchange_mw
        })
    }

    /// The largest deviation from the attack-free result, relative: over the price and
    /// every agent's export, `|x - x_free| / max(|x_free|, 1)` (0 for an hour not
    /// attacked; infinite or NaN for a diverged negotiation).
    pub fn attack_deviation(&self) -> f64 {
        let Some(f) = &self.attack_free else {
            return 0.0;
        };
        let rel = |x: f64, free: f64| (x - free).abs() / free.abs().max(1.0);
        let mut worst = rel(self.p2p.price, f.price);
        for (a, &free) in self.p2p.outcome.agents.iter().zip(&f.agent_powers) {
            let d = rel(a.power, free);
            // NaN (a diverged run) must win the maximum.
            if !(d <= worst) {
                worst = d;
            }
        }
        worst
    }
}

/// What the attacks did to the day (`summary.json`'s `attack`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AttackSummary {
    /// `"undefended"` or `"defended"`.
    pub defence: crate::attack::Defence,
    /// The attacked hours.
    pub attacked_hours: Vec<usize>,
    /// Attacked hours whose negotiation met its stop rules.
    pub converged_attacked_hours: usize,
    /// Attacked hours whose attack-free negotiation met its stop rules.
    pub converged_attack_free_hours: usize,
    /// Messages the attacks altered, over the day.
    pub tampered: u64,
    /// Altered messages the ledger rejected.
    pub rejected: u64,
    /// Largest [`HourResult::attack_deviation`] over the attacked hours (null: diverged).
    pub max_relative_deviation: f64,
    /// Largest |price bias| over the attacked hours, $/MWh.
    pub max_abs_price_bias: f64,
    /// Sum of [`HourResult::money_moved`] over the attacked hours, $.
    pub money_moved: f64,
}

/// The day's [`AttackSummary`], `None` when no hour was attacked.
pub fn attack_summary(market: &Market, hours: &[HourResult]) -> Option<AttackSummary> {
    let attacked: Vec<&HourResult> = hours.iter().filter(|h| h.attack_free.is_some()).collect();
    if attacked.is_empty() {
        return None;
    }
    Some(AttackSummary {
        defence: market.defence,
        attacked_hours: attacked.iter().map(|h| h.hour).collect(),
        converged_attacked_hours: attacked.iter().filter(|h| h.p2p.outcome.converged).count(),
        converged_attack_free_hours: attacked
            .iter()
            .filter(|h| h.attack_free.as_ref().is_some_and(|f| f.converged))
            .count(),
        tampered: attacked
            .iter()
            .map(|h| u64::from(h.p2p.outcome.tampered))
            .sum(),
        rejected: attacked
            .iter()
            .map(|h| u64::from(h.p2p.outcome.rejected))
            .sum(),
        max_relative_deviation: attacked
            .iter()
            .map(|h| h.attack_deviation())
            .fold(0.0, |w: f64, d| if !(d <= w) { d } else { w }),
        max_abs_price_bias: attacked
            .iter()
            .map(|h| h.price_bias().abs())
            .fold(0.0, |w: f64, d| if !(d <= w) { d } else { w }),
        money_moved: attacked.iter().map(|h| h.money_moved()).sum(),
    })
}

/// One hour of the P2P market.
#[derive(Debug, Clone, PartialEq)]
pub struct P2pHour {
    /// The negotiation's outcome (converged flag, iterations, residuals, trajectory).
    pub outcome: HourOutcome,
    /// Market price, $/MWh.
    pub price: f64,
    /// Power from the smart grid to the microgrid, MW (> 0: the microgrid buys).
    pub exchange_mw: f64,
    /// Each agent's operating cost at its final power, $/h, in [`AGENT_NAMES`] order.
    pub agent_costs: Vec<f64>,
}

/// Everything one hour produced.
#[derive(Debug, Clone, PartialEq)]
pub struct HourResult {
    /// Hour of the day, 0..24.
    pub hour: usize,
    /// Smart-grid system load, MW.
    pub system_load_mw: f64,
    /// The P2P market.
    pub p2p: P2pHour,
    /// Same-information hourly reference.
    pub hourly_reference: ReferenceHour,
    /// 24-h co-optimization, this hour.
    pub horizon_reference: ReferenceHour,
    /// The smart grid's network at the negotiated outcome: its optimal dispatch with the
    /// P2P exchange fixed at the PCC ([`central::network_at_exchange`]); `None` when the
    /// negotiation did not converge and ended at an exchange the grid cannot deliver
    /// (beyond its offer curve's exports, or not finite: a diverged hour).
    pub consensus_network: Option<ReferenceHour>,
    /// The agents' offer curves.
    pub curves: Vec<OfferCurve>,
    /// For an attacked hour, its attack-free negotiation; `None` otherwise.
    pub attack_free: Option<AttackFree>,
}

/// Headline figures of a day (the keys of `summary.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Hours whose negotiation met every stop rule.
    pub converged_hours: usize,
    /// Largest iteration count over the hours.
    pub iterations_max: u32,
    /// Mean iteration count over the hours.
    pub iterations_mean: f64,
    /// Sum over hours and agents of the P2P operating costs, $.
    pub p2p_total_cost: f64,
    /// Sum of the same-information hourly reference costs, $.
    pub central_hourly_total_cost: f64,
    /// Cost of the 24-h co-optimization, $.
    pub central_24h_total_cost: f64,
    /// max_h |P2P exchange - hourly reference exchange| / max(|reference|, 1 MW), %.
    pub max_power_deviation_pct: f64,
    /// |P2P total cost - hourly reference cost| / hourly reference cost, %.
    pub cost_gap_pct: f64,
    /// max_h |P2P price - hourly reference price|, $/MWh.
    pub max_price_deviation: f64,
    /// (hourly reference - 24-h co-optimization) / hourly reference, %: what coordinating
    /// the battery and ramps across hours would save over the hourly market.
    pub co_optimization_advantage_pct: f64,
    /// Wall time of the whole run (curves, negotiation, references), s.
    pub runtime_s: f64,
    /// What the scenario's attacks did; absent without attacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack: Option<AttackSummary>,
}

/// A complete day.
#[derive(Debug, Clone, PartialEq)]
pub struct DayResult {
    /// The 24 hours.
    pub hours: Vec<HourResult>,
    /// Headline figures.
    pub summary: Summary,
    /// The smart grid's buses, branches and units, as the hours' network states index them.
    pub layout: central::GridLayout,
}

/// Runs the whole day: curves, RCI per hour (the f64 CPU reference), both references, and
/// the summary.
pub fn run_day(market: &Market, keep_trajectories: bool) -> Result<DayResult> {
    run_day_with(market, keep_trajectories, None)
}

/// [`run_day`], with the hours' negotiations already done elsewhere (a batch backend):
/// `negotiated[h]` replaces the reference negotiation of hour `h`. Curves, costs and the
/// references are computed here in f64 either way.
pub fn run_day_with(
    market: &Market,
    keep_trajectories: bool,
    negotiated: Option<Vec<HourOutcome>>,
) -> Result<DayResult> {
    if let Some(v) = &negotiated
        && v.len() != HOURS
    {
        return Err(Error::invalid(
            "negotiated outcomes",
            v.len(),
            "exactly 24 hours",
        ));
    }
    let start = Instant::now();
    let horizon = central::horizon_reference(market)?;
    let hours: Vec<Result<HourResult>> = (0..HOURS)
        .into_par_iter()
        .map(|h| -> Result<HourResult> {
            let curves = market.curves(h)?;
            let outcome = match &negotiated {
                Some(v) => v[h].clone(),
                None => market.negotiate_hour(h, &curves, keep_trajectories),
            };
            // An attacked hour is compared with its attack-free negotiation (the CPU
            // reference, whatever backend negotiated the day).
            let attack_free = market.is_attacked(h).then(|| {
                let free = market.negotiate(&curves, false);
                AttackFree {
                    converged: free.converged,
                    iterations: free.iterations,
                    price: free.price(),
                    exchange_mw: if curves.len() > 1 {
                        free.agents[0].power
                    } else {
                        0.0
                    },
                    agent_powers: free.agents.iter().map(|a| a.power).collect(),
                }
            });
            let agent_costs = curves
                .iter()
                .zip(&outcome.agents)
                .map(|(c, a)| c.cost_at_export(a.power))
                .collect();
            let outcome_converged = outcome.converged;
            // The smart grid's export is the microgrid's import.
            let exchange_mw = if curves.len() > 1 {
                outcome.agents[0].power
            } else {
                0.0
            };
            Ok(HourResult {
                hour: h,
                system_load_mw: market.system_load_mw[h],
                p2p: P2pHour {
                    price: outcome.price(),
                    exchange_mw,
                    agent_costs,
                    outcome,
                },
                hourly_reference: central::hourly_reference(market, h)?,
                horizon_reference: horizon[h].clone(),
                consensus_network: if outcome_converged || deliverable(&curves[0], exchange_mw) {
                    Some(central::network_at_exchange(market, h, exchange_mw)?)
                } else {
                    None
                },
                curves,
                attack_free,
            })
        })
        .collect::<Vec<_>>();
    let hours = crate::error::in_order(hours)?;
    let mut summary = summarize(&hours, start.elapsed().as_secs_f64());
    summary.attack = attack_summary(market, &hours);
    Ok(DayResult {
        hours,
        summary,
        layout: central::GridLayout::of(market),
    })
}

/// Whether the smart grid, offering `sg`, can deliver `exchange_mw` (its curve spans the
/// exports its network can deliver; 1e-6 MW of rounding is allowed, as the QP does).
fn deliverable(sg: &OfferCurve, exchange_mw: f64) -> bool {
    exchange_mw.is_finite()
        && exchange_mw >= sg.min_export() - 1e-6
        && exchange_mw <= sg.max_export() + 1e-6
}

/// Computes the headline figures.
pub fn summarize(hours: &[HourResult], runtime_s: f64) -> Summary {
    let p2p_total_cost: f64 = hours
        .iter()
        .map(|h| h.p2p.agent_costs.iter().sum::<f64>())
        .sum();
    let central_hourly_total_cost: f64 =
        hours.iter().map(|h| h.hourly_reference.total_cost()).sum();
    let central_24h_total_cost: f64 = hours.iter().map(|h| h.horizon_reference.total_cost()).sum();
    let max_power_deviation_pct = hours
        .iter()
        .map(|h| {
            let r = h.hourly_reference.exchange_mw;
            100.0 * (h.p2p.exchange_mw - r).abs() / r.abs().max(1.0)
        })
        .fold(0.0, f64::max);
    let max_price_deviation = hours
        .iter()
        .map(|h| (h.p2p.price - h.hourly_reference.price).abs())
        .fold(0.0, f64::max);
    let iters: Vec<u32> = hours.iter().map(|h| h.p2p.outcome.iterations).collect();
    Summary {
        converged_hours: hours.iter().filter(|h| h.p2p.outcome.converged).count(),
        iterations_max: iters.iter().copied().max().unwrap_or(0),
        iterations_mean: iters.iter().map(|&i| i as f64).sum::<f64>() / iters.len().max(1) as f64,
        p2p_total_cost,
        central_hourly_total_cost,
        central_24h_total_cost,
        max_power_deviation_pct,
        cost_gap_pct: 100.0 * (p2p_total_cost - central_hourly_total_cost).abs()
            / central_hourly_total_cost,
        max_price_deviation,
        co_optimization_advantage_pct: 100.0 * (central_hourly_total_cost - central_24h_total_cost)
            / central_hourly_total_cost,
        runtime_s,
        attack: None,
    }
}

/// The field that sets hour `h`'s system load: the explicit entry, or the RTS-79 scale.
fn load_field(scenario: &Scenario, h: usize) -> String {
    if scenario.load.hourly_mw.is_some() {
        format!("load.hourly_mw[{h}]")
    } else {
        "load.scale".to_string()
    }
}
