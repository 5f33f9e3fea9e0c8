"""Prints the performance table of the engine targets: whole `tessera map` runs (the process, as a
user runs it), best of N wall times on 1 and 2 threads, peak resident memory, regions per second.

Needs a release build (cargo build --release) and GNU time (/usr/bin/time). Run from anywhere:
    python3 scripts/bench_table.py [--repeat N] [--quick]
--quick leaves out the runs over the whole default anchor plane (minutes each).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BIN = os.path.join(ROOT, "target", "release", "tessera")


def anchors(name):
    return ["--anchors", ",".join(os.path.join(ROOT, "assets", "bench", f"{name}_{k}.npy") for k in "abc")]


def model(name):
    return os.path.join(ROOT, "assets", "bench", f"{name}.onnx")


def run(args, threads):
    """(regions, seconds as printed, peak RSS in MB) of one run."""
    cmd = ["/usr/bin/time", "-f", "RSS %M", BIN, "map", *args, "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr}")
    m = re.search(r"^(\d+) regions.* in ([0-9.]+) s", out.stderr, re.M)
    rss = int(re.search(r"RSS (\d+)", out.stderr).group(1)) / 1024
    return int(m.group(1)), float(m.group(2)), rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    opts = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    png = os.path.join(tempfile.mkdtemp(), "plane.png")
    cases = [
        ("MLP 2-256x3-2, [-2,2]²", [os.path.join(ROOT, "assets/onnx/mlp_2_256x3_2_ts.onnx"), "--box=-2,2,-2,2"], "≤ 0.6 s"),
        ("LeNet-5, [-1,1]²", [model("lenet5"), *anchors("lenet5"), "--box=-1,1,-1,1"], ""),
        ("LeNet-5, [-5.5,5.5]²", [model("lenet5"), *anchors("lenet5"), "--box=-5.5,5.5,-5.5,5.5"], "~430k regions ≤ 2 s"),
        ("all-conv, [-4,4]²", [model("allconv"), *anchors("allconv"), "--box=-4,4,-4,4"], "10× SyReNN, 100× regioncam"),
        ("ResNet-8, [-0.05,0.05]²", [model("resnet8"), *anchors("resnet8"), "--box=-0.05,0.05,-0.05,0.05"], "≤ 2 s"),
    ]
    if not opts.quick:
        cases += [
            ("LeNet-5, whole anchor plane, count", [model("lenet5"), *anchors("lenet5")], "minutes, memory flat"),
            ("LeNet-5, whole anchor plane, count + PNG", [model("lenet5"), *anchors("lenet5"), "--png", png], "minutes, memory flat"),
        ]
    print("| case | regions | 1 thread | 2 threads | regions/s (2 threads) | peak RSS | target |")
    print("|---|---|---|---|---|---|---|")
    for name, args, target in cases:
        long = "whole" in name
        reps = 1 if long else opts.repeat
        one = None if long else min(run(args, 1)[1] for _ in range(reps))
        runs = [run(args, 2) for _ in range(reps)]
        regions, t2, rss = runs[0][0], min(r[1] for r in runs), max(r[2] for r in runs)
        t1 = f"{one:.2f} s" if one is not None else "–"
        print(f"| {name} | {regions:,} | {t1} | {t2:.2f} s | {regions / t2:,.0f} | {rss:.0f} MB | {target} |")


if __name__ == "__main__":
    main()
