//! The smart grid: generators with quadratic costs on a DC network with line limits
//! (eq. 7-19, Kavousi-Fard 2021, reduced to what a DC market model needs).
//!
//! Unit commitment is fixed (every in-service unit is committed every hour, paying its
//! no-load cost c0), reactive power and voltages are outside the DC model, and reserve
//! constraints (13)-(14) of the paper are not modelled: MATPOWER's RTS-24 carries no
//! reserve data. Ramp limits come from `RAMP_30` (x2 per hour); a zero field means none.

pub mod curve;

use nalgebra::DMatrix;

use crate::central::qp::{Qp, QpSolution, Row, Terms};
use crate::data::matpower::Case;
use crate::error::{Error, Result};

/// A committed generating unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    /// Index of the unit's bus in [`SmartGrid::bus_ids`].
    pub bus: usize,
    /// Quadratic cost, $/MW^2h, after the linear-cost floor (erratum 2).
    pub c2: f64,
    /// Linear cost, $/MWh.
    pub c1: f64,
    /// No-load cost, $/h.
    pub c0: f64,
    /// Minimum output, MW.
    pub pmin: f64,
    /// Maximum output, MW.
    pub pmax: f64,
    /// Ramp limit per hour, MW (infinite: none).
    pub ramp_mw: f64,
}

impl Unit {
    /// Cost of producing `p` MW for an hour, $/h.
    pub fn cost(&self, p: f64) -> f64 {
        (self.c2 * p + self.c1) * p + self.c0
    }
}

/// A transmission line with a finite rating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// Index of the line in the case's branch list.
    pub branch: usize,
    /// External from-bus id.
    pub from_id: usize,
    /// External to-bus id.
    pub to_id: usize,
    /// Rating, MW.
    pub limit_mw: f64,
}

/// The smart grid ready for dispatch problems.
#[derive(Debug, Clone)]
pub struct SmartGrid {
    /// External bus ids, in case order.
    pub bus_ids: Vec<usize>,
    /// Each bus's share of the system load (case Pd / total Pd).
    pub load_share: Vec<f64>,
    /// Committed units.
    pub units: Vec<Unit>,
    /// Lines with a finite rating (the only ones that constrain a DC dispatch).
    pub lines: Vec<Line>,
    /// Power transfer distribution factors, `lines x buses`: flow on a line per MW
    /// injected at a bus and withdrawn at the reference bus.
    pub ptdf: DMatrix<f64>,
}

/// The rows of one hour's dispatch inside a QP.
#[derive(Debug, Clone)]
pub struct HourRows {
    /// QP variable of each unit's output.
    pub gen_vars: Vec<usize>,
    /// The power-balance row.
    pub balance: Row,
    /// Upper and lower flow-limit rows of each line.
    pub line_rows: Vec<(Row, Row)>,
}

impl SmartGrid {
    /// Builds the grid from a case. Units with `c2 == 0` get `c2 = linear_cost_c2`
    /// (erratum 2: a small proximal term that makes every response continuous; the
    /// centralized references use the same costs, so the two remain comparable).
    pub fn from_case(case: &Case, linear_cost_c2: f64) -> Result<Self> {
        let bus_ids: Vec<usize> = case.buses.iter().map(|b| b.id).collect();
        let index = |id: usize, what: &str| {
            bus_ids
                .iter()
                .position(|&b| b == id)
                .ok_or_else(|| Error::Matpower {
                    source_name: "case".into(),
                    line: 0,
                    message: format!("{what} refers to bus {id}, which does not exist"),
                })
        };
        let total: f64 = case.buses.iter().map(|b| b.pd_mw).sum();
        if !(total > 0.0) {
            return Err(Error::invalid(
                "case.bus.Pd",
                total,
                "> 0 in total (the load shape needs a distribution)",
            ));
        }
        let load_share = case.buses.iter().map(|b| b.pd_mw / total).collect();
        let mut units = Vec::new();
        for g in case.generators.iter().filter(|g| g.in_service) {
            units.push(Unit {
                bus: index(g.bus, "generator")?,
                c2: if g.c2 > 0.0 { g.c2 } else { linear_cost_c2 },
                c1: g.c1,
                c0: g.c0,
                pmin: g.pmin_mw,
                pmax: g.pmax_mw,
                ramp_mw: if g.ramp_30_mw > 0.0 {
                    2.0 * g.ramp_30_mw
                } else {
                    f64::INFINITY
                },
            });
        }
        let nb = bus_ids.len();
        let slack = case.reference_bus();
        let branches: Vec<(usize, usize, f64, usize)> = case
            .branches
            .iter()
            .enumerate()
            .filter(|(_, br)| br.in_service)
            .map(|(k, br)| {
                let tap = if br.tap == 0.0 { 1.0 } else { br.tap };
                Ok((
                    index(br.from, "branch")?,
                    index(br.to, "branch")?,
                    1.0 / (br.x_pu * tap),
                    k,
                ))
            })
            .collect::<Result<_>>()?;
        // B matrix without the reference bus; PTDF = Bf * inv(B_red), slack column 0.
        let keep: Vec<usize> = (0..nb).filter(|&b| b != slack).collect();
        let pos = |b: usize| keep.iter().position(|&k| k == b);
        let mut bred = DMatrix::<f64>::zeros(nb - 1, nb - 1);
        for &(f, t, b, _) in &branches {
            for (i, j, v) in [(f, f, b), (t, t, b), (f, t, -b), (t, f, -b)] {
                if let (Some(pi), Some(pj)) = (pos(i), pos(j)) {
                    bred[(pi, pj)] += v;
                }
            }
        }
        let binv = bred.try_inverse().ok_or_else(|| Error::Matpower {
            source_name: "case".into(),
            line: 0,
            message: "the network is not connected (singular susceptance matrix)".into(),
        })?;
        let mut lines = Vec::new();
        let mut rows = Vec::new();
        for &(f, t, b, k) in &branches {
            let br = &case.branches[k];
            if br.rate_a_mw <= 0.0 {
                continue;
            }
            // Angle sensitivity of a bus to an injection at `pb` is binv[(bus, pb)]; the
            // reference bus has angle 0.
            let theta = |bus: usize, pb: usize| pos(bus).map_or(0.0, |i| binv[(i, pb)]);
            let mut row = vec![0.0; nb];
            for (bus, r) in row.iter_mut().enumerate() {
                if let Some(pb) = pos(bus) {
                    *r = b * (theta(f, pb) - theta(t, pb));
                }
            }
            lines.push(Line {
                branch: k,
                from_id: br.from,
                to_id: br.to,
                limit_mw: br.rate_a_mw,
            });
            rows.push(row);
        }
        let ptdf = DMatrix::from_fn(rows.len(), nb, |l, b| rows[l][b]);
        Ok(SmartGrid {
            bus_ids,
            load_share,
            units,
            lines,
            ptdf,
        })
    }

    /// Position of an external bus id.
    pub fn bus_index(&self, id: usize) -> Option<usize> {
        self.bus_ids.iter().position(|&b| b == id)
    }

    /// Total committed capacity, MW.
    pub fn capacity_mw(&self) -> f64 {
        self.units.iter().map(|u| u.pmax).sum()
    }

    /// Total minimum output of the committed units, MW.
    pub fn min_output_mw(&self) -> f64 {
        self.units.iter().map(|u| u.pmin).sum()
    }

    /// Sum of no-load costs, $/h.
    pub fn no_load_cost(&self) -> f64 {
        self.units.iter().map(|u| u.c0).sum()
    }

    /// Bus loads, MW, for a system load.
    pub fn bus_loads(&self, system_load_mw: f64) -> Vec<f64> {
        self.load_share.iter().map(|s| s * system_load_mw).collect()
    }

    /// Line flows, MW, for bus injections.
    pub fn flows(&self, injections: &[f64]) -> Vec<f64> {
        (0..self.lines.len())
            .map(|l| {
                (0..injections.len())
                    .map(|b| self.ptdf[(l, b)] * injections[b])
                    .sum()
            })
            .collect()
    }

    /// Adds one hour's DC dispatch to `qp`: unit outputs, the power balance and the line
    /// limits. `pcc_injection` are QP terms injecting at bus `pcc` (e.g. the microgrid's
    /// export); `pcc_withdrawal` is a fixed extra load there, MW.
    pub fn add_hour(
        &self,
        qp: &mut Qp,
        bus_loads: &[f64],
        pcc: usize,
        pcc_injection: &Terms,
        pcc_withdrawal: f64,
    ) -> HourRows {
        let gen_vars: Vec<usize> = self
            .units
            .iter()
            .map(|u| qp.var(u.c2, u.c1, u.pmin, u.pmax))
            .collect();
        let mut terms: Terms = gen_vars.iter().map(|&v| (v, 1.0)).collect();
        terms.extend(pcc_injection.iter().copied());
        let demand: f64 = bus_loads.iter().sum::<f64>() + pcc_withdrawal;
        let balance = qp.eq(terms, demand);
        let mut line_rows = Vec::with_capacity(self.lines.len());
        for (l, line) in self.lines.iter().enumerate() {
            let mut t: Terms = self
                .units
                .iter()
                .zip(&gen_vars)
                .map(|(u, &v)| (v, self.ptdf[(l, u.bus)]))
                .collect();
            t.extend(
                pcc_injection
                    .iter()
                    .map(|&(v, a)| (v, a * self.ptdf[(l, pcc)])),
            );
            let fixed: f64 = bus_loads
                .iter()
                .enumerate()
                .map(|(b, d)| self.ptdf[(l, b)] * d)
                .sum::<f64>()
                + self.ptdf[(l, pcc)] * pcc_withdrawal;
            let neg: Terms = t.iter().map(|&(v, a)| (v, -a)).collect();
            let up = qp.le(t, line.limit_mw + fixed);
            let dn = qp.le(neg, line.limit_mw - fixed);
            line_rows.push((up, dn));
        }
        HourRows {
            gen_vars,
            balance,
            line_rows,
        }
    }

    /// Locational marginal price at bus `bus`, $/MWh: the sensitivity of the optimal cost
    /// to one more MW of load there (balance row plus every line row it loads).
    pub fn lmp(&self, sol: &QpSolution, rows: &HourRows, bus: usize) -> f64 {
        let mut lmp = sol.sensitivity(rows.balance);
        for (l, &(up, dn)) in rows.line_rows.iter().enumerate() {
            let a = self.ptdf[(l, bus)];
            lmp += a * sol.sensitivity(up) - a * sol.sensitivity(dn);
        }
        lmp
    }

    /// Lines whose flow is within `tol_mw` of the rating, as `from-to` labels.
    pub fn binding_lines(&self, flows: &[f64], tol_mw: f64) -> Vec<String> {
        self.lines
            .iter()
            .zip(flows)
            .filter(|(l, f)| f.abs() >= l.limit_mw - tol_mw)
            .map(|(l, _)| format!("{}-{}", l.from_id, l.to_id))
            .collect()
    }

    /// Bus injections of a dispatch: unit outputs minus loads, plus `pcc_net` at `pcc`.
    pub fn injections(
        &self,
        outputs: &[f64],
        bus_loads: &[f64],
        pcc: usize,
        pcc_net: f64,
    ) -> Vec<f64> {
        let mut inj: Vec<f64> = bus_loads.iter().map(|d| -d).collect();
        for (u, p) in self.units.iter().zip(outputs) {
            inj[u.bus] += p;
        }
        inj[pcc] += pcc_net;
        inj
    }
}
