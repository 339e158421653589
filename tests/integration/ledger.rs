//! The ledger end to end: exhaustive bit flips, random corruptions (proptest), Project
//! Wycheproof's Ed25519 vectors through the ledger's own verification path, pinned block
//! hashes, and the fork simulation with f and f + 1 equivocating validators.

use p2pmarket::ledger::{
    ConsensusMessage, ContentRule, ForkSimulation, Ledger, LedgerState, LinearAgent, Network,
    Rejection, Settlement, SimplePriceRule, TxBody, TxRecord, VerifyErrorKind, VerifyOptions,
    check_votes, double_signers, simulate_equivocation, verify, verify_bytes, verify_signature,
};
use p2pmarket::rci::{DualUpdate, PowerUpdate, RciSettings, StartPrice, StepRule};
use proptest::prelude::*;
use rayon::prelude::*;

const RULE: SimplePriceRule = SimplePriceRule { tolerance: 1e-12 };

/// Every field spelled out, so the golden hashes do not move with the defaults.
fn rci() -> RciSettings {
    RciSettings {
        chi: 0.5,
        step_rule: StepRule::Constant,
        kappa: 0.1,
        kappa_decay: 200.0,
        newton_damping: 1.0,
        slope_floor: 1.0,
        dual_update: DualUpdate::Exact,
        xi: 0.05,
        power_update: PowerUpdate::Plain,
        relax_gamma: 1.0,
        price_tol: 1e-7,
        power_tol: 1e-6,
        dual_tol: 1e-7,
        balance_tol: 1e-6,
        max_iterations: 1000,
        initial_price: 20.0,
        start_price: StartPrice::Common,
    }
}

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

fn network(seed: u64) -> Network {
    let private = [
        p2pmarket::ledger::f64_bytes(&[1.0, 10.0]),
        p2pmarket::ledger::f64_bytes(&[0.5, 30.0]),
    ];
    Network::genesis(seed, 1, 0, &rci(), &[&private[0], &private[1]], 0).expect("genesis")
}

fn consensus_round(net: &mut Network, proposer: u32) {
    let txs = net
        .signed_next_messages(&CURVES, 0, 0)
        .expect("previous messages committed");
    let t = net.state.timestamp_ms + 1000;
    net.propose(proposer, txs, t, &RULE)
        .expect("honest block commits");
}

fn settlement_round(net: &mut Network, hours: &[u32]) {
    let txs = hours
        .iter()
        .map(|&hour| {
            let (mw, price) = (10.0 + f64::from(hour), 16.5);
            net.sign(TxBody::Settlement(Settlement {
                hour,
                seller: 0,
                buyer: 1,
                mw,
                price,
                cost: mw * price,
            }))
            .expect("signers")
        })
        .collect();
    let t = net.state.timestamp_ms + 1000;
    net.propose(2, txs, t, &RULE)
        .expect("settlement block commits");
}

/// Genesis, two consensus iterations and one settlement block, keyed from seed 42.
fn small_ledger() -> Ledger {
    let mut net = network(42);
    consensus_round(&mut net, 0);
    consensus_round(&mut net, 1);
    settlement_round(&mut net, &[6]);
    net.ledger
}

fn options() -> VerifyOptions<'static> {
    VerifyOptions {
        anchor: None,
        rule: Some(&RULE),
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    let bytes = small_ledger().to_bytes();
    let summary = verify_bytes(&bytes, &options()).expect("the clean ledger verifies");
    assert_eq!(summary.height, 3);
    assert_eq!(summary.consensus_messages, 4);
    assert_eq!(summary.settlements, 1);
    assert_eq!(summary.transactions, 7 + 5);
    let bits = bytes.len() * 8;
    let undetected: Vec<usize> = (0..bits)
        .into_par_iter()
        .filter(|&bit| {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            verify_bytes(&flipped, &options()).is_ok()
        })
        .collect();
    assert!(bits > 15_000, "{bits} bits");
    assert!(
        undetected.is_empty(),
        "undetected flips at bits {undetected:?}"
    );
}

#[test]
fn verify_names_the_first_bad_block_and_transaction() {
    let ledger = small_ledger();
    // A consensus price changed after signing: block 2, transaction 1.
    let mut bad = ledger.clone();
    let row = bad
        .transactions
        .iter_mut()
        .find(|r| r.height == 2 && r.index == 1)
        .expect("row");
    if let TxBody::Consensus(m) = &mut row.tx.body {
        m.price += 1e-9;
    }
    let e = verify(&bad.blocks, &bad.transactions, &options()).unwrap_err();
    assert_eq!((e.height, e.index), (Some(2), Some(1)), "{e}");
    // Named by its signature, which no longer verifies.
    assert!(
        matches!(
            e.kind,
            VerifyErrorKind::Rejected(Rejection::Signature { agent: 1, .. })
        ),
        "{e}"
    );
    assert_eq!(e.kind.code(), 7);
    // Two valid messages swapped inside block 1: only the root can tell.
    let mut bad = ledger.clone();
    bad.transactions.swap(7, 8);
    (bad.transactions[7].index, bad.transactions[8].index) = (0, 1);
    let e = verify(&bad.blocks, &bad.transactions, &options()).unwrap_err();
    assert_eq!(
        (e.kind, e.height, e.index),
        (
            VerifyErrorKind::Rejected(Rejection::MerkleRoot),
            Some(1),
            None
        )
    );
    // A vote dropped below the quorum: block 3 (four votes, quorum three).
    let mut bad = ledger.clone();
    bad.blocks[3].votes.truncate(2);
    let e = verify(&bad.blocks, &bad.transactions, &options()).unwrap_err();
    assert_eq!(
        (e.kind, e.height, e.index),
        (
            VerifyErrorKind::Rejected(Rejection::NoQuorum {
                votes: 2,
                quorum: 3
            }),
            Some(3),
            None
        )
    );
    // A trusted anchor refuses another genesis, even a self-consistent one.
    let other = network(43).ledger;
    let anchor = verify(&ledger.blocks[..1], &ledger.transactions[..7], &options())
        .expect("genesis")
        .genesis_hash;
    let trusted = VerifyOptions {
        anchor: Some(anchor),
        rule: None,
    };
    assert!(verify(&ledger.blocks, &ledger.transactions, &trusted).is_ok());
    let e = verify(&other.blocks, &other.transactions, &trusted).unwrap_err();
    assert_eq!((e.kind, e.height), (VerifyErrorKind::Anchor, Some(0)));
}

/// A rule that accepts every message (a validator set that does not recompute).
struct AcceptAll;

impl ContentRule for AcceptAll {
    fn check(&self, _: &LedgerState, _: &ConsensusMessage) -> Result<(), Rejection> {
        Ok(())
    }
}

#[test]
fn replaying_the_content_rule_finds_a_tampered_price_the_signatures_allow() {
    let mut net = network(7);
    consensus_round(&mut net, 0);
    let mut msgs = net.next_messages(&CURVES, 0, 0).expect("previous messages");
    msgs[0].price *= 1.5;
    let txs = msgs
        .into_iter()
        .map(|m| net.sign(TxBody::Consensus(m)).expect("signer"))
        .collect();
    net.propose(1, txs, 5000, &AcceptAll)
        .expect("lax validators commit it");
    let l = &net.ledger;
    let lax = VerifyOptions {
        anchor: None,
        rule: None,
    };
    assert!(verify(&l.blocks, &l.transactions, &lax).is_ok());
    let e = verify(&l.blocks, &l.transactions, &options()).unwrap_err();
    assert_eq!((e.height, e.index), (Some(2), Some(0)));
    assert!(
        matches!(e.kind, VerifyErrorKind::Rejected(Rejection::Price { .. })),
        "{e}"
    );
}

#[test]
fn ledger_round_trips_through_bytes_and_flat_tables() {
    let ledger = small_ledger();
    assert_eq!(Ledger::from_bytes(&ledger.to_bytes()), Ok(ledger.clone()));
    let (blocks, txs) = (ledger.block_rows(), ledger.tx_rows());
    assert_eq!(blocks.len(), 4);
    assert_eq!(txs.len(), 12);
    assert_eq!(Ledger::from_rows(&blocks, &txs), Ok(ledger.clone()));
    for (row, block) in blocks.iter().zip(&ledger.blocks) {
        assert_eq!(row.hash, block.hash());
    }
}

/// The encoding is stable: these hashes change only with a new encoding version (these
/// are version 2's; version 1, with one slope per message, had a41c247a..., 8227ea1a...,
/// a2c0429e... and 4c7c638a...).
#[test]
fn golden_block_hashes() {
    let ledger = small_ledger();
    let hashes: Vec<String> = ledger
        .blocks
        .iter()
        .map(|b| hex::encode(b.hash()))
        .collect();
    let expected = [
        "0714ade007edb37f9ac65cab60b7c2a7260c76f8b0d0df0f20ff6ff3a5e1d920",
        "9dd0c111945d3facb7ab6781c70ac8c584e05efa35244f468f3177750fdf56e0",
        "12ab18bf9e4addb742e5a757a757745b8e2c9006b718065d5d5b4154ac250381",
        "e938be6703813d6f936e1895f91f8d2a808a4e060e6a49ec94769248de8113c0",
    ];
    assert_eq!(hashes, expected);
}

#[test]
fn wycheproof_ed25519_vectors_through_the_ledger_path() {
    use wycheproof::TestResult;
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).expect("vectors");
    let (mut valid, mut invalid, mut malleable) = (0, 0, 0);
    let mut mismatches = Vec::new();
    for group in &set.test_groups {
        for test in &group.tests {
            let accepted = verify_signature(&group.key.pk, &test.msg, &test.sig).is_ok();
            let expected = match test.result {
                TestResult::Valid => true,
                TestResult::Invalid => false,
                TestResult::Acceptable => {
                    mismatches.push(format!("tc {} is 'acceptable'", test.tc_id));
                    continue;
                }
            };
            if accepted != expected {
                mismatches.push(format!(
                    "tc {} ({}): accepted {accepted}",
                    test.tc_id, test.comment
                ));
            }
            if expected {
                valid += 1;
            } else {
                invalid += 1;
            }
            if test
                .flags
                .iter()
                .any(|f| format!("{f:?}").contains("Malleability"))
            {
                malleable += 1;
            }
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert_eq!(valid + invalid, set.number_of_tests);
    assert!(
        valid > 10 && invalid > 50 && malleable > 0,
        "{valid} {invalid} {malleable}"
    );
}

#[test]
fn small_order_keys_and_non_canonical_signatures_are_refused() {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    // The identity point as public key, with R = identity and S = 0: the cofactorless
    // equation [S]B = R + [k]A holds for every message, so a plain `verify` accepts this
    // "signature" of anything. The ledger's path refuses it.
    let identity = {
        let mut p = [0u8; 32];
        p[0] = 1;
        p
    };
    let mut forged = [0u8; 64];
    forged[..32].copy_from_slice(&identity);
    let weak = VerifyingKey::from_bytes(&identity).expect("a valid point encoding");
    for message in [b"price 20".as_slice(), b"price 99".as_slice()] {
        assert!(
            weak.verify(message, &Signature::from_bytes(&forged))
                .is_ok()
        );
        assert!(verify_signature(&identity, message, &forged).is_err());
    }
    // The point of order 2, (0, -1): y = p - 1.
    let mut order_two = [0xffu8; 32];
    order_two[0] = 0xec;
    order_two[31] = 0x7f;
    assert!(verify_signature(&order_two, b"price 20", &forged).is_err());
    // A valid signature made non-canonical by adding the group order L to S.
    let key = p2pmarket::ledger::KeyPair::derive(1, p2pmarket::ledger::Role::Agent, 0);
    let mut sig = key.sign(b"m");
    assert!(verify_signature(&key.public_key(), b"m", &sig).is_ok());
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (s, l) in sig[32..].iter_mut().zip(L) {
        let v = u16::from(*s) + u16::from(l) + carry;
        *s = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0, "S + L fits in 256 bits");
    assert!(verify_signature(&key.public_key(), b"m", &sig).is_err());
}

#[test]
fn no_fork_with_f_equivocators_over_ten_thousand_rounds() {
    let sim = ForkSimulation {
        seed: 2021,
        faults: 1,
        equivocators: 1,
        rounds: 10_000,
        stop_at_fork: false,
    };
    let report = simulate_equivocation(&sim, &rci(), &RULE).expect("simulation");
    assert_eq!(report.forks, 0);
    assert!(report.first_fork.is_none());
    assert_eq!(report.committed, 10_000);
    assert_eq!(report.stalled, 0);
    // A quarter of the rounds have the equivocator as proposer: the attack was tried.
    assert_eq!(report.equivocations, 2_500);
}

#[test]
fn no_fork_with_two_equivocators_when_f_is_two() {
    let sim = ForkSimulation {
        seed: 5,
        faults: 2,
        equivocators: 2,
        rounds: 1_400,
        stop_at_fork: false,
    };
    let report = simulate_equivocation(&sim, &rci(), &RULE).expect("simulation");
    assert_eq!(report.forks, 0);
    assert_eq!(report.equivocations, 400);
    assert_eq!(report.committed, 1_400);
}

#[test]
fn a_fork_appears_with_f_plus_one_equivocators() {
    for faults in [1, 2] {
        let sim = ForkSimulation {
            seed: 2021,
            faults,
            equivocators: faults + 1,
            rounds: 10_000,
            stop_at_fork: true,
        };
        let report = simulate_equivocation(&sim, &rci(), &RULE).expect("simulation");
        assert_eq!(report.forks, 1, "f = {faults}: {} rounds", report.rounds);
        let (a, b) = report.first_fork.expect("fork evidence");
        let base = report.fork_base.expect("fork base");
        assert_eq!(a.header.height, b.header.height);
        assert_ne!(a.hash(), b.hash());
        // Both blocks are quorum-certified extensions of the same tip.
        for block in [&a, &b] {
            assert_eq!(block.header.prev_hash, base.tip);
            assert!(
                check_votes(
                    &base.validator_keys,
                    base.params.quorum(),
                    &block.hash(),
                    &block.votes
                )
                .is_ok()
            );
        }
        // The double signers are exactly the equivocators (accountable).
        let signers = double_signers(&a, &b);
        assert_eq!(signers, (0..faults + 1).collect::<Vec<u32>>());
    }
}

/// A random ledger: seed, then per block either a consensus iteration or 1-3 settlements.
fn random_ledger(seed: u64, plan: &[u8]) -> Ledger {
    let mut net = network(seed);
    for (b, &kind) in plan.iter().enumerate() {
        if kind == 0 {
            settlement_round(
                &mut net,
                &(0..1 + u32::from(b as u8 % 3))
                    .map(|h| h + 24 * b as u32)
                    .collect::<Vec<_>>(),
            );
        } else {
            consensus_round(&mut net, b as u32 % 4);
        }
    }
    net.ledger
}

fn rejects(l: &Ledger) -> bool {
    verify(&l.blocks, &l.transactions, &options()).is_err()
}

fn ledger_strategy() -> impl Strategy<Value = Ledger> {
    (0u64..1000, prop::collection::vec(0u8..2, 1..4)).prop_map(|(s, plan)| random_ledger(s, &plan))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_clean_ledgers_verify(l in ledger_strategy()) {
        prop_assert!(verify(&l.blocks, &l.transactions, &options()).is_ok());
        prop_assert!(verify_bytes(&l.to_bytes(), &options()).is_ok());
    }

    #[test]
    fn reordered_transactions_are_detected(l in ledger_strategy(), pick in any::<prop::sample::Index>(), other in any::<prop::sample::Index>()) {
        let mut bad = l.clone();
        let i = pick.index(bad.transactions.len());
        let height = bad.transactions[i].height;
        let same: Vec<usize> = (0..bad.transactions.len()).filter(|&k| bad.transactions[k].height == height && k != i).collect();
        prop_assume!(!same.is_empty());
        let j = same[other.index(same.len())];
        // Swap the contents, keeping each row's (height, index).
        let (ti, tj) = (bad.transactions[i].tx.clone(), bad.transactions[j].tx.clone());
        bad.transactions[i].tx = tj;
        bad.transactions[j].tx = ti;
        prop_assert!(rejects(&bad));
        // Swapping whole rows is detected too.
        let mut rows = l.clone();
        rows.transactions.swap(i, j);
        prop_assert!(rejects(&rows));
    }

    #[test]
    fn dropped_or_duplicated_transactions_are_detected(l in ledger_strategy(), pick in any::<prop::sample::Index>(), at in any::<prop::sample::Index>()) {
        let i = pick.index(l.transactions.len());
        let mut dropped = l.clone();
        dropped.transactions.remove(i);
        prop_assert!(rejects(&dropped));
        let mut duplicated = l.clone();
        let copy: TxRecord = l.transactions[i].clone();
        duplicated.transactions.insert(at.index(l.transactions.len() + 1), copy);
        prop_assert!(rejects(&duplicated));
    }

    #[test]
    fn swapped_blocks_are_detected(l in ledger_strategy(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let (i, j) = (a.index(l.blocks.len()), b.index(l.blocks.len()));
        prop_assume!(i != j);
        let mut bad = l.clone();
        bad.blocks.swap(i, j);
        prop_assert!(rejects(&bad));
    }

    #[test]
    fn truncated_bytes_are_detected(l in ledger_strategy(), cut in any::<prop::sample::Index>()) {
        let bytes = l.to_bytes();
        let len = cut.index(bytes.len());
        prop_assert!(verify_bytes(&bytes[..len], &options()).is_err());
    }
}
