#!/usr/bin/env python3
"""Combine several bench/run.sh result tables (.tsv) into one Markdown table:
the median of each cell, and its range (min-max) across the runs.

    python3 bench/median.py run1.tsv run2.tsv run3.tsv
"""
import csv
import statistics
import sys


def main(paths):
    runs = []
    for p in paths:
        with open(p, newline="") as f:
            runs.append(list(csv.DictReader(f, delimiter="\t")))
    header = list(runs[0][0].keys())
    keys = [(r["scenario"], r["mode"]) for r in runs[0]]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * 2 + "---:|" * (len(header) - 2))
    for scenario, mode in keys:
        rows = [r for run in runs for r in run if (r["scenario"], r["mode"]) == (scenario, mode)]
        cells = [scenario, mode]
        for col in header[2:]:
            vals = [float(r[col]) for r in rows]
            med = statistics.median(vals)
            fmt = "{:.2f}" if col in ("p50 ms", "p99 ms", "vs ceiling") else "{:.0f}"
            lo, hi = fmt.format(min(vals)), fmt.format(max(vals))
            cell = fmt.format(med)
            if lo != hi:
                cell += f" ({lo}–{hi})"
            cells.append(cell)
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
