#!/usr/bin/env python3
"""The summary of tools/ablation_experiment.sh: per row and width, kNN and probe top-1 as
mean, standard deviation and range over seeds, and SlimCLR's difference from each width
pretrained alone and from the bare slimmable run, marked where it is larger than the
spread (|difference of means| > the two standard deviations added).

    ablation_report.py OUT --seeds N --setting TEXT --wall-s SECONDS

Reads OUT/<row>-s<seed>/{knn,linear}.json; writes OUT/ablation.md and OUT/ablation.json.
"""
import argparse
import json
import os
import statistics

ROWS = [
    ("slimmable", "slimmable, no technique"),
    ("slow-start", "+ slow start"),
    ("slow-start+distill", "+ slow start + distillation"),
    ("slimclr", "SlimCLR (+ re-weighting)"),
]
WIDTHS = [1.0, 0.75, 0.5, 0.25]


def figures(out, row, seeds, kind, key):
    """{width: [top-1 per seed]} of one row, from each seed's JSON."""
    per = {w: [] for w in WIDTHS}
    for s in range(seeds):
        path = os.path.join(out, f"{row}-s{s}", f"{kind}.json")
        if not os.path.exists(path):
            continue
        for r in json.load(open(path)):
            if r["width"] in per:
                per[r["width"]].append(100 * r[key])
    return per


def summary(xs):
    if not xs:
        return None
    return {"n": len(xs), "mean": statistics.mean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
            "min": min(xs), "max": max(xs), "values": xs}


def cell(s):
    return "-" if s is None else f"{s['mean']:.2f} ± {s['sd']:.2f} ({s['min']:.1f}-{s['max']:.1f})"


def diff(a, b):
    if a is None or b is None:
        return None, "-"
    d = a["mean"] - b["mean"]
    beyond = abs(d) > a["sd"] + b["sd"]
    return d, f"{d:+.2f}{' *' if beyond else ''}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seeds", type=int, required=True)
    ap.add_argument("--setting", required=True)
    ap.add_argument("--wall-s", type=float, required=True)
    a = ap.parse_args()
    result = {"setting": a.setting, "seeds": a.seeds, "wall_s": a.wall_s, "rows": {}}
    md = [f"Setting: {a.setting}; {a.seeds} seeds per row; the whole script took {a.wall_s / 60:.0f} min.",
          "Cells: top-1 in %, mean ± standard deviation (min-max) over seeds.", ""]
    for kind, key, title in (("knn", "knn_top1", "kNN (k 200)"), ("linear", "top1", "linear probe (fast protocol, 20 epochs)")):
        md += [f"### {title}", "", "| row | " + " | ".join(f"width {w}" for w in WIDTHS) + " |",
               "|---|" + "---|" * len(WIDTHS)]
        table = {}
        for row, label in ROWS:
            per = figures(a.out, row, a.seeds, kind, key)
            table[row] = {w: summary(per[w]) for w in WIDTHS}
            md.append(f"| {label} | " + " | ".join(cell(table[row][w]) for w in WIDTHS) + " |")
        alone = {w: summary(figures(a.out, f"alone-{w}", a.seeds, kind, key)[w]) for w in WIDTHS}
        table["alone"] = alone
        md.append("| each width pretrained alone | " + " | ".join(cell(alone[w]) for w in WIDTHS) + " |")
        diffs = {}
        for other, label in (("alone", "alone"), ("slimmable", "the bare slimmable run")):
            ds = [diff(table["slimclr"][w], table[other][w]) for w in WIDTHS]
            diffs[other] = [d for d, _ in ds]
            md.append(f"| SlimCLR minus {label} | " + " | ".join(t for _, t in ds) + " |")
        md += ["", "`*`: the difference of means is larger than the two standard deviations added.", ""]
        result["rows"][kind] = {"table": table, "slimclr_minus": diffs}
    with open(os.path.join(a.out, "ablation.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(a.out, "ablation.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
