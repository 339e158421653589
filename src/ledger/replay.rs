//! The ledger as the oracle of the defence against false-data injection
//! ([`crate::attack`]): one hour's negotiation recorded under attacks, with every altered
//! copy of a message submitted to the validators as a forged transaction.
//!
//! For every message an attack alters (exactly those [`crate::rci::HourOutcome::tampered`]
//! counts: a copy whose bytes differ from the genuine message's), the attacker's copy is
//! proposed to the validators, alone in a block, before the genuine messages of its
//! iteration:
//! - a field altered in transit (`price`, `power`, `dual_upper`, `dual_lower`, `slope`,
//!   `gap`): the altered payload with the sender's signature over the genuine bytes
//!   ([`TransitSignature::Original`], the threat model);
//! - a tampered consensus weight (`chi`): the target signs, honestly and with its own key, a
//!   message whose price it computed with `chi + c` from the committed messages of the
//!   iteration before (its other fields are its genuine ones).
//!
//! The validators decide: a forged copy that gathers no quorum is rejected (the reason is
//! the first refusing validator's [`Rejection`]), then the iteration's genuine messages are
//! proposed in one block. The recording checks nothing itself; it only builds the copies,
//! submits them and reports what the validators did. The negotiation the agents run is the
//! one on the validated messages, so while every forged copy is rejected it is the
//! attack-free negotiation ([`crate::attack::Defence::Defended`]). Should a forged copy be
//! committed, or a genuine block be refused, the defence has failed: the replay stops the
//! hour there and says so in [`ReplayEnd`]; its outcome is then what the ledger holds up to
//! that point, and no longer claims to be the defended negotiation.
//!
//! The outcome is read back from the committed messages: the iterations are the last
//! committed iteration, the final states its messages, and `converged` is
//! [`rci::stop_rules_hold`] on the residuals between the last two committed iterations
//! (and no divergence), the stop decision of [`rci::step`].
//!
//! The replay's content rule is [`MarketRule`] with tolerance 0: an honest message
//! recomputes bit for bit, and the attack model counts a message as altered when one bit
//! differs, so the validators must demand the same bits for the two counts to be
//! comparable (a chi attack whose price differs in the last bit would pass a relative
//! tolerance of 1e-12).

use crate::attack::{AttackSlot, AttackVariable, Defence, HourAttacks};
use crate::error::{Error, Result};
use crate::offer::OfferCurve;
use crate::rci::{self, Agent, AgentState, RciSettings, RciState};

use super::consensus::{Network, ProposalFailure};
use super::keys::{KeyPair, Role};
use super::market_rule::{MarketRule, committed_step};
use super::record::{Recorder, message, private_data};
use super::state::Rejection;
use super::tx::{ConsensusMessage, Transaction, TxBody};

/// The signature a message altered in transit carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransitSignature {
    /// The sender's signature over the genuine bytes (the attacker holds no key: the
    /// threat model of [`crate::attack`]).
    #[default]
    Original,
    /// A valid signature of the altered bytes by a key the ledger never registered.
    AttackerKey,
    /// A valid signature of the altered bytes by the sender's own key: a stolen key,
    /// outside the threat model. Fields the validators cannot recompute (power, duals,
    /// signals) then pass, which lets a test show that the oracle notices a breach.
    SenderKey,
}

/// How to replay an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Seed of every agent's and validator's key pair and commitment salt.
    pub seed: u64,
    /// Faults tolerated, f: n = 3f + 1 validators, 2f + 1 votes commit a block.
    pub faults: u32,
    /// Simulated time between blocks, ms.
    pub block_interval_ms: u64,
    /// The run index the messages carry.
    pub run: u32,
    /// What a copy altered in transit is signed with.
    pub transit_signature: TransitSignature,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            seed: 0,
            faults: 1,
            block_interval_ms: 100,
            run: 0,
            transit_signature: TransitSignature::Original,
        }
    }
}

/// Which check refused a forged copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBy {
    /// A signature that does not verify under the sender's registered key.
    Signature,
    /// The content rule: the recomputed price, the values' own checks, or the signals of
    /// an agent held at a limit.
    Content,
}

/// One forged copy and what the validators did with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Forgery {
    /// The message's iteration.
    pub iteration: u32,
    /// The sender (or, for chi, the target).
    pub agent: u32,
    /// The forged transaction as submitted.
    pub transaction: Transaction,
    /// `None`: committed; else the first refusing validator's reason.
    pub refusal: Option<Rejection>,
}

impl Forgery {
    /// Which check refused it (`None`: committed).
    pub fn refused_by(&self) -> Option<RefusedBy> {
        self.refusal.as_ref().map(|r| match r {
            Rejection::Signature { .. } => RefusedBy::Signature,
            _ => RefusedBy::Content,
        })
    }
}

/// Counts of a replayed hour's submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ReplayCounts {
    /// Forged copies submitted (messages whose altered bytes differ from the genuine).
    pub forged_submitted: u32,
    /// Forged copies the validators rejected.
    pub forged_rejected: u32,
    /// Genuine messages submitted.
    pub genuine_submitted: u32,
    /// Genuine messages committed.
    pub genuine_accepted: u32,
}

/// How a replayed hour ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayEnd {
    /// The negotiation ran to its stop (converged, diverged or the cap).
    Finished,
    /// A forged copy of `agent`'s message of `iteration` was committed: the defence failed.
    ForgeryCommitted {
        /// Its iteration.
        iteration: u32,
        /// Its sender.
        agent: u32,
    },
    /// The genuine messages of `iteration` were refused.
    GenuineRefused {
        /// The iteration.
        iteration: u32,
    },
}

/// The committed negotiation of a replayed hour, read from the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedOutcome {
    /// The stop rules held between the last two committed iterations (no divergence).
    pub converged: bool,
    /// The last committed iteration.
    pub iterations: u32,
    /// The agents' last committed states.
    pub agents: Vec<AgentState>,
}

/// A replayed hour.
#[derive(Debug, Clone)]
pub struct HourReplay {
    /// The committed negotiation.
    pub outcome: CommittedOutcome,
    /// How it ended.
    pub end: ReplayEnd,
    /// Submissions.
    pub counts: ReplayCounts,
    /// Every forged copy, in submission order.
    pub forgeries: Vec<Forgery>,
    /// Validators, agents and the ledger.
    pub network: Network,
}

/// Replays one hour of `agents` under `attacks` through a fresh ledger (see the module
/// docs). Errors on bad input: invalid settings or an undefended attack (whose messages
/// bypass the ledger); what the validators decide is in the result, never an error.
pub fn replay_hour(
    agents: &[Agent<'_>],
    settings: &RciSettings,
    attacks: &HourAttacks<'_>,
    opts: &ReplayOptions,
) -> Result<HourReplay> {
    if attacks.any() && attacks.defence != Defence::Defended {
        return Err(undefended());
    }
    let curves: Vec<OfferCurve> = agents.iter().map(|a| a.curve.to_curve()).collect();
    let private: Vec<Vec<u8>> = agents
        .iter()
        .zip(&curves)
        .map(|(a, c)| private_data(&[c], (a.min_export, a.max_export)))
        .collect();
    let private_refs: Vec<&[u8]> = private.iter().map(Vec::as_slice).collect();
    let mut net = Network::genesis(opts.seed, opts.faults, 0, settings, &private_refs, 0)?;
    // A replay asks what the validators decide, not what n checks cost.
    net.check_once = true;
    let mut rec = Recorder::new(net, strict_rule(opts.run), opts.block_interval_ms);
    let hour = record_hour(&mut rec, agents, settings, attacks, opts)?;
    let outcome = committed_outcome(&rec.net, settings, opts.run, attacks.hour, agents.len());
    Ok(HourReplay {
        outcome,
        end: hour.end,
        counts: hour.counts,
        forgeries: hour.forgeries,
        network: rec.net,
    })
}

/// The content rule of a replay: [`MarketRule`] demanding the same bits.
pub fn strict_rule(run: u32) -> MarketRule {
    MarketRule {
        run,
        tolerance: 0.0,
    }
}

pub(super) fn undefended() -> Error {
    Error::invalid(
        "attack.defence",
        "undefended",
        "\"defended\" to record an attacked negotiation in the ledger (undefended messages bypass it)",
    )
}

/// What [`record_hour`] did.
pub(super) struct RecordedHour {
    pub end: ReplayEnd,
    pub counts: ReplayCounts,
    pub forgeries: Vec<Forgery>,
    /// The agents' own final state.
    pub state: RciState,
}

/// Records hour `attacks.hour` of `agents` into `rec`: per iteration, the forged copies
/// (each alone in a block), then the genuine messages in one block, until the negotiation
/// stops as [`rci::negotiate_in`] does, or the defence fails.
pub(super) fn record_hour(
    rec: &mut Recorder,
    agents: &[Agent<'_>],
    s: &RciSettings,
    attacks: &HourAttacks<'_>,
    opts: &ReplayOptions,
) -> Result<RecordedHour> {
    let hour = attacks.hour;
    let mut counts = ReplayCounts::default();
    let mut forgeries = Vec::new();
    let mut state = RciState::new(agents, s);
    let attacked = attacks.any();
    let end = loop {
        let iteration = state.iteration();
        let genuine: Vec<Transaction> = agents
            .iter()
            .zip(state.agents())
            .enumerate()
            .map(|(i, (a, st))| {
                rec.sign(TxBody::Consensus(message(
                    opts.run, hour, iteration, a, i, st, s,
                )))
            })
            .collect::<Result<_>>()?;
        if attacked {
            let mut committed = None;
            for (i, tx) in genuine.iter().enumerate() {
                let Some(forged) = forge(rec, tx, i, agents.len(), iteration, s, attacks, opts)?
                else {
                    continue;
                };
                counts.forged_submitted += 1;
                let refusal = rec.try_commit(vec![forged.clone()]).err().map(first_reason);
                if refusal.is_some() {
                    counts.forged_rejected += 1;
                } else if committed.is_none() {
                    committed = Some(i as u32);
                }
                forgeries.push(Forgery {
                    iteration,
                    agent: i as u32,
                    transaction: forged,
                    refusal,
                });
            }
            if let Some(agent) = committed {
                break ReplayEnd::ForgeryCommitted { iteration, agent };
            }
        }
        counts.genuine_submitted += genuine.len() as u32;
        if rec.try_commit(genuine).is_err() {
            break ReplayEnd::GenuineRefused { iteration };
        }
        counts.genuine_accepted += agents.len() as u32;
        // The same stop as rci::negotiate_in: the cap, convergence or divergence.
        if iteration >= s.max_iterations || (iteration > 0 && ended(&state, s)) {
            break ReplayEnd::Finished;
        }
        // The agents step on the validated messages: the genuine ones while every forged
        // copy is rejected (the loop has ended otherwise).
        rci::step(&mut state, agents, s, &HourAttacks::NONE);
    };
    Ok(RecordedHour {
        end,
        counts,
        forgeries,
        state,
    })
}

/// Whether the last iteration ended the negotiation: its stop rules hold, or it diverged.
pub(super) fn ended(state: &RciState, s: &RciSettings) -> bool {
    rci::diverged(state.agents()) || rci::stop_rules_hold(&state.residuals(), s)
}

fn first_reason(f: ProposalFailure) -> Rejection {
    f.refusals
        .into_iter()
        .next()
        .map(|(_, fault)| fault.rejection)
        .unwrap_or(Rejection::NoQuorum {
            votes: f.votes,
            quorum: 0,
        })
}

/// The attacker's copy of agent `i`'s genuine message `tx` of `iteration` (one of
/// `agents`), `None` when the attacks leave its bytes unchanged (no alteration:
/// [`crate::attack`]). A stealthy price wedge alters the copies to different receivers
/// differently; the copy forged is the first receiver's whose price differs.
#[allow(clippy::too_many_arguments)]
fn forge(
    rec: &mut Recorder,
    tx: &Transaction,
    i: usize,
    agents: usize,
    iteration: u32,
    s: &RciSettings,
    attacks: &HourAttacks<'_>,
    opts: &ReplayOptions,
) -> Result<Option<Transaction>> {
    let TxBody::Consensus(genuine) = tx.body else {
        return Ok(None);
    };
    // A tampered chi: the target's own, honestly signed, message with the price it
    // computes with chi + c (rci::step's arithmetic, from the committed iteration before).
    let mut base = tx.clone();
    if iteration > 0 && attacks.targets(AttackVariable::Chi, i, iteration) {
        let chi = attacks.seen(AttackVariable::Chi, i, iteration, s.chi);
        let (kappa, previous) =
            committed_step(&rec.net.state, opts.run, attacks.hour, iteration - 1).map_err(|r| {
                super::record::recording_failure(format!(
                    "the chi forgery of agent {i}, iteration {iteration}: {r}"
                ))
            })?;
        let mismatch: f64 = previous.iter().map(|m| m.power).sum();
        let price = rci::price_update(
            previous[i].price,
            previous.iter().map(|m| m.price),
            chi,
            kappa,
            mismatch,
        );
        if price.to_bits() != genuine.price.to_bits() {
            base = rec.sign(TxBody::Consensus(ConsensusMessage { price, ..genuine }))?;
        }
    }
    let TxBody::Consensus(before) = base.body else {
        unreachable!("a consensus message stays one");
    };
    let seen = |v: AttackVariable, x: f64| attacks.seen(v, i, iteration, x);
    let copy_to = |r: usize| attacks.seen_price(i, r, iteration, before.price);
    let mut receivers = (0..agents).filter(|&r| r != i);
    let price = receivers
        .clone()
        .map(copy_to)
        .find(|p| p.to_bits() != before.price.to_bits())
        .or_else(|| receivers.next().map(copy_to))
        // A lone agent: a price attack still alters its (unreceived) message.
        .unwrap_or_else(|| copy_to(i));
    let altered = ConsensusMessage {
        price,
        power: seen(AttackVariable::Power, before.power),
        dual_upper: seen(AttackVariable::DualUpper, before.dual_upper),
        dual_lower: seen(AttackVariable::DualLower, before.dual_lower),
        slope_down: seen(AttackVariable::Slope, before.slope_down),
        slope_up: seen(AttackVariable::Slope, before.slope_up),
        gap_down: seen(AttackVariable::Gap, before.gap_down),
        gap_up: seen(AttackVariable::Gap, before.gap_up),
        ..before
    };
    let altered_body = TxBody::Consensus(altered);
    let forged = if altered_body.encode() == base.body.encode() {
        base
    } else {
        let signatures = match opts.transit_signature {
            TransitSignature::Original => base.signatures,
            TransitSignature::AttackerKey => {
                let key = KeyPair::derive(!opts.seed, Role::Agent, i as u32);
                vec![key.sign(&altered_body.encode())]
            }
            TransitSignature::SenderKey => rec.sign(altered_body.clone())?.signatures,
        };
        Transaction {
            body: altered_body,
            signatures,
        }
    };
    Ok((forged.body.encode() != tx.body.encode()).then_some(forged))
}

/// The negotiation of (`run`, `hour`) as committed in `net`.
pub(super) fn committed_outcome(
    net: &Network,
    s: &RciSettings,
    run: u32,
    hour: u32,
    agents: usize,
) -> CommittedOutcome {
    let states = |k: u32| -> Vec<AgentState> {
        (0..agents as u32)
            .filter_map(|a| net.state.message(run, hour, k, a))
            .map(|m| m.state())
            .collect()
    };
    let Some(last) = net.state.last_iteration(run, hour) else {
        return CommittedOutcome {
            converged: false,
            iterations: 0,
            agents: Vec::new(),
        };
    };
    let after = states(last);
    let converged = last > 0
        && !rci::diverged(&after)
        && rci::stop_rules_hold(&rci::residuals_between(&states(last - 1), &after), s);
    CommittedOutcome {
        converged,
        iterations: last,
        agents: after,
    }
}

/// The attacks of a recorded day ([`super::record_day_attacked`]).
#[derive(Debug, Clone, Copy)]
pub struct DayAttacks<'a> {
    /// The run's attack slots.
    pub slots: &'a [AttackSlot],
    /// Must be [`Defence::Defended`] when a slot is active.
    pub defence: Defence,
}
