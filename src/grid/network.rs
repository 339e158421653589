//! The DC network of a MATPOWER case: susceptances, phase shifters and a sparse
//! factorization of the reduced susceptance matrix, from which flows and power transfer
//! distribution factors (PTDFs) are computed on demand.
//!
//! The model is MATPOWER's `makeBdc`: a branch `k` from `f` to `t` with reactance `x`,
//! tap ratio `tau` and phase shift `phi` carries `flow_k = y_k (psi_f - psi_t) + pf_k`
//! MW, where `y_k = 1 / (x tau)` (p.u.), `psi = baseMVA * theta` (the bus angle scaled to
//! MW per p.u. susceptance) and `pf_k = -baseMVA y_k phi` (`Pfinj`). Bus balances read
//! `inj = B psi + pbus`, with `B` the susceptance matrix and `pbus` the shifters' fixed
//! injection pair (`Pbusinj`). The reference bus has angle 0.
//!
//! `B` without the reference bus is symmetric and nonsingular on a connected network
//! (positive definite unless series capacitors give some branch `x < 0`); it is factored
//! once (LDL' with an approximate-minimum-degree ordering, Clarabel's QDLDL)
//! so that every flow or PTDF row costs two sparse triangular solves, whatever the size of
//! the case. No dense PTDF matrix is ever formed.

use clarabel::algebra::CscMatrix;
use clarabel::qdldl::{QDLDLFactorisation, QDLDLSettingsBuilder};

use crate::error::{Error, Result};

/// An in-service branch of the network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetBranch {
    /// Network bus index of the from-bus.
    pub from: usize,
    /// Network bus index of the to-bus.
    pub to: usize,
    /// Series susceptance `1 / (x tau)`, p.u.
    pub y: f64,
    /// Fixed flow added by the phase shifter, `-baseMVA y phi`, MW (`Pfinj`).
    pub shift_flow_mw: f64,
    /// Row of the branch in the case's `mpc.branch`, 0-based.
    pub case_row: usize,
}

/// A connected DC network with its factored susceptance matrix.
#[derive(Debug, Clone)]
pub struct DcNetwork {
    /// Number of buses.
    num_buses: usize,
    /// Index of the reference bus.
    slack: usize,
    /// In-service branches.
    branches: Vec<NetBranch>,
    /// Position of each bus in the reduced system; `usize::MAX` for the reference bus.
    reduced: Vec<usize>,
    /// The shifters' bus injection pair `pbus`, MW (`Pbusinj`).
    shift_injection: Vec<f64>,
    /// Flows caused by the shifters alone (every bus injection zero), MW.
    shift_flows: Vec<f64>,
    /// LDL' factors of the permuted reduced `B`: `perm[k]` is the reduced index of the
    /// k-th pivot; `L` is unit lower triangular (CSC, diagonal implicit).
    perm: Vec<usize>,
    l_colptr: Vec<usize>,
    l_rowval: Vec<usize>,
    l_nzval: Vec<f64>,
    d_inv: Vec<f64>,
}

impl DcNetwork {
    /// Builds and factors the network. `branches` are `(from, to, x_pu, tap, shift_deg,
    /// case_row)` with bus indices in `0..num_buses`; `tap == 0` means 1. `describe` turns
    /// a bus index into words for errors.
    pub fn new(
        num_buses: usize,
        slack: usize,
        base_mva: f64,
        branches: &[(usize, usize, f64, f64, f64, usize)],
        describe: &dyn Fn(usize) -> String,
    ) -> Result<Self> {
        let branches: Vec<NetBranch> = branches
            .iter()
            .map(|&(from, to, x, tap, shift_deg, case_row)| {
                let tau = if tap == 0.0 { 1.0 } else { tap };
                let y = 1.0 / (x * tau);
                NetBranch {
                    from,
                    to,
                    y,
                    shift_flow_mw: -base_mva * y * shift_deg.to_radians(),
                    case_row,
                }
            })
            .collect();
        let mut reduced = vec![usize::MAX; num_buses];
        let mut next = 0;
        for (b, r) in reduced.iter_mut().enumerate() {
            if b != slack {
                *r = next;
                next += 1;
            }
        }
        let n = num_buses - 1;
        let mut shift_injection = vec![0.0; num_buses];
        // Upper triangle of the reduced B; duplicates are summed by the constructor.
        let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
        let mut push = |i: usize, j: usize, v: f64| {
            let (ri, rj) = (reduced[i], reduced[j]);
            if ri != usize::MAX && rj != usize::MAX && ri <= rj {
                rows.push(ri);
                cols.push(rj);
                vals.push(v);
            }
        };
        for br in &branches {
            let (f, t) = (br.from, br.to);
            push(f, f, br.y);
            push(t, t, br.y);
            let (lo, hi) = if f < t { (f, t) } else { (t, f) };
            push(lo, hi, -br.y);
            shift_injection[f] += br.shift_flow_mw;
            shift_injection[t] -= br.shift_flow_mw;
        }
        let mut net = DcNetwork {
            num_buses,
            slack,
            branches,
            reduced,
            shift_injection,
            shift_flows: Vec::new(),
            perm: Vec::new(),
            l_colptr: vec![0],
            l_rowval: Vec::new(),
            l_nzval: Vec::new(),
            d_inv: Vec::new(),
        };
        if n > 0 {
            let b = CscMatrix::new_from_triplets(n, n, rows, cols, vals);
            let diagonal: Vec<f64> = (0..n).map(|k| b.get_entry((k, k)).unwrap_or(0.0)).collect();
            let not_connected = |k: usize| {
                let bus = net.reduced.iter().position(|&r| r == k).unwrap_or(slack);
                Error::Matpower {
                    source_name: String::new(),
                    line: 0,
                    message: format!(
                        "the network is not connected: {} has no path to the reference {}",
                        describe(bus),
                        describe(slack)
                    ),
                }
            };
            if let Some(k) = diagonal.iter().position(|&d| d == 0.0) {
                return Err(not_connected(k));
            }
            let settings = QDLDLSettingsBuilder::<f64>::default()
                .regularize_enable(false)
                .Dsigns(vec![1; n])
                .build()
                .map_err(|e| Error::Solver {
                    problem: "DC network factorization".into(),
                    message: format!("settings: {e:?}"),
                })?;
            let factors =
                QDLDLFactorisation::new(&b, Some(settings)).map_err(|e| Error::Solver {
                    problem: "DC network factorization".into(),
                    message: format!("{e:?}"),
                })?;
            // A pivot that vanishes against its own diagonal entry marks a part of the
            // network cut off from the reference bus. (Negative pivots are legitimate:
            // series capacitors have x < 0, which makes B indefinite but not singular.)
            for (k, &d) in factors.D.iter().enumerate() {
                let orig = factors.perm[k];
                if !(d.abs() > 1e-10 * diagonal[orig].abs()) {
                    return Err(not_connected(orig));
                }
            }
            net.perm = factors.perm.clone();
            net.l_colptr = factors.L.colptr.clone();
            net.l_rowval = factors.L.rowval.clone();
            net.l_nzval = factors.L.nzval.clone();
            net.d_inv = factors.Dinv.clone();
        }
        let minus_pbus: Vec<f64> = net.shift_injection.iter().map(|v| -v).collect();
        let mut flows = net.flows_linear(&minus_pbus);
        for (f, br) in flows.iter_mut().zip(&net.branches) {
            *f += br.shift_flow_mw;
        }
        net.shift_flows = flows;
        Ok(net)
    }

    /// Number of buses.
    pub fn num_buses(&self) -> usize {
        self.num_buses
    }

    /// The in-service branches.
    pub fn branches(&self) -> &[NetBranch] {
        &self.branches
    }

    /// Index of the reference bus.
    pub fn slack(&self) -> usize {
        self.slack
    }

    /// The phase shifters' fixed bus injections (`Pbusinj`), MW.
    pub fn shift_injection(&self) -> &[f64] {
        &self.shift_injection
    }

    /// Flows caused by the phase shifters alone, MW (zero without shifters).
    pub fn shift_flows(&self) -> &[f64] {
        &self.shift_flows
    }

    /// Solves `B_red psi = rhs` in place over the reduced buses.
    fn solve_reduced(&self, rhs: &mut [f64]) {
        let n = rhs.len();
        let mut tmp: Vec<f64> = self.perm.iter().map(|&p| rhs[p]).collect();
        // (L + I) z = tmp
        for i in 0..n {
            let xi = tmp[i];
            for k in self.l_colptr[i]..self.l_colptr[i + 1] {
                tmp[self.l_rowval[k]] -= self.l_nzval[k] * xi;
            }
        }
        for (t, d) in tmp.iter_mut().zip(&self.d_inv) {
            *t *= d;
        }
        // (L + I)' x = z
        for i in (0..n).rev() {
            let mut s = 0.0;
            for k in self.l_colptr[i]..self.l_colptr[i + 1] {
                s += self.l_nzval[k] * tmp[self.l_rowval[k]];
            }
            tmp[i] -= s;
        }
        for (k, &p) in self.perm.iter().enumerate() {
            rhs[p] = tmp[k];
        }
    }

    /// Scaled bus angles `psi` (MW per p.u. susceptance; the reference bus at 0) for bus
    /// injections `injection` (MW), without the shifters. The reference bus absorbs any
    /// imbalance, so balanced injections give slack-independent flows.
    pub fn angles(&self, injection: &[f64]) -> Vec<f64> {
        let mut rhs = vec![0.0; self.num_buses.saturating_sub(1)];
        for (b, &v) in injection.iter().enumerate() {
            if b != self.slack {
                rhs[self.reduced[b]] = v;
            }
        }
        self.solve_reduced(&mut rhs);
        (0..self.num_buses)
            .map(|b| {
                if b == self.slack {
                    0.0
                } else {
                    rhs[self.reduced[b]]
                }
            })
            .collect()
    }

    /// Branch flows, MW, caused by bus injections (PTDF times injection), without the
    /// shifters' contribution; add [`DcNetwork::shift_flows`] for the full flows.
    pub fn flows_linear(&self, injection: &[f64]) -> Vec<f64> {
        let psi = self.angles(injection);
        self.branches
            .iter()
            .map(|br| br.y * (psi[br.from] - psi[br.to]))
            .collect()
    }

    /// Full branch flows, MW, for bus injections (generation minus load), shifters
    /// included.
    pub fn flows(&self, injection: &[f64]) -> Vec<f64> {
        let mut f = self.flows_linear(injection);
        for (v, s) in f.iter_mut().zip(&self.shift_flows) {
            *v += s;
        }
        f
    }

    /// The PTDF row of branch `k`: MW of flow on it per MW injected at each bus and
    /// withdrawn at the reference bus. `B` is symmetric, so one solve gives the row.
    pub fn ptdf_row(&self, k: usize) -> Vec<f64> {
        let br = &self.branches[k];
        let mut e = vec![0.0; self.num_buses];
        e[br.from] += br.y;
        e[br.to] -= br.y;
        self.angles(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(b: usize) -> String {
        format!("bus index {b}")
    }

    /// A triangle: 0-1 (x 0.1), 1-2 (x 0.2), 0-2 (x 0.2), reference bus 0.
    fn triangle(shift_deg: f64) -> DcNetwork {
        DcNetwork::new(
            3,
            0,
            100.0,
            &[
                (0, 1, 0.1, 0.0, shift_deg, 0),
                (1, 2, 0.2, 0.0, 0.0, 1),
                (0, 2, 0.2, 0.0, 0.0, 2),
            ],
            &describe,
        )
        .expect("connected")
    }

    #[test]
    fn triangle_flows_by_hand() {
        // 1 MW in at bus 1, out at bus 0: path 1-0 has x 0.1, path 1-2-0 has x 0.4, so the
        // direct branch carries 0.4 / 0.5 = 0.8 MW (from 0 to 1: -0.8).
        let f = triangle(0.0).flows(&[-1.0, 1.0, 0.0]);
        assert!((f[0] + 0.8).abs() < 1e-12, "{f:?}");
        assert!((f[1] - 0.2).abs() < 1e-12, "{f:?}");
        assert!((f[2] + 0.2).abs() < 1e-12, "{f:?}");
        let row = triangle(0.0).ptdf_row(0);
        assert!((row[1] + 0.8).abs() < 1e-12 && row[0] == 0.0, "{row:?}");
    }

    #[test]
    fn phase_shifter_drives_a_loop_flow() {
        // A shift phi on 0-1 with no injection: the loop 0-1-2-0 (x 0.5 in total) carries
        // -baseMVA phi / 0.5 MW... with sign: the shifter's Pfinj is -100 * 10 * phi on
        // branch 0-1, balanced by the loop: circulating flow c = Pfinj * x01 / x_loop.
        let phi = 5f64.to_radians();
        let net = triangle(5.0);
        let f = net.flows(&[0.0, 0.0, 0.0]);
        let c = -100.0 * phi / 0.5;
        assert!((f[0] - c).abs() < 1e-9, "{f:?} vs {c}");
        assert!((f[1] - c).abs() < 1e-9, "{f:?}");
        assert!((f[2] + c).abs() < 1e-9, "{f:?}");
        // Flows stay linear in the injections on top of the loop flow.
        let g = net.flows(&[-1.0, 1.0, 0.0]);
        assert!((g[0] - c + 0.8).abs() < 1e-9, "{g:?}");
    }

    #[test]
    fn disconnected_bus_is_named() {
        let e = DcNetwork::new(3, 0, 100.0, &[(0, 1, 0.1, 0.0, 0.0, 0)], &describe)
            .expect_err("bus 2 is cut off");
        assert!(e.to_string().contains("bus index 2"), "{e}");
    }
}
