//! The smart grid: generators with quadratic costs on a DC network with line limits
//! (eq. 7-19, Kavousi-Fard 2021, reduced to what a DC market model needs).
//!
//! Unit commitment is fixed (every in-service unit is committed every hour, paying its
//! no-load cost c0), reactive power and voltages are outside the DC model, and reserve
//! constraints (13)-(14) of the paper are not modelled: MATPOWER's RTS-24 carries no
//! reserve data. Ramp limits come from `RAMP_30` (x2 per hour); a zero field means none.
//!
//! The DC model is MATPOWER's (`makeBdc`, `dcopf`): bus shunt conductance `GS` is a
//! constant load, phase shifters add a fixed injection pair, taps scale the susceptance,
//! and isolated (type 4) buses are dropped with everything attached to them. Dispatch
//! problems use the sparse bus-angle form (one balance row per bus, two rows per rated
//! line), so their size grows with the network, never with its square.

pub mod curve;
pub mod load_table;
pub mod network;

use crate::central::qp::{Qp, QpSolution, Row, Terms};
use crate::data::matpower::Case;
use crate::error::{Error, Result};
use network::DcNetwork;

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
    /// Index of the line among the network's in-service branches
    /// ([`DcNetwork::branches`]).
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
    /// External bus ids, in case order (isolated type-4 buses omitted).
    pub bus_ids: Vec<usize>,
    /// Each bus's share of the system load (case Pd / total Pd).
    pub load_share: Vec<f64>,
    /// Constant load of each bus's shunt conductance (`GS` at 1 p.u.), MW.
    pub shunt_load_mw: Vec<f64>,
    /// Committed units.
    pub units: Vec<Unit>,
    /// Lines with a finite rating (the only ones that constrain a DC dispatch).
    pub lines: Vec<Line>,
    /// The DC network: susceptances, shifters and the factored susceptance matrix.
    pub network: DcNetwork,
}

/// The rows of one hour's dispatch inside a QP.
#[derive(Debug, Clone)]
pub struct HourRows {
    /// QP variable of each unit's output.
    pub gen_vars: Vec<usize>,
    /// The power-balance row of each bus (its sensitivity is the bus's LMP).
    pub balance: Vec<Row>,
    /// Upper and lower flow-limit rows of each line.
    pub line_rows: Vec<(Row, Row)>,
}

impl SmartGrid {
    /// Builds the grid from a case. Units with `c2 == 0` get `c2 = linear_cost_c2`
    /// (erratum 2: a small proximal term that makes every response continuous; the
    /// centralized references use the same costs, so the two remain comparable).
    pub fn from_case(case: &Case, linear_cost_c2: f64) -> Result<Self> {
        let case_error = |message: String| Error::Matpower {
            source_name: case.source_name.clone(),
            line: 0,
            message,
        };
        // MATPOWER drops isolated (type 4) buses and everything attached to them.
        let kept: Vec<usize> = (0..case.buses.len())
            .filter(|&i| case.buses[i].kind != 4)
            .collect();
        let bus_ids: Vec<usize> = kept.iter().map(|&i| case.buses[i].id).collect();
        let index_of: std::collections::HashMap<usize, usize> =
            bus_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let index = |id: usize, what: &str| {
            index_of.get(&id).copied().ok_or_else(|| {
                case_error(format!(
                    "{what} is attached to bus {id}, which is isolated (type 4) or missing"
                ))
            })
        };
        let total: f64 = kept.iter().map(|&i| case.buses[i].pd_mw).sum();
        if !(total > 0.0) {
            return Err(Error::invalid(
                "case.bus.Pd",
                total,
                "> 0 in total (the load shape needs a distribution)",
            ));
        }
        let load_share = kept.iter().map(|&i| case.buses[i].pd_mw / total).collect();
        let shunt_load_mw = kept.iter().map(|&i| case.buses[i].gs_mw).collect();
        let mut units = Vec::new();
        for (row, g) in case.generators.iter().enumerate() {
            if !g.in_service {
                continue;
            }
            units.push(Unit {
                bus: index(
                    g.bus,
                    &format!("in-service generator (mpc.gen row {})", row + 1),
                )?,
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
        let slack = kept
            .iter()
            .position(|&i| case.buses[i].kind == 3)
            .unwrap_or(0);
        let mut branches = Vec::new();
        // The in-service rows, in the network's branch order.
        let mut in_service = Vec::new();
        for br in &case.branches {
            if !br.in_service {
                continue;
            }
            in_service.push(br);
            let what = format!("in-service branch (mpc.branch row {})", br.row + 1);
            branches.push((
                index(br.from, &what)?,
                index(br.to, &what)?,
                br.x_pu,
                br.tap,
                br.shift_deg,
                br.row,
            ));
        }
        let describe = |b: usize| format!("bus {}", bus_ids[b]);
        let network = DcNetwork::new(bus_ids.len(), slack, case.base_mva, &branches, &describe)
            .map_err(|e| match e {
                Error::Matpower { message, .. } => case_error(message),
                other => other,
            })?;
        let lines = in_service
            .iter()
            .enumerate()
            .filter_map(|(k, br)| {
                (br.rate_a_mw > 0.0).then_some(Line {
                    branch: k,
                    from_id: br.from,
                    to_id: br.to,
                    limit_mw: br.rate_a_mw,
                })
            })
            .collect();
        Ok(SmartGrid {
            bus_ids,
            load_share,
            shunt_load_mw,
            units,
            lines,
            network,
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

    /// The in-service phase shifters, each as `(mpc.branch row, 1-based; its fixed flow,
    /// MW)`, in case order.
    pub fn phase_shifters(&self) -> Vec<(usize, f64)> {
        self.network
            .branches()
            .iter()
            .filter(|b| b.shift_flow_mw != 0.0)
            .map(|b| (b.case_row + 1, b.shift_flow_mw))
            .collect()
    }

    /// Total constant shunt load, MW.
    pub fn shunt_load_total_mw(&self) -> f64 {
        self.shunt_load_mw.iter().sum()
    }

    /// Bus loads, MW, for a system load: its share of `system_load_mw` plus the bus's
    /// constant shunt load.
    pub fn bus_loads(&self, system_load_mw: f64) -> Vec<f64> {
        self.load_share
            .iter()
            .zip(&self.shunt_load_mw)
            .map(|(s, g)| s * system_load_mw + g)
            .collect()
    }

    /// Flows on the rated lines, MW, for bus injections (phase shifters included).
    pub fn flows(&self, injections: &[f64]) -> Vec<f64> {
        let all = self.network.flows(injections);
        self.lines.iter().map(|l| all[l.branch]).collect()
    }

    /// Adds one hour's DC dispatch to `qp`: unit outputs, bus angles, one power balance per
    /// bus and the line limits. `pcc_injection` are QP terms injecting at bus `pcc` (e.g.
    /// the microgrid's export); `pcc_withdrawal` is a fixed extra load there, MW.
    pub fn add_hour(
        &self,
        qp: &mut Qp,
        bus_loads: &[f64],
        pcc: usize,
        pcc_injection: &Terms,
        pcc_withdrawal: f64,
    ) -> HourRows {
        let net = &self.network;
        let gen_vars: Vec<usize> = self
            .units
            .iter()
            .map(|u| qp.var(u.c2, u.c1, u.pmin, u.pmax))
            .collect();
        // Scaled angles psi = baseMVA theta, free; the reference bus is fixed at 0.
        let psi: Vec<Option<usize>> = (0..net.num_buses())
            .map(|b| (b != net.slack()).then(|| qp.var(0.0, 0.0, f64::NEG_INFINITY, f64::INFINITY)))
            .collect();
        let mut terms: Vec<Terms> = vec![Vec::new(); net.num_buses()];
        for (u, &v) in self.units.iter().zip(&gen_vars) {
            terms[u.bus].push((v, 1.0));
        }
        terms[pcc].extend(pcc_injection.iter().copied());
        // Flow y (psi_f - psi_t) leaves the from-bus and enters the to-bus.
        let flow_terms = |k: usize, sign: f64| -> Terms {
            let br = &net.branches()[k];
            [(br.from, sign * br.y), (br.to, -sign * br.y)]
                .into_iter()
                .filter_map(|(b, a)| psi[b].map(|v| (v, a)))
                .collect()
        };
        for k in 0..net.branches().len() {
            let br = net.branches()[k];
            terms[br.from].extend(flow_terms(k, -1.0));
            terms[br.to].extend(flow_terms(k, 1.0));
        }
        let balance: Vec<Row> = terms
            .into_iter()
            .enumerate()
            .map(|(b, t)| {
                let withdrawal = if b == pcc { pcc_withdrawal } else { 0.0 };
                qp.eq(t, bus_loads[b] + net.shift_injection()[b] + withdrawal)
            })
            .collect();
        let line_rows = self
            .lines
            .iter()
            .map(|line| {
                let shift = net.branches()[line.branch].shift_flow_mw;
                let up = qp.le(flow_terms(line.branch, 1.0), line.limit_mw - shift);
                let dn = qp.le(flow_terms(line.branch, -1.0), line.limit_mw + shift);
                (up, dn)
            })
            .collect();
        HourRows {
            gen_vars,
            balance,
            line_rows,
        }
    }

    /// Locational marginal price at bus `bus`, $/MWh: the sensitivity of the optimal cost
    /// to one more MW of load there (the dual of the bus's balance row).
    pub fn lmp(&self, sol: &QpSolution, rows: &HourRows, bus: usize) -> f64 {
        sol.sensitivity(rows.balance[bus])
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
