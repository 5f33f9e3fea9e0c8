"""Trains the bundled 3D example: a 3-32-32-1 ReLU MLP fitted to the signed distance of a torus
(major radius 0.55, minor radius 0.25) on [-1, 1]^3, written as tessera-model/1 JSON to
assets/networks/sdf_torus_3_32x2_1.json (rerun: python3 scripts/make_sdf_asset.py; needs numpy).

`tessera map assets/networks/sdf_torus_3_32x2_1.json --dims 3 --mesh torus.obj` then gives the
exact zero-level surface of the network (not of the torus: the network's own piecewise-linear
surface, which approximates it).
"""
import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "networks", "sdf_torus_3_32x2_1.json")
R, r = 0.55, 0.25


def sdf(x):
    q = np.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2) - R
    return np.sqrt(q**2 + x[:, 2] ** 2) - r


def main():
    rng = np.random.default_rng(0)
    sizes = [3, 32, 32, 1]
    params = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        b = 1 / np.sqrt(i)
        params += [rng.uniform(-b, b, (o, i)), rng.uniform(-b, b, o)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, b1, b2 = 3e-3, 0.9, 0.999
    for step in range(1, 6001):
        x = rng.uniform(-1, 1, (512, 3))
        y = sdf(x)
        # Forward, keeping pre-activations.
        acts, pre = [x], []
        h = x
        for k in range(0, len(params), 2):
            z = h @ params[k].T + params[k + 1]
            pre.append(z)
            h = np.maximum(z, 0) if k + 2 < len(params) else z
            acts.append(h)
        g = 2 * (h[:, 0] - y)[:, None] / len(x)
        grads = [None] * len(params)
        for k in range(len(params) - 2, -1, -2):
            layer = k // 2
            if k + 2 < len(params):
                g = g * (pre[layer] > 0)
            grads[k] = g.T @ acts[layer]
            grads[k + 1] = g.sum(0)
            g = g @ params[k]
        for i, (p, gr) in enumerate(zip(params, grads)):
            m[i] = b1 * m[i] + (1 - b1) * gr
            v[i] = b2 * v[i] + (1 - b2) * gr * gr
            p -= lr * (m[i] / (1 - b1**step)) / (np.sqrt(v[i] / (1 - b2**step)) + 1e-8)
        if step % 2000 == 0:
            print(f"step {step}: mse {np.mean((h[:, 0] - y) ** 2):.2e}")
    layers = []
    for k in range(0, len(params), 2):
        layers.append({"op": "linear", "weight": params[k].tolist(), "bias": params[k + 1].tolist()})
        if k + 2 < len(params):
            layers.append({"op": "relu"})
    with open(OUT, "w") as f:
        json.dump({"format": "tessera-model/1", "input_shape": [3], "layers": layers}, f)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
