//! False-data-injection attacks (issue 9) through the market and the batch engine: the
//! paper's Case II undefended and defended on the default day, the defence's promise
//! (the attack-free negotiation, every altered message rejected) on random attacks over
//! several scenarios and thousands of perturbed hours, and the CLI's handling of attacked
//! scenarios.

use std::path::{Path, PathBuf};

use crate::support::cli;
use p2pmarket::attack::{Attack, AttackShape, AttackSlot, AttackVariable, Defence, MAX_ATTACKS};
use p2pmarket::engine::cpu::run_cpu;
use p2pmarket::engine::{Batch, HourRecord, RunSpec};
use p2pmarket::market::{self, Market};
use p2pmarket::rci::{RciSettings, StartPrice, StepRule};
use p2pmarket::scenario::Scenario;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn scenario(relative: &str) -> Scenario {
    Scenario::from_file(&repo(relative)).expect("shipped scenario")
}

/// The paper's Case II: chi attacked at hours 6 and 10 never agrees undefended; defended,
/// every hour converges to the attack-free result (bit for bit: relative deviation 0).
#[test]
fn paper_case_two_undefended_and_defended() {
    let undefended = scenario("experiments/paper_fdia_undefended.toml");
    let market = Market::from_scenario(&undefended).unwrap();
    let day = market::run_day(&market, false).unwrap();
    for h in &day.hours {
        let attacked = h.hour == 6 || h.hour == 10;
        assert_eq!(h.attack_free.is_some(), attacked, "hour {}", h.hour);
        if attacked {
            let free = h.attack_free.as_ref().unwrap();
            assert!(free.converged, "hour {}: attack-free converges", h.hour);
            assert!(!h.p2p.outcome.converged, "hour {}: no agreement", h.hour);
            assert_eq!(h.p2p.outcome.iterations, market.rci.max_iterations);
            // The disagreement multiplier is 1 - chi - (chi + 1) = -1: the prices keep
            // swinging by the same amount, far from agreement.
            assert!(h.p2p.outcome.residuals.price_spread > 1.0);
            assert!(h.attack_deviation() > 0.1, "hour {}", h.hour);
            assert_eq!(h.p2p.outcome.tampered, market.rci.max_iterations);
            assert_eq!(h.p2p.outcome.rejected, 0);
        } else {
            assert!(h.p2p.outcome.converged, "hour {}", h.hour);
            assert_eq!(h.p2p.outcome.tampered, 0);
        }
    }
    let summary = day.summary.attack.as_ref().expect("attack summary");
    assert_eq!(summary.attacked_hours, vec![6, 10]);
    assert_eq!(summary.converged_attacked_hours, 0);

    let defended = scenario("experiments/paper_fdia_defended.toml");
    assert_eq!(defended.attack, undefended.attack, "the same attack");
    let market = Market::from_scenario(&defended).unwrap();
    let day = market::run_day(&market, false).unwrap();
    for h in &day.hours {
        assert!(h.p2p.outcome.converged, "hour {}", h.hour);
        assert_eq!(h.attack_deviation(), 0.0, "hour {}", h.hour);
        assert_eq!(h.p2p.outcome.rejected, h.p2p.outcome.tampered);
    }
    let summary = day.summary.attack.as_ref().expect("attack summary");
    assert_eq!(summary.converged_attacked_hours, 2);
    assert!(
        summary.rejected > 0,
        "the ledger rejected the altered prices"
    );
    assert_eq!(summary.max_relative_deviation, 0.0);
}

/// A random attack slot: any variable, shape, agent, window and a size from harmless to
/// destructive for the variable.
fn random_slot(rng: &mut ChaCha8Rng, index: usize) -> AttackSlot {
    let variable = AttackVariable::ALL[rng.random_range(0..AttackVariable::ALL.len())];
    let scale = match variable {
        AttackVariable::Chi => 2.0,
        AttackVariable::Price
        | AttackVariable::StealthyPrice
        | AttackVariable::DualUpper
        | AttackVariable::DualLower => 50.0,
        AttackVariable::Power => 100.0,
        AttackVariable::Slope => 500.0,
        AttackVariable::Gap => 20.0,
    };
    let size = scale
        * 10f64.powf(rng.random_range(-12.0..0.0))
        * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    let hours: Vec<u32> = (0..24).filter(|_| rng.random_bool(0.3)).collect();
    Attack {
        variable,
        agent: rng.random_range(0..2),
        hours: if hours.is_empty() {
            vec![rng.random_range(0..24)]
        } else {
            hours
        },
        first_iteration: rng.random_range(0..30),
        duration: if rng.random_bool(0.5) {
            None
        } else {
            Some(rng.random_range(1..200))
        },
        shape: AttackShape::ALL[rng.random_range(0..AttackShape::ALL.len())],
        size,
        ramp_iterations: rng.random_range(1..20),
        seed: rng.random(),
    }
    .slot(index, 0)
}

/// Random runs with 1..=4 random attacks each, and random settings that make the
/// consensus term matter (agents start apart).
fn random_attacked_runs(seed: u64, n: usize, defence: Defence) -> Vec<RunSpec> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut attacks = [AttackSlot::default(); MAX_ATTACKS];
            let used = rng.random_range(1..=MAX_ATTACKS);
            for (k, slot) in attacks.iter_mut().enumerate().take(used) {
                *slot = random_slot(&mut rng, k);
            }
            RunSpec {
                load_scale: [0.9, 1.0, 1.05][rng.random_range(0..3usize)],
                renewable_scale: rng.random_range(0.0..2.0),
                mg_load_scale: rng.random_range(0.5..1.5),
                rci: RciSettings {
                    start_price: if rng.random_bool(0.8) {
                        StartPrice::OwnMarginal
                    } else {
                        StartPrice::Common
                    },
                    chi: rng.random_range(0.05..0.95),
                    step_rule: [StepRule::Newton, StepRule::Newton, StepRule::Constant]
                        [rng.random_range(0..3usize)],
                    kappa: 0.0004,
                    max_iterations: 300,
                    ..RciSettings::default()
                },
                attacks,
                defence,
                ..RunSpec::default()
            }
        })
        .collect()
}

fn without_attacks(runs: &[RunSpec]) -> Vec<RunSpec> {
    runs.iter()
        .map(|r| RunSpec {
            attacks: [AttackSlot::default(); MAX_ATTACKS],
            ..r.clone()
        })
        .collect()
}

/// A record with its attack counts cleared (to compare with the attack-free record).
fn outcome_only(r: &HourRecord) -> HourRecord {
    HourRecord {
        tampered: 0,
        rejected: 0,
        ..*r
    }
}

/// Defended, every random attack leaves every (run, hour) exactly as without it, and every
/// altered message is rejected; the same attacks undefended do change outcomes (the check
/// can fail), and a hit hour with no altered message is the attack-free hour.
#[test]
fn defence_restores_the_attack_free_negotiation_on_random_attacks() {
    for (name, scenario) in [
        ("default", Scenario::default()),
        (
            "congested_bus7",
            scenario("experiments/congested_bus7.toml"),
        ),
        (
            "summer_weekday",
            scenario("experiments/summer_weekday.toml"),
        ),
    ] {
        let market = Market::from_scenario(&scenario).unwrap();
        let runs = 60;
        let defended = random_attacked_runs(9, runs, Defence::Defended);
        let undefended: Vec<RunSpec> = defended
            .iter()
            .map(|r| RunSpec {
                defence: Defence::Undefended,
                ..r.clone()
            })
            .collect();
        let free = without_attacks(&defended);
        let all: Vec<RunSpec> = [defended, undefended, free].concat();
        let batch = Batch::from_market(&market, &all).unwrap();
        let out = run_cpu(&batch).unwrap();
        let (mut rejected, mut changed, mut untouched) = (0u64, 0usize, 0usize);
        for run in 0..runs {
            for hour in 0..24 {
                let d = out.record(run, hour);
                let u = out.record(runs + run, hour);
                let f = out.record(2 * runs + run, hour);
                assert_eq!(
                    outcome_only(d),
                    *f,
                    "{name}: run {run} hour {hour} defended"
                );
                assert_eq!(d.rejected, d.tampered, "{name}: run {run} hour {hour}");
                assert_eq!((f.tampered, f.rejected), (0, 0));
                assert_eq!(u.rejected, 0);
                rejected += u64::from(d.rejected);
                if u.tampered == 0 {
                    // Nothing altered: the views are the true states.
                    assert_eq!(
                        outcome_only(u),
                        *f,
                        "{name}: run {run} hour {hour} untouched"
                    );
                    untouched += 1;
                } else if outcome_only(u) != *f {
                    changed += 1;
                }
            }
        }
        println!(
            "{name}: {rejected} altered messages rejected; undefended, {changed} hours changed, {untouched} hours untouched"
        );
        assert!(rejected > 1000, "{name}: the attacks altered messages");
        assert!(changed > 100, "{name}: undefended attacks change outcomes");
        assert!(untouched > 100, "{name}: most hours are not attacked");
    }
}

/// The rayon backend under attacks is the plain reference (`rci::negotiate_attacked` on
/// owned curves), bit for bit, counts included.
#[test]
fn batch_backend_equals_the_reference_under_attacks() {
    let market = Market::from_scenario(&Scenario::default()).unwrap();
    let runs = [
        random_attacked_runs(3, 40, Defence::Undefended),
        random_attacked_runs(4, 20, Defence::Defended),
    ]
    .concat();
    let batch = Batch::from_market(&market, &runs).unwrap();
    let out = run_cpu(&batch).unwrap();
    for run in 0..runs.len() {
        for hour in 0..24 {
            let (reference, _) = p2pmarket::engine::cpu::evaluate_hour(&batch, run, hour).unwrap();
            assert_eq!(out.record(run, hour), &reference, "run {run} hour {hour}");
        }
    }
}

/// `run` on the paper's experiment writes the attack columns, summary and figure; the
/// effective scenario it writes reads back to the same attacks.
#[test]
fn cli_run_of_an_attacked_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo("experiments/paper_fdia_defended.toml");
    let (code, stdout, stderr) = cli(
        dir.path(),
        &["run", "--config", config.to_str().unwrap(), "--out", "out"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("attacks (defended by the ledger)"),
        "{stdout}"
    );
    let out = dir.path().join("out");
    for f in ["attacked_hours.png", "attacked_hours.svg", "hourly.parquet"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["attack"]["defence"], "defended");
    assert_eq!(
        summary["attack"]["attacked_hours"],
        serde_json::json!([6, 10])
    );
    let written = Scenario::from_file(&out.join("scenario.toml")).unwrap();
    assert_eq!(written, scenario("experiments/paper_fdia_defended.toml"));

    // Defended, the ledger records the negotiation and rejects every forged copy; the
    // stored ledger verifies.
    let (code, stdout, stderr) = cli(
        dir.path(),
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--out",
            "led",
            "--ledger",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("forged copies of attacked messages"),
        "{stdout}"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("led/summary.json")).unwrap(),
    )
    .unwrap();
    let rejected = summary["attack"]["rejected"].as_u64().unwrap();
    assert!(rejected > 0);
    assert_eq!(
        summary["ledger"]["forged_submitted"].as_u64(),
        Some(rejected)
    );
    assert_eq!(
        summary["ledger"]["forged_rejected"].as_u64(),
        Some(rejected)
    );
    let (code, _, stderr) = cli(dir.path(), &["verify", "led"]);
    assert_eq!(code, 0, "{stderr}");

    // Undefended attacks bypass the ledger: --ledger refuses them (exit 2, nothing
    // written).
    let undefended = repo("experiments/paper_fdia_undefended.toml");
    let (code, _, stderr) = cli(
        dir.path(),
        &[
            "run",
            "--config",
            undefended.to_str().unwrap(),
            "--out",
            "out2",
            "--ledger",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("defence"), "{stderr}");
    assert!(!dir.path().join("out2").exists());
}
