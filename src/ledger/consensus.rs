//! Validator nodes, a deterministic in-memory network that builds a ledger, and a seeded
//! simulation of equivocating validators (no networking: delivery order is drawn from a
//! ChaCha stream).
//!
//! Safety argument the simulation checks: n = 3f + 1 validators, quorum 2f + 1. Two blocks
//! at one height that both reach a quorum share at least 2(2f + 1) - n = f + 1 signers,
//! and an honest validator signs one block per height, so a fork needs at least f + 1
//! equivocating validators.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::rci::RciSettings;

use super::block::{Block, BlockHeader, Vote, vote_message};
use super::keys::{KeyPair, Role, commit_private_data, derive_secret};
use super::merkle::merkle_root;
use super::state::{
    BlockFault, ContentRule, LedgerState, MAX_AGENTS, MAX_FAULTS, Rejection, check_votes,
    simple_price_update,
};
use super::tx::{
    AgentRegistration, ConsensusMessage, ProtocolParameters, Transaction, TxBody,
    ValidatorRegistration,
};
use super::verify::{Ledger, TxRecord};
use super::{Hash, PublicKey};

/// How a validator votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Votes for at most one valid block per height.
    Honest,
    /// Votes for every valid block offered, even two at one height (equivocation).
    Equivocating,
}

/// A validator node: its key, behaviour and the blocks it voted for.
#[derive(Debug, Clone)]
pub struct Validator {
    /// Index among the validators.
    pub index: u32,
    /// How it votes.
    pub behaviour: Behaviour,
    key: KeyPair,
    voted: BTreeMap<u64, Hash>,
}

impl Validator {
    /// Validator `index` with the key derived from `seed`.
    pub fn new(seed: u64, index: u32, behaviour: Behaviour) -> Self {
        Validator {
            index,
            behaviour,
            key: KeyPair::derive(seed, Role::Validator, index),
            voted: BTreeMap::new(),
        }
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// Signs a vote for `hash` without any check (genesis, tests).
    pub fn vote(&self, hash: &Hash) -> Vote {
        Vote {
            validator: self.index,
            signature: self.key.sign(&vote_message(hash)),
        }
    }

    /// Checks a proposed block against the committed state (signatures via
    /// `verify_strict`, then `rule`) and votes for it, unless it is honest and already
    /// voted for another block at this height.
    pub fn consider(
        &mut self,
        state: &LedgerState,
        header: &BlockHeader,
        txs: &[Transaction],
        rule: &dyn ContentRule,
    ) -> std::result::Result<Vote, BlockFault> {
        state.check_block(header, txs, Some(rule))?;
        self.vote_for_checked(header)
    }

    /// The vote of [`Validator::consider`] for a block whose check has passed: refused
    /// only when the validator is honest and already voted for another block at this
    /// height.
    pub fn vote_for_checked(
        &mut self,
        header: &BlockHeader,
    ) -> std::result::Result<Vote, BlockFault> {
        let hash = header.hash();
        if self.behaviour == Behaviour::Honest
            && self.voted.get(&header.height).is_some_and(|h| *h != hash)
        {
            return Err(Rejection::AlreadyVoted {
                height: header.height,
            }
            .into());
        }
        // Heights below the tip can never be voted on again.
        self.voted = self.voted.split_off(&header.height);
        self.voted.insert(header.height, hash);
        Ok(self.vote(&hash))
    }
}

/// An agent whose export responds linearly to its price: `P = slope (lambda - offset)`,
/// MW (a test market for the [`SimplePriceRule`](super::SimplePriceRule)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearAgent {
    /// MW per $/MWh.
    pub slope: f64,
    /// Price at which the agent neither exports nor imports, $/MWh.
    pub offset: f64,
}

impl LinearAgent {
    /// Export at `price`, MW.
    pub fn export_at(&self, price: f64) -> f64 {
        self.slope * (price - self.offset)
    }
}

/// Why a proposal did not commit.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalFailure {
    /// Votes gathered.
    pub votes: usize,
    /// Each refusing validator's reason, by index.
    pub refusals: Vec<(u32, BlockFault)>,
}

/// Validators, agents and the ledger they build, in one process (no networking).
#[derive(Debug, Clone)]
pub struct Network {
    /// The committed state.
    pub state: LedgerState,
    /// The committed blocks and transactions.
    pub ledger: Ledger,
    /// The validators, by index.
    pub validators: Vec<Validator>,
    agents: Vec<KeyPair>,
    salts: Vec<[u8; 32]>,
    /// Whether the validators share one check of each proposed block (its outcome is the
    /// same pure function for each) instead of checking it each in turn. The decisions
    /// and the ledger are the same; only the work differs. Off by default, so that the
    /// recording's measured time is that of `n` checks, which eq. (1)'s model counts
    /// ([`crate::ledger::ProcessingTime::from_costs`]); a replay that wants the
    /// decisions alone turns it on.
    pub check_once: bool,
}

impl Network {
    /// A network with n = 3f + 1 validators (the first `equivocators` of them
    /// equivocating) and one agent per entry of `private_data`, all keyed from `seed`, and
    /// its genesis block: the parameters (`rci`, counts), each agent's key and salted
    /// commitment to its private data, each validator's key, signed by every validator.
    pub fn genesis(
        seed: u64,
        faults: u32,
        equivocators: u32,
        rci: &RciSettings,
        private_data: &[&[u8]],
        timestamp_ms: u64,
    ) -> Result<Self> {
        if faults > MAX_FAULTS {
            return Err(Error::invalid(
                "ledger.faults",
                faults,
                format!("a whole number in 0..={MAX_FAULTS}"),
            ));
        }
        let n = 3 * faults + 1;
        if equivocators > n {
            return Err(Error::invalid(
                "ledger.equivocators",
                equivocators,
                format!("a whole number in 0..={n} (the validators)"),
            ));
        }
        if private_data.is_empty() || private_data.len() > MAX_AGENTS as usize {
            return Err(Error::invalid(
                "ledger.agents",
                private_data.len(),
                format!("a whole number in 1..={MAX_AGENTS}"),
            ));
        }
        rci.validate()?;
        let m = private_data.len() as u32;
        let agents: Vec<KeyPair> = (0..m)
            .map(|i| KeyPair::derive(seed, Role::Agent, i))
            .collect();
        let salts: Vec<[u8; 32]> = (0..m).map(|i| derive_secret(seed, Role::Salt, i)).collect();
        let validators: Vec<Validator> = (0..n)
            .map(|j| {
                let b = if j < equivocators {
                    Behaviour::Equivocating
                } else {
                    Behaviour::Honest
                };
                Validator::new(seed, j, b)
            })
            .collect();
        let mut txs = vec![Transaction::record(TxBody::Parameters(
            ProtocolParameters {
                agents: m,
                validators: n,
                faults,
                rci: rci.clone(),
            },
        ))];
        for (i, (key, data)) in agents.iter().zip(private_data).enumerate() {
            txs.push(Transaction::record(TxBody::Agent(AgentRegistration {
                agent: i as u32,
                public_key: key.public_key(),
                commitment: commit_private_data(&salts[i], data),
            })));
        }
        for v in &validators {
            txs.push(Transaction::record(TxBody::Validator(
                ValidatorRegistration {
                    validator: v.index,
                    public_key: v.public_key(),
                },
            )));
        }
        let bytes: Vec<Vec<u8>> = txs.iter().map(Transaction::encode).collect();
        let header = BlockHeader {
            height: 0,
            prev_hash: [0; 32],
            merkle_root: merkle_root(&bytes),
            tx_count: txs.len() as u32,
            timestamp_ms,
            proposer: 0,
        };
        let hash = header.hash();
        let block = Block {
            header,
            votes: validators.iter().map(|v| v.vote(&hash)).collect(),
        };
        let state = LedgerState::from_genesis(&block, &txs).map_err(|f| {
            Error::invalid("ledger.genesis", f.rejection.to_string(), "a valid genesis")
        })?;
        let mut ledger = Ledger::default();
        ledger.push(block, txs);
        Ok(Network {
            state,
            ledger,
            validators,
            agents,
            salts,
            check_once: false,
        })
    }

    /// The salt of agent `agent`'s commitment (to open it).
    pub fn salt(&self, agent: u32) -> Option<[u8; 32]> {
        self.salts.get(agent as usize).copied()
    }

    /// Signs `body` with its signers' keys (an unknown signer is refused).
    pub fn sign(&self, body: TxBody) -> std::result::Result<Transaction, Rejection> {
        let message = body.encode();
        let signatures = body
            .signers()
            .into_iter()
            .map(|agent| {
                self.agents
                    .get(agent as usize)
                    .map(|k| k.sign(&message))
                    .ok_or(Rejection::UnknownSigner { agent })
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Transaction { body, signatures })
    }

    /// The honest next messages of (`run`, `hour`) for the agents `0..curves.len()`:
    /// iteration 0 at the committed initial price, then [`simple_price_update`] of the last
    /// committed iteration (every registered agent's message must be committed); each
    /// agent's power is its `curves` response to its new price.
    pub fn next_messages(
        &self,
        curves: &[LinearAgent],
        run: u32,
        hour: u32,
    ) -> std::result::Result<Vec<ConsensusMessage>, Rejection> {
        let rci = &self.state.params.rci;
        let last = self.state.last_iteration(run, hour);
        let previous = match last {
            None => None,
            Some(k) => Some(
                (0..self.state.params.agents)
                    .map(|agent| {
                        self.state.message(run, hour, k, agent).copied().ok_or(
                            Rejection::MissingPrevious {
                                iteration: k,
                                agent,
                            },
                        )
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?,
            ),
        };
        Ok(curves
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let price = match &previous {
                    Some(prev) => simple_price_update(prev, i, rci.chi, rci.kappa),
                    None => rci.initial_price,
                };
                ConsensusMessage {
                    run,
                    hour,
                    iteration: last.map_or(0, |k| k + 1),
                    agent: i as u32,
                    price,
                    power: c.export_at(price),
                    dual_upper: 0.0,
                    dual_lower: 0.0,
                    slope_down: c.slope,
                    slope_up: c.slope,
                    gap_down: f64::INFINITY,
                    gap_up: f64::INFINITY,
                }
            })
            .collect())
    }

    /// [`Self::next_messages`], each signed by its agent.
    pub fn signed_next_messages(
        &self,
        curves: &[LinearAgent],
        run: u32,
        hour: u32,
    ) -> std::result::Result<Vec<Transaction>, Rejection> {
        self.next_messages(curves, run, hour)?
            .into_iter()
            .map(|m| self.sign(TxBody::Consensus(m)))
            .collect()
    }

    /// Collects every validator's vote on `header` (index order); refusals are listed.
    pub fn collect_votes(
        &mut self,
        header: &BlockHeader,
        txs: &[Transaction],
        rule: &dyn ContentRule,
    ) -> (Vec<Vote>, Vec<(u32, BlockFault)>) {
        let mut votes = Vec::new();
        let mut refusals = Vec::new();
        // Each validator's check of the block is the same pure function of the committed
        // state, the block and the rule (the signatures' `verify_strict` most of it).
        let shared = self
            .check_once
            .then(|| self.state.check_block(header, txs, Some(rule)));
        for v in &mut self.validators {
            let vote = match &shared {
                Some(checked) => checked.clone().and_then(|()| v.vote_for_checked(header)),
                None => v.consider(&self.state, header, txs, rule),
            };
            match vote {
                Ok(vote) => votes.push(vote),
                Err(fault) => refusals.push((v.index, fault)),
            }
        }
        (votes, refusals)
    }

    /// Proposes a block of `txs` by validator `proposer`; it commits (and its hash is
    /// returned) when 2f + 1 validators vote for it.
    pub fn propose(
        &mut self,
        proposer: u32,
        txs: Vec<Transaction>,
        timestamp_ms: u64,
        rule: &dyn ContentRule,
    ) -> std::result::Result<Hash, ProposalFailure> {
        let header = self.state.next_header(&txs, timestamp_ms, proposer);
        let (votes, refusals) = self.collect_votes(&header, &txs, rule);
        self.commit(header, votes, txs)
            .map_err(|votes| ProposalFailure { votes, refusals })
    }

    /// Commits `header` with `votes` when they form a quorum; else returns the vote count.
    fn commit(
        &mut self,
        header: BlockHeader,
        votes: Vec<Vote>,
        txs: Vec<Transaction>,
    ) -> std::result::Result<Hash, usize> {
        let hash = header.hash();
        let keys = &self.state.validator_keys;
        if check_votes(keys, self.state.params.quorum(), &hash, &votes).is_err() {
            return Err(votes.len());
        }
        self.state.apply(&header, &txs);
        self.ledger.push(Block { header, votes }, txs);
        Ok(hash)
    }
}

/// Settings of [`simulate_equivocation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkSimulation {
    /// Seed of the keys and of the delivery order.
    pub seed: u64,
    /// Faults tolerated, f (n = 3f + 1 validators).
    pub faults: u32,
    /// Equivocating validators (the first ones by index).
    pub equivocators: u32,
    /// Rounds (block proposals).
    pub rounds: u32,
    /// Stop at the first fork.
    pub stop_at_fork: bool,
}

/// What [`simulate_equivocation`] observed.
#[derive(Debug, Clone)]
pub struct ForkReport {
    /// Rounds run.
    pub rounds: u32,
    /// Blocks committed after genesis.
    pub committed: u64,
    /// Rounds whose proposer equivocated (offered two blocks at one height).
    pub equivocations: u32,
    /// Rounds where no block reached a quorum (lost liveness, not safety).
    pub stalled: u32,
    /// Heights at which two different blocks both reached a quorum.
    pub forks: u32,
    /// The first fork's two quorum-certified blocks.
    pub first_fork: Option<(Block, Block)>,
    /// The state before the first fork (both of its blocks extend this tip).
    pub fork_base: Option<LedgerState>,
}

/// Validators that signed both blocks (the accountable equivocators of a fork).
pub fn double_signers(a: &Block, b: &Block) -> Vec<u32> {
    if a.header.height != b.header.height || a.hash() == b.hash() {
        return Vec::new();
    }
    a.votes
        .iter()
        .filter(|v| b.votes.iter().any(|w| w.validator == v.validator))
        .map(|v| v.validator)
        .collect()
}

/// A seeded simulation of rounds of a two-agent market on `rci` (constant step) with
/// equivocating validators. Each round, validator `round mod n` proposes the agents' next
/// messages. An equivocating proposer offers two blocks at the height (the second with a
/// later timestamp); every honest validator receives them in an order drawn from the
/// ChaCha stream and votes for the first valid one; equivocators vote for both. A block
/// with 2f + 1 valid votes commits; a fork is counted when both do (the chain continues on
/// the first).
///
/// No view change is modelled: when neither block reaches a quorum, the honest validators
/// stay locked on their votes and every later round at that height stalls (counted in
/// [`ForkReport::stalled`]). With e equivocators this cannot happen for e = f or
/// e = f + 1 (one block always gets 2f + 1 votes), but it can for 0 < e < f.
pub fn simulate_equivocation(
    sim: &ForkSimulation,
    rci: &RciSettings,
    rule: &dyn ContentRule,
) -> Result<ForkReport> {
    let curves = [
        LinearAgent {
            slope: 1.0,
            offset: 10.0,
        },
        LinearAgent {
            slope: 0.5,
            offset: 30.0,
        },
    ];
    let private: Vec<Vec<u8>> = curves
        .iter()
        .map(|c| super::keys::f64_bytes(&[c.slope, c.offset]))
        .collect();
    let private: Vec<&[u8]> = private.iter().map(Vec::as_slice).collect();
    let mut net = Network::genesis(sim.seed, sim.faults, sim.equivocators, rci, &private, 0)?;
    let mut rng = ChaCha8Rng::seed_from_u64(sim.seed);
    let n = net.validators.len() as u32;
    let mut report = ForkReport {
        rounds: 0,
        committed: 0,
        equivocations: 0,
        stalled: 0,
        forks: 0,
        first_fork: None,
        fork_base: None,
    };
    for round in 0..sim.rounds {
        report.rounds += 1;
        let proposer = round % n;
        let txs = net
            .signed_next_messages(&curves, 0, 0)
            .map_err(|r| Error::invalid("ledger.agents", r.to_string(), "registered signers"))?;
        let time = net.state.timestamp_ms + 1000;
        if net.validators[proposer as usize].behaviour == Behaviour::Honest {
            match net.propose(proposer, txs, time, rule) {
                Ok(_) => report.committed += 1,
                Err(_) => report.stalled += 1,
            }
            continue;
        }
        report.equivocations += 1;
        let first = net.state.next_header(&txs, time, proposer);
        let second = BlockHeader {
            timestamp_ms: time + 1,
            ..first
        };
        let (mut votes_a, mut votes_b) = (Vec::new(), Vec::new());
        for v in &mut net.validators {
            let a_first = rng.next_u64() & 1 == 0;
            let order = if a_first { [0, 1] } else { [1, 0] };
            for which in order {
                let (header, votes) = if which == 0 {
                    (&first, &mut votes_a)
                } else {
                    (&second, &mut votes_b)
                };
                if let Ok(vote) = v.consider(&net.state, header, &txs, rule) {
                    votes.push(vote);
                }
            }
        }
        let quorum = net.state.params.quorum();
        let keys = &net.state.validator_keys;
        let a_ok = check_votes(keys, quorum, &first.hash(), &votes_a).is_ok();
        let b_ok = check_votes(keys, quorum, &second.hash(), &votes_b).is_ok();
        if a_ok && b_ok {
            report.forks += 1;
            if report.first_fork.is_none() {
                report.fork_base = Some(net.state.clone());
                report.first_fork = Some((
                    Block {
                        header: first,
                        votes: votes_a.clone(),
                    },
                    Block {
                        header: second,
                        votes: votes_b.clone(),
                    },
                ));
            }
        }
        let committed = if a_ok {
            net.commit(first, votes_a, txs)
        } else if b_ok {
            net.commit(second, votes_b, txs)
        } else {
            Err(0)
        };
        match committed {
            Ok(_) => report.committed += 1,
            Err(_) => report.stalled += 1,
        }
        if sim.stop_at_fork && report.forks > 0 {
            break;
        }
    }
    Ok(report)
}

impl Ledger {
    /// Appends a block and its transactions (rows numbered by the block's height).
    pub(crate) fn push(&mut self, block: Block, txs: Vec<Transaction>) {
        let height = block.header.height;
        self.transactions
            .extend(txs.into_iter().enumerate().map(|(index, tx)| TxRecord {
                height,
                index: index as u32,
                tx,
            }));
        self.blocks.push(block);
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::SimplePriceRule;
    use super::*;
    use crate::rci::StepRule;

    fn rci() -> RciSettings {
        RciSettings {
            step_rule: StepRule::Constant,
            kappa: 0.1,
            ..RciSettings::default()
        }
    }

    const RULE: SimplePriceRule = SimplePriceRule { tolerance: 1e-12 };

    /// Two linear agents that balance at 50/3 $/MWh.
    fn two_curves() -> [LinearAgent; 2] {
        [
            LinearAgent {
                slope: 1.0,
                offset: 10.0,
            },
            LinearAgent {
                slope: 0.5,
                offset: 30.0,
            },
        ]
    }

    #[test]
    fn honest_rounds_commit_and_converge_to_the_hand_price() {
        let curves = two_curves();
        let mut net = Network::genesis(3, 1, 0, &rci(), &[b"a", b"b"], 0).unwrap();
        for round in 0..200u32 {
            let txs = net.signed_next_messages(&curves, 0, 0).unwrap();
            let t = net.state.timestamp_ms + 1000;
            net.propose(round % 4, txs, t, &RULE).unwrap();
        }
        assert_eq!(net.state.height, 200);
        assert_eq!(net.state.consensus_messages(), 400);
        // Balance: (p - 10) + 0.5 (p - 30) = 0 -> p = 50 / 3 $/MWh.
        let last = net.state.message(0, 0, 199, 0).unwrap();
        assert!((last.price - 50.0 / 3.0).abs() < 1e-9, "{}", last.price);
    }

    #[test]
    fn a_signed_but_wrong_price_is_refused_by_every_honest_validator() {
        let curves = two_curves();
        let mut net = Network::genesis(3, 1, 0, &rci(), &[b"a", b"b"], 0).unwrap();
        let first = net.signed_next_messages(&curves, 0, 0).unwrap();
        net.propose(0, first, 1000, &RULE).unwrap();
        let mut msgs = net.next_messages(&curves, 0, 0).unwrap();
        // FDIA on the price (eq. 6): the agent's own key signs a tampered value.
        msgs[1].price += 0.5;
        let txs: Vec<Transaction> = msgs
            .into_iter()
            .map(|m| net.sign(TxBody::Consensus(m)).unwrap())
            .collect();
        let failure = net.propose(1, txs, 2000, &RULE).unwrap_err();
        assert_eq!(failure.votes, 0);
        assert_eq!(failure.refusals.len(), 4);
        for (_, fault) in &failure.refusals {
            assert_eq!(fault.index, Some(1));
            assert!(
                matches!(fault.rejection, Rejection::Price { .. }),
                "{fault:?}"
            );
        }
        assert_eq!(net.state.height, 1);
        // A message signed by another agent's key is refused too.
        let mut msgs = net.next_messages(&curves, 0, 0).unwrap();
        let honest = net.sign(TxBody::Consensus(msgs[0])).unwrap();
        msgs[0].agent = 1;
        let forged = Transaction {
            body: TxBody::Consensus(msgs[0]),
            signatures: honest.signatures,
        };
        let failure = net.propose(1, vec![forged], 2000, &RULE).unwrap_err();
        assert!(matches!(
            failure.refusals[0].1.rejection,
            Rejection::Signature { agent: 1, .. }
        ));
    }

    /// Validators that share one check of each block decide as validators that check it
    /// each in turn: the same votes, refusals (with their reasons) and ledger, over
    /// honest rounds, a signed but wrong price and a forged signature.
    #[test]
    fn one_shared_check_decides_as_every_validators_own() {
        let curves = two_curves();
        let run = |check_once: bool| {
            let mut net = Network::genesis(3, 1, 0, &rci(), &[b"a", b"b"], 0).unwrap();
            net.check_once = check_once;
            let mut outcomes = Vec::new();
            for round in 0..30u32 {
                let t = net.state.timestamp_ms + 1000;
                let mut msgs = net.next_messages(&curves, 0, 0).unwrap();
                let txs: Vec<Transaction> = match round % 3 {
                    0 => net.signed_next_messages(&curves, 0, 0).unwrap(),
                    1 => {
                        msgs[1].price += 0.5;
                        msgs.into_iter()
                            .map(|m| net.sign(TxBody::Consensus(m)).unwrap())
                            .collect()
                    }
                    _ => {
                        let honest = net.sign(TxBody::Consensus(msgs[0])).unwrap();
                        msgs[0].agent = 1;
                        vec![Transaction {
                            body: TxBody::Consensus(msgs[0]),
                            signatures: honest.signatures,
                        }]
                    }
                };
                outcomes.push(format!("{:?}", net.propose(round % 4, txs, t, &RULE)));
            }
            (outcomes, net.state.height, net.state.tip)
        };
        let (each, shared) = (run(false), run(true));
        assert_eq!(each, shared);
        // Both kinds of refusal and commits happened.
        assert_eq!(each.1, 10);
        assert!(each.0.iter().any(|o| o.contains("Price")), "{:?}", each.0);
        assert!(
            each.0.iter().any(|o| o.contains("Signature")),
            "{:?}",
            each.0
        );
    }

    #[test]
    fn an_honest_validator_votes_once_per_height() {
        let net = Network::genesis(5, 1, 0, &rci(), &[b"a"], 0).unwrap();
        let a = net.state.next_header(&[], 10, 0);
        let b = net.state.next_header(&[], 11, 0);
        let mut v = net.validators[1].clone();
        assert!(v.consider(&net.state, &a, &[], &RULE).is_ok());
        assert!(
            v.consider(&net.state, &a, &[], &RULE).is_ok(),
            "same block again"
        );
        assert_eq!(
            v.consider(&net.state, &b, &[], &RULE)
                .unwrap_err()
                .rejection,
            Rejection::AlreadyVoted { height: 1 }
        );
        let mut e = Validator::new(5, 1, Behaviour::Equivocating);
        assert!(e.consider(&net.state, &a, &[], &RULE).is_ok());
        assert!(e.consider(&net.state, &b, &[], &RULE).is_ok());
        assert!(
            net.validators
                .iter()
                .all(|v| v.behaviour == Behaviour::Honest)
        );
    }

    #[test]
    fn genesis_commits_to_private_data_and_next_messages_need_every_agent() {
        let curves = [LinearAgent {
            slope: 1.0,
            offset: 10.0,
        }; 2];
        let mut net = Network::genesis(9, 1, 0, &rci(), &[b"curve a", b"curve b"], 0).unwrap();
        let salt = net.salt(1).unwrap();
        assert!(super::super::keys::opens_commitment(
            &net.state.commitments[1],
            &salt,
            b"curve b"
        ));
        assert!(!super::super::keys::opens_commitment(
            &net.state.commitments[1],
            &salt,
            b"curve a"
        ));
        assert_eq!(net.salt(2), None);
        // Only agent 0 sends at iteration 0: iteration 1 cannot be computed.
        let first = net.signed_next_messages(&curves[..1], 0, 0).unwrap();
        net.propose(0, first, 1000, &RULE).unwrap();
        assert_eq!(
            net.next_messages(&curves, 0, 0),
            Err(Rejection::MissingPrevious {
                iteration: 0,
                agent: 1
            })
        );
    }

    #[test]
    fn genesis_refuses_bad_sizes() {
        assert!(Network::genesis(1, 1, 5, &rci(), &[b"a"], 0).is_err());
        assert!(Network::genesis(1, MAX_FAULTS + 1, 0, &rci(), &[b"a"], 0).is_err());
        assert!(Network::genesis(1, 1, 0, &rci(), &[], 0).is_err());
        let bad = RciSettings { chi: 2.0, ..rci() };
        assert!(Network::genesis(1, 1, 0, &bad, &[b"a"], 0).is_err());
    }
}
