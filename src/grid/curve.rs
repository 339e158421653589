//! The smart grid's exact offer curve at the point of common coupling.
//!
//! The smart grid's cost of exporting `x` MW at the PCC bus, `V(x)` (a DC-OPF with line
//! limits, the export being a load at the PCC), is convex and piecewise quadratic in `x`:
//! on each interval where the set of units at a limit and of lines at their rating (the
//! active set) stays the same, the optimal dispatch is affine in `x` and the marginal cost
//! `V'(x)` (the LMP at the PCC) is affine. The curve is rebuilt exactly by walking these
//! pieces (a parametric active-set method):
//! 1. a **piece** is the solution of the equality-constrained KKT system of one active set,
//!    affine in `x` (the units' Hessian is diagonal, so only a small Schur complement over
//!    the balance and the active lines is factored). It is **certified** on an interval:
//!    free units within their limits, inactive lines within their ratings, every active
//!    constraint's multiplier of the right sign. On that interval the piece *is* the
//!    optimum (the KKT conditions are sufficient for a convex QP), whatever produced it;
//! 2. a **walk** follows a certified piece to the first export where a constraint blocks
//!    it, and hands over to the neighbouring active set (the blocking constraints added or
//!    released; where every unit is locked the marginal cost jumps, and a locked
//!    constraint is released), which must certify in turn;
//! 3. a walk starts from a **seed**: an interior-point solution (Clarabel) at some export
//!    whose active set certifies there. Where a walk cannot continue (degenerate ties the
//!    hand-over rules do not resolve), the gap is filled by seeding inside it and walking
//!    towards both ends. A solver that fails at one export is simply asked at another.
//!
//! Breakpoints are where pieces meet, so the curve is exact up to floating point; the
//! interior-point solver's accuracy only matters for guessing active sets, never for a
//! value on the curve.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::central::qp::{Qp, QpOutcome, QpSolution};
use crate::error::{Error, Result};
use crate::grid::{HourRows, SmartGrid};
use crate::offer::OfferCurve;

/// Primal feasibility tolerance of a certified piece, MW.
const TOL_MW: f64 = 1e-7;
/// Dual feasibility tolerance, relative to the price scale ($/MWh).
const TOL_PRICE_REL: f64 = 1e-9;
/// Exports closer than this (relative to the curve's range) are one point.
const TOL_X_REL: f64 = 1e-10;
/// Largest gap between certified pieces, relative to the curve's range, that is bridged
/// by a straight segment when no piece can be found inside it.
const MAX_BRIDGE_REL: f64 = 1e-9;
/// Pieces a curve may have before the walk is declared runaway.
const MAX_PIECES: usize = 20_000;

/// Builds the smart grid's offer curve for one hour over the exports `range` (from
/// [`export_range`]) at bus index `pcc`, with the hour's bus loads. `label` names the hour
/// in errors.
pub fn smart_grid_curve(
    grid: &SmartGrid,
    bus_loads: &[f64],
    pcc: usize,
    range: (f64, f64),
    label: &str,
) -> Result<OfferCurve> {
    Ok(smart_grid_curve_seeded(grid, bus_loads, pcc, range, label, &[])?.0)
}

/// The active sets of a built curve's pieces with the exports each was used on: guesses
/// for the seeds of a curve of the same grid at a nearby load ([`smart_grid_curve_seeded`]).
#[derive(Debug, Clone, Default)]
pub struct CurveSeeds {
    /// `(from, to, active set)` per segment, in the order the walk found them.
    segments: Vec<(f64, f64, ActiveSet)>,
    /// Seeds of this curve's walk taken from other curves' active sets.
    pub reused: usize,
    /// Seeds of this curve's walk that needed an interior-point solve.
    pub solved: usize,
}

/// [`smart_grid_curve`], trying first, wherever the walk needs a seed at an export `x`,
/// the active sets that `seeds` (curves of the same grid and hour at other loads) used
/// at `x`, before an interior-point solve there; also returns this curve's own seeds.
///
/// A seed is only ever a guess: the piece it gives is used only if it certifies at `x`
/// (module doc), so the curve is exact either way. Where one active set certifies at `x`
/// (anywhere but within the tolerances of a breakpoint) and the solve's guesses find it,
/// it is the piece the solve gives, and the curve is bitwise the unseeded one. Where the
/// solve's guesses fail at `x` but a seed certifies, the unseeded walk would have started
/// at another export, and breakpoints may differ in their last bits
/// (`tests/integration/load_table.rs` builds tables both ways: 1 curve of 7 379 on five cases).
pub fn smart_grid_curve_seeded(
    grid: &SmartGrid,
    bus_loads: &[f64],
    pcc: usize,
    range: (f64, f64),
    label: &str,
    seeds: &[&CurveSeeds],
) -> Result<(OfferCurve, CurveSeeds)> {
    let (lo, hi) = range;
    let mut hour = HourData::new(grid, bus_loads, pcc, lo, hi, label);
    hour.seeds = seeds;
    if !(lo < hi) {
        return Err(hour.error(format!(
            "the grid can only trade in [{lo:.6}, {hi:.6}] MW at the PCC: no room to negotiate"
        )));
    }
    let mut walker = Walker {
        hour: &hour,
        segments: Vec::new(),
    };
    walker.fill(lo, hi, 0)?;
    let seeds = CurveSeeds {
        segments: walker
            .segments
            .iter()
            .map(|s| (s.from, s.to, s.piece.active.clone()))
            .collect(),
        reused: hour.reused.load(Ordering::Relaxed),
        solved: hour.solved.load(Ordering::Relaxed),
    };
    Ok((walker.assemble()?, seeds))
}

/// The exports in `[lo, hi]` MW the smart grid can deliver at bus index `pcc` within its
/// unit and line limits (two LPs), pulled in by 1e-6 MW: at an edge a limit may bind with
/// every unit fixed, where the price is not unique, and no curve point may sit on such a
/// point. `None` when no export in `[lo, hi]` is feasible.
pub fn export_range(
    grid: &SmartGrid,
    bus_loads: &[f64],
    pcc: usize,
    lo: f64,
    hi: f64,
    label: &str,
) -> Result<Option<(f64, f64)>> {
    // The exports' edges: an LP with zero unit costs (only feasibility counts). Where the
    // interior-point solver stalls on that degenerate LP (case2383wp at 60 MW), the units
    // keep their real costs, which it solves well, and the export is priced at `weight`:
    // it then stops short of its edge only where its marginal cost exceeds that price, a
    // stretch of the curve no market clears on.
    let price_scale = grid
        .units
        .iter()
        .map(|u| (2.0 * u.c2 * u.pmax + u.c1).abs())
        .fold(1.0, f64::max);
    let weight = (100.0 * price_scale).max(1e4);
    let edge = |direction: f64| -> Result<Option<f64>> {
        let name = format!(
            "exports the smart grid can deliver at bus {}, {label}",
            grid.bus_ids[pcc]
        );
        let mut last = None;
        for real_costs in [false, true] {
            let mut qp = Qp::default();
            // The edges only bound the walk, whose pieces are certified on their own.
            qp.allow_reduced_accuracy();
            // A load at the PCC of `x` MW.
            let x = if real_costs {
                qp.var(0.0, direction * weight, lo, hi)
            } else {
                qp.var(0.0, direction, lo, hi)
            };
            let mut costed = grid.clone();
            if !real_costs {
                for u in &mut costed.units {
                    u.c2 = 0.0;
                    u.c1 = 0.0;
                }
            }
            costed.add_hour(&mut qp, bus_loads, pcc, &vec![(x, -1.0)], 0.0);
            match qp.solve_outcome(&name) {
                Ok(QpOutcome::Solved(sol)) => return Ok(Some(sol.x[x])),
                Ok(QpOutcome::Infeasible) => return Ok(None),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Solver {
            problem: name,
            message: "no solve was attempted".into(),
        }))
    };
    let (Some(min_x), Some(max_x)) = (edge(1.0)?, edge(-1.0)?) else {
        return Ok(None);
    };
    let pull = 1e-6_f64.min(0.25 * (max_x - min_x).max(0.0));
    Ok(Some((min_x + pull, max_x - pull)))
}

/// Which limit a fixed unit sits at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Min,
    Max,
    /// `pmin == pmax`: fixed whatever the price, no multiplier sign to check.
    Both,
}

/// Units at a limit and lines at their rating (`sign` +1 at `+limit`, -1 at `-limit`).
#[derive(Debug, Clone, PartialEq)]
struct ActiveSet {
    fixed: Vec<Option<Side>>,
    lines: Vec<(usize, f64)>,
}

/// What happens when a piece's constraint reaches zero.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    /// A free unit reaches a limit.
    UnitHits(usize, Side),
    /// An inactive line reaches its rating (`sign`).
    LineHits(usize, f64),
    /// A fixed unit's multiplier vanishes: it leaves its limit.
    UnitLeaves(usize),
    /// An active line's multiplier vanishes: it leaves its rating.
    LineLeaves(usize),
}

impl ActiveSet {
    fn apply(&self, event: Event) -> ActiveSet {
        let mut next = self.clone();
        match event {
            Event::UnitHits(i, side) => next.fixed[i] = Some(side),
            Event::UnitLeaves(i) => next.fixed[i] = None,
            Event::LineHits(l, sign) => {
                if !next.lines.iter().any(|&(k, _)| k == l) {
                    next.lines.push((l, sign));
                }
            }
            Event::LineLeaves(l) => next.lines.retain(|&(k, _)| k != l),
        }
        next
    }

    /// Constraints that can be released where every unit is locked: fixed units that can
    /// move (not `pmin == pmax`) and active lines.
    fn releasable(&self) -> Vec<Event> {
        let units = self
            .fixed
            .iter()
            .enumerate()
            .filter(|(_, f)| matches!(f, Some(Side::Min | Side::Max)))
            .map(|(i, _)| Event::UnitLeaves(i));
        let lines = self.lines.iter().map(|&(l, _)| Event::LineLeaves(l));
        units.chain(lines).collect()
    }
}

/// `v0 + v1 x >= 0` within `tol`, and what its violation means.
#[derive(Debug, Clone, Copy)]
struct Condition {
    v0: f64,
    v1: f64,
    tol: f64,
    event: Event,
}

impl Condition {
    fn at(&self, x: f64) -> f64 {
        self.v0 + self.v1 * x
    }
}

/// An affine piece of the optimal dispatch and marginal cost, with the conditions that
/// certify it.
#[derive(Debug, Clone)]
struct Piece {
    active: ActiveSet,
    /// Unit outputs `p0 + p1 x`.
    p0: Vec<f64>,
    p1: Vec<f64>,
    /// Marginal cost at the PCC, `l0 + l1 x`, $/MWh.
    l0: f64,
    l1: f64,
    conditions: Vec<Condition>,
}

impl Piece {
    fn lmp(&self, x: f64) -> f64 {
        self.l0 + self.l1 * x
    }

    fn outputs(&self, x: f64) -> Vec<f64> {
        self.p0
            .iter()
            .zip(&self.p1)
            .map(|(a, b)| a + b * x)
            .collect()
    }

    /// Every condition holds at `x` (within its tolerance).
    fn valid_at(&self, x: f64) -> bool {
        self.conditions.iter().all(|c| c.at(x) >= -c.tol)
    }

    /// How far the piece stays valid from `x` in direction `dir` (+1 or -1), and the
    /// conditions that block it there (those within `tol_x` of the first).
    fn reach(&self, x: f64, dir: f64, tol_x: f64) -> (f64, Vec<Event>) {
        let mut hits: Vec<(f64, Event)> = Vec::new();
        for c in &self.conditions {
            let rate = dir * c.v1;
            if rate < 0.0 {
                hits.push((c.at(x).max(0.0) / -rate, c.event));
            }
        }
        let first = hits.iter().map(|h| h.0).fold(f64::INFINITY, f64::min);
        let blockers = hits
            .into_iter()
            .filter(|h| h.0 <= first + tol_x)
            .map(|h| h.1)
            .collect();
        (first, blockers)
    }
}

/// A certified piece used on `[from, to]`.
#[derive(Debug, Clone)]
struct Segment {
    from: f64,
    to: f64,
    piece: Piece,
}

/// The hour's data every piece needs, computed once.
struct HourData<'a> {
    grid: &'a SmartGrid,
    bus_loads: &'a [f64],
    pcc: usize,
    label: &'a str,
    lo: f64,
    hi: f64,
    total_load: f64,
    /// Flows on the rated lines with every unit at 0 and no export, MW (loads, shifters).
    base_flows: Vec<f64>,
    /// PTDF rows of rated lines, computed when a line first becomes active.
    ptdf_rows: Mutex<HashMap<usize, std::sync::Arc<Vec<f64>>>>,
    tol_x: f64,
    price_scale: f64,
    /// Other curves' active sets to try before an interior-point solve.
    seeds: &'a [&'a CurveSeeds],
    /// Seeds taken from `seeds`, and seeds solved for.
    reused: AtomicUsize,
    solved: AtomicUsize,
}

impl<'a> HourData<'a> {
    fn new(
        grid: &'a SmartGrid,
        bus_loads: &'a [f64],
        pcc: usize,
        lo: f64,
        hi: f64,
        label: &'a str,
    ) -> Self {
        let no_units = grid.injections(&vec![0.0; grid.units.len()], bus_loads, pcc, 0.0);
        let price_scale = grid
            .units
            .iter()
            .map(|u| (2.0 * u.c2 * u.pmax + u.c1).abs())
            .fold(1.0, f64::max);
        HourData {
            grid,
            bus_loads,
            pcc,
            label,
            lo,
            hi,
            total_load: bus_loads.iter().sum(),
            base_flows: grid.flows(&no_units),
            ptdf_rows: Mutex::new(HashMap::new()),
            tol_x: TOL_X_REL * (hi - lo).abs().max(1.0),
            price_scale,
            seeds: &[],
            reused: AtomicUsize::new(0),
            solved: AtomicUsize::new(0),
        }
    }

    fn error(&self, message: String) -> Error {
        Error::Solver {
            problem: format!(
                "smart-grid offer curve at bus {}, {}",
                self.grid.bus_ids[self.pcc], self.label
            ),
            message,
        }
    }

    fn ptdf_row(&self, line: usize) -> std::sync::Arc<Vec<f64>> {
        let mut rows = self.ptdf_rows.lock().unwrap_or_else(|e| e.into_inner());
        rows.entry(line)
            .or_insert_with(|| {
                std::sync::Arc::new(self.grid.network.ptdf_row(self.grid.lines[line].branch))
            })
            .clone()
    }

    /// The piece of an active set, or `None` when it has no unique affine solution (no
    /// free unit left to balance, or a singular system).
    // Index loops fill a symmetric matrix and three parallel vectors; iterators would hide it.
    #[allow(clippy::needless_range_loop)]
    fn piece(&self, active: &ActiveSet) -> Option<Piece> {
        let g = self.grid;
        let n = g.units.len();
        let free: Vec<usize> = (0..n).filter(|&i| active.fixed[i].is_none()).collect();
        if free.is_empty() {
            return None;
        }
        let fixed_value = |i: usize| match active.fixed[i] {
            Some(Side::Min) => g.units[i].pmin,
            Some(Side::Max | Side::Both) => g.units[i].pmax,
            None => 0.0,
        };
        let rows: Vec<std::sync::Arc<Vec<f64>>> = active
            .lines
            .iter()
            .map(|&(l, _)| self.ptdf_row(l))
            .collect();
        // Equality rows over the free units: the balance, then each active line.
        // E p_free = r0 + r1 x.
        let m = 1 + active.lines.len();
        let coef = |row: usize, i: usize| -> f64 {
            if row == 0 {
                1.0
            } else {
                rows[row - 1][g.units[i].bus]
            }
        };
        let fixed_sum = |row: usize| -> f64 {
            (0..n)
                .filter(|&i| active.fixed[i].is_some())
                .map(|i| coef(row, i) * fixed_value(i))
                .sum()
        };
        let mut r0 = vec![0.0; m];
        let mut r1 = vec![0.0; m];
        r0[0] = self.total_load - fixed_sum(0);
        r1[0] = 1.0;
        for (k, &(l, sign)) in active.lines.iter().enumerate() {
            // flow = sum_i a_i p_i - a_pcc x + base = sign * limit.
            r0[k + 1] = sign * g.lines[l].limit_mw - self.base_flows[l] - fixed_sum(k + 1);
            r1[k + 1] = rows[k][self.pcc];
        }
        // Stationarity of free unit i: 2 c2 p_i + c1 = sum_r E[r, i] y_r, so
        // p = H^-1 (E' y - c1) and the Schur complement S y = r + E H^-1 c1.
        let h_inv: Vec<f64> = free.iter().map(|&i| 0.5 / g.units[i].c2).collect();
        let w: Vec<f64> = free
            .iter()
            .zip(&h_inv)
            .map(|(&i, h)| h * g.units[i].c1)
            .collect();
        let mut s = vec![vec![0.0; m]; m];
        for a in 0..m {
            for b in a..m {
                let v: f64 = free
                    .iter()
                    .zip(&h_inv)
                    .map(|(&i, h)| coef(a, i) * h * coef(b, i))
                    .sum();
                s[a][b] = v;
                s[b][a] = v;
            }
        }
        let ew: Vec<f64> = (0..m)
            .map(|r| free.iter().zip(&w).map(|(&i, wi)| coef(r, i) * wi).sum())
            .collect();
        let rhs0: Vec<f64> = (0..m).map(|r| r0[r] + ew[r]).collect();
        let (y0, y1, kept) = solve_psd(&s, &rhs0, &r1)?;
        if !kept[0] {
            return None;
        }
        let mut p0 = vec![0.0; n];
        let mut p1 = vec![0.0; n];
        for i in 0..n {
            if active.fixed[i].is_some() {
                p0[i] = fixed_value(i);
            }
        }
        for (k, &i) in free.iter().enumerate() {
            let e0: f64 = (0..m).map(|r| coef(r, i) * y0[r]).sum();
            let e1: f64 = (0..m).map(|r| coef(r, i) * y1[r]).sum();
            p0[i] = h_inv[k] * e0 - w[k];
            p1[i] = h_inv[k] * e1;
        }
        // Bus price pi_b = y_0 + sum_k y_k PTDF[line_k, b]; V'(x) = pi_pcc.
        let price_at = |bus: usize| -> (f64, f64) {
            let mut a = (y0[0], y1[0]);
            for (k, row) in rows.iter().enumerate() {
                a.0 += y0[k + 1] * row[bus];
                a.1 += y1[k + 1] * row[bus];
            }
            a
        };
        let (l0, l1) = price_at(self.pcc);

        let tol_price = TOL_PRICE_REL * self.price_scale;
        let mut conditions =
            Vec::with_capacity(2 * free.len() + (n - free.len()) + m + 2 * g.lines.len());
        for &i in &free {
            let u = &g.units[i];
            conditions.push(Condition {
                v0: p0[i] - u.pmin,
                v1: p1[i],
                tol: TOL_MW,
                event: Event::UnitHits(i, Side::Min),
            });
            conditions.push(Condition {
                v0: u.pmax - p0[i],
                v1: -p1[i],
                tol: TOL_MW,
                event: Event::UnitHits(i, Side::Max),
            });
        }
        for (i, u) in g.units.iter().enumerate() {
            let side = match active.fixed[i] {
                Some(side @ (Side::Min | Side::Max)) => side,
                _ => continue,
            };
            // Multiplier of a unit at its maximum: its bus price minus its marginal cost;
            // at its minimum, the reverse. Both must be >= 0.
            let (pi0, pi1) = price_at(u.bus);
            let mc = 2.0 * u.c2 * fixed_value(i) + u.c1;
            let (v0, v1) = match side {
                Side::Max => (pi0 - mc, pi1),
                _ => (mc - pi0, -pi1),
            };
            conditions.push(Condition {
                v0,
                v1,
                tol: tol_price,
                event: Event::UnitLeaves(i),
            });
        }
        for (k, &(l, sign)) in active.lines.iter().enumerate() {
            if kept[k + 1] {
                // eta_l = -y_k must push the flow back: sign * eta >= 0.
                conditions.push(Condition {
                    v0: -sign * y0[k + 1],
                    v1: -sign * y1[k + 1],
                    tol: tol_price,
                    event: Event::LineLeaves(l),
                });
            }
        }
        // Lines: every rated line not held at its rating (a dependent active line, whose
        // row was dropped, included) must stay within it.
        let (f0, f1) = self.flows_of(&p0, &p1);
        for (l, line) in g.lines.iter().enumerate() {
            let held = active
                .lines
                .iter()
                .enumerate()
                .any(|(k, &(a, _))| a == l && kept[k + 1]);
            if held {
                continue;
            }
            conditions.push(Condition {
                v0: line.limit_mw - f0[l],
                v1: -f1[l],
                tol: TOL_MW,
                event: Event::LineHits(l, 1.0),
            });
            conditions.push(Condition {
                v0: line.limit_mw + f0[l],
                v1: f1[l],
                tol: TOL_MW,
                event: Event::LineHits(l, -1.0),
            });
        }
        Some(Piece {
            active: active.clone(),
            p0,
            p1,
            l0,
            l1,
            conditions,
        })
    }

    /// Rated-line flows of the dispatch `p0 + p1 x` with export `x`: `f0 + f1 x`.
    fn flows_of(&self, p0: &[f64], p1: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let g = self.grid;
        let zeros = vec![0.0; self.bus_loads.len()];
        let inj0 = g.injections(p0, &zeros, self.pcc, 0.0);
        let inj1 = g.injections(p1, &zeros, self.pcc, -1.0);
        let lin0 = g.network.flows_linear(&inj0);
        let lin1 = g.network.flows_linear(&inj1);
        let f0 = g
            .lines
            .iter()
            .zip(&self.base_flows)
            .map(|(l, b)| lin0[l.branch] + b)
            .collect();
        let f1 = g.lines.iter().map(|l| lin1[l.branch]).collect();
        (f0, f1)
    }

    /// Candidate active sets read from an interior-point solution at export `x`, most
    /// reliable first: units classified by their own bus price (accurate even where the
    /// interior-point outputs are not) and lines by their duals; then units and lines
    /// classified by distance to their limits at several tolerances.
    fn candidate_active_sets(&self, x: f64) -> Result<Vec<ActiveSet>> {
        let g = self.grid;
        let mut qp = Qp::default();
        // Only a guess: every piece is certified by its own KKT point.
        qp.allow_reduced_accuracy();
        let rows: HourRows = g.add_hour(&mut qp, self.bus_loads, self.pcc, &Vec::new(), x);
        let sol: QpSolution = qp.solve(&format!(
            "smart-grid dispatch at bus {} with export {x:.6} MW, {}",
            g.bus_ids[self.pcc], self.label
        ))?;
        let outputs: Vec<f64> = rows.gen_vars.iter().map(|&v| sol.x[v]).collect();
        let flows = g.flows(&g.injections(&outputs, self.bus_loads, self.pcc, -x));
        let bus_lmp: Vec<f64> = (0..g.bus_ids.len())
            .map(|b| g.lmp(&sol, &rows, b))
            .collect();
        let side_of = |i: usize, p: f64, tol: f64| -> Option<Side> {
            let u = &g.units[i];
            if u.pmax - u.pmin <= 1e-9 {
                Some(Side::Both)
            } else if p >= u.pmax - tol {
                Some(Side::Max)
            } else if p <= u.pmin + tol {
                Some(Side::Min)
            } else {
                None
            }
        };
        let by_price: Vec<Option<Side>> = g
            .units
            .iter()
            .enumerate()
            .map(|(i, u)| side_of(i, (bus_lmp[u.bus] - u.c1) / (2.0 * u.c2), 0.0))
            .collect();
        let by_output = |tol: f64| -> Vec<Option<Side>> {
            (0..g.units.len())
                .map(|i| side_of(i, outputs[i], tol))
                .collect()
        };
        // A line is active only at its rating: an interior-point dual on a line far from
        // it (in large cases thousands of lines carry duals of 1e-7) is noise.
        let near = |l: usize, f: f64| f.abs() >= g.lines[l].limit_mw * (1.0 - 1e-6) - 1e-3;
        let by_dual: Vec<(usize, f64)> = rows
            .line_rows
            .iter()
            .enumerate()
            .filter_map(|(l, &(up, dn))| {
                let (zu, zd) = (-sol.sensitivity(up), -sol.sensitivity(dn));
                if zu > 1e-7 && near(l, flows[l]) {
                    Some((l, 1.0))
                } else if zd > 1e-7 && near(l, flows[l]) {
                    Some((l, -1.0))
                } else {
                    None
                }
            })
            .collect();
        let by_flow = |tol: f64| -> Vec<(usize, f64)> {
            g.lines
                .iter()
                .zip(&flows)
                .enumerate()
                .filter_map(|(l, (line, &f))| {
                    if f >= line.limit_mw - tol {
                        Some((l, 1.0))
                    } else if f <= -line.limit_mw + tol {
                        Some((l, -1.0))
                    } else {
                        None
                    }
                })
                .collect()
        };
        let mut sets = vec![
            ActiveSet {
                fixed: by_price.clone(),
                lines: by_dual.clone(),
            },
            ActiveSet {
                fixed: by_price,
                lines: by_flow(1e-6),
            },
        ];
        for tol in [1e-7, 1e-6, 1e-5, 1e-4, 1e-3] {
            sets.push(ActiveSet {
                fixed: by_output(tol),
                lines: by_dual.clone(),
            });
            sets.push(ActiveSet {
                fixed: by_output(tol),
                lines: by_flow(tol),
            });
        }
        sets.dedup();
        Ok(sets)
    }

    /// A certified piece valid at `x`: from the active set another curve's seeds used at
    /// `x`, else seeded by an interior-point solve there.
    fn seed(&self, x: f64) -> Option<Piece> {
        for seeds in self.seeds {
            for (from, to, active) in &seeds.segments {
                if !(*from <= x && x <= *to) {
                    continue;
                }
                // The solve's candidates list active lines in index order, and a piece's
                // rounding follows that order.
                let mut active = active.clone();
                active.lines.sort_by_key(|&(l, _)| l);
                if let Some(p) = self.piece(&active).filter(|p| p.valid_at(x)) {
                    self.reused.fetch_add(1, Ordering::Relaxed);
                    return Some(p);
                }
            }
        }
        self.solved.fetch_add(1, Ordering::Relaxed);
        let sets = self.candidate_active_sets(x).ok()?;
        sets.iter()
            .filter_map(|a| self.piece(a))
            .find(|p| p.valid_at(x))
    }
}

/// Solves `S y0 = b0`, `S y1 = b1` for a symmetric positive semidefinite `S` by an
/// incremental Cholesky factorization that drops rows dependent on earlier ones (their
/// `y` is 0). Returns `None` when a kept system is inconsistent.
#[allow(clippy::type_complexity)]
fn solve_psd(s: &[Vec<f64>], b0: &[f64], b1: &[f64]) -> Option<(Vec<f64>, Vec<f64>, Vec<bool>)> {
    let m = s.len();
    let mut kept = vec![false; m];
    // L (lower, over kept rows), stored densely; d the pivots.
    let mut l = vec![vec![0.0; m]; m];
    let mut d = vec![0.0; m];
    for j in 0..m {
        let mut dj = s[j][j];
        for k in 0..j {
            if kept[k] {
                dj -= l[j][k] * l[j][k] * d[k];
            }
        }
        if !(dj > 1e-11 * s[j][j].abs().max(f64::MIN_POSITIVE)) || s[j][j] == 0.0 {
            continue;
        }
        kept[j] = true;
        d[j] = dj;
        l[j][j] = 1.0;
        for i in j + 1..m {
            let mut v = s[i][j];
            for k in 0..j {
                if kept[k] {
                    v -= l[i][k] * l[j][k] * d[k];
                }
            }
            l[i][j] = v / dj;
        }
    }
    let solve = |b: &[f64]| -> Vec<f64> {
        let mut z = vec![0.0; m];
        for i in 0..m {
            if kept[i] {
                let mut v = b[i];
                for k in 0..i {
                    if kept[k] {
                        v -= l[i][k] * z[k];
                    }
                }
                z[i] = v;
            }
        }
        for i in 0..m {
            if kept[i] {
                z[i] /= d[i];
            }
        }
        for i in (0..m).rev() {
            if kept[i] {
                let mut v = z[i];
                for k in i + 1..m {
                    if kept[k] {
                        v -= l[k][i] * z[k];
                    }
                }
                z[i] = v;
            }
        }
        z
    };
    let y0 = solve(b0);
    let y1 = solve(b1);
    if y0.iter().chain(&y1).all(|v| v.is_finite()) {
        Some((y0, y1, kept))
    } else {
        None
    }
}

/// Covers `[lo, hi]` with certified segments.
struct Walker<'a, 'b> {
    hour: &'a HourData<'b>,
    segments: Vec<Segment>,
}

/// How a walk ended.
enum WalkEnd {
    /// It reached its target.
    Reached,
    /// No hand-over certified at this export.
    Stuck(f64),
}

impl Walker<'_, '_> {
    /// Covers `[a, b]`: seeds inside, walks to both ends, and fills what is left.
    fn fill(&mut self, a: f64, b: f64, depth: u32) -> Result<()> {
        let tol = self.hour.tol_x;
        if b - a <= tol {
            return Ok(());
        }
        let span = b - a;
        let bridge = MAX_BRIDGE_REL * (self.hour.hi - self.hour.lo).abs().max(1.0);
        // Seed points: the middle first, then points spread towards both ends.
        let fractions = [
            0.5,
            0.3090169943749474,
            0.6909830056250525,
            0.1,
            0.9,
            0.01,
            0.99,
            1e-4,
            0.9999,
        ];
        let mut seeded = None;
        for t in fractions {
            let x = a + span * t;
            if let Some(p) = self.hour.seed(x) {
                seeded = Some((x, p));
                break;
            }
        }
        let Some((x, piece)) = seeded else {
            if span <= bridge {
                return Ok(());
            }
            return Err(self.hour.error(format!(
                "no certified piece of the dispatch could be found in [{a:.9}, {b:.9}] MW \
                 (the interior-point solver's active sets do not satisfy the KKT conditions \
                 there)"
            )));
        };
        if depth > 60 || self.segments.len() > MAX_PIECES {
            return Err(self.hour.error(format!(
                "the curve did not close after {} pieces near {x:.9} MW",
                self.segments.len()
            )));
        }
        let right = self.walk(piece.clone(), x, b, 1.0)?;
        let left = self.walk(piece, x, a, -1.0)?;
        if let WalkEnd::Stuck(at) = left
            && at - a > bridge
        {
            self.fill(a, at, depth + 1)?;
        }
        if let WalkEnd::Stuck(at) = right
            && b - at > bridge
        {
            self.fill(at, b, depth + 1)?;
        }
        Ok(())
    }

    /// Walks from `piece` (valid at `x`) towards `target` in direction `dir`, recording
    /// segments, until the target or a hand-over that does not certify.
    fn walk(&mut self, mut piece: Piece, mut x: f64, target: f64, dir: f64) -> Result<WalkEnd> {
        let tol = self.hour.tol_x;
        loop {
            if self.segments.len() > MAX_PIECES {
                return Err(self.hour.error(format!(
                    "more than {MAX_PIECES} pieces: the walk does not close near {x:.9} MW"
                )));
            }
            let (dist, blockers) = piece.reach(x, dir, tol);
            let end = x + dir * dist;
            let reached = if dir > 0.0 {
                end >= target - tol
            } else {
                end <= target + tol
            };
            let stop = if reached { target } else { end };
            let (from, to) = if dir > 0.0 { (x, stop) } else { (stop, x) };
            if to > from {
                self.segments.push(Segment {
                    from,
                    to,
                    piece: piece.clone(),
                });
            }
            if reached {
                return Ok(WalkEnd::Reached);
            }
            match self.hand_over(&piece, end, dir, &blockers) {
                Some(next) => {
                    piece = next;
                    x = end;
                }
                None => return Ok(WalkEnd::Stuck(end)),
            }
        }
    }

    /// The certified piece that continues past `x` in direction `dir`, after `piece` is
    /// blocked there by `blockers`.
    fn hand_over(&self, piece: &Piece, x: f64, dir: f64, blockers: &[Event]) -> Option<Piece> {
        let tol = self.hour.tol_x;
        let continues =
            |p: &Piece| p.valid_at(x) && p.reach(x, dir, tol).0 > tol && p.active != piece.active;
        // Every non-empty subset of the blockers, smallest first (ties are rare and small).
        let k = blockers.len().min(8);
        let mut subsets: Vec<u32> = (1..(1u32 << k)).collect();
        subsets.sort_by_key(|s| s.count_ones());
        let mut locked = Vec::new();
        for mask in subsets {
            let mut set = piece.active.clone();
            for (j, &e) in blockers.iter().take(k).enumerate() {
                if mask & (1 << j) != 0 {
                    set = set.apply(e);
                }
            }
            match self.hour.piece(&set) {
                Some(p) if continues(&p) => return Some(p),
                _ => locked.push(set),
            }
        }
        // Every unit locked (a jump in the marginal cost) or a degenerate tie: release
        // one, then two, of the locked set's constraints.
        for set in locked.iter().rev().take(2) {
            let releasable = set.releasable();
            for &e in &releasable {
                if let Some(p) = self.hour.piece(&set.apply(e))
                    && continues(&p)
                {
                    return Some(p);
                }
            }
            if releasable.len() <= 80 {
                for (a, &e1) in releasable.iter().enumerate() {
                    for &e2 in &releasable[a + 1..] {
                        if let Some(p) = self.hour.piece(&set.apply(e1).apply(e2))
                            && continues(&p)
                        {
                            return Some(p);
                        }
                    }
                }
            }
        }
        None
    }

    /// The breakpoints of the segments, sorted: exact values at every segment end, two
    /// points where the marginal cost jumps.
    fn assemble(mut self) -> Result<OfferCurve> {
        let hour = self.hour;
        let g = hour.grid;
        self.segments
            .sort_by(|a, b| a.from.total_cmp(&b.from).then(a.to.total_cmp(&b.to)));
        let tol_price = TOL_PRICE_REL * hour.price_scale;
        let (mut prices, mut exports, mut costs) = (Vec::new(), Vec::new(), Vec::new());
        let cost_of = |p: &Piece, x: f64| -> f64 {
            g.units
                .iter()
                .zip(p.outputs(x))
                .map(|(u, v)| u.cost(v))
                .sum()
        };
        let mut push = |x: f64, price: f64, cost: f64| -> Result<()> {
            if let (Some(&lx), Some(&lp)) = (exports.last(), prices.last()) {
                let (lx, lp): (f64, f64) = (lx, lp);
                if x < lx {
                    // Overlapping segments (a walk that went a hair past a gap's end).
                    if price < lp - 1e3 * tol_price {
                        return Err(hour.error(format!(
                            "overlapping pieces disagree at {x:.9} MW ({price} < {lp})"
                        )));
                    }
                    return Ok(());
                }
                if x - lx <= hour.tol_x && (price - lp).abs() <= 1e3 * tol_price {
                    return Ok(());
                }
                if price < lp - 1e3 * tol_price {
                    return Err(hour.error(format!(
                        "marginal cost decreases at export {x:.9} MW ({price} < {lp}): \
                         certified pieces contradict convexity"
                    )));
                }
            }
            let last_price = prices.last().copied().unwrap_or(f64::NEG_INFINITY);
            prices.push(price.max(last_price));
            exports.push(x.max(exports.last().copied().unwrap_or(f64::NEG_INFINITY)));
            costs.push(cost);
            Ok(())
        };
        for s in &self.segments {
            push(s.from, s.piece.lmp(s.from), cost_of(&s.piece, s.from))?;
            push(s.to, s.piece.lmp(s.to), cost_of(&s.piece, s.to))?;
        }
        if exports.is_empty() {
            return Err(hour.error("no piece of the curve was found".into()));
        }
        let (first, last) = (exports[0], exports[exports.len() - 1]);
        let bridge = MAX_BRIDGE_REL * (hour.hi - hour.lo).abs().max(1.0);
        if first - hour.lo > bridge || hour.hi - last > bridge {
            return Err(hour.error(format!(
                "the pieces cover [{first:.9}, {last:.9}] MW of [{:.9}, {:.9}]",
                hour.lo, hour.hi
            )));
        }
        prune_collinear(&mut prices, &mut exports, &mut costs);
        OfferCurve::new(prices, exports, costs)
    }
}

/// Removes interior breakpoints that lie on the line through their neighbours: the
/// marginal cost stays linear there, so the trapezoid cost rule stays exact.
fn prune_collinear(prices: &mut Vec<f64>, exports: &mut Vec<f64>, costs: &mut Vec<f64>) {
    let mut keep = vec![true; prices.len()];
    let mut last = 0;
    for k in 1..prices.len().saturating_sub(1) {
        let (x0, x1, x2) = (exports[last], exports[k], exports[k + 1]);
        let interp = if x2 > x0 {
            prices[last] + (prices[k + 1] - prices[last]) * (x1 - x0) / (x2 - x0)
        } else {
            f64::NAN
        };
        if (interp - prices[k]).abs() <= 1e-10 * prices[k].abs().max(1.0) {
            keep[k] = false;
        } else {
            last = k;
        }
    }
    let mut it = keep.iter();
    prices.retain(|_| *it.next().unwrap_or(&true));
    let mut it = keep.iter();
    exports.retain(|_| *it.next().unwrap_or(&true));
    let mut it = keep.iter();
    costs.retain(|_| *it.next().unwrap_or(&true));
}
