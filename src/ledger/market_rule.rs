//! The content rule of the market's ledger: a validator recomputes every agent's price
//! update, for every step rule (the Newton step included), from the committed messages
//! and the committed protocol parameters, and checks each hourly settlement against the
//! committed end of that hour's negotiation.
//!
//! What is recomputed (public: the committed messages and parameters):
//! - iteration 0 starts with zero duals, at the committed `initial_price` when the start is
//!   common (an agent's own marginal price, the other start rule, is private);
//! - the price of iteration k + 1 is [`rci::price_update`] of iteration k's committed
//!   prices with the committed `chi` and the innovation step `kappa^k`: the schedule of a
//!   `constant` or `diminishing` rule, or the Newton step replayed from iteration 0 with
//!   [`NewtonMemory::kappa`] over the agents' committed [`NewtonSignals`] (the same
//!   function [`rci::step`] calls, so an honest message recomputes bit for bit);
//! - an agent held at a trade limit by an exact dual must report the signals [`rci::step`]
//!   uses for it (zero slopes, its dual as the gap);
//! - no message after the negotiation ended (its stop rules held, it diverged, or it
//!   reached the iteration cap) or after the hour's settlement;
//! - a settlement names the end of the negotiation: the stop rules held at its last
//!   iteration (or the cap was reached), its price is the mean of the final prices, its
//!   power the smart grid's (agent 0's) final export, its seller the exporter.
//!
//! What is not recomputed (private: the agent's offer curve and trade limits): its power
//! (its response to its price), its duals (functions of its private limits) and its
//! signals. An agent that lies consistently about these passes; see the README's threat
//! model.

use crate::rci::{
    self, AgentState, DualUpdate, NewtonMemory, NewtonSignals, RciSettings, StartPrice,
    nearest_gap, residuals_between, scheduled_kappa, stop_rules_hold,
};

use super::state::{ContentRule, LedgerState, Rejection, check_message_values};
use super::tx::{ConsensusMessage, Settlement};

/// The market's [`ContentRule`] for the negotiation of run `run`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarketRule {
    /// The run whose negotiation the ledger records (settlements carry no run).
    pub run: u32,
    /// Relative tolerance on recomputed values, `|found - expected| <= tolerance *
    /// max(1, |expected|)`; 0 demands the same bits as the recomputation.
    pub tolerance: f64,
}

impl MarketRule {
    /// The rule for run `run` with a tolerance of 1e-12.
    pub fn new(run: u32) -> Self {
        MarketRule {
            run,
            tolerance: 1e-12,
        }
    }

    /// `Ok` when `committed`, a whole stored ledger, records the complete negotiation of
    /// this run's day of `hours` hours: every hour's negotiation ended (its stop rules
    /// held, it diverged or it reached the iteration cap) and, with two agents (the
    /// markets [`crate::ledger::record_day`] settles), its settlement is committed; and no
    /// message belongs to another run or to an hour outside the day. A prefix of a valid
    /// ledger is itself valid block by block, so without this a ledger cut short after
    /// any block, its manifest recomputed, would pass.
    pub fn check_day(&self, committed: &LedgerState, hours: u32) -> Result<(), Rejection> {
        if let Some((first, last)) = committed.message_hours() {
            for (run, hour) in [first, last] {
                if run != self.run || hour >= hours {
                    return Err(Rejection::OutsideDay { run, hour });
                }
            }
        }
        for hour in 0..hours {
            let incomplete = |reason| Err(Rejection::Incomplete { hour, reason });
            if committed.last_iteration(self.run, hour).is_none() {
                return incomplete("has no consensus message");
            }
            if ended_at(committed, self.run, hour).ok().flatten().is_none() {
                return incomplete("stops before its negotiation ended");
            }
            if committed.params.agents == 2 && !committed.has_settlement(hour) {
                return incomplete("has no settlement");
            }
        }
        Ok(())
    }

    fn agrees(&self, field: &'static str, expected: f64, found: f64) -> Result<(), Rejection> {
        if (found - expected).abs() <= self.tolerance * expected.abs().max(1.0) {
            Ok(())
        } else {
            Err(Rejection::Mismatch {
                field,
                expected,
                found,
            })
        }
    }
}

/// Every agent's committed message of (`run`, `hour`, `iteration`), by agent index.
fn iteration_messages(
    committed: &LedgerState,
    run: u32,
    hour: u32,
    iteration: u32,
) -> Result<Vec<ConsensusMessage>, Rejection> {
    (0..committed.params.agents)
        .map(|agent| {
            committed
                .message(run, hour, iteration, agent)
                .copied()
                .ok_or(Rejection::MissingPrevious { iteration, agent })
        })
        .collect()
}

fn states(messages: &[ConsensusMessage]) -> Vec<AgentState> {
    messages.iter().map(ConsensusMessage::state).collect()
}

fn duals_moved(old: &[ConsensusMessage], new: &[ConsensusMessage]) -> bool {
    old.iter()
        .zip(new)
        .any(|(o, n)| o.dual_upper != n.dual_upper || o.dual_lower != n.dual_lower)
}

/// The innovation step `kappa^k` every agent used from iteration `k` of (`run`, `hour`)
/// to the next, and the trade balance it multiplies: the schedule, or the Newton step
/// replayed from iteration 0 over the committed messages and signals, with the memory
/// reset of [`rci::step`] when gradient duals move.
pub fn committed_step(
    committed: &LedgerState,
    run: u32,
    hour: u32,
    k: u32,
) -> Result<(f64, Vec<ConsensusMessage>), Rejection> {
    let s = &committed.params.rci;
    if let Some(kappa) = scheduled_kappa(s, k) {
        return Ok((kappa, iteration_messages(committed, run, hour, k)?));
    }
    let mut memory = NewtonMemory::default();
    let mut previous: Option<Vec<ConsensusMessage>> = None;
    for j in 0..=k {
        let current = iteration_messages(committed, run, hour, j)?;
        if s.dual_update == DualUpdate::Gradient
            && previous
                .as_deref()
                .is_some_and(|p| duals_moved(p, &current))
        {
            memory = NewtonMemory::default();
        }
        let kappa = newton_step(&mut memory, &current, s);
        if j == k {
            return Ok((kappa, current));
        }
        previous = Some(current);
    }
    unreachable!("the loop returns at j == k")
}

/// The Newton step from the agents' committed states and signals (the arithmetic of
/// [`rci::step`]'s innovation, in agent order).
fn newton_step(memory: &mut NewtonMemory, current: &[ConsensusMessage], s: &RciSettings) -> f64 {
    let mismatch: f64 = current.iter().map(|m| m.power).sum();
    let states = states(current);
    let mean_price = rci::mean_price(&states);
    let downward = mismatch > 0.0;
    let slope: f64 = current.iter().map(|m| m.signals().toward(downward).0).sum();
    let flat = || nearest_gap(current.iter().map(|m| m.signals().toward(downward).1));
    memory.kappa(
        mismatch,
        mean_price,
        rci::price_range(&states),
        slope,
        flat,
        s,
    )
}

/// The iteration at which the negotiation of (`run`, `hour`) ended, if it has: the first
/// whose stop rules hold, or the iteration cap.
fn ended_at(committed: &LedgerState, run: u32, hour: u32) -> Result<Option<u32>, Rejection> {
    let s = &committed.params.rci;
    let Some(last) = committed.last_iteration(run, hour) else {
        return Ok(None);
    };
    if last >= s.max_iterations {
        return Ok(Some(last));
    }
    let after = states(&iteration_messages(committed, run, hour, last)?);
    if rci::diverged(&after) {
        return Ok(Some(last));
    }
    if last == 0 {
        return Ok(None);
    }
    let before = states(&iteration_messages(committed, run, hour, last - 1)?);
    Ok(stop_rules_hold(&residuals_between(&before, &after), s).then_some(last))
}

impl ContentRule for MarketRule {
    fn check(&self, committed: &LedgerState, msg: &ConsensusMessage) -> Result<(), Rejection> {
        check_message_values(msg)?;
        let s = &committed.params.rci;
        if msg.run == self.run && committed.has_settlement(msg.hour) {
            return Err(Rejection::HourSettled { hour: msg.hour });
        }
        if s.dual_update == DualUpdate::Exact {
            // rci::step's signals of an agent held at a limit.
            let held = msg.dual_upper > 0.0 || msg.dual_lower > 0.0;
            if held {
                let gap = |d: f64| if d > 0.0 { d } else { f64::INFINITY };
                let want = NewtonSignals {
                    slope_down: 0.0,
                    slope_up: 0.0,
                    gap_down: gap(msg.dual_upper),
                    gap_up: gap(msg.dual_lower),
                };
                for (field, expected, found) in [
                    ("slope_down", want.slope_down, msg.slope_down),
                    ("slope_up", want.slope_up, msg.slope_up),
                    ("gap_down", want.gap_down, msg.gap_down),
                    ("gap_up", want.gap_up, msg.gap_up),
                ] {
                    if expected != found {
                        return Err(Rejection::Mismatch {
                            field,
                            expected,
                            found,
                        });
                    }
                }
            }
        }
        let Some(k) = msg.iteration.checked_sub(1) else {
            self.agrees("dual_upper", 0.0, msg.dual_upper)?;
            self.agrees("dual_lower", 0.0, msg.dual_lower)?;
            // An agent's own marginal price is private: only a common start is checked.
            return match s.start_price {
                StartPrice::Common => self.agrees("price", s.initial_price, msg.price),
                StartPrice::OwnMarginal => Ok(()),
            };
        };
        if let Some(ended) = ended_at(committed, msg.run, msg.hour)?
            && ended <= k
        {
            return Err(Rejection::NegotiationEnded {
                hour: msg.hour,
                ended,
            });
        }
        let (kappa, previous) = committed_step(committed, msg.run, msg.hour, k)?;
        let mismatch: f64 = previous.iter().map(|m| m.power).sum();
        let own = previous
            .get(msg.agent as usize)
            .ok_or(Rejection::UnknownSigner { agent: msg.agent })?;
        let expected = rci::price_update(
            own.price,
            previous.iter().map(|m| m.price),
            s.chi,
            kappa,
            mismatch,
        );
        self.agrees("price", expected, msg.price)
    }

    fn check_settlement(
        &self,
        committed: &LedgerState,
        settlement: &Settlement,
    ) -> Result<(), Rejection> {
        let hour = settlement.hour;
        let Some(end) = ended_at(committed, self.run, hour)? else {
            return Err(Rejection::Unsettled {
                hour,
                reason: "its negotiation has not ended",
            });
        };
        let last = iteration_messages(committed, self.run, hour, end)?;
        let export = last[0].power;
        let (seller, buyer) = if export >= 0.0 { (0, 1) } else { (1, 0) };
        if (settlement.seller, settlement.buyer) != (seller, buyer) {
            return Err(Rejection::Unsettled {
                hour,
                reason: "the seller is not the agent that exports",
            });
        }
        self.agrees("mw", export.abs(), settlement.mw)?;
        self.agrees("price", rci::mean_price(&states(&last)), settlement.price)
    }
}
