//! The committed ledger state, the checks a block and its transactions must pass against
//! it, and the content rule that recomputes an agent's price update.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::VerifyingKey;

use crate::rci::StepRule;

use super::block::{Block, BlockHeader, Vote, vote_message};
use super::keys::{SignatureFault, verify_signature};
use super::merkle::merkle_root;
use super::tx::{ConsensusMessage, ProtocolParameters, Settlement, Transaction, TxBody};
use super::{Hash, PublicKey};

/// Most faults a genesis may declare (n = 3f + 1 validators).
pub const MAX_FAULTS: u32 = 10_000;

/// Most agents a genesis may declare.
pub const MAX_AGENTS: u32 = 1_000_000;

/// Why a validator (or a verifier) refuses a block, a transaction or a vote.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The block's height is not the next one.
    #[error("height {found}, expected {expected}")]
    Height {
        /// The next height.
        expected: u64,
        /// The header's.
        found: u64,
    },
    /// The previous-hash link does not name the committed tip.
    #[error("previous hash does not match the committed tip")]
    PrevHash,
    /// The simulated timestamp does not increase.
    #[error("timestamp {found} ms is not after {previous} ms")]
    Timestamp {
        /// The tip's timestamp.
        previous: u64,
        /// The header's.
        found: u64,
    },
    /// The proposer is not a registered validator.
    #[error("proposer {found} is not a validator")]
    Proposer {
        /// The header's proposer.
        found: u32,
    },
    /// The header's transaction count differs from the transactions given.
    #[error("header counts {header} transactions, {found} given")]
    TxCount {
        /// The header's count.
        header: u32,
        /// Transactions given.
        found: usize,
    },
    /// The Merkle root does not match the transactions.
    #[error("Merkle root does not match the transactions")]
    MerkleRoot,
    /// The genesis block is malformed (the reason in words).
    #[error("bad genesis: {0}")]
    Genesis(&'static str),
    /// A genesis record outside the genesis block.
    #[error("genesis record outside the genesis block")]
    GenesisRecord,
    /// Wrong number of signatures for the transaction type.
    #[error("{found} signatures, {expected} needed")]
    SignatureCount {
        /// Signatures needed.
        expected: usize,
        /// Signatures given.
        found: usize,
    },
    /// A signer is not a registered agent.
    #[error("signer {agent} is not a registered agent")]
    UnknownSigner {
        /// The agent index.
        agent: u32,
    },
    /// A transaction signature does not verify.
    #[error("signature of agent {agent}: {fault}")]
    Signature {
        /// The signer.
        agent: u32,
        /// Why.
        fault: SignatureFault,
    },
    /// The same message (run, hour, iteration, agent) or settlement (hour, seller, buyer)
    /// is already committed or earlier in the block.
    #[error("duplicate of an earlier transaction")]
    Duplicate,
    /// A field is NaN or infinite.
    #[error("{field} is not finite")]
    NonFinite {
        /// The field.
        field: &'static str,
    },
    /// A settlement is inconsistent (the reason in words).
    #[error("bad settlement: {0}")]
    Settlement(&'static str),
    /// A previous-iteration message the content rule needs is not committed.
    #[error("message of agent {agent} at iteration {iteration} is not committed")]
    MissingPrevious {
        /// The iteration.
        iteration: u32,
        /// The agent.
        agent: u32,
    },
    /// The price differs from the recomputed update.
    #[error("price {found} differs from the recomputed {expected}")]
    Price {
        /// The recomputed price, $/MWh.
        expected: f64,
        /// The message's price, $/MWh.
        found: f64,
    },
    /// A value that must not be negative (or NaN) is.
    #[error("{field} is negative or not a number")]
    Negative {
        /// The field.
        field: &'static str,
    },
    /// A message for an hour whose settlement is committed.
    #[error("hour {hour} is already settled")]
    HourSettled {
        /// The hour.
        hour: u32,
    },
    /// A message after the negotiation ended (its stop rules held, or the iteration cap).
    #[error("the negotiation of hour {hour} ended at iteration {ended}")]
    NegotiationEnded {
        /// The hour.
        hour: u32,
        /// The last iteration of the negotiation.
        ended: u32,
    },
    /// A value differs from what the committed state and parameters give.
    #[error("{field} {found} differs from the recomputed {expected}")]
    Mismatch {
        /// The field.
        field: &'static str,
        /// The recomputed value.
        expected: f64,
        /// The transaction's value.
        found: f64,
    },
    /// A settlement for an hour without a committed negotiation, or before its end.
    #[error("settlement of hour {hour}: {reason}")]
    Unsettled {
        /// The hour.
        hour: u32,
        /// Why.
        reason: &'static str,
    },
    /// A stored day's ledger stops before the day's end (see
    /// [`crate::ledger::MarketRule::check_day`]).
    #[error("the day is incomplete: hour {hour} {reason}")]
    Incomplete {
        /// The first hour not recorded to its end.
        hour: u32,
        /// Why.
        reason: &'static str,
    },
    /// A consensus message of another run, or of an hour outside the recorded day.
    #[error("a message of run {run}, hour {hour} lies outside the recorded day")]
    OutsideDay {
        /// The message's run.
        run: u32,
        /// The message's hour.
        hour: u32,
    },
    /// The content rule cannot check messages under the committed step rule.
    #[error("the content rule does not support step rule {0:?}")]
    StepRule(StepRule),
    /// A vote names a validator that is not registered.
    #[error("vote of unknown validator {validator}")]
    UnknownValidator {
        /// The index.
        validator: u32,
    },
    /// Votes are not strictly increasing in validator index.
    #[error("votes are not sorted by validator or repeat one")]
    VoteOrder,
    /// A vote's signature does not verify.
    #[error("vote of validator {validator}: {fault}")]
    VoteSignature {
        /// The validator.
        validator: u32,
        /// Why.
        fault: SignatureFault,
    },
    /// Fewer valid votes than the quorum 2f + 1.
    #[error("{votes} votes, quorum is {quorum}")]
    NoQuorum {
        /// Valid votes.
        votes: usize,
        /// 2f + 1.
        quorum: usize,
    },
    /// An honest validator already voted for another block at this height.
    #[error("already voted for another block at height {height}")]
    AlreadyVoted {
        /// The height.
        height: u64,
    },
}

/// A rejection tied to the transaction that caused it (`None`: the header or votes).
#[derive(Debug, Clone, PartialEq)]
pub struct BlockFault {
    /// Index of the transaction in the block, if a transaction caused it.
    pub index: Option<u32>,
    /// Why.
    pub rejection: Rejection,
}

impl From<Rejection> for BlockFault {
    fn from(rejection: Rejection) -> Self {
        BlockFault {
            index: None,
            rejection,
        }
    }
}

/// Checks a consensus message's content against the committed state (the RCI step lives
/// in [`crate::rci`]; a rule recomputes it from the committed previous messages).
pub trait ContentRule {
    /// `Ok` when `msg` is what its agent should have sent given `committed`.
    fn check(&self, committed: &LedgerState, msg: &ConsensusMessage) -> Result<(), Rejection>;

    /// `Ok` when the settlement agrees with the committed negotiation (by default the
    /// rule does not check settlements beyond their own consistency).
    fn check_settlement(
        &self,
        _committed: &LedgerState,
        _settlement: &Settlement,
    ) -> Result<(), Rejection> {
        Ok(())
    }
}

/// The price update of eq. (31)-(32) with a constant innovation step, summed over the
/// agents in index order:
/// `lambda_i' = lambda_i - chi * sum_j (lambda_i - lambda_j) - kappa * sum_j P_j`,
/// where `previous` holds every agent's message of the previous iteration, by agent index.
pub fn simple_price_update(
    previous: &[ConsensusMessage],
    agent: usize,
    chi: f64,
    kappa: f64,
) -> f64 {
    // eq. (31)-(32), Kavousi-Fard 2021.
    let own = previous[agent].price;
    let disagreement: f64 = previous.iter().map(|m| own - m.price).sum();
    let mismatch: f64 = previous.iter().map(|m| m.power).sum();
    own - chi * disagreement - kappa * mismatch
}

/// A [`ContentRule`] for the constant step rule: iteration 0 must start at the committed
/// `initial_price`, and every later price must equal [`simple_price_update`] of the
/// committed previous iteration with the committed `chi` and `kappa`, within a relative
/// `tolerance`. Powers, duals and slopes are the agent's private response and are only
/// checked to be finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimplePriceRule {
    /// Relative tolerance on the price, `|found - expected| <= tolerance * max(1, |expected|)`.
    pub tolerance: f64,
}

impl ContentRule for SimplePriceRule {
    fn check(&self, committed: &LedgerState, msg: &ConsensusMessage) -> Result<(), Rejection> {
        check_message_values(msg)?;
        let rci = &committed.params.rci;
        if rci.step_rule != StepRule::Constant {
            return Err(Rejection::StepRule(rci.step_rule));
        }
        let expected = match msg.iteration.checked_sub(1) {
            None => rci.initial_price,
            Some(prev) => {
                let previous = (0..committed.params.agents)
                    .map(|agent| {
                        committed
                            .message(msg.run, msg.hour, prev, agent)
                            .copied()
                            .ok_or(Rejection::MissingPrevious {
                                iteration: prev,
                                agent,
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                simple_price_update(&previous, msg.agent as usize, rci.chi, rci.kappa)
            }
        };
        if (msg.price - expected).abs() <= self.tolerance * expected.abs().max(1.0) {
            Ok(())
        } else {
            Err(Rejection::Price {
                expected,
                found: msg.price,
            })
        }
    }
}

/// A consensus message's values are numbers the protocol can produce: the price, power
/// and duals finite, the duals and slopes finite and non-negative, the gaps non-negative
/// (`+inf`: no change of slope that way).
pub fn check_message_values(msg: &ConsensusMessage) -> Result<(), Rejection> {
    for (field, v) in [("price", msg.price), ("power", msg.power)] {
        if !v.is_finite() {
            return Err(Rejection::NonFinite { field });
        }
    }
    for (field, v) in [
        ("dual_upper", msg.dual_upper),
        ("dual_lower", msg.dual_lower),
        ("slope_down", msg.slope_down),
        ("slope_up", msg.slope_up),
    ] {
        if !v.is_finite() {
            return Err(Rejection::NonFinite { field });
        }
        if v < 0.0 {
            return Err(Rejection::Negative { field });
        }
    }
    for (field, v) in [("gap_down", msg.gap_down), ("gap_up", msg.gap_up)] {
        // `!(v >= 0.0)` also refuses NaN.
        if !(v >= 0.0) {
            return Err(Rejection::Negative { field });
        }
    }
    Ok(())
}

/// Key of a committed consensus message: (run, hour, iteration, agent).
type MessageKey = (u32, u32, u32, u32);

/// What the committed chain establishes: the genesis parameters and keys, the tip, and the
/// committed consensus messages and settlements.
#[derive(Debug, Clone)]
pub struct LedgerState {
    /// Protocol parameters committed by the genesis.
    pub params: ProtocolParameters,
    /// Agents' public keys, by index.
    pub agent_keys: Vec<PublicKey>,
    /// Agents' private-data commitments, by index.
    pub commitments: Vec<Hash>,
    /// Validators' public keys, by index.
    pub validator_keys: Vec<PublicKey>,
    /// Hash of the genesis block.
    pub genesis_hash: Hash,
    /// Height of the tip.
    pub height: u64,
    /// Hash of the tip.
    pub tip: Hash,
    /// Timestamp of the tip, ms.
    pub timestamp_ms: u64,
    /// Committed transactions, genesis records included.
    pub transactions: u64,
    messages: BTreeMap<MessageKey, ConsensusMessage>,
    settlements: BTreeSet<(u32, u32, u32)>,
}

fn valid_point(key: &PublicKey) -> bool {
    VerifyingKey::from_bytes(key).is_ok()
}

/// Checks that `votes` are sorted, from known validators, verify on `hash`, and reach
/// `quorum`; returns the number of votes.
pub fn check_votes(
    validator_keys: &[PublicKey],
    quorum: usize,
    hash: &Hash,
    votes: &[Vote],
) -> Result<usize, Rejection> {
    let message = vote_message(hash);
    let mut last = None;
    for v in votes {
        if last.is_some_and(|l| v.validator <= l) {
            return Err(Rejection::VoteOrder);
        }
        last = Some(v.validator);
        let key = validator_keys
            .get(v.validator as usize)
            .ok_or(Rejection::UnknownValidator {
                validator: v.validator,
            })?;
        verify_signature(key, &message, &v.signature).map_err(|fault| {
            Rejection::VoteSignature {
                validator: v.validator,
                fault,
            }
        })?;
    }
    if votes.len() < quorum {
        return Err(Rejection::NoQuorum {
            votes: votes.len(),
            quorum,
        });
    }
    Ok(votes.len())
}

fn merkle_of(txs: &[Transaction]) -> Hash {
    let bytes: Vec<Vec<u8>> = txs.iter().map(Transaction::encode).collect();
    merkle_root(&bytes)
}

impl LedgerState {
    /// The state a genesis block establishes, after checking it: height 0, zero previous
    /// hash, the records in order (parameters, agents 0..m, validators 0..n), n = 3f + 1,
    /// valid settings and keys, the Merkle root and a quorum of the registered validators.
    pub fn from_genesis(block: &Block, txs: &[Transaction]) -> Result<Self, BlockFault> {
        let h = &block.header;
        if h.height != 0 {
            return Err(Rejection::Height {
                expected: 0,
                found: h.height,
            }
            .into());
        }
        if h.prev_hash != [0; 32] {
            return Err(Rejection::PrevHash.into());
        }
        if h.tx_count as usize != txs.len() {
            return Err(Rejection::TxCount {
                header: h.tx_count,
                found: txs.len(),
            }
            .into());
        }
        if h.merkle_root != merkle_of(txs) {
            return Err(Rejection::MerkleRoot.into());
        }
        let at = |i: usize, r: Rejection| BlockFault {
            index: Some(i as u32),
            rejection: r,
        };
        let params = match txs.first().map(|t| &t.body) {
            Some(TxBody::Parameters(p)) => p.clone(),
            _ => {
                return Err(at(
                    0,
                    Rejection::Genesis("first record is not the parameters"),
                ));
            }
        };
        if params.faults > MAX_FAULTS || params.validators != 3 * params.faults + 1 {
            return Err(at(0, Rejection::Genesis("validators is not 3 faults + 1")));
        }
        if params.agents == 0 || params.agents > MAX_AGENTS {
            return Err(at(0, Rejection::Genesis("agent count out of range")));
        }
        if params.rci.validate().is_err() {
            return Err(at(0, Rejection::Genesis("invalid RCI settings")));
        }
        let (m, n) = (params.agents as usize, params.validators as usize);
        if txs.len() != 1 + m + n {
            return Err(Rejection::Genesis("record count is not 1 + agents + validators").into());
        }
        let mut agent_keys = Vec::with_capacity(m);
        let mut commitments = Vec::with_capacity(m);
        for (i, tx) in txs[1..=m].iter().enumerate() {
            match &tx.body {
                TxBody::Agent(a) if a.agent as usize == i && valid_point(&a.public_key) => {
                    agent_keys.push(a.public_key);
                    commitments.push(a.commitment);
                }
                _ => return Err(at(1 + i, Rejection::Genesis("bad agent registration"))),
            }
        }
        let mut validator_keys = Vec::with_capacity(n);
        for (j, tx) in txs[1 + m..].iter().enumerate() {
            match &tx.body {
                TxBody::Validator(v) if v.validator as usize == j && valid_point(&v.public_key) => {
                    validator_keys.push(v.public_key);
                }
                _ => {
                    return Err(at(
                        1 + m + j,
                        Rejection::Genesis("bad validator registration"),
                    ));
                }
            }
        }
        if let Some(i) = txs.iter().position(|t| !t.signatures.is_empty()) {
            return Err(at(
                i,
                Rejection::SignatureCount {
                    expected: 0,
                    found: txs[i].signatures.len(),
                },
            ));
        }
        if h.proposer >= params.validators {
            return Err(Rejection::Proposer { found: h.proposer }.into());
        }
        let hash = h.hash();
        check_votes(&validator_keys, params.quorum(), &hash, &block.votes)?;
        Ok(LedgerState {
            params,
            agent_keys,
            commitments,
            validator_keys,
            genesis_hash: hash,
            height: 0,
            tip: hash,
            timestamp_ms: h.timestamp_ms,
            transactions: txs.len() as u64,
            messages: BTreeMap::new(),
            settlements: BTreeSet::new(),
        })
    }

    /// The committed message of `agent` at (`run`, `hour`, `iteration`).
    pub fn message(
        &self,
        run: u32,
        hour: u32,
        iteration: u32,
        agent: u32,
    ) -> Option<&ConsensusMessage> {
        self.messages.get(&(run, hour, iteration, agent))
    }

    /// The highest iteration with a committed message at (`run`, `hour`).
    pub fn last_iteration(&self, run: u32, hour: u32) -> Option<u32> {
        self.messages
            .range((run, hour, 0, 0)..=(run, hour, u32::MAX, u32::MAX))
            .next_back()
            .map(|(k, _)| k.2)
    }

    /// The (run, hour) of the first and the last committed consensus message, in key
    /// order (run, then hour).
    pub fn message_hours(&self) -> Option<((u32, u32), (u32, u32))> {
        let first = self.messages.keys().next()?;
        let last = self.messages.keys().next_back()?;
        Some(((first.0, first.1), (last.0, last.1)))
    }

    /// Whether a settlement of `hour` is committed.
    pub fn has_settlement(&self, hour: u32) -> bool {
        self.settlements
            .range((hour, 0, 0)..=(hour, u32::MAX, u32::MAX))
            .next()
            .is_some()
    }

    /// Committed consensus messages.
    pub fn consensus_messages(&self) -> usize {
        self.messages.len()
    }

    /// Committed settlements.
    pub fn settlements(&self) -> usize {
        self.settlements.len()
    }

    /// The header of the next block over `txs` (height, previous hash, root, count).
    pub fn next_header(
        &self,
        txs: &[Transaction],
        timestamp_ms: u64,
        proposer: u32,
    ) -> BlockHeader {
        BlockHeader {
            height: self.height + 1,
            prev_hash: self.tip,
            merkle_root: merkle_of(txs),
            tx_count: txs.len() as u32,
            timestamp_ms,
            proposer,
        }
    }

    /// Checks a non-genesis block's header and transactions (not its votes): the next
    /// height, the link to the tip, an increasing timestamp, a registered proposer and the
    /// count, then every transaction's signatures and content (`rule` checks consensus
    /// messages when given; duplicates and settlements always), then the Merkle root.
    pub fn check_block(
        &self,
        header: &BlockHeader,
        txs: &[Transaction],
        rule: Option<&dyn ContentRule>,
    ) -> Result<(), BlockFault> {
        if header.height != self.height + 1 {
            return Err(Rejection::Height {
                expected: self.height + 1,
                found: header.height,
            }
            .into());
        }
        if header.prev_hash != self.tip {
            return Err(Rejection::PrevHash.into());
        }
        if header.timestamp_ms <= self.timestamp_ms {
            return Err(Rejection::Timestamp {
                previous: self.timestamp_ms,
                found: header.timestamp_ms,
            }
            .into());
        }
        if header.proposer >= self.params.validators {
            return Err(Rejection::Proposer {
                found: header.proposer,
            }
            .into());
        }
        if header.tx_count as usize != txs.len() {
            return Err(Rejection::TxCount {
                header: header.tx_count,
                found: txs.len(),
            }
            .into());
        }
        // Transactions before the root, so that a tampered transaction is named by its
        // failing signature rather than only by the block's root.
        let mut messages = BTreeSet::new();
        let mut settlements = BTreeSet::new();
        for (i, tx) in txs.iter().enumerate() {
            self.check_transaction(tx, rule, &mut messages, &mut settlements)
                .map_err(|rejection| BlockFault {
                    index: Some(i as u32),
                    rejection,
                })?;
        }
        if header.merkle_root != merkle_of(txs) {
            return Err(Rejection::MerkleRoot.into());
        }
        Ok(())
    }

    fn check_transaction(
        &self,
        tx: &Transaction,
        rule: Option<&dyn ContentRule>,
        messages: &mut BTreeSet<MessageKey>,
        settlements: &mut BTreeSet<(u32, u32, u32)>,
    ) -> Result<(), Rejection> {
        if tx.body.is_genesis_record() {
            return Err(Rejection::GenesisRecord);
        }
        let signers = tx.body.signers();
        if signers.len() != tx.signatures.len() {
            return Err(Rejection::SignatureCount {
                expected: signers.len(),
                found: tx.signatures.len(),
            });
        }
        let body = tx.body.encode();
        for (&agent, sig) in signers.iter().zip(&tx.signatures) {
            let key = self
                .agent_keys
                .get(agent as usize)
                .ok_or(Rejection::UnknownSigner { agent })?;
            verify_signature(key, &body, sig)
                .map_err(|fault| Rejection::Signature { agent, fault })?;
        }
        match &tx.body {
            TxBody::Consensus(m) => {
                let key = (m.run, m.hour, m.iteration, m.agent);
                if self.messages.contains_key(&key) || !messages.insert(key) {
                    return Err(Rejection::Duplicate);
                }
                if let Some(rule) = rule {
                    rule.check(self, m)?;
                }
            }
            TxBody::Settlement(s) => {
                check_settlement(s)?;
                let key = (s.hour, s.seller, s.buyer);
                if self.settlements.contains(&key) || !settlements.insert(key) {
                    return Err(Rejection::Duplicate);
                }
                if let Some(rule) = rule {
                    rule.check_settlement(self, s)?;
                }
            }
            _ => return Err(Rejection::GenesisRecord),
        }
        Ok(())
    }

    /// Adds a checked block to the state (the caller has run [`Self::check_block`] and
    /// [`check_votes`]).
    pub fn apply(&mut self, header: &BlockHeader, txs: &[Transaction]) {
        for tx in txs {
            match &tx.body {
                TxBody::Consensus(m) => {
                    self.messages
                        .insert((m.run, m.hour, m.iteration, m.agent), *m);
                }
                TxBody::Settlement(s) => {
                    self.settlements.insert((s.hour, s.seller, s.buyer));
                }
                _ => {}
            }
        }
        self.height = header.height;
        self.tip = header.hash();
        self.timestamp_ms = header.timestamp_ms;
        self.transactions += txs.len() as u64;
    }
}

/// A settlement's own consistency: finite, non-negative power, two parties, and
/// `cost = mw x price` to a relative 1e-9.
fn check_settlement(s: &Settlement) -> Result<(), Rejection> {
    for (field, v) in [("mw", s.mw), ("price", s.price), ("cost", s.cost)] {
        if !v.is_finite() {
            return Err(Rejection::NonFinite { field });
        }
    }
    if s.seller == s.buyer {
        return Err(Rejection::Settlement("seller and buyer are the same agent"));
    }
    if s.mw < 0.0 {
        return Err(Rejection::Settlement("negative power"));
    }
    let expected = s.mw * s.price;
    if (s.cost - expected).abs() > 1e-9 * expected.abs().max(1.0) {
        return Err(Rejection::Settlement("cost is not mw x price"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::consensus::{LinearAgent, Network};
    use super::super::tx::ValidatorRegistration;
    use super::*;
    use crate::rci::RciSettings;

    const RULE: SimplePriceRule = SimplePriceRule { tolerance: 1e-12 };
    const CURVES: [LinearAgent; 2] = [
        LinearAgent {
            slope: 1.0,
            offset: 10.0,
        },
        LinearAgent {
            slope: 0.5,
            offset: 30.0,
        },
    ];

    fn net() -> Network {
        let rci = RciSettings {
            step_rule: StepRule::Constant,
            kappa: 0.1,
            ..RciSettings::default()
        };
        Network::genesis(11, 1, 0, &rci, &[b"a", b"b"], 0).unwrap()
    }

    /// The rejection of a block of `txs` built on the tip, or `None` when it passes.
    fn refusal(net: &Network, txs: &[Transaction]) -> Option<BlockFault> {
        let header = net.state.next_header(txs, net.state.timestamp_ms + 1000, 0);
        net.state.check_block(&header, txs, Some(&RULE)).err()
    }

    fn settlement(net: &Network, s: Settlement) -> Transaction {
        net.sign(TxBody::Settlement(s)).unwrap()
    }

    #[test]
    fn header_links_are_checked() {
        let n = net();
        let txs = n.signed_next_messages(&CURVES, 0, 0).unwrap();
        let good = n.state.next_header(&txs, 1000, 0);
        assert_eq!(n.state.check_block(&good, &txs, Some(&RULE)), Ok(()));
        let cases = [
            (
                BlockHeader { height: 2, ..good },
                Rejection::Height {
                    expected: 1,
                    found: 2,
                },
            ),
            (
                BlockHeader {
                    prev_hash: [1; 32],
                    ..good
                },
                Rejection::PrevHash,
            ),
            (
                BlockHeader {
                    timestamp_ms: 0,
                    ..good
                },
                Rejection::Timestamp {
                    previous: 0,
                    found: 0,
                },
            ),
            (
                BlockHeader {
                    proposer: 4,
                    ..good
                },
                Rejection::Proposer { found: 4 },
            ),
            (
                BlockHeader {
                    tx_count: 1,
                    ..good
                },
                Rejection::TxCount {
                    header: 1,
                    found: 2,
                },
            ),
            (
                BlockHeader {
                    merkle_root: [0; 32],
                    ..good
                },
                Rejection::MerkleRoot,
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(
                n.state.check_block(&header, &txs, Some(&RULE)),
                Err(expected.into())
            );
        }
    }

    #[test]
    fn transactions_are_checked_one_by_one() {
        let mut n = net();
        let msgs = n.signed_next_messages(&CURVES, 0, 0).unwrap();
        // A repeat inside the block, then across blocks.
        let twice = vec![msgs[0].clone(), msgs[1].clone(), msgs[0].clone()];
        let fault = refusal(&n, &twice).unwrap();
        assert_eq!(
            (fault.index, fault.rejection),
            (Some(2), Rejection::Duplicate)
        );
        n.propose(0, msgs.clone(), 1000, &RULE).unwrap();
        assert_eq!(
            refusal(&n, &msgs[..1]).map(|f| f.rejection),
            Some(Rejection::Duplicate)
        );
        // A genesis record after the genesis.
        let record = Transaction::record(TxBody::Validator(ValidatorRegistration {
            validator: 4,
            public_key: [0; 32],
        }));
        assert_eq!(
            refusal(&n, &[record]).map(|f| f.rejection),
            Some(Rejection::GenesisRecord)
        );
        // A missing or unknown signature.
        let mut unsigned = n.signed_next_messages(&CURVES, 0, 0).unwrap()[0].clone();
        unsigned.signatures.clear();
        assert_eq!(
            refusal(&n, &[unsigned]).map(|f| f.rejection),
            Some(Rejection::SignatureCount {
                expected: 1,
                found: 0
            })
        );
        let mut stranger = n.next_messages(&CURVES, 0, 0).unwrap()[0];
        stranger.agent = 7;
        let tx = Transaction {
            body: TxBody::Consensus(stranger),
            signatures: vec![[0; 64]],
        };
        assert_eq!(
            refusal(&n, &[tx]).map(|f| f.rejection),
            Some(Rejection::UnknownSigner { agent: 7 })
        );
        // The rule: a non-finite power, a skipped iteration.
        let mut m = n.next_messages(&CURVES, 0, 0).unwrap()[1];
        m.power = f64::NAN;
        let tx = n.sign(TxBody::Consensus(m)).unwrap();
        assert_eq!(
            refusal(&n, &[tx]).map(|f| f.rejection),
            Some(Rejection::NonFinite { field: "power" })
        );
        let mut m = n.next_messages(&CURVES, 0, 0).unwrap()[1];
        m.iteration = 5;
        let tx = n.sign(TxBody::Consensus(m)).unwrap();
        assert_eq!(
            refusal(&n, &[tx]).map(|f| f.rejection),
            Some(Rejection::MissingPrevious {
                iteration: 4,
                agent: 0
            })
        );
    }

    #[test]
    fn settlements_must_be_consistent_and_unique() {
        let mut n = net();
        let good = Settlement {
            hour: 3,
            seller: 0,
            buyer: 1,
            mw: 12.0,
            price: 17.5,
            cost: 210.0,
        };
        assert_eq!(refusal(&n, &[settlement(&n, good)]), None);
        for (bad, why) in [
            (
                Settlement {
                    cost: 210.1,
                    ..good
                },
                Rejection::Settlement("cost is not mw x price"),
            ),
            (
                Settlement { buyer: 0, ..good },
                Rejection::Settlement("seller and buyer are the same agent"),
            ),
            (
                Settlement {
                    mw: -12.0,
                    cost: -210.0,
                    ..good
                },
                Rejection::Settlement("negative power"),
            ),
            (
                Settlement {
                    price: f64::INFINITY,
                    ..good
                },
                Rejection::NonFinite { field: "price" },
            ),
        ] {
            assert_eq!(
                refusal(&n, &[settlement(&n, bad)]).map(|f| f.rejection),
                Some(why)
            );
        }
        // The buyer's signature is checked too.
        let mut tx = settlement(&n, good);
        tx.signatures[1][0] ^= 1;
        assert!(matches!(
            refusal(&n, &[tx]).map(|f| f.rejection),
            Some(Rejection::Signature { agent: 1, .. })
        ));
        n.propose(0, vec![settlement(&n, good)], 1000, &RULE)
            .unwrap();
        assert_eq!(
            refusal(&n, &[settlement(&n, good)]).map(|f| f.rejection),
            Some(Rejection::Duplicate)
        );
        assert_eq!(n.state.settlements(), 1);
    }

    #[test]
    fn the_simple_rule_needs_the_constant_step() {
        let rci = RciSettings::default();
        assert_eq!(rci.step_rule, StepRule::Newton);
        let n = Network::genesis(11, 1, 0, &rci, &[b"a", b"b"], 0).unwrap();
        let m = n.next_messages(&CURVES, 0, 0).unwrap()[0];
        assert_eq!(
            RULE.check(&n.state, &m),
            Err(Rejection::StepRule(StepRule::Newton))
        );
    }

    #[test]
    fn votes_must_be_sorted_known_and_valid() {
        let n = net();
        let hash = [5u8; 32];
        let keys = &n.state.validator_keys;
        let votes: Vec<Vote> = n.validators.iter().map(|v| v.vote(&hash)).collect();
        assert_eq!(check_votes(keys, 3, &hash, &votes), Ok(4));
        assert_eq!(check_votes(keys, 3, &hash, &votes[..3]), Ok(3));
        assert_eq!(
            check_votes(keys, 3, &hash, &votes[..2]),
            Err(Rejection::NoQuorum {
                votes: 2,
                quorum: 3
            })
        );
        let swapped = [votes[1], votes[0], votes[2]];
        assert_eq!(
            check_votes(keys, 3, &hash, &swapped),
            Err(Rejection::VoteOrder)
        );
        let repeated = [votes[0], votes[0], votes[1]];
        assert_eq!(
            check_votes(keys, 3, &hash, &repeated),
            Err(Rejection::VoteOrder)
        );
        let stranger = Vote {
            validator: 9,
            ..votes[3]
        };
        assert_eq!(
            check_votes(keys, 3, &hash, &[votes[0], votes[1], stranger]),
            Err(Rejection::UnknownValidator { validator: 9 })
        );
        // A vote for another block does not count for this one.
        assert!(matches!(
            check_votes(keys, 3, &[6; 32], &votes),
            Err(Rejection::VoteSignature { validator: 0, .. })
        ));
    }
}
