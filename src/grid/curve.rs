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

use crate::central::qp::Qp;
use crate::error::{Error, Result};
use crate::grid::SmartGrid;
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
}

impl Piece {
    fn lmp(&self, x: f64) -> f64 {
        self.l0 + self.l1 * x
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
    const SAMPLES: usize = 12;
    let xs: Vec<f64> = (0..=SAMPLES)
        .map(|i| lo + (hi - lo) * i as f64 / SAMPLES as f64)
        .collect();
    let samples: Vec<Piece> = xs.iter().map(|&x| oracle.piece(x)).collect::<Result<_>>()?;
    // Each breakpoint: (x, marginal cost, unit outputs from the piece valid there).
    let mut points: Vec<(f64, f64, Vec<f64>)> = Vec::new();
    let at = |p: &Piece, x: f64| {
        (
            x,
            p.lmp(x),
            p.p0.iter()
                .zip(&p.p1)
                .map(|(a, b)| a + b * x)
                .collect::<Vec<_>>(),
        )
    };
    points.push(at(&samples[0], samples[0].x));
    for w in samples.windows(2) {
        oracle.refine(&w[0], &w[1], 0, &mut points)?;
        points.push(at(&w[1], w[1].x));
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut prices, mut exports, mut costs) = (Vec::new(), Vec::new(), Vec::new());
    for (x, lmp, outputs) in points {
        if let Some(&last) = exports.last()
            && x - last <= 1e-9
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
        let at = |p: &Piece, x: f64| {
            (
                x,
                p.lmp(x),
                p.p0.iter()
                    .zip(&p.p1)
                    .map(|(u, v)| u + v * x)
                    .collect::<Vec<_>>(),
            )
        };
        if (a.l1 - b.l1).abs() > 1e-14 {
            let xc = (b.l0 - a.l0) / (a.l1 - b.l1);
            if xc > a.x && xc < b.x {
                let c = self.piece(xc)?;
                let v = a.lmp(xc);
                if (c.lmp(xc) - v).abs() <= 1e-7 * v.abs().max(1.0)
                    && (c.same_line(a) || c.same_line(b))
                {
                    out.push(at(a, xc));
                    return Ok(());
                }
            }
        }
        if b.x - a.x <= 1e-7 || depth > 60 {
            // Two kinks closer than 1e-7 MW: linear interpolation between a and b is exact
            // to far below any tolerance the market uses.
            return Ok(());
        }
        let m = self.piece(0.5 * (a.x + b.x))?;
        self.refine(a, &m, depth + 1, out)?;
        out.push(at(&m, m.x));
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

        // Active set: units at a limit are fixed; lines at their rating become equalities.
        let n = g.units.len();
        let mut fixed: Vec<Option<f64>> = vec![None; n];
        for (i, u) in g.units.iter().enumerate() {
            let tol = 1e-6 * u.pmax.abs().max(1.0);
            if u.pmax - u.pmin <= tol || outputs[i] >= u.pmax - tol {
                fixed[i] = Some(u.pmax);
            } else if outputs[i] <= u.pmin + tol {
                fixed[i] = Some(u.pmin);
            }
        }
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
        for (l, line) in g.lines.iter().enumerate() {
            let tol = 1e-6 * line.limit_mw;
            let sign = if flows[l] >= line.limit_mw - tol {
                1.0
            } else if flows[l] <= -line.limit_mw + tol {
                -1.0
            } else {
                continue;
            };
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
        let piece = Piece { x, l0, l1, p0, p1 };
        // The KKT piece must reproduce the interior-point solution it came from.
        let kkt_lmp = piece.lmp(x);
        let worst_p = (0..n)
            .map(|i| (piece.p0[i] + piece.p1[i] * x - outputs[i]).abs())
            .fold(0.0, f64::max);
        if (kkt_lmp - lmp).abs() > 1e-4 * lmp.abs().max(1.0) || worst_p > 1e-3 {
            return Err(self.error(format!(
                "active-set piece disagrees with the QP at export {x:.6} MW: price {kkt_lmp} vs {lmp}, outputs off by {worst_p:.3e} MW"
            )));
        }
        Ok(piece)
    }
}
