#!/usr/bin/env python3
"""Reads p2pmarket's outputs with polars and DuckDB, the readers that do not decode
Arrow's schema blob, and checks what they see (issue 12, item 2):

- a `run` output (a directory with `hourly.parquet`): the units and descriptions, from the
  plain Parquet key-value metadata `p2pmarket.columns` (DuckDB's `parquet_kv_metadata`,
  polars' `read_parquet_metadata`), for every column of `hourly.parquet` and
  `trajectories.parquet`; signed integers for hours, iterations and counts (`hour - 1` is
  -1 at hour 0, not a wrap-around); the binding lines as a list of strings, empty where no
  line binds; the same values in both clients; and, with `--ledger`, the ledger tables'
  integers signed (`hour - 1`, `height - 1`);
- a sweep (a directory with `manifest.json`): every integer column of the `runs` and
  `run_hours` hive datasets signed in both clients, `min(hour - 1)` = -1 and
  `min(run - 1)` = -1 (run 0, hour 0), and the same `run` and `hour` values in both.

    python3 .ci/check_clients.py DIR [DIR ...]

Exits 0 when everything holds, 1 with one line per problem otherwise, 2 on bad usage.
"""

import json
import os
import sys

import duckdb
import polars as pl

problems = []


def problem(msg):
    problems.append(msg)


def check_units(path, columns):
    """Both clients see a unit and a description for every column."""
    seen_duck = duckdb.sql(
        "SELECT value FROM parquet_kv_metadata(?) WHERE key = 'p2pmarket.columns'",
        params=[path],
    ).fetchall()
    if len(seen_duck) != 1:
        problem(f"{path}: DuckDB sees {len(seen_duck)} p2pmarket.columns entries")
        return
    value = seen_duck[0][0]
    duck = json.loads(value.decode() if isinstance(value, (bytes, bytearray)) else value)
    meta = pl.read_parquet_metadata(path)
    if "p2pmarket.columns" not in meta:
        problem(f"{path}: polars sees no p2pmarket.columns ({sorted(meta)})")
        return
    polars_units = json.loads(meta["p2pmarket.columns"])
    if duck != polars_units:
        problem(f"{path}: DuckDB and polars read different column metadata")
    for c in columns:
        entry = duck.get(c)
        if not entry or "unit" not in entry or not entry.get("description"):
            problem(f"{path}: column {c} has no unit/description in the key-value metadata")


def duck_types(con, source):
    """Column name -> DuckDB type of `source` (a FROM clause)."""
    return dict(
        con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {source})").fetchall()
    )


# DuckDB's unsigned integer types (a `hour - 1` on them is an out-of-range error at 0).
DUCK_UNSIGNED = {"UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}


def check_signed(label, schema, types, counters):
    """Every integer column is signed in polars (`schema`) and DuckDB (`types`), and the
    `counters` are 64-bit (BIGINT / Int64) in both."""
    for col, dtype in schema.items():
        if dtype.is_integer() and not dtype.is_signed_integer():
            problem(f"polars: {label}.{col} is {dtype}, expected a signed integer")
    for col, dtype in types.items():
        if dtype in DUCK_UNSIGNED:
            problem(f"DuckDB: {label}.{col} is {dtype}, expected a signed integer")
    for col in counters:
        if schema.get(col) != pl.Int64:
            problem(f"polars: {label}.{col} is {schema.get(col)}, expected Int64")
        if types.get(col) != "BIGINT":
            problem(f"DuckDB: {label}.{col} is {types.get(col)}, expected BIGINT")


def check_minus_one(label, con, source, frame, col):
    """`min(col - 1)` is -1 in both clients (the column starts at 0); DuckDB raises on an
    unsigned column, polars wraps it."""
    try:
        lowest = con.execute(f"SELECT min({col} - 1) FROM {source}").fetchone()[0]
    except duckdb.Error as exc:
        lowest = f"an error ({exc})"
    if lowest != -1:
        problem(f"DuckDB: {label}: min({col} - 1) is {lowest}, expected -1")
    lowest = frame.select((pl.col(col) - 1).min()).collect().item()
    if lowest != -1:
        problem(f"polars: {label}: min({col} - 1) is {lowest}, expected -1")


def check_sweep(d):
    """A sweep's `runs` and `run_hours` datasets, as the README reads them."""
    con = duckdb.connect()
    for table, counters in (
        ("runs", ("run", "grid_point", "sample", "converged_hours", "iterations_max")),
        ("run_hours", ("run", "hour", "iterations")),
    ):
        glob = os.path.join(d, table, "*", "*.parquet")
        source = f"read_parquet('{glob}', hive_partitioning = true)"
        frame = pl.scan_parquet(os.path.join(d, table, "**", "*.parquet"), hive_partitioning=True)
        schema = dict(frame.collect_schema())
        label = f"{os.path.basename(os.path.normpath(d))}/{table}"
        check_signed(label, schema, duck_types(con, source), counters)
        check_minus_one(label, con, source, frame, "run")
        if table == "run_hours":
            check_minus_one(label, con, source, frame, "hour")
            duck = con.execute(f"SELECT run, hour FROM {source} ORDER BY run, hour").fetchall()
            ours = frame.select("run", "hour").sort("run", "hour").collect().rows()
            if duck != ours:
                problem(f"{label}: DuckDB and polars read different runs and hours")
        elif "attack_hour" in schema:
            check_signed(label, schema, duck_types(con, source),
                         ("attack_hour", "attack_first_iteration", "attack_iterations",
                          "attack_tampered", "attack_rejected", "free_iterations"))
    return f"{d}: sweep, signed runs and hours"


def check_ledger(out):
    """`run --ledger`'s tables: every integer signed; hours and heights start at 0."""
    con = duckdb.connect()
    for name, counters, starts in (
        ("ledger_blocks.parquet", ("height", "timestamp_ms", "proposer", "tx_count", "votes"),
         ("height",)),
        ("ledger_transactions.parquet",
         ("height", "index", "run", "hour", "iteration", "agent", "seller", "buyer"),
         ("height", "hour")),
    ):
        path = os.path.join(out, name)
        source = f"read_parquet('{path}')"
        frame = pl.scan_parquet(path)
        check_signed(name, dict(frame.collect_schema()), duck_types(con, source), counters)
        for col in starts:
            check_minus_one(name, con, source, frame, col)


def check_run(out):
    """A `run` output (see the module doc)."""
    hourly = os.path.join(out, "hourly.parquet")
    traj = os.path.join(out, "trajectories.parquet")
    h = pl.read_parquet(hourly)
    t = pl.read_parquet(traj)
    check_units(hourly, h.columns)
    check_units(traj, t.columns)
    units = json.loads(pl.read_parquet_metadata(hourly)["p2pmarket.columns"])
    if units.get("price", {}).get("unit") != "$/MWh":
        problem(f"hourly.parquet: price unit {units.get('price')}")

    # polars: types and arithmetic.
    for col in ("hour", "iterations", "tampered", "rejected"):
        if h.schema[col] != pl.Int64:
            problem(f"polars: hourly.{col} is {h.schema[col]}, expected Int64")
    for col in ("hour", "iteration"):
        if t.schema[col] != pl.Int64:
            problem(f"polars: trajectories.{col} is {t.schema[col]}, expected Int64")
    for col in ("hourly_ref_binding_lines", "horizon_ref_binding_lines"):
        if h.schema[col] != pl.List(pl.String):
            problem(f"polars: hourly.{col} is {h.schema[col]}, expected List(String)")
    if h.select((pl.col("hour") - 1).min()).item() != -1:
        problem("polars: hour - 1 at hour 0 is not -1")
    if sorted(h["hour"].to_list()) != list(range(24)):
        problem(f"polars: hours {h['hour'].to_list()}, expected 0..=23")

    # DuckDB: the same types and values.
    con = duckdb.connect()
    types = duck_types(con, f"read_parquet('{hourly}')")
    for col in ("hour", "iterations", "tampered", "rejected"):
        if types.get(col) != "BIGINT":
            problem(f"DuckDB: hourly.{col} is {types.get(col)}, expected BIGINT")
    for col in ("hourly_ref_binding_lines", "horizon_ref_binding_lines"):
        if types.get(col) != "VARCHAR[]":
            problem(f"DuckDB: hourly.{col} is {types.get(col)}, expected VARCHAR[]")
    lowest = con.execute("SELECT min(hour - 1) FROM read_parquet(?)", [hourly]).fetchone()[0]
    if lowest != -1:
        problem(f"DuckDB: min(hour - 1) is {lowest}, expected -1")
    duck_lines = [
        r[0]
        for r in con.execute(
            "SELECT hourly_ref_binding_lines FROM read_parquet(?) ORDER BY hour", [hourly]
        ).fetchall()
    ]
    polars_lines = h.sort("hour")["hourly_ref_binding_lines"].to_list()
    if duck_lines != polars_lines:
        problem("DuckDB and polars read different binding lines")
    if any(x is None for x in polars_lines):
        problem("hourly_ref_binding_lines has nulls; an hour without binding lines is []")
    duck_price = [
        r[0] for r in con.execute("SELECT price FROM read_parquet(?) ORDER BY hour", [hourly]).fetchall()
    ]
    if duck_price != h.sort("hour")["price"].to_list():
        problem("DuckDB and polars read different prices")
    what = f"{out}: {len(h.columns)} + {len(t.columns)} columns with units"
    if os.path.isfile(os.path.join(out, "ledger.json")):
        check_ledger(out)
        what += ", signed ledger tables"
    return what


def main(argv):
    if len(argv) < 2:
        usage = [line.strip() for line in __doc__.splitlines() if "check_clients.py" in line]
        print(f"usage: {usage[0]}", file=sys.stderr)
        return 2
    seen = []
    for d in argv[1:]:
        if os.path.isfile(os.path.join(d, "manifest.json")):
            seen.append(check_sweep(d))
        elif os.path.isfile(os.path.join(d, "hourly.parquet")):
            seen.append(check_run(d))
        else:
            problem(f"{d}: neither a sweep (manifest.json) nor a run (hourly.parquet)")

    if problems:
        for p in problems:
            print(f"check_clients: {p}", file=sys.stderr)
        return 1
    print(
        f"check_clients: OK (polars {pl.__version__}, DuckDB {duckdb.__version__}; "
        + "; ".join(seen)
        + ")"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
