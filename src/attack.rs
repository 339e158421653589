//! False-data-injection attacks on the RCI negotiation (eq. 2-6 of Kavousi-Fard 2021:
//! `X_bad = X + c` on a target set), and the ledger's defence against them.
//!
//! # Threat model
//!
//! In every iteration `m` each agent sends one message: its price, power, the duals of its
//! trade limits and its Newton signals (slopes and gaps, see [`crate::rci::NewtonSignals`]);
//! iteration 0's message is its starting point. An attack slot alters one field of one
//! agent's messages of the iterations `first_iteration ..= last_iteration` as every *other*
//! agent receives them (the sender knows its own values): the receivers use `X + c`. The
//! consensus weight chi is the exception: it is a parameter each agent applies to its own
//! price update, and an attack on chi makes the target compute its message `m` with
//! `chi + c` (the paper's Case II).
//!
//! What each receiver does with a received field:
//!
//! | variable | used by the receivers in |
//! |---|---|
//! | `price` | its consensus term, eq. (31)-(32), the market's mean price and its stop rules |
//! | `power` | its trade balance (the innovation term), its Newton step and its stop rules |
//! | `dual_upper`, `dual_lower` | its dual stop rule, eq. (45) |
//! | `slope` | its Newton step (both directions' slopes get `c`) |
//! | `gap` | its Newton step on a flat stretch (both directions' finite gaps get `c`) |
//! | `chi` | the target's own price update (its message is computed with `chi + c`) |
//! | `stealthy_price` | as `price`, with a receiver-dependent sign (below) |
//!
//! Each agent therefore runs the negotiation on its own view: its own true values and the
//! others' received ones, its own innovation step and Newton memory. The negotiation stops
//! when the stop rules hold in every agent's view.
//!
//! # Stealthy injection
//!
//! What a receiver can check of the negotiation, with nothing but the messages it receives
//! and its own state (in its view, every iteration): the stop rules' residuals, eq.
//! (43)-(45) (how much each received price, power and dual changed since the iteration
//! before); the trade balance `|sum_i P_i|`; and the price agreement, the spread of the
//! prices it sees. These are its bad-data detector: a negotiation whose checks never
//! settle is visibly under attack (every undefended `price` or `power` injection that
//! lasts shows as a spread or an imbalance that never closes).
//!
//! `stealthy_price` is the injection of eq. (4), which leaves that residue unchanged: the
//! target's price as every other agent receives it is `lambda_t + c`, and every other
//! agent's price as the target receives it is `lambda_i - c` (an attacker on the target's
//! links, altering both directions). With `mu_t = lambda_t + c` every view is the
//! attack-free negotiation of a *legitimate* market, one in which the target asks `c`
//! more for every MW (its curve shifted up by `c`): the target's view is that market's
//! with every price lowered by `c`, and the others' views are that market's. Every
//! residual a receiver computes is therefore one that honest agents could produce; with a
//! constant `c` from the starting messages the checks settle, the negotiation converges
//! and each agent believes the market agreed, while the target settles at `lambda_t` and
//! the others at `lambda_t + c`: a price wedge of `c` on every traded MW, which the
//! attacker on the links keeps. (A `c` that changes, or starts late, shows as one price
//! step of the size of the change, as an agent revising its offer would.) The ledger
//! rejects every altered copy like any other.
//!
//! # Defence
//!
//! [`Defence::Defended`]: every message reaches the receivers through the ledger
//! ([`crate::ledger`]). An altered copy fails the ledger's check and is rejected: a field
//! altered in transit breaks the sender's Ed25519 signature over the message's bytes, and
//! a price computed with a tampered chi fails the validators' recomputation of eq.
//! (31)-(32) from the committed parameters. The receiver then uses the sender's last
//! validated message, which is the genuine message of that iteration (the attacker can
//! alter copies, not the committed transaction: that takes f + 1 of the 3f + 1
//! validators), and the target recomputes a rejected price with the committed chi. The
//! defended negotiation is therefore the attack-free one, bit for bit; what the defence
//! adds is the count of rejected messages. An alteration that leaves a message's bytes
//! unchanged (`c = 0`, or `c` below the value's rounding) is no alteration: it is neither
//! counted nor rejected.
//!
//! [`Defence::Undefended`]: the receivers use the altered values.
//!
//! # Sizes
//!
//! The injected `c` of iteration `m` (see [`AttackSlot::offset`]):
//! - `constant`: `c = size`;
//! - `ramp`: `c = size * min(1, (m - first_iteration + 1) / ramp_iterations)`;
//! - `uniform`: `c = size * (2 u - 1)`, `u` uniform on [0, 1) from a counter-based hash of
//!   the slot's key, the hour and `m` (24-bit, so f32 and f64 draw the same `u`);
//! - `sign`: `c = size` or `-size` with probability 1/2 each, from the same `u`.
//!
//! Everything here is pure and integer-or-`+ - * /` arithmetic, so the WGSL kernel mirrors
//! it.

use serde::{Deserialize, Serialize};

use crate::error::{Bounds, Error, Result};

/// Most attack slots one run carries.
pub const MAX_ATTACKS: usize = 4;
/// Hours of a market day (the width of [`AttackSlot::hours`]).
const DAY_HOURS: u32 = 24;

/// The value an attack alters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
#[repr(u32)]
pub enum AttackVariable {
    /// The consensus weight chi the target applies in eq. (31)-(32).
    Chi = 1,
    /// The target's price message, $/MWh.
    Price = 2,
    /// The target's power (export) message, MW.
    Power = 3,
    /// The target's upper-limit dual message, $/MWh.
    DualUpper = 4,
    /// The target's lower-limit dual message, $/MWh.
    DualLower = 5,
    /// The target's Newton slopes (both directions), MW per $/MWh.
    Slope = 6,
    /// The target's Newton gaps (both directions, where finite), $/MWh.
    Gap = 7,
    /// A stealthy price wedge, $/MWh: the target's price as the others receive it `+ c`,
    /// and the others' prices as the target receives them `- c` (module docs, "Stealthy
    /// injection").
    StealthyPrice = 8,
}

impl AttackVariable {
    /// Every variable, in code order.
    pub const ALL: [AttackVariable; 8] = [
        AttackVariable::Chi,
        AttackVariable::Price,
        AttackVariable::Power,
        AttackVariable::DualUpper,
        AttackVariable::DualLower,
        AttackVariable::Slope,
        AttackVariable::Gap,
        AttackVariable::StealthyPrice,
    ];

    /// The variable's code (what the batch and the kernel carry; 0 = empty slot).
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The variable of a code, `None` for 0 or an unknown code.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.code() == code)
    }

    /// The name used in scenario files and tables.
    pub fn name(self) -> &'static str {
        match self {
            AttackVariable::Chi => "chi",
            AttackVariable::Price => "price",
            AttackVariable::Power => "power",
            AttackVariable::DualUpper => "dual_upper",
            AttackVariable::DualLower => "dual_lower",
            AttackVariable::Slope => "slope",
            AttackVariable::Gap => "gap",
            AttackVariable::StealthyPrice => "stealthy_price",
        }
    }
}

/// How the injected value `c` evolves over the attacked iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "snake_case")]
#[repr(u32)]
pub enum AttackShape {
    /// `c = size` in every attacked iteration.
    #[default]
    Constant = 0,
    /// `c` grows linearly to `size` over `ramp_iterations`, then stays.
    Ramp = 1,
    /// `c` uniform on `[-size, size)`, drawn afresh in every iteration (seeded).
    Uniform = 2,
    /// `c = +size` or `-size`, drawn afresh in every iteration (seeded).
    Sign = 3,
}

impl AttackShape {
    /// Every shape, in code order.
    pub const ALL: [AttackShape; 4] = [
        AttackShape::Constant,
        AttackShape::Ramp,
        AttackShape::Uniform,
        AttackShape::Sign,
    ];

    /// The shape's code.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The shape of a code.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.code() == code)
    }
}

/// Whether the market's messages go through the ledger (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "snake_case")]
#[repr(u32)]
pub enum Defence {
    /// The receivers use the altered values.
    #[default]
    Undefended = 0,
    /// The ledger rejects every altered message; the receivers use the validated one.
    Defended = 1,
}

impl Defence {
    /// Whether this is the default mode, [`Defence::Undefended`].
    pub fn is_undefended(&self) -> bool {
        *self == Defence::Undefended
    }

    /// The mode's code.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The mode of a code.
    pub fn from_code(code: u32) -> Option<Self> {
        [Defence::Undefended, Defence::Defended]
            .into_iter()
            .find(|v| v.code() == code)
    }
}

fn default_first_iteration() -> u32 {
    0
}

fn default_ramp_iterations() -> u32 {
    10
}

/// One `[[attack]]` table of a scenario: what is altered, where, when and by how much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attack {
    /// The altered value.
    pub variable: AttackVariable,
    /// The target agent: 0 = the smart grid, 1 = the microgrid.
    pub agent: u32,
    /// The attacked hours of the day, 0..=23 (as in the hourly table).
    pub hours: Vec<u32>,
    /// First attacked message iteration (0 = the starting messages).
    #[serde(default = "default_first_iteration")]
    pub first_iteration: u32,
    /// Attacked iterations from the first; absent: to the end of the negotiation.
    #[serde(default)]
    pub duration: Option<u32>,
    /// How `c` evolves.
    #[serde(default)]
    pub shape: AttackShape,
    /// The size of `c`, in the unit of the variable.
    pub size: f64,
    /// Iterations over which a `ramp` reaches `size`.
    #[serde(default = "default_ramp_iterations")]
    pub ramp_iterations: u32,
    /// Seed of a `uniform` or `sign` draw.
    #[serde(default)]
    pub seed: u64,
}

/// Largest `|size|` of an attack, in the variable's unit.
pub const MAX_SIZE: f64 = 1e9;
/// Largest iteration number an attack window may name.
pub const MAX_ITERATION: u32 = 10_000_000;

/// Why a market of one agent takes no attack.
pub const ONE_AGENT: &str = "an attack alters the messages one agent receives from another: \
     with the microgrid disabled the smart grid negotiates alone and no message is received";

impl Attack {
    /// Checks every field (`field` names the table, e.g. `attack[0]`); `agents` is the
    /// market's number of agents (at least two: see [`ONE_AGENT`]).
    pub fn validate(&self, field: &str, agents: usize) -> Result<()> {
        if agents < 2 {
            return Err(Error::invalid(
                field,
                format!(
                    "an attack on a market of {agents} agent{}",
                    if agents == 1 { "" } else { "s" }
                ),
                format!("none ({ONE_AGENT})"),
            ));
        }
        if self.agent as usize >= agents {
            return Err(Error::invalid(
                format!("{field}.agent"),
                self.agent,
                format!(
                    "0..={} (0 = the smart grid, 1 = the microgrid; this market has {agents} agents)",
                    agents - 1
                ),
            ));
        }
        if self.hours.is_empty() {
            return Err(Error::invalid(
                format!("{field}.hours"),
                "[]",
                "a non-empty list of hours 0..=23",
            ));
        }
        let mut seen = 0u32;
        for (i, &h) in self.hours.iter().enumerate() {
            if h >= DAY_HOURS {
                return Err(Error::invalid(
                    format!("{field}.hours[{i}]"),
                    h,
                    "an hour 0..=23",
                ));
            }
            if seen & (1 << h) != 0 {
                return Err(Error::invalid(
                    format!("{field}.hours[{i}]"),
                    h,
                    "each hour once",
                ));
            }
            seen |= 1 << h;
        }
        if self.first_iteration > MAX_ITERATION {
            return Err(Error::invalid(
                format!("{field}.first_iteration"),
                self.first_iteration,
                format!("0..={MAX_ITERATION}"),
            ));
        }
        if let Some(d) = self.duration
            && !(1..=MAX_ITERATION).contains(&d)
        {
            return Err(Error::invalid(
                format!("{field}.duration"),
                d,
                format!("1..={MAX_ITERATION} iterations (omit it for the whole negotiation)"),
            ));
        }
        Bounds::closed(-MAX_SIZE, MAX_SIZE, unit(self.variable))
            .check(&format!("{field}.size"), self.size)?;
        if !(1..=MAX_ITERATION).contains(&self.ramp_iterations) {
            return Err(Error::invalid(
                format!("{field}.ramp_iterations"),
                self.ramp_iterations,
                format!("1..={MAX_ITERATION}"),
            ));
        }
        Ok(())
    }

    /// The attack as a batch slot, for the run seeded `run_seed` in slot `index`.
    pub fn slot(&self, index: usize, run_seed: u64) -> AttackSlot {
        let last = match self.duration {
            Some(d) => self.first_iteration.saturating_add(d - 1),
            None => u32::MAX,
        };
        AttackSlot {
            variable: self.variable.code(),
            agent: self.agent,
            hours: self.hours.iter().fold(0, |m, &h| m | (1 << h)),
            first: self.first_iteration,
            last,
            shape: self.shape.code(),
            ramp_iterations: self.ramp_iterations,
            key: slot_key(self.seed ^ run_seed, index as u32),
            size: self.size,
        }
    }
}

/// The unit of an attacked variable, for error messages.
fn unit(v: AttackVariable) -> &'static str {
    match v {
        AttackVariable::Chi => "",
        AttackVariable::Price
        | AttackVariable::DualUpper
        | AttackVariable::DualLower
        | AttackVariable::Gap
        | AttackVariable::StealthyPrice => "$/MWh",
        AttackVariable::Power => "MW",
        AttackVariable::Slope => "MW/($/MWh)",
    }
}

/// Validates a scenario's attack list: at most [`MAX_ATTACKS`] tables, each valid.
pub fn validate_all(attacks: &[Attack], agents: usize) -> Result<()> {
    if attacks.len() > MAX_ATTACKS {
        return Err(Error::invalid(
            "attack",
            format!("{} tables", attacks.len()),
            format!("at most {MAX_ATTACKS} [[attack]] tables"),
        ));
    }
    for (i, a) in attacks.iter().enumerate() {
        a.validate(&format!("attack[{i}]"), agents)?;
    }
    Ok(())
}

/// One attack as every backend reads it: plain integers and one real, so the batch carries
/// it to the kernel unchanged. `variable == 0` is an empty slot.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttackSlot {
    /// [`AttackVariable`] code; 0 = empty.
    pub variable: u32,
    /// Target agent.
    pub agent: u32,
    /// Attacked hours, bit `h` for hour `h`.
    pub hours: u32,
    /// First attacked message iteration.
    pub first: u32,
    /// Last attacked message iteration (inclusive; `u32::MAX`: to the end).
    pub last: u32,
    /// [`AttackShape`] code.
    pub shape: u32,
    /// Iterations of a ramp.
    pub ramp_iterations: u32,
    /// Key of the seeded draws.
    pub key: u32,
    /// Size of `c`.
    pub size: f64,
}

impl AttackSlot {
    /// Whether the slot alters `variable` of `agent`'s message of iteration `m` in `hour`.
    pub fn hits(&self, variable: AttackVariable, agent: usize, hour: u32, m: u32) -> bool {
        self.variable == variable.code()
            && self.agent as usize == agent
            && hour < DAY_HOURS
            && self.hours & (1 << hour) != 0
            && m >= self.first
            && m <= self.last
    }

    /// Whether the slot attacks anything in `hour`.
    pub fn in_hour(&self, hour: u32) -> bool {
        self.variable != 0 && hour < DAY_HOURS && self.hours & (1 << hour) != 0
    }

    /// The injected `c` of iteration `m` of `hour` (the slot must be active there).
    pub fn offset(&self, hour: u32, m: u32) -> f64 {
        match AttackShape::from_code(self.shape) {
            Some(AttackShape::Constant) => self.size,
            Some(AttackShape::Ramp) => {
                let step = (m - self.first) as f64 + 1.0;
                self.size * (step / self.ramp_iterations as f64).min(1.0)
            }
            Some(AttackShape::Uniform) => self.size * (2.0 * unit_draw(self.key, hour, m) - 1.0),
            Some(AttackShape::Sign) => {
                if unit_draw(self.key, hour, m) < 0.5 {
                    -self.size
                } else {
                    self.size
                }
            }
            None => panic!("attack slot with unknown shape code {}", self.shape),
        }
    }
}

/// The attacks on one hour's negotiation and the defence mode.
#[derive(Debug, Clone, Copy)]
pub struct HourAttacks<'a> {
    /// The run's slots (those not attacking `hour` are ignored).
    pub slots: &'a [AttackSlot],
    /// The hour, 0..=23.
    pub hour: u32,
    /// Whether the ledger defends the messages.
    pub defence: Defence,
}

impl HourAttacks<'static> {
    /// No attack.
    pub const NONE: HourAttacks<'static> = HourAttacks {
        slots: &[],
        hour: 0,
        defence: Defence::Undefended,
    };
}

impl<'a> HourAttacks<'a> {
    /// The attacks of `slots` on `hour` under `defence`, keeping the slots up to the last
    /// one that attacks the hour (none when none does). Every use of a slot tests its hours
    /// first, so dropping the others changes no result; it spares an attack-free hour's
    /// iterations the scans of [`HourAttacks::any`] and the like, and an attacked hour's
    /// scans of the empty slots after its attacks: an undefended iteration of two agents
    /// asks [`HourAttacks::seen`] and the like a few dozen times.
    pub fn new(slots: &'a [AttackSlot], hour: u32, defence: Defence) -> Self {
        let used = slots
            .iter()
            .rposition(|s| s.in_hour(hour))
            .map_or(0, |last| last + 1);
        HourAttacks {
            slots: &slots[..used],
            hour,
            defence,
        }
    }
}

impl HourAttacks<'_> {
    /// Whether any slot attacks this hour.
    pub fn any(&self) -> bool {
        self.slots.iter().any(|s| s.in_hour(self.hour))
    }

    /// Whether the receivers use altered values this hour (an undefended attack).
    pub fn alters_views(&self) -> bool {
        self.defence == Defence::Undefended && self.any()
    }

    /// `value` as the receivers see `variable` of `agent`'s message of iteration `m`:
    /// plus every active slot's `c`.
    pub fn seen(&self, variable: AttackVariable, agent: usize, m: u32, value: f64) -> f64 {
        let mut v = value;
        for s in self.slots {
            if s.hits(variable, agent, self.hour, m) {
                v += s.offset(self.hour, m);
            }
        }
        v
    }

    /// Whether any slot targets `variable` of `agent` at iteration `m`.
    pub fn targets(&self, variable: AttackVariable, agent: usize, m: u32) -> bool {
        self.slots
            .iter()
            .any(|s| s.hits(variable, agent, self.hour, m))
    }

    /// The price of `sender`'s message of iteration `m` as `receiver` sees it: plus every
    /// active `price` slot's `c` on the sender and, for every active `stealthy_price` slot,
    /// `+ c` when the sender is its target and the receiver another agent, `- c` when the
    /// receiver is its target and the sender another agent; in slot order. A sender's own
    /// price is never altered for itself: call this for `receiver != sender` only.
    pub fn seen_price(&self, sender: usize, receiver: usize, m: u32, value: f64) -> f64 {
        let mut v = value;
        for s in self.slots {
            if s.hits(AttackVariable::Price, sender, self.hour, m) {
                v += s.offset(self.hour, m);
            } else if sender != receiver {
                if s.hits(AttackVariable::StealthyPrice, sender, self.hour, m) {
                    v += s.offset(self.hour, m);
                } else if s.hits(AttackVariable::StealthyPrice, receiver, self.hour, m) {
                    v -= s.offset(self.hour, m);
                }
            }
        }
        v
    }

    /// Whether a `stealthy_price` slot is active at iteration `m` (it alters the messages
    /// of its target and of every agent that sends to the target).
    pub fn wedges(&self, m: u32) -> bool {
        self.slots.iter().any(|s| {
            s.variable == AttackVariable::StealthyPrice.code()
                && s.in_hour(self.hour)
                && m >= s.first
                && m <= s.last
        })
    }
}

/// The seeded key of attack slot `index` of a run.
pub fn slot_key(seed: u64, index: u32) -> u32 {
    hash32(seed as u32 ^ hash32((seed >> 32) as u32 ^ hash32(index)))
}

/// A uniform draw on [0, 1) with 24 random bits (exact in f32 and f64) for `key`, `hour`
/// and iteration `m`.
pub fn unit_draw(key: u32, hour: u32, m: u32) -> f64 {
    let h = hash32(hash32(key ^ hash32(hour)) ^ m);
    (h >> 8) as f64 / (1u32 << 24) as f64
}

/// A 32-bit integer hash (Wellons' `lowbias32`), the same in WGSL.
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attack(variable: AttackVariable) -> Attack {
        Attack {
            variable,
            agent: 1,
            hours: vec![6, 10],
            first_iteration: 2,
            duration: Some(3),
            shape: AttackShape::Constant,
            size: 0.5,
            ramp_iterations: 4,
            seed: 7,
        }
    }

    #[test]
    fn slot_window_and_hours() {
        let s = attack(AttackVariable::Chi).slot(0, 0);
        assert_eq!(s.hours, (1 << 6) | (1 << 10));
        assert_eq!((s.first, s.last), (2, 4));
        assert!(!s.hits(AttackVariable::Chi, 1, 6, 1));
        assert!(s.hits(AttackVariable::Chi, 1, 6, 2));
        assert!(s.hits(AttackVariable::Chi, 1, 10, 4));
        assert!(!s.hits(AttackVariable::Chi, 1, 10, 5));
        assert!(!s.hits(AttackVariable::Chi, 1, 7, 3));
        assert!(!s.hits(AttackVariable::Chi, 0, 6, 3));
        assert!(!s.hits(AttackVariable::Price, 1, 6, 3));
        let whole = Attack {
            duration: None,
            ..attack(AttackVariable::Power)
        }
        .slot(0, 0);
        assert!(whole.hits(AttackVariable::Power, 1, 6, u32::MAX));
    }

    /// `HourAttacks::new` keeps a run's slots only in the hours one of them attacks, and
    /// an hour without them sees every message as sent.
    #[test]
    fn hour_attacks_keep_their_slots_only_where_one_attacks() {
        let slots = [
            attack(AttackVariable::Price).slot(0, 0),
            AttackSlot::default(),
            attack(AttackVariable::Power).slot(2, 0),
        ];
        for hour in 0..DAY_HOURS {
            let a = HourAttacks::new(&slots, hour, Defence::Defended);
            let attacked = hour == 6 || hour == 10;
            assert_eq!(a.slots.len(), if attacked { 3 } else { 0 }, "hour {hour}");
            assert_eq!(
                (a.any(), a.hour, a.defence),
                (attacked, hour, Defence::Defended)
            );
            // What every hour's receivers see is what the untrimmed slots give.
            let full = HourAttacks {
                slots: &slots,
                hour,
                defence: Defence::Defended,
            };
            for m in 0..6 {
                for v in [AttackVariable::Price, AttackVariable::Power] {
                    assert_eq!(a.targets(v, 1, m), full.targets(v, 1, m));
                    assert_eq!(a.seen(v, 1, m, 3.0), full.seen(v, 1, m, 3.0));
                }
                assert_eq!(a.seen_price(1, 0, m, 3.0), full.seen_price(1, 0, m, 3.0));
            }
        }
    }

    #[test]
    fn shapes() {
        let mut a = attack(AttackVariable::Price);
        a.shape = AttackShape::Ramp;
        let s = a.slot(0, 0);
        // Iterations 2, 3, 4 of a 4-iteration ramp to 0.5.
        assert_eq!(s.offset(6, 2), 0.125);
        assert_eq!(s.offset(6, 3), 0.25);
        assert_eq!(s.offset(6, 4), 0.375);
        a.ramp_iterations = 2;
        assert_eq!(a.slot(0, 0).offset(6, 4), 0.5);

        a.shape = AttackShape::Sign;
        let s = a.slot(0, 0);
        let draws: Vec<f64> = (0..2000).map(|m| s.offset(6, m)).collect();
        assert!(draws.iter().all(|&c| c == 0.5 || c == -0.5));
        let plus = draws.iter().filter(|&&c| c > 0.0).count();
        // Binomial(2000, 1/2): 6 standard deviations is +-134.
        assert!((866..=1134).contains(&plus), "{plus}");

        a.shape = AttackShape::Uniform;
        let s = a.slot(0, 0);
        let draws: Vec<f64> = (0..4000).map(|m| s.offset(10, m)).collect();
        assert!(draws.iter().all(|&c| (-0.5..0.5).contains(&c)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        // sd of the mean: 0.5 / sqrt(3 * 4000) = 0.0046.
        assert!(mean.abs() < 0.03, "{mean}");
        // Another hour, slot or seed draws other values.
        assert_ne!(s.offset(6, 3), s.offset(10, 3));
        assert_ne!(a.slot(1, 0).offset(10, 3), s.offset(10, 3));
        assert_ne!(a.slot(0, 1).offset(10, 3), s.offset(10, 3));
    }

    #[test]
    fn hash_matches_an_independent_computation() {
        // Computed in Python with 32-bit masking (the WGSL kernel wraps the same way).
        assert_eq!(hash32(0), 0);
        assert_eq!(hash32(1), 0x6889_90c0);
        assert_eq!(hash32(0xdead_beef), 0xe628_c683);
        assert_eq!(hash32(123_456), 0xbd21_11c0);
        assert_eq!(slot_key(7, 0), 0x948b_a1e6);
    }

    #[test]
    fn validation_names_the_field() {
        let ok = attack(AttackVariable::Gap);
        ok.validate("attack[0]", 2).unwrap();
        let alone = Attack {
            agent: 0,
            ..ok.clone()
        }
        .validate("attack[0]", 1)
        .unwrap_err()
        .to_string();
        assert!(
            alone.starts_with("invalid value for `attack[0]`: an attack on a market of 1 agent")
                && alone.contains("no message is received"),
            "{alone}"
        );
        let cases: Vec<(Attack, &str)> = vec![
            (
                Attack {
                    agent: 2,
                    ..ok.clone()
                },
                "attack[0].agent",
            ),
            (
                Attack {
                    hours: vec![],
                    ..ok.clone()
                },
                "attack[0].hours",
            ),
            (
                Attack {
                    hours: vec![24],
                    ..ok.clone()
                },
                "attack[0].hours[0]",
            ),
            (
                Attack {
                    hours: vec![3, 3],
                    ..ok.clone()
                },
                "attack[0].hours[1]",
            ),
            (
                Attack {
                    duration: Some(0),
                    ..ok.clone()
                },
                "attack[0].duration",
            ),
            (
                Attack {
                    size: f64::NAN,
                    ..ok.clone()
                },
                "attack[0].size",
            ),
            (
                Attack {
                    size: 2e9,
                    ..ok.clone()
                },
                "attack[0].size",
            ),
            (
                Attack {
                    ramp_iterations: 0,
                    ..ok.clone()
                },
                "attack[0].ramp_iterations",
            ),
            (
                Attack {
                    first_iteration: MAX_ITERATION + 1,
                    ..ok.clone()
                },
                "attack[0].first_iteration",
            ),
        ];
        for (a, field) in cases {
            let e = a.validate("attack[0]", 2).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
        let five = vec![ok; 5];
        let e = validate_all(&five, 2).unwrap_err().to_string();
        assert!(e.contains("at most 4"), "{e}");
    }
}
