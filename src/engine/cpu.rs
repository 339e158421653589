//! The rayon backend: every (run, hour) through the f64 CPU reference, the RCI [`rci::step`]
//! loop on the run's exact curves ([`Batch::reference_curves`]).
//!
//! [`evaluate_hour`] is the plain reference: owned curves and [`rci::negotiate`]. The batch
//! runs the same computation without allocating per (run, hour): the smart grid's curve is
//! borrowed from the batch's pool, the microgrid's is rebuilt in a scratch curve, and the
//! RCI state is reset in place ([`rci::negotiate_in`]), all in one scratch per rayon job.
//! A run's attack-free hours go two at a time through [`rci::negotiate_free_pair`], which
//! steps both in one loop so that their independent dependency chains overlap in the
//! core; each hour's iterates are those of negotiating it alone.
//! Scratch contents never outlive an hour, and each (run, hour) is independent with its
//! results collected in index order, so the output is bit-identical whatever the size of
//! the thread pool or of the chunks (the caller may install its own pool with
//! `ThreadPool::install`).

use rayon::prelude::*;

use crate::engine::batch::{
    AdapterInfo, Batch, BatchOutputs, ChunkOutputs, Collector, HourRecord, MAX_AGENTS,
    RunTrajectory,
};
use crate::error::Result;
use crate::offer::{CurveView, OfferCurve};
use crate::rci::{self, Agent, AgentState, RciState, Residuals, TrajectoryPoint};

/// The RCI agents of (run, hour) over its owned `curves` ([`Batch::reference_curves`]),
/// with the batch's trade limits.
pub fn reference_agents<'a>(
    batch: &Batch,
    run: usize,
    hour: usize,
    curves: &'a [OfferCurve],
) -> Vec<Agent<'a>> {
    curves
        .iter()
        .enumerate()
        .map(|(a, c)| {
            let s = batch.slot(run, hour, a);
            Agent {
                curve: c.view(),
                min_export: s.min_export,
                max_export: s.max_export,
            }
        })
        .collect()
}

/// Negotiates one hour of one run with the CPU reference; the trajectory is empty unless
/// the run keeps it.
pub fn evaluate_hour(
    batch: &Batch,
    run: usize,
    hour: usize,
) -> Result<(HourRecord, Vec<TrajectoryPoint>)> {
    let curves = batch.reference_curves(run, hour)?;
    let agents = reference_agents(batch, run, hour, &curves);
    let out = rci::negotiate_attacked(
        &agents,
        batch.rci(run),
        &batch.hour_attacks(run, hour),
        batch.keeps_trajectory(run),
    );
    let mut rec = hour_record(
        &agents,
        &out.agents,
        out.price(),
        out.converged,
        out.iterations,
        out.residuals,
    );
    (rec.tampered, rec.rejected) = (out.tampered, out.rejected);
    Ok((rec, out.trajectory))
}

/// The record of an hour from its agents and their final states.
fn hour_record(
    agents: &[Agent<'_>],
    states: &[AgentState],
    price: f64,
    converged: bool,
    iterations: u32,
    residuals: Residuals,
) -> HourRecord {
    let mut rec = HourRecord {
        price,
        // The smart grid's export is the microgrid's import (as in `market::run_day`).
        exchange_mw: if states.len() > 1 {
            states[0].power
        } else {
            0.0
        },
        iterations,
        converged,
        residuals,
        ..HourRecord::default()
    };
    for (a, (agent, st)) in agents.iter().zip(states).enumerate() {
        rec.agent_power[a] = st.power;
        rec.agent_cost[a] = agent.curve.cost_at_export(st.power);
    }
    rec
}

/// One hour's reused storage in a rayon job: the unit agents' curves and the RCI state (a
/// job holds two, for two hours negotiated side by side).
struct HourScratch {
    curves: [OfferCurve; MAX_AGENTS],
    state: RciState,
}

impl HourScratch {
    fn new() -> Self {
        HourScratch {
            curves: std::array::from_fn(|_| OfferCurve::fixed(0.0, 0.0)),
            state: RciState::default(),
        }
    }
}

/// The agents of (run, hour), their curves borrowed from the pool or rebuilt in `curves`;
/// entries past the batch's agents are never read.
fn hour_agents<'a>(
    batch: &'a Batch,
    run: usize,
    hour: usize,
    curves: &'a mut [OfferCurve; MAX_AGENTS],
) -> Result<[Agent<'a>; MAX_AGENTS]> {
    let unused = Agent {
        curve: CurveView {
            prices: &[],
            exports: &[],
            costs: &[],
        },
        min_export: 0.0,
        max_export: 0.0,
    };
    let mut agents = [unused; MAX_AGENTS];
    let n = batch.agents();
    for ((a, agent), curve) in agents.iter_mut().enumerate().take(n).zip(curves) {
        *agent = batch.agent(run, hour, a, curve)?;
    }
    Ok(agents)
}

/// The record of an hour negotiated in `state`.
fn state_record(agents: &[Agent<'_>], state: &RciState, converged: bool) -> HourRecord {
    let mut rec = hour_record(
        agents,
        state.agents(),
        state.price(),
        converged,
        state.iteration(),
        state.residuals(),
    );
    (rec.tampered, rec.rejected) = (state.tampered(), state.rejected());
    rec
}

/// [`evaluate_hour`] in a job's scratch, appending the trajectory to `trajectory` when
/// given; allocates nothing without one.
fn evaluate_hour_in(
    batch: &Batch,
    run: usize,
    hour: usize,
    scratch: &mut HourScratch,
    trajectory: Option<&mut Vec<TrajectoryPoint>>,
) -> Result<HourRecord> {
    let HourScratch { curves, state } = scratch;
    let agents = hour_agents(batch, run, hour, curves)?;
    let agents = &agents[..batch.agents()];
    let settings = batch.rci(run);
    state.reset(agents, settings);
    let converged = rci::negotiate_in(
        state,
        agents,
        settings,
        &batch.hour_attacks(run, hour),
        trajectory,
    );
    Ok(state_record(agents, state, converged))
}

/// Two hours of a run into `rows`, each as [`evaluate_hour_in`] gives it, negotiated side
/// by side when both are attack-free two-agent hours ([`rci::negotiate_free_pair`]).
fn evaluate_hours_in(
    batch: &Batch,
    run: usize,
    hours: [usize; 2],
    scratch: &mut [HourScratch; 2],
    rows: &mut [HourRecord; 2],
) -> Result<()> {
    let [x, y] = scratch;
    let [ra, rb] = rows;
    let free = |hour| !batch.hour_attacks(run, hour).any();
    let paired =
        batch.agents() == 2 && (!batch.run_has_attacks(run) || (free(hours[0]) && free(hours[1])));
    if !paired {
        *ra = evaluate_hour_in(batch, run, hours[0], x, None)?;
        *rb = evaluate_hour_in(batch, run, hours[1], y, None)?;
        return Ok(());
    }
    let settings = batch.rci(run);
    let aa = hour_agents(batch, run, hours[0], &mut x.curves)?;
    let ab = hour_agents(batch, run, hours[1], &mut y.curves)?;
    let two = "MAX_AGENTS is at least 2";
    let (aa, ab) = (aa.first_chunk().expect(two), ab.first_chunk().expect(two));
    x.state.reset(aa, settings);
    y.state.reset(ab, settings);
    let (ca, cb) = rci::negotiate_free_pair((&mut x.state, aa), (&mut y.state, ab), settings);
    *ra = state_record(aa, &x.state, ca);
    *rb = state_record(ab, &y.state, cb);
    Ok(())
}

/// Every hour of a run that keeps no trajectory into `rows`, two hours at a time
/// ([`evaluate_hours_in`]), the last alone when the count is odd.
fn evaluate_run_in(
    batch: &Batch,
    run: usize,
    rows: &mut [HourRecord],
    scratch: &mut [HourScratch; 2],
) -> Result<()> {
    let hours = rows.len();
    let (pairs, rest) = rows.as_chunks_mut::<2>();
    for (p, pair) in pairs.iter_mut().enumerate() {
        evaluate_hours_in(batch, run, [2 * p, 2 * p + 1], scratch, pair)?;
    }
    if let [row] = rest {
        *row = evaluate_hour_in(batch, run, hours - 1, &mut scratch[0], None)?;
    }
    Ok(())
}

/// The backend's description of itself (the current rayon pool's size).
pub fn cpu_adapter_info() -> AdapterInfo {
    AdapterInfo {
        name: format!("rayon CPU ({} threads)", rayon::current_num_threads()),
        device_type: "Cpu".into(),
        driver: "rci::negotiate".into(),
        driver_info: "f64 CPU reference".into(),
        backend: "cpu".into(),
    }
}

/// Runs per thread of the pool in a chunk of [`run_cpu`] (see [`cpu_runs_per_chunk`]).
pub const CPU_RUNS_PER_THREAD: usize = 1024;

/// Runs per chunk of [`run_cpu`] on the current rayon pool: [`CPU_RUNS_PER_THREAD`] per
/// thread, at least 2 048 and at most 16 384. A chunk fills one reused record buffer, and
/// a small one stays in cache and is touched once: on 2 threads, chunks of 2 048 runs
/// instead of 16 384 made the bench workload 1.1x (1e5 runs) to 1.3x (1e4 runs) faster.
/// Enough runs per thread keep the pool busy to the chunk's end.
pub fn cpu_runs_per_chunk() -> usize {
    (CPU_RUNS_PER_THREAD * rayon::current_num_threads()).clamp(2048, 16_384)
}

/// Evaluates a whole batch on the current rayon pool, parallel over runs.
pub fn run_cpu(batch: &Batch) -> Result<BatchOutputs> {
    let mut all = Collector::new(batch);
    run_cpu_streaming(batch, cpu_runs_per_chunk(), |chunk| all.push(chunk))?;
    Ok(all.finish(cpu_adapter_info()))
}

/// Evaluates a batch in chunks of at most `runs_per_chunk` runs, each parallel over its
/// runs, and hands every chunk to `on_chunk` in run order. The results do not depend on
/// the chunk size or the pool's size. Returns the backend's description.
pub fn run_cpu_streaming(
    batch: &Batch,
    runs_per_chunk: usize,
    mut on_chunk: impl FnMut(&ChunkOutputs) -> Result<()>,
) -> Result<AdapterInfo> {
    let hours = batch.hours();
    let step = runs_per_chunk.max(1);
    let mut chunk = ChunkOutputs {
        runs: 0..0,
        records: Vec::with_capacity(step.min(batch.runs()) * hours),
        trajectories: Vec::new(),
        summaries: Vec::new(),
        heads: Vec::new(),
    };
    // Each run's kept trajectory, if any, in its own slot: the slots are written in place,
    // so nothing is collected (a parallel collect would grow and link a vector per job).
    let mut kept: Vec<Option<RunTrajectory>> = Vec::new();
    for start in (0..batch.runs()).step_by(step) {
        let runs = start..(start + step).min(batch.runs());
        // Every run fills its own rows of the reused buffer, so rows left from the last
        // chunk are overwritten, never read: the buffer is filled (a serial pass over
        // megabytes while the pool waits) only where it grows, for the first chunk.
        chunk
            .records
            .resize(runs.len() * hours, HourRecord::default());
        kept.clear();
        kept.resize_with(runs.len(), || None);
        chunk
            .records
            .par_chunks_mut(hours.max(1))
            .zip(kept.par_iter_mut())
            .zip(runs.clone().into_par_iter())
            .try_for_each_init(
                || [HourScratch::new(), HourScratch::new()],
                |scratch, ((rows, slot), run)| {
                    if !batch.keeps_trajectory(run) {
                        return evaluate_run_in(batch, run, rows, scratch);
                    }
                    let mut traj = Vec::with_capacity(rows.len());
                    for (hour, row) in rows.iter_mut().enumerate() {
                        let mut t = Vec::new();
                        *row = evaluate_hour_in(batch, run, hour, &mut scratch[0], Some(&mut t))?;
                        traj.push(t);
                    }
                    *slot = Some(RunTrajectory { run, hours: traj });
                    Ok(())
                },
            )?;
        chunk.runs = runs;
        chunk.trajectories.clear();
        chunk.trajectories.extend(kept.drain(..).flatten());
        on_chunk(&chunk)?;
    }
    Ok(cpu_adapter_info())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::bench::bench_runs;
    use crate::market::Market;
    use crate::scenario::Scenario;

    /// A run's hours two at a time, and an odd count's last hour alone, give the records
    /// of evaluating every hour by itself, bit for bit.
    #[test]
    fn hours_in_pairs_and_alone_give_each_hour_its_own_record() {
        let market = Market::from_scenario(&Scenario::default()).unwrap();
        let batch = Batch::from_market(&market, &bench_runs(&market, 6)).unwrap();
        let mut scratch = [HourScratch::new(), HourScratch::new()];
        for run in 0..batch.runs() {
            for hours in [batch.hours(), batch.hours() - 1, 1] {
                let mut rows = vec![HourRecord::default(); hours];
                evaluate_run_in(&batch, run, &mut rows, &mut scratch).unwrap();
                for (hour, row) in rows.iter().enumerate() {
                    let alone = evaluate_hour(&batch, run, hour).unwrap().0;
                    // Debug prints every f64 exactly, signed zeros included.
                    assert_eq!(
                        format!("{row:?}"),
                        format!("{alone:?}"),
                        "run {run}, hour {hour}"
                    );
                }
            }
        }
    }
}
