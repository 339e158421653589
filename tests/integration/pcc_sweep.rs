//! Every bus of MATPOWER's case30 and case118 as the point of common coupling, with the
//! microgrid on and off (issue 6): each run must either converge to its own hourly
//! reference at every hour or be refused with a clear reason. No aborted run, no cycle.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::Value;

use p2pmarket::Error;
use p2pmarket::central;
use p2pmarket::market::Market;
use p2pmarket::offer::OfferCurve;
use p2pmarket::scenario::Scenario;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The 24 system loads and the case file of a committed reference variant.
fn variant(name: &str) -> (PathBuf, Vec<f64>) {
    let path = repo_path(&format!("tests/data/matpower_refs/{name}.json"));
    let text = std::fs::read_to_string(&path).expect("reference JSON");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    let case = v["inputs"]["case_file"]
        .as_str()
        .or_else(|| v["case_file"].as_str())
        .expect("case_file")
        .to_string();
    let loads = v["inputs"]["hourly_mw"]
        .as_array()
        .or_else(|| v["hourly_mw"].as_array())
        .expect("hourly_mw")
        .iter()
        .map(|x| x.as_f64().expect("load"))
        .collect();
    (repo_path(&case), loads)
}

/// How one PCC run ended.
#[derive(Debug)]
enum Outcome {
    /// Every hour converged to its reference; `congested_hours` counts hours where a line
    /// into the PCC binds in the reference.
    Matched {
        congested_hours: usize,
    },
    Refused(String),
    Mismatch(String),
}

/// Tolerances. The consensus must land on the exact crossing of the offer curves
/// (`CROSSING_TOL_MW`); the crossing must agree with the QP reference within the
/// interior-point solver's accuracy (its duals are good to about 1e-5 $/MWh, which on a
/// steep curve of 100 MW per $/MWh moves the exchange by 1e-3 MW).
const CROSSING_TOL_MW: f64 = 1e-6;
const EXCHANGE_REL_TOL: f64 = 1e-4;
const COST_REL_TOL: f64 = 1e-8;
const PRICE_TOL: f64 = 1e-4;

/// The exact clearing of the curves: the exchange (smart-grid export) where the agents'
/// responses, each clamped to the tie, balance. Bisection on the price to the last bit.
fn crossing(curves: &[OfferCurve], tie: f64) -> f64 {
    let clamp = |c: &OfferCurve, p: f64| c.export_at(p).clamp(-tie, tie);
    let excess = |p: f64| curves.iter().map(|c| clamp(c, p)).sum::<f64>();
    let (mut lo, mut hi) = (-1e4, 1e4);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if excess(mid) > 0.0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    // The smart grid's side of the balance at the crossing.
    let (a, b) = (clamp(&curves[0], lo), clamp(&curves[0], hi));
    if excess(lo).abs() <= excess(hi).abs() {
        a
    } else {
        b
    }
}

fn run_at(case: &Path, loads: &[f64], bus: usize, microgrid: bool, tie_mw: f64) -> Outcome {
    let mut s = Scenario::default();
    s.grid.case_file = Some(case.to_path_buf());
    s.load.hourly_mw = Some(loads.to_vec());
    s.microgrid.enabled = microgrid;
    s.microgrid.pcc_bus = bus;
    s.microgrid.tie_capacity_mw = tie_mw;
    let market = match Market::from_scenario(&s) {
        Ok(m) => m,
        // The only acceptable refusal: this bus cannot carry the microgrid's exchange.
        Err(e @ Error::InvalidInput { .. })
            if microgrid && e.to_string().contains("microgrid.pcc_bus") =>
        {
            return Outcome::Refused(e.to_string());
        }
        Err(e) => return Outcome::Mismatch(format!("market refused: {e}")),
    };
    let mut congested_hours = 0;
    for h in 0..24 {
        let fail = |what: String| Outcome::Mismatch(format!("hour {h}: {what}"));
        let curves = match market.curves(h) {
            Ok(c) => c,
            Err(e) => return fail(format!("aborted: {e}")),
        };
        let outcome = market.negotiate(&curves, false);
        let reference = match central::hourly_reference(&market, h) {
            Ok(r) => r,
            Err(e) => return fail(format!("reference aborted: {e}")),
        };
        if !outcome.converged {
            return fail(format!(
                "no convergence after {} iterations ({:?})",
                outcome.iterations, outcome.residuals
            ));
        }
        let exchange = if microgrid {
            outcome.agents[0].power
        } else {
            0.0
        };
        let exact = if microgrid {
            crossing(&curves, tie_mw)
        } else {
            0.0
        };
        if (exchange - exact).abs() > CROSSING_TOL_MW {
            return fail(format!(
                "exchange {exchange} MW vs the curves' crossing {exact} MW"
            ));
        }
        let x_ref = reference.exchange_mw;
        if (exact - x_ref).abs() > EXCHANGE_REL_TOL * x_ref.abs().max(1.0) {
            return fail(format!("crossing {exact} MW vs reference {x_ref} MW"));
        }
        let cost: f64 = curves
            .iter()
            .zip(&outcome.agents)
            .map(|(c, a)| c.cost_at_export(a.power))
            .sum();
        let ref_cost = reference.total_cost();
        if (cost - ref_cost).abs() > COST_REL_TOL * ref_cost.abs().max(1.0) {
            return fail(format!("cost {cost} vs reference {ref_cost}"));
        }
        // The clearing price is unique unless the tie binds or the smart grid's marginal
        // cost jumps at the exchange; then both prices must clear its curve there.
        let price = outcome.price();
        let tie_binds = microgrid && exact.abs() >= tie_mw - 1e-5;
        let sg = &curves[0];
        let clears = |p: f64| (sg.export_at(p) - exchange).abs() <= 1e-6;
        if !tie_binds
            && (price - reference.price).abs() > PRICE_TOL
            && !(clears(price) && clears(reference.price))
        {
            return fail(format!(
                "price {price} vs reference {} (exchange {exchange} MW)",
                reference.price
            ));
        }
        let pcc_lines = market
            .grid
            .lines
            .iter()
            .filter(|l| l.from_id == bus || l.to_id == bus);
        if pcc_lines
            .map(|l| format!("{}-{}", l.from_id, l.to_id))
            .any(|name| reference.binding_lines.contains(&name))
        {
            congested_hours += 1;
        }
    }
    Outcome::Matched { congested_hours }
}

/// Runs every bus with the microgrid on and off; returns (matched, refused, runs with a
/// binding line into the PCC).
fn sweep(name: &str, tie_mw: f64) -> (usize, usize, usize) {
    let (case, loads) = variant(name);
    let text = std::fs::read_to_string(&case).expect("case");
    let parsed = p2pmarket::data::matpower::parse(&text, "case").expect("case parses");
    let buses: Vec<usize> = parsed.buses.iter().map(|b| b.id).collect();
    let runs: Vec<(usize, bool)> = buses
        .iter()
        .flat_map(|&b| [(b, true), (b, false)])
        .collect();
    let start = std::time::Instant::now();
    let outcomes: Vec<((usize, bool), Outcome)> = runs
        .par_iter()
        .map(|&(b, mg)| ((b, mg), run_at(&case, &loads, b, mg, tie_mw)))
        .collect();
    let mut failures = Vec::new();
    let (mut matched, mut refused, mut congested_runs) = (0, 0, 0);
    for ((b, mg), o) in &outcomes {
        match o {
            Outcome::Matched { congested_hours } => {
                matched += 1;
                if *congested_hours > 0 {
                    congested_runs += 1;
                }
            }
            Outcome::Refused(why) => {
                refused += 1;
                eprintln!("{name} bus {b} microgrid {mg}: refused: {why}");
            }
            Outcome::Mismatch(why) => {
                failures.push(format!("{name} bus {b} microgrid {mg}: {why}"))
            }
        }
    }
    eprintln!(
        "{name}: {matched} matched ({congested_runs} with a binding line into the PCC), \
         {refused} refused, {} failed, in {:.1} s",
        failures.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    (matched, refused, congested_runs)
}

#[test]
fn every_case30_bus_as_pcc() {
    let (matched, refused, _) = sweep("case30", 20.0);
    // Microgrid off, every bus serves; on, only the radial buses behind weak lines refuse.
    assert!(
        matched >= 30 && refused <= 10,
        "{matched} matched, {refused} refused"
    );
}

#[test]
fn every_case30_bus_as_pcc_with_the_default_60_mw_tie() {
    // The tie range of the reports (Clarabel stalls at -40 MW at buses 12, 21
    // and 27, a false non-convexity at 55.4 MW at bus 15): the curve over +-60 MW is built
    // at every bus, with the microgrid off too.
    let (matched, _, _) = sweep("case30", 60.0);
    assert!(matched >= 30, "{matched}");
}

#[test]
fn every_case30_bus_as_pcc_congested() {
    let (matched, _, congested) = sweep("case30_load135", 20.0);
    assert!(matched >= 30, "{matched}");
    assert!(congested > 0, "no run had a binding line into its PCC");
}

#[test]
fn every_case118_bus_as_pcc_with_binding_lines() {
    let (matched, _, congested) = sweep("case118_derated", 60.0);
    assert!(matched >= 118, "{matched}");
    assert!(congested > 0, "no run had a binding line into its PCC");
}

#[test]
fn case30_at_1_35_load_pcc_8_converges_every_hour() {
    // Issue 6, item 4: microgrid off, 60 MW curve range; hour 19 balances on a stretch
    // of 0.06 MW per $/MWh, where a balanced iterate used to jump out of its bracket and
    // alternate between two prices for 1000 iterations (23/24 hours converged).
    let (case, loads) = variant("case30");
    let loads: Vec<f64> = loads.iter().map(|l| l * 1.35).collect();
    match run_at(&case, &loads, 8, false, 60.0) {
        Outcome::Matched { .. } => {}
        other => panic!("{other:?}"),
    }
}
