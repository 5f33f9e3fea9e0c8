"""Side-by-side timings of tessera and regioncam on the same networks and domains; prints a table.

Needs: pip install regioncam onnx numpy, and a release build (cargo build --release). Run from the
repository root: python3 scripts/compare_peers.py [--repeat N]

Both tools get the very same function: regioncam has no convolution, so convolutions are written
as dense matrices (built here from the ONNX weights with plain loops), and a plane through three
images becomes a first linear layer from (u, v) to the input (the orthonormal frame tessera uses:
origin A, u towards B, v towards C), so both partition the same box. Region counts must agree;
times are whole runs (tessera: the process, as a user runs it; regioncam: building the partition
in Python, without import time), best of N. SyReNN's server (C++, built with Bazel) cannot be
installed from a package registry, so it is not measured here.
"""
import argparse
import os
import re
import subprocess
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BIN = os.path.join(ROOT, "target", "release", "tessera")


def weights(path):
    m = onnx.load(path)
    return m, {i.name: numpy_helper.to_array(i).astype(np.float64) for i in m.graph.initializer}


def conv_matrix(w, b, shape, stride, pad):
    """The dense matrix (n_out x n_in) and bias of a convolution on a C x H x W input."""
    oc, ic, kh, kw = w.shape
    c, h, wd = shape
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    mat = np.zeros((oc * oh * ow, c * h * wd))
    for o in range(oc):
        for y in range(oh):
            for x in range(ow):
                row = (o * oh + y) * ow + x
                for ci in range(ic):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = y * stride - pad + ky, x * stride - pad + kx
                            if 0 <= iy < h and 0 <= ix < wd:
                                mat[row, (ci * h + iy) * wd + ix] += w[o, ci, ky, kx]
    return mat, np.repeat(b, oh * ow), (oc, oh, ow)


def frame(a, b, c):
    """Orthonormal (u, v) of the plane through a, b, c, with u along b - a."""
    e1 = (b - a) / np.linalg.norm(b - a)
    d = (c - a) - np.dot(c - a, e1) * e1
    return e1, d / np.linalg.norm(d)


def dense_layers(path):
    """The network as (weight n_out x n_in, bias, relu after?) from its ONNX graph."""
    m, w = weights(path)
    shape = tuple(d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim[1:])
    layers = []
    for node in m.graph.node:
        if node.op_type == "Conv":
            attrs = {a.name: a for a in node.attribute}
            stride = attrs["strides"].ints[0] if "strides" in attrs else 1
            pad = attrs["pads"].ints[0] if "pads" in attrs else 0
            k = w[node.input[1]]
            bias = w[node.input[2]] if len(node.input) > 2 else np.zeros(k.shape[0])
            mat, bb, shape = conv_matrix(k, bias, shape, stride, pad)
            layers.append([mat, bb, False])
        elif node.op_type == "Gemm":
            layers.append([w[node.input[1]], w[node.input[2]], False])
        elif node.op_type == "Relu":
            layers[-1][2] = True
        elif node.op_type in ("Flatten", "Reshape", "Constant", "Shape", "Gather", "Unsqueeze", "Concat"):
            continue
        else:
            raise SystemExit(f"{path}: {node.op_type} has no dense form here")
    return layers


def regioncam_run(layers, half, plane=None):
    import regioncam

    start = time.perf_counter()
    rc = regioncam.Regioncam(size=half)
    if plane is not None:
        origin, e1, e2 = plane
        rc.linear(np.stack([e1, e2]).astype(np.float32), origin.astype(np.float32))
    for mat, bias, relu in layers:
        rc.linear(mat.T.astype(np.float32), bias.astype(np.float32))
        if relu:
            rc.relu()
    return rc.num_faces, time.perf_counter() - start


def tessera_run(args, threads):
    out = subprocess.run([BIN, "map", *args, "--threads", str(threads)], capture_output=True, text=True, check=True)
    m = re.search(r"^(\d+) regions.* in ([0-9.]+) s", out.stderr, re.M)
    return int(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    cases = [
        ("MLP 2-256x3-2", "assets/onnx/mlp_2_256x3_2_ts.onnx", None, 2.0),
        ("all-conv 28x28", "assets/bench/allconv.onnx", "assets/bench/allconv", 4.0),
    ]
    print("| network | box | regions (tessera / regioncam) | tessera 1 thread | tessera 2 threads | regioncam | speed-up (2 threads) |")
    print("|---|---|---|---|---|---|---|")
    for name, model, anchors, half in cases:
        path = os.path.join(ROOT, model)
        args = [path, f"--box=-{half},{half},-{half},{half}"]
        plane = None
        if anchors:
            a, b, c = (np.load(os.path.join(ROOT, f"{anchors}_{k}.npy")).astype(np.float64).ravel() for k in "abc")
            args += ["--anchors", ",".join(os.path.join(ROOT, f"{anchors}_{k}.npy") for k in "abc")]
            e1, e2 = frame(a, b, c)
            plane = (a, e1, e2)
        layers = dense_layers(path)
        t1 = min(tessera_run(args, 1)[1] for _ in range(opts.repeat))
        runs = [tessera_run(args, 2) for _ in range(opts.repeat)]
        n_t, t2 = runs[0][0], min(r[1] for r in runs)
        rc = [regioncam_run(layers, half, plane) for _ in range(max(1, opts.repeat // 2))]
        n_r, tr = rc[0][0], min(r[1] for r in rc)
        print(f"| {name} | [-{half}, {half}]² | {n_t} / {n_r} | {t1:.2f} s | {t2:.2f} s | {tr:.2f} s | {tr / t2:.0f}× |")


if __name__ == "__main__":
    main()
