//! The hash chain of a sweep run's hourly settlements, and the Merkle commitment of a sweep
//! part's runs. SHA-256 only: no signature per run, so a sweep pays a few hashes per run.
//!
//! # Settlement of an hour
//!
//! Every hour of a run is one link, trade or not, so a chain always has one link per hour
//! and commits every hour's price. From the hour's market `price` ($/MWh) and `exchange_mw`
//! (smart grid -> microgrid, the `run_hours` columns):
//!
//! - `exchange_mw < 0`: the microgrid (agent 1) sells to the smart grid (agent 0):
//!   seller 1, buyer 0;
//! - otherwise (a positive exchange, no trade `0.0` or `-0.0`, a microgrid that is disabled
//!   and so exchanges 0, or NaN): seller 0, buyer 1;
//! - `mw = |exchange_mw|` (sign bit cleared), `price` as is, `cost = mw * price`
//!   (IEEE-754 double multiplication, round to nearest).
//!
//! The settlement's bytes are the ledger's canonical encoding, version 2 (see
//! [the module doc](super)): `0x02 0x02 || hour u32 || seller u32 || buyer u32 || mw f64 ||
//! price f64 || cost f64`, 38 bytes, integers little-endian, `f64` as the little-endian
//! bits of its IEEE-754 pattern.
//!
//! # Chain of a run
//!
//! ```text
//! h_0     = SHA256("p2pmarket/sweep-chain/v1" || run u64 LE)            (24 + 8 bytes in)
//! h_{k+1} = SHA256(h_k || settlement bytes of hour k)                     (32 + 38 bytes in)
//! head    = h_24  (h_H for H hours, hours 0..H in order)
//! ```
//!
//! # Commitment of a part
//!
//! One leaf per `runs` row, in row order: `run u64 LE || head` (40 bytes); the part's root
//! is [`merkle_root`] over those leaves (leaf `SHA256(0x00 || leaf)`, inner nodes
//! `SHA256(0x01 || left || right)`, odd nodes promoted, root `SHA256(0x02 || count u64 LE ||
//! top)`).

use sha2::block_api::compress256;

use super::Hash;
use super::encoding::{TAG_SETTLEMENT, VERSION};
use super::merkle::merkle_root;
use super::tx::Settlement;

/// Domain tag that starts a run's chain, `h_0 = SHA256(tag || run u64 LE)`.
pub const CHAIN_DOMAIN: &[u8; 24] = b"p2pmarket/sweep-chain/v1";

/// The agent index of the smart grid (exports when `exchange_mw > 0`).
pub const SMART_GRID: u32 = 0;
/// The agent index of the microgrid.
pub const MICROGRID: u32 = 1;

/// The settlement of hour `hour` from its market price ($/MWh) and its exchange smart grid
/// -> microgrid (MW); see the module doc for the sign rule and no-trade hours.
pub fn hour_settlement(hour: u32, price: f64, exchange_mw: f64) -> Settlement {
    let (seller, buyer) = if exchange_mw < 0.0 {
        (MICROGRID, SMART_GRID)
    } else {
        (SMART_GRID, MICROGRID)
    };
    let mw = exchange_mw.abs();
    Settlement {
        hour,
        seller,
        buyer,
        mw,
        price,
        cost: mw * price,
    }
}

/// `h_0 = SHA256(CHAIN_DOMAIN || run u64 LE)`.
pub fn chain_start(run: u64) -> Hash {
    let mut msg = [0u8; 32];
    msg[..24].copy_from_slice(CHAIN_DOMAIN);
    msg[24..].copy_from_slice(&run.to_le_bytes());
    sha256_short(&msg)
}

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Longest message [`sha256_short`] takes: two blocks less the padding's 9 bytes.
const SHORT_MESSAGE: usize = 2 * 64 - 9;

/// SHA-256 of a message of at most [`SHORT_MESSAGE`] bytes, padded on the stack and
/// compressed block by block (FIPS 180-4, 5.1.1). A sweep hashes 49 such messages per run
/// (the chain's links are 70 bytes), and the streaming `Digest` interface cost about half
/// as much again as the compressions themselves. A test holds it equal to `Sha256` for
/// every length.
fn sha256_short(msg: &[u8]) -> Hash {
    assert!(msg.len() <= SHORT_MESSAGE, "a short SHA-256 message");
    let mut blocks = [[0u8; 64]; 2];
    let n = (msg.len() + 9).div_ceil(64);
    let flat = blocks.as_flattened_mut();
    flat[..msg.len()].copy_from_slice(msg);
    flat[msg.len()] = 0x80;
    flat[n * 64 - 8..n * 64].copy_from_slice(&(msg.len() as u64 * 8).to_be_bytes());
    let mut state = SHA256_IV;
    compress256(&mut state, &blocks[..n]);
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The settlement's canonical bytes, `TxBody::Settlement(s).encode()` (a test holds them
/// equal), written on the stack: a sweep hashes 24 of them per run, and the allocation
/// cost as much as the hashing.
pub fn settlement_bytes(s: &Settlement) -> [u8; SETTLEMENT_BYTES] {
    let mut b = [0u8; SETTLEMENT_BYTES];
    b[0] = VERSION;
    b[1] = TAG_SETTLEMENT;
    b[2..6].copy_from_slice(&s.hour.to_le_bytes());
    b[6..10].copy_from_slice(&s.seller.to_le_bytes());
    b[10..14].copy_from_slice(&s.buyer.to_le_bytes());
    b[14..22].copy_from_slice(&s.mw.to_bits().to_le_bytes());
    b[22..30].copy_from_slice(&s.price.to_bits().to_le_bytes());
    b[30..38].copy_from_slice(&s.cost.to_bits().to_le_bytes());
    b
}

/// Length of a settlement's canonical encoding.
pub const SETTLEMENT_BYTES: usize = 38;

/// `SHA256(prev || settlement bytes)`: the next link.
pub fn chain_link(prev: &Hash, settlement: &Settlement) -> Hash {
    let mut msg = [0u8; 32 + SETTLEMENT_BYTES];
    msg[..32].copy_from_slice(prev);
    msg[32..].copy_from_slice(&settlement_bytes(settlement));
    sha256_short(&msg)
}

/// The head of run `run`'s chain over its hours' `(price, exchange_mw)`, hour 0 first.
pub fn settlement_head(run: u64, hours: impl IntoIterator<Item = (f64, f64)>) -> Hash {
    hours
        .into_iter()
        .enumerate()
        .fold(chain_start(run), |prev, (hour, (price, exchange_mw))| {
            // Hours of a day: far below u32::MAX.
            chain_link(&prev, &hour_settlement(hour as u32, price, exchange_mw))
        })
}

/// The Merkle leaf of a `runs` row: `run u64 LE || head`.
pub fn run_leaf(run: u64, head: &Hash) -> [u8; 40] {
    let mut leaf = [0u8; 40];
    leaf[..8].copy_from_slice(&run.to_le_bytes());
    leaf[8..].copy_from_slice(head);
    leaf
}

/// The Merkle root of a part's `runs` rows `(run, head)`, in row order.
pub fn part_root(rows: &[(u64, Hash)]) -> Hash {
    let leaves: Vec<[u8; 40]> = rows
        .iter()
        .map(|(run, head)| run_leaf(*run, head))
        .collect();
    merkle_root(&leaves)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::TxBody;
    use sha2::{Digest, Sha256};

    fn sha(parts: &[&[u8]]) -> Hash {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }

    fn day() -> Vec<(f64, f64)> {
        (0..24)
            .map(|h| (20.0 + h as f64 * 0.5, (h as f64 - 11.5) * 0.75))
            .collect()
    }

    #[test]
    fn short_messages_hash_as_sha256_does() {
        // Every length a short message can have, up to the two-block limit, including
        // the lengths where the padding spills into a second block (56..=64).
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..=SHORT_MESSAGE {
            let msg: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            assert_eq!(sha256_short(&msg), sha(&[&msg]), "{len} bytes");
        }
        // FIPS 180-2's one-block example.
        assert_eq!(
            hex::encode(sha256_short(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn one_link_matches_a_hand_built_encoding() {
        // Independent of the ledger's Writer: the bytes spelled out field by field.
        let h0 = sha(&[b"p2pmarket/sweep-chain/v1", &7u64.to_le_bytes()]);
        assert_eq!(chain_start(7), h0);
        let (price, exchange) = (31.25f64, -2.5f64);
        let mut bytes = vec![2u8, 2]; // version 2, settlement tag
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes()); // seller: the microgrid exports
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&2.5f64.to_bits().to_le_bytes());
        bytes.extend_from_slice(&price.to_bits().to_le_bytes());
        bytes.extend_from_slice(&78.125f64.to_bits().to_le_bytes());
        assert_eq!(bytes.len(), 38);
        let s = hour_settlement(3, price, exchange);
        assert_eq!(TxBody::Settlement(s).encode(), bytes);
        assert_eq!(chain_link(&h0, &s), sha(&[&h0, &bytes]));
        // A one-hour chain is that link from h_0 of the run.
        assert_eq!(
            settlement_head(7, [(1.0, 0.0)]),
            chain_link(&h0, &hour_settlement(0, 1.0, 0.0))
        );
        assert_eq!(settlement_head(7, []), h0);
    }

    #[test]
    fn the_head_and_root_are_pinned_by_an_independent_implementation() {
        // Golden values computed with Python's hashlib and struct from the module doc alone
        // (README, "Sweep integrity"), so the doc is enough to recompute them.
        assert_eq!(
            hex::encode(settlement_head(42, day())),
            "0210eb964c3ebe4cc0ae3f650d751f1edf9126641b02527c6f9ffe4cf324a776"
        );
        let rows: Vec<(u64, Hash)> = (0..3).map(|r| (r, settlement_head(r, day()))).collect();
        assert_eq!(
            hex::encode(part_root(&rows)),
            "9d87474bd47ad7886f04efb412eb5407473f67366d093d26c68c72f0f0a059d8"
        );
    }

    #[test]
    fn stack_bytes_are_the_ledger_encoding() {
        for (hour, price, exchange) in [
            (0, 0.0, 0.0),
            (23, -12.5, -0.0),
            (7, 31.25, -2.5),
            (u32::MAX, f64::MAX, f64::MIN_POSITIVE),
            (4, f64::NAN, f64::INFINITY),
        ] {
            let s = hour_settlement(hour, price, exchange);
            assert_eq!(
                settlement_bytes(&s).to_vec(),
                TxBody::Settlement(s).encode(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn no_trade_and_sign_rules() {
        let zero = hour_settlement(5, 40.0, 0.0);
        assert_eq!(
            (zero.seller, zero.buyer, zero.mw, zero.cost),
            (0, 1, 0.0, 0.0)
        );
        let neg_zero = hour_settlement(5, 40.0, -0.0);
        assert_eq!(neg_zero.mw.to_bits(), 0.0f64.to_bits());
        assert_eq!((neg_zero.seller, neg_zero.buyer), (0, 1));
        let buy = hour_settlement(5, 40.0, 3.0);
        assert_eq!(
            (buy.seller, buy.buyer, buy.mw, buy.cost),
            (0, 1, 3.0, 120.0)
        );
        let sell = hour_settlement(5, 40.0, -3.0);
        assert_eq!(
            (sell.seller, sell.buyer, sell.mw, sell.cost),
            (1, 0, 3.0, 120.0)
        );
    }

    #[test]
    fn every_field_and_the_hour_order_change_the_head() {
        let base = day();
        let head = settlement_head(3, base.clone());
        assert_ne!(head, settlement_head(4, base.clone()), "run");
        for k in 0..base.len() {
            for (what, changed) in [
                (
                    "price",
                    (f64::from_bits(base[k].0.to_bits() ^ 1), base[k].1),
                ),
                (
                    "exchange",
                    (base[k].0, f64::from_bits(base[k].1.to_bits() ^ 1)),
                ),
                ("exchange sign", (base[k].0, -base[k].1)),
            ] {
                let mut v = base.clone();
                v[k] = changed;
                assert_ne!(head, settlement_head(3, v), "{what} of hour {k}");
            }
            let mut swapped = base.clone();
            swapped.swap(k, (k + 1) % base.len());
            assert_ne!(head, settlement_head(3, swapped), "hours {k} swapped");
        }
        assert_ne!(
            head,
            settlement_head(3, base[..23].to_vec()),
            "hour dropped"
        );
        let mut longer = base.clone();
        longer.push(base[23]);
        assert_ne!(head, settlement_head(3, longer), "hour repeated");
    }

    #[test]
    fn the_part_root_commits_rows_and_their_order() {
        let rows: Vec<(u64, Hash)> = (0..5).map(|r| (r, settlement_head(r, day()))).collect();
        let root = part_root(&rows);
        assert_eq!(
            root,
            merkle_root(
                &rows
                    .iter()
                    .map(|(r, h)| run_leaf(*r, h))
                    .collect::<Vec<_>>()
            )
        );
        let mut leaf = 9u64.to_le_bytes().to_vec();
        leaf.extend_from_slice(&rows[0].1);
        assert_eq!(run_leaf(9, &rows[0].1).to_vec(), leaf);
        assert_ne!(root, part_root(&rows[..4]));
        let mut swapped = rows.clone();
        swapped.swap(1, 2);
        assert_ne!(root, part_root(&swapped));
        let mut renamed = rows.clone();
        renamed[2].0 = 7;
        assert_ne!(root, part_root(&renamed));
    }
}
