"""Reads a finalized (or single-run) sweep dataset with DuckDB and polars, as the README
shows, and checks both against its manifest: every run once, 24 hours per run.
Usage: python3 .ci/read_dataset.py SWEEP_DIR"""
import json
import sys

import duckdb
import polars as pl

d = sys.argv[1]
m = json.load(open(f"{d}/manifest.json"))
total = m["total_runs"]

con = duckdb.connect()
runs = con.sql(
    f"SELECT * FROM read_parquet('{d}/runs/*/*.parquet', hive_partitioning = true)"
)
n, distinct, buses = con.sql(
    "SELECT count(*), count(DISTINCT run), list(DISTINCT pcc_bus) FROM runs"
).fetchall()[0]
assert n == total and distinct == total, (n, distinct, total)
assert sorted(int(b) for b in buses) == sorted(m["pcc_buses"]), buses

hours = pl.scan_parquet(f"{d}/run_hours/**/*.parquet", hive_partitioning=True)
per_run = hours.group_by("run").agg(pl.len().alias("hours")).collect()
assert per_run.height == total, per_run.height
assert per_run["hours"].unique().to_list() == [24], per_run["hours"].unique()
assert "pcc_bus" in hours.collect_schema().names()
print(f"duckdb and polars: {total} runs, {total * 24} run-hours in {d}")
