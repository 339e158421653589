//! Measured per-operation costs for the processing-time model of eq. (1), and the model.
//!
//! [`measure_op_costs`] reads the clock, so it is the one non-pure function of the ledger;
//! it is meant for a report or a bench, never for a test assertion.

use std::hint::black_box;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::rci::{RciSettings, StepRule};

use super::consensus::{LinearAgent, Network};
use super::keys::{KeyPair, Role, verify_signature};
use super::merkle::merkle_root;
use super::state::SimplePriceRule;

/// The processing time of one block, eq. (1), Kavousi-Fard 2021:
/// `T = q T_sig + 2 (T_backoff + T_trm) + t_prod + t_mining`, seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessingTime {
    /// Transactions per block, q (the paper calls q "the average time for node
    /// transactions" but multiplies it by a time, so it is read as a count).
    pub transactions: f64,
    /// Time to check one signature, T_sig, s.
    pub signature_s: f64,
    /// Back-off time of the protocol, T_back-off, s.
    pub backoff_s: f64,
    /// Time to send data from one node to another, T_trm, s.
    pub transmission_s: f64,
    /// Time to build the block, t_prod, s.
    pub production_s: f64,
    /// Time to mine (here: to gather the quorum's votes), t_mining, s.
    pub mining_s: f64,
}

impl ProcessingTime {
    /// `T_tot-chain` of eq. (1), s.
    pub fn total_s(&self) -> f64 {
        // eq. (1), Kavousi-Fard 2021.
        self.transactions * self.signature_s
            + 2.0 * (self.backoff_s + self.transmission_s)
            + self.production_s
            + self.mining_s
    }
}

impl ProcessingTime {
    /// Eq. (1) for one block of this ledger, its terms filled from measured constants:
    /// `q` transactions per block, `T_sig` one `verify_strict`, `t_prod` the proposer's
    /// Merkle root and header hash plus the agents' `q` signatures, `t_mining` the
    /// validators' work to commit it (each of the `n` checks the block and signs its
    /// vote, and the commit checks the `n` votes). Back-off and transmission are 0: the
    /// validators run in one process, with no network to wait for.
    pub fn from_costs(c: &OpCosts, transactions_per_block: f64, validators: u32) -> Self {
        let n = f64::from(validators);
        // The measured block validation holds `c.leaves` messages; scale it to q.
        let per_tx_validation = c.block_validation_s / f64::from(c.leaves.max(1));
        ProcessingTime {
            transactions: transactions_per_block,
            signature_s: c.verify_s,
            backoff_s: 0.0,
            transmission_s: 0.0,
            production_s: c.merkle_build_s + c.hash_s + transactions_per_block * c.sign_s,
            mining_s: n * (per_tx_validation * transactions_per_block + c.sign_s + c.verify_s),
        }
    }
}

/// Measured seconds per operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpCosts {
    /// SHA-256 of a 64-byte message.
    pub hash_s: f64,
    /// Ed25519 signature of a consensus message.
    pub sign_s: f64,
    /// `verify_strict` of a consensus message's signature.
    pub verify_s: f64,
    /// Merkle root over `leaves` encoded transactions.
    pub merkle_build_s: f64,
    /// A validator's full check of a block of `leaves` consensus messages (signatures,
    /// Merkle root, content rule).
    pub block_validation_s: f64,
    /// Transactions per measured block.
    pub leaves: u32,
}

/// Mean seconds of `op` over `reps` runs (at least one).
fn time_per_op(reps: u32, mut op: impl FnMut()) -> f64 {
    let reps = reps.max(1);
    let start = Instant::now();
    for _ in 0..reps {
        op();
    }
    start.elapsed().as_secs_f64() / f64::from(reps)
}

/// Times hashing, signing, verifying, Merkle building and block validation, each over
/// `reps` repetitions, on blocks of `leaves` consensus messages (`leaves` agents).
pub fn measure_op_costs(reps: u32, leaves: u32) -> crate::Result<OpCosts> {
    let leaves = leaves.clamp(1, 4096);
    let key = KeyPair::derive(0, Role::Agent, 0);
    let message = [7u8; 64];
    let hash_s = time_per_op(reps, || {
        black_box(Sha256::digest(black_box(&message)));
    });
    let sign_s = time_per_op(reps, || {
        black_box(key.sign(black_box(&message)));
    });
    let signature = key.sign(&message);
    let public = key.public_key();
    let verify_s = time_per_op(reps, || {
        black_box(verify_signature(&public, black_box(&message), &signature).is_ok());
    });
    let rci = RciSettings {
        step_rule: StepRule::Constant,
        kappa: 0.01,
        ..RciSettings::default()
    };
    let curves: Vec<LinearAgent> = (0..leaves)
        .map(|i| LinearAgent {
            slope: 1.0,
            offset: 10.0 + f64::from(i),
        })
        .collect();
    let private: Vec<&[u8]> = vec![b"curve".as_slice(); leaves as usize];
    let mut net = Network::genesis(0, 1, 0, &rci, &private, 0)?;
    let txs = net
        .signed_next_messages(&curves, 0, 0)
        .map_err(|r| crate::Error::invalid("leaves", r.to_string(), "registered agents"))?;
    let bytes: Vec<Vec<u8>> = txs.iter().map(|t| t.encode()).collect();
    let merkle_build_s = time_per_op(reps, || {
        black_box(merkle_root(black_box(&bytes)));
    });
    let header = net.state.next_header(&txs, 1000, 0);
    let rule = SimplePriceRule { tolerance: 1e-12 };
    let block_validation_s = time_per_op(reps, || {
        black_box(net.state.check_block(&header, &txs, Some(&rule)).is_ok());
    });
    // The measured block is valid: a timing of a rejection would measure nothing.
    net.propose(0, txs, 1000, &rule).map_err(|f| {
        crate::Error::invalid(
            "leaves",
            format!("{} votes", f.votes),
            "a block that commits",
        )
    })?;
    Ok(OpCosts {
        hash_s,
        sign_s,
        verify_s,
        merkle_build_s,
        block_validation_s,
        leaves,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processing_time_adds_up() {
        let t = ProcessingTime {
            transactions: 10.0,
            signature_s: 1e-4,
            backoff_s: 0.01,
            transmission_s: 0.02,
            production_s: 0.003,
            mining_s: 0.5,
        };
        assert!((t.total_s() - (1e-3 + 0.06 + 0.003 + 0.5)).abs() < 1e-15);
    }

    #[test]
    fn measurement_is_callable_and_positive() {
        let c = measure_op_costs(3, 4).unwrap();
        assert_eq!(c.leaves, 4);
        for v in [
            c.hash_s,
            c.sign_s,
            c.verify_s,
            c.merkle_build_s,
            c.block_validation_s,
        ] {
            assert!(v.is_finite() && v >= 0.0, "{c:?}");
        }
        // Validation checks four signatures, so it is timed over real work.
        assert!(c.block_validation_s > 0.0);
    }
}
