#!/usr/bin/env python3
"""Regenerate results/default/hourly.md from a `p2pmarket run` output directory.

Usage: cargo run --release -- run --out out && python3 results/make_tables.py out
(the PNGs, summary.json and hourly.parquet of results/default are copied from `out`).
"""
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq

src = Path(sys.argv[1] if len(sys.argv) > 1 else "out")
dst = Path(__file__).parent / "default"
dst.mkdir(exist_ok=True)
for f in list(src.glob("*.png")) + [src / "summary.json", src / "hourly.parquet"]:
    shutil.copy(f, dst / f.name)
t = pq.read_table(src / "hourly.parquet").to_pydict()
rows = [
    "| hour | load MW | conv | iter | P2P price $/MWh | hourly ref price | P2P exchange MW "
    "| hourly ref exchange | 24-h co-opt exchange | binding lines |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
for i in range(len(t["hour"])):
    rows.append(
        f"| {t['hour'][i]} | {t['system_load_mw'][i]:.1f} | {'yes' if t['converged'][i] else 'NO'} "
        f"| {t['iterations'][i]} | {t['price'][i]:.4f} | {t['hourly_ref_price'][i]:.4f} "
        f"| {t['exchange_mw'][i]:.4f} | {t['hourly_ref_exchange_mw'][i]:.4f} "
        f"| {t['horizon_ref_exchange_mw'][i]:.4f} | {', '.join(t['hourly_ref_binding_lines'][i]) or '-'} |"
    )
(dst / "hourly.md").write_text(
    "# Default scenario, hourly results\n\n"
    "Produced by `cargo run --release -- run` (CPU f64 reference) and "
    "`python3 results/make_tables.py out`; `summary.json` holds the headline figures.\n\n"
    + "\n".join(rows)
    + "\n"
)
