#!/usr/bin/env python3
"""The quickstart's closing table, and CI's check of what the quickstart produced.

    quickstart_report.py RUN          print the per-width table of both engines, write RUN/summary.md
    quickstart_report.py RUN --check  also fail (exit 1, saying what is wrong) unless RUN holds
                                      every width's graph, both bench reports with accuracy and
                                      latency at every width, the plots, and agreeing accuracies

RUN is the quickstart's output folder (runs/quickstart).
"""
import json
import os
import sys

WIDTHS = [1.0, 0.75, 0.5, 0.25]
BACKENDS = [("tract", "tract"), ("ort", "ONNX Runtime")]
BATCHES = [1, 32]
# The same graph on two engines: float32 with another operation order can flip an image
# whose two best classes are within rounding, never more than a few in a thousand.
MAX_TOP1_GAP = 0.5  # percentage points
# Ten classes: a pipeline that works beats chance (10%) clearly even after one short epoch
# (30-50% in CI's small mode); a broken one (labels, normalization, export) sits at chance.
MIN_TOP1 = 15.0


def load(path, problems):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        problems.append(f"{path}: cannot be read as JSON: {e}")
        return None


def by_width(items, path, problems):
    found = {round(item["width"], 6): item for item in items}
    if sorted(found) != sorted(WIDTHS):
        problems.append(f"{path}: widths {sorted(found, reverse=True)}, expected {WIDTHS}")
    return found


def main():
    args = sys.argv[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    if len(args) != 1:
        sys.exit(__doc__)
    run = args[0]
    problems = []

    manifest_path = os.path.join(run, "export", "manifest.json")
    manifest = load(manifest_path, problems) or {"widths": []}
    entries = by_width(manifest["widths"], manifest_path, problems)
    for w, e in entries.items():
        graph = os.path.join(run, "export", e["file"])
        if not os.path.isfile(graph) or os.path.getsize(graph) == 0:
            problems.append(f"{graph}: width {w}'s graph is missing or empty")
        for name in ("input_0.pb", "output_0.pb", "output_1.pb"):
            p = os.path.join(os.path.dirname(graph), "test_data_set_0", name)
            if not os.path.isfile(p):
                problems.append(f"{p}: width {w}'s test data is missing")

    knn_path = os.path.join(run, "knn.json")
    knn = by_width(load(knn_path, problems) or [], knn_path, problems)

    reports = {}
    for key, name in BACKENDS:
        path = os.path.join(run, f"bench-{key}", "report.json")
        report = load(path, problems)
        if report is None:
            continue
        reports[key] = by_width(report["widths"], path, problems)
        for w, r in reports[key].items():
            acc = r.get("accuracy")
            if not acc or acc.get("source") != "measured":
                problems.append(f"{path}: width {w} has no measured accuracy")
            elif acc["top1"] * 100 < MIN_TOP1:
                problems.append(
                    f"{path}: width {w} top-1 {acc['top1'] * 100:.2f}% is under {MIN_TOP1}%")
            got = sorted(l["batch"] for l in r.get("latency", []))
            if got != BATCHES:
                problems.append(f"{path}: width {w} has latency at batches {got}, not {BATCHES}")
        for plot in ("plot.png", "plot.svg", "report.csv"):
            p = os.path.join(run, f"bench-{key}", plot)
            if not os.path.isfile(p) or os.path.getsize(p) == 0:
                problems.append(f"{p}: missing or empty")

    def top1(key, w):
        acc = reports.get(key, {}).get(w, {}).get("accuracy") or {}
        return acc["top1"] * 100 if "top1" in acc else None

    def latency(key, w, batch, field):
        for l in reports.get(key, {}).get(w, {}).get("latency", []):
            if l["batch"] == batch:
                return l[field]
        return None

    def fmt(v, spec, unit=""):
        return "-" if v is None else format(v, spec) + unit

    rows = [
        "| width | MMACs | kNN top-1 | top-1 tract | top-1 ONNX Runtime "
        "| p50 ms, batch 1: tract | ONNX Runtime | images/s, batch 32: tract | ONNX Runtime |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w in WIDTHS:
        if w not in entries:
            continue
        k = knn.get(w, {}).get("knn_top1")
        k = None if k is None else k * 100
        t, o = top1("tract", w), top1("ort", w)
        if check and t is not None and o is not None and abs(t - o) > MAX_TOP1_GAP:
            problems.append(
                f"width {w}: top-1 {t:.2f}% on tract but {o:.2f}% on ONNX Runtime "
                f"(the same graph; allowed gap {MAX_TOP1_GAP} points)")
        rows.append(
            f"| {w} | {entries[w]['macs'] / 1e6:.2f} | {fmt(k, '.2f', '%')} "
            f"| {fmt(t, '.2f', '%')} | {fmt(o, '.2f', '%')} "
            f"| {fmt(latency('tract', w, 1, 'p50_ms'), '.3f')} "
            f"| {fmt(latency('ort', w, 1, 'p50_ms'), '.3f')} "
            f"| {fmt(latency('tract', w, 32, 'images_per_s'), '.0f')} "
            f"| {fmt(latency('ort', w, 32, 'images_per_s'), '.0f')} |")
    table = "\n".join(rows) + "\n"
    print(table, end="")
    with open(os.path.join(run, "summary.md"), "w") as f:
        f.write(f"# Quickstart: the exported widths on tract and ONNX Runtime\n\n{table}")

    if check:
        if problems:
            for p in problems:
                print(f"quickstart check: {p}", file=sys.stderr)
            sys.exit(1)
        print(f"quickstart check: {run} holds every width's graph, both engines' reports "
              f"and agreeing accuracies")


if __name__ == "__main__":
    main()
