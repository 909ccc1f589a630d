#!/usr/bin/env python3
"""The summary of several tools/twa_experiment.sh runs (one per seed): per model (last
checkpoint, SWA, TWA) and width, kNN and probe top-1 as mean, standard deviation and range
over the runs, then TWA's difference from SWA and from the last checkpoint within each run
(they share the pretraining, so the seed's own spread cancels) as mean ± standard deviation
over the runs, marked `*` where the mean is larger than that deviation (never with one run).

    twa_report.py OUT...      # each OUT holds twa/comparison.json

Prints the markdown tables.
"""
import json
import os
import sys

from ablation_report import cell, summary

MODELS = ["last checkpoint", "SWA", "TWA"]


def main():
    outs = sys.argv[1:]
    if not outs:
        sys.exit("usage: twa_report.py OUT...")
    runs = []
    for out in outs:
        path = os.path.join(out, "twa", "comparison.json")
        try:
            runs.append({r["model"]: r for r in json.load(open(path))})
        except (OSError, ValueError, KeyError) as e:
            sys.exit(f"{path}: {e}")
    widths = runs[0]["TWA"]["widths"]

    def stat(model, key, i):
        return summary([100 * r[model][key][i] for r in runs])

    print(f"{len(runs)} runs; top-1 %, mean ± sd (range)\n")
    print("| model | objective | " + " | ".join(f"{w:g} kNN | {w:g} linear" for w in widths) + " |")
    print("|---" * (2 + 2 * len(widths)) + "|")
    for m in MODELS:
        objective = [r[m]["objective"] for r in runs if r[m]["objective"] is not None]
        o = summary(objective)
        shown = "-" if o is None else f"{o['mean']:.4f} ± {o['sd']:.4f}"
        cells = [cell(stat(m, k, i)) for i in range(len(widths)) for k in ("knn_top1", "linear_top1")]
        print(f"| {m} | {shown} | " + " | ".join(cells) + " |")
    print()
    print("| paired difference | " + " | ".join(f"{w:g} kNN | {w:g} linear" for w in widths) + " |")
    print("|---" * (1 + 2 * len(widths)) + "|")
    for other in ("SWA", "last checkpoint"):
        cells = []
        for i in range(len(widths)):
            for k in ("knn_top1", "linear_top1"):
                d = summary([100 * (r["TWA"][k][i] - r[other][k][i]) for r in runs])
                beyond = len(runs) > 1 and abs(d["mean"]) > d["sd"]
                cells.append(f"{d['mean']:+.2f} ± {d['sd']:.2f}{' *' if beyond else ''}")
        print(f"| TWA minus {other} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
