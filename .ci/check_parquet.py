#!/usr/bin/env python3
"""Checks p2pmarket's Parquet outputs with an independent reader (pyarrow).

Usage: check_parquet.py <sweep_out_dir> [<run_out_dir> ...]

- <sweep_out_dir>: the output of a sweep (`runs/` and `run_hours/` hive-partitioned by
  `pcc_bus`, `manifest.json`). Checks that both datasets open with
  `pyarrow.dataset.dataset(path, partitioning="hive")`, that their columns and types are
  the documented ones, that row counts agree with the manifest and with each other, and
  that every file's sha256 matches the manifest (and no file is missing or unlisted), and
  recomputes each run's settlement chain and each runs part's Merkle root (src/ledger/chain.rs)
  from the rows (the manifest's Ed25519 signature is left to `p2pmarket verify`). An attack
  sweep (its sweep.json has parameters.attack) must have the attack columns too, and their
  invariants: defended => rejected == tampered and no deviation from the attack-free twin
  (deviation, price_bias, money_moved 0, same iterations and convergence); undefended =>
  rejected 0; a run that altered nothing (tampered 0) deviates in nothing; 0 <=
  deviation_rel <= deviation (the relative terms divide by max(|free|, 1)), and the
  attacked hour's iterations and convergence agree with run_hours.
- <run_out_dir> (optional, any number): the output of `p2pmarket run` (`hourly.parquet`,
  `trajectories.parquet`, the `network_*` tables, `summary.json`). Checks columns, types
  and counts, the network tables' invariants (see check_network), and the
  attack columns against `summary.json`'s `attack` (no effect where no attack hit;
  defended, every altered message rejected and the attack-free result exactly).

Exits 0 when everything holds, 1 with one line per problem otherwise, 2 on bad usage.
"""

import hashlib
import json
import tomllib
import os
import struct
import sys

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

F64, I64, BOOL, STR = pa.float64(), pa.int64(), pa.bool_(), pa.string()
NAMES = pa.list_(pa.field("item", pa.string(), nullable=False))

# The documented schemas, in column order. Keep in sync with src/sweep/tables.rs and
# src/output/tables.rs (the README documents these). Counts and indices are int64 in every
# table (issue 12: readers subtract them).
RUNS = [
    ("run", I64), ("part", I64), ("grid_point", I64), ("sample", I64),
    ("load_scale", F64), ("renewable_scale", F64), ("mg_load_scale", F64),
    ("rci_chi", F64), ("rci_kappa", F64), ("rci_xi", F64), ("rci_step_rule", STR),
    ("rci_price_tol", F64), ("rci_power_tol", F64), ("rci_balance_tol", F64),
    ("rci_max_iterations", I64),
    ("converged_hours", I64), ("iterations_max", I64), ("iterations_mean", F64),
    ("price_mean", F64), ("price_min", F64), ("price_max", F64), ("exchange_mwh", F64),
    ("smart_grid_cost", F64), ("microgrid_cost", F64), ("p2p_total_cost", F64),
    ("max_abs_balance", F64), ("settlement_head", STR),
]
RUN_HOURS = [
    ("run", I64), ("hour", I64), ("price", F64), ("exchange_mw", F64),
    ("smart_grid_cost", F64), ("microgrid_cost", F64), ("iterations", I64),
    ("converged", BOOL), ("residual_price", F64), ("residual_power", F64),
    ("residual_dual", F64), ("residual_balance", F64),
]
# The columns an attack sweep's runs table adds after RUNS (src/sweep/tables.rs).
ATTACK = [
    ("attack_variable", STR), ("attack_agent", I64), ("attack_hour", I64),
    ("attack_first_iteration", I64), ("attack_duration", I64), ("attack_size", F64),
    ("attack_shape", STR), ("attack_defence", STR),
    ("attack_converged", BOOL), ("attack_iterations", I64), ("attack_tampered", I64),
    ("attack_rejected", I64), ("free_iterations", I64), ("free_converged", BOOL),
    ("deviation", F64), ("deviation_rel", F64), ("price_bias", F64), ("money_moved", F64),
]
# The hive partition column, as pyarrow infers it from `pcc_bus=7`.
PARTITION = ("pcc_bus", pa.int32())
HOURLY = [
    ("hour", I64), ("system_load_mw", F64), ("price", F64), ("exchange_mw", F64),
    ("smart_grid_cost", F64), ("microgrid_cost", F64), ("converged", BOOL),
    ("iterations", I64), ("residual_price", F64), ("residual_power", F64),
    ("residual_dual", F64), ("residual_balance", F64),
    ("hourly_ref_price", F64), ("hourly_ref_exchange_mw", F64),
    ("hourly_ref_smart_grid_cost", F64), ("hourly_ref_microgrid_cost", F64),
    ("hourly_ref_binding_lines", NAMES),
    ("horizon_ref_price", F64), ("horizon_ref_exchange_mw", F64),
    ("horizon_ref_smart_grid_cost", F64), ("horizon_ref_microgrid_cost", F64),
    ("horizon_ref_battery_mw", F64), ("horizon_ref_binding_lines", NAMES),
    ("battery_plan_mw", F64), ("power_deviation_pct", F64),
    ("attacked", BOOL), ("tampered", I64), ("rejected", I64),
    ("attack_free_converged", BOOL), ("attack_free_price", F64),
    ("attack_free_exchange_mw", F64), ("attack_deviation", F64), ("price_bias", F64),
    ("money_moved", F64),
]
TRAJECTORIES = [
    ("hour", I64), ("iteration", I64), ("agent", STR), ("price", F64),
    ("power_mw", F64), ("dual_upper", F64), ("dual_lower", F64),
]
HOURS = 24
AGENTS = {"smart_grid", "microgrid"}

problems = []


def problem(msg):
    problems.append(msg)


def check_schema(label, schema, expected):
    """Exact column names, order and types (field metadata is not compared)."""
    got = [(f.name, f.type) for f in schema]
    if got != expected:
        want = ", ".join(f"{n}: {t}" for n, t in expected)
        have = ", ".join(f"{n}: {t}" for n, t in got)
        problem(f"{label}: schema mismatch\n  expected: {want}\n  found:    {have}")
        return False
    return True


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def all_files(root):
    out = []
    for d, _, names in os.walk(root):
        for n in names:
            out.append(os.path.relpath(os.path.join(d, n), root).replace(os.sep, "/"))
    return sorted(out)


def check_sweep(root):
    mpath = os.path.join(root, "manifest.json")
    if not os.path.isfile(mpath):
        problem(f"{mpath}: missing (the sweep did not finish)")
        return
    with open(mpath) as f:
        manifest = json.load(f)

    listed = [e["path"] for e in manifest["files"]]
    if listed != sorted(listed):
        problem("manifest.json: files are not sorted by path")
    on_disk = [p for p in all_files(root) if p != "manifest.json"]
    for p in sorted(set(on_disk) - set(listed)):
        problem(f"{p}: on disk but not in manifest.json" + (" (staging file)" if ".tmp" in p or any(c.startswith(".") for c in p.split("/")) else ""))
    for e in manifest["files"]:
        path = os.path.join(root, e["path"])
        if not os.path.isfile(path):
            problem(f"{e['path']}: listed in manifest.json but missing")
            continue
        digest = sha256(path)
        if digest != e["sha256"]:
            problem(f"{e['path']}: sha256 {digest} != manifest {e['sha256']}")
        if os.path.getsize(path) != e["bytes"]:
            problem(f"{e['path']}: {os.path.getsize(path)} bytes != manifest {e['bytes']}")
        if path.endswith(".parquet"):
            try:
                rows = pq.ParquetFile(path).metadata.num_rows
            except Exception as exc:  # any pyarrow failure means "not a readable file"
                problem(f"{e['path']}: not a readable Parquet file: {exc}")
                continue
            if rows != e["rows"]:
                problem(f"{e['path']}: {rows} rows != manifest {e['rows']}")

    check_chains(root, manifest)

    attacks = bool(manifest.get("sweep", {}).get("parameters", {}).get("attack"))
    total = manifest["total_runs"]
    counts = {}
    runs_columns = RUNS + ATTACK if attacks else RUNS
    for table, expected, per_run in (("runs", runs_columns, 1), ("run_hours", RUN_HOURS, HOURS)):
        label = f"{table}/"
        try:
            dataset = ds.dataset(os.path.join(root, table), format="parquet", partitioning="hive")
            t = dataset.to_table()
        except Exception as exc:  # pyarrow raises several types; all mean "unreadable"
            problem(f"{label}: pyarrow cannot read the hive dataset: {exc}")
            continue
        check_schema(label, t.schema, expected + [PARTITION])
        if t.num_rows != total * per_run:
            problem(f"{label}: {t.num_rows} rows != total_runs {total} x {per_run}")
        from_manifest = sum(e["rows"] for e in manifest["files"] if e["path"].startswith(label))
        if t.num_rows != from_manifest:
            problem(f"{label}: {t.num_rows} rows != {from_manifest} in manifest.json")
        files_here = [e for e in manifest["files"] if e["path"].startswith(label)]
        if len(files_here) != manifest["parts"]:
            problem(f"{label}: {len(files_here)} files != manifest parts {manifest['parts']}")
        buses = sorted(set(t.column("pcc_bus").to_pylist())) if "pcc_bus" in t.schema.names else []
        if buses != sorted(manifest["pcc_buses"]):
            problem(f"{label}: pcc_bus partitions {buses} != manifest {manifest['pcc_buses']}")
        counts[table] = t

    if "runs" in counts and "run_hours" in counts:
        runs, hours = counts["runs"], counts["run_hours"]
        ids = sorted(runs.column("run").to_pylist())
        if ids != list(range(total)):
            problem("runs/: `run` is not exactly 0..total_runs")
        conv = {}
        for r, c in zip(hours.column("run").to_pylist(), hours.column("converged").to_pylist()):
            conv[r] = conv.get(r, 0) + int(c)
        for r, c in zip(runs.column("run").to_pylist(), runs.column("converged_hours").to_pylist()):
            if conv.get(r) != c:
                problem(f"runs/: run {r} has converged_hours {c} but run_hours counts {conv.get(r)}")
                break
        if attacks and "attack_defence" in runs.schema.names:
            check_attacks(runs, hours)


def check_attacks(runs, hours):
    """The invariants of the attack columns (see the module doc)."""
    by_hour = {}
    for r, h, k, c in zip(*(hours.column(n).to_pylist() for n in ("run", "hour", "iterations", "converged"))):
        by_hour[(r, h)] = (k, c)
    names = [n for n, _ in ATTACK] + ["run"]
    cols = {n: runs.column(n).to_pylist() for n in names}
    bad = 0
    for i in range(runs.num_rows):
        row = {n: cols[n][i] for n in names}
        r = row["run"]
        why = []
        if row["attack_defence"] not in ("undefended", "defended"):
            why.append(f"attack_defence {row['attack_defence']!r}")
        if row["attack_rejected"] > row["attack_tampered"]:
            why.append("rejected > tampered")
        if row["attack_defence"] == "defended":
            if row["attack_rejected"] != row["attack_tampered"]:
                why.append("defended but rejected != tampered")
            if (row["deviation"], row["deviation_rel"], row["price_bias"], row["money_moved"]) != (0.0, 0.0, 0.0, 0.0):
                why.append("defended but it deviates from the attack-free twin")
            if (row["attack_iterations"], row["attack_converged"]) != (row["free_iterations"], row["free_converged"]):
                why.append("defended but its iterations or convergence differ from the twin's")
        elif row["attack_rejected"] != 0:
            why.append("undefended but rejected > 0")
        if row["attack_tampered"] == 0 and row["deviation"] != 0.0:
            why.append("nothing altered but it deviates")
        if not row["deviation"] >= 0.0 or not row["deviation_rel"] >= 0.0:
            why.append("negative or NaN deviation")
        if row["deviation_rel"] > row["deviation"] and row["deviation"] != float("inf"):
            why.append("deviation_rel > deviation")
        if by_hour.get((r, row["attack_hour"])) != (row["attack_iterations"], row["attack_converged"]):
            why.append("attacked hour's iterations/converged differ from run_hours")
        if why:
            problem(f"runs/: run {r}: " + "; ".join(why))
            bad += 1
            if bad >= 10:
                break


def settlement_head(run, hours):
    """The run's chain (src/ledger/chain.rs): h0 = SHA256(tag || run u64 LE), then
    h = SHA256(h || 38-byte settlement) per hour; no trade is seller 0, buyer 1, mw 0."""
    h = hashlib.sha256(b"p2pmarket/sweep-chain/v1" + struct.pack("<Q", run)).digest()
    for k, (price, exchange) in enumerate(hours):
        seller, buyer = (1, 0) if exchange < 0 else (0, 1)
        mw = abs(exchange)
        body = bytes([2, 2]) + struct.pack("<III", k, seller, buyer)
        h = hashlib.sha256(h + body + struct.pack("<ddd", mw, price, mw * price)).digest()
    return h


def merkle_root(items):
    """ledger::merkle_root: leaves SHA256(0x00 || item), nodes SHA256(0x01 || l || r), odd
    node promoted, root SHA256(0x02 || count u64 LE || top)."""
    level = [hashlib.sha256(b"\x00" + x).digest() for x in items]
    count = len(level)
    while len(level) > 1:
        level = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() if i + 1 < len(level)
                 else level[i] for i in range(0, len(level), 2)]
    top = level[0] if level else bytes(32)
    return hashlib.sha256(b"\x02" + struct.pack("<Q", count) + top).hexdigest()


def check_chains(root, manifest):
    """Each runs part's Merkle root and each run's settlement_head, from the rows."""
    for e in manifest["files"]:
        if not (e["path"].startswith("runs/") and e["path"].endswith(".parquet")):
            continue
        try:
            runs = pq.read_table(os.path.join(root, e["path"]), columns=["run", "settlement_head"])
            hours = pq.read_table(os.path.join(root, "run_hours" + e["path"][4:]),
                                  columns=["run", "hour", "price", "exchange_mw"])
        except Exception as exc:  # any pyarrow failure means "not a readable file"
            problem(f"{e['path']}: cannot read the chain's columns: {exc}")
            continue
        ids, heads = runs.column("run").to_pylist(), runs.column("settlement_head").to_pylist()
        leaves = [struct.pack("<Q", r) + bytes.fromhex(h) for r, h in zip(ids, heads)]
        if merkle_root(leaves) != e.get("merkle_root"):
            problem(f"{e['path']}: Merkle root of its rows != manifest {e.get('merkle_root')}")
        hr, hh = hours.column("run").to_pylist(), hours.column("hour").to_pylist()
        price, exchange = hours.column("price").to_pylist(), hours.column("exchange_mw").to_pylist()
        if hr != [r for r in ids for _ in range(HOURS)] or hh != list(range(HOURS)) * len(ids):
            problem(f"run_hours{e['path'][4:]}: rows are not the runs' hours 0..{HOURS} in order")
            continue
        for i, (r, h) in enumerate(zip(ids, heads)):
            s = slice(i * HOURS, (i + 1) * HOURS)
            if settlement_head(r, zip(price[s], exchange[s])).hex() != h:
                problem(f"{e['path']}: run {r}: settlement_head differs from its run_hours chain")
                break


NETWORK = {
    "network_buses": [
        ("solution", STR), ("hour", I64), ("bus", I64), ("lmp", F64), ("load_mw", F64),
        ("injection_mw", F64),
    ],
    "network_branches": [
        ("solution", STR), ("hour", I64), ("from_bus", I64), ("to_bus", I64),
        ("branch_row", I64), ("flow_mw", F64), ("rate_a_mw", F64), ("loading_pct", F64),
        ("shadow_price", F64), ("binding", BOOL),
    ],
    "network_units": [
        ("solution", STR), ("hour", I64), ("unit", I64), ("bus", I64), ("dispatch_mw", F64),
        ("cost", F64), ("marginal_cost", F64), ("pmin_mw", F64), ("pmax_mw", F64),
        ("limit_dual", F64),
    ],
}
SOLUTIONS = ["hourly_ref", "horizon_ref", "consensus"]


def check_network(root, hourly):
    """The network tables (issue 12, item 1): schemas, one row per solution, hour and
    element; every bus injection sums to zero (a lossless DC network); the hourly
    reference's LMP at the PCC is hourly.parquet's hourly_ref_price; the consensus's is
    within 1e-3 $/MWh of the agreed price where the hour converged; each hourly reference
    unit's cost sums to hourly.parquet's hourly_ref_smart_grid_cost."""
    tables = {}
    for name, schema in NETWORK.items():
        path = os.path.join(root, name + ".parquet")
        if not os.path.isfile(path):
            problem(f"{path}: missing")
            return
        tables[name] = pq.read_table(path)
        if not check_schema(name + ".parquet", tables[name].schema, schema):
            return
    hours = hourly.num_rows
    buses = tables["network_buses"].to_pylist()
    per = len(buses) // (3 * hours) if hours else 0
    if per == 0 or len(buses) != 3 * hours * per:
        problem(f"network_buses.parquet: {len(buses)} rows is not 3 solutions x {hours} hours x buses")
        return
    if [b["solution"] for b in buses[:: hours * per]] != SOLUTIONS:
        problem("network_buses.parquet: solutions are not hourly_ref, horizon_ref, consensus")
    with open(os.path.join(root, "scenario.toml"), "rb") as f:
        pcc = tomllib.load(f).get("microgrid", {}).get("pcc_bus")
    h = hourly.to_pydict()
    sums = {}
    for b in buses:
        key = (b["solution"], b["hour"])
        sums[key] = sums.get(key, 0.0) + b["injection_mw"]
        if b["bus"] == pcc and b["solution"] == "hourly_ref":
            want = h["hourly_ref_price"][b["hour"]]
            if abs(b["lmp"] - want) > 1e-9 * max(1.0, abs(want)):
                problem(f"network_buses.parquet: hour {b['hour']} LMP at the PCC {b['lmp']} != hourly_ref_price {want}")
        if b["bus"] == pcc and b["solution"] == "consensus" and h["converged"][b["hour"]]:
            if abs(b["lmp"] - h["price"][b["hour"]]) > 1e-3:
                problem(f"network_buses.parquet: hour {b['hour']} consensus LMP at the PCC {b['lmp']} != price {h['price'][b['hour']]}")
    for key, total in sums.items():
        if abs(total) > 1e-6:
            problem(f"network_buses.parquet: {key} injections sum to {total} MW, not 0")
    cost = {}
    for u in tables["network_units"].to_pylist():
        if u["solution"] == "hourly_ref":
            cost[u["hour"]] = cost.get(u["hour"], 0.0) + u["cost"]
    for hour, total in cost.items():
        want = h["hourly_ref_smart_grid_cost"][hour]
        if abs(total - want) > 1e-9 * abs(want):
            problem(f"network_units.parquet: hour {hour} costs sum to {total}, hourly says {want}")
    for r in tables["network_branches"].to_pylist():
        if r["rate_a_mw"] is None:
            if r["loading_pct"] is not None or r["shadow_price"] is not None or r["binding"]:
                problem(f"network_branches.parquet: unlimited branch {r['from_bus']}-{r['to_bus']} has a loading or a dual")
        elif r["binding"] != (abs(r["flow_mw"]) >= r["rate_a_mw"] - 1e-4) or r["shadow_price"] < 0:
            problem(f"network_branches.parquet: branch {r['from_bus']}-{r['to_bus']} hour {r['hour']}: binding/dual inconsistent")


def check_run(root):
    hourly_path = os.path.join(root, "hourly.parquet")
    traj_path = os.path.join(root, "trajectories.parquet")
    summary_path = os.path.join(root, "summary.json")
    for p in (hourly_path, traj_path, summary_path):
        if not os.path.isfile(p):
            problem(f"{p}: missing")
    if problems:
        return
    try:
        hourly = pq.read_table(hourly_path)
        traj = pq.read_table(traj_path)
    except Exception as exc:  # any pyarrow failure means "not a readable file"
        problem(f"{root}: cannot read the run's Parquet files: {exc}")
        return
    with open(summary_path) as f:
        summary = json.load(f)
    check_schema("hourly.parquet", hourly.schema, HOURLY)
    check_network(root, hourly)
    ok = check_schema("trajectories.parquet", traj.schema, TRAJECTORIES)
    if hourly.num_rows != summary.get("hours", HOURS):
        problem(f"hourly.parquet: {hourly.num_rows} rows != summary hours {summary.get('hours')}")
    if hourly.column("hour").to_pylist() != list(range(hourly.num_rows)):
        problem("hourly.parquet: `hour` is not 0..hours in order")
    converged = sum(hourly.column("converged").to_pylist())
    if "converged_hours" in summary and converged != summary["converged_hours"]:
        problem(f"hourly.parquet: {converged} converged hours != summary {summary['converged_hours']}")
    if "iterations_max" in summary and max(hourly.column("iterations").to_pylist()) != summary["iterations_max"]:
        problem("hourly.parquet: max iterations != summary iterations_max")
    check_attack_columns(hourly, summary)
    if ok and traj.num_rows > 0:
        agents = set(traj.column("agent").to_pylist())
        if not agents <= AGENTS:
            problem(f"trajectories.parquet: unknown agents {sorted(agents - AGENTS)}")
        last = {}
        for h, k in zip(traj.column("hour").to_pylist(), traj.column("iteration").to_pylist()):
            last[h] = max(last.get(h, 0), k)
        iters = dict(zip(hourly.column("hour").to_pylist(), hourly.column("iterations").to_pylist()))
        for h, k in sorted(last.items()):
            if h not in iters:
                problem(f"trajectories.parquet: hour {h} is not in hourly.parquet")
            elif k != iters[h]:
                problem(f"trajectories.parquet: hour {h} ends at iteration {k}, hourly says {iters[h]}")


def check_attack_columns(hourly, summary):
    """The attack columns of a run: zero effect where no attack hit; defended, every
    altered message rejected and the attack-free result exactly; sums as in summary.json."""
    names = set(hourly.schema.names)
    if not {"attacked", "tampered", "rejected", "attack_deviation"} <= names:
        return
    rows = hourly.to_pylist()
    attack = summary.get("attack")
    defence = attack.get("defence") if attack else None
    for r in rows:
        h = r["hour"]
        if not r["attacked"]:
            if r["tampered"] or r["rejected"] or r["attack_deviation"] or r["price_bias"] or r["money_moved"]:
                problem(f"hourly.parquet: hour {h} was not attacked but shows an attack's effect")
            if r["attack_free_price"] != r["price"]:
                problem(f"hourly.parquet: hour {h} was not attacked but its attack-free price differs")
        elif defence == "defended":
            if r["rejected"] != r["tampered"]:
                problem(f"hourly.parquet: defended hour {h} rejected {r['rejected']} of {r['tampered']} altered messages")
            if r["attack_deviation"] != 0 or r["price"] != r["attack_free_price"]:
                problem(f"hourly.parquet: defended hour {h} differs from its attack-free result")
        elif r["rejected"] != 0:
            problem(f"hourly.parquet: undefended hour {h} reports rejections")
    attacked = [r["hour"] for r in rows if r["attacked"]]
    if attack is None:
        if attacked:
            problem("hourly.parquet: attacked hours but summary.json has no `attack`")
        return
    if attacked != attack.get("attacked_hours"):
        problem(f"hourly.parquet: attacked hours {attacked} != summary {attack.get('attacked_hours')}")
    for key in ("tampered", "rejected"):
        if sum(r[key] for r in rows) != attack.get(key):
            problem(f"hourly.parquet: sum of {key} != summary attack.{key}")


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    check_sweep(argv[1])
    for run in argv[2:]:
        check_run(run)
    if problems:
        for p in problems:
            print(f"check_parquet: {p}", file=sys.stderr)
        return 1
    print(f"check_parquet: OK ({', '.join(argv[1:])})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
