//! A small builder for separable convex QPs, solved by Clarabel (an interior-point solver).
//!
//! Problems are `min sum_j (c2_j x_j^2 + c1_j x_j) s.t. rows`, with equality rows and
//! `<=` rows. Clarabel's duals satisfy `P x + q + A' z = 0`, so the sensitivity of the
//! optimal value to a right-hand side is `dV/db_i = -z_i`; prices are read that way.

use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettings, DefaultSettingsBuilder, DefaultSolver, IPSolver, NonnegativeConeT,
    SolverStatus, ZeroConeT,
};

use crate::error::{Error, Result};

/// A linear row: `(variable, coefficient)` terms.
pub type Terms = Vec<(usize, f64)>;

/// Row handle: which family and which position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// An equality row.
    Eq(usize),
    /// A `<=` row.
    Le(usize),
}

/// A separable convex QP under construction.
#[derive(Debug, Default, Clone)]
pub struct Qp {
    c2: Vec<f64>,
    c1: Vec<f64>,
    eq: Vec<(Terms, f64)>,
    le: Vec<(Terms, f64)>,
    /// Accept Clarabel's `AlmostSolved` without the KKT check (see
    /// [`Qp::allow_reduced_accuracy`]).
    reduced_accuracy_ok: bool,
}

/// A solved QP.
#[derive(Debug, Clone)]
pub struct QpSolution {
    /// Primal values.
    pub x: Vec<f64>,
    /// Duals of the equality rows (free sign).
    pub eq_duals: Vec<f64>,
    /// Duals of the `<=` rows (>= 0).
    pub le_duals: Vec<f64>,
    /// Optimal objective (without any constant terms the caller keeps).
    pub objective: f64,
}

impl QpSolution {
    /// `dV/db` of a row: the marginal value of relaxing its right-hand side.
    pub fn sensitivity(&self, row: Row) -> f64 {
        match row {
            Row::Eq(i) => -self.eq_duals[i],
            Row::Le(i) => -self.le_duals[i],
        }
    }
}

impl Qp {
    /// Adds a variable with cost `c2 x^2 + c1 x` and bounds `lo <= x <= hi` (infinite
    /// bounds are skipped). Returns its index.
    pub fn var(&mut self, c2: f64, c1: f64, lo: f64, hi: f64) -> usize {
        let j = self.c2.len();
        self.c2.push(c2);
        self.c1.push(c1);
        if hi.is_finite() {
            self.le.push((vec![(j, 1.0)], hi));
        }
        if lo.is_finite() {
            self.le.push((vec![(j, -1.0)], -lo));
        }
        j
    }

    /// Accepts a reduced-accuracy solution (Clarabel's `AlmostSolved`) as it is, for a
    /// caller that certifies what it uses itself (the offer curve's KKT check of every
    /// piece) and needs only a good guess.
    pub fn allow_reduced_accuracy(&mut self) {
        self.reduced_accuracy_ok = true;
    }

    /// Adds `terms = rhs`.
    pub fn eq(&mut self, terms: Terms, rhs: f64) -> Row {
        self.eq.push((terms, rhs));
        Row::Eq(self.eq.len() - 1)
    }

    /// Adds `terms <= rhs`.
    pub fn le(&mut self, terms: Terms, rhs: f64) -> Row {
        self.le.push((terms, rhs));
        Row::Le(self.le.len() - 1)
    }

    /// Number of variables.
    pub fn num_vars(&self) -> usize {
        self.c2.len()
    }

    /// Objective at `x` (no constants).
    pub fn objective_at(&self, x: &[f64]) -> f64 {
        x.iter()
            .zip(self.c2.iter().zip(&self.c1))
            .map(|(&v, (&a, &b))| (a * v + b) * v)
            .sum()
    }

    /// Largest violation of any row at `x` (for KKT residual checks).
    pub fn max_violation(&self, x: &[f64]) -> f64 {
        let eval = |t: &Terms| t.iter().map(|&(j, a)| a * x[j]).sum::<f64>();
        let e = self.eq.iter().map(|(t, r)| (eval(t) - r).abs());
        let l = self.le.iter().map(|(t, r)| (eval(t) - r).max(0.0));
        e.chain(l).fold(0.0, f64::max)
    }

    /// The KKT residuals of a candidate solution, each the largest over its rows:
    /// `(primal, stationarity, complementarity)`: row violations in the rows' units,
    /// `|2 c2 x + c1 + A' z|` in the cost's units, and `|z_i (b_i - a_i x)|` of the `<=`
    /// rows. Clarabel's `AlmostSolved` meets only reduced tolerances relative to norms that
    /// a large network inflates; these are what the callers' comparisons need.
    pub fn kkt_residuals(&self, sol: &QpSolution) -> (f64, f64, f64) {
        let x = &sol.x;
        let mut grad: Vec<f64> = x
            .iter()
            .zip(self.c2.iter().zip(&self.c1))
            .map(|(&v, (&a, &b))| 2.0 * a * v + b)
            .collect();
        let eval = |t: &Terms| t.iter().map(|&(j, a)| a * x[j]).sum::<f64>();
        let mut complementarity: f64 = 0.0;
        for ((terms, rhs), &z) in self.le.iter().zip(&sol.le_duals) {
            complementarity = complementarity.max((z * (rhs - eval(terms))).abs());
            for &(j, a) in terms {
                grad[j] += a * z;
            }
        }
        for ((terms, _), &z) in self.eq.iter().zip(&sol.eq_duals) {
            for &(j, a) in terms {
                grad[j] += a * z;
            }
        }
        let stationarity = grad.iter().fold(0.0, |m: f64, g| m.max(g.abs()));
        (self.max_violation(x), stationarity, complementarity)
    }

    /// Solves the problem; `name` labels errors (e.g. `hourly reference, hour 7`). An
    /// infeasible problem is an error here; see [`Qp::solve_outcome`] to tell it apart.
    pub fn solve(&self, name: &str) -> Result<QpSolution> {
        match self.solve_outcome(name)? {
            QpOutcome::Solved(sol) => Ok(sol),
            QpOutcome::Infeasible => Err(Error::Solver {
                problem: name.into(),
                message: "infeasible: no dispatch meets demand within generator and line limits"
                    .into(),
            }),
        }
    }

    /// Solves the problem, reporting infeasibility as an outcome. A solver that stops
    /// short (too little progress, numerical trouble, the iteration cap), or that reaches
    /// only reduced accuracy with KKT residuals above `KKT_TOL`, is retried with other
    /// settings before an error names the problem and every status seen.
    pub fn solve_outcome(&self, name: &str) -> Result<QpOutcome> {
        let n = self.num_vars();
        let (ne, nl) = (self.eq.len(), self.le.len());
        // Upper triangle of P: diagonal 2 c2 (Clarabel minimizes 1/2 x'Px + q'x).
        let diag: Vec<usize> = (0..n).collect();
        let p = CscMatrix::new_from_triplets(
            n,
            n,
            diag.clone(),
            diag,
            self.c2.iter().map(|c| 2.0 * c).collect(),
        );
        let (mut ri, mut cj, mut v) = (Vec::new(), Vec::new(), Vec::new());
        let mut b = Vec::with_capacity(ne + nl);
        for (r, (terms, rhs)) in self.eq.iter().chain(&self.le).enumerate() {
            for &(j, a) in terms {
                ri.push(r);
                cj.push(j);
                v.push(a);
            }
            b.push(*rhs);
        }
        let a = CscMatrix::new_from_triplets(ne + nl, n, ri, cj, v);
        let cones = [ZeroConeT(ne), NonnegativeConeT(nl)];
        let mut seen = Vec::new();
        for attempt in 0..ATTEMPTS {
            let settings = settings(attempt).map_err(|e| Error::Solver {
                problem: name.into(),
                message: format!("settings: {e}"),
            })?;
            let mut solver =
                DefaultSolver::new(&p, &self.c1, &a, &b, &cones, settings).map_err(|e| {
                    Error::Solver {
                        problem: name.into(),
                        message: format!("setup: {e:?}"),
                    }
                })?;
            solver.solve();
            let sol = &solver.solution;
            let solution = || QpSolution {
                x: sol.x.clone(),
                eq_duals: sol.z[..ne].to_vec(),
                le_duals: sol.z[ne..].to_vec(),
                objective: self.objective_at(&sol.x),
            };
            match sol.status {
                SolverStatus::Solved => return Ok(QpOutcome::Solved(solution())),
                SolverStatus::AlmostSolved if self.reduced_accuracy_ok => {
                    return Ok(QpOutcome::Solved(solution()));
                }
                SolverStatus::AlmostSolved => {
                    let candidate = solution();
                    let (primal, stationarity, complementarity) = self.kkt_residuals(&candidate);
                    // The check's scales: rows are in MW, costs in $/MWh.
                    let mw_scale = 1.0
                        + self
                            .eq
                            .iter()
                            .chain(&self.le)
                            .fold(0.0, |m: f64, (_, r)| m.max(r.abs()));
                    let price_scale = 1.0 + self.c1.iter().fold(0.0, |m: f64, c| m.max(c.abs()));
                    if primal <= KKT_TOL * mw_scale
                        && stationarity <= KKT_TOL * price_scale
                        && complementarity <= KKT_TOL * price_scale * mw_scale
                    {
                        return Ok(QpOutcome::Solved(candidate));
                    }
                    seen.push(format!(
                        "AlmostSolved with KKT residuals {primal:.1e} MW, {stationarity:.1e} $/MWh, {complementarity:.1e} $/h"
                    ));
                }
                SolverStatus::PrimalInfeasible => return Ok(QpOutcome::Infeasible),
                other => seen.push(format!("{other:?}")),
            }
        }
        if seen.iter().all(|s| s == "AlmostPrimalInfeasible") {
            return Ok(QpOutcome::Infeasible);
        }
        Err(Error::Solver {
            problem: name.into(),
            message: format!(
                "the QP solver stopped short with every setting tried (statuses: {})",
                seen.join(", ")
            ),
        })
    }
}

/// How a solve ended.
#[derive(Debug, Clone)]
pub enum QpOutcome {
    /// Optimal (to the solver's tolerances).
    Solved(QpSolution),
    /// No point satisfies the rows.
    Infeasible,
}

/// Relative KKT tolerance for accepting Clarabel's `AlmostSolved` (reduced accuracy): on
/// ill-conditioned networks (a long radial chain) it returns points whose price is off by
/// 10 $/MWh under that status; a point that passes this check is as good as `Solved` for
/// every comparison the project makes.
const KKT_TOL: f64 = 1e-7;

/// Settings tried in turn: tight tolerances first; then more iterations, a longer
/// equilibration and a larger static regularization; then looser tolerances without
/// equilibration. Every caller that needs exact values certifies them itself (the offer
/// curve's KKT check) or compares with tolerances far above 1e-8.
const ATTEMPTS: usize = 3;

fn settings(attempt: usize) -> std::result::Result<DefaultSettings<f64>, String> {
    let mut b = DefaultSettingsBuilder::default();
    b.verbose(false).max_threads(1);
    match attempt {
        0 => b
            .tol_gap_abs(1e-10)
            .tol_gap_rel(1e-10)
            .tol_feas(1e-10)
            .tol_ktratio(1e-8)
            .max_iter(200),
        1 => b
            .tol_gap_abs(1e-9)
            .tol_gap_rel(1e-9)
            .tol_feas(1e-9)
            .tol_ktratio(1e-7)
            .max_iter(500)
            .equilibrate_max_iter(50)
            .static_regularization_constant(1e-7),
        _ => b
            .tol_gap_abs(1e-8)
            .tol_gap_rel(1e-8)
            .tol_feas(1e-8)
            .tol_ktratio(1e-6)
            .max_iter(1000)
            .equilibrate_enable(false),
    };
    b.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_generator_dispatch_by_hand() {
        // min 0.01 g1^2 + 10 g1 + 0.02 g2^2 + 12 g2, g1 + g2 = 300, 0 <= g <= 250.
        // Equal marginal cost: 10 + 0.02 g1 = 12 + 0.04 g2, g1 + g2 = 300
        // -> 0.02 g1 - 0.04 (300 - g1) = 2 -> 0.06 g1 = 14 -> g1 = 233.33.., g2 = 66.66..
        // price = 10 + 0.02 * 233.33 = 14.666.. $/MWh.
        let mut qp = Qp::default();
        let g1 = qp.var(0.01, 10.0, 0.0, 250.0);
        let g2 = qp.var(0.02, 12.0, 0.0, 250.0);
        let bal = qp.eq(vec![(g1, 1.0), (g2, 1.0)], 300.0);
        let s = qp.solve("test").unwrap();
        assert!((s.x[g1] - 700.0 / 3.0).abs() < 1e-6, "{}", s.x[g1]);
        assert!((s.x[g2] - 200.0 / 3.0).abs() < 1e-6);
        assert!(
            (s.sensitivity(bal) - 44.0 / 3.0).abs() < 1e-6,
            "{}",
            s.sensitivity(bal)
        );
    }

    #[test]
    fn kkt_residuals_tell_an_optimum_from_a_wrong_price() {
        // The hand-solved dispatch above: at the optimum every residual vanishes; with the
        // balance's dual moved by 1 $/MWh (a price off by that much) stationarity shows it.
        let mut qp = Qp::default();
        let g1 = qp.var(0.01, 10.0, 0.0, 250.0);
        let g2 = qp.var(0.02, 12.0, 0.0, 250.0);
        qp.eq(vec![(g1, 1.0), (g2, 1.0)], 300.0);
        let s = qp.solve("test").unwrap();
        let (primal, stationarity, complementarity) = qp.kkt_residuals(&s);
        assert!(primal < 1e-6 && stationarity < 1e-6 && complementarity < 1e-6);
        let mut wrong = s.clone();
        wrong.eq_duals[0] += 1.0;
        let (_, stationarity, _) = qp.kkt_residuals(&wrong);
        assert!((stationarity - 1.0).abs() < 1e-6, "{stationarity}");
    }

    #[test]
    fn binding_bound_shifts_the_price() {
        // Same units, g1 capped at 200: g2 = 100, price = 12 + 0.04*100 = 16.
        let mut qp = Qp::default();
        let g1 = qp.var(0.01, 10.0, 0.0, 200.0);
        let g2 = qp.var(0.02, 12.0, 0.0, 250.0);
        let bal = qp.eq(vec![(g1, 1.0), (g2, 1.0)], 300.0);
        let s = qp.solve("test").unwrap();
        assert!((s.x[g1] - 200.0).abs() < 1e-6);
        assert!((s.sensitivity(bal) - 16.0).abs() < 1e-6);
    }

    #[test]
    fn infeasible_is_an_error_naming_the_problem() {
        let mut qp = Qp::default();
        let g = qp.var(0.01, 1.0, 0.0, 10.0);
        qp.eq(vec![(g, 1.0)], 20.0);
        let e = qp.solve("hour 3").unwrap_err().to_string();
        assert!(e.contains("hour 3") && e.contains("infeasible"), "{e}");
    }
}
