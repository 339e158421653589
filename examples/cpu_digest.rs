//! SHA-256 digests of the bits of the CPU reference's results on seeded batches: every
//! step rule, dual and power update, common and apart starts, iteration caps that cut
//! hours short, random attacks (defended and not), kept trajectories, the bench runs,
//! markets without a microgrid or renewables, and the plain `rci::negotiate` on random
//! unit markets of 1 to 5 agents.
//!
//! A change meant to make the CPU backend faster without changing a bit prints the same
//! lines before and after: build this example at both commits (copy it into the older
//! checkout: it needs only the public API of 9578331 and later) and `diff` the outputs.
//! The draws use `powf`, so another libm may draw other runs: compare on one machine.
//!
//! `cargo run --release --example cpu_digest`

use p2pmarket::attack::{Attack, AttackShape, AttackVariable, Defence, MAX_ATTACKS};
use p2pmarket::engine::bench::bench_runs;
use p2pmarket::engine::cpu::run_cpu;
use p2pmarket::engine::{Batch, BatchOutputs, RunSpec};
use p2pmarket::market::Market;
use p2pmarket::offer::{OfferCurve, QuadraticUnit};
use p2pmarket::rci::{
    self, Agent, AgentState, DualUpdate, PowerUpdate, RciSettings, StartPrice, StepRule,
};
use p2pmarket::scenario::Scenario;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// Seeded runs over the RCI settings' whole space (as the equivalence harness draws them).
fn random_runs(seed: u64, n: usize) -> Vec<RunSpec> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut rci = RciSettings {
                step_rule: [StepRule::Constant, StepRule::Diminishing, StepRule::Newton]
                    [rng.random_range(0..3usize)],
                power_update: if rng.random_bool(0.5) {
                    PowerUpdate::Plain
                } else {
                    PowerUpdate::Relaxed
                },
                kappa: 0.001 * 50f64.powf(rng.random_range(0.0..1.0)),
                kappa_decay: rng.random_range(20.0..400.0),
                newton_damping: rng.random_range(0.5..1.0),
                initial_price: rng.random_range(5.0..60.0),
                start_price: StartPrice::Common,
                max_iterations: [40, 150, 400][rng.random_range(0..3usize)],
                dual_update: if rng.random_bool(0.5) {
                    DualUpdate::Exact
                } else {
                    DualUpdate::Gradient
                },
                ..RciSettings::default()
            };
            if rng.random_bool(0.5) {
                rci.start_price = StartPrice::OwnMarginal;
                rci.chi = rng.random_range(0.05..0.95);
            }
            RunSpec {
                load_scale: [0.9, 1.0, 1.1][rng.random_range(0..3usize)],
                renewable_scale: rng.random_range(0.0..1.5),
                mg_load_scale: rng.random_range(0.7..1.3),
                rci,
                trajectory: i % 97 == 0,
                ..RunSpec::default()
            }
        })
        .collect()
}

/// [`random_runs`] under 1..=4 random attacks each, half of them defended.
fn attacked_runs(seed: u64, n: usize) -> Vec<RunSpec> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa77a_c4ed);
    let mut runs = random_runs(seed, n);
    let mut next = 0;
    for (i, r) in runs.iter_mut().enumerate() {
        for k in 0..rng.random_range(1..=MAX_ATTACKS) {
            let variable = AttackVariable::ALL[next % AttackVariable::ALL.len()];
            next += 1;
            let hours: Vec<u32> = (0..24).filter(|_| rng.random_bool(0.4)).collect();
            let size = 10f64.powf(rng.random_range(-12.0..1.5));
            let attack = Attack {
                variable,
                agent: rng.random_range(0..2),
                hours: if hours.is_empty() { vec![3] } else { hours },
                first_iteration: rng.random_range(0..30),
                duration: rng.random_bool(0.75).then(|| rng.random_range(1..=200)),
                shape: AttackShape::ALL[rng.random_range(0..AttackShape::ALL.len())],
                size: if rng.random_bool(0.5) { size } else { -size },
                ramp_iterations: rng.random_range(1..=30),
                seed: rng.random(),
            };
            r.attacks[k] = attack.slot(k, i as u64);
        }
        r.defence = if rng.random_bool(0.5) {
            Defence::Defended
        } else {
            Defence::Undefended
        };
    }
    runs
}

fn hash_state(h: &mut Sha256, s: &AgentState) {
    for x in [s.price, s.power, s.dual_upper, s.dual_lower] {
        h.update(x.to_bits().to_le_bytes());
    }
}

/// The digest of every number of a batch's records and trajectories.
fn digest_outputs(out: &BatchOutputs) -> String {
    let mut h = Sha256::new();
    for r in &out.records {
        for x in [
            r.price,
            r.exchange_mw,
            r.residuals.price_change,
            r.residuals.power_change,
            r.residuals.dual_change,
            r.residuals.balance,
            r.residuals.price_spread,
        ]
        .iter()
        .chain(&r.agent_power)
        .chain(&r.agent_cost)
        {
            h.update(x.to_bits().to_le_bytes());
        }
        for n in [r.iterations, r.converged as u32, r.tampered, r.rejected] {
            h.update(n.to_le_bytes());
        }
    }
    for t in &out.trajectories {
        h.update((t.run as u64).to_le_bytes());
        for p in t.hours.iter().flatten() {
            h.update(p.iteration.to_le_bytes());
            h.update(p.agent.to_le_bytes());
            hash_state(&mut h, &p.state);
        }
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn run(label: &str, market: &Market, runs: &[RunSpec]) {
    let batch = Batch::from_market(market, runs).expect("batch");
    let out = run_cpu(&batch).expect("cpu");
    let iterations: u64 = out.records.iter().map(|r| r.iterations as u64).sum();
    println!(
        "{label}: {} hours, {iterations} iterations, {}",
        out.records.len(),
        digest_outputs(&out)
    );
}

/// `rci::negotiate` on random markets of 1..=5 agents of 1..=4 quadratic units each.
fn unit_markets(seed: u64, n: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut h = Sha256::new();
    let mut iterations = 0u64;
    for _ in 0..n {
        let agents = rng.random_range(1..=5usize);
        let curves: Vec<OfferCurve> = (0..agents)
            .map(|_| {
                let units: Vec<QuadraticUnit> = (0..rng.random_range(1..=4))
                    .map(|_| {
                        let pmin = rng.random_range(0.0..20.0);
                        QuadraticUnit {
                            c2: 10f64.powf(rng.random_range(-4.0..0.0)),
                            c1: rng.random_range(0.0..60.0),
                            c0: rng.random_range(0.0..100.0),
                            pmin,
                            pmax: pmin + rng.random_range(0.0..200.0),
                        }
                    })
                    .collect();
                OfferCurve::from_units(&units, -rng.random_range(0.0..300.0), 0.0).expect("curve")
            })
            .collect();
        let views: Vec<Agent<'_>> = curves
            .iter()
            .map(|c| Agent {
                curve: c.view(),
                min_export: c.min_export() - rng.random_range(0.0..10.0),
                max_export: c.max_export() - rng.random_range(0.0..50.0),
            })
            .collect();
        let mut s = random_runs(rng.random(), 1).remove(0).rci;
        s.chi = s.chi.min(1.9 / agents as f64);
        let out = rci::negotiate(&views, &s, rng.random_bool(0.1));
        iterations += out.iterations as u64;
        h.update(out.iterations.to_le_bytes());
        h.update([out.converged as u8]);
        out.agents.iter().for_each(|a| hash_state(&mut h, a));
        out.trajectory
            .iter()
            .for_each(|p| hash_state(&mut h, &p.state));
    }
    println!(
        "unit markets: {n} hours, {iterations} iterations, {}",
        hex(&h.finalize())
    );
}

fn main() {
    let market = Market::from_scenario(&Scenario::default()).expect("default market");
    run("random", &market, &random_runs(1, 1500));
    run("attacked", &market, &attacked_runs(2, 600));
    let mut bench = bench_runs(&market, 2000);
    bench.truncate(1000);
    run("bench", &market, &bench);
    let mut default_tol = bench_runs(&market, 500);
    default_tol
        .iter_mut()
        .for_each(|r| r.rci = market.rci.clone());
    run("bench, default tolerances", &market, &default_tol);
    let mut s = Scenario::default();
    s.microgrid.enabled = false;
    let alone = Market::from_scenario(&s).expect("microgrid off");
    run("microgrid off", &alone, &random_runs(3, 300));
    let mut s = Scenario::default();
    s.microgrid.wind.rated_mw = 0.0;
    s.microgrid.pv.rated_mw = 0.0;
    s.microgrid.tidal.rated_mw = 0.0;
    let dark = Market::from_scenario(&s).expect("no renewables");
    run("no renewables", &dark, &random_runs(4, 300));
    unit_markets(5, 3000);
}
