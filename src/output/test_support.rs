//! A small hand-made [`DayResult`] for the output tests (no solver, no market run).
//!
//! Curves have closed-form costs on the traded range:
//! - smart grid: one unit `0.5 p^2 + 10 p` on 0..100 MW, so `cost(x) = 0.5 x^2 + 10 x`;
//! - microgrid: one unit `p^2` on 0..100 MW minus a 100 MW load, so
//!   `cost(x) = (x + 100)^2` on -100..0 MW.
//!
//! Hours:
//! - 0: converged in 2 iterations, smart-grid power 0, 4, 5 MW (microgrid the opposite);
//! - 1: converged in 3 iterations, smart-grid power 0, 2, 6, 10 MW;
//! - 2: microgrid disabled (one agent), no trajectory, final power 2 MW.

use crate::central::{BranchInfo, GridLayout, NetworkState, ReferenceHour};
use crate::market::{DayResult, HourResult, P2pHour, summarize};
use crate::offer::{OfferCurve, QuadraticUnit};
use crate::rci::{AgentState, HourOutcome, Residuals, TrajectoryPoint};

/// The smart grid's curve: `cost(x) = 0.5 x^2 + 10 x` on 0..100 MW.
pub fn sg_curve() -> OfferCurve {
    let unit = QuadraticUnit {
        c2: 0.5,
        c1: 10.0,
        c0: 0.0,
        pmin: 0.0,
        pmax: 100.0,
    };
    OfferCurve::from_units(&[unit], 0.0, 0.0).expect("valid test curve")
}

/// The microgrid's curve: `cost(x) = (x + 100)^2` on -100..0 MW.
pub fn mg_curve() -> OfferCurve {
    let unit = QuadraticUnit {
        c2: 1.0,
        c1: 0.0,
        c0: 0.0,
        pmin: 0.0,
        pmax: 100.0,
    };
    OfferCurve::from_units(&[unit], -100.0, 0.0).expect("valid test curve")
}

fn state(price: f64, power: f64) -> AgentState {
    AgentState {
        price,
        power,
        dual_upper: 0.0,
        dual_lower: 0.1 * power,
    }
}

/// A two-agent trajectory where the smart grid exports `powers[k]` at iteration k.
fn trajectory(powers: &[f64]) -> Vec<TrajectoryPoint> {
    powers
        .iter()
        .enumerate()
        .flat_map(|(k, &p)| {
            let price = 10.0 + p;
            [
                TrajectoryPoint {
                    iteration: k as u32,
                    agent: 0,
                    state: state(price, p),
                },
                TrajectoryPoint {
                    iteration: k as u32,
                    agent: 1,
                    state: state(price + 0.5, -p),
                },
            ]
        })
        .collect()
}

fn reference(price: f64, exchange_mw: f64, lines: &[&str]) -> ReferenceHour {
    ReferenceHour {
        price,
        exchange_mw,
        smart_grid_cost: 100.0 + exchange_mw,
        microgrid_cost: 50.0,
        battery_mw: 1.5,
        binding_lines: lines.iter().map(|s| s.to_string()).collect(),
        generator_mw: vec![exchange_mw + 100.0],
        bus_prices: vec![price; 3],
        network: NetworkState {
            bus_load_mw: vec![1000.0, 600.0, 400.0 - exchange_mw],
            bus_injection_mw: vec![exchange_mw - 900.0, -600.0, 1500.0],
            branch_flow_mw: vec![-900.0 + exchange_mw, 600.0],
            line_shadow_price: vec![if lines.is_empty() { 0.0 } else { 2.5 }],
        },
    }
}

/// A two-agent hour whose negotiation followed `powers` (smart grid's export).
fn two_agent_hour(hour: usize, powers: &[f64], keep_trajectory: bool) -> HourResult {
    let curves = vec![sg_curve(), mg_curve()];
    let traj = trajectory(powers);
    let last = *powers.last().expect("non-empty powers");
    let agents = vec![state(10.0 + last, last), state(10.5 + last, -last)];
    let agent_costs = curves
        .iter()
        .zip(&agents)
        .map(|(c, a)| c.cost_at_export(a.power))
        .collect();
    let outcome = HourOutcome {
        converged: true,
        iterations: (powers.len() - 1) as u32,
        agents,
        residuals: Residuals {
            price_change: 1e-8,
            power_change: 2e-8,
            dual_change: 3e-8,
            balance: 4e-8,
            price_spread: 0.5,
        },
        trajectory: if keep_trajectory { traj } else { Vec::new() },
        tampered: 0,
        rejected: 0,
    };
    HourResult {
        hour,
        system_load_mw: 2000.0 + hour as f64,
        p2p: P2pHour {
            price: outcome.price(),
            exchange_mw: last,
            agent_costs,
            outcome,
        },
        hourly_reference: reference(15.0, last + 1.0, &["101-102", "103-124"]),
        horizon_reference: reference(14.0, last - 1.0, &[]),
        consensus_network: Some(reference(10.0 + last, last, &[])),
        curves,
        attack_free: None,
    }
}

/// The one-agent hour (microgrid disabled) with no trajectory.
fn one_agent_hour(hour: usize) -> HourResult {
    let curves = vec![sg_curve()];
    let agents = vec![state(12.0, 2.0)];
    let outcome = HourOutcome {
        converged: false,
        iterations: 7,
        agents,
        residuals: Residuals::default(),
        trajectory: Vec::new(),
        tampered: 0,
        rejected: 0,
    };
    HourResult {
        hour,
        system_load_mw: 1900.0,
        p2p: P2pHour {
            price: 12.0,
            exchange_mw: 0.0,
            agent_costs: vec![22.0],
            outcome,
        },
        hourly_reference: reference(12.0, 0.0, &[]),
        horizon_reference: reference(12.0, 0.0, &["115-121"]),
        consensus_network: Some(reference(12.0, 0.0, &[])),
        curves,
        attack_free: None,
    }
}

/// The three-hour synthetic day described in the module docs; trajectories only when
/// `keep_trajectories`.
pub fn day(keep_trajectories: bool) -> DayResult {
    let hours = vec![
        two_agent_hour(0, &[0.0, 4.0, 5.0], keep_trajectories),
        two_agent_hour(1, &[0.0, 2.0, 6.0, 10.0], keep_trajectories),
        one_agent_hour(2),
    ];
    let summary = summarize(&hours, 0.25);
    DayResult {
        hours,
        summary,
        layout: layout(),
    }
}

/// The synthetic day's grid: buses 101, 102 and 103 (the PCC), branch 101-102 rated
/// 900 MW and branch 102-103 unlimited, one unit at bus 101.
fn layout() -> GridLayout {
    let branch = |from_id, to_id, case_row, rate_mw| BranchInfo {
        from_id,
        to_id,
        case_row,
        rate_mw,
    };
    GridLayout {
        bus_ids: vec![101, 102, 103],
        pcc_bus: 103,
        branches: vec![branch(101, 102, 1, Some(900.0)), branch(102, 103, 2, None)],
        line_branch: vec![0],
        units: vec![crate::grid::Unit {
            bus: 0,
            c2: 0.01,
            c1: 20.0,
            c0: 100.0,
            pmin: 50.0,
            pmax: 1200.0,
            ramp_mw: f64::INFINITY,
        }],
    }
}

/// The sorted file names in a directory.
pub fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("test dir is readable")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}
