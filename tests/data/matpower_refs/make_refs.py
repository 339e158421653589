#!/usr/bin/env python3
"""Independent DC-OPF reference values for `tests/integration/case_library.rs`.

For every case/variant in VARIANTS this script builds the project's smart-grid model for 24
hours (see README.md beside this file), solves each hour with PYPOWER's `rundcopf` (MATPOWER's
own DC-OPF formulation in bus angles, solved by the PIPS primal-dual interior-point method with
tightened tolerances), cross-checks every hour with a second, independent formulation (PTDF
flows built here, solved exactly by an active-set method: quadprog's Goldfarb-Idnani dual
method for the QPs, HiGHS' dual simplex for the exact LPs) and with a KKT residual check of
PYPOWER's solution, and writes one JSON per variant.

Regenerate (from the repository root):
    python3 -m venv /tmp/refs-venv
    /tmp/refs-venv/bin/pip install -r tests/data/matpower_refs/requirements.txt
    /tmp/refs-venv/bin/python tests/data/matpower_refs/make_refs.py

The script fails (non-zero exit) if any cross-check misses its bound, so the committed data
always carries the agreement it was produced with.
"""

from __future__ import annotations

import json
import math
import platform
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import quadprog
import scipy
from scipy.optimize import linprog
from pypower.api import ppoption, rundcopf
from pypower.idx_brch import MU_SF, MU_ST, PF
from pypower.idx_bus import LAM_P
from pypower.idx_gen import MU_PMAX, MU_PMIN

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
HOURS = 24

# The daily shape: 24 distinct factors in [0.6, 1.0] (night trough 0.603 at 03:00, evening
# peak 1.000 at 19:00). Distinct values give 24 distinct operating points per case. Hour h's
# system load is load_factor * total Pd * SHAPE[h], which the project spreads over the buses
# in proportion to Pd, so each bus gets load_factor * Pd_b * SHAPE[h].
SHAPE = [
    0.662, 0.631, 0.612, 0.603, 0.608, 0.647, 0.718, 0.806, 0.873, 0.915, 0.938, 0.951,
    0.944, 0.929, 0.917, 0.922, 0.941, 0.968, 0.996, 1.000, 0.977, 0.893, 0.797, 0.724,
]

# The project's default `grid.linear_cost_c2`: units whose gencost c2 is 0 get this c2.
LINEAR_COST_C2 = 0.01

# The project labels a line binding when |flow| >= rating - 1e-4 MW; so does the reference.
BINDING_TOL_MW = 1e-4

# PIPS tolerances (feastol, gradtol, comptol, costtol; MATPOWER's defaults are 1e-6), tried
# in order until PIPS converges.
PIPS_TOLS = (1e-12, 1e-11, 1e-10)

# Bounds the cross-checks must meet, far below the test's tolerances (1e-6 relative cost,
# 1e-3 $/MWh price).
MAX_REL_COST_DIFF = 1e-9
MAX_LMP_DIFF = 1e-6
MAX_DISPATCH_DIFF = 1e-5  # MW
MAX_KKT_RESIDUAL = 1e-6  # $/MWh


@dataclass
class Variant:
    """One reference data set: a case file plus the loads applied to it."""

    name: str
    case_file: str  # relative to the repository root
    description: str
    load_factor: float = 1.0
    modifications: list = field(default_factory=list)
    # The variant whose results this one must differ from beyond the test's tolerances in
    # some hour (a feature that must matter).
    must_differ_from: str | None = None
    # Lines that must bind in at least `min_binding_hours` hours (the congestion variants).
    expect_binding: list = field(default_factory=list)
    min_binding_hours: int = 0
    # Whether to solve the day again with c2 = 0 kept zero (needs all-zero or all-positive
    # c2 among the floored units' cases: the cross-check has no solver for mixed ones).
    exact_lp: bool = True


# case118 branches given a rating (MW), each a single (non-parallel) line carrying one of the
# largest unconstrained flows (about 200-330, 137-228 and 116-192 MW over the day): with
# these ratings each binds in 18-19 of the 24 hours.
DERATED = {("8", "5"): 220, ("30", "17"): 155, ("64", "65"): 125}

LIB = "tests/data/matpower"
DERIVED = "tests/data/matpower_refs/cases"

VARIANTS = [
    Variant(
        "case5", f"{LIB}/case5.m",
        "PJM 5-bus, all costs linear (every unit gets the c2 floor); lines 1-2 (400 MW) and "
        "4-5 (240 MW) rated.",
        expect_binding=["4-5"], min_binding_hours=12,
    ),
    Variant(
        "case24_ieee_rts", "data/case24_ieee_rts.m",
        "IEEE RTS-24 (MATPOWER's case24_ieee_rts, the project's default grid), all lines "
        "rated, taps; the network tables' check (issue 12): LMPs, flows and dispatch. Its "
        "costs mix c2 = 0 and c2 > 0, so the exact-LP day is not solved.",
        exact_lp=False,
    ),
    Variant("case30", f"{LIB}/case30.m", "IEEE 30-bus (Alsac & Stott), all lines rated."),
    Variant(
        "case30_load135", f"{LIB}/case30.m",
        "case30 at 1.35 x its load (the issue's probe level): rated lines bind.",
        load_factor=1.35, expect_binding=["25-27"], min_binding_hours=12,
    ),
    Variant(
        "case30_shift10", f"{DERIVED}/case30_shift10.m",
        "case30 with a 10-degree phase shifter on branch 1-2 (SHIFT = 10), at 1.35 x load: "
        "the shifter moves about 290 MW of circulating flow, which changes the optimum only "
        "where lines bind (at 1.0 x load no line binds and the optimum is the unshifted one).",
        load_factor=1.35, modifications=["branch 1-2: SHIFT 0 -> 10 degrees"],
        must_differ_from="case30_load135",
    ),
    Variant("case39", f"{LIB}/case39.m", "New England 39-bus, all lines rated, taps."),
    Variant(
        "case39_load108", f"{LIB}/case39.m",
        "case39 at 1.08 x its load: line 2-3 binds in the peak hours.",
        load_factor=1.08, expect_binding=["2-3"], min_binding_hours=3,
    ),
    Variant("case57", f"{LIB}/case57.m", "IEEE 57-bus, no line ratings, taps."),
    Variant("case118", f"{LIB}/case118.m", "IEEE 118-bus, no line ratings, taps."),
    Variant(
        "case118_derated", f"{DERIVED}/case118_derated.m",
        "case118 with a few lines given ratings below their unconstrained flows, so that "
        "they bind at most hours.",
        modifications=[f"branch {f}-{t}: RATE_A/B/C 0 (unlimited) -> {r} MW"
                       for (f, t), r in DERATED.items()],
        expect_binding=[f"{f}-{t}" for f, t in DERATED], min_binding_hours=16,
    ),
    Variant(
        "case300", f"{LIB}/case300.m",
        "IEEE 300-bus as is: negative loads, 1.3 MW of net bus shunt conductance GS (17 "
        "buses), taps. No line ratings.",
    ),
]


# ----------------------------------------------------------------------------------------
# MATPOWER case files


def strip_comment(line: str) -> str:
    """Drops a `%` comment, ignoring `%` inside quoted strings (bus names)."""
    quote = None
    prev = " "
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c == "%":
            return line[:i]
        elif c == '"' or (c == "'" and not (prev.isalnum() or prev in "_)]}.'")):
            quote = c
        if not c.isspace():
            prev = c
    return line


def parse_case(path: Path) -> dict:
    """Reads the numeric fields of a MATPOWER version-2 case (baseMVA, bus, gen, branch,
    gencost). Rows end at `;` or a line end; values are separated by blanks or commas."""
    text = "\n".join(strip_comment(l) for l in path.read_text().splitlines())
    text = text.replace("...\n", " ")
    out: dict = {}
    m = re.search(r"mpc\.version\s*=\s*'(\d)'", text)
    if not m or m.group(1) != "2":
        raise ValueError(f"{path}: only MATPOWER case format version 2 is supported")
    m = re.search(r"mpc\.baseMVA\s*=\s*([-+0-9.eE]+)\s*;", text)
    out["baseMVA"] = float(m.group(1))
    for name in ("bus", "gen", "branch", "gencost"):
        m = re.search(rf"mpc\.{name}\s*=\s*\[(.*?)\]\s*;", text, re.S)
        if not m:
            raise ValueError(f"{path}: no mpc.{name}")
        rows = []
        for r in re.split(r"[;\n]", m.group(1)):
            vals = r.replace(",", " ").split()
            if vals:
                rows.append([float(v) for v in vals])
        widths = {len(r) for r in rows}
        if name != "gencost" and len(widths) != 1:
            raise ValueError(f"{path}: mpc.{name} rows have different lengths {widths}")
        width = max(widths)
        out[name] = np.array([r + [0.0] * (width - len(r)) for r in rows])
    if out["gencost"].shape[0] != out["gen"].shape[0]:
        raise ValueError(f"{path}: gencost rows must match gen rows (no reactive costs)")
    return out


# MATPOWER column indices (0-based), from caseformat.m.
BUS_I, BUS_TYPE, PD, GS = 0, 1, 2, 4
GEN_BUS, PG, GEN_STATUS, PMAX, PMIN, RAMP_30 = 0, 1, 7, 8, 9, 18
F_BUS, T_BUS, BR_X, RATE_A, TAP, SHIFT, BR_STATUS, ANGMIN, ANGMAX = 0, 1, 3, 5, 8, 9, 10, 11, 12


def quadratic_costs(case: dict) -> np.ndarray:
    """(c2, c1, c0) per generator from polynomial gencost rows of order <= 2."""
    gc = case["gencost"]
    out = np.zeros((gc.shape[0], 3))
    for i, row in enumerate(gc):
        if row[0] != 2:
            raise ValueError(f"gencost row {i + 1}: only polynomial (model 2) costs")
        n = int(row[3])
        coeffs = list(row[4:4 + n])  # highest order first
        while len(coeffs) > 3:
            if coeffs.pop(0) != 0:
                raise ValueError(f"gencost row {i + 1}: polynomial order > 2")
        coeffs = [0.0] * (3 - len(coeffs)) + coeffs
        out[i] = coeffs
    return out


def check_supported(case: dict, name: str) -> None:
    """Refuses what the project's DC model does not represent (so it cannot hide here)."""
    br = case["branch"]
    live = br[:, BR_STATUS] > 0
    if br.shape[1] > ANGMAX and np.any(
        (br[live, ANGMIN] > -360) & (br[live, ANGMIN] != 0)
        | (br[live, ANGMAX] < 360) & (br[live, ANGMAX] != 0)
    ):
        raise ValueError(f"{name}: branch angle-difference limits are not in the project model")
    if np.any(case["bus"][:, BUS_TYPE] == 4):
        raise ValueError(f"{name}: isolated buses")
    if "dcline" in case:
        raise ValueError(f"{name}: DC lines")


# ----------------------------------------------------------------------------------------
# The hourly model


@dataclass
class Hour:
    """One hour's inputs in MW, case bus order."""

    system_load_mw: float
    bus_load_mw: np.ndarray
    gs_mw: np.ndarray


def hours_of(case: dict, load_factor: float, keep_gs: bool = True) -> list[Hour]:
    pd = case["bus"][:, PD]
    total = pd.sum()
    share = pd / total  # the project's load_share
    gs = case["bus"][:, GS] if keep_gs else np.zeros(len(pd))
    out = []
    for s in SHAPE:
        system = total * s * load_factor
        out.append(Hour(system, share * system, gs.copy()))
    return out


def costs_with_floor(case: dict, c2_floor: float | None) -> np.ndarray:
    c = quadratic_costs(case)
    if np.any(c[:, 0] < 0):
        raise ValueError("negative c2")
    if c2_floor is not None:
        c[c[:, 0] <= 0, 0] = c2_floor
    return c


@dataclass
class Solution:
    cost: float  # $/h including every committed unit's c0
    lmp: np.ndarray  # $/MWh, case bus order
    gen_mw: np.ndarray  # in-service units, file order
    flows_mw: np.ndarray | None = None  # every branch (out-of-service: 0)
    extra: dict = field(default_factory=dict)


def solve_pypower(case: dict, hour: Hour, costs: np.ndarray) -> Solution:
    """PIPS at the tightest tolerance of PIPS_TOLS that it converges to (it cannot always
    reach 1e-12 on congested hours); the tolerance used is recorded."""
    for tol in PIPS_TOLS:
        s = solve_pypower_at(case, hour, costs, tol)
        if s is not None:
            return s
    raise RuntimeError(f"PYPOWER rundcopf did not converge at any of {PIPS_TOLS}")


def solve_pypower_at(case: dict, hour: Hour, costs: np.ndarray, tol: float) -> Solution | None:
    """MATPOWER's DC-OPF (bus angles, makeBdc phase-shift injections, GS in the balance),
    solved by PIPS. Costs are rewritten as model-2 quadratics (c2, c1, c0)."""
    bus = case["bus"].copy()
    bus[:, PD] = hour.bus_load_mw
    bus[:, GS] = hour.gs_mw
    gencost = np.zeros((costs.shape[0], 7))
    gencost[:, 0] = 2
    gencost[:, 3] = 3
    gencost[:, 4:7] = costs
    ppc = {
        "version": "2",
        "baseMVA": case["baseMVA"],
        "bus": bus,
        "gen": case["gen"].copy(),
        "branch": case["branch"].copy(),
        "gencost": gencost,
    }
    opt = ppoption(
        VERBOSE=0, OUT_ALL=0, OPF_ALG_DC=200,
        PDIPM_FEASTOL=tol, PDIPM_GRADTOL=tol, PDIPM_COMPTOL=tol,
        PDIPM_COSTTOL=tol, PDIPM_MAX_IT=500,
    )
    r = rundcopf(ppc, opt)
    if not r["success"]:
        return None
    live = case["gen"][:, GEN_STATUS] > 0
    g = r["gen"]
    return Solution(
        cost=float(r["f"]),
        lmp=r["bus"][:, LAM_P].copy(),
        gen_mw=g[live, PG].copy(),
        flows_mw=r["branch"][:, PF].copy(),
        extra={
            "mu_pmin": g[live, MU_PMIN].copy(),
            "mu_pmax": g[live, MU_PMAX].copy(),
            "mu_sf": r["branch"][:, MU_SF].copy(),
            "mu_st": r["branch"][:, MU_ST].copy(),
            "iterations": int(r["raw"]["output"]["iterations"]),
            "pips_tol": tol,
        },
    )


@dataclass
class Ptdf:
    """The DC network in PTDF form, built here independently of PYPOWER."""

    ptdf: np.ndarray  # branches x buses, MW flow per MW injected (withdrawn at the ref bus)
    shift_flow_mw: np.ndarray  # flow each branch carries from the phase shifters alone
    shift_bus_mw: np.ndarray  # the shifters' equivalent bus injections (Pbusinj), MW
    gen_bus: np.ndarray  # bus index of each in-service unit
    rated: np.ndarray  # indices of in-service branches with RATE_A > 0
    rate_mw: np.ndarray


def build_ptdf(case: dict) -> Ptdf:
    base = case["baseMVA"]
    bus_ids = case["bus"][:, BUS_I].astype(int)
    idx = {b: i for i, b in enumerate(bus_ids)}
    nb = len(bus_ids)
    br = case["branch"]
    nl = br.shape[0]
    live = br[:, BR_STATUS] > 0
    tap = np.where(br[:, TAP] == 0, 1.0, br[:, TAP])
    b = np.where(live, 1.0 / (br[:, BR_X] * tap), 0.0)  # p.u.
    f = np.array([idx[int(v)] for v in br[:, F_BUS]])
    t = np.array([idx[int(v)] for v in br[:, T_BUS]])
    A = np.zeros((nl, nb))  # incidence, +1 at from, -1 at to
    A[np.arange(nl), f] = 1.0
    A[np.arange(nl), t] = -1.0
    Bf = b[:, None] * A
    Bbus = A.T @ Bf
    ref = np.flatnonzero(case["bus"][:, BUS_TYPE] == 3)
    if len(ref) != 1:
        raise ValueError("exactly one reference bus expected")
    keep = np.setdiff1d(np.arange(nb), ref)
    # angle = X @ injection (p.u.), X = inv(B_red) padded with zeros at the ref bus
    X = np.zeros((nb, nb))
    X[np.ix_(keep, keep)] = np.linalg.inv(Bbus[np.ix_(keep, keep)])
    ptdf = Bf @ X
    # A shifter of angle phi: flow_f = b (theta_f - theta_t - phi) = Bf theta + Pfinj,
    # Pfinj = -b phi, equivalent to injections A' Pfinj at the buses (MATPOWER's makeBdc).
    pfinj = -b * np.deg2rad(br[:, SHIFT]) * base
    pbusinj = A.T @ pfinj
    live_gen = case["gen"][:, GEN_STATUS] > 0
    gen_bus = np.array([idx[int(v)] for v in case["gen"][live_gen, GEN_BUS]])
    rated = np.flatnonzero(live & (br[:, RATE_A] > 0))
    return Ptdf(ptdf, pfinj, pbusinj, gen_bus, rated, br[rated, RATE_A])


def fixed_flows(net: Ptdf, hour: Hour) -> np.ndarray:
    """Flow of every branch with all units at zero: loads, GS and shifters."""
    fixed_inj = -(hour.bus_load_mw + hour.gs_mw) - net.shift_bus_mw
    return net.ptdf @ fixed_inj + net.shift_flow_mw


def solve_ptdf(case: dict, net: Ptdf, hour: Hour, costs: np.ndarray) -> Solution:
    """The same hour as a problem in unit outputs only, solved exactly by an active-set
    method: quadprog (dual Goldfarb-Idnani) when every c2 > 0, HiGHS dual simplex when the
    problem is an LP. Prices are the sensitivities of the optimum to each bus's load."""
    live = case["gen"][:, GEN_STATUS] > 0
    c2, c1, c0 = costs[live, 0], costs[live, 1], costs[live, 2]
    pmin, pmax = case["gen"][live, PMIN], case["gen"][live, PMAX]
    ng = len(c2)
    demand = hour.bus_load_mw.sum() + hour.gs_mw.sum()  # shifter injections sum to zero
    k = fixed_flows(net, hour)[net.rated]
    H = net.ptdf[np.ix_(net.rated, net.gen_bus)]  # flow per MW of each unit
    P = net.ptdf[net.rated]  # dflow/d(injection at bus); dflow/d(load) = -P
    nr = len(net.rated)
    if np.all(c2 > 0):
        # min 1/2 x'Gx - a'x  s.t.  C'x >= b, first meq rows equalities.
        G = np.diag(2.0 * c2)
        a = -c1
        # A unit with PMIN = PMAX (RTS-24's synchronous condenser) is an equality row: as a
        # pair of opposite inequalities it makes quadprog report inconsistent constraints.
        fixed = pmin == pmax
        nf = int(fixed.sum())
        eye = np.eye(ng)
        C = np.hstack([np.ones((ng, 1)), eye[:, fixed], eye[:, ~fixed], -eye[:, ~fixed],
                       -H.T, H.T])
        bvec = np.concatenate([[demand], pmin[fixed], pmin[~fixed], -pmax[~fixed],
                               k - net.rate_mw, -net.rate_mw - k])
        x, obj, _, _, lam, _ = quadprog.solve_qp(G, a, C, bvec, meq=1 + nf)
        # dV/db_i = lam_i; b of the flow rows depends on bus loads through k.
        lam_eq = lam[0]
        first_flow = 1 + nf + 2 * (ng - nf)
        lam_up = lam[first_flow:first_flow + nr]
        lam_dn = lam[first_flow + nr:]
        lmp = lam_eq - P.T @ lam_up + P.T @ lam_dn
        method = "quadprog"
    else:
        res = linprog(
            c1, A_ub=np.vstack([H, -H]), b_ub=np.concatenate([net.rate_mw - k, net.rate_mw + k]),
            A_eq=np.ones((1, ng)), b_eq=[demand], bounds=list(zip(pmin, pmax)),
            method="highs-ds", options={"primal_feasibility_tolerance": 1e-10,
                                        "dual_feasibility_tolerance": 1e-10},
        )
        if res.status != 0:
            raise RuntimeError(f"HiGHS: {res.message}")
        if np.any(c2 > 0):
            raise ValueError("mixed zero and non-zero c2 needs a QP solver for zero c2")
        x = res.x
        m_up = res.ineqlin.marginals[:nr]
        m_dn = res.ineqlin.marginals[nr:]
        lmp = res.eqlin.marginals[0] + P.T @ m_up - P.T @ m_dn
        method = "highs-ds"
    cost = float(np.sum((c2 * x + c1) * x + c0))
    return Solution(cost, lmp, x, extra={"method": method})


def kkt_residual(case: dict, net: Ptdf, hour: Hour, costs: np.ndarray, s: Solution) -> float:
    """Largest violation of PYPOWER's own KKT conditions, $/MWh (or MW for feasibility):
    unit stationarity with its bound multipliers, the LMPs implied by the line multipliers,
    balance, limits and complementarity."""
    live = case["gen"][:, GEN_STATUS] > 0
    c2, c1 = costs[live, 0], costs[live, 1]
    pmin, pmax = case["gen"][live, PMIN], case["gen"][live, PMAX]
    p = s.gen_mw
    r = []
    lmp_g = s.lmp[net.gen_bus]
    r.append(np.abs(2 * c2 * p + c1 - lmp_g - s.extra["mu_pmin"] + s.extra["mu_pmax"]))
    # LMP_b = lambda_ref - sum_l ptdf[l, b] (mu_from - mu_to)
    mu = s.extra["mu_sf"] - s.extra["mu_st"]
    ref = np.flatnonzero(case["bus"][:, BUS_TYPE] == 3)[0]
    r.append(np.abs(s.lmp - (s.lmp[ref] - net.ptdf.T @ mu)))
    # primal: balance, unit limits, line limits (MW)
    r.append([abs(p.sum() - hour.bus_load_mw.sum() - hour.gs_mw.sum())])
    r.append(np.maximum(0, pmin - p))
    r.append(np.maximum(0, p - pmax))
    inj = -(hour.bus_load_mw + hour.gs_mw) - net.shift_bus_mw
    np.add.at(inj, net.gen_bus, p)
    flow = net.ptdf @ inj + net.shift_flow_mw
    r.append(np.abs(flow - s.flows_mw))  # PYPOWER's flows equal the PTDF flows
    r.append(np.maximum(0, np.abs(flow[net.rated]) - net.rate_mw))
    # complementarity, $/h
    r.append(s.extra["mu_pmin"] * (p - pmin))
    r.append(s.extra["mu_pmax"] * (pmax - p))
    r.append(s.extra["mu_sf"][net.rated] * (net.rate_mw - flow[net.rated]))
    r.append(s.extra["mu_st"][net.rated] * (net.rate_mw + flow[net.rated]))
    return float(max(np.max(np.abs(np.asarray(v, dtype=float))) if len(v) else 0.0 for v in r))


def binding(case: dict, net: Ptdf, flows: np.ndarray) -> tuple[list[str], float]:
    """Binding lines as `from-to` labels in branch order, and the smallest margin of the
    rated lines that do not bind (how far the classification is from flipping), MW."""
    br = case["branch"]
    labels, margin = [], math.inf
    for i, rate in zip(net.rated, net.rate_mw):
        slack = rate - abs(flows[i])
        if slack <= BINDING_TOL_MW:
            labels.append(f"{int(br[i, F_BUS])}-{int(br[i, T_BUS])}")
        else:
            margin = min(margin, slack)
    return labels, margin


# ----------------------------------------------------------------------------------------
# Derived case files, the day, and the checks


def make_derived() -> None:
    """Writes the derived case files (deterministically) from the verbatim library."""
    (REPO / DERIVED).mkdir(parents=True, exist_ok=True)

    def derive(src: str, dst: str, header: list[str], edit, rows: int) -> None:
        """Copies `src` with `edit` applied to each branch row; exactly `rows` must change."""
        lines = (REPO / LIB / src).read_text().splitlines()
        name = Path(dst).stem
        assert lines[0].startswith("function mpc = ")
        out = [f"function mpc = {name}"] + [f"%   {h}" for h in header] + ["%"]
        in_branch = False
        changed = 0
        for line in lines[1:]:
            if line.startswith("mpc.branch = ["):
                in_branch = True
            elif in_branch and line.startswith("];"):
                in_branch = False
            elif in_branch:
                new = edit(line)
                if new != line:
                    changed += 1
                    line = new
            out.append(line)
        if changed != rows:
            raise SystemExit(f"{dst}: {changed} branch rows changed, expected {rows}")
        (REPO / dst).write_text("\n".join(out) + "\n")

    def shift_12(line: str) -> str:
        c = line.split("\t")
        if c[1:3] == ["1", "2"]:
            c[10] = "10"
        return "\t".join(c)

    derive(
        "case30.m", f"{DERIVED}/case30_shift10.m",
        ["DERIVED from MATPOWER's case30.m (tests/data/matpower/case30.m, verbatim from",
         "github.com/MATPOWER/matpower data/, commit 95d5a6fa, BSD-3-Clause) for the",
         "p2pmarket case-library test. Only change: branch 1-2 has SHIFT = 10 degrees",
         "(a phase shifter); everything else is identical. Written by",
         "tests/data/matpower_refs/make_refs.py."],
        shift_12, rows=1,
    )

    def derate(line: str) -> str:
        c = line.split("\t")
        key = (c[1], c[2])
        if key in DERATED:
            c[6] = c[7] = c[8] = str(DERATED[key])
        return "\t".join(c)

    derive(
        "case118.m", f"{DERIVED}/case118_derated.m",
        ["DERIVED from MATPOWER's case118.m (tests/data/matpower/case118.m, verbatim from",
         "github.com/MATPOWER/matpower data/, commit 95d5a6fa, BSD-3-Clause) for the",
         "p2pmarket case-library test. Only change: RATE_A/B/C (0 = unlimited in the",
         "original) set on these branches so that they bind at most hours of the test's",
         "daily shape: " + ", ".join(f"{f}-{t} {r} MW" for (f, t), r in DERATED.items()) + ".",
         "Written by tests/data/matpower_refs/make_refs.py."],
        derate, rows=len(DERATED),
    )


def versions() -> dict:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "PYPOWER": metadata.version("PYPOWER"),
        "quadprog": metadata.version("quadprog"),
    }


def solve_day(case: dict, net: Ptdf, hours: list[Hour], costs: np.ndarray, with_check: bool):
    """Solves 24 hours with PYPOWER and (optionally) the PTDF cross-check."""
    out, checks = [], []
    for h, hour in enumerate(hours):
        s = solve_pypower(case, hour, costs)
        if with_check:
            x = solve_ptdf(case, net, hour, costs)
            checks.append({
                "hour": h,
                "rel_cost_diff": abs(s.cost - x.cost) / abs(x.cost),
                "max_lmp_diff": float(np.max(np.abs(s.lmp - x.lmp))),
                "max_dispatch_diff_mw": float(np.max(np.abs(s.gen_mw - x.gen_mw))),
                "kkt_residual": kkt_residual(case, net, hour, costs, s),
                "pips_iterations": s.extra["iterations"],
                "pips_tol": s.extra["pips_tol"],
                "second_method": x.extra["method"],
            })
        out.append(s)
    return out, checks


def summarize_checks(checks: list[dict]) -> dict:
    return {
        "max_rel_cost_diff": max(c["rel_cost_diff"] for c in checks),
        "max_lmp_diff": max(c["max_lmp_diff"] for c in checks),
        "max_dispatch_diff_mw": max(c["max_dispatch_diff_mw"] for c in checks),
        "max_kkt_residual": max(c["kkt_residual"] for c in checks),
        "max_pips_iterations": max(c["pips_iterations"] for c in checks),
        "loosest_pips_tol": max(c["pips_tol"] for c in checks),
        "second_method": sorted({c["second_method"] for c in checks}),
    }


def assert_checks(name: str, summary: dict) -> None:
    bad = []
    if summary["max_rel_cost_diff"] > MAX_REL_COST_DIFF:
        bad.append(f"relative cost difference {summary['max_rel_cost_diff']:.3e}")
    if summary["max_lmp_diff"] > MAX_LMP_DIFF:
        bad.append(f"LMP difference {summary['max_lmp_diff']:.3e}")
    if summary["max_dispatch_diff_mw"] > MAX_DISPATCH_DIFF:
        bad.append(f"dispatch difference {summary['max_dispatch_diff_mw']:.3e}")
    if summary["max_kkt_residual"] > MAX_KKT_RESIDUAL:
        bad.append(f"KKT residual {summary['max_kkt_residual']:.3e}")
    if bad:
        raise SystemExit(f"{name}: cross-check failed: " + ", ".join(bad))


def run_variant(v: Variant, results: dict) -> dict:
    case = parse_case(REPO / v.case_file)
    check_supported(case, v.name)
    net = build_ptdf(case)
    hours = hours_of(case, v.load_factor)
    live = case["gen"][:, GEN_STATUS] > 0
    if case["gen"][live, PMIN].sum() > min(h.system_load_mw for h in hours):
        raise SystemExit(f"{v.name}: sum(PMIN) exceeds the lowest hourly load")
    if case["gen"][live, PMAX].sum() < max(h.system_load_mw for h in hours):
        raise SystemExit(f"{v.name}: the peak load exceeds the committed capacity")

    costs = costs_with_floor(case, LINEAR_COST_C2)
    sols, checks = solve_day(case, net, hours, costs, with_check=True)
    summary = summarize_checks(checks)
    assert_checks(v.name, summary)

    # The 24-h reference adds ramp limits |P_h - P_{h-1}| <= 2 RAMP_30. The horizon problem
    # is the 24 hourly problems plus these rows; if the hourly optima satisfy them they are
    # the horizon optimum too (a relaxation's optimum that is feasible is optimal).
    ramp = case["gen"][live, RAMP_30] if case["gen"].shape[1] > RAMP_30 else np.zeros(live.sum())
    limited = ramp > 0
    worst = 0.0
    for a, b in zip(sols, sols[1:]):
        d = np.abs(b.gen_mw - a.gen_mw)[limited] - 2 * ramp[limited]
        worst = max(worst, float(d.max()) if d.size else -math.inf)
    horizon_equals_hourly = worst <= 0.0
    if not horizon_equals_hourly:
        raise SystemExit(f"{v.name}: ramp limits bind across hours; needs a horizon reference")

    # The exact LP-cost variant: c2 = 0 kept zero, no proximal term.
    exact_costs = costs_with_floor(case, None)
    floored = int(np.sum(quadratic_costs(case)[live, 0] <= 0))
    if floored and v.exact_lp:
        exact, exact_checks = solve_day(case, net, hours, exact_costs, with_check=True)
        exact_summary = summarize_checks(exact_checks)
        assert_checks(v.name + " (exact LP costs)", exact_summary)
    else:
        exact, exact_summary = sols, None

    in_service = case["branch"][:, BR_STATUS] > 0
    hour_records = []
    binding_hours: dict[str, int] = {}
    min_margin = math.inf
    for h, (hour, s, x) in enumerate(zip(hours, sols, exact)):
        lines, margin = binding(case, net, s.flows_mw)
        for l in lines:
            binding_hours[l] = binding_hours.get(l, 0) + 1
        min_margin = min(min_margin, margin)
        hour_records.append({
            "hour": h,
            "system_load_mw": hour.system_load_mw,
            "cost": s.cost,
            "bus_lmp": s.lmp.tolist(),
            "generator_mw": s.gen_mw.tolist(),
            "binding_lines": lines,
            "branch_flow_mw": s.flows_mw[in_service].tolist(),
            # PYPOWER's MU_SF + MU_ST: the shadow price of the branch's flow limit, $/MWh.
            "branch_shadow_price": (s.extra["mu_sf"] + s.extra["mu_st"])[in_service].tolist(),
            "exact_lp_cost": x.cost,
            "exact_lp_max_lmp_diff": float(np.max(np.abs(x.lmp - s.lmp))),
        })
        if floored and v.exact_lp:
            hour_records[-1]["exact_lp_bus_lmp"] = x.lmp.tolist()
            hour_records[-1]["exact_lp_generator_mw"] = x.gen_mw.tolist()

    for line in v.expect_binding:
        n = binding_hours.get(line, 0)
        if n < v.min_binding_hours:
            raise SystemExit(f"{v.name}: line {line} binds in {n} hours only")
    if v.min_binding_hours and sum(1 for r in hour_records if r["binding_lines"]) < v.min_binding_hours:
        raise SystemExit(f"{v.name}: lines bind in too few hours")

    daily = sum(s.cost for s in sols)
    daily_exact = sum(x.cost for x in exact)
    record = {
        "variant": v.name,
        "description": v.description,
        "case_file": v.case_file,
        "modifications": v.modifications,
        "shape": SHAPE,
        "load_factor": v.load_factor,
        "total_pd_mw": float(case["bus"][:, PD].sum()),
        "hourly_mw": [h.system_load_mw for h in hours],
        "gs_mw_total": float(case["bus"][:, GS].sum()),
        "linear_cost_c2": LINEAR_COST_C2,
        "units_with_c2_floor": floored,
        "pcc_bus": int(case["bus"][0, BUS_I]),
        "bus_ids": case["bus"][:, BUS_I].astype(int).tolist(),
        "generator_rows": (np.flatnonzero(live) + 1).tolist(),
        "branch_ids": case["branch"][in_service][:, [F_BUS, T_BUS]].astype(int).tolist(),
        "generator_c2": costs[live, 0].tolist(),
        "horizon": {
            "ramp_limited_units": int(limited.sum()),
            "horizon_equals_hourly": horizon_equals_hourly,
            "why": "no in-service unit has RAMP_30 > 0" if not limited.any() else
            "the hourly optima meet every ramp limit, so they are the 24-h optimum",
        },
        "binding_tol_mw": BINDING_TOL_MW,
        "binding_hours_per_line": binding_hours,
        "min_margin_of_nonbinding_rated_lines_mw": min_margin if math.isfinite(min_margin) else None,
        "daily_cost": daily,
        "exact_lp": {
            "what": "the same day with c2 = 0 kept zero (no proximal term)",
            "identical_model": floored == 0,
            "solved": floored == 0 or v.exact_lp,
            "daily_cost": daily_exact,
            "daily_cost_difference": daily - daily_exact,
            "relative_difference": (daily - daily_exact) / daily_exact,
            "max_price_difference": max(r["exact_lp_max_lmp_diff"] for r in hour_records),
            "max_hourly_relative_difference": max(
                (r["cost"] - r["exact_lp_cost"]) / r["exact_lp_cost"] for r in hour_records),
            "cross_check": exact_summary,
        },
        "cross_check": {"summary": summary, "per_hour": checks},
        "hours": hour_records,
    }
    results[v.name] = record
    return record


def main() -> None:
    make_derived()
    results: dict = {}
    for v in VARIANTS:
        rec = run_variant(v, results)
        s = rec["cross_check"]["summary"]
        print(
            f"{v.name:16s} daily {rec['daily_cost']:.6f}  binding {rec['binding_hours_per_line']}"
            f"  xcheck cost {s['max_rel_cost_diff']:.1e} lmp {s['max_lmp_diff']:.1e}"
            f" mw {s['max_dispatch_diff_mw']:.1e} kkt {s['max_kkt_residual']:.1e}",
            flush=True,
        )
    # Features that must matter: a variant must differ from its base beyond the test's
    # tolerances (1e-6 relative cost or 1e-3 $/MWh price) in some hours.
    for v in VARIANTS:
        if not v.must_differ_from:
            continue
        rec, base = results[v.name], results[v.must_differ_from]
        cost = [abs(a["cost"] - b["cost"]) / b["cost"] for a, b in zip(base["hours"], rec["hours"])]
        lmp = [float(np.max(np.abs(np.array(a["bus_lmp"]) - b["bus_lmp"])))
               for a, b in zip(base["hours"], rec["hours"])]
        differ = [h for h in range(HOURS) if cost[h] > 1e-6 or lmp[h] > 1e-3]
        if not differ:
            raise SystemExit(f"{v.name} does not differ from {v.must_differ_from}")
        rec["feature_check"] = {
            "against": v.must_differ_from,
            "hours_that_differ_beyond_test_tolerance": differ,
            "rel_cost_diff": cost,
            "max_lmp_diff": lmp,
        }
    c300 = results["case300"]
    case = parse_case(REPO / c300["case_file"])
    nogs, _ = solve_day(case, build_ptdf(case), hours_of(case, 1.0, keep_gs=False),
                        costs_with_floor(case, LINEAR_COST_C2), with_check=False)
    rel = [(h["cost"] - s.cost) / h["cost"] for h, s in zip(c300["hours"], nogs)]
    if min(rel) <= 1e-6:
        raise SystemExit("GS does not change case300's cost beyond the test tolerance")
    c300["feature_check"] = {
        "against": "case300 with GS = 0 (what a model that drops GS computes)",
        "min_rel_cost_diff": min(rel),
        "max_rel_cost_diff": max(rel),
        "costs_without_gs": [s.cost for s in nogs],
    }

    meta = {
        "generated_by": "tests/data/matpower_refs/make_refs.py",
        "solver": "PYPOWER rundcopf (PIPS interior point, OPF_ALG_DC = 200), tolerances "
                  "PDIPM_FEASTOL/GRADTOL/COMPTOL/COSTTOL = the first of "
                  f"{', '.join(f'{t:g}' for t in PIPS_TOLS)} that converges (per hour: "
                  "cross_check.per_hour[].pips_tol)",
        "cross_check": "own PTDF formulation, exact active set: quadprog (QP), scipy HiGHS "
                       "dual simplex (LP); plus KKT residuals of the PYPOWER solution",
        "versions": versions(),
    }
    for name, rec in results.items():
        rec = {"meta": meta, **rec}
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(rec, indent=1) + "\n")
    print("versions", meta["versions"])
    print_tables(results)


def print_tables(results: dict) -> None:
    """The tables of README.md, in Markdown."""
    print("\n| variant | load factor | system load, MW | daily cost, $ | binding lines (hours) |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        lines = ", ".join(f"{l} ({n})" for l, n in r["binding_hours_per_line"].items()) or "none"
        print(f"| {name} | {r['load_factor']:g} | {min(r['hourly_mw']):.2f} - "
              f"{max(r['hourly_mw']):.2f} | {r['daily_cost']:.6f} | {lines} |")
    print("\n| variant | max rel. cost diff | max LMP diff, $/MWh | max dispatch diff, MW "
          "| max KKT residual | PIPS tol (loosest) | second method |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        for label, s in ((name, r["cross_check"]["summary"]),
                         (name + " (exact LP)", r["exact_lp"]["cross_check"])):
            if s:
                print(f"| {label} | {s['max_rel_cost_diff']:.1e} | {s['max_lmp_diff']:.1e} | "
                      f"{s['max_dispatch_diff_mw']:.1e} | {s['max_kkt_residual']:.1e} | "
                      f"{s['loosest_pips_tol']:g} | {', '.join(s['second_method'])} |")
    print("\n| variant | units floored | daily cost, c2 floor 0.01 | daily cost, exact LP | "
          "difference | relative | max hourly relative | max price difference, $/MWh |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        e = r["exact_lp"]
        print(f"| {name} | {r['units_with_c2_floor']} | {r['daily_cost']:.6f} | "
              f"{e['daily_cost']:.6f} | {e['daily_cost_difference']:.6f} | "
              f"{e['relative_difference']:.4e} | {e['max_hourly_relative_difference']:.4e} | "
              f"{e['max_price_difference']:.4g} |")


if __name__ == "__main__":
    main()
