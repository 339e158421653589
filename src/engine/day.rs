//! One market day negotiated on a batch backend: what `p2pmarket run --backend` uses.
//!
//! The day is a batch of one unperturbed run with the scenario's RCI settings; its records
//! become the same [`HourOutcome`]s the f64 reference produces, so every output (tables,
//! plots, summary) is written the same way whatever the backend.

use crate::attack::MAX_ATTACKS;
use crate::engine::{AdapterInfo, AttackSlot, Batch, OpenBackend, Precision, RunSpec, run_batch};
use crate::error::Result;
use crate::market::Market;
use crate::microgrid::HOURS;
use crate::rci::{AgentState, HourOutcome};

/// A day negotiated on a backend.
#[derive(Debug, Clone)]
pub struct EngineDay {
    /// One outcome per hour.
    pub outcomes: Vec<HourOutcome>,
    /// The device that ran it.
    pub adapter: AdapterInfo,
    /// Set when `Auto` fell back to the CPU backend, saying why.
    pub notice: Option<String>,
    /// The precision it ran at: the asked one on a GPU, f64 on the CPU backend.
    pub precision: Precision,
}

/// Negotiates every hour of `market`'s day on `backend` (see
/// [`crate::engine::open_backend`]), at `precision` on a GPU.
pub fn negotiate_day(
    market: &Market,
    keep_trajectories: bool,
    backend: &OpenBackend,
    precision: Precision,
) -> Result<EngineDay> {
    let mut attacks = [AttackSlot::default(); MAX_ATTACKS];
    for (slot, a) in attacks.iter_mut().zip(&market.attacks) {
        *slot = *a;
    }
    let spec = RunSpec {
        rci: market.rci.clone(),
        trajectory: keep_trajectories,
        attacks,
        defence: market.defence,
        ..RunSpec::default()
    };
    let batch = Batch::from_market(market, &[spec])?;
    let precision = backend.precision(precision);
    let out = run_batch(&batch, backend.choice, precision, backend.gpu.as_ref())?;
    let agents = batch.agents();
    let trajectory = out.trajectories.iter().find(|t| t.run == 0);
    let outcomes = (0..HOURS)
        .map(|h| {
            let rec = out.record(0, h);
            let points = trajectory.map(|t| t.hours[h].clone()).unwrap_or_default();
            // The final agent states: the last trajectory row when it was kept (with the
            // agents' own prices and duals), else the record (consensus price, no duals).
            let final_states: Vec<AgentState> = if points.len() >= agents {
                points[points.len() - agents..]
                    .iter()
                    .map(|p| p.state)
                    .collect()
            } else {
                (0..agents)
                    .map(|a| AgentState {
                        price: rec.price,
                        power: rec.agent_power[a],
                        dual_upper: 0.0,
                        dual_lower: 0.0,
                    })
                    .collect()
            };
            HourOutcome {
                converged: rec.converged,
                iterations: rec.iterations,
                agents: final_states,
                residuals: rec.residuals,
                trajectory: points,
                tampered: rec.tampered,
                rejected: rec.rejected,
            }
        })
        .collect();
    Ok(EngineDay {
        outcomes,
        adapter: out.adapter.clone(),
        notice: backend.notice.clone(),
        precision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{BackendChoice, open_backend};
    use crate::scenario::Scenario;

    /// The CPU backend through the engine reproduces the reference day bit for bit.
    #[test]
    fn cpu_engine_day_equals_the_reference() {
        let market = Market::from_scenario(&Scenario::default()).unwrap();
        let cpu = open_backend(BackendChoice::Cpu, Precision::F32, None).unwrap();
        let day = negotiate_day(&market, true, &cpu, Precision::F32).unwrap();
        for (h, got) in day.outcomes.iter().enumerate() {
            let curves = market.curves(h).unwrap();
            let want = market.negotiate_hour(h, &curves, true);
            assert_eq!(got, &want, "hour {h}");
        }
        assert_eq!(day.adapter.backend, "cpu");
        assert!(day.notice.is_none());
        assert_eq!(day.precision, Precision::F64, "the CPU backend runs in f64");
    }
}
