//! The real ledger as the oracle of the defence against false-data injection: an attacked
//! hour replayed through the validators, every forged copy submitted and judged by them
//! (signatures, content rule), the committed negotiation read back from the ledger.

use p2pmarket::attack::{Attack, AttackShape, AttackSlot, AttackVariable, Defence, HourAttacks};
use p2pmarket::ledger::{
    DayAttacks, HourReplay, RecordOptions, RefusedBy, Rejection, ReplayEnd, ReplayOptions,
    TransitSignature, TxBody, record_day, record_day_attacked, replay_hour, verify_signature,
};
use p2pmarket::market::{self, Market};
use p2pmarket::offer::OfferCurve;
use p2pmarket::rci::{self, Agent, AgentState, HourOutcome, RciSettings, StartPrice};
use p2pmarket::scenario::Scenario;

/// The default scenario with agents that start apart, so that chi matters.
fn market() -> Market {
    let s = Scenario {
        rci: RciSettings {
            start_price: StartPrice::OwnMarginal,
            ..RciSettings::default()
        },
        ..Scenario::default()
    };
    Market::from_scenario(&s).expect("market")
}

const HOUR: usize = 10;

fn curves(m: &Market, hour: usize) -> Vec<OfferCurve> {
    m.curves(hour).expect("curves")
}

fn agents<'a>(m: &Market, curves: &'a [OfferCurve]) -> Vec<Agent<'a>> {
    m.rci_agents(curves)
}

fn size(v: AttackVariable) -> f64 {
    match v {
        AttackVariable::Chi => 0.1,
        AttackVariable::Price | AttackVariable::StealthyPrice => 5.0,
        AttackVariable::Power => 2.0,
        AttackVariable::DualUpper | AttackVariable::DualLower => 3.0,
        AttackVariable::Slope => 0.5,
        AttackVariable::Gap => 1.5,
    }
}

fn slot(v: AttackVariable, agent: u32, shape: AttackShape, first: u32, hour: usize) -> AttackSlot {
    Attack {
        variable: v,
        agent,
        hours: vec![hour as u32],
        first_iteration: first,
        duration: None,
        shape,
        size: size(v),
        ramp_iterations: 3,
        seed: 11,
    }
    .slot(0, 5)
}

fn bits(a: &[AgentState]) -> Vec<[u64; 4]> {
    a.iter()
        .map(|s| [s.price, s.power, s.dual_upper, s.dual_lower].map(f64::to_bits))
        .collect()
}

/// The replay of a defended attack against the engine's outcomes: every forged copy
/// rejected, as many as rci's `rejected`, the committed negotiation the attack-free one
/// bit for bit.
fn check_defended(label: &str, rep: &HourReplay, free: &HourOutcome, attacked: &HourOutcome) {
    assert_eq!(rep.end, ReplayEnd::Finished, "{label}");
    assert!(attacked.tampered > 0, "{label}: the attack altered nothing");
    assert_eq!(attacked.rejected, attacked.tampered, "{label}");
    assert_eq!(rep.counts.forged_submitted, attacked.rejected, "{label}");
    assert_eq!(
        rep.counts.forged_rejected, rep.counts.forged_submitted,
        "{label}"
    );
    assert_eq!(
        rep.forgeries.len() as u32,
        rep.counts.forged_submitted,
        "{label}"
    );
    assert!(rep.forgeries.iter().all(|f| f.refusal.is_some()), "{label}");
    assert_eq!(
        rep.counts.genuine_submitted, rep.counts.genuine_accepted,
        "{label}"
    );
    assert_eq!(
        rep.counts.genuine_accepted,
        (free.iterations + 1) * free.agents.len() as u32,
        "{label}"
    );
    assert_eq!(rep.outcome.converged, free.converged, "{label}");
    assert_eq!(rep.outcome.iterations, free.iterations, "{label}");
    assert_eq!(bits(&rep.outcome.agents), bits(&free.agents), "{label}");
    // The engine's defended negotiation is the attack-free one too.
    assert_eq!(bits(&attacked.agents), bits(&free.agents), "{label}");
}

#[test]
fn every_defended_attack_is_rejected_by_the_validators() {
    let m = market();
    let c = curves(&m, HOUR);
    let ag = agents(&m, &c);
    let free = rci::negotiate(&ag, &m.rci, false);
    assert!(free.converged && free.iterations > 3, "{free:?}");
    for v in AttackVariable::ALL {
        for shape in AttackShape::ALL {
            for agent in [0, 1] {
                let slots = [slot(v, agent, shape, 0, HOUR)];
                let attacks = HourAttacks {
                    slots: &slots,
                    hour: HOUR as u32,
                    defence: Defence::Defended,
                };
                let label = format!("{} {shape:?} agent {agent}", v.name());
                let attacked = rci::negotiate_attacked(&ag, &m.rci, &attacks, false);
                let rep =
                    replay_hour(&ag, &m.rci, &attacks, &ReplayOptions::default()).expect("replay");
                check_defended(&label, &rep, &free, &attacked);
                let by = if v == AttackVariable::Chi {
                    RefusedBy::Content
                } else {
                    RefusedBy::Signature
                };
                for f in &rep.forgeries {
                    assert_eq!(f.refused_by(), Some(by), "{label}: {f:?}");
                    if v == AttackVariable::Chi {
                        assert!(
                            matches!(f.refusal, Some(Rejection::Mismatch { field: "price", .. })),
                            "{label}: {f:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn attack_windows_and_several_slots() {
    let m = market();
    let c = curves(&m, HOUR);
    let ag = agents(&m, &c);
    let free = rci::negotiate(&ag, &m.rci, false);
    let cases: Vec<(&str, Vec<AttackSlot>)> = vec![
        ("late window", {
            let mut s = slot(AttackVariable::Price, 1, AttackShape::Constant, 2, HOUR);
            s.last = 3;
            vec![s]
        }),
        (
            "chi and power on one agent",
            vec![
                slot(AttackVariable::Chi, 0, AttackShape::Sign, 1, HOUR),
                slot(AttackVariable::Power, 0, AttackShape::Constant, 1, HOUR),
            ],
        ),
        (
            "every agent",
            vec![
                slot(AttackVariable::Slope, 0, AttackShape::Uniform, 0, HOUR),
                slot(AttackVariable::DualLower, 1, AttackShape::Ramp, 0, HOUR),
            ],
        ),
    ];
    for (label, slots) in cases {
        let attacks = HourAttacks {
            slots: &slots,
            hour: HOUR as u32,
            defence: Defence::Defended,
        };
        let attacked = rci::negotiate_attacked(&ag, &m.rci, &attacks, false);
        let rep = replay_hour(&ag, &m.rci, &attacks, &ReplayOptions::default()).expect("replay");
        check_defended(label, &rep, &free, &attacked);
    }
}

#[test]
fn attack_free_replay_rejects_nothing_and_other_hours_are_untouched() {
    let m = market();
    let c = curves(&m, HOUR);
    let ag = agents(&m, &c);
    let free = rci::negotiate(&ag, &m.rci, false);
    let none =
        replay_hour(&ag, &m.rci, &HourAttacks::NONE, &ReplayOptions::default()).expect("replay");
    // An attack on another hour leaves this one alone.
    let slots = [slot(
        AttackVariable::Price,
        1,
        AttackShape::Constant,
        0,
        HOUR + 1,
    )];
    let elsewhere = HourAttacks {
        slots: &slots,
        hour: HOUR as u32,
        defence: Defence::Defended,
    };
    let other = replay_hour(&ag, &m.rci, &elsewhere, &ReplayOptions::default()).expect("replay");
    for (label, rep) in [("none", none), ("other hour", other)] {
        assert_eq!(rep.end, ReplayEnd::Finished, "{label}");
        assert_eq!(rep.counts.forged_submitted, 0, "{label}");
        assert_eq!(rep.counts.forged_rejected, 0, "{label}");
        assert!(rep.forgeries.is_empty(), "{label}");
        assert_eq!(rep.outcome.iterations, free.iterations, "{label}");
        assert_eq!(rep.outcome.converged, free.converged, "{label}");
        assert_eq!(bits(&rep.outcome.agents), bits(&free.agents), "{label}");
    }
    // c = 0 alters no byte: nothing is forged.
    let mut zero = slot(AttackVariable::Power, 1, AttackShape::Constant, 0, HOUR);
    zero.size = 0.0;
    let attacks = HourAttacks {
        slots: &[zero],
        hour: HOUR as u32,
        defence: Defence::Defended,
    };
    let rep = replay_hour(&ag, &m.rci, &attacks, &ReplayOptions::default()).expect("replay");
    assert_eq!(rep.counts.forged_submitted, 0);
    assert_eq!(
        rci::negotiate_attacked(&ag, &m.rci, &attacks, false).tampered,
        0
    );
}

#[test]
fn an_undefended_attack_cannot_be_recorded() {
    let m = market();
    let c = curves(&m, HOUR);
    let ag = agents(&m, &c);
    let slots = [slot(
        AttackVariable::Price,
        1,
        AttackShape::Constant,
        0,
        HOUR,
    )];
    let attacks = HourAttacks {
        slots: &slots,
        hour: HOUR as u32,
        defence: Defence::Undefended,
    };
    let e = replay_hour(&ag, &m.rci, &attacks, &ReplayOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("attack.defence"), "{e}");
}

/// What makes the oracle an oracle: the forged copies really differ from the genuine
/// messages, carry the sender's genuine signature (valid over the genuine bytes only),
/// and the validators are what stands between them and the ledger.
#[test]
fn forged_copies_differ_and_only_the_validators_stop_them() {
    let m = market();
    let c = curves(&m, HOUR);
    let ag = agents(&m, &c);
    let free = rci::negotiate(&ag, &m.rci, false);
    let price = [slot(
        AttackVariable::Price,
        1,
        AttackShape::Constant,
        1,
        HOUR,
    )];
    let attacks = HourAttacks {
        slots: &price,
        hour: HOUR as u32,
        defence: Defence::Defended,
    };
    let rep = replay_hour(&ag, &m.rci, &attacks, &ReplayOptions::default()).expect("replay");
    assert!(!rep.forgeries.is_empty());
    let key = rep.network.state.agent_keys[1];
    for f in &rep.forgeries {
        let TxBody::Consensus(forged) = f.transaction.body else {
            panic!("not a message");
        };
        let genuine = rep
            .network
            .state
            .message(0, HOUR as u32, f.iteration, f.agent)
            .copied()
            .expect("the genuine message is committed");
        assert_ne!(forged.price.to_bits(), genuine.price.to_bits());
        let genuine_bytes = TxBody::Consensus(genuine).encode();
        let forged_bytes = f.transaction.body.encode();
        assert_ne!(genuine_bytes, forged_bytes);
        let sig = &f.transaction.signatures[0];
        assert!(verify_signature(&key, &genuine_bytes, sig).is_ok());
        assert!(verify_signature(&key, &forged_bytes, sig).is_err());
    }

    // Re-signed by a key the ledger never registered: still a signature failure.
    let opts = |t| ReplayOptions {
        transit_signature: t,
        ..ReplayOptions::default()
    };
    let power = [slot(
        AttackVariable::Power,
        1,
        AttackShape::Constant,
        0,
        HOUR,
    )];
    let power_attacks = HourAttacks {
        slots: &power,
        hour: HOUR as u32,
        defence: Defence::Defended,
    };
    let rep = replay_hour(
        &ag,
        &m.rci,
        &power_attacks,
        &opts(TransitSignature::AttackerKey),
    )
    .expect("replay");
    assert_eq!(rep.end, ReplayEnd::Finished);
    assert!(!rep.forgeries.is_empty());
    assert!(
        rep.forgeries
            .iter()
            .all(|f| f.refused_by() == Some(RefusedBy::Signature))
    );

    // Validly signed by the sender's own (stolen) key, a price after iteration 0 is still
    // refused: the content rule recomputes it.
    let rep =
        replay_hour(&ag, &m.rci, &attacks, &opts(TransitSignature::SenderKey)).expect("replay");
    assert_eq!(rep.end, ReplayEnd::Finished);
    assert!(
        rep.forgeries
            .iter()
            .all(|f| matches!(f.refusal, Some(Rejection::Mismatch { field: "price", .. })))
    );
    assert_eq!(bits(&rep.outcome.agents), bits(&free.agents));

    // But a power, which no validator can recompute, passes once the signature does: the
    // defence of a field altered in transit is the signature check alone, and the replay
    // reports the breach instead of an agreement.
    let rep = replay_hour(
        &ag,
        &m.rci,
        &power_attacks,
        &opts(TransitSignature::SenderKey),
    )
    .expect("replay");
    assert_eq!(
        rep.end,
        ReplayEnd::ForgeryCommitted {
            iteration: 0,
            agent: 1
        }
    );
    assert_eq!(rep.forgeries[0].refusal, None);
    assert_ne!(rep.outcome.iterations, free.iterations);
}

#[test]
fn a_defended_attacked_day_records_with_its_forgeries_rejected() {
    let m = market();
    let day = market::run_day(&m, false).expect("day");
    let slots = [
        slot(AttackVariable::Chi, 1, AttackShape::Constant, 1, 3),
        slot(AttackVariable::Gap, 0, AttackShape::Sign, 0, 3),
    ];
    let mut slots = slots.to_vec();
    slots[0].hours |= 1 << 17;
    let expected: u32 = day
        .hours
        .iter()
        .map(|h| {
            let a = agents(&m, &h.curves);
            let attacks = HourAttacks {
                slots: &slots,
                hour: h.hour as u32,
                defence: Defence::Defended,
            };
            rci::negotiate_attacked(&a, &m.rci, &attacks, false).rejected
        })
        .sum();
    assert!(expected > 0);
    let opts = RecordOptions::default();
    let attacked = record_day_attacked(
        &m,
        &day,
        &opts,
        &DayAttacks {
            slots: &slots,
            defence: Defence::Defended,
        },
    )
    .expect("recorded");
    assert_eq!(attacked.forgeries.forged_submitted, expected);
    assert_eq!(attacked.forgeries.forged_rejected, expected);
    // The committed ledger is the attack-free day's, block contents and all: the refused
    // forgeries leave no trace but the clock.
    let plain = record_day(&m, &day, &opts).expect("recorded");
    assert_eq!(plain.forgeries.forged_submitted, 0);
    assert_eq!(
        attacked.network.ledger.transactions.len(),
        plain.network.ledger.transactions.len()
    );
    for (a, p) in attacked
        .network
        .ledger
        .transactions
        .iter()
        .zip(&plain.network.ledger.transactions)
    {
        assert_eq!(a.tx, p.tx);
    }
    let undefended = record_day_attacked(
        &m,
        &day,
        &opts,
        &DayAttacks {
            slots: &slots,
            defence: Defence::Undefended,
        },
    );
    assert!(undefended.is_err());
}
