//! Blocks: a header (height, previous hash, Merkle root, leaf count, simulated timestamp,
//! proposer) and the validators' votes on the header's hash.

use sha2::{Digest, Sha256};

use super::encoding::{DecodeError, Reader, TAG_HEADER, TAG_VOTE, VERSION, Writer};
use super::{Hash, SignatureBytes};

/// A block header; its hash is `SHA256` of its canonical bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// Height, 0 = genesis.
    pub height: u64,
    /// Hash of the previous block's header (zeros for genesis).
    pub prev_hash: Hash,
    /// Merkle root of the block's transactions ([`merkle_root`](super::merkle_root)).
    pub merkle_root: Hash,
    /// Number of transactions in the block.
    pub tx_count: u32,
    /// Simulated time, milliseconds since the start of the simulation.
    pub timestamp_ms: u64,
    /// Index of the validator that proposed the block.
    pub proposer: u32,
}

/// Length of an encoded header, bytes.
pub const HEADER_LEN: usize = 2 + 8 + 32 + 32 + 4 + 8 + 4;

impl BlockHeader {
    /// The canonical bytes (layout in the module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::record(TAG_HEADER);
        w.u64(self.height)
            .raw(&self.prev_hash)
            .raw(&self.merkle_root)
            .u32(self.tx_count)
            .u64(self.timestamp_ms)
            .u32(self.proposer);
        w.bytes
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let tag = r.header()?;
        if tag != TAG_HEADER {
            return Err(DecodeError::Tag {
                found: tag,
                record: "block header",
            });
        }
        Ok(BlockHeader {
            height: r.u64("height")?,
            prev_hash: r.array("prev_hash")?,
            merkle_root: r.array("merkle_root")?,
            tx_count: r.u32("tx_count")?,
            timestamp_ms: r.u64("timestamp_ms")?,
            proposer: r.u32("proposer")?,
        })
    }

    /// The block hash, `SHA256(encode())`.
    pub fn hash(&self) -> Hash {
        Sha256::digest(self.encode()).into()
    }
}

/// The message a validator signs to vote for a block: version, [`TAG_VOTE`], block hash.
pub fn vote_message(block_hash: &Hash) -> Vec<u8> {
    let mut bytes = vec![VERSION, TAG_VOTE];
    bytes.extend_from_slice(block_hash);
    bytes
}

/// One validator's signature on a block hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    /// Validator index.
    pub validator: u32,
    /// Signature over [`vote_message`] of the block's hash.
    pub signature: SignatureBytes,
}

/// A block: its header and the votes that commit it (sorted by validator, no repeats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// Votes, strictly increasing in validator index.
    pub votes: Vec<Vote>,
}

impl Block {
    /// The block hash (the header's; votes are not part of it).
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// The canonical bytes: header, vote count (u32), then each vote's validator (u32)
    /// and signature (64 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer {
            bytes: self.header.encode(),
        };
        w.u32(self.votes.len() as u32);
        for v in &self.votes {
            w.u32(v.validator).raw(&v.signature);
        }
        w.bytes
    }

    /// Decodes [`Block::encode`]'s bytes; every byte must be used.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let header = BlockHeader::read(&mut r)?;
        let count = r.length("vote count", false, 68)?;
        let votes = (0..count)
            .map(|_| {
                Ok(Vote {
                    validator: r.u32("validator")?,
                    signature: r.array("vote signature")?,
                })
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        r.finish("block")?;
        Ok(Block { header, votes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_round_trips_and_its_hash_ignores_votes() {
        let header = BlockHeader {
            height: 3,
            prev_hash: [1; 32],
            merkle_root: [2; 32],
            tx_count: 4,
            timestamp_ms: 5000,
            proposer: 2,
        };
        assert_eq!(header.encode().len(), HEADER_LEN);
        let block = Block {
            header,
            votes: vec![
                Vote {
                    validator: 0,
                    signature: [4; 64],
                },
                Vote {
                    validator: 3,
                    signature: [5; 64],
                },
            ],
        };
        let bytes = block.encode();
        assert_eq!(bytes.len(), HEADER_LEN + 4 + 2 * 68);
        assert_eq!(Block::decode(&bytes), Ok(block.clone()));
        assert_eq!(
            block.hash(),
            Block {
                header,
                votes: vec![]
            }
            .hash()
        );
        assert!(Block::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut other = header;
        other.timestamp_ms += 1;
        assert_ne!(other.hash(), header.hash());
    }
}
