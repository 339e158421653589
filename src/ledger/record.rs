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

use crate::attack::HourAttacks;
use crate::error::{Error, Result};
use crate::market::{DayResult, Market};
use crate::offer::OfferCurve;
use crate::rci::{self, Agent, HourOutcome, NewtonSignals, RciState};

use super::consensus::Network;
use super::keys::f64_bytes;
use super::market_rule::MarketRule;
use super::merkle::merkle_root;
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

fn message(
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
    let s = &market.rci;
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
    let mut rec = Recorder {
        validators: net.validators.len() as u32,
        net,
        rule: MarketRule::new(opts.run),
        interval_ms: opts.block_interval_ms,
        timing: RecordTiming::default(),
        signatures: 0,
        clock: 0,
        proposals: 0,
    };
    for h in &day.hours {
        let hour = h.hour as u32;
        let agents: Vec<Agent<'_>> = h
            .curves
            .iter()
            .map(|c| Agent {
                curve: c.view(),
                min_export: lo,
                max_export: hi,
            })
            .collect();
        let mut state = RciState::new(&agents, s);
        loop {
            let iteration = state.iteration();
            let txs = agents
                .iter()
                .zip(state.agents())
                .enumerate()
                .map(|(i, (a, st))| {
                    let m = message(opts.run, hour, iteration, a, i, st, s);
                    rec.sign(TxBody::Consensus(m))
                })
                .collect::<Result<Vec<_>>>()?;
            rec.commit(txs, || format!("hour {hour}, iteration {iteration}"))?;
            // The same stop as rci::negotiate_in: the cap, convergence or divergence.
            if iteration >= s.max_iterations || (iteration > 0 && ended(&state, s)) {
                break;
            }
            rci::step(&mut state, &agents, s, &HourAttacks::NONE);
        }
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
    })
}

/// Whether the last iteration ended the negotiation: its stop rules hold, or it diverged
/// (what [`rci::step`] reported for it).
fn ended(state: &RciState, s: &rci::RciSettings) -> bool {
    rci::diverged(state.agents()) || rci::stop_rules_hold(&state.residuals(), s)
}

/// The network being recorded into, with the clock and the costs so far.
struct Recorder {
    net: Network,
    rule: MarketRule,
    validators: u32,
    interval_ms: u64,
    timing: RecordTiming,
    signatures: u64,
    clock: u64,
    proposals: u64,
}

impl Recorder {
    /// Signs `body` with its signers' keys (timed).
    fn sign(&mut self, body: TxBody) -> Result<Transaction> {
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
        self.clock += self.interval_ms;
        self.proposals += 1;
        let proposer = (self.proposals % u64::from(self.validators)) as u32;
        let start = Instant::now();
        let result = self.net.propose(proposer, txs, self.clock, &self.rule);
        self.timing.validate_s += start.elapsed().as_secs_f64();
        result.map(|_| ()).map_err(|f| refused(what(), f))
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
fn recording_failure(message: String) -> Error {
    Error::Solver {
        problem: "ledger recording".into(),
        message,
    }
}
