#!/usr/bin/env python3
"""Reads a `p2pmarket run` output directory with polars and DuckDB, the readers that do
not decode Arrow's schema blob, and checks what they see (issue 12, item 2):

- the units and descriptions, from the plain Parquet key-value metadata
  `p2pmarket.columns` (DuckDB's `parquet_kv_metadata`, polars' `read_parquet_metadata`),
  for every column of `hourly.parquet` and `trajectories.parquet`;
- signed integers for hours, iterations and counts (`hour - 1` is -1 at hour 0, not a
  wrap-around), and the binding lines as a list of strings, empty where no line binds;
- the same values in both clients.

    python3 .ci/check_clients.py OUT

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


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    out = argv[1]
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
    types = dict(
        con.execute(
            "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?))",
            [hourly],
        ).fetchall()
    )
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

    if problems:
        for p in problems:
            print(f"check_clients: {p}", file=sys.stderr)
        return 1
    print(
        f"check_clients: OK ({out}: polars {pl.__version__}, DuckDB {duckdb.__version__}; "
        f"{len(h.columns)} + {len(t.columns)} columns with units)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
