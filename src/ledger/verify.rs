//! A stored ledger (two flat tables: blocks and transactions), its framed byte encoding,
//! and [`verify`], which replays it from the genesis and names the first bad block or
//! transaction.

use super::Hash;
use super::block::Block;
use super::encoding::{DecodeError, LEDGER_MAGIC, Reader, VERSION, Writer};
use super::state::{ContentRule, LedgerState, Rejection, check_votes};
use super::tx::Transaction;

/// One row of the transactions table: the block height, the position in the block, and
/// the transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct TxRecord {
    /// Height of the block that holds it.
    pub height: u64,
    /// Position in the block, 0-based (the Merkle leaf order).
    pub index: u32,
    /// The transaction.
    pub tx: Transaction,
}

/// One row of the blocks table in canonical bytes (e.g. a Parquet row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRow {
    /// Height.
    pub height: u64,
    /// Block hash (of the header).
    pub hash: Hash,
    /// [`Block::encode`].
    pub bytes: Vec<u8>,
}

/// One row of the transactions table in canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRow {
    /// Height of the block that holds it.
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// [`Transaction::encode`].
    pub bytes: Vec<u8>,
}

/// A ledger as two flat tables, blocks in height order and transactions in (height,
/// index) order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ledger {
    /// Blocks, genesis first.
    pub blocks: Vec<Block>,
    /// Transactions of every block, in order.
    pub transactions: Vec<TxRecord>,
}

impl Ledger {
    /// The blocks table in canonical bytes.
    pub fn block_rows(&self) -> Vec<BlockRow> {
        self.blocks
            .iter()
            .map(|b| BlockRow {
                height: b.header.height,
                hash: b.hash(),
                bytes: b.encode(),
            })
            .collect()
    }

    /// The transactions table in canonical bytes.
    pub fn tx_rows(&self) -> Vec<TxRow> {
        self.transactions
            .iter()
            .map(|t| TxRow {
                height: t.height,
                index: t.index,
                bytes: t.tx.encode(),
            })
            .collect()
    }

    /// A ledger from its two tables (the bytes are decoded; the hashes and positions are
    /// left to [`verify`]).
    pub fn from_rows(blocks: &[BlockRow], txs: &[TxRow]) -> Result<Self, DecodeError> {
        Ok(Ledger {
            blocks: blocks
                .iter()
                .map(|r| Block::decode(&r.bytes))
                .collect::<Result<_, _>>()?,
            transactions: txs
                .iter()
                .map(|r| {
                    Ok(TxRecord {
                        height: r.height,
                        index: r.index,
                        tx: Transaction::decode(&r.bytes)?,
                    })
                })
                .collect::<Result<_, DecodeError>>()?,
        })
    }

    /// The framed encoding: magic `P2PMLDGR`, version byte, block count (u64), each block
    /// as length (u32) + bytes, transaction count (u64), each transaction as height (u64),
    /// index (u32), length (u32) + bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(&LEDGER_MAGIC)
            .u8(VERSION)
            .u64(self.blocks.len() as u64);
        for b in &self.blocks {
            let bytes = b.encode();
            w.u32(bytes.len() as u32).raw(&bytes);
        }
        w.u64(self.transactions.len() as u64);
        for t in &self.transactions {
            let bytes = t.tx.encode();
            w.u64(t.height)
                .u32(t.index)
                .u32(bytes.len() as u32)
                .raw(&bytes);
        }
        w.bytes
    }

    /// Decodes [`Ledger::to_bytes`]; every byte must be used.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.array::<8>("magic")? != LEDGER_MAGIC {
            return Err(DecodeError::Magic);
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::Version { found: version });
        }
        let count = r.length("block count", true, 4)?;
        let mut blocks = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.length("block length", false, 1)?;
            blocks.push(Block::decode(r.take(len, "block")?)?);
        }
        let count = r.length("transaction count", true, 16)?;
        let mut transactions = Vec::with_capacity(count);
        for _ in 0..count {
            let height = r.u64("transaction height")?;
            let index = r.u32("transaction index")?;
            let len = r.length("transaction length", false, 1)?;
            let tx = Transaction::decode(r.take(len, "transaction")?)?;
            transactions.push(TxRecord { height, index, tx });
        }
        r.finish("ledger")?;
        Ok(Ledger {
            blocks,
            transactions,
        })
    }
}

/// What is wrong with a stored ledger.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyErrorKind {
    /// The bytes are not a canonical encoding.
    #[error("cannot decode: {0}")]
    Decode(DecodeError),
    /// There is no block.
    #[error("the ledger has no block")]
    Empty,
    /// The genesis hash differs from the trusted anchor.
    #[error("genesis hash differs from the trusted anchor")]
    Anchor,
    /// A transaction row is missing, repeated or out of (height, index) order.
    #[error("transaction row out of place (found height {found_height}, index {found_index})")]
    Placement {
        /// The row's height.
        found_height: u64,
        /// The row's index.
        found_index: u32,
    },
    /// A block's transaction rows run out before its count.
    #[error("missing transaction rows")]
    Missing,
    /// Transaction rows follow the last block's.
    #[error("transaction rows after the last block")]
    Orphan,
    /// A block, transaction or vote is refused.
    #[error("{0}")]
    Rejected(Rejection),
}

impl VerifyErrorKind {
    /// A stable small number per kind (for exit codes): 1 decode, 2 empty, 3 anchor,
    /// 4 placement, 5 missing, 6 orphan, 7 rejected.
    pub fn code(&self) -> u8 {
        match self {
            VerifyErrorKind::Decode(_) => 1,
            VerifyErrorKind::Empty => 2,
            VerifyErrorKind::Anchor => 3,
            VerifyErrorKind::Placement { .. } => 4,
            VerifyErrorKind::Missing => 5,
            VerifyErrorKind::Orphan => 6,
            VerifyErrorKind::Rejected(_) => 7,
        }
    }
}

/// The first problem found in a stored ledger: what, at which block height and which
/// transaction index (when they apply).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}{kind}", height.map_or(String::new(), |h| format!("block {h}: ")), index.map_or(String::new(), |i| format!("transaction {i}: ")))]
pub struct VerifyError {
    /// What is wrong.
    pub kind: VerifyErrorKind,
    /// Height of the bad block (position in the table when the height itself is wrong).
    pub height: Option<u64>,
    /// Index of the bad transaction in its block.
    pub index: Option<u32>,
}

/// What a successful [`verify`] established.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedSummary {
    /// Hash of the genesis block.
    pub genesis_hash: Hash,
    /// Hash of the last block.
    pub tip_hash: Hash,
    /// Height of the last block.
    pub height: u64,
    /// Transactions, genesis records included.
    pub transactions: u64,
    /// Consensus messages.
    pub consensus_messages: usize,
    /// Settlements.
    pub settlements: usize,
    /// Agents registered.
    pub agents: u32,
    /// Validators registered.
    pub validators: u32,
}

/// How to verify.
#[derive(Default, Clone, Copy)]
pub struct VerifyOptions<'a> {
    /// The trusted genesis hash; without it, a self-consistent ledger signed by keys of
    /// its own genesis passes.
    pub anchor: Option<Hash>,
    /// Replays every consensus message through this rule when given.
    pub rule: Option<&'a dyn ContentRule>,
}

/// Replays a stored ledger from its genesis: every row's place, the genesis records, every
/// hash link, height, timestamp, Merkle root and count, every transaction signature
/// (`verify_strict`), duplicates, settlements, the content rule when given, and every
/// block's votes (each must verify; 2f + 1 needed). Pure.
///
/// A prefix of a valid ledger is valid: a record known to be finished (a stored day) is
/// also checked for its end, with [`verify_to_state`] and the rule's check of the final
/// state ([`crate::ledger::MarketRule::check_day`]).
pub fn verify(
    blocks: &[Block],
    transactions: &[TxRecord],
    options: &VerifyOptions<'_>,
) -> Result<VerifiedSummary, VerifyError> {
    verify_to_state(blocks, transactions, options).map(|(summary, _)| summary)
}

/// [`verify`], also returning the state the ledger's blocks establish.
pub fn verify_to_state(
    blocks: &[Block],
    transactions: &[TxRecord],
    options: &VerifyOptions<'_>,
) -> Result<(VerifiedSummary, LedgerState), VerifyError> {
    let fail = |kind, height: Option<u64>, index: Option<u32>| VerifyError {
        kind,
        height,
        index,
    };
    if blocks.is_empty() {
        return Err(fail(VerifyErrorKind::Empty, None, None));
    }
    let mut rows = transactions.iter().peekable();
    let mut state: Option<LedgerState> = None;
    for (pos, block) in blocks.iter().enumerate() {
        let height = pos as u64;
        let h = &block.header;
        if h.height != height {
            let expected = height;
            return Err(fail(
                VerifyErrorKind::Rejected(Rejection::Height {
                    expected,
                    found: h.height,
                }),
                Some(height),
                None,
            ));
        }
        let mut txs = Vec::with_capacity(h.tx_count.min(1 << 20) as usize);
        for index in 0..h.tx_count {
            let Some(row) = rows.next() else {
                return Err(fail(VerifyErrorKind::Missing, Some(height), Some(index)));
            };
            if row.height != height || row.index != index {
                return Err(fail(
                    VerifyErrorKind::Placement {
                        found_height: row.height,
                        found_index: row.index,
                    },
                    Some(height),
                    Some(index),
                ));
            }
            txs.push(row.tx.clone());
        }
        let rejected = |fault: super::state::BlockFault| {
            fail(
                VerifyErrorKind::Rejected(fault.rejection),
                Some(height),
                fault.index,
            )
        };
        match &mut state {
            None => {
                let s = LedgerState::from_genesis(block, &txs).map_err(rejected)?;
                if options.anchor.is_some_and(|a| a != s.genesis_hash) {
                    return Err(fail(VerifyErrorKind::Anchor, Some(0), None));
                }
                state = Some(s);
            }
            Some(s) => {
                s.check_block(h, &txs, options.rule).map_err(rejected)?;
                check_votes(
                    &s.validator_keys,
                    s.params.quorum(),
                    &h.hash(),
                    &block.votes,
                )
                .map_err(|r| fail(VerifyErrorKind::Rejected(r), Some(height), None))?;
                s.apply(h, &txs);
            }
        }
    }
    if let Some(row) = rows.next() {
        return Err(fail(
            VerifyErrorKind::Orphan,
            Some(row.height),
            Some(row.index),
        ));
    }
    let Some(s) = state else {
        return Err(fail(VerifyErrorKind::Empty, None, None));
    };
    let summary = VerifiedSummary {
        genesis_hash: s.genesis_hash,
        tip_hash: s.tip,
        height: s.height,
        transactions: s.transactions,
        consensus_messages: s.consensus_messages(),
        settlements: s.settlements(),
        agents: s.params.agents,
        validators: s.params.validators,
    };
    Ok((summary, s))
}

/// [`Ledger::from_bytes`] then [`verify`]; a decoding failure is a
/// [`VerifyErrorKind::Decode`].
pub fn verify_bytes(
    bytes: &[u8],
    options: &VerifyOptions<'_>,
) -> Result<VerifiedSummary, VerifyError> {
    let ledger = Ledger::from_bytes(bytes).map_err(|e| VerifyError {
        kind: VerifyErrorKind::Decode(e),
        height: None,
        index: None,
    })?;
    verify(&ledger.blocks, &ledger.transactions, options)
}
