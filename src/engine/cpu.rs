//! The rayon backend: every (run, hour) through the f64 CPU reference [`rci::negotiate`]
//! on the run's exact [`Batch::reference_curves`].
//!
//! Each (run, hour) is independent and the results are collected in index order, so the
//! output is bit-identical whatever the size of the thread pool (the caller may install
//! its own pool with `ThreadPool::install`).

use rayon::prelude::*;

use crate::engine::batch::{
    AdapterInfo, Batch, BatchOutputs, ChunkOutputs, Collector, HourRecord, RunTrajectory,
};
use crate::error::Result;
use crate::rci::{self, Agent, TrajectoryPoint};

/// Negotiates one hour of one run with the CPU reference; the trajectory is empty unless
/// the run keeps it.
pub fn evaluate_hour(
    batch: &Batch,
    run: usize,
    hour: usize,
) -> Result<(HourRecord, Vec<TrajectoryPoint>)> {
    let curves = batch.reference_curves(run, hour)?;
    let agents: Vec<Agent<'_>> = curves
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
        .collect();
    let out = rci::negotiate(&agents, batch.rci(run), batch.keeps_trajectory(run));
    let mut rec = HourRecord {
        price: out.price(),
        // The smart grid's export is the microgrid's import (as in `market::run_day`).
        exchange_mw: if out.agents.len() > 1 {
            out.agents[0].power
        } else {
            0.0
        },
        iterations: out.iterations,
        converged: out.converged,
        residuals: out.residuals,
        ..HourRecord::default()
    };
    for (a, (c, st)) in curves.iter().zip(&out.agents).enumerate() {
        rec.agent_power[a] = st.power;
        rec.agent_cost[a] = c.cost_at_export(st.power);
    }
    Ok((rec, out.trajectory))
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

/// Runs per chunk of [`run_cpu`]: enough to keep any pool busy, small enough that a
/// streamed batch holds little in memory.
pub const CPU_RUNS_PER_CHUNK: usize = 16_384;

/// Evaluates a whole batch on the current rayon pool, parallel over runs.
pub fn run_cpu(batch: &Batch) -> Result<BatchOutputs> {
    let mut all = Collector::new(batch);
    run_cpu_streaming(batch, CPU_RUNS_PER_CHUNK, |chunk| all.push(chunk))?;
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
    };
    for start in (0..batch.runs()).step_by(step) {
        let runs = start..(start + step).min(batch.runs());
        // Every run fills its own rows of the reused buffer.
        chunk.records.clear();
        chunk
            .records
            .resize(runs.len() * hours, HourRecord::default());
        let kept: Vec<Option<RunTrajectory>> = chunk
            .records
            .par_chunks_mut(hours.max(1))
            .zip(runs.clone().into_par_iter())
            .map(|(rows, run)| {
                let keep = batch.keeps_trajectory(run);
                let mut traj = Vec::new();
                for (hour, row) in rows.iter_mut().enumerate() {
                    let (rec, t) = evaluate_hour(batch, run, hour)?;
                    *row = rec;
                    if keep {
                        traj.push(t);
                    }
                }
                Ok(keep.then_some(RunTrajectory { run, hours: traj }))
            })
            .collect::<Result<_>>()?;
        chunk.runs = runs;
        chunk.trajectories.clear();
        chunk.trajectories.extend(kept.into_iter().flatten());
        on_chunk(&chunk)?;
    }
    Ok(cpu_adapter_info())
}
