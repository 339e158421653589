//! The market's ledger: signed RCI messages and settlements in blocks that a quorum of
//! validators signs, and the pure verification of a stored ledger.
//!
//! The paper (Kavousi-Fard 2021, section II) describes blocks with a timestamp, the
//! previous block's hash and a Merkle root, SHA-family hashes, and signatures checked by
//! several nodes under a fault-tolerant consensus. This module makes those precise:
//! n = 3f + 1 validators, a block commits with 2f + 1 Ed25519 votes, and every validator
//! recomputes each agent's price update from the committed messages before voting
//! ([`ContentRule`]), so a tampered message (FDIA, eq. 2-6) is refused.
//!
//! Everything here is pure (data in, data out) except [`measure_op_costs`], which reads the
//! clock.
//!
//! # Canonical encoding, version 2
//!
//! Every record starts with the version byte `0x02` and a type tag. (Version 1 carried
//! one slope per consensus message, too little to recompute the Newton step; it is not
//! read.) Integers are unsigned
//! little-endian of the stated width; `f64` is its IEEE-754 bit pattern as a little-endian
//! `u64` (so `-0.0` and `0.0` differ, and NaN payloads are kept); hashes and keys are raw
//! bytes. There are no padding, optional fields or variable-length fields inside a record.
//!
//! | record | tag | fields after version and tag | bytes |
//! |---|---|---|---|
//! | consensus message | `0x01` | run u32, hour u32, iteration u32, agent u32, price f64, power f64, dual_upper f64, dual_lower f64, slope_down f64, slope_up f64, gap_down f64, gap_up f64 | 82 |
//! | settlement | `0x02` | hour u32, seller u32, buyer u32, mw f64, price f64, cost f64 | 38 |
//! | protocol parameters | `0x03` | agents u32, validators u32, faults u32, then the RCI settings: chi f64, step_rule u8 (0 constant, 1 diminishing, 2 newton), kappa f64, kappa_decay f64, newton_damping f64, slope_floor f64, dual_update u8 (0 exact, 1 gradient), xi f64, power_update u8 (0 plain, 1 relaxed), relax_gamma f64, price_tol f64, power_tol f64, dual_tol f64, balance_tol f64, max_iterations u32, initial_price f64, start_price u8 (0 common, 1 own_marginal) | 118 |
//! | agent registration | `0x04` | agent u32, public key (32 bytes), commitment (32 bytes) | 70 |
//! | validator registration | `0x05` | validator u32, public key (32 bytes) | 38 |
//! | block header | `0x10` | height u64, prev_hash (32 bytes), merkle_root (32 bytes), tx_count u32, timestamp_ms u64, proposer u32 | 90 |
//! | vote message | `0x11` | block hash (32 bytes) | 34 |
//!
//! - A **transaction** is its body (one of the first five records) followed by one 64-byte
//!   Ed25519 signature per signer, over the body's bytes: a consensus message is signed
//!   by its `agent`, a settlement by its `seller` then its `buyer`; genesis records carry no
//!   signature. The whole transaction (body and signatures) is the Merkle leaf's data.
//! - A **block** is its header, a vote count (u32), then per vote the validator index (u32)
//!   and its 64-byte signature over the vote message; votes are strictly increasing in
//!   validator index. The **block hash** is `SHA256(header bytes)`.
//! - The **Merkle root** is `SHA256(0x02 || count u64 || top)` over leaves
//!   `SHA256(0x00 || tx)`, inner nodes `SHA256(0x01 || left || right)`, an odd last node
//!   promoted unchanged (see [`merkle`]); the empty tree's top is 32 zero bytes.
//! - **Keys**: the secret of agent i is `SHA256(seed u64 || 0x01 || i u32)`, of validator j
//!   `SHA256(seed u64 || 0x02 || j u32)`; the salt of agent i's commitment is
//!   `SHA256(seed u64 || 0x03 || i u32)` and the commitment `SHA256(0x03 || salt || data)`.
//!   The key that signs a sweep's manifest is `SHA256(seed u64 || 0x04 || 0 u32)` with the
//!   sweep's seed. Signatures are RFC 8032 Ed25519, checked with `verify_strict`.
//! - A sweep run's **settlement chain** and a sweep part's **Merkle root** are defined in
//!   [`chain`].
//! - The **genesis** block (height 0, zero previous hash) holds the parameters record,
//!   then one agent registration per agent in index order, then one validator
//!   registration per validator in index order (validators = 3 faults + 1), and is voted by
//!   a quorum of those validators.
//! - A **stored ledger** ([`Ledger::to_bytes`]): magic `P2PMLDGR`, version byte, block count
//!   u64, each block as length u32 + bytes, transaction count u64, each transaction as
//!   height u64, index u32, length u32 + bytes. As tables: one row per block (height, hash,
//!   bytes) and one per transaction (height, index, bytes).
//!
//! # Validity of a later block
//!
//! Height = tip + 1, `prev_hash` = tip hash, timestamp later than the tip's, proposer a
//! registered validator, `tx_count` and Merkle root match; no genesis record; each
//! transaction's signatures verify under its signers' registered keys; no repeated
//! consensus message (run, hour, iteration, agent) or settlement (hour, seller, buyer);
//! settlements are finite, `mw >= 0`, two parties, `cost = mw x price` (relative 1e-9);
//! the content rule, when used, accepts each consensus message and settlement; and every
//! vote verifies, with at least 2f + 1 of them.
//!
//! The market's content rule is [`MarketRule`]: it recomputes every price update for every
//! step rule, the Newton step replayed from the committed messages and the agents' Newton
//! signals (their slopes and gaps both ways, which the consensus message carries), and
//! checks each settlement against the end of its hour's negotiation. [`record_day`]
//! records a market day's whole negotiation under it; [`record_day_attacked`] and
//! [`replay_hour`] also submit every copy an attack alters as a forged transaction, so
//! the validators themselves show that the defence of [`crate::attack`] holds.

#![warn(missing_docs)]

pub mod block;
pub mod chain;
pub mod consensus;
pub mod encoding;
pub mod keys;
pub mod market_rule;
pub mod merkle;
pub mod probability;
pub mod record;
pub mod replay;
pub mod state;
pub mod timing;
pub mod tx;
pub mod verify;

/// A SHA-256 hash.
pub type Hash = [u8; 32];
/// A compressed Ed25519 public key.
pub type PublicKey = [u8; 32];
/// An Ed25519 signature.
pub type SignatureBytes = [u8; 64];

pub use block::{Block, BlockHeader, Vote, vote_message};
pub use chain::{
    CHAIN_DOMAIN, SETTLEMENT_BYTES, chain_link, chain_start, hour_settlement, part_root, run_leaf,
    settlement_bytes, settlement_head,
};
pub use consensus::{
    Behaviour, ForkReport, ForkSimulation, LinearAgent, Network, ProposalFailure, Validator,
    double_signers, simulate_equivocation,
};
pub use encoding::DecodeError;
pub use keys::{KeyPair, Role, SignatureFault, commit_private_data, f64_bytes, verify_signature};
pub use market_rule::{MarketRule, committed_step};
pub use merkle::{leaf_hash, merkle_root, node_hash};
pub use probability::{AcceptanceModel, binomial_tail, paper_attack_probability};
pub use record::{
    RecordCounts, RecordOptions, RecordTiming, RecordedDay, record_day, record_day_attacked,
};
pub use replay::{
    CommittedOutcome, DayAttacks, Forgery, HourReplay, RefusedBy, ReplayCounts, ReplayEnd,
    ReplayOptions, TransitSignature, replay_hour, strict_rule,
};
pub use state::{
    BlockFault, ContentRule, LedgerState, Rejection, SimplePriceRule, check_votes,
    simple_price_update,
};
pub use timing::{OpCosts, ProcessingTime, measure_op_costs};
pub use tx::{
    AgentRegistration, ConsensusMessage, ProtocolParameters, Settlement, Transaction, TxBody,
    ValidatorRegistration,
};
pub use verify::{
    BlockRow, Ledger, TxRecord, TxRow, VerifiedSummary, VerifyError, VerifyErrorKind,
    VerifyOptions, verify, verify_bytes, verify_to_state,
};
