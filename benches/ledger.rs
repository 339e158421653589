//! Benchmarks of the ledger's operations, the measured constants of the processing-time
//! model eq. (1): SHA-256, Ed25519 signing and `verify_strict`, a Merkle root, a
//! validator's check of a block, and a whole stored ledger's verification.

use criterion::{Criterion, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use std::hint::black_box;

use p2pmarket::ledger::{
    KeyPair, LinearAgent, Network, Role, SimplePriceRule, VerifyOptions, merkle_root, verify,
    verify_signature,
};
use p2pmarket::rci::{RciSettings, StepRule};

/// Agents (and consensus messages per block) of the benchmarked market.
const AGENTS: u32 = 16;

fn ledger_benches(c: &mut Criterion) {
    let message = [7u8; 64];
    let key = KeyPair::derive(0, Role::Agent, 0);
    let signature = key.sign(&message);
    let public = key.public_key();
    c.bench_function("sha256_64_bytes", |b| {
        b.iter(|| black_box(Sha256::digest(black_box(&message))))
    });
    c.bench_function("ed25519_sign", |b| {
        b.iter(|| black_box(key.sign(black_box(&message))))
    });
    c.bench_function("ed25519_verify_strict", |b| {
        b.iter(|| black_box(verify_signature(&public, black_box(&message), &signature)))
    });

    let rci = RciSettings {
        step_rule: StepRule::Constant,
        kappa: 0.01,
        ..RciSettings::default()
    };
    let curves: Vec<LinearAgent> = (0..AGENTS)
        .map(|i| LinearAgent {
            slope: 1.0,
            offset: 10.0 + f64::from(i),
        })
        .collect();
    let private: Vec<&[u8]> = vec![b"curve".as_slice(); AGENTS as usize];
    let mut net = Network::genesis(0, 1, 0, &rci, &private, 0).expect("genesis");
    let rule = SimplePriceRule { tolerance: 1e-12 };
    let next_block = |net: &Network| {
        net.signed_next_messages(&curves, 0, 0)
            .expect("every agent's previous message is committed")
    };
    let txs = next_block(&net);
    let bytes: Vec<Vec<u8>> = txs.iter().map(|t| t.encode()).collect();
    c.bench_function("merkle_root_16_transactions", |b| {
        b.iter(|| black_box(merkle_root(black_box(&bytes))))
    });
    let header = net.state.next_header(&txs, 1000, 0);
    c.bench_function("validate_block_16_messages", |b| {
        b.iter(|| black_box(net.state.check_block(&header, &txs, Some(&rule))))
    });
    for round in 0..10u32 {
        let txs = next_block(&net);
        let t = net.state.timestamp_ms + 1000;
        net.propose(round % 4, txs, t, &rule)
            .expect("block commits");
    }
    let options = VerifyOptions {
        anchor: None,
        rule: Some(&rule),
    };
    c.bench_function("verify_ledger_10_blocks_16_agents", |b| {
        b.iter(|| {
            black_box(verify(
                &net.ledger.blocks,
                &net.ledger.transactions,
                &options,
            ))
        })
    });
}

criterion_group! {
    name = benches;
    // Criterion's own plots need system fonts this crate's plotters build does not have.
    config = Criterion::default().sample_size(20).without_plots();
    targets = ledger_benches
}
criterion_main!(benches);
