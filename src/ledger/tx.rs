//! Transactions: the agents' consensus messages and hourly settlements, and the genesis
//! records (protocol parameters, agent and validator registrations), with their canonical
//! encodings.

use crate::rci::{DualUpdate, NewtonSignals, PowerUpdate, RciSettings, StartPrice, StepRule};

use super::encoding::{
    DecodeError, Reader, TAG_AGENT, TAG_CONSENSUS, TAG_PARAMETERS, TAG_SETTLEMENT, TAG_VALIDATOR,
    Writer,
};
use super::{Hash, PublicKey, SignatureBytes};

/// One agent's RCI message of one iteration (its state after the iteration, eq. 31-42).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsensusMessage {
    /// Run index (a batch or sweep run).
    pub run: u32,
    /// Market hour, 0-based.
    pub hour: u32,
    /// RCI iteration, 0 = the starting point.
    pub iteration: u32,
    /// Agent index, which also names the signer.
    pub agent: u32,
    /// Local price lambda_i, $/MWh.
    pub price: f64,
    /// Export P_i, MW.
    pub power: f64,
    /// Upper-limit dual H_up, $/MWh.
    pub dual_upper: f64,
    /// Lower-limit dual H_lo, $/MWh.
    pub dual_lower: f64,
    /// The agent's local slope when the price moves down, MW per $/MWh (what the Newton
    /// step of the next iteration sums, [`NewtonSignals`]).
    pub slope_down: f64,
    /// Its local slope when the price moves up, MW per $/MWh.
    pub slope_up: f64,
    /// Distance to its next change of slope below, $/MWh; `+inf` when none.
    pub gap_down: f64,
    /// Distance to its next change of slope above, $/MWh; `+inf` when none.
    pub gap_up: f64,
}

impl ConsensusMessage {
    /// The agent's state the message reports (price, power and duals).
    pub fn state(&self) -> crate::rci::AgentState {
        crate::rci::AgentState {
            price: self.price,
            power: self.power,
            dual_upper: self.dual_upper,
            dual_lower: self.dual_lower,
        }
    }
}

impl ConsensusMessage {
    /// The Newton signals the message carries.
    pub fn signals(&self) -> NewtonSignals {
        NewtonSignals {
            slope_down: self.slope_down,
            slope_up: self.slope_up,
            gap_down: self.gap_down,
            gap_up: self.gap_up,
        }
    }
}

/// One hourly trade, signed by both counterparties.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settlement {
    /// Market hour, 0-based.
    pub hour: u32,
    /// Selling agent.
    pub seller: u32,
    /// Buying agent.
    pub buyer: u32,
    /// Traded power, MW (one hour, so also MWh).
    pub mw: f64,
    /// Price, $/MWh.
    pub price: f64,
    /// Amount the buyer pays, $ (= mw x price).
    pub cost: f64,
}

/// The protocol parameters the genesis block commits.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolParameters {
    /// Number of market agents.
    pub agents: u32,
    /// Number of validators, n = 3f + 1.
    pub validators: u32,
    /// Faults tolerated, f; a block commits with 2f + 1 validator signatures.
    pub faults: u32,
    /// The RCI settings (chi, the step rule and every other field).
    pub rci: RciSettings,
}

impl ProtocolParameters {
    /// Signatures a block needs, 2f + 1.
    pub fn quorum(&self) -> usize {
        2 * self.faults as usize + 1
    }
}

/// A genesis record: an agent's public key and the commitment to its private data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentRegistration {
    /// Agent index.
    pub agent: u32,
    /// Its Ed25519 public key.
    pub public_key: PublicKey,
    /// `SHA256(0x03 || salt || private data)` (e.g. its offer curve).
    pub commitment: Hash,
}

/// A genesis record: a validator's public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidatorRegistration {
    /// Validator index.
    pub validator: u32,
    /// Its Ed25519 public key.
    pub public_key: PublicKey,
}

/// What a transaction says (the signed part).
#[derive(Debug, Clone, PartialEq)]
pub enum TxBody {
    /// An agent's RCI message; signed by that agent.
    Consensus(ConsensusMessage),
    /// An hourly settlement; signed by the seller, then the buyer.
    Settlement(Settlement),
    /// Genesis only: the protocol parameters; unsigned.
    Parameters(ProtocolParameters),
    /// Genesis only: an agent's key and commitment; unsigned.
    Agent(AgentRegistration),
    /// Genesis only: a validator's key; unsigned.
    Validator(ValidatorRegistration),
}

/// A transaction: its body and the signatures of its signers, in [`TxBody::signers`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    /// The signed content.
    pub body: TxBody,
    /// One signature per signer over [`TxBody::encode`].
    pub signatures: Vec<SignatureBytes>,
}

fn step_rule_code(r: StepRule) -> u8 {
    match r {
        StepRule::Constant => 0,
        StepRule::Diminishing => 1,
        StepRule::Newton => 2,
    }
}

fn dual_update_code(r: DualUpdate) -> u8 {
    match r {
        DualUpdate::Exact => 0,
        DualUpdate::Gradient => 1,
    }
}

fn power_update_code(r: PowerUpdate) -> u8 {
    match r {
        PowerUpdate::Plain => 0,
        PowerUpdate::Relaxed => 1,
    }
}

/// Appends the canonical bytes of `rci` (the field order of the module doc): every field,
/// each number by its bits. Also the settings' part of a sweep run's twin key
/// ([`crate::sweep::RunValues::twin_key`]).
pub(crate) fn write_rci(w: &mut Writer, rci: &RciSettings) {
    // Destructured so that a new field is a compile error here, not a silent omission.
    let RciSettings {
        chi,
        step_rule,
        kappa,
        kappa_decay,
        newton_damping,
        slope_floor,
        dual_update,
        xi,
        power_update,
        relax_gamma,
        price_tol,
        power_tol,
        dual_tol,
        balance_tol,
        max_iterations,
        initial_price,
        start_price,
    } = *rci;
    w.f64(chi)
        .u8(step_rule_code(step_rule))
        .f64(kappa)
        .f64(kappa_decay)
        .f64(newton_damping)
        .f64(slope_floor)
        .u8(dual_update_code(dual_update))
        .f64(xi)
        .u8(power_update_code(power_update))
        .f64(relax_gamma)
        .f64(price_tol)
        .f64(power_tol)
        .f64(dual_tol)
        .f64(balance_tol)
        .u32(max_iterations)
        .f64(initial_price)
        .u8(start_price_code(start_price));
}

fn start_price_code(r: StartPrice) -> u8 {
    match r {
        StartPrice::Common => 0,
        StartPrice::OwnMarginal => 1,
    }
}

fn read_rci(r: &mut Reader<'_>) -> Result<RciSettings, DecodeError> {
    let chi = r.f64("rci.chi")?;
    let step_rule = match r.u8("rci.step_rule")? {
        0 => StepRule::Constant,
        1 => StepRule::Diminishing,
        2 => StepRule::Newton,
        value => {
            return Err(DecodeError::Code {
                field: "rci.step_rule",
                value,
            });
        }
    };
    let kappa = r.f64("rci.kappa")?;
    let kappa_decay = r.f64("rci.kappa_decay")?;
    let newton_damping = r.f64("rci.newton_damping")?;
    let slope_floor = r.f64("rci.slope_floor")?;
    let dual_update = match r.u8("rci.dual_update")? {
        0 => DualUpdate::Exact,
        1 => DualUpdate::Gradient,
        value => {
            return Err(DecodeError::Code {
                field: "rci.dual_update",
                value,
            });
        }
    };
    let xi = r.f64("rci.xi")?;
    let power_update = match r.u8("rci.power_update")? {
        0 => PowerUpdate::Plain,
        1 => PowerUpdate::Relaxed,
        value => {
            return Err(DecodeError::Code {
                field: "rci.power_update",
                value,
            });
        }
    };
    Ok(RciSettings {
        chi,
        step_rule,
        kappa,
        kappa_decay,
        newton_damping,
        slope_floor,
        dual_update,
        xi,
        power_update,
        relax_gamma: r.f64("rci.relax_gamma")?,
        price_tol: r.f64("rci.price_tol")?,
        power_tol: r.f64("rci.power_tol")?,
        dual_tol: r.f64("rci.dual_tol")?,
        balance_tol: r.f64("rci.balance_tol")?,
        max_iterations: r.u32("rci.max_iterations")?,
        initial_price: r.f64("rci.initial_price")?,
        start_price: match r.u8("rci.start_price")? {
            0 => StartPrice::Common,
            1 => StartPrice::OwnMarginal,
            value => {
                return Err(DecodeError::Code {
                    field: "rci.start_price",
                    value,
                });
            }
        },
    })
}

impl TxBody {
    /// The type tag of the body's encoding.
    pub fn tag(&self) -> u8 {
        match self {
            TxBody::Consensus(_) => TAG_CONSENSUS,
            TxBody::Settlement(_) => TAG_SETTLEMENT,
            TxBody::Parameters(_) => TAG_PARAMETERS,
            TxBody::Agent(_) => TAG_AGENT,
            TxBody::Validator(_) => TAG_VALIDATOR,
        }
    }

    /// The agents that must sign the body, in signature order.
    pub fn signers(&self) -> Vec<u32> {
        match self {
            TxBody::Consensus(m) => vec![m.agent],
            TxBody::Settlement(s) => vec![s.seller, s.buyer],
            TxBody::Parameters(_) | TxBody::Agent(_) | TxBody::Validator(_) => Vec::new(),
        }
    }

    /// Whether the body may only appear in the genesis block.
    pub fn is_genesis_record(&self) -> bool {
        matches!(
            self,
            TxBody::Parameters(_) | TxBody::Agent(_) | TxBody::Validator(_)
        )
    }

    /// The canonical bytes of the body: the message its signers sign.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::record(self.tag());
        match self {
            TxBody::Consensus(m) => {
                w.u32(m.run)
                    .u32(m.hour)
                    .u32(m.iteration)
                    .u32(m.agent)
                    .f64(m.price)
                    .f64(m.power)
                    .f64(m.dual_upper)
                    .f64(m.dual_lower)
                    .f64(m.slope_down)
                    .f64(m.slope_up)
                    .f64(m.gap_down)
                    .f64(m.gap_up);
            }
            TxBody::Settlement(s) => {
                w.u32(s.hour)
                    .u32(s.seller)
                    .u32(s.buyer)
                    .f64(s.mw)
                    .f64(s.price)
                    .f64(s.cost);
            }
            TxBody::Parameters(p) => {
                w.u32(p.agents).u32(p.validators).u32(p.faults);
                write_rci(&mut w, &p.rci);
            }
            TxBody::Agent(a) => {
                w.u32(a.agent).raw(&a.public_key).raw(&a.commitment);
            }
            TxBody::Validator(v) => {
                w.u32(v.validator).raw(&v.public_key);
            }
        }
        w.bytes
    }

    /// Reads a body from `r` (version byte and tag included).
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let tag = r.header()?;
        Ok(match tag {
            TAG_CONSENSUS => TxBody::Consensus(ConsensusMessage {
                run: r.u32("run")?,
                hour: r.u32("hour")?,
                iteration: r.u32("iteration")?,
                agent: r.u32("agent")?,
                price: r.f64("price")?,
                power: r.f64("power")?,
                dual_upper: r.f64("dual_upper")?,
                dual_lower: r.f64("dual_lower")?,
                slope_down: r.f64("slope_down")?,
                slope_up: r.f64("slope_up")?,
                gap_down: r.f64("gap_down")?,
                gap_up: r.f64("gap_up")?,
            }),
            TAG_SETTLEMENT => TxBody::Settlement(Settlement {
                hour: r.u32("hour")?,
                seller: r.u32("seller")?,
                buyer: r.u32("buyer")?,
                mw: r.f64("mw")?,
                price: r.f64("price")?,
                cost: r.f64("cost")?,
            }),
            TAG_PARAMETERS => TxBody::Parameters(ProtocolParameters {
                agents: r.u32("agents")?,
                validators: r.u32("validators")?,
                faults: r.u32("faults")?,
                rci: read_rci(r)?,
            }),
            TAG_AGENT => TxBody::Agent(AgentRegistration {
                agent: r.u32("agent")?,
                public_key: r.array("public_key")?,
                commitment: r.array("commitment")?,
            }),
            TAG_VALIDATOR => TxBody::Validator(ValidatorRegistration {
                validator: r.u32("validator")?,
                public_key: r.array("public_key")?,
            }),
            found => {
                return Err(DecodeError::Tag {
                    found,
                    record: "transaction",
                });
            }
        })
    }
}

impl Transaction {
    /// An unsigned genesis record.
    pub fn record(body: TxBody) -> Self {
        Transaction {
            body,
            signatures: Vec::new(),
        }
    }

    /// The canonical bytes: the body's bytes, then each signature's 64 bytes (their
    /// number is fixed by the type tag). These bytes are the Merkle leaf's data.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.body.encode();
        for s in &self.signatures {
            bytes.extend_from_slice(s);
        }
        bytes
    }

    /// Decodes [`Transaction::encode`]'s bytes; every byte must be used.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let body = TxBody::read(&mut r)?;
        let signatures = (0..body.signers().len())
            .map(|_| r.array::<64>("signature"))
            .collect::<Result<Vec<_>, _>>()?;
        r.finish("transaction")?;
        Ok(Transaction { body, signatures })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> ConsensusMessage {
        ConsensusMessage {
            run: 1,
            hour: 2,
            iteration: 3,
            agent: 1,
            price: 21.5,
            power: -4.25,
            dual_upper: 0.0,
            dual_lower: 1.0,
            slope_down: 0.5,
            slope_up: 0.25,
            gap_down: 3.0,
            gap_up: f64::INFINITY,
        }
    }

    #[test]
    fn every_body_round_trips_with_its_documented_length() {
        let bodies = [
            (TxBody::Consensus(message()), 2 + 16 + 64),
            (
                TxBody::Settlement(Settlement {
                    hour: 5,
                    seller: 0,
                    buyer: 1,
                    mw: 10.0,
                    price: 20.0,
                    cost: 200.0,
                }),
                2 + 12 + 24,
            ),
            (
                TxBody::Parameters(ProtocolParameters {
                    agents: 2,
                    validators: 4,
                    faults: 1,
                    rci: RciSettings::default(),
                }),
                2 + 12 + 12 * 8 + 4 + 4,
            ),
            (
                TxBody::Agent(AgentRegistration {
                    agent: 3,
                    public_key: [7; 32],
                    commitment: [9; 32],
                }),
                2 + 4 + 64,
            ),
            (
                TxBody::Validator(ValidatorRegistration {
                    validator: 2,
                    public_key: [5; 32],
                }),
                2 + 4 + 32,
            ),
        ];
        for (body, len) in bodies {
            let bytes = body.encode();
            assert_eq!(bytes.len(), len, "{body:?}");
            assert_eq!(bytes[0], super::super::encoding::VERSION);
            let tx = Transaction {
                signatures: vec![[3; 64]; body.signers().len()],
                body,
            };
            let all = tx.encode();
            assert_eq!(Transaction::decode(&all).as_ref(), Ok(&tx));
            assert!(Transaction::decode(&all[..all.len() - 1]).is_err());
            let mut longer = all.clone();
            longer.push(0);
            assert!(Transaction::decode(&longer).is_err());
        }
    }

    #[test]
    fn consensus_layout_is_fixed() {
        let bytes = TxBody::Consensus(message()).encode();
        assert_eq!(&bytes[..6], &[2, TAG_CONSENSUS, 1, 0, 0, 0]);
        assert_eq!(&bytes[18..26], &21.5f64.to_le_bytes());
        // The four Newton signals close the record, in the documented order.
        assert_eq!(&bytes[50..58], &0.5f64.to_le_bytes());
        assert_eq!(&bytes[58..66], &0.25f64.to_le_bytes());
        assert_eq!(&bytes[66..74], &3.0f64.to_le_bytes());
        assert_eq!(&bytes[74..82], &f64::INFINITY.to_le_bytes());
    }

    #[test]
    fn unknown_codes_are_refused() {
        let mut bytes = TxBody::Parameters(ProtocolParameters {
            agents: 2,
            validators: 4,
            faults: 1,
            rci: RciSettings::default(),
        })
        .encode();
        // The step-rule byte follows the tag, three u32 and chi.
        bytes[2 + 12 + 8] = 9;
        assert_eq!(
            Transaction::decode(&bytes),
            Err(DecodeError::Code {
                field: "rci.step_rule",
                value: 9
            })
        );
    }
}
