#!/usr/bin/env python3
"""The summary of tools/gpu_evidence.sh: OUT/summary.json and OUT/summary.md from the
files of its working folder, with issue 18's targets beside what was reached.

    gpu_evidence_report.py WORK OUT --tiny 0|1 --bin FILE --data ZIP --wall-s SECONDS
    gpu_evidence_report.py --check OUT    CI's check of a finished run's OUT: fail (exit 1,
                                          saying what is wrong) unless it holds what the
                                          device sends back and a complete summary

Only the standard library: it runs on the GPU machine's Python and on CI's.
"""
import argparse
import sys
import datetime
import glob
import json
import os
import platform

# Issue 18's targets (README, GPU evidence).
TARGET_EPOCH_S = 4.0  # single-width ResNet-18 SimCLR epoch of CIFAR-10 at batch 512
TARGET_OURS_OVER_REF = 1.15  # images/s, slimmable step
TARGET_SLIM_OVER_FULL = 1.97  # step time, the MACs ratio 1.875 plus 5%
CIFAR10_TRAIN = 50000


def load(path):
    with open(path) as f:
        return json.load(f)


def mean(xs):
    return sum(xs) / len(xs) if xs else None


def bench(work, kind):
    runs = [load(p) for p in sorted(glob.glob(os.path.join(work, f"bench-{kind}-*.json")))]
    if not runs:
        return None
    return {
        "implementation": runs[0]["implementation"],
        "rounds": len(runs),
        "slimmable_images_per_s": [r["slimmable"]["images_per_s"] for r in runs],
        "full_images_per_s": [r["full"]["images_per_s"] for r in runs],
        "slimmable_images_per_s_mean": mean([r["slimmable"]["images_per_s"] for r in runs]),
        "full_images_per_s_mean": mean([r["full"]["images_per_s"] for r in runs]),
        "ratio_slim_over_full": mean([r["ratio"] for r in runs]),
        "settings": {k: runs[0][k] for k in ("backbone", "image_size", "batch", "widths", "device",
                                             "warmup", "steps", "bf16", "channels_last")},
        "macs_ratio": runs[0].get("macs_ratio"),
        "last_loss": [r["slimmable"]["last_loss"] for r in runs],
    }


def epochs_from_metrics(path, batch):
    """Seconds per epoch from metrics.jsonl (each step's images/s spans the time since the
    step before, loading included), split at the slow start's switch."""
    per_epoch = {}
    with open(path) as f:
        for line in f:
            m = json.loads(line)
            e = per_epoch.setdefault(m["epoch"], {"seconds": 0.0, "steps": 0, "slim": False, "loss": None})
            e["seconds"] += 2 * batch / m["images_per_s"]
            e["steps"] += 1
            e["slim"] = m["sub_widths_active"]
            e["loss"] = m["loss"]
    # An epoch's first step also waits for the loader's first batch; the run's first
    # epoch carries start-up as well: both stay in, so these are wall times.
    rows = [{"epoch": k, **v} for k, v in sorted(per_epoch.items())]
    full = [r["seconds"] for r in rows if not r["slim"]]
    slim = [r["seconds"] for r in rows if r["slim"]]
    return rows, mean(full[1:] or full), mean(slim)


def pct(x):
    return "-" if x is None else f"{100 * x:.2f}%"


def num(x, fmt="{:.1f}"):
    return "-" if x is None else fmt.format(x)


def check(out):
    """What CI asserts of a finished run (in its tiny mode, on the CPU)."""
    problems = []
    files = sorted(os.listdir(out))
    if len(files) > 8:
        problems.append(f"{len(files)} files: the device returns at most 8")
    for f in files:
        p = os.path.join(out, f)
        if not os.path.isfile(p) or os.path.getsize(p) >= 16 << 20:
            problems.append(f"{f}: not a plain file under 16 MiB")
        if not all(c.isascii() and (c.isalnum() or c in "._-") for c in f):
            problems.append(f"{f}: a name the device does not return")
    s = load(os.path.join(out, "summary.json"))
    ours, ref = s["bench"]["ours"], s["bench"]["pytorch"]
    if not (ours["settings"]["bf16"] and ours["settings"]["channels_last"]):
        problems.append("the bench ran without bf16 and channels-last")
    if not ours["ratio_slim_over_full"] > 1.0:
        problems.append(f"4 widths cost no more than one: {ours['ratio_slim_over_full']}")
    if ref is not None and ref["settings"] != ours["settings"]:
        problems.append("the PyTorch reference ran other settings")
    p = s["pretrain"]
    if p["stopped_by_time_limit"] or p["epochs_done"] != p["planned_epochs"] or p["planned_epochs"] < 2:
        problems.append(f"pretraining did not run its plan: {p['epochs_done']} of {p['planned_epochs']} epochs")
    if p["steps"] != p["planned_epochs"] * (p["train_images"] // p["batch"]):
        problems.append(f"{p['steps']} steps for {p['planned_epochs']} epochs")
    for key in ("knn", "linear_probe"):
        if [r["width"] for r in s[key]] != [1.0, 0.75, 0.5, 0.25]:
            problems.append(f"{key}: not every width")
    pieces = s["model"]["pieces"]
    if not pieces or any(x not in files for x in pieces):
        problems.append(f"model pieces {pieces} are not all in {out}")
    for p in problems:
        print(f"gpu_evidence_report.py --check: {p}")
    return 1 if problems else 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        raise SystemExit(check(sys.argv[2]))
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("out")
    ap.add_argument("--tiny", type=int, default=0)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--wall-s", type=float, required=True)
    a = ap.parse_args()
    w = a.work

    ours, ref = bench(w, "ours"), bench(w, "ref")
    epochs, n_train, train_s, warmup, batch = (int(x) for x in open(os.path.join(w, "plan.txt")).read().split())
    status, pretrain_s = (int(x) for x in open(os.path.join(w, "pretrain-status.txt")).read().split())
    run_metrics = os.path.join(w, "pretrain", "metrics.jsonl")
    lines = [json.loads(l) for l in open(run_metrics)]
    rows, full_epoch_s, slim_epoch_s = epochs_from_metrics(run_metrics, batch)
    knn = load(os.path.join(w, "knn.json"))
    probe = load(os.path.join(w, "linear.json"))
    sha = open(os.path.join(w, "model.sha256")).read().split()[0]
    pieces = sorted(os.path.basename(p) for p in glob.glob(os.path.join(a.out, "model.safetensors.part-*")))

    bench_epoch_s = None
    if ours:
        bench_epoch_s = 2 * CIFAR10_TRAIN / ours["full_images_per_s_mean"]
    targets = {
        "single_width_epoch_s": {"target": f"< {TARGET_EPOCH_S}", "bench": bench_epoch_s,
                                 "training": full_epoch_s * CIFAR10_TRAIN / n_train if full_epoch_s else None},
        "ours_over_pytorch_slimmable": {
            "target": f">= {TARGET_OURS_OVER_REF}",
            "reached": ours["slimmable_images_per_s_mean"] / ref["slimmable_images_per_s_mean"] if ref else None},
        "ours_over_pytorch_full": {
            "target": "-",
            "reached": ours["full_images_per_s_mean"] / ref["full_images_per_s_mean"] if ref else None},
        "slim_over_full_step_time": {"target": f"<= {TARGET_SLIM_OVER_FULL}",
                                     "reached": ours["ratio_slim_over_full"], "macs_ratio": ours["macs_ratio"]},
    }
    summary = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tiny": bool(a.tiny),
        "gpu": open(os.path.join(w, "gpu.txt")).read().strip(),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "binary": a.bin,
        "data": a.data,
        "wall_s": a.wall_s,
        "bench": {"ours": ours, "pytorch": ref},
        "pretrain": {
            "planned_epochs": epochs, "train_images": n_train, "batch": batch, "warmup_epochs": warmup,
            "planned_s": train_s, "wall_s": pretrain_s,
            "stopped_by_time_limit": status == 124,
            "epochs_done": len(rows), "steps": len(lines),
            "full_only_epoch_s": full_epoch_s, "slimmable_epoch_s": slim_epoch_s,
            "epochs": rows, "last_loss": lines[-1]["loss"] if lines else None,
        },
        "knn": knn,
        "linear_probe": probe,
        "model": {"sha256": sha, "pieces": pieces},
        "targets": targets,
    }
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)

    s = ours["settings"]
    md = [f"# GPU evidence, {summary['date'][:10]}{' (tiny CPU mode: not evidence)' if a.tiny else ''}", "",
          f"Device: {summary['gpu']}; {os.cpu_count()} CPU cores; whole run {a.wall_s:.0f} s.", "",
          f"## One training step: {s['backbone']} {s['image_size']}px, batch {s['batch']} x 2 views, "
          f"widths {s['widths']}, {s['device']}, bf16 convs {'on' if s['bf16'] else 'off'}, "
          f"channels-last {'on' if s['channels_last'] else 'off'}; {s['warmup']} warmup + {s['steps']} timed "
          f"steps per kind, {ours['rounds']} alternating rounds", "",
          "| implementation | slimmable img/s | full-only img/s | slimmable / full (time) |", "|---|---|---|---|"]
    for name, b in (("slim-train (tch)", ours), (ref["implementation"] if ref else "PyTorch eager", ref)):
        if b:
            md.append(f"| {name} | {b['slimmable_images_per_s_mean']:.0f} | {b['full_images_per_s_mean']:.0f} | "
                      f"{b['ratio_slim_over_full']:.3f} |")
        else:
            md.append(f"| {name} | skipped: torch does not import here | - | - |")
    md += ["", f"MACs ratio (ideal slimmable / full): {ours['macs_ratio']:.3f}.", ""]
    p = summary["pretrain"]
    md += [f"## Pretraining: SlimCLR (SimCLR), {n_train} training images, batch {batch}, "
           f"{p['epochs_done']} of {epochs} planned epochs, warmup {warmup}, slow start at half",
           "",
           f"Wall time {pretrain_s} s{' (stopped by the time limit: the cosine did not finish)' if p['stopped_by_time_limit'] else ''}; "
           f"seconds per epoch: {num(full_epoch_s)} full-width only, {num(slim_epoch_s)} slimmable; "
           f"last loss {num(p['last_loss'], '{:.3f}')}.", "",
           "| width | kNN top-1 | kNN, random init | linear probe top-1 |", "|---|---|---|---|"]
    for k, l in zip(knn, probe):
        md.append(f"| {k['width']} | {pct(k['knn_top1'])} | {pct(k.get('random_init_knn_top1'))} | {pct(l['top1'])} |")
    t = targets
    md += ["", "## Targets (issue 18)", "", "| target | reached |", "|---|---|",
           f"| single-width epoch of CIFAR-10 (50,000 images) < {TARGET_EPOCH_S} s | {num(t['single_width_epoch_s']['bench'])} s "
           f"from the bench's full-only rate; {num(t['single_width_epoch_s']['training'])} s in training (loading included) |",
           f"| ours / PyTorch eager, slimmable step >= {TARGET_OURS_OVER_REF} | {num(t['ours_over_pytorch_slimmable']['reached'], '{:.3f}')} "
           f"(full-only step: {num(t['ours_over_pytorch_full']['reached'], '{:.3f}')}) |",
           f"| 4-width / full-only step time <= {TARGET_SLIM_OVER_FULL} | {t['slim_over_full_step_time']['reached']:.3f} |",
           "", f"Model (no training state): sha256 {sha}, pieces {', '.join(pieces)}.", ""]
    with open(os.path.join(a.out, "summary.md"), "w") as f:
        f.write("\n".join(md))


if __name__ == "__main__":
    main()
