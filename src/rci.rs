//! The Relaxed Consensus + Innovations (RCI) negotiation of one market hour: the f64 CPU
//! reference that every other backend is checked against.
//!
//! Equations (Kavousi-Fard 2021, after Hug, Kar & Wu 2015), for agents `i` on a complete
//! communication graph (two agents reproduce the paper exactly):
//! - price consensus + innovation, eq. (31)-(32):
//!   `lambda_i <- lambda_i - chi * sum_j (lambda_i - lambda_j) - kappa * sum_j P_j`;
//! - projected duals of the agent's power limits, eq. (33)-(36):
//!   `H_up <- max(0, H_up + xi (P - P_max))`, `H_lo <- max(0, H_lo + xi (P_min - P))`;
//! - set point from the agent's own response, eq. (37)-(38) with erratum 1 fixed (the
//!   lower-bound multiplier enters with a + sign):
//!   `PS = S_i(lambda_i - H_up + H_lo)`, where `S_i` is the agent's [`crate::offer::OfferCurve`]; for a
//!   single quadratic unit `S(p) = (p - c1) / (2 c2)`, the paper's `(-b + beta)/a`;
//! - power move, eq. (39)-(42): `P <- P + R (PS - P)`, with `R = 1` (plain C+I) or the
//!   paper's relaxation ratio `R = (|P| + gamma) / (|PS| + gamma)` (erratum 4: no source
//!   outside the paper; implemented as written, as an option);
//! - stop rules, eq. (43)-(45), on the infinity norms of the price, power and dual changes,
//!   plus a trade-balance tolerance on `|sum_i P_i|`.
//!
//! The innovation step `kappa` follows a [`StepRule`]. The paper's rule is a constant; the
//! default `Newton` rule divides by the agents' summed local offer slopes (each agent knows
//! its own slope and sends it with its price), safeguarded by a price bracket, so that the
//! market clears in a handful of iterations whatever the local slope.
//!
//! One iteration is [`step`] on an [`RciState`]; [`negotiate`] is the loop over it. The
//! WGSL kernel mirrors that one step, so there is one definition of an iteration to keep in
//! sync, and [`price_update`] is the one agent's message a validator can recompute.

use serde::{Deserialize, Serialize};

use crate::attack::{AttackVariable, Defence, HourAttacks};
use crate::error::{Error, Result};
use crate::offer::CurveView;

/// How the innovation step `kappa^k` of eq. (31)-(32) is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepRule {
    /// `kappa^k = kappa` (the paper).
    Constant,
    /// `kappa^k = kappa / (1 + k / kappa_decay)`.
    Diminishing,
    /// `kappa^k = newton_damping / max(sum_i slope_i, slope_floor)`, kept inside the price
    /// bracket observed so far (a safeguarded Newton step on the trade balance).
    Newton,
}

/// How powers move towards their set points, eq. (39)-(42).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerUpdate {
    /// `R = 1`: the power jumps to the set point (plain C+I).
    Plain,
    /// `R = (|P| + gamma) / (|PS| + gamma)`, eq. (41)-(42) as printed.
    Relaxed,
}

/// How each agent's duals on its trade limits are updated, eq. (33)-(36).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DualUpdate {
    /// The agent's exact multipliers: `H_up = max(0, lambda - p_up)`, `H_lo = max(0,
    /// p_lo - lambda)`, where `p_up` is the highest price at which its own curve stays
    /// within `P_max` and `p_lo` the lowest at which it reaches `P_min`. This is the fixed
    /// point of eq. (33)-(36), reached at once: the set point is the agent's response
    /// clamped to its limits, and the multiplier is the price gap a binding limit holds.
    Exact,
    /// Projected dual ascent with step `xi`, eq. (33)-(36) as printed:
    /// `H_up <- max(0, H_up + xi (P - P_max))`, `H_lo <- max(0, H_lo + xi (P_min - P))`.
    Gradient,
}

/// Where each agent's price starts, before any message is exchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartPrice {
    /// Every agent at `initial_price` (the paper's runs): the agents' prices then never
    /// disagree, so the consensus term (and chi) does nothing.
    Common,
    /// Each agent at its own marginal price at zero trade (its curve's price at export
    /// 0), what an agent knows before talking: the prices start apart and the consensus
    /// term pulls them together. The default (issue 9), so that chi is exercised.
    #[default]
    OwnMarginal,
}

/// Settings of the RCI negotiation. Every field has a default; see [`RciSettings::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RciSettings {
    /// Consensus weight chi of eq. (31)-(32), dimensionless, (0, 1]; with agents that start
    /// apart (the default `start_price`), below 2/agents ([`RciSettings::validate_for_agents`]).
    pub chi: f64,
    /// Innovation step rule.
    pub step_rule: StepRule,
    /// Innovation step kappa for `constant`/`diminishing`, ($/MWh) per MW.
    pub kappa: f64,
    /// Iterations over which a `diminishing` step halves, > 0.
    pub kappa_decay: f64,
    /// Damping of the `newton` step, (0, 1].
    pub newton_damping: f64,
    /// Smallest summed slope the `newton` step divides by, MW per $/MWh, > 0.
    pub slope_floor: f64,
    /// How the duals of the trade limits are updated, eq. (33)-(36).
    pub dual_update: DualUpdate,
    /// Dual step xi of eq. (33)-(36) with `dual_update = "gradient"`, ($/MWh) per MW.
    pub xi: f64,
    /// Power update rule of eq. (39)-(42).
    pub power_update: PowerUpdate,
    /// gamma of the relaxation ratio, eq. (41)-(42), MW, > 0.
    pub relax_gamma: f64,
    /// Price stop tolerance epsilon of eq. (43), $/MWh.
    pub price_tol: f64,
    /// Power stop tolerance gamma of eq. (44), MW.
    pub power_tol: f64,
    /// Dual stop tolerance tau of eq. (45), $/MWh.
    pub dual_tol: f64,
    /// Trade-balance stop tolerance on |sum_i P_i|, MW.
    pub balance_tol: f64,
    /// Iteration cap; reaching it is a reported non-convergence, not an error. A file may
    /// write it `1e4` ([`crate::input::de_count`]).
    #[serde(deserialize_with = "crate::input::de_count")]
    pub max_iterations: u32,
    /// Starting price of every agent with `start_price = "common"`, $/MWh.
    pub initial_price: f64,
    /// Where each agent's price starts (default: its own marginal price at zero trade).
    pub start_price: StartPrice,
}

impl Default for RciSettings {
    fn default() -> Self {
        RciSettings {
            chi: 0.5,
            step_rule: StepRule::Newton,
            kappa: 0.002,
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
            start_price: StartPrice::OwnMarginal,
        }
    }
}

impl RciSettings {
    /// Checks every field against its allowed range (the error names the field, the
    /// value and the range with its unit). The ranges, generous but physical:
    ///
    /// | field | allowed |
    /// |---|---|
    /// | `chi`, `newton_damping` | (0, 1]; `chi` below 2/agents with the default `start_price = "own_marginal"` ([`RciSettings::validate_for_agents`]) |
    /// | `kappa`, `xi` | (0, 1e3] ($/MWh)/MW |
    /// | `kappa_decay` | (0, 1e7] iterations |
    /// | `slope_floor` | (0, 1e6] MW/($/MWh) |
    /// | `relax_gamma` | (0, 1e6] MW |
    /// | `price_tol`, `dual_tol` | (0, 1e3] $/MWh |
    /// | `power_tol`, `balance_tol` | (0, 1e5] MW |
    /// | `initial_price` | [-1e6, 1e6] $/MWh |
    /// | `max_iterations` | 1..=10000000 |
    pub fn validate(&self) -> Result<()> {
        use crate::error::Bounds;
        let fraction = Bounds::above(0.0, 1.0, "");
        let step = Bounds::above(0.0, 1e3, "($/MWh)/MW");
        let price_tol = Bounds::above(0.0, 1e3, "$/MWh");
        let power_tol = Bounds::above(0.0, 1e5, "MW");
        for (field, value, range) in [
            ("chi", self.chi, fraction),
            ("kappa", self.kappa, step),
            (
                "kappa_decay",
                self.kappa_decay,
                Bounds::above(0.0, 1e7, "iterations"),
            ),
            ("newton_damping", self.newton_damping, fraction),
            (
                "slope_floor",
                self.slope_floor,
                Bounds::above(0.0, 1e6, "MW/($/MWh)"),
            ),
            ("xi", self.xi, step),
            (
                "relax_gamma",
                self.relax_gamma,
                Bounds::above(0.0, 1e6, "MW"),
            ),
            ("price_tol", self.price_tol, price_tol),
            ("power_tol", self.power_tol, power_tol),
            ("dual_tol", self.dual_tol, price_tol),
            ("balance_tol", self.balance_tol, power_tol),
            (
                "initial_price",
                self.initial_price,
                Bounds::closed(-1e6, 1e6, "$/MWh"),
            ),
        ] {
            // Named only on failure: a batch validates every run's settings.
            if !range.contains(value) {
                range.check(&format!("rci.{field}"), value)?;
            }
        }
        if self.max_iterations == 0 || self.max_iterations > 10_000_000 {
            return Err(Error::invalid(
                "rci.max_iterations",
                self.max_iterations,
                "a whole number in 1..=10000000",
            ));
        }
        Ok(())
    }
}

/// The smallest price and dual stop tolerances an f32 kernel can meet, $/MWh: one f32 ulp
/// of a ~50 $/MWh price is ~4e-6 $/MWh and moves the steepest smart-grid segment (~4 700
/// MW per $/MWh) by ~0.02 MW (`experiments/gpu_f32.toml`).
pub const F32_PRICE_TOL: f64 = 1e-3;
/// The smallest power and trade-balance stop tolerances an f32 kernel can meet, MW.
pub const F32_POWER_TOL: f64 = 1e-2;

/// The four stop tolerances of `s` that an f32 kernel must not go below, with their floors:
/// `(field, value, floor)`.
fn stop_tolerances(s: &RciSettings) -> [(&'static str, f64, f64); 4] {
    [
        ("price_tol", s.price_tol, F32_PRICE_TOL),
        ("dual_tol", s.dual_tol, F32_PRICE_TOL),
        ("power_tol", s.power_tol, F32_POWER_TOL),
        ("balance_tol", s.balance_tol, F32_POWER_TOL),
    ]
}

impl RciSettings {
    /// The stop tolerances below what an f32 kernel can meet ([`F32_PRICE_TOL`],
    /// [`F32_POWER_TOL`]), as `(field, value)` in the order price, dual, power, balance:
    /// hours negotiated in f32 under them stop at the iteration cap. Empty when f32 suits.
    pub fn tolerances_below_f32(&self) -> Vec<(&'static str, f64)> {
        stop_tolerances(self)
            .into_iter()
            .filter(|&(_, value, floor)| value < floor)
            .map(|(field, value, _)| (field, value))
            .collect()
    }

    /// The note for a user about to run these settings on an f32 kernel (`what` names
    /// where they come from): which stop tolerances f32 cannot meet and its floors, or
    /// `None` when it can meet them all.
    pub fn f32_note(&self, what: &str) -> Option<String> {
        let tight = self.tolerances_below_f32();
        if tight.is_empty() {
            return None;
        }
        let list: Vec<String> = tight.iter().map(|(f, v)| format!("{f} {v:e}")).collect();
        Some(format!(
            "f32 cannot meet {what} {}: the f32 kernel's floors are price and dual {F32_PRICE_TOL:e} \
             $/MWh, power and balance {F32_POWER_TOL:e} MW; hours under them stop at the \
             iteration cap (see experiments/gpu_f32.toml)",
            list.join(", "),
        ))
    }

    /// [`RciSettings::validate`], plus what depends on the number of agents: agents that
    /// start apart (`start_price = "own_marginal"`) need `chi < 2 / agents`. On a complete
    /// graph the consensus term multiplies each agent's disagreement with the mean by
    /// `1 - agents * chi` per iteration, so at `chi >= 2 / agents` it never damps (two
    /// agents at chi = 1 swap prices forever). With a common start the prices never
    /// disagree and chi has no effect, so (0, 1] stays allowed.
    pub fn validate_for_agents(&self, agents: usize) -> Result<()> {
        // chi's range under this start, checked first so that every refused chi (0 too)
        // is told the same range.
        if self.start_price == StartPrice::OwnMarginal && agents >= 2 {
            let bound = 2.0 / agents as f64;
            if !(self.chi > 0.0 && self.chi < bound) {
                return Err(Error::invalid(
                    "rci.chi",
                    self.chi,
                    format!(
                        "(0, {bound}) with start_price = \"own_marginal\" and {agents} agents: the consensus term damps the agents' disagreement only below 2/agents"
                    ),
                ));
            }
        }
        self.validate()
    }
}

/// One market participant in one hour: its offer curve and the power limits its duals
/// enforce (eq. 33-36).
#[derive(Debug, Clone, Copy)]
pub struct Agent<'a> {
    /// The agent's response to a price.
    pub curve: CurveView<'a>,
    /// Lowest export the agent may trade, MW (P_min of eq. 34/36).
    pub min_export: f64,
    /// Highest export the agent may trade, MW (P_max of eq. 33/35).
    pub max_export: f64,
}

/// The state of one agent after an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AgentState {
    /// Local price lambda_i, $/MWh.
    pub price: f64,
    /// Export P_i, MW.
    pub power: f64,
    /// Upper-limit dual H_up, $/MWh.
    pub dual_upper: f64,
    /// Lower-limit dual H_lo, $/MWh.
    pub dual_lower: f64,
}

/// One row of a kept trajectory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrajectoryPoint {
    /// Iteration number, 0 = the starting point.
    pub iteration: u32,
    /// Agent index.
    pub agent: u32,
    /// The agent's state after the iteration.
    pub state: AgentState,
}

/// The final residuals of a run (the left-hand sides of eq. 43-45 and the balance).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Residuals {
    /// max_i |lambda_i^{k+1} - lambda_i^k|, $/MWh.
    pub price_change: f64,
    /// max_i |P_i^{k+1} - P_i^k|, MW.
    pub power_change: f64,
    /// max over duals of the change, $/MWh.
    pub dual_change: f64,
    /// |sum_i P_i|, MW.
    pub balance: f64,
    /// max_{i,j} |lambda_i - lambda_j|, $/MWh.
    pub price_spread: f64,
}

/// Largest |price| ($/MWh) or |power| (MW) of a negotiation that has not diverged.
///
/// The test is a comparison of finite values, never one with NaN or infinity: WGSL lets
/// a GPU driver assume those never occur and fold such a test away, so the kernel, which
/// mirrors [`step`], would miss a divergence. A diverging iterate grows through 1e30 long
/// before it overflows (f32 reaches infinity at 3.4e38), so both stop at the same
/// iteration. 1e30 is far beyond any physical price or power.
pub const DIVERGENCE_LIMIT: f64 = 1e30;

/// `|x| <= DIVERGENCE_LIMIT` (false for NaN on the CPU).
pub fn within_divergence_limit(x: f64) -> bool {
    x.abs() <= DIVERGENCE_LIMIT
}

/// Whether a price or power of `agents` is beyond [`DIVERGENCE_LIMIT`] (or not a number):
/// the negotiation has diverged and stops.
pub fn diverged(agents: &[AgentState]) -> bool {
    !agents
        .iter()
        .all(|a| within_divergence_limit(a.price) && within_divergence_limit(a.power))
}

/// How one hour's negotiation ended. A run that diverged (a price or power beyond
/// [`DIVERGENCE_LIMIT`], or not a number) stops at once with `converged == false` and
/// `iterations` below the cap.
#[derive(Debug, Clone, PartialEq)]
pub struct HourOutcome {
    /// All stop rules held before the iteration cap.
    pub converged: bool,
    /// Iterations performed.
    pub iterations: u32,
    /// Final state of each agent.
    pub agents: Vec<AgentState>,
    /// Final residuals.
    pub residuals: Residuals,
    /// Per-iteration states, when asked for.
    pub trajectory: Vec<TrajectoryPoint>,
    /// Messages an attack altered (see [`crate::attack`]): (agent, iteration) pairs whose
    /// message differed from the genuine one in at least one bit.
    pub tampered: u32,
    /// Altered messages the ledger rejected (all of them when defended, none otherwise).
    pub rejected: u32,
}

impl HourOutcome {
    /// The market price: the mean of the agents' local prices, $/MWh.
    pub fn price(&self) -> f64 {
        mean_price(&self.agents)
    }
}

/// The market price of the agents' states: the mean of their local prices, $/MWh.
pub fn mean_price(agents: &[AgentState]) -> f64 {
    agents.iter().map(|a| a.price).sum::<f64>() / agents.len() as f64
}

/// Everything the RCI carries from one iteration to the next: the agents' states, the
/// prices where each agent's curve meets its trade limits, the Newton step's price bracket
/// and safeguard memory, the iteration counter and the last residuals.
///
/// Its storage is reused by [`RciState::reset`], so a batch backend negotiates hour after
/// hour in one state per thread without allocating.
#[derive(Debug, Clone, Default)]
pub struct RciState {
    /// The agents' current states.
    agents: Vec<AgentState>,
    /// The states before the last iteration; the next iteration's output buffer.
    previous: Vec<AgentState>,
    /// Per agent, the lowest price at which its curve reaches its `min_export` and the
    /// highest at which it stays within its `max_export` (the exact duals' thresholds).
    limit_prices: Vec<(f64, f64)>,
    /// Per agent, the count of breakpoints at or below the effective price of its last
    /// curve look-up: where the next look-up searches first
    /// ([`CurveView::export_at_near`]; it changes no result).
    guesses: Vec<usize>,
    /// The Newton step's bracket and safeguard memory.
    newton: NewtonMemory,
    /// Under an undefended attack, each agent's own Newton memory (its view of the
    /// messages differs from the others'); empty otherwise.
    views: Vec<NewtonMemory>,
    /// Iterations performed.
    iteration: u32,
    /// Residuals of the last iteration (all 0 before the first).
    residuals: Residuals,
    /// Messages altered by an attack so far.
    tampered: u32,
    /// Altered messages the ledger rejected so far.
    rejected: u32,
    /// Scratch of the attacked steps: every agent's view of the messages before an
    /// iteration (agent `r`'s at `r * n`), one agent's view after it, and the prices an
    /// agent receives (defended).
    view_old: Vec<AgentState>,
    view_new: Vec<AgentState>,
    seen_prices: Vec<f64>,
    slopes: Vec<(f64, f64)>,
}

impl RciState {
    /// The starting point: every agent at its [`start_price`] with its export there and
    /// zero duals, an unbounded bracket, no Newton step yet.
    pub fn new(agents: &[Agent<'_>], settings: &RciSettings) -> Self {
        let mut state = RciState::default();
        state.reset(agents, settings);
        state
    }

    /// Makes this state [`RciState::new`]`(agents, settings)`, reusing its storage.
    pub fn reset(&mut self, agents: &[Agent<'_>], settings: &RciSettings) {
        self.agents.clear();
        self.guesses.clear();
        for a in agents {
            let p0 = start_price(a, settings);
            let mut guess = 0;
            self.agents.push(AgentState {
                price: p0,
                power: a.curve.export_at_near(p0, &mut guess),
                dual_upper: 0.0,
                dual_lower: 0.0,
            });
            self.guesses.push(guess);
        }
        self.previous.clear();
        self.previous.extend_from_slice(&self.agents);
        self.limit_prices.clear();
        self.limit_prices.extend(agents.iter().map(|a| {
            (
                a.curve.lowest_price_reaching(a.min_export),
                a.curve.highest_price_within(a.max_export),
            )
        }));
        self.newton = NewtonMemory::default();
        self.views.clear();
        self.iteration = 0;
        self.residuals = Residuals::default();
        self.tampered = 0;
        self.rejected = 0;
    }

    /// The agents' current states.
    pub fn agents(&self) -> &[AgentState] {
        &self.agents
    }

    /// Iterations performed so far.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// Residuals of the last iteration (all 0 before the first).
    pub fn residuals(&self) -> Residuals {
        self.residuals
    }

    /// Messages an attack altered so far ([`HourOutcome::tampered`]).
    pub fn tampered(&self) -> u32 {
        self.tampered
    }

    /// Altered messages the ledger rejected so far ([`HourOutcome::rejected`]).
    pub fn rejected(&self) -> u32 {
        self.rejected
    }

    /// The Newton step's price bracket `(lo, hi)`, $/MWh (infinite ends: not yet seen).
    pub fn bracket(&self) -> (f64, f64) {
        self.newton.bracket
    }

    /// The market price: the mean of the agents' local prices, $/MWh.
    pub fn price(&self) -> f64 {
        mean_price(&self.agents)
    }

    /// Appends the current states to a trajectory, labelled with the iteration count.
    fn record(&self, trajectory: &mut Vec<TrajectoryPoint>) {
        trajectory.extend(
            self.agents
                .iter()
                .enumerate()
                .map(|(i, &state)| TrajectoryPoint {
                    iteration: self.iteration,
                    agent: i as u32,
                    state,
                }),
        );
    }
}

/// An agent's starting price under `settings.start_price`, $/MWh.
pub fn start_price(a: &Agent<'_>, settings: &RciSettings) -> f64 {
    match settings.start_price {
        StartPrice::Common => settings.initial_price,
        StartPrice::OwnMarginal => a.curve.price_at_export(0.0),
    }
}

/// Where the negotiation stands after an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// No stop rule holds yet.
    Running,
    /// Every stop rule of eq. (43)-(45) and the balance tolerance holds.
    Converged,
    /// A price or power is no longer finite (e.g. the relaxation ratio of eq. 41-42
    /// blowing up): the stop rules can never hold.
    Diverged,
}

/// What one iteration did: its residuals and the stop decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Changes of this iteration and the trade balance after it.
    pub residuals: Residuals,
    /// Whether to stop.
    pub progress: Progress,
}

/// Agent `i`'s new local price, eq. (31)-(32): consensus with every neighbour on the
/// complete graph, innovation on the trade balance,
/// `lambda_i - chi * sum_j (lambda_i - lambda_j) - kappa * mismatch`.
///
/// `prices` are every agent's prices in index order, the agent's own included: its term
/// is zero for a finite price, and carries a non-finite one into the result. Pure, so a
/// validator can recompute an agent's message from committed values.
pub fn price_update(
    own_price: f64,
    prices: impl IntoIterator<Item = f64>,
    chi: f64,
    kappa: f64,
    mismatch: f64,
) -> f64 {
    let disagreement: f64 = prices.into_iter().map(|p| own_price - p).sum();
    own_price - chi * disagreement - kappa * mismatch
}

/// Whether an agent is held at a trade limit by an exact dual: it does not respond to a
/// small price move (its local slope is 0), and its response resumes where the dual
/// vanishes.
fn held_at_limit(st: &AgentState, s: &RciSettings) -> bool {
    s.dual_update == DualUpdate::Exact && (st.dual_upper > 0.0 || st.dual_lower > 0.0)
}

/// Agent's local slope of its response when the price moves down (`downward`) or up, at
/// its effective price `lambda - H_up + H_lo`, MW per $/MWh; 0 while held at a limit. Its
/// curve search starts at `guess` (any guess gives the same slope).
#[inline(always)]
fn directional_slope_near(
    a: &Agent<'_>,
    st: &AgentState,
    s: &RciSettings,
    downward: bool,
    guess: usize,
) -> f64 {
    if held_at_limit(st, s) {
        0.0
    } else {
        a.curve
            .slope_near(st.price - st.dual_upper + st.dual_lower, downward, guess)
    }
}

/// How far the price can move down (`downward`) or up before the agent's response
/// changes slope, $/MWh: the distance to its curve's next breakpoint, or, while held at a
/// limit, the dual that holds it (`None`: no change that way).
fn directional_gap(a: &Agent<'_>, st: &AgentState, s: &RciSettings, downward: bool) -> Option<f64> {
    if held_at_limit(st, s) {
        return if downward && st.dual_upper > 0.0 {
            Some(st.dual_upper)
        } else if !downward && st.dual_lower > 0.0 {
            Some(st.dual_lower)
        } else {
            None
        };
    }
    let p = st.price - st.dual_upper + st.dual_lower;
    let b = a.curve.next_breakpoint(p, downward)?;
    Some(if downward { p - b } else { b - p })
}

/// What an agent tells the others, besides its state, so that every party can compute
/// the Newton step of the next iteration: its local slope and the distance to the next
/// change of slope, in both directions (the direction is the sign of the trade balance,
/// known only once every agent has sent its power). Local and private: a validator can
/// use these values but not check them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewtonSignals {
    /// Slope when the price moves down, MW per $/MWh.
    pub slope_down: f64,
    /// Slope when the price moves up, MW per $/MWh.
    pub slope_up: f64,
    /// Distance to the next change of slope below, $/MWh; `f64::INFINITY` when none.
    pub gap_down: f64,
    /// Distance to the next change of slope above, $/MWh; `f64::INFINITY` when none.
    pub gap_up: f64,
}

impl NewtonSignals {
    /// The agent's signals in its state `st` (the values [`step`] uses).
    pub fn of(a: &Agent<'_>, st: &AgentState, s: &RciSettings) -> Self {
        NewtonSignals {
            slope_down: directional_slope_near(a, st, s, true, 0),
            slope_up: directional_slope_near(a, st, s, false, 0),
            gap_down: directional_gap(a, st, s, true).unwrap_or(f64::INFINITY),
            gap_up: directional_gap(a, st, s, false).unwrap_or(f64::INFINITY),
        }
    }

    /// The slope and gap in one direction (`None`: no gap).
    pub fn toward(&self, downward: bool) -> (f64, Option<f64>) {
        let (slope, gap) = if downward {
            (self.slope_down, self.gap_down)
        } else {
            (self.slope_up, self.gap_up)
        };
        (slope, (gap != f64::INFINITY).then_some(gap))
    }
}

/// The Newton step's memory between iterations: the price bracket of the trade balance
/// and the last two price steps (the safeguard of [`newton_kappa`]). Valid while the duals
/// do not move (exact duals are functions of the price, so the balance stays one monotone
/// function of it); gradient duals that move reset it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewtonMemory {
    /// Price bracket `(lo, hi)`, $/MWh (infinite ends: not yet seen).
    pub bracket: (f64, f64),
    /// The last Newton price step, $/MWh.
    pub last_step: f64,
    /// The Newton price step before the last, $/MWh.
    pub step_before_last: f64,
}

impl Default for NewtonMemory {
    /// An unbounded bracket and no step yet.
    fn default() -> Self {
        NewtonMemory {
            bracket: (f64::NEG_INFINITY, f64::INFINITY),
            last_step: f64::INFINITY,
            step_before_last: f64::INFINITY,
        }
    }
}

impl NewtonMemory {
    /// The Newton step `kappa` at the iterate with trade balance `mismatch`, mean price
    /// `mean_price`, the agents' lowest and highest prices `(low, high)` ([`price_range`])
    /// and summed agents' `slope` in the direction of motion; `flat_distance` gives the
    /// nearest change of slope over the agents, asked for only on a flat stretch. Updates
    /// the bracket before the step and the step memory after it. Every party that knows
    /// these values computes the same bits: [`step`] from the curves, a validator from the
    /// agents' committed messages and [`NewtonSignals`].
    ///
    /// The bracket bounds the price at which the agents, all at one price, balance. Every
    /// agent's export is non-decreasing in its own price, so an excess (`mismatch > 0`)
    /// at prices `lambda_i` is at least as large with every agent at the highest of them:
    /// the balancing price is at most `high`. Likewise a shortage puts it at least at
    /// `low`. These bounds hold while the agents disagree, when the balance at their mean
    /// price is unknown: agents that start at their own marginal prices are all at zero
    /// trade, a balance of rounding noise whose sign says nothing about the mean price,
    /// and a bracket end set at the mean could exclude the solution and hold the step in
    /// a cycle. When the agents agree, `low = high` is their price.
    #[inline(always)]
    pub fn kappa(
        &mut self,
        mismatch: f64,
        mean_price: f64,
        (low, high): (f64, f64),
        slope: f64,
        flat_distance: impl FnOnce() -> Option<f64>,
        s: &RciSettings,
    ) -> f64 {
        let (lo, hi) = &mut self.bracket;
        if mismatch > 0.0 {
            *hi = hi.min(high);
        } else if mismatch < 0.0 {
            *lo = lo.max(low);
        }
        // On a flat stretch (summed slope below the floor) the step goes to the nearest
        // breakpoint of any agent in the direction of motion, instead of creeping at
        // mismatch / slope_floor across it.
        let flat = if slope < s.slope_floor {
            flat_distance()
        } else {
            None
        };
        let kappa = newton_kappa(
            mismatch,
            mean_price,
            slope,
            flat,
            self.bracket,
            self.step_before_last,
            s,
        );
        self.step_before_last = self.last_step;
        self.last_step = (kappa * mismatch).abs();
        kappa
    }
}

/// The nearest of `gaps`, `None` when there is none.
pub fn nearest_gap(gaps: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    gaps.into_iter()
        .flatten()
        .fold(None, |best: Option<f64>, d| {
            Some(best.map_or(d, |x| x.min(d)))
        })
}

/// The innovation step `kappa^k` of eq. (31)-(32) for the state's iteration, updating the
/// Newton bracket and safeguard memory.
#[inline(always)]
fn innovation_step(
    state: &mut RciState,
    agents: &[Agent<'_>],
    s: &RciSettings,
    mismatch: f64,
) -> f64 {
    if let Some(kappa) = scheduled_kappa(s, state.iteration) {
        return kappa;
    }
    // The states as long as `agents` (they always are), so that a caller that knows the
    // count lets the compiler unroll every loop below.
    let current = &state.agents[..agents.len()];
    let guesses = &state.guesses[..agents.len()];
    let mean_price = mean_price(current);
    let downward = mismatch > 0.0;
    // An indexed loop, which the compiler unrolls for a known count where the zipped
    // iterators' fold stayed a call; from -0.0, as `Sum for f64` starts, so the same bits.
    let mut slope = -0.0;
    for i in 0..agents.len() {
        slope += directional_slope_near(&agents[i], &current[i], s, downward, guesses[i]);
    }
    let flat = || {
        nearest_gap(
            agents
                .iter()
                .zip(current)
                .map(|(a, st)| directional_gap(a, st, s, downward)),
        )
    };
    let range = price_range(current);
    state
        .newton
        .kappa(mismatch, mean_price, range, slope, flat, s)
}

/// The innovation step of the rules that follow a schedule, at `iteration` (the number of
/// iterations done before this one): `kappa` for `constant`, `kappa / (1 + k /
/// kappa_decay)` for `diminishing`; `None` for `newton`, whose step depends on the
/// iterates ([`NewtonMemory::kappa`]).
pub fn scheduled_kappa(s: &RciSettings, iteration: u32) -> Option<f64> {
    match s.step_rule {
        StepRule::Constant => Some(s.kappa),
        StepRule::Diminishing => Some(s.kappa / (1.0 + iteration as f64 / s.kappa_decay)),
        StepRule::Newton => None,
    }
}

/// One RCI iteration from `state` (the one definition of an iteration: the GPU kernel and
/// any recomputation mirror it): the innovation step, then for every agent its price
/// (eq. 31-32, [`price_update`]), duals (eq. 33-36), set point (eq. 37-38) and power move
/// (eq. 39-42), then the residuals and the stop rules (eq. 43-45). `agents` and
/// `settings` must be those the state was made for; `settings` must have passed
/// [`RciSettings::validate`]. Deterministic: the same state and input give bit-identical
/// results. The iteration cap is the caller's (see [`negotiate_in`]).
///
/// `attacks` are the false-data injections on this hour ([`crate::attack`];
/// [`HourAttacks::NONE`] for none). Undefended, each agent steps on its own view of the
/// messages (its own values and the others' as received), with its own innovation step,
/// and the residuals are the largest over the agents' views; defended, the step is the
/// attack-free one. Either way the altered messages are counted (and, defended,
/// rejected), iteration 0's starting messages with the first step.
pub fn step(
    state: &mut RciState,
    agents: &[Agent<'_>],
    settings: &RciSettings,
    attacks: &HourAttacks<'_>,
) -> StepReport {
    if !attacks.any() {
        return step_free(state, agents, settings).0;
    }
    if state.iteration == 0 {
        for i in 0..agents.len() {
            note_message(state, agents, settings, attacks, i, 0, false);
        }
    }
    let (report, chi_altered) = if attacks.alters_views() {
        step_views(state, agents, settings, attacks)
    } else {
        step_shared(state, agents, settings, attacks)
    };
    let m = state.iteration;
    for i in 0..agents.len() {
        note_message(
            state,
            agents,
            settings,
            attacks,
            i,
            m,
            chi_altered & (1 << i) != 0,
        );
    }
    report
}

/// Counts agent `i`'s message of iteration `m` (its current state) as tampered, and as
/// rejected when defended, if an attack altered it: a received field that differs from the
/// genuine one in a bit, or (`chi_altered`) a price computed with a tampered chi that
/// differs from the one the committed chi gives.
fn note_message(
    state: &mut RciState,
    agents: &[Agent<'_>],
    s: &RciSettings,
    attacks: &HourAttacks<'_>,
    i: usize,
    m: u32,
    chi_altered: bool,
) {
    let st = state.agents[i];
    let field = |v: AttackVariable, x: f64| {
        attacks.targets(v, i, m) && attacks.seen(v, i, m, x).to_bits() != x.to_bits()
    };
    let signals = || NewtonSignals::of(&agents[i], &st, s);
    // A stealthy wedge alters the price differently for different receivers: the message
    // is altered when any receiver's copy differs.
    let wedged = || {
        attacks.wedges(m)
            && (0..agents.len()).any(|r| {
                r != i && attacks.seen_price(i, r, m, st.price).to_bits() != st.price.to_bits()
            })
    };
    let altered = chi_altered
        || field(AttackVariable::Price, st.price)
        || wedged()
        || field(AttackVariable::Power, st.power)
        || field(AttackVariable::DualUpper, st.dual_upper)
        || field(AttackVariable::DualLower, st.dual_lower)
        || (attacks.targets(AttackVariable::Slope, i, m) && {
            let g = signals();
            field(AttackVariable::Slope, g.slope_down) || field(AttackVariable::Slope, g.slope_up)
        })
        || (attacks.targets(AttackVariable::Gap, i, m) && {
            // An infinite gap (no change of slope that way) stays infinite.
            let g = signals();
            field(AttackVariable::Gap, g.gap_down) || field(AttackVariable::Gap, g.gap_up)
        });
    if altered {
        state.tampered += 1;
        if attacks.defence == Defence::Defended {
            state.rejected += 1;
        }
    }
}

/// Agent `i`'s price of iteration `m` would differ if computed with the attacked chi: the
/// chi attack altered its message.
#[allow(clippy::too_many_arguments)]
fn chi_alters(
    attacks: &HourAttacks<'_>,
    i: usize,
    m: u32,
    own_price: f64,
    prices: &[f64],
    s: &RciSettings,
    kappa: f64,
    mismatch: f64,
    genuine: f64,
) -> bool {
    attacks.targets(AttackVariable::Chi, i, m) && {
        let chi = attacks.seen(AttackVariable::Chi, i, m, s.chi);
        price_update(own_price, prices.iter().copied(), chi, kappa, mismatch).to_bits()
            != genuine.to_bits()
    }
}

/// The new duals, set point and power of agent `agent` (index `i`) from its state `me` at
/// its new price, eq. (33)-(42).
#[inline(always)]
fn respond(
    agent: &Agent<'_>,
    limit_prices: (f64, f64),
    me: AgentState,
    price: f64,
    s: &RciSettings,
    guess: &mut usize,
) -> AgentState {
    // eq. (33)-(36): projected dual ascent on the agent's power limits.
    let (dual_upper, dual_lower) = match s.dual_update {
        DualUpdate::Exact => {
            let (reaching_min, within_max) = limit_prices;
            (
                (price - within_max).max(0.0),
                (reaching_min - price).max(0.0),
            )
        }
        DualUpdate::Gradient => (
            (me.dual_upper + s.xi * (me.power - agent.max_export)).max(0.0),
            (me.dual_lower + s.xi * (agent.min_export - me.power)).max(0.0),
        ),
    };
    // eq. (37)-(38), erratum 1: the lower multiplier raises the effective price.
    let set_point = agent
        .curve
        .export_at_near(price - dual_upper + dual_lower, guess);
    // eq. (39)-(42).
    let ratio = match s.power_update {
        PowerUpdate::Plain => 1.0,
        PowerUpdate::Relaxed => {
            (me.power.abs() + s.relax_gamma) / (set_point.abs() + s.relax_gamma)
        }
    };
    AgentState {
        price,
        power: me.power + ratio * (set_point - me.power),
        dual_upper,
        dual_lower,
    }
}

/// Ends an iteration: the Newton memories' reset when gradient duals moved, the swap of
/// the new states in, the iteration count and the stop decision on `residuals`. `n` is
/// the number of agents (the states' length).
#[inline(always)]
fn finish_step(
    state: &mut RciState,
    n: usize,
    s: &RciSettings,
    residuals: Residuals,
) -> StepReport {
    let duals_moved = || {
        state
            .agents
            .iter()
            .zip(&state.previous)
            .any(|(o, n)| n.dual_upper != o.dual_upper || n.dual_lower != o.dual_lower)
    };
    if s.dual_update == DualUpdate::Gradient && duals_moved() {
        state.newton = NewtonMemory::default();
        state.views.fill(NewtonMemory::default());
    }
    std::mem::swap(&mut state.agents, &mut state.previous);
    state.residuals = residuals;
    state.iteration += 1;
    // A diverged iterate can never meet the stop rules: it is reported as not converged
    // after this iteration.
    let progress = if diverged(&state.agents[..n]) {
        Progress::Diverged
    } else if stop_rules_hold(&residuals, s) {
        Progress::Converged
    } else {
        Progress::Running
    };
    StepReport {
        residuals,
        progress,
    }
}

/// The attack-free iteration: every agent uses the same messages and one innovation step.
/// Returns the report, the innovation step and the trade balance it was taken on.
///
/// Two agents, the batch backends' market, take a copy of the body compiled for exactly
/// two: the same operations in the same order (so the same bits), with the loops over the
/// agents unrolled and their bounds checks gone.
fn step_free(
    state: &mut RciState,
    agents: &[Agent<'_>],
    s: &RciSettings,
) -> (StepReport, f64, f64) {
    match agents {
        [_, _] => step_free_body(state, &agents[..2], s),
        _ => step_free_body(state, agents, s),
    }
}

/// The body of [`step_free`], inlined into each of its calls.
#[inline(always)]
fn step_free_body(
    state: &mut RciState,
    agents: &[Agent<'_>],
    s: &RciSettings,
) -> (StepReport, f64, f64) {
    let n = agents.len();
    let mismatch: f64 = state.agents[..n].iter().map(|a| a.power).sum();
    let kappa = innovation_step(state, agents, s, mismatch);
    let (current, next) = (&state.agents[..n], &mut state.previous[..n]);
    let limit_prices = &state.limit_prices[..n];
    let guesses = &mut state.guesses[..n];
    for i in 0..n {
        let me = current[i];
        let price = price_update(
            me.price,
            current.iter().map(|o| o.price),
            s.chi,
            kappa,
            mismatch,
        );
        next[i] = respond(&agents[i], limit_prices[i], me, price, s, &mut guesses[i]);
    }
    let residuals = residuals_between(current, next);
    (finish_step(state, n, s, residuals), kappa, mismatch)
}

/// The iteration of an attacked hour when every agent uses the same messages (a defended
/// attack): [`step_free`], with the agents (bit `i`) whose price a chi attack would have
/// altered.
fn step_shared(
    state: &mut RciState,
    agents: &[Agent<'_>],
    s: &RciSettings,
    attacks: &HourAttacks<'_>,
) -> (StepReport, u64) {
    let m = state.iteration + 1;
    let (report, kappa, mismatch) = step_free(state, agents, s);
    // `previous` now holds the messages the step was computed from.
    state.seen_prices.clear();
    state
        .seen_prices
        .extend(state.previous.iter().map(|a| a.price));
    let mut chi_altered = 0u64;
    for i in 0..agents.len() {
        if chi_alters(
            attacks,
            i,
            m,
            state.previous[i].price,
            &state.seen_prices,
            s,
            kappa,
            mismatch,
            state.agents[i].price,
        ) {
            chi_altered |= 1 << i;
        }
    }
    (report, chi_altered)
}

/// Agent `r`'s view of the messages `states` of iteration `m`: its own state, and the
/// others' as received under `attacks`, written into `out` (as long as `states`).
#[inline(always)]
fn view_of(
    attacks: &HourAttacks<'_>,
    r: usize,
    m: u32,
    states: &[AgentState],
    out: &mut [AgentState],
) {
    for (j, (st, o)) in states.iter().zip(out.iter_mut()).enumerate() {
        *o = if j == r {
            *st
        } else {
            AgentState {
                price: attacks.seen_price(j, r, m, st.price),
                power: attacks.seen(AttackVariable::Power, j, m, st.power),
                dual_upper: attacks.seen(AttackVariable::DualUpper, j, m, st.dual_upper),
                dual_lower: attacks.seen(AttackVariable::DualLower, j, m, st.dual_lower),
            }
        };
    }
}

/// The undefended attacked iteration: each agent `r` computes its innovation step and
/// price from its own view of iteration `m - 1`'s messages, with its own Newton memory
/// and its chi (the target of a chi attack uses `chi + c`); its duals and power follow
/// from its own price as in the attack-free step. The residuals are the largest over
/// the agents' views of the messages before and after. Without an active injection every
/// view is the true state and the result is [`step_shared`]'s, bit for bit.
///
/// Two agents take a copy of the body compiled for exactly two, as in [`step_free`].
fn step_views(
    state: &mut RciState,
    agents: &[Agent<'_>],
    s: &RciSettings,
    attacks: &HourAttacks<'_>,
) -> (StepReport, u64) {
    match agents {
        [_, _] => step_views_body(state, &agents[..2], s, attacks),
        _ => step_views_body(state, agents, s, attacks),
    }
}

/// The body of [`step_views`], inlined into each of its calls.
#[inline(always)]
fn step_views_body(
    state: &mut RciState,
    agents: &[Agent<'_>],
    s: &RciSettings,
    attacks: &HourAttacks<'_>,
) -> (StepReport, u64) {
    let n = agents.len();
    let m = state.iteration + 1;
    if state.views.len() != n {
        state.views.clear();
        state.views.resize(n, state.newton);
    }
    let scheduled = scheduled_kappa(s, state.iteration);
    // Every agent's genuine Newton slopes, down and up (each receiver sees the others'
    // through the attack); the gaps, needed only on a flat stretch, are found there.
    let mut slopes = std::mem::take(&mut state.slopes);
    slopes.clear();
    if scheduled.is_none() {
        slopes.extend(agents.iter().zip(&state.agents).zip(&state.guesses).map(
            |((a, st), &guess)| {
                (
                    directional_slope_near(a, st, s, true, guess),
                    directional_slope_near(a, st, s, false, guess),
                )
            },
        ));
    }
    // Every receiver's view of iteration m - 1 (receiver r's in `old[r * n..][..n]`),
    // made once: the step and the residuals both read it.
    let (mut old, mut new) = (
        std::mem::take(&mut state.view_old),
        std::mem::take(&mut state.view_new),
    );
    old.resize(n * n, AgentState::default());
    new.resize(n, AgentState::default());
    for (r, view) in old.chunks_exact_mut(n).enumerate() {
        view_of(attacks, r, m - 1, &state.agents[..n], view);
    }
    let mut chi_altered = 0u64;
    for ((r, agent), view) in agents.iter().enumerate().zip(old.chunks_exact(n)) {
        let mismatch: f64 = view.iter().map(|a| a.power).sum();
        let kappa = match scheduled {
            Some(k) => k,
            None => {
                let downward = mismatch > 0.0;
                let signal = |j: usize, v: AttackVariable, x: f64| {
                    if j == r {
                        x
                    } else {
                        attacks.seen(v, j, m - 1, x)
                    }
                };
                let slope: f64 = slopes
                    .iter()
                    .enumerate()
                    .map(|(j, &(down, up))| {
                        signal(j, AttackVariable::Slope, if downward { down } else { up })
                    })
                    .sum();
                // `NewtonSignals::toward`'s gaps: an infinite one is none.
                let flat =
                    || {
                        nearest_gap(agents.iter().zip(&state.agents).enumerate().map(
                            |(j, (a, st))| {
                                directional_gap(a, st, s, downward)
                                    .filter(|&d| d != f64::INFINITY)
                                    .map(|d| signal(j, AttackVariable::Gap, d))
                            },
                        ))
                    };
                state.views[r].kappa(
                    mismatch,
                    mean_price(view),
                    price_range(view),
                    slope,
                    flat,
                    s,
                )
            }
        };
        let me = state.agents[r];
        let chi = attacks.seen(AttackVariable::Chi, r, m, s.chi);
        let prices = || view.iter().map(|a| a.price);
        let price = price_update(me.price, prices(), chi, kappa, mismatch);
        if attacks.targets(AttackVariable::Chi, r, m) {
            let genuine = price_update(me.price, prices(), s.chi, kappa, mismatch);
            if genuine.to_bits() != price.to_bits() {
                chi_altered |= 1 << r;
            }
        }
        state.previous[r] = respond(
            agent,
            state.limit_prices[r],
            me,
            price,
            s,
            &mut state.guesses[r],
        );
    }
    // Residuals: the largest over the agents' views of iteration m - 1 and m.
    let mut residuals = Residuals::default();
    for (r, view_before) in old.chunks_exact(n).enumerate() {
        view_of(attacks, r, m, &state.previous[..n], &mut new[..n]);
        let v = residuals_between(view_before, &new);
        residuals = Residuals {
            price_change: residuals.price_change.max(v.price_change),
            power_change: residuals.power_change.max(v.power_change),
            dual_change: residuals.dual_change.max(v.dual_change),
            balance: residuals.balance.max(v.balance),
            price_spread: residuals.price_spread.max(v.price_spread),
        };
    }
    (state.view_old, state.view_new) = (old, new);
    state.slopes = slopes;
    (finish_step(state, n, s, residuals), chi_altered)
}

/// Runs [`step`] from `state` until it converges or diverges, or the state reaches
/// `settings.max_iterations`; returns whether it converged. With a `trajectory`, the
/// starting state and every iterate are appended to it; without one nothing is allocated.
pub fn negotiate_in(
    state: &mut RciState,
    agents: &[Agent<'_>],
    settings: &RciSettings,
    attacks: &HourAttacks<'_>,
    mut trajectory: Option<&mut Vec<TrajectoryPoint>>,
) -> bool {
    if let Some(t) = trajectory.as_deref_mut() {
        state.record(t);
    }
    // `step` asks this of every iteration; an hour's attacks do not change within it.
    let free = !attacks.any();
    while state.iteration < settings.max_iterations {
        let report = if free {
            step_free(state, agents, settings).0
        } else {
            step(state, agents, settings, attacks)
        };
        if let Some(t) = trajectory.as_deref_mut() {
            state.record(t);
        }
        match report.progress {
            Progress::Running => {}
            Progress::Converged => return true,
            Progress::Diverged => return false,
        }
    }
    false
}

/// Two attack-free two-agent hours negotiated side by side, as [`negotiate_in`] would
/// negotiate each alone (without trajectories): every pass of the loop steps each hour
/// that still runs, so the two hours' independent dependency chains overlap in the core.
/// Each hour's iterates are exactly those of negotiating it alone. Returns whether each
/// converged.
pub fn negotiate_free_pair(
    (sa, aa): (&mut RciState, &[Agent<'_>; 2]),
    (sb, ab): (&mut RciState, &[Agent<'_>; 2]),
    settings: &RciSettings,
) -> (bool, bool) {
    let max = settings.max_iterations;
    let (mut pa, mut pb) = (Progress::Running, Progress::Running);
    loop {
        let run_a = pa == Progress::Running && sa.iteration < max;
        let run_b = pb == Progress::Running && sb.iteration < max;
        match (run_a, run_b) {
            (true, true) => {
                pa = step_free_body(sa, aa, settings).0.progress;
                pb = step_free_body(sb, ab, settings).0.progress;
            }
            (true, false) => pa = step_free_body(sa, aa, settings).0.progress,
            (false, true) => pb = step_free_body(sb, ab, settings).0.progress,
            (false, false) => break,
        }
    }
    (pa == Progress::Converged, pb == Progress::Converged)
}

/// Runs the RCI negotiation of one hour to its stop rules or to the iteration cap: the
/// loop of [`step`] from [`RciState::new`].
///
/// `settings` must have passed [`RciSettings::validate`]. The function is pure: the same
/// input gives bit-identical output.
pub fn negotiate(
    agents: &[Agent<'_>],
    settings: &RciSettings,
    keep_trajectory: bool,
) -> HourOutcome {
    negotiate_attacked(agents, settings, &HourAttacks::NONE, keep_trajectory)
}

/// [`negotiate`] under false-data injections ([`crate::attack`]).
pub fn negotiate_attacked(
    agents: &[Agent<'_>],
    settings: &RciSettings,
    attacks: &HourAttacks<'_>,
    keep_trajectory: bool,
) -> HourOutcome {
    let mut state = RciState::new(agents, settings);
    let mut trajectory = Vec::new();
    let converged = negotiate_in(
        &mut state,
        agents,
        settings,
        attacks,
        keep_trajectory.then_some(&mut trajectory),
    );
    HourOutcome {
        converged,
        iterations: state.iteration,
        agents: state.agents,
        residuals: state.residuals,
        trajectory,
        tampered: state.tampered,
        rejected: state.rejected,
    }
}

/// The safeguarded Newton innovation step: a full Newton step on the trade balance (on a
/// flat stretch, where the summed slope is below the floor, a step of `flat_distance` to the
/// nearest breakpoint). Inside a finite bracket `[lo, hi]` the step lands on the bracket's
/// middle instead when its target is not strictly inside, or when it is longer than half
/// the step before the last, `step_before_last` (the safeguard of Numerical Recipes'
/// `rtsafe`: the bracket keeps shrinking, so rounding cannot sustain a cycle between its
/// ends). A
/// balanced iterate (`|mismatch| <= balance_tol`) stays where it is: it takes the plain
/// Newton step (negligible at that mismatch), never the flat-stretch jump, clamped into the
/// bracket, so no step rule leaves it. Targets are checked with `f64` comparisons only, so
/// the GPU kernel can mirror them.
#[inline(always)]
pub fn newton_kappa(
    mismatch: f64,
    mean_price: f64,
    slope: f64,
    flat_distance: Option<f64>,
    (lo, hi): (f64, f64),
    step_before_last: f64,
    s: &RciSettings,
) -> f64 {
    let newton = s.newton_damping / slope.max(s.slope_floor);
    if mismatch == 0.0 {
        return newton;
    }
    let balanced = mismatch.abs() <= s.balance_tol;
    let kappa = match flat_distance {
        Some(d) if slope < s.slope_floor && !balanced => d / mismatch.abs(),
        _ => newton,
    };
    let target = mean_price - kappa * mismatch;
    if balanced {
        // The bracket's ends are earlier mean prices of opposite mismatch signs, so a
        // clamped target keeps the step's sign.
        let inside = target.max(lo).min(hi);
        if lo <= hi && inside != target {
            return (mean_price - inside) / mismatch;
        }
        return kappa;
    }
    // A step longer than half the step before the last is measured as |kappa * mismatch|,
    // the length the step memory keeps, not as |target - mean_price|: the same number in
    // exact arithmetic, but a shader compiler may rewrite (mean - x) - mean as -x (Vulkan
    // lets it reassociate; lavapipe does), and the last bit decides exact ties: after a
    // bisection, the flat step back to the bracket's end is exactly half the step before.
    if lo.is_finite()
        && hi.is_finite()
        && (!(target > lo && target < hi) || (kappa * mismatch).abs() > 0.5 * step_before_last)
    {
        let mid = 0.5 * (lo + hi);
        let k = (mean_price - mid) / mismatch;
        if k > 0.0 {
            return k;
        }
    }
    kappa
}

/// Whether the stop rules of eq. (43)-(45) and the balance tolerance hold for the
/// residuals of an iteration.
pub fn stop_rules_hold(r: &Residuals, s: &RciSettings) -> bool {
    r.price_change < s.price_tol
        && r.power_change < s.power_tol
        && r.dual_change < s.dual_tol
        && r.balance < s.balance_tol
        && r.price_spread < s.price_tol
}

/// The residuals of an iteration from the agents' states before (`old`) and after it
/// (`new`), in agent order.
pub fn residuals_between(old: &[AgentState], new: &[AgentState]) -> Residuals {
    let mut r = Residuals::default();
    for (o, n) in old.iter().zip(new) {
        r.price_change = r.price_change.max((n.price - o.price).abs());
        r.power_change = r.power_change.max((n.power - o.power).abs());
        r.dual_change = r
            .dual_change
            .max((n.dual_upper - o.dual_upper).abs())
            .max((n.dual_lower - o.dual_lower).abs());
    }
    r.balance = new.iter().map(|a| a.power).sum::<f64>().abs();
    r.price_spread = price_spread(new);
    r
}

/// The agents' lowest and highest prices, $/MWh (`(inf, -inf)` for no agent).
pub fn price_range(agents: &[AgentState]) -> (f64, f64) {
    let (mut pmin, mut pmax) = (f64::INFINITY, f64::NEG_INFINITY);
    for a in agents {
        pmin = pmin.min(a.price);
        pmax = pmax.max(a.price);
    }
    (pmin, pmax)
}

/// The spread of the agents' prices, `max_i lambda_i - min_i lambda_i`, $/MWh (`-inf`
/// for no agent).
pub fn price_spread(agents: &[AgentState]) -> f64 {
    let (pmin, pmax) = price_range(agents);
    pmax - pmin
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offer::{OfferCurve, QuadraticUnit};

    fn quad(c2: f64, c1: f64, pmin: f64, pmax: f64, fixed: f64) -> OfferCurve {
        let u = QuadraticUnit {
            c2,
            c1,
            c0: 0.0,
            pmin,
            pmax,
        };
        OfferCurve::from_units(&[u], fixed, 0.0).unwrap()
    }

    /// Two quadratic agents: seller c2=0.05, c1=10 on 0..200 MW; buyer with 100 MW load
    /// and a unit c2=0.1, c1=20 on 0..80 MW. Balance: (p-10)/0.1 + (p-20)/0.2 - 100 = 0
    /// -> 10p - 100 + 5p - 100 = 100 -> p = 20 $/MWh; seller 100 MW, buyer unit 0.
    fn hand_market() -> (OfferCurve, OfferCurve) {
        (
            quad(0.05, 10.0, 0.0, 200.0, 0.0),
            quad(0.1, 20.0, 0.0, 80.0, -100.0),
        )
    }

    /// Settings that start far from the hand solution (the default start, 20 $/MWh, is
    /// the equilibrium itself).
    /// Both agents from one price far from the equilibrium (the paper's common start).
    fn from_afar() -> RciSettings {
        RciSettings {
            initial_price: 45.0,
            start_price: StartPrice::Common,
            ..RciSettings::default()
        }
    }

    fn agents<'a>(a: &'a OfferCurve, b: &'a OfferCurve) -> [Agent<'a>; 2] {
        [
            Agent {
                curve: a.view(),
                min_export: -500.0,
                max_export: 500.0,
            },
            Agent {
                curve: b.view(),
                min_export: -500.0,
                max_export: 500.0,
            },
        ]
    }

    /// A random two-agent unit market (1-3 units each, the second agent short) with
    /// symmetric trade limits, and settings of rule combination `case` (every rule, dual
    /// and power update and start over 24 cases) capped at `max_iterations`.
    fn random_unit_market(
        rng: &mut rand_chacha::ChaCha8Rng,
        case: usize,
        max_iterations: u32,
    ) -> ((OfferCurve, OfferCurve), f64, RciSettings) {
        use rand::RngExt;
        let curve = |rng: &mut rand_chacha::ChaCha8Rng, fixed: f64| {
            let units: Vec<QuadraticUnit> = (0..rng.random_range(1..4))
                .map(|_| {
                    let pmin = rng.random_range(-20.0..20.0);
                    QuadraticUnit {
                        c2: rng.random_range(0.001..0.2),
                        c1: rng.random_range(0.0..60.0),
                        c0: rng.random_range(0.0..50.0),
                        pmin,
                        pmax: pmin + rng.random_range(0.0..150.0),
                    }
                })
                .collect();
            OfferCurve::from_units(&units, fixed, 0.0).unwrap()
        };
        let (fixed_a, fixed_b) = (rng.random_range(-50.0..50.0), rng.random_range(-200.0..0.0));
        let (a, b) = (curve(rng, fixed_a), curve(rng, fixed_b));
        let limit = rng.random_range(10.0..300.0);
        let s = RciSettings {
            step_rule: [StepRule::Newton, StepRule::Constant, StepRule::Diminishing][case % 3],
            dual_update: [DualUpdate::Exact, DualUpdate::Gradient][case / 3 % 2],
            power_update: [PowerUpdate::Relaxed, PowerUpdate::Plain][case / 6 % 2],
            start_price: [StartPrice::Common, StartPrice::OwnMarginal][case / 12 % 2],
            initial_price: rng.random_range(0.0..80.0),
            kappa: 0.05,
            max_iterations,
            ..RciSettings::default()
        };
        s.validate().unwrap();
        ((a, b), limit, s)
    }

    /// The agents of two curves with trade limits `[-limit, limit]`.
    fn limited_agents<'a>(a: &'a OfferCurve, b: &'a OfferCurve, limit: f64) -> [Agent<'a>; 2] {
        let mut pair = agents(a, b);
        for agent in &mut pair {
            (agent.min_export, agent.max_export) = (-limit, limit);
        }
        pair
    }

    /// Every value of a state the next iteration depends on or a record reports, as bits.
    fn whole_state_bits(st: &RciState) -> Vec<u64> {
        st.agents()
            .iter()
            .flat_map(|a| [a.price, a.power, a.dual_upper, a.dual_lower])
            .chain([st.bracket().0, st.bracket().1])
            .chain([
                st.residuals.price_change,
                st.residuals.power_change,
                st.residuals.dual_change,
                st.residuals.balance,
                st.residuals.price_spread,
            ])
            .map(f64::to_bits)
            .chain([u64::from(st.iteration())])
            .collect()
    }

    /// `step_free` runs two agents through a copy of its body compiled for exactly two;
    /// every other count, and this test, through the general one. Both must give the
    /// same bits at every iteration, over random unit markets and every rule.
    #[test]
    fn two_agents_step_the_same_in_the_specialised_and_the_general_body() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut iterations = 0;
        for case in 0..300 {
            let ((a, b), limit, s) = random_unit_market(&mut rng, case, 300);
            let pair = limited_agents(&a, &b, limit);
            let (mut fast, mut general) = (RciState::new(&pair, &s), RciState::new(&pair, &s));
            // A length the compiler cannot see, so the general body runs.
            let unknown: &[Agent<'_>] = std::hint::black_box(&pair[..]);
            for _ in 0..s.max_iterations {
                let (f, kf, mf) = step_free(&mut fast, &pair, &s);
                let (g, kg, mg) = step_free_body(&mut general, unknown, &s);
                iterations += 1;
                assert_eq!(
                    whole_state_bits(&fast),
                    whole_state_bits(&general),
                    "case {case}"
                );
                assert_eq!(
                    (kf.to_bits(), mf.to_bits()),
                    (kg.to_bits(), mg.to_bits()),
                    "case {case}"
                );
                assert_eq!(f.progress, g.progress, "case {case}");
                if f.progress != Progress::Running {
                    break;
                }
            }
        }
        assert!(iterations > 3_000, "{iterations} iterations");
    }

    #[test]
    fn paired_hours_negotiate_as_each_alone() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let (mut capped, mut unequal) = (0, 0);
        for case in 0..300 {
            // Low caps too, so that one hour of a pair stops at the cap while the other
            // converges, or both stop there.
            let cap = [3, 8, 40, 300][rng.random_range(0..4usize)];
            let ((a, b), la, s) = random_unit_market(&mut rng, case, cap);
            let ((c, d), lb, _) = random_unit_market(&mut rng, case, cap);
            let (first, second) = (limited_agents(&a, &b, la), limited_agents(&c, &d, lb));
            let alone = |agents: &[Agent<'_>]| {
                let mut st = RciState::new(agents, &s);
                let converged = negotiate_in(&mut st, agents, &s, &HourAttacks::NONE, None);
                (whole_state_bits(&st), converged)
            };
            let (mut x, mut y) = (RciState::new(&first, &s), RciState::new(&second, &s));
            let (cx, cy) = negotiate_free_pair((&mut x, &first), (&mut y, &second), &s);
            assert_eq!(
                (whole_state_bits(&x), cx),
                alone(&first),
                "case {case}, first"
            );
            assert_eq!(
                (whole_state_bits(&y), cy),
                alone(&second),
                "case {case}, second"
            );
            capped += usize::from(x.iteration() == cap || y.iteration() == cap);
            unequal += usize::from(x.iteration() != y.iteration());
        }
        assert!(
            capped > 30 && unequal > 100,
            "{capped} capped, {unequal} unequal"
        );
    }

    #[test]
    fn every_step_rule_reaches_the_hand_solution() {
        let (a, b) = hand_market();
        for rule in [StepRule::Newton, StepRule::Constant, StepRule::Diminishing] {
            let s = RciSettings {
                step_rule: rule,
                kappa: 0.05,
                max_iterations: 20_000,
                ..from_afar()
            };
            let out = negotiate(&agents(&a, &b), &s, false);
            assert!(out.converged, "{rule:?}: {:?}", out.residuals);
            assert!(
                (out.price() - 20.0).abs() < 1e-5,
                "{rule:?}: {}",
                out.price()
            );
            assert!((out.agents[0].power - 100.0).abs() < 1e-4, "{rule:?}");
            assert!((out.agents[1].power + 100.0).abs() < 1e-4, "{rule:?}");
        }
    }

    #[test]
    fn newton_needs_few_iterations_and_constant_many() {
        let (a, b) = hand_market();
        let newton = negotiate(&agents(&a, &b), &from_afar(), false);
        let constant = negotiate(
            &agents(&a, &b),
            &RciSettings {
                step_rule: StepRule::Constant,
                kappa: 0.01,
                ..from_afar()
            },
            false,
        );
        assert!(newton.converged && constant.converged);
        assert!(newton.iterations <= 10, "{}", newton.iterations);
        assert!(constant.iterations > newton.iterations);
    }

    #[test]
    fn too_large_constant_step_is_reported_not_an_error() {
        let (a, b) = hand_market();
        // kappa * slope = 1.0 * 15 >> 2: the price iteration diverges.
        let s = RciSettings {
            step_rule: StepRule::Constant,
            kappa: 1.0,
            max_iterations: 300,
            // A start off the integer lattice: from 45.0 the saturated steps of +-100 MW
            // happen to land exactly on the equilibrium.
            initial_price: 45.317,
            ..from_afar()
        };
        let out = negotiate(&agents(&a, &b), &s, false);
        assert!(!out.converged);
        assert_eq!(out.iterations, 300);
    }

    #[test]
    fn binding_limit_is_enforced_by_the_duals() {
        // Same market, but the buyer may import at most 60 MW. The seller then exports 60 MW
        // at marginal cost 10 + 0.1*60 = 16 $/MWh, which is the market price; the buyer's
        // unit makes the other 40 MW at marginal cost 20 + 0.2*40 = 28 $/MWh, so its
        // lower-limit dual is the scarcity rent 28 - 16 = 12 $/MWh (eq. 34/36).
        let (a, b) = hand_market();
        let ag = [
            Agent {
                curve: a.view(),
                min_export: -500.0,
                max_export: 500.0,
            },
            Agent {
                curve: b.view(),
                min_export: -60.0,
                max_export: 500.0,
            },
        ];
        let s = RciSettings {
            step_rule: StepRule::Constant,
            dual_update: DualUpdate::Gradient,
            kappa: 0.05,
            xi: 0.05,
            max_iterations: 50_000,
            ..from_afar()
        };
        let out = negotiate(&ag, &s, false);
        assert!(out.converged, "{:?}", out.residuals);
        assert!(
            out.iterations > 100,
            "the gradient duals creep: {}",
            out.iterations
        );
        assert!((out.agents[0].power - 60.0).abs() < 1e-4);
        assert!((out.price() - 16.0).abs() < 1e-4, "{}", out.price());
        assert!(
            (out.agents[1].dual_lower - 12.0).abs() < 1e-3,
            "{}",
            out.agents[1].dual_lower
        );
    }

    /// The smart grid's curve at case30's bus 8, hour 19, load x1.35 (issue 6, item 4): a
    /// near-vertical stretch (0.06 MW per $/MWh, below the slope floor) holds the balance.
    fn steep_stretch_curve() -> OfferCurve {
        OfferCurve::new(
            vec![3.8277, 3.8821, 4.2486, 4.2511, 25.0249, 26.0029, 4127.26],
            vec![-60.0, -51.2, -0.795, -0.5225, 0.75396, 0.778, 0.8007],
            vec![0.0; 7],
        )
        .unwrap()
    }

    #[test]
    fn balanced_iterate_on_a_flat_stretch_stays_inside_the_bracket() {
        // Balanced to 1e-16 MW with the summed slope under the floor: the flat-stretch
        // jump (20.77 $/MWh to the next breakpoint) used to leave the bracket and cycle.
        let s = RciSettings::default();
        let (mean, lo, hi) = (12.755, 12.75, 12.76);
        for mismatch in [1e-16, -1e-16, 5e-7, -5e-7] {
            let k = newton_kappa(mismatch, mean, 0.06, Some(20.77), (lo, hi), 1.0, &s);
            let target = mean - k * mismatch;
            assert!(k >= 0.0, "{mismatch}: {k}");
            assert!((lo..=hi).contains(&target), "{mismatch}: {target}");
            assert!(
                (target - mean).abs() <= 1e-6,
                "{mismatch}: moved to {target}"
            );
        }
        // Not balanced: the jump is taken, and a target outside the bracket goes to its middle.
        let k = newton_kappa(0.1, mean, 0.06, Some(20.77), (lo, hi), f64::INFINITY, &s);
        assert!((mean - k * 0.1 - 0.5 * (lo + hi)).abs() < 1e-12);
    }

    #[test]
    fn newton_on_a_steep_stretch_converges_without_cycling() {
        let c = steep_stretch_curve();
        let agent = [Agent {
            curve: c.view(),
            min_export: -60.0,
            max_export: 60.0,
        }];
        for dual_update in [DualUpdate::Exact, DualUpdate::Gradient] {
            let s = RciSettings {
                dual_update,
                ..RciSettings::default()
            };
            let out = negotiate(&agent, &s, false);
            assert!(out.converged, "{dual_update:?}: {:?}", out.residuals);
            assert!(out.iterations < 100, "{dual_update:?}: {}", out.iterations);
            // The crossing: 4.2511 + 0.5225 / (1.27646 / 20.7738) = 12.7546 $/MWh.
            assert!((out.price() - 12.754_64).abs() < 1e-3, "{}", out.price());
        }
    }

    #[test]
    fn exact_duals_hold_a_binding_limit_in_a_few_newton_steps() {
        // The binding-limit market below, with the default (Newton, exact duals): the same
        // equilibrium in a handful of iterations instead of thousands.
        let (a, b) = hand_market();
        let ag = [
            Agent {
                curve: a.view(),
                min_export: -500.0,
                max_export: 500.0,
            },
            Agent {
                curve: b.view(),
                min_export: -60.0,
                max_export: 500.0,
            },
        ];
        let out = negotiate(&ag, &from_afar(), false);
        assert!(out.converged, "{:?}", out.residuals);
        assert!(out.iterations <= 12, "{}", out.iterations);
        assert!((out.agents[0].power - 60.0).abs() < 1e-6);
        assert!((out.agents[1].power + 60.0).abs() < 1e-6);
        assert!((out.price() - 16.0).abs() < 1e-6, "{}", out.price());
        assert!((out.agents[1].dual_lower - 12.0).abs() < 1e-6);
        assert_eq!(out.agents[0].dual_upper, 0.0);
    }

    #[test]
    fn relaxed_update_converges_on_the_hand_market() {
        let (a, b) = hand_market();
        let s = RciSettings {
            power_update: PowerUpdate::Relaxed,
            step_rule: StepRule::Constant,
            kappa: 0.02,
            max_iterations: 50_000,
            ..from_afar()
        };
        let out = negotiate(&agents(&a, &b), &s, true);
        assert!(out.converged, "{:?}", out.residuals);
        assert!((out.price() - 20.0).abs() < 1e-4);
        // Trajectory: one row per agent per iteration plus the start.
        assert_eq!(out.trajectory.len(), 2 * (out.iterations as usize + 1));
    }

    fn state_bits(a: &AgentState) -> [u64; 4] {
        [a.price, a.power, a.dual_upper, a.dual_lower].map(f64::to_bits)
    }

    fn residual_bits(r: &Residuals) -> [u64; 5] {
        [
            r.price_change,
            r.power_change,
            r.dual_change,
            r.balance,
            r.price_spread,
        ]
        .map(f64::to_bits)
    }

    #[test]
    fn negotiate_is_the_loop_of_step() {
        let (a, b) = hand_market();
        let limited = [
            Agent {
                curve: a.view(),
                min_export: -500.0,
                max_export: 500.0,
            },
            Agent {
                curve: b.view(),
                min_export: -60.0,
                max_export: 500.0,
            },
        ];
        let cases = [
            // Newton with exact duals on a binding limit: converges.
            from_afar(),
            // Gradient duals: the bracket is reset while the duals move.
            RciSettings {
                dual_update: DualUpdate::Gradient,
                max_iterations: 5000,
                ..from_afar()
            },
            // Diminishing, relaxed: stops at the cap.
            RciSettings {
                step_rule: StepRule::Diminishing,
                power_update: PowerUpdate::Relaxed,
                kappa: 0.01,
                max_iterations: 37,
                ..from_afar()
            },
            // Too large a relaxed constant step: diverges.
            RciSettings {
                step_rule: StepRule::Constant,
                power_update: PowerUpdate::Relaxed,
                kappa: 5.0,
                max_iterations: 100_000,
                initial_price: 45.317,
                ..from_afar()
            },
        ];
        let mut endings = Vec::new();
        for s in &cases {
            let out = negotiate(&limited, s, true);
            // The same loop by hand.
            let mut state = RciState::new(&limited, s);
            let mut states: Vec<AgentState> = state.agents().to_vec();
            let mut progress = Progress::Running;
            while progress == Progress::Running && state.iteration() < s.max_iterations {
                let report = step(&mut state, &limited, s, &HourAttacks::NONE);
                assert_eq!(
                    residual_bits(&report.residuals),
                    residual_bits(&state.residuals())
                );
                states.extend_from_slice(state.agents());
                progress = report.progress;
            }
            assert_eq!(out.converged, progress == Progress::Converged);
            assert_eq!(out.iterations, state.iteration());
            assert_eq!(
                residual_bits(&out.residuals),
                residual_bits(&state.residuals())
            );
            assert_eq!(out.price().to_bits(), state.price().to_bits());
            let bits = |v: &[AgentState]| v.iter().map(state_bits).collect::<Vec<_>>();
            assert_eq!(bits(&out.agents), bits(state.agents()));
            let traj: Vec<AgentState> = out.trajectory.iter().map(|p| p.state).collect();
            assert_eq!(bits(&traj), bits(&states));
            endings.push(progress);
        }
        assert_eq!(
            endings,
            [
                Progress::Converged,
                Progress::Converged,
                Progress::Running,
                Progress::Diverged
            ]
        );
    }

    #[test]
    fn a_reused_state_forgets_its_last_market() {
        let (a, b) = hand_market();
        let c = steep_stretch_curve();
        let three = [agents(&a, &b)[0], agents(&a, &b)[1], agents(&c, &c)[0]];
        let s = from_afar();
        let mut state = RciState::new(&three, &s);
        negotiate_in(&mut state, &three, &s, &HourAttacks::NONE, None);
        let two = agents(&a, &b);
        state.reset(&two, &s);
        let mut trajectory = Vec::new();
        let converged = negotiate_in(
            &mut state,
            &two,
            &s,
            &HourAttacks::NONE,
            Some(&mut trajectory),
        );
        let fresh = negotiate(&two, &s, true);
        assert!(converged && fresh.converged);
        assert_eq!(state.iteration(), fresh.iterations);
        assert_eq!(state.agents(), &fresh.agents[..]);
        assert_eq!(trajectory, fresh.trajectory);
    }

    #[test]
    fn price_update_by_hand() {
        // Two agents at 30 and 20 $/MWh, chi 0.5, kappa 0.1, 10 MW oversupplied:
        // 30 - 0.5 (0 + 10) - 1 = 24 and 20 - 0.5 (-10 + 0) - 1 = 24.
        let two = [30.0, 20.0];
        assert_eq!(price_update(30.0, two, 0.5, 0.1, 10.0), 24.0);
        assert_eq!(price_update(20.0, two, 0.5, 0.1, 10.0), 24.0);
        // Three agents at 10, 16 and 25 $/MWh, chi 0.25, kappa 0.5, 4 MW short:
        // 10 - 0.25 (0 - 6 - 15) + 2 = 17.25; 16 - 0.25 (6 + 0 - 9) + 2 = 18.75;
        // 25 - 0.25 (15 + 9 + 0) + 2 = 21.
        let three = [10.0, 16.0, 25.0];
        assert_eq!(price_update(10.0, three, 0.25, 0.5, -4.0), 17.25);
        assert_eq!(price_update(16.0, three, 0.25, 0.5, -4.0), 18.75);
        assert_eq!(price_update(25.0, three, 0.25, 0.5, -4.0), 21.0);
        // The agent's own term carries a diverged price into its update.
        assert!(price_update(f64::INFINITY, [f64::INFINITY, 1.0], 0.5, 0.1, 0.0).is_nan());
    }

    /// The default tolerances are all below f32's floors; the floors themselves are not;
    /// one value just below its floor is named alone.
    #[test]
    fn f32_floors_name_each_tolerance_below_them() {
        let d = RciSettings::default();
        assert_eq!(
            d.tolerances_below_f32(),
            [
                ("price_tol", 1e-7),
                ("dual_tol", 1e-7),
                ("power_tol", 1e-6),
                ("balance_tol", 1e-6)
            ]
        );
        let at_floors = RciSettings {
            price_tol: 1e-3,
            dual_tol: 1e-3,
            power_tol: 1e-2,
            balance_tol: 1e-2,
            ..d.clone()
        };
        assert!(at_floors.tolerances_below_f32().is_empty());
        let balance = 0.999e-2;
        let one = RciSettings {
            balance_tol: balance,
            ..at_floors
        };
        assert_eq!(one.tolerances_below_f32(), [("balance_tol", balance)]);
    }

    #[test]
    fn validation_names_the_field() {
        let s = RciSettings {
            chi: f64::NAN,
            ..RciSettings::default()
        };
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("rci.chi") && e.contains("NaN"), "{e}");
        let s = RciSettings {
            max_iterations: 0,
            ..RciSettings::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("rci.max_iterations")
        );
    }

    /// Attack tests: two quadratic agents that start apart at their own marginal prices
    /// (10 and 34 $/MWh), equilibrium 18 $/MWh with the seller exporting 80 MW.
    mod attacks {
        use super::*;
        use crate::attack::{Attack, AttackShape, AttackSlot, AttackVariable, Defence};

        fn apart() -> (OfferCurve, OfferCurve) {
            (
                quad(0.05, 10.0, 0.0, 200.0, 0.0),
                quad(0.1, 14.0, 0.0, 200.0, -100.0),
            )
        }

        /// Own-marginal start, constant step kappa = 0.05 (the mean's error shrinks by
        /// 1 - 0.05 * 15 = 0.25 per iteration), chi = 0.25 (the disagreement by 0.5).
        fn constant_step() -> RciSettings {
            RciSettings {
                start_price: StartPrice::OwnMarginal,
                step_rule: StepRule::Constant,
                kappa: 0.05,
                chi: 0.25,
                max_iterations: 400,
                ..RciSettings::default()
            }
        }

        fn slot(
            variable: AttackVariable,
            agent: u32,
            first: u32,
            duration: Option<u32>,
            size: f64,
        ) -> AttackSlot {
            Attack {
                variable,
                agent,
                hours: vec![3],
                first_iteration: first,
                duration,
                shape: AttackShape::Constant,
                size,
                ramp_iterations: 10,
                seed: 1,
            }
            .slot(0, 0)
        }

        fn run(s: &RciSettings, slots: &[AttackSlot], defence: Defence) -> HourOutcome {
            let (a, b) = apart();
            let attacks = HourAttacks {
                slots,
                hour: 3,
                defence,
            };
            negotiate_attacked(&agents(&a, &b), s, &attacks, true)
        }

        /// Per iteration, the disagreement lambda_0 - lambda_1 of the trajectory.
        fn disagreement(out: &HourOutcome) -> Vec<f64> {
            out.trajectory
                .chunks(2)
                .map(|p| p[0].state.price - p[1].state.price)
                .collect()
        }

        #[test]
        fn chi_attack_multiplies_the_disagreement_by_one_minus_two_chi_minus_c() {
            let s = constant_step();
            let free = run(&s, &[], Defence::Undefended);
            assert!(free.converged);
            assert!((free.price() - 18.0).abs() < 1e-6, "{}", free.price());
            // Attack-free: the disagreement halves (1 - 2 chi = 0.5) every iteration.
            let d = disagreement(&free);
            assert_eq!(d[0], -24.0);
            for k in 1..8 {
                assert!(
                    (d[k] / d[k - 1] - 0.5).abs() < 1e-9,
                    "{k}: {}",
                    d[k] / d[k - 1]
                );
            }
            // Agent 1 applies chi + 1.6 in iterations 1..=20: the factor is 1 - 0.5 - 1.6
            // = -1.1, the prices oscillate with growing amplitude; afterwards 0.5 again.
            let attack = [slot(AttackVariable::Chi, 1, 1, Some(20), 1.6)];
            let hit = run(&s, &attack, Defence::Undefended);
            let d = disagreement(&hit);
            for k in 1..=20 {
                assert!(
                    (d[k] / d[k - 1] + 1.1).abs() < 1e-9,
                    "{k}: {}",
                    d[k] / d[k - 1]
                );
            }
            assert!((d[21] / d[20] - 0.5).abs() < 1e-9);
            assert!(d[20].abs() > 24.0 * 1.1f64.powi(19));
            // The window ends, the market recovers the attack-free equilibrium.
            assert!(hit.converged && hit.iterations > free.iterations);
            assert!((hit.price() - free.price()).abs() < 1e-6);
            assert_eq!(hit.tampered, 20);
            assert_eq!(hit.rejected, 0);
            // For the whole negotiation, it never agrees: the oscillation grows by 1.1
            // per iteration up to the cap (24 * 1.1^400 = 9e17 $/MWh, below the
            // divergence limit).
            let forever = run(
                &s,
                &[slot(AttackVariable::Chi, 1, 1, None, 1.6)],
                Defence::Undefended,
            );
            assert!(!forever.converged);
            assert_eq!(forever.iterations, s.max_iterations);
            let spread = (forever.agents[0].price - forever.agents[1].price).abs();
            let expected = 24.0 * 1.1f64.powi(400);
            assert!(
                (spread / expected - 1.0).abs() < 1e-6,
                "{spread} vs {expected}"
            );
            // Defended: the attack-free negotiation bit for bit; every altered price is
            // rejected (the disagreement is never exactly 0, so every one differs).
            let defended = run(&s, &attack, Defence::Defended);
            assert_eq!(defended.trajectory, free.trajectory);
            assert_eq!(defended.agents, free.agents);
            assert_eq!(defended.iterations, free.iterations);
            let expected = free.iterations.min(20);
            assert_eq!((defended.tampered, defended.rejected), (expected, expected));
        }

        #[test]
        fn chi_attack_with_a_common_start_changes_nothing() {
            // The paper's start: both agents at one price, no disagreement for chi to
            // multiply. The altered chi gives the same bits: nothing is tampered.
            let s = RciSettings {
                start_price: StartPrice::Common,
                initial_price: 30.0,
                ..constant_step()
            };
            let free = run(&s, &[], Defence::Undefended);
            let hit = run(
                &s,
                &[slot(AttackVariable::Chi, 1, 0, None, 1.6)],
                Defence::Undefended,
            );
            assert_eq!(hit.trajectory, free.trajectory);
            assert_eq!(hit.tampered, 0);
        }

        #[test]
        fn constant_price_injection_holds_the_prices_apart() {
            // Agent 1 receives agent 0's price + 1: the disagreement settles at -c/2,
            // every view's spread at c/2 = 0.5 $/MWh, and the stop rules never hold.
            let s = constant_step();
            let hit = run(
                &s,
                &[slot(AttackVariable::Price, 0, 0, None, 1.0)],
                Defence::Undefended,
            );
            assert!(!hit.converged);
            assert_eq!(hit.iterations, s.max_iterations);
            assert!(
                (hit.residuals.price_spread - 0.5).abs() < 1e-9,
                "{:?}",
                hit.residuals
            );
            let d = disagreement(&hit);
            assert!((d.last().unwrap() + 0.5).abs() < 1e-9);
            // Every message of agent 0, iteration 0 to the cap, was altered.
            assert_eq!(hit.tampered, s.max_iterations + 1);
        }

        #[test]
        fn constant_power_injection_leaves_the_trade_unbalanced() {
            // Agent 1 sees agent 0's export + 2 MW. At the fixed point agent 0's step
            // needs mismatch m with chi d = -kappa m, agent 1's chi d = kappa (m + 2):
            // m = -1 MW, and each view's balance is 1 MW.
            let s = constant_step();
            let hit = run(
                &s,
                &[slot(AttackVariable::Power, 0, 0, None, 2.0)],
                Defence::Undefended,
            );
            assert!(!hit.converged);
            assert!(
                (hit.residuals.balance - 1.0).abs() < 1e-9,
                "{:?}",
                hit.residuals
            );
            let true_balance: f64 = hit.agents.iter().map(|a| a.power).sum();
            assert!((true_balance + 1.0).abs() < 1e-9, "{true_balance}");
            let d = hit.agents[0].price - hit.agents[1].price;
            // chi d = -kappa m: d = 0.05 / 0.25 = 0.2 $/MWh.
            assert!((d - 0.2).abs() < 1e-9, "{d}");
        }

        #[test]
        fn stealthy_price_wedge_shows_the_residuals_of_an_honest_market() {
            // Agent 1 is the target: agent 0 receives its price + c, it receives agent 0's
            // price - c. Every view is the negotiation of the market in which agent 1 asks
            // c more (its c1 raised by c), so the receivers' checks see that honest
            // market's residuals in every iteration, and the negotiation converges with
            // the prices c apart.
            let c = 2.0;
            let wedge = [slot(AttackVariable::StealthyPrice, 1, 0, None, c)];
            let newton = RciSettings {
                start_price: StartPrice::OwnMarginal,
                ..RciSettings::default()
            };
            for s in [constant_step(), newton] {
                let (a, b) = apart();
                let shifted = quad(0.1, 14.0 + c, 0.0, 200.0, -100.0);
                let (attacked, honest) = (agents(&a, &b), agents(&a, &shifted));
                let attacks = HourAttacks {
                    slots: &wedge,
                    hour: 3,
                    defence: Defence::Undefended,
                };
                let mut hit = RciState::new(&attacked, &s);
                let mut fair = RciState::new(&honest, &s);
                // The target starts at its own marginal price, the honest agent 1 at c more.
                assert_eq!(hit.agents()[1].price + c, fair.agents()[1].price);
                let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * (1.0 + y.abs());
                loop {
                    let r = step(&mut hit, &attacked, &s, &attacks);
                    let q = step(&mut fair, &honest, &s, &HourAttacks::NONE);
                    let k = hit.iteration();
                    for (x, y) in [
                        (r.residuals.price_change, q.residuals.price_change),
                        (r.residuals.power_change, q.residuals.power_change),
                        (r.residuals.dual_change, q.residuals.dual_change),
                        (r.residuals.balance, q.residuals.balance),
                        (r.residuals.price_spread, q.residuals.price_spread),
                    ] {
                        assert!(close(x, y), "iteration {k}: {:?} vs {:?}", r, q);
                    }
                    let (h, f) = (hit.agents(), fair.agents());
                    assert!(close(h[0].price, f[0].price) && close(h[1].price + c, f[1].price));
                    assert!(close(h[0].power, f[0].power) && close(h[1].power, f[1].power));
                    assert_eq!(r.progress, q.progress, "iteration {k}");
                    if r.progress != Progress::Running || k >= s.max_iterations {
                        break;
                    }
                }
                assert!(stop_rules_hold(&hit.residuals(), &s), "{:?}", s.step_rule);
                // Converged, balanced, and the true prices c apart: agent 0 pays c more
                // than agent 1 receives.
                let h = hit.agents();
                assert!((h[0].price - h[1].price - c).abs() < 1e-6);
                assert!((h[0].power + h[1].power).abs() < s.balance_tol);
                // Two altered copies (one each way) in every iteration, counted.
                assert_eq!(hit.tampered(), 2 * (hit.iteration() + 1));

                // A plain price injection of the same size is seen: it never settles.
                let seen = run(
                    &s,
                    &[slot(AttackVariable::Price, 1, 0, None, c)],
                    Defence::Undefended,
                );
                assert!(!seen.converged);
                // Defended: the attack-free negotiation, every altered copy rejected.
                let free = run(&s, &[], Defence::Undefended);
                let defended = run(&s, &wedge, Defence::Defended);
                assert_eq!(defended.trajectory, free.trajectory);
                assert_eq!(
                    (defended.tampered, defended.rejected),
                    (2 * (free.iterations + 1), 2 * (free.iterations + 1))
                );
            }
        }

        #[test]
        fn dual_injections_reach_only_the_stop_rule() {
            let s = RciSettings {
                start_price: StartPrice::OwnMarginal,
                ..RciSettings::default()
            };
            let free = run(&s, &[], Defence::Undefended);
            assert!(free.converged);
            // A constant offset on every message from the start never changes between
            // iterations: the negotiation is the attack-free one.
            let steady = run(
                &s,
                &[slot(AttackVariable::DualUpper, 0, 0, None, 3.0)],
                Defence::Undefended,
            );
            assert_eq!(steady.trajectory, free.trajectory);
            assert_eq!(steady.tampered, free.iterations + 1);
            // A fresh draw every iteration keeps the received duals moving: no agreement.
            let mut noisy = slot(AttackVariable::DualLower, 1, 0, None, 3.0);
            noisy.shape = AttackShape::Uniform.code();
            let hit = run(&s, &[noisy], Defence::Undefended);
            assert!(!hit.converged && hit.iterations == s.max_iterations);
            // The true states still reach the equilibrium: only the stop rule is fooled.
            assert!((hit.price() - free.price()).abs() < 1e-6);
        }

        #[test]
        fn views_without_an_effective_injection_are_the_attack_free_step() {
            // Zero-size slots (and one below a price's rounding) on every variable send
            // every step through the per-view path: it must give the shared path's bits.
            for start in [StartPrice::Common, StartPrice::OwnMarginal] {
                for rule in [StepRule::Newton, StepRule::Constant, StepRule::Diminishing] {
                    let s = RciSettings {
                        start_price: start,
                        step_rule: rule,
                        kappa: 0.05,
                        initial_price: 45.0,
                        ..RciSettings::default()
                    };
                    let free = run(&s, &[], Defence::Undefended);
                    let mut slots: Vec<AttackSlot> = AttackVariable::ALL
                        .iter()
                        .take(crate::attack::MAX_ATTACKS)
                        .map(|&v| slot(v, 0, 0, None, 0.0))
                        .collect();
                    slots[0] = slot(AttackVariable::Price, 1, 0, None, 1e-300);
                    for chunk in [
                        &slots[..],
                        &[
                            slot(AttackVariable::Slope, 1, 0, None, 0.0),
                            slot(AttackVariable::Gap, 0, 0, None, 0.0),
                            slot(AttackVariable::DualLower, 1, 0, None, 0.0),
                        ][..],
                    ] {
                        let hit = run(&s, chunk, Defence::Undefended);
                        assert_eq!(hit.trajectory, free.trajectory, "{start:?} {rule:?}");
                        assert_eq!(hit.residuals, free.residuals);
                        assert_eq!((hit.tampered, hit.rejected), (0, 0));
                    }
                }
            }
        }

        #[test]
        fn newton_signal_injections_slow_or_break_the_step_but_not_its_target() {
            let s = RciSettings {
                start_price: StartPrice::OwnMarginal,
                ..RciSettings::default()
            };
            let free = run(&s, &[], Defence::Undefended);
            // Agent 0 reports a slope 40 MW/($/MWh) too steep to agent 1: agent 1's
            // Newton step is 15/55 of the right one; agent 0's stays right.
            let hit = run(
                &s,
                &[slot(AttackVariable::Slope, 0, 0, None, 40.0)],
                Defence::Undefended,
            );
            assert!(hit.tampered > 0);
            if hit.converged {
                assert!((hit.price() - free.price()).abs() < 1e-6);
            }
            assert_ne!(hit.trajectory, free.trajectory);
            // Defended: the attack-free negotiation, every altered message rejected.
            let defended = run(
                &s,
                &[slot(AttackVariable::Slope, 0, 0, None, 40.0)],
                Defence::Defended,
            );
            assert_eq!(defended.trajectory, free.trajectory);
            assert_eq!(defended.rejected, free.iterations + 1);
        }

        /// The undefended step as first written, kept as the reference of
        /// [`step_views`]: every view rebuilt into a vector for each use (six an
        /// iteration), every curve look-up a full search, every agent's Newton signals,
        /// gaps included, found before the step, and the prices copied out of the view.
        fn plain_step_views(
            state: &mut RciState,
            agents: &[Agent<'_>],
            s: &RciSettings,
            attacks: &HourAttacks<'_>,
        ) -> (StepReport, u64) {
            let view_of = |r: usize, m: u32, states: &[AgentState]| -> Vec<AgentState> {
                states
                    .iter()
                    .enumerate()
                    .map(|(j, st)| {
                        if j == r {
                            *st
                        } else {
                            AgentState {
                                price: attacks.seen_price(j, r, m, st.price),
                                power: attacks.seen(AttackVariable::Power, j, m, st.power),
                                dual_upper: attacks.seen(
                                    AttackVariable::DualUpper,
                                    j,
                                    m,
                                    st.dual_upper,
                                ),
                                dual_lower: attacks.seen(
                                    AttackVariable::DualLower,
                                    j,
                                    m,
                                    st.dual_lower,
                                ),
                            }
                        }
                    })
                    .collect()
            };
            let n = agents.len();
            let m = state.iteration + 1;
            if state.views.len() != n {
                state.views.clear();
                state.views.resize(n, state.newton);
            }
            let scheduled = scheduled_kappa(s, state.iteration);
            let signals: Vec<NewtonSignals> = match scheduled {
                Some(_) => Vec::new(),
                None => agents
                    .iter()
                    .zip(&state.agents)
                    .map(|(a, st)| NewtonSignals::of(a, st, s))
                    .collect(),
            };
            let mut chi_altered = 0u64;
            for (r, agent) in agents.iter().enumerate() {
                let view = view_of(r, m - 1, &state.agents);
                let mismatch: f64 = view.iter().map(|a| a.power).sum();
                let kappa = match scheduled {
                    Some(k) => k,
                    None => {
                        let downward = mismatch > 0.0;
                        let signal = |j: usize, v: AttackVariable, x: f64| {
                            if j == r {
                                x
                            } else {
                                attacks.seen(v, j, m - 1, x)
                            }
                        };
                        let slope: f64 = signals
                            .iter()
                            .enumerate()
                            .map(|(j, g)| signal(j, AttackVariable::Slope, g.toward(downward).0))
                            .sum();
                        let flat = || {
                            nearest_gap(signals.iter().enumerate().map(|(j, g)| {
                                g.toward(downward)
                                    .1
                                    .map(|d| signal(j, AttackVariable::Gap, d))
                            }))
                        };
                        state.views[r].kappa(
                            mismatch,
                            mean_price(&view),
                            price_range(&view),
                            slope,
                            flat,
                            s,
                        )
                    }
                };
                let seen_prices: Vec<f64> = view.iter().map(|a| a.price).collect();
                let me = state.agents[r];
                let chi = attacks.seen(AttackVariable::Chi, r, m, s.chi);
                let price =
                    price_update(me.price, seen_prices.iter().copied(), chi, kappa, mismatch);
                if attacks.targets(AttackVariable::Chi, r, m) {
                    let genuine = price_update(
                        me.price,
                        seen_prices.iter().copied(),
                        s.chi,
                        kappa,
                        mismatch,
                    );
                    if genuine.to_bits() != price.to_bits() {
                        chi_altered |= 1 << r;
                    }
                }
                state.previous[r] = respond(agent, state.limit_prices[r], me, price, s, &mut 0);
            }
            let mut residuals = Residuals::default();
            for r in 0..n {
                let old = view_of(r, m - 1, &state.agents);
                let new = view_of(r, m, &state.previous);
                let v = residuals_between(&old, &new);
                residuals = Residuals {
                    price_change: residuals.price_change.max(v.price_change),
                    power_change: residuals.power_change.max(v.power_change),
                    dual_change: residuals.dual_change.max(v.dual_change),
                    balance: residuals.balance.max(v.balance),
                    price_spread: residuals.price_spread.max(v.price_spread),
                };
            }
            (finish_step(state, n, s, residuals), chi_altered)
        }

        /// `step_views` (two agents: the body compiled for two; and the general body)
        /// gives the plain undefended step's bits at every iteration: the agents' states,
        /// every agent's Newton memory, the residuals, the stop decision and the chi
        /// attacks' alterations, over random unit markets, every rule, and one to four
        /// random undefended attacks of every variable and shape.
        #[test]
        fn the_undefended_step_is_the_plain_one_bit_for_bit() {
            use rand::{RngExt, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(23);
            let views_bits = |st: &RciState| -> Vec<u64> {
                st.views
                    .iter()
                    .flat_map(|v| [v.bracket.0, v.bracket.1, v.last_step, v.step_before_last])
                    .map(f64::to_bits)
                    .collect()
            };
            let (mut iterations, mut chi_hits, mut flat_steps) = (0u64, 0u64, 0u64);
            for case in 0..600 {
                let ((a, b), limit, s) = random_unit_market(&mut rng, case, 150);
                let pair = limited_agents(&a, &b, limit);
                let slots: Vec<AttackSlot> = (0..rng.random_range(1..=4usize))
                    .map(|index| {
                        let size = rng
                            .random_range(0.01f64..30.0)
                            .copysign(if rng.random_bool(0.5) { 1.0 } else { -1.0 });
                        Attack {
                            variable: AttackVariable::ALL[rng.random_range(0..8usize)],
                            agent: rng.random_range(0..2u32),
                            hours: vec![3],
                            first_iteration: rng.random_range(0..6u32),
                            duration: if rng.random_bool(0.5) {
                                None
                            } else {
                                Some(rng.random_range(1..40u32))
                            },
                            shape: AttackShape::ALL[rng.random_range(0..4usize)],
                            size,
                            ramp_iterations: rng.random_range(1..20u32),
                            seed: rng.random(),
                        }
                        .slot(index, case as u64)
                    })
                    .collect();
                let attacks = HourAttacks::new(&slots, 3, Defence::Undefended);
                assert!(attacks.alters_views());
                let mut fast = RciState::new(&pair, &s);
                let (mut general, mut plain) = (fast.clone(), fast.clone());
                // A length the compiler cannot see, so the general body runs.
                let unknown: &[Agent<'_>] = std::hint::black_box(&pair[..]);
                for _ in 0..s.max_iterations {
                    let before = fast.agents().to_vec();
                    let (f, cf) = step_views(&mut fast, &pair, &s, &attacks);
                    let (g, cg) = step_views_body(&mut general, unknown, &s, &attacks);
                    let (p, cp) = plain_step_views(&mut plain, &pair, &s, &attacks);
                    iterations += 1;
                    chi_hits += u64::from(cp != 0);
                    // A summed slope below the floor: the Newton step looks for the gaps.
                    let mismatch: f64 = before.iter().map(|a| a.power).sum();
                    flat_steps += u64::from(
                        pair.iter()
                            .zip(&before)
                            .map(|(a, st)| directional_slope_near(a, st, &s, mismatch > 0.0, 0))
                            .sum::<f64>()
                            < s.slope_floor,
                    );
                    for (name, other, report, chi) in
                        [("specialised", &fast, f, cf), ("general", &general, g, cg)]
                    {
                        assert_eq!(
                            whole_state_bits(other),
                            whole_state_bits(&plain),
                            "{name}, case {case}"
                        );
                        assert_eq!(views_bits(other), views_bits(&plain), "{name}, case {case}");
                        assert_eq!(chi, cp, "{name}, case {case}");
                        assert_eq!(report.progress, p.progress, "{name}, case {case}");
                    }
                    if p.progress != Progress::Running {
                        break;
                    }
                }
            }
            // The draws reach what the optimised step does differently.
            assert!(iterations > 5_000, "{iterations}");
            assert!(chi_hits > 0 && flat_steps > 0, "{chi_hits} {flat_steps}");
        }
    }
}
