//! The ledger as the oracle of an attack sweep: a seeded sample of its defended runs is
//! replayed on the CPU through the real ledger ([`crate::ledger::replay_hour`]: every
//! altered copy submitted to the validators as a forged transaction), each with its
//! attack-free twin, and the committed negotiations are compared with what the engine
//! published (the modelled outcome in `runs` and `run_hours`).
//!
//! Per sampled run, its attacked hour:
//! - the replay must end normally, with every forged copy rejected;
//! - forged copies submitted = `attack_tampered`, rejected = `attack_rejected`;
//! - `attack_converged` and `attack_iterations` = the committed negotiation's;
//! - the hour's `price` (the mean of the committed final prices) and `exchange_mw` (the
//!   smart grid's committed final export; 0 with one agent) are the committed ones.
//!
//! Per twin (the same values without the attack, replayed once per distinct twin): no
//! genuine message refused (a refusal is a *false alarm*: the ledger rejecting an honest
//! negotiation), and `free_converged` and `free_iterations` are the committed ones.
//!
//! The rule for the comparison depends on the engine that computed the part (its file's
//! `p2pmarket.engine`): an f64 engine (`cpu-f64`, `gpu-f64`) computes the CPU reference's
//! arithmetic, so everything must agree exactly, the prices and powers bit for bit. An f32
//! engine (`gpu-f32`) negotiates another sequence of messages, so only what does not
//! depend on rounding is compared: the convergence flags, the price to a relative 1e-4
//! (of max(|committed|, 1)) and the exchange to 5 x the run's power tolerance (the
//! equivalence harness's f32 bounds: two negotiations that stop within `power_tol` of one
//! market); its iteration and message counts are not.

use std::collections::HashMap;
use std::path::Path;

use arrow::array::{Array, BooleanArray, Float64Array, StringArray};
use arrow::record_batch::RecordBatch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::attack::{Defence, HourAttacks};
use crate::engine::Batch;
use crate::error::{Error, Result};
use crate::ledger::{HourReplay, ReplayEnd, ReplayOptions, replay_hour};
use crate::output::integers::{Unsigned, unsigned_column};
use crate::output::parquet::read_parquet;
use crate::rci;
use crate::sweep::manifest;
use crate::sweep::plan::{PartPlan, SweepPlan, TwinKey};

/// Runs the oracle replays when the sweep file names no `ledger_sample`.
pub const DEFAULT_LEDGER_SAMPLE: u64 = 100;
/// Most runs `ledger_sample` may name.
pub const MAX_LEDGER_SAMPLE: u64 = 1_000_000;
/// Domain of the sample's ChaCha stream, ASCII "oracle".
const ORACLE_DOMAIN: u64 = 0x6f72_6163_6c65;
/// Relative tolerance of an f32 engine's price.
pub const F32_TOLERANCE: f64 = 1e-4;
/// An f32 engine's exchange tolerance, in multiples of the run's `power_tol`.
pub const F32_EXCHANGE_TOLERANCES: f64 = 5.0;

/// The engine's published outcome of one sampled run's attacked hour.
#[derive(Debug, Clone, PartialEq)]
pub struct Modelled {
    /// Global run index.
    pub run: u64,
    /// The engine tag of its part (`cpu-f64`, `gpu-f32`, `gpu-f64`).
    pub engine: String,
    /// `attack_converged`.
    pub converged: bool,
    /// `attack_iterations`.
    pub iterations: u32,
    /// `attack_tampered`.
    pub tampered: u32,
    /// `attack_rejected`.
    pub rejected: u32,
    /// The attacked hour's `price` in `run_hours`, $/MWh.
    pub price: f64,
    /// The attacked hour's `exchange_mw` in `run_hours`, MW.
    pub exchange_mw: f64,
    /// `free_converged`.
    pub free_converged: bool,
    /// `free_iterations`.
    pub free_iterations: u32,
}

/// One disagreement between the engine and the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disagreement {
    /// The run.
    pub run: u64,
    /// What differs, modelled against committed.
    pub what: String,
}

/// What the oracle found (the manifest's `ledger_oracle`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OracleReport {
    /// The sampled runs (defended runs, chosen by the sweep's seed), ascending.
    pub sample: Vec<u64>,
    /// Sampled runs whose replay agreed with the engine in every compared value.
    pub agreements: u64,
    /// Forged copies submitted over the sample.
    pub forged_submitted: u64,
    /// Forged copies the validators rejected.
    pub forged_rejected: u64,
    /// Distinct attack-free twins replayed.
    pub twins_replayed: u64,
    /// Twins in which the validators refused a genuine message (runs listed).
    pub false_alarms: Vec<u64>,
    /// Every disagreement (empty in a sweep that passed).
    pub disagreements: Vec<Disagreement>,
}

/// The defended runs of `plan` replayed by the oracle: `n` of them (all when fewer),
/// drawn without replacement from ChaCha8 seeded with `seed` XOR "oracle", ascending.
pub fn sample_runs(plan: &SweepPlan, n: u64, seed: u64) -> Vec<u64> {
    let mut defended: Vec<u64> = (0..plan.total_runs())
        .filter(|&i| {
            plan.run(i)
                .values
                .attack
                .is_some_and(|(a, _)| a.defence == Defence::Defended)
        })
        .collect();
    let n = (n as usize).min(defended.len());
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ORACLE_DOMAIN);
    // Partial Fisher-Yates: the first n places.
    for k in 0..n {
        let span = (defended.len() - k) as u64;
        let j = k + ((u128::from(rng.next_u64()) * u128::from(span)) >> 64) as usize;
        defended.swap(k, j);
    }
    defended.truncate(n);
    defended.sort_unstable();
    defended
}

fn column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
    path: &Path,
) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| Error::Output {
            context: path.display().to_string(),
            message: format!("no column `{name}` of the expected type"),
        })
}

/// The count or index column `name` (see [`unsigned_column`]); a negative value is an
/// error naming the file, the column and the row.
fn index_column<T: Unsigned>(batch: &RecordBatch, name: &str, path: &Path) -> Result<Vec<T>> {
    unsigned_column(batch, name).map_err(|e| Error::Output {
        context: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The published outcomes of the `sample` runs, read from the sweep's files in `out`.
pub fn read_modelled(parts: &[PartPlan], out: &Path, sample: &[u64]) -> Result<Vec<Modelled>> {
    let mut found: HashMap<u64, Modelled> = HashMap::new();
    for part in parts {
        let range = part.first_run..part.first_run + part.runs as u64;
        let wanted: Vec<u64> = sample
            .iter()
            .copied()
            .filter(|r| range.contains(r))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let runs_path = out.join(part.runs_path());
        let engine = manifest::parquet_footer(&runs_path)?
            .engine
            .unwrap_or_default();
        let mut hours: HashMap<(u64, u32), (f64, f64)> = HashMap::new();
        let hours_path = out.join(part.run_hours_path());
        let b = read_parquet(&hours_path)?;
        let run = index_column::<u64>(&b, "run", &hours_path)?;
        let hour = index_column::<u32>(&b, "hour", &hours_path)?;
        let price = column::<Float64Array>(&b, "price", &hours_path)?;
        let exchange = column::<Float64Array>(&b, "exchange_mw", &hours_path)?;
        for k in 0..b.num_rows() {
            if wanted.contains(&run[k]) {
                hours.insert((run[k], hour[k]), (price.value(k), exchange.value(k)));
            }
        }
        let p = &runs_path;
        let b = read_parquet(p)?;
        let run = index_column::<u64>(&b, "run", p)?;
        let hour = index_column::<u32>(&b, "attack_hour", p)?;
        let converged = column::<BooleanArray>(&b, "attack_converged", p)?;
        let iterations = index_column::<u32>(&b, "attack_iterations", p)?;
        let tampered = index_column::<u32>(&b, "attack_tampered", p)?;
        let rejected = index_column::<u32>(&b, "attack_rejected", p)?;
        let free_converged = column::<BooleanArray>(&b, "free_converged", p)?;
        let free_iterations = index_column::<u32>(&b, "free_iterations", p)?;
        let defence = column::<StringArray>(&b, "attack_defence", p)?;
        for k in 0..b.num_rows() {
            let r = run[k];
            if !wanted.contains(&r) {
                continue;
            }
            let (price, exchange_mw) = *hours.get(&(r, hour[k])).ok_or_else(|| Error::Output {
                context: hours_path.display().to_string(),
                message: format!("no row of run {r}, hour {}", hour[k]),
            })?;
            if defence.value(k) != "defended" {
                return Err(Error::Output {
                    context: p.display().to_string(),
                    message: format!("run {r} is not defended, but the plan says it is"),
                });
            }
            found.insert(
                r,
                Modelled {
                    run: r,
                    engine: engine.clone(),
                    converged: converged.value(k),
                    iterations: iterations[k],
                    tampered: tampered[k],
                    rejected: rejected[k],
                    price,
                    exchange_mw,
                    free_converged: free_converged.value(k),
                    free_iterations: free_iterations[k],
                },
            );
        }
    }
    sample
        .iter()
        .map(|r| {
            found.remove(r).ok_or_else(|| Error::Output {
                context: "ledger oracle".into(),
                message: format!("run {r} is in no part of the sweep"),
            })
        })
        .collect()
}

/// Replays every `modelled` run of `plan` and its twin through the ledger and compares
/// (see the module docs). Disagreements are in the report, not errors; errors are for a
/// run the plan cannot rebuild.
pub fn check(plan: &SweepPlan, modelled: &[Modelled]) -> Result<OracleReport> {
    let mut report = OracleReport {
        sample: modelled.iter().map(|m| m.run).collect(),
        ..OracleReport::default()
    };
    let mut twins: HashMap<(TwinKey, u32), (bool, u32, bool)> = HashMap::new();
    // One batch per pcc bus for the whole sample: the smart grid's network-exact curves
    // are built once per distinct load scale, not once per run.
    let planned: Vec<_> = modelled.iter().map(|m| plan.run(m.run)).collect();
    let mut batches: HashMap<usize, (Batch, Vec<usize>)> = HashMap::new();
    let mut buses: Vec<usize> = planned.iter().map(|p| p.values.pcc_bus).collect();
    buses.sort_unstable();
    buses.dedup();
    for bus in buses {
        let members: Vec<usize> = (0..planned.len())
            .filter(|&k| planned[k].values.pcc_bus == bus)
            .collect();
        let specs: Vec<_> = members.iter().map(|&k| planned[k].run_spec()).collect();
        let batch = plan.batch(bus, &specs, &mut Default::default())?;
        let mut index = vec![usize::MAX; planned.len()];
        for (b, &k) in members.iter().enumerate() {
            index[k] = b;
        }
        batches.insert(bus, (batch, index));
    }
    // Replays in parallel, reduced in sample order (the report does not depend on the
    // thread count).
    let replay_of = |k: usize, twin: bool| -> Result<HourReplay> {
        let p = &planned[k];
        let Some((attack, _)) = p.values.attack else {
            return Err(Error::Output {
                context: "ledger oracle".into(),
                message: format!("run {} carries no attack", p.run),
            });
        };
        let (batch, index) = &batches[&p.values.pcc_bus];
        let b = index[k];
        let hour = attack.hour as usize;
        let curves = batch.reference_curves(b, hour)?;
        let agents = crate::engine::cpu::reference_agents(batch, b, hour, &curves);
        let opts = ReplayOptions {
            run: p.run as u32,
            ..ReplayOptions::default()
        };
        let attacks = if twin {
            HourAttacks::NONE
        } else {
            batch.hour_attacks(b, hour)
        };
        replay_hour(&agents, batch.rci(b), &attacks, &opts)
    };
    let replays: Vec<Result<HourReplay>> = (0..modelled.len())
        .into_par_iter()
        .map(|k| replay_of(k, false))
        .collect::<Vec<_>>();
    let replays = crate::error::in_order(replays)?;
    // A twin replays one hour: the same values and the same attacked hour.
    let keys: Vec<(TwinKey, u32)> = planned
        .iter()
        .map(|p| {
            (
                p.values.twin_key(),
                p.values.attack.map_or(0, |(a, _)| a.hour),
            )
        })
        .collect();
    let mut first_of: Vec<usize> = Vec::new();
    for k in 0..keys.len() {
        if !first_of.iter().any(|&f| keys[f] == keys[k]) {
            first_of.push(k);
        }
    }
    let twin_replays: Vec<(bool, u32, bool)> = first_of
        .par_iter()
        .map(|&k| {
            let free = replay_of(k, true)?;
            Ok((
                free.end == ReplayEnd::Finished
                    && free.counts.genuine_accepted == free.counts.genuine_submitted,
                free.outcome.iterations,
                free.outcome.converged,
            ))
        })
        .collect::<Result<_>>()?;
    report.twins_replayed = first_of.len() as u64;
    for (&k, t) in first_of.iter().zip(twin_replays) {
        twins.insert(keys[k].clone(), t);
    }
    for (k, m) in modelled.iter().enumerate() {
        let replay = &replays[k];
        report.forged_submitted += u64::from(replay.counts.forged_submitted);
        report.forged_rejected += u64::from(replay.counts.forged_rejected);
        let power_tol = {
            let p = &planned[k];
            let (batch, index) = &batches[&p.values.pcc_bus];
            batch.rci(index[k]).power_tol
        };
        let mut what = compare(m, replay, power_tol);
        let (honest, free_iterations, free_converged) = twins[&keys[k]];
        if !honest {
            report.false_alarms.push(m.run);
            what.push("the validators refused a genuine message of its attack-free twin".into());
        }
        if m.free_converged != free_converged {
            what.push(format!(
                "free_converged {} modelled, {free_converged} committed",
                m.free_converged
            ));
        }
        if f64_engine(&m.engine) && m.free_iterations != free_iterations {
            what.push(format!(
                "free_iterations {} modelled, {free_iterations} committed",
                m.free_iterations
            ));
        }
        if what.is_empty() {
            report.agreements += 1;
        } else {
            report.disagreements.push(Disagreement {
                run: m.run,
                what: what.join("; "),
            });
        }
    }
    Ok(report)
}

/// Whether an engine tag names f64 arithmetic (the comparison is then exact).
fn f64_engine(engine: &str) -> bool {
    engine != "gpu-f32"
}

/// What differs between a run's modelled outcome and its defended replay (`power_tol`:
/// the run's power tolerance, for an f32 engine's exchange).
fn compare(m: &Modelled, replay: &HourReplay, power_tol: f64) -> Vec<String> {
    let mut what = Vec::new();
    let c = &replay.counts;
    if replay.end != ReplayEnd::Finished {
        what.push(format!("the ledger replay ended with {:?}", replay.end));
    }
    if c.forged_rejected != c.forged_submitted {
        what.push(format!(
            "the validators committed {} of {} forged copies",
            c.forged_submitted - c.forged_rejected,
            c.forged_submitted
        ));
    }
    let o = &replay.outcome;
    if m.converged != o.converged {
        what.push(format!(
            "attack_converged {} modelled, {} committed",
            m.converged, o.converged
        ));
    }
    let price = rci::mean_price(&o.agents);
    let exchange = if o.agents.len() > 1 {
        o.agents[0].power
    } else {
        0.0
    };
    if f64_engine(&m.engine) {
        for (name, modelled, committed) in [
            ("attack_iterations", m.iterations, o.iterations),
            ("attack_tampered", m.tampered, c.forged_submitted),
            ("attack_rejected", m.rejected, c.forged_rejected),
        ] {
            if modelled != committed {
                what.push(format!("{name} {modelled} modelled, {committed} committed"));
            }
        }
        for (name, modelled, committed) in [
            ("price", m.price, price),
            ("exchange_mw", m.exchange_mw, exchange),
        ] {
            if modelled.to_bits() != committed.to_bits() {
                what.push(format!(
                    "{name} {modelled:e} modelled, {committed:e} committed (bitwise)"
                ));
            }
        }
    } else {
        if !((m.price - price).abs() <= F32_TOLERANCE * price.abs().max(1.0)) {
            what.push(format!(
                "price {:e} modelled, {price:e} committed (f32: relative {F32_TOLERANCE})",
                m.price
            ));
        }
        let bound = F32_EXCHANGE_TOLERANCES * power_tol;
        if !((m.exchange_mw - exchange).abs() <= bound) {
            what.push(format!(
                "exchange_mw {:e} modelled, {exchange:e} committed (f32: within {bound:e} MW)",
                m.exchange_mw
            ));
        }
    }
    what
}
