//! The ledger on the market (issue 8, item 3): a day's whole negotiation recorded, checked
//! block by block by the validators' content rule (the price update recomputed for every
//! step rule, the Newton step included), and re-verified; tampering by a sender, in
//! transit and by a settlement is refused.

use std::path::{Path, PathBuf};

use p2pmarket::ledger::{
    ConsensusMessage, MarketRule, Network, RecordOptions, RecordedDay, Rejection, Settlement,
    Transaction, TxBody, VerifyErrorKind, VerifyOptions, record_day, verify,
};
use p2pmarket::market::{self, DayResult, Market};
use p2pmarket::rci::{DualUpdate, RciSettings, StepRule};
use p2pmarket::scenario::Scenario;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn record(s: &Scenario) -> (Market, DayResult, RecordedDay) {
    let market = Market::from_scenario(s).expect("market");
    let day = market::run_day(&market, false).expect("day");
    let rec = record_day(&market, &day, &RecordOptions::default()).expect("recorded");
    (market, day, rec)
}

/// Checks the counts against the day and re-verifies with the rule, bit for bit.
fn check_recorded(label: &str, day: &DayResult, rec: &RecordedDay) {
    let agents = day.hours[0].curves.len() as u64;
    let iterations: u64 = day
        .hours
        .iter()
        .map(|h| u64::from(h.p2p.outcome.iterations) + 1)
        .sum();
    let settlements = if agents == 2 { 24 } else { 0 };
    assert_eq!(
        rec.counts.consensus_messages,
        iterations * agents,
        "{label}"
    );
    assert_eq!(rec.counts.settlements, settlements, "{label}");
    assert_eq!(rec.counts.blocks, 1 + iterations + settlements, "{label}");
    let exact = MarketRule {
        run: 0,
        tolerance: 0.0,
    };
    let ledger = &rec.network.ledger;
    let summary = verify(
        &ledger.blocks,
        &ledger.transactions,
        &VerifyOptions {
            anchor: Some(rec.network.state.genesis_hash),
            rule: Some(&exact),
        },
    )
    .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(summary.settlements as u64, settlements, "{label}");
}

#[test]
fn default_day_records_and_verifies_bit_for_bit() {
    let (_, day, rec) = record(&Scenario::default());
    check_recorded("default", &day, &rec);
    assert_eq!(rec.counts.validators, 4);
    assert!(rec.counts.bytes > 0 && rec.timing.verify_s > 0.0);
}

/// The content rule replays every step rule exactly, on several systems, at load
/// extremes, with the exact and the gradient duals, with the iteration cap reached, and
/// with a single agent (microgrid off: no settlement).
#[test]
fn every_step_rule_and_system_records_and_verifies() {
    let mut cases: Vec<(String, Scenario)> = Vec::new();
    for rule in [StepRule::Newton, StepRule::Constant, StepRule::Diminishing] {
        for dual in [DualUpdate::Exact, DualUpdate::Gradient] {
            let s = Scenario {
                rci: RciSettings {
                    step_rule: rule,
                    dual_update: dual,
                    kappa: 0.05,
                    // The scheduled steps stop at this cap: the cap ends a negotiation too.
                    max_iterations: 40,
                    ..RciSettings::default()
                },
                ..Scenario::default()
            };
            cases.push((format!("{rule:?}/{dual:?}"), s));
        }
    }
    for (case, bus) in [("case30.m", 2), ("case39.m", 4), ("case118.m", 11)] {
        let mut s = Scenario::default();
        s.grid.case_file = Some(repo_path(&format!("tests/data/matpower/{case}")));
        s.microgrid.pcc_bus = bus;
        cases.push((case.to_string(), s));
    }
    for scale in [0.65, 1.18] {
        let mut s = Scenario::default();
        s.load.scale = scale;
        cases.push((format!("load x{scale}"), s));
    }
    let mut s = Scenario::default();
    s.microgrid.enabled = false;
    cases.push(("microgrid off".into(), s));
    // Agents that start apart: the consensus term (chi) enters every recomputed price.
    for chi in [0.25, 0.75] {
        let mut s = Scenario::default();
        s.rci.start_price = p2pmarket::rci::StartPrice::OwnMarginal;
        s.rci.chi = chi;
        cases.push((format!("own marginal start, chi {chi}"), s));
    }
    for (label, s) in &cases {
        let (_, day, rec) = record(s);
        check_recorded(label, &day, &rec);
    }
}

/// Re-proposes the recorded blocks after the genesis into a fresh network of the same
/// seed until `stop` says so; returns the network and the index of the next block.
fn replay_until(rec: &RecordedDay, stop: impl Fn(&[Transaction]) -> bool) -> (Network, usize) {
    let ledger = &rec.network.ledger;
    let genesis_records = ledger.blocks[0].header.tx_count as usize;
    let mut net = fresh_network(rec);
    let mut at = genesis_records;
    for (b, block) in ledger.blocks.iter().enumerate().skip(1) {
        let n = block.header.tx_count as usize;
        let txs: Vec<Transaction> = ledger.transactions[at..at + n]
            .iter()
            .map(|r| r.tx.clone())
            .collect();
        if stop(&txs) {
            return (net, b);
        }
        at += n;
        net.propose(
            block.header.proposer,
            txs,
            block.header.timestamp_ms,
            &MarketRule::new(0),
        )
        .expect("recorded blocks commit again");
    }
    (net, ledger.blocks.len())
}

/// A network with the recorded genesis (same seed and private data), nothing after it.
fn fresh_network(rec: &RecordedDay) -> Network {
    let mut net = rec.network.clone();
    let genesis = net.ledger.blocks[0].clone();
    let records = genesis.header.tx_count as usize;
    let txs: Vec<Transaction> = net.ledger.transactions[..records]
        .iter()
        .map(|r| r.tx.clone())
        .collect();
    net.state = p2pmarket::ledger::LedgerState::from_genesis(&genesis, &txs).expect("genesis");
    net.ledger.blocks.truncate(1);
    net.ledger.transactions.truncate(records);
    net
}

fn consensus(tx: &Transaction) -> Option<ConsensusMessage> {
    match tx.body {
        TxBody::Consensus(m) => Some(m),
        _ => None,
    }
}

fn refusal(net: &mut Network, txs: Vec<Transaction>) -> Rejection {
    let t = net.state.timestamp_ms + 100;
    let failure = net
        .propose(1, txs, t, &MarketRule::new(0))
        .expect_err("the validators refuse the block");
    assert_eq!(failure.votes, 0, "no honest validator votes for it");
    failure.refusals[0].1.rejection.clone()
}

/// The microgrid (agent 1) computes its hour-12, iteration-2 price with a tampered
/// protocol parameter and signs it (an FDIA at the sender): twice the innovation step, or
/// chi = 0.3 instead of the committed 0.25 when the agents start apart (with a common
/// start their prices stay equal, chi multiplies a zero disagreement and an altered chi
/// changes nothing). The validators recompute the update and refuse it.
#[test]
fn a_parameter_altered_at_a_sender_is_refused() {
    let mut apart = Scenario::default();
    apart.rci.start_price = p2pmarket::rci::StartPrice::OwnMarginal;
    apart.rci.chi = 0.25;
    for (label, s, chi, step_factor) in [
        ("twice the step", Scenario::default(), 0.5, 2.0),
        ("chi 0.3", apart, 0.3, 1.0),
    ] {
        altered_price_is_refused(label, &s, chi, step_factor);
    }
}

fn altered_price_is_refused(label: &str, s: &Scenario, chi: f64, step_factor: f64) {
    let committed_chi = s.rci.chi;
    let (_, _, rec) = record(s);
    let (mut net, _) = replay_until(&rec, |txs| {
        consensus(&txs[0]).is_some_and(|m| m.hour == 12 && m.iteration == 2)
    });
    let k = 1;
    let prev: Vec<ConsensusMessage> = (0..2)
        .map(|a| *net.state.message(0, 12, k, a).expect("committed"))
        .collect();
    let (kappa, _) = p2pmarket::ledger::committed_step(&net.state, 0, 12, k).expect("step");
    let mismatch: f64 = prev.iter().map(|m| m.power).sum();
    let update = |chi: f64, kappa: f64| {
        p2pmarket::rci::price_update(
            prev[1].price,
            prev.iter().map(|m| m.price),
            chi,
            kappa,
            mismatch,
        )
    };
    let honest = update(committed_chi, kappa);
    let altered = update(chi, step_factor * kappa);
    assert!(
        (honest - altered).abs() > 1e-6,
        "{label}: the test must change the price"
    );
    let recorded = rec
        .network
        .ledger
        .transactions
        .iter()
        .filter_map(|r| consensus(&r.tx))
        .filter(|m| m.hour == 12 && m.iteration == 2)
        .collect::<Vec<_>>();
    assert_eq!(
        recorded[1].price, honest,
        "the replay recomputes the record"
    );
    let mut txs = Vec::new();
    for m in &recorded {
        let mut m = *m;
        if m.agent == 1 {
            m.price = altered;
        }
        txs.push(net.sign(TxBody::Consensus(m)).expect("signed"));
    }
    match refusal(&mut net, txs) {
        Rejection::Mismatch {
            field, expected, ..
        } => {
            assert_eq!(field, "price", "{label}");
            assert_eq!(expected, honest, "{label}");
        }
        other => panic!("{label}: unexpected refusal {other:?}"),
    }
}

/// A price changed in transit (after the agent signed) fails the signature; the same
/// change to a power, which no validator can recompute, is caught only by the signature.
#[test]
fn a_message_altered_in_transit_fails_its_signature() {
    let (_, _, rec) = record(&Scenario::default());
    let (mut net, b) = replay_until(&rec, |txs| {
        consensus(&txs[0]).is_some_and(|m| m.hour == 3 && m.iteration == 1)
    });
    assert!(b > 1);
    let honest: Vec<Transaction> = rec
        .network
        .ledger
        .transactions
        .iter()
        .filter(|r| consensus(&r.tx).is_some_and(|m| m.hour == 3 && m.iteration == 1))
        .map(|r| r.tx.clone())
        .collect();
    for field in ["price", "power"] {
        let mut txs = honest.clone();
        if let TxBody::Consensus(m) = &mut txs[0].body {
            match field {
                "price" => m.price += 1.0,
                _ => m.power += 5.0,
            }
        }
        assert!(
            matches!(
                refusal(&mut net, txs),
                Rejection::Signature { agent: 0, .. }
            ),
            "{field}"
        );
    }
    // The honest block still commits after the refusals.
    let t = net.state.timestamp_ms + 100;
    net.propose(0, honest, t, &MarketRule::new(0))
        .expect("honest block");
}

/// Settlements must name the end of the negotiation; nothing follows a settlement.
#[test]
fn settlements_are_checked_against_the_negotiation() {
    let (_, _, rec) = record(&Scenario::default());
    let is_settlement = |txs: &[Transaction]| matches!(txs[0].body, TxBody::Settlement(_));
    let (mut net, b) = replay_until(&rec, |txs| {
        is_settlement(txs) && matches!(&txs[0].body, TxBody::Settlement(s) if s.hour == 5)
    });
    let recorded = match rec
        .network
        .ledger
        .transactions
        .iter()
        .find_map(|r| match r.tx.body {
            TxBody::Settlement(s) if s.hour == 5 => Some(s),
            _ => None,
        }) {
        Some(s) => s,
        None => panic!("hour 5 is settled in the record"),
    };
    assert!(b > 1);
    let variants: [(&str, Settlement); 3] = [
        (
            "mw",
            Settlement {
                mw: recorded.mw + 1.0,
                cost: (recorded.mw + 1.0) * recorded.price,
                ..recorded
            },
        ),
        (
            "price",
            Settlement {
                price: recorded.price * 1.01,
                cost: recorded.mw * recorded.price * 1.01,
                ..recorded
            },
        ),
        (
            "seller",
            Settlement {
                seller: recorded.buyer,
                buyer: recorded.seller,
                ..recorded
            },
        ),
    ];
    for (what, s) in variants {
        let tx = net.sign(TxBody::Settlement(s)).expect("signed");
        let r = refusal(&mut net, vec![tx]);
        assert!(
            matches!(r, Rejection::Mismatch { .. } | Rejection::Unsettled { .. }),
            "{what}: {r:?}"
        );
    }
    // A settlement of an hour that has not been negotiated yet is refused.
    let early = Settlement {
        hour: 6,
        ..recorded
    };
    let tx = net.sign(TxBody::Settlement(early)).expect("signed");
    assert!(matches!(
        refusal(&mut net, vec![tx]),
        Rejection::Unsettled { hour: 6, .. }
    ));
    // The honest settlement commits; a further message of that hour is then refused.
    let tx = net.sign(TxBody::Settlement(recorded)).expect("signed");
    let t = net.state.timestamp_ms + 100;
    net.propose(0, vec![tx], t, &MarketRule::new(0))
        .expect("honest settlement");
    let last = net.state.last_iteration(0, 5).expect("negotiated");
    let mut m = *net.state.message(0, 5, last, 0).expect("committed");
    m.iteration = last + 1;
    let tx = net.sign(TxBody::Consensus(m)).expect("signed");
    assert!(matches!(
        refusal(&mut net, vec![tx]),
        Rejection::HourSettled { hour: 5 }
    ));
}

/// A stored ledger whose message was replaced by a re-signed, altered one (an agent
/// rewriting history with its own key) fails verification at that block, through the
/// content rule, although every signature verifies.
#[test]
fn a_rewritten_message_fails_verify_at_its_block() {
    let (_, _, rec) = record(&Scenario::default());
    let mut ledger = rec.network.ledger.clone();
    let (pos, height) = ledger
        .transactions
        .iter()
        .enumerate()
        .find_map(|(i, r)| {
            consensus(&r.tx)
                .filter(|m| m.hour == 7 && m.iteration == 1 && m.agent == 0)
                .map(|_| (i, r.height))
        })
        .expect("hour 7, iteration 1");
    let mut m = consensus(&ledger.transactions[pos].tx).expect("message");
    m.price += 0.5;
    ledger.transactions[pos].tx = rec.network.sign(TxBody::Consensus(m)).expect("signed");
    let err = verify(
        &ledger.blocks,
        &ledger.transactions,
        &VerifyOptions {
            anchor: None,
            rule: Some(&MarketRule::new(0)),
        },
    )
    .expect_err("refused");
    assert_eq!(err.height, Some(height));
    assert!(
        matches!(
            err.kind,
            VerifyErrorKind::Rejected(Rejection::Mismatch { field: "price", .. })
        ),
        "{err}"
    );
    // Without the content rule the Merkle root still catches it: the validators voted
    // over the original transactions.
    let err = verify(
        &ledger.blocks,
        &ledger.transactions,
        &VerifyOptions::default(),
    )
    .expect_err("refused");
    assert_eq!(err.height, Some(height));
    assert!(
        matches!(err.kind, VerifyErrorKind::Rejected(Rejection::MerkleRoot)),
        "{err}"
    );
}
