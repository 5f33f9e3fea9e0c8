"""Compares two tessera binaries side by side on the engine benchmarks: alternated runs (old,
new, new, old, ...), so that drifts of the machine's speed fall on both; prints the fastest and
the median wall time of each, as tessera reports it, and fails when their region counts differ.

The development machine's speed varies by ±20-30% within minutes, so a change is measured
against the build before it this way, not against figures from another hour. Run from anywhere:
    cargo build --release && cp target/release/tessera /tmp/tessera_old   # before the change
    ...change, cargo build --release...
    python3 scripts/compare_builds.py /tmp/tessera_old target/release/tessera [--case lenet]
        [--threads 2] [--repeat 6]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def bench(name):
    return os.path.join(ROOT, "assets", "bench", f"{name}.onnx")


def anchors(name):
    return ["--anchors", ",".join(os.path.join(ROOT, "assets", "bench", f"{name}_{k}.npy") for k in "abc")]


CASES = {
    "mlp": [os.path.join(ROOT, "assets/onnx/mlp_2_256x3_2_ts.onnx"), "--box=-2,2,-2,2"],
    "lenet": [bench("lenet5"), *anchors("lenet5"), "--box=-5.5,5.5,-5.5,5.5"],
    "lenet-small": [bench("lenet5"), *anchors("lenet5"), "--box=-2.5,2.5,-2.5,2.5"],
    "allconv": [bench("allconv"), *anchors("allconv"), "--box=-4,4,-4,4"],
    "resnet": [bench("resnet8"), *anchors("resnet8"), "--box=-0.05,0.05,-0.05,0.05"],
}


def run(binary, args, threads):
    """(regions, seconds as tessera prints them) of one count-only run."""
    out = subprocess.run([binary, "map", *args, "--threads", str(threads)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {binary} map {' '.join(args)}\n{out.stderr}")
    m = re.search(r"^(\d+) regions.* in ([0-9.]+) s", out.stderr, re.M)
    return int(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--case", choices=[*CASES, "all"], default="all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=6)
    opts = ap.parse_args()
    for b in (opts.old, opts.new):
        if not os.access(b, os.X_OK):
            sys.exit(f"not an executable: {b}")
    names = list(CASES) if opts.case == "all" else [opts.case]
    print(f"| case | regions | old: fastest / median | new: fastest / median | new / old (fastest) |")
    print("|---|---|---|---|---|")
    for name in names:
        times = {opts.old: [], opts.new: []}
        counts = set()
        for i in range(opts.repeat):
            order = (opts.old, opts.new) if i % 2 == 0 else (opts.new, opts.old)
            for b in order:
                regions, seconds = run(b, CASES[name], opts.threads)
                counts.add(regions)
                times[b].append(seconds)
        if len(counts) != 1:
            sys.exit(f"{name}: the builds disagree on the region count: {sorted(counts)}")
        old, new = times[opts.old], times[opts.new]
        print(
            f"| {name} | {counts.pop():,} | {min(old):.3f} / {statistics.median(old):.3f} s "
            f"| {min(new):.3f} / {statistics.median(new):.3f} s | {min(new) / min(old):.3f} |"
        )


if __name__ == "__main__":
    main()
