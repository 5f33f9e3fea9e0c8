"""Prints the cost of the Python binding over the CLI, and the Ray speedup of tiles.

Run after `pip install ./python` (and `pip install ray` for the Ray rows), from the repository
root: python3 scripts/bench_python.py [--runs 3]. Times are whole calls, minimum of the runs.
"""
import argparse
import os
import subprocess
import time

import tessera

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL = os.path.join(ROOT, "assets", "onnx", "mlp_2_256x3_2_ts.onnx")
BOX = (-2.0, 2.0, -2.0, 2.0)


def best(f, runs):
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "tessera"))
    args = ap.parse_args()
    rows = []
    cli = lambda: subprocess.run([args.bin, "map", MODEL, "--box", "-2,2,-2,2", "--threads", "2"],
                                 capture_output=True, check=True)
    t, _ = best(cli, args.runs)
    rows.append(("CLI `map` (count only, whole process)", t, None))
    t, s = best(lambda: tessera.load(MODEL).count(box=BOX, threads=2), args.runs)
    rows.append(("Python load + count", t, s["regions"]))
    t, p = best(lambda: tessera.load(MODEL).map(box=BOX, threads=2), args.runs)
    rows.append(("Python load + map (every region kept)", t, p.num_regions))
    t, _ = best(lambda: (p.areas, p.jacobians, p.offsets, p.patterns), args.runs)
    rows.append(("  areas + jacobians + offsets + patterns arrays", t, None))
    t, _ = best(lambda: p.polygons, args.runs)
    rows.append(("  polygons (one array per region)", t, None))
    try:
        import ray
        from tessera import distributed
    except ImportError:
        ray = None
    if ray is not None:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        net = tessera.load(MODEL)
        distributed.map_tiles(net, tiles=2, box=BOX)  # warm the workers up
        t1, _ = best(lambda: net.count(box=BOX, threads=1), args.runs)
        rows.append(("count on 1 thread", t1, None))
        t, s = best(lambda: distributed.map_tiles(net, tiles=16, box=BOX), args.runs)
        rows.append((f"Ray map_tiles, 16 tiles on 2 workers ({t1 / t:.2f}x vs 1 thread)", t, s["regions"]))
        import numpy as np

        lenet = tessera.load(os.path.join(ROOT, "assets", "bench", "lenet5.onnx"))
        anchors = tuple(np.load(os.path.join(ROOT, "assets", "bench", f"lenet5_{k}.npy")) for k in "abc")
        lbox = (-3.0, 3.0, -3.0, 3.0)
        t1, s1 = best(lambda: lenet.count(anchors=anchors, box=lbox, threads=1), args.runs)
        rows.append(("LeNet-5 anchor plane [-3,3]^2: count on 1 thread", t1, s1["regions"]))
        t2, _ = best(lambda: lenet.count(anchors=anchors, box=lbox, threads=2), args.runs)
        rows.append((f"  count on 2 threads ({t1 / t2:.2f}x)", t2, None))
        t, s = best(lambda: distributed.map_tiles(lenet, tiles=16, anchors=anchors, box=lbox), args.runs)
        rows.append((f"  Ray map_tiles, 16 tiles on 2 workers ({t1 / t:.2f}x vs 1 thread)", t, s["regions"]))
        ray.shutdown()
    print(f"{'what':<62} {'seconds':>8} {'regions':>8}")
    for what, t, n in rows:
        print(f"{what:<62} {t:8.3f} {'' if n is None else n:>8}")


if __name__ == "__main__":
    main()
