//! The smart grid's exact offer curve at the point of common coupling.
//!
//! The smart grid's cost of exporting `x` MW at the PCC bus, `V(x)` (a DC-OPF with line
//! limits), is convex and piecewise quadratic in `x`, so its marginal cost `V'(x)` (the LMP
//! at the PCC) is continuous and piecewise affine once every unit has `c2 > 0`. The curve
//! is rebuilt exactly:
//! 1. an oracle solves the DC-OPF at `x` with Clarabel, reads the active set (units at a
//!    limit, lines at their rating) and solves the equality-constrained KKT system with
//!    nalgebra, which gives the affine piece `V'(x) = l0 + l1 x` that holds around `x`;
//!    the piece is checked against Clarabel's own dual price;
//! 2. neighbouring sample points with different pieces are split at the intersection of
//!    their lines, which is accepted as a kink only when the oracle confirms the value
//!    there; otherwise the interval is bisected.
//!
//! The result is the exact breakpoint list (up to floating point) rather than a sampled
//! approximation, so the consensus can reach the centralized optimum to solver precision.

use nalgebra::{DMatrix, DVector};

use crate::central::qp::{Qp, QpSolution};
use crate::error::{Error, Result};
use crate::grid::{HourRows, SmartGrid};
use crate::offer::OfferCurve;

/// One affine piece of the marginal cost around a sample point.
#[derive(Debug, Clone)]
struct Piece {
    /// Sample point, MW.
    x: f64,
    /// Marginal cost = l0 + l1 x, $/MWh.
    l0: f64,
    l1: f64,
    /// Unit outputs on the piece: p0 + x p1 (fixed units have p1 = 0).
    p0: Vec<f64>,
    p1: Vec<f64>,
    /// Exports between which the piece stays primal feasible (no free unit past a limit,
    /// no inactive line past its rating).
    valid_from: f64,
    valid_to: f64,
    /// Largest violation of the KKT sign conditions at `x`, $/MWh (0: the active set is
    /// dual feasible there, so with primal feasibility the piece is the exact optimum).
    dual_violation: f64,
}

impl Piece {
    fn lmp(&self, x: f64) -> f64 {
        self.l0 + self.l1 * x
    }

    /// The breakpoint `(x, marginal cost, unit outputs)` of this piece at `x`.
    fn point(&self, x: f64) -> (f64, f64, Vec<f64>) {
        let outputs = self
            .p0
            .iter()
            .zip(&self.p1)
            .map(|(a, b)| a + b * x)
            .collect();
        (x, self.lmp(x), outputs)
    }

    fn same_line(&self, other: &Piece) -> bool {
        let scale = self.l1.abs().max(other.l1.abs()).max(1e-12);
        let xm = 0.5 * (self.x + other.x);
        (self.l1 - other.l1).abs() <= 1e-8 * scale
            && (self.lmp(xm) - other.lmp(xm)).abs() <= 1e-8 * self.lmp(xm).abs().max(1.0)
    }
}

/// Builds the smart grid's offer curve for one hour: export `x` in `[lo, hi]` MW at bus
/// index `pcc`, with the hour's bus loads. `label` names the hour in errors.
pub fn smart_grid_curve(
    grid: &SmartGrid,
    bus_loads: &[f64],
    pcc: usize,
    lo: f64,
    hi: f64,
    label: &str,
) -> Result<OfferCurve> {
    let oracle = Oracle {
        grid,
        bus_loads,
        pcc,
        label,
    };
    let (lo, hi) = feasible_exports(grid, bus_loads, pcc, lo, hi, label)?;
    const SAMPLES: usize = 12;
    let xs: Vec<f64> = (0..=SAMPLES)
        .map(|i| lo + (hi - lo) * i as f64 / SAMPLES as f64)
        .collect();
    let samples: Vec<Piece> = xs.iter().map(|&x| oracle.piece(x)).collect::<Result<_>>()?;
    // Each breakpoint: (x, marginal cost, unit outputs from the piece valid there).
    let mut points: Vec<(f64, f64, Vec<f64>)> = Vec::new();
    points.push(samples[0].point(samples[0].x));
    for w in samples.windows(2) {
        oracle.refine(&w[0], &w[1], 0, &mut points)?;
        points.push(w[1].point(w[1].x));
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let (mut prices, mut exports, mut costs) = (Vec::new(), Vec::new(), Vec::new());
    for (x, lmp, outputs) in points {
        // A repeated export is kept only as the upper end of a jump in marginal cost.
        if let (Some(&last_x), Some(&last_p)) = (exports.last(), prices.last())
            && x - last_x <= 1e-9
            && lmp - last_p <= 1e-9 * lmp.abs().max(1.0)
        {
            continue;
        }
        let prev = prices.last().copied().unwrap_or(f64::NEG_INFINITY);
        if lmp < prev - 1e-6 * prev.abs().max(1.0) {
            return Err(Error::Solver {
                problem: format!("smart-grid offer curve, {label}"),
                message: format!(
                    "marginal cost decreases at export {x:.6} MW ({lmp} < {prev}): the dispatch is not convex"
                ),
            });
        }
        prices.push(lmp.max(prev));
        exports.push(x);
        costs.push(
            grid.units
                .iter()
                .zip(&outputs)
                .map(|(u, &p)| u.cost(p))
                .sum(),
        );
    }
    prune_collinear(&mut prices, &mut exports, &mut costs);
    OfferCurve::new(prices, exports, costs)
}

/// The exports in `[lo, hi]` the smart grid can deliver within its unit and line limits
/// (two LPs), pulled in by 1e-6 MW: at an edge a limit may bind with every unit fixed, where
/// the price is not unique, and no curve sample may sit on such a point.
fn feasible_exports(
    grid: &SmartGrid,
    bus_loads: &[f64],
    pcc: usize,
    lo: f64,
    hi: f64,
    label: &str,
) -> Result<(f64, f64)> {
    let edge = |direction: f64| -> Result<f64> {
        let mut qp = Qp::default();
        // A load at the PCC of `x` MW; the units get zero cost so only feasibility counts.
        let x = qp.var(0.0, direction, lo, hi);
        let mut zero_cost = grid.clone();
        for u in &mut zero_cost.units {
            u.c2 = 0.0;
            u.c1 = 0.0;
        }
        zero_cost.add_hour(&mut qp, bus_loads, pcc, &vec![(x, -1.0)], 0.0);
        let sol = qp.solve(&format!("feasible exports of the smart grid, {label}"))?;
        Ok(sol.x[x])
    };
    let (min_x, max_x) = (edge(1.0)?, edge(-1.0)?);
    let (min_x, max_x) = (min_x + 1e-6, max_x - 1e-6);
    if !(min_x < max_x) {
        return Err(Error::Solver {
            problem: format!("smart-grid offer curve, {label}"),
            message: format!(
                "the grid can only trade in [{min_x:.6}, {max_x:.6}] MW at the PCC: no room to negotiate"
            ),
        });
    }
    Ok((min_x, max_x))
}

/// Removes interior breakpoints that lie on the line through their neighbours: the
/// marginal cost stays linear there, so the trapezoid cost rule stays exact.
fn prune_collinear(prices: &mut Vec<f64>, exports: &mut Vec<f64>, costs: &mut Vec<f64>) {
    let mut keep = vec![true; prices.len()];
    let mut last = 0;
    for k in 1..prices.len().saturating_sub(1) {
        let (x0, x1, x2) = (exports[last], exports[k], exports[k + 1]);
        let interp = prices[last] + (prices[k + 1] - prices[last]) * (x1 - x0) / (x2 - x0);
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

/// Which units sit at a limit and which lines at their rating (with the sign).
struct ActiveSet {
    fixed: Vec<Option<f64>>,
    lines: Vec<(usize, f64)>,
}

struct Oracle<'a> {
    grid: &'a SmartGrid,
    bus_loads: &'a [f64],
    pcc: usize,
    label: &'a str,
}

impl Oracle<'_> {
    fn error(&self, message: String) -> Error {
        Error::Solver {
            problem: format!("smart-grid offer curve, {}", self.label),
            message,
        }
    }

    /// Splits `[a, b]` at kinks, pushing every kink found.
    fn refine(
        &self,
        a: &Piece,
        b: &Piece,
        depth: u32,
        out: &mut Vec<(f64, f64, Vec<f64>)>,
    ) -> Result<()> {
        if a.same_line(b) {
            return Ok(());
        }
        // Adjacent pieces: a stops being feasible exactly where b starts. The breakpoint is
        // there, with a jump in the marginal cost when every unit sits at a limit.
        let xe = a.valid_to;
        if xe > a.x && xe < b.x && (xe - b.valid_from).abs() <= 1e-9 * xe.abs().max(1.0) {
            out.push(a.point(xe));
            if (a.lmp(xe) - b.lmp(xe)).abs() > 1e-9 * a.lmp(xe).abs().max(1.0) {
                out.push(b.point(xe));
            }
            return Ok(());
        }
        // Step just past the end of a's feasibility: the piece found there usually starts
        // exactly where a ends. The step stays clear of the interior-point solver's
        // ambiguity zone around a jump (about 5e-4 MW for the nearly flat nuclear units).
        if xe > a.x
            && xe < b.x
            && b.x - xe > 4e-3
            && let Ok(c) = self.piece(xe + 2e-3)
        {
            self.refine(a, &c, depth + 1, out)?;
            out.push(c.point(c.x));
            return self.refine(&c, b, depth + 1, out);
        }
        // A single kink between a and b lies where their lines cross; the oracle confirms.
        if (a.l1 - b.l1).abs() > 1e-14 {
            let xc = (b.l0 - a.l0) / (a.l1 - b.l1);
            if xc > a.x && xc < b.x {
                let v = a.lmp(xc);
                if let Ok(c) = self.piece(xc)
                    && (c.lmp(xc) - v).abs() <= 1e-7 * v.abs().max(1.0)
                    && (c.same_line(a) || c.same_line(b))
                {
                    out.push(a.point(xc));
                    return Ok(());
                }
            }
        }
        if b.x - a.x <= 1e-7 || depth > 60 {
            // Two breakpoints closer than 1e-7 MW: the straight segment between a and b is
            // exact to far below any tolerance the market uses.
            return Ok(());
        }
        let m = match self
            .piece(0.5 * (a.x + b.x))
            .or_else(|_| self.piece(a.x + 0.513 * (b.x - a.x)))
        {
            Ok(m) => m,
            // Within the interior-point accuracy of a jump no active set can be read; the
            // exact pieces on either side bound the jump to this interval.
            Err(_) if b.x - a.x <= 1e-2 => return Ok(()),
            Err(e) => return Err(e),
        };
        self.refine(a, &m, depth + 1, out)?;
        out.push(m.point(m.x));
        self.refine(&m, b, depth + 1, out)
    }

    /// The affine piece of the marginal cost that holds at export `x`.
    fn piece(&self, x: f64) -> Result<Piece> {
        let g = self.grid;
        let mut qp = Qp::default();
        let rows = g.add_hour(&mut qp, self.bus_loads, self.pcc, &Vec::new(), x);
        let sol = qp.solve(&format!(
            "smart-grid dispatch at export {x:.3} MW, {}",
            self.label
        ))?;
        let outputs: Vec<f64> = rows.gen_vars.iter().map(|&v| sol.x[v]).collect();
        let lmp = g.lmp(&sol, &rows, self.pcc);
        let flows = g.flows(&g.injections(&outputs, self.bus_loads, self.pcc, -x));

        // The active set is read with a tolerance; near a kink or a jump one tolerance can
        // misclassify a unit that sits a hair off its limit, so several are tried and the
        // first piece that reproduces the interior-point solution is kept.
        let mut last = String::new();
        for active in self.candidate_active_sets(&sol, &rows, &outputs, &flows) {
            let piece = match self.kkt_piece(x, &active) {
                Ok(piece) => piece,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            // A piece is the optimum when it is feasible and costs no more than the QP's
            // dispatch. (The interior-point outputs themselves are only accurate to about
            // sqrt(gap / c2), which is coarse for the nearly flat nuclear units.)
            let kkt_lmp = piece.lmp(x);
            let p: Vec<f64> = (0..outputs.len())
                .map(|i| piece.p0[i] + piece.p1[i] * x)
                .collect();
            let bound_violation = g
                .units
                .iter()
                .zip(&p)
                .map(|(u, &v)| (u.pmin - v).max(v - u.pmax))
                .fold(0.0, f64::max);
            let line_violation = g
                .flows(&g.injections(&p, self.bus_loads, self.pcc, -x))
                .iter()
                .zip(&g.lines)
                .map(|(f, l)| f.abs() - l.limit_mw)
                .fold(0.0, f64::max);
            let cost = |q: &[f64]| g.units.iter().zip(q).map(|(u, &v)| u.cost(v)).sum::<f64>();
            let (kkt_cost, qp_cost) = (cost(&p), cost(&outputs));
            let balance = (p.iter().sum::<f64>() - self.bus_loads.iter().sum::<f64>() - x).abs();
            // Primal and dual feasibility of the KKT point certify the exact optimum,
            // whatever the interior-point solver's accuracy near a kink.
            if balance <= 1e-7
                && bound_violation <= 1e-7
                && line_violation <= 1e-7
                && piece.dual_violation <= 1e-9
            {
                return Ok(piece);
            }
            // Otherwise (degenerate multipliers) accept an optimal piece that prices the PCC
            // like the QP: near a kink a neighbouring piece can be optimal to second order
            // yet carry the wrong slope, which the price comparison rejects.
            if balance <= 1e-6
                && bound_violation <= 1e-6
                && line_violation <= 1e-6
                && kkt_cost <= qp_cost + 1e-9 * qp_cost.abs().max(1.0)
                && (kkt_lmp - lmp).abs() <= 1e-6 * lmp.abs().max(1.0)
            {
                return Ok(piece);
            }
            last = format!(
                "price {kkt_lmp} vs {lmp}, dual violation {:.3e}, balance {balance:.3e} MW, bound violation {bound_violation:.3e} MW, line violation {line_violation:.3e} MW, cost {kkt_cost} vs {qp_cost}",
                piece.dual_violation
            );
        }
        Err(self.error(format!(
            "no active set reproduces the QP at export {x:.6} MW: {last}"
        )))
    }

    /// Candidate active sets, most reliable first: units classified by their own bus price
    /// (accurate even where the interior-point outputs are not) and lines by their duals;
    /// then units and lines classified by distance to their limits at several tolerances.
    fn candidate_active_sets(
        &self,
        sol: &QpSolution,
        rows: &HourRows,
        outputs: &[f64],
        flows: &[f64],
    ) -> Vec<ActiveSet> {
        let g = self.grid;
        let bus_lmp: Vec<f64> = (0..g.bus_ids.len()).map(|b| g.lmp(sol, rows, b)).collect();
        let by_price: Vec<Option<f64>> = g
            .units
            .iter()
            .map(|u| {
                let p = (bus_lmp[u.bus] - u.c1) / (2.0 * u.c2);
                if u.pmax - u.pmin <= 1e-12 || p >= u.pmax {
                    Some(u.pmax)
                } else if p <= u.pmin {
                    Some(u.pmin)
                } else {
                    None
                }
            })
            .collect();
        let by_dual: Vec<(usize, f64)> = rows
            .line_rows
            .iter()
            .enumerate()
            .filter_map(|(l, &(up, dn))| {
                let (zu, zd) = (-sol.sensitivity(up), -sol.sensitivity(dn));
                if zu > 1e-7 {
                    Some((l, 1.0))
                } else if zd > 1e-7 {
                    Some((l, -1.0))
                } else {
                    None
                }
            })
            .collect();
        let by_output = |tol: f64| -> Vec<Option<f64>> {
            g.units
                .iter()
                .zip(outputs)
                .map(|(u, &p)| {
                    if u.pmax - u.pmin <= tol || p >= u.pmax - tol {
                        Some(u.pmax)
                    } else if p <= u.pmin + tol {
                        Some(u.pmin)
                    } else {
                        None
                    }
                })
                .collect()
        };
        let by_flow = |tol: f64| -> Vec<(usize, f64)> {
            g.lines
                .iter()
                .zip(flows)
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
        for tol in [1e-7, 1e-6, 1e-5, 1e-4] {
            sets.push(ActiveSet {
                fixed: by_output(tol),
                lines: by_dual.clone(),
            });
            sets.push(ActiveSet {
                fixed: by_output(tol),
                lines: by_flow(tol),
            });
        }
        sets
    }

    /// The affine piece of a given active set: the equality-constrained KKT system solved
    /// for the value and the derivative in `x`.
    fn kkt_piece(&self, x: f64, active: &ActiveSet) -> Result<Piece> {
        let g = self.grid;
        let n = g.units.len();
        let fixed = &active.fixed;
        let free: Vec<usize> = (0..n).filter(|&i| fixed[i].is_none()).collect();
        // Equality rows E p_free = r0 + r1 x.
        let mut e_rows: Vec<Vec<f64>> = Vec::new();
        let (mut r0, mut r1) = (Vec::new(), Vec::new());
        let fixed_sum = |coef: &dyn Fn(usize) -> f64| -> f64 {
            (0..n).filter_map(|i| fixed[i].map(|p| coef(i) * p)).sum()
        };
        let total_load: f64 = self.bus_loads.iter().sum();
        e_rows.push(vec![1.0; free.len()]);
        r0.push(total_load - fixed_sum(&|_| 1.0));
        r1.push(1.0);
        for &(l, sign) in &active.lines {
            let line = &g.lines[l];
            let a = |i: usize| g.ptdf[(l, g.units[i].bus)];
            e_rows.push(free.iter().map(|&i| a(i)).collect());
            let load_flow: f64 = self
                .bus_loads
                .iter()
                .enumerate()
                .map(|(b, d)| g.ptdf[(l, b)] * d)
                .sum();
            r0.push(sign * line.limit_mw + load_flow - fixed_sum(&a));
            r1.push(g.ptdf[(l, self.pcc)]);
        }
        let (nf, ne) = (free.len(), e_rows.len());
        let kkt = DMatrix::from_fn(nf + ne, nf + ne, |r, c| match (r < nf, c < nf) {
            (true, true) if r == c => 2.0 * g.units[free[r]].c2,
            (true, true) => 0.0,
            (true, false) => e_rows[c - nf][r],
            (false, true) => e_rows[r - nf][c],
            (false, false) => 0.0,
        });
        let rhs0 = DVector::from_fn(nf + ne, |r, _| {
            if r < nf {
                -g.units[free[r]].c1
            } else {
                r0[r - nf]
            }
        });
        let rhs1 = DVector::from_fn(nf + ne, |r, _| if r < nf { 0.0 } else { r1[r - nf] });
        let svd = kkt.svd(true, true);
        let s0 = svd
            .solve(&rhs0, 1e-12)
            .map_err(|e| self.error(format!("KKT solve: {e}")))?;
        let s1 = svd
            .solve(&rhs1, 1e-12)
            .map_err(|e| self.error(format!("KKT solve: {e}")))?;
        let (mut p0, mut p1) = (vec![0.0; n], vec![0.0; n]);
        for i in 0..n {
            if let Some(p) = fixed[i] {
                p0[i] = p;
            }
        }
        let (mut l0, mut l1) = (0.0, 0.0);
        for (k, &i) in free.iter().enumerate() {
            let u = &g.units[i];
            p0[i] = s0[k];
            p1[i] = s1[k];
            // V'(x) = sum_i (2 c2 p_i + c1) dp_i/dx, affine in x on the piece.
            l0 += (2.0 * u.c2 * s0[k] + u.c1) * s1[k];
            l1 += 2.0 * u.c2 * s1[k] * s1[k];
        }
        // Dual feasibility: bus prices from the multipliers, pi_b = -(nu_balance +
        // sum_l nu_l PTDF[l, b]); a unit fixed at its maximum must not be dearer than its
        // bus price, one at its minimum not cheaper; a line at its rating must have a
        // multiplier pushing the right way (sign * nu_l >= 0).
        let nu: Vec<f64> = (0..ne).map(|r| s0[nf + r] + x * s1[nf + r]).collect();
        let bus_price = |b: usize| -> f64 {
            -(nu[0]
                + active
                    .lines
                    .iter()
                    .enumerate()
                    .map(|(k, &(l, _))| nu[k + 1] * g.ptdf[(l, b)])
                    .sum::<f64>())
        };
        let mut dual_violation: f64 = 0.0;
        for (i, u) in g.units.iter().enumerate() {
            if let Some(p) = fixed[i]
                && u.pmax - u.pmin > 1e-12
            {
                let mc = 2.0 * u.c2 * p + u.c1;
                let pi = bus_price(u.bus);
                let v = if p >= u.pmax { mc - pi } else { pi - mc };
                dual_violation = dual_violation.max(v / pi.abs().max(1.0));
            }
        }
        for (k, &(_, sign)) in active.lines.iter().enumerate() {
            dual_violation = dual_violation.max(-sign * nu[k + 1]);
        }
        // Primal validity: free units stay within their limits, inactive lines within
        // their ratings, as x moves along the piece.
        let (mut valid_from, mut valid_to) = (f64::NEG_INFINITY, f64::INFINITY);
        let mut clip = |v0: f64, v1: f64, lo: f64, hi: f64| {
            if v1.abs() < 1e-14 {
                return;
            }
            // v(x) = v0 + v1 x stays in [lo, hi] between these two exports.
            let (xa, xb) = ((lo - v0) / v1, (hi - v0) / v1);
            let (xlo, xhi) = if v1 > 0.0 { (xa, xb) } else { (xb, xa) };
            valid_from = valid_from.max(xlo);
            valid_to = valid_to.min(xhi);
        };
        for &i in &free {
            clip(p0[i], p1[i], g.units[i].pmin, g.units[i].pmax);
        }
        let zeros = vec![0.0; self.bus_loads.len()];
        let f0 = g.flows(&g.injections(&p0, self.bus_loads, self.pcc, 0.0));
        let f1 = g.flows(&g.injections(&p1, &zeros, self.pcc, -1.0));
        for (l, line) in g.lines.iter().enumerate() {
            if !active.lines.iter().any(|&(k, _)| k == l) {
                clip(f0[l], f1[l], -line.limit_mw, line.limit_mw);
            }
        }
        Ok(Piece {
            x,
            l0,
            l1,
            p0,
            p1,
            valid_from,
            valid_to,
            dual_violation,
        })
    }
}
