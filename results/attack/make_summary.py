#!/usr/bin/env python3
"""Writes the table of results/attack/summary.md from an attack study's sweep directory.

    p2pmarket sweep --backend cpu --config experiments/sweeps/attack_study.toml --out study
    python3 results/attack/make_summary.py study > table.md

Prints, per (variable, defence): the share of runs whose attacked hour converged, the
share with altered messages, the share equal to the attack-free result (deviation 0), the
defended rejected == tampered share, the messages altered and rejected; then the defended
totals, the ledger oracle's counts from the manifest, and, for the runs that still
converge undefended, the median |price bias| per variable. Reads only the sweep's files
(pyarrow).
"""
import glob
import json
import statistics
import sys

import pyarrow.parquet as pq

VARIABLES = ["chi", "price", "power", "dual_upper", "dual_lower", "slope", "gap",
             "stealthy_price"]


def main(study):
    rows = []
    for f in sorted(glob.glob(f"{study}/runs/**/*.parquet", recursive=True)):
        rows += pq.read_table(f).to_pylist()
    manifest = json.load(open(f"{study}/manifest.json"))
    pct = lambda n, d: f"{100.0 * n / d:.1f} %" if d else "-"
    print("| variable | defence | attacked hour converged | runs with altered messages "
          "| deviation from attack-free = 0 | rejected == tampered (defended) "
          "| messages altered | rejected |")
    print("|---|---|---|---|---|---|---|---|")
    variables = [v for v in VARIABLES if any(r["attack_variable"] == v for r in rows)]
    for v in variables:
        for defence in ["defended", "undefended"]:
            here = [r for r in rows
                    if r["attack_variable"] == v and r["attack_defence"] == defence]
            n = len(here)
            conv = sum(r["attack_converged"] for r in here)
            altered = sum(r["attack_tampered"] > 0 for r in here)
            exact = sum(r["deviation"] == 0.0 for r in here)
            equal = sum(r["attack_rejected"] == r["attack_tampered"] for r in here)
            tampered = sum(r["attack_tampered"] for r in here)
            rejected = sum(r["attack_rejected"] for r in here)
            print(f"| {v} | {defence} | {pct(conv, n)} | {pct(altered, n)} | {pct(exact, n)} "
                  f"| {pct(equal, n) if defence == 'defended' else '-'} | {tampered} "
                  f"| {rejected} |")
    defended = [r for r in rows if r["attack_defence"] == "defended"]
    print()
    print(f"Defended ({len(defended)} runs): "
          f"{sum(r['attack_converged'] for r in defended)} converged, "
          f"{sum(r['deviation'] == 0.0 for r in defended)} equal to the attack-free result "
          f"(deviation 0), every altered message rejected "
          f"({sum(r['attack_rejected'] for r in defended)} of "
          f"{sum(r['attack_tampered'] for r in defended)}).")
    o = manifest.get("ledger_oracle") or {}
    count = lambda x: len(x) if isinstance(x, list) else x
    if o:
        print()
        print(f"Ledger oracle: {o['agreements']} of {len(o['sample'])} sampled defended runs "
              f"agree with the engine; {o['forged_rejected']} of {o['forged_submitted']} "
              f"forged copies rejected; {o['twins_replayed']} attack-free twins replayed, "
              f"{count(o['false_alarms'])} false alarms; {count(o['disagreements'])} disagreements.")
    print()
    print("Undefended runs with altered messages that still converge: median |price bias| "
          "($/MWh) and median |deviation_rel|:")
    print()
    print("| variable | runs | converged | median abs price bias | median deviation_rel |")
    print("|---|---|---|---|---|")
    for v in variables:
        here = [r for r in rows if r["attack_variable"] == v
                and r["attack_defence"] == "undefended" and r["attack_tampered"] > 0]
        conv = [r for r in here if r["attack_converged"]]
        med = lambda xs: f"{statistics.median(xs):.3g}" if xs else "-"
        print(f"| {v} | {len(here)} | {pct(len(conv), len(here))} "
              f"| {med([abs(r['price_bias']) for r in conv])} "
              f"| {med([r['deviation_rel'] for r in conv])} |")


if __name__ == "__main__":
    main(sys.argv[1])
