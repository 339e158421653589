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
//!   `PS = S_i(lambda_i - H_up + H_lo)`, where `S_i` is the agent's [`OfferCurve`]; for a
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

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::offer::OfferCurve;

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

/// Settings of the RCI negotiation. Every field has a default; see [`RciSettings::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RciSettings {
    /// Consensus weight chi of eq. (31)-(32), dimensionless; 0 < chi <= 1/(agents-1)... (0, 1].
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
    /// Iteration cap; reaching it is a reported non-convergence, not an error.
    pub max_iterations: u32,
    /// Starting price of every agent, $/MWh.
    pub initial_price: f64,
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
        }
    }
}

impl RciSettings {
    /// Checks every field against its allowed range (the error names the field, the
    /// value and the range with its unit). The ranges, generous but physical:
    ///
    /// | field | allowed |
    /// |---|---|
    /// | `chi`, `newton_damping` | (0, 1] |
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
            range.check(&format!("rci.{field}"), value)?;
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

/// One market participant in one hour: its offer curve and the power limits its duals
/// enforce (eq. 33-36).
#[derive(Debug, Clone, Copy)]
pub struct Agent<'a> {
    /// The agent's response to a price.
    pub curve: &'a OfferCurve,
    /// Lowest export the agent may trade, MW (P_min of eq. 34/36).
    pub min_export: f64,
    /// Highest export the agent may trade, MW (P_max of eq. 33/35).
    pub max_export: f64,
}

/// The state of one agent after an iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
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

/// How one hour's negotiation ended. A run that diverged (non-finite state) stops at once
/// with `converged == false` and `iterations` below the cap.
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
}

impl HourOutcome {
    /// The market price: the mean of the agents' local prices, $/MWh.
    pub fn price(&self) -> f64 {
        self.agents.iter().map(|a| a.price).sum::<f64>() / self.agents.len() as f64
    }
}

/// Runs the RCI negotiation of one hour to its stop rules or to the iteration cap.
///
/// `settings` must have passed [`RciSettings::validate`]. The function is pure: the same
/// input gives bit-identical output.
pub fn negotiate(
    agents: &[Agent<'_>],
    settings: &RciSettings,
    keep_trajectory: bool,
) -> HourOutcome {
    let n = agents.len();
    let s = settings;
    let mut state: Vec<AgentState> = agents
        .iter()
        .map(|a| AgentState {
            price: s.initial_price,
            power: a.curve.export_at(s.initial_price),
            dual_upper: 0.0,
            dual_lower: 0.0,
        })
        .collect();
    let mut trajectory = Vec::new();
    let record = |traj: &mut Vec<TrajectoryPoint>, k: u32, st: &[AgentState]| {
        traj.extend(st.iter().enumerate().map(|(i, &state)| TrajectoryPoint {
            iteration: k,
            agent: i as u32,
            state,
        }));
    };
    if keep_trajectory {
        record(&mut trajectory, 0, &state);
    }
    // The prices at which each agent's own curve meets its trade limits (exact duals).
    let limit_prices: Vec<(f64, f64)> = agents
        .iter()
        .map(|a| {
            (
                a.curve.lowest_price_reaching(a.min_export),
                a.curve.highest_price_within(a.max_export),
            )
        })
        .collect();
    // Price bracket of the trade balance, valid while the duals do not move (exact duals
    // are functions of the price, so the balance stays one monotone function of it).
    let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
    // The last two Newton price steps, $/MWh (the safeguard's memory).
    let (mut last_step, mut step_before_last) = (f64::INFINITY, f64::INFINITY);
    let mut residuals = Residuals::default();
    let mut next = state.clone();
    for k in 0..s.max_iterations {
        let mismatch: f64 = state.iter().map(|a| a.power).sum();
        let mean_price = state.iter().map(|a| a.price).sum::<f64>() / n as f64;
        let kappa = match s.step_rule {
            StepRule::Constant => s.kappa,
            StepRule::Diminishing => s.kappa / (1.0 + k as f64 / s.kappa_decay),
            StepRule::Newton => {
                if mismatch > 0.0 {
                    hi = hi.min(mean_price);
                } else if mismatch < 0.0 {
                    lo = lo.max(mean_price);
                }
                let downward = mismatch > 0.0;
                // An agent held at a limit by an exact dual does not respond to a small
                // price move: its local slope is 0, and its response resumes where the
                // dual vanishes.
                let held = |st: &AgentState| {
                    s.dual_update == DualUpdate::Exact
                        && (st.dual_upper > 0.0 || st.dual_lower > 0.0)
                };
                let slope: f64 = agents
                    .iter()
                    .zip(&state)
                    .map(|(a, st)| {
                        if held(st) {
                            0.0
                        } else {
                            a.curve
                                .slope_at(st.price - st.dual_upper + st.dual_lower, downward)
                        }
                    })
                    .sum();
                // On a flat stretch (summed slope below the floor) the step goes to the
                // nearest breakpoint of any agent in the direction of motion, instead of
                // creeping at mismatch / slope_floor across it.
                let flat_distance = if slope < s.slope_floor {
                    agents
                        .iter()
                        .zip(&state)
                        .filter_map(|(a, st)| {
                            if held(st) {
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
                        })
                        .fold(None, |best: Option<f64>, d| {
                            Some(best.map_or(d, |x| x.min(d)))
                        })
                } else {
                    None
                };
                let kappa = newton_kappa(
                    mismatch,
                    mean_price,
                    slope,
                    flat_distance,
                    (lo, hi),
                    step_before_last,
                    s,
                );
                step_before_last = last_step;
                last_step = (kappa * mismatch).abs();
                kappa
            }
        };
        let mut duals_moved = false;
        for i in 0..n {
            let me = state[i];
            // eq. (31)-(32): consensus with every neighbour, innovation on the balance.
            let disagreement: f64 = state.iter().map(|o| me.price - o.price).sum();
            let price = me.price - s.chi * disagreement - kappa * mismatch;
            // eq. (33)-(36): projected dual ascent on the agent's power limits.
            let (dual_upper, dual_lower) = match s.dual_update {
                DualUpdate::Exact => (
                    (price - limit_prices[i].1).max(0.0),
                    (limit_prices[i].0 - price).max(0.0),
                ),
                DualUpdate::Gradient => (
                    (me.dual_upper + s.xi * (me.power - agents[i].max_export)).max(0.0),
                    (me.dual_lower + s.xi * (agents[i].min_export - me.power)).max(0.0),
                ),
            };
            duals_moved |= dual_upper != me.dual_upper || dual_lower != me.dual_lower;
            // eq. (37)-(38), erratum 1: the lower multiplier raises the effective price.
            let set_point = agents[i].curve.export_at(price - dual_upper + dual_lower);
            // eq. (39)-(42).
            let ratio = match s.power_update {
                PowerUpdate::Plain => 1.0,
                PowerUpdate::Relaxed => {
                    (me.power.abs() + s.relax_gamma) / (set_point.abs() + s.relax_gamma)
                }
            };
            next[i] = AgentState {
                price,
                power: me.power + ratio * (set_point - me.power),
                dual_upper,
                dual_lower,
            };
        }
        if duals_moved && s.dual_update == DualUpdate::Gradient {
            (lo, hi) = (f64::NEG_INFINITY, f64::INFINITY);
            (last_step, step_before_last) = (f64::INFINITY, f64::INFINITY);
        }
        residuals = residuals_between(&state, &next);
        std::mem::swap(&mut state, &mut next);
        // A diverged iterate (e.g. the relaxation ratio of eq. 41-42 blowing up) can never
        // meet the stop rules: report it as not converged after k + 1 iterations.
        let finite = state
            .iter()
            .all(|a| a.price.is_finite() && a.power.is_finite());
        if keep_trajectory {
            record(&mut trajectory, k + 1, &state);
        }
        if !finite {
            return HourOutcome {
                converged: false,
                iterations: k + 1,
                agents: state,
                residuals,
                trajectory,
            };
        }
        if residuals.price_change < s.price_tol
            && residuals.power_change < s.power_tol
            && residuals.dual_change < s.dual_tol
            && residuals.balance < s.balance_tol
            && residuals.price_spread < s.price_tol
        {
            return HourOutcome {
                converged: true,
                iterations: k + 1,
                agents: state,
                residuals,
                trajectory,
            };
        }
    }
    HourOutcome {
        converged: false,
        iterations: s.max_iterations,
        agents: state,
        residuals,
        trajectory,
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
    if lo.is_finite()
        && hi.is_finite()
        && (!(target > lo && target < hi) || (target - mean_price).abs() > 0.5 * step_before_last)
    {
        let mid = 0.5 * (lo + hi);
        let k = (mean_price - mid) / mismatch;
        if k > 0.0 {
            return k;
        }
    }
    kappa
}

fn residuals_between(old: &[AgentState], new: &[AgentState]) -> Residuals {
    let mut r = Residuals::default();
    let (mut pmin, mut pmax) = (f64::INFINITY, f64::NEG_INFINITY);
    for (o, n) in old.iter().zip(new) {
        r.price_change = r.price_change.max((n.price - o.price).abs());
        r.power_change = r.power_change.max((n.power - o.power).abs());
        r.dual_change = r
            .dual_change
            .max((n.dual_upper - o.dual_upper).abs())
            .max((n.dual_lower - o.dual_lower).abs());
        pmin = pmin.min(n.price);
        pmax = pmax.max(n.price);
    }
    r.balance = new.iter().map(|a| a.power).sum::<f64>().abs();
    r.price_spread = pmax - pmin;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offer::QuadraticUnit;

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
    fn from_afar() -> RciSettings {
        RciSettings {
            initial_price: 45.0,
            ..RciSettings::default()
        }
    }

    fn agents<'a>(a: &'a OfferCurve, b: &'a OfferCurve) -> [Agent<'a>; 2] {
        [
            Agent {
                curve: a,
                min_export: -500.0,
                max_export: 500.0,
            },
            Agent {
                curve: b,
                min_export: -500.0,
                max_export: 500.0,
            },
        ]
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
                curve: &a,
                min_export: -500.0,
                max_export: 500.0,
            },
            Agent {
                curve: &b,
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
            curve: &c,
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
                curve: &a,
                min_export: -500.0,
                max_export: 500.0,
            },
            Agent {
                curve: &b,
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
}
