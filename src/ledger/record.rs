//! Records a market day's whole negotiation in a ledger: every agent's message of every
//! RCI iteration of every hour, signed by the agent, in one block per iteration that the
//! validators check with the [`MarketRule`] and vote on, then one block per hour with the
//! hour's settlement signed by both parties.
//!
//! The negotiation recorded is the f64 CPU reference ([`rci::step`] from
//! [`RciState::new`]) over the day's offer curves: recording checks, hour by hour, that it
//! ends exactly (bit for bit) where the day's own negotiation ended, so the ledger is the
//! negotiation the run reports when the run used the CPU reference.

use std::time::Instant;

use crate::attack::{Defence, HourAttacks};
use crate::error::{Error, Result};
use crate::market::{DayResult, Market};
use crate::offer::OfferCurve;
use crate::rci::{self, Agent, HourOutcome, NewtonSignals, RciState};

use super::consensus::Network;
use super::consensus::ProposalFailure;
use super::keys::f64_bytes;
use super::market_rule::MarketRule;
use super::merkle::merkle_root;
use super::replay::{DayAttacks, ReplayCounts, ReplayEnd, ReplayOptions, record_hour, undefended};
use super::tx::{ConsensusMessage, Settlement, Transaction, TxBody};
use super::verify::{VerifiedSummary, VerifyOptions, verify};

/// How to record a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordOptions {
    /// Seed of every agent's and validator's key pair and commitment salt.
    pub seed: u64,
    /// Faults tolerated, f: n = 3f + 1 validators, 2f + 1 votes commit a block.
    pub faults: u32,
    /// Simulated time between blocks, ms (the blocks' timestamps).
    pub block_interval_ms: u64,
    /// The run index the messages carry.
    pub run: u32,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            seed: 0,
            faults: 1,
            block_interval_ms: 100,
            run: 0,
        }
    }
}

/// Wall time spent on the ledger while recording, s.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct RecordTiming {
    /// The agents signing their messages and settlements.
    pub sign_s: f64,
    /// The validators checking each proposed block (signatures, content rule), voting,
    /// and the commit checking the votes.
    pub validate_s: f64,
    /// Hashing alone: every block's Merkle root and header hash once more, timed apart.
    pub hash_s: f64,
    /// One full re-verification of the finished ledger (what `p2pmarket verify` does,
    /// content rule included).
    pub verify_s: f64,
}

/// Counts of a recorded ledger.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct RecordCounts {
    /// Blocks, genesis included.
    pub blocks: u64,
    /// Transactions, genesis records included.
    pub transactions: u64,
    /// Consensus messages.
    pub consensus_messages: u64,
    /// Settlements.
    pub settlements: u64,
    /// Ed25519 signatures made (agents' and validators' votes).
    pub signatures: u64,
    /// Size of the canonical framed ledger ([`super::Ledger::to_bytes`]), bytes.
    pub bytes: u64,
    /// Validators, n = 3f + 1.
    pub validators: u32,
    /// Faults tolerated, f.
    pub faults: u32,
}

/// A recorded day: the network (its state and ledger) and what recording cost.
#[derive(Debug, Clone)]
pub struct RecordedDay {
    /// Validators, agents and the committed ledger.
    pub network: Network,
    /// The run index the messages carry.
    pub run: u32,
    /// Counts.
    pub counts: RecordCounts,
    /// Wall times.
    pub timing: RecordTiming,
    /// What the re-verification of the finished ledger established.
    pub summary: VerifiedSummary,
    /// The forged copies submitted and rejected over the day (zero without attacks).
    pub forgeries: ReplayCounts,
}

/// The private data an agent commits to in the genesis: its offer curves of the 24 hours
/// (per hour: breakpoint count, prices, exports, costs, as little-endian f64 bit
/// patterns) and its trade limits.
pub fn private_data(curves: &[&OfferCurve], limits: (f64, f64)) -> Vec<u8> {
    let mut bytes = Vec::new();
    for c in curves {
        bytes.extend_from_slice(&(c.prices.len() as u64).to_le_bytes());
        bytes.extend(f64_bytes(&c.prices));
        bytes.extend(f64_bytes(&c.exports));
        bytes.extend(f64_bytes(&c.costs));
    }
    bytes.extend(f64_bytes(&[limits.0, limits.1]));
    bytes
}

pub(super) fn message(
    run: u32,
    hour: u32,
    iteration: u32,
    agent: &Agent<'_>,
    index: usize,
    st: &rci::AgentState,
    s: &rci::RciSettings,
) -> ConsensusMessage {
    let sig = NewtonSignals::of(agent, st, s);
    ConsensusMessage {
        run,
        hour,
        iteration,
        agent: index as u32,
        price: st.price,
        power: st.power,
        dual_upper: st.dual_upper,
        dual_lower: st.dual_lower,
        slope_down: sig.slope_down,
        slope_up: sig.slope_up,
        gap_down: sig.gap_down,
        gap_up: sig.gap_up,
    }
}

fn refused(what: String, failure: super::consensus::ProposalFailure) -> Error {
    let reasons: Vec<String> = failure
        .refusals
        .iter()
        .map(|(v, f)| format!("validator {v}: {}", f.rejection))
        .collect();
    recording_failure(format!(
        "the validators refused the block of {what} ({} votes; {})",
        failure.votes,
        reasons.join("; ")
    ))
}

/// Records `day`'s negotiation of `market` (see the module doc). Errors when the recorded
/// negotiation does not end where the day's did, or when the validators refuse a block
/// (neither happens for an honest run: both would be bugs).
pub fn record_day(market: &Market, day: &DayResult, opts: &RecordOptions) -> Result<RecordedDay> {
    record_day_attacked(
        market,
        day,
        opts,
        &DayAttacks {
            slots: &[],
            defence: Defence::Undefended,
        },
    )
}

/// [`record_day`] of a day negotiated under defended attacks: in every attacked hour,
/// every message an attack alters is also submitted as the attacker's forged copy and
/// must be rejected, as [`super::replay`] describes (with the original signature on a
/// copy altered in transit); [`RecordedDay::forgeries`] counts them. The genuine messages
/// are those of the defended negotiation, which is the attack-free one, so `day` is the
/// day as `market` negotiated it without (or under defended) attacks. Errors on an
/// undefended active attack (bad input: its messages bypass the ledger), and when a forged
/// copy is committed (a failed invariant, like a refused honest block).
pub fn record_day_attacked(
    market: &Market,
    day: &DayResult,
    opts: &RecordOptions,
    attacks: &DayAttacks<'_>,
) -> Result<RecordedDay> {
    let s = &market.rci;
    let active = day.hours.iter().any(|h| {
        HourAttacks {
            slots: attacks.slots,
            hour: h.hour as u32,
            defence: attacks.defence,
        }
        .any()
    });
    if active && attacks.defence != Defence::Defended {
        return Err(undefended());
    }
    let (lo, hi) = market.agent_limits();
    let agents_n = day.hours.first().map_or(0, |h| h.curves.len());
    let private: Vec<Vec<u8>> = (0..agents_n)
        .map(|i| {
            let curves: Vec<&OfferCurve> = day.hours.iter().map(|h| &h.curves[i]).collect();
            private_data(&curves, (lo, hi))
        })
        .collect();
    let private_refs: Vec<&[u8]> = private.iter().map(Vec::as_slice).collect();
    let net = Network::genesis(opts.seed, opts.faults, 0, s, &private_refs, 0)?;
    // Under attack the validators demand the recomputed bits (an honest message gives
    // them), so that a chi forgery differing in the last bits is refused like any other.
    let rule = if active {
        super::replay::strict_rule(opts.run)
    } else {
        MarketRule::new(opts.run)
    };
    let mut rec = Recorder::new(net, rule, opts.block_interval_ms);
    let replay = ReplayOptions {
        seed: opts.seed,
        faults: opts.faults,
        block_interval_ms: opts.block_interval_ms,
        run: opts.run,
        transit_signature: Default::default(),
    };
    let mut forgeries = ReplayCounts::default();
    for h in &day.hours {
        let hour = h.hour as u32;
        let agents = market.rci_agents(&h.curves);
        let hour_attacks = HourAttacks {
            slots: attacks.slots,
            hour,
            defence: attacks.defence,
        };
        let done = record_hour(&mut rec, &agents, s, &hour_attacks, &replay)?;
        forgeries.forged_submitted += done.counts.forged_submitted;
        forgeries.forged_rejected += done.counts.forged_rejected;
        forgeries.genuine_submitted += done.counts.genuine_submitted;
        forgeries.genuine_accepted += done.counts.genuine_accepted;
        match done.end {
            ReplayEnd::Finished => {}
            ReplayEnd::ForgeryCommitted { iteration, agent } => {
                return Err(recording_failure(format!(
                    "hour {hour}: the validators committed a forged copy of agent {agent}'s message of iteration {iteration}"
                )));
            }
            ReplayEnd::GenuineRefused { iteration } => {
                let reason = rec.last_refusal.take().map_or_else(String::new, |f| {
                    let r: Vec<String> = f
                        .refusals
                        .iter()
                        .map(|(v, f)| format!("validator {v}: {}", f.rejection))
                        .collect();
                    format!(" ({} votes; {})", f.votes, r.join("; "))
                });
                return Err(recording_failure(format!(
                    "the validators refused the block of hour {hour}, iteration {iteration}{reason}"
                )));
            }
        }
        let state = done.state;
        check_same_end(hour, &state, &h.p2p.outcome)?;
        if agents.len() == 2 {
            let export = state.agents()[0].power;
            let (seller, buyer) = if export >= 0.0 { (0, 1) } else { (1, 0) };
            let (mw, price) = (export.abs(), state.price());
            let tx = rec.sign(TxBody::Settlement(Settlement {
                hour,
                seller,
                buyer,
                mw,
                price,
                cost: mw * price,
            }))?;
            rec.commit(vec![tx], || format!("hour {hour}, settlement"))?;
        }
    }
    let Recorder {
        net,
        rule,
        mut timing,
        signatures,
        validators,
        ..
    } = rec;
    let ledger = &net.ledger;
    let start = Instant::now();
    let mut roots = 0usize;
    let mut at = 0usize;
    for b in &ledger.blocks {
        let n = b.header.tx_count as usize;
        let leaves: Vec<Vec<u8>> = ledger.transactions[at..at + n]
            .iter()
            .map(|r| r.tx.encode())
            .collect();
        at += n;
        roots ^= merkle_root(&leaves)[0] as usize ^ b.header.hash()[0] as usize;
    }
    std::hint::black_box(roots);
    timing.hash_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let summary = verify(
        &ledger.blocks,
        &ledger.transactions,
        &VerifyOptions {
            anchor: None,
            rule: Some(&rule),
        },
    )
    .map_err(|e| recording_failure(format!("the recorded ledger does not verify: {e}")))?;
    timing.verify_s = start.elapsed().as_secs_f64();
    let votes: u64 = ledger.blocks.iter().map(|b| b.votes.len() as u64).sum();
    let counts = RecordCounts {
        blocks: ledger.blocks.len() as u64,
        transactions: summary.transactions,
        consensus_messages: summary.consensus_messages as u64,
        settlements: summary.settlements as u64,
        signatures: signatures + votes,
        bytes: ledger.to_bytes().len() as u64,
        validators,
        faults: opts.faults,
    };
    Ok(RecordedDay {
        network: net,
        run: opts.run,
        counts,
        timing,
        summary,
        forgeries,
    })
}

/// The network being recorded into, with the clock and the costs so far.
pub(super) struct Recorder {
    pub(super) net: Network,
    rule: MarketRule,
    validators: u32,
    interval_ms: u64,
    timing: RecordTiming,
    signatures: u64,
    clock: u64,
    proposals: u64,
    /// Why the last refused proposal was refused.
    pub(super) last_refusal: Option<ProposalFailure>,
}

impl Recorder {
    /// A recorder on `net` (after its genesis) validating with `rule`.
    pub(super) fn new(net: Network, rule: MarketRule, interval_ms: u64) -> Self {
        Recorder {
            validators: net.validators.len() as u32,
            net,
            rule,
            interval_ms,
            timing: RecordTiming::default(),
            signatures: 0,
            clock: 0,
            proposals: 0,
            last_refusal: None,
        }
    }

    /// Signs `body` with its signers' keys (timed).
    pub(super) fn sign(&mut self, body: TxBody) -> Result<Transaction> {
        let start = Instant::now();
        let tx = self
            .net
            .sign(body)
            .map_err(|r| recording_failure(format!("signing: {r}")))?;
        self.timing.sign_s += start.elapsed().as_secs_f64();
        self.signatures += tx.signatures.len() as u64;
        Ok(tx)
    }

    /// Proposes the next block (proposers in turn) and commits it (timed); a refusal is an
    /// error naming `what`.
    fn commit(&mut self, txs: Vec<Transaction>, what: impl FnOnce() -> String) -> Result<()> {
        self.try_commit(txs).map_err(|f| refused(what(), f))
    }

    /// Proposes the next block (proposers in turn) and commits it if the validators vote
    /// for it (timed); a refusal is returned (and kept in `last_refusal`).
    pub(super) fn try_commit(
        &mut self,
        txs: Vec<Transaction>,
    ) -> std::result::Result<(), ProposalFailure> {
        self.clock += self.interval_ms;
        self.proposals += 1;
        let proposer = (self.proposals % u64::from(self.validators)) as u32;
        let start = Instant::now();
        let result = self.net.propose(proposer, txs, self.clock, &self.rule);
        self.timing.validate_s += start.elapsed().as_secs_f64();
        result
            .map(|_| ())
            .inspect_err(|f| self.last_refusal = Some(f.clone()))
    }
}

/// The recorded negotiation must end where the day's did, bit for bit.
/// (Bitwise, so that a NaN of a diverged hour compares equal to itself.)
fn check_same_end(hour: u32, state: &RciState, outcome: &HourOutcome) -> Result<()> {
    let bits = |a: &[rci::AgentState]| -> Vec<[u64; 4]> {
        a.iter()
            .map(|s| [s.price, s.power, s.dual_upper, s.dual_lower].map(f64::to_bits))
            .collect()
    };
    if state.iteration() == outcome.iterations && bits(state.agents()) == bits(&outcome.agents) {
        Ok(())
    } else {
        Err(recording_failure(format!(
            "hour {hour}: the recorded negotiation ends after {} iterations at price {}, the day's after {} at {}; the ledger records the CPU reference",
            state.iteration(),
            state.price(),
            outcome.iterations,
            outcome.price()
        )))
    }
}

/// A recording that cannot complete: not bad input but a failed invariant (exit 1).
pub(super) fn recording_failure(message: String) -> Error {
    Error::Solver {
        problem: "ledger recording".into(),
        message,
    }
}
